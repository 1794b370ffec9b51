// The policy the correlator and `keytrail report` share: inventory matching,
// allow checks, stale reasons and sanctioned sharing.
#include <gtest/gtest.h>

#include "keytrail/config/config.h"
#include "keytrail/correlate/policy.h"

using namespace keytrail;
using namespace keytrail::policy;

namespace
{

constexpr int64_t kDay = 86400LL * 1000000000LL;
constexpr int64_t kT0 = 1795000000LL * 1000000000LL; // 2026-11-18

const Config &inventory()
{
	static const Config c = parse_config(R"(
inventory:
  - id: gitlab-bot
    owner: platform-team
    match: { env: GITLAB_PERSONAL_ACCESS_TOKEN, identity: "spiffe://*/server-gitlab/*" }
    expires: 2026-11-01
    rotate_every: 90d
    max_unused: 30d
    allowed_identities: ["spiffe://*/server-gitlab/*"]
    allowed_upstreams: [gitlab.example.com, 10.0.0.0/8]
  - id: aws-prod
    match: { path: "/home/*/.aws/credentials" }
    status: revoked
  - id: by-fp
    match: { fingerprint: [0123456789abcdef0123456789abcdef] }
)",
	                                     "inv.yaml");
	return c;
}

} // namespace

TEST(Policy, MatchesByEnvNameIdentityPathAndFingerprint)
{
	const auto &inv = inventory().inventory;
	const InventoryEntry *m = match(inv, {"ff", "env", "GITLAB_PERSONAL_ACCESS_TOKEN", "",
	                                      "spiffe://keytrail.local/h/server-gitlab/root"});
	ASSERT_NE(m, nullptr);
	EXPECT_EQ(m->id, "gitlab-bot");
	// The env var's name is its location: a key named like it elsewhere is not it.
	EXPECT_EQ(match(inv, {"ff", "env", "X", "GITLAB_PERSONAL_ACCESS_TOKEN", "spiffe://other"}),
	          nullptr);
	EXPECT_EQ(match(inv, {"ff", "env", "GITLAB_PERSONAL_ACCESS_TOKEN", "", "spiffe://other"}),
	          nullptr);
	const InventoryEntry *aws =
	    match(inv, {"ee", "file", "/home/al/.aws/credentials", "aws_secret_access_key", ""});
	ASSERT_NE(aws, nullptr);
	EXPECT_EQ(aws->status, "revoked");
	EXPECT_EQ(match(inv, {"0123456789abcdef0123456789abcdef", "argv", "argv[2]", "", ""})->id,
	          "by-fp");
}

TEST(Policy, UpstreamPatterns)
{
	EXPECT_TRUE(upstream_matches({"10.0.0.0/8"}, "10.200.1.1", "", ""));
	EXPECT_FALSE(upstream_matches({"10.0.0.0/8"}, "11.0.0.1", "", ""));
	EXPECT_TRUE(upstream_matches({"2001:db8::/32"}, "2001:db8::5", "", ""));
	EXPECT_FALSE(upstream_matches({"2001:db8::/32"}, "10.0.0.1", "", ""));
	EXPECT_TRUE(upstream_matches({"*.example.com"}, "1.2.3.4", "a.example.com", ""));
	EXPECT_TRUE(upstream_matches({"gitlab.local"}, "1.2.3.4", "", "gitlab.local"));
	EXPECT_TRUE(upstream_matches({"127.0.0.1"}, "127.0.0.1", "", ""));
	EXPECT_FALSE(upstream_matches({}, "127.0.0.1", "", ""));
	const InventoryEntry &g = inventory().inventory[0];
	EXPECT_TRUE(upstream_allowed(g, "203.0.113.9", "gitlab.example.com", ""));
	EXPECT_FALSE(upstream_allowed(g, "203.0.113.9", "evil.example", ""));
	EXPECT_TRUE(upstream_allowed(inventory().inventory[1], "203.0.113.9", "anything", ""));
}

TEST(Policy, IdentityAllowedByGlobOrByNoList)
{
	const auto &inv = inventory().inventory;
	EXPECT_TRUE(identity_allowed(inv[0], "spiffe://t/server-gitlab/root"));
	EXPECT_FALSE(identity_allowed(inv[0], "spiffe://t/bash/root"));
	EXPECT_TRUE(identity_allowed(inv[1], "spiffe://t/bash/root"));
}

TEST(Policy, StaleReasonsAllApplyAndRetiredIsNeverStale)
{
	const InventoryEntry &g = inventory().inventory[0];
	Lifetime life;
	life.first_seen_ns = kT0 - 100 * kDay;
	life.last_used_ns = kT0 - 40 * kDay;
	auto r = stale_reasons(g, life, kT0, "gitlab_pat 0123");
	ASSERT_EQ(r.size(), 3u);
	EXPECT_STREQ(r[0].reason, "expired");
	EXPECT_STREQ(r[1].reason, "rotation_overdue");
	EXPECT_STREQ(r[2].reason, "unused");
	EXPECT_NE(r[1].summary.find("gitlab_pat 0123 (gitlab-bot) was last rotated 100 days"),
	          std::string::npos);
	// A file older than the first sighting makes the credential older.
	life.first_seen_ns = kT0 - kDay;
	life.last_used_ns = kT0;
	life.oldest_mtime_ns = kT0 - 91 * kDay;
	r = stale_reasons(g, life, kT0, "x");
	ASSERT_EQ(r.size(), 2u);
	EXPECT_STREQ(r[1].reason, "rotation_overdue");
	life.retired = true;
	EXPECT_TRUE(stale_reasons(g, life, kT0, "x").empty());
}

TEST(Policy, SharingCountsHoldersAndEnvironmentsUnlessSanctioned)
{
	const InventoryEntry &g = inventory().inventory[0];
	EXPECT_FALSE(sharing(nullptr, {"a"}, 1).shared);
	EXPECT_TRUE(sharing(nullptr, {"a", "b"}, 0).shared);
	// Every holder allowed: sanctioned, within one environment.
	std::vector<std::string> both = {"spiffe://t/server-gitlab/a",
	                                 "spiffe://t/server-gitlab/b"};
	EXPECT_FALSE(sharing(&g, both, 1).shared);
	EXPECT_TRUE(sharing(&g, {"spiffe://t/server-gitlab/a", "spiffe://t/bash/b"}, 1).shared);
	// Across environments it is shared whatever the entry allows.
	Sharing s = sharing(&g, both, 2);
	EXPECT_TRUE(s.shared);
	EXPECT_TRUE(s.across_environments);
	EXPECT_TRUE(sharing(&g, {"spiffe://t/server-gitlab/a"}, 2).shared);
}
