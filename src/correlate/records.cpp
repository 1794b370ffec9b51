// How the correlator's records look: the secret, identity and process parts
// every record shares, and the `secret` record of a sighting.
#include "detail.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/text.h"

namespace keytrail
{

using namespace correlate_detail;

std::string Correlator::who(const Proc &p)
{
	return p.start.comm + " (pid " + std::to_string(p.start.pid) + ", " + p.start.identity +
	       ")";
}

nlohmann::json Correlator::secret_json(const Secret &s, const Holding *h) const
{
	nlohmann::json j = {{"fingerprint", s.fingerprint}, {"type", s.type}};
	const std::string &source = h ? h->source : s.last_source;
	const std::string &location = h ? h->location : s.last_location;
	j["source"] = source;
	const char *loc_key = source == "env" ? "env" : source == "argv" ? "arg" : "path";
	j[loc_key] = shown(location);
	if (h && !h->name.empty())
		j["name"] = shown(h->name);
	if (const InventoryEntry *e = entry(h ? h->inv : s.inv)) {
		j["inventory_id"] = e->id;
		if (!e->owner.empty())
			j["owner"] = e->owner;
		if (!e->purpose.empty())
			j["purpose"] = e->purpose;
		if (!e->environment.empty())
			j["environment"] = e->environment;
		if (e->status != "active")
			j["status"] = e->status;
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
	if (!p.start.unresolved.empty())
		j["unresolved"] = p.start.unresolved;
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
	if (p.start.loginuid != UINT32_MAX)
		j["login_uid"] = p.start.loginuid;
	if (p.start.sessionid != UINT32_MAX)
		j["session"] = p.start.sessionid;
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

const std::shared_ptr<const std::string> &Correlator::identity_raw(const Proc &p) const
{
	if (!p.identity_raw)
		p.identity_raw = std::make_shared<const std::string>(dump_json(identity_json(p)));
	return p.identity_raw;
}

void Correlator::add_process_raw(const Proc &p, Record &r) const
{
	r.raw.push_back({"identity", identity_raw(p)});
	process_raw(p);
	r.raw.push_back({"process", p.process_raw});
}

nlohmann::json Correlator::base(const char *type, int64_t event_ns) const
{
	nlohmann::json r;
	r["type"] = type;
	r["schema"] = kSchemaVersion;
	r["time"] = rfc3339(clock_.now_ns());
	r["event_time"] = rfc3339(event_ns);
	r["host"] = host_;
	return r;
}

nlohmann::json Correlator::holding_alert(const Secret &s, const Holding *h, const Proc &p,
                                         int64_t event_ns, const std::string &summary) const
{
	nlohmann::json r = base("alert", event_ns);
	r["secret"] = secret_json(s, h);
	r["identity"] = identity_json(p);
	r["process"] = process_json(p);
	r["summary"] = summary;
	return r;
}

// A sighting as the agent's outputs and `keytrail replay` both write it:
// the holder and the credential, stamped with the time it was obtained.
Record Correlator::secret_record(const Secret &s, const Holding &h, const SecretSeen &e,
                                 const Proc *p) const
{
	nlohmann::json r;
	r["type"] = "secret";
	r["time"] = rfc3339(e.time_ns);
	r["host"] = host_;
	if (p) {
		r["pid"] = p->start.pid;
		r["ppid"] = p->start.ppid;
		r["comm"] = p->start.comm;
		r["uid"] = p->start.uid;
		r["gid"] = p->start.gid;
		r["exec_id"] = p->start.exec_id;
		if (!p->start.mcp_server.empty())
			r["mcp_server"] = p->start.mcp_server;
	}
	nlohmann::json sec = {
	    {"fingerprint", s.fingerprint}, {"type", s.type}, {"source", e.source}};
	if (!e.prefix.empty())
		sec["prefix"] =
		    sanitize_utf8(e.prefix); // public by definition (catalog show_prefix)
	const char *loc_key = e.source == "env" ? "env" : e.source == "argv" ? "arg" : "path";
	sec[loc_key] = shown(e.location);
	if (!e.name.empty())
		sec["name"] = shown(e.name);
	if (e.line)
		sec["line"] = e.line;
	if (!e.server.empty())
		sec["server"] = shown(e.server);
	const InventoryEntry *inv = entry(h.inv);
	if (inv) {
		sec["inventory_id"] = inv->id;
		if (!inv->owner.empty())
			sec["owner"] = inv->owner;
	}
	r["secret"] = std::move(sec);
	if (!e.rotated_from.empty())
		r["rotated_from"] = e.rotated_from;
	if (e.source == "mcp_config" || e.source == "argv")
		r["hardcoded"] = true;
	std::string holder =
	    p ? p->start.comm + " (pid " + std::to_string(p->start.pid) +
	            (p->start.mcp_server.empty() ? "" : ", " + p->start.mcp_server) + ")"
	      : "MCP client config";
	r["summary"] = holder + (p ? " obtained " : " hard-codes ") + s.type + " " +
	               short_fp(s.fingerprint) + " from " + e.source + " " + shown(e.location) +
	               (inv ? " (inventory " + inv->id + ")" : "");
	Record rec{std::move(r), {}};
	if (p)
		rec.raw.push_back({"identity", identity_raw(*p)});
	return rec;
}

} // namespace keytrail
