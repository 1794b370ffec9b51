// The fleet store on a real ClickHouse (tests/support/clickhouse_server.h):
// agents' journals shipped by the clickhouse output, the fleet queries and
// alert run as the keytrail binary, an outage and a crash between an INSERT
// and its cursor, a wrong password, two shards behind a Distributed table,
// and one real agent end to end. Each test asserts only on what it made.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "keytrail/config/config.h"
#include "keytrail/output/clickhouse.h"
#include "keytrail/output/journal.h"
#include "keytrail/schema/finding.h"
#include "keytrail/secrets/fingerprint.h"
#include "keytrail/tools/fleet.h"
#include "keytrail/util/clock.h"
#include "support/agent_process.h"
#include "support/clickhouse_server.h"

using namespace keytrail;
using namespace keytrail::test;

namespace
{

// Tokens planted on the "hosts": none may reach any table.
const std::string kShared = "ghp_" + std::string("Fl33tSh4redT0kenAbCdEfGhIjKlMnOpQr12");
const std::string kAlone = "glpat-" + std::string("Fl33tAl0neTokenXyZ12");
const std::string kOld = "xoxb-" + std::string("1111-2222-Fl33tOldTokenQwErTy");

std::string run_out(const std::string &args, int *rc = nullptr)
{
	std::string dir = temp_dir();
	int r = run_cmd(std::string(KEYTRAIL_BINARY) + " " + args + " > " + dir + "/out 2> " + dir +
	                "/err");
	if (rc)
		*rc = r;
	else
		EXPECT_EQ(r, 0) << args << ": " << slurp(dir + "/err");
	return slurp(dir + "/out") + slurp(dir + "/err");
}

std::string stdout_of(const std::string &args)
{
	std::string dir = temp_dir();
	int r = run_cmd(std::string(KEYTRAIL_BINARY) + " " + args + " > " + dir + "/out 2> " + dir +
	                "/err");
	EXPECT_EQ(r, 0) << args << ": " << slurp(dir + "/err");
	return slurp(dir + "/out");
}

std::string fleet_key(const std::string &dir)
{
	std::string key = dir + "/fleet.key";
	run_out("key init " + key);
	return key;
}

// One synthetic agent: a state dir, its journal (the real writer) and,
// when started, its clickhouse output (the real shipper).
struct FakeAgent {
	std::string host, state;
	std::unique_ptr<JournalSink> journal;
	std::unique_ptr<ClickHouseShipper> shipper;
	uint64_t shipped_types = 0; // lines of the types the output ships

