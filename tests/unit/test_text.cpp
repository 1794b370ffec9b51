#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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
