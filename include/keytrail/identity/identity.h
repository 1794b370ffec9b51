// Workload identity, SPIFFE/SPIRE style: selectors resolved per process
// (unix, cgroup, k8s, systemd, mcp, env), then the config's identity rules
// map a selector set to an id; with no rule a stable default id is derived.
// Resolution runs once per exec (or first sight), never per event.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail
{

using Selectors = std::map<std::string, std::string>;

struct Identity {
	std::string id;
	Selectors selectors;
	std::vector<std::string> unresolved; // selector groups that could not be read
	// The rule that gave the id names a process by its binary (unix.exe or
	// unix.sha256): inside a workload, that process keeps this identity.
	bool names_process = false;
	bool resolved() const { return unresolved.empty(); }
	nlohmann::json to_json() const;
};

// What identity resolution needs to know about a process; gathered from
// /proc once, with what the kernel event already told us as a fallback.
struct WorkloadFacts {
	uint32_t pid = 0, uid = 0, gid = 0;
	std::string exe;
	std::optional<std::string> cgroup_path; // nullopt: unreadable
	std::string cwd;
	std::string transport = "unknown"; // "stdio" when the parent holds our stdin/stdout pipes
	std::string mcp_server, mcp_client;
	std::optional<std::string> exe_sha256;
};

// Reads /proc/PID for the facts above; fields it cannot read stay empty.
WorkloadFacts gather_facts(uint32_t pid, uint32_t ppid, const std::string &proc_root = "/proc");

// "stdio" when fds 0 and 1 are pipes or sockets whose other ends the
// parent holds, else "unknown".
std::string stdio_transport(uint32_t pid, uint32_t ppid, const std::string &proc_root = "/proc");

class IdentityResolver
{
      public:
	IdentityResolver(std::string host, std::string trust_domain,
	                 std::vector<IdentityRule> rules,
	                 std::vector<EnvironmentRule> environments);

	Identity resolve(const WorkloadFacts &f);
	// Whether a rule could name one process of a workload (it matches on
	// unix.exe or unix.sha256): only then is a descendant's own identity
	// worth resolving.
	bool has_process_rules() const;

	// SHA-256 of a process's executable, computed once per binary (cached by
	// device, inode, size and mtime). nullopt when /proc/PID/exe is gone.
	std::optional<std::string> exe_sha256(uint32_t pid, const std::string &proc_root = "/proc");

	std::string user_name(uint32_t uid);
	std::string group_name(uint32_t gid);

	// Template expansion: {selector} -> value ("unknown" when absent).
	static std::string expand(const std::string &tmpl, const Selectors &s);
	static bool matches(const SelectorMatch &m, const Selectors &s);

      private:
	std::string host_, trust_domain_;
	std::vector<IdentityRule> rules_;
	std::vector<EnvironmentRule> environments_;
	std::unordered_map<uint32_t, std::string> users_, groups_;
	std::map<std::tuple<uint64_t, uint64_t, int64_t, int64_t>, std::string> hashes_;
};

} // namespace keytrail
