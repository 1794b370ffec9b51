// How kernel values read in records: open flags, address families, socket
// types, why an fd closed, errno names.
#pragma once

#include <cstdint>
#include <string>

namespace keytrail
{

std::string open_flags_string(uint32_t flags);  // "O_RDONLY|O_CLOEXEC"
const char *family_name(uint16_t family);       // inet, inet6, unix, netlink, other
const char *sock_type_name(uint16_t type);      // tcp, udp, raw, other
const char *close_reason_name(uint32_t reason); // close, exit, exec (kt_close_reason)
std::string errno_name(int err);                // "ok", "ENOENT", ...

} // namespace keytrail
