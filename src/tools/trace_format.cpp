// How a trace reads: an indented tree for a person, JSON, Graphviz DOT.
#include <algorithm>
#include <iomanip>
#include <sstream>

#include "keytrail/schema/record.h"
#include "keytrail/tools/trace.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

std::string when(int64_t t)
{
	return t ? rfc3339(t) : std::string(27, ' ');
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

// One label line per rule that fired on the process: "! rule (severity)".
std::string alert_lines(const TraceProcess &p)
{
	std::set<std::string> seen;
	std::string out;
	for (const auto &a : p.alerts)
		if (seen.insert(a.rule).second)
			out += "\\n! " + dot_escape(a.rule) + " (" + dot_escape(a.severity) + ")";
	return out;
}

} // namespace

namespace
{

// The tree, process by process. The journal is input someone else wrote:
// a cycle in it, or a chain deeper than kMaxDepth, is cut, not followed.
// Unless all, helpers with nothing to show (no secret their parent did not
// already hold, no connection, none below them, not asked for) fold into
// one line under their parent: a server that ran git forty times reads as
// the server and what it did.
class TreeWriter
{
      public:
	TreeWriter(const TraceResult &r, bool all)
	    : r_(r), seeds_(r.seeds.begin(), r.seeds.end()), all_(all)
	{
	}

	std::string write()
	{
		for (const auto &root : r_.roots)
			process(root, nullptr, "", true, 0);
		for (const auto &[fp, ids] : r_.shared) {
			o_ << "\ncredential " << short_fp(fp) << " is also held by:\n";
			for (const auto &id : ids)
				o_ << "  " << id << "\n";
		}
		return o_.str();
	}

      private:
	static constexpr size_t kMaxDepth = 64;

	void process(const std::string &id, const TraceProcess *parent, const std::string &indent,
	             bool last, size_t depth)
	{
		const TraceProcess &p = r_.processes.at(id);
		bool root = !parent;
		std::string branch = root ? "" : (last ? "└─ " : "├─ ");
		if (!shown_.insert(id).second || depth >= kMaxDepth) {
			o_ << std::string(29, ' ') << indent << branch << "... ("
			   << (depth >= kMaxDepth ? "deeper processes omitted" : "shown above")
			   << ")\n";
			return;
		}
		o_ << when(p.start) << "  " << indent << branch << command(p) << "  [pid " << p.pid
		   << ", " << p.exec_id << "]";
		if (!p.mcp_server.empty())
			o_ << " mcp=" << p.mcp_server;
		if (!p.identity.empty())
			o_ << " identity=" << p.identity;
		if (p.exit)
			o_ << " exited " << rfc3339(p.exit);
		if (seeds_.count(id))
			o_ << "  <==";
		o_ << "\n";
		std::string sub = indent + (root ? "" : (last ? "   " : "│  "));
		details(p, parent, sub);
		std::vector<std::string> kids, folded;
		for (const auto &c : p.children)
			(all_ || worth_showing(c, p, 0) ? kids : folded).push_back(c);
		std::sort(kids.begin(), kids.end(), [&](const auto &a, const auto &b) {
			return r_.processes.at(a).start < r_.processes.at(b).start;
		});
		for (size_t i = 0; i < kids.size(); i++)
			process(kids[i], &p, sub, i + 1 == kids.size() && folded.empty(),
			        depth + 1);
		if (!folded.empty())
			o_ << std::string(29, ' ') << sub << "└─ " << fold_line(folded) << "\n";
	}

	// A seed, or something of its own to show, or above one that has.
	bool worth_showing(const std::string &id, const TraceProcess &parent, size_t depth)
	{
		if (auto it = worth_.find(id); it != worth_.end())
			return it->second;
		worth_[id] = false; // a cycle in the journal shows nothing more
		const TraceProcess &p = r_.processes.at(id);
		bool w = seeds_.count(id) || !p.connects.empty() || !p.alerts.empty() ||
		         !p.tool_calls.empty() || depth >= kMaxDepth;
		for (size_t i = 0; !w && i < p.secrets.size(); i++)
			w = !inherited(p.secrets[i], &parent);
		for (auto c = p.children.begin(); !w && c != p.children.end(); ++c)
			w = worth_showing(*c, p, depth + 1);
		return worth_[id] = w;
	}

