// One error style: setup and configuration failures throw keytrail::Error
// with a message a person can act on; per-event paths never throw, they
// return std::optional / bool and count what failed.
#pragma once

#include <stdexcept>
#include <string>

namespace keytrail
{

class Error : public std::runtime_error
{
      public:
	explicit Error(const std::string &what) : std::runtime_error(what) {}
};

// Error for a failed system call: "<what>: <strerror(err)>".
Error sys_error(const std::string &what, int err);

} // namespace keytrail
