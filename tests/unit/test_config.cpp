#include <gtest/gtest.h>

#include "keytrail/config/config.h"

using namespace keytrail;

namespace
{
std::string error_of(const std::string &yaml)
{
	try {
		parse_config(yaml, "cfg.yaml");
	} catch (const ConfigError &e) {
		return e.what();
	}
	return "";
}
} // namespace

TEST(Config, EmptyMeansDefaults)
{
	Config c = parse_config("", "x");
	EXPECT_EQ(c.state_dir, "/var/lib/keytrail");
	EXPECT_TRUE(c.builtin_rules);
	EXPECT_TRUE(c.outputs.empty());
}

TEST(Config, FullFile)
{
	Config c = parse_config(R"(
agent:
  state_dir: /tmp/kt
  ring_buffer_size: 16MiB
  health_interval: 5s
  connect_hold: 250ms
  events: true
tracking:
  builtin_rules: false
  watch_paths: [/etc/keytrail/*.token]
  rules:
    - name: x
      argv: "serve --mcp"
outputs:
  - type: stdout
  - type: file
    path: /var/log/keytrail/events.jsonl
identities: []
inventory: []
)",
	                        "x");
	EXPECT_EQ(c.state_dir, "/tmp/kt");
	EXPECT_EQ(c.ring_buffer_bytes, 16u << 20);
	EXPECT_EQ(c.health_interval.count(), 5000);
	EXPECT_EQ(c.connect_hold.count(), 250);
	EXPECT_TRUE(c.events);
	EXPECT_FALSE(c.builtin_rules);
	ASSERT_EQ(c.rules.size(), 1u);
	ASSERT_EQ(c.outputs.size(), 2u);
	EXPECT_EQ(c.outputs[1].path, "/var/log/keytrail/events.jsonl");
	EXPECT_EQ(c.watch_paths.at(0), "/etc/keytrail/*.token");
}

TEST(Config, ErrorsNameFileLineAndReason)
{
	EXPECT_EQ(error_of("agent:\n  statedir: /x\n"),
	          "cfg.yaml:2:3: unknown key 'statedir' in agent (expected one of: ancestry_depth, "
	          "connect_hold, events, health_interval, host_name, max_exited_processes, "
	          "metrics_address, "
	          "process_grace, "
	          "ring_buffer_size, state_dir)");
	EXPECT_NE(error_of("agent:\n  health_interval: soon\n")
	              .find("cfg.yaml:2:20: agent.health_interval"),
	          std::string::npos);
	EXPECT_NE(error_of("tracking:\n  rules:\n    - name: x\n")
	              .find("cfg.yaml:3:7: tracking rule 'x' has no condition"),
	          std::string::npos);
	EXPECT_NE(error_of("tracking:\n  rules:\n    - name: x\n      argv: \"([\"\n")
	              .find("not a valid regular expression"),
	          std::string::npos);
	EXPECT_NE(error_of("outputs:\n  - type: kafka\n").find("unknown output type 'kafka'"),
	          std::string::npos);
	EXPECT_NE(error_of("agent: [1, 2\n").find("cfg.yaml:"), std::string::npos); // YAML syntax
	EXPECT_NE(error_of("agent:\n  state_dir: relative\n").find("absolute"), std::string::npos);
	EXPECT_NE(error_of("bogus: 1\n").find("unknown key 'bogus'"), std::string::npos);
	// A tab in the indentation is named as such, where it is.
	EXPECT_EQ(error_of("agent:\n\tstate_dir: /x\n"),
	          "cfg.yaml:2:1: a tab in the indentation; YAML indents with spaces");
	EXPECT_EQ(error_of("agent:\n  state_dir: /x\ncorrelate:\n \tdedupe_window: 1h\n"),
	          "cfg.yaml:4:2: a tab in the indentation; YAML indents with spaces");
	// A list where a map belongs: what and where, never yaml-cpp's "invalid node".
	std::string shape = error_of("identities:\n  rules: {id: x}\n");
	EXPECT_NE(shape.find("cfg.yaml:2:"), std::string::npos) << shape;
	EXPECT_EQ(shape.find("invalid node"), std::string::npos) << shape;
}

TEST(Config, ATrustDomainAloneIsValid)
{
	Config c = parse_config("identities: {trust_domain: corp.example}\n", "cfg.yaml");
	EXPECT_EQ(c.trust_domain, "corp.example");
	EXPECT_TRUE(c.identities.empty());
}

TEST(Config, SettingsAreKeptPerKeyForReloads)
{
	Config a = parse_config("agent:\n  health_interval: 1s\ncorrelate:\n  loopback_upstreams: "
	                        "true\noutputs:\n  - type: stdout\n",
	                        "cfg.yaml");
	Config b = parse_config("agent:\n  health_interval: 2s\ncorrelate:\n  loopback_upstreams: "
	                        "true\noutputs:\n  - type: stdout\n",
	                        "cfg.yaml");
	EXPECT_NE(a.settings.at("agent.health_interval"), b.settings.at("agent.health_interval"));
	EXPECT_EQ(a.settings.at("correlate.loopback_upstreams"),
	          b.settings.at("correlate.loopback_upstreams"));
	EXPECT_EQ(a.settings.at("outputs"), b.settings.at("outputs"));
}

TEST(Config, DurationsAndSizes)
{
	EXPECT_EQ(parse_duration("90d").count(), 90LL * 86400000);
	EXPECT_EQ(parse_duration("12h").count(), 12LL * 3600000);
	EXPECT_EQ(parse_duration("250ms").count(), 250);
	EXPECT_THROW(parse_duration("5 s"), Error);
	EXPECT_THROW(parse_duration("h"), Error);
	EXPECT_EQ(parse_size("8MiB"), 8u << 20);
	EXPECT_EQ(parse_size("4096"), 4096u);
	EXPECT_THROW(parse_size("8MB"), Error);
}

TEST(Inventory, Parses)
{
	Config c = parse_config(R"(
inventory:
  - id: gitlab-bot
    owner: platform-team
    purpose: GitLab API for the MCP server
    match: { env: GITLAB_PERSONAL_ACCESS_TOKEN, identity: "spiffe://*/server-gitlab/*" }
    expires: 2027-01-31
    rotate_every: 90d
    max_unused: 30d
    allowed_identities: ["spiffe://*/server-gitlab/*"]
    allowed_upstreams: [gitlab.example.com, 10.0.0.0/8]
    environment: prod
  - id: aws-prod
    owner: cloud
    match: { path: "/home/*/.aws/credentials" }
    status: revoked
  - id: by-fp
    match: { fingerprint: [0123456789abcdef0123456789abcdef] }
)",
	                        "inv.yaml");
	ASSERT_EQ(c.inventory.size(), 3u);
	auto &g = c.inventory[0];
	EXPECT_EQ(g.owner, "platform-team");
	EXPECT_EQ(g.rotate_every->count(), 90LL * 86400000);
	EXPECT_TRUE(g.expires_ns);
	EXPECT_EQ(g.allowed_upstreams.size(), 2u);
	EXPECT_EQ(g.line, 3u);
}

