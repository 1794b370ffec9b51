// The agent without a kernel: synthetic kernel records in, records out, a
// fake of the probes' maps and a manual clock. What the agent decides
// (tracking, secrets, uses, closes) is checked here; the root tier checks
// that the probes send what these records stand for.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "keytrail/agent/agent.h"
#include "keytrail/output/journal.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/tools/report.h"
#include "keytrail/util/kdev.h"
#include "support/kernel_records.h"
#include "support/tokens.h"

using namespace keytrail;
using namespace keytrail::test;
using nlohmann::json;

namespace
{

constexpr int64_t kWall = 1795000000LL * 1000000000LL; // 2026-11-18

std::string temp_dir()
{
	std::string t = "/tmp/kt-agent-XXXXXX";
	char *d = mkdtemp(t.data());
	return d ? d : "";
}

class AgentTest : public ::testing::Test
{
      protected:
	void SetUp() override
	{
		dir = temp_dir();
		clock.set(kWall);
		clock.boot_offset_ns = kWall;
	}
	void make(const std::string &yaml = "")
	{
		// YAML allows a key once: a test's own correlate section says it all.
		std::string base = "agent: {state_dir: " + dir +
		                   "/state}\njournal: {enabled: false}\n"
		                   "secrets: {scan_mcp_configs: false}\n";
		if (yaml.find("correlate:") == std::string::npos)
			base += "correlate: {loopback_upstreams: true}\n";
		Config cfg = parse_config(base + yaml, "test.yaml");
		AgentOptions opts;
		opts.events = true;
		opts.scan_host = false;
		agent = std::make_unique<Agent>(cfg, opts, probe, clock, [this](const Record &r) {
			out.push_back(to_json(r));
			lines += serialize(r) + "\n";
			if (!r.line.empty())
				built_lines.push_back(r);
		});
		agent->start();
	}
	void send(const std::vector<char> &rec)
	{
		clock.set(kWall + static_cast<int64_t>(k.now_ns));
		agent->on_record(rec.data(), rec.size());
		agent->tick();
	}
	std::vector<json> of(const std::string &type, const std::string &rule = "") const
	{
		std::vector<json> v;
		for (const auto &r : out)
			if (r["type"] == type && (rule.empty() || r.value("rule", "") == rule))
				v.push_back(r);
		return v;
	}

	std::string dir;
	ManualClock clock;
	FakeProbe probe;
	KernelRecords k;
	std::unique_ptr<Agent> agent;
	std::vector<json> out;
	std::string lines;
	std::vector<Record> built_lines; // observations built straight as their line
};

} // namespace

