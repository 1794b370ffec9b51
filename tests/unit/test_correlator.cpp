// The correlator without a kernel: synthetic input sequences and a fake
// clock, for every rule and the cases that must not fire.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/correlate/findings.h"
#include "keytrail/correlate/policy.h"

using namespace keytrail;
using nlohmann::json;

namespace
{

constexpr int64_t kSec = 1000000000LL;
constexpr int64_t kDay = 86400 * kSec;
constexpr int64_t kT0 = 1795000000LL * kSec; // 2026-11-18

class CorrelatorTest : public ::testing::Test
{
      protected:
	void make(const std::string &yaml = "")
	{
		cfg = yaml.empty() ? Config{} : parse_config(yaml, "test.yaml");
		corr = std::make_unique<Correlator>(
		    "host1", cfg, clock, [this](Record &&r) { out.push_back(to_json(r)); });
	}
	void feed(Input in)
	{
		clock.advance_to(input_time(in));
		corr->feed(in);
	}
	ProcStart proc(const std::string &exec_id, const std::string &identity, int64_t t,
	               const std::string &parent = "", bool tracked = true)
	{
		ProcStart p;
		p.time_ns = t;
		p.exec_id = exec_id;
		p.parent_exec_id = parent;
		p.pid = static_cast<uint32_t>(std::hash<std::string>{}(exec_id) % 30000 + 100);
		p.comm = "mcp-server";
		p.exe = "/usr/bin/mcp-server";
		p.cmdline = {"mcp-server", "--token", "****"};
		p.identity = identity;
		p.selectors = {{"mcp.server", "srv"}};
		p.tracked = tracked;
		if (tracked) { // an MCP workload: one per identity here
			p.mcp_server = "srv";
			p.workload = "root-of:" + identity;
		}
		p.env_observed = true;
		return p;
	}
	SecretSeen secret(const std::string &exec_id, const std::string &fp, int64_t t,
	                  const std::string &source = "env", const std::string &where = "TOKEN")
	{
		SecretSeen s;
		s.time_ns = t;
		s.exec_id = exec_id;
		s.fingerprint = fp;
		s.type = "github_pat";
		s.source = source;
		s.location = where;
		return s;
	}
	ConnectSeen connect(const std::string &exec_id, int64_t t,
	                    const std::string &addr = "203.0.113.7", uint16_t port = 443,
	                    const std::string &sni = "api.github.com")
	{
		ConnectSeen c;
		c.time_ns = t;
		c.exec_id = exec_id;
		c.family = addr.find(':') == std::string::npos ? AF_INET : AF_INET6;
		c.sock_type = SOCK_STREAM;
		c.port = port;
		c.addr = addr;
		c.sni = sni;
		return c;
	}
	std::vector<json> of(const std::string &type, const std::string &rule = "") const
	{
		std::vector<json> v;
		for (const auto &r : out)
			if (r["type"] == type && (rule.empty() || r.value("rule", "") == rule))
				v.push_back(r);
		return v;
	}

	ManualClock clock{kT0};
	Config cfg;
	std::unique_ptr<Correlator> corr;
	std::vector<json> out;
};

const char *kFp1 = "11111111111111111111111111111111";
const char *kFp2 = "22222222222222222222222222222222";

} // namespace

TEST_F(CorrelatorTest, SoleSecretUseNamesIdentitySecretAndUpstream)
{
	make();
	feed(proc("e1", "spiffe://t/gitlab", kT0));
	feed(secret("e1", kFp1, kT0 + 1));
	feed(connect("e1", kT0 + kSec));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	const json &u = uses[0];
	EXPECT_EQ(u["pairing"], "sole_secret");
	EXPECT_EQ(u["secret"]["fingerprint"], kFp1);
	EXPECT_EQ(u["secret"]["env"], "TOKEN");
	EXPECT_EQ(u["identity"]["id"], "spiffe://t/gitlab");
	EXPECT_EQ(u["process"]["exec_id"], "e1");
	EXPECT_EQ(u["process"]["cmdline"][2], "****");
	EXPECT_EQ(u["upstream"]["sni"], "api.github.com");
	EXPECT_EQ(u["upstream"]["port"], 443);
	EXPECT_EQ(u["schema"], "2");
	EXPECT_FALSE(u["summary"].get<std::string>().empty());
	// No inventory entry: unowned.
	auto a = of("alert", "unowned_secret");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["severity"], "low");
	EXPECT_NE(std::find(a[0]["tags"].begin(), a[0]["tags"].end(), "owasp-nhi.nhi1"),
	          a[0]["tags"].end());
	// Repeats are counted, not re-emitted.
	feed(connect("e1", kT0 + 2 * kSec));
	EXPECT_EQ(of("secret_use").size(), 1u);
	EXPECT_EQ(corr->counters().uses_deduplicated, 1u);
}

// npx -> sh -> node -> curl, one token in the environment of all: one
// sighting, and the child that connects is still the one that used it.
TEST_F(CorrelatorTest, AnInheritedEnvironmentCredentialIsOneSighting)
{
	make();
	feed(proc("npx", "spiffe://t/srv", kT0));
	feed(secret("npx", kFp1, kT0 + 1));
	feed(proc("sh", "spiffe://t/srv", kT0 + 2, "npx"));
	feed(secret("sh", kFp1, kT0 + 3));
	feed(proc("curl", "spiffe://t/srv", kT0 + 4, "sh"));
	feed(secret("curl", kFp1, kT0 + 5));
	// Under another name it is another way to hold it.
	feed(secret("curl", kFp1, kT0 + 6, "env", "GH_TOKEN"));
	auto seen = of("secret");
	ASSERT_EQ(seen.size(), 2u);
	EXPECT_EQ(seen[0]["exec_id"], "npx");
	EXPECT_EQ(seen[1]["exec_id"], "curl");
	EXPECT_EQ(seen[1]["secret"]["env"], "GH_TOKEN");
	EXPECT_EQ(corr->counters().sightings_inherited, 2u);
	feed(connect("curl", kT0 + kSec));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["process"]["exec_id"], "curl");
	// A child of another identity (su, a different uid) is its own sighting.
	feed(proc("other", "spiffe://t/else", kT0 + 7, "npx"));
	feed(secret("other", kFp1, kT0 + 8));
	EXPECT_EQ(of("secret").size(), 3u);
	// `sh -c 'exec mcp-server-b'`: the shell reported it as itself; the
	// server it became has children of its own identity, which report it.
	feed(proc("shell", "spiffe://t/sh", kT0 + 9));
	feed(secret("shell", kFp2, kT0 + 10));
	feed(proc("shell", "spiffe://t/b", kT0 + 11)); // the re-exec
	feed(proc("b-kid", "spiffe://t/b", kT0 + 12, "shell"));
	feed(secret("b-kid", kFp2, kT0 + 13));
	EXPECT_EQ(of("secret").size(), 5u);
	EXPECT_EQ(corr->counters().unknown_process, 0u);
}

