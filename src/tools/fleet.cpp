#include "keytrail/tools/fleet.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "keytrail/config/config.h"
#include "keytrail/schema/finding.h"
#include "keytrail/schema/record.h"
#include "keytrail/schema/rules.h"
#include "keytrail/secrets/fingerprint.h"
#include "keytrail/tools/report.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// The row columns (clickhouse_row() takes them, kClickHouseEventColumns
// lists them in this order; docs/fleet.md says what each holds).
constexpr const char *kEventColumns = "event_id String, host String, type String, "
                                      "time DateTime, time_us UInt64, fingerprint String, "
                                      "secret_type String, source String, inventory_id String, "
                                      "identity String, environment String, workload String, "
                                      "upstream String, rule String, severity String, "
                                      "finding_id String, reason String, key_id String, "
                                      "drops UInt64, lag_seconds Float64, record String";

constexpr const char *kFindingColumns =
    "finding_id String, rule String, fingerprint String, raised DateTime, hosts UInt32";

// Per month and credential, the aggregate states of its sightings and uses
// and of the agents' stale findings, kept by materialized views at insert.
// `fleet shared` and `fleet stale` read about a row per credential instead
// of every sighting. Each state is a set, a minimum or a maximum: a row
// shipped twice changes none of them.
struct CredentialColumn {
	const char *name, *type; // seen_max on: added in version 3
	const char *state;       // its state, from a sighting or use
	const char *stale;       // its state, from a stale_credential finding
};

constexpr CredentialColumn kCredentialColumns[] = {
    {"type_any", "AggregateFunction(any, String)", "anyState(secret_type)",
     "anyState(secret_type)"},
    {"host_set", "AggregateFunction(groupUniqArray, String)", "groupUniqArrayState(host)", nullptr},
    {"holder_count", "AggregateFunction(uniqExact, String, String, String)",
     "uniqExactState(host, identity, workload)", nullptr},
    {"workload_set", "AggregateFunction(groupUniqArray, String)", "groupUniqArrayState(workload)",
     nullptr},
    {"identity_set", "AggregateFunction(groupUniqArray, String)", "groupUniqArrayState(identity)",
     nullptr},
    {"environment_set", "AggregateFunction(groupUniqArray, String)",
     "groupUniqArrayState(environment)", nullptr},
    {"upstream_set", "AggregateFunction(groupUniqArray, String)", "groupUniqArrayState(upstream)",
     nullptr},
    {"seen_min", "AggregateFunction(min, UInt64)", "minState(time_us)", nullptr},
    {"use_min", "AggregateFunction(minIf, UInt64, UInt8)",
     "minIfState(time_us, type = 'secret_use')", nullptr},
    {"use_max", "AggregateFunction(maxIf, UInt64, UInt8)",
     "maxIfState(time_us, type = 'secret_use')", nullptr},
    {"seen_max", "AggregateFunction(max, UInt64)", "maxState(time_us)", nullptr},
    {"stale_reasons", "AggregateFunction(groupUniqArray, String)", nullptr,
     "groupUniqArrayState(reason)"},
    // The hosts that found it stale (not holders: `shared` never reads it).
    {"stale_host_set", "AggregateFunction(groupUniqArray, String)", nullptr,
     "groupUniqArrayState(host)"},
};

// The credentials' view of a kind: a sighting or use, or a stale finding.
enum class CredentialView { kSeen, kStale };

// "month Date, fingerprint String, <column> <type>, ..."
std::string credential_columns()
{
	std::string out = "month Date, fingerprint String";
	for (const auto &col : kCredentialColumns)
		out += std::string(", ") + col.name + " " + col.type;
	return out;
}

// An empty state of an AggregateFunction(fn, T...) column:
// arrayReduce('fnState', emptyArrayT(), ...), which merges into nothing.
std::string empty_state(std::string_view type)
{
	// "fn, T1, T2" between the parentheses.
	std::string_view inner = type.substr(type.find('(') + 1);
	inner.remove_suffix(1);
	size_t comma = inner.find(", ");
	std::string out = "arrayReduce('" + std::string(inner.substr(0, comma)) + "State'";
	while (comma != std::string_view::npos) {
		inner.remove_prefix(comma + 2);
		comma = inner.find(", ");
		out += ", emptyArray" + std::string(inner.substr(0, comma)) + "()";
	}
	return out + ")";
}

