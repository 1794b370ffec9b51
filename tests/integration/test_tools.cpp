// The responder tools on what the real agent wrote: a tracked MCP server
// reads a token from a .env file with `cat`, holds another in its
// environment, and spawns curl, which connects out.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "support/agent_process.h"
#include "support/fake_secrets.h"

using namespace keytrail::test;

namespace
{

uint16_t listen_loopback(int *fd)
{
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in sa{};
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(*fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
	listen(*fd, 16);
	socklen_t len = sizeof(sa);
	getsockname(*fd, reinterpret_cast<sockaddr *>(&sa), &len);
	return ntohs(sa.sin_port);
}

std::string host_name()
{
	char buf[256] = "";
	gethostname(buf, sizeof(buf) - 1);
	return buf;
}

std::string run_out(const std::string &cmd, int *rc)
{
	std::string out = temp_dir() + "/out";
	*rc = run_cmd(cmd + " > " + out + " 2>&1");
	return slurp(out);
}

} // namespace

TEST(Tools, TraceRebuildsThePivotFromTheRealJournal)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	int lfd;
	uint16_t port = listen_loopback(&lfd);
	const std::string env_tok = token("ghp_", 36, 61), file_tok = token("sk-proj-", 48, 62);
	std::ofstream(dir + "/.env") << "OPENAI_API_KEY=" << file_tok << "\n";
	std::string server = dir + "/mcp-server-kttrace";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\ncat " << dir << "/.env > /dev/null\n"
	                      << "curl -s -m 0.5 -H 'Host: api.kt.test' http://127.0.0.1:" << port
	                      << "/ > /dev/null\nexit 0\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n"
	                                 << "secrets:\n  scan_mcp_configs: false\n"
	                                 << "correlate:\n  loopback_upstreams: true\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + env_tok + " " + server), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("\"secret_use\"") != std::string::npos; }, 8000));
	EXPECT_EQ(a.stop(), 0);
	close(lfd);
	std::string state = dir + "/state", bin = KEYTRAIL_BINARY;
	std::string env_fp = fingerprint_of(env_tok, state),
	            file_fp = fingerprint_of(file_tok, state);

	// The env token: the server holds it, its curl child used it toward the listener.
	int rc;
	std::string js =
	    run_out(bin + " trace --state-dir " + state + " --secret " + env_fp + " -f json", &rc);
	ASSERT_EQ(rc, 0) << js;
	auto j = nlohmann::json::parse(js);
	bool server_holds = false, curl_used = false;
	for (const auto &p : j["processes"]) {
		for (const auto &s : p["secrets"])
			server_holds = server_holds || (s["fingerprint"] == env_fp &&
			                                p["mcp_server"] == "mcp-server-kttrace");
		for (const auto &u : p["upstreams"])
			if (p["comm"] == "curl" && u["port"] == port && u["name"] == "api.kt.test")
				curl_used = curl_used || (u["secrets_used"].size() == 1 &&
				                          u["secrets_used"][0] == env_fp);
		if (p["mcp_server"] == "mcp-server-kttrace") {
			EXPECT_FALSE(p["start"].get<std::string>().empty()) << p.dump();
		}
	}
	EXPECT_TRUE(server_holds) << js;
	EXPECT_TRUE(curl_used) << js;

	// The file token: `cat` read it; curl, its sibling, connected after.
	std::string tree = run_out(
	    bin + " trace --state-dir " + state + " --secret " + file_fp.substr(0, 12), &rc);
	ASSERT_EQ(rc, 0) << tree;
	EXPECT_NE(tree.find("* secret openai_api_key " + file_fp.substr(0, 12) + " from file " +
	                    dir + "/.env"),
	          std::string::npos)
	    << tree;
	EXPECT_NE(tree.find("> connect api.kt.test:" + std::to_string(port)), std::string::npos)
	    << tree;
	EXPECT_NE(tree.find("exited"), std::string::npos);

	std::string dot = run_out(bin + " trace --state-dir " + state + " --identity " +
	                              "spiffe://keytrail.local/" + host_name() +
	                              "/mcp-server-kttrace/root -f dot",
	                          &rc);
	ASSERT_EQ(rc, 0) << dot;
	EXPECT_EQ(dot.rfind("digraph keytrail {", 0), 0u);
	EXPECT_NE(dot.find("shape=hexagon"), std::string::npos);
	EXPECT_NE(dot.find("shape=cylinder"), std::string::npos);

	// Nothing matches: exit 1 with a reason; no query: exit 2.
	EXPECT_NE(run_out(bin + " trace --state-dir " + state + " --exec-id nope", &rc)
	              .find("nothing in the journal matches"),
	          std::string::npos);
	EXPECT_EQ(rc, 1);
	run_out(bin + " trace --state-dir " + state, &rc);
	EXPECT_EQ(rc, 2);
	// No secret in any of it.
	for (const std::string &out : {js, tree, dot}) {
		EXPECT_EQ(out.find(env_tok), std::string::npos);
		EXPECT_EQ(out.find(file_tok), std::string::npos);
	}
}
