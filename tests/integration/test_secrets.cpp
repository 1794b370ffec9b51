// A tracked MCP server gets credentials by all four routes; the ledger shows
// each with the right type, source and fingerprint; no secret byte reaches
// any output.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "keytrail/ledger/ledger.h"
#include "keytrail/output/journal.h"
#include "support/agent_process.h"
#include "support/fake_secrets.h"

using namespace keytrail;
using namespace keytrail::test;

TEST(Secrets, FourRoutesReachTheLedgerAndNothingLeaks)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string gitlab = token("glpat-", 20, 1);   // env
	const std::string db_pw = token("", 18, 2);          // argv, in a URL
	const std::string openai = token("sk-proj-", 48, 3); // file (.env)
	const std::string aws_secret = token("", 40, 4);     // file (.aws/credentials)
	const std::string hard = token("ghp_", 36, 5);       // MCP client config
	// argv of a child's shell line, as npm runs a bin: `sh -c "'bin' --opt V"`
	const std::string api = token("", 28, 6), client = token("", 30, 7);
	const std::string aws_key_id = "AKIAQ3EGT5LMNOPRSTUV"; // shown as AKIA only
	const std::vector<std::string> planted = {gitlab, db_pw, openai, aws_secret,
	                                          hard,   api,   client, aws_key_id};

	ASSERT_EQ(system(("mkdir -p " + dir + "/home/.aws " + dir + "/proj").c_str()), 0);
	std::ofstream(dir + "/proj/.env") << "PORT=8080\nOPENAI_API_KEY=" << openai << "\n";
	std::ofstream(dir + "/home/.aws/credentials")
	    << "[default]\naws_access_key_id = " << aws_key_id << "\n"
	    << "aws_secret_access_key = " << aws_secret << "\n";
	std::ofstream(dir + "/mcp.json")
	    << "{\"mcpServers\": {\"github\": {\"command\": \"github-mcp-server\", "
	       "\"env\": {\"GITHUB_PERSONAL_ACCESS_TOKEN\": \""
	    << hard << "\"}}}}";
	std::string server = dir + "/mcp-server-kt-secrets";
	// It reads its files at once; the kernel's exec hint tracks it from exec.
	std::ofstream(server) << "#!/bin/sh\ncd " << dir << "/proj && cat .env > /dev/null\ncat "
	                      << dir << "/home/.aws/credentials > /dev/null\n"
	                      << "sh -c \"'true' stdio --api-token " << api
	                      << " --client-secret=" << client << "; sleep 0.1\"\nsleep 0.3\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n"
	    << "secrets:\n  scan_mcp_configs: false\n  mcp_configs: [" << dir << "/mcp.json]\n"
	    << "inventory:\n  - id: gitlab-bot\n    owner: platform\n"
	    << "    match: { env: GITLAB_PERSONAL_ACCESS_TOKEN }\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITLAB_PERSONAL_ACCESS_TOKEN=" + gitlab + " " + server +
	                  " postgresql://app:" + db_pw + "@127.0.0.1:5432/app"),
	          0);
	ASSERT_TRUE(a.wait_until(
	    [&] {
		    std::string out = slurp(a.out());
		    return out.find("aws_secret_access_key") != std::string::npos &&
		           out.find("--client-secret") != std::string::npos;
	    },
	    5000));
	EXPECT_EQ(a.stop(), 0);

	std::string state = dir + "/state";
	struct Expect {
		std::string secret, type, source, location;
	};
	std::vector<Expect> expected = {
	    {gitlab, "gitlab_pat", "env", "GITLAB_PERSONAL_ACCESS_TOKEN"},
	    {db_pw, "database_url", "argv", "argv[2]"},
	    {openai, "openai_api_key", "file", dir + "/proj/.env"},
	    {aws_secret, "aws_secret_access_key", "file", dir + "/home/.aws/credentials"},
	    {hard, "github_token", "mcp_config", dir + "/mcp.json"},
	    {api, "generic_secret", "argv", "--api-token"},
	    {client, "generic_secret", "argv", "--client-secret"},
	};
	Ledger ledger(state + "/ledger.db", true);
	for (const auto &e : expected) {
		std::string fp = fingerprint_of(e.secret, state);
		ASSERT_EQ(fp.size(), 32u);
		auto rec = ledger.secret(fp);
		ASSERT_TRUE(rec) << e.type << " not in the ledger";
		EXPECT_EQ(rec->type, e.type);
		auto sightings = ledger.sightings(fp);
		ASSERT_FALSE(sightings.empty());
		EXPECT_EQ(sightings[0].source, e.source) << e.type;
		EXPECT_EQ(sightings[0].location, e.location) << e.type;
		if (e.source != "mcp_config") {
			EXPECT_NE(sightings[0].identity.find("/mcp-server-kt-secrets/root"),
			          std::string::npos);
		}
	}
	// The records say the same, and the inventory names the GitLab token's owner.
	bool inv = false, hardcoded = false;
	for (auto &r : records(a.out())) {
		if (r["type"] != "secret")
			continue;
		if (r["secret"].value("inventory_id", "") == "gitlab-bot") {
			inv = true;
			EXPECT_EQ(r["secret"]["owner"], "platform");
		}
		if (r["secret"]["source"] == "mcp_config") {
			hardcoded = true;
			EXPECT_EQ(r["secret"]["server"], "github");
			EXPECT_EQ(r["secret"]["name"], "env.GITHUB_PERSONAL_ACCESS_TOKEN");
			EXPECT_EQ(r["hardcoded"], true);
		}
	}
	EXPECT_TRUE(inv);
	EXPECT_TRUE(hardcoded);

	// The leak test: every byte the agent wrote, searched for every secret.
	std::vector<std::string> outputs = {a.out(),
	                                    a.err(),
	                                    state + "/status.json",
	                                    state + "/ledger.db",
	                                    state + "/ledger.db-wal",
	                                    state + "/ledger.db-shm"};
	for (const auto &f : outputs) {
		std::string content = slurp(f);
		for (const auto &s : planted)
			EXPECT_EQ(content.find(s), std::string::npos) << "secret found in " << f;
	}
	// And the journal, every record (the exec records' argv among them).
	size_t journal = 0;
	read_journal(state + "/journal", [&](nlohmann::json &&r) {
		std::string line = r.dump();
		journal++;
		for (const auto &s : planted)
			EXPECT_EQ(line.find(s), std::string::npos) << "secret found in the journal";
		return true;
	});
	EXPECT_GT(journal, 10u);
	struct stat st;
	for (const char *f : {"/ledger.db", "/fingerprint.key", "/status.json"}) {
		ASSERT_EQ(stat((state + f).c_str(), &st), 0) << f;
		EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
	}
}