TEST_F(CorrelatorTest, DnsProbesLoopbackUnixAndFailuresAreNotUpstreams)
{
	make();
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	ConnectSeen dns = connect("e1", kT0 + 1, "198.51.100.1", 0, "");
	dns.sock_type = SOCK_DGRAM; // getaddrinfo's source-address probe
	feed(dns);
	ConnectSeen dns53 = connect("e1", kT0 + 2, "198.51.100.1", 53, "");
	dns53.sock_type = SOCK_DGRAM;
	feed(dns53);
	feed(connect("e1", kT0 + 3, "127.0.0.1", 8080, ""));
	feed(connect("e1", kT0 + 3, "::1", 8080, ""));
	ConnectSeen unix_sock = connect("e1", kT0 + 4, "", 0, "");
	unix_sock.family = AF_UNIX;
	feed(unix_sock);
	ConnectSeen refused = connect("e1", kT0 + 5);
	refused.result = -ECONNREFUSED;
	feed(refused);
	EXPECT_TRUE(of("secret_use").empty());
	EXPECT_EQ(corr->counters().connects_not_upstream, 6u);
	// In progress (non-blocking) is an attempt.
	ConnectSeen nb = connect("e1", kT0 + 6);
	nb.result = -EINPROGRESS;
	feed(nb);
	EXPECT_EQ(of("secret_use").size(), 1u);
}

TEST_F(CorrelatorTest, LoopbackCountsWhenConfigured)
{
	make("correlate:\n  loopback_upstreams: true\n");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(connect("e1", kT0 + 1, "127.0.0.1", 8080, ""));
	ASSERT_EQ(of("secret_use").size(), 1u);
	EXPECT_EQ(of("secret_use")[0]["upstream"]["addr"], "127.0.0.1");
}

TEST_F(CorrelatorTest, UpstreamIsNamedByHttpHostWithoutItsPort)
{
	make("correlate:\n  loopback_upstreams: true\n");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	ConnectSeen c = connect("e1", kT0 + 1, "127.0.0.1", 8080, "");
	c.http_host = "gitlab.example.test:8080";
	feed(c);
	c = connect("e1", kT0 + 2, "::1", 8443, "");
	c.http_host = "[::1]:8443";
	feed(c);
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 2u);
	EXPECT_NE(uses[0]["summary"].get<std::string>().find("toward gitlab.example.test:8080"),
	          std::string::npos)
	    << uses[0]["summary"];
	EXPECT_EQ(uses[0]["upstream"]["http_host"], "gitlab.example.test:8080");
	EXPECT_NE(uses[1]["summary"].get<std::string>().find("toward [::1]:8443"),
	          std::string::npos)
	    << uses[1]["summary"];
}

// IPv6 and v4-mapped addresses are judged as their IPv4 forms are: loopback
// that names no remote host is not an upstream; loopback that names one (a
// local proxy or sidecar) is; a CONNECT target through one is the upstream.
TEST_F(CorrelatorTest, Ipv6AndV4MappedLoopbackAreJudgedAlike)
{
	make();
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(connect("e1", kT0 + 1, "::1", 8080, ""));
	feed(connect("e1", kT0 + 2, "::ffff:127.0.0.1", 8080, ""));
	ConnectSeen local = connect("e1", kT0 + 3, "::ffff:127.0.0.1", 8080, "");
	local.http_host = "localhost:8080";
	feed(local);
	EXPECT_TRUE(of("secret_use").empty());
	EXPECT_EQ(corr->counters().connects_ignored_loopback, 3u);
	ConnectSeen sidecar = connect("e1", kT0 + 4, "::1", 15001, "api.github.com");
	feed(sidecar);
	ConnectSeen proxied = connect("e1", kT0 + 5, "::ffff:127.0.0.1", 3128, "");
	proxied.proxy_target = "[2001:db8::5]:8443";
	feed(proxied);
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 2u);
	EXPECT_EQ(uses[0]["upstream"]["name"], "api.github.com");
	EXPECT_EQ(uses[0]["upstream"]["addr"], "::1");
	EXPECT_EQ(uses[1]["upstream"]["name"], "[2001:db8::5]");
	EXPECT_EQ(uses[1]["upstream"]["port"], 8443);
	EXPECT_EQ(uses[1]["upstream"]["via"]["addr"], "::ffff:127.0.0.1");
}

