// The agent's configuration: one YAML file (default /etc/keytrail/keytrail.yaml).
// Every key is documented in docs/config.md; unknown keys are errors, so a
// typo never silently turns a setting off.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "keytrail/util/error.h"

namespace YAML
{
class Node;
}

namespace keytrail
{

// "FILE:LINE:COL: reason"
class ConfigError : public Error
{
      public:
	using Error::Error;
};

// A user rule that marks processes as MCP servers. Every condition given must
// match; a rule with none is rejected.
struct TrackingRule {
	std::string name;                       // the MCP server name given to matching processes
	std::optional<std::string> exe;         // glob on the executable path
	std::optional<std::string> argv_source; // regex on the joined argv
	std::optional<std::regex> argv;
	std::optional<std::string> parent_source; // regex on the parent's comm or exe
	std::optional<std::regex> parent;
	std::optional<uid_t> uid;
};

// A launcher of MCP servers (an agent/IDE); the nearest one among a
// process's ancestors is its mcp.client. Every condition given must match.
struct ClientRule {
	std::string name;
	std::optional<std::string> exe; // glob on the executable path
	std::optional<std::regex> comm;
	std::optional<std::regex> argv;
};

// selector -> glob; every pair must match. A selector the process lacks
// matches only the pattern "" ("*" means present with any value).
using SelectorMatch = std::vector<std::pair<std::string, std::string>>;

struct IdentityRule {
	std::string id; // template: "spiffe://example.org/mcp/{mcp.server}/{unix.user}"
	SelectorMatch match;
};

struct EnvironmentRule {
	std::string name; // prod, staging, dev, ...
	SelectorMatch match;
};

// A known secret: who owns it and the policy it must follow.
struct InventoryEntry {
	std::string id, owner, purpose;
	// match: every condition given must hold.
	std::vector<std::string> fingerprints; // exact, hex
	std::optional<std::string> path;       // glob on the file the secret was read from
	std::optional<std::string> env;        // env var name (glob)
	std::optional<std::string> identity;   // narrows to holders with this identity (glob)
	std::optional<int64_t> expires_ns;     // wall clock
	std::optional<std::chrono::milliseconds> rotate_every, max_unused;
	std::vector<std::string> allowed_identities; // globs
	std::vector<std::string> allowed_upstreams;  // host globs or CIDRs
	std::string environment;
	std::string status = "active"; // active, revoked, decommissioned
	size_t line = 0;               // where it is defined, for messages
};

// An exception, as Falco users write them: alerts of `rule` ("*": any) whose
// subject matches every condition given are not written (and are counted).
struct AlertException {
	std::string name; // for health and messages
	std::string rule = "*";
	std::optional<std::string> identity, exe, comm, upstream; // globs
	std::optional<std::string> fingerprint;                   // exact, hex
	std::optional<uint32_t> uid;
	size_t line = 0;
};

// How the correlator pairs secrets with connections and raises alerts.
struct CorrelateConfig {
	std::chrono::milliseconds use_window{
	    3600000};                    // a file secret counts this long after its read
	bool loopback_upstreams = false; // count 127.0.0.0/8 and ::1 as upstreams
	std::chrono::milliseconds dedupe_window{3600000}; // same rule+secret+identity: one alert
	uint32_t max_alerts_per_minute = 600;             // beyond: suppressed and counted
	std::chrono::milliseconds stale_check_interval{3600000};
	uint64_t degraded_drops = 1;                  // kernel drops per health interval
	uint64_t degraded_attribution_failures = 100; // per health interval
	std::vector<std::string> disabled_rules;
	std::vector<AlertException> exceptions; // the top-level `exceptions:` list
	// HTTP proxies ("addr:port", globs) whose CONNECT targets count as
	// verified names: the proxy resolves them, not the process.
	std::vector<std::string> trusted_proxies;
	// Stdio MCP tool calls: how long after a call's reply its uses can still
	// arrive (a connect waits agent.connect_hold for its name) before its
	// tool_call record is written; calls never answered are written after
	// tool_call_timeout.
	std::chrono::milliseconds tool_call_linger{3000};
	std::chrono::milliseconds tool_call_timeout{3600000};
	// tool_credential_drift: a (server, tool, credential) learns its
	// upstreams for this long after its first use; a new one later alerts.
	std::chrono::milliseconds tool_baseline_window{86400000};
	// secret_use_outside_tool_call: not raised this long after a server's
	// first JSON-RPC message (start-up: fetching metadata, warming caches).
	std::chrono::milliseconds tool_call_startup_grace{30000};
	// tool_call records list the top-level keys of each call's arguments
	// (names only: a value is never read into memory that outlives parsing).
	bool tool_argument_keys = false;
};

struct OutputSpec {
	std::string type;                 // "stdout" | "file" | "syslog"
	std::string path;                 // file: the file; syslog: the socket ("" = /dev/log)
	std::string format = "json";      // "json" | "ocsf" (alerts only)
	std::vector<std::string> records; // record types it takes; empty = all
	uint64_t max_size = 64ull << 20;  // file: rotate at this size
	uint32_t keep = 5;                // file: rotated segments kept (gzip)
	std::string facility = "daemon";  // syslog
	std::string app_name = "keytrail";
	// clickhouse: ships the journal (docs/fleet.md)
	std::string url, database = "keytrail", user = "default", password_file, tls_ca;
	uint32_t batch_rows = 100000;                   // rows per INSERT at most (and 16 MiB)
	std::chrono::milliseconds batch_interval{5000}; // and at least this often
	bool allow_host_key = false;                    // ship per-host fingerprints anyway
	// Record types whose whole JSON record fills the `record` column; the
	// others ship their columns only (the journal keeps them whole).
	std::vector<std::string> record_column = {"alert", "update", "health", "ready"};
	size_t line = 0; // where it is defined, for messages
};

// The journal the responder tools read: every record, gzip JSONL segments.
struct JournalConfig {
	bool enabled = true;
	std::string dir;                                // "" = <state_dir>/journal
	uint64_t segment_size = 4ull << 20;             // uncompressed bytes per segment
	std::chrono::milliseconds segment_age{3600000}; // and at most this old
	uint64_t max_bytes = 1ull << 30;                // retention: total compressed size
	std::chrono::milliseconds max_age{7 * 86400000LL};
};

struct Config {
	std::string source; // file it came from ("" = built-in defaults)
	// What the file said, per setting ("agent.health_interval", "outputs",
	// "inventory", ...) as YAML text: a reload compares these to name what
	// changed.
	std::map<std::string, std::string> settings;

