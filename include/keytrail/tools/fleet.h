// Fleet-wide questions, answered by ClickHouse over what every agent's
// clickhouse output shipped (docs/fleet.md): which credentials several
// hosts' workloads hold, which nobody used for long, who held or used one,
// and how the agents are. The schema is made and migrated here too.
//
// Every query is exact when a row was shipped twice (a retried batch): it
// takes sets, minima and maxima, or DISTINCT event ids, never plain counts.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "keytrail/output/clickhouse.h"

namespace keytrail
{

inline constexpr uint32_t kFleetSchemaVersion = 3;

struct FleetInitOptions {
	std::string cluster;              // "": plain tables; else local tables + Distributed
	std::chrono::milliseconds ttl{0}; // rows older than this are dropped; 0 = kept
};

// Creates the database and tables, or migrates them to kFleetSchemaVersion.
// Idempotent. Returns what it did, a line each. Throws Error.
std::vector<std::string> fleet_init(ClickHouseClient &c, const FleetInitOptions &o);

// The installed schema version (0 = none). Throws Error.
uint32_t fleet_schema_version(ClickHouseClient &c);

// A query's answer: columns in order, rows as JSON objects (times RFC 3339,
// lists as arrays).
struct FleetTable {
	std::string title;
	std::vector<std::string> columns;
	nlohmann::json rows = nlohmann::json::array();
};

// Credentials held by at least two workloads (host, identity, server) on
// at least min_hosts hosts.
FleetTable fleet_shared(ClickHouseClient &c, uint32_t min_hosts = 2);
// Credentials not used anywhere since now - unused (never used: not seen
// since), or that an agent found stale (expired, overdue for rotation).
FleetTable fleet_stale(ClickHouseClient &c, std::chrono::milliseconds unused, int64_t now_ns);
// Every sighting, use and finding of one credential (a fingerprint or a
// prefix of 8+ hex digits), in time order. Throws Error on a bad prefix.
FleetTable fleet_blast(ClickHouseClient &c, const std::string &fingerprint);
// One row per agent: its key id, last health, drops and shipping lag.
FleetTable fleet_hosts(ClickHouseClient &c);
// The distinct fingerprint key ids the agents reported (more than one: the
// fleet's fingerprints do not match across those hosts).
std::vector<std::string> fleet_key_ids(ClickHouseClient &c);

// table | json | csv | html (dot: fleet_blast_dot). Throws Error on another.
std::string fleet_format(const FleetTable &t, const std::string &format);
// host -> workload (held) -> upstream (used), for Graphviz.
std::string fleet_blast_dot(const FleetTable &blast, const std::string &fingerprint);

// The fleet shared_credential alerts not raised before (scope "fleet", one
// finding per credential, its id the same on every run). Throws Error.
std::vector<nlohmann::json> fleet_shared_alerts(ClickHouseClient &c, const FleetTable &shared,
                                                int64_t now_ns);
// Records alerts as raised (fleet_findings), once they were written: a
// failure in between raises them again, never loses them. Throws Error.
void fleet_mark_raised(ClickHouseClient &c, const std::vector<nlohmann::json> &alerts,
                       int64_t now_ns);

} // namespace keytrail
