#include "keytrail/agent/name_table.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "keytrail/util/files.h"

namespace keytrail
{

namespace
{

constexpr size_t kMaxNames = 65536;
constexpr size_t kMaxHostsBytes = 1 << 20;
// How long an answer counts: its TTL, but at least a minute (clients cache
// past a short TTL) and at most an hour.
constexpr int64_t kMinTtlNs = 60LL * 1000000000LL, kMaxTtlNs = 3600LL * 1000000000LL;

std::string lower(std::string s)
{
	std::transform(s.begin(), s.end(), s.begin(),
	               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
	while (!s.empty() && s.back() == '.')
		s.pop_back();
	return s;
}

bool is_address(const std::string &s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool is_loopback(const std::string &addr)
{
	return addr.starts_with("127.") || addr == "::1";
}

} // namespace

std::string plain_address(const std::string &addr)
{
	if (addr.starts_with("::ffff:") && addr.find('.') != std::string::npos)
		return addr.substr(7);
	return addr;
}

void NameTable::add(const std::string &name, const std::string &addr, uint32_t ttl, int64_t now)
{
	if (names_.size() >= kMaxNames && !names_.count(name)) {
		for (auto it = names_.begin(); it != names_.end();) {
			std::erase_if(it->second,
			              [&](const Known &k) { return k.expires_ns < now; });
			it = it->second.empty() ? names_.erase(it) : std::next(it);
		}
		if (names_.size() >= kMaxNames)
			return; // full of live answers: this one goes unrecorded
	}
	int64_t keep =
	    std::clamp<int64_t>(static_cast<int64_t>(ttl) * 1000000000LL, kMinTtlNs, kMaxTtlNs);
	auto &list = names_[name];
	for (auto &k : list)
		if (k.addr == addr) {
			k.expires_ns = std::max(k.expires_ns, now + keep);
			return;
		}
	if (list.size() < 64)
		list.push_back({addr, now + keep});
}

void NameTable::learn(const DnsEvent &e, int64_t now)
{
	if (!e.answer)
		return;
	const DnsAnswer &a = *e.answer;
	for (const auto &r : a.addresses) {
		std::string addr = plain_address(r.addr);
		add(r.name, addr, r.ttl, now);
		// The name asked for, and every alias on the way, resolve to it.
		add(a.question, addr, r.ttl, now);
		for (const auto &[owner, target] : a.aliases)
			add(owner, addr, r.ttl, now);
	}
}

bool NameTable::resolved(const std::string &name, const std::string &addr, int64_t now) const
{
	auto it = names_.find(name);
	if (it == names_.end())
		return false;
	return std::any_of(it->second.begin(), it->second.end(),
	                   [&](const Known &k) { return k.addr == addr && k.expires_ns >= now; });
}

std::optional<bool> NameTable::in_hosts(const std::string &name, const std::string &addr, pid_t pid)
{
	std::string root = "/proc/" + std::to_string(pid) + "/root";
	struct stat hs;
	int fd = open_regular_file(root + "/etc/hosts", &hs);
	if (fd < 0) {
		// No hosts file (or not a regular one) in a root that is still
		// there: it names nothing.
		struct stat rs;
		if (stat(root.c_str(), &rs) == 0)
			return false;
		return std::nullopt;
	}
	if (static_cast<size_t>(hs.st_size) > kMaxHostsBytes) {
		::close(fd);
		return false;
	}
	if (hosts_.size() >= 256 && !hosts_.count({hs.st_dev, hs.st_ino}))
		hosts_.clear();
	Hosts &h = hosts_[{hs.st_dev, hs.st_ino}];
	int64_t mtime = static_cast<int64_t>(hs.st_mtim.tv_sec) * 1000000000LL + hs.st_mtim.tv_nsec;
	if (mtime != h.mtime_ns) {
		std::string text(static_cast<size_t>(hs.st_size), '\0');
		ssize_t n = ::read(fd, text.data(), text.size());
		text.resize(n > 0 ? static_cast<size_t>(n) : 0);
		h.names.clear();
		h.mtime_ns = mtime;
		std::istringstream in(text);
		for (std::string line; std::getline(in, line);) {
			line = line.substr(0, line.find('#'));
			std::istringstream words(line);
			std::string ip, host;
			if (!(words >> ip) || !is_address(ip))
				continue;
			while (words >> host)
				h.names[lower(host)].push_back(plain_address(ip));
		}
	}
	::close(fd);
	auto it = h.names.find(name);
	return it != h.names.end() &&
	       std::find(it->second.begin(), it->second.end(), addr) != it->second.end();
}

uint8_t NameTable::check(std::string name, const std::string &raw_addr,
                         const std::vector<pid_t> &pids, int64_t now)
{
	name = lower(name);
	if (name.size() > 2 && name.front() == '[' && name.back() == ']')
		name = name.substr(1, name.size() - 2);
	std::string addr = plain_address(raw_addr);
	if (name.empty())
		return ConnectSeen::kNoCheck;
	if (is_address(name))
		return plain_address(name) == addr ? ConnectSeen::kVerified
		                                   : ConnectSeen::kUnverified;
	if ((name == "localhost" || name.ends_with(".localhost")) && is_loopback(addr))
		return ConnectSeen::kVerified;
	if (resolved(name, addr, now))
		return ConnectSeen::kVerified;
	for (pid_t pid : pids)
		if (auto found = in_hosts(name, addr, pid)) {
			if (*found)
				return ConnectSeen::kVerified;
			break; // the first one still there says what its hosts file holds
		}
	return capture_ ? ConnectSeen::kUnverified : ConnectSeen::kNoCheck;
}

bool NameTable::same(const std::string &host, const std::string &addr,
                     const std::vector<pid_t> &pids, int64_t now)
{
	return check(host, addr, pids, now) == ConnectSeen::kVerified;
}

std::vector<std::string> proxies_from_environ(const std::vector<std::string> &env)
{
	std::vector<std::string> out;
	for (const auto &kv : env) {
		size_t eq = kv.find('=');
		if (eq == std::string::npos)
			continue;
		std::string name = lower(kv.substr(0, eq));
		if (name != "https_proxy" && name != "http_proxy" && name != "all_proxy")
			continue;
		std::string v = kv.substr(eq + 1);
		size_t scheme = v.find("://");
		bool https = v.starts_with("https://");
		if (scheme != std::string::npos)
			v = v.substr(scheme + 3);
		v = v.substr(0, v.find_first_of("/?#"));
		if (size_t at = v.rfind('@'); at != std::string::npos)
			v = v.substr(at + 1); // the credentials are never kept
		if (v.empty() || v.size() > 260)
			continue;
		bool bracketed = v.front() == '[';
		size_t colon = v.rfind(':');
		if (colon == std::string::npos || (bracketed && colon < v.find(']')))
			v += https ? ":443" : ":80";
		out.push_back(lower(v));
	}
	std::sort(out.begin(), out.end());
	out.erase(std::unique(out.begin(), out.end()), out.end());
	return out;
}

} // namespace keytrail
