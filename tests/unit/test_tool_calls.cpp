// MCP tool calls in the correlator: the join of uses to the call in flight,
// the tool_call record, tool_credential_drift and
// secret_use_outside_tool_call, on synthetic inputs and a manual clock.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include "keytrail/agent/processes.h"
#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/mcp/jsonrpc.h"

using namespace keytrail;
using nlohmann::json;

namespace
{

constexpr int64_t kSec = 1000000000LL;
constexpr int64_t kMs = 1000000LL;
constexpr int64_t kT0 = 1795000000LL * kSec;
const char *kFp1 = "11111111111111111111111111111111";
const char *kFp2 = "22222222222222222222222222222222";

class ToolCallTest : public ::testing::Test
{
      protected:
	void make(const std::string &yaml = "correlate:\n  tool_call_linger: 1s\n")
	{
		cfg = parse_config(yaml, "test.yaml");
		corr = std::make_unique<Correlator>(
		    "host1", cfg, clock, [this](Record &&r) { out.push_back(to_json(r)); });
	}
	void feed(Input in)
	{
		clock.advance_to(input_time(in));
		corr->feed(in);
	}
	// A server process (its own workload root) holding kFp-style tokens.
	void server(const std::string &exec_id, const std::string &name, const char *fp, int64_t t)
	{
		ProcStart p;
		p.time_ns = t;
		p.exec_id = exec_id;
		p.pid = static_cast<uint32_t>(std::hash<std::string>{}(exec_id) % 30000 + 100);
		p.comm = "node";
		p.exe = "/usr/bin/node";
		p.identity = "spiffe://t/" + name;
		p.selectors = {{"mcp.server", name}};
		p.tracked = true;
		p.mcp_server = name;
		p.workload = exec_id;
		p.env_observed = true;
		feed(p);
		SecretSeen s;
		s.time_ns = t + 1;
		s.exec_id = exec_id;
		s.fingerprint = fp;
		s.type = "gitlab_pat";
		s.source = "env";
		s.location = "GITLAB_TOKEN";
		feed(s);
	}
	McpSeen msg(const std::string &exec_id, int64_t t, uint8_t dir, const std::string &method,
	            const std::string &id, const std::string &tool = "")
	{
		McpSeen m;
		m.time_ns = t;
		m.exec_id = exec_id;
		m.dir = dir;
		m.kind = method.empty() ? mcp::Message::kResponse
		         : id.empty()   ? mcp::Message::kNotification
		                        : mcp::Message::kRequest;
		m.method = method;
		m.id = id;
		m.tool = tool;
		return m;
	}
	void initialize(const std::string &exec_id, int64_t t)
	{
		McpSeen i = msg(exec_id, t, McpSeen::kIn, "initialize", "0");
		i.client_name = "claude-code";
		i.client_version = "2.0.1";
		i.protocol_version = "2025-06-18";
		feed(i);
		McpSeen r = msg(exec_id, t + kMs, McpSeen::kOut, "", "0");
		r.server_name = "gitlab";
		r.server_version = "1.0";
		feed(r);
	}
	ConnectSeen connect(const std::string &exec_id, int64_t t, const std::string &host,
	                    uint16_t port = 443)
	{
		ConnectSeen c;
		c.time_ns = t;
		c.exec_id = exec_id;
		c.family = AF_INET;
		c.sock_type = SOCK_STREAM;
		c.port = port;
		c.addr = "203.0.113.7";
		c.sni = host;
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
	void later(int64_t t)
	{
		clock.advance_to(t);
		corr->tick();
	}

	ManualClock clock{kT0};
	Config cfg;
	std::unique_ptr<Correlator> corr;
	std::vector<json> out;
};

} // namespace

TEST_F(ToolCallTest, UseDuringACallNamesItAndTheCallRecordListsWhatItUsed)
{
	make();
	server("s1", "gitlab", kFp1, kT0);
	initialize("s1", kT0 + kSec);
	feed(msg("s1", kT0 + 2 * kSec, McpSeen::kIn, "tools/call", "3", "get_project"));
	feed(connect("s1", kT0 + 2 * kSec + 10 * kMs, "gitlab.example.test"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_EQ(uses[0]["mcp"]["tool_call"]["tool"], "get_project");
	EXPECT_EQ(uses[0]["mcp"]["tool_call"]["id"], "3");
	EXPECT_EQ(uses[0]["mcp"]["tool_call"]["client"], "claude-code");
	EXPECT_TRUE(uses[0]["mcp"]["tool_call"].contains("started"));
	EXPECT_TRUE(of("tool_call").empty()); // still in flight
	feed(msg("s1", kT0 + 2 * kSec + 50 * kMs, McpSeen::kOut, "", "3"));
	later(kT0 + 2 * kSec + 500 * kMs);
	EXPECT_TRUE(of("tool_call").empty()); // lingering: a held connect may still come
	later(kT0 + 5 * kSec);
	auto calls = of("tool_call");
	ASSERT_EQ(calls.size(), 1u);
	const json &c = calls[0];
	EXPECT_EQ(c["tool"], "get_project");
	EXPECT_EQ(c["id"], "3");
	EXPECT_EQ(c["outcome"], "ok");
	EXPECT_EQ(c["ok"], true);
	EXPECT_EQ(c["client"]["name"], "claude-code");
	EXPECT_EQ(c["server_info"]["name"], "gitlab");
	EXPECT_EQ(c["protocol_version"], "2025-06-18");
	EXPECT_DOUBLE_EQ(c["duration_ms"].get<double>(), 50.0);
	EXPECT_EQ(c["upstreams"], json::array({"gitlab.example.test:443"}));
	ASSERT_EQ(c["credentials"].size(), 1u);
	EXPECT_EQ(c["credentials"][0]["fingerprint"], kFp1);
	EXPECT_EQ(c["process"]["exec_id"], "s1");
	EXPECT_EQ(corr->counters().tool_calls, 1u);
}

TEST_F(ToolCallTest, TwoServersCalledAtOnceAreNotMixed)
{
	make();
	server("a", "gitlab", kFp1, kT0);
	server("b", "github", kFp2, kT0 + 10);
	feed(msg("a", kT0 + kSec, McpSeen::kIn, "tools/call", "1", "tool_a"));
	feed(msg("b", kT0 + kSec + kMs, McpSeen::kIn, "tools/call", "1", "tool_b"));
	feed(connect("b", kT0 + kSec + 2 * kMs, "api.github.com"));
	feed(connect("a", kT0 + kSec + 3 * kMs, "gitlab.com"));
	feed(msg("a", kT0 + kSec + 4 * kMs, McpSeen::kOut, "", "1"));
	feed(msg("b", kT0 + kSec + 5 * kMs, McpSeen::kOut, "", "1"));
	later(kT0 + 10 * kSec);
	for (const auto &u : of("secret_use")) {
		bool a = u["secret"]["fingerprint"] == kFp1;
		EXPECT_EQ(u["mcp"]["tool_call"]["tool"], a ? "tool_a" : "tool_b");
	}
	auto calls = of("tool_call");
	ASSERT_EQ(calls.size(), 2u);
	for (const auto &c : calls) {
		bool a = c["tool"] == "tool_a";
		ASSERT_EQ(c["credentials"].size(), 1u);
		EXPECT_EQ(c["credentials"][0]["fingerprint"], a ? kFp1 : kFp2);
		EXPECT_EQ(c["upstreams"][0], a ? "gitlab.com:443" : "api.github.com:443");
	}
}

TEST_F(ToolCallTest, ConcurrentCallsOfOneServerCreditNone)
{
	make();
	server("s1", "gitlab", kFp1, kT0);
	feed(msg("s1", kT0 + kSec, McpSeen::kIn, "tools/call", "1", "x"));
	feed(msg("s1", kT0 + kSec + kMs, McpSeen::kIn, "tools/call", "2", "y"));
	feed(connect("s1", kT0 + kSec + 2 * kMs, "gitlab.com"));
	auto uses = of("secret_use");
	ASSERT_EQ(uses.size(), 1u);
	EXPECT_FALSE(uses[0]["mcp"].contains("tool_call"));
	EXPECT_EQ(uses[0]["mcp"]["tool_calls_in_flight"], 2);
	EXPECT_EQ(corr->counters().uses_in_concurrent_calls, 1u);
}

TEST_F(ToolCallTest, OutcomesErrorCancelledAndNoReply)
{
	make();
	server("s1", "gitlab", kFp1, kT0);
	McpSeen err = msg("s1", kT0 + 2 * kSec, McpSeen::kOut, "", "1");
	err.is_error = true;
	feed(msg("s1", kT0 + kSec, McpSeen::kIn, "tools/call", "1", "bad"));
	feed(err);
	feed(msg("s1", kT0 + 3 * kSec, McpSeen::kIn, "tools/call", "\"c\"", "slow"));
	McpSeen cancel = msg("s1", kT0 + 4 * kSec, McpSeen::kIn, "notifications/cancelled", "");
	cancel.cancelled_id = "\"c\"";
	feed(cancel);
	feed(msg("s1", kT0 + 5 * kSec, McpSeen::kIn, "tools/call", "9", "never"));
	feed(ProcExit{kT0 + 6 * kSec, "s1"});
	later(kT0 + 20 * kSec);
	std::map<std::string, std::string> outcome;
	for (const auto &c : of("tool_call"))
		outcome[c["tool"]] = c["outcome"];
	EXPECT_EQ(outcome["bad"], "error");
	EXPECT_EQ(outcome["slow"], "cancelled");
	EXPECT_EQ(outcome["never"], "no_reply");
	EXPECT_EQ(corr->counters().tool_calls_unanswered, 1u);
}

TEST_F(ToolCallTest, SecretUseOutsideToolCallAfterStartupGrace)
{
	make("correlate:\n  tool_call_startup_grace: 10s\n");
	server("s1", "gitlab", kFp1, kT0);
	initialize("s1", kT0);
	feed(connect("s1", kT0 + 2 * kSec, "gitlab.com")); // start-up: fine
	EXPECT_TRUE(of("alert", "secret_use_outside_tool_call").empty());
	feed(connect("s1", kT0 + 30 * kSec, "telemetry.example.test"));
	auto a = of("alert", "secret_use_outside_tool_call");
	ASSERT_EQ(a.size(), 1u);
	EXPECT_EQ(a[0]["severity"], "low");
	EXPECT_EQ(a[0]["secret"]["fingerprint"], kFp1);
	// A server whose stdio we never read (no session) raises nothing.
	server("s2", "other", kFp2, kT0);
	feed(connect("s2", kT0 + 40 * kSec, "x.example.test"));
	EXPECT_EQ(of("alert", "secret_use_outside_tool_call").size(), 1u);
	// Disabled like any rule.
	make("correlate:\n  disabled_rules: [secret_use_outside_tool_call]\n"
	     "  tool_call_startup_grace: 1s\n");
	out.clear();
	server("s3", "gitlab", kFp1, kT0 + 50 * kSec);
	initialize("s3", kT0 + 50 * kSec);
	feed(connect("s3", kT0 + 60 * kSec, "gitlab.com"));
	EXPECT_TRUE(of("alert", "secret_use_outside_tool_call").empty());
}

TEST_F(ToolCallTest, DriftAfterTheBaselineWindowAlertsOnceAndSurvivesRestart)
{
	const std::string yaml = "correlate:\n  tool_baseline_window: 1h\n  tool_call_linger: 1s\n";
	make(yaml);
	std::vector<Correlator::ToolUpstream> learned;
	corr->set_on_tool_upstream(
	    [&](const Correlator::ToolUpstream &u) { learned.push_back(u); });
	server("s1", "gitlab", kFp1, kT0);
	auto call = [&](const std::string &id, int64_t t, const std::string &host) {
		feed(msg("s1", t, McpSeen::kIn, "tools/call", id, "get_project"));
		feed(connect("s1", t + kMs, host));
		feed(msg("s1", t + 2 * kMs, McpSeen::kOut, "", id));
	};
	call("1", kT0 + kSec, "gitlab.com");
	call("2", kT0 + 600 * kSec, "mirror.gitlab.com"); // still learning
	EXPECT_TRUE(of("alert", "tool_credential_drift").empty());
	ASSERT_EQ(learned.size(), 2u);
	EXPECT_EQ(learned[1].tool, "get_project");
	EXPECT_EQ(learned[1].fingerprint, kFp1);
	EXPECT_EQ(learned[1].upstream, "mirror.gitlab.com:443");

	// A restart: the baseline comes back from the ledger.
	make(yaml);
	corr->set_tool_baseline(learned);
	out.clear();
	server("s2", "gitlab", kFp1, kT0 + 7200 * kSec);
	auto call2 = [&](const std::string &id, int64_t t, const std::string &host) {
		feed(msg("s2", t, McpSeen::kIn, "tools/call", id, "get_project"));
		feed(connect("s2", t + kMs, host));
		feed(msg("s2", t + 2 * kMs, McpSeen::kOut, "", id));
	};
	call2("1", kT0 + 7201 * kSec, "gitlab.com"); // known
	EXPECT_TRUE(of("alert", "tool_credential_drift").empty());
	call2("2", kT0 + 7300 * kSec, "exfil.example.test");
	auto d = of("alert", "tool_credential_drift");
	ASSERT_EQ(d.size(), 1u);
	EXPECT_EQ(d[0]["upstream"]["sni"], "exfil.example.test");
	EXPECT_EQ(d[0]["mcp"]["tool_call"]["tool"], "get_project");
	EXPECT_EQ(d[0]["mcp"]["baseline"],
	          json::array({"gitlab.com:443", "mirror.gitlab.com:443"}));
	call2("3", kT0 + 7400 * kSec, "exfil.example.test"); // once
	EXPECT_EQ(of("alert", "tool_credential_drift").size(), 1u);
}

TEST_F(ToolCallTest, RecordingKeepsMcpInputs)
{
	McpSeen m;
	m.time_ns = kT0;
	m.exec_id = "e";
	m.dir = McpSeen::kOut;
	m.kind = mcp::Message::kResponse;
	m.is_error = true;
	m.partial = true;
	m.id = "\"x\"";
	m.server_name = "srv";
	m.tools = {"a", "b"};
	std::string frame = encode_input(m);
	auto back =
	    decode_input(reinterpret_cast<const unsigned char *>(frame.data()), frame.size());
	ASSERT_TRUE(back);
	const McpSeen &r = std::get<McpSeen>(*back);
	EXPECT_EQ(r.id, "\"x\"");
	EXPECT_TRUE(r.is_error);
	EXPECT_TRUE(r.partial);
	EXPECT_FALSE(r.tools_truncated);
	EXPECT_EQ(r.server_name, "srv");
	EXPECT_EQ(r.tools, (std::vector<std::string>{"a", "b"}));
	EXPECT_EQ(r.dir, McpSeen::kOut);
}

// The agent's argument keys reach the call's record (masked like every
// name), and a call without them has no argument_keys at all.
TEST_F(ToolCallTest, ArgumentKeysTheAgentKeptAreListedOnTheCallRecord)
{
	make();
	server("s1", "gitlab", kFp1, kT0);
	initialize("s1", kT0 + kSec);
	McpSeen call = msg("s1", kT0 + 2 * kSec, McpSeen::kIn, "tools/call", "4", "create_issue");
	call.argument_keys = {"project", "title", "ghp_0123456789abcdefghijABCDEFGHIJ012345"};
	feed(call);
	feed(msg("s1", kT0 + 2 * kSec + 10 * kMs, McpSeen::kOut, "", "4"));
	feed(msg("s1", kT0 + 3 * kSec, McpSeen::kIn, "tools/call", "5", "list"));
	feed(msg("s1", kT0 + 3 * kSec + 10 * kMs, McpSeen::kOut, "", "5"));
	later(kT0 + 10 * kSec);
	auto calls = of("tool_call");
	ASSERT_EQ(calls.size(), 2u);
	ASSERT_TRUE(calls[0].contains("argument_keys")) << calls[0].dump();
	const json &keys = calls[0]["argument_keys"];
	ASSERT_EQ(keys.size(), 3u);
	EXPECT_EQ(keys[0], "project");
	EXPECT_EQ(keys[1], "title");
	EXPECT_EQ(keys[2].get<std::string>().find("0123456789abcdefghij"), std::string::npos)
	    << "a credential-looking key is masked";
	EXPECT_FALSE(calls[1].contains("argument_keys"));
}

TEST(McpTransport, HttpServersAreRecognisedByTheirArguments)
{
	EXPECT_TRUE(http_transport({"node", "server.js", "--transport", "streamable-http"}));
	EXPECT_TRUE(http_transport({"mcp-server-x", "--port=8080"}));
	EXPECT_TRUE(http_transport({"uvx", "mcp-server-fetch", "sse"}));
	EXPECT_TRUE(http_transport({"srv", "--transport", "http"}));
	EXPECT_FALSE(http_transport({"srv", "--transport", "stdio"}));
	EXPECT_FALSE(http_transport({"node", "dist/index.js", "/srv/project"}));
	EXPECT_FALSE(http_transport({"http"})); // argv[0] is the program
}