// The SELECT of a view (or a backfill) into credentials, up to FROM: each
// column's state from the view's kind of row, or an empty state (18.16's
// views must give every column).
std::string credential_states(CredentialView view)
{
	std::string out = "SELECT toStartOfMonth(time) AS month, fingerprint";
	for (const auto &col : kCredentialColumns) {
		const char *state = view == CredentialView::kSeen ? col.state : col.stale;
		out += std::string(", ") + (state ? std::string(state) : empty_state(col.type)) +
		       " AS " + col.name;
	}
	return out + " FROM ";
}

std::string credential_filter(CredentialView view)
{
	return view == CredentialView::kSeen
	           ? " WHERE type IN ('secret', 'secret_use') AND fingerprint != '' GROUP BY "
	             "month, fingerprint"
	           : " WHERE type IN ('alert', 'update') AND rule = 'stale_credential' AND "
	             "reason != '' AND fingerprint != '' GROUP BY month, fingerprint";
}

// A set state merged over a credential's rows, sorted, without the empty
// value (a sighting with no workload, a row of the other view).
std::string merged_set(const char *state, const char *name)
{
	return std::string("arraySort(arrayFilter(x -> x != '', groupUniqArrayMerge(") + state +
	       "))) AS " + name + ", ";
}

std::string db_of(const ClickHouseClient &c)
{
	const std::string &db = c.target().database;
	if (!valid_clickhouse_name(db))
		throw Error("clickhouse database '" + sanitize_utf8(db) +
		            "' is not a plain name (letters, digits, _)");
	return db;
}

// Runs a SELECT ... FORMAT JSON; its data rows.
nlohmann::json select(ClickHouseClient &c, const std::string &sql, const std::string &what)
{
	std::string body = c.run(sql + " FORMAT JSON", what);
	if (json_too_deep(body, 64) != std::string::npos)
		throw Error("clickhouse: " + what + ": the answer nests too deep");
	auto j = nlohmann::json::parse(body, nullptr, false);
	if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array())
		throw Error("clickhouse: " + what + ": not a JSON answer");
	return std::move(j["data"]);
}

// ClickHouse quotes 64-bit integers in JSON; these columns are numbers.
uint64_t u64(const nlohmann::json &v)
{
	if (v.is_number_unsigned())
		return v.get<uint64_t>();
	if (v.is_number_integer())
		return static_cast<uint64_t>(std::max<int64_t>(0, v.get<int64_t>()));
	if (v.is_string()) {
		try {
			return std::stoull(v.get<std::string>());
		} catch (const std::exception &) {
			return 0;
		}
	}
	return 0;
}

std::string us_time(const nlohmann::json &v)
{
	uint64_t us = u64(v);
	return us ? rfc3339(static_cast<int64_t>(us) * 1000) : "";
}

// Rows of `data` as the columns say: "x_us" columns become "x" times.
FleetTable table_of(std::string title, const nlohmann::json &data,
                    const std::vector<std::string> &columns)
{
	FleetTable t;
	t.title = std::move(title);
	for (const auto &col : columns)
		t.columns.push_back(col.ends_with("_us") ? col.substr(0, col.size() - 3) : col);
	for (const auto &in : data) {
		nlohmann::json row = nlohmann::json::object();
		for (const auto &col : columns) {
			const nlohmann::json v = in.contains(col) ? in[col] : nlohmann::json();
			if (col.ends_with("_us"))
				row[col.substr(0, col.size() - 3)] = us_time(v);
			else if (col.ends_with("_count") || col == "drops")
				row[col] = u64(v);
			else
				row[col] = v;
		}
		t.rows.push_back(std::move(row));
	}
	return t;
}

std::string cell(const nlohmann::json &v)
{
	if (v.is_string())
		return v.get<std::string>();
	if (v.is_array()) {
		std::string o;
		for (const auto &x : v)
			o += (o.empty() ? "" : ", ") + cell(x);
		return o;
	}
	if (v.is_null())
		return "";
	return v.dump();
}

bool server_has_ttl(ClickHouseClient &c)
{
	// Table TTL came in 19.6.
	std::string v = c.run("SELECT version()", "read the server version");
	int major = 0, minor = 0;
	if (std::sscanf(v.c_str(), "%d.%d", &major, &minor) != 2)
		return false;
	return major > 19 || (major == 19 && minor >= 6);
}

