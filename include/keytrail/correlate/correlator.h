// The correlator: joins processes, the secrets they hold and the upstreams
// they connect to into `secret` and `secret_use` records, and raises alerts
// (docs/alerts.md). It knows nothing of the kernel or /proc: the agent,
// `keytrail replay` and the tests feed it the same Inputs, and it reads time
// only from them and from the Clock it is given. What the inventory allows
// is decided by correlate/policy.h, which `keytrail report` shares.
//
// Sources: correlator.cpp (processes, secrets, health, time, alerts),
// uses.cpp (connects become secret uses), records.cpp (how records look).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/correlate/findings.h"
#include "keytrail/correlate/inputs.h"
#include "keytrail/schema/record.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/counters.h"

namespace keytrail
{

#define KT_CORRELATOR_COUNTERS(X)                                                                  \
	X(inputs, "Inputs the correlator was fed")                                                 \
	X(secret_uses, "secret_use records written")                                               \
	X(sightings_inherited,                                                                     \
	  "Environment credentials a child inherited from a parent already reported, not written") \
	X(uses_deduplicated, "Repeated uses within the dedupe window, counted not written")        \
	X(ambiguous_uses, "Uses by a process holding several credentials, none bound")             \
	X(connects_not_upstream, "Connects that are not upstreams (loopback, DNS, unix)")          \
	X(connects_ignored_not_inet, "Connects on unix or netlink sockets")                        \
	X(connects_ignored_failed, "Connects that failed")                                         \
	X(connects_ignored_dns, "Connects to port 53 (the resolver)")                              \
	X(connects_ignored_no_peer,                                                                \
	  "UDP connects to port 0 or an unspecified address (getaddrinfo probes)")                 \
	X(connects_ignored_loopback, "Loopback connects that name no remote host")                 \
	X(launcher_fetches,                                                                        \
	  "Connects of a package runner (npx, uvx) holding only its server's credentials")         \
	X(credentials_out_of_scope,                                                                \
	  "Connects elsewhere than the registry a held credential is scoped to (.npmrc //host/)")  \
	X(unknown_process, "Inputs naming a process the correlator was never told of")             \
	X(alerts, "Alerts and finding updates written")                                            \
	X(alert_updates, "Finding updates written (a new holder, upstream, reason, window)")       \
	X(alerts_excepted, "Alerts an `exceptions:` entry matched, not written")                   \
	X(alerts_deduplicated, "Repeats of a known finding with nothing new, counted")             \
	X(alerts_rate_limited, "Alerts not written: over correlate.max_alerts_per_minute")         \
	X(mcp_messages, "JSON-RPC messages of stdio MCP servers read")                             \
	X(tool_calls, "tool_call records written")                                                 \
	X(tool_calls_unanswered, "Tool calls that ended with no reply (server exit, expiry)")      \
	X(tool_calls_evicted, "Tool calls forgotten unwritten: over the in-flight bound")          \
	X(mcp_replies_unmatched, "Replies whose id matched no request in flight")                  \
	X(uses_in_concurrent_calls,                                                                \
	  "Connects while several tool calls of the workload were in flight (none credited)")

struct CorrelatorCounters {
	KT_CORRELATOR_COUNTERS(KT_COUNTER_FIELD)
	std::map<std::string, uint64_t> alerts_by_rule;
	template <typename F> void each(F &&f) const { KT_CORRELATOR_COUNTERS(KT_COUNTER_VISIT) }
};

class Correlator
{
      public:
	using Emit = std::function<void(Record &&record)>;
	// Called for each use bound to a credential (the agent's ledger):
	// upstream as records name it ("name:port") and the address.
	using OnUse = std::function<void(const std::string &fingerprint,
	                                 const std::string &identity, const std::string &upstream,
	                                 const std::string &addr, int64_t time_ns)>;

	Correlator(std::string host, const Config &cfg, const Clock &clock, Emit emit);

