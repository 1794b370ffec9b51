// The agent behind `keytrail run`: kernel records in, records out. Each
// record goes one way through the stages:
//
//   decode -> Lifecycle (exec/fork/exit: detection, tracking, identity)
//          -> OpenFiles / SecretIntake (fds, credential files, argv, env)
//          -> HeldConnects (a connect waits for its first write's name)
//          -> the Correlator (through Feed: ProcStart, SecretSeen, ...)
//          -> EventRecords, Health -> emit
//
// It talks to the probes only through ProbeControl, and reads time only
// from its Clock, so tests drive it with synthetic kernel records and no
// root. run_agent() (agent/run.h) wires it to the real Loader and outputs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "keytrail/agent/connects.h"
#include "keytrail/agent/counters.h"
#include "keytrail/agent/health.h"
#include "keytrail/agent/lifecycle.h"
#include "keytrail/agent/name_table.h"
#include "keytrail/agent/open_files.h"
#include "keytrail/agent/processes.h"
#include "keytrail/agent/records.h"
#include "keytrail/agent/secret_intake.h"
#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/ledger/ledger.h"
#include "keytrail/mcp/jsonrpc.h"
#include "keytrail/probe/control.h"
#include "keytrail/schema/record.h"
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
	bool scan_host = true;    // scan /proc at start (unit tests turn it off)
};

class Agent
{
      public:
	using Emit = std::function<void(Record &&)>;

	// Creates the state dir, the key, the ledger and the correlator.
	// Throws Error.
	Agent(Config cfg, AgentOptions opts, ProbeControl &probe, const Clock &clock, Emit emit);
	~Agent();

	// Once the probes run: watches, the start-up scans, the `ready` record.
	void start();
	// One raw kernel record.
	void on_record(const void *data, size_t size);
	// Every poll cycle: exited processes, held connects, the correlator's
	// clock, the ledger's batch, the recording.
	void tick();
	// Every health interval (and at stop with final): sweeps, `health`,
	// status.json.
	void health(bool final);
	// Reads the config file again and applies what it can (SIGHUP).
	void reload();
	// Releases held connects and commits; then health(true).
	void stop();

	nlohmann::json health_record(bool final) const;
	void set_outputs_health(std::function<nlohmann::json()> f)
	{
		outputs_health_ = std::move(f);
	}
	// How a reload replaces the outputs (run_agent: Output::replace).
	void set_outputs_reopen(std::function<void(const Config &)> f)
	{
		outputs_reopen_ = std::move(f);
	}
	void set_metrics_port(int port) { metrics_port_ = port; }
	const Config &config() const { return cfg_; }
	const AgentOptions &options() const { return opts_; }
	const std::string &host() const { return host_; } // agent.host_name or the system's
	const Counters &counters() const { return counters_; }
	// Records that may have woken the agent (kt_record_prompt).
	uint64_t prompt_records() const { return prompt_records_; }
	// The poll period when nothing hurries: how long an exec nobody tracks
	// yet, a stdio capture or a timer may wait. 100 ms where the kernel's
	// exec hint follows every tracking rule's servers from their exec; 25 ms
	// where it cannot (a rule with no literal, a kernel without bpf_loop),
	// as that wait is then a window in which a server is not followed.
	std::chrono::milliseconds idle_poll() const
	{
		return exec_hint_complete_ ? std::chrono::milliseconds(100)
		                           : std::chrono::milliseconds(25);
	}

      private:
	void handle(ExecEvent &e); // its argv may be taken (Lifecycle::on_exec)
	void handle(const ForkEvent &e);
	void handle(const ExitEvent &e);
	void handle(const OpenEvent &e);
	void handle(const CloseEvent &e);
	void handle(const ConnectEvent &e);
	void handle(const PayloadEvent &e);
	void handle(const DnsEvent &e);
	void handle(const IoUringEvent &e);
	void handle(const StdioEvent &e);
	void name_connect(const ProcessInfo &p, ConnectSeen &in);
	void collect(const std::vector<ProcessInfo *> &procs, const ExecEvent *e = nullptr);
	void closed(const EventContext &ctx, std::vector<ClosedFd> fds);
	void reap_closed_files();
	// How often, and how many open fds at most each time.
	static constexpr std::chrono::seconds kReapInterval{1};
	static constexpr size_t kReapBudget = 2048;
	std::chrono::steady_clock::time_point next_reap_{};
	void connected(const NamedConnect &c);
	// The correlator's inputs: every one also goes to the recording.
	void feed(const Input &in);
	// A secret_use or alert from the correlator: measured (kernel event to
	// now), then written.
	void correlated(Record &&r);
	void emit(Record &&r) { emit_(std::move(r)); }

	Config cfg_;
	AgentOptions opts_;
	ProbeControl &probe_;
	const Clock &clock_;
	Emit emit_;
	std::string host_;
	std::string key_id_; // Fingerprinter::key_id() of the fingerprint key
	bool want_events_;   // observation records (agent.events or the journal)
	Counters counters_;
	uint64_t prompt_records_ = 0;
	bool exec_hint_complete_ = false; // set by start()
	Latency latency_;
	int64_t feeding_ns_ = 0; // time of the input being fed
	std::chrono::steady_clock::time_point started_;
	std::function<nlohmann::json()> outputs_health_;
	std::function<void(const Config &)> outputs_reopen_;
	int metrics_port_ = 0;
	const uint32_t self_pid_;

	std::unique_ptr<SecretSources> sources_;
	std::unique_ptr<Ledger> ledger_;
	std::unique_ptr<RecordingWriter> recording_;
	std::unique_ptr<Correlator> corr_;
	Processes procs_;
	Lifecycle lifecycle_;
	OpenFiles files_;
	HeldConnects connects_;
	std::unique_ptr<SecretIntake> intake_;
	std::unique_ptr<NameTable> names_;
	EventRecords records_;
	// JSON-RPC framing per stdio MCP server process and direction.
	struct StdioStream {
		std::string exec_id;
		mcp::Framer framer;
	};
	std::unordered_map<uint64_t, StdioStream> stdio_; // pid << 2 | kt_stdio_dir
};

} // namespace keytrail
