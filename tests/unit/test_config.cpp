#include <gtest/gtest.h>

#include "keytrail/config/config.h"

using namespace keytrail;

namespace {
std::string error_of(const std::string &yaml)
{
	try {
		parse_config(yaml, "cfg.yaml");
	} catch (const ConfigError &e) {
		return e.what();
	}
	return "";
}
}  // namespace

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
		  "connect_hold, events, health_interval, max_exited_processes, process_grace, "
		  "ring_buffer_size, state_dir)");
	EXPECT_NE(error_of("agent:\n  health_interval: soon\n").find("cfg.yaml:2:20: agent.health_interval"),
		  std::string::npos);
	EXPECT_NE(error_of("tracking:\n  rules:\n    - name: x\n").find("cfg.yaml:3:7: tracking rule 'x' has no condition"),
		  std::string::npos);
	EXPECT_NE(error_of("tracking:\n  rules:\n    - name: x\n      argv: \"([\"\n").find("not a valid regular expression"),
		  std::string::npos);
	EXPECT_NE(error_of("outputs:\n  - type: kafka\n").find("unknown output type 'kafka'"), std::string::npos);
	EXPECT_NE(error_of("agent: [1, 2\n").find("cfg.yaml:"), std::string::npos);  // YAML syntax
	EXPECT_NE(error_of("agent:\n  state_dir: relative\n").find("absolute"), std::string::npos);
	EXPECT_NE(error_of("bogus: 1\n").find("unknown key 'bogus'"), std::string::npos);
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
