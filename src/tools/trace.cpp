#include "keytrail/tools/trace.h"

#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <sstream>

#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

std::string str(const nlohmann::json &j, const char *k)
{
	auto it = j.find(k);
	return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

uint64_t num(const nlohmann::json &j, const char *k)
{
	auto it = j.find(k);
	return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>()
	       : it != j.end() && it->is_number_integer()
	           ? static_cast<uint64_t>(std::max<int64_t>(0, it->get<int64_t>()))
	           : 0;
}

int64_t time_of(const nlohmann::json &r, const char *k = "time")
{
	int64_t t = 0;
	std::string s = str(r, k);
	if (!s.empty())
		parse_rfc3339(s, &t);
	return t;
}

// The identity id of a record: a string, or an object with "id".
std::string identity_of(const nlohmann::json &r)
{
	auto it = r.find("identity");
	if (it == r.end())
		return "";
	if (it->is_string())
		return it->get<std::string>();
	return it->is_object() ? str(*it, "id") : "";
}

// Everything the journal says, by exec_id.
struct Model {
	std::map<std::string, TraceProcess> procs;
	// fingerprint -> identity -> an exec_id that held it
	std::map<std::string, std::map<std::string, std::string>> holders;
	std::map<std::string, std::set<std::string>> inventory; // id -> fingerprints

	TraceProcess &proc(const std::string &exec_id)
	{
		TraceProcess &p = procs[exec_id];
		p.exec_id = exec_id;
		return p;
	}

	void add(const nlohmann::json &r)
	{
		std::string type = str(r, "type");
		int64_t t = time_of(r);
		if (type == "secret_use" || type == "alert") {
			const nlohmann::json &pj = r.value("process", nlohmann::json::object());
			std::string id = str(pj, "exec_id");
			if (id.empty() || !r.contains("secret") || !r.contains("upstream"))
				return;
			TraceProcess &p = proc(id);
			const auto &u = r["upstream"];
			std::string addr = str(u, "addr"), name = str(u, "sni");
			if (name.empty())
				name = str(u, "http_host");
			auto port = static_cast<uint32_t>(num(u, "port"));
			auto c = std::find_if(p.connects.begin(), p.connects.end(), [&](auto &x) {
				return x.addr == addr && x.port == port && x.name == name;
			});
			if (c == p.connects.end()) {
				p.connects.push_back(
				    {addr, name, port, time_of(r, "event_time"), {}});
				c = p.connects.end() - 1;
			}
			std::string fp = str(r["secret"], "fingerprint");
			if (type == "secret_use" && !fp.empty() &&
			    std::find(c->used.begin(), c->used.end(), fp) == c->used.end())
				c->used.push_back(fp);
			return;
		}
		std::string id = str(r, "exec_id");
		if (id.empty())
			return;
		if (type == "secret") {
			const nlohmann::json &s = r.value("secret", nlohmann::json::object());
			TraceSecret ts{str(s, "fingerprint"),  str(s, "type"),
			               str(s, "source"),       "",
			               str(s, "inventory_id"), t};
			for (const char *k : {"env", "arg", "path"})
				if (ts.location.empty())
					ts.location = str(s, k);
			if (ts.fingerprint.empty())
				return;
			if (!ts.inventory_id.empty())
				inventory[ts.inventory_id].insert(ts.fingerprint);
			TraceProcess &p = proc(id);
			fill(p, r, t);
			std::string who = identity_of(r);
			if (!who.empty())
				holders[ts.fingerprint].emplace(who, id);
			for (const auto &x : p.secrets)
				if (x.fingerprint == ts.fingerprint && x.location == ts.location)
					return;
			p.secrets.push_back(std::move(ts));
			return;
		}
		TraceProcess &p = proc(id);
		fill(p, r, t);
		if (type == "exec") {
			p.start = t;
			p.comm = str(r, "comm"); // a fork record named it after its parent
			p.exe = str(r, "filename");
			p.argv.clear();
			for (const auto &a : r.value("argv", nlohmann::json::array()))
				if (a.is_string())
					p.argv.push_back(a.get<std::string>());
			const auto &anc = r.value("ancestry", nlohmann::json::array());
			if (!anc.empty() && anc[0].is_object()) {
				link(str(anc[0], "exec_id"), p);
				// Ancestors the journal never saw exec are still named.
				for (size_t i = 0; i < anc.size(); i++) {
					TraceProcess &a = proc(str(anc[i], "exec_id"));
					if (a.comm.empty())
						a.comm = str(anc[i], "comm");
					if (a.exe.empty())
						a.exe = str(anc[i], "exe");
					if (!a.pid)
						a.pid = static_cast<uint32_t>(num(anc[i], "pid"));
					if (i + 1 < anc.size())
						link(str(anc[i + 1], "exec_id"), a);
				}
			}
		} else if (type == "fork") {
			TraceProcess &c = proc(str(r, "child_exec_id"));
			c.pid = static_cast<uint32_t>(num(r, "child_pid"));
			c.ppid = p.pid;
			if (!c.start)
				c.start = t;
			if (c.comm.empty())
				c.comm = p.comm;
			if (c.exe.empty())
				c.exe = p.exe;
			link(id, c);
		} else if (type == "exit") {
			p.exit = t;
		} else if (type == "connect") {
			std::string addr = str(r, "addr"), name = str(r, "sni");
			if (name.empty())
				name = str(r, "http_host");
			auto port = static_cast<uint32_t>(num(r, "port"));
			if (addr.empty() || port == 0)
				return;
			for (const auto &c : p.connects)
				if (c.addr == addr && c.port == port && c.name == name)
					return;
			p.connects.push_back({addr, name, port, t, {}});
		}
	}

	void fill(TraceProcess &p, const nlohmann::json &r, int64_t t)
	{
		if (!p.pid)
			p.pid = static_cast<uint32_t>(num(r, "pid"));
		if (!p.ppid)
			p.ppid = static_cast<uint32_t>(num(r, "ppid"));
		if (p.comm.empty())
			p.comm = str(r, "comm");
		if (p.identity.empty())
			p.identity = identity_of(r);
		if (p.mcp_server.empty())
			p.mcp_server = str(r, "mcp_server");
		if (!p.start || (t && t < p.start))
			p.start = t;
	}

	void link(const std::string &parent, TraceProcess &child)
	{
		if (parent.empty() || parent == child.exec_id)
			return;
		child.parent = parent;
		proc(parent).children.insert(child.exec_id);
	}
};

std::string when(int64_t t)
{
	return t ? rfc3339(t) : std::string(27, ' ');
}

std::string short_fp(const std::string &fp)
{
	return fp.substr(0, 12);
}

std::string dot_escape(const std::string &s)
{
	std::string o;
	for (char c : sanitize_utf8(s)) {
		if (c == '"' || c == '\\')
			o.push_back('\\');
		o.push_back(c == '\n' ? ' ' : c);
	}
	return o;
}

} // namespace

