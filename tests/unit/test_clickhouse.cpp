// The clickhouse output's parts that need no server: the journal tail it
// ships from (cursor, growing and compressed segments, a cut line), the row
// a record becomes, and its config.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/output/clickhouse.h"
#include "keytrail/output/journal.h"
#include "keytrail/util/clock.h"

using namespace keytrail;

namespace
{

std::string tmpdir()
{
	char t[] = "/tmp/kt-chtail-XXXXXX";
	return mkdtemp(t);
}

std::string line(int i)
{
	return nlohmann::json{{"type", "secret"}, {"n", i}}.dump();
}

std::vector<int> numbers(const std::vector<JournalTail::Line> &lines)
{
	std::vector<int> out;
	for (const auto &l : lines)
		out.push_back(nlohmann::json::parse(l.text)["n"].get<int>());
	return out;
}

} // namespace

namespace
{

// A process as the journal gets its observations (IndexKeys::members).
std::shared_ptr<IndexKeys> process(uint32_t pid)
{
	auto k = std::make_shared<IndexKeys>();
	k->exec_id = "b00t:1:" + std::to_string(pid);
	k->pid = pid;
	k->members =
	    "\"comm\":\"node\",\"exec_id\":\"" + k->exec_id + "\",\"pid\":" + std::to_string(pid);
	return k;
}

// Writes `n` observations of `type`, the i-th by procs[i % size]; returns
// their lines.
std::vector<std::string> write_observations(const JournalConfig &cfg, const char *type, int n,
                                            const std::vector<std::shared_ptr<IndexKeys>> &procs)
{
	std::vector<std::string> lines;
	JournalSink j(cfg);
	for (int i = 0; i < n; i++) {
		const auto &k = procs[static_cast<size_t>(i) % procs.size()];
		lines.push_back(
		    std::string("{\"type\":\"") + type + "\"," + k->members +
		    ",\"time\":\"2026-12-03T04:00:00.000001Z\",\"fd\":" + std::to_string(i) + "}");
		EXPECT_TRUE(j.write(lines.back(), LineMeta{type, 6, 1, 1, k.get()}));
		EXPECT_TRUE(j.flush());
	}
	return lines;
}

} // namespace

TEST(JournalTail, ReadsAGrowingSegmentThenTheNextAndResumesFromACursor)
{
	std::string dir = tmpdir();
	JournalConfig cfg;
	cfg.dir = dir + "/journal";
	cfg.segment_size = 200; // a few lines a segment
	std::vector<JournalTail::Line> got;
	{
		JournalSink j(cfg);
		for (int i = 0; i < 3; i++)
			ASSERT_TRUE(j.write(line(i), LineMeta{"secret", 6, 0}));
		ASSERT_TRUE(j.flush());
		JournalTail tail(cfg.dir, "", 0);
		EXPECT_EQ(tail.read(100, got), 3u);
		EXPECT_FALSE(tail.finished()); // the agent may still append
		for (int i = 3; i < 40; i++)
			ASSERT_TRUE(j.write(line(i), LineMeta{"secret", 6, 0}));
		ASSERT_TRUE(j.flush());
		EXPECT_EQ(tail.read(10, got), 10u); // bounded
		tail.read(1000, got);
		ASSERT_EQ(got.size(), 40u);
		// A cursor in the middle of a segment: the same lines from there.
		const auto &mid = got[17];
		JournalTail again(cfg.dir, mid.segment, mid.line);
		std::vector<JournalTail::Line> rest;
		again.read(1000, rest);
		ASSERT_EQ(rest.size(), 23u);
		EXPECT_EQ(rest.front().text, mid.text);
	}
	std::vector<int> want;
	for (int i = 0; i < 40; i++)
		want.push_back(i);
	EXPECT_EQ(numbers(got), want);
	// Segments were compressed meanwhile (and at close): line numbers hold.
	JournalTail gz(cfg.dir, got[25].segment, got[25].line);
	std::vector<JournalTail::Line> from_gz;
	gz.read(1000, from_gz);
	ASSERT_EQ(from_gz.size(), 15u);
	EXPECT_EQ(from_gz.front().text, got[25].text);
	// complete: the cursor's segment was all read; start after it.
	JournalTail after(cfg.dir, got[0].segment, 0, true);
	std::vector<JournalTail::Line> next;
	after.read(1000, next);
	ASSERT_FALSE(next.empty());
	EXPECT_NE(next.front().segment, got[0].segment);
}