// npx fetching its server holds the server's token (in env) but does not
// send it to the registry; a registry token, or one it read from .npmrc,
// it may.
TEST_F(CorrelatorTest, APackageRunnerFetchingItsServerUsesOnlyRegistryCredentials)
{
	make();
	ProcStart npx = proc("npx", "spiffe://t/gitlab", kT0);
	npx.launcher = true;
	feed(npx);
	feed(secret("npx", kFp1, kT0, "env", "GITLAB_TOKEN"));
	feed(connect("npx", kT0 + 1, "104.16.0.35", 443, "registry.npmjs.org"));
	EXPECT_TRUE(of("secret_use").empty());
	EXPECT_EQ(corr->counters().launcher_fetches, 1u);
	SecretSeen npmrc = secret("npx", kFp2, kT0 + 2, "file", "/root/.npmrc");
	feed(npmrc);
	feed(connect("npx", kT0 + 3, "104.16.0.35", 443, "registry.npmjs.org"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["secret"]["fingerprint"], kFp2);
	// The server it then runs (its child, which exec'd) uses the token.
	ProcStart srv = proc("srv", "spiffe://t/gitlab", kT0 + 4, "npx");
	feed(srv);
	feed(secret("srv", kFp1, kT0 + 4, "env", "GITLAB_TOKEN"));
	feed(connect("srv", kT0 + 5, "203.0.113.7", 443, "gitlab.example.com"));
	EXPECT_EQ(of("secret_use").size(), 2u);
}

// An .npmrc token is scoped to its registry ("//host:port/:_authToken"):
// a connect elsewhere (npx fetching from registry.npmjs.org) is not a use
// of it, a connect to its registry is.
TEST_F(CorrelatorTest, ARegistryScopedTokenIsUsedOnlyWithItsRegistry)
{
	make();
	ProcStart npx = proc("npx", "spiffe://t/gitlab", kT0);
	npx.launcher = true;
	feed(npx);
	SecretSeen local = secret("npx", kFp1, kT0, "file", "/root/.npmrc");
	local.type = "npm_token";
	local.name = "//10.1.2.3:4873/:_authToken";
	feed(local);
	feed(connect("npx", kT0 + 1, "104.16.0.35", 443, "registry.npmjs.org"));
	feed(connect("npx", kT0 + 2, "10.1.2.3", 4874, ""));
	EXPECT_TRUE(of("secret_use").empty());
	EXPECT_EQ(corr->counters().credentials_out_of_scope, 2u);
	ConnectSeen mine = connect("npx", kT0 + 3, "::ffff:10.1.2.3", 4873, "");
	feed(mine);
	SecretSeen npmjs = secret("npx", kFp2, kT0 + 4, "file", "/root/.npmrc");
	npmjs.type = "npm_token";
	npmjs.name = "//Registry.npmjs.org/:_authToken";
	feed(npmjs);
	feed(connect("npx", kT0 + 5, "104.16.0.35", 443, "registry.npmjs.org"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 2u);
	EXPECT_EQ(uses[0]["secret"]["fingerprint"], kFp1);
	EXPECT_EQ(uses[0]["upstream"]["port"], 4873);
	EXPECT_EQ(uses[1]["secret"]["fingerprint"], kFp2); // the other is out of scope there
	EXPECT_EQ(uses[1]["pairing"], uses[0]["pairing"]);
	// Any port of a scope without one, through a proxy by its target only.
	EXPECT_TRUE(policy::scope_reaches("registry.npmjs.org", "10.0.0.1", 8443,
	                                  "Registry.NPMJS.org", "", ""));
	EXPECT_FALSE(policy::scope_reaches("registry.npmjs.org", "10.0.0.1", 443, "", "",
	                                   "other.example:443"));
	EXPECT_TRUE(policy::scope_reaches("[::1]:4873", "::1", 4873, "", "", ""));
	EXPECT_TRUE(policy::scope_reaches("registry.npmjs.org", "10.0.0.1", 443,
	                                  "registry.npmjs.org.", "", ""));
	EXPECT_EQ(policy::credential_scope("file", "/etc/npmrc", "//h:1/path/:_auth"), "h:1");
	EXPECT_EQ(policy::credential_scope("env", "NPMRC", "//h/:_authToken"), "");
	EXPECT_EQ(policy::credential_scope("file", "/srv/.env", "//h/:_authToken"), "");
	EXPECT_EQ(policy::credential_scope("file", "/root/.npmrc", "//h/:email"), "");
	// Another process holding the same token may send it anywhere: a use.
	ProcStart curl = proc("curl", "spiffe://t/gitlab", kT0 + 6);
	feed(curl);
	SecretSeen read = local;
	read.exec_id = "curl";
	read.time_ns = kT0 + 6;
	feed(read);
	feed(connect("curl", kT0 + 7, "198.51.100.9", 443, "evil.example"));
	uses = of("secret_use");
	ASSERT_EQ(uses.size(), 3u);
	EXPECT_EQ(uses[2]["secret"]["fingerprint"], kFp1);
	EXPECT_EQ(uses[2]["upstream"]["name"], "evil.example");
}

TEST_F(CorrelatorTest, SeveralSecretsWithoutBindingAreReportedAsCandidates)
{
	make();
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(secret("e1", kFp2, kT0, "file", "/home/u/.env"));
	feed(connect("e1", kT0 + 1));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["pairing"], "ambiguous");
	EXPECT_FALSE(uses[0].contains("secret"));
	EXPECT_EQ(uses[0]["candidates"].size(), 2u);
	// No credential is said to be used: no unowned alert either.
	EXPECT_TRUE(of("alert", "unowned_secret").empty());
	EXPECT_EQ(corr->counters().ambiguous_uses, 1u);
}

TEST_F(CorrelatorTest, AllowedUpstreamBindsTheUseToThatEntry)
{
	make(R"(
inventory:
  - id: gh
    owner: team-a
    match: {fingerprint: 11111111111111111111111111111111}
    allowed_upstreams: ["api.github.com"]
  - id: db
    owner: team-b
    match: {fingerprint: 22222222222222222222222222222222}
    allowed_upstreams: ["10.0.0.0/8"]
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(secret("e1", kFp2, kT0));
	feed(connect("e1", kT0 + 1));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["pairing"], "allowed_upstream");
	EXPECT_EQ(uses[0]["secret"]["inventory_id"], "gh");
	EXPECT_EQ(uses[0]["secret"]["owner"], "team-a");
	feed(connect("e1", kT0 + 2, "10.1.2.3", 5432, ""));
	uses = of("secret_use");
	ASSERT_EQ(uses.size(), 2u);
	EXPECT_EQ(uses[1]["secret"]["inventory_id"], "db");
	EXPECT_TRUE(of("alert", "unexpected_upstream").empty());
	EXPECT_TRUE(of("alert", "unowned_secret").empty());
	// Somewhere neither may go: both held, so which was sent is unknown,
	// but either way it is unexpected.
	feed(connect("e1", kT0 + 3, "198.51.100.9", 443, "paste.example"));
	auto a = of("alert", "unexpected_upstream");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["candidates"].size(), 2u);
	EXPECT_EQ(a[0]["upstream"]["sni"], "paste.example");
}

