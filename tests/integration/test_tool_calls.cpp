// The tool-call rules behind the real probes: a stdio MCP server (a small
// Python script the exec hint tracks, holding a token in its environment)
// driven through pipes by the test as its MCP client. The agent reads the
// JSON-RPC on the server's fd 0 and fd 1, joins it to the server's connects
// to loopback listeners, and raises secret_use_outside_tool_call and
// tool_credential_drift; the token is in no output.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "keytrail/output/journal.h"
#include "support/agent_process.h"
#include "support/fake_secrets.h"
#include "support/listener.h"
#include "support/tokens.h"

using namespace keytrail;
using namespace keytrail::test;
using nlohmann::json;

namespace
{

// Newline-delimited JSON-RPC on stdin/stdout: initialize, tools/list,
// tools/call of `fetch` (connects to 127.0.0.1:<port> and sends an HTTP
// request naming <host>), and a notification of the test's own,
// notifications/kt/background, on which it makes the same connect with no
// call in flight. Never prints its environment.
const char *kServer = R"PY(import json, socket, sys

def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()

def reach(port, host):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n").encode())
    s.close()

while True:
    line = sys.stdin.readline()
    if not line:
        break
    m = json.loads(line)
    method, mid, params = m.get("method"), m.get("id"), m.get("params") or {}
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "kt-tools", "version": "1.0.0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [
            {"name": "fetch", "inputSchema": {"type": "object"}}]}})
    elif method == "tools/call":
        a = params.get("arguments") or {}
        reach(a["port"], a["host"])
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "content": [{"type": "text", "text": "done"}], "isError": False}})
    elif method == "notifications/kt/background":
        reach(params["port"], params["host"])
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "no"}})
)PY";

// The server, run as `python3 <dir>/mcp-server-kttools` (the built-in rules
// track it by that name) with GITHUB_TOKEN in its environment (never in an
// argv), fd 0 and 1 pipes to the test.
class StdioServer
{
      public:
	StdioServer(const std::string &dir, const std::string &token)
	{
		path_ = dir + "/mcp-server-kttools";
		std::ofstream(path_) << kServer;
		chmod(path_.c_str(), 0755);
		int to[2], from[2];
		EXPECT_EQ(pipe2(to, O_CLOEXEC), 0);
		EXPECT_EQ(pipe2(from, O_CLOEXEC), 0);
		std::string env_tok = "GITHUB_TOKEN=" + token;
		pid_ = fork();
		if (pid_ == 0) {
			dup2(to[0], 0);
			dup2(from[1], 1);
			const char *argv[] = {"/usr/bin/python3", path_.c_str(), nullptr};
			const char *envp[] = {"PATH=/usr/bin:/bin", env_tok.c_str(), nullptr};
			execve(argv[0], const_cast<char **>(argv), const_cast<char **>(envp));
			_exit(127);
		}
		close(to[0]);
		close(from[1]);
		in_ = to[1];
		out_ = from[0];
	}
	~StdioServer()
	{
		if (in_ >= 0)
			close(in_);
		if (out_ >= 0)
			close(out_);
		if (pid_ > 0) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
		}
	}
	StdioServer(const StdioServer &) = delete;
	StdioServer &operator=(const StdioServer &) = delete;
	pid_t pid() const { return pid_; }

	void notify(const std::string &method, const json &params)
	{
		send({{"jsonrpc", "2.0"}, {"method", method}, {"params", params}});
	}
	// A request; its reply (null after 10 s without one).
	json request(const std::string &method, const json &params)
	{
		int id = ++next_id_;
		send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}});
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
		for (;;) {
			size_t nl;
			while ((nl = buf_.find('\n')) != std::string::npos) {
				json m = json::parse(buf_.substr(0, nl), nullptr, false);
				buf_.erase(0, nl + 1);
				if (!m.is_discarded() && m.value("id", -1) == id)
					return m;
			}
			int left =
			    static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
			                         deadline - std::chrono::steady_clock::now())
			                         .count());
			pollfd p{out_, POLLIN, 0};
			if (left <= 0 || poll(&p, 1, left) <= 0)
				return nullptr;
			char b[4096];
			ssize_t n = read(out_, b, sizeof(b));
			if (n <= 0)
				return nullptr;
			buf_.append(b, static_cast<size_t>(n));
		}
	}
	json call_fetch(uint16_t port, const std::string &host)
	{
		return request("tools/call", {{"name", "fetch"},
		                              {"arguments", {{"port", port}, {"host", host}}}});
	}
	// The connect with no call in flight; then a ping (answered -32601) so
	// the connect is done before the test writes anything else. A request
	// written right after the notification can reach the server in the same
	// read(0): the agent times the call from that read, before the server
	// got to the notification, and the connect would be credited to it.
	void background(uint16_t port)
	{
		notify("notifications/kt/background", {{"port", port}, {"host", "bg.kt.test"}});
		ASSERT_TRUE(request("ping", json::object()).is_object());
	}
	// initialize, notifications/initialized and tools/list, as a client does.
	void handshake()
	{
		json init =
		    request("initialize",
		            {{"protocolVersion", "2025-06-18"},
		             {"capabilities", json::object()},
		             {"clientInfo", {{"name", "kt-test-client"}, {"version", "0.1"}}}});
		ASSERT_TRUE(init.is_object());
		ASSERT_EQ(init["result"]["serverInfo"]["name"], "kt-tools");
		notify("notifications/initialized", json::object());
		json tools = request("tools/list", json::object());
		ASSERT_TRUE(tools.is_object());
		ASSERT_EQ(tools["result"]["tools"][0]["name"], "fetch");
	}

      private:
	void send(const json &m)
	{
		std::string line = m.dump() + "\n";
		ASSERT_EQ(write(in_, line.data(), line.size()), static_cast<ssize_t>(line.size()));
	}
	std::string path_, buf_;
	pid_t pid_ = -1;
	int in_ = -1, out_ = -1, next_id_ = 0;
};

