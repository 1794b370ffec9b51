// keytrail-bench-fleet --url URL [--password-file F] [--database kt_bench]:
// the fleet store's goals on a ClickHouse you point it at (its database is
// dropped and made afresh).
//   (1) rows a second one agent's clickhouse output inserts: N synthetic
//       records written to a journal, timed until ClickHouse acknowledged all,
//       with its default batches, once with each record whole in the `record`
//       column and once as configured by default (sightings without it);
//   (2) `fleet shared`, `fleet blast` and `fleet stale` over 10M synthetic sightings from
//       1,000 hosts (generated inside ClickHouse), as inserted and after the
//       credentials' parts are merged.
// Goals: >= 200k rows/s inserted; each query <= 2 s.
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "keytrail/output/clickhouse.h"
#include "keytrail/output/journal.h"
#include "keytrail/tools/fleet.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/files.h"

using namespace keytrail;

namespace
{

// The synthetic sightings start here, 1,000 a second.
constexpr int64_t kSpanStart = 1764547200;

double seconds_since(std::chrono::steady_clock::time_point t)
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// This process's CPU (user + system) so far: while it ships, the output's.
double process_cpu_s()
{
	rusage u{};
	getrusage(RUSAGE_SELF, &u);
	auto s = [](const timeval &t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
	return s(u.ru_utime) + s(u.ru_stime);
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"The fleet store's throughput and query times"};
	std::string url, password_file, database = "kt_bench";
	uint64_t rows = 500000, sightings = 10000000;
	app.add_option("--url", url, "ClickHouse HTTP URL")->required();
	app.add_option("--password-file", password_file, "Its password");
	app.add_option("--database", database, "Scratch database (dropped first)")
	    ->capture_default_str();
	app.add_option("--rows", rows, "Records one agent ships")->capture_default_str();
	app.add_option("--sightings", sightings, "Synthetic sightings for the queries")
	    ->capture_default_str();
	CLI11_PARSE(app, argc, argv);
	spdlog::set_level(spdlog::level::warn);
	try {
		ClickHouseClient c({url, database, "default", password_file, ""});
		c.run("DROP DATABASE IF EXISTS " + database, "drop the scratch database");
		fleet_init(c, {});

		// (1) One agent's journal, shipped.
		char tmpl[] = "/tmp/kt-bench-fleet-XXXXXX";
		std::string dir = mkdtemp(tmpl);
		{
			JournalConfig jc;
			jc.dir = dir + "/journal";
			JournalSink j(jc);
			int64_t now = wall_now_ns();
			for (uint64_t i = 0; i < rows; i++) {
				char fp[33];
				std::snprintf(fp, sizeof(fp), "%032llx",
				              static_cast<unsigned long long>(i % 5000));
				nlohmann::json r = {
				    {"type", i % 3 ? "secret_use" : "secret"},
				    {"time", rfc3339(now + static_cast<int64_t>(i))},
				    {"host", "bench-host"},
				    {"mcp_server", "mcp-server-" + std::to_string(i % 20)},
				    {"secret",
				     {{"fingerprint", fp},
				      {"type", "github_token"},
				      {"source", "env"}}},
				    {"identity",
				     {{"id",
				       "spiffe://keytrail.local/bench/" + std::to_string(i % 20)}}},
				    {"upstream", {{"name", "api.github.com"}, {"port", 443}}}};
				std::string line = r.dump();
				j.write(line, LineMeta{"secret", 6, 0});
			}
			j.flush();
		}
		// Shipped twice: as configured by default (the whole record in the
		// `record` column for alerts, updates, health and ready only), then
		// with every record whole.
		auto ship = [&](const char *what, const std::vector<std::string> &whole) {
			c.run("TRUNCATE TABLE " + database + ".events", "empty events");
			std::filesystem::remove_all(dir + "/state");
			std::filesystem::create_directory(dir + "/state");
			OutputSpec o;
			o.type = "clickhouse";
			o.url = url;
			o.database = database;
			o.password_file = password_file;
			o.batch_interval = std::chrono::milliseconds(10);
			o.record_column = whole;
			auto t0 = std::chrono::steady_clock::now();
			double cpu0 = process_cpu_s();
			{
				ClickHouseShipper s(o, dir + "/journal", dir + "/state",
				                    "bench-host");
				while (s.health()["rows_sent"].get<uint64_t>() < rows) {
					if (seconds_since(t0) > 600)
						throw Error("not all rows shipped in 10 minutes: " +
						            s.health().dump());
					std::this_thread::sleep_for(std::chrono::milliseconds(5));
				}
			}
			double ship_s = seconds_since(t0), ship_cpu = process_cpu_s() - cpu0;
			std::printf(
			    "insert (%s): %llu rows in %.2f s: %.0f rows/s (goal >= 200000); "
			    "the output's CPU %.2f s, %.1f us a row\n",
			    what, static_cast<unsigned long long>(rows), ship_s, rows / ship_s,
			    ship_cpu, ship_cpu * 1e6 / static_cast<double>(rows));
		};
		ship("every record whole", {"secret", "secret_use"});
		ship("default record_column", OutputSpec{}.record_column);
		std::filesystem::remove_all(dir);
		auto size = [&](const char *what) {
			c.run("OPTIMIZE TABLE " + database + ".events FINAL", "merge");
			std::string v =
			    c.run("SELECT sum(rows), sum(data_compressed_bytes), "
			          "sum(data_uncompressed_bytes) FROM system.parts WHERE active "
			          "AND database = '" +
			              database + "' AND table = 'events'",
			          "table size");
			std::printf("%s: rows, compressed bytes, uncompressed bytes: %s", what,
			            v.c_str());
		};
		size("shipped records (default record_column)");

		// (2) 10M sightings from 1,000 hosts: 100 credentials of each host's
		// own (100k), and 1 sighting in 50 of 2,000 shared ones, each on 20
		// hosts.
		for (const char *t : {"events", "credentials"})
			c.run("TRUNCATE TABLE " + database + "." + t, "empty the tables");
		auto t0 = std::chrono::steady_clock::now();
		// In inserts of 1M, as agents' batches arrive (and each inside the
		// client's timeout); the view aggregates each.
		for (uint64_t from = 0; from < sightings; from += 1000000)
			c.run("INSERT INTO " + database +
			          ".events (event_id, host, type, time, time_us, fingerprint, "
			          "secret_type, "
			          "identity, workload, upstream) SELECT "
			          "concat('h', toString(number % 1000), ':', toString(number)), "
			          "concat('host-', toString(number % 1000)), "
			          "if(number % 4 = 0, 'secret', 'secret_use'), "
			          "toDateTime(" +
			          std::to_string(kSpanStart) + " + intDiv(number, 1000)), (" +
			          std::to_string(kSpanStart) +
			          " + intDiv(number, 1000)) * 1000000, "
			          "lower(hex(MD5(if(number % 50 = 0, "
			          "concat('shared-', toString(intDiv(number, 1000) % 2000)), "
			          "concat('own-', toString(number % 1000), '-', "
			          "toString(intDiv(number, 1000) % 100)))))), "
			          "'github_token', "
			          "concat('spiffe://keytrail.local/', toString(number % 1000), "
			          "'/mcp'), "
			          "concat('mcp-server-', toString(number % 7)), 'api.github.com' "
			          "FROM numbers(" +
			          std::to_string(from) + ", " +
			          std::to_string(std::min<uint64_t>(1000000, sightings - from)) +
			          ")",
			      "generate sightings");
		std::printf("generated %llu sightings in %.1f s\n",
		            static_cast<unsigned long long>(sightings), seconds_since(t0));
		size("synthetic sightings (no record column)");
		// As the inserts left the credentials (a part an insert, each with
		// most credentials: the worst case), then merged as the server's
		// background merges make them in time.
		auto queries = [&](const char *when) {
			for (int i = 0; i < 3; i++) {
				t0 = std::chrono::steady_clock::now();
				FleetTable shared = fleet_shared(c, 2);
				double shared_s = seconds_since(t0);
				if (shared.rows.empty())
					throw Error("fleet shared found nothing");
				std::string fp = shared.rows[0]["fingerprint"];
				t0 = std::chrono::steady_clock::now();
				FleetTable blast = fleet_blast(c, fp);
				double blast_s = seconds_since(t0);
				// Unused for the second half of the sightings' span: every
				// credential's last use is compared.
				t0 = std::chrono::steady_clock::now();
				FleetTable stale =
				    fleet_stale(c, std::chrono::hours(1),
				                (kSpanStart + 5000 + 3600) * 1000000000LL);
				double stale_s = seconds_since(t0);
				std::printf(
				    "%s, run %d: fleet shared %.2f s (%zu credentials); "
				    "fleet blast %.2f s (%zu rows); fleet stale %.2f s (%zu "
				    "credentials) (goal <= 2 s each)\n",
				    when, i + 1, shared_s, shared.rows.size(), blast_s,
				    blast.rows.size(), stale_s, stale.rows.size());
			}
		};
		auto credential_rows = [&] {
			return c.run("SELECT count() FROM " + database + ".credentials", "count");
		};
		std::printf("credentials: %s", credential_rows().c_str());
		queries("as inserted");
		c.run("OPTIMIZE TABLE " + database + ".credentials FINAL", "merge");
		std::printf("credentials merged: %s", credential_rows().c_str());
		queries("merged");
		c.run("DROP DATABASE IF EXISTS " + database, "drop the scratch database");
		return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "keytrail-bench-fleet: %s\n", e.what());
		return 1;
	}
}
