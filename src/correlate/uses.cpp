// Connects become secret uses: which credentials the process could send,
// which of them the connect is bound to, and the rules a use can break.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "detail.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/correlate/policy.h"
#include "keytrail/util/text.h"
#include "upstream.h"
#include "use.h"

namespace keytrail
{

using namespace correlate_detail;

bool Correlator::is_upstream(const ConnectSeen &e)
{
	const char *why = not_upstream(e, cfg_.loopback_upstreams);
	if (!why)
		return true;
	counters_.connects_not_upstream++;
	uint64_t *by_reason = !std::strcmp(why, "not_inet")  ? &counters_.connects_ignored_not_inet
	                      : !std::strcmp(why, "failed")  ? &counters_.connects_ignored_failed
	                      : !std::strcmp(why, "dns")     ? &counters_.connects_ignored_dns
	                      : !std::strcmp(why, "no_peer") ? &counters_.connects_ignored_no_peer
	                                                     : &counters_.connects_ignored_loopback;
	(*by_reason)++;
	return false;
}

void Correlator::on(const ConnectSeen &e)
{
	if (!is_upstream(e))
		return;
	Proc *p = known_proc(e.exec_id);
	if (!p)
		return;
	usable(*p, e.time_ns, cands_);
	if (p->start.launcher && !cands_.empty()) {
		// A package runner sends a registry token of its .npmrc
		// ("//host/:_authToken") only to that registry. Any other process
		// holding it may send it anywhere: that stays a use.
		size_t before = cands_.size();
		std::erase_if(cands_, [&](const auto &c) {
			std::string_view scope = policy::credential_scope(
			    c.second->source, c.second->location, c.second->name);
			return !scope.empty() &&
			       !policy::scope_reaches(scope, e.addr, e.port, e.sni, e.http_host,
			                              e.proxy_target);
		});
		if (cands_.size() < before)
			counters_.credentials_out_of_scope++;
		// npx fetching the server: not a use of what it only passes down.
		std::erase_if(cands_, [&](const auto &c) {
			return !policy::fetch_credential(secrets_[c.second->secret].type,
			                                 c.second->source);
		});
		if (cands_.empty())
			counters_.launcher_fetches++;
	}
	// The tool call in flight in its workload: credited with the upstream,
	// named on the uses.
	calls_at(*p, e.time_ns, in_flight_);
	nlohmann::json mcp;
	if (in_flight_.size() > 1) {
		counters_.uses_in_concurrent_calls++;
		mcp = {{"tool_calls_in_flight", in_flight_.size()}};
	} else if (in_flight_.size() == 1) {
		ToolCall &c = *in_flight_[0];
		std::string up = UpstreamOf(e).key();
		if (c.upstreams.size() < 32 &&
		    std::find(c.upstreams.begin(), c.upstreams.end(), up) == c.upstreams.end())
			c.upstreams.push_back(std::move(up));
		mcp = {{"tool_call", call_ref(c)}};
	}
	if (cands_.empty())
		return;
	// The upstream as records name it, hashed without building the name.
	const std::string &name = !e.proxy_target.empty() ? e.proxy_target
	                          : !e.sni.empty()        ? e.sni
	                          : !e.http_host.empty()  ? e.http_host
	                                                  : e.addr;
	Use u{e,
	      *p,
	      UpstreamOf(e),
	      fnv1a(name) ^ (static_cast<uint64_t>(e.port) * 0x9e3779b97f4a7c15ull),
	      {},
	      std::move(mcp)};
	bind(u);
}

void Correlator::usable(const Proc &p, int64_t t, Candidates &out) const
{
	out.clear();
	int64_t window = to_ns(cfg_.use_window);
	auto in_time = [&](const Holding &h) {
		if (h.time_ns > t)
			return false;
		return h.source != "file" || window == 0 || since(t, h.time_ns) <= window;
	};
	for (const auto &h : p.held)
		if (in_time(h))
			out.emplace_back(&p, &h);
	// Up the tree while what the parent held reached this process: all of
	// it through a fork, only env/argv through an exec whose environment we
	// did not see (what we did see was scanned as the process's own).
	const Proc *cur = &p;
	for (uint32_t depth = 0; depth < ancestry_depth_; depth++) {
		bool forked = cur->start.forked;
		if (!forked && cur->start.env_observed)
			break;
		auto it = procs_.find(proc_key(cur->start.parent_exec_id));
		if (it == procs_.end())
			break;
		const Proc *parent = &it->second;
		for (const auto &h : parent->held)
			if (in_time(h) && (forked || h.source == "env" || h.source == "argv"))
				out.emplace_back(parent, &h);
		cur = parent;
	}
}

// Which credential went to this upstream: those the inventory allows to go
// there; else the only one the process holds; else it cannot be told.
void Correlator::bind(Use &u)
{
	Candidates &distinct = distinct_, &bound = bound_;
	distinct.clear();
	bound.clear();
	// One candidate per credential (a token in env and in a file is one).
	for (const auto &c : cands_)
		if (std::none_of(distinct.begin(), distinct.end(), [&](const auto &d) {
			    return d.second->secret == c.second->secret;
		    }))
			distinct.push_back(c);
	for (const auto &c : distinct) {
		const InventoryEntry *inv = entry(c.second->inv);
		if (inv && !inv->allowed_upstreams.empty() && u.up.check(*inv).allowed)
			bound.push_back(c);
	}
	if (!bound.empty()) {
		for (const auto &[holder, h] : bound)
			bound_use(u, holder, h, "allowed_upstream");
	} else if (distinct.size() == 1) {
		bound_use(u, distinct[0].first, distinct[0].second, "sole_secret");
	} else {
		ambiguous_use(u);
	}
}

bool Correlator::first_use(Proc &p, uint64_t key, int64_t t, uint64_t *repeats)
{
	// A few upstreams per process: a flat list beats a hash map here.
	auto it = std::find_if(p.uses.begin(), p.uses.end(),
	                       [&](const auto &x) { return x.first == key; });
	if (it == p.uses.end()) {
		if (p.uses.size() >= 1024) // forget the oldest
			p.uses.erase(std::min_element(
			    p.uses.begin(), p.uses.end(), [](const auto &a, const auto &b) {
				    return a.second.last_ns < b.second.last_ns;
			    }));
		p.uses.emplace_back(key, Dedupe{});
		it = p.uses.end() - 1;
	}
	Dedupe &d = it->second;
	if (d.last_ns && since(t, d.last_ns) < to_ns(cfg_.dedupe_window)) {
		d.suppressed++;
		counters_.uses_deduplicated++;
		return false;
	}
	*repeats = d.suppressed;
	d = Dedupe{t, 0};
	return true;
}

// Several credentials, none bound to this upstream: report them all as
// candidates rather than guess.
void Correlator::ambiguous_use(Use &u)
{
	const ConnectSeen &e = u.e;
	Candidates &distinct = distinct_;
	auto candidates = [&] {
		nlohmann::json list = nlohmann::json::array();
		for (const auto &c : distinct)
			list.push_back(secret_json(secrets_[c.second->secret], c.second));
		return list;
	};
	// Whichever was sent, none may go there.
	bool all_restricted = std::all_of(distinct.begin(), distinct.end(), [&](const auto &c) {
		const InventoryEntry *inv = entry(c.second->inv);
		return inv && !inv->allowed_upstreams.empty();
	});
	// Deduplicated apart from any bound use of the same upstream, whose key
	// mixes in a fingerprint's hash: 0x2a stands for "no single credential".
	uint64_t repeats = 0;
	if (first_use(u.p, u.up_hash ^ 0x2a, e.time_ns, &repeats)) {
		Record rec = u.record(*this, "ambiguous", repeats);
		rec.fields["candidates"] = candidates();
		rec.fields["summary"] = who(u.p) + " connected to " + u.key() + " holding " +
		                        std::to_string(distinct.size()) +
		                        " credentials; which one it used cannot be told";
		counters_.ambiguous_uses++;
		counters_.secret_uses++;
		emit_(std::move(rec));
	}
	if (all_restricted)
		alert("unexpected_upstream", "*|" + u.p.start.identity, u.key(), e.time_ns,
		      {&u.p, nullptr, u.key()}, [&] {
			      nlohmann::json r = base("alert", e.time_ns);
			      r["candidates"] = candidates();
			      r["identity"] = identity_json(u.p);
			      r["process"] = process_json(u.p);
			      r["upstream"] = u.up.json();
			      r["summary"] = who(u.p) + " connected to " + u.key() +
			                     ", which none of the " +
			                     std::to_string(distinct.size()) +
			                     " credentials it holds is allowed to reach";
			      return r;
		      });
}

void Correlator::bound_use(Use &u, const Proc *holder, const Holding *h, const char *pairing)
{
	Secret &s = secrets_[h->secret];
	s.last_used_ns = std::max(s.last_used_ns, u.e.time_ns);
	// A repeat within the window changes nothing an alert would say (same
	// identity, credential and upstream): counted, no more.
	uint64_t repeats = 0;
	if (!first_use(u.p, u.up_hash ^ s.fp_hash, u.e.time_ns, &repeats)) {
		tool_use(u, s, h); // each call is credited, deduplicated or not
		return;
	}
	if (on_use_)
		on_use_(s.fingerprint, u.p.start.identity, u.key(), u.e.addr, u.e.time_ns);

	// The use first, then what it broke: an alert follows its cause.
	const InventoryEntry *inv = entry(h->inv);
	Record rec = u.record(*this, pairing, repeats);
	nlohmann::json &r = rec.fields;
	r["secret"] = secret_json(s, h);
	if (holder != &u.p)
		r["secret"]["holder_exec_id"] = holder->start.exec_id; // inherited
	r["summary"] = who(u.p) + " used " + s.type + " " + short_fp(s.fingerprint) + " from " +
	               h->source + " " + sanitize_utf8(h->location) + " toward " + u.key() +
	               (inv ? " (inventory " + inv->id + ")" : "");
	counters_.secret_uses++;
	emit_(std::move(rec));
	use_alerts(u, s, h);
	tool_use(u, s, h);
	check_stale(s, u.e.time_ns, &u.p);
}

// The rules a use can break: no owner, revoked, an upstream or an identity
// the inventory does not allow.
void Correlator::use_alerts(Use &u, Secret &s, const Holding *h)
{
	const ConnectSeen &e = u.e;
	const std::string &identity = u.p.start.identity;
	const InventoryEntry *inv = entry(h->inv);
	std::string what = s.type + " " + short_fp(s.fingerprint);
	auto make = [&](const std::string &summary) {
		nlohmann::json r = holding_alert(s, h, u.p, e.time_ns, summary);
		r["upstream"] = u.up.json();
		return r;
	};
	if (!inv || inv->owner.empty())
		alert("unowned_secret", s.fingerprint, identity, e.time_ns, {&u.p, &s, u.key()},
		      [&] {
			      return make(who(u.p) + " used " + what + " toward " + u.key() + "; " +
			                  (inv ? "inventory entry " + inv->id + " names no owner"
			                       : "no inventory entry owns it"));
		      });
	if (inv && inv->status != "active")
		alert("revoked_credential_used", s.fingerprint, identity + "|use", e.time_ns,
		      {&u.p, &s, u.key()}, [&] {
			      return make(who(u.p) + " used " + what + " toward " + u.key() +
			                  ", which the inventory marks " + inv->status + " (" +
			                  inv->id + ")");
		      });
	UpstreamOf::Verdict v = inv ? u.up.check(*inv) : UpstreamOf::Verdict{true, false};
	if (!v.allowed)
		alert("unexpected_upstream", s.fingerprint + "|" + identity, u.key(), e.time_ns,
		      {&u.p, &s, u.key()}, [&] {
			      nlohmann::json r =
			          make(who(u.p) + " sent " + what + " (" + inv->id + ") toward " +
			               u.key() +
			               (v.unverified_name
			                    ? ", a name it never resolved to " + e.addr +
			                          ": only a verified name is allowed"
			                    : ", which is not among its allowed upstreams"));
			      r["reason"] = v.unverified_name ? "unverified_name" : "not_allowed";
			      return r;
		      });
	if (inv && !policy::identity_allowed(*inv, identity))
		alert("out_of_scope_identity", s.fingerprint + "|" + identity, "use", e.time_ns,
		      {&u.p, &s, u.key()}, [&] {
			      return make(who(u.p) + " used " + what + " (" + inv->id +
			                  ") toward " + u.key() +
			                  ", which its identity is not allowed to use");
		      });
}

} // namespace keytrail