TEST_F(CorrelatorTest, UnexpectedUpstreamForABoundSecret)
{
	make(R"(
inventory:
  - id: gh
    owner: team-a
    match: {fingerprint: 11111111111111111111111111111111}
    allowed_upstreams: ["*.github.com"]
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(connect("e1", kT0 + 1, "203.0.113.7", 443, "uploads.github.com"));
	EXPECT_TRUE(of("alert", "unexpected_upstream").empty());
	feed(connect("e1", kT0 + 2, "198.51.100.9", 443, "evil.example"));
	auto a = of("alert", "unexpected_upstream");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["severity"], "high");
	EXPECT_EQ(a[0]["upstream"]["sni"], "evil.example");
	EXPECT_EQ(a[0]["secret"]["inventory_id"], "gh");
	auto tags = a[0]["tags"];
	EXPECT_NE(std::find(tags.begin(), tags.end(), "attack.t1550.001"), tags.end());
}

TEST_F(CorrelatorTest, SharedAcrossIdentitiesNamesAllOfThem)
{
	make();
	feed(proc("e1", "spiffe://t/gitlab-a", kT0));
	feed(secret("e1", kFp1, kT0));
	EXPECT_TRUE(of("alert", "shared_credential").empty());
	feed(proc("e2", "spiffe://t/gitlab-b", kT0 + kSec));
	feed(secret("e2", kFp1, kT0 + kSec));
	auto a = of("alert", "shared_credential");
	ASSERT_EQ(a.size(), 1u);
	ASSERT_EQ(a[0]["identities"].size(), 2u);
	EXPECT_EQ(a[0]["identities"][0]["id"], "spiffe://t/gitlab-a");
	EXPECT_EQ(a[0]["identities"][1]["id"], "spiffe://t/gitlab-b");
	EXPECT_EQ(a[0]["reason"], "identities");
	// The same sighting again is not a new alert.
	feed(secret("e2", kFp1, kT0 + 2 * kSec, "file", "/x/.env"));
	EXPECT_EQ(of("alert", "shared_credential").size(), 1u);
}

TEST_F(CorrelatorTest, OneIdentityRestartingIsNotShared)
{
	make();
	for (int i = 0; i < 5; i++) {
		std::string id = "e" + std::to_string(i);
		feed(proc(id, "spiffe://t/gitlab", kT0 + i * kSec));
		feed(secret(id, kFp1, kT0 + i * kSec));
		feed(ProcExit{kT0 + i * kSec + 1, id});
	}
	EXPECT_TRUE(of("alert", "shared_credential").empty());
}

TEST_F(CorrelatorTest, SharedAcrossEnvironments)
{
	make();
	ProcStart a = proc("e1", "spiffe://t/app-prod", kT0);
	a.selectors["env"] = "prod";
	ProcStart b = proc("e2", "spiffe://t/app-dev", kT0);
	b.selectors["env"] = "dev";
	feed(a);
	feed(secret("e1", kFp1, kT0));
	feed(b);
	feed(secret("e2", kFp1, kT0 + 1));
	auto al = of("alert", "shared_credential");
	ASSERT_EQ(al.size(), 1u);
	EXPECT_EQ(al[0]["reason"], "environments");
	EXPECT_EQ(al[0]["environments"].size(), 2u);
}