std::vector<json> of_pid(const std::vector<json> &recs, pid_t pid, const std::string &type,
                         const std::string &rule = "")
{
	std::vector<json> v;
	for (const auto &r : recs) {
		if (r["type"] != type || (!rule.empty() && r.value("rule", "") != rule))
			continue;
		json p = r.contains("process") ? r["process"]["pid"] : r.value("pid", json());
		if (p.is_number() && p.get<pid_t>() == pid)
			v.push_back(r);
	}
	return v;
}

std::string config(const std::string &dir, const std::string &correlate)
{
	std::string path = dir + "/cfg.yaml";
	std::ofstream(path) << "agent:\n  state_dir: " << dir << "/state\n  connect_hold: 300ms\n"
	                    << "secrets:\n  scan_mcp_configs: false\n"
	                    << "correlate:\n  loopback_upstreams: true\n  tool_call_linger: 1s\n"
	                    << correlate;
	return path;
}

// Waits for the agent's `secret` record of the server's token: the server
// is tracked and its stdio captured from then on.
void wait_tracked(AgentProcess &a, const StdioServer &s)
{
	ASSERT_TRUE(a.wait_until(
	    [&] { return !of_pid(records(a.out()), s.pid(), "secret").empty(); }, 10000))
	    << slurp(a.out());
}

void expect_nowhere(const std::string &secret, const AgentProcess &a, const std::string &dir)
{
	for (const auto &f : {a.out(), a.err(), dir + "/state/status.json",
	                      dir + "/state/ledger.db", dir + "/state/ledger.db-wal"})
		EXPECT_EQ(slurp(f).find(secret), std::string::npos) << "secret found in " << f;
	size_t lines = 0;
	EXPECT_TRUE(read_journal(dir + "/state/journal", [&](json &&r) {
		lines++;
		EXPECT_EQ(r.dump().find(secret), std::string::npos) << "secret in the journal";
		return true;
	}));
	EXPECT_GT(lines, 0u);
}

// Waits (up to 10 s) until the agent has raised `rule` about the server.
bool wait_alert(AgentProcess &a, const StdioServer &s, const char *rule)
{
	return a.wait_until(
	    [&] { return !of_pid(records(a.out()), s.pid(), "alert", rule).empty(); }, 10000);
}

// Waits until the server's calls have their tool_call records, then stops
// the agent: once a call's record is out, every use before it is in.
void stop_after_calls(AgentProcess &a, const StdioServer &s, size_t n)
{
	ASSERT_TRUE(a.wait_until(
	    [&] { return of_pid(records(a.out()), s.pid(), "tool_call").size() >= n; }, 10000))
	    << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
}

// Each call succeeded and credits exactly the planted token.
void expect_calls_credit(const std::vector<json> &calls, const std::string &fp)
{
	for (const auto &c : calls) {
		EXPECT_EQ(c["outcome"], "ok");
		ASSERT_EQ(c["credentials"].size(), 1u) << c.dump();
		EXPECT_EQ(c["credentials"][0]["fingerprint"], fp);
	}
}

// An agent with `correlate` settings, and the server holding a fresh token
// (seeded by `seed`), tracked and past its MCP handshake.
struct Session {
	Session(const std::string &correlate, int seed)
	    : dir(prepared_dir()), tok(token("ghp_", 36, seed)),
	      a({"run", "--config", config(dir, correlate), "-o", dir + "/out.jsonl"}, dir)
	{
	}
	static std::string prepared_dir()
	{
		std::string d = temp_dir();
		chmod(d.c_str(), 0755);
		return d;
	}
	// The server, once the agent is ready.
	StdioServer &start()
	{
		EXPECT_TRUE(a.wait_ready()) << slurp(a.err());
		s = std::make_unique<StdioServer>(dir, tok);
		wait_tracked(a, *s);
		s->handshake();
		return *s;
	}
	std::string dir, tok;
	AgentProcess a;
	std::unique_ptr<StdioServer> s;
};

} // namespace