	void feed(const Input &in);
	// Periodic work (stale checks, expiry of old state) at the clock's now.
	void tick();
	// Writes every tool call left (the agent is stopping): those in flight
	// with outcome "unfinished".
	void flush_tool_calls();
	void set_on_use(OnUse f) { on_use_ = std::move(f); }
	// Findings a previous run left (the ledger), and where a finding's
	// changes go (the ledger again): a restart raises nothing known again.
	void set_known_findings(std::vector<FindingState> known)
	{
		findings_.load(std::move(known));
	}
	void set_on_finding(std::function<void(const FindingState &)> f)
	{
		on_finding_ = std::move(f);
	}
	// What tool_credential_drift learned before (the ledger), and where what
	// it learns goes: (server, tool, credential fingerprint, upstream).
	struct ToolUpstream {
		std::string server, tool, fingerprint, upstream;
		int64_t first_ns = 0;
	};
	void set_tool_baseline(const std::vector<ToolUpstream> &known);
	void set_on_tool_upstream(std::function<void(const ToolUpstream &)> f)
	{
		on_tool_upstream_ = std::move(f);
	}
	// The tool call of `exec_id`'s workload in flight at t, if exactly one:
	// {id, tool, client, started} (connect records carry it too).
	nlohmann::json tool_call_at(const std::string &exec_id, int64_t t) const;
	// A new inventory (SIGHUP): every holding is matched again.
	void set_inventory(std::vector<InventoryEntry> inv);
	void set_exceptions(std::vector<AlertException> x) { cfg_.exceptions = std::move(x); }
	// The correlate: settings (windows, limits, disabled rules, proxies,
	// exceptions), applied from the next input on.
	void set_config(const CorrelateConfig &c)
	{
		cfg_ = c;
		disabled_ = {c.disabled_rules.begin(), c.disabled_rules.end()};
		next_stale_check_ = 0; // a new interval counts from now
	}

	const CorrelatorCounters &counters() const { return counters_; }
	size_t processes() const { return procs_.size(); }
	size_t secrets() const { return secrets_.size(); }
	// The counters, by rule, and the two gauges, as `health` shows them.
	nlohmann::json counters_json() const;

      private:
	struct Holding {
		uint32_t secret; // index into secrets_
		std::string source, location, name;
		int64_t time_ns = 0;
		int inv = -1;          // inventory entry index
		uint64_t identity = 0; // hash of the identity it was seen under
	};
	struct Dedupe {
		int64_t last_ns = 0;
		uint64_t suppressed = 0;
	};
	struct Proc {
		ProcStart start;
		std::vector<std::pair<uint64_t, Dedupe>> uses; // hash of credential+upstream
		int64_t exit_ns = 0;
		bool on_terminal = false; // it or an ancestor has a controlling terminal
		bool in_workload = false; // an MCP server or one of its descendants
		bool interactive = false; // on a terminal and not in a workload: a person
		std::vector<Holding> held;
		// "process" and "identity" serialized once, for its secret_use records.
		mutable std::shared_ptr<const std::string> process_raw, identity_raw;
		mutable std::string ancestor_raw; // as an entry of others' ancestry
	};
	struct Holder {
		std::string environment;
		int64_t first_ns = 0;
		std::string exec_id;
	};
	struct Secret {
		std::string fingerprint, type;
		uint64_t fp_hash = 0;
		int64_t first_seen_ns = 0, last_used_ns = 0, oldest_mtime_ns = 0;
		bool retired = false;   // rotated out of every slot it was in
		bool in_config = false; // hard-coded in an MCP client config
		bool mcp_held = false;  // held by a tracked (MCP) workload
		int inv = -1;           // the entry of its latest holding
		std::string last_source, last_location;
		std::map<std::string, Holder> holders; // identity id -> where
		std::set<std::string> environments;
	};
	// One connect on its way to becoming secret uses (uses.cpp).
	struct Use;
	using Candidates = std::vector<std::pair<const Proc *, const Holding *>>;

	void on(const ProcStart &e);
	void on(const ProcExit &e);
	void on(const SecretSeen &e);
	void on(const ConnectSeen &e);
	void on(const HealthSeen &e);
	void on(const Tick &e);
	void on(const IoUringSeen &e);
	void on(const McpSeen &e);

	// MCP sessions and tool calls (tool_calls.cpp).
	struct McpSession {
		std::string exec_id, workload, server; // the server process and its workload
		std::string client_name, client_version, server_name, server_version, protocol;
		int64_t first_ns = 0;
		std::vector<std::pair<std::string, std::string>> requests; // id -> method, bounded
	};
	struct ToolCall {
		std::string exec_id, workload, server, id, tool, client;
		int64_t start_ns = 0, end_ns = 0; // end 0: in flight
		const char *outcome = nullptr;    // ok, error, cancelled, no_reply
		bool partial = false;
		std::vector<std::string> upstreams;
		std::vector<std::pair<uint32_t, std::string>> credentials; // secret, upstream
		std::vector<std::string> argument_keys; // when the agent keeps them
	};
	// The calls of p's workload in flight at t.
	void calls_at(const Proc &p, int64_t t, std::vector<ToolCall *> &out);
	const std::string &workload_of(const Proc &p) const
	{
		return p.start.workload.empty() ? p.start.exec_id : p.start.workload;
	}
	void end_call(ToolCall &c, int64_t t, const char *outcome);
	void write_calls(int64_t now, bool all);
	nlohmann::json call_ref(const ToolCall &c) const;
	// A use bound during a call (or outside one): credit, drift, outside.
	void tool_use(Use &u, Secret &s, const Holding *h);
	bool stdio_session(const Proc &p, int64_t t) const;