	// agent:
	std::string state_dir = "/var/lib/keytrail";
	uint32_t ring_buffer_bytes = 8u << 20;
	std::chrono::milliseconds health_interval{60000};
	std::chrono::milliseconds connect_hold{1500};    // wait for SNI before emitting a connect
	bool events = false;                             // write raw observations too
	std::chrono::milliseconds process_grace{300000}; // exited processes kept for traces
	size_t max_exited = 65536;                       // and at most this many of them
	uint32_t ancestry_depth = 8;                     // ancestors carried in records
	std::string metrics_address;                     // Prometheus /metrics; "" = off
	std::string host_name;                           // "" = the system's host name

	// tracking:
	bool builtin_rules = true;
	std::vector<TrackingRule> rules;
	std::vector<std::string> watch_paths; // globs: files whose opens are reported host-wide
	std::vector<ClientRule> clients;      // more MCP clients, checked before the built-in ones

	// identities: and environments:
	std::string trust_domain = "keytrail.local"; // of default identity ids
	std::vector<IdentityRule> identities;
	std::vector<EnvironmentRule> environments;

	std::vector<OutputSpec> outputs; // empty = stdout
	JournalConfig journal;
	CorrelateConfig correlate;

	// secrets:
	std::string fingerprint_key_file; // "" = <state_dir>/fingerprint.key, created at first run
	std::vector<std::string> secret_paths; // extra credential file globs
	uint64_t max_file_size = 1 << 20;      // bytes of a credential file read for detection
	bool scan_mcp_configs = true;          // every user's MCP client configs, at start
	std::vector<std::string> mcp_configs;  // more MCP client config files (globs), at start

	std::vector<InventoryEntry> inventory;
};

inline constexpr const char *kDefaultConfigPath = "/etc/keytrail/keytrail.yaml";

// Loads and validates a file. Throws ConfigError with file, line and reason.
Config load_config(const std::string &path);
// Same, from text (tests, fuzzing); name is used in messages.
Config parse_config(const std::string &text, const std::string &name);

// "daemon" -> 3, "local0" -> 16, ...; -1 if unknown (syslog outputs).
int syslog_facility_code(const std::string &name);

// A ClickHouse database, table or cluster name we put in SQL unquoted:
// 1-64 of [A-Za-z0-9_], not starting with a digit.
bool valid_clickhouse_name(const std::string &name);

// Selector names rules and templates may use.
const std::vector<std::string> &known_selectors();

// "90d", "12h", "30m", "15s", "250ms" -> milliseconds. Throws Error.
std::chrono::milliseconds parse_duration(const std::string &s);
// "8MiB", "512KiB", "1GiB", "4096" -> bytes. Throws Error.
uint64_t parse_size(const std::string &s);

} // namespace keytrail