// An INSERT that started before a view was made is not seen by it, and a
// backfill started while it runs may miss its later blocks: wait for those
// running now (an agent's batch takes seconds) before one.
void wait_for_inserts_before_now(ClickHouseClient &c, const std::string &table)
{
	// The pattern is built by the server, so this query does not match it.
	std::string running = "SELECT query_id FROM system.processes WHERE "
	                      "positionCaseInsensitive(query, concat('INSERT INTO ', '" +
	                      table + "')) > 0";
	std::string ids;
	for (const auto &r : select(c, running, "list running inserts")) {
		std::string id = r.value("query_id", "");
		// Ids are UUIDs unless a client chose one: others are not waited for.
		if (!id.empty() && id.size() <= 64 &&
		    std::all_of(id.begin(), id.end(), [](char ch) {
			    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' ||
			           ch == '_';
		    }))
			ids += (ids.empty() ? "'" : ", '") + id + "'";
	}
	if (ids.empty())
		return;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
	while (!select(c, running + " AND query_id IN (" + ids + ")", "wait for running inserts")
	            .empty()) {
		if (std::chrono::steady_clock::now() > deadline)
			throw Error("inserts into " + table +
			            " still run after 10 minutes: run fleet init again later");
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
}

} // namespace

uint32_t fleet_schema_version(ClickHouseClient &c)
{
	std::string db = db_of(c);
	auto exists = select(c,
	                     "SELECT count() AS n FROM system.tables WHERE database = '" + db +
	                         "' AND name = 'schema_version'",
	                     "look for the schema");
	if (exists.empty() || u64(exists[0]["n"]) == 0)
		return 0;
	auto v = select(c, "SELECT max(version) AS v FROM " + db + ".schema_version",
	                "read the schema version");
	return v.empty() ? 0 : static_cast<uint32_t>(u64(v[0]["v"]));
}