	// Secrets (correlator.cpp).
	Secret &learn(const SecretSeen &e);
	void on_config_secret(Secret &s, const SecretSeen &e);
	void holding_alerts(Secret &s, const Proc &p, const Holding &h, const SecretSeen &e);
	uint32_t secret_index(const std::string &fp, const std::string &type);
	// The process an input names; counted in unknown_process when absent.
	Proc *known_proc(const std::string &exec_id);
	int match_inv(const Secret &s, const Holding &h, const std::string &identity) const;
	const InventoryEntry *entry(int inv) const { return inv >= 0 ? &inv_[inv] : nullptr; }
	void check_stale(Secret &s, int64_t now, const Proc *p);
	void check_shared(Secret &s, const Proc &p, const std::string &identity);

	// Uses (uses.cpp).
	bool is_upstream(const ConnectSeen &e);
	// Secrets a process can use at time t: its own and, when its own
	// environment was not seen, what its ancestors passed in env/argv.
	void usable(const Proc &p, int64_t t, Candidates &out) const;
	void bind(Use &u);
	void ambiguous_use(Use &u);
	void bound_use(Use &u, const Proc *holder, const Holding *h, const char *pairing);
	void use_alerts(Use &u, Secret &s, const Holding *h);
	// Once per (process, key) and dedupe window; repeats are counted.
	bool first_use(Proc &p, uint64_t key, int64_t t, uint64_t *repeats);

	// How records look (records.cpp).
	nlohmann::json secret_json(const Secret &s, const Holding *h) const;
	nlohmann::json identity_json(const Proc &p) const;
	nlohmann::json process_json(const Proc &p) const;
	void add_process_raw(const Proc &p, Record &r) const;
	// "identity" serialized once per process.
	const std::shared_ptr<const std::string> &identity_raw(const Proc &p) const;
	const std::string &process_raw(const Proc &p) const;
	nlohmann::json base(const char *type, int64_t event_ns) const;
	// The `secret` record of a sighting (p null: an MCP client config).
	Record secret_record(const Secret &s, const Holding &h, const SecretSeen &e,
	                     const Proc *p) const;
	// An alert about a credential a process holds or used.
	nlohmann::json holding_alert(const Secret &s, const Holding *h, const Proc &p,
	                             int64_t event_ns, const std::string &summary) const;
	// "curl (pid 42, spiffe://...)"
	static std::string who(const Proc &p);

	// What an alert is about, for `exceptions:`.
	struct Subject {
		const Proc *proc = nullptr;
		const Secret *secret = nullptr;
		std::string upstream; // "name:port"
	};
	bool excepted(const char *rule, const Subject &who) const;
	// One occurrence of the finding (rule, key): excepted, a repeat, rate
	// limited, or written (built only then) as an alert or an update.
	void alert(const char *rule, const std::string &key, const std::string &facet, int64_t now,
	           const Subject &who, const std::function<nlohmann::json()> &build);
	// Who reads for human_use: the login session when known, else the identity.
	static std::string reader_of(const Proc &p);
	void expire(int64_t now);
	void forget_oldest_exited();

	std::string host_;
	const Clock &clock_;
	Emit emit_;
	OnUse on_use_;
	static std::string tool_state_args(const Config &cfg);
	std::string investigate(const nlohmann::json &alert) const;

	CorrelateConfig cfg_;
	std::vector<InventoryEntry> inv_;
	uint32_t ancestry_depth_;
	std::set<std::string> disabled_;

	std::unordered_map<uint64_t, Proc> procs_;           // by hash of exec_id
	std::deque<std::pair<int64_t, std::string>> exited_; // exit time, exec_id
	int64_t grace_ns_;
	size_t max_exited_; // exited processes kept, at most (agent.max_exited_processes)
	std::vector<Secret> secrets_;
	std::unordered_map<std::string, uint32_t> secret_ids_;
	FindingBook findings_;
	std::string state_args_; // " -c CONFIG" for the investigate command, or ""
	std::function<void(const FindingState &)> on_finding_;
	int64_t next_stale_check_ = 0, next_expire_ = 0;
	int64_t rate_window_start_ = 0;
	uint32_t rate_count_ = 0;
	HealthSeen last_health_{};
	bool have_health_ = false;
	CorrelatorCounters counters_;
	Candidates cands_, distinct_, bound_;               // scratch, reused per connect
	std::unordered_map<uint64_t, McpSession> sessions_; // by proc_key of the server
	std::deque<ToolCall> calls_;                        // in flight, then until written
	std::vector<ToolCall *> in_flight_;                 // scratch
	struct Baseline {
		int64_t first_ns = 0;
		std::vector<std::string> upstreams;
	};
	std::unordered_map<std::string, Baseline> baseline_; // server|tool|fingerprint
	std::function<void(const ToolUpstream &)> on_tool_upstream_;
};

} // namespace keytrail
