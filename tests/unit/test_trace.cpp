// keytrail trace on hand-made journals: the pivot chain, exited processes,
// records out of order, unknown record types, truncated and empty journals.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "keytrail/output/sink.h"
#include "keytrail/tools/trace.h"
#include "keytrail/util/clock.h"

using namespace keytrail;
using nlohmann::json;

namespace
{

std::string temp_dir()
{
	std::string t = ::testing::TempDir() + "/kt-trace-XXXXXX";
	char *d = mkdtemp(t.data());
	return d ? d : "";
}

const std::string kFp = "afdfa8235ec3fad3bf8430f7017ddb18";

json exec(const std::string &id, int pid, const std::string &parent_id, const std::string &t,
          const std::string &comm, const std::string &identity)
{
	json r = {{"type", "exec"},
	          {"time", t},
	          {"exec_id", id},
	          {"pid", pid},
	          {"ppid", 1},
	          {"comm", comm},
	          {"filename", "/usr/bin/" + comm},
	          {"argv", {comm, "--token", "****"}},
	          {"identity", {{"id", identity}}}};
	r["ancestry"] =
	    parent_id.empty()
	        ? json::array()
	        : json::array({{{"exec_id", parent_id}, {"pid", 1}, {"comm", "parent"}}});
	return r;
}

// Records as JSON lines, one file.
void write_lines(const std::string &path, const std::vector<json> &recs)
{
	std::ofstream o(path);
	for (const auto &r : recs)
		o << r.dump() << "\n";
}

// A journal: the server (s1) reads a token from env, forks a worker (w1)
// that connects out with it; an unrelated server (s2) holds the same token;
// records arrive out of order; a record type from a newer version; noise.
std::string make_journal()
{
	std::string dir = temp_dir() + "/journal";
	make_private_dirs(dir);
	std::vector<json> recs = {
	    {{"type", "connect"},
	     {"time", "2026-11-26T10:00:05Z"},
	     {"exec_id", "b:2:101"},
	     {"pid", 101},
	     {"comm", "worker"},
	     {"addr", "203.0.113.7"},
	     {"port", 443},
	     {"sni", "api.github.com"}},
	    exec("b:1:100", 100, "b:0:50", "2026-11-26T10:00:00Z", "server", "spiffe://t/gh"),
	    {{"type", "secret"},
	     {"time", "2026-11-26T10:00:00.5Z"},
	     {"exec_id", "b:1:100"},
	     {"pid", 100},
	     {"identity", {{"id", "spiffe://t/gh"}}},
	     {"secret",
	      {{"fingerprint", kFp}, {"type", "github_token"}, {"source", "env"}, {"env", "GH"}}}},
	    {{"type", "fork"},
	     {"time", "2026-11-26T10:00:01Z"},
	     {"exec_id", "b:1:100"},
	     {"pid", 100},
	     {"child_pid", 101},
	     {"child_exec_id", "b:2:101"}},
	    {{"type", "secret_use"},
	     {"time", "2026-11-26T10:00:05.1Z"},
	     {"event_time", "2026-11-26T10:00:05Z"},
	     {"process", {{"exec_id", "b:2:101"}, {"pid", 101}}},
	     {"secret", {{"fingerprint", kFp}}},
	     {"upstream", {{"addr", "203.0.113.7"}, {"port", 443}, {"sni", "api.github.com"}}}},
	    {{"type", "exit"},
	     {"time", "2026-11-26T10:00:09Z"},
	     {"exec_id", "b:2:101"},
	     {"pid", 101}},
	    {{"type", "quantum_entanglement"},
	     {"time", "2026-11-26T10:00:06Z"},
	     {"exec_id", "b:1:100"}},
	    exec("b:3:200", 200, "", "2026-11-26T10:00:02Z", "other", "spiffe://t/other"),
	    {{"type", "secret"},
	     {"time", "2026-11-26T10:00:02Z"},
	     {"exec_id", "b:3:200"},
	     {"identity", {{"id", "spiffe://t/other"}}},
	     {"secret",
	      {{"fingerprint", kFp}, {"type", "github_token"}, {"source", "env"}, {"env", "GH"}}}},
	    // A pid reused later by another process.
	    exec("b:9:100", 100, "", "2026-11-26T11:00:00Z", "later", "spiffe://t/later"),
	};
	std::ofstream o(dir + "/journal-20261126T100000.000000Z.jsonl");
	for (const auto &r : recs)
		o << r.dump() << "\n";
	o << "{\"type\": \"exec\", \"cut mid-li";
	return dir;
}

} // namespace

