// `keytrail report`: every credential the ledger has seen, with its owner and
// policy from the inventory, who holds and uses it, toward what, its age and
// rotations, and its open findings, sorted by risk. Table, JSON, CSV or one
// self-contained HTML page.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail
{

struct ReportFinding {
	std::string rule, severity, detail;
	uint64_t alerts = 0; // alerts the agent raised for it (journal)
};

struct ReportCredential {
	std::string fingerprint, type, prefix;
	std::string inventory_id, owner, purpose, environment, status;
	std::set<std::string> holders, users, upstreams, sources;
	// MCP tools that used it: "tool (server) -> upstream", from tool_call records.
	std::set<std::string> tools;
	// Where it was seen, with paths and variable names: "env GITHUB_TOKEN",
	// "file /srv/app/.env (API_KEY)", "argv --db", "mcp_config <path> env.X".
	std::set<std::string> locations;
	int64_t first_seen = 0, last_seen = 0, last_used = 0, expires = 0;
	uint64_t rotations = 0;
	std::vector<std::string> rotated_from; // older fingerprints in its slot
	std::vector<ReportFinding> findings;
	int risk = 0;
};

struct Report {
	int64_t generated = 0;
	std::string host;
	std::vector<ReportCredential> credentials; // by risk, highest first
	std::map<std::string, uint64_t> by_rule;   // credentials per finding rule
	uint64_t journal_records = 0;
};

// Reads <state_dir>/ledger.db and, when present, <state_dir>/journal (or
// journal_dir) for the alerts the agent raised. Throws Error without a ledger.
Report build_report(const std::string &state_dir, const std::string &journal_dir,
                    const std::vector<InventoryEntry> &inventory, int64_t now_ns,
                    const std::function<void(const std::string &)> &progress = {});

// Findings get their full width first: the other columns shrink (type and
// owner, down to a few characters), and findings that still do not fit wrap
// onto the next line, never cut.
std::string report_table(const Report &r, size_t width = 120);
nlohmann::json report_json(const Report &r);
std::string report_csv(const Report &r);
// One self-contained page (no scripts, nothing fetched), every detail as
// text so it prints: each finding with its detail, the sources, times to the
// second (UTC), a past expiry marked, and how the risk score is made.
std::string report_html(const Report &r);

// Text for an HTML page and for a CSV field (quoted when it must be); both
// valid UTF-8. The fleet tables use them too.
std::string html_escape(const std::string &s);
std::string csv_field(const std::string &s);

} // namespace keytrail