// Observations the journal wrote against their process's members line are
// shipped whole; a cursor past that line still has them.
TEST(JournalTail, ShipsObservationsWholeAndNumbersEveryLineOfTheFile)
{
	std::string dir = tmpdir();
	JournalConfig cfg;
	cfg.dir = dir + "/journal";
	std::vector<std::string> lines = write_observations(cfg, "open", 6, {process(4200)});
	std::vector<JournalTail::Line> got;
	JournalTail tail(cfg.dir, "", 0);
	tail.read(100, got);
	ASSERT_EQ(got.size(), 6u);
	for (size_t i = 0; i < got.size(); i++) {
		EXPECT_EQ(got[i].text, lines[i]);
		EXPECT_EQ(got[i].line, i + 1); // line 0 holds the members
	}
	JournalTail again(cfg.dir, got[3].segment, got[3].line);
	std::vector<JournalTail::Line> rest;
	again.read(100, rest);
	ASSERT_EQ(rest.size(), 3u);
	EXPECT_EQ(rest[0].text, lines[3]);
	EXPECT_EQ(again.cut_lines(), 0u);
}

// Across segments: each defines its own members; a cursor in a later one
// still reads it whole.
TEST(JournalTail, ResumesInALaterSegmentOfObservations)
{
	std::string dir = tmpdir();
	JournalConfig cfg;
	cfg.dir = dir + "/journal";
	cfg.segment_size = 1024;
	std::vector<std::string> lines =
	    write_observations(cfg, "close", 60, {process(4300), process(4301), process(4302)});
	std::vector<JournalTail::Line> got;
	JournalTail tail(cfg.dir, "", 0);
	tail.read(1000, got);
	ASSERT_EQ(got.size(), lines.size());
	for (size_t i = 0; i < got.size(); i++)
		EXPECT_EQ(got[i].text, lines[i]);
	EXPECT_NE(got.front().segment, got.back().segment);
	const auto &late = got[50];
	JournalTail again(cfg.dir, late.segment, late.line);
	std::vector<JournalTail::Line> rest;
	again.read(1000, rest);
	ASSERT_EQ(rest.size(), 10u);
	for (size_t i = 0; i < rest.size(); i++)
		EXPECT_EQ(rest[i].text, lines[50 + i]);
	EXPECT_EQ(again.cut_lines(), 0u);
}

TEST(JournalTail, SkipsALineACrashCutAndCountsALostSegment)
{
	std::string dir = tmpdir();
	std::string j = dir + "/journal";
	ASSERT_EQ(mkdir(j.c_str(), 0700), 0);
	std::ofstream(j + "/journal-20260101T000000.000000Z.jsonl")
	    << line(1) << "\n"
	    << line(2) << "\n{\"type\":\"sec";
	std::ofstream(j + "/journal-20260101T000001.000000Z.jsonl") << line(3) << "\n";
	std::vector<JournalTail::Line> got;
	JournalTail tail(j, "", 0);
	tail.read(100, got);
	EXPECT_EQ(numbers(got), (std::vector<int>{1, 2, 3}));
	EXPECT_EQ(tail.cut_lines(), 1u);
	// A cursor on a segment retention removed: counted, and on to the next.
	JournalTail lost(j, "journal-20251231T000000.000000Z.jsonl", 5);
	std::vector<JournalTail::Line> after;
	lost.read(100, after);
	EXPECT_EQ(lost.lost_segments(), 1u);
	EXPECT_EQ(numbers(after), (std::vector<int>{1, 2, 3}));
}

