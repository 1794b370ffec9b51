#include "keytrail/correlate/correlator.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

constexpr const char *kSchema = "2";

bool cidr_match(const std::string &pattern, const std::string &addr, bool *is_cidr)
{
	*is_cidr = false;
	size_t slash = pattern.find('/');
	if (slash == std::string::npos)
		return false;
	std::string net = pattern.substr(0, slash);
	int bits = 0;
	try {
		bits = std::stoi(pattern.substr(slash + 1));
	} catch (const std::exception &) {
		return false;
	}
	unsigned char a[16], n[16];
	int len = 0;
	if (inet_pton(AF_INET, net.c_str(), n) == 1) {
		len = 4;
		if (inet_pton(AF_INET, addr.c_str(), a) != 1)
			return (*is_cidr = true, false);
	} else if (inet_pton(AF_INET6, net.c_str(), n) == 1) {
		len = 16;
		if (inet_pton(AF_INET6, addr.c_str(), a) != 1)
			return (*is_cidr = true, false);
	} else {
		return false;
	}
	*is_cidr = true;
	if (bits < 0 || bits > len * 8)
		return false;
	for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
		unsigned char mask =
		    bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
		if ((a[i] & mask) != (n[i] & mask))
			return false;
	}
	return true;
}

bool is_loopback(uint16_t family, const std::string &addr)
{
	if (family == AF_INET)
		return addr.starts_with("127.");
	return addr == "::1" || addr.starts_with("::ffff:127.");
}

bool is_unspecified(const std::string &addr)
{
	return addr == "0.0.0.0" || addr == "::";
}

// The upstream's name: SNI, else the HTTP Host without its ":port" (the
// port is the connect's), else the address.
std::string upstream_name(const ConnectSeen &c)
{
	if (!c.sni.empty())
		return sanitize_utf8(c.sni);
	std::string_view host = c.http_host;
	auto colon = host.rfind(':');
	if (colon != std::string_view::npos && colon + 1 < host.size() &&
	    host.find(']', colon) == std::string_view::npos &&
	    host.find_first_not_of("0123456789", colon + 1) == std::string_view::npos)
		host = host.substr(0, colon);
	return sanitize_utf8(host.empty() ? std::string_view(c.addr) : host);
}

nlohmann::json upstream_json(const ConnectSeen &c)
{
	nlohmann::json u = {{"addr", c.addr},
	                    {"port", c.port},
	                    {"protocol", c.sock_type == SOCK_DGRAM ? "udp" : "tcp"}};
	if (!c.sni.empty())
		u["sni"] = sanitize_utf8(c.sni);
	if (!c.http_host.empty())
		u["http_host"] = sanitize_utf8(c.http_host);
	if (c.result == -EINPROGRESS)
		u["in_progress"] = true;
	return u;
}

std::string dump_json(const nlohmann::json &j)
{
	return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string short_fp(const std::string &fp)
{
	return fp.substr(0, 12);
}

std::string hex64(uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	std::string s(16, '0');
	for (int i = 15; i >= 0; i--, v >>= 4)
		s[i] = digits[v & 0xf];
	return s;
}

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull)
{
	for (unsigned char c : s)
		h = (h ^ c) * 1099511628211ull;
	return h;
}

// now - then, saturated: times come from recordings people hand us.
int64_t since(int64_t now, int64_t then)
{
	int64_t d;
	if (__builtin_sub_overflow(now, then, &d))
		return now < then ? INT64_MIN : INT64_MAX;
	return d;
}

// now + d, saturated.
int64_t later(int64_t now, int64_t d)
{
	int64_t t;
	return __builtin_add_overflow(now, d, &t) ? INT64_MAX : t;
}

// Processes are keyed by a 64-bit hash of their exec_id: no string compare
// per event; a collision among live processes is a 1-in-10^10 event at 100k.
uint64_t proc_key(const std::string &exec_id)
{
	return fnv1a(exec_id);
}

} // namespace

bool upstream_allowed(const std::vector<std::string> &patterns, const std::string &addr,
                      const std::string &sni, const std::string &http_host)
{
	for (const auto &p : patterns) {
		bool is_cidr;
		if (cidr_match(p, addr, &is_cidr))
			return true;
		if (is_cidr)
			continue;
		if (glob_match(p, addr) || (!sni.empty() && glob_match(p, sni)) ||
		    (!http_host.empty() && glob_match(p, http_host)))
			return true;
	}
	return false;
}