std::vector<std::string> fleet_init(ClickHouseClient &c, const FleetInitOptions &o)
{
	std::string db = db_of(c);
	if (!o.cluster.empty() && !valid_clickhouse_name(o.cluster))
		throw Error("cluster '" + sanitize_utf8(o.cluster) +
		            "' is not a plain name (letters, digits, _)");
	std::vector<std::string> done;
	c.run("CREATE DATABASE IF NOT EXISTS " + db, "create database " + db);
	c.run("CREATE TABLE IF NOT EXISTS " + db +
	          ".schema_version (version UInt32, applied DateTime, note String) "
	          "ENGINE = MergeTree() ORDER BY version",
	      "create " + db + ".schema_version");
	uint32_t have = fleet_schema_version(c);
	if (have > kFleetSchemaVersion)
		throw Error("database " + db + " has schema version " + std::to_string(have) +
		            ", newer than this keytrail's " + std::to_string(kFleetSchemaVersion) +
		            ": upgrade keytrail");
	bool ttl_ok = o.ttl.count() > 0 && server_has_ttl(c);
	uint64_t ttl_days = static_cast<uint64_t>(std::max<int64_t>(
	    1, std::chrono::duration_cast<std::chrono::hours>(o.ttl).count() / 24));
	std::string ttl = ttl_ok ? " TTL time + INTERVAL " + std::to_string(ttl_days) + " DAY" : "";
	// A table, or with a cluster its local part on this server and a
	// Distributed table over every shard's (run fleet init on each shard).
	auto table = [&](const std::string &name, const char *columns, const std::string &engine,
	                 const std::string &shard_key) {
		std::string local = o.cluster.empty() ? name : name + "_local";
		c.run("CREATE TABLE IF NOT EXISTS " + db + "." + local + " (" + columns +
		          ") ENGINE = " + engine,
		      "create " + db + "." + local);
		if (!o.cluster.empty())
			c.run("CREATE TABLE IF NOT EXISTS " + db + "." + name + " AS " + db + "." +
			          local + " ENGINE = Distributed(" + o.cluster + ", " + db + ", " +
			          local + ", " + shard_key + ")",
			      "create " + db + "." + name + " over cluster " + o.cluster);
		return local;
	};
	if (have < 1) {
		// Version 1. Rows a retried batch repeats share their event id and
		// sorting key: ReplacingMergeTree folds them when it merges.
		std::string events = table("events", kEventColumns,
		                           "ReplacingMergeTree() PARTITION BY toYYYYMM(time) "
		                           "ORDER BY (type, fingerprint, host, event_id)" +
		                               ttl,
		                           "cityHash64(event_id)");
		table("fleet_findings", kFindingColumns, "ReplacingMergeTree() ORDER BY finding_id",
		      "cityHash64(finding_id)");
		c.run("INSERT INTO " + db +
		          ".schema_version VALUES (1, now(), 'events, fleet_findings')",
		      "record schema version 1");
		done.push_back(
		    "schema version 1: " + db + "." + events + ", " + db + ".fleet_findings" +
		    (o.cluster.empty() ? "" : " (local) and Distributed over " + o.cluster));
	}
	std::string events = o.cluster.empty() ? "events" : "events_local";
	std::string credentials = o.cluster.empty() ? "credentials" : "credentials_local";
	if (have < 2) {
		// Version 2 (with the later versions' columns): a row per credential
		// and month, aggregated at insert.
		table("credentials", credential_columns().c_str(),
		      "AggregatingMergeTree() PARTITION BY month ORDER BY fingerprint",
		      "cityHash64(fingerprint)");
	}
	if (have < 3) {
		// Version 3. Version 2's view goes first: it gives none of the new
		// columns, so once they exist every insert through it would fail.
		// Then the columns (on a version 2 table, and on the Distributed
		// one over it, each checked: a rerun after an interrupted init
		// finishes the job), the views, and what events held before them,
		// every column: a row aggregated twice changes no state.
		c.run("DROP TABLE IF EXISTS " + db + ".credentials_mv",
		      "drop version 2's " + db + ".credentials_mv");
		std::vector<std::string> tables{credentials};
		if (!o.cluster.empty())
			tables.push_back("credentials");
		for (const auto &t : tables) {
			auto names = select(c,
			                    "SELECT name FROM system.columns WHERE database = '" +
			                        db + "' AND table = '" + t + "'",
			                    "read the columns of " + db + "." + t);
			for (const auto &col : kCredentialColumns) {
				if (std::any_of(names.begin(), names.end(),
				                [&](const nlohmann::json &r) {
					                return r.value("name", "") == col.name;
				                }))
					continue;
				c.run("ALTER TABLE " + db + "." + t + " ADD COLUMN " + col.name +
				          " " + col.type,
				      "add " + std::string(col.name) + " to " + db + "." + t);
			}
		}
		for (auto [view, name] :
		     {std::pair{CredentialView::kSeen, "credentials_seen_mv"},
		      std::pair{CredentialView::kStale, "credentials_stale_mv"}})
			c.run("CREATE MATERIALIZED VIEW IF NOT EXISTS " + db + "." + name + " TO " +
			          db + "." + credentials + " AS " + credential_states(view) + db +
			          "." + events + credential_filter(view),
			      "create " + db + "." + name);
		wait_for_inserts_before_now(c, db + ".events");
		// One statement each over the whole table: no time limit.
		c.set_timeout(std::chrono::milliseconds(0));
		for (auto view : {CredentialView::kSeen, CredentialView::kStale})
			c.run("INSERT INTO " + db + "." + credentials + " " +
			          credential_states(view) + db + "." + events +
			          credential_filter(view),
			      "aggregate what " + db + "." + events +
			          " holds into the credentials");
		c.set_timeout(std::chrono::milliseconds(120000));
		c.run(
		    "INSERT INTO " + db +
		        ".schema_version VALUES (3, now(), 'credentials: seen_max, stale_reasons, "
		        "stale_host_set; credentials_seen_mv, credentials_stale_mv')",
		    "record schema version 3");
		done.push_back(
		    "schema version 3: " + db + "." + credentials + " kept by " + db +
		    ".credentials_seen_mv and " + db + ".credentials_stale_mv" +
		    (o.cluster.empty() ? "" : " (local) and Distributed over " + o.cluster));
	}
	if (have >= kFleetSchemaVersion)
		done.push_back("schema version " + std::to_string(have) + " is current in " + db);
	if (ttl_ok) {
		c.run("ALTER TABLE " + db + "." + events + " MODIFY" + ttl, "set the TTL");
		// A month's row goes once its last day is past the TTL.
		c.run("ALTER TABLE " + db + "." + credentials +
		          " MODIFY TTL addMonths(month, 1) + INTERVAL " + std::to_string(ttl_days) +
		          " DAY",
		      "set the credentials' TTL");
		done.push_back("rows expire after " + std::to_string(ttl_days) + " days");
	} else if (o.ttl.count() > 0) {
		done.push_back(
		    "this ClickHouse has no table TTL (19.6+): drop old months with ALTER "
		    "TABLE " +
		    db + ".events DROP PARTITION YYYYMM (docs/fleet.md)");
	}
	return done;
}

