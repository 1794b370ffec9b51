#include "keytrail/correlate/correlator.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "detail.h"
#include "keytrail/correlate/policy.h"
#include "keytrail/probe/events.h"
#include "keytrail/schema/rules.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/text.h"

namespace keytrail
{

using namespace correlate_detail;

Correlator::Correlator(std::string host, const Config &cfg, const Clock &clock, Emit emit)
    : host_(std::move(host)), clock_(clock), emit_(std::move(emit)), cfg_(cfg.correlate),
      inv_(cfg.inventory), ancestry_depth_(cfg.ancestry_depth),
      disabled_(cfg.correlate.disabled_rules.begin(), cfg.correlate.disabled_rules.end()),
      grace_ns_(to_ns(cfg.process_grace)), max_exited_(cfg.max_exited), findings_(host_),
      state_args_(tool_state_args(cfg))
{
}

// How the tools find this agent's state: its config (absolute), else its
// state dir when it is not the default one.
std::string Correlator::tool_state_args(const Config &cfg)
{
	auto quoted = [](const std::string &v) {
		bool plain = std::all_of(v.begin(), v.end(), [](unsigned char c) {
			return std::isalnum(c) || std::strchr("/._-+:,@", c);
		});
		if (plain && !v.empty())
			return v;
		std::string q = "'";
		for (char c : v)
			q += c == '\'' ? std::string("'\\''") : std::string(1, c);
		return q + "'";
	};
	if (!cfg.source.empty() && cfg.source != kDefaultConfigPath)
		return " -c " + quoted(cfg.source);
	if (cfg.source.empty() && cfg.state_dir != Config{}.state_dir)
		return " --state-dir " + quoted(cfg.state_dir);
	return "";
}

// The command that shows a responder the finding's history.
std::string Correlator::investigate(const nlohmann::json &r) const
{
	auto str = [&](const char *obj, const char *key) -> std::string {
		auto o = r.find(obj);
		if (o == r.end() || !o->is_object())
			return "";
		auto v = o->find(key);
		return v != o->end() && v->is_string() ? v->get<std::string>() : "";
	};
	if (std::string fp = str("secret", "fingerprint"); !fp.empty())
		return "keytrail trace" + state_args_ + " --secret " + fp;
	if (std::string id = str("process", "exec_id"); !id.empty())
		return "keytrail trace" + state_args_ + " --exec-id " + id;
	return "keytrail status" + state_args_;
}

void Correlator::set_inventory(std::vector<InventoryEntry> inv)
{
	inv_ = std::move(inv);
	for (auto &[id, p] : procs_)
		for (auto &h : p.held) {
			h.inv = match_inv(secrets_[h.secret], h, p.start.identity);
			secrets_[h.secret].inv = h.inv;
		}
}

void Correlator::feed(const Input &in)
{
	counters_.inputs++;
	int64_t t = input_time(in);
	std::visit([this](const auto &e) { on(e); }, in);
	if (t >= next_expire_ || t >= next_stale_check_)
		on(Tick{t});
}

void Correlator::tick()
{
	on(Tick{clock_.now_ns()});
}

nlohmann::json Correlator::counters_json() const
{
	nlohmann::json j = keytrail::counters_json(counters_);
	j["alerts_by_rule"] = counters_.alerts_by_rule;
	j["processes"] = procs_.size();
	j["secrets"] = secrets_.size();
	j["findings"] = findings_.size();
	return j;
}

Correlator::Proc *Correlator::known_proc(const std::string &exec_id)
{
	auto it = procs_.find(proc_key(exec_id));
	if (it != procs_.end())
		return &it->second;
	counters_.unknown_process++; // the agent always sends ProcStart first
	return nullptr;
}

uint32_t Correlator::secret_index(const std::string &fp, const std::string &type)
{
	auto [it, fresh] = secret_ids_.try_emplace(fp, static_cast<uint32_t>(secrets_.size()));
	if (fresh) {
		secrets_.emplace_back();
		secrets_.back().fingerprint = fp;
		secrets_.back().type = type;
		secrets_.back().fp_hash = fnv1a(fp);
	}
	return it->second;
}

int Correlator::match_inv(const Secret &s, const Holding &h, const std::string &identity) const
{
	const InventoryEntry *e =
	    policy::match(inv_, {s.fingerprint, h.source, h.location, h.name, identity});
	return e ? static_cast<int>(e - inv_.data()) : -1;
}

void Correlator::on(const ProcStart &e)
{
	auto [it, fresh] = procs_.try_emplace(proc_key(e.exec_id));
	Proc &p = it->second;
	p.start = e;
	// A new image of the same process (exec keeps the pid and start time,
	// so the exec_id): its description is built again.
	p.process_raw.reset();
	p.identity_raw.reset();
	// Made valid UTF-8 once here, not in every record that names it.
	for (std::string *f : {&p.start.comm, &p.start.exe})
		*f = shown(*f);
	for (std::string *f : {&p.start.mcp_server, &p.start.identity})
		*f = sanitize_utf8(*f);
	for (auto &a : p.start.cmdline)
		a = sanitize_utf8(a);
	for (auto &[k, v] : p.start.selectors)
		v = sanitize_utf8(v);
	// A person's: it or an ancestor has a controlling terminal, and it is
	// no MCP workload's (a server started from a terminal has one too).
	// Whether the kernel follows it (a watched open did) does not matter.
	p.in_workload = !e.workload.empty() || !e.mcp_server.empty();
	auto parent = procs_.find(proc_key(e.parent_exec_id));
	p.on_terminal = e.tty || (parent != procs_.end() && parent->second.on_terminal);
	p.interactive = p.on_terminal && !p.in_workload;
}

void Correlator::on(const ProcExit &e)
{
	auto it = procs_.find(proc_key(e.exec_id));
	if (it == procs_.end() || it->second.exit_ns)
		return;
	it->second.exit_ns = e.time_ns;
	exited_.emplace_back(e.time_ns, e.exec_id);
	if (exited_.size() > max_exited_)
		forget_oldest_exited();
}

void Correlator::forget_oldest_exited()
{
	auto it = procs_.find(proc_key(exited_.front().second));
	if (it != procs_.end() && it->second.exit_ns)
		procs_.erase(it);
	exited_.pop_front();
}

// What a sighting tells about the credential itself, whoever holds it.
Correlator::Secret &Correlator::learn(const SecretSeen &e)
{
	uint32_t idx = secret_index(e.fingerprint, e.type);
	if (!e.rotated_from.empty()) {
		auto old = secret_ids_.find(e.rotated_from);
		if (old != secret_ids_.end())
			secrets_[old->second].retired = true;
	}
	Secret &s = secrets_[idx];
	s.retired = false;
	int64_t first = e.first_seen_ns ? e.first_seen_ns : e.time_ns;
	if (!s.first_seen_ns || first < s.first_seen_ns)
		s.first_seen_ns = first;
	s.last_used_ns = std::max(s.last_used_ns, e.last_used_ns);
	if (e.file_mtime_ns && (!s.oldest_mtime_ns || e.file_mtime_ns < s.oldest_mtime_ns))
		s.oldest_mtime_ns = e.file_mtime_ns;
	s.last_source = e.source;
	s.last_location = e.location;
	return s;
}

void Correlator::on(const SecretSeen &e)
{
	Secret &s = learn(e);
	uint32_t idx = static_cast<uint32_t>(&s - secrets_.data());
	if (e.exec_id.empty()) {
		on_config_secret(s, e);
		return;
	}
	Proc *pp = known_proc(e.exec_id);
	if (!pp)
		return;
	Proc &p = *pp;
	for (auto &known : p.held)
		if (known.secret == idx && known.source == e.source &&
		    known.location == e.location) {
			// Already held this way; a second report may know it earlier.
			known.time_ns = std::min(known.time_ns, e.time_ns);
			return;
		}
	Holding h{idx, e.source, e.location, e.name, e.time_ns, -1};
	h.identity = std::hash<std::string>{}(p.start.identity);
	h.inv = match_inv(s, h, p.start.identity);
	s.inv = h.inv;
	if (p.in_workload)
		s.mcp_held = true;
	p.held.push_back(h);
	// Inherited: a child given the environment its parent was reported for
	// under the same identity holds it (its uses are its own), but is no
	// new sighting: one token in npx's environment would be reported again
	// for sh, node and every git or curl the server runs. (A parent that
	// re-exec'd into another identity reported it under the old one.)
	bool inherited = false;
	auto parent = p.start.parent_exec_id.empty()
	                  ? procs_.end()
	                  : procs_.find(proc_key(p.start.parent_exec_id));
	if (e.source == "env" && parent != procs_.end())
		for (const auto &ph : parent->second.held)
			inherited =
			    inherited || (ph.secret == idx && ph.source == "env" &&
			                  ph.location == e.location && ph.identity == h.identity);
	if (inherited)
		counters_.sightings_inherited++;
	else
		emit_(secret_record(s, h, e, &p));
	holding_alerts(s, p, h, e);
	check_shared(s, p, p.start.identity);
	check_stale(s, e.time_ns, &p);
}

// Hard-coded in an MCP client config: nobody holds it yet.
void Correlator::on_config_secret(Secret &s, const SecretSeen &e)
{
	Holding h{static_cast<uint32_t>(&s - secrets_.data()),
	          e.source,
	          e.location,
	          e.name,
	          e.time_ns,
	          -1};
	s.in_config = true;
	h.inv = match_inv(s, h, "");
	s.inv = h.inv;
	emit_(secret_record(s, h, e, nullptr));
	alert("hardcoded_secret", s.fingerprint, "config:" + e.location, e.time_ns, {nullptr, &s},
	      [&] {
		      nlohmann::json r = base("alert", e.time_ns);
		      r["secret"] = secret_json(s, &h);
		      if (!e.server.empty())
			      r["secret"]["server"] = sanitize_utf8(e.server);
		      if (e.line)
			      r["secret"]["line"] = e.line;
		      r["summary"] =
		          "MCP client config " + sanitize_utf8(e.location) + " hard-codes " +
		          s.type + " " + short_fp(s.fingerprint) +
		          (e.server.empty() ? "" : " for server " + sanitize_utf8(e.server));
		      return r;
	      });
	check_stale(s, e.time_ns, nullptr);
}

// The rules a new holding can break: a literal in argv, a revoked
// credential, an identity the inventory does not allow, a person at a
// terminal reading what an MCP workload holds.
void Correlator::holding_alerts(Secret &s, const Proc &p, const Holding &h, const SecretSeen &e)
{
	const InventoryEntry *inv = entry(h.inv);
	const std::string &identity = p.start.identity;
	std::string what = s.type + " " + short_fp(s.fingerprint);
	auto make = [&](const std::string &summary) {
		return holding_alert(s, &h, p, e.time_ns, summary);
	};
	if (e.source == "argv")
		alert("hardcoded_secret", s.fingerprint, "argv:" + identity, e.time_ns, {&p, &s},
		      [&] {
			      return make(who(p) + " has " + what + " on its command line (" +
			                  sanitize_utf8(e.location) +
			                  "), where every local user can read it");
		      });
	if (inv && inv->status != "active")
		alert("revoked_credential_used", s.fingerprint, identity, e.time_ns, {&p, &s}, [&] {
			return make(who(p) + " read " + what + ", which the inventory marks " +
			            inv->status + " (" + inv->id + ")");
		});
	if (inv && !policy::identity_allowed(*inv, identity))
		alert("out_of_scope_identity", s.fingerprint + "|" + identity, "hold", e.time_ns,
		      {&p, &s}, [&] {
			      return make(who(p) + " obtained " + what + " (" + inv->id +
			                  "), which its identity is not allowed to hold");
		      });
	// Once per person and credential: a session's commands (cat, then grep)
	// are one reader.
	if (p.interactive && s.mcp_held)
		alert("human_use", s.fingerprint + "|" + reader_of(p), "", e.time_ns, {&p, &s},
		      [&] {
			      return make(who(p) + ", an interactive session, read " + what +
			                  " which belongs to an MCP workload, from " +
			                  sanitize_utf8(e.location));
		      });
}

void Correlator::check_shared(Secret &s, const Proc &p, const std::string &identity)
{
	// A person at a terminal is not a workload sharing it: human_use says so.
	if (identity.empty() || p.interactive)
		return;
	auto env_it = p.start.selectors.find("env");
	std::string env = env_it == p.start.selectors.end() ? "" : env_it->second;
	auto [it, fresh] =
	    s.holders.try_emplace(identity, Holder{env, p.start.time_ns, p.start.exec_id});
	bool new_env = !env.empty() && s.environments.insert(env).second;
	if (!fresh && !new_env)
		return;
	std::vector<std::string> holders;
	for (const auto &h : s.holders)
		holders.push_back(h.first);
	policy::Sharing sh = policy::sharing(entry(s.inv), holders, s.environments.size());
	if (!sh.shared)
		return;
	// One finding per credential; each identity (or environment) joining it
	// is an update.
	alert("shared_credential", s.fingerprint, new_env ? "env:" + env : identity,
	      p.start.time_ns, {&p, &s}, [&] {
		      nlohmann::json r = holding_alert(s, nullptr, p, p.start.time_ns, "");
		      nlohmann::json ids = nlohmann::json::array();
		      for (const auto &[id, h] : s.holders) {
			      nlohmann::json j = {{"id", id},
			                          {"exec_id", h.exec_id},
			                          {"first_seen", rfc3339(h.first_ns)}};
			      if (!h.environment.empty())
				      j["env"] = h.environment;
			      ids.push_back(std::move(j));
		      }
		      r["identities"] = std::move(ids);
		      r["reason"] = sh.across_environments ? "environments" : "identities";
		      if (sh.across_environments)
			      r["environments"] = s.environments;
		      r["summary"] = s.type + " " + short_fp(s.fingerprint) + " is shared by " +
		                     std::to_string(s.holders.size()) + " identities" +
		                     (sh.across_environments
		                          ? " across " + std::to_string(s.environments.size()) +
		                                " environments"
		                          : "") +
		                     "; newest: " + identity;
		      return r;
	      });
}

void Correlator::check_stale(Secret &s, int64_t now, const Proc *p)
{
	const InventoryEntry *inv = entry(s.inv);
	if (!inv)
		return;
	policy::Lifetime life{s.first_seen_ns, s.oldest_mtime_ns, s.last_used_ns, s.retired};
	for (const auto &why :
	     policy::stale_reasons(*inv, life, now, s.type + " " + short_fp(s.fingerprint)))
		alert("stale_credential", s.fingerprint, why.reason, now, {p, &s}, [&] {
			nlohmann::json r = base("alert", now);
			r["secret"] = secret_json(s, nullptr);
			if (p) {
				r["identity"] = identity_json(*p);
				r["process"] = process_json(*p);
			}
			r["reason"] = why.reason;
			r["first_seen"] = rfc3339(s.first_seen_ns);
			if (s.last_used_ns)
				r["last_used"] = rfc3339(s.last_used_ns);
			r["summary"] = why.summary;
			return r;
		});
}

void Correlator::on(const HealthSeen &e)
{
	HealthSeen prev = have_health_ ? last_health_ : HealthSeen{};
	last_health_ = e;
	have_health_ = true;
	uint64_t drops = e.kernel_drops - std::min(prev.kernel_drops, e.kernel_drops);
	uint64_t failures =
	    e.attribution_failures - std::min(prev.attribution_failures, e.attribution_failures);
	bool by_drops = cfg_.degraded_drops && drops >= cfg_.degraded_drops;
	bool by_failures =
	    cfg_.degraded_attribution_failures && failures >= cfg_.degraded_attribution_failures;
	if (!by_drops && !by_failures)
		return;
	nlohmann::json r = base("alert", e.time_ns);
	r["reason"] = by_drops ? "kernel_drops" : "attribution_failures";
	r["kernel_drops"] = drops;
	r["attribution_failures"] = failures;
	r["kernel_events"] = e.kernel_events - std::min(prev.kernel_events, e.kernel_events);
	r["summary"] = "monitor degraded: " + std::to_string(drops) +
	               " kernel events dropped and " + std::to_string(failures) +
	               " events not attributed since the last health report";
	// One finding; each loss window is an update that says which interval
	// is blind.
	r["window_start"] = rfc3339(prev.time_ns ? prev.time_ns : e.time_ns);
	r["window_end"] = rfc3339(e.time_ns);
	alert("monitor_degraded", "monitor", r["window_end"].get<std::string>(), e.time_ns, {},
	      [&] { return std::move(r); });
}

// A followed process reaching files or the network through io_uring: what
// it opens, reads and connects that way bypasses the syscall hooks. One
// finding per identity; each new operation is an update.
void Correlator::on(const IoUringSeen &e)
{
	Proc *p = known_proc(e.exec_id);
	if (!p || !io_uring_op_evades(e.opcode))
		return;
	std::string op = io_uring_op_name(e.opcode);
	alert("io_uring_evasion", p->start.identity, op, e.time_ns, {p}, [&] {
		nlohmann::json r = base("alert", e.time_ns);
		r["identity"] = identity_json(*p);
		r["process"] = process_json(*p);
		r["io_uring_op"] = op;
		r["summary"] = who(*p) + " submitted io_uring " + op +
		               ": files it opens or reads and connections it makes through the "
		               "ring are not seen by the syscall hooks";
		return r;
	});
}

void Correlator::on(const Tick &e)
{
	int64_t now = e.time_ns;
	if (now >= next_stale_check_) {
		next_stale_check_ = later(now, to_ns(cfg_.stale_check_interval));
		for (auto &s : secrets_)
			check_stale(s, now, nullptr);
	}
	if (now >= next_expire_) {
		next_expire_ = later(now, 1000000000LL);
		expire(now);
	}
}

void Correlator::flush_tool_calls()
{
	write_calls(clock_.now_ns(), true);
}

void Correlator::expire(int64_t now)
{
	write_calls(now, false);
	while (!exited_.empty() && since(now, exited_.front().first) > grace_ns_)
		forget_oldest_exited();
}

bool Correlator::excepted(const char *rule, const Subject &who) const
{
	for (const auto &x : cfg_.exceptions) {
		if (x.rule != "*" && x.rule != rule)
			continue;
		const ProcStart *p = who.proc ? &who.proc->start : nullptr;
		auto glob = [](const std::optional<std::string> &g, const std::string *v) {
			return !g || (v && glob_match(*g, *v));
		};
		if (!glob(x.identity, p ? &p->identity : nullptr) ||
		    !glob(x.exe, p ? &p->exe : nullptr) || !glob(x.comm, p ? &p->comm : nullptr) ||
		    (x.uid && (!p || p->uid != *x.uid)))
			continue;
		if (x.fingerprint && (!who.secret || who.secret->fingerprint != *x.fingerprint))
			continue;
		if (x.upstream) {
			std::string host = who.upstream.substr(0, who.upstream.rfind(':'));
			if (who.upstream.empty() || (!glob_match(*x.upstream, who.upstream) &&
			                             !glob_match(*x.upstream, host)))
				continue;
		}
		return true;
	}
	return false;
}

void Correlator::alert(const char *rule, const std::string &key, const std::string &facet,
                       int64_t now, const Subject &who,
                       const std::function<nlohmann::json()> &build)
{
	if (disabled_.count(rule))
		return;
	if (excepted(rule, who)) {
		counters_.alerts_excepted++;
		return;
	}
	FindingState *f = nullptr;
	// A blind interval is reported however busy the alert stream is.
	bool monitor = std::strcmp(rule, "monitor_degraded") == 0;
	Occurrence o =
	    findings_.occur(rule, key, facet, now, to_ns(cfg_.dedupe_window), &f, monitor);
	if (o == Occurrence::kRepeat) {
		counters_.alerts_deduplicated++;
		if (on_finding_)
			on_finding_(*f);
		return;
	}
	if (since(now, rate_window_start_) >= 60000000000LL) {
		rate_window_start_ = now;
		rate_count_ = 0;
	}
	if (cfg_.max_alerts_per_minute && !monitor && ++rate_count_ > cfg_.max_alerts_per_minute) {
		// Not written: the next occurrence after the window reports it, with
		// this one counted.
		counters_.alerts_rate_limited++;
		if (on_finding_)
			on_finding_(*f);
		return;
	}
	const RuleInfo *info = find_rule(rule);
	nlohmann::json r = build(); // built only when it is written
	// A finding whose first alert was rate-limited is still new to the
	// reader: its first record is an alert, not an update.
	bool update = o != Occurrence::kNew && f->reported_ns != 0;
	r["type"] = update ? "update" : "alert";
	r["rule"] = rule;
	r["title"] = info->title;
	r["severity"] = info->severity;
	r["tags"] = info->tags;
	r["remediation"] = info->remediation;
	r["investigate"] = investigate(r);
	r["finding_id"] = f->id;
	r["alert_id"] = f->id; // the same id: docs/alerts.md
	r["count"] = f->count;
	r["first_seen"] = rfc3339(f->first_ns);
	r["last_seen"] = rfc3339(f->last_ns);
	if (update && o == Occurrence::kNewFacet)
		r["new"] = facet;
	findings_.reported(*f, now);
	if (on_finding_)
		on_finding_(*f);
	counters_.alerts++;
	if (update)
		counters_.alert_updates++;
	counters_.alerts_by_rule[rule]++;
	emit_(Record{std::move(r), {}});
}

std::string Correlator::reader_of(const Proc &p)
{
	// An audit login session; else the terminal session (without auditing,
	// a shell's commands share its session and tty); else the identity.
	// Session ids and ttys start over at boot: the boot (the exec_id's
	// first part) is part of the key, so a login after a reboot is new.
	size_t colon = p.start.exec_id.find(':');
	std::string boot = colon == std::string::npos ? "" : p.start.exec_id.substr(0, colon);
	if (p.start.sessionid != UINT32_MAX)
		return "session:" + boot + ":" + std::to_string(p.start.loginuid) + ":" +
		       std::to_string(p.start.sessionid);
	if (p.start.tty_nr)
		return "tty:" + boot + ":" + std::to_string(p.start.tty_nr) + ":" +
		       std::to_string(p.start.sid) + ":" + std::to_string(p.start.uid);
	return p.start.identity;
}

} // namespace keytrail
