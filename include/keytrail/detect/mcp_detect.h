// Decides which processes are MCP servers, the roots of what KeyTrail tracks:
// built-in rules for how MCP servers are launched, then the config's rules.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail
{

// What the detector looks at, borrowed from an exec event or a /proc
// snapshot for one match (every exec is matched: nothing is copied).
struct ProcessFacts {
	pid_t pid = 0;
	uid_t uid = 0;
	const std::string &exe; // executable path
	const std::vector<std::string> &argv;
	const std::string &parent_comm;
	const std::string &parent_exe;
};

// A process matched as an MCP server. `server` is the canonical name of what
// it runs, the same however it is launched (docs/identity.md): the npm
// package ("@modelcontextprotocol/server-github"), the PyPI project
// ("mcp-server-fetch"), the image ("mcp/github", "github/github-mcp-server"),
// a binary's name, or a config rule's name.
struct McpMatch {
	std::string server;
	std::string rule; // "builtin:npm-package", "config:<name>", ...
	// The name is a package's, an image's, a module's or a rule's (not just
	// a file's name): inside another workload it starts a nested one.
	bool named = true;
};

// The npm package ("name" of its package.json) a binary or script path
// belongs to, if any (detect/package.h reads it from disk; tests fake it).
using PackageLookup = std::function<std::optional<std::string>(const std::string &path)>;
// The same, for a path as a given process sees it.
using ProcessPackageLookup =
    std::function<std::optional<std::string>(pid_t pid, const std::string &path)>;

class McpDetector
{
      public:
	McpDetector(bool builtin_rules, std::vector<TrackingRule> rules,
	            ProcessPackageLookup lookup = {});
	// Config rules first (the operator's intent wins), then built-in ones.
	std::optional<McpMatch> match(const ProcessFacts &p) const;

      private:
	bool builtin_;
	std::vector<TrackingRule> rules_;
	// Per rule, a run of characters every argv its regex matches contains
	// (as the kernel's exec hint uses it): most execs are ruled out by a
	// substring search, not the regex.
	std::vector<std::string> argv_literals_;
	ProcessPackageLookup lookup_;
};

// The MCP client (agent or IDE) a process is, if any: config rules first,
// then the built-in ones (claude-code, claude-desktop, cursor, vscode,
// windsurf, gemini-cli, mcp-inspector).
std::optional<std::string> match_client(const std::string &comm, const std::string &exe,
                                        const std::vector<std::string> &argv,
                                        const std::vector<ClientRule> &rules);

// The kernel's compact form of config rules (abi.h: kt_hint_words): per
// rule, the first four bytes of its longest literal of four or more
// characters, from its exe glob or its argv regex. Rules without one are
// named in *unhinted: their servers are tracked only once userspace reads
// their exec. At most KT_HINT_WORDS words.
std::vector<uint32_t> rule_hint_words(const std::vector<TrackingRule> &rules,
                                      std::vector<std::string> *unhinted);

// A package runner fetching something to run (npx, npm exec, pnpm dlx,
// yarn dlx, bunx, uvx, uv tool run, pipx run), however it was started
// (`env`, its interpreter). What it downloads the server with is not the
// server's use of a credential.
bool package_runner(const std::vector<std::string> &argv);
// The same, when the executed file backs the name: the runner itself
// (/usr/bin/npx), or a runtime (node, python, env) given the runner's file
// as an argument. `exec -a npx ./payload` is not a package runner.
bool package_runner(const std::vector<std::string> &argv, const std::string &exe);

// Built-in rules alone (exposed for tests).
// exe: the executed file, which differs from argv[0] for shebang scripts.
std::optional<McpMatch> match_builtin(const std::vector<std::string> &argv,
                                      const std::string &exe = "",
                                      const PackageLookup &lookup = {});

} // namespace keytrail