Correlator::Correlator(std::string host, const Config &cfg, const Clock &clock, Emit emit)
    : host_(std::move(host)), clock_(clock), emit_(std::move(emit)), cfg_(cfg.correlate),
      inv_(cfg.inventory), ancestry_depth_(cfg.ancestry_depth),
      disabled_(cfg.correlate.disabled_rules.begin(), cfg.correlate.disabled_rules.end()),
      grace_ns_(static_cast<int64_t>(cfg.process_grace.count()) * 1000000LL),
      max_exited_(cfg.max_exited)
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
	return {{"inputs", counters_.inputs},
	        {"secret_uses", counters_.secret_uses},
	        {"uses_deduplicated", counters_.uses_deduplicated},
	        {"ambiguous_uses", counters_.ambiguous_uses},
	        {"connects_not_upstream", counters_.not_upstream},
	        {"unknown_process", counters_.unknown_process},
	        {"alerts", counters_.alerts},
	        {"alerts_deduplicated", counters_.alerts_deduplicated},
	        {"alerts_rate_limited", counters_.alerts_rate_limited},
	        {"alerts_by_rule", counters_.alerts_by_rule},
	        {"processes", procs_.size()},
	        {"secrets", secrets_.size()}};
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
	    match_inventory(inv_, s.fingerprint, h.source, h.location,
	                    h.source == "env" ? h.location : h.name, identity);
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

void Correlator::on(const SecretSeen &e)
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
	Holding h{idx, e.source, e.location, e.name, e.time_ns, -1};

	if (e.exec_id.empty()) {
		// Hard-coded in an MCP client config: nobody holds it yet.
		s.in_config = true;
		h.inv = match_inv(s, h, "");
		s.inv = h.inv;
		nlohmann::json r = base("alert", e.time_ns);
		r["secret"] = secret_json(s, &h);
		if (!e.server.empty())
			r["secret"]["server"] = sanitize_utf8(e.server);
		if (e.line)
			r["secret"]["line"] = e.line;
		r["summary"] = "MCP client config " + sanitize_utf8(e.location) + " hard-codes " +
		               s.type + " " + short_fp(s.fingerprint) +
		               (e.server.empty() ? "" : " for server " + sanitize_utf8(e.server));
		alert("hardcoded_secret", s.fingerprint + "|" + e.location, e.time_ns,
		      [&] { return std::move(r); });
		check_stale(s, e.time_ns, nullptr);
		return;
	}
	Proc *pp = known_proc(e.exec_id);
	if (!pp)
		return;
	Proc &p = *pp;
	for (auto &known : p.held)
		if (known.secret == idx && known.source == h.source &&
		    known.location == h.location) {
			// Already held this way; a second report may know it earlier.
			known.time_ns = std::min(known.time_ns, h.time_ns);
			return;
		}
	const std::string &identity = p.start.identity;
	h.inv = match_inv(s, h, identity);
	s.inv = h.inv;
	if (p.start.tracked)
		s.mcp_held = true;
	p.held.push_back(h);
	const InventoryEntry *inv = h.inv >= 0 ? &inv_[h.inv] : nullptr;
	std::string who = sanitize_utf8(p.start.comm) + " (pid " + std::to_string(p.start.pid) +
	                  ", " + identity + ")";
	std::string what = s.type + " " + short_fp(s.fingerprint);

	auto make = [&](const std::string &summary) {
		nlohmann::json r = base("alert", e.time_ns);
		r["secret"] = secret_json(s, &h);
		r["identity"] = identity_json(p);
		r["process"] = process_json(p);
		r["summary"] = summary;
		return r;
	};
	if (e.source == "argv")
		alert("hardcoded_secret", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who + " has " + what + " hard-coded in its command line (" +
			            sanitize_utf8(e.location) + ")");
		});
	if (inv && inv->status != "active")
		alert("revoked_credential_used", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who + " read " + what + ", which the inventory marks " +
			            inv->status + " (" + inv->id + ")");
		});
	if (inv && !inv->allowed_identities.empty() &&
	    std::none_of(inv->allowed_identities.begin(), inv->allowed_identities.end(),
	                 [&](const std::string &g) { return glob_match(g, identity); }))
		alert("out_of_scope_identity", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who + " obtained " + what + " (" + inv->id +
			            "), which its identity is not allowed to hold");
		});
	if (p.interactive && s.mcp_held)
		alert("human_use", s.fingerprint + "|" + identity, e.time_ns, [&] {
			return make(who + ", an interactive session, read " + what +
			            " which belongs to an MCP workload, from " +
			            sanitize_utf8(e.location));
		});
	check_shared(s, p, identity);
	check_stale(s, e.time_ns, &p);
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
	bool across_envs = s.environments.size() >= 2;
	if (s.holders.size() < 2 && !across_envs)
		return;
	// An inventory entry that names every holder as allowed sanctions it.
	if (s.inv >= 0 && !across_envs) {
		const auto &allowed = inv_[s.inv].allowed_identities;
		bool all = !allowed.empty();
		for (const auto &holder : s.holders) {
			const std::string &id =
			    holder.first; // lambdas cannot capture bindings (clang 14)
			all = all &&
			      std::any_of(allowed.begin(), allowed.end(),
			                  [&](const std::string &g) { return glob_match(g, id); });
		}
		if (all)
			return;
	}
	nlohmann::json r = base("alert", p.start.time_ns);
	r["secret"] = secret_json(s, nullptr);
	r["identity"] = identity_json(p);
	r["process"] = process_json(p);
	nlohmann::json ids = nlohmann::json::array();
	for (const auto &[id, h] : s.holders) {
		nlohmann::json j = {
		    {"id", id}, {"exec_id", h.exec_id}, {"first_seen", rfc3339(h.first_ns)}};
		if (!h.environment.empty())
			j["env"] = h.environment;
		ids.push_back(std::move(j));
	}
	r["identities"] = std::move(ids);
	if (across_envs) {
		r["reason"] = "environments";
		r["environments"] = s.environments;
	} else {
		r["reason"] = "identities";
	}
	r["summary"] =
	    s.type + " " + short_fp(s.fingerprint) + " is shared by " +
	    std::to_string(s.holders.size()) + " identities" +
	    (across_envs ? " across " + std::to_string(s.environments.size()) + " environments"
	                 : "") +
	    "; newest: " + identity;
	// One alert per identity joining (or environment), not per sighting.
	alert("shared_credential", s.fingerprint + "|" + identity + "|" + env, p.start.time_ns,
	      [&] { return std::move(r); });
}