TEST(Secrets, RotationIsRecorded)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string server = dir + "/mcp-server-kt-rotate";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	std::string old_tok = token("glpat-", 20, 10), new_tok = token("glpat-", 20, 11);
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + old_tok + " " + server), 0);
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + new_tok + " " + server), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("rotated_from") != std::string::npos; }, 5000));
	EXPECT_EQ(a.stop(), 0);
	Ledger l(dir + "/state/ledger.db", true);
	std::string new_fp = fingerprint_of(new_tok, dir + "/state");
	auto rot = l.rotations(new_fp);
	ASSERT_EQ(rot.size(), 1u);
	EXPECT_EQ(rot[0].old_fingerprint, fingerprint_of(old_tok, dir + "/state"));
	EXPECT_EQ(rot[0].location, "GITLAB_TOKEN");
}

TEST(Secrets, ShortLivedChildEnvironmentComesFromTheProbe)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string tok = token("glpat-", 20, 21);
	std::string server = dir + "/mcp-server-kt-short";
	// The child lives for microseconds: /proc/PID/environ is gone before the
	// agent reads the exec record; the kernel's copy is what it scans.
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\nSHORT_LIVED_TOKEN=" << tok
	                      << " /bin/true\nsleep 0.2\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd(server), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("SHORT_LIVED_TOKEN") != std::string::npos; }, 5000));
	EXPECT_EQ(a.stop(), 0);
	bool found = false;
	for (auto &r : records(a.out()))
		if (r["type"] == "secret" && r["secret"].value("env", "") == "SHORT_LIVED_TOKEN") {
			found = true;
			EXPECT_EQ(r["comm"], "true");
			EXPECT_EQ(r["secret"]["type"], "gitlab_pat");
			EXPECT_EQ(r["secret"]["fingerprint"], fingerprint_of(tok, dir + "/state"));
		}
	EXPECT_TRUE(found);
	EXPECT_EQ(slurp(a.out()).find(tok), std::string::npos);
}

