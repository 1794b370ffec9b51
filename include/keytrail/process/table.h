// The process table: every process the agent knows of, from exec/fork/exit
// events and a /proc scan at start-up. Keyed by pid, but every entry carries
// its start time, so a reused pid is a new entry with a new exec_id.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "keytrail/identity/identity.h"
#include "keytrail/schema/record.h"

namespace keytrail
{

// A workload: an MCP server and everything it starts. The root is the
// process a detection rule matched; its descendants (helpers, shims,
// children forked before or after the exec that made it a server) are the
// same workload with the same identity, unless one is itself a different
// MCP server or an identity rule names it (docs/identity.md).
struct Workload {
	std::string root_exec_id;
	std::string server; // canonical MCP server name ("" for a --track'ed tree)
	std::string rule;   // the detection rule that matched the root
	Identity identity;  // resolved once, from the root
	// The root's stdin at detection ("pipe:[123]", "socket:[9]"), when it is
	// a pipe or socket: the stdio MCP transport. Its processes reading that
	// same stdin are its server (npx's node child); others are its tools.
	std::string stdio;
	// "stdio" (stdio above), "http" (no stdio pipe, and its argv asks for
	// the Streamable HTTP or SSE transport or a port), "" (cannot tell).
	std::string transport;
};

// A credential a process obtained: only its fingerprint and where from.
struct HeldSecret {
	std::string fingerprint, type, source, location, name;
	int64_t time_ns = 0;
};

struct ProcessInfo {
	uint32_t pid = 0, ppid = 0;
	uint32_t uid = 0, gid = 0;
	uint32_t loginuid = UINT32_MAX, sessionid = UINT32_MAX; // UINT32_MAX: not read
	uint32_t tty_nr = 0, sid = 0;                           // 0: none, or not read
	uint64_t start_ticks = 0;                               // /proc/PID/stat starttime
	std::string exec_id;
	std::string parent_exec_id; // "" until the parent is known
	std::string comm, exe;
	std::vector<std::string> argv; // masked: safe to write
	uint64_t cgroup_id = 0;
	bool tty = false;
	bool tracked = false;
	bool self = false;   // a keytrail process (this agent, another, a subcommand)
	bool reader = false; // tracked for opening a watched credential file (or a child of such)
	bool untracked = false;           // the agent removed the kernel's mark
	bool pending = false;             // marked by the kernel, not followed: its exec decides
	bool parent = false;              // an entry's parent_exec_id names this instance
	std::vector<std::string> proxies; // "host:port" its *_PROXY variables name
	std::shared_ptr<const Workload> workload; // null: not part of an MCP workload
	std::optional<Identity> identity;         // resolved once, at exec or first need
	std::vector<HeldSecret> secrets;          // obtained from argv, env, files
	bool secrets_collected = false;           // argv and environ scanned for this exec
	int64_t fds_checked_ns = 0;               // last look at /proc/PID/fd (agent clock)
	std::set<std::pair<uint64_t, uint64_t>> fds_checked; // inodes already looked at
	bool correlated = false;                             // the correlator knows this exec
	int64_t exec_time_ns = 0;                            // wall clock; 0 if only seen in /proc
	int64_t exit_time_ns = 0;                            // 0 while alive
	// The members every observation of this process repeats (host, pid,
	// comm, exec_id, identity, ...), serialized once, and what they were
	// built from: a changed ppid, uid, gid, comm or tracking rebuilds them.
	struct Members {
		uint32_t ppid = 0, uid = 0, gid = 0;
		std::string comm;
		bool identity = false;
		std::shared_ptr<const std::string> json;
		std::shared_ptr<const IndexKeys> keys; // what the journal indexes them by
	} members;

	const std::string &server() const
	{
		static const std::string none;
		return workload ? workload->server : none;
	}
};

// Facts read from /proc/PID; nullopt when the process is gone or unreadable.
struct ProcSnapshot {
	uint32_t pid = 0, ppid = 0, uid = 0, gid = 0;
	uint32_t loginuid = UINT32_MAX, sessionid = UINT32_MAX; // audit login session
	uint32_t tty_nr = 0, sid = 0; // controlling terminal's device, POSIX session
	uint64_t start_ticks = 0;
	bool tty = false;
	std::string comm, exe;
	std::vector<std::string> argv; // raw: mask before keeping
};
std::optional<ProcSnapshot> read_proc(uint32_t pid, const std::string &proc_root = "/proc");
std::vector<uint32_t> list_pids(const std::string &proc_root = "/proc");

// First 8 hex digits of /proc/sys/kernel/random/boot_id.
std::string read_boot_id();
// "<boot>:<start_ticks>:<pid>": unique across pid reuse and reboots.
std::string make_exec_id(const std::string &boot_id, uint64_t start_ticks, uint32_t pid);

class ProcessTable
{
      public:
	ProcessTable(std::string boot_id, int64_t exit_grace_ns, size_t max_exited = 65536);

	// Inserts or replaces the live entry for info.pid (a new start time is a
	// new process: the old entry, if any, is retired as exited).
	ProcessInfo &upsert(ProcessInfo info);
	ProcessInfo *find(uint32_t pid);
	const ProcessInfo *find(uint32_t pid) const;
	// The entry for pid only if it is that process instance.
	ProcessInfo *find_instance(uint32_t pid, uint64_t start_ticks);

	// Any instance, live or exited, by its exec_id.
	ProcessInfo *find_exec(const std::string &exec_id);
	// The parent instance of p (live or exited), when the table knows it.
	ProcessInfo *parent_of(ProcessInfo &p);
	// p's ancestors, nearest first, up to depth (0 = all the table knows).
	std::vector<ProcessInfo *> ancestry(ProcessInfo &p, size_t depth);

	void mark_exited(uint32_t pid, int64_t when_ns);
	// Drops the live entry for pid without keeping it as exited: for an
	// exited process nothing can ask for again (not tracked, never
	// correlated, no entry's parent).
	void forget(uint32_t pid) { live_.erase(pid); }
	// Live entries whose process is gone without an exit record (it was
	// dropped) are retired as exited at when_ns. Returns how many.
	size_t sweep_vanished(int64_t when_ns);
	// Called with each live entry retired without its exit record: its pid
	// was reused (exit_time_ns 0), or sweep_vanished found it gone.
	void on_missed_exit(std::function<void(const ProcessInfo &)> f)
	{
		missed_exit_ = std::move(f);
	}
	// Drops exited entries older than the grace period (and the oldest
	// beyond max_exited). Returns how many were dropped.
	size_t evict(int64_t now_ns);

	std::vector<uint32_t> children_of(uint32_t pid) const;
	size_t live() const { return live_.size(); }
	size_t count_tracked() const;
	size_t exited() const { return exited_.size(); }
	const std::string &boot_id() const { return boot_id_; }

      private:
	void retire(std::unordered_map<uint32_t, ProcessInfo>::iterator it);

	std::string boot_id_;
	int64_t grace_ns_;
	size_t max_exited_;
	std::unordered_map<uint32_t, ProcessInfo> live_;
	std::deque<ProcessInfo> exited_; // in exit order (deque: references stay valid)
	std::unordered_map<std::string, ProcessInfo *> by_exec_; // exited entries only
	std::function<void(const ProcessInfo &)> missed_exit_;
};

} // namespace keytrail