FleetTable fleet_shared(ClickHouseClient &c, uint32_t min_hosts)
{
	std::string db = db_of(c);
	std::string sql =
	    "SELECT fingerprint, anyMerge(type_any) AS secret_type, "
	    "length(groupUniqArrayMerge(host_set)) AS host_count, "
	    "uniqExactMerge(holder_count) AS workload_count, "
	    "arraySort(groupUniqArrayMerge(host_set)) AS hosts, " +
	    merged_set("workload_set", "workloads") + merged_set("identity_set", "identities") +
	    merged_set("environment_set", "environments") +
	    merged_set("upstream_set", "upstreams") +
	    "minMerge(seen_min) AS first_seen_us, minIfMerge(use_min) AS first_use_us, "
	    "maxIfMerge(use_max) AS last_use_us FROM " +
	    db + ".credentials GROUP BY fingerprint HAVING host_count >= " +
	    std::to_string(std::max<uint32_t>(1, min_hosts)) +
	    " AND workload_count >= 2 ORDER BY host_count DESC, workload_count DESC, fingerprint";
	return table_of("credentials shared across the fleet", select(c, sql, "fleet shared"),
	                {"fingerprint", "secret_type", "host_count", "workload_count", "hosts",
	                 "workloads", "identities", "environments", "upstreams", "first_seen_us",
	                 "first_use_us", "last_use_us"});
}

FleetTable fleet_stale(ClickHouseClient &c, std::chrono::milliseconds unused, int64_t now_ns)
{
	std::string db = db_of(c);
	int64_t cutoff_us = now_ns / 1000 - unused.count() * 1000;
	// Hosts that hold it or found it stale. A credential's last sighting is
	// at least its first: a version 2 row whose events were dropped before
	// the migration has no seen_max.
	std::string sql =
	    "SELECT fingerprint, anyMerge(type_any) AS secret_type, "
	    "arraySort(arrayFilter(x -> x != '', arrayReduce('groupUniqArray', "
	    "arrayConcat(groupUniqArrayMerge(host_set), groupUniqArrayMerge(stale_host_set))))) "
	    "AS hosts, " +
	    merged_set("workload_set", "workloads") +
	    "minMerge(seen_min) AS first_seen_us, greatest(maxMerge(seen_max), first_seen_us) AS "
	    "last_seen_us, maxIfMerge(use_max) AS last_use_us, arraySort(groupUniqArrayMerge("
	    "stale_reasons)) AS reasons FROM " +
	    db +
	    ".credentials GROUP BY fingerprint HAVING if(last_use_us > 0, last_use_us, "
	    "last_seen_us) < " +
	    std::to_string(cutoff_us) +
	    " OR length(reasons) > 0 ORDER BY if(last_use_us > 0, last_use_us, last_seen_us), "
	    "fingerprint";
	return table_of("credentials unused since " + rfc3339(cutoff_us * 1000) +
	                    ", or found stale by an agent",
	                select(c, sql, "fleet stale"),
	                {"fingerprint", "secret_type", "hosts", "workloads", "first_seen_us",
	                 "last_seen_us", "last_use_us", "reasons"});
}

FleetTable fleet_blast(ClickHouseClient &c, const std::string &fingerprint)
{
	std::string db = db_of(c);
	bool hex = fingerprint.size() >= 8 && fingerprint.size() <= kFingerprintHexLength &&
	           std::all_of(fingerprint.begin(), fingerprint.end(), [](char ch) {
		           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
	           });
	if (!hex)
		throw Error("--secret takes a fingerprint: 8 to 32 lowercase hex digits");
	std::string sql = "SELECT DISTINCT event_id, time_us, host, type, workload, identity, "
	                  "environment, upstream, source, rule, fingerprint FROM " +
	                  db + ".events WHERE startsWith(fingerprint, '" + fingerprint +
	                  "') AND type IN ('secret', 'secret_use', 'alert', 'update') "
	                  "ORDER BY time_us, event_id";
	return table_of("every holder and use of " + fingerprint, select(c, sql, "fleet blast"),
	                {"time_us", "host", "type", "workload", "identity", "environment",
	                 "upstream", "source", "rule", "fingerprint"});
}

