// Decides which processes are MCP servers, the roots of what KeyTrail tracks:
// built-in rules for how MCP servers are launched, then the config's rules.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail
{

// What the detector looks at; filled from an exec event or from /proc.
struct ProcessFacts {
	pid_t pid = 0;
	uid_t uid = 0;
	std::string exe; // executable path
	std::vector<std::string> argv;
	std::string parent_comm;
	std::string parent_exe;
};

struct McpMatch {
	std::string server; // "server-gitlab", "mcp-gitlab", "mcp/github", a rule's name
	std::string rule;   // "builtin:npm-package", "config:<name>", ...
};

class McpDetector
{
      public:
	McpDetector(bool builtin_rules, std::vector<TrackingRule> rules);
	// Config rules first (the operator's intent wins), then built-in ones.
	std::optional<McpMatch> match(const ProcessFacts &p) const;

      private:
	bool builtin_;
	std::vector<TrackingRule> rules_;
};

// The MCP client (agent or IDE) a process is, if any: config rules first,
// then the built-in ones (claude-code, claude-desktop, cursor, vscode,
// windsurf, gemini-cli, mcp-inspector).
std::optional<std::string> match_client(const std::string &comm, const std::string &exe,
                                        const std::vector<std::string> &argv,
                                        const std::vector<ClientRule> &rules);

// Built-in rules alone (exposed for tests).
// exe: the executed file, which differs from argv[0] for shebang scripts.
std::optional<McpMatch> match_builtin(const std::vector<std::string> &argv,
                                      const std::string &exe = "");

} // namespace keytrail