TEST(ClickHouseRow, TakesTheColumnsFromTheRecordAndAStableId)
{
	int64_t t = 0;
	ASSERT_TRUE(parse_rfc3339("2026-12-01T10:00:00.123456Z", &t));
	nlohmann::json use = {
	    {"type", "secret_use"},
	    {"time", "2026-12-01T10:00:00.123456Z"},
	    {"host", "web-1"},
	    {"secret",
	     {{"fingerprint", "56c7db766959aaaa56c7db766959aaaa"}, {"type", "github_token"}}},
	    {"identity", {{"id", "spiffe://x/web-1/gh/root"}, {"selectors", {{"env", "prod"}}}}},
	    {"process", {{"mcp_server", "mcp-server-github"}}},
	    {"upstream", {{"addr", "140.82.112.6"}, {"port", 443}}}};
	std::string id = journal_event_id("web-1", "journal-20261201T100000.000000Z.jsonl", 7);
	EXPECT_EQ(id, "web-1:20261201T100000.000000Z:7");
	auto row = clickhouse_row(use.dump());
	ASSERT_TRUE(row);
	EXPECT_TRUE(row->valid());
	EXPECT_EQ(row->time_ns, t);
	EXPECT_EQ(row->type, "secret_use");
	EXPECT_EQ(row->host, "web-1");
	EXPECT_EQ(row->fingerprint, "56c7db766959aaaa56c7db766959aaaa");
	EXPECT_EQ(row->secret_type, "github_token");
	EXPECT_EQ(row->identity, "spiffe://x/web-1/gh/root");
	EXPECT_EQ(row->workload, "mcp-server-github");
	EXPECT_EQ(row->environment, "prod");
	EXPECT_EQ(row->upstream, "140.82.112.6:443");
	EXPECT_EQ(row->drops, 0u);
	nlohmann::json health = {{"type", "health"},
	                         {"time", "2026-12-01T10:00:00Z"},
	                         {"key_id", "e9a02180"},
	                         {"kernel", {{"drops_by_type", {{"exec", 1}, {"open", 2}}}}},
	                         {"outputs", {{{"name", "clickhouse:x"}, {"lag_seconds", 1.5}}}}};
	row = clickhouse_row(health.dump());
	ASSERT_TRUE(row);
	EXPECT_EQ(row->drops, 3u);
	EXPECT_EQ(row->lag_seconds, 1.5);
	EXPECT_EQ(row->key_id, "e9a02180");
	row = clickhouse_row(R"({"type":"secret"})");
	ASSERT_TRUE(row);
	EXPECT_FALSE(row->valid()); // no time: not shipped
}