TEST_F(CorrelatorTest, SharingAllowedByInventoryIsNotAnAlert)
{
	make(R"(
inventory:
  - id: shared-ok
    owner: t
    match: {fingerprint: 11111111111111111111111111111111}
    allowed_identities: ["spiffe://t/worker-*"]
)");
	feed(proc("e1", "spiffe://t/worker-1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(proc("e2", "spiffe://t/worker-2", kT0));
	feed(secret("e2", kFp1, kT0));
	EXPECT_TRUE(of("alert", "shared_credential").empty());
	EXPECT_TRUE(of("alert", "out_of_scope_identity").empty());
	// A third holder outside the allowed set: both rules fire.
	feed(proc("e3", "spiffe://t/laptop", kT0));
	feed(secret("e3", kFp1, kT0));
	EXPECT_EQ(of("alert", "shared_credential").size(), 1u);
	EXPECT_EQ(of("alert", "out_of_scope_identity").size(), 1u);
	EXPECT_EQ(of("alert", "out_of_scope_identity")[0]["identity"]["id"], "spiffe://t/laptop");
}

TEST_F(CorrelatorTest, StaleExpiredRotationOverdueAndUnused)
{
	make(R"(
inventory:
  - id: old
    owner: t
    match: {fingerprint: 11111111111111111111111111111111}
    expires: 2026-01-01
  - id: rot
    owner: t
    match: {fingerprint: 22222222222222222222222222222222}
    rotate_every: 90d
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	auto a = of("alert", "stale_credential");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["reason"], "expired");
	EXPECT_EQ(a[0]["secret"]["inventory_id"], "old");
	// First seen by the ledger 100 days ago.
	SecretSeen s = secret("e1", kFp2, kT0 + 1, "file", "/etc/app/token");
	s.first_seen_ns = kT0 - 100 * kDay;
	feed(s);
	a = of("alert", "stale_credential");
	ASSERT_EQ(a.size(), 2u);
	EXPECT_EQ(a[1]["reason"], "rotation_overdue");
}

TEST_F(CorrelatorTest, FileMtimeCountsAsAgeWhenOlder)
{
	make(R"(
inventory:
  - id: rot
    owner: t
    match: {path: "/etc/app/*"}
    rotate_every: 30d
)");
	feed(proc("e1", "id1", kT0));
	SecretSeen s = secret("e1", kFp1, kT0, "file", "/etc/app/token");
	s.file_mtime_ns = kT0 - 40 * kDay;
	feed(s);
	ASSERT_EQ(of("alert", "stale_credential").size(), 1u);
}

TEST_F(CorrelatorTest, ARotationIsNotStale)
{
	make(R"(
inventory:
  - id: rot
    owner: t
    match: {path: "/etc/app/*"}
    rotate_every: 30d
)");
	feed(proc("e1", "id1", kT0));
	SecretSeen old = secret("e1", kFp1, kT0, "file", "/etc/app/token");
	old.first_seen_ns = kT0 - 29 * kDay;
	feed(old);
	EXPECT_TRUE(of("alert", "stale_credential").empty());
	// Rotated 2 days later: the old one is retired, the new one is young.
	SecretSeen fresh = secret("e1", kFp2, kT0 + 2 * kDay, "file", "/etc/app/token");
	fresh.rotated_from = kFp1;
	feed(fresh);
	// Periodic checks a week later find nothing stale.
	feed(Tick{kT0 + 9 * kDay});
	EXPECT_TRUE(of("alert", "stale_credential").empty());
}

TEST_F(CorrelatorTest, UnusedIsFoundByThePeriodicCheck)
{
	make(R"(
correlate:
  stale_check_interval: 1h
inventory:
  - id: dormant
    owner: t
    match: {fingerprint: 11111111111111111111111111111111}
    max_unused: 7d
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(Tick{kT0 + 6 * kDay});
	EXPECT_TRUE(of("alert", "stale_credential").empty());
	// No event at all touches it: only the clock moves.
	feed(Tick{kT0 + 8 * kDay});
	auto a = of("alert", "stale_credential");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["reason"], "unused");
	EXPECT_FALSE(a[0].contains("process"));
}

TEST_F(CorrelatorTest, UseKeepsItFromBeingUnused)
{
	make(R"(
correlate:
  stale_check_interval: 1h
inventory:
  - id: busy
    owner: t
    match: {fingerprint: 11111111111111111111111111111111}
    max_unused: 7d
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(connect("e1", kT0 + 5 * kDay));
	feed(Tick{kT0 + 8 * kDay});
	EXPECT_TRUE(of("alert", "stale_credential").empty());
}

TEST_F(CorrelatorTest, OwnerlessInventoryEntryIsUnowned)
{
	make(R"(
inventory:
  - id: nobody
    match: {fingerprint: 11111111111111111111111111111111}
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	EXPECT_TRUE(of("alert", "unowned_secret").empty()); // held, not used yet
	feed(connect("e1", kT0 + 1));
	auto a = of("alert", "unowned_secret");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_NE(a[0]["summary"].get<std::string>().find("names no owner"), std::string::npos);
}

TEST_F(CorrelatorTest, RevokedIsAlertedOnReadAndOnUse)
{
	make(R"(
inventory:
  - id: gone
    owner: t
    status: revoked
    match: {fingerprint: 11111111111111111111111111111111}
)");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	ASSERT_EQ(of("alert", "revoked_credential_used").size(), 1u);
	EXPECT_EQ(of("alert", "revoked_credential_used")[0]["severity"], "critical");
	// The use is the same finding, updated: the analyst sees it was used.
	feed(connect("e1", kT0 + 1));
	EXPECT_EQ(of("alert", "revoked_credential_used").size(), 1u);
	auto u = of("update", "revoked_credential_used");
	ASSERT_EQ(u.size(), 1u);
	EXPECT_EQ(u[0]["finding_id"], of("alert", "revoked_credential_used")[0]["finding_id"]);
	EXPECT_EQ(u[0]["new"], "id1|use");
	EXPECT_EQ(u[0]["count"], 2);
}

TEST_F(CorrelatorTest, OutOfScopeIdentity)
{
	make(R"(
inventory:
  - id: gl
    owner: t
    match: {fingerprint: 11111111111111111111111111111111}
    allowed_identities: ["spiffe://t/gitlab"]
)");
	feed(proc("e1", "spiffe://t/gitlab", kT0));
	feed(secret("e1", kFp1, kT0));
	EXPECT_TRUE(of("alert", "out_of_scope_identity").empty());
	feed(proc("e2", "spiffe://t/other", kT0));
	feed(secret("e2", kFp1, kT0));
	ASSERT_EQ(of("alert", "out_of_scope_identity").size(), 1u);
}

TEST_F(CorrelatorTest, HardcodedInConfigAndArgv)
{
	make();
	SecretSeen cfgsec = secret("", kFp1, kT0, "mcp_config", "/home/u/.cursor/mcp.json");
	cfgsec.server = "gitlab";
	cfgsec.line = 7;
	feed(cfgsec);
	auto a = of("alert", "hardcoded_secret");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["secret"]["server"], "gitlab");
	EXPECT_EQ(a[0]["secret"]["line"], 7);
	EXPECT_EQ(a[0]["secret"]["path"], "/home/u/.cursor/mcp.json");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp2, kT0, "argv", "--token"));
	a = of("alert", "hardcoded_secret");
	ASSERT_EQ(a.size(), 2u);
	EXPECT_EQ(a[1]["secret"]["arg"], "--token");
	// An env secret is not hard-coded.
	feed(secret("e1", kFp1, kT0, "env", "GITLAB_TOKEN"));
	EXPECT_EQ(of("alert", "hardcoded_secret").size(), 2u);
}

TEST_F(CorrelatorTest, HumanUseOfAnMcpWorkloadsSecret)
{
	make();
	feed(proc("srv", "spiffe://t/gitlab", kT0));
	feed(secret("srv", kFp1, kT0, "file", "/srv/gitlab/.env"));
	// A batch job without a terminal reading it is not a human.
	ProcStart job = proc("job", "spiffe://t/cron", kT0 + 1, "", false);
	feed(job);
	feed(secret("job", kFp1, kT0 + 1, "file", "/srv/gitlab/.env"));
	EXPECT_TRUE(of("alert", "human_use").empty());
	// An interactive shell's child (cat has no tty flag itself here, the
	// shell does).
	ProcStart shell = proc("sh", "spiffe://t/alice", kT0 + 2, "", false);
	shell.tty = true;
	feed(shell);
	// The kernel follows cat once it opens the watched file: it is still a
	// person's, not a workload's.
	ProcStart cat = proc("cat", "spiffe://t/alice", kT0 + 3, "sh", false);
	cat.tracked = true;
	feed(cat);
	feed(secret("cat", kFp1, kT0 + 3, "file", "/srv/gitlab/.env"));
	auto a = of("alert", "human_use");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["process"]["exec_id"], "cat");
	EXPECT_NE(std::find(a[0]["tags"].begin(), a[0]["tags"].end(), "owasp-nhi.nhi10"),
	          a[0]["tags"].end());
	// A server launched from a terminal is not a person.
	ProcStart srv2 = proc("srv2", "spiffe://t/other", kT0 + 4);
	srv2.tty = true;
	feed(srv2);
	feed(secret("srv2", kFp1, kT0 + 4, "file", "/srv/gitlab/.env"));
	EXPECT_EQ(of("alert", "human_use").size(), 1u);
}

