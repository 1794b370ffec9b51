// keytrail fleet init|shared|stale|blast|hosts: the fleet's questions, asked
// of the ClickHouse that every agent's clickhouse output ships to
// (docs/fleet.md). The server comes from --url or the config's clickhouse
// output.
#include "keytrail/tools/fleet.h"

#include <spdlog/spdlog.h>

#include <cstdio>

#include "commands.h"
#include "keytrail/output/output.h"
#include "keytrail/output/sink.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"

namespace keytrail::cli
{

namespace
{

struct FleetArgs {
	std::string config = kDefaultConfigPath;
	CLI::Option *config_opt = nullptr;
	std::string url, database, user, password_file, tls_ca;
	std::string format = "table", out;
	// init
	std::string cluster, ttl;
	// shared
	uint32_t min_hosts = 2;
	bool alert = false;
	// stale
	std::string unused = "30d";
	// blast
	std::string secret;
};

// The server: flags first, then the config's (first) clickhouse output.
ClickHouseTarget target_of(const FleetArgs &a, Config *cfg)
{
	*cfg = resolve_config(a.config, a.config_opt && a.config_opt->count() > 0);
	ClickHouseTarget t;
	for (const auto &o : cfg->outputs)
		if (o.type == "clickhouse") {
			t = {o.url, o.database, o.user, o.password_file, o.tls_ca};
			break;
		}
	if (!a.url.empty())
		t.url = a.url;
	if (!a.database.empty())
		t.database = a.database;
	if (!a.user.empty())
		t.user = a.user;
	if (!a.password_file.empty())
		t.password_file = a.password_file;
	if (!a.tls_ca.empty())
		t.tls_ca = a.tls_ca;
	if (t.url.empty())
		throw Error("no ClickHouse: give --url, or a clickhouse output in the config");
	if (!t.url.starts_with("http://") && !t.url.starts_with("https://"))
		throw Error("--url must start with http:// or https://");
	if (!valid_clickhouse_name(t.database))
		throw Error("--database must be a plain name (letters, digits, _)");
	return t;
}

void warn_key_mismatch(ClickHouseClient &c)
{
	auto ids = fleet_key_ids(c);
	if (ids.size() > 1) {
		std::string list;
		for (const auto &id : ids)
			list += (list.empty() ? "" : ", ") + id;
		std::fprintf(stderr,
		             "keytrail fleet: warning: agents report %zu fingerprint keys (%s): "
		             "fingerprints match only between hosts with the same key "
		             "(keytrail fleet hosts says which)\n",
		             ids.size(), list.c_str());
	}
}

// The alerts, through the config's outputs (not its clickhouse ones), or
// stdout when it has none.
void emit_alerts(const Config &cfg, const std::vector<nlohmann::json> &alerts)
{
	Output out;
	for (const auto &o : cfg.outputs)
		if (o.type != "clickhouse") {
			RouteOptions ro;
			ro.format = o.format;
			ro.records = {o.records.begin(), o.records.end()};
			ro.block_when_full = true; // a handful of alerts: none may be dropped
			out.add(make_sink(o), ro);
		}
	if (out.health().empty()) {
		OutputSpec spec;
		spec.type = "stdout";
		out.add(make_sink(spec));
	}
	for (const auto &a : alerts)
		out.emit(a);
	out.close(10000);
	if (out.dropped() || out.errors())
		throw Error("not every fleet alert was written (" + std::to_string(out.dropped()) +
		            " dropped, " + std::to_string(out.errors()) +
		            " errors): they are raised again next time");
}

int fleet(const std::string &what, const FleetArgs &a)
{
	try {
		Config cfg;
		ClickHouseClient c(target_of(a, &cfg));
		if (what == "init") {
			FleetInitOptions o;
			o.cluster = a.cluster;
			if (!a.ttl.empty())
				o.ttl = parse_duration(a.ttl);
			for (const auto &line : fleet_init(c, o))
				std::printf("%s\n", line.c_str());
			return 0;
		}
		uint32_t version = fleet_schema_version(c);
		if (version == 0)
			throw Error("database " + c.target().database +
			            " has no keytrail tables: run keytrail fleet init first");
		if (version < kFleetSchemaVersion)
			throw Error("database " + c.target().database + " has schema version " +
			            std::to_string(version) + ", older than this keytrail's " +
			            std::to_string(kFleetSchemaVersion) +
			            ": run keytrail fleet init (on every shard) to migrate it");
		FleetTable t;
		if (what == "shared")
			t = fleet_shared(c, a.min_hosts);
		else if (what == "stale")
			t = fleet_stale(c, parse_duration(a.unused), wall_now_ns());
		else if (what == "blast")
			t = fleet_blast(c, a.secret);
		else
			t = fleet_hosts(c);
		if (what == "shared" || what == "hosts")
			warn_key_mismatch(c);
		std::string text = a.format == "dot" && what == "blast"
		                       ? fleet_blast_dot(t, a.secret)
		                       : fleet_format(t, a.format);
		if (!write_output(a.out, text, "fleet"))
			return 1;
		if (what == "shared" && a.alert) {
			int64_t now = wall_now_ns();
			auto alerts = fleet_shared_alerts(c, t, now);
			emit_alerts(cfg, alerts);
			fleet_mark_raised(c, alerts, now);
			std::fprintf(stderr, "keytrail fleet: %zu new shared_credential alerts\n",
			             alerts.size());
		}
		return 0;
	} catch (const Error &e) {
		std::fprintf(stderr, "keytrail fleet %s: %s\n", what.c_str(), e.what());
		return 1;
	}
}

} // namespace

Command add_fleet(CLI::App &app)
{
	auto a = std::make_shared<FleetArgs>();
	auto *sub = app.add_subcommand("fleet", "Fleet-wide questions over the agents' "
	                                        "ClickHouse (docs/fleet.md)");
	sub->require_subcommand(1);
	a->config_opt = sub->add_option("-c,--config", a->config,
	                                "Config file (its clickhouse "
	                                "output names the server)");
	sub->add_option("--url", a->url, "ClickHouse HTTP URL (http://host:8123)");
	sub->add_option("--database", a->database, "Database (default keytrail)");
	sub->add_option("--user", a->user, "User (default default)");
	sub->add_option("--password-file", a->password_file, "File holding the password");
	sub->add_option("--tls-ca", a->tls_ca, "CA bundle for an https URL");
	auto fmt = [&](CLI::App *s, const char *choices) {
		s->add_option("-f,--format", a->format, choices)->capture_default_str();
		s->add_option("-o,--output", a->out, "Write to FILE (default stdout)");
	};
	auto *init = sub->add_subcommand("init", "Create or migrate the tables (idempotent)");
	init->add_option("--cluster", a->cluster,
	                 "Local tables here plus Distributed ones over this cluster (run on "
	                 "every shard)");
	init->add_option("--ttl", a->ttl, "Drop rows older than this (90d; ClickHouse 19.6+)");
	auto *shared = sub->add_subcommand("shared", "Credentials held by several workloads "
	                                             "across hosts");
	fmt(shared, "table, json, csv or html");
	shared->add_option("--min-hosts", a->min_hosts, "Hosts a credential must be on")
	    ->capture_default_str()
	    ->check(CLI::Range(1, 100000));
	shared->add_flag("--alert", a->alert,
	                 "Raise shared_credential (scope fleet) once per credential through the "
	                 "config's outputs");
	auto *stale = sub->add_subcommand("stale", "Credentials unused fleet-wide, or found stale");
	fmt(stale, "table, json, csv or html");
	stale->add_option("--unused", a->unused, "Unused for this long")->capture_default_str();
	auto *blast = sub->add_subcommand("blast", "Every host, workload and upstream that held "
	                                           "or used one credential");
	fmt(blast, "table, json, csv, html or dot");
	blast->add_option("--secret", a->secret, "Fingerprint (or 8+ hex digits of it)")
	    ->required();
	auto *hosts = sub->add_subcommand("hosts", "Agents: key id, last health, drops, lag");
	fmt(hosts, "table, json, csv or html");
	// The server flags may follow the question (`fleet shared --url ...`).
	for (CLI::App *s : {init, shared, stale, blast, hosts})
		s->fallthrough();
	return {sub, [a, init, shared, stale, blast] {
		        std::string what = *init     ? "init"
		                           : *shared ? "shared"
		                           : *stale  ? "stale"
		                           : *blast  ? "blast"
		                                     : "hosts";
		        return fleet(what, *a);
	        }};
}

} // namespace keytrail::cli
