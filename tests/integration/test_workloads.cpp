// Precision under the real probes: an MCP server's process tree is one
// workload however it is launched, a finding is raised once (and not again
// after a restart), upstreams are named by what they are (a proxy's target,
// a name the process really resolved), and a person reading a server's
// credential at a terminal is one human_use. Alert counts are exact.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "support/agent_process.h"
#include "support/fake_secrets.h"
#include "support/listener.h"

using namespace keytrail::test;
using nlohmann::json;

namespace
{

// An HTTP CONNECT proxy on loopback: answers "200 Connection established"
// to each CONNECT and hangs up (the client's TLS then fails: nothing real
// is reached).
class ConnectProxy
{
      public:
	ConnectProxy()
	{
		thread_ = std::thread([this] { serve(); });
		while (!port_)
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	~ConnectProxy()
	{
		stop_ = true;
		shutdown(fd_, SHUT_RDWR);
		thread_.join();
		close(fd_);
	}
	uint16_t port() const { return port_; }
	int connects() const { return connects_; }

      private:
	void serve()
	{
		fd_ = socket(AF_INET, SOCK_STREAM, 0);
		sockaddr_in sa{};
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
		listen(fd_, 16);
		socklen_t len = sizeof(sa);
		getsockname(fd_, reinterpret_cast<sockaddr *>(&sa), &len);
		port_ = ntohs(sa.sin_port);
		while (!stop_) {
			int c = accept(fd_, nullptr, nullptr);
			if (c < 0)
				break;
			char buf[1024];
			ssize_t n = read(c, buf, sizeof(buf));
			if (n > 8 && std::string(buf, 8) == "CONNECT ") {
				connects_++;
				const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
				(void)!write(c, ok, sizeof(ok) - 1);
			}
			close(c);
		}
	}
	int fd_ = -1;
	std::atomic<uint16_t> port_{0};
	std::atomic<int> connects_{0};
	std::atomic<bool> stop_{false};
	std::thread thread_;
};

std::string write_file(const std::string &path, const std::string &text, mode_t mode = 0755)
{
	std::ofstream(path) << text;
	chmod(path.c_str(), mode);
	return path;
}

std::vector<json> of(const std::vector<json> &recs, const std::string &type,
                     const std::string &rule = "")
{
	std::vector<json> v;
	for (const auto &r : recs)
		if (r["type"] == type && (rule.empty() || r.value("rule", "") == rule))
			v.push_back(r);
	return v;
}

std::string config(const std::string &dir, const std::string &extra = "")
{
	return write_file(dir + "/cfg.yaml",
	                  "agent:\n  state_dir: " + dir + "/state\n  connect_hold: 3s\n" +
	                      "secrets:\n  scan_mcp_configs: false\n" + extra,
	                  0600);
}

// The secret records of one credential: the identities holding it.
std::set<std::string> holders(const std::vector<json> &recs, const std::string &fp)
{
	std::set<std::string> ids;
	for (const auto &s : of(recs, "secret"))
		if (s["secret"]["fingerprint"] == fp)
			ids.insert(s["identity"]["id"].get<std::string>());
	return ids;
}

} // namespace

// Four launch chains, each with its own token, each a tree of helpers that
// inherit the token: each tree is one identity, and nothing is shared.
// Then two different servers with one token: exactly one shared_credential,
// naming the two.
TEST(Workloads, LaunchChainsAreOneWorkloadEachAndOnlyRealSharingIsAlerted)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	Listener l;
	std::string curl =
	    "curl -s -m 0.5 -H 'Host: api.kt.test' http://127.0.0.1:" + std::to_string(l.port()) +
	    "/ >/dev/null || true\n";
	// A version-manager style shim: forks helpers, then execs the server.
	write_file(dir + "/mcp-server-shimmed",
	           "#!/bin/bash\nv=$(basename \"$0\"); r=$(readlink -f \"$0\"); env >/dev/null\n"
	           "exec sh " +
	               dir + "/real-server.sh\n");
	write_file(dir + "/real-server.sh", "sleep 0.1\n" + curl);
	// A server that runs git and curl with the token it inherited.
	write_file(dir + "/mcp-server-tools", "#!/bin/sh\ngit --version >/dev/null\n" + curl);
	write_file(dir + "/mcp-server-viaenv", "#!/bin/sh\nsleep 0.1\n" + curl);
	write_file(dir + "/mcp-server-shc", "#!/bin/sh\nsleep 0.1\n" + curl);
	std::string tok[4];
	for (int i = 0; i < 4; i++)
		tok[i] = token("glpat-", 20, 500 + i);
	AgentProcess a({"run", "-c", config(dir), "--events", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok[0] + " " + dir + "/mcp-server-shimmed"), 0);
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok[1] + " " + dir + "/mcp-server-tools"), 0);
	ASSERT_EQ(run_cmd("env GITLAB_TOKEN=" + tok[2] + " " + dir + "/mcp-server-viaenv"), 0);
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok[3] + " sh -c 'sleep 0.05; " + dir +
	                  "/mcp-server-shc; true'"),
	          0);
	std::string fp[4];
	for (int i = 0; i < 4; i++)
		fp[i] = fingerprint_of(tok[i], dir + "/state");
	ASSERT_TRUE(
	    a.wait_until([&] { return of(records(a.out()), "secret_use").size() >= 4; }, 10000))
	    << slurp(a.out());
	auto recs = records(a.out());
	const char *servers[4] = {"mcp-server-shimmed", "mcp-server-tools", "mcp-server-viaenv",
	                          "mcp-server-shc"};
	for (int i = 0; i < 4; i++) {
		auto ids = holders(recs, fp[i]);
		ASSERT_EQ(ids.size(), 1u) << servers[i] << ": " << json(ids).dump();
		EXPECT_NE(ids.begin()->find(std::string("/") + servers[i] + "/"), std::string::npos)
		    << *ids.begin();
	}
	EXPECT_EQ(of(recs, "alert", "shared_credential").size(), 0u);

	// Now a real sharing: two servers, one token.
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + tok[0] + " " + dir + "/mcp-server-tools"), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return !of(records(a.out()), "alert", "shared_credential").empty(); }, 8000));
	EXPECT_EQ(a.stop(), 0);
	recs = records(a.out());
	auto shared = of(recs, "alert", "shared_credential");
	ASSERT_EQ(shared.size(), 1u);
	EXPECT_EQ(shared[0]["secret"]["fingerprint"], fp[0]);
	EXPECT_EQ(shared[0]["identities"].size(), 2u);
	for (const auto &t : tok)
		EXPECT_EQ(slurp(a.out()).find(t), std::string::npos);
}

