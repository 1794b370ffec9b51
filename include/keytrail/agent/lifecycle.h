// Process lifecycle: which processes are MCP servers (detection at exec and
// in the start-up scan of /proc), who is tracked (a server and everything
// it starts), and the kernel's exec hint confirmed or withdrawn.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "keytrail/agent/processes.h"
#include "keytrail/detect/mcp_detect.h"
#include "keytrail/probe/control.h"
#include "keytrail/probe/events.h"

namespace keytrail
{

struct ExecOutcome {
	ProcessInfo *proc = nullptr;
	bool was_tracked = false;      // tracked before this exec (its fds were watched)
	std::optional<McpMatch> match; // this image is an MCP server
	// Processes tracked now whose argv and environment are to be scanned:
	// the server and the children it forked before we saw its exec.
	std::vector<ProcessInfo *> newly_tracked;
	bool reportable() const { return was_tracked || match; }
};

class Lifecycle
{
      public:
	Lifecycle(const Config &cfg, ProbeControl &probe, Processes &procs,
	          AgentCounters &counters);

	// Takes e.argv when the exec is not reportable (not followed, no match).
	ExecOutcome on_exec(ExecEvent &e);
	// The child's table entry (new or already known).
	ProcessInfo &on_fork(const ForkEvent &e);
	void on_exit(const ExitEvent &e);

	// Marks a process and its descendants as tracked (the MCP server rule
	// that matched, or "manual"). Returns those whose secrets are still to
	// be collected.
	std::vector<ProcessInfo *> track(uint32_t pid, const McpMatch &why);
	// Every process now running: into the table, MCP servers tracked (and
	// the pids given). Returns what track() returns.
	std::vector<ProcessInfo *> scan_proc(const std::vector<pid_t> &extra);
	// Forgets exec-hint state of processes that are gone.
	void sweep();
	void reconfigure(const Config &cfg);

      private:
	ProcessInfo entry_of(const ExecEvent &e) const;
	bool keep_tracking(const ProcessInfo &p) const;
	// Marks p for stdio capture when it reads its workload's stdio pipe.
	void capture_stdio(const ProcessInfo &p);
	// Applies the real rules to an exec the kernel's hint tracked, or to
	// the next image of a process we let go of.
	void settle_hint(const ExecEvent &e, ProcessInfo &info, bool matched, bool *was_tracked);
	// Stops following pid's current image (a rejected hint, or no workload
	// of ours). Its next exec, maybe already under way, decides afresh.
	void let_go(uint32_t pid, uint64_t start_ticks, const std::string &comm);

	ProbeControl &probe_;
	Processes &procs_;
	AgentCounters &counters_;
	McpDetector detector_;
	const uint32_t self_pid_;
	// Processes we let go of, by pid: their next exec decides whether
	// they stay tracked.
	struct LetGo {
		uint64_t start_ticks;
		bool untracked; // now, or deferred to that next exec
	};
	std::unordered_map<uint32_t, LetGo> let_go_;
	// npm package names by (root dir's dev, inode, path): a node script's
	// package is read from disk once, not at every exec.
	std::map<std::tuple<uint64_t, uint64_t, std::string>, std::optional<std::string>> packages_;
	std::optional<std::string> package_of(pid_t pid, const std::string &path);
};

} // namespace keytrail