FleetTable fleet_hosts(ClickHouseClient &c)
{
	std::string db = db_of(c);
	std::string sql = "SELECT host, argMax(key_id, time_us) AS key_id, "
	                  "maxIf(time_us, type = 'health') AS last_health_us, "
	                  "max(time_us) AS last_record_us, "
	                  "argMaxIf(drops, time_us, type = 'health') AS drops, "
	                  "argMaxIf(lag_seconds, time_us, type = 'health') AS lag_seconds FROM " +
	                  db +
	                  ".events WHERE type IN ('health', 'ready') GROUP BY host ORDER BY host";
	return table_of(
	    "agents", select(c, sql, "fleet hosts"),
	    {"host", "key_id", "last_health_us", "last_record_us", "drops", "lag_seconds"});
}

std::vector<std::string> fleet_key_ids(ClickHouseClient &c)
{
	std::string db = db_of(c);
	std::vector<std::string> ids;
	for (const auto &r :
	     select(c,
	            "SELECT DISTINCT key_id FROM " + db +
	                ".events WHERE type IN ('health', 'ready') AND key_id != '' "
	                "ORDER BY key_id",
	            "read key ids"))
		ids.push_back(r.value("key_id", std::string()));
	return ids;
}

std::string fleet_format(const FleetTable &t, const std::string &format)
{
	if (format == "json")
		return t.rows.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
	std::ostringstream o;
	if (format == "csv") {
		for (size_t i = 0; i < t.columns.size(); i++)
			o << (i ? "," : "") << t.columns[i];
		o << "\n";
		for (const auto &r : t.rows) {
			for (size_t i = 0; i < t.columns.size(); i++)
				o << (i ? "," : "") << csv_field(cell(r[t.columns[i]]));
			o << "\n";
		}
		return o.str();
	}
	if (format == "html") {
		o << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>KeyTrail fleet: "
		  << html_escape(t.title)
		  << "</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
		     "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;"
		     "text-align:left}</style></head><body>\n<h1>"
		  << html_escape(t.title) << "</h1>\n<p>" << t.rows.size()
		  << " rows</p>\n<table><tr>";
		for (const auto &col : t.columns)
			o << "<th>" << html_escape(col) << "</th>";
		o << "</tr>\n";
		for (const auto &r : t.rows) {
			o << "<tr>";
			for (const auto &col : t.columns)
				o << "<td>" << html_escape(cell(r[col])) << "</td>";
			o << "</tr>\n";
		}
		o << "</table></body></html>\n";
		return o.str();
	}
	if (format != "table")
		throw Error("unknown format '" + sanitize_utf8(format) +
		            "' (table, json, csv, html)");
	std::vector<size_t> width;
	for (const auto &col : t.columns)
		width.push_back(col.size());
	std::vector<std::vector<std::string>> cells;
	for (const auto &r : t.rows) {
		cells.emplace_back();
		for (size_t i = 0; i < t.columns.size(); i++) {
			cells.back().push_back(sanitize_utf8(cell(r[t.columns[i]])));
			width[i] = std::max(width[i], cells.back().back().size());
		}
	}
	auto line = [&](const std::vector<std::string> &v) {
		std::string l;
		for (size_t i = 0; i < v.size(); i++)
			l += v[i] +
			     (i + 1 < v.size() ? std::string(width[i] - v[i].size() + 2, ' ') : "");
		o << l << "\n";
	};
	o << t.title << ": " << t.rows.size() << "\n";
	line(t.columns);
	for (const auto &r : cells)
		line(r);
	return o.str();
}