TEST_F(CorrelatorTest, HumanUseIsOncePerTerminalSession)
{
	make();
	feed(proc("srv", "spiffe://t/gitlab", kT0));
	feed(secret("srv", kFp1, kT0, "file", "/srv/gitlab/.env"));
	// cat then grep at one terminal: different binaries, one session.
	auto at_terminal = [&](const std::string &id, const std::string &who, uint32_t sid,
	                       int64_t t) {
		ProcStart p = proc(id, who, t, "", false);
		p.tty = p.tracked = true;
		p.tty_nr = 34816; // pts/0
		p.sid = sid;
		feed(p);
		feed(secret(id, kFp1, t, "file", "/srv/gitlab/.env"));
	};
	at_terminal("cat", "spiffe://t/cat", 500, kT0 + 1);
	at_terminal("grep", "spiffe://t/grep", 500, kT0 + 2);
	EXPECT_EQ(of("alert", "human_use").size(), 1u);
	// Someone logs in again on pts/0: a new session, a new finding.
	at_terminal("less", "spiffe://t/less", 900, kT0 + 3);
	EXPECT_EQ(of("alert", "human_use").size(), 2u);
	// Session ids start over at boot: the same tty and sid after a reboot
	// is another login.
	at_terminal("boot1:100:7", "spiffe://t/cat", 700, kT0 + 4);
	at_terminal("boot1:120:8", "spiffe://t/grep", 700, kT0 + 5);
	at_terminal("boot2:100:7", "spiffe://t/cat", 700, kT0 + 6);
	EXPECT_EQ(of("alert", "human_use").size(), 4u);
}

TEST_F(CorrelatorTest, MonitorDegradedOnDropsAndAttributionFailures)
{
	make("correlate:\n  degraded_drops: 10\n  degraded_attribution_failures: 50\n");
	feed(HealthSeen{kT0, 1000, 0, 0, 0});
	feed(HealthSeen{kT0 + 60 * kSec, 2000, 5, 10, 0});
	EXPECT_TRUE(of("alert", "monitor_degraded").empty());
	feed(HealthSeen{kT0 + 120 * kSec, 3000, 40, 10, 0});
	auto a = of("alert", "monitor_degraded");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["kernel_drops"], 35);
	EXPECT_EQ(a[0]["reason"], "kernel_drops");
}

// Each loss window is an update of the one monitor_degraded finding, with
// its range and drops: an analyst sees every blind interval, not only the
// first of the dedupe window.
TEST_F(CorrelatorTest, EveryLossWindowUpdatesTheMonitorDegradedFinding)
{
	make("correlate:\n  dedupe_window: 10m\n");
	feed(HealthSeen{kT0, 0, 5, 0, 0});
	feed(HealthSeen{kT0 + 60 * kSec, 0, 10, 0, 0});
	feed(HealthSeen{kT0 + 120 * kSec, 0, 10, 0, 0}); // no loss in this one
	feed(HealthSeen{kT0 + 180 * kSec, 0, 15, 0, 0});
	auto a = of("alert", "monitor_degraded");
	auto u = of("update", "monitor_degraded");
	ASSERT_EQ(a.size(), 1u);
	ASSERT_EQ(u.size(), 2u);
	EXPECT_EQ(u[0]["finding_id"], a[0]["finding_id"]);
	EXPECT_EQ(u[1]["kernel_drops"], 5);
	EXPECT_EQ(u[1]["window_start"], rfc3339(kT0 + 120 * kSec));
	EXPECT_EQ(u[1]["window_end"], rfc3339(kT0 + 180 * kSec));
	EXPECT_EQ(u[1]["count"], 3);
	// Past the facet bound the newest windows are kept, so every later
	// loss still updates the finding.
	for (int i = 0; i < 300; i++)
		feed(HealthSeen{kT0 + (240 + 60 * i) * kSec, 0, static_cast<uint64_t>(20 + 5 * i),
		                0, 0});
	EXPECT_EQ(of("update", "monitor_degraded").size(), 302u);
}

// A finding's id is what it is about: the same on every run. Known
// findings (the ledger) are not raised again after a restart; what is new
// about them is an update.
TEST_F(CorrelatorTest, FindingsSurviveARestartAndKeepTheirIds)
{
	std::vector<FindingState> book;
	auto run = [&](bool third) {
		out.clear();
		make();
		corr->set_known_findings(book);
		corr->set_on_finding([&](const FindingState &f) {
			auto it = std::find_if(book.begin(), book.end(),
			                       [&](const auto &x) { return x.id == f.id; });
			if (it == book.end())
				book.push_back(f);
			else
				*it = f;
		});
		feed(proc("a", "spiffe://t/a", kT0));
		feed(secret("a", kFp1, kT0 + 1));
		feed(proc("b", "spiffe://t/b", kT0 + 2));
		feed(secret("b", kFp1, kT0 + 3));
		if (third) {
			feed(proc("c", "spiffe://t/c", kT0 + 4));
			feed(secret("c", kFp1, kT0 + 5));
		}
	};
	run(false);
	auto first = of("alert", "shared_credential");
	ASSERT_EQ(first.size(), 1u);
	std::string id = first[0]["finding_id"];
	EXPECT_EQ(id.size(), 32u);
	EXPECT_EQ(first[0]["alert_id"], id);
	run(true); // after a restart, a third holder
	EXPECT_TRUE(of("alert", "shared_credential").empty());
	auto u = of("update", "shared_credential");
	ASSERT_EQ(u.size(), 1u);
	EXPECT_EQ(u[0]["finding_id"], id);
	EXPECT_EQ(u[0]["new"], "spiffe://t/c");
	EXPECT_EQ(finding_id("host1", "shared_credential", kFp1), id);
}

