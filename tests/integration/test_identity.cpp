// Identity end to end: real cgroups, a real non-root user, a launcher named
// like an MCP client, and process churn through the real agent.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>

#include "keytrail/identity/cgroup.h"
#include "support/agent_process.h"

using namespace keytrail;
using namespace keytrail::test;

namespace
{

const std::string kContainer = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

std::string hostname_str()
{
	char h[256] = "";
	gethostname(h, sizeof(h) - 1);
	return h;
}

// An executable script in a directory every user can reach.
std::string make_server(const std::string &dir, const std::string &name, const std::string &body)
{
	chmod(dir.c_str(), 0755);
	std::string path = dir + "/" + name;
	std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
	chmod(path.c_str(), 0755);
	return path;
}

nlohmann::json exec_record(const std::string &out, const std::string &filename)
{
	for (auto &r : records(out))
		if (r["type"] == "exec" && r["filename"] == filename)
			return r;
	return nullptr;
}

} // namespace

TEST(IdentityIntegration, DockerShapedCgroupAndNonRootUser)
{
	CgroupPaths cg;
	ASSERT_FALSE(cg.root().empty()) << "no cgroup v2 mount";
	std::string cgdir = cg.root() + "/docker/" + kContainer;
	ASSERT_EQ(system(("mkdir -p " + cgdir).c_str()), 0);

	std::string dir = temp_dir();
	std::string server =
	    make_server(dir, "mcp-server-ktid", "cat /etc/hostname >/dev/null; sleep 0.2");
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());

	// Into the container-shaped cgroup, then drop to nobody, then exec.
	std::string cmd =
	    "sh -c 'echo $$ > " + cgdir +
	    "/cgroup.procs && exec setpriv --reuid=65534 --regid=65534 --clear-groups " + server +
	    "'";
	ASSERT_EQ(run_cmd(cmd), 0);
	ASSERT_TRUE(a.wait_until([&] { return !exec_record(a.out(), server).is_null(); }, 5000));
	EXPECT_EQ(a.stop(), 0);
	rmdir(cgdir.c_str());
	rmdir((cg.root() + "/docker").c_str());

	auto r = exec_record(a.out(), server);
	ASSERT_FALSE(r.is_null());
	auto &sel = r["identity"]["selectors"];
	EXPECT_EQ(sel["cgroup.runtime"], "docker");
	EXPECT_EQ(sel["cgroup.container_id"], kContainer);
	EXPECT_EQ(sel["cgroup.path"], "/docker/" + kContainer);
	EXPECT_EQ(sel["unix.uid"], "65534");
	EXPECT_EQ(sel["unix.user"], "nobody");
	EXPECT_EQ(sel["mcp.server"], "mcp-server-ktid");
	EXPECT_EQ(sel["unix.sha256"].get<std::string>().size(), 64u);
	EXPECT_EQ(r["identity"]["id"], "spiffe://keytrail.local/" + hostname_str() +
	                                   "/mcp-server-ktid/nobody/" + kContainer.substr(0, 12));
	EXPECT_FALSE(r["identity"].contains("unresolved")) << r.dump();
	// The child (cat) carries the same server and its own exec_id.
	bool cat_seen = false;
	for (auto &x : records(a.out()))
		if (x["type"] == "exec" && x["comm"] == "cat") {
			cat_seen = true;
			EXPECT_EQ(x["identity"]["selectors"]["mcp.server"], "mcp-server-ktid");
			EXPECT_EQ(x["ancestry"][0]["exec_id"], r["exec_id"]);
		}
	EXPECT_TRUE(cat_seen);
}

TEST(IdentityIntegration, ServerLaunchedByAClientNamedLikeClaude)
{
	std::string dir = temp_dir();
	std::string server = make_server(dir, "mcp-server-ktclient", "sleep 0.2");
	symlink("/bin/bash", (dir + "/claude").c_str());
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	// "; true" keeps bash from exec'ing the server in place of itself.
	ASSERT_EQ(run_cmd(dir + "/claude -c '" + server + "; true'"), 0);
	ASSERT_TRUE(a.wait_until([&] { return !exec_record(a.out(), server).is_null(); }, 5000));
	EXPECT_EQ(a.stop(), 0);
	auto r = exec_record(a.out(), server);
	ASSERT_FALSE(r.is_null());
	EXPECT_EQ(r["identity"]["selectors"]["mcp.client"], "claude-code");
	EXPECT_EQ(r["identity"]["selectors"]["mcp.server"], "mcp-server-ktclient");
	EXPECT_EQ(r["ancestry"][0]["comm"], "claude");
}

TEST(IdentityIntegration, ChurnStaysBoundedAndNothingIsMisattributed)
{
	std::string dir = temp_dir();
	const int kChildren = 2000;
	// The server forks kChildren short-lived processes; each opens a path
	// that names its own pid, so attribution can be checked record by record.
	std::string server = make_server(dir, "mcp-server-churn",
	                                 "i=0; while [ $i -lt " + std::to_string(kChildren) +
	                                     " ]; do sh -c 'exec cat " + dir +
	                                     "/p$$ 2>/dev/null'; i=$((i+1)); done; true");
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir
	    << "/state\n  health_interval: 300ms\n  max_exited_processes: 500\n"
	    << "  process_grace: 1s\n  ring_buffer_size: 64MiB\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd(server), 0);
	std::this_thread::sleep_for(std::chrono::seconds(2)); // two health ticks: eviction runs
	auto status = nlohmann::json::parse(slurp(dir + "/state/status.json"));
	EXPECT_EQ(a.stop(), 0);

	size_t opens = 0, wrong = 0;
	std::set<std::string> exec_ids;
	uint64_t drops = 0;
	for (auto &r : records(a.out())) {
		if (r["type"] == "open" && r["comm"] == "cat") {
			std::string path = r["path"];
			auto p = path.rfind("/p");
			if (p == std::string::npos || path.substr(0, p) != dir)
				continue;
			opens++;
			if (std::to_string(r["pid"].get<int>()) != path.substr(p + 2))
				wrong++;
			exec_ids.insert(r["exec_id"].get<std::string>());
		}
		if (r["type"] == "health" && r["final"] == true)
			drops = r["kernel"]["drops"];
	}
	EXPECT_EQ(wrong, 0u);
	EXPECT_EQ(exec_ids.size(), opens); // one process instance per open, even as pids wrap
	EXPECT_EQ(opens + drops >= static_cast<size_t>(kChildren), true)
	    << opens << " opens, " << drops << " drops";
	EXPECT_GT(opens, kChildren * 9 / 10u);
	// Bounded: exited entries never exceed the configured cap (plus one tick of churn).
	EXPECT_LE(status["processes"]["exited_kept"].get<int>(), 500 + 2 * kChildren / 3);
	auto final_status = nlohmann::json::parse(slurp(dir + "/state/status.json"));
	EXPECT_LE(final_status["processes"]["exited_kept"].get<int>(), 500);
}