TEST(Trace, SecretShowsHoldersTheirChildrenUpstreamsAndWhoElseHoldsIt)
{
	std::string dir = make_journal();
	TraceQuery q;
	q.secret = kFp.substr(0, 12);
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	ASSERT_TRUE(r.processes.count("b:1:100"));
	ASSERT_TRUE(r.processes.count("b:2:101")); // exited, still there
	const auto &w = r.processes.at("b:2:101");
	EXPECT_EQ(w.parent, "b:1:100");
	EXPECT_EQ(w.comm, "worker"); // what its own records say, though they came first
	EXPECT_NE(w.exit, 0);
	ASSERT_EQ(w.connects.size(), 1u);
	EXPECT_EQ(w.connects[0].name, "api.github.com");
	ASSERT_EQ(w.connects[0].used.size(), 1u);
	EXPECT_EQ(w.connects[0].used[0], kFp);
	EXPECT_EQ(r.processes.at("b:1:100").secrets.size(), 1u);
	// The ancestor named in the exec record's ancestry is the root.
	ASSERT_FALSE(r.roots.empty());
	EXPECT_EQ(r.roots[0], "b:0:50");
	// "other" holds it too: in the tree (it is a seed), so not "shared with".
	EXPECT_TRUE(r.processes.count("b:3:200"));
	EXPECT_EQ(r.stats.bad_lines, 1u);

	std::string tree = trace_tree(r);
	EXPECT_NE(tree.find("connect api.github.com:443 (203.0.113.7) using afdfa8235ec3"),
	          std::string::npos)
	    << tree;
	EXPECT_NE(tree.find("secret github_token afdfa8235ec3 from env GH"), std::string::npos);
	EXPECT_NE(tree.find("exited 2026-11-26T10:00:09"), std::string::npos);
	std::string dot = trace_dot(r);
	EXPECT_NE(dot.find("shape=box"), std::string::npos);
	EXPECT_NE(dot.find("shape=hexagon"), std::string::npos);
	EXPECT_NE(dot.find("shape=cylinder"), std::string::npos);
	EXPECT_NE(dot.find("label=\"used afdfa8235ec3\""), std::string::npos) << dot;
	auto j = trace_json(r);
	EXPECT_EQ(j["journal"]["bad_lines"], 1);
}

TEST(Trace, IdentityQueryNamesOtherHoldersOfItsCredentials)
{
	TraceQuery q;
	q.identity = "spiffe://t/gh";
	auto r = run_trace(make_journal(), q);
	ASSERT_TRUE(r.error.empty());
	EXPECT_FALSE(r.processes.count("b:3:200"));
	ASSERT_EQ(r.shared.count(kFp), 1u);
	EXPECT_EQ(*r.shared.at(kFp).begin(), "spiffe://t/other");
	EXPECT_NE(trace_tree(r).find("is also held by:\n  spiffe://t/other"), std::string::npos);
}

TEST(Trace, PidAtATimePicksThatInstance)
{
	std::string dir = make_journal();
	TraceQuery q;
	q.pid = 100;
	int64_t at;
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:00:03Z", &at));
	q.at = at;
	auto r = run_trace(dir, q);
	ASSERT_EQ(r.seeds.size(), 1u);
	EXPECT_EQ(r.seeds[0], "b:1:100");
	ASSERT_TRUE(parse_rfc3339("2026-11-26T11:30:00Z", &at));
	q.at = at;
	r = run_trace(dir, q);
	ASSERT_EQ(r.seeds.size(), 1u);
	EXPECT_EQ(r.seeds[0], "b:9:100");
	// Without --at, both instances of the pid.
	q.at.reset();
	EXPECT_EQ(run_trace(dir, q).seeds.size(), 2u);
}

TEST(Trace, TimeRangeAndNoMatchAndMissingOrEmptyJournal)
{
	std::string dir = make_journal();
	TraceQuery q;
	q.secret = kFp;
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:30:00Z", &q.since));
	EXPECT_FALSE(run_trace(dir, q).error.empty()); // all of it was earlier
	TraceQuery none;
	none.exec_id = "b:404:1";
	EXPECT_EQ(run_trace(dir, none).error, "nothing in the journal matches the query");
	EXPECT_NE(run_trace("/nonexistent/journal", none).error.find("no journal"),
	          std::string::npos);
	std::string empty = temp_dir();
	auto r = run_trace(empty, none);
	EXPECT_FALSE(r.error.empty());
	EXPECT_EQ(r.stats.records, 0u);
}

TEST(Trace, TruncatedGzipSegmentYieldsWhatItHolds)
{
	std::string dir = make_journal();
	std::string plain = dir + "/journal-20261126T100000.000000Z.jsonl";
	std::string gz = plain + ".gz";
	ASSERT_TRUE(gzip_file(plain, gz));
	struct stat st;
	ASSERT_EQ(stat(gz.c_str(), &st), 0);
	ASSERT_EQ(truncate(gz.c_str(), st.st_size - 8), 0); // the gzip trailer is gone
	TraceQuery q;
	q.secret = kFp;
	auto r = run_trace(dir, q);
	EXPECT_TRUE(r.error.empty()) << r.error;
	EXPECT_EQ(r.stats.truncated_segments, 1u);
	EXPECT_TRUE(r.processes.count("b:2:101"));
}