// `exceptions:` suppress what they match, and are counted.
TEST_F(CorrelatorTest, ExceptionsSuppressMatchingAlerts)
{
	make(R"(
exceptions:
  - name: the scanner reads every .env
    rule: shared_credential
    identity: "spiffe://t/scanner*"
  - rule: "*"
    fingerprint: 22222222222222222222222222222222
)");
	feed(proc("a", "spiffe://t/a", kT0));
	feed(secret("a", kFp1, kT0));
	feed(proc("s", "spiffe://t/scanner", kT0 + 1));
	feed(secret("s", kFp1, kT0 + 1));
	EXPECT_TRUE(of("alert", "shared_credential").empty());
	feed(secret("a", kFp2, kT0 + 2, "argv", "argv[2]"));
	EXPECT_TRUE(of("alert", "hardcoded_secret").empty());
	EXPECT_EQ(corr->counters().alerts_excepted, 2u);
	// Another holder is still shared.
	feed(proc("b", "spiffe://t/b", kT0 + 3));
	feed(secret("b", kFp1, kT0 + 3));
	EXPECT_EQ(of("alert", "shared_credential").size(), 1u);
}

TEST_F(CorrelatorTest, RateLimitCountsWhatItSuppresses)
{
	make("correlate:\n  max_alerts_per_minute: 2\n");
	for (int i = 0; i < 5; i++) {
		std::string id = "e" + std::to_string(i);
		feed(proc(id, "id" + std::to_string(i), kT0));
		feed(secret(id, std::string(32, static_cast<char>('a' + i)), kT0, "argv",
		            "--token"));
	}
	EXPECT_EQ(of("alert").size(), 2u);
	EXPECT_EQ(corr->counters().alerts_rate_limited, 3u);
	// A minute later the limit resets.
	feed(proc("late", "idlate", kT0 + 61 * kSec));
	feed(secret("late", std::string(32, 'z'), kT0 + 61 * kSec, "argv", "--token"));
	EXPECT_EQ(of("alert").size(), 3u);
	// A finding whose first alert was suppressed is raised as an alert (not
	// an update of something the reader never saw) when it recurs.
	feed(proc("again", "id4", kT0 + 62 * kSec));
	feed(secret("again", std::string(32, 'e'), kT0 + 62 * kSec, "argv", "--token"));
	EXPECT_EQ(of("alert").size(), 4u);
	EXPECT_TRUE(of("update").empty());
}

TEST_F(CorrelatorTest, FileSecretsCountOnlyWithinTheUseWindow)
{
	make("correlate:\n  use_window: 10m\n");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0, "file", "/x/.env"));
	feed(connect("e1", kT0 + 11 * 60 * kSec));
	EXPECT_TRUE(of("secret_use").empty());
	// An env secret is held for the process's life.
	feed(secret("e1", kFp2, kT0 + 12 * 60 * kSec, "env", "TOKEN"));
	feed(connect("e1", kT0 + 3 * 3600 * kSec, "203.0.113.8"));
	ASSERT_EQ(of("secret_use").size(), 1u);
	EXPECT_EQ(of("secret_use")[0]["secret"]["fingerprint"], kFp2);
	// Nothing obtained after the connect counts for it.
	feed(proc("e2", "id2", kT0));
	feed(connect("e2", kT0 + 1));
	feed(secret("e2", kFp1, kT0 + 2));
	EXPECT_EQ(of("secret_use").size(), 1u);
}

TEST_F(CorrelatorTest, InheritedFromAParentOnlyWhenTheChildsEnvWasNotSeen)
{
	make();
	feed(proc("parent", "id1", kT0));
	feed(secret("parent", kFp1, kT0, "env", "TOKEN"));
	ProcStart child = proc("child", "id1", kT0 + 1, "parent");
	child.env_observed = false; // exited before /proc could be read
	feed(child);
	feed(connect("child", kT0 + 2));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["secret"]["holder_exec_id"], "parent");
	EXPECT_EQ(uses[0]["process"]["exec_id"], "child");
	EXPECT_EQ(uses[0]["process"]["ancestry"][0]["exec_id"], "parent");
	// A child whose environment was scanned and did not have it.
	ProcStart clean = proc("clean", "id1", kT0 + 3, "parent");
	feed(clean);
	feed(connect("clean", kT0 + 4));
	EXPECT_EQ(of("secret_use").size(), 1u);
	// A forked child shares everything, files too.
	feed(secret("parent", kFp2, kT0 + 5, "file", "/x/.env"));
	ProcStart fork = proc("fork", "id1", kT0 + 6, "parent");
	fork.forked = true;
	fork.env_observed = false;
	feed(fork);
	feed(connect("fork", kT0 + 7));
	uses = of("secret_use");
	ASSERT_EQ(uses.size(), 2u);
	EXPECT_EQ(uses[1]["pairing"], "ambiguous");
}

TEST_F(CorrelatorTest, DisabledRulesStaySilent)
{
	make("correlate:\n  disabled_rules: [unowned_secret]\n");
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0));
	feed(connect("e1", kT0 + 1));
	EXPECT_EQ(of("secret_use").size(), 1u);
	EXPECT_TRUE(of("alert").empty());
	EXPECT_THROW(parse_config("correlate:\n  disabled_rules: [nope]\n", "x"), ConfigError);
}

TEST_F(CorrelatorTest, ExitedProcessesAreForgottenAfterTheGrace)
{
	make("agent:\n  process_grace: 1m\n");
	for (int i = 0; i < 100; i++) {
		std::string id = "e" + std::to_string(i);
		feed(proc(id, "id", kT0));
		feed(ProcExit{kT0 + 1, id});
	}
	EXPECT_EQ(corr->processes(), 100u);
	feed(Tick{kT0 + 2 * 60 * kSec});
	EXPECT_EQ(corr->processes(), 0u);
}

