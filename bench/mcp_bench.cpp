// keytrail-bench-mcp: what stdio MCP capture costs (docs/benchmark.md).
//
//   1. A stdio "server" (this binary, --serve: reads JSON-RPC lines on fd 0,
//      answers each on fd 1) driven at --rate tools/call per second for
//      --seconds, without an agent and under `keytrail run --track PID`
//      (the server is then a stdio MCP server: its reads and writes are
//      captured). Reported: the server's CPU per call (wait4), the agent's
//      CPU per call, and the kernel-side time of the read/write hooks per
//      call (bpf_stats run_time_ns).
//   2. An untracked process reading /dev/zero and writing /dev/null under
//      the no-op floor and under the agent: ns per call of the same hooks,
//      to show that untracked processes pay nothing for the capture.
// Root only (BPF). Pin nothing: it reports medians of --runs.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "noop.skel.h"

#include "keytrail/abi.h"

namespace
{

using Clock = std::chrono::steady_clock;

double cpu_of(const rusage &ru)
{
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

// The server: one reply line per request line.
int serve()
{
	char buf[65536];
	std::string line;
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n <= 0)
			return 0;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				line += buf[i];
				continue;
			}
			size_t at = line.find("\"id\":");
			std::string id = "0";
			if (at != std::string::npos)
				id = line.substr(at + 5, line.find_first_of(",}", at) - at - 5);
			std::string reply = R"({"result":{"content":[{"type":"text","text":"ok"}],)"
			                    R"("isError":false},"jsonrpc":"2.0","id":)" +
			                    id + "}\n";
			if (write(1, reply.data(), reply.size()) < 0)
				return 1;
			line.clear();
		}
	}
}

std::map<std::string, std::pair<uint64_t, uint64_t>>
prog_stats(const std::vector<std::string> &names)
{
	std::map<std::string, std::pair<uint64_t, uint64_t>> out;
	uint32_t id = 0;
	while (bpf_prog_get_next_id(id, &id) == 0) {
		int fd = bpf_prog_get_fd_by_id(id);
		if (fd < 0)
			continue;
		bpf_prog_info info{};
		uint32_t len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		    std::find(names.begin(), names.end(), info.name) != names.end()) {
			out[info.name].first += info.run_time_ns;
			out[info.name].second += info.run_cnt;
		}
		close(fd);
	}
	return out;
}

const std::vector<std::string> kHooks = {"enter_read", "exit_read", "enter_write", "enter_writev"};

struct Agent {
	pid_t pid = -1;
	std::string out;
};

// The agent binary (--keytrail: another build's, to compare).
std::string g_keytrail = KEYTRAIL_BINARY;