// The columns one pass takes are those a parsed document gives: strings
// only where the schema has strings, a repeated member's last value, the
// upstream's name before its address, and nothing from a member's namesake
// deeper down.
TEST(ClickHouseRow, OnePassAgreesWithTheDocument)
{
	auto row = clickhouse_row(
	    R"({"type":"alert","time":"2026-12-01T10:00:00Z","rule":"shared_credential",)"
	    R"("identity":"spiffe://x/a","upstream":"api.github.com:443","mcp_server":"gh",)"
	    R"("process":{"mcp_server":"ignored"},"severity":3,"reason":["not","a","string"],)"
	    R"("context":{"type":"nested","secret":{"fingerprint":"deadbeef"}},)"
	    R"("secret":{"fingerprint":"first"},"secret":{"fingerprint":"last","type":"t"},)"
	    R"("kernel":{"drops_by_type":{"exec":5}},"finding_id":"f1"})");
	ASSERT_TRUE(row);
	EXPECT_EQ(row->type, "alert");
	EXPECT_EQ(row->rule, "shared_credential");
	EXPECT_EQ(row->identity, "spiffe://x/a");
	EXPECT_EQ(row->upstream, "api.github.com:443");
	EXPECT_EQ(row->workload, "gh");
	EXPECT_EQ(row->severity, "");
	EXPECT_EQ(row->reason, "");
	EXPECT_EQ(row->fingerprint, "last");
	EXPECT_EQ(row->secret_type, "t");
	EXPECT_EQ(row->finding_id, "f1");
	EXPECT_EQ(row->drops, 0u); // drops are a health record's
	row = clickhouse_row(R"({"type":"secret_use","time":"2026-12-01T10:00:00Z",)"
	                     R"("upstream":{"name":"db.internal","addr":"10.0.0.1","port":5432},)"
	                     R"("process":{"mcp_server":"pg"}})");
	ASSERT_TRUE(row);
	EXPECT_EQ(row->upstream, "db.internal");
	EXPECT_EQ(row->workload, "pg");
	row = clickhouse_row(
	    R"({"type":"health","time":"2026-12-01T10:00:00Z","kernel":)"
	    R"({"drops_by_type":{"a":-4,"b":2.5,"c":7,"d":18446744073709551615}},)"
	    R"("outputs":[{"lag_seconds":2},{"lag_seconds":0.5},{"x":{"lag_seconds":9}}]})");
	ASSERT_TRUE(row);
	EXPECT_EQ(row->drops, 7u);
	EXPECT_EQ(row->lag_seconds, 2.0);
}

TEST(ClickHouseRow, RefusesWhatIsNotOneBoundedObject)
{
	for (std::string bad :
	     {std::string("[1,2]"), std::string("\"x\""), std::string("{\"type\":\"secret\"} {}"),
	      std::string("{\"type\":\"secret\""), std::string("{\"type\":\"\xff\"}"),
	      std::string(""), std::string(100, '[') + std::string(100, ']'),
	      "{\"a\":" + std::string(70, '[') + std::string(70, ']') + "}"})
		EXPECT_FALSE(clickhouse_row(bad)) << bad;
	std::string huge = "{\"type\":\"secret\",\"x\":\"" + std::string(1u << 20, 'a') + "\"}";
	EXPECT_FALSE(clickhouse_row(huge));                  // over 1 MiB: not a record to ship
	EXPECT_TRUE(clickhouse_row(R"({"type":"secret"})")); // the parser works on after it
	// No number where no int64 or DateTime holds it.
	auto row = clickhouse_row(R"({"type":"secret_use","time":"2107-01-01T00:00:00Z",)"
	                          R"("upstream":{"addr":"10.0.0.1","port":1e300}})");
	ASSERT_TRUE(row);
	EXPECT_EQ(row->upstream, "10.0.0.1");
	EXPECT_FALSE(row->valid());
	std::string deep_ok =
	    "{\"type\":\"x\",\"a\":" + std::string(60, '[') + std::string(60, ']') + "}";
	EXPECT_TRUE(clickhouse_row(deep_ok));
}