// A server that ran git three times and slept twice, each helper inheriting
// its token, and one curl that used it: the tree is the server and the
// curl; the helpers are one line, until --all.
TEST(Trace, HelpersWithNothingNewFoldIntoOneLine)
{
	std::string dir = temp_dir() + "/journal";
	make_private_dirs(dir);
	auto secret = [](const std::string &id) {
		return json{{"type", "secret"},
		            {"time", "2026-11-26T10:00:00.5Z"},
		            {"exec_id", id},
		            {"identity", {{"id", "spiffe://t/gh"}}},
		            {"secret",
		             {{"fingerprint", kFp},
		              {"type", "github_token"},
		              {"source", "env"},
		              {"env", "GH"}}}};
	};
	std::vector<json> recs = {
	    exec("b:1:100", 100, "", "2026-11-26T10:00:00Z", "server", "spiffe://t/gh"),
	    secret("b:1:100")};
	const char *helpers[] = {"git", "sleep", "git", "sleep", "git"};
	for (int i = 0; i < 5; i++) {
		std::string id = "b:2:" + std::to_string(110 + i);
		recs.push_back(exec(id, 110 + i, "b:1:100", "2026-11-26T10:00:01Z", helpers[i],
		                    "spiffe://t/gh"));
		recs.push_back(secret(id));
	}
	recs.push_back(
	    exec("b:3:120", 120, "b:1:100", "2026-11-26T10:00:02Z", "curl", "spiffe://t/gh"));
	recs.push_back({{"type", "connect"},
	                {"time", "2026-11-26T10:00:03Z"},
	                {"exec_id", "b:3:120"},
	                {"pid", 120},
	                {"addr", "203.0.113.7"},
	                {"port", 443}});
	write_lines(dir + "/journal-20261126T100000.000000Z.jsonl", recs);
	TraceQuery q;
	q.exec_id = "b:1:100";
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	std::string tree = trace_tree(r);
	EXPECT_NE(tree.find("server --token"), std::string::npos) << tree;
	EXPECT_NE(tree.find("curl --token"), std::string::npos) << tree;
	EXPECT_EQ(tree.find("git --token"), std::string::npos) << tree;
	EXPECT_NE(tree.find("... 5 more with nothing new: git ×3, sleep ×2 (--all shows them)"),
	          std::string::npos)
	    << tree;
	// The token is shown where it came in, not again under each child.
	auto count = [](const std::string &s, const std::string &what) {
		size_t n = 0;
		for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1))
			n++;
		return n;
	};
	EXPECT_EQ(count(tree, "* secret github_token"), 1u) << tree;
	std::string all = trace_tree(r, true);
	EXPECT_EQ(count(all, "* secret github_token"), 6u) << all;
	EXPECT_NE(all.find("git --token"), std::string::npos) << all;
	EXPECT_EQ(all.find("more with nothing new"), std::string::npos) << all;
}

TEST(Trace, SinceAndUntilTakeSpansBeforeNow)
{
	const int64_t now = 1800000000LL * 1000000000LL, s = 1000000000LL;
	int64_t t = 0;
	ASSERT_TRUE(parse_trace_time("90s", now, &t));
	EXPECT_EQ(t, now - 90 * s);
	ASSERT_TRUE(parse_trace_time("30m", now, &t));
	EXPECT_EQ(t, now - 1800 * s);
	ASSERT_TRUE(parse_trace_time("1h", now, &t));
	EXPECT_EQ(t, now - 3600 * s);
	ASSERT_TRUE(parse_trace_time("7d", now, &t));
	EXPECT_EQ(t, now - 7 * 86400 * s);
	ASSERT_TRUE(parse_trace_time("1h30m", now, &t));
	EXPECT_EQ(t, now - 5400 * s);
	// RFC 3339 and dates as before.
	int64_t want = 0;
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:00:00Z", &want));
	ASSERT_TRUE(parse_trace_time("2026-11-26T10:00:00Z", now, &t));
	EXPECT_EQ(t, want);
	ASSERT_TRUE(parse_trace_time("2026-11-26", now, &t));
	for (const char *bad : {"", "h", "1", "1x", "-1h", "1h ", "99999999999d", "yesterday"})
		EXPECT_FALSE(parse_trace_time(bad, now, &t)) << bad;
}

TEST(Trace, IdentityTakesGlobsAndServerNames)
{
	EXPECT_TRUE(trace_identity_matches("*alpha*", "spiffe://t/vm/mcp-server-alpha/mcp", ""));
	EXPECT_TRUE(trace_identity_matches("mcp-server-alpha", "spiffe://t/x", "mcp-server-alpha"));
	EXPECT_TRUE(trace_identity_matches("mcp-server-a*", "", "mcp-server-alpha"));
	EXPECT_FALSE(trace_identity_matches("mcp-server-alpha", "spiffe://t/alpha", "beta"));
	EXPECT_FALSE(trace_identity_matches("*", "", ""));

	std::string dir = make_journal();
	TraceQuery q;
	q.identity = "*t/g*";
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	EXPECT_EQ(r.seeds, std::vector<std::string>({"b:1:100"}));
	// A bare server name: the mcp_server the records carry.
	json e = exec("b:5:300", 300, "", "2026-11-26T10:00:04Z", "node", "spiffe://t/x");
	e["mcp_server"] = "mcp-server-alpha";
	{
		std::ofstream o(dir + "/journal-20261126T100100.000000Z.jsonl");
		o << e.dump() << "\n";
	}
	q.identity = "mcp-server-alpha";
	r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	EXPECT_EQ(r.seeds, std::vector<std::string>({"b:5:300"}));
}