Agent start_agent(const std::string &dir, pid_t track)
{
	Agent a;
	a.out = dir + "/out.jsonl";
	std::string cfg = dir + "/bench.yaml";
	std::ofstream(cfg) << "agent:\n  health_interval: 1h\njournal:\n  enabled: false\n";
	std::filesystem::remove(a.out); // "ready" must be this agent's
	std::filesystem::remove_all(dir + "/state");
	a.pid = fork();
	if (a.pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		std::string state = dir + "/state", p = std::to_string(track);
		if (track > 0)
			execl(g_keytrail.c_str(), g_keytrail.c_str(), "run", "-c", cfg.c_str(),
			      "--state-dir", state.c_str(), "-o", a.out.c_str(), "--track",
			      p.c_str(), nullptr);
		else
			execl(g_keytrail.c_str(), g_keytrail.c_str(), "run", "-c", cfg.c_str(),
			      "--state-dir", state.c_str(), "-o", a.out.c_str(), nullptr);
		_exit(127);
	}
	for (int i = 0; i < 400; i++) {
		std::ifstream f(a.out);
		std::string l;
		while (std::getline(f, l))
			if (l.find("\"type\":\"ready\"") != std::string::npos)
				return a;
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	std::fprintf(stderr, "keytrail did not become ready\n");
	std::exit(1);
}

double stop_agent(Agent &a)
{
	kill(a.pid, SIGTERM);
	int st = 0;
	rusage ru{};
	wait4(a.pid, &st, 0, &ru);
	return cpu_of(ru);
}

// utime + stime of a live process, seconds (/proc/PID/stat fields 14, 15).
double proc_cpu(pid_t pid)
{
	std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
	std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
	size_t close = s.rfind(')');
	if (close == std::string::npos)
		return 0;
	std::istringstream in(s.substr(close + 2));
	std::string field;
	double ticks = 0;
	for (int i = 3; i <= 15 && in >> field; i++)
		if (i >= 14)
			ticks += std::stod(field);
	return ticks / sysconf(_SC_CLK_TCK);
}

size_t count_lines(const std::string &path, const char *needle)
{
	std::ifstream f(path);
	std::string l;
	size_t n = 0;
	while (std::getline(f, l))
		n += l.find(needle) != std::string::npos;
	return n;
}

struct CallRun {
	double server_cpu = 0, agent_cpu = 0;
	long calls = 0;
	std::map<std::string, std::pair<uint64_t, uint64_t>> hooks; // delta
	size_t tool_call_records = 0;
	// From the agent's last health record: why calls have no record.
	uint64_t stdio_cut = 0, stdio_drops = 0, replies_unmatched = 0, unanswered = 0, evicted = 0,
	         partial = 0;
};

// The counters of the last health record (written at stop) that account for
// calls without a tool_call record.
void last_health(const std::string &path, CallRun &r)
{
	std::ifstream f(path);
	std::string l, last;
	while (std::getline(f, l))
		if (l.find("\"type\":\"health\"") != std::string::npos)
			last = l;
	auto h = nlohmann::json::parse(last, nullptr, false);
	if (h.is_discarded() || !h.is_object())
		return;
	auto num = [&](const char *a, const char *b) {
		return h.contains(a) && h[a].contains(b) ? h[a][b].get<uint64_t>() : 0;
	};
	r.stdio_cut = num("kernel", "stdio_cut");
	if (h.contains("kernel") && h["kernel"].contains("drops_by_type"))
		r.stdio_drops = h["kernel"]["drops_by_type"].value("stdio", uint64_t{0});
	r.replies_unmatched = num("correlator", "mcp_replies_unmatched");
	r.unanswered = num("correlator", "tool_calls_unanswered");
	r.evicted = num("correlator", "tool_calls_evicted");
	r.partial = num("agent", "mcp_partial");
}

// Drives one server for `seconds` at `rate` calls/s; under the agent when
// `agent` (the server is tracked from before its first call).
CallRun drive(const std::string &self, const std::string &dir, double seconds, int rate, bool agent)
{
	int to[2], from[2];
	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC)) // the agent must not hold them
		std::exit(1);
	pid_t server = fork();
	if (server == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		execl(self.c_str(), self.c_str(), "--serve", nullptr);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	Agent a;
	if (agent)
		a = start_agent(dir, server);
	auto before = prog_stats(kHooks);
	double agent_before = agent ? proc_cpu(a.pid) : 0;
	CallRun r;
	auto start = Clock::now();
	auto period = std::chrono::nanoseconds(1000000000LL / rate);
	char buf[65536];
	std::string pending;
	long answered = 0;
	for (long i = 0;; i++) {
		auto due = start + i * period;
		if (due - start > std::chrono::duration<double>(seconds))
			break;
		std::this_thread::sleep_until(due);
		std::string req =
		    R"({"method":"tools/call","params":{"name":"bench_tool","arguments":)"
		    R"({"q":"keytrail"}},"jsonrpc":"2.0","id":)" +
		    std::to_string(i) + "}\n";
		if (write(to[1], req.data(), req.size()) < 0)
			break;
		r.calls++;
		// Read the replies that are there.
		pollfd p{from[0], POLLIN, 0};
		while (poll(&p, 1, 0) > 0) {
			ssize_t n = read(from[0], buf, sizeof(buf));
			if (n <= 0)
				break;
			answered += std::count(buf, buf + n, '\n');
		}
	}
	close(to[1]);
	for (;;) {
		ssize_t n = read(from[0], buf, sizeof(buf));
		if (n <= 0)
			break;
		answered += std::count(buf, buf + n, '\n');
	}
	int st = 0;
	rusage ru{};
	wait4(server, &st, 0, &ru);
	r.server_cpu = cpu_of(ru);
	auto after = prog_stats(kHooks);
	for (const auto &h : kHooks)
		r.hooks[h] = {after[h].first - before[h].first, after[h].second - before[h].second};
	if (agent) {
		std::this_thread::sleep_for(std::chrono::seconds(1));
		// While it served the calls (and wrote their records), not its start.
		r.agent_cpu = proc_cpu(a.pid) - agent_before;
		stop_agent(a);
		r.tool_call_records = count_lines(a.out, "\"type\":\"tool_call\"");
		last_health(a.out, r);
	}
	close(from[0]);
	if (answered != r.calls)
		std::fprintf(stderr, "warning: %ld calls, %ld replies\n", r.calls, answered);
	return r;
}

