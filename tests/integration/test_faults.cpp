// Faults the agent must survive: a full disk under one output, a syslog
// socket that is not there, and kill -9 in the middle of work.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>

#include "keytrail/ledger/ledger.h"
#include "keytrail/output/journal.h"
#include "support/agent_process.h"
#include "support/fake_secrets.h"

using namespace keytrail;
using namespace keytrail::test;

namespace
{

nlohmann::json status_of(const std::string &state)
{
	auto j = nlohmann::json::parse(slurp(state + "/status.json"), nullptr, false);
	return j.is_discarded() ? nlohmann::json::object() : j;
}

const nlohmann::json *output_named(const nlohmann::json &st, const std::string &prefix)
{
	if (!st.contains("outputs"))
		return nullptr;
	for (const auto &o : st["outputs"])
		if (o.value("name", "").rfind(prefix, 0) == 0)
			return &o;
	return nullptr;
}

} // namespace

TEST(Faults, AFullDiskAndAMissingSyslogAreReportedRetriedAndNeverStopTheProbes)
{
	std::string dir = temp_dir();
	std::string full = dir + "/full";
	ASSERT_EQ(mkdir(full.c_str(), 0700), 0);
	ASSERT_EQ(mount("tmpfs", full.c_str(), "tmpfs", 0, "size=64k"), 0) << strerror(errno);
	struct Unmount {
		std::string path;
		~Unmount() { umount2(path.c_str(), MNT_DETACH); }
	} unmount{full};
	// Fill it: the output file cannot grow.
	run_cmd("dd if=/dev/zero of=" + full + "/filler bs=4k count=64 2>/dev/null");
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  health_interval: 200ms\n"
	    << "secrets:\n  scan_mcp_configs: false\n"
	    << "outputs:\n"
	    << "  - {type: file, path: " << full << "/out.jsonl}\n"
	    << "  - {type: syslog, path: " << dir << "/no-such-log-socket}\n"
	    << "  - {type: file, path: " << dir << "/out.jsonl}\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	std::string server = dir + "/mcp-server-ktfull";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\n";
	chmod(server.c_str(), 0755);
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + token("ghp_", 36, 81) + " " + server), 0);

	// Both broken outputs are reported failing, with why; the good one and
	// the probes go on.
	ASSERT_TRUE(a.wait_until(
	    [&] {
		    auto st = status_of(dir + "/state");
		    const auto *f = output_named(st, "file:" + full);
		    const auto *s = output_named(st, "syslog:");
		    return f && s && !f->value("healthy", true) && !s->value("healthy", true);
	    },
	    8000))
	    << slurp(dir + "/state/status.json");
	auto st = status_of(dir + "/state");
	const auto *f = output_named(st, "file:" + full);
	EXPECT_EQ(f->value("last_error", ""), std::strerror(ENOSPC));
	EXPECT_GT(f->value("errors", 0), 0);
	EXPECT_EQ(output_named(st, "syslog:")->value("last_error", ""), std::strerror(ENOENT));
	EXPECT_TRUE(output_named(st, "file:" + dir + "/out.jsonl")->value("healthy", false));
	size_t before = records(dir + "/out.jsonl").size();
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + token("ghp_", 36, 82) + " " + server), 0);
	ASSERT_TRUE(
	    a.wait_until([&] { return records(dir + "/out.jsonl").size() > before; }, 5000));
	// Room again: the file output catches up on what it queued.
	ASSERT_EQ(unlink((full + "/filler").c_str()), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] {
		    auto now = status_of(dir + "/state");
		    const auto *o = output_named(now, "file:" + full);
		    return o && o->value("healthy", false);
	    },
	    10000))
	    << slurp(dir + "/state/status.json");
	{
		auto now = status_of(dir + "/state");
		EXPECT_GT(output_named(now, "file:" + full)->value("retries", 0),
		          0); // it was retried
	}
	EXPECT_EQ(a.stop(), 0);
	auto recovered = records(full + "/out.jsonl");
	EXPECT_FALSE(recovered.empty());
	bool ready = false;
	for (const auto &r : recovered)
		ready = ready || r["type"] == "ready";
	EXPECT_TRUE(ready) << "what was queued while the disk was full is written after";
}