// Alerts name their process by exec_id; one about a credential alone shows
// where that credential came in. Tree, JSON and DOT all show them.
TEST(Trace, AlertsShowOnTheirProcesses)
{
	std::string dir = make_journal();
	json update = {{"type", "update"},
	               {"time", "2026-11-26T10:00:07Z"},
	               {"rule", "unexpected_upstream"},
	               {"severity", "high"},
	               {"finding_id", "0123456789abcdef0123456789abcdef"},
	               {"summary", "again"},
	               {"process", {{"exec_id", "b:2:101"}}},
	               {"secret", {{"fingerprint", kFp}}}};
	std::vector<json> recs = {
	    {{"type", "alert"},
	     {"time", "2026-11-26T10:00:05.2Z"},
	     {"rule", "unexpected_upstream"},
	     {"severity", "high"},
	     {"finding_id", "0123456789abcdef0123456789abcdef"},
	     {"summary", "worker (pid 101) used github_token afdfa8235ec3 toward evil:443"},
	     {"process", {{"exec_id", "b:2:101"}, {"pid", 101}, {"exe", "/usr/bin/worker"}}},
	     {"secret", {{"fingerprint", kFp}}},
	     {"upstream", {{"addr", "203.0.113.7"}, {"port", 443}, {"sni", "api.github.com"}}}},
	    update,
	    update, // a repeat of the same update adds nothing
	    {{"type", "alert"},
	     {"time", "2026-11-26T10:00:08Z"},
	     {"rule", "stale_credential"},
	     {"severity", "medium"},
	     {"finding_id", "fedcba9876543210fedcba9876543210"},
	     {"summary", "github_token afdfa8235ec3 expired on 2026-11-01 and is still held"},
	     {"secret", {{"fingerprint", kFp}}}}};
	write_lines(dir + "/journal-20261126T100100.000000Z.jsonl", recs);
	TraceQuery q;
	q.exec_id = "b:1:100";
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	const auto &w = r.processes.at("b:2:101");
	ASSERT_EQ(w.alerts.size(), 2u);
	EXPECT_EQ(w.alerts[0].type, "alert");
	EXPECT_EQ(w.alerts[0].rule, "unexpected_upstream");
	EXPECT_EQ(w.alerts[1].type, "update");
	EXPECT_EQ(w.exe, "/usr/bin/worker");
	// The credential's own alert: where it came in (the server), not the child.
	const auto &s = r.processes.at("b:1:100");
	ASSERT_EQ(s.alerts.size(), 1u);
	EXPECT_EQ(s.alerts[0].rule, "stale_credential");

	std::string tree = trace_tree(r);
	EXPECT_NE(tree.find("! alert high unexpected_upstream: worker (pid 101) used github_token "
	                    "afdfa8235ec3 toward evil:443 (finding 0123456789ab)"),
	          std::string::npos)
	    << tree;
	EXPECT_NE(tree.find("! alert medium stale_credential"), std::string::npos) << tree;
	auto j = trace_json(r);
	for (const auto &p : j["processes"])
		if (p["exec_id"] == "b:2:101") {
			ASSERT_EQ(p["alerts"].size(), 2u);
			EXPECT_EQ(p["alerts"][0]["rule"], "unexpected_upstream");
			EXPECT_EQ(p["alerts"][0]["severity"], "high");
			EXPECT_EQ(p["alerts"][0]["finding_id"], "0123456789abcdef0123456789abcdef");
			EXPECT_EQ(p["alerts"][0]["time"], "2026-11-26T10:00:05.200000Z");
			EXPECT_FALSE(p["alerts"][0]["summary"].get<std::string>().empty());
		}
	std::string dot = trace_dot(r);
	size_t n = dot.find("\n  \"p:b:2:101\" [");
	ASSERT_NE(n, std::string::npos) << dot;
	std::string line = dot.substr(n + 1, dot.find('\n', n + 1) - n - 1);
	EXPECT_NE(line.find("! unexpected_upstream (high)"), std::string::npos) << line;
	EXPECT_NE(line.find("color=red"), std::string::npos) << line;
}