// An untracked process: `n` reads of /dev/zero and writes to /dev/null (fd
// 0 and 1 of its own, so the stdio branch would be reached if it were
// wrongly taken). ns per hook call from bpf_stats.
std::map<std::string, double> untracked(long n)
{
	auto before = prog_stats(kHooks);
	pid_t c = fork();
	if (c == 0) {
		int z = open("/dev/zero", O_RDONLY), d = open("/dev/null", O_WRONLY);
		dup2(z, 0);
		dup2(d, 1);
		char b[64];
		for (long i = 0; i < n; i++) {
			if (read(0, b, sizeof(b)) < 0 || write(1, b, sizeof(b)) < 0)
				_exit(1);
		}
		_exit(0);
	}
	waitpid(c, nullptr, 0);
	auto after = prog_stats(kHooks);
	std::map<std::string, double> ns;
	for (const auto &h : {"enter_read", "exit_read", "enter_write"}) {
		uint64_t t = after[h].first - before[h].first,
		         k = after[h].second - before[h].second;
		ns[h] = k ? static_cast<double>(t) / k : 0;
	}
	return ns;
}

std::map<std::string, double> untracked_floor(long n)
{
	// The no-op floor's programs have other names: read them by theirs.
	noop_bpf *skel = noop_bpf__open_and_load();
	std::map<std::string, double> ns;
	if (!skel || noop_bpf__attach(skel))
		return ns;
	const std::vector<std::pair<std::string, std::string>> names = {
	    {"f_read_in", "enter_read"},
	    {"f_read_out", "exit_read"},
	    {"f_write_in", "enter_write"}};
	std::vector<std::string> list;
	for (auto &[f, k] : names)
		list.push_back(f);
	auto before = prog_stats(list);
	pid_t c = fork();
	if (c == 0) {
		int z = open("/dev/zero", O_RDONLY), d = open("/dev/null", O_WRONLY);
		char b[64];
		for (long i = 0; i < n; i++)
			if (read(z, b, sizeof(b)) < 0 || write(d, b, sizeof(b)) < 0)
				_exit(1);
		_exit(0);
	}
	waitpid(c, nullptr, 0);
	auto after = prog_stats(list);
	for (auto &[f, k] : names) {
		uint64_t t = after[f].first - before[f].first,
		         cnt = after[f].second - before[f].second;
		ns[k] = cnt ? static_cast<double>(t) / cnt : 0;
	}
	noop_bpf__destroy(skel);
	return ns;
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"keytrail-bench-mcp: the cost of stdio MCP capture"};
	bool serve_mode = false;
	double seconds = 5;
	int rate = 1000, runs = 3;
	long untracked_calls = 500000;
	std::string dir = "/tmp/keytrail-bench-mcp";
	app.add_flag("--serve", serve_mode, "be the stdio server");
	app.add_option("--seconds", seconds, "per run");
	app.add_option("--rate", rate, "tools/call per second");
	app.add_option("--runs", runs, "runs per mode (medians)");
	app.add_option("--untracked-calls", untracked_calls, "reads+writes of the untracked pass");
	app.add_option("--dir", dir, "scratch directory");
	app.add_option("--keytrail", g_keytrail, "keytrail binary for the untracked pass");
	bool untracked_only = false;
	app.add_flag("--untracked-only", untracked_only, "only the untracked pass");
	CLI11_PARSE(app, argc, argv);
	if (serve_mode)
		return serve();
	if (geteuid() != 0) {
		std::fprintf(stderr, "keytrail-bench-mcp needs root\n");
		return 1;
	}
	std::filesystem::create_directories(dir);
	std::string self = std::filesystem::read_symlink("/proc/self/exe");
	int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	auto median = [](std::vector<double> v) {
		std::sort(v.begin(), v.end());
		return v.empty() ? 0 : v[v.size() / 2];
	};
	std::vector<double> bare_us, tracked_us, agent_us, kernel_ns;
	size_t records = 0;
	long calls = 0;
	CallRun last;
	std::map<std::string, double> per_hook;
	for (int i = 0; i < runs && !untracked_only; i++) {
		CallRun bare = drive(self, dir, seconds, rate, false);
		std::filesystem::remove_all(dir + "/state");
		CallRun t = drive(self, dir, seconds, rate, true);
		bare_us.push_back(bare.server_cpu / bare.calls * 1e6);
		tracked_us.push_back(t.server_cpu / t.calls * 1e6);
		agent_us.push_back(t.agent_cpu / t.calls * 1e6);
		uint64_t ns = 0;
		for (auto &[h, v] : t.hooks) {
			ns += v.first;
			per_hook[h] = v.second ? static_cast<double>(v.first) / v.second : 0;
		}
		kernel_ns.push_back(static_cast<double>(ns) / t.calls);
		records = t.tool_call_records;
		calls = t.calls;
		last = t;
	}
	if (!untracked_only) {
		std::printf(
		    "stdio MCP server at %d tools/call per second, %.0f s, median of %d runs:\n",
		    rate, seconds, runs);
		std::printf("  server CPU per call, no agent:        %8.2f us\n", median(bare_us));
		std::printf("  server CPU per call, tracked (stdio): %8.2f us  (%+.2f us)\n",
		            median(tracked_us), median(tracked_us) - median(bare_us));
		std::printf(
		    "  read/write hooks, kernel per call:    %8.0f ns  (every process's calls on "
		    "them during the run, over the tool calls: an upper bound)\n",
		    median(kernel_ns));
		for (const auto &[h, v] : per_hook)
			std::printf("    %-14s %8.1f ns per hook call (last run)\n", h.c_str(), v);
		std::printf("  agent CPU per call:                   %8.2f us\n", median(agent_us));
		std::printf("  tool_call records written (last run): %zu of %ld calls\n", records,
		            calls);
		// The server reads whatever the pipe holds: when it falls behind, one
		// read(0) returns several requests, and a read longer than
		// KT_STDIO_MAX is captured as its first and last bytes only. The
		// requests in the middle are never seen; their replies match no call.
		std::printf("    without a record: %ld; requests lost in the middle of a read(0) "
		            "longer than %d bytes (cut to head and tail by the kernel; their "
		            "replies matched no call): %llu\n",
		            calls - static_cast<long>(records), KT_STDIO_MAX,
		            static_cast<unsigned long long>(last.replies_unmatched));
		std::printf("    reads of fd 0 or writes of fd 1 cut to head and tail: %llu; "
		            "messages framed across a cut: %llu; stdio ring drops: %llu; "
		            "calls unanswered at stop: %llu; evicted: %llu\n",
		            static_cast<unsigned long long>(last.stdio_cut),
		            static_cast<unsigned long long>(last.partial),
		            static_cast<unsigned long long>(last.stdio_drops),
		            static_cast<unsigned long long>(last.unanswered),
		            static_cast<unsigned long long>(last.evicted));
	}
	auto floor = untracked_floor(untracked_calls);
	Agent a = start_agent(dir, 0);
	auto kt = untracked(untracked_calls);
	stop_agent(a);
	std::printf("\nuntracked process, %ld reads of fd 0 and writes to fd 1 (bpf_stats ns per "
	            "call, includes the stats' own clock reads):\n",
	            untracked_calls);
	std::printf("  %-12s %10s %10s %8s\n", "hook", "no-op", "keytrail", "extra");
	for (const auto &h : {"enter_read", "exit_read", "enter_write"}) {
		if (kt[h] > 0)
			std::printf("  %-12s %10.1f %10.1f %+8.1f\n", h, floor[h], kt[h],
			            kt[h] - floor[h]);
		else // reads are hooked at their exit only
			std::printf("  %-12s %10.1f %10s %+8.1f\n", h, floor[h], "not hooked",
			            -floor[h]);
	}
	if (stats_fd >= 0)
		close(stats_fd);
	return 0;
}
