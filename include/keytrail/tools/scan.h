// `keytrail scan`: MCP client configs checked before anything runs, for
// literal credentials (env, args, headers, URLs) and for credential files
// they reference. Output as text, JSON or SARIF 2.1.0; never a secret value.
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "keytrail/secrets/fingerprint.h"

namespace keytrail
{

struct ScanFinding {
	std::string rule; // hardcoded_secret | secret_file_reference
	std::string path; // the config file
	size_t line = 0;
	std::string server, field;
	std::string type, prefix, fingerprint; // hardcoded_secret
	std::string ref_path, ref_kind;        // secret_file_reference
};

// A place the scan looked: a default location, a named file, a directory
// walked. `what` says what it found there ("absent", "read", "3 configs in
// 1200 entries", ...).
struct ScanLooked {
	std::string path, what;
};

struct ScanReport {
	std::vector<ScanLooked> looked;   // where it looked, in order
	std::vector<std::string> scanned; // config files read
	std::vector<ScanFinding> findings;
	std::vector<std::pair<std::string, std::string>> errors; // path, "LINE:COL: reason"
	size_t servers = 0;
	bool fingerprints = false; // a key was available
};

// Bounds of a directory walk: levels below the directory named, entries
// read in all (a walk that reaches it stops and says so), and the largest
// config read.
constexpr size_t kScanMaxDepth = 12;
constexpr size_t kScanMaxEntries = 500000;
constexpr size_t kScanMaxConfig = 4u << 20;

// Scans the given files and directories (or, when empty, every user's
// well-known MCP client configs). A directory is walked for the known MCP
// client config names (is_mcp_config_path), within the bounds above, without
// following symlinks to directories or entering one directory twice.
// `progress` is called before each file (index, total, path) and, during a
// walk, every few thousand entries (entries so far, 0, directory).
ScanReport run_scan(const std::vector<std::string> &paths, const std::optional<Fingerprinter> &fp,
                    const std::function<void(size_t, size_t, const std::string &)> &progress = {},
                    size_t max_entries = kScanMaxEntries);

// Text: one line per finding, then the totals. Where it looked follows when
// `verbose`, or when it found no config at all.
std::string scan_text(const ScanReport &r, bool verbose = false);
nlohmann::json scan_json(const ScanReport &r);
nlohmann::json scan_sarif(const ScanReport &r);

// 0: clean; 1: findings; 2: no findings, but configs that could not be read.
int scan_exit_code(const ScanReport &r);

} // namespace keytrail