TEST(Inventory, ValidationNamesFileLineAndField)
{
	auto err = [](const std::string &y) {
		try {
			parse_config(y, "inv.yaml");
		} catch (const ConfigError &e) {
			return std::string(e.what());
		}
		return std::string();
	};
	EXPECT_NE(err("inventory:\n  - id: a\n    match: {env: X}\n    expires: someday\n")
	              .find("inv.yaml:4:14: inventory 'a'.expires"),
	          std::string::npos);
	EXPECT_NE(err("inventory:\n  - id: a\n    match: {env: X}\n    status: retired\n")
	              .find("status must be"),
	          std::string::npos);
	// A value that is not a fingerprint may be the secret itself: never echoed.
	std::string fp_err =
	    err("inventory:\n  - id: a\n    match: {fingerprint: ghp_SECRETVALUE}\n");
	EXPECT_NE(fp_err.find("must be 32 lowercase hex digits"), std::string::npos) << fp_err;
	EXPECT_EQ(fp_err.find("SECRETVALUE"), std::string::npos) << fp_err;
	EXPECT_NE(err("inventory:\n  - id: a\n    match: {owner: x}\n")
	              .find("unknown key 'owner' in inventory 'a'.match"),
	          std::string::npos);
	EXPECT_NE(
	    err("inventory:\n  - id: a\n    match: {env: X}\n  - id: a\n    match: {env: Y}\n")
	        .find("defined twice"),
	    std::string::npos);
	EXPECT_NE(err("inventory:\n  - owner: x\n").find("needs an id"), std::string::npos);
	EXPECT_NE(err("inventory:\n  - id: a\n    match: {env: X}\n    rotate_every: 3 months\n")
	              .find("rotate_every"),
	          std::string::npos);
}

TEST(Config, ADuplicateKeyIsAnErrorNotASilentOverride)
{
	try {
		parse_config(
		    "correlate: {loopback_upstreams: true}\ncorrelate: {dedupe_window: 1m}\n",
		    "dup.yaml");
		FAIL() << "accepted";
	} catch (const ConfigError &e) {
		EXPECT_NE(std::string(e.what()).find("dup.yaml:2:1: key 'correlate' appears twice"),
		          std::string::npos)
		    << e.what();
	}
}