	// "... 3 more with nothing new: git ×2, sleep (--all shows them)"
	std::string fold_line(const std::vector<std::string> &ids)
	{
		std::map<std::string, size_t> by_comm;
		size_t total = 0;
		for (const auto &id : ids)
			total += count_tree(id, by_comm, 0);
		std::string line = "... " + std::to_string(total) + " more with nothing new:";
		for (const auto &[comm, n] : by_comm)
			line += " " + sanitize_utf8(comm) +
			        (n > 1 ? " ×" + std::to_string(n) : "") + ",";
		line.back() = ' ';
		return line + "(--all shows them)";
	}

	size_t count_tree(const std::string &id, std::map<std::string, size_t> &by_comm,
	                  size_t depth)
	{
		if (depth >= kMaxDepth || !counted_.insert(id).second)
			return 0;
		const TraceProcess &p = r_.processes.at(id);
		by_comm[p.comm]++;
		size_t n = 1;
		for (const auto &c : p.children)
			n += count_tree(c, by_comm, depth + 1);
		return n;
	}

	static std::string command(const TraceProcess &p)
	{
		if (p.argv.empty())
			return sanitize_utf8(p.comm);
		std::string cmd;
		for (const auto &a : p.argv)
			cmd += (cmd.empty() ? "" : " ") + sanitize_utf8(a);
		return cmd;
	}

	// Its parent held it too (env through fork and exec, mostly).
	static bool inherited(const TraceSecret &s, const TraceProcess *parent)
	{
		return parent && std::any_of(parent->secrets.begin(), parent->secrets.end(),
		                             [&](const TraceSecret &x) {
			                             return x.fingerprint == s.fingerprint;
		                             });
	}

	void details(const TraceProcess &p, const TraceProcess *parent, const std::string &sub)
	{
		for (const auto &s : p.secrets)
			if (all_ || !inherited(s, parent))
				o_ << when(s.time) << "  " << sub << "│  * secret " << s.type << " "
				   << short_fp(s.fingerprint) << " from " << s.source << " "
				   << sanitize_utf8(s.location)
				   << (s.inventory_id.empty()
				           ? ""
				           : " (inventory " + s.inventory_id + ")")
				   << "\n";
		for (const auto &c : p.tool_calls) {
			o_ << when(c.start) << "  " << sub << "│  ~ tool call "
			   << sanitize_utf8(c.tool) << " (id " << sanitize_utf8(c.id) << ")";
			if (!c.client.empty())
				o_ << " from " << sanitize_utf8(c.client);
			o_ << ": " << c.outcome << " in " << std::fixed << std::setprecision(1)
			   << c.duration_ms << " ms";
			o_.unsetf(std::ios::fixed);
			for (const auto &u : c.upstreams)
				o_ << (&u == &c.upstreams.front() ? ", reached " : " ")
				   << sanitize_utf8(u);
			for (const auto &[fp, up] : c.credentials)
				o_ << " using " << short_fp(fp) << "@" << sanitize_utf8(up);
			o_ << "\n";
		}
		for (const auto &c : p.connects) {
			o_ << when(c.time) << "  " << sub << "│  > connect "
			   << sanitize_utf8(c.name.empty() ? c.addr : c.name) << ":" << c.port;
			if (!c.name.empty())
				o_ << " (" << c.addr << ")";
			for (const auto &u : c.used)
				o_ << " using " << short_fp(u);
			o_ << "\n";
		}
		for (const auto &a : p.alerts)
			o_ << when(a.time) << "  " << sub << "│  ! " << a.type << " " << a.severity
			   << " " << a.rule << ": " << sanitize_utf8(a.summary) << " (finding "
			   << a.finding_id.substr(0, 12) << ")\n";
	}

	const TraceResult &r_;
	std::set<std::string> seeds_, shown_, counted_;
	std::map<std::string, bool> worth_;
	const bool all_;
	std::ostringstream o_;
};

} // namespace

