#include <gtest/gtest.h>

#include "keytrail/config/config.h"
#include "keytrail/detect/mcp_detect.h"

using namespace keytrail;

namespace
{
std::string server_of(std::vector<std::string> argv)
{
	auto m = match_builtin(argv);
	return m ? m->server : "";
}
} // namespace

TEST(McpDetect, NpxOfficialServers)
{
	EXPECT_EQ(server_of({"npx", "-y", "@modelcontextprotocol/server-gitlab"}), "server-gitlab");
	EXPECT_EQ(server_of({"/usr/bin/npx", "--yes",
	                     "@modelcontextprotocol/server-filesystem@2025.8.21", "/srv"}),
	          "server-filesystem");
	EXPECT_EQ(
	    server_of({"npm", "exec", "@modelcontextprotocol/server-postgres", "postgresql://x"}),
	    "server-postgres");
	EXPECT_EQ(
	    server_of({"npx", "-p", "@modelcontextprotocol/server-github", "mcp-server-github"}),
	    "server-github");
}

TEST(McpDetect, NodeRunningInstalledPackage)
{
	EXPECT_EQ(server_of({"node",
	                     "/x/node_modules/@modelcontextprotocol/server-gitlab/dist/index.js"}),
	          "server-gitlab");
	EXPECT_EQ(server_of({"node", "/root/.npm/_npx/ab/node_modules/.bin/mcp-server-gitlab"}),
	          "mcp-server-gitlab");
	EXPECT_EQ(server_of({"node", "--enable-source-maps",
	                     "/usr/lib/node_modules/@zereight/mcp-gitlab/build/index.js"}),
	          "mcp-gitlab");
}

TEST(McpDetect, BinariesPythonAndDocker)
{
	EXPECT_EQ(server_of({"/usr/local/bin/github-mcp-server", "stdio"}), "github-mcp-server");
	EXPECT_EQ(server_of({"mcp-server-fetch"}), "mcp-server-fetch");
	EXPECT_EQ(server_of({"uvx", "mcp-server-git", "--repository", "."}), "mcp-server-git");
	EXPECT_EQ(server_of({"python3", "-m", "mcp_server_time"}), "mcp_server_time");
	EXPECT_EQ(server_of({"docker", "run", "-i", "--rm", "-e", "GITHUB_TOKEN", "mcp/github"}),
	          "mcp/github");
	EXPECT_EQ(server_of({"docker", "run", "-i", "ghcr.io/github/github-mcp-server:v1"}),
	          "github-mcp-server");
}

TEST(McpDetect, NotServers)
{
	EXPECT_EQ(server_of({"grep", "-r", "mcp-server", "."}), "");
	EXPECT_EQ(server_of({"npx", "@modelcontextprotocol/inspector"}), "");
	EXPECT_EQ(server_of({"node", "/srv/app/server.js"}), "");
	EXPECT_EQ(server_of({"python3", "-m", "http.server"}), "");
	EXPECT_EQ(server_of({"docker", "ps"}), "");
	EXPECT_EQ(server_of({"bash", "-c", "npx @modelcontextprotocol/server-gitlab"}), "");
	EXPECT_EQ(server_of({}), "");
}

TEST(McpDetect, ConfigRulesWinAndAllConditionsMustMatch)
{
	Config c = parse_config(R"(
tracking:
  rules:
    - name: billing-tools
      exe: /opt/billing/*
      argv: "--mcp"
      uid: 1000
)",
	                        "t.yaml");
	McpDetector d(true, c.rules);
	ProcessFacts p{1, 1000, "/opt/billing/bin/tool", {"tool", "--mcp"}, "bash", "/bin/bash"};
	auto m = d.match(p);
	ASSERT_TRUE(m);
	EXPECT_EQ(m->server, "billing-tools");
	EXPECT_EQ(m->rule, "config:billing-tools");
	p.uid = 0;
	EXPECT_FALSE(d.match(p));
	McpDetector no_builtin(false, {});
	EXPECT_FALSE(no_builtin.match(ProcessFacts{
	    1, 0, "/usr/bin/npx", {"npx", "@modelcontextprotocol/server-gitlab"}, "", ""}));
}

TEST(McpClient, BuiltinClientsAndRules)
{
	std::vector<ClientRule> none;
	EXPECT_EQ(match_client("claude", "/usr/bin/node",
	                       {"node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"},
	                       none),
	          "claude-code");
	EXPECT_EQ(match_client("code", "/usr/share/code/code", {"/usr/share/code/code"}, none),
	          "vscode");
	EXPECT_EQ(match_client("cursor", "/opt/cursor/cursor", {"cursor"}, none), "cursor");
	EXPECT_EQ(match_client("node", "/usr/bin/node",
	                       {"node", "/x/node_modules/@google/gemini-cli/dist/index.js"}, none),
	          "gemini-cli");
	EXPECT_EQ(match_client("npm exec", "/usr/bin/node",
	                       {"npm", "exec", "@modelcontextprotocol/inspector"}, none),
	          "mcp-inspector");
	EXPECT_FALSE(match_client("bash", "/usr/bin/bash", {"bash"}, none));
	EXPECT_FALSE(match_client("node", "/usr/bin/node", {"node", "/srv/code.js"}, none));
	Config c = parse_config(
	    "tracking:\n  clients:\n    - name: our-agent\n      comm: '^agentd$'\n", "t");
	EXPECT_EQ(match_client("agentd", "/opt/agentd", {"agentd"}, c.clients), "our-agent");
}

TEST(McpDetect, ShellScriptsAsProcShowsThem)
{
	// After the exec, /proc/PID/exe is the interpreter and argv[1] the script.
	auto m =
	    match_builtin({"/bin/sh", "/opt/bin/mcp-server-tickets", "--stdio"}, "/usr/bin/dash");
	ASSERT_TRUE(m);
	EXPECT_EQ(m->server, "mcp-server-tickets");
	EXPECT_TRUE(match_builtin({"bash", "/srv/gitlab-mcp"}, "/usr/bin/bash"));
	// A command string is not a script.
	EXPECT_FALSE(match_builtin({"sh", "-c", "mcp-server-x --port 1"}, "/usr/bin/dash"));
	EXPECT_FALSE(match_builtin({"bash", "/home/u/backup.sh"}, "/usr/bin/bash"));
}