namespace
{

// The statements of trace_dot's output: nodes and edges with their
// attributes (it writes one statement a line: "A" [k=v, ...]; or "A" -> "B" [...];).
struct Dot {
	std::map<std::string, std::map<std::string, std::string>> nodes;
	std::vector<std::tuple<std::string, std::string, std::map<std::string, std::string>>> edges;
	std::vector<std::string> defaults; // graph/node/edge lines
};

// A quoted string at s[i] ('"'), its escapes kept; i moves past it.
std::string quoted(const std::string &s, size_t &i)
{
	std::string o;
	for (i++; i < s.size() && s[i] != '"'; i++) {
		if (s[i] == '\\')
			o.push_back(s[i++]);
		o.push_back(s[i]);
	}
	i++;
	return o;
}

std::map<std::string, std::string> attrs(const std::string &s, size_t i)
{
	std::map<std::string, std::string> a;
	i = s.find('[', i);
	if (i == std::string::npos)
		return a;
	i++;
	while (i < s.size() && s[i] != ']') {
		while (s[i] == ' ' || s[i] == ',')
			i++;
		size_t eq = s.find('=', i);
		std::string k = s.substr(i, eq - i);
		i = eq + 1;
		if (s[i] == '"') {
			a[k] = quoted(s, i);
		} else {
			size_t e = s.find_first_of(",]", i);
			a[k] = s.substr(i, e - i);
			i = e;
		}
	}
	return a;
}

Dot parse_dot(const std::string &text)
{
	Dot d;
	std::istringstream in(text);
	std::string line;
	std::getline(in, line);
	EXPECT_EQ(line, "digraph keytrail {");
	while (std::getline(in, line)) {
		if (line == "}")
			break;
		size_t i = line.find_first_not_of(' ');
		if (line[i] != '"') {
			d.defaults.push_back(line.substr(i));
			continue;
		}
		std::string a = quoted(line, i);
		if (line.compare(i, 5, " -> \"") == 0) {
			i += 4;
			std::string b = quoted(line, i);
			d.edges.emplace_back(a, b, attrs(line, i));
		} else {
			EXPECT_FALSE(d.nodes.count(a)) << "node declared twice: " << a;
			d.nodes[a] = attrs(line, i);
		}
		EXPECT_EQ(line.back(), ';') << line;
	}
	return d;
}

} // namespace

// The queried process stands out; labels say who and when; one "used" edge
// per process and upstream, from the process; the upstream shows its address.
TEST(Trace, DotHighlightsTheQueryAndDrawsOneUseEdgePerUpstream)
{
	std::string dir = make_journal();
	// A second use of the same credential toward the same upstream, and a
	// second credential: still one edge.
	json use2 = {
	    {"type", "secret_use"},
	    {"time", "2026-11-26T10:00:06Z"},
	    {"process", {{"exec_id", "b:2:101"}, {"pid", 101}}},
	    {"secret", {{"fingerprint", "00112233445566778899aabbccddeeff"}}},
	    {"upstream", {{"addr", "203.0.113.7"}, {"port", 443}, {"sni", "api.github.com"}}}};
	{
		std::ofstream o(dir + "/journal-20261126T100100.000000Z.jsonl");
		o << use2.dump() << "\n" << use2.dump() << "\n";
	}
	TraceQuery q;
	q.pid = 101;
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	std::string text = trace_dot(r);
	EXPECT_EQ(text, trace_dot(run_trace(dir, q))); // deterministic
	Dot d = parse_dot(text);

	for (const char *kind : {"graph", "node", "edge"}) {
		auto it = std::find_if(d.defaults.begin(), d.defaults.end(),
		                       [&](const std::string &l) { return l.starts_with(kind); });
		ASSERT_NE(it, d.defaults.end()) << kind;
		EXPECT_EQ(attrs(*it, 0)["fontname"], "Helvetica") << *it;
	}
	const auto &w = d.nodes["p:b:2:101"];
	EXPECT_NE(w.at("style").find("filled"), std::string::npos);
	EXPECT_NE(w.at("style").find("bold"), std::string::npos);
	EXPECT_EQ(w.at("label"), "worker\\npid 101\\n2026-11-26T10:00:01Z");
	const auto &s = d.nodes["p:b:1:100"];
	EXPECT_FALSE(s.count("style")); // not asked for
	EXPECT_EQ(s.at("label"), "server\\npid 100\\nspiffe://t/gh\\n2026-11-26T10:00:00Z");

	std::string up = "u:203.0.113.7:443/api.github.com";
	ASSERT_TRUE(d.nodes.count(up)) << text;
	EXPECT_EQ(d.nodes[up].at("label"), "api.github.com:443\\n203.0.113.7");
	size_t used = 0;
	for (const auto &[a, b, at] : d.edges) {
		EXPECT_FALSE(a.starts_with("s:") && b.starts_with("u:")) << a << " -> " << b;
		if (b == up) {
			EXPECT_EQ(a, "p:b:2:101");
			EXPECT_EQ(at.at("label"), "used 001122334455 afdfa8235ec3");
			EXPECT_EQ(at.at("color"), "red");
			used++;
		}
	}
	EXPECT_EQ(used, 1u) << text;
}

namespace
{

// A closed segment as JournalSink leaves it: .jsonl.gz and its .idx.
std::string closed_segment(const std::string &dir, const std::string &start,
                           const std::vector<json> &recs)
{
	std::string plain = dir + "/journal-" + start + ".jsonl";
	write_lines(plain, recs);
	SegmentIndex ix = index_segment(plain);
	EXPECT_TRUE(gzip_file(plain, plain + ".gz"));
	EXPECT_TRUE(write_segment_index(plain + ".gz", ix));
	return plain + ".gz";
}

json noise(int pid, const std::string &t)
{
	std::string id = "b:8:" + std::to_string(pid);
	return exec(id, pid, "b:0:1", t, "noise", "spiffe://t/noise");
}

} // namespace