std::string trace_tree(const TraceResult &r, bool all)
{
	return TreeWriter(r, all).write();
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
		nlohmann::json alerts = nlohmann::json::array();
		for (const auto &a : p.alerts)
			alerts.push_back({{"type", a.type},
			                  {"rule", a.rule},
			                  {"severity", a.severity},
			                  {"finding_id", a.finding_id},
			                  {"summary", sanitize_utf8(a.summary)},
			                  {"fingerprint", a.fingerprint},
			                  {"time", a.time ? rfc3339(a.time) : ""}});
		j["alerts"] = alerts;
		nlohmann::json calls = nlohmann::json::array();
		for (const auto &c : p.tool_calls) {
			nlohmann::json creds = nlohmann::json::array();
			for (const auto &[fp, up] : c.credentials)
				creds.push_back(
				    {{"fingerprint", fp}, {"upstream", sanitize_utf8(up)}});
			nlohmann::json ups = nlohmann::json::array();
			for (const auto &u : c.upstreams)
				ups.push_back(sanitize_utf8(u));
			calls.push_back({{"id", sanitize_utf8(c.id)},
			                 {"tool", sanitize_utf8(c.tool)},
			                 {"client", sanitize_utf8(c.client)},
			                 {"outcome", c.outcome},
			                 {"started", c.start ? rfc3339(c.start) : ""},
			                 {"duration_ms", c.duration_ms},
			                 {"upstreams", ups},
			                 {"credentials", creds}});
		}
		j["tool_calls"] = calls;
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
	          {"segments_skipped", r.stats.skipped_segments},
	          {"segments_indexed", r.stats.indexed_segments},
	          {"records", r.stats.records},
	          {"bad_lines", r.stats.bad_lines},
	          {"truncated_segments", r.stats.truncated_segments}}}};
}

namespace
{

// "curl\npid 26168\nspiffe://…/alpha/mcp\n2026-11-26T16:30:00Z", then alerts.
std::string process_label(const TraceProcess &p)
{
	std::string l =
	    dot_escape(p.comm.empty() ? p.exe : p.comm) + "\\npid " + std::to_string(p.pid);
	if (!p.identity.empty())
		l += "\\n" + dot_escape(p.identity);
	else if (!p.mcp_server.empty())
		l += "\\nmcp " + dot_escape(p.mcp_server);
	if (p.start)
		l += "\\n" + rfc3339(p.start).substr(0, 19) + "Z";
	return l + alert_lines(p);
}

std::string upstream_key(const TraceConnect &c)
{
	return c.addr + ":" + std::to_string(c.port) + "/" + c.name;
}

// The name a process gave it (SNI, Host) and the address it reached.
std::string upstream_label(const TraceConnect &c)
{
	std::string port = ":" + std::to_string(c.port);
	if (c.name.empty())
		return dot_escape(c.addr) + port;
	return dot_escape(c.name) + port + (c.addr.empty() ? "" : "\\n" + dot_escape(c.addr));
}

} // namespace