// RowBinary as ClickHouse reads it: LEB128-length strings, little-endian
// numbers, in kClickHouseEventColumns order.
TEST(ClickHouseRow, RowBinaryFollowsTheColumnList)
{
	auto row = clickhouse_row(R"({"type":"health","time":"2026-12-01T10:00:01.000002Z",)"
	                          R"("key_id":"k1","kernel":{"drops_by_type":{"x":3}}})");
	ASSERT_TRUE(row);
	row->event_id = "h:s:1";
	std::string record(200, 'r'), out;
	append_row_binary(*row, record, &out);
	size_t at = 0;
	auto str = [&] {
		uint64_t n = 0;
		for (int shift = 0;; shift += 7) {
			uint8_t b = static_cast<uint8_t>(out.at(at++));
			n |= static_cast<uint64_t>(b & 0x7f) << shift;
			if (!(b & 0x80))
				break;
		}
		std::string s = out.substr(at, n);
		at += n;
		return s;
	};
	auto num = [&](size_t bytes) {
		uint64_t v = 0;
		for (size_t i = 0; i < bytes; i++)
			v |= static_cast<uint64_t>(static_cast<uint8_t>(out.at(at++))) << (8 * i);
		return v;
	};
	std::vector<std::string> columns;
	std::string list = kClickHouseEventColumns;
	for (size_t from = 0; from <= list.size();) {
		size_t comma = std::min(list.find(", ", from), list.size());
		columns.push_back(list.substr(from, comma - from));
		from = comma + 2;
	}
	ASSERT_EQ(columns.size(), 21u);
	EXPECT_EQ(columns.front(), "event_id");
	EXPECT_EQ(columns.back(), "record");
	for (const auto &c : columns) {
		if (c == "time")
			EXPECT_EQ(num(4), 1796119201u);
		else if (c == "time_us")
			EXPECT_EQ(num(8), 1796119201000002u);
		else if (c == "drops")
			EXPECT_EQ(num(8), 3u);
		else if (c == "lag_seconds")
			EXPECT_EQ(num(8), 0u); // +0.0
		else if (c == "event_id")
			EXPECT_EQ(str(), "h:s:1");
		else if (c == "type")
			EXPECT_EQ(str(), "health");
		else if (c == "key_id")
			EXPECT_EQ(str(), "k1");
		else if (c == "record")
			EXPECT_EQ(str(), record); // a length past 127: two bytes
		else
			EXPECT_EQ(str(), "") << c;
	}
	EXPECT_EQ(at, out.size());
}

TEST(ClickHouseConfig, ChecksEveryKey)
{
	std::string head = "secrets:\n  fingerprint_key_file: /etc/kt/fleet.key\noutputs:\n"
	                   "  - type: clickhouse\n";
	Config c =
	    parse_config(head + "    url: https://ch:8443\n    database: fleet_1\n"
	                        "    password_file: /etc/kt/ch.pw\n    tls_ca: /etc/kt/ca.pem\n"
	                        "    batch_rows: 500\n    batch_interval: 2s\n"
	                        "    record_column: [secret_use, alert]\n"
	                        "agent:\n  host_name: node-7\n",
	                 "t.yaml");
	ASSERT_EQ(c.outputs.size(), 1u);
	EXPECT_EQ(c.outputs[0].url, "https://ch:8443");
	EXPECT_EQ(c.outputs[0].database, "fleet_1");
	EXPECT_EQ(c.outputs[0].batch_rows, 500u);
	EXPECT_EQ(c.outputs[0].batch_interval.count(), 2000);
	EXPECT_EQ(c.outputs[0].record_column, (std::vector<std::string>{"secret_use", "alert"}));
	EXPECT_EQ(c.host_name, "node-7");
	// By default the whole record goes with the few records an analyst opens,
	// not with every sighting.
	EXPECT_EQ(parse_config(head + "    url: http://ch\n", "t.yaml").outputs[0].record_column,
	          (std::vector<std::string>{"alert", "update", "health", "ready"}));
	for (const char *bad : {"    url: ftp://ch\n", "    url: http://u:p@ch:8123\n",
	                        "    url: http://ch\n    database: \"a;DROP\"\n",
	                        "    url: http://ch\n    password_file: rel.pw\n",
	                        "    url: http://ch\n    batch_rows: 0\n", "    database: x\n",
	                        "    url: http://ch\n    path: /x\n",
	                        "    url: http://ch\n    record_column: [secrets]\n"})
		EXPECT_THROW(parse_config(head + bad, "t.yaml"), ConfigError) << bad;
	for (const char *ch_only : {"url: http://ch", "record_column: [alert]"})
		EXPECT_THROW(
		    parse_config(std::string("outputs:\n  - type: file\n    path: /x\n    ") +
		                     ch_only + "\n",
		                 "t.yaml"),
		    ConfigError)
		    << ch_only;
	EXPECT_THROW(parse_config("agent:\n  host_name: \"a b\"\n", "t.yaml"), ConfigError);
}
