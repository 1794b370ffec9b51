// The agent's view of processes: the table, each process's workload
// identity (resolved once per exec), and what the correlator has been told
// about it. Every other stage of the agent looks processes up here.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "keytrail/agent/counters.h"
#include "keytrail/config/config.h"
#include "keytrail/correlate/inputs.h"
#include "keytrail/detect/mcp_detect.h"
#include "keytrail/identity/cgroup.h"
#include "keytrail/identity/identity.h"
#include "keytrail/probe/events.h"
#include "keytrail/process/table.h"
#include "keytrail/util/clock.h"

namespace keytrail
{

// A process's stdin link ("pipe:[123]") when its fd 0 and fd 1 are both
// pipes or sockets (the stdio MCP transport), else "".
std::string stdio_of(pid_t pid);
// Whether a server's argv asks for the Streamable HTTP / SSE transport.
bool http_transport(const std::vector<std::string> &argv);

// The correlator's inputs go out through this (the agent also records them).
using Feed = std::function<void(const Input &)>;

// A table entry for a process first seen in /proc; its argv masked.
ProcessInfo process_from_snapshot(const ProcSnapshot &snap);

class Processes
{
      public:
	Processes(const Config &cfg, std::string host, const Clock &clock, AgentCounters &counters,
	          Feed feed);

	ProcessTable &table() { return table_; }
	// Wall time of a kernel (CLOCK_BOOTTIME) stamp.
	int64_t wall_ns(uint64_t boot_ns) const { return clock_.boot_to_wall_ns(boot_ns); }
	const ProcessTable &table() const { return table_; }

	// The process that made an event: the table's entry for that instance,
	// else read from /proc (it started before us, or its exec was lost).
	// Null, and counted as an attribution failure, when neither knows it.
	ProcessInfo *of(const EventContext &ctx);
	// The identity records give the process: its workload's (resolved once,
	// at the root), else its own, resolved on first need (per exec).
	const Identity &identity(ProcessInfo &p);
	// A new workload rooted at p: the server a detection rule matched.
	std::shared_ptr<const Workload> make_workload(ProcessInfo &p, const McpMatch &m);
	// Whether the process runs a keytrail binary (this agent, another one, a
	// subcommand): such a process is never a holder of what it examines.
	bool is_keytrail(const ProcessInfo &p) const;
	// Ancestors as exec records carry them.
	nlohmann::json ancestry_json(ProcessInfo &p);
	// Wall time a process started (its exec, else /proc's start time).
	int64_t started_ns(const ProcessInfo &p) const;
	// Tells the correlator the process exists (ancestors first), once.
	void correlate(ProcessInfo &p, bool forked = false, bool env_observed = false);
	void ensure_correlated(ProcessInfo &p)
	{
		if (!p.correlated)
			correlate(p);
	}
	// A reader of a watched file, as /proc shows it now: command line, tty,
	// login session, and its ancestors' (which the table may never have
	// seen exec).
	void describe_reader(ProcessInfo &p);
	// Its exit, if the correlator knows it.
	void exited(ProcessInfo &p, int64_t when_ns);

	// New identity rules and client rules (SIGHUP).
	void reconfigure(const Config &cfg);
	// Called with the pid of each process retired without its exit record.
	void on_retired(std::function<void(uint32_t pid)> f) { retired_ = std::move(f); }

      private:
	const Config *cfg_;
	std::string host_;
	const Clock &clock_;
	AgentCounters &counters_;
	Feed feed_;
	ProcessTable table_;
	IdentityResolver resolver_;
	CgroupPaths cgroup_paths_;
	std::function<void(uint32_t)> retired_;
	// Own identity, ignoring the workload's.
	Identity resolve_own(ProcessInfo &p, const std::string &server);
};

} // namespace keytrail
