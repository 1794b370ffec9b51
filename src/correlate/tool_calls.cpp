// Stdio MCP sessions and their tool calls: which call was in flight when a
// workload used a credential, the `tool_call` record each call ends with,
// and the two rules about tools: tool_credential_drift and
// secret_use_outside_tool_call. What is known of a call is its id, tool
// name and client: arguments and results never reach the correlator.
#include <algorithm>

#include "detail.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/mcp/jsonrpc.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"
#include "upstream.h"
#include "use.h"

namespace keytrail
{

using namespace correlate_detail;

namespace
{
// Bounds: a session's pending non-call requests, calls kept in flight or
// unwritten, upstreams and credentials credited to one call.
constexpr size_t kMaxRequests = 64;
constexpr size_t kMaxCalls = 4096;
constexpr size_t kMaxCredited = 32;
} // namespace

void Correlator::on(const McpSeen &e)
{
	Proc *p = known_proc(e.exec_id);
	if (!p)
		return;
	counters_.mcp_messages++;
	auto [it, fresh] = sessions_.try_emplace(proc_key(e.exec_id));
	McpSession &s = it->second;
	if (fresh) {
		s.exec_id = e.exec_id;
		s.workload = workload_of(*p);
		s.server = p->start.mcp_server;
		s.first_ns = e.time_ns;
	}
	auto remember = [&](const std::string &method) {
		if (e.id.empty())
			return;
		if (s.requests.size() >= kMaxRequests)
			s.requests.erase(s.requests.begin());
		s.requests.emplace_back(e.id, method);
	};
	if (e.dir == McpSeen::kIn) {
		if (e.kind == mcp::Message::kRequest && e.method == "initialize") {
			s.client_name = shown(e.client_name);
			s.client_version = shown(e.client_version);
			s.protocol = shown(e.protocol_version);
			remember(e.method);
		} else if (e.kind == mcp::Message::kRequest && e.method == "tools/call") {
			// A new call with the id of one in flight: the old one's reply
			// was lost.
			for (auto &c : calls_)
				if (!c.end_ns && c.exec_id == e.exec_id && c.id == e.id)
					end_call(c, e.time_ns, "no_reply");
			if (calls_.size() >= kMaxCalls) {
				counters_.tool_calls_evicted++;
				calls_.pop_front();
			}
			ToolCall &c = calls_.emplace_back();
			c.exec_id = e.exec_id;
			c.workload = s.workload;
			c.server = s.server;
			c.id = e.id;
			c.tool = shown(e.tool);
			c.client = s.client_name;
			c.start_ns = e.time_ns;
			c.partial = e.partial;
			for (const auto &k : e.argument_keys)
				c.argument_keys.push_back(shown(k));
		} else if (e.kind == mcp::Message::kRequest) {
			remember(e.method);
		} else if (e.method == "notifications/cancelled" && !e.cancelled_id.empty()) {
			for (auto &c : calls_)
				if (!c.end_ns && c.exec_id == e.exec_id && c.id == e.cancelled_id)
					end_call(c, e.time_ns, "cancelled");
		}
		return;
	}
	// Out: the server's replies (its own requests and notifications to the
	// client carry a method and are not ours to match).
	if (!e.method.empty() || (e.id.empty() && e.kind != mcp::Message::kResponse))
		return;
	for (auto &c : calls_)
		if (!c.end_ns && c.exec_id == e.exec_id && c.id == e.id) {
			c.partial = c.partial || e.partial;
			end_call(c, e.time_ns, e.is_error ? "error" : "ok");
			return;
		}
	// A reply or a request whose id was cut away: matched only when that
	// leaves no doubt (one call in flight, nothing else pending).
	ToolCall *only = nullptr;
	size_t open = 0;
	for (auto &c : calls_)
		if (!c.end_ns && c.exec_id == e.exec_id && (e.id.empty() || c.id.empty())) {
			only = &c;
			open++;
		}
	if (open == 1 && (e.id.empty() ? s.requests.empty() : true)) {
		only->partial = true;
		end_call(*only, e.time_ns, e.is_error ? "error" : "ok");
		return;
	}
	if (e.id.empty())
		return;
	auto r = std::find_if(s.requests.begin(), s.requests.end(),
	                      [&](const auto &x) { return x.first == e.id; });
	if (r == s.requests.end()) {
		counters_.mcp_replies_unmatched++;
		return;
	}
	if (r->second == "initialize") {
		s.server_name = shown(e.server_name);
		s.server_version = shown(e.server_version);
		if (!e.protocol_version.empty())
			s.protocol = shown(e.protocol_version);
	}
	s.requests.erase(r);
}

void Correlator::end_call(ToolCall &c, int64_t t, const char *outcome)
{
	c.end_ns = std::max(t, c.start_ns);
	c.outcome = outcome;
}

void Correlator::calls_at(const Proc &p, int64_t t, std::vector<ToolCall *> &out)
{
	out.clear();
	if (calls_.empty())
		return;
	const std::string &w = workload_of(p);
	for (auto &c : calls_)
		if (c.workload == w && c.start_ns <= t && (!c.end_ns || t <= c.end_ns))
			out.push_back(&c);
}

nlohmann::json Correlator::call_ref(const ToolCall &c) const
{
	nlohmann::json j = {
	    {"id", shown(c.id)}, {"tool", c.tool}, {"started", rfc3339(c.start_ns)}};
	if (!c.client.empty())
		j["client"] = c.client;
	return j;
}

nlohmann::json Correlator::tool_call_at(const std::string &exec_id, int64_t t) const
{
	auto it = procs_.find(proc_key(exec_id));
	if (it == procs_.end() || calls_.empty())
		return nullptr;
	const std::string &w = workload_of(it->second);
	const ToolCall *one = nullptr;
	for (const auto &c : calls_)
		if (c.workload == w && c.start_ns <= t && (!c.end_ns || t <= c.end_ns)) {
			if (one)
				return nullptr;
			one = &c;
		}
	return one ? call_ref(*one) : nlohmann::json(nullptr);
}

// Is p in a workload whose stdio we read, past its start-up grace?
bool Correlator::stdio_session(const Proc &p, int64_t t) const
{
	const std::string &w = workload_of(p);
	for (const auto &[k, s] : sessions_)
		if (s.workload == w)
			return since(t, s.first_ns) > to_ns(cfg_.tool_call_startup_grace);
	return false;
}

void Correlator::tool_use(Use &u, Secret &s, const Holding *h)
{
	int64_t t = u.e.time_ns;
	calls_at(u.p, t, in_flight_);
	if (in_flight_.size() > 1)
		return; // counted once per connect in on(ConnectSeen)
	if (in_flight_.empty()) {
		if (!stdio_session(u.p, t))
			return;
		alert("secret_use_outside_tool_call", s.fingerprint + "|" + u.p.start.identity,
		      u.key(), t, {&u.p, &s, u.key()}, [&] {
			      nlohmann::json r = holding_alert(
			          s, h, u.p, t,
			          who(u.p) + " used " + s.type + " " + short_fp(s.fingerprint) +
			              " toward " + u.key() + " with no MCP tool call in flight");
			      r["upstream"] = u.up.json();
			      return r;
		      });
		return;
	}
	ToolCall &c = *in_flight_[0];
	uint32_t idx = static_cast<uint32_t>(&s - secrets_.data());
	if (c.credentials.size() < kMaxCredited &&
	    std::none_of(c.credentials.begin(), c.credentials.end(),
	                 [&](const auto &x) { return x.first == idx && x.second == u.key(); })) {
		c.credentials.emplace_back(idx, u.key());
		if (on_tool_upstream_ && !c.tool.empty())
			on_tool_upstream_({c.server, c.tool, s.fingerprint, u.key(), t});
	}
	// The tool's baseline for this credential: learned for
	// tool_baseline_window after its first use, then a new upstream drifts.
	if (c.tool.empty())
		return;
	std::string key = c.server + "|" + c.tool + "|" + s.fingerprint;
	auto [it, fresh] = baseline_.try_emplace(key);
	Baseline &b = it->second;
	if (fresh)
		b.first_ns = t;
	if (std::find(b.upstreams.begin(), b.upstreams.end(), u.key()) != b.upstreams.end())
		return;
	bool learning = since(t, b.first_ns) <= to_ns(cfg_.tool_baseline_window);
	if (!learning) {
		std::string known;
		for (const auto &x : b.upstreams)
			known += (known.empty() ? "" : ", ") + x;
		alert("tool_credential_drift", key, u.key(), t, {&u.p, &s, u.key()}, [&] {
			nlohmann::json r = holding_alert(
			    s, h, u.p, t,
			    "tool " + sanitize_utf8(c.tool) + " of " + c.server + " sent " +
			        s.type + " " + short_fp(s.fingerprint) + " toward " + u.key() +
			        (known.empty() ? "" : "; it had only reached " + known));
			r["upstream"] = u.up.json();
			r["mcp"] = {{"tool_call", call_ref(c)}, {"baseline", b.upstreams}};
			return r;
		});
	}
	if (b.upstreams.size() < kMaxCredited)
		b.upstreams.push_back(u.key());
}

void Correlator::set_tool_baseline(const std::vector<ToolUpstream> &known)
{
	for (const auto &k : known) {
		Baseline &b = baseline_[k.server + "|" + k.tool + "|" + k.fingerprint];
		if (!b.first_ns || k.first_ns < b.first_ns)
			b.first_ns = k.first_ns;
		if (b.upstreams.size() < kMaxCredited &&
		    std::find(b.upstreams.begin(), b.upstreams.end(), k.upstream) ==
		        b.upstreams.end())
			b.upstreams.push_back(k.upstream);
	}
}

// Calls that ended more than tool_call_linger ago (their uses have all
// arrived) or never answered within tool_call_timeout, and every call of
// a server that exited, become `tool_call` records.
void Correlator::write_calls(int64_t now, bool all)
{
	int64_t linger = to_ns(cfg_.tool_call_linger);
	for (auto &c : calls_) {
		if (c.end_ns)
			continue;
		auto p = procs_.find(proc_key(c.exec_id));
		bool gone = p == procs_.end() || p->second.exit_ns;
		if (all || gone || since(now, c.start_ns) > to_ns(cfg_.tool_call_timeout)) {
			end_call(c, gone && p != procs_.end() ? p->second.exit_ns : now,
			         all && !gone ? "unfinished" : "no_reply");
			counters_.tool_calls_unanswered++;
		}
	}
	while (!calls_.empty()) {
		auto it = std::find_if(calls_.begin(), calls_.end(), [&](const ToolCall &c) {
			return c.end_ns && (all || since(now, c.end_ns) > linger);
		});
		if (it == calls_.end())
			break;
		ToolCall &c = *it;
		Record rec{base("tool_call", c.end_ns), {}};
		nlohmann::json &r = rec.fields;
		r["mcp_server"] = c.server;
		r["tool"] = c.tool;
		r["id"] = shown(c.id);
		auto s = sessions_.find(proc_key(c.exec_id));
		if (s != sessions_.end()) {
			const McpSession &m = s->second;
			if (!m.client_name.empty())
				r["client"] = {{"name", m.client_name},
				               {"version", m.client_version}};
			if (!m.server_name.empty())
				r["server_info"] = {{"name", m.server_name},
				                    {"version", m.server_version}};
			if (!m.protocol.empty())
				r["protocol_version"] = m.protocol;
		}
		r["started"] = rfc3339(c.start_ns);
		r["duration_ms"] = static_cast<double>(since(c.end_ns, c.start_ns)) / 1e6;
		r["outcome"] = c.outcome;
		r["ok"] = std::string(c.outcome) == "ok";
		nlohmann::json ups = nlohmann::json::array(), creds = nlohmann::json::array();
		for (const auto &u : c.upstreams)
			ups.push_back(u);
		for (const auto &[idx, up] : c.credentials)
			creds.push_back({{"fingerprint", secrets_[idx].fingerprint},
			                 {"type", secrets_[idx].type},
			                 {"upstream", up}});
		r["upstreams"] = std::move(ups);
		r["credentials"] = std::move(creds);
		if (!c.argument_keys.empty())
			r["argument_keys"] = c.argument_keys;
		if (c.partial)
			r["partial"] = true;
		auto p = procs_.find(proc_key(c.exec_id));
		std::string tool = sanitize_utf8(c.tool);
		if (p != procs_.end()) {
			add_process_raw(p->second, rec);
			r["summary"] = who(p->second) + " ran tool " + tool + " (id " +
			               shown(c.id) + ") for " +
			               (c.client.empty() ? std::string("its client") : c.client) +
			               ": " + c.outcome + ", " +
			               std::to_string(c.upstreams.size()) + " upstreams, " +
			               std::to_string(c.credentials.size()) + " credential uses";
		} else {
			r["exec_id"] = c.exec_id;
			r["summary"] = "tool " + tool + " (id " + shown(c.id) + "): " + c.outcome;
		}
		counters_.tool_calls++;
		emit_(std::move(rec));
		calls_.erase(it);
	}
	// Sessions of servers that are gone and have no call left.
	std::erase_if(sessions_,
	              [&](const auto &kv) { return procs_.find(kv.first) == procs_.end(); });
}

} // namespace keytrail