	FakeAgent(const std::string &dir, std::string h)
	    : host(std::move(h)), state(dir + "/" + host)
	{
		make_private_dirs(state);
		JournalConfig j;
		j.dir = state + "/journal";
		journal = std::make_unique<JournalSink>(j);
	}
	void start_shipping(const ClickHouseServer &ch, const std::string &db,
	                    const std::string &password_file = "", const std::string &url = "",
	                    const std::string &tls_ca = "")
	{
		OutputSpec o;
		o.type = "clickhouse";
		o.url = url.empty() ? ch.url() : url;
		o.tls_ca = tls_ca;
		o.database = db;
		o.password_file = password_file.empty() ? ch.password_file() : password_file;
		o.batch_rows = 500;
		o.batch_interval = std::chrono::milliseconds(50);
		shipper = std::make_unique<ClickHouseShipper>(o, state + "/journal", state, host);
	}
	void write(nlohmann::json r)
	{
		r["host"] = host;
		std::string type = r["type"];
		if (type != "exec")
			shipped_types++;
		std::string line = r.dump();
		ASSERT_TRUE(journal->write(line, LineMeta{type, 6, 0}));
		ASSERT_TRUE(journal->flush());
	}
	nlohmann::json secret(const std::string &fp, const std::string &type,
	                      const std::string &server, int64_t t_ns, const std::string &env)
	{
		nlohmann::json r = {
		    {"type", "secret"},
		    {"time", rfc3339(t_ns)},
		    {"mcp_server", server},
		    {"secret", {{"fingerprint", fp}, {"type", type}, {"source", "env"}}},
		    {"identity",
		     {{"id", "spiffe://keytrail.local/" + host + "/" + server + "/root"},
		      {"selectors", {{"env", env}}}}}};
		write(r);
		return r;
	}
	void use(const std::string &fp, const std::string &server, const std::string &upstream,
	         int64_t t_ns)
	{
		write({{"type", "secret_use"},
		       {"time", rfc3339(t_ns)},
		       {"secret", {{"fingerprint", fp}, {"type", "github_token"}}},
		       {"identity",
		        {{"id", "spiffe://keytrail.local/" + host + "/" + server + "/root"}}},
		       {"process", {{"mcp_server", server}}},
		       {"upstream", {{"name", upstream}, {"port", 443}}}});
	}
	void stale_finding(const std::string &fp, const std::string &reason, int64_t t_ns)
	{
		write({{"type", "alert"},
		       {"time", rfc3339(t_ns)},
		       {"rule", "stale_credential"},
		       {"reason", reason},
		       {"finding_id", "stale-" + fp},
		       {"secret", {{"fingerprint", fp}, {"type", "gitlab_pat"}}}});
	}
	void health(const std::string &key_id, int64_t t_ns)
	{
		write({{"type", "health"},
		       {"time", rfc3339(t_ns)},
		       {"key_id", key_id},
		       {"kernel", {{"drops_by_type", {{"exec", 0}, {"open", 2}}}}}});
	}
	void observation(int64_t t_ns) // a type the output does not take
	{
		write({{"type", "exec"}, {"time", rfc3339(t_ns)}, {"pid", 1}});
	}
};

template <typename F> bool eventually(F f, int ms = 30000)
{
	for (int i = 0; i < ms / 50; i++) {
		if (f())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	return f();
}

std::string fleet_args(const ClickHouseServer &ch, const std::string &db)
{
	return "--url " + ch.url() + " --database " + db + " --password-file " + ch.password_file();
}

uint64_t rows_of(const ClickHouseServer &ch, const std::string &db, const std::string &host)
{
	return ch.count("SELECT count() FROM " + db + ".events FINAL WHERE host = '" + host + "'");
}

// Every table of db as text: no planted token may be in it.
std::string dump_database(const ClickHouseServer &ch, const std::string &db)
{
	std::string all;
	std::string tables =
	    ch.query("SELECT name FROM system.tables WHERE database = '" + db + "' ORDER BY name");
	std::istringstream in(tables);
	std::string t;
	while (std::getline(in, t))
		all += ch.query("SELECT * FROM " + db + "." + t + " FORMAT TSV");
	return all;
}

// The tables keytrail's schema version 1 made, as it made them.
void create_version_one(const ClickHouseServer &ch, const std::string &db)
{
	ch.query("CREATE DATABASE " + db);
	ch.query("CREATE TABLE " + db +
	         ".schema_version (version UInt32, applied DateTime, note String) "
	         "ENGINE = MergeTree() ORDER BY version");
	ch.query("CREATE TABLE " + db +
	         ".events (event_id String, host String, type String, time DateTime, time_us "
	         "UInt64, fingerprint String, secret_type String, source String, inventory_id "
	         "String, identity String, environment String, workload String, upstream "
	         "String, rule String, severity String, finding_id String, reason String, key_id "
	         "String, drops UInt64, lag_seconds Float64, record String) ENGINE = "
	         "ReplacingMergeTree() PARTITION BY toYYYYMM(time) ORDER BY (type, fingerprint, "
	         "host, event_id)");
	ch.query("CREATE TABLE " + db +
	         ".fleet_findings (finding_id String, rule String, fingerprint String, raised "
	         "DateTime, hosts UInt32) ENGINE = ReplacingMergeTree() ORDER BY finding_id");
	ch.query("INSERT INTO " + db +
	         ".schema_version VALUES (1, now(), 'events, fleet_findings')");
}

} // namespace

TEST(Fleet, KeyInitIsPrivateNeverOverwritesAndItsIdMatchesTheAgents)
{
	std::string dir = temp_dir();
	std::string key = dir + "/fleet.key";
	std::string id = stdout_of("key init " + key);
	struct stat st;
	ASSERT_EQ(stat(key.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
	EXPECT_EQ(st.st_size, 32);
	Fingerprinter fp(load_or_create_key(key, false));
	EXPECT_EQ(id, fp.key_id() + "\n");
	EXPECT_EQ(stdout_of("key id " + key), id);
	int rc = 0;
	std::string again = run_out("key init " + key, &rc);
	EXPECT_NE(rc, 0);
	EXPECT_NE(again.find("never overwritten"), std::string::npos) << again;
	Fingerprinter same(load_or_create_key(key, false)); // unchanged
	EXPECT_EQ(same.key_id(), fp.key_id());
}

TEST(Fleet, ClickHouseOutputRefusesThePerHostKey)
{
	std::string yaml = "outputs:\n  - type: clickhouse\n    url: http://127.0.0.1:8123\n";
	try {
		parse_config(yaml, "fleet.yaml");
		FAIL() << "a clickhouse output without a fleet key was accepted";
	} catch (const ConfigError &e) {
		EXPECT_NE(std::string(e.what()).find("fleet.yaml:2: a clickhouse output needs "
		                                     "fleet-keyed fingerprints"),
		          std::string::npos)
		    << e.what();
	}
	EXPECT_NO_THROW(parse_config(yaml + "    allow_host_key: true\n", "fleet.yaml"));
	EXPECT_NO_THROW(parse_config(yaml + "secrets:\n  fingerprint_key_file: /etc/kt/fleet.key\n",
	                             "fleet.yaml"));
	EXPECT_THROW(parse_config(yaml + "    allow_host_key: true\njournal:\n  enabled: false\n",
	                          "fleet.yaml"),
	             ConfigError);
}

TEST(Fleet, ThreeAgentsSharedStaleBlastHostsAndOneFleetAlert)
{
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "fleet-test-pw");
	ch.start();
	const std::string db = "kt_three";
	std::string init = stdout_of("fleet init " + fleet_args(ch, db));
	EXPECT_NE(init.find("schema version 1"), std::string::npos) << init;
	// Idempotent.
	EXPECT_NE(stdout_of("fleet init " + fleet_args(ch, db)).find("is current"),
	          std::string::npos);

	Fingerprinter key(load_or_create_key(fleet_key(dir), false));
	std::string shared = key(kShared), alone = key(kAlone), old = key(kOld);
	int64_t now = wall_now_ns(), day = 86400LL * 1000000000;
	FakeAgent a(dir, "fleet-host-a"), b(dir, "fleet-host-b"), c(dir, "fleet-host-c");
	for (auto *ag : {&a, &b, &c})
		ag->start_shipping(ch, db);
	a.health(key.key_id(), now);
	b.health(key.key_id(), now);
	c.health(key.key_id(), now);
	a.secret(shared, "github_token", "mcp-server-github", now - 5 * day, "prod");
	a.use(shared, "mcp-server-github", "api.github.com", now - day);
	a.observation(now);
	b.secret(shared, "github_token", "mcp-server-issues", now - 2 * day, "dev");
	b.use(shared, "mcp-server-issues", "api.github.com", now - 3600LL * 1000000000);
	c.secret(alone, "gitlab_pat", "mcp-server-gitlab", now - day, "prod");
	c.use(alone, "mcp-server-gitlab", "gitlab.example.test", now);
	c.secret(old, "slack_bot_token", "mcp-server-slack", now - 40 * day, "prod");
	c.stale_finding(alone, "expired 2026-11-01", now);
	// A credential this fleet knows only from a finding (its sightings were
	// not shipped, or their month was dropped).
	const std::string finding_only = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
	c.stale_finding(finding_only, "expired 2026-10-01", now);
	for (auto *ag : {&a, &b, &c})
		ASSERT_TRUE(eventually([&] {
			return rows_of(ch, db, ag->host) == ag->shipped_types;
		})) << ag->host
		    << ": " << rows_of(ch, db, ag->host) << " of " << ag->shipped_types << "; "
		    << ag->shipper->health().dump();

	// shared: the token on two hosts, with both; the lone one not.
	auto rows =
	    nlohmann::json::parse(stdout_of("fleet shared --format json " + fleet_args(ch, db)));
	bool found = false;
	for (const auto &r : rows) {
		EXPECT_NE(r["fingerprint"], alone);
		if (r["fingerprint"] != shared)
			continue;
		found = true;
		EXPECT_EQ(r["hosts"], nlohmann::json({"fleet-host-a", "fleet-host-b"}));
		EXPECT_EQ(r["host_count"], 2);
		EXPECT_EQ(r["workloads"],
		          nlohmann::json({"mcp-server-github", "mcp-server-issues"}));
		EXPECT_EQ(r["environments"], nlohmann::json({"dev", "prod"}));
		EXPECT_EQ(r["upstreams"], nlohmann::json({"api.github.com"}));
		EXPECT_EQ(r["first_use"], rfc3339((now - day) / 1000 * 1000));
	}
	EXPECT_TRUE(found) << rows.dump();
	std::string csv = stdout_of("fleet shared --format csv " + fleet_args(ch, db));
	EXPECT_NE(csv.find(shared + ",github_token,2,2,\"fleet-host-a, fleet-host-b\""),
	          std::string::npos)
	    << csv;

	// --alert: raised once, with the same finding id, through the outputs.
	std::ofstream(dir + "/fleet.yaml")
	    << "outputs:\n  - type: file\n    path: " << dir << "/alerts.jsonl\n";
	for (int i = 0; i < 2; i++)
		stdout_of("fleet shared --alert -c " + dir + "/fleet.yaml " + fleet_args(ch, db));
	int raised = 0;
	for (const auto &r : records(dir + "/alerts.jsonl")) {
		if (r["secret"]["fingerprint"] != shared)
			continue;
		raised++;
		EXPECT_EQ(r["rule"], "shared_credential");
		EXPECT_EQ(r["scope"], "fleet");
		EXPECT_EQ(r["finding_id"], finding_id("fleet", "shared_credential", shared));
		EXPECT_EQ(r["hosts"], nlohmann::json({"fleet-host-a", "fleet-host-b"}));
	}
	EXPECT_EQ(raised, 1);

	// stale: the slack token, unseen for 40 days, and the one an agent found
	// expired; not the shared one in use.
	auto stale = nlohmann::json::parse(
	    stdout_of("fleet stale --unused 30d --format json " + fleet_args(ch, db)));
	std::map<std::string, nlohmann::json> stale_rows;
	for (const auto &r : stale)
		stale_rows[r["fingerprint"]] = r;
	ASSERT_TRUE(stale_rows.count(old)) << stale.dump();
	EXPECT_EQ(stale_rows[old]["hosts"], nlohmann::json({"fleet-host-c"}));
	EXPECT_EQ(stale_rows[old]["workloads"], nlohmann::json({"mcp-server-slack"}));
	EXPECT_EQ(stale_rows[old]["last_seen"], rfc3339((now - 40 * day) / 1000 * 1000));
	EXPECT_EQ(stale_rows[old]["last_use"], "");
	EXPECT_EQ(stale_rows[old]["reasons"], nlohmann::json::array());
	ASSERT_TRUE(stale_rows.count(alone)) << stale.dump();
	EXPECT_EQ(stale_rows[alone]["reasons"], nlohmann::json({"expired 2026-11-01"}));
	EXPECT_EQ(stale_rows[alone]["last_use"], rfc3339(now / 1000 * 1000));
	EXPECT_FALSE(stale_rows.count(shared));
	ASSERT_TRUE(stale_rows.count(finding_only)) << stale.dump();
	EXPECT_EQ(stale_rows[finding_only]["hosts"], nlohmann::json({"fleet-host-c"}));
	EXPECT_EQ(stale_rows[finding_only]["secret_type"], "gitlab_pat");
	EXPECT_EQ(stale_rows[finding_only]["reasons"], nlohmann::json({"expired 2026-10-01"}));

	// blast: every holder and use, in time order; DOT names both hosts.
	auto blast = nlohmann::json::parse(
	    stdout_of("fleet blast --secret " + shared + " --format json " + fleet_args(ch, db)));
	ASSERT_EQ(blast.size(), 4u) << blast.dump();
	std::vector<std::string> order;
	for (const auto &r : blast)
		order.push_back(r["host"].get<std::string>() + "/" + r["type"].get<std::string>());
	EXPECT_EQ(order,
	          (std::vector<std::string>{"fleet-host-a/secret", "fleet-host-b/secret",
	                                    "fleet-host-a/secret_use", "fleet-host-b/secret_use"}));
	std::string dot = stdout_of("fleet blast --secret " + shared.substr(0, 12) + " -f dot " +
	                            fleet_args(ch, db));
	EXPECT_NE(dot.find("\"host:fleet-host-a\""), std::string::npos) << dot;
	EXPECT_NE(dot.find("\"host:fleet-host-b\""), std::string::npos) << dot;
	EXPECT_NE(dot.find("api.github.com"), std::string::npos) << dot;

	// hosts: each with the one key id and its drops.
	auto hosts = nlohmann::json::parse(stdout_of("fleet hosts -f json " + fleet_args(ch, db)));
	int mine = 0;
	for (const auto &h : hosts)
		if (h["host"].get<std::string>().starts_with("fleet-host-")) {
			mine++;
			EXPECT_EQ(h["key_id"], key.key_id());
			EXPECT_EQ(h["drops"], 2);
		}
	EXPECT_EQ(mine, 3);
	// A host with another key: fleet says so.
	a.health("0000beef", now + 1000);
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, a.host) == a.shipped_types; }));
	EXPECT_NE(run_out("fleet hosts " + fleet_args(ch, db)).find("2 fingerprint keys"),
	          std::string::npos);

	// No planted token anywhere in ClickHouse.
	std::string everything = dump_database(ch, db);
	EXPECT_NE(everything.find(shared), std::string::npos); // the dump is real
	for (const auto &t : {kShared, kAlone, kOld})
		EXPECT_EQ(everything.find(t), std::string::npos) << "a planted token is in " << db;
	for (auto *ag : {&a, &b, &c}) {
		uint64_t skipped = ag == &a ? 1 : 0; // its exec record
		EXPECT_TRUE(eventually([&] {
			auto h = ag->shipper->health();
			return h["healthy"].get<bool>() && h["records_skipped"] == skipped;
		})) << ag->shipper->health();
		struct stat st;
		ASSERT_EQ(
		    stat(ClickHouseShipper::cursor_path(ag->state, ch.url(), db).c_str(), &st), 0);
		EXPECT_EQ(st.st_mode & 0777, 0600u);
	}
}