TraceResult run_trace(const std::string &journal_dir, const TraceQuery &q)
{
	TraceResult res;
	struct stat st;
	if (stat(journal_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
		res.error = "no journal at " + journal_dir;
		return res;
	}
	Model m;
	read_journal(
	    journal_dir,
	    [&](nlohmann::json &&r) {
		    int64_t t = time_of(r);
		    if ((q.since && t && t < q.since) || (q.until && t && t > q.until))
			    return true;
		    m.add(r);
		    return true;
	    },
	    &res.stats);

	// Seeds.
	std::set<std::string> fps;
	if (!q.secret.empty())
		for (const auto &[fp, h] : m.holders)
			if (fp.rfind(q.secret, 0) == 0)
				fps.insert(fp);
	if (!q.inventory.empty())
		for (const auto &fp : m.inventory[q.inventory])
			fps.insert(fp);
	std::set<std::string> seeds;
	for (const auto &[id, p] : m.procs) {
		bool hit = false;
		if (!fps.empty()) {
			for (const auto &s : p.secrets)
				hit = hit || fps.count(s.fingerprint);
			for (const auto &c : p.connects)
				for (const auto &u : c.used)
					hit = hit || fps.count(u);
		}
		if (!q.exec_id.empty() && id == q.exec_id)
			hit = true;
		if (!q.identity.empty() && p.identity == q.identity)
			hit = true;
		if (hit)
			seeds.insert(id);
	}
	// A pid at a time: the instance that started last before then (one pid
	// is one process at a time; an exit record may have been lost).
	if (q.pid) {
		const TraceProcess *best = nullptr;
		for (const auto &[id, p] : m.procs) {
			if (p.pid != *q.pid)
				continue;
			if (!q.at) {
				seeds.insert(id);
				continue;
			}
			if (p.start <= *q.at && (!p.exit || *q.at <= p.exit) &&
			    (!best || p.start > best->start))
				best = &p;
		}
		if (best)
			seeds.insert(best->exec_id);
	}
	if (seeds.empty()) {
		res.error = "nothing in the journal matches the query";
		return res;
	}
	// Ancestors and descendants of every seed.
	std::set<std::string> keep;
	std::function<void(const std::string &)> down = [&](const std::string &id) {
		if (!keep.insert(id).second)
			return;
		for (const auto &c : m.procs[id].children)
			down(c);
	};
	for (const auto &s : seeds) {
		// The seed's siblings too: a script's `cat .env` and the `curl`
		// after it are the pivot.
		const std::string &parent = m.procs[s].parent;
		down(parent.empty() ? s : parent);
		std::string up = parent.empty() ? "" : m.procs[parent].parent;
		for (int guard = 0; !up.empty() && guard < 64; guard++) {
			keep.insert(up);
			up = m.procs[up].parent;
		}
	}
	for (const auto &id : keep)
		res.processes[id] = m.procs[id];
	for (auto &[id, p] : res.processes) {
		std::set<std::string> kept;
		for (const auto &c : p.children)
			if (keep.count(c))
				kept.insert(c);
		p.children = std::move(kept);
		if (p.parent.empty() || !keep.count(p.parent))
			res.roots.push_back(id);
	}
	std::sort(res.roots.begin(), res.roots.end(), [&](const auto &a, const auto &b) {
		return res.processes[a].start < res.processes[b].start;
	});
	res.seeds.assign(seeds.begin(), seeds.end());
	// Other identities holding the credentials seen in the tree.
	std::set<std::string> tree_ids;
	for (const auto &[id, p] : res.processes)
		tree_ids.insert(p.identity);
	for (const auto &[id, p] : res.processes)
		for (const auto &s : p.secrets)
			for (const auto &[who, eid] : m.holders[s.fingerprint])
				if (!tree_ids.count(who))
					res.shared[s.fingerprint].insert(who);
	return res;
}

std::string trace_tree(const TraceResult &r)
{
	std::ostringstream o;
	std::set<std::string> seeds(r.seeds.begin(), r.seeds.end());
	std::function<void(const std::string &, const std::string &, bool, bool)> show =
	    [&](const std::string &id, const std::string &indent, bool last, bool root) {
		    const TraceProcess &p = r.processes.at(id);
		    std::string branch = root ? "" : (last ? "└─ " : "├─ ");
		    std::string cmd = sanitize_utf8(p.comm);
		    if (!p.argv.empty()) {
			    cmd.clear();
			    for (const auto &a : p.argv)
				    cmd += (cmd.empty() ? "" : " ") + sanitize_utf8(a);
		    }
		    o << when(p.start) << "  " << indent << branch << cmd << "  [pid " << p.pid
		      << ", " << p.exec_id << "]";
		    if (!p.mcp_server.empty())
			    o << " mcp=" << p.mcp_server;
		    if (!p.identity.empty())
			    o << " identity=" << p.identity;
		    if (p.exit)
			    o << " exited " << rfc3339(p.exit);
		    if (seeds.count(id))
			    o << "  <==";
		    o << "\n";
		    std::string sub = indent + (root ? "" : (last ? "   " : "│  "));
		    for (const auto &s : p.secrets)
			    o << when(s.time) << "  " << sub << "│  * secret " << s.type << " "
			      << short_fp(s.fingerprint) << " from " << s.source << " "
			      << sanitize_utf8(s.location)
			      << (s.inventory_id.empty() ? ""
			                                 : " (inventory " + s.inventory_id + ")")
			      << "\n";
		    for (const auto &c : p.connects) {
			    o << when(c.time) << "  " << sub << "│  > connect "
			      << sanitize_utf8(c.name.empty() ? c.addr : c.name) << ":" << c.port;
			    if (!c.name.empty())
				    o << " (" << c.addr << ")";
			    for (const auto &u : c.used)
				    o << " using " << short_fp(u);
			    o << "\n";
		    }
		    std::vector<std::string> kids(p.children.begin(), p.children.end());
		    std::sort(kids.begin(), kids.end(), [&](const auto &a, const auto &b) {
			    return r.processes.at(a).start < r.processes.at(b).start;
		    });
		    for (size_t i = 0; i < kids.size(); i++)
			    show(kids[i], sub, i + 1 == kids.size(), false);
	    };
	for (const auto &root : r.roots)
		show(root, "", true, true);
	for (const auto &[fp, ids] : r.shared) {
		o << "\ncredential " << short_fp(fp) << " is also held by:\n";
		for (const auto &id : ids)
			o << "  " << id << "\n";
	}
	return o.str();
}

nlohmann::json trace_json(const TraceResult &r)
{
	nlohmann::json procs = nlohmann::json::array();
	for (const auto &[id, p] : r.processes) {
		nlohmann::json j = {{"exec_id", id},
		                    {"pid", p.pid},
		                    {"ppid", p.ppid},
		                    {"parent_exec_id", p.parent},
		                    {"comm", sanitize_utf8(p.comm)},
		                    {"exe", sanitize_utf8(p.exe)},
		                    {"identity", p.identity},
		                    {"mcp_server", p.mcp_server},
		                    {"start", p.start ? rfc3339(p.start) : ""},
		                    {"exit", p.exit ? rfc3339(p.exit) : ""},
		                    {"children", p.children}};
		nlohmann::json argv = nlohmann::json::array();
		for (const auto &a : p.argv)
			argv.push_back(sanitize_utf8(a));
		j["argv"] = argv;
		nlohmann::json secrets = nlohmann::json::array();
		for (const auto &s : p.secrets)
			secrets.push_back({{"fingerprint", s.fingerprint},
			                   {"type", s.type},
			                   {"source", s.source},
			                   {"location", sanitize_utf8(s.location)},
			                   {"inventory_id", s.inventory_id},
			                   {"time", rfc3339(s.time)}});
		j["secrets"] = secrets;
		nlohmann::json conns = nlohmann::json::array();
		for (const auto &c : p.connects)
			conns.push_back({{"addr", c.addr},
			                 {"port", c.port},
			                 {"name", sanitize_utf8(c.name)},
			                 {"time", rfc3339(c.time)},
			                 {"secrets_used", c.used}});
		j["upstreams"] = conns;
		procs.push_back(std::move(j));
	}
	nlohmann::json shared = nlohmann::json::object();
	for (const auto &[fp, ids] : r.shared)
		shared[fp] = ids;
	return {{"roots", r.roots},
	        {"seeds", r.seeds},
	        {"processes", procs},
	        {"shared_with", shared},
	        {"journal",
	         {{"segments", r.stats.segments},
	          {"records", r.stats.records},
	          {"bad_lines", r.stats.bad_lines},
	          {"truncated_segments", r.stats.truncated_segments}}}};
}

std::string trace_dot(const TraceResult &r)
{
	std::ostringstream o;
	o << "digraph keytrail {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
	std::set<std::string> secrets, upstreams;
	for (const auto &[id, p] : r.processes) {
		o << "  \"p:" << dot_escape(id) << "\" [shape=box, label=\"" << dot_escape(p.comm)
		  << "\\npid " << p.pid << (p.mcp_server.empty() ? "" : "\\n" + p.mcp_server)
		  << "\"];\n";
		for (const auto &c : p.children)
			o << "  \"p:" << dot_escape(id) << "\" -> \"p:" << dot_escape(c)
			  << "\" [label=\"spawned\"];\n";
		for (const auto &s : p.secrets) {
			if (secrets.insert(s.fingerprint).second)
				o << "  \"s:" << s.fingerprint
				  << "\" [shape=hexagon, style=filled, "
				  << "fillcolor=\"#ffe0a0\", label=\"" << dot_escape(s.type)
				  << "\\n"
				  << short_fp(s.fingerprint) << "\"];\n";
			o << "  \"p:" << dot_escape(id) << "\" -> \"s:" << s.fingerprint
			  << "\" [label=\"obtained (" << dot_escape(s.source) << ")\"];\n";
		}
		for (const auto &c : p.connects) {
			std::string key = c.addr + ":" + std::to_string(c.port) + "/" + c.name;
			if (upstreams.insert(key).second)
				o << "  \"u:" << dot_escape(key) << "\" [shape=cylinder, label=\""
				  << dot_escape(c.name.empty() ? c.addr : c.name) << ":" << c.port
				  << "\"];\n";
			o << "  \"p:" << dot_escape(id) << "\" -> \"u:" << dot_escape(key)
			  << "\" [label=\"connected\"];\n";
			for (const auto &u : c.used)
				o << "  \"s:" << u << "\" -> \"u:" << dot_escape(key)
				  << "\" [style=dashed, color=red, label=\"used\"];\n";
		}
	}
	for (const auto &[fp, ids] : r.shared)
		for (const auto &id : ids) {
			o << "  \"i:" << dot_escape(id)
			  << "\" [shape=ellipse, style=dashed, label=\"" << dot_escape(id)
			  << "\"];\n";
			o << "  \"i:" << dot_escape(id) << "\" -> \"s:" << fp
			  << "\" [style=dotted, label=\"also holds\"];\n";
		}
	o << "}\n";
	return o.str();
}

} // namespace keytrail