// outputs: change on SIGHUP without a restart: the new file gets what
// follows, the old one stops; an output that cannot open fails the reload
// and keeps the running one.
TEST(Secrets, SighupSwitchesOutputsLive)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string server = dir + "/mcp-server-kt-out";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\n";
	chmod(server.c_str(), 0755);
	auto write_cfg = [&](const std::string &path) {
		std::ofstream(dir + "/cfg.yaml")
		    << "agent:\n  state_dir: " << dir
		    << "/state\nsecrets:\n  scan_mcp_configs: false\noutputs:\n  - type: file\n"
		    << "    path: " << path << "\n";
	};
	write_cfg(dir + "/out.jsonl"); // what AgentProcess watches for ready
	AgentProcess a({"run", "--config", dir + "/cfg.yaml"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	write_cfg(dir + "/second.jsonl");
	a.signal(SIGHUP);
	auto has = [](const std::string &path, const std::string &what) {
		return slurp(path).find(what) != std::string::npos;
	};
	ASSERT_TRUE(
	    a.wait_until([&] { return has(dir + "/second.jsonl", "\"type\":\"reload\""); }, 5000))
	    << slurp(a.err());
	auto reload = records(dir + "/second.jsonl").at(0);
	EXPECT_EQ(reload["type"], "reload");
	EXPECT_TRUE(reload["ok"].get<bool>()) << reload.dump();
	EXPECT_EQ(reload["applied"], nlohmann::json::array({"outputs"})) << reload.dump();
	std::string tok = token("glpat-", 20, 41);
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok + " " + server), 0);
	ASSERT_TRUE(
	    a.wait_until([&] { return has(dir + "/second.jsonl", "\"type\":\"secret\""); }, 5000));
	EXPECT_FALSE(has(dir + "/out.jsonl", "\"type\":\"secret\""));
	EXPECT_FALSE(has(dir + "/out.jsonl", "\"type\":\"reload\""));
	// A path under a regular file cannot be created: refused, output kept.
	write_cfg(dir + "/cfg.yaml/x.jsonl");
	a.signal(SIGHUP);
	ASSERT_TRUE(a.wait_until(
	    [&] {
		    auto n = 0;
		    for (auto &r : records(dir + "/second.jsonl"))
			    n += r["type"] == "reload";
		    return n == 2;
	    },
	    5000))
	    << slurp(a.err());
	nlohmann::json failed;
	for (auto &r : records(dir + "/second.jsonl"))
		if (r["type"] == "reload")
			failed = r;
	EXPECT_FALSE(failed["ok"].get<bool>()) << failed.dump();
	EXPECT_TRUE(failed.contains("error")) << failed.dump();
	EXPECT_EQ(a.stop(), 0);
	EXPECT_EQ(slurp(dir + "/second.jsonl").find(tok), std::string::npos);
	EXPECT_TRUE(has(dir + "/second.jsonl", "\"type\":\"health\"")); // the final one
}

TEST(Secrets, SighupReloadsTheInventoryWithoutLosingState)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string server = dir + "/mcp-server-kt-hup";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\n";
	chmod(server.c_str(), 0755);
	auto write_cfg = [&](const std::string &inventory) {
		std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir
		                                 << "/state\nsecrets:\n  scan_mcp_configs: false\n"
		                                 << inventory;
	};
	write_cfg("");
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	std::string tok = token("glpat-", 20, 31);
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok + " " + server), 0);
	write_cfg("inventory:\n  - id: reloaded-entry\n    owner: sre\n    match: { env: "
	          "GITLAB_TOKEN }\n");
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("\"type\":\"secret\"") != std::string::npos; }, 5000));
	a.signal(SIGHUP);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("\"type\":\"reload\"") != std::string::npos; }, 5000));
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok + " " + server), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("reloaded-entry") != std::string::npos; }, 5000));
	auto reloads = [&] {
		std::vector<nlohmann::json> out;
		for (auto &r : records(a.out()))
			if (r["type"] == "reload")
				out.push_back(r);
		return out;
	};
	ASSERT_EQ(reloads().size(), 1u);
	EXPECT_TRUE(reloads()[0]["ok"].get<bool>()) << reloads()[0].dump();
	EXPECT_EQ(reloads()[0]["applied"], nlohmann::json::array({"inventory"}));
	// A setting the running agent cannot take is named, and the rest applies.
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  health_interval: 5s\n"
	    << "secrets:\n  scan_mcp_configs: false\ncorrelate:\n  loopback_upstreams: true\n"
	    << "inventory:\n  - id: reloaded-entry\n    owner: sre\n    match: { env: "
	       "GITLAB_TOKEN }\n";
	a.signal(SIGHUP);
	ASSERT_TRUE(a.wait_until([&] { return reloads().size() == 2; }, 5000));
	EXPECT_FALSE(reloads()[1]["ok"].get<bool>()) << reloads()[1].dump();
	EXPECT_EQ(reloads()[1]["restart_required"],
	          nlohmann::json::array({"agent.health_interval"}))
	    << reloads()[1].dump();
	EXPECT_EQ(reloads()[1]["applied"], nlohmann::json::array({"correlate.loopback_upstreams"}))
	    << reloads()[1].dump();
	// A broken edit is refused and the running config kept.
	std::ofstream(dir + "/cfg.yaml") << "inventory: [ {id: x\n";
	a.signal(SIGHUP);
	ASSERT_TRUE(a.wait_until([&] { return reloads().size() == 3; }, 5000));
	EXPECT_FALSE(reloads()[2]["ok"].get<bool>());
	EXPECT_TRUE(reloads()[2].contains("error")) << reloads()[2].dump();
	EXPECT_EQ(a.stop(), 0);
	Ledger l(dir + "/state/ledger.db", true);
	auto fp = fingerprint_of(tok, dir + "/state");
	ASSERT_TRUE(l.secret(fp));
	// Both runs (the server and its sleep child each) in one row: the
	// ledger's state carried across the reload.
	ASSERT_EQ(l.sightings(fp).size(), 1u);
	EXPECT_EQ(l.sightings(fp)[0].count, 4u);
}