std::string trace_dot(const TraceResult &r)
{
	// One font for the graph, its nodes and its edges.
	const char *font = "fontname=\"Helvetica\", fontsize=10";
	std::ostringstream o;
	o << "digraph keytrail {\n  rankdir=LR;\n  graph [" << font << "];\n  node [" << font
	  << "];\n  edge [" << font << "];\n";
	std::set<std::string> seeds(r.seeds.begin(), r.seeds.end());
	std::set<std::string> secrets, upstreams, holders;
	for (const auto &[id, p] : r.processes) {
		std::string node = "\"p:" + dot_escape(id) + "\"";
		bool seed = seeds.count(id);
		o << "  " << node << " [shape=box, label=\"" << process_label(p) << "\"";
		if (seed) // what the query asked for
			o << ", style=\"filled,bold\", fillcolor=\"#cfe2ff\", penwidth=2";
		if (!p.alerts.empty())
			o << ", color=red" << (seed ? "" : ", penwidth=2");
		o << "];\n";
		for (const auto &c : p.children)
			o << "  " << node << " -> \"p:" << dot_escape(c)
			  << "\" [label=\"spawned\"];\n";
		for (const auto &s : p.secrets) {
			std::string sn = "\"s:" + dot_escape(s.fingerprint) + "\"";
			if (secrets.insert(s.fingerprint).second)
				o << "  " << sn
				  << " [shape=hexagon, style=filled, fillcolor=\"#ffe0a0\", "
				     "label=\""
				  << dot_escape(s.type) << "\\n"
				  << dot_escape(short_fp(s.fingerprint)) << "\"];\n";
			o << "  " << node << " -> " << sn << " [label=\"obtained ("
			  << dot_escape(s.source) << ")\"];\n";
		}
		// One edge per upstream, from the process: "used" (red) with the
		// credentials a secret_use bound to it, else "connected".
		std::vector<std::pair<const TraceConnect *, std::set<std::string>>> ups;
		for (const auto &c : p.connects) {
			auto it = std::find_if(ups.begin(), ups.end(), [&](const auto &u) {
				return upstream_key(*u.first) == upstream_key(c);
			});
			if (it == ups.end())
				it = ups.insert(ups.end(), {&c, {}});
			it->second.insert(c.used.begin(), c.used.end());
		}
		for (const auto &[c, used] : ups) {
			std::string un = "\"u:" + dot_escape(upstream_key(*c)) + "\"";
			if (upstreams.insert(upstream_key(*c)).second)
				o << "  " << un << " [shape=cylinder, label=\""
				  << upstream_label(*c) << "\"];\n";
			o << "  " << node << " -> " << un;
			if (used.empty()) {
				o << " [label=\"connected\"];\n";
				continue;
			}
			o << " [color=red, penwidth=2, label=\"used";
			for (const auto &fp : used)
				o << " " << dot_escape(short_fp(fp));
			o << "\"];\n";
		}
	}
	// Tool calls, between the client that made them and the upstreams they
	// reached: client -> call -> upstream (red with the credentials used);
	// the call is served by its process.
	std::set<std::string> clients;
	for (const auto &[id, p] : r.processes)
		for (const auto &c : p.tool_calls) {
			std::string tn = "\"t:" + dot_escape(id) + ":" + dot_escape(c.id) + ":" +
			                 std::to_string(c.start) + "\"";
			o << "  " << tn << " [shape=note, style=filled, fillcolor=\"#e0f0e0\", "
			  << "label=\"tool " << dot_escape(c.tool) << "\\nid " << dot_escape(c.id)
			  << "\\n"
			  << dot_escape(c.outcome) << ", " << static_cast<int64_t>(c.duration_ms)
			  << " ms\"];\n";
			std::string client = c.client.empty() ? "(client)" : c.client;
			std::string cn = "\"c:" + dot_escape(client) + "\"";
			if (clients.insert(client).second)
				o << "  " << cn << " [shape=oval, label=\"client\\n"
				  << dot_escape(client) << "\"];\n";
			o << "  " << cn << " -> " << tn << " [label=\"called\"];\n";
			o << "  " << tn << " -> \"p:" << dot_escape(id)
			  << "\" [style=dashed, label=\"served by\"];\n";
			for (const auto &u : c.upstreams) {
				// The upstream's node as the process's connects named it.
				std::string key;
				for (const auto &pc : p.connects) {
					std::string port = ":" + std::to_string(pc.port);
					std::string host = pc.name.substr(0, pc.name.rfind(':'));
					if (u == pc.name + port || u == host + port ||
					    u == pc.addr + port || u == pc.name)
						key = upstream_key(pc);
				}
				if (key.empty()) {
					key = u;
					if (upstreams.insert(key).second)
						o << "  \"u:" << dot_escape(key)
						  << "\" [shape=cylinder, label=\"" << dot_escape(u)
						  << "\"];\n";
				}
				o << "  " << tn << " -> \"u:" << dot_escape(key) << "\"";
				std::string used;
				for (const auto &[fp, up] : c.credentials)
					if (up == u)
						used += " " + dot_escape(short_fp(fp));
				if (used.empty())
					o << " [label=\"reached\"];\n";
				else
					o << " [color=red, penwidth=2, label=\"used" << used
					  << "\"];\n";
			}
		}
	for (const auto &[fp, ids] : r.shared)
		for (const auto &id : ids) {
			std::string in = "\"i:" + dot_escape(id) + "\"";
			if (holders.insert(id).second)
				o << "  " << in << " [shape=ellipse, style=dashed, label=\""
				  << dot_escape(id) << "\"];\n";
			o << "  " << in << " -> \"s:" << dot_escape(fp)
			  << "\" [style=dotted, label=\"also holds\"];\n";
		}
	o << "}\n";
	return o.str();
}

} // namespace keytrail
