#include "keytrail/probe/names.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstring>
#include <utility>

#include "keytrail/abi.h"

namespace keytrail
{

std::string open_flags_string(uint32_t f)
{
	std::string s;
	switch (f & O_ACCMODE) {
	case O_RDONLY: s = "O_RDONLY"; break;
	case O_WRONLY: s = "O_WRONLY"; break;
	default: s = "O_RDWR"; break;
	}
	static const std::pair<uint32_t, const char *> names[] = {
	    {O_CREAT, "O_CREAT"},       {O_EXCL, "O_EXCL"},         {O_TRUNC, "O_TRUNC"},
	    {O_APPEND, "O_APPEND"},     {O_NONBLOCK, "O_NONBLOCK"}, {O_DIRECTORY, "O_DIRECTORY"},
	    {O_NOFOLLOW, "O_NOFOLLOW"}, {O_CLOEXEC, "O_CLOEXEC"},   {O_PATH, "O_PATH"}};
	for (auto &[bit, name] : names)
		if ((f & bit) == bit)
			s.append("|").append(name);
	return s;
}

const char *family_name(uint16_t f)
{
	switch (f) {
	case AF_INET: return "inet";
	case AF_INET6: return "inet6";
	case AF_UNIX: return "unix";
	case AF_NETLINK: return "netlink";
	default: return "other";
	}
}

const char *sock_type_name(uint16_t t)
{
	switch (t) {
	case SOCK_STREAM: return "tcp";
	case SOCK_DGRAM: return "udp";
	case SOCK_RAW: return "raw";
	default: return "other";
	}
}

const char *close_reason_name(uint32_t r)
{
	switch (r) {
	case KT_CLOSE_CLOSE: return "close";
	case KT_CLOSE_EXIT: return "exit";
	case KT_CLOSE_EXEC: return "exec";
	default: return "unknown";
	}
}

std::string errno_name(int err)
{
	if (err == 0)
		return "ok";
	const char *n = strerrorname_np(err);
	return n ? n : "E" + std::to_string(err);
}

} // namespace keytrail