TEST(Fleet, OutageAndCrashBetweenInsertAndCursorShipEveryRowExactlyOnce)
{
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "outage-pw");
	ch.start();
	const std::string db = "kt_outage";
	stdout_of("fleet init " + fleet_args(ch, db));
	FakeAgent a(dir, "outage-host");
	a.start_shipping(ch, db);
	int64_t now = wall_now_ns();
	for (int i = 0; i < 200; i++)
		a.secret("aa" + std::to_string(100000 + i), "github_token", "mcp-server-x", now + i,
		         "prod");
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, a.host) == a.shipped_types; }));

	// The server goes away for 30 s while records keep coming: 1,000 of
	// them, 10 every 300 ms.
	ch.stop();
	for (int i = 200; i < 1200; i++) {
		a.secret("aa" + std::to_string(100000 + i), "github_token", "mcp-server-x", now + i,
		         "prod");
		if (i % 10 == 9)
			std::this_thread::sleep_for(std::chrono::milliseconds(300));
		if (i == 300) {
			ASSERT_TRUE(eventually(
			    [&] { return !a.shipper->health()["healthy"].get<bool>(); }));
		}
	}
	auto down = a.shipper->health();
	EXPECT_FALSE(down["healthy"].get<bool>());
	EXPECT_GT(down["spool_bytes"].get<uint64_t>(), 0u);
	EXPECT_GT(down["lag_seconds"].get<double>(), 25.0);
	EXPECT_FALSE(down["last_error"].get<std::string>().empty());
	ch.start();
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, a.host) == a.shipped_types; }, 60000))
	    << rows_of(ch, db, a.host) << " of " << a.shipped_types << " " << a.shipper->health();
	// The shipper takes the acknowledgement a moment after the server has
	// the rows.
	ASSERT_TRUE(eventually([&] {
		auto h = a.shipper->health();
		return h["healthy"].get<bool>() && h["lag_seconds"].get<double>() == 0.0;
	})) << a.shipper->health();
	auto up = a.shipper->health();
	EXPECT_GT(up["retries"].get<uint64_t>(), 0u);
	// Each event once: no id twice even before any merge.
	EXPECT_EQ(ch.count("SELECT count() FROM " + db + ".events WHERE host = '" + a.host + "'"),
	          a.shipped_types);

	// A crash after ClickHouse took a batch but before the cursor was
	// written: the next start sends those rows again.
	std::string cursor = ClickHouseShipper::cursor_path(a.state, ch.url(), db);
	std::string before = slurp(cursor);
	for (int i = 1200; i < 1500; i++)
		a.secret("aa" + std::to_string(100000 + i), "github_token", "mcp-server-x", now + i,
		         "prod");
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, a.host) == a.shipped_types; }));
	a.shipper.reset();
	std::ofstream(cursor, std::ios::trunc) << before; // as if never written
	a.start_shipping(ch, db);
	ASSERT_TRUE(eventually([&] { return a.shipper->health()["rows_sent"] == 300; }))
	    << a.shipper->health();
	// Sent twice, counted once: FINAL, uniqExact and every fleet query.
	EXPECT_EQ(rows_of(ch, db, a.host), a.shipped_types);
	EXPECT_EQ(ch.count("SELECT uniqExact(event_id) FROM " + db + ".events WHERE host = '" +
	                   a.host + "'"),
	          a.shipped_types);
	auto blast = nlohmann::json::parse(
	    stdout_of("fleet blast --secret aa101300 -f json " + fleet_args(ch, db)));
	EXPECT_EQ(blast.size(), 1u) << blast.dump();
	ch.query("OPTIMIZE TABLE " + db + ".events FINAL");
	EXPECT_EQ(ch.count("SELECT count() FROM " + db + ".events WHERE host = '" + a.host + "'"),
	          a.shipped_types);
}

