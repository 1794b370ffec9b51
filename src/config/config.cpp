#include "keytrail/config/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "keytrail/schema/record.h"
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/files.h"
#include "keytrail/util/text.h"
#include "parser.h"

namespace keytrail
{

int syslog_facility_code(const std::string &name)
{
	static const std::pair<const char *, int> names[] = {
	    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
	    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
	    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
	    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23}};
	for (auto &[n, code] : names)
		if (name == n)
			return code;
	return -1;
}

const std::vector<std::string> &known_selectors()
{
	static const std::vector<std::string> k = {"host",
	                                           "env",
	                                           "unix.uid",
	                                           "unix.user",
	                                           "unix.gid",
	                                           "unix.group",
	                                           "unix.exe",
	                                           "unix.sha256",
	                                           "cgroup.path",
	                                           "cgroup.runtime",
	                                           "cgroup.container_id",
	                                           "k8s.pod_uid",
	                                           "k8s.qos",
	                                           "systemd.unit",
	                                           "systemd.slice",
	                                           "mcp.server",
	                                           "mcp.client",
	                                           "mcp.transport",
	                                           "mcp.cwd"};
	return k;
}

Config parse_config(const std::string &text, const std::string &name)
{
	return config_detail::Parser(name).parse(text);
}

Config load_config(const std::string &path)
{
	// No config anyone writes is near this; a bigger one is a mistake (or
	// /dev/zero) and is refused before it is read.
	constexpr size_t kMaxConfigBytes = 1 << 20;
	struct stat st;
	int fd = open_regular_file(path, &st);
	if (fd < 0)
		throw ConfigError(path + ": cannot read config file: " +
		                  (errno == EINVAL ? "not a regular file" : std::strerror(errno)));
	if (static_cast<size_t>(st.st_size) > kMaxConfigBytes) {
		::close(fd);
		throw ConfigError(path + ": config file is larger than 1 MiB");
	}
	std::string text(static_cast<size_t>(st.st_size), '\0');
	ssize_t n = ::read(fd, text.data(), text.size());
	int err = errno;
	::close(fd);
	if (n < 0)
		throw ConfigError(path + ": cannot read config file: " + std::strerror(err));
	text.resize(static_cast<size_t>(n));
	Config c = parse_config(text, path);
	// Messages name the file as given; what the agent reports (ready, the
	// investigate commands) is absolute, to be usable from any directory.
	std::error_code ec;
	auto abs = std::filesystem::absolute(path, ec);
	if (!ec)
		c.source = abs.lexically_normal().string();
	return c;
}

std::chrono::milliseconds parse_duration(const std::string &s)
{
	size_t i = 0;
	while (i < s.size() && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 0 || i > 12)
		throw Error("'" + s + "' is not a duration (like 250ms, 30s, 5m, 12h, 90d)");
	uint64_t n = std::stoull(s.substr(0, i));
	std::string unit = s.substr(i);
	static const std::pair<const char *, uint64_t> units[] = {
	    {"ms", 1},      {"s", 1000},     {"m", 60000},
	    {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
	for (auto &[u, mult] : units)
		if (unit == u)
			return std::chrono::milliseconds(n * mult);
	throw Error("'" + s + "' has no known unit (ms, s, m, h, d, w)");
}

uint64_t parse_size(const std::string &s)
{
	size_t i = 0;
	while (i < s.size() && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 0 || i > 12)
		throw Error("'" + s + "' is not a size (like 4096, 512KiB, 8MiB)");
	uint64_t n = std::stoull(s.substr(0, i));
	std::string unit = s.substr(i);
	static const std::pair<const char *, uint64_t> units[] = {
	    {"", 1}, {"B", 1}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}};
	for (auto &[u, mult] : units)
		if (unit == u)
			return n * mult;
	throw Error("'" + s + "' has no known unit (B, KiB, MiB, GiB)");
}

} // namespace keytrail