TEST(Faults, KillNineLosesNothingCommittedAndTheAgentPicksUpWhereItWas)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string state = dir + "/state";
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << state << "\n"
	                                 << "secrets:\n  scan_mcp_configs: false\n";
	// A long-running tracked server, alive across the crash.
	std::string server = dir + "/mcp-server-ktcrash";
	std::ofstream(server) << "#!/bin/sh\n/bin/sleep 30\n";
	chmod(server.c_str(), 0755);
	std::string churn = dir + "/mcp-server-ktchurn";
	std::ofstream(churn) << "#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8; do /bin/true; done\n";
	chmod(churn.c_str(), 0755);

	std::set<std::string> committed;
	{
		AgentProcess a(
		    {"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
		    dir);
		ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
		pid_t srv = fork();
		if (srv == 0) {
			std::string env = "GITLAB_TOKEN=" + token("glpat-", 20, 91),
			            path = "PATH=/usr/bin:/bin";
			char *envp[] = {env.data(), path.data(), nullptr};
			execle(server.c_str(), server.c_str(), nullptr, envp);
			_exit(127);
		}
		ASSERT_GT(srv, 0);
		// Load while it dies: tracked processes exec'ing with tokens.
		for (int i = 0; i < 20; i++)
			run_cmd("GITHUB_TOKEN=" + token("ghp_", 36, 100 + i) + " " + churn);
		ASSERT_TRUE(a.wait_until(
		    [&] {
			    Ledger l(state + "/ledger.db", true);
			    return l.secrets().size() >= 10;
		    },
		    8000));
		{
			Ledger l(state + "/ledger.db", true);
			for (const auto &s : l.secrets())
				committed.insert(s.fingerprint);
		}
		for (int i = 20; i < 30; i++)
			run_cmd("GITHUB_TOKEN=" + token("ghp_", 36, 100 + i) + " " + churn);
		EXPECT_EQ(a.stop(SIGKILL), 128 + SIGKILL);
	}
	// Everything committed before the kill is still there.
	{
		Ledger l(state + "/ledger.db", true);
		std::set<std::string> after;
		for (const auto &s : l.secrets())
			after.insert(s.fingerprint);
		for (const auto &fp : committed)
			EXPECT_TRUE(after.count(fp)) << fp << " lost";
	}
	// The journal reads back; at most the last line was cut.
	JournalReadStats js;
	ASSERT_TRUE(read_journal(
	    state + "/journal", [](nlohmann::json &&) { return true; }, &js));
	EXPECT_GT(js.records, 20u);
	EXPECT_LE(js.bad_lines, 1u);
	EXPECT_EQ(js.truncated_segments, 0u);

	// Restart: the crashed segment is closed (compressed, whole), and the
	// server still running is tracked again and its token seen again.
	AgentProcess b({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out2.jsonl"}, dir);
	ASSERT_TRUE(b.wait_ready()) << slurp(b.err());
	std::string glfp = fingerprint_of(token("glpat-", 20, 91), state);
	ASSERT_TRUE(b.wait_until(
	    [&] { return slurp(dir + "/out2.jsonl").find(glfp) != std::string::npos; }, 5000));
	for (auto &r : records(dir + "/out2.jsonl")) {
		if (r["type"] == "ready") {
			EXPECT_GE(r["tracked"].get<int>(), 1);
		}
	}
	EXPECT_EQ(b.stop(), 0);
	size_t open_segments = 0;
	for (const auto &seg : journal_segments(state + "/journal"))
		open_segments += seg.size() > 6 && seg.substr(seg.size() - 6) == ".jsonl";
	EXPECT_EQ(open_segments, 0u);
	JournalReadStats again;
	read_journal(
	    state + "/journal", [](nlohmann::json &&) { return true; }, &again);
	EXPECT_EQ(again.truncated_segments, 0u);
	EXPECT_GE(again.records, js.records);
	run_cmd("pkill -f mcp-server-ktcrash");
	waitpid(-1, nullptr, WNOHANG);
}

TEST(Faults, TwoAgentsOnOneHostDoNotFeedEachOther)
{
	// Each agent checks a watched credential file when someone opens it; if
	// a check opened the file, the other agent would see a watched open and
	// check it through /proc/PID/root/..., and so on, forever.
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::ofstream(dir + "/.env") << "OPENAI_API_KEY=" << token("sk-proj-", 48, 201) << "\n";
	std::string server = dir + "/mcp-server-kttwo";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\ncat " << dir << "/.env >/dev/null\n"
	                      << "sleep 0.2\ncat " << dir << "/.env >/dev/null\n";
	chmod(server.c_str(), 0755);
	for (const char *n : {"a", "b"})
		std::ofstream(dir + "/" + n + ".yaml")
		    << "agent:\n  state_dir: " << dir << "/state-" << n << "\n"
		    << "secrets:\n  scan_mcp_configs: false\n";
	std::string da = dir + "/a", db = dir + "/b";
	mkdir(da.c_str(), 0700);
	mkdir(db.c_str(), 0700);
	AgentProcess a({"run", "--config", dir + "/a.yaml", "-o", da + "/out.jsonl"}, da);
	AgentProcess b({"run", "--config", dir + "/b.yaml", "-o", db + "/out.jsonl"}, db);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_TRUE(b.wait_ready()) << slurp(b.err());
	ASSERT_EQ(run_cmd(server), 0);
	std::this_thread::sleep_for(std::chrono::seconds(2));
	EXPECT_EQ(a.stop(), 0);
	EXPECT_EQ(b.stop(), 0);
	for (const auto &out : {da + "/out.jsonl", db + "/out.jsonl"}) {
		size_t secrets = 0;
		for (auto &r : records(out)) {
			if (r["type"] != "secret")
				continue;
			secrets++;
			EXPECT_EQ(r["secret"].value("path", "").find("/root/proc/"),
			          std::string::npos)
			    << r.dump();
		}
		EXPECT_GE(secrets, 1u) << out;
		EXPECT_LE(secrets, 6u) << out; // the cat runs, not an echo chamber
	}
}