TEST(Fleet, WrongPasswordIsUnhealthyWithTheReasonAndNeverThePassword)
{
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "right-pw");
	ch.start();
	const std::string db = "kt_pw";
	stdout_of("fleet init " + fleet_args(ch, db));
	std::string bad = dir + "/bad.pw";
	std::ofstream(bad) << "Wr0ngPassw0rdValue\n";
	chmod(bad.c_str(), 0600);
	FakeAgent a(dir, "pw-host");
	a.start_shipping(ch, db, bad);
	a.secret("bb00112233", "github_token", "mcp-server-x", wall_now_ns(), "prod");
	ASSERT_TRUE(eventually([&] { return !a.shipper->health()["healthy"].get<bool>(); }));
	auto h = a.shipper->health();
	std::string why = h["last_error"];
	EXPECT_NE(why.find("HTTP"), std::string::npos) << why;
	EXPECT_NE(why.find("assword"), std::string::npos) << why; // "Wrong password ..."
	EXPECT_EQ(h.dump().find("Wr0ngPassw0rdValue"), std::string::npos);
	// The journal (the spool, and every other output's source) is untouched.
	a.secret("bb00112244", "github_token", "mcp-server-x", wall_now_ns(), "prod");
	uint64_t lines = 0;
	read_journal(a.state + "/journal", [&](nlohmann::json &&) { return ++lines > 0; });
	EXPECT_EQ(lines, 2u);
	EXPECT_EQ(rows_of(ch, db, a.host), 0u);
	// A stop during a retry's backoff (3.2 s after four retries) ends at
	// its drain deadline, not at the end of the backoff.
	ASSERT_TRUE(
	    eventually([&] { return a.shipper->health()["retries"].get<uint64_t>() >= 4; }));
	auto t0 = std::chrono::steady_clock::now();
	a.shipper->stop(std::chrono::milliseconds(300));
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	EXPECT_LT(secs, 2.0) << "stop waited out the backoff";
	// A password file others can read is refused outright.
	chmod(bad.c_str(), 0644);
	OutputSpec o;
	o.type = "clickhouse";
	o.url = ch.url();
	o.password_file = bad;
	EXPECT_THROW(ClickHouseShipper(o, a.state + "/journal", a.state, a.host), Error);
}