std::string fleet_blast_dot(const FleetTable &blast, const std::string &fingerprint)
{
	auto q = [](const std::string &s) {
		std::string o = "\"";
		for (char ch : sanitize_utf8(s)) {
			if (ch == '"' || ch == '\\')
				o.push_back('\\');
			o.push_back(ch == '\n' ? ' ' : ch);
		}
		return o + "\"";
	};
	std::set<std::string> nodes, edges;
	for (const auto &r : blast.rows) {
		std::string host = cell(r["host"]), w = cell(r["workload"]),
		            up = cell(r["upstream"]);
		if (w.empty())
			w = cell(r["identity"]);
		std::string wn = host + "/" + (w.empty() ? "?" : w);
		nodes.insert("  " + q("host:" + host) + " [shape=box,label=" + q(host) + "];");
		nodes.insert("  " + q("w:" + wn) + " [label=" + q(w.empty() ? "?" : w) + "];");
		edges.insert("  " + q("host:" + host) + " -> " + q("w:" + wn) +
		             " [label=\"holds\"];");
		if (!up.empty()) {
			nodes.insert("  " + q("up:" + up) +
			             " [shape=ellipse,style=dashed,label=" + q(up) + "];");
			edges.insert("  " + q("w:" + wn) + " -> " + q("up:" + up) +
			             " [label=\"used toward\"];");
		}
	}
	std::ostringstream o;
	o << "digraph blast {\n  label=" << q("blast radius of " + fingerprint)
	  << ";\n  rankdir=LR;\n";
	for (const auto &n : nodes)
		o << n << "\n";
	for (const auto &e : edges)
		o << e << "\n";
	o << "}\n";
	return o.str();
}

std::vector<nlohmann::json> fleet_shared_alerts(ClickHouseClient &c, const FleetTable &shared,
                                                int64_t now_ns)
{
	std::string db = db_of(c);
	std::map<std::string, const nlohmann::json *> by_id;
	for (const auto &r : shared.rows)
		by_id[finding_id("fleet", "shared_credential", r.value("fingerprint", ""))] = &r;
	if (by_id.empty())
		return {};
	std::string in;
	for (const auto &[id, r] : by_id)
		in += (in.empty() ? "'" : ", '") + id + "'"; // hex: nothing to escape
	std::set<std::string> raised;
	for (const auto &r : select(c,
	                            "SELECT DISTINCT finding_id FROM " + db +
	                                ".fleet_findings WHERE finding_id IN (" + in + ")",
	                            "read raised fleet findings"))
		raised.insert(r.value("finding_id", ""));
	const RuleInfo *rule = find_rule("shared_credential");
	std::vector<nlohmann::json> alerts;
	for (const auto &[id, r] : by_id) {
		if (raised.count(id))
			continue;
		std::string fp = r->value("fingerprint", "");
		uint64_t hosts = r->value("host_count", uint64_t{0});
		nlohmann::json a = {
		    {"type", "alert"},
		    {"time", rfc3339(now_ns)},
		    {"rule", "shared_credential"},
		    {"scope", "fleet"},
		    {"severity", rule ? rule->severity : "high"},
		    {"finding_id", id},
		    {"alert_id", id},
		    {"secret", {{"fingerprint", fp}, {"type", r->value("secret_type", "")}}},
		    {"hosts", (*r)["hosts"]},
		    {"workloads", (*r)["workloads"]},
		    {"identities", (*r)["identities"]},
		    {"environments", (*r)["environments"]},
		    {"upstreams", (*r)["upstreams"]},
		    {"first_seen", (*r)["first_seen"]},
		    {"summary", r->value("secret_type", "credential") + " " + short_fp(fp) +
		                    " is held by " + std::to_string(r->value("workload_count", 0)) +
		                    " workloads on " + std::to_string(hosts) + " hosts"},
		    {"investigate", "keytrail fleet blast --secret " + fp}};
		if (rule) {
			nlohmann::json tags = nlohmann::json::array();
			for (const char *t : rule->tags)
				tags.push_back(t);
			a["tags"] = std::move(tags);
		}
		alerts.push_back(std::move(a));
	}
	return alerts;
}

void fleet_mark_raised(ClickHouseClient &c, const std::vector<nlohmann::json> &alerts,
                       int64_t now_ns)
{
	std::string db = db_of(c), rows;
	for (const auto &a : alerts)
		rows += nlohmann::json{{"finding_id", a.value("finding_id", "")},
		                       {"rule", a.value("rule", "")},
		                       {"fingerprint", a["secret"].value("fingerprint", "")},
		                       {"raised", now_ns / 1000000000},
		                       {"hosts", a["hosts"].size()}}
		            .dump() +
		        "\n";
	std::string err;
	if (!rows.empty() && !c.insert(db + ".fleet_findings", rows, &err))
		throw Error("clickhouse: record fleet findings: " + err);
}

} // namespace keytrail
