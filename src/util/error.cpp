#include "keytrail/util/error.h"

#include <cstring>

namespace keytrail
{

Error sys_error(const std::string &what, int err)
{
	return Error(what + ": " + std::strerror(err));
}

} // namespace keytrail
