#include <gtest/gtest.h>
#include <unistd.h>

#include "keytrail/config/config.h"
#include "keytrail/identity/identity.h"

using namespace keytrail;

namespace
{
WorkloadFacts facts(const std::string &server, uint32_t uid, const std::string &cgroup)
{
	WorkloadFacts f;
	f.pid = 100;
	f.uid = uid;
	f.gid = uid;
	f.exe = "/usr/bin/node";
	f.cgroup_path = cgroup;
	f.mcp_server = server;
	f.mcp_client = "claude-code";
	f.transport = "stdio";
	return f;
}
const std::string kDocker =
    "/docker/4b825dc642cb6eb9a060e54bf8d69288fbee4904e1f0b3e6b4c9e2f8a6d3c201";
} // namespace

TEST(Identity, DefaultIdIsStablePerWorkloadAndDistinctAcrossWorkloads)
{
	IdentityResolver r("host1", "keytrail.local", {}, {});
	Identity a = r.resolve(facts("server-gitlab", 0, "/"));
	Identity a2 = r.resolve(facts("server-gitlab", 0, "/")); // a restart: same id
	EXPECT_EQ(a.id, "spiffe://keytrail.local/host1/server-gitlab/root");
	EXPECT_EQ(a.id, a2.id);
	EXPECT_NE(a.id, r.resolve(facts("mcp-gitlab", 0, "/")).id);
	EXPECT_NE(a.id, r.resolve(facts("server-gitlab", 65534, "/")).id);
	Identity c = r.resolve(facts("server-gitlab", 0, kDocker));
	EXPECT_EQ(c.id, "spiffe://keytrail.local/host1/server-gitlab/root/4b825dc642cb");
	EXPECT_EQ(c.selectors.at("cgroup.runtime"), "docker");
	EXPECT_EQ(c.selectors.at("mcp.client"), "claude-code");
	EXPECT_EQ(c.selectors.at("mcp.transport"), "stdio");
	EXPECT_TRUE(c.resolved());
}

TEST(Identity, FirstMatchingRuleWinsAndTemplatesExpand)
{
	Config cfg = parse_config(R"(
identities:
  trust_domain: example.org
  rules:
    - id: "spiffe://example.org/containers/{cgroup.container_id}"
      match: { cgroup.runtime: docker, mcp.server: "server-*" }
    - id: "spiffe://example.org/mcp/{mcp.server}/{unix.user}"
      match: { mcp.server: "*" }
environments:
  - name: prod
    match: { cgroup.runtime: docker }
  - name: dev
    match: { unix.user: "*" }
)",
	                          "t.yaml");
	IdentityResolver r("h", cfg.trust_domain, cfg.identities, cfg.environments);
	Identity d = r.resolve(facts("server-gitlab", 0, kDocker));
	EXPECT_EQ(d.id, "spiffe://example.org/containers/" + kDocker.substr(8));
	EXPECT_EQ(d.selectors.at("env"), "prod");
	Identity u = r.resolve(facts("server-gitlab", 0, "/user.slice"));
	EXPECT_EQ(u.id, "spiffe://example.org/mcp/server-gitlab/root");
	EXPECT_EQ(u.selectors.at("env"), "dev");
	// No rule matches an empty server: the default id, in the configured domain.
	Identity none = r.resolve(facts("", 0, "/"));
	EXPECT_EQ(none.id.rfind("spiffe://example.org/h/node/root", 0), 0u);
}

TEST(Identity, TemplateValuesAreSanitized)
{
	Selectors s{{"mcp.server", "evil/../x y"}, {"unix.user", ""}};
	EXPECT_EQ(IdentityResolver::expand("spiffe://d/{mcp.server}/{unix.user}", s),
	          "spiffe://d/evil_.._x_y/unknown");
}

TEST(Identity, UnreadableCgroupIsDegradedNotEmpty)
{
	IdentityResolver r("h", "keytrail.local", {}, {});
	WorkloadFacts f = facts("s", 0, "/");
	f.cgroup_path.reset();
	f.exe.clear();
	Identity i = r.resolve(f);
	EXPECT_FALSE(i.resolved());
	EXPECT_EQ(i.unresolved.size(), 2u);
	EXPECT_FALSE(i.id.empty());
}

TEST(Identity, ConfigRejectsUnknownSelectors)
{
	try {
		parse_config("identities:\n  - id: 'spiffe://x/{mcp.servr}'\n", "t.yaml");
		FAIL() << "should have thrown";
	} catch (const ConfigError &e) {
		EXPECT_NE(std::string(e.what()).find("t.yaml:2:9: unknown selector 'mcp.servr'"),
		          std::string::npos)
		    << e.what();
	}
	EXPECT_THROW(
	    parse_config("environments:\n  - name: prod\n    match: {cgroup.id: x}\n", "t"),
	    ConfigError);
}

TEST(Identity, ExeHashIsCachedAndCorrectForSelf)
{
	IdentityResolver r("h", "d", {}, {});
	auto h1 = r.exe_sha256(getpid());
	ASSERT_TRUE(h1);
	EXPECT_EQ(h1->size(), 64u);
	EXPECT_EQ(r.exe_sha256(getpid()), h1);
	EXPECT_FALSE(r.exe_sha256(0x7FFFFFF0u));
}

TEST(Identity, GatherFactsForSelf)
{
	WorkloadFacts f = gather_facts(getpid(), getppid());
	EXPECT_FALSE(f.exe.empty());
	EXPECT_FALSE(f.cwd.empty());
	ASSERT_TRUE(f.cgroup_path.has_value());
	EXPECT_EQ(f.cgroup_path->front(), '/');
}
