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
	auto row = clickhouse_row(use, id);
	ASSERT_TRUE(row);
	EXPECT_EQ((*row)["event_id"], id);
	EXPECT_EQ((*row)["time"], t / 1000000000);
	EXPECT_EQ((*row)["time_us"], t / 1000);
	EXPECT_EQ((*row)["fingerprint"], "56c7db766959aaaa56c7db766959aaaa");
	EXPECT_EQ((*row)["workload"], "mcp-server-github");
	EXPECT_EQ((*row)["environment"], "prod");
	EXPECT_EQ((*row)["upstream"], "140.82.112.6:443");
	nlohmann::json health = {{"type", "health"},
	                         {"time", "2026-12-01T10:00:00Z"},
	                         {"key_id", "e9a02180"},
	                         {"kernel", {{"drops_by_type", {{"exec", 1}, {"open", 2}}}}},
	                         {"outputs", {{{"name", "clickhouse:x"}, {"lag_seconds", 1.5}}}}};
	row = clickhouse_row(health, "h:1:0");
	ASSERT_TRUE(row);
	EXPECT_EQ((*row)["drops"], 3);
	EXPECT_EQ((*row)["lag_seconds"], 1.5);
	EXPECT_EQ((*row)["key_id"], "e9a02180");
	EXPECT_FALSE(clickhouse_row({{"type", "secret"}}, "x")); // no time
}

TEST(ClickHouseConfig, ChecksEveryKey)
{
	std::string head = "secrets:\n  fingerprint_key_file: /etc/kt/fleet.key\noutputs:\n"
	                   "  - type: clickhouse\n";
	Config c =
	    parse_config(head + "    url: https://ch:8443\n    database: fleet_1\n"
	                        "    password_file: /etc/kt/ch.pw\n    tls_ca: /etc/kt/ca.pem\n"
	                        "    batch_rows: 500\n    batch_interval: 2s\n"
	                        "agent:\n  host_name: node-7\n",
	                 "t.yaml");
	ASSERT_EQ(c.outputs.size(), 1u);
	EXPECT_EQ(c.outputs[0].url, "https://ch:8443");
	EXPECT_EQ(c.outputs[0].database, "fleet_1");
	EXPECT_EQ(c.outputs[0].batch_rows, 500u);
	EXPECT_EQ(c.outputs[0].batch_interval.count(), 2000);
	EXPECT_EQ(c.host_name, "node-7");
	for (const char *bad : {"    url: ftp://ch\n", "    url: http://u:p@ch:8123\n",
	                        "    url: http://ch\n    database: \"a;DROP\"\n",
	                        "    url: http://ch\n    password_file: rel.pw\n",
	                        "    url: http://ch\n    batch_rows: 0\n", "    database: x\n",
	                        "    url: http://ch\n    path: /x\n"})
		EXPECT_THROW(parse_config(head + bad, "t.yaml"), ConfigError) << bad;
	EXPECT_THROW(
	    parse_config("outputs:\n  - type: file\n    path: /x\n    url: http://ch\n", "t.yaml"),
	    ConfigError);
	EXPECT_THROW(parse_config("agent:\n  host_name: \"a b\"\n", "t.yaml"), ConfigError);
}
