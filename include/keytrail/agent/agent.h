// The daemon behind `keytrail run`: loads the probes, decides what to track,
// turns kernel records into JSON lines and reports its own health.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/detect/mcp_detect.h"
#include "keytrail/identity/cgroup.h"
#include "keytrail/identity/identity.h"
#include "keytrail/ledger/ledger.h"
#include "keytrail/output/metrics.h"
#include "keytrail/output/output.h"
#include "keytrail/output/record.h"
#include "keytrail/probe/events.h"
#include "keytrail/probe/loader.h"
#include "keytrail/process/table.h"
#include "keytrail/secrets/sources.h"
#include "keytrail/util/clock.h"

namespace keytrail
{

struct AgentOptions {
	std::string output;       // "" = the config's outputs; "-" = stdout; else a file
	bool events = false;      // OR'ed with agent.events
	double duration_s = 0;    // stop after this long; 0 = until signalled
	std::string state_dir;    // overrides agent.state_dir
	std::vector<pid_t> track; // extra pids to track from the start (tests, --track)
	std::string format;       // "" = as configured; "ocsf": alerts as OCSF findings
	std::string record;       // write the correlator's inputs here (keytrail replay)
	std::string metrics;      // overrides agent.metrics_address
};

class Agent
{
      public:
	Agent(Config cfg, AgentOptions opts);
	~Agent();

	// Runs until *stop is set or the duration elapses; reloads the config
	// (inventory, identity rules) whenever *reload is set. Returns the exit code.
	int run(const std::atomic<bool> &stop, std::atomic<bool> *reload = nullptr);

	// Marks a process and its descendants as tracked (the MCP server rule
	// that matched, or "manual").
	void track(uint32_t pid, const McpMatch &why);
	// Watches a file's inode: any process that opens it is reported.
	bool watch_path(const std::string &path);

      private:
	struct OpenFd {
		std::string path;
		uint64_t dev = 0, ino = 0;
	};
	struct HeldConnect {
		ConnectEvent ev;
		std::chrono::steady_clock::time_point deadline;
	};

	void start();
	void on_record(const void *data, size_t size);
	void handle(ExecEvent &e);
	void handle(ForkEvent &e);
	void handle(ExitEvent &e);
	void handle(OpenEvent &e);
	void handle(CloseEvent &e);
	void handle(ConnectEvent &e);
	void handle(PayloadEvent &e);
	void scan_proc();
	void flush_fds(uint32_t pid, uint32_t reason, const EventContext &ctx);
	void emit_connect(const ConnectEvent &c, const std::string &sni, const std::string &host);
	void expire_connects(bool all);
	void sweep_fd_states();
	void missed_exit(const ProcessInfo &p, int64_t when_ns);
	void emit_health(bool final);
	nlohmann::json health_record(bool final);
	void write_status(const nlohmann::json &health, bool running);
	nlohmann::json base(const char *type, const EventContext &ctx);
	Record observation(const char *type, const EventContext &ctx);
	ProcessInfo *process_for(const EventContext &ctx);
	// The process's identity, resolved on first need (per exec, not per event).
	const Identity &identity_of(ProcessInfo &p);
	nlohmann::json ancestry_json(ProcessInfo &p);
	// Secrets: argv and environ of a process (once per exec), files it opens.
	void collect_process_secrets(ProcessInfo &p, const std::vector<std::string> *raw_argv,
	                             const SecretBytes *env_block);
	void file_secrets(ProcessInfo *p, const OpenEvent &e, const std::string &path);
	void obtained(ProcessInfo *p, const Obtained &o, int64_t time_ns);
	void scan_mcp_configs();
	void open_outputs();
	// The correlator's inputs: every one also goes to the recording.
	void feed(const Input &in);
	void feed_start(ProcessInfo &p, bool forked, bool env_observed);
	void on_correlated(Record &&record);
	nlohmann::json latency_json() const;
	void reload_config();
	size_t tracked_live() const;
	// Wall time a process started (its exec, else /proc's start time).
	int64_t started_ns(const ProcessInfo &p) const;

	Config cfg_;
	AgentOptions opts_;
	bool events_;
	std::string host_;
	SystemClock clock_;
	Loader loader_;
	Output out_;
	std::unique_ptr<Correlator> corr_;
	std::unique_ptr<RecordingWriter> recording_;
	std::unique_ptr<MetricsServer> metrics_;
	int64_t feeding_ns_ = 0;          // time of the input being fed
	std::vector<int64_t> latency_ns_; // event -> alert/secret_use, a sample
	uint64_t latency_seen_ = 0;
	bool want_events_ = false; // build raw event records (journal or events)
	McpDetector detector_;
	ProcessTable table_;
	IdentityResolver resolver_;
	CgroupPaths cgroup_paths_;
	std::unique_ptr<SecretSources> sources_;
	std::unique_ptr<Ledger> ledger_;
	std::map<std::pair<uint64_t, uint64_t>, std::string> watched_paths_;
	std::unordered_map<uint32_t, std::map<int, OpenFd>> open_fds_;
	std::map<std::pair<uint32_t, int>, HeldConnect> held_;
	std::chrono::steady_clock::time_point started_;

	// Userspace counters, reported in `health`.
	uint64_t records_ = 0, decode_errors_ = 0, late_payloads_ = 0, unattributed_ = 0;
	uint64_t by_type_[8] = {};
	uint64_t fd_states_swept_ = 0;
	uint64_t exits_missed_ = 0;
	const uint32_t self_pid_ = static_cast<uint32_t>(getpid());
	// Processes whose exec hint the rules rejected, by pid: their next exec
	// decides whether they stay tracked.
	struct HintRejected {
		uint64_t start_ticks;
		bool untracked; // now, or deferred to that next exec
	};
	std::unordered_map<uint32_t, HintRejected> hint_rejected_;
	uint64_t identities_resolved_ = 0, identities_degraded_ = 0;
	uint64_t secrets_obtained_ = 0, environ_unreadable_ = 0, rotations_ = 0, ledger_errors_ = 0;
	uint64_t reloads_ = 0, reload_errors_ = 0;
	uint64_t hint_hits_ = 0, hint_misses_ = 0;
};

} // namespace keytrail
