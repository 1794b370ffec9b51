// MCP client configs (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf,
// Gemini CLI, Zed): every server's env, args, headers and url, scanned for
// literal credentials (hard-coded secrets) and for credential files they
// point at. JSONC (comments, trailing commas) is accepted as VS Code does.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keytrail/secrets/catalog.h"

namespace keytrail
{

struct ConfigSecret {
	std::string server; // the server's key in the config
	std::string field;  // "env.GITLAB_TOKEN", "args[3]", "headers.Authorization", "url"
	size_t line = 0;    // 1-based, where the value is
	Finding finding;
};

struct ConfigFileRef {
	std::string server, field, path, kind;
	size_t line = 0; // 1-based, where the value is; 0 when not found
};

struct McpConfigScan {
	std::vector<ConfigSecret> secrets;
	std::vector<ConfigFileRef> secret_files;
	size_t servers = 0;
	std::optional<std::string> error; // "LINE:COL: reason" for a file that is not JSON/JSONC
};

McpConfigScan scan_mcp_config(std::string_view text);

// Comments and trailing commas out, newlines kept (so lines still match).
std::string jsonc_to_json(std::string_view text);

// Well-known config files under a home directory.
std::vector<std::string> mcp_config_locations(const std::string &home);
// Whether a path names an MCP client config by where it sits: one of the
// home locations above (".cursor/mcp.json", ".claude.json", ...) or a
// project's (".mcp.json", ".vscode/mcp.json", ...), under any directory.
bool is_mcp_config_path(std::string_view path);
// Every user's home on this host (passwd entries with a real directory, /root).
std::vector<std::string> user_homes();

} // namespace keytrail