// Four closed segments: the one with the credential, two of noise, one with
// a child of its holder that never names the credential. A --secret query
// reads the first and the last (the tree reaches it), not the noise: the
// noise segments are corrupt and the answer is still whole and right.
TEST(Trace, IndexSkipsSegmentsThatCannotMatch)
{
	std::string src = make_journal();
	std::string dir = temp_dir() + "/journal";
	make_private_dirs(dir);
	std::vector<json> first;
	{
		std::ifstream in(src + "/journal-20261126T100000.000000Z.jsonl");
		std::string line;
		while (std::getline(in, line))
			if (auto j = json::parse(line, nullptr, false); !j.is_discarded())
				first.push_back(j);
	}
	closed_segment(dir, "20261126T100000.000000Z", first);
	std::string n1 = closed_segment(
	    dir, "20261126T100500.000000Z",
	    {noise(500, "2026-11-26T10:05:00Z"), noise(501, "2026-11-26T10:05:01Z")});
	closed_segment(
	    dir, "20261126T101000.000000Z",
	    {exec("b:7:107", 107, "b:1:100", "2026-11-26T10:10:00Z", "git", "spiffe://t/gh")});
	std::string n2 =
	    closed_segment(dir, "20261126T101500.000000Z", {noise(502, "2026-11-26T10:15:00Z")});
	auto idx = read_segment_index(n1);
	ASSERT_TRUE(idx);
	EXPECT_EQ(idx->records, 2u);
	EXPECT_TRUE(idx->may_name_pid(500));
	EXPECT_TRUE(idx->may_name_exec_id("b:8:501"));
	EXPECT_TRUE(idx->may_name_parent("b:0:1"));
	EXPECT_FALSE(idx->may_name_exec_id("b:1:100"));
	EXPECT_TRUE(idx->identities.count("spiffe://t/noise"));
	struct stat st;
	ASSERT_EQ(stat((n1 + ".idx").c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);

	TraceQuery q;
	q.secret = kFp.substr(0, 8);
	auto whole = run_trace(dir, q);
	ASSERT_TRUE(whole.error.empty()) << whole.error;
	EXPECT_EQ(whole.stats.segments, 4u);
	EXPECT_EQ(whole.stats.indexed_segments, 4u);
	EXPECT_EQ(whole.stats.skipped_segments, 2u);
	EXPECT_TRUE(whole.processes.count("b:7:107")); // found in a later round
	EXPECT_EQ(whole.processes.at("b:7:107").parent, "b:1:100");

	// Garbage of the same size in both noise segments: not read, not noticed.
	for (const auto &seg : {n1, n2}) {
		ASSERT_EQ(stat(seg.c_str(), &st), 0);
		std::ofstream(seg, std::ios::trunc) << std::string(st.st_size, 'x');
	}
	std::vector<size_t> seen;
	auto r = run_trace(
	    dir, q, [&](size_t i, size_t n, const std::string &) { seen.push_back(i * 10 + n); });
	EXPECT_EQ(r.stats.truncated_segments, 0u);
	EXPECT_EQ(r.stats.bad_lines, whole.stats.bad_lines);
	EXPECT_EQ(trace_tree(r, true), trace_tree(whole, true));
	EXPECT_EQ(trace_json(r), trace_json(whole));
	EXPECT_FALSE(seen.empty());

	// Without the indexes every segment is read (and the garbage shows).
	for (const auto &seg : journal_segments(dir))
		unlink((seg + ".idx").c_str());
	auto all = run_trace(dir, q);
	EXPECT_EQ(all.stats.skipped_segments, 0u);
	EXPECT_EQ(all.stats.indexed_segments, 0u);
	EXPECT_GT(all.stats.truncated_segments + all.stats.bad_lines, whole.stats.bad_lines);
	EXPECT_EQ(trace_tree(all, true), trace_tree(whole, true));
}

TEST(Trace, IndexSkipsSegmentsOutsideTheTimeRangeAndReadsOpenOnes)
{
	std::string dir = temp_dir() + "/journal";
	make_private_dirs(dir);
	closed_segment(dir, "20261126T100000.000000Z", {noise(500, "2026-11-26T10:00:00Z")});
	closed_segment(dir, "20261126T110000.000000Z", {noise(501, "2026-11-26T11:00:00Z")});
	{
		std::ofstream o(dir + "/journal-20261126T120000.000000Z.jsonl"); // open: no index
		o << noise(502, "2026-11-26T12:00:00Z").dump() << "\n";
	}
	TraceQuery q;
	q.identity = "spiffe://t/noise";
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:30:00Z", &q.since));
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	EXPECT_EQ(r.stats.skipped_segments, 1u);
	EXPECT_TRUE(r.processes.count("b:8:501"));
	EXPECT_TRUE(r.processes.count("b:8:502"));
	EXPECT_FALSE(r.processes.count("b:8:500"));
	EXPECT_EQ(trace_json(r)["journal"]["segments_skipped"], 1);
	// An index that does not describe its segment (another size) is ignored.
	std::string seg = dir + "/journal-20261126T100000.000000Z.jsonl.gz";
	std::ofstream(seg, std::ios::app) << "x";
	EXPECT_FALSE(read_segment_index(seg));
}

// A filter read back answers as rarely wrong as its fill allows, in a
// segment's small sets (a dozen ancestors) as in its large ones: trace
// asks every segment of a week about hundreds of processes.
TEST(Trace, KeySetFalsePositivesStayRareInSmallAndLargeFilters)
{
	auto id = [](int i) {
		return "b:" + std::to_string(100000 + i) + ":" + std::to_string(101000 + i);
	};
	for (int n : {11, 5000}) {
		KeySet k;
		for (int i = 0; i < n; i++)
			k.add("b:p:" + std::to_string(i) + ":" + id(i));
		auto file = std::make_shared<const std::string>(k.bloom());
		auto back = KeySet::from_bloom(*file, 0, file->size(), file);
		ASSERT_TRUE(back);
		for (int i = 0; i < n; i++)
			ASSERT_TRUE(back->may_have("b:p:" + std::to_string(i) + ":" + id(i)));
		int hits = 0;
		for (int i = 0; i < 200000; i++)
			hits += back->may_have(id(i));
		// ~1e-5 a lookup at most: 2 expected of 200k; positions derived
		// from two hashes gave 44 in the small filter.
		EXPECT_LE(hits, 8) << n << " keys";
	}
}

// The writer's streaming index takes each field from where trace reads it,
// and nothing from a line that does not parse.
TEST(Trace, SegmentIndexReadsFieldsByWhereTheySit)
{
	SegmentIndex ix;
	EXPECT_TRUE(ix.add_line(
	    R"({"type":"fork","time":"2026-11-26T10:00:00Z","exec_id":"b:1:10","child_exec_id":"b:2:11","pid":10,"child_pid":11,"ancestry":[{"exec_id":"b:0:1","pid":1}],"identity":{"id":"spiffe://t/a"},"mcp_server":"srv"})"));
	EXPECT_TRUE(ix.add_line(
	    R"({"type":"secret_use","time":"2026-11-26T10:00:01.5Z","process":{"exec_id":"b:3:12","pid":12,"mcp_server":"srv2"},"secret":{"fingerprint":"00aa","inventory_id":"inv","holder_exec_id":"b:4:13"},"argv":["b:9:99"],"x":{"exec_id":"b:9:98"}})"));
	EXPECT_FALSE(ix.add_line(R"({"type":"exec","exec_id":"b:5:14","pid":14)")); // cut
	EXPECT_FALSE(ix.add_line(std::string(100, '[') + std::string(100, ']')));
	EXPECT_TRUE(ix.add_line(R"({"type":"exec","exec_id":"b:6:15","identity":"spiffe://t/b"})"));
	EXPECT_EQ(ix.records, 3u);
	EXPECT_EQ(ix.untimed, 1u);
	int64_t t0 = 0, t1 = 0;
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:00:00Z", &t0));
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:00:01.5Z", &t1));
	EXPECT_EQ(ix.first, t0);
	EXPECT_EQ(ix.last, t1);
	EXPECT_TRUE(ix.may_name_parent("b:1:10")); // a fork's exec_id is the parent
	EXPECT_FALSE(ix.may_name_exec_id("b:1:10"));
	EXPECT_TRUE(ix.may_name_parent("b:0:1"));
	for (const char *id : {"b:2:11", "b:3:12", "b:4:13", "b:6:15"})
		EXPECT_TRUE(ix.may_name_exec_id(id)) << id;
	for (const char *id : {"b:5:14", "b:9:99", "b:9:98"})
		EXPECT_FALSE(ix.may_name_exec_id(id)) << id;
	for (uint32_t pid : {1u, 10u, 11u, 12u})
		EXPECT_TRUE(ix.may_name_pid(pid)) << pid;
	EXPECT_FALSE(ix.may_name_pid(14));
	EXPECT_EQ(ix.fingerprints, SegmentIndex::Names{"00aa"});
	EXPECT_EQ(ix.inventory_ids, SegmentIndex::Names{"inv"});
	EXPECT_EQ(ix.identities, (SegmentIndex::Names{"spiffe://t/a", "spiffe://t/b"}));
	EXPECT_EQ(ix.mcp_servers, (SegmentIndex::Names{"srv", "srv2"}));

	// Written and read back: the same answers, from the file's bytes.
	std::string dir = temp_dir();
	std::string seg = dir + "/journal-20261126T100000.000000Z.jsonl.gz";
	std::ofstream(seg) << "x";
	ASSERT_TRUE(write_segment_index(seg, ix));
	auto back = read_segment_index(seg);
	ASSERT_TRUE(back);
	EXPECT_EQ(back->records, 3u);
	EXPECT_EQ(back->first, t0);
	EXPECT_EQ(back->fingerprints, ix.fingerprints);
	EXPECT_TRUE(back->may_name_parent("b:1:10"));
	EXPECT_TRUE(back->may_name_exec_id("b:4:13"));
	EXPECT_TRUE(back->may_name_pid(11));
	EXPECT_FALSE(back->may_name_exec_id("b:5:14"));
	// A cut index is not trusted.
	struct stat st;
	ASSERT_EQ(stat((seg + ".idx").c_str(), &st), 0);
	ASSERT_EQ(truncate((seg + ".idx").c_str(), st.st_size - 3), 0);
	EXPECT_FALSE(read_segment_index(seg));
}

// A tool_call record shows under its server in the tree, in JSON, and in
// DOT as a note between the client and the upstream it reached.
TEST(Trace, ToolCallsShowBetweenClientAndUpstreams)
{
	std::string dir = make_journal();
	std::vector<json> recs = {
	    {{"type", "tool_call"},
	     {"time", "2026-11-26T10:00:09Z"},
	     {"event_time", "2026-11-26T10:00:06.5Z"},
	     {"started", "2026-11-26T10:00:06.4Z"},
	     {"tool", "search_code"},
	     {"id", "7"},
	     {"client", {{"name", "claude-code"}, {"version", "2.0.1"}}},
	     {"outcome", "ok"},
	     {"duration_ms", 100.0},
	     {"upstreams", {"api.github.com:443"}},
	     {"credentials", {{{"fingerprint", kFp}, {"upstream", "api.github.com:443"}}}},
	     {"process", {{"exec_id", "b:1:100"}, {"pid", 100}}}}};
	write_lines(dir + "/journal-20261126T100100.000000Z.jsonl", recs);
	TraceQuery q;
	q.exec_id = "b:1:100";
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	const auto &s = r.processes.at("b:1:100");
	ASSERT_EQ(s.tool_calls.size(), 1u);
	EXPECT_EQ(s.tool_calls[0].tool, "search_code");
	EXPECT_EQ(s.tool_calls[0].client, "claude-code");
	std::string tree = trace_tree(r);
	EXPECT_NE(tree.find("~ tool call search_code (id 7) from claude-code: ok in 100.0 ms, "
	                    "reached api.github.com:443 using afdfa8235ec3@api.github.com:443"),
	          std::string::npos)
	    << tree;
	auto j = trace_json(r);
	for (const auto &p : j["processes"])
		if (p["exec_id"] == "b:1:100") {
			ASSERT_EQ(p["tool_calls"].size(), 1u);
			EXPECT_EQ(p["tool_calls"][0]["credentials"][0]["fingerprint"], kFp);
		}
	std::string dot = trace_dot(r);
	EXPECT_NE(dot.find("\"c:claude-code\" -> \"t:b:1:100:7:"), std::string::npos) << dot;
	EXPECT_NE(dot.find("[label=\"called\"]"), std::string::npos) << dot;
	EXPECT_NE(dot.find("label=\"used afdfa8235ec3\""), std::string::npos) << dot;
	EXPECT_NE(dot.find("label=\"served by\""), std::string::npos) << dot;
}

// Records are read field by field, not as documents; odd lines read as a
// document lookup would: a repeated key's last value, a number of the wrong
// kind as 0, deep nesting where nothing is read, an ancestry that is no
// array (which made the document lookup throw) as none.
TEST(Trace, OddRecordsReadAsTheirLastKeyAndNothingElse)
{
	std::string dir = temp_dir() + "/journal";
	make_private_dirs(dir);
	std::string deep = std::string(100000, '[') + std::string(100000, ']');
	std::ofstream o(dir + "/journal-20261126T100000.000000Z.jsonl");
	o << R"({"type":"exec","time":"2026-11-26T10:00:00Z","exec_id":"b:1:100","pid":100,)"
	  << R"("comm":"first","comm":"server","junk":)" << deep
	  << R"(,"identity":{"id":"spiffe://t/a","id":"spiffe://t/gh"},)"
	  << R"("argv":["server",7,"--flag"],"ancestry":[{"exec_id":"b:0:1","pid":1,"comm":"init"}]})"
	  << "\n";
	o << R"({"type":"secret","time":"2026-11-26T10:00:01Z","exec_id":"b:1:100","identity":"x",)"
	  << R"("secret":"none","secret":{"fingerprint":")" << kFp << R"(","env":"GH"}})"
	  << "\n";
	o << R"({"type":"exec","time":"2026-11-26T10:00:02Z","exec_id":"b:2:101","pid":101.5,)"
	  << R"("ppid":-4,"ancestry":{"exec_id":"b:1:100"}})"
	  << "\n";
	o << "[1,2]\n\"x\"\n"
	  << R"({"type":"exit")"
	  << "\n";
	o.close();

	TraceQuery q;
	q.secret = kFp;
	auto r = run_trace(dir, q);
	ASSERT_TRUE(r.error.empty()) << r.error;
	EXPECT_EQ(r.stats.records, 3u);
	EXPECT_EQ(r.stats.bad_lines, 3u);
	const auto &s = r.processes.at("b:1:100");
	EXPECT_EQ(s.comm, "server");
	EXPECT_EQ(s.identity, "spiffe://t/gh");
	EXPECT_EQ(s.argv, (std::vector<std::string>{"server", "--flag"}));
	EXPECT_EQ(s.parent, "b:0:1");
	ASSERT_EQ(s.secrets.size(), 1u);
	EXPECT_EQ(s.secrets[0].location, "GH");

	TraceQuery e;
	e.exec_id = "b:2:101";
	auto r2 = run_trace(dir, e);
	ASSERT_TRUE(r2.error.empty()) << r2.error;
	const auto &p = r2.processes.at("b:2:101");
	EXPECT_EQ(p.pid, 0u);
	EXPECT_EQ(p.ppid, 0u);
	EXPECT_EQ(p.parent, "");
}
