#include "keytrail/util/kdev.h"

#include <sys/sysmacros.h>

namespace keytrail
{

uint64_t kernel_dev_to_user(uint64_t kdev)
{
	return makedev(static_cast<unsigned>(kdev >> 20), static_cast<unsigned>(kdev & 0xFFFFF));
}

uint64_t user_dev_to_kernel(uint64_t udev)
{
	return (static_cast<uint64_t>(major(udev)) << 20) | minor(udev);
}

std::string dev_string(uint64_t kdev)
{
	return std::to_string(kdev >> 20) + ":" + std::to_string(kdev & 0xFFFFF);
}

} // namespace keytrail