// An https server with a private CA: trusted through tls_ca (the output's
// and the fleet command's), refused without it, with curl's reason in the
// output's health and the command's error.
TEST(Fleet, TlsCaTrustsAPrivateCertificateAndWithoutItTheErrorSaysWhy)
{
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "tls-pw");
	ch.enable_https();
	ch.start();
	const std::string db = "kt_tls";
	std::string args = "--url " + ch.https_url() + " --database " + db + " --password-file " +
	                   ch.password_file();
	EXPECT_NE(stdout_of("fleet init --tls-ca " + ch.ca_file() + " " + args).find("schema"),
	          std::string::npos);
	int rc = 0;
	std::string refused = run_out("fleet hosts " + args, &rc);
	EXPECT_NE(rc, 0);
	EXPECT_NE(refused.find("certificate"), std::string::npos) << refused;

	FakeAgent trusted(dir, "tls-host-a"), untrusted(dir, "tls-host-b");
	trusted.start_shipping(ch, db, "", ch.https_url(), ch.ca_file());
	untrusted.start_shipping(ch, db, "", ch.https_url());
	int64_t now = wall_now_ns();
	trusted.secret("ee000001", "github_token", "mcp-a", now, "prod");
	untrusted.secret("ee000001", "github_token", "mcp-b", now, "prod");
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, trusted.host) == 1; }))
	    << trusted.shipper->health();
	EXPECT_TRUE(trusted.shipper->health()["healthy"].get<bool>());
	ASSERT_TRUE(
	    eventually([&] { return !untrusted.shipper->health()["healthy"].get<bool>(); }));
	std::string why = untrusted.shipper->health()["last_error"];
	EXPECT_NE(why.find("certificate"), std::string::npos) << why;
	EXPECT_EQ(rows_of(ch, db, untrusted.host), 0u);
	EXPECT_NE(stdout_of("fleet hosts --tls-ca " + ch.ca_file() + " " + args).find("agents"),
	          std::string::npos);
}

TEST(Fleet, TwoShardsBehindADistributedTable)
{
	std::string dir = temp_dir();
	ClickHouseServer s1(dir + "/ch1", "shard-pw"), s2(dir + "/ch2", "shard-pw");
	for (auto *s : {&s1, &s2})
		s->set_cluster("kt_fleet", {s1.tcp_port(), s2.tcp_port()});
	s1.start();
	s2.start();
	const std::string db = "kt_shards";
	for (auto *s : {&s1, &s2})
		EXPECT_NE(stdout_of("fleet init --cluster kt_fleet " + fleet_args(*s, db))
		              .find("Distributed over kt_fleet"),
		          std::string::npos);
	FakeAgent a(dir, "shard-host-a"), b(dir, "shard-host-b");
	a.start_shipping(s1, db);
	b.start_shipping(s2, db);
	int64_t now = wall_now_ns();
	for (int i = 0; i < 300; i++) {
		a.secret("cc" + std::to_string(100000 + i), "github_token", "mcp-server-a", now + i,
		         "prod");
		b.secret("cc" + std::to_string(100000 + i), "github_token", "mcp-server-b", now + i,
		         "prod");
	}
	for (auto *ag : {&a, &b})
		ASSERT_TRUE(eventually([&] {
			return rows_of(s1, db, ag->host) == ag->shipped_types;
		})) << ag->shipper->health();
	// Both shards hold part of it; the Distributed table sees all of it.
	for (auto *s : {&s1, &s2})
		EXPECT_GT(s->count("SELECT count() FROM " + db + ".events_local"), 0u);
	EXPECT_EQ(s1.count("SELECT count() FROM " + db + ".events"),
	          s2.count("SELECT count() FROM " + db + ".events"));
	auto rows =
	    nlohmann::json::parse(stdout_of("fleet shared --format json " + fleet_args(s2, db)));
	size_t mine = 0;
	for (const auto &r : rows)
		if (r["fingerprint"].get<std::string>().starts_with("cc1")) {
			mine++;
			EXPECT_EQ(r["hosts"], nlohmann::json({"shard-host-a", "shard-host-b"}));
		}
	EXPECT_EQ(mine, 300u);
}

