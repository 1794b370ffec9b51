#include "keytrail/correlate/correlator.h"

#include <algorithm>

#include "detail.h"
#include "keytrail/correlate/policy.h"
#include "keytrail/schema/rules.h"
#include "keytrail/util/text.h"

namespace keytrail
{

using namespace correlate_detail;

Correlator::Correlator(std::string host, const Config &cfg, const Clock &clock, Emit emit)
    : host_(std::move(host)), clock_(clock), emit_(std::move(emit)), cfg_(cfg.correlate),
      inv_(cfg.inventory), ancestry_depth_(cfg.ancestry_depth),
      disabled_(cfg.correlate.disabled_rules.begin(), cfg.correlate.disabled_rules.end()),
      grace_ns_(to_ns(cfg.process_grace)), max_exited_(cfg.max_exited)
{
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
	// Made valid UTF-8 once here, not in every record that names it.
	for (std::string *f : {&p.start.comm, &p.start.exe, &p.start.mcp_server, &p.start.identity})
		*f = sanitize_utf8(*f);
	for (auto &a : p.start.cmdline)
		a = sanitize_utf8(a);
	for (auto &[k, v] : p.start.selectors)
		v = sanitize_utf8(v);
	p.interactive = e.tty && !e.tracked;
	if (!p.interactive && !e.tracked) {
		auto parent = procs_.find(proc_key(e.parent_exec_id));
		p.interactive = parent != procs_.end() && parent->second.interactive;
	}
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
	h.inv = match_inv(s, h, p.start.identity);
	s.inv = h.inv;
	if (p.start.tracked)
		s.mcp_held = true;
	p.held.push_back(h);
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
	alert("hardcoded_secret", s.fingerprint + "|" + e.location, e.time_ns, [&] {
		nlohmann::json r = base("alert", e.time_ns);
		r["secret"] = secret_json(s, &h);
		if (!e.server.empty())
			r["secret"]["server"] = sanitize_utf8(e.server);
		if (e.line)
			r["secret"]["line"] = e.line;
		r["summary"] = "MCP client config " + sanitize_utf8(e.location) + " hard-codes " +
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
		alert("hardcoded_secret", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who(p) + " has " + what + " hard-coded in its command line (" +
			            sanitize_utf8(e.location) + ")");
		});
	if (inv && inv->status != "active")
		alert("revoked_credential_used", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who(p) + " read " + what + ", which the inventory marks " +
			            inv->status + " (" + inv->id + ")");
		});
	if (inv && !policy::identity_allowed(*inv, identity))
		alert("out_of_scope_identity", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who(p) + " obtained " + what + " (" + inv->id +
			            "), which its identity is not allowed to hold");
		});
	if (p.interactive && s.mcp_held)
		alert("human_use", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who(p) + ", an interactive session, read " + what +
			            " which belongs to an MCP workload, from " +
			            sanitize_utf8(e.location));
		});
}

void Correlator::check_shared(Secret &s, const Proc &p, const std::string &identity)
{
	if (identity.empty())
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
	// One alert per identity joining (or environment), not per sighting.
	alert(
	    "shared_credential", s.fingerprint + "|" + identity + "|" + env, p.start.time_ns, [&] {
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
		    r["summary"] =
		        s.type + " " + short_fp(s.fingerprint) + " is shared by " +
		        std::to_string(s.holders.size()) + " identities" +
		        (sh.across_environments
		             ? " across " + std::to_string(s.environments.size()) + " environments"
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
		alert("stale_credential", s.fingerprint + "|" + why.reason, now, [&] {
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
	alert("monitor_degraded", r["reason"].get<std::string>(), e.time_ns,
	      [&] { return std::move(r); });
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

void Correlator::expire(int64_t now)
{
	while (!exited_.empty() && since(now, exited_.front().first) > grace_ns_)
		forget_oldest_exited();
	int64_t window = to_ns(cfg_.dedupe_window);
	if (alert_seen_.size() > 4096)
		std::erase_if(alert_seen_, [&](const auto &kv) {
			return since(now, kv.second.last_ns) > window;
		});
}

void Correlator::alert(const char *rule, const std::string &key, int64_t now,
                       const std::function<nlohmann::json()> &build)
{
	if (disabled_.count(rule))
		return;
	const RuleInfo *info = find_rule(rule);
	auto &d = alert_seen_[std::string(rule) + "|" + key];
	int64_t window = to_ns(cfg_.dedupe_window);
	if (d.last_ns && since(now, d.last_ns) < window) {
		d.suppressed++;
		counters_.alerts_deduplicated++;
		return;
	}
	if (since(now, rate_window_start_) >= 60000000000LL) {
		rate_window_start_ = now;
		rate_count_ = 0;
	}
	if (cfg_.max_alerts_per_minute && ++rate_count_ > cfg_.max_alerts_per_minute) {
		// Marked seen, so a flood does not retry it on every event; it is
		// raised again after the window, with this one counted.
		counters_.alerts_rate_limited++;
		d = Dedupe{now, d.suppressed + 1};
		return;
	}
	uint64_t suppressed = d.suppressed;
	d = Dedupe{now, 0};
	// Built only when it is written.
	nlohmann::json r = build();
	r["rule"] = rule;
	r["severity"] = info->severity;
	r["tags"] = info->tags;
	r["alert_id"] = hex64(fnv1a(key, fnv1a(rule) ^ static_cast<uint64_t>(now)));
	if (suppressed)
		r["suppressed_since_last"] = suppressed;
	counters_.alerts++;
	counters_.alerts_by_rule[rule]++;
	emit_(Record{std::move(r), {}});
}

} // namespace keytrail
