// The correlator behind the real probes: MCP servers (shell scripts the
// exec hint tracks) hold a token in their environment and connect to a
// loopback listener; the alerts a SOC would see come out, in JSON, in OCSF
// and in the journal, and the token itself never does.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <string>

#include "keytrail/output/journal.h"
#include "support/agent_process.h"
#include "support/fake_secrets.h"
#include "support/listener.h"

using namespace keytrail;
using namespace keytrail::test;

namespace
{

// An MCP server (by name) that sends an HTTP request naming `host` to the
// listener, through curl (bash's /dev/tcp dup()s the socket to another fd).
std::string write_server(const std::string &dir, const std::string &name, uint16_t port,
                         const std::string &host)
{
	std::string path = dir + "/" + name;
	std::ofstream(path) << "#!/bin/sh\nsleep 0.2\ncurl -s -m 0.5 -H 'Host: " << host
	                    << "' http://127.0.0.1:" << port << "/ >/dev/null\nexit 0\n";
	chmod(path.c_str(), 0755);
	return path;
}

std::vector<nlohmann::json> of(const std::vector<nlohmann::json> &recs, const std::string &type,
                               const std::string &rule = "")
{
	std::vector<nlohmann::json> v;
	for (const auto &r : recs)
		if (r["type"] == type && (rule.empty() || r.value("rule", "") == rule))
			v.push_back(r);
	return v;
}

void expect_nowhere(const std::string &secret, const std::vector<std::string> &files)
{
	for (const auto &f : files)
		EXPECT_EQ(slurp(f).find(secret), std::string::npos) << "secret found in " << f;
}

} // namespace

TEST(Alerts, TwoIdentitiesSharingATokenRaiseOneSharedCredentialAlert)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	Listener l;
	const std::string tok = token("ghp_", 36, 41);
	std::string a_srv = write_server(dir, "mcp-server-ktshare-a", l.port(), "api.kt.test");
	std::string b_srv = write_server(dir, "mcp-server-ktshare-b", l.port(), "api.kt.test");
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  connect_hold: 3s\n"
	    << "secrets:\n  scan_mcp_configs: false\n"
	    << "correlate:\n  loopback_upstreams: true\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + a_srv), 0);
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + b_srv), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] {
		    return of(records(a.out()), "secret_use").size() >= 2 &&
		           !of(records(a.out()), "alert", "shared_credential").empty();
	    },
	    8000))
	    << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);

	auto recs = records(a.out());
	std::string fp = fingerprint_of(tok, dir + "/state");
	auto shared = of(recs, "alert", "shared_credential");
	ASSERT_EQ(shared.size(), 1u);
	EXPECT_EQ(shared[0]["secret"]["fingerprint"], fp);
	EXPECT_EQ(shared[0]["severity"], "high");
	std::set<std::string> ids;
	for (const auto &i : shared[0]["identities"])
		ids.insert(i["id"]);
	ASSERT_EQ(ids.size(), 2u);
	EXPECT_NE((*ids.begin()).find("mcp-server-ktshare-"), std::string::npos);
	EXPECT_NE((*ids.rbegin()).find("mcp-server-ktshare-"), std::string::npos);

	// Each server's connect is a use of the token, toward the listener.
	std::set<std::string> users;
	for (const auto &u : of(recs, "secret_use")) {
		EXPECT_EQ(u["pairing"], "sole_secret");
		EXPECT_EQ(u["secret"]["fingerprint"], fp);
		EXPECT_EQ(u["secret"]["type"], "github_token");
		EXPECT_EQ(u["secret"]["source"], "env");
		EXPECT_EQ(u["secret"]["env"], "GITHUB_TOKEN");
		EXPECT_EQ(u["upstream"]["addr"], "127.0.0.1");
		EXPECT_EQ(u["upstream"]["port"], l.port());
		EXPECT_EQ(u["upstream"]["http_host"], "api.kt.test");
		EXPECT_FALSE(u["process"]["ancestry"].empty());
		users.insert(u["identity"]["id"]);
	}
	EXPECT_EQ(users, ids);
	// Health reports the correlator and the latency from event to record.
	auto health = of(recs, "health");
	ASSERT_FALSE(health.empty());
	EXPECT_GE(health.back()["correlator"]["secret_uses"].get<int>(), 2);
	EXPECT_GE(health.back()["latency_ms"]["samples"].get<int>(), 2);

	// The journal has the same, and the token is in no file the agent wrote.
	std::vector<std::string> journal_text;
	size_t uses_in_journal = 0, execs_in_journal = 0;
	ASSERT_TRUE(read_journal(dir + "/state/journal", [&](nlohmann::json &&r) {
		uses_in_journal += r["type"] == "secret_use";
		execs_in_journal += r["type"] == "exec";
		journal_text.push_back(r.dump());
		return true;
	}));
	EXPECT_EQ(uses_in_journal, of(recs, "secret_use").size());
	EXPECT_GE(execs_in_journal, 2u); // raw events go to the journal even without --events
	for (const auto &line : journal_text)
		ASSERT_EQ(line.find(tok), std::string::npos);
	for (const auto &seg : journal_segments(dir + "/state/journal")) {
		struct stat st;
		ASSERT_EQ(stat(seg.c_str(), &st), 0);
		EXPECT_EQ(st.st_mode & 0777, 0600u) << seg;
	}
	expect_nowhere(tok, {a.out(), a.err(), dir + "/state/status.json", dir + "/state/ledger.db",
	                     dir + "/state/ledger.db-wal"});
}

