#include <gtest/gtest.h>

#include "keytrail/secrets/mask.h"

using namespace keytrail;

TEST(Mask, UrlPasswords)
{
	EXPECT_EQ(mask_arg("postgresql://app:s3cr3t-pw@db.local:5432/prod"),
	          "postgresql://app:****@db.local:5432/prod");
	EXPECT_EQ(mask_arg("https://example.test/path?q=1"), "https://example.test/path?q=1");
	EXPECT_EQ(mask_arg("redis://:onlypass@cache:6379"), "redis://:****@cache:6379");
}

TEST(Mask, CredentialOptionsAndPairs)
{
	auto v = mask_argv(
	    {"server", "--token", "abcdef123456", "--path", "/srv", "--api-key=xyz987654",
	     "GITLAB_PERSONAL_ACCESS_TOKEN=glpat-aaaaaaaaaaaaaaaaaaaa", "--author", "me"});
	EXPECT_EQ(v[2], "****");
	EXPECT_EQ(v[4], "/srv");
	EXPECT_EQ(v[5], "--api-key=****");
	EXPECT_EQ(v[6], "GITLAB_PERSONAL_ACCESS_TOKEN=****");
	EXPECT_EQ(v[8], "me");
}

TEST(Mask, KnownTokenPrefixesKeepOnlyThePrefix)
{
	std::string gh = "ghp_" + std::string(36, 'A');
	EXPECT_EQ(mask_arg(gh), "ghp_****");
	EXPECT_EQ(mask_arg("Bearer:" + gh), "Bearer:ghp_****");
	EXPECT_EQ(mask_arg("AKIA" + std::string(16, 'Z')), "AKIA****");
	EXPECT_EQ(mask_arg("sk-"), "sk-");                 // too short to be a token
	EXPECT_EQ(mask_arg("task-runner"), "task-runner"); // "sk-" inside a word
}
