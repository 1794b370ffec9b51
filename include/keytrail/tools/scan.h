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

struct ScanReport {
	std::vector<std::string> scanned; // config files read
	std::vector<ScanFinding> findings;
	std::vector<std::pair<std::string, std::string>> errors; // path, "LINE:COL: reason"
	size_t servers = 0;
	bool fingerprints = false; // a key was available
};

// Scans the given files (or, when empty, every user's well-known MCP client
// configs). `progress` is called before each file (index, total, path).
ScanReport run_scan(const std::vector<std::string> &paths, const std::optional<Fingerprinter> &fp,
                    const std::function<void(size_t, size_t, const std::string &)> &progress = {});

std::string scan_text(const ScanReport &r);
nlohmann::json scan_json(const ScanReport &r);
nlohmann::json scan_sarif(const ScanReport &r);

// 0: clean; 1: findings; 2: no findings, but configs that could not be read.
int scan_exit_code(const ScanReport &r);

} // namespace keytrail