TEST(Alerts, ExpiredTokenAndUnexpectedUpstreamInJsonAndOcsf)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	Listener l;
	const std::string tok = token("glpat-", 20, 42);
	std::string srv = write_server(dir, "mcp-server-ktstale", l.port(), "exfil.kt.test");
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  connect_hold: 3s\n"
	    << "secrets:\n  scan_mcp_configs: false\n"
	    << "correlate:\n  loopback_upstreams: true\n"
	    << "outputs:\n"
	    << "  - {type: file, path: " << dir << "/out.jsonl}\n"
	    << "  - {type: file, path: " << dir << "/ocsf.jsonl, format: ocsf}\n"
	    << "inventory:\n  - id: gitlab-bot\n    owner: platform\n"
	    << "    match: { env: GITLAB_TOKEN }\n    expires: 2020-01-31\n"
	    << "    allowed_upstreams: [gitlab.kt.test]\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok + " " + srv), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return !of(records(a.out()), "alert", "unexpected_upstream").empty(); }, 8000))
	    << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);

	auto recs = records(a.out());
	std::string fp = fingerprint_of(tok, dir + "/state");
	auto stale = of(recs, "alert", "stale_credential");
	ASSERT_FALSE(stale.empty());
	EXPECT_EQ(stale[0]["reason"], "expired");
	EXPECT_EQ(stale[0]["secret"]["inventory_id"], "gitlab-bot");
	EXPECT_EQ(stale[0]["secret"]["fingerprint"], fp);
	auto unexpected = of(recs, "alert", "unexpected_upstream");
	ASSERT_EQ(unexpected.size(), 1u);
	EXPECT_EQ(unexpected[0]["upstream"]["http_host"], "exfil.kt.test");
	EXPECT_EQ(unexpected[0]["secret"]["owner"], "platform");
	EXPECT_NE(unexpected[0]["identity"]["id"].get<std::string>().find("mcp-server-ktstale"),
	          std::string::npos);
	// Owned by the inventory: not unowned.
	EXPECT_TRUE(of(recs, "alert", "unowned_secret").empty());

	// The OCSF output holds the same alerts as Detection Findings, and only those.
	auto ocsf = records(dir + "/ocsf.jsonl");
	ASSERT_EQ(ocsf.size(), of(recs, "alert").size());
	bool found = false;
	for (const auto &f : ocsf) {
		EXPECT_EQ(f["class_uid"], 2004);
		EXPECT_EQ(f["type_uid"], 200401);
		if (f["finding_info"]["analytic"]["name"] == "unexpected_upstream") {
			found = true;
			EXPECT_EQ(f["severity_id"], 4);
			EXPECT_EQ(f["evidences"][0]["dst_endpoint"]["hostname"], "exfil.kt.test");
			EXPECT_EQ(f["unmapped"]["secret"]["fingerprint"], fp);
		}
	}
	EXPECT_TRUE(found);
	expect_nowhere(tok, {a.out(), dir + "/ocsf.jsonl", a.err(), dir + "/state/ledger.db",
	                     dir + "/state/ledger.db-wal"});
}

TEST(Alerts, RecordingReplaysToTheSameAlerts)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	Listener l;
	const std::string tok = token("ghp_", 36, 43);
	std::string srv = write_server(dir, "mcp-server-ktrec", l.port(), "api.kt.test");
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  connect_hold: 3s\n"
	    << "secrets:\n  scan_mcp_configs: false\n"
	    << "correlate:\n  loopback_upstreams: true\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl", "--record",
	                dir + "/rec.ktr"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + srv), 0);
	ASSERT_TRUE(
	    a.wait_until([&] { return !of(records(a.out()), "secret_use").empty(); }, 8000));
	EXPECT_EQ(a.stop(), 0);
	struct stat st;
	ASSERT_EQ(stat((dir + "/rec.ktr").c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
	expect_nowhere(tok, {dir + "/rec.ktr"});

	ASSERT_EQ(run_cmd(std::string(KEYTRAIL_BINARY) + " replay " + dir + "/rec.ktr -c " + dir +
	                  "/cfg.yaml -o " + dir + "/replayed.jsonl 2> " + dir + "/stats.json"),
	          0)
	    << slurp(dir + "/stats.json");
	auto live = records(a.out()), replayed = records(dir + "/replayed.jsonl");
	auto key = [](const nlohmann::json &r) {
		return r["type"].get<std::string>() + "|" + r.value("rule", "") + "|" +
		       r.value("event_time", "");
	};
	std::multiset<std::string> want, got;
	for (const auto &r : live)
		if (r["type"] == "secret_use" ||
		    (r["type"] == "alert" && r["rule"] != "monitor_degraded"))
			want.insert(key(r));
	for (const auto &r : replayed)
		if (r["type"] == "secret_use" ||
		    (r["type"] == "alert" && r["rule"] != "monitor_degraded"))
			got.insert(key(r));
	EXPECT_FALSE(want.empty());
	EXPECT_EQ(got, want);
	auto stats = nlohmann::json::parse(slurp(dir + "/stats.json"));
	EXPECT_GT(stats["inputs"].get<int>(), 3);
}