// A database made by a version-1 keytrail (events only) with rows in it:
// the queries ask for a migration; `fleet init` adds the credentials the
// queries read, aggregated from the rows already there, and keeps them as
// rows arrive.
TEST(Fleet, InitMigratesAVersionOneDatabaseWithItsRows)
{
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "migrate-pw");
	ch.start();
	const std::string db = "kt_v1";
	create_version_one(ch, db);
	int64_t now_s = wall_now_ns() / 1000000000;
	auto row = [&](const std::string &id, const std::string &host, const std::string &type,
	               const std::string &fp, const std::string &workload, int64_t t) {
		return "('" + id + "', '" + host + "', '" + type + "', " + std::to_string(t) +
		       ", " + std::to_string(t * 1000000) + ", '" + fp + "', 'github_token', '" +
		       workload + "', '" + (type == "secret_use" ? "api.github.com" : "") + "')";
	};
	// The same row twice (a retried batch): it must count once.
	ch.query("INSERT INTO " + db +
	         ".events (event_id, host, type, time, time_us, fingerprint, secret_type, "
	         "workload, upstream) VALUES " +
	         row("old-a:1", "old-host-a", "secret", "dd000001", "mcp-a", now_s - 100) + ", " +
	         row("old-a:1", "old-host-a", "secret", "dd000001", "mcp-a", now_s - 100) + ", " +
	         row("old-b:1", "old-host-b", "secret_use", "dd000001", "mcp-b", now_s - 50) +
	         ", " + row("old-a:2", "old-host-a", "secret", "dd000002", "mcp-a", now_s - 10));

	int rc = 0;
	std::string out = run_out("fleet shared " + fleet_args(ch, db), &rc);
	EXPECT_NE(rc, 0);
	EXPECT_NE(out.find("schema version 1, older than this keytrail's 3: run keytrail fleet "
	                   "init"),
	          std::string::npos)
	    << out;
	std::string init = stdout_of("fleet init " + fleet_args(ch, db));
	EXPECT_EQ(init.find("schema version 1:"), std::string::npos) << init;
	EXPECT_NE(init.find("schema version 3: " + db + ".credentials"), std::string::npos) << init;
	EXPECT_NE(stdout_of("fleet init " + fleet_args(ch, db)).find("schema version 3 is current"),
	          std::string::npos);

	auto shared = [&] {
		return nlohmann::json::parse(
		    stdout_of("fleet shared --format json " + fleet_args(ch, db)));
	};
	auto rows = shared();
	ASSERT_EQ(rows.size(), 1u) << rows.dump();
	EXPECT_EQ(rows[0]["fingerprint"], "dd000001");
	EXPECT_EQ(rows[0]["hosts"], nlohmann::json({"old-host-a", "old-host-b"}));
	EXPECT_EQ(rows[0]["workload_count"], 2);
	EXPECT_EQ(rows[0]["upstreams"], nlohmann::json({"api.github.com"}));
	EXPECT_EQ(rows[0]["first_seen"], rfc3339((now_s - 100) * 1000000000));
	EXPECT_EQ(rows[0]["last_use"], rfc3339((now_s - 50) * 1000000000));

	// Rows shipped after the migration reach the credentials through the view.
	FakeAgent c(dir, "new-host-c");
	c.start_shipping(ch, db);
	c.secret("dd000002", "github_token", "mcp-c", wall_now_ns(), "prod");
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, c.host) == c.shipped_types; }))
	    << c.shipper->health();
	rows = shared();
	ASSERT_EQ(rows.size(), 2u) << rows.dump();
	EXPECT_EQ(rows[1]["fingerprint"], "dd000002");
	EXPECT_EQ(rows[1]["hosts"], nlohmann::json({"new-host-c", "old-host-a"}));
	EXPECT_EQ(rows[1]["environments"], nlohmann::json({"prod"}));
}