void Correlator::check_stale(Secret &s, int64_t now, const Proc *p)
{
	if (s.retired || s.inv < 0)
		return;
	const InventoryEntry &inv = inv_[s.inv];
	auto raise = [&](const char *reason, const std::function<std::string()> &summary) {
		alert("stale_credential", s.fingerprint + "|" + reason, now, [&] {
			nlohmann::json r = base("alert", now);
			r["secret"] = secret_json(s, nullptr);
			if (p) {
				r["identity"] = identity_json(*p);
				r["process"] = process_json(*p);
			}
			r["reason"] = reason;
			r["first_seen"] = rfc3339(s.first_seen_ns);
			if (s.last_used_ns)
				r["last_used"] = rfc3339(s.last_used_ns);
			r["summary"] = summary();
			return r;
		});
	};
	auto what = [&] { return s.type + " " + short_fp(s.fingerprint) + " (" + inv.id + ")"; };
	auto days = [](int64_t ns) { return std::to_string(ns / 86400000000000LL); };
	if (inv.expires_ns && now > *inv.expires_ns)
		raise("expired", [&] {
			return what() + " expired on " + rfc3339(*inv.expires_ns) +
			       " and is still in use";
		});
	int64_t born = s.first_seen_ns;
	if (s.oldest_mtime_ns && s.oldest_mtime_ns < born)
		born = s.oldest_mtime_ns;
	if (inv.rotate_every && born &&
	    since(now, born) > static_cast<int64_t>(inv.rotate_every->count()) * 1000000LL)
		raise("rotation_overdue", [&] {
			return what() + " was last rotated " + days(since(now, born)) +
			       " days ago, past its rotate_every";
		});
	int64_t last = s.last_used_ns ? s.last_used_ns : s.first_seen_ns;
	if (inv.max_unused && last &&
	    since(now, last) > static_cast<int64_t>(inv.max_unused->count()) * 1000000LL)
		raise("unused", [&] {
			return what() + " has not been used for " + days(since(now, last)) +
			       " days, past its max_unused";
		});
}

