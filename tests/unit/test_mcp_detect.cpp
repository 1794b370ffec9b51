#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "keytrail/config/config.h"
#include "keytrail/detect/mcp_detect.h"
#include "keytrail/detect/package.h"

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
	EXPECT_EQ(server_of({"npx", "-y", "@modelcontextprotocol/server-gitlab"}),
	          "@modelcontextprotocol/server-gitlab");
	EXPECT_EQ(server_of({"/usr/bin/npx", "--yes",
	                     "@modelcontextprotocol/server-filesystem@2025.8.21", "/srv"}),
	          "@modelcontextprotocol/server-filesystem");
	EXPECT_EQ(
	    server_of({"npm", "exec", "@modelcontextprotocol/server-postgres", "postgresql://x"}),
	    "@modelcontextprotocol/server-postgres");
	EXPECT_EQ(
	    server_of({"npx", "-p", "@modelcontextprotocol/server-github", "mcp-server-github"}),
	    "@modelcontextprotocol/server-github");
	EXPECT_EQ(server_of({"pnpm", "dlx", "mcp-server-kubernetes@2.0.1"}),
	          "mcp-server-kubernetes");
	EXPECT_EQ(server_of({"bunx", "@zereight/mcp-gitlab"}), "@zereight/mcp-gitlab");
}

TEST(McpDetect, NodeRunningInstalledPackage)
{
	EXPECT_EQ(server_of({"node",
	                     "/x/node_modules/@modelcontextprotocol/server-gitlab/dist/index.js"}),
	          "@modelcontextprotocol/server-gitlab");
	EXPECT_EQ(server_of({"node", "/root/.npm/_npx/ab/node_modules/.bin/mcp-server-gitlab"}),
	          "mcp-server-gitlab");
	EXPECT_EQ(server_of({"node", "--enable-source-maps",
	                     "/usr/lib/node_modules/@zereight/mcp-gitlab/build/index.js"}),
	          "@zereight/mcp-gitlab");
}

// One name per package, however it is launched: the package's bin and a
// checkout's script resolve to the package.json's name.
TEST(McpDetect, EveryLaunchOfAPackageHasItsPackageName)
{
	PackageLookup lookup = [](const std::string &path) -> std::optional<std::string> {
		if (path.ends_with("/mcp-server-github") || path.starts_with("/opt/server-github/"))
			return "@modelcontextprotocol/server-github";
		return std::nullopt;
	};
	auto name = [&](std::vector<std::string> argv, std::string exe = "") {
		auto m = match_builtin(argv, exe, lookup);
		return m ? m->server : "";
	};
	const std::string want = "@modelcontextprotocol/server-github";
	EXPECT_EQ(name({"npx", "-y", "@modelcontextprotocol/server-github@2025.4.8"}), want);
	EXPECT_EQ(name({"npm", "exec", "--yes", "@modelcontextprotocol/server-github"}), want);
	EXPECT_EQ(name({"node", "/root/.npm/_npx/ab/node_modules/.bin/mcp-server-github"}), want);
	EXPECT_EQ(name({"mcp-server-github"}, "/usr/local/bin/mcp-server-github"), want);
	EXPECT_EQ(name({"node", "/opt/server-github/dist/index.js"}), want);
	EXPECT_EQ(name({"/usr/bin/env", "node", "/usr/local/bin/mcp-server-github"},
	               "/usr/local/bin/mcp-server-github"),
	          want);
	// A script outside any package is what its own name says.
	EXPECT_EQ(name({"node", "/srv/app/index.js"}), "");
}