// A database at version 2 (credentials without their last sighting or stale
// reasons, kept by credentials_mv) is migrated in place: its rows keep their
// states and gain the new ones, and later rows reach them through the new
// views. `fleet stale` then reads the credentials, not the events.
TEST(Fleet, InitMigratesAVersionTwoDatabaseInPlace)
{
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "migrate2-pw");
	ch.start();
	const std::string db = "kt_v2";
	create_version_one(ch, db);
	ch.query("CREATE TABLE " + db +
	         ".credentials (month Date, fingerprint String, type_any AggregateFunction(any, "
	         "String), host_set AggregateFunction(groupUniqArray, String), holder_count "
	         "AggregateFunction(uniqExact, String, String, String), workload_set "
	         "AggregateFunction(groupUniqArray, String), identity_set "
	         "AggregateFunction(groupUniqArray, String), environment_set "
	         "AggregateFunction(groupUniqArray, String), upstream_set "
	         "AggregateFunction(groupUniqArray, String), seen_min AggregateFunction(min, "
	         "UInt64), use_min AggregateFunction(minIf, UInt64, UInt8), use_max "
	         "AggregateFunction(maxIf, UInt64, UInt8)) ENGINE = AggregatingMergeTree() "
	         "PARTITION BY month ORDER BY fingerprint");
	ch.query("CREATE MATERIALIZED VIEW " + db + ".credentials_mv TO " + db +
	         ".credentials AS SELECT toStartOfMonth(time) AS month, fingerprint, "
	         "anyState(secret_type) AS type_any, groupUniqArrayState(host) AS host_set, "
	         "uniqExactState(host, identity, workload) AS holder_count, "
	         "groupUniqArrayState(workload) AS workload_set, groupUniqArrayState(identity) AS "
	         "identity_set, groupUniqArrayState(environment) AS environment_set, "
	         "groupUniqArrayState(upstream) AS upstream_set, minState(time_us) AS seen_min, "
	         "minIfState(time_us, type = 'secret_use') AS use_min, maxIfState(time_us, type = "
	         "'secret_use') AS use_max FROM " +
	         db +
	         ".events WHERE type IN ('secret', 'secret_use') AND fingerprint != '' GROUP BY "
	         "month, fingerprint");
	ch.query("INSERT INTO " + db + ".schema_version VALUES (2, now(), 'credentials')");
	int64_t now_s = wall_now_ns() / 1000000000, day = 86400;
	auto row = [&](const std::string &id, const std::string &host, const std::string &type,
	               const std::string &fp, int64_t t, const std::string &rule = "",
	               const std::string &reason = "") {
		return "('" + id + "', '" + host + "', '" + type + "', " + std::to_string(t) +
		       ", " + std::to_string(t * 1000000) + ", '" + fp +
		       "', 'github_token', 'mcp-" + host.substr(host.size() - 1) + "', '" + rule +
		       "', '" + reason + "')";
	};
	// Through version 2's view: ee01 on two hosts 40 days ago, ee02 seen
	// then and found overdue, ee03 in use.
	ch.query("INSERT INTO " + db +
	         ".events (event_id, host, type, time, time_us, fingerprint, secret_type, "
	         "workload, rule, reason) VALUES " +
	         row("v2-a:1", "v2-host-a", "secret", "ee000001", now_s - 40 * day) + ", " +
	         row("v2-b:1", "v2-host-b", "secret", "ee000001", now_s - 41 * day) + ", " +
	         row("v2-a:2", "v2-host-a", "secret", "ee000002", now_s - 40 * day) + ", " +
	         row("v2-a:3", "v2-host-a", "alert", "ee000002", now_s - 39 * day,
	             "stale_credential", "not rotated for 400 days") +
	         ", " + row("v2-b:2", "v2-host-b", "secret_use", "ee000003", now_s - 10));

	int rc = 0;
	std::string out = run_out("fleet stale " + fleet_args(ch, db), &rc);
	EXPECT_NE(rc, 0);
	EXPECT_NE(out.find("schema version 2, older than this keytrail's 3"), std::string::npos)
	    << out;
	std::string init = stdout_of("fleet init " + fleet_args(ch, db));
	EXPECT_NE(init.find("schema version 3: " + db + ".credentials kept by"), std::string::npos)
	    << init;
	EXPECT_NE(stdout_of("fleet init " + fleet_args(ch, db)).find("schema version 3 is current"),
	          std::string::npos);
	EXPECT_EQ(ch.count("SELECT count() FROM system.tables WHERE database = '" + db +
	                   "' AND name = 'credentials_mv'"),
	          0u);

	auto stale = [&] {
		std::map<std::string, nlohmann::json> by_fp;
		for (const auto &r : nlohmann::json::parse(
		         stdout_of("fleet stale --unused 30d --format json " + fleet_args(ch, db))))
			by_fp[r["fingerprint"]] = r;
		return by_fp;
	};
	auto rows = stale();
	ASSERT_TRUE(rows.count("ee000001")) << init;
	EXPECT_EQ(rows["ee000001"]["hosts"], nlohmann::json({"v2-host-a", "v2-host-b"}));
	EXPECT_EQ(rows["ee000001"]["first_seen"], rfc3339((now_s - 41 * day) * 1000000000));
	EXPECT_EQ(rows["ee000001"]["last_seen"], rfc3339((now_s - 40 * day) * 1000000000));
	EXPECT_EQ(rows["ee000001"]["reasons"], nlohmann::json::array());
	ASSERT_TRUE(rows.count("ee000002"));
	EXPECT_EQ(rows["ee000002"]["reasons"], nlohmann::json({"not rotated for 400 days"}));
	EXPECT_FALSE(rows.count("ee000003"));

	// Rows shipped after the migration reach the new states through the views.
	FakeAgent c(dir, "v2-host-c");
	c.start_shipping(ch, db);
	c.secret("ee000001", "github_token", "mcp-c", wall_now_ns(), "prod");
	c.stale_finding("ee000003", "expired 2026-11-30", wall_now_ns());
	ASSERT_TRUE(eventually([&] { return rows_of(ch, db, c.host) == c.shipped_types; }))
	    << c.shipper->health();
	rows = stale();
	EXPECT_FALSE(rows.count("ee000001"));
	ASSERT_TRUE(rows.count("ee000003"));
	EXPECT_EQ(rows["ee000003"]["reasons"], nlohmann::json({"expired 2026-11-30"}));
	auto shared =
	    nlohmann::json::parse(stdout_of("fleet shared --format json " + fleet_args(ch, db)));
	ASSERT_EQ(shared.size(), 1u) << shared.dump();
	EXPECT_EQ(shared[0]["hosts"], nlohmann::json({"v2-host-a", "v2-host-b", "v2-host-c"}));
}