TEST(ToolCalls, ServerConnectingWithNoCallInFlightRaisesOneOutsideToolCallAlert)
{
	Listener up;
	Session run("  tool_call_startup_grace: 2s\n  tool_baseline_window: 1h\n", 1801);
	StdioServer &s = run.start();
	AgentProcess &a = run.a;
	const std::string &dir = run.dir, &tok = run.tok;
	auto start = std::chrono::steady_clock::now();
	// Within the start-up grace: background traffic, but no alert.
	s.background(up.port());
	std::this_thread::sleep_until(start + std::chrono::milliseconds(2500));
	// A use inside a call is no alert either.
	ASSERT_TRUE(s.call_fetch(up.port(), "call.kt.test").is_object());
	// Past the grace, outside any call: one alert, however many connects.
	s.background(up.port());
	ASSERT_TRUE(wait_alert(a, s, "secret_use_outside_tool_call")) << slurp(a.out());
	s.background(up.port());
	ASSERT_TRUE(s.call_fetch(up.port(), "call.kt.test").is_object());
	stop_after_calls(a, s, 2);

	auto recs = records(a.out());
	std::string fp = fingerprint_of(tok, dir + "/state");
	auto alerts = of_pid(recs, s.pid(), "alert", "secret_use_outside_tool_call");
	ASSERT_EQ(alerts.size(), 1u) << slurp(a.out());
	const json &al = alerts[0];
	EXPECT_EQ(al["process"]["mcp_server"], "mcp-server-kttools");
	EXPECT_NE(al["identity"]["id"].get<std::string>().find("mcp-server-kttools"),
	          std::string::npos);
	EXPECT_EQ(al["secret"]["fingerprint"], fp);
	EXPECT_EQ(al["upstream"]["port"], up.port());
	EXPECT_NE(al["summary"].get<std::string>().find("no MCP tool call in flight"),
	          std::string::npos);
	EXPECT_TRUE(of_pid(recs, s.pid(), "alert", "tool_credential_drift").empty());

	// The calls: both written, each crediting the token toward the listener.
	auto calls = of_pid(recs, s.pid(), "tool_call");
	ASSERT_EQ(calls.size(), 2u);
	for (const auto &c : calls) {
		EXPECT_EQ(c["tool"], "fetch");
		EXPECT_EQ(c["client"]["name"], "kt-test-client");
	}
	expect_calls_credit(calls, fp);
	expect_nowhere(tok, a, dir);
}

TEST(ToolCalls, ToolReachingANewUpstreamAfterItsBaselineRaisesDriftOnce)
{
	Listener up_a, up_b;
	Session run("  tool_call_startup_grace: 100ms\n  tool_baseline_window: 1s\n", 1802);
	StdioServer &s = run.start();
	AgentProcess &a = run.a;
	const std::string &dir = run.dir, &tok = run.tok;
	// Learned: fetch used the token toward A, within its baseline window.
	auto start = std::chrono::steady_clock::now();
	ASSERT_TRUE(s.call_fetch(up_a.port(), "a.kt.test").is_object());
	ASSERT_TRUE(s.call_fetch(up_a.port(), "a.kt.test").is_object());
	// Past the window: B is new, then known.
	std::this_thread::sleep_until(start + std::chrono::milliseconds(1500));
	ASSERT_TRUE(s.call_fetch(up_b.port(), "b.kt.test").is_object());
	ASSERT_TRUE(wait_alert(a, s, "tool_credential_drift")) << slurp(a.out());
	ASSERT_TRUE(s.call_fetch(up_b.port(), "b.kt.test").is_object());
	ASSERT_TRUE(s.call_fetch(up_a.port(), "a.kt.test").is_object());
	stop_after_calls(a, s, 5);

	auto recs = records(a.out());
	std::string fp = fingerprint_of(tok, dir + "/state");
	auto drift = of_pid(recs, s.pid(), "alert", "tool_credential_drift");
	ASSERT_EQ(drift.size(), 1u) << slurp(a.out());
	const json &d = drift[0];
	EXPECT_EQ(d["process"]["mcp_server"], "mcp-server-kttools");
	EXPECT_EQ(d["secret"]["fingerprint"], fp);
	EXPECT_EQ(d["upstream"]["port"], up_b.port());
	EXPECT_EQ(d["mcp"]["tool_call"]["tool"], "fetch");
	EXPECT_EQ(d["mcp"]["tool_call"]["client"], "kt-test-client");
	ASSERT_EQ(d["mcp"]["baseline"].size(), 1u) << d.dump();
	EXPECT_NE(d["mcp"]["baseline"][0].get<std::string>().find(std::to_string(up_a.port())),
	          std::string::npos)
	    << d.dump();
	// Every use was inside a call.
	EXPECT_TRUE(of_pid(recs, s.pid(), "alert", "secret_use_outside_tool_call").empty());
	auto calls = of_pid(recs, s.pid(), "tool_call");
	ASSERT_EQ(calls.size(), 5u);
	expect_calls_credit(calls, fp);
	expect_nowhere(tok, a, dir);
}
