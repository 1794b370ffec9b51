#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "keytrail/schema/json_members.h"
#include "keytrail/schema/record.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

using namespace keytrail;

TEST(Utf8, ValidTextIsUnchanged)
{
	EXPECT_EQ(sanitize_utf8("plain /etc/passwd"), "plain /etc/passwd");
	EXPECT_EQ(sanitize_utf8("caf\xC3\xA9 \xF0\x9F\x94\x91"), "caf\xC3\xA9 \xF0\x9F\x94\x91");
}

TEST(Utf8, InvalidBytesAreEscapedAndResultIsValidJson)
{
	std::string hostile = std::string("a\xFF"
	                                  "b\xC3") +
	                      "\n\"q\"" + std::string("\xED\xA0\x80", 3) + std::string("\0z", 2);
	std::string clean = sanitize_utf8(hostile);
	EXPECT_EQ(clean.find('\xFF'), std::string::npos);
	EXPECT_NE(clean.find("\\xFF"), std::string::npos);
	EXPECT_NE(clean.find("\\xED\\xA0\\x80"), std::string::npos); // surrogate
	nlohmann::json j = {{"path", clean}};
	auto round = nlohmann::json::parse(j.dump());
	EXPECT_EQ(round["path"], clean);
}

TEST(Text, SplitNulKeepsCutTail)
{
	auto v = split_nul(std::string("node\0/x/index.js\0--flag", 23));
	ASSERT_EQ(v.size(), 3u);
	EXPECT_EQ(v[2], "--flag");
	EXPECT_TRUE(split_nul("").empty());
}

TEST(Clock, Rfc3339RoundTrip)
{
	int64_t t;
	ASSERT_TRUE(parse_rfc3339("2026-11-26T12:35:51.123456Z", &t));
	EXPECT_EQ(rfc3339(t), "2026-11-26T12:35:51.123456Z");
	ASSERT_TRUE(parse_rfc3339("2026-11-26T14:35:51+02:00", &t));
	EXPECT_EQ(rfc3339(t), "2026-11-26T12:35:51.000000Z");
	ASSERT_TRUE(parse_rfc3339("2027-01-01", &t));
	EXPECT_EQ(rfc3339(t), "2027-01-01T00:00:00.000000Z");
	EXPECT_FALSE(parse_rfc3339("2026-13-01", &t));
	EXPECT_FALSE(parse_rfc3339("2026-11-26T12:35:51", &t)); // no zone
	EXPECT_FALSE(parse_rfc3339("yesterday", &t));
}

// Records written without a DOM must be the bytes dump_json() writes.
TEST(JsonMembers, WritesWhatDumpJsonWrites)
{
	std::mt19937 rng(7);
	for (int round = 0; round < 2000; round++) {
		std::string s;
		size_t n = rng() % 40;
		for (size_t i = 0; i < n; i++)
			s.push_back(static_cast<char>(rng() % 256));
		s = sanitize_utf8(s); // what every caller passes: valid UTF-8
		int64_t i64 = static_cast<int64_t>(rng()) - (1LL << 31) * (round % 3);
		uint64_t u64 = (static_cast<uint64_t>(rng()) << 32) | rng();
		JsonMembers m;
		m.str("s", s).num("i", i64).unum("u", u64).boolean("b", round % 2);
		std::string want = "{" + dump_json(nlohmann::json{{"s", s}}).substr(1);
		want.pop_back();
		want += ",\"i\":" + dump_json(i64) + ",\"u\":" + dump_json(u64) +
		        ",\"b\":" + dump_json(static_cast<bool>(round % 2)) + "}";
		EXPECT_EQ("{" + m.text() + "}", want);
		EXPECT_EQ(nlohmann::json::parse("{" + m.text() + "}")["s"], s);
	}
	JsonMembers a, b;
	a.str("x", "1");
	b.append(a.text()).append("").str("y", "\x1f\"\\\b\f\n\r\t");
	EXPECT_EQ(b.text(), R"("x":"1","y":"\u001f\"\\\b\f\n\r\t")");
}

// serialize() writes a record's fields member by member: the bytes
// dump_json writes for the same document, bad UTF-8 in keys and values
// included.
TEST(JsonMembers, SerializeWritesWhatDumpJsonWrites)
{
	nlohmann::json f = {
	    {"type", "alert"},   {"count", 3},
	    {"big", UINT64_MAX}, {"neg", -42},
	    {"ratio", 0.25},     {"ok", true},
	    {"none", nullptr},   {"text", "caf\xC3\xA9 \"q\" \x01"},
	    {"bad", "\xff\xfe"}, {"nested", {{"b", {1, 2, "x"}}, {"a", {{"z", "\n"}}}}}};
	EXPECT_EQ(serialize(Record{f, {}}), dump_json(f));
	nlohmann::json bad_key = f;
	bad_key["k\xff"] = 1;
	EXPECT_EQ(serialize(Record{bad_key, {}}), dump_json(bad_key));
	Record with_raw{{{"type", "open"}}, {}};
	with_raw.raw.push_back({"", std::make_shared<const std::string>("\"a\":1")});
	with_raw.raw.push_back({"process", std::make_shared<const std::string>("{\"pid\":2}")});
	EXPECT_EQ(serialize(with_raw), R"({"type":"open","a":1,"process":{"pid":2}})");
	EXPECT_EQ(to_json(with_raw), nlohmann::json::parse(serialize(with_raw)));
}