// The same scenario twice, with a restart between: the finding is raised
// once, with the same id both times.
TEST(Workloads, ARestartRaisesNoKnownFindingAgain)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	write_file(dir + "/mcp-server-rsa", "#!/bin/sh\nsleep 0.1\n");
	write_file(dir + "/mcp-server-rsb", "#!/bin/sh\nsleep 0.1\n");
	const std::string tok = token("ghp_", 36, 77);
	std::vector<std::string> ids;
	for (int run = 0; run < 2; run++) {
		std::string out = dir + "/out.jsonl";
		unlink(out.c_str()); // each run's records alone
		AgentProcess a({"run", "-c", config(dir), "-o", out}, dir);
		ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
		ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + dir + "/mcp-server-rsa"), 0);
		ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + dir + "/mcp-server-rsb"), 0);
		a.wait_until([&] { return of(records(out), "secret").size() >= 4; }, 5000);
		std::this_thread::sleep_for(std::chrono::milliseconds(300));
		EXPECT_EQ(a.stop(), 0);
		auto recs = records(out);
		auto alerts = of(recs, "alert", "shared_credential");
		ASSERT_EQ(alerts.size(), run == 0 ? 1u : 0u) << slurp(out);
		if (run == 0)
			ids.push_back(alerts[0]["finding_id"]);
	}
	ASSERT_EQ(ids.size(), 1u);
	EXPECT_EQ(ids[0].size(), 32u);
}