// One real agent: the probes see an MCP server start with a token; the agent's
// clickhouse output ships the sighting and its health under its host name.
TEST(Fleet, RealAgentShipsItsSightingsUnderItsHostName)
{
	ASSERT_EQ(geteuid(), 0u) << "the agent needs root (it loads eBPF programs)";
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "agent-pw");
	ch.start();
	const std::string db = "kt_agent";
	stdout_of("fleet init " + fleet_args(ch, db));
	std::string key = fleet_key(dir);
	std::string token = "glpat-" + std::string("Fl33tRealAgentTok3nZ9");
	// Named like an MCP server: tracked at exec, its environment read.
	std::string server = dir + "/mcp-server-fleettest";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.3\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  host_name: fleet-real-agent\n"
	    << "  health_interval: 500ms\n  connect_hold: 100ms\n"
	    << "secrets:\n  fingerprint_key_file: " << key << "\n"
	    << "outputs:\n  - type: file\n    path: " << dir << "/out.jsonl\n"
	    << "  - type: clickhouse\n    url: " << ch.url() << "\n    database: " << db
	    << "\n    password_file: " << ch.password_file() << "\n    batch_interval: 100ms\n";
	AgentProcess agent({"run", "--config", dir + "/cfg.yaml"}, dir);
	ASSERT_TRUE(agent.wait_ready()) << slurp(agent.err());
	ASSERT_EQ(run_cmd("GITLAB_TOKEN=" + token + " " + server), 0);
	std::string fp = Fingerprinter(load_or_create_key(key, false))(token);
	ASSERT_TRUE(eventually([&] {
		return ch.count("SELECT count() FROM " + db +
		                ".events WHERE type = 'secret' AND "
		                "fingerprint = '" +
		                fp + "' AND host = 'fleet-real-agent'") > 0;
	})) << slurp(agent.err());
	EXPECT_EQ(agent.stop(SIGTERM), 0);
	// The final health record went too, with the key id.
	std::string kid = Fingerprinter(load_or_create_key(key, false)).key_id();
	EXPECT_GT(
	    ch.count("SELECT count() FROM " + db +
	             ".events WHERE type = 'health' AND host = 'fleet-real-agent' AND key_id = '" +
	             kid + "'"),
	    0u);
	// The whole record goes with health (and alerts), not with sightings.
	EXPECT_EQ(ch.count("SELECT count() FROM " + db +
	                   ".events WHERE type = 'health' AND host = 'fleet-real-agent' AND "
	                   "position(record, '\"type\":\"health\"') = 0"),
	          0u);
	EXPECT_EQ(ch.count("SELECT count() FROM " + db +
	                   ".events WHERE type = 'secret' AND host = 'fleet-real-agent' AND "
	                   "record != ''"),
	          0u);
	// The journal and ClickHouse agree on every shipped record.
	uint64_t journal = 0;
	read_journal(dir + "/state/journal", [&](nlohmann::json &&r) {
		static const std::set<std::string> shipped = {"secret", "secret_use", "alert",
		                                              "update", "health",     "ready"};
		journal += shipped.count(r.value("type", "")) > 0;
		return true;
	});
	EXPECT_EQ(rows_of(ch, db, "fleet-real-agent"), journal);
	EXPECT_EQ(dump_database(ch, db).find(token), std::string::npos);
	EXPECT_EQ(slurp(agent.err()).find("agent-pw"), std::string::npos);
}

// kill -9 of a real agent while it ships: after a restart, ClickHouse holds
// every record of the journal that it ships, once.
TEST(Fleet, RealAgentKilledMidRunMissesAndDoublesNothing)
{
	ASSERT_EQ(geteuid(), 0u) << "the agent needs root (it loads eBPF programs)";
	std::string dir = temp_dir();
	ClickHouseServer ch(dir + "/ch", "kill-pw");
	ch.start();
	const std::string db = "kt_kill";
	stdout_of("fleet init " + fleet_args(ch, db));
	std::string key = fleet_key(dir);
	std::string server = dir + "/mcp-server-killtest";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.3\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  host_name: fleet-kill-agent\n"
	    << "  health_interval: 100ms\n  connect_hold: 100ms\n"
	    << "secrets:\n  fingerprint_key_file: " << key << "\n"
	    << "outputs:\n  - type: file\n    path: " << dir << "/out.jsonl\n"
	    << "  - type: clickhouse\n    url: " << ch.url() << "\n    database: " << db
	    << "\n    password_file: " << ch.password_file() << "\n    batch_interval: 20ms\n";
	{
		AgentProcess agent({"run", "--config", dir + "/cfg.yaml"}, dir);
		ASSERT_TRUE(agent.wait_ready()) << slurp(agent.err());
		for (int i = 0; i < 5; i++)
			ASSERT_EQ(run_cmd("GITLAB_TOKEN=glpat-Fl33tKillT0kenAbc" +
			                  std::to_string(10000 + i) + " " + server),
			          0);
		ASSERT_TRUE(eventually([&] {
			return ch.count(
			           "SELECT count() FROM " + db +
			           ".events WHERE host = 'fleet-kill-agent' AND type = 'secret'") >=
			       5;
		})) << slurp(agent.err());
		EXPECT_EQ(agent.stop(SIGKILL), 128 + SIGKILL); // mid-batch, mid-health
	}
	{
		AgentProcess agent({"run", "--config", dir + "/cfg.yaml"}, dir);
		ASSERT_TRUE(agent.wait_until(
		    [&] {
			    return records(dir + "/out.jsonl").size() > 0 &&
			           slurp(agent.err()).find("probes attached") != std::string::npos;
		    },
		    15000))
		    << slurp(agent.err());
		std::this_thread::sleep_for(std::chrono::milliseconds(500));
		EXPECT_EQ(agent.stop(SIGTERM), 0);
	}
	uint64_t journal = 0, readies = 0, secrets = 0;
	read_journal(dir + "/state/journal", [&](nlohmann::json &&r) {
		static const std::set<std::string> shipped = {"secret", "secret_use", "alert",
		                                              "update", "health",     "ready"};
		journal += shipped.count(r.value("type", "")) > 0;
		readies += r.value("type", "") == "ready";
		secrets += r.value("type", "") == "secret";
		return true;
	});
	EXPECT_EQ(readies, 2u);
	EXPECT_EQ(rows_of(ch, db, "fleet-kill-agent"), journal);
	EXPECT_EQ(ch.count("SELECT uniqExact(event_id) FROM " + db +
	                   ".events WHERE host = 'fleet-kill-agent'"),
	          journal);
	EXPECT_EQ(ch.count("SELECT count() FROM " + db +
	                   ".events FINAL WHERE host = 'fleet-kill-agent' AND type = 'secret'"),
	          secrets);
	EXPECT_GE(secrets, 5u); // the server and its child, each run
}