TEST_F(CorrelatorTest, ExitedProcessesAreBoundedByCountWithinTheGrace)
{
	// Process churn must not grow memory for a whole grace period.
	make("agent:\n  process_grace: 1h\n  max_exited_processes: 50\n");
	feed(proc("live", "id", kT0));
	for (int i = 0; i < 1000; i++) {
		std::string id = "e" + std::to_string(i);
		feed(proc(id, "id", kT0 + i));
		feed(ProcExit{kT0 + i + 1, id});
	}
	EXPECT_EQ(corr->processes(), 51u); // the 50 latest exited and the live one
}

TEST_F(CorrelatorTest, ARecordingReplaysToTheSameRecords)
{
	std::string path = ::testing::TempDir() + "/kt-rec-" + std::to_string(getpid());
	std::vector<Input> inputs;
	inputs.push_back(proc("e1", "spiffe://t/a", kT0));
	inputs.push_back(secret("e1", kFp1, kT0));
	ProcStart b = proc("e2", "spiffe://t/b", kT0 + 1, "e1");
	b.selectors["env"] = "prod";
	b.tty = true;
	inputs.push_back(b);
	inputs.push_back(secret("e2", kFp1, kT0 + 1, "argv", "--token"));
	inputs.push_back(connect("e2", kT0 + 2, "2001:db8::1", 443, "x.example"));
	inputs.push_back(ProcExit{kT0 + 3, "e2"});
	inputs.push_back(HealthSeen{kT0 + 4, 10, 3, 1, 0});
	inputs.push_back(Tick{kT0 + 5});
	{
		RecordingWriter w(path);
		for (const auto &in : inputs)
			w.write(in);
		ASSERT_TRUE(w.flush());
	}
	make();
	for (const auto &in : inputs)
		feed(in);
	std::vector<json> direct = out;
	out.clear();
	clock.set(kT0);
	make();
	RecordingReader r(path);
	size_t n = 0;
	while (auto in = r.next()) {
		feed(*in);
		n++;
	}
	EXPECT_TRUE(r.error().empty()) << r.error();
	EXPECT_EQ(n, inputs.size());
	ASSERT_EQ(out.size(), direct.size());
	for (size_t i = 0; i < out.size(); i++) {
		out[i].erase("time");
		direct[i].erase("time");
		EXPECT_EQ(out[i], direct[i]);
	}
	// Cut in the middle of a frame: what came before is read, then an error.
	std::ifstream in(path, std::ios::binary);
	std::string all((std::istreambuf_iterator<char>(in)), {});
	std::ofstream(path, std::ios::binary | std::ios::trunc) << all.substr(0, all.size() - 5);
	RecordingReader cut(path);
	size_t m = 0;
	while (cut.next())
		m++;
	EXPECT_EQ(m, inputs.size() - 1);
	EXPECT_NE(cut.error().find("truncated"), std::string::npos);
	std::ofstream(path, std::ios::binary | std::ios::trunc) << "not a recording";
	EXPECT_THROW(RecordingReader bad(path), Error);
	unlink(path.c_str());
}

TEST_F(CorrelatorTest, DecoderRejectsGarbage)
{
	for (int len = 0; len < 64; len++) {
		std::vector<unsigned char> junk(len);
		for (int i = 0; i < len; i++)
			junk[i] = static_cast<unsigned char>(i * 37 + len);
		if (len)
			junk[0] = 1 + len % 6;
		auto in = decode_input(junk.data(), junk.size());
		(void)in; // must not crash; a valid parse is fine too
	}
	std::string good = encode_input(ConnectSeen{});
	EXPECT_TRUE(
	    decode_input(reinterpret_cast<const unsigned char *>(good.data()), good.size()));
	// Fields appended by later versions may be absent (an older recording),
	// but a frame cut inside a field is malformed.
	EXPECT_TRUE(
	    decode_input(reinterpret_cast<const unsigned char *>(good.data()), good.size() - 2));
	EXPECT_FALSE(
	    decode_input(reinterpret_cast<const unsigned char *>(good.data()), good.size() - 3));
	std::string longer = good + "x";
	EXPECT_FALSE(
	    decode_input(reinterpret_cast<const unsigned char *>(longer.data()), longer.size()));
}

TEST_F(CorrelatorTest, ASecondReportOfAHoldingWithAnEarlierTimeWins)
{
	// The agent can learn of a child in /proc before its exec record: the
	// first report has a late time, the exec record the real one.
	make();
	feed(proc("e1", "id1", kT0));
	feed(secret("e1", kFp1, kT0 + 10 * kSec));
	feed(connect("e1", kT0 + 5 * kSec)); // before the late time: not a use yet
	EXPECT_TRUE(of("secret_use").empty());
	feed(secret("e1", kFp1, kT0));
	feed(connect("e1", kT0 + 5 * kSec + 1));
	EXPECT_EQ(of("secret_use").size(), 1u);
}

// The book is bounded: past kMaxFindings the least recently seen are
// forgotten (and raised again if they come back), the rest kept.
TEST(FindingBook, IsBoundedAndForgetsTheLeastRecentlySeen)
{
	FindingBook book("h");
	FindingState *f = nullptr;
	const int64_t window = 1000;
	for (size_t i = 0; i < FindingBook::kMaxFindings; i++)
		ASSERT_EQ(
		    book.occur("r", std::to_string(i), "", static_cast<int64_t>(i), window, &f),
		    Occurrence::kNew);
	EXPECT_EQ(book.size(), FindingBook::kMaxFindings);
	book.occur("r", "one more", "", 1 << 30, window, &f);
	EXPECT_LE(book.size(), FindingBook::kMaxFindings - FindingBook::kMaxFindings / 8 + 1);
	const int64_t later = (1 << 30) + 1;
	EXPECT_EQ(book.occur("r", "0", "", later, window, &f), Occurrence::kNew);
	std::string newest = std::to_string(FindingBook::kMaxFindings - 1);
	EXPECT_NE(book.occur("r", newest, "", later, window, &f), Occurrence::kNew);
	EXPECT_EQ(f->count, 2u);
}