void Correlator::usable(const Proc &p, int64_t t, Candidates &out) const
{
	out.clear();
	int64_t window = static_cast<int64_t>(cfg_.use_window.count()) * 1000000LL;
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

void Correlator::on(const ConnectSeen &e)
{
	bool inet = e.family == AF_INET || e.family == AF_INET6;
	bool attempt = e.result == 0 || e.result == -EINPROGRESS;
	// Not upstreams: unix/netlink sockets, failed connects, loopback (unless
	// configured), the UDP connect getaddrinfo makes to port 0, and DNS.
	if (!inet || !attempt || e.port == 0 || e.port == 53 || is_unspecified(e.addr) ||
	    (!cfg_.loopback_upstreams && is_loopback(e.family, e.addr))) {
		counters_.not_upstream++;
		return;
	}
	Proc *pp = known_proc(e.exec_id);
	if (!pp)
		return;
	Proc &p = *pp;
	usable(p, e.time_ns, cands_);
	if (cands_.empty())
		return;
	// One candidate per credential (a token in env and in a file is one).
	Candidates &distinct = distinct_, &bound = bound_;
	distinct.clear();
	bound.clear();
	for (const auto &c : cands_)
		if (std::none_of(distinct.begin(), distinct.end(), [&](const auto &d) {
			    return d.second->secret == c.second->secret;
		    }))
			distinct.push_back(c);
	auto allows = [&](const Holding *h) {
		return h->inv >= 0 && !inv_[h->inv].allowed_upstreams.empty() &&
		       upstream_allowed(inv_[h->inv].allowed_upstreams, e.addr, e.sni, e.http_host);
	};
	for (const auto &c : distinct)
		if (allows(c.second))
			bound.push_back(c);
	const char *pairing = "allowed_upstream";
	if (bound.empty() && distinct.size() == 1) {
		bound = distinct;
		pairing = "sole_secret";
	}
	// The upstream as named in records; hashed without building it.
	const std::string &up_name_raw = !e.sni.empty()         ? e.sni
	                                 : !e.http_host.empty() ? e.http_host
	                                                        : e.addr;
	uint64_t up_hash =
	    fnv1a(up_name_raw) ^ (static_cast<uint64_t>(e.port) * 0x9e3779b97f4a7c15ull);
	std::string up_key_buf;
	auto up_key_of = [&]() -> const std::string & {
		if (up_key_buf.empty())
			up_key_buf = upstream_name(e) + ":" + std::to_string(e.port);
		return up_key_buf;
	};
	const std::string &identity = p.start.identity;
	auto who = [&] {
		return sanitize_utf8(p.start.comm) + " (pid " + std::to_string(p.start.pid) + ", " +
		       identity + ")";
	};
	int64_t window = static_cast<int64_t>(cfg_.dedupe_window.count()) * 1000000LL;
	// Once per (process, credential, upstream) and window; repeats counted.
	auto first_use = [&](uint64_t key, uint64_t *repeats) {
		// A few upstreams per process: a flat list beats a hash map here.
		auto it = std::find_if(p.uses.begin(), p.uses.end(),
		                       [&](const auto &u) { return u.first == key; });
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
		if (d.last_ns && since(e.time_ns, d.last_ns) < window) {
			d.suppressed++;
			counters_.uses_deduplicated++;
			return false;
		}
		*repeats = d.suppressed;
		d = Dedupe{e.time_ns, 0};
		return true;
	};
	auto use_record = [&](const char *pair, uint64_t repeats) {
		Record rec{base("secret_use", e.time_ns), {}};
		nlohmann::json &r = rec.fields;
		r["pairing"] = pair;
		r["upstream"] = upstream_json(e);
		if (repeats)
			r["repeats"] = repeats;
		add_process_raw(p, rec);
		return rec;
	};

	if (bound.empty()) {
		// Several credentials, none bound to this upstream: report them
		// all as candidates rather than guess.
		auto candidates = [&] {
			nlohmann::json list = nlohmann::json::array();
			for (const auto &c : distinct)
				list.push_back(secret_json(secrets_[c.second->secret], c.second));
			return list;
		};
		// Whichever was sent, none may go there.
		bool all_restricted =
		    std::all_of(distinct.begin(), distinct.end(), [&](const auto &c) {
			    return c.second->inv >= 0 &&
			           !inv_[c.second->inv].allowed_upstreams.empty();
		    });
		if (all_restricted)
			alert("unexpected_upstream", p.start.exec_id + "|*|" + up_key_of(),
			      e.time_ns, [&] {
				      nlohmann::json r = base("alert", e.time_ns);
				      r["candidates"] = candidates();
				      r["identity"] = identity_json(p);
				      r["process"] = process_json(p);
				      r["upstream"] = upstream_json(e);
				      r["summary"] = who() + " connected to " + up_key_of() +
				                     ", which none of the " +
				                     std::to_string(distinct.size()) +
				                     " credentials it holds is allowed to reach";
				      return r;
			      });
		uint64_t repeats = 0;
		if (!first_use(up_hash ^ 0x2a, &repeats))
			return;
		Record rec = use_record("ambiguous", repeats);
		nlohmann::json &r = rec.fields;
		r["candidates"] = candidates();
		r["summary"] = who() + " connected to " + up_key_of() + " holding " +
		               std::to_string(distinct.size()) +
		               " credentials; which one it used cannot be told";
		counters_.ambiguous_uses++;
		counters_.secret_uses++;
		emit_(std::move(rec));
		return;
	}

	for (const auto &b : bound) {
		const Proc *holder = b.first; // not a structured binding: lambdas capture it
		const Holding *h = b.second;
		Secret &s = secrets_[h->secret];
		s.last_used_ns = std::max(s.last_used_ns, e.time_ns);
		// A repeat within the window changes nothing an alert would say
		// (same identity, credential and upstream): counted, no more.
		uint64_t repeats = 0;
		if (!first_use(up_hash ^ s.fp_hash, &repeats))
			continue;
		if (on_use_)
			on_use_(s.fingerprint, identity, up_key_of(), e.time_ns);
		const InventoryEntry *inv = h->inv >= 0 ? &inv_[h->inv] : nullptr;
		auto what = [&] { return s.type + " " + short_fp(s.fingerprint); };
		auto make = [&](const std::string &summary) {
			nlohmann::json r = base("alert", e.time_ns);
			r["secret"] = secret_json(s, h);
			r["identity"] = identity_json(p);
			r["process"] = process_json(p);
			r["upstream"] = upstream_json(e);
			r["summary"] = summary;
			return r;
		};
		if (!inv || inv->owner.empty())
			alert("unowned_secret", s.fingerprint + "|" + identity, e.time_ns, [&] {
				return make(who() + " used " + what() + " toward " + up_key_of() +
				            "; " +
				            (inv ? "inventory entry " + inv->id + " names no owner"
				                 : "no inventory entry owns it"));
			});
		if (inv && inv->status != "active")
			alert("revoked_credential_used", s.fingerprint + "|" + identity + "|use",
			      e.time_ns, [&] {
				      return make(who() + " used " + what() + " toward " +
				                  up_key_of() + ", which the inventory marks " +
				                  inv->status + " (" + inv->id + ")");
			      });
		if (inv && !inv->allowed_upstreams.empty() && !allows(h))
			alert("unexpected_upstream",
			      s.fingerprint + "|" + identity + "|" + up_key_of(), e.time_ns, [&] {
				      return make(who() + " sent " + what() + " (" + inv->id +
				                  ") toward " + up_key_of() +
				                  ", which is not among its allowed upstreams");
			      });
		if (inv && !inv->allowed_identities.empty() &&
		    std::none_of(inv->allowed_identities.begin(), inv->allowed_identities.end(),
		                 [&](const std::string &g) { return glob_match(g, identity); }))
			alert("out_of_scope_identity", s.fingerprint + "|" + identity, e.time_ns,
			      [&] {
				      return make(who() + " used " + what() + " (" + inv->id +
				                  ") toward " + up_key_of() +
				                  ", which its identity is not allowed to use");
			      });
		check_stale(s, e.time_ns, &p);

		Record rec = use_record(pairing, repeats);
		nlohmann::json &r = rec.fields;
		r["secret"] = secret_json(s, h);
		if (holder != &p)
			r["secret"]["holder_exec_id"] = holder->start.exec_id; // inherited
		r["summary"] = who() + " used " + what() + " from " + h->source + " " +
		               sanitize_utf8(h->location) + " toward " + up_key_of() +
		               (inv ? " (inventory " + inv->id + ")" : "");
		counters_.secret_uses++;
		emit_(std::move(rec));
	}
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
		next_stale_check_ =
		    later(now, static_cast<int64_t>(cfg_.stale_check_interval.count()) * 1000000LL);
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
	int64_t window = static_cast<int64_t>(cfg_.dedupe_window.count()) * 1000000LL;
	if (alert_seen_.size() > 4096)
		std::erase_if(alert_seen_, [&](const auto &kv) {
			return since(now, kv.second.last_ns) > window;
		});
}

nlohmann::json Correlator::secret_json(const Secret &s, const Holding *h) const
{
	nlohmann::json j = {{"fingerprint", s.fingerprint}, {"type", s.type}};
	const std::string &source = h ? h->source : s.last_source;
	const std::string &location = h ? h->location : s.last_location;
	j["source"] = source;
	const char *loc_key = source == "env" ? "env" : source == "argv" ? "arg" : "path";
	j[loc_key] = sanitize_utf8(location);
	if (h && !h->name.empty())
		j["name"] = sanitize_utf8(h->name);
	int inv = h ? h->inv : s.inv;
	if (inv >= 0) {
		const InventoryEntry &e = inv_[inv];
		j["inventory_id"] = e.id;
		if (!e.owner.empty())
			j["owner"] = e.owner;
		if (!e.environment.empty())
			j["environment"] = e.environment;
		if (e.status != "active")
			j["status"] = e.status;
	}
	return j;
}

// Records are built field by field: nlohmann's initializer lists copy every
// value once more. Strings were made valid UTF-8 when the process arrived.
nlohmann::json Correlator::identity_json(const Proc &p) const
{
	nlohmann::json j = nlohmann::json::object();
	j["id"] = p.start.identity;
	nlohmann::json &sel = j["selectors"] = nlohmann::json::object();
	for (const auto &[k, v] : p.start.selectors)
		sel[k] = v;
	return j;
}

// The process as records show it: built once per process as a string. Its
// ancestry is the ancestors' own cached one-line summaries, joined.
const std::string &Correlator::process_raw(const Proc &p) const
{
	if (p.process_raw)
		return *p.process_raw;
	nlohmann::json j = nlohmann::json::object();
	j["pid"] = p.start.pid;
	j["ppid"] = p.start.ppid;
	j["uid"] = p.start.uid;
	j["exec_id"] = p.start.exec_id;
	j["comm"] = p.start.comm;
	j["exe"] = p.start.exe;
	nlohmann::json &cmd = j["cmdline"] = nlohmann::json::array();
	for (const auto &a : p.start.cmdline)
		cmd.push_back(a);
	j["tty"] = p.start.tty;
	if (!p.start.mcp_server.empty())
		j["mcp_server"] = p.start.mcp_server;
	std::string s = dump_json(j);
	s.pop_back(); // '}'
	s += ",\"ancestry\":[";
	const std::string *parent = &p.start.parent_exec_id;
	for (uint32_t i = 0; i < ancestry_depth_ && !parent->empty(); i++) {
		auto it = procs_.find(proc_key(*parent));
		if (it == procs_.end())
			break;
		const Proc &a = it->second;
		if (a.ancestor_raw.empty()) {
			nlohmann::json e = nlohmann::json::object();
			e["pid"] = a.start.pid;
			e["exec_id"] = a.start.exec_id;
			e["comm"] = a.start.comm;
			e["exe"] = a.start.exe;
			a.ancestor_raw = dump_json(e);
		}
		if (i)
			s.push_back(',');
		s += a.ancestor_raw;
		parent = &a.start.parent_exec_id;
	}
	s += "]}";
	p.process_raw = std::make_shared<const std::string>(std::move(s));
	return *p.process_raw;
}

nlohmann::json Correlator::process_json(const Proc &p) const
{
	return nlohmann::json::parse(process_raw(p));
}

void Correlator::add_process_raw(const Proc &p, Record &r) const
{
	if (!p.identity_raw)
		p.identity_raw = std::make_shared<const std::string>(dump_json(identity_json(p)));
	r.raw.push_back({"identity", p.identity_raw});
	process_raw(p);
	r.raw.push_back({"process", p.process_raw});
}

nlohmann::json Correlator::base(const char *type, int64_t event_ns) const
{
	nlohmann::json r;
	r["type"] = type;
	r["schema"] = kSchema;
	r["time"] = rfc3339(clock_.now_ns());
	r["event_time"] = rfc3339(event_ns);
	r["host"] = host_;
	return r;
}

void Correlator::alert(const char *rule, const std::string &key, int64_t now,
                       const std::function<nlohmann::json()> &build)
{
	if (disabled_.count(rule))
		return;
	const RuleInfo *info = find_rule(rule);
	auto &d = alert_seen_[std::string(rule) + "|" + key];
	int64_t window = static_cast<int64_t>(cfg_.dedupe_window.count()) * 1000000LL;
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