// Runners as the kernel sees them: npx's shebang (`#!/usr/bin/env node`)
// makes its argv "env node /usr/bin/npx -y pkg", and `env VAR=x cmd` is cmd.
TEST(McpDetect, RunnersThroughEnvAndTheirInterpreters)
{
	PackageLookup npm_itself = [](const std::string &path) -> std::optional<std::string> {
		if (path.find("npm/bin/") != std::string::npos || path.ends_with("/npx"))
			return "npm";
		return std::nullopt;
	};
	auto name = [&](std::vector<std::string> argv, std::string exe = "") {
		auto m = match_builtin(argv, exe, npm_itself);
		return m ? m->server : "";
	};
	const std::string want = "@modelcontextprotocol/server-gitlab";
	EXPECT_EQ(
	    name({"/usr/bin/env", "node", "/usr/local/bin/npx", "-y", want}, "/usr/local/bin/npx"),
	    want);
	EXPECT_EQ(name({"node", "/usr/lib/node_modules/npm/bin/npx-cli.js", "-y", want + "@1.0"}),
	          want);
	EXPECT_EQ(name({"node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "exec", "--yes", want}),
	          want);
	EXPECT_EQ(name({"env", "-u", "HOME", "GITLAB_API_URL=http://x", "npx", "-y", want}), want);
	EXPECT_EQ(name({"/usr/bin/env", "--", "mcp-server-fetch"}), "mcp-server-fetch");
	EXPECT_EQ(name({"python3", "/usr/bin/pipx", "run", "mcp-server-git"}), "mcp-server-git");
	// The runners are known as such, to tell their fetches from the server.
	EXPECT_TRUE(package_runner({"/usr/bin/env", "node", "/usr/local/bin/npx", "-y", want}));
	EXPECT_TRUE(package_runner({"npm", "exec", want}));
	EXPECT_TRUE(package_runner({"uv", "tool", "run", "mcp-server-git"}));
	EXPECT_FALSE(package_runner({"node", "/x/node_modules/" + want + "/dist/index.js"}));
	EXPECT_FALSE(package_runner({"npm", "install"}));
	EXPECT_FALSE(package_runner({}));
	// The executed file must back the name.
	EXPECT_TRUE(package_runner({"npx", "-y", want}, "/usr/bin/npx"));
	EXPECT_TRUE(
	    package_runner({"/usr/bin/env", "node", "/usr/bin/npx", "-y", want}, "/usr/bin/npx"));
	EXPECT_TRUE(package_runner({"node", "/usr/bin/npx", "-y", want}, "/usr/bin/node"));
	EXPECT_TRUE(package_runner({"node", "/usr/lib/node_modules/npm/bin/npx-cli.js", "-y", want},
	                           "/usr/bin/node"));
	EXPECT_TRUE(package_runner({"uv", "tool", "run", "mcp-server-git"}, "/usr/bin/uv"));
	EXPECT_FALSE(package_runner({"npx", "-y", want}, "/tmp/payload")); // exec -a npx
	EXPECT_FALSE(package_runner({"npx", "evil.js"}, "/usr/bin/node")); // exec -a npx node
	EXPECT_FALSE(
	    package_runner({"npx", "-y", want}, "/usr/bin/python3")); // named only by argv[0]
	// Wrappers around something else stay nothing.
	EXPECT_EQ(name({"env", "FOO=mcp-server-x", "ls"}), "");
	EXPECT_EQ(name({"env"}), "");
	EXPECT_EQ(name({"node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "install"}), "");
}

TEST(McpDetect, BinariesPythonAndDocker)
{
	EXPECT_EQ(server_of({"/usr/local/bin/github-mcp-server", "stdio"}), "github-mcp-server");
	EXPECT_EQ(server_of({"mcp-server-fetch"}), "mcp-server-fetch");
	// PyPI names are normalized (PEP 503), so every launch agrees.
	EXPECT_EQ(server_of({"uvx", "mcp-server-git", "--repository", "."}), "mcp-server-git");
	EXPECT_EQ(server_of({"uvx", "mcp-server-git==2025.1.14"}), "mcp-server-git");
	EXPECT_EQ(server_of({"uvx", "--from", "mcp_server_git[all]", "mcp-server-git"}),
	          "mcp-server-git");
	EXPECT_EQ(server_of({"uv", "tool", "run", "mcp-server-git"}), "mcp-server-git");
	EXPECT_EQ(server_of({"pipx", "run", "Mcp_Server.Git"}), "mcp-server-git");
	EXPECT_EQ(server_of({"python3", "-m", "mcp_server_git"}), "mcp-server-git");
	EXPECT_EQ(server_of({"/home/u/.local/bin/mcp_server_git"}), "mcp-server-git");
	EXPECT_EQ(server_of({"docker", "run", "-i", "--rm", "-e", "GITHUB_TOKEN", "mcp/github"}),
	          "mcp/github");
	EXPECT_EQ(server_of({"podman", "run", "-i", "docker.io/mcp/github:latest"}), "mcp/github");
	EXPECT_EQ(server_of({"docker", "run", "-i", "ghcr.io/github/github-mcp-server:v1"}),
	          "github/github-mcp-server");
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

// package.json is read through the process's root: symlinks (absolute ones
// too) resolve inside it; a FIFO, a huge or deeply nested file, or a bad
// name yields nothing and never blocks.
TEST(McpPackage, ResolvesBinsThroughTheRootAndStaysBounded)
{
	char tmpl[] = "/tmp/kt-pkg-XXXXXX";
	std::string root = mkdtemp(tmpl);
	auto mk = [&](const std::string &dir) { std::filesystem::create_directories(root + dir); };
	mk("/usr/lib/node_modules/@modelcontextprotocol/server-github/dist");
	mk("/usr/bin");
	std::ofstream(root +
	              "/usr/lib/node_modules/@modelcontextprotocol/server-github/package.json")
	    << R"({"name": "@modelcontextprotocol/server-github", "version": "1.0.0"})";
	std::ofstream(root +
	              "/usr/lib/node_modules/@modelcontextprotocol/server-github/dist/index.js")
	    << "// x\n";
	// An absolute link, as npm makes for global bins: it points inside root.
	symlink("/usr/lib/node_modules/@modelcontextprotocol/server-github/dist/index.js",
	        (root + "/usr/bin/mcp-server-github").c_str());
	EXPECT_EQ(npm_package_of(root, "/usr/bin/mcp-server-github"),
	          "@modelcontextprotocol/server-github");
	// A loop of links ends.
	symlink("/usr/bin/b", (root + "/usr/bin/a").c_str());
	symlink("/usr/bin/a", (root + "/usr/bin/b").c_str());
	EXPECT_FALSE(npm_package_of(root, "/usr/bin/a"));
	// A FIFO named package.json is not opened for reading (it would block).
	mk("/srv/fifo/bin");
	mkfifo((root + "/srv/fifo/package.json").c_str(), 0600);
	std::ofstream(root + "/srv/fifo/bin/x") << "";
	EXPECT_FALSE(npm_package_of(root, "/srv/fifo/bin/x"));
	// Deep nesting is cut while parsing; the name at the top still counts.
	mk("/srv/deep");
	std::ofstream(root + "/srv/deep/package.json")
	    << R"({"name": "deep-mcp", "x": )" << std::string(100000, '[')
	    << std::string(100000, ']') << "}";
	std::ofstream(root + "/srv/deep/i.js") << "";
	EXPECT_EQ(npm_package_of(root, "/srv/deep/i.js"), "deep-mcp");
	EXPECT_FALSE(valid_npm_name("Has Spaces"));
	EXPECT_FALSE(valid_npm_name("../../etc"));
	EXPECT_TRUE(valid_npm_name("@a/b"));
	std::filesystem::remove_all(root);
}

// Config rules reach the kernel as four-byte words of a literal every match
// must contain; a rule with none is named so the operator knows.
TEST(McpDetect, RuleHintWordsComeFromLiteralsEveryMatchContains)
{
	auto word = [](const char *four) {
		uint32_t w = 0;
		for (int k = 3; k >= 0; k--)
			w = w << 8 | static_cast<unsigned char>(four[k]);
		return w;
	};
	auto rule = [](const char *name, std::optional<std::string> exe,
	               std::optional<std::string> argv) {
		TrackingRule r;
		r.name = name;
		r.exe = std::move(exe);
		r.argv_source = std::move(argv);
		return r;
	};
	std::vector<std::string> unhinted;
	auto words = rule_hint_words(
	    {rule("billing", "/opt/billing/bin/*", std::nullopt),   // "ling": no '/'
	     rule("flag", std::nullopt, "--serve-tools( |$)"),      // outside the group
	     rule("alt", std::nullopt, "alpha-server|beta-server"), // no required run
	     rule("opt", std::nullopt, "toolboxx?"),                // the x? is optional
	     rule("short", "*/ab*", std::nullopt),                  // too short
	     rule("class", "*/[abcdefgh]x*", std::nullopt),         // no run outside [...]
	     rule("count", std::nullopt, "a{1234}b"),               // nor inside {n}
	     rule("spaced", std::nullopt, "--a b-c"),               // every window has a space
	     rule("parent-only", std::nullopt, std::nullopt)},
	    &unhinted);
	ASSERT_EQ(words.size(), 3u);
	EXPECT_EQ(words[0], word("ling"));
	EXPECT_EQ(words[1], word("ools"));
	EXPECT_EQ(words[2], word("lbox")); // "toolbox": the last x is optional
	EXPECT_EQ(unhinted, (std::vector<std::string>{"alt", "short", "class", "count", "spaced",
	                                              "parent-only"}));
}

// A config rule's argv regex is tried only when its argv holds the regex's
// literal: escapes that spell other characters (\x41, \u0041, \cJ) and an
// escaped ']' in a class must not make up a literal the argv cannot hold.
TEST(McpDetect, EscapesNeverGateARuleThatMatches)
{
	Config c = parse_config(R"(
tracking:
  rules:
    - name: hex
      argv: "\\x41BC-server"
    - name: unicode
      argv: "\\u0041BD-server"
    - name: class
      argv: "[\\]longword]x-tool"
)",
	                        "t.yaml");
	McpDetector d(false, c.rules);
	auto server = [&](const std::string &arg) {
		auto m = d.match(ProcessFacts{1, 0, "/usr/bin/tool", {"tool", arg}, "", ""});
		return m ? m->server : std::string("none");
	};
	EXPECT_EQ(server("ABC-server"), "hex");
	EXPECT_EQ(server("ABD-server"), "unicode");
	EXPECT_EQ(server("lx-tool"), "class");
	EXPECT_EQ(server("plain"), "none");
}

// A literal without a space is looked for in each argument, one with a
// space in the joined argv: a rule matches wherever its argv stands.
TEST(McpDetect, ARuleLiteralIsFoundInAnyArgumentOrAcrossThem)
{
	Config c = parse_config(R"(
tracking:
  rules:
    - name: one-word
      argv: "--serve-mcp(=stdio)?$"
    - name: two-words
      argv: "billing run --stdio"
)",
	                        "t.yaml");
	McpDetector d(false, c.rules);
	auto server = [&](const std::vector<std::string> &argv) {
		auto m = d.match(ProcessFacts{1, 0, "/usr/bin/tool", argv, "", ""});
		return m ? m->server : std::string("none");
	};
	EXPECT_EQ(server({"tool", "-v", "--serve-mcp"}), "one-word");
	EXPECT_EQ(server({"tool", "--serve-mcp=stdio"}), "one-word");
	EXPECT_EQ(server({"tool", "--serve-mcp", "-v"}), "none"); // the regex still decides
	EXPECT_EQ(server({"tool", "--serve", "mcp"}), "none");
	EXPECT_EQ(server({"/opt/billing", "run", "--stdio"}), "two-words");
	EXPECT_EQ(server({"/opt/billing run", "--stdio"}), "two-words");
	EXPECT_EQ(server({"/opt/billing", "run"}), "none");
}
