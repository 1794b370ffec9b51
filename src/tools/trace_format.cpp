// How a trace reads: an indented tree for a person, JSON, Graphviz DOT.
#include <algorithm>
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

} // namespace

namespace
{

// The tree, process by process. The journal is input someone else wrote:
// a cycle in it, or a chain deeper than kMaxDepth, is cut, not followed.
class TreeWriter
{
      public:
	explicit TreeWriter(const TraceResult &r) : r_(r), seeds_(r.seeds.begin(), r.seeds.end()) {}

	std::string write()
	{
		for (const auto &root : r_.roots)
			process(root, "", true, true, 0);
		for (const auto &[fp, ids] : r_.shared) {
			o_ << "\ncredential " << short_fp(fp) << " is also held by:\n";
			for (const auto &id : ids)
				o_ << "  " << id << "\n";
		}
		return o_.str();
	}

      private:
	static constexpr size_t kMaxDepth = 64;

	void process(const std::string &id, const std::string &indent, bool last, bool root,
	             size_t depth)
	{
		const TraceProcess &p = r_.processes.at(id);
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
		details(p, sub);
		std::vector<std::string> kids(p.children.begin(), p.children.end());
		std::sort(kids.begin(), kids.end(), [&](const auto &a, const auto &b) {
			return r_.processes.at(a).start < r_.processes.at(b).start;
		});
		for (size_t i = 0; i < kids.size(); i++)
			process(kids[i], sub, i + 1 == kids.size(), false, depth + 1);
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

	void details(const TraceProcess &p, const std::string &sub)
	{
		for (const auto &s : p.secrets)
			o_ << when(s.time) << "  " << sub << "│  * secret " << s.type << " "
			   << short_fp(s.fingerprint) << " from " << s.source << " "
			   << sanitize_utf8(s.location)
			   << (s.inventory_id.empty() ? "" : " (inventory " + s.inventory_id + ")")
			   << "\n";
		for (const auto &c : p.connects) {
			o_ << when(c.time) << "  " << sub << "│  > connect "
			   << sanitize_utf8(c.name.empty() ? c.addr : c.name) << ":" << c.port;
			if (!c.name.empty())
				o_ << " (" << c.addr << ")";
			for (const auto &u : c.used)
				o_ << " using " << short_fp(u);
			o_ << "\n";
		}
	}

	const TraceResult &r_;
	std::set<std::string> seeds_, shown_;
	std::ostringstream o_;
};

} // namespace

std::string trace_tree(const TraceResult &r)
{
	return TreeWriter(r).write();
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