// HTTPS through a CONNECT proxy on loopback: the upstream is the target,
// via the proxy. A Host header toward an address the name was never
// resolved to does not satisfy allowed_upstreams; one /etc/hosts gives does.
TEST(Workloads, ProxyTargetsAndUnverifiedNames)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	ConnectProxy proxy;
	Listener l;
	std::string port = std::to_string(l.port());
	write_file(dir + "/mcp-server-proxied",
	           "#!/bin/sh\ncurl -s -m 1 https://api.kt.test/ >/dev/null\nexit 0\n");
	write_file(dir + "/mcp-server-spoof",
	           "#!/bin/sh\ncurl -s -m 0.5 -H 'Host: api.kt.test' http://127.0.0.1:" + port +
	               "/ >/dev/null\nexit 0\n");
	// The same request, with the name in this process's /etc/hosts.
	write_file(dir + "/hosts", "127.0.0.1 localhost\n127.0.0.1 api.kt.test\n", 0644);
	write_file(dir + "/mcp-server-honest", "#!/bin/sh\ncurl -s -m 0.5 http://api.kt.test:" +
	                                           port + "/ >/dev/null\nexit 0\n");
	std::string cfg = config(dir, "correlate:\n  loopback_upstreams: true\n"
	                              "inventory:\n  - id: kt\n    owner: dev\n"
	                              "    match: {env: KT_TOKEN}\n"
	                              "    allowed_upstreams: [api.kt.test]\n");
	AgentProcess a({"run", "-c", cfg, "--events", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	const std::string tok = token("ghp_", 36, 88);
	ASSERT_EQ(run_cmd("KT_TOKEN=" + tok + " HTTPS_PROXY=http://127.0.0.1:" +
	                  std::to_string(proxy.port()) + " " + dir + "/mcp-server-proxied"),
	          0);
	ASSERT_EQ(run_cmd("KT_TOKEN=" + tok + " " + dir + "/mcp-server-spoof"), 0);
	ASSERT_EQ(run_cmd("KT_TOKEN=" + tok + " unshare -m sh -c 'mount --bind " + dir +
	                  "/hosts /etc/hosts && exec " + dir + "/mcp-server-honest'"),
	          0);
	ASSERT_TRUE(
	    a.wait_until([&] { return of(records(a.out()), "secret_use").size() >= 3; }, 10000))
	    << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
	EXPECT_GE(proxy.connects(), 1);
	auto recs = records(a.out());
	int via = 0, spoofed = 0, honest = 0;
	for (const auto &u : of(recs, "secret_use")) {
		const json &up = u["upstream"];
		if (up.contains("via")) {
			via++;
			EXPECT_EQ(up["name"], "api.kt.test");
			EXPECT_EQ(up["port"], 443);
			EXPECT_EQ(up["via"]["port"], proxy.port());
		} else if (up["name_verified"] == true) {
			honest++;
		} else {
			spoofed++;
		}
	}
	EXPECT_EQ(via, 1);
	EXPECT_EQ(honest, 1);
	EXPECT_EQ(spoofed, 1);
	// The proxied one (not a trusted proxy) and the spoofed one are not
	// allowed by name; the honest one is.
	auto unexpected = of(recs, "alert", "unexpected_upstream");
	std::set<std::string> reasons;
	for (const auto &x : of(recs, "update", "unexpected_upstream"))
		unexpected.push_back(x);
	for (const auto &x : unexpected)
		reasons.insert(x.value("reason", ""));
	EXPECT_EQ(reasons, (std::set<std::string>{"unverified_name"}));
	EXPECT_EQ(unexpected.size(), 2u) << slurp(a.out());
	EXPECT_EQ(slurp(a.out()).find(tok), std::string::npos);
}

// A person at a terminal reads a server's .env (cat, then grep in the same
// session) and uses it: one human_use, and trace shows the reader whole.
TEST(Workloads, APivotAtATerminalIsOneHumanUseAndTraceShowsTheReader)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string key = token("sk-proj-", 48, 99);
	write_file(dir + "/.env", "OPENAI_API_KEY=" + key + "\n", 0600);
	write_file(dir + "/mcp-server-owner",
	           "#!/bin/sh\ncat " + dir + "/.env >/dev/null\nsleep 0.2\n");
	AgentProcess a({"run", "-c", config(dir), "--events", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd(dir + "/mcp-server-owner"), 0);
	ASSERT_TRUE(a.wait_until([&] { return !of(records(a.out()), "secret").empty(); }, 5000));
	ASSERT_EQ(run_cmd("script -qec 'cat " + dir + "/.env >/dev/null; grep -c KEY " + dir +
	                  "/.env >/dev/null' /dev/null"),
	          0);
	ASSERT_TRUE(
	    a.wait_until([&] { return !of(records(a.out()), "alert", "human_use").empty(); }, 5000))
	    << slurp(a.out());
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	EXPECT_EQ(a.stop(), 0);
	auto recs = records(a.out());
	auto human = of(recs, "alert", "human_use");
	ASSERT_EQ(human.size(), 1u) << slurp(a.out());
	EXPECT_EQ(human[0]["process"]["comm"], "cat");
	EXPECT_TRUE(of(recs, "alert", "shared_credential").empty());
	// The reader is described as it ran: its command line and who started it.
	uint32_t pid = human[0]["process"]["pid"];
	std::string trace = dir + "/trace.txt";
	ASSERT_EQ(run_cmd(std::string(KEYTRAIL_BINARY) + " trace --state-dir " + dir +
	                  "/state --pid " + std::to_string(pid) + " > " + trace),
	          0);
	std::string t = slurp(trace);
	EXPECT_NE(t.find("cat " + dir + "/.env"), std::string::npos) << t;
	EXPECT_NE(t.find("script"), std::string::npos) << t;
	EXPECT_EQ(slurp(a.out()).find(key), std::string::npos);
}