// An MCP server the kernel's exec hint tracked, holding a token in its
// environment: the agent confirms it, and its child's connect is a use of
// the token, named by the SNI the first write carried.
TEST_F(AgentTest, ServerTokenAndChildConnectBecomeASecretUse)
{
	make();
	const std::string tok = token("ghp_", 36, 7);
	FakeProc srv{4500001, 4500000, 1000, 1000000000, "node", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(srv, "/usr/bin/node",
	            {"node", "/opt/node_modules/@modelcontextprotocol/server-github/dist/index.js"},
	            {"GITHUB_TOKEN=" + tok, "HOME=/root"}));
	EXPECT_TRUE(probe.tracked.count(4500001)); // confirmed (track on a match)
	EXPECT_EQ(agent->counters().agent.exec_hint_hits, 1u);
	auto execs = of("exec");
	ASSERT_EQ(execs.size(), 1u);
	EXPECT_EQ(execs[0]["mcp_server"], "@modelcontextprotocol/server-github");
	auto secrets = of("secret");
	ASSERT_EQ(secrets.size(), 1u);
	EXPECT_EQ(secrets[0]["secret"]["env"], "GITHUB_TOKEN");
	EXPECT_EQ(secrets[0]["secret"]["type"], "github_token");
	EXPECT_EQ(secrets[0]["secret"]["prefix"], "ghp_");
	EXPECT_EQ(secrets[0]["pid"], 4500001);

	// The kernel marks the child at fork; it execs curl and connects.
	FakeProc child{4500002, 4500001, 1000, 2000000000, "node", KT_F_TRACKED};
	send(k.fork(srv, child));
	child.comm = "curl";
	send(k.exec(child, "/usr/bin/curl", {"curl", "https://api.github.com/"},
	            {"GITHUB_TOKEN=" + tok}));
	const uint8_t ip[4] = {203, 0, 113, 5};
	send(k.connect(child, 5, ip, 443));
	EXPECT_TRUE(of("secret_use").empty()); // held for its first write
	send(k.payload(child, 5, "GET / HTTP/1.1\r\nHost: api.github.com\r\n\r\n"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["upstream"]["http_host"], "api.github.com");
	EXPECT_EQ(uses[0]["upstream"]["addr"], "203.0.113.5");
	EXPECT_EQ(uses[0]["secret"]["fingerprint"], secrets[0]["secret"]["fingerprint"]);
	EXPECT_EQ(uses[0]["process"]["pid"], 4500002);
	EXPECT_EQ(uses[0]["identity"]["selectors"]["mcp.server"],
	          "@modelcontextprotocol/server-github");
	auto connects = of("connect");
	ASSERT_EQ(connects.size(), 1u);
	EXPECT_EQ(connects[0]["http_host"], "api.github.com");
	EXPECT_EQ(lines.find(tok), std::string::npos) << "the token was written";
}

TEST_F(AgentTest, ARejectedExecHintIsUntrackedAndCounted)
{
	make();
	FakeProc p{4500011, 1, 1000, 1000000000, "mcpfoo", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(p, "/usr/bin/mcpfoo-not-a-server", {"mcpfoo-not-a-server"}));
	EXPECT_TRUE(probe.untracked.count(4500011));
	EXPECT_EQ(agent->counters().agent.exec_hint_misses, 1u);
	EXPECT_TRUE(of("exec").empty());
}

// A credential file a tracked process opens: fingerprinted, watched, and
// named when an untracked process opens its inode (the kernel sends no path
// then); the bytes read are reported at close.
TEST_F(AgentTest, CredentialFileIsReadWatchedAndItsReadsCounted)
{
	make();
	const std::string key = token("sk-proj-", 48, 3);
	std::string env_file = dir + "/.env";
	std::ofstream(env_file) << "OPENAI_API_KEY=" << key << "\n";
	struct stat st;
	ASSERT_EQ(stat(env_file.c_str(), &st), 0);
	uint64_t kdev = user_dev_to_kernel(st.st_dev);

	FakeProc srv{4500021, 1, 0, 1000000000, "mcp-server-x", KT_F_TRACKED};
	send(k.exec(srv, "/usr/local/bin/mcp-server-x", {"mcp-server-x"}));
	send(k.open(srv, env_file, 7, kdev, st.st_ino));
	auto secrets = of("secret");
	ASSERT_EQ(secrets.size(), 1u);
	EXPECT_EQ(secrets[0]["secret"]["path"], env_file);
	EXPECT_EQ(secrets[0]["secret"]["type"], "openai_api_key");
	EXPECT_TRUE(probe.watched.count({kdev, st.st_ino}));
	send(k.close(srv, 7, kdev, st.st_ino, 60));
	auto closes = of("close");
	ASSERT_EQ(closes.size(), 1u);
	EXPECT_EQ(closes[0]["path"], env_file);
	EXPECT_EQ(closes[0]["bytes_read"], 60);

	FakeProc reader{4500022, 1, 1000, 3000000000, "cat", KT_F_TRACKED};
	send(k.open(reader, "", 3, kdev, st.st_ino, KT_F_WATCHED));
	auto opens = of("open");
	ASSERT_EQ(opens.size(), 2u);
	EXPECT_EQ(opens[1]["path"], env_file);
	EXPECT_EQ(opens[1]["watched"], true);
	EXPECT_EQ(lines.find(key), std::string::npos) << "the key was written";
}

// Opens and closes are written without a DOM: the same members, each once,
// and a hostile file name arrives as valid JSON, masked and shown as
// shown() shows it.
TEST_F(AgentTest, OpenAndCloseRecordsKeepTheirSchemaWithoutADom)
{
	make();
	FakeProc srv{4500041, 1, 0, 1000000000, "mcp-server-z", KT_F_TRACKED};
	send(k.exec(srv, "/usr/local/bin/mcp-server-z", {"mcp-server-z"}));
	const std::string hostile =
	    "/tmp/a \"quoted\" \\ back\nline\ttab\x01\x7f \xff\xfe ghp_" + std::string(36, 'A');
	send(k.open(srv, hostile, 5, 1, 77));
	send(k.close(srv, 5, 1, 77, 123));
	std::vector<std::string> mine;
	std::istringstream in(lines);
	for (std::string l; std::getline(in, l);)
		if (l.find("\"pid\":4500041") != std::string::npos &&
		    (l.find("\"type\":\"open\"") != std::string::npos ||
		     l.find("\"type\":\"close\"") != std::string::npos))
			mine.push_back(l);
	ASSERT_EQ(mine.size(), 2u) << lines;
	const std::set<std::string> common = {
	    "type", "time",    "tid",        "host",     "pid",  "ppid", "comm", "uid",
	    "gid",  "exec_id", "mcp_server", "identity", "path", "fd",   "dev",  "inode"};
	std::set<std::string> open_keys = common, close_keys = common;
	for (const char *key : {"flags", "result", "watched"})
		open_keys.insert(key);
	for (const char *key : {"bytes_read", "reads", "reason"})
		close_keys.insert(key);
	for (size_t i = 0; i < 2; i++) {
		auto j = json::parse(mine[i]); // throws on invalid JSON or UTF-8
		std::set<std::string> keys;
		for (auto it = j.begin(); it != j.end(); ++it)
			keys.insert(it.key());
		EXPECT_EQ(keys, i == 0 ? open_keys : close_keys) << mine[i];
		size_t members = 0; // every key once: as many "key": as the DOM has keys
		for (const auto &key : keys)
			members += [&] {
				size_t n = 0;
				for (size_t at = 0; (at = mine[i].find("\"" + key + "\":", at)) !=
				                    std::string::npos;
				     at++)
					n++;
				return n;
			}();
		EXPECT_EQ(members, keys.size()) << mine[i];
		EXPECT_EQ(j["path"], shown(hostile));
		EXPECT_EQ(j["inode"], 77);
		EXPECT_EQ(j["fd"], 5);
		EXPECT_EQ(mine[i].find(std::string(36, 'A')), std::string::npos)
		    << "token not masked";
	}
	EXPECT_EQ(json::parse(mine[1])["bytes_read"], 123);
	EXPECT_EQ(json::parse(mine[0])["result"], "ok");
}

// The journal indexes an observation by the keys its producer hands over,
// not by parsing it: they must say what parsing the line would.
TEST_F(AgentTest, ObservationsCarryTheIndexKeysTheirLinesHold)
{
	make();
	FakeProc srv{4500051, 1, 1000, 1000000000, "node", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(
	    srv, "/usr/bin/node",
	    {"node", "/opt/node_modules/@modelcontextprotocol/server-github/dist/index.js"}));
	FakeProc child{4500052, 4500051, 1000, 2000000000, "node", KT_F_TRACKED};
	send(k.fork(srv, child));
	FakeProc stranger{4500053, 4500050, 1000, 3000000000, "cat", KT_F_TRACKED};
	// A server whose name (from its argv) is not valid UTF-8: the line
	// shows it replaced, and so must the keys.
	FakeProc odd{4500054, 1, 1000, 4000000000, "node", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(
	    odd, "/usr/bin/node",
	    {"node", "/opt/node_modules/@modelcontextprotocol/server-\xff\xfex/dist/index.js"}));
	for (const FakeProc *p : {&srv, &child, &stranger, &odd}) {
		send(k.open(*p, "/etc/hostname", 7, 1, 88));
		send(k.close(*p, 7, 1, 88, 9));
	}
	size_t mine = 0, named = 0;
	for (const Record &r : built_lines) {
		if (r.line.find("\"pid\":45000") == std::string::npos)
			continue;
		mine++;
		ASSERT_TRUE(r.keys);
		named += !r.keys->mcp_server.empty() && !r.keys->identity.empty();
		SegmentIndex parsed, handed;
		ASSERT_TRUE(parsed.add_line(r.line)) << r.line;
		handed.add_keys(r.type, r.time_ns, *r.keys);
		EXPECT_EQ(handed.encode(), parsed.encode()) << r.line;
		EXPECT_EQ(handed.first, parsed.first) << r.line;
		EXPECT_EQ(json::parse(r.line)["type"], std::string(r.type));
		// What the journal writes once per segment, as the line has it.
		std::string head = "{\"type\":\"" + std::string(r.type) + "\",";
		EXPECT_EQ(r.line.substr(0, head.size() + r.keys->members.size() + 1),
		          head + r.keys->members + ",")
		    << r.line;
	}
	EXPECT_EQ(mine, 8u);
	EXPECT_GE(named, 6u); // the servers' and the child's
}

// An exit reports the fds still open with what the kernel counted, and
// releases a connect still held for its first write.
TEST_F(AgentTest, ExitFlushesOpenFilesAndHeldConnects)
{
	make();
	FakeProc srv{4500031, 1, 0, 1000000000, "mcp-server-y", KT_F_TRACKED};
	send(k.exec(srv, "/usr/local/bin/mcp-server-y", {"mcp-server-y"}));
	send(k.open(srv, "/etc/hostname", 4, 1, 99));
	probe.fds[{4500031, 4}] = kt_fd_state{1, 99, 12, 2, k.now_ns}; // the open's
	const uint8_t ip[4] = {198, 51, 100, 7};
	send(k.connect(srv, 9, ip, 443));
	EXPECT_TRUE(of("connect").empty());
	send(k.exit(srv, 3));
	auto closes = of("close");
	ASSERT_EQ(closes.size(), 1u);
	EXPECT_EQ(closes[0]["reason"], "exit");
	EXPECT_EQ(closes[0]["bytes_read"], 12);
	ASSERT_EQ(of("connect").size(), 1u);
	EXPECT_FALSE(of("connect")[0].contains("sni"));
	auto exits = of("exit");
	ASSERT_EQ(exits.size(), 1u);
	EXPECT_EQ(exits[0]["exit_code"], 3);
}

TEST_F(AgentTest, UndecodableRecordsAreCountedAndHealthSaysSo)
{
	make();
	std::vector<char> junk(10, 'x');
	send(junk);
	EXPECT_EQ(agent->counters().agent.decode_errors, 1u);
	probe.kernel.v[static_cast<size_t>(KT_STAT_DROP_BASE) + KT_EV_OPEN] = 5;
	agent->health(false);
	auto h = of("health");
	ASSERT_EQ(h.size(), 1u);
	EXPECT_EQ(h[0]["agent"]["decode_errors"], 1);
	EXPECT_EQ(h[0]["kernel"]["drops_by_type"]["open"], 5);
	// Drops raise monitor_degraded, counted in the same record.
	EXPECT_EQ(of("alert", "monitor_degraded").size(), 1u);
	EXPECT_EQ(h[0]["correlator"]["alerts"], 1);
	std::ifstream status(dir + "/state/status.json");
	EXPECT_TRUE(status.good());
}

// The correlator (live, through the agent) and `keytrail report` (later,
// from the ledger the agent wrote) apply one policy: for every credential
// they find the same rules broken.
TEST_F(AgentTest, CorrelatorAndReportAgreeOnTheLedger)
{
	make(R"(
inventory:
  - id: revoked-bot
    owner: bots
    match: {env: REVOKED_TOKEN}
    status: revoked
  - id: scoped
    owner: platform
    match: {env: SCOPED_TOKEN}
    allowed_upstreams: [good.example]
    allowed_identities: ["*/mcp-server-good/*"]
  - id: old
    owner: platform
    match: {env: OLD_TOKEN}
    expires: 2020-01-01
)");
	const uint8_t ip[4] = {203, 0, 113, 9};
	uint32_t pid = 4500100;
	uint64_t start = 1000000000;
	// A server holding one variable, connecting to `host`.
	auto server = [&](const std::string &name, const std::vector<std::string> &argv,
	                  const std::string &env, const std::string &host) {
		FakeProc p{++pid, 1, 0, start += 1000000, name, KT_F_TRACKED};
		send(k.exec(p, "/usr/local/bin/" + name, argv, {env}));
		send(k.connect(p, 5, ip, 443));
		send(k.payload(p, 5, "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n"));
	};
	const std::string shared = token("ghp_", 36, 11);
	server("mcp-server-a", {"mcp-server-a"}, "GITHUB_TOKEN=" + shared, "api.github.com");
	server("mcp-server-b", {"mcp-server-b"}, "GITHUB_TOKEN=" + shared, "api.github.com");
	server("mcp-server-r", {"mcp-server-r"}, "REVOKED_TOKEN=" + token("ghp_", 36, 12),
	       "api.github.com");
	server("mcp-server-s", {"mcp-server-s"}, "SCOPED_TOKEN=" + token("ghp_", 36, 13),
	       "evil.example");
	server("mcp-server-o", {"mcp-server-o"}, "OLD_TOKEN=" + token("ghp_", 36, 14),
	       "api.github.com");
	server("mcp-server-h", {"mcp-server-h", "--token", token("glpat-", 20, 15)}, "X=1",
	       "gitlab.example");
	agent->stop();

	std::map<std::string, std::set<std::string>> live;
	for (const auto &a : of("alert"))
		if (a.contains("secret") && a["rule"] != "human_use")
			live[a["secret"]["fingerprint"]].insert(a["rule"]);
	Report r =
	    build_report(dir + "/state", dir + "/none", agent->config().inventory, clock.now_ns());
	std::map<std::string, std::set<std::string>> later;
	for (const auto &c : r.credentials)
		for (const auto &f : c.findings)
			later[c.fingerprint].insert(f.rule);
	EXPECT_EQ(live, later);
	// Every rule the ledger can show is in the scenario.
	std::set<std::string> rules;
	for (const auto &[fp, rs] : live)
		rules.insert(rs.begin(), rs.end());
	EXPECT_EQ(rules, (std::set<std::string>{"shared_credential", "unowned_secret",
	                                        "revoked_credential_used", "unexpected_upstream",
	                                        "out_of_scope_identity", "stale_credential",
	                                        "hardcoded_secret"}));
}

// A server launched through a version-manager shim: the script's shebang
// runs env, which runs a shell shim, which forks helpers (readlink,
// basename) and then execs the interpreter. Every one of them holds the
// token through the environment; all are the one workload, with the
// server's identity, nothing is shared, and the token is one sighting.
TEST_F(AgentTest, AShimAndItsHelpersAreTheServersWorkload)
{
	make();
	const std::string tok = token("glpat-", 20, 21);
	std::vector<std::string> env = {"GITLAB_TOKEN=" + tok, "PATH=/usr/bin"};
	FakeProc root{4500201,    4500200,          0,
	              1000000000, "mcp-server-ops", KT_F_TRACKED | KT_F_PROVISIONAL};
	// The kernel runs the script through its shebang: filename is the script.
	send(k.exec(root, "/opt/bin/mcp-server-ops",
	            {"/usr/bin/env", "python3", "/opt/bin/mcp-server-ops"}, env));
	root.comm = "python3";
	root.flags = KT_F_TRACKED;
	send(k.exec(root, "/root/.pyenv/shims/python3",
	            {"bash", "/root/.pyenv/shims/python3", "/opt/bin/mcp-server-ops"}, env));
	uint32_t pid = 4500202;
	for (const char *helper : {"readlink", "basename", "pyenv-version-file-read"}) {
		FakeProc h{pid++, root.pid, 0, 2000000000 + pid, "bash", KT_F_TRACKED};
		send(k.fork(root, h));
		h.comm = helper;
		send(k.exec(h, std::string("/usr/bin/") + helper, {helper, "x"}, env));
		send(k.exit(h));
	}
	send(k.exec(root, "/root/.pyenv/versions/3.11.7/bin/python3.11",
	            {"python3", "/opt/bin/mcp-server-ops"}, env));
	std::set<std::string> ids;
	for (const auto &s : of("secret"))
		ids.insert(s["identity"]["id"].get<std::string>());
	EXPECT_EQ(ids.size(), 1u) << "one identity for the whole tree";
	EXPECT_NE(ids.begin()->find("/mcp-server-ops/"), std::string::npos) << *ids.begin();
	// The root held it; each helper inherited it: one sighting, not four.
	EXPECT_EQ(of("secret").size(), 1u);
	EXPECT_TRUE(of("alert", "shared_credential").empty());
	EXPECT_TRUE(probe.untracked.empty()) << "nothing of the tree was untracked";
	for (const auto &r : of("exec"))
		EXPECT_EQ(r["mcp_server"], "mcp-server-ops") << r["filename"];
}

// `sh -c 'mcp-server-x; ...'`: the shell's exec hint is rejected; the child
// it forked is marked by the kernel and becomes the server at its exec.
// Nothing is untracked under it in between, so nothing it forks is missed.
TEST_F(AgentTest, AServerForkedByARejectedShellIsFollowedFromItsExec)
{
	make();
	FakeProc sh{4500301, 1, 0, 1000000000, "sh", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(sh, "/bin/sh", {"sh", "-c", "mcp-server-kids; true"}));
	EXPECT_TRUE(probe.untracked.count(4500301));
	FakeProc srv{4500302, 4500301, 0, 2000000000, "sh", KT_F_TRACKED};
	send(k.fork(sh, srv));
	EXPECT_FALSE(probe.untracked.count(4500302)) << "its exec decides, not the fork";
	srv.comm = "mcp-server-kids";
	send(k.exec(srv, "/usr/local/bin/mcp-server-kids", {"mcp-server-kids"},
	            {"X_TOKEN=" + token("ghp_", 36, 30)}));
	FakeProc kid{4500303, 4500302, 0, 3000000000, "mcp-server-kids", KT_F_TRACKED};
	send(k.fork(srv, kid));
	kid.comm = "git";
	send(k.exec(kid, "/usr/bin/git", {"git", "fetch"}, {"X_TOKEN=" + token("ghp_", 36, 30)}));
	EXPECT_FALSE(probe.untracked.count(4500303));
	auto execs = of("exec");
	ASSERT_EQ(execs.size(), 2u);
	EXPECT_EQ(execs[1]["mcp_server"], "mcp-server-kids");
	EXPECT_EQ(execs[1]["identity"]["id"], execs[0]["identity"]["id"]);
}

// Processes no rule tracks come and go by the thousand (a shell loop, make):
// each is dropped from the table at its exit. One that is a parent stays,
// exited, for its children's ancestry, though it exec'd again since: a
// reader started through `sh -c` names the shell and the shell's parent
// after both have exited.
TEST_F(AgentTest, UntrackedChurnIsForgottenButParentsStayForAncestry)
{
	make();
	auto kept = [&] {
		return agent->health_record(false)["processes"]["exited_kept"].get<size_t>();
	};
	FakeProc shell{4500401, 1, 0, 1000000000, "bash"};
	send(k.exec(shell, "/bin/bash", {"bash", "loop.sh"}));
	size_t before = kept();
	for (uint32_t i = 0; i < 200; i++) {
		FakeProc t{4500500 + i, shell.pid, 0, 2000000000 + i * 1000000ULL, "true"};
		send(k.exec(t, "/bin/true", {"true"}));
		send(k.exit(t));
	}
	EXPECT_EQ(kept(), before) << "untracked leaves are not kept after their exit";
	EXPECT_TRUE(of("exec").empty());

	// `sh -c 'cat creds & exec sleep 1'`: nothing tracked yet when the
	// shell and its parent exit; then cat opens a watched credential file.
	FakeProc sh{4500801, shell.pid, 0, 3000000000, "sh"};
	send(k.exec(sh, "/bin/sh", {"sh", "-c", "cat creds & exec sleep 1"}));
	FakeProc cat{4500802, sh.pid, 0, 3100000000, "cat"};
	send(k.exec(cat, "/bin/cat", {"cat", "creds"}));
	sh.comm = "sleep"; // a new image, the same parent
	send(k.exec(sh, "/bin/sleep", {"sleep", "1"}));
	send(k.exit(sh));
	send(k.exit(shell));
	EXPECT_EQ(kept(), before + 2) << "the parents are kept";
	cat.flags = KT_F_TRACKED; // the kernel marks a reader at its watched open
	send(k.open(cat, "", 3, 0x800001, 4242, KT_F_WATCHED));
	auto execs = of("exec");
	ASSERT_EQ(execs.size(), 1u); // the reader, described at its open
	EXPECT_EQ(execs[0]["pid"], cat.pid);
	const json &anc = execs[0]["ancestry"];
	ASSERT_GE(anc.size(), 2u) << anc.dump();
	EXPECT_EQ(anc[0]["pid"], sh.pid);
	EXPECT_EQ(anc[0]["exe"], "/bin/sleep");
	EXPECT_EQ(anc[1]["pid"], shell.pid);
	EXPECT_EQ(anc[1]["exe"], "/bin/bash");
}

// What may wake the agent (kt_record_prompt, the kernel's rule too): a
// tracked process's records, its exec and exit included, but not its stdio;
// exec and exit of the rest of the host wait for the idle poll.
TEST_F(AgentTest, OnlyTrackedRecordsAreCountedAsOnesThatMayWakeTheAgent)
{
	make();
	FakeProc t{4500901, 1, 0, 1000000000, "true"};
	send(k.exec(t, "/bin/true", {"true"}));
	send(k.exit(t));
	EXPECT_EQ(agent->prompt_records(), 0u);

	FakeProc s{4500902, 1, 1000, 1100000000, "mcp-server-x", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(s, "/usr/bin/mcp-server-x", {"mcp-server-x"}));
	EXPECT_EQ(agent->prompt_records(), 1u);
	s.flags = KT_F_TRACKED;
	send(k.stdio(s, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"));
	EXPECT_EQ(agent->prompt_records(), 1u) << "stdio waits for the poll";
	send(k.open(s, "/etc/hostname", 3, 0x800001, 4243));
	send(k.exit(s));
	EXPECT_EQ(agent->prompt_records(), 3u);
}

// The idle poll is how long an exec nobody tracks waits: long where the
// kernel follows every rule's servers from exec, short where it cannot.
TEST_F(AgentTest, TheIdlePollIsShortOnlyWhereTheExecHintMissesARule)
{
	using std::chrono::milliseconds;
	make();
	EXPECT_EQ(agent->idle_poll(), milliseconds(100));
	agent.reset();
	make("tracking:\n  rules:\n    - {name: billing, exe: /opt/billing/bin/server}\n");
	EXPECT_EQ(agent->idle_poll(), milliseconds(100)) << "a literal the kernel matches";
	agent.reset();
	make("tracking:\n  rules:\n    - {name: byuid, uid: 1234}\n");
	EXPECT_EQ(agent->idle_poll(), milliseconds(25)) << "no literal: userspace matches it";
	probe.has_exec_hint = false;
	agent.reset();
	make();
	EXPECT_EQ(agent->idle_poll(), milliseconds(25)) << "no exec hint in this kernel";
}

// HTTPS through a proxy: the upstream is what CONNECT asked for, via the
// proxy; a Host header naming a host the process never resolved to that
// address does not make the upstream allowed.
TEST_F(AgentTest, ProxiedAndSpoofedUpstreamsAreNamedTruly)
{
	make(R"(
correlate:
  trusted_proxies: ["127.0.0.1:3128"]
inventory:
  - id: gh
    owner: dev
    match: {env: GITHUB_TOKEN}
    allowed_upstreams: [api.github.com]
)");
	const std::string tok = token("ghp_", 36, 31);
	FakeProc srv{4500401, 1, 0, 1000000000, "mcp-server-gh", KT_F_TRACKED};
	send(k.exec(srv, "/usr/local/bin/mcp-server-gh", {"mcp-server-gh"},
	            {"GITHUB_TOKEN=" + tok, "HTTPS_PROXY=http://127.0.0.1:3128"}));
	const uint8_t proxy[4] = {127, 0, 0, 1};
	send(k.connect(srv, 6, proxy, 3128));
	send(k.payload(srv, 6,
	               "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["upstream"]["name"], "api.github.com");
	EXPECT_EQ(uses[0]["upstream"]["port"], 443);
	EXPECT_EQ(uses[0]["upstream"]["via"]["addr"], "127.0.0.1");
	EXPECT_EQ(uses[0]["upstream"]["via"]["port"], 3128);
	EXPECT_EQ(uses[0]["upstream"]["name_verified"], true); // a trusted proxy
	EXPECT_TRUE(of("alert", "unexpected_upstream").empty()) << lines;

	// Direct, with a Host header toward an address api.github.com was never
	// resolved to.
	const uint8_t elsewhere[4] = {198, 51, 100, 66};
	send(k.connect(srv, 7, elsewhere, 80));
	send(k.payload(srv, 7, "GET / HTTP/1.1\r\nHost: api.github.com\r\n\r\n"));
	auto a = of("alert", "unexpected_upstream");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["reason"], "unverified_name");
	EXPECT_EQ(a[0]["upstream"]["name_verified"], false);
	EXPECT_EQ(lines.find(tok), std::string::npos);
}

// A stdio MCP server's JSON-RPC (initialize, a tools/call with a secret in
// its arguments, its reply with one in its result, split and cut as the
// probes send it): the child's use during the call names it, the connect
// too, and the tool_call record lists the upstream and the credential;
// neither planted value is written anywhere.
TEST_F(AgentTest, StdioToolCallJoinsTheUsesMadeDuringIt)
{
	make("correlate: {loopback_upstreams: true, tool_call_linger: 1s}\n");
	const std::string tok = token("ghp_", 36, 9);
	const std::string in_arg = token("glpat-", 20, 3), in_result = token("xoxb-", 40, 4);
	FakeProc srv{4600001, 4600000, 1000, 1000000000, "node", KT_F_TRACKED | KT_F_PROVISIONAL};
	send(k.exec(srv, "/usr/bin/node",
	            {"node", "/opt/node_modules/@modelcontextprotocol/server-github/dist/index.js"},
	            {"GITHUB_TOKEN=" + tok}));
	send(k.stdio(srv, KT_STDIO_IN,
	             R"({"method":"initialize","params":{"protocolVersion":"2025-06-18",)"
	             R"("capabilities":{},"clientInfo":{"name":"claude-code","version":"2.0.1"}},)"
	             R"("jsonrpc":"2.0","id":0})"
	             "\n"));
	send(k.stdio(srv, KT_STDIO_OUT,
	             R"({"result":{"protocolVersion":"2025-06-18","capabilities":{},)"
	             R"("serverInfo":{"name":"github","version":"1.0.0"}},"jsonrpc":"2.0","id":0})"
	             "\n"));
	// The call, split across two reads; its arguments longer than a capture.
	std::string call =
	    R"({"method":"tools/call","params":{"name":"search_code","arguments":{"q":")" + in_arg +
	    std::string(2000, 'q') + R"("}},"jsonrpc":"2.0","id":1})" + "\n";
	send(k.stdio(srv, KT_STDIO_IN, call.substr(0, 40)));
	send(k.stdio(srv, KT_STDIO_IN, call.substr(40)));
	FakeProc child{4600002, 4600001, 1000, 2000000000, "node", KT_F_TRACKED};
	send(k.fork(srv, child));
	const uint8_t ip[4] = {203, 0, 113, 9};
	send(k.connect(child, 7, ip, 443));
	send(k.payload(child, 7, "GET / HTTP/1.1\r\nHost: api.github.com\r\n\r\n"));
	send(k.stdio(srv, KT_STDIO_OUT,
	             R"({"result":{"content":[{"type":"text","text":")" + in_result +
	                 std::string(3000, 'r') + R"("}]},"jsonrpc":"2.0","id":1})" + "\n"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["mcp"]["tool_call"]["tool"], "search_code");
	EXPECT_EQ(uses[0]["mcp"]["tool_call"]["id"], "1");
	EXPECT_EQ(uses[0]["mcp"]["tool_call"]["client"], "claude-code");
	auto connects = of("connect");
	ASSERT_EQ(connects.size(), 1u);
	EXPECT_EQ(connects[0]["mcp"]["tool_call"]["tool"], "search_code");
	EXPECT_TRUE(of("tool_call").empty());
	k.now_ns += 5000000000ULL;
	clock.set(kWall + static_cast<int64_t>(k.now_ns));
	agent->tick();
	auto calls = of("tool_call");
	ASSERT_EQ(calls.size(), 1u);
	EXPECT_EQ(calls[0]["tool"], "search_code");
	EXPECT_EQ(calls[0]["outcome"], "ok");
	EXPECT_EQ(calls[0]["client"]["name"], "claude-code");
	EXPECT_EQ(calls[0]["server_info"]["name"], "github");
	EXPECT_EQ(calls[0]["upstreams"], json::array({"api.github.com:443"}));
	ASSERT_EQ(calls[0]["credentials"].size(), 1u);
	EXPECT_EQ(calls[0]["credentials"][0]["fingerprint"], uses[0]["secret"]["fingerprint"]);
	EXPECT_EQ(calls[0]["partial"], true); // read from cut captures
	EXPECT_EQ(agent->counters().agent.mcp_messages, 4u);
	EXPECT_EQ(agent->counters().agent.mcp_unparsable, 0u);
	for (const auto &v : {tok, in_arg, in_result})
		EXPECT_EQ(lines.find(v), std::string::npos) << "a planted value was written";
}
