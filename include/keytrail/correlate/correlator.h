// The correlator: joins processes, the secrets they hold and the upstreams
// they connect to into `secret_use` records, and raises alerts (docs/alerts.md).
// It knows nothing of the kernel or /proc: the agent, `keytrail replay` and
// the tests feed it the same Inputs, and it reads time only from them and
// from the Clock it is given.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/correlate/inputs.h"
#include "keytrail/correlate/rules.h"
#include "keytrail/output/record.h"
#include "keytrail/util/clock.h"

namespace keytrail
{

// Whether an upstream matches one of an inventory entry's allowed_upstreams:
// a CIDR ("10.0.0.0/8", "::1/128") against the address, else a host glob
// against the SNI, the HTTP Host and the address.
bool upstream_allowed(const std::vector<std::string> &patterns, const std::string &addr,
                      const std::string &sni, const std::string &http_host);

struct CorrelatorCounters {
	uint64_t inputs = 0, secret_uses = 0, uses_deduplicated = 0, ambiguous_uses = 0;
	uint64_t not_upstream = 0, unknown_process = 0;
	uint64_t alerts = 0, alerts_deduplicated = 0, alerts_rate_limited = 0;
	std::map<std::string, uint64_t> alerts_by_rule;
};

class Correlator
{
      public:
	using Emit = std::function<void(Record &&record)>;
	// Called for each use bound to a credential (the agent's ledger).
	using OnUse =
	    std::function<void(const std::string &fingerprint, const std::string &identity,
	                       const std::string &upstream, int64_t time_ns)>;

	Correlator(std::string host, const Config &cfg, const Clock &clock, Emit emit);

	void feed(const Input &in);
	// Periodic work (stale checks, expiry of old state) at the clock's now.
	void tick();
	void set_on_use(OnUse f) { on_use_ = std::move(f); }
	// A new inventory (SIGHUP): every holding is matched again.
	void set_inventory(std::vector<InventoryEntry> inv);

	const CorrelatorCounters &counters() const { return counters_; }
	size_t processes() const { return procs_.size(); }
	size_t secrets() const { return secrets_.size(); }
	nlohmann::json counters_json() const;

      private:
	struct Holding {
		uint32_t secret; // index into secrets_
		std::string source, location, name;
		int64_t time_ns = 0;
		int inv = -1; // inventory entry index
	};
	struct Dedupe {
		int64_t last_ns = 0;
		uint64_t suppressed = 0;
	};
	struct Proc {
		ProcStart start;
		std::vector<std::pair<uint64_t, Dedupe>> uses; // hash of credential+upstream
		int64_t exit_ns = 0;
		bool interactive = false; // it or an ancestor has a tty and is not tracked
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

	void on(const ProcStart &e);
	void on(const ProcExit &e);
	void on(const SecretSeen &e);
	void on(const ConnectSeen &e);
	void on(const HealthSeen &e);
	void on(const Tick &e);

	uint32_t secret_index(const std::string &fp, const std::string &type);
	// The process an input names; counted in unknown_process when absent.
	Proc *known_proc(const std::string &exec_id);
	int match_inv(const Secret &s, const Holding &h, const std::string &identity) const;
	// Secrets a process can use at time t: its own and, when its own
	// environment was not seen, what its ancestors passed in env/argv.
	using Candidates = std::vector<std::pair<const Proc *, const Holding *>>;
	void usable(const Proc &p, int64_t t, Candidates &out) const;
	void check_stale(Secret &s, int64_t now, const Proc *p);
	void check_shared(Secret &s, const Proc &p, const std::string &identity);

	nlohmann::json secret_json(const Secret &s, const Holding *h) const;
	nlohmann::json process_json(const Proc &p) const;
	nlohmann::json identity_json(const Proc &p) const;
	void add_process_raw(const Proc &p, Record &r) const;
	const std::string &process_raw(const Proc &p) const;
	nlohmann::json base(const char *type, int64_t event_ns) const;
	// Dedupe and rate limit, then build (only then), fill rule, severity
	// and tags, and emit.
	void alert(const char *rule, const std::string &key, int64_t now,
	           const std::function<nlohmann::json()> &build);
	void expire(int64_t now);
	void forget_oldest_exited();

	std::string host_;
	const Clock &clock_;
	Emit emit_;
	OnUse on_use_;
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
	std::unordered_map<std::string, Dedupe> alert_seen_;
	int64_t next_stale_check_ = 0, next_expire_ = 0;
	int64_t rate_window_start_ = 0;
	uint32_t rate_count_ = 0;
	HealthSeen last_health_{};
	bool have_health_ = false;
	CorrelatorCounters counters_;
	Candidates cands_, distinct_, bound_; // scratch, reused per connect
};

} // namespace keytrail
