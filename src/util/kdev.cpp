#include "keytrail/util/kdev.h"

#include <sys/sysmacros.h>

#include <charconv>

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
	char buf[48]; // two 64-bit numbers and a colon
	char *end = std::to_chars(buf, buf + 20, kdev >> 20).ptr;
	*end++ = ':';
	end = std::to_chars(end, buf + sizeof(buf), kdev & 0xFFFFF).ptr;
	return std::string(buf, end);
}

} // namespace keytrail
