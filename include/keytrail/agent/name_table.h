// What tracked processes' resolvers were told (DNS answers the probes saw)
// and what each process root's /etc/hosts says: whether the name a connect
// goes by (SNI, Host, a proxy's target) is really the address it reached.
// A name only the process itself claims does not make an upstream allowed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "keytrail/correlate/inputs.h"
#include "keytrail/probe/events.h"

namespace keytrail
{

class NameTable
{
      public:
	// capture: DNS answers are seen; without them a name is never
	// "unverified", only unchecked.
	explicit NameTable(bool capture) : capture_(capture) {}

	void learn(const DnsEvent &e, int64_t now_ns);
	// ConnectSeen::NameCheck of name for addr, as the processes in pids
	// (the one that connected, then its parent and its workload's root,
	// which outlive a short-lived curl) resolve names.
	uint8_t check(std::string name, const std::string &addr, const std::vector<pid_t> &pids,
	              int64_t now_ns);
	// Whether host (a name or an address) is addr: for a proxy's host.
	bool same(const std::string &host, const std::string &addr, const std::vector<pid_t> &pids,
	          int64_t now_ns);
	size_t size() const { return names_.size(); }

      private:
	struct Known {
		std::string addr;
		int64_t expires_ns;
	};
	bool resolved(const std::string &name, const std::string &addr, int64_t now_ns) const;
	// Whether the /etc/hosts the process sees maps name to addr; nullopt
	// when the process is gone or going (its root no longer readable).
	std::optional<bool> in_hosts(const std::string &name, const std::string &addr, pid_t pid);
	void add(const std::string &name, const std::string &addr, uint32_t ttl, int64_t now_ns);

	bool capture_;
	std::unordered_map<std::string, std::vector<Known>> names_;
	// /etc/hosts files by (dev, inode), read again when their mtime
	// changes: name -> addresses. A mount namespace may bind another file
	// over /etc/hosts, so the file, not the root, is the key.
	struct Hosts {
		int64_t mtime_ns = -1;
		std::unordered_map<std::string, std::vector<std::string>> names;
	};
	std::map<std::pair<uint64_t, uint64_t>, Hosts> hosts_;
};

// The proxies a process's environment configures (HTTPS_PROXY, HTTP_PROXY,
// ALL_PROXY, lower case too): "host:port" each, user and password dropped.
std::vector<std::string> proxies_from_environ(const std::vector<std::string> &env);

// "::ffff:10.0.0.1" -> "10.0.0.1"; other addresses as they are.
std::string plain_address(const std::string &addr);

} // namespace keytrail
