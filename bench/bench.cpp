// keytrail-bench: every KeyTrail performance goal, measured in one run and
// summed up side by side at the end as (a)-(f). First what KeyTrail costs the
// host, alternating modes so machine noise spreads evenly:
//   unprobed          the workload alone
//   floor             the shared no-op floor's 11 tracepoints
//   hooks             no-op programs on exactly the tracepoints keytrail uses
//   keytrail          `keytrail run`, workload untracked (what every process pays)
//   keytrail-tracked  `keytrail run --events`, workload tracked (what an MCP server pays)
// The first three run as a trio, side by side, three times a round; (a) is
// also printed trio by trio, to show its spread.
// CPU is the workload's user+sys time (wait4), not wall time. The workload is
// pinned to one CPU and the agent to the other. This VM's neighbours add
// noise that only ever adds time, so the minimum is reported beside the
// median. A last pass reads the kernel's own accounting of each program's
// run time (kernel.bpf_stats_enabled), which isolates the probes' cost.
// Then (f): the agent's CPU per untracked process lifecycle (churn_pass).
// Then keytrail-bench-replay: the correlator's replay throughput and memory,
// and the kernel-event-to-alert latency of a live agent.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "noop.skel.h"

#include "keytrail/probe/features.h"

namespace
{

constexpr const char *kMarker = "kt-bench-tracked";
// Untracked unprobed/floor/keytrail trios per round, for goal (a).
constexpr int kTrios = 3;

double cpu_of(const rusage &ru)
{
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

void pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu % std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)), &set);
	sched_setaffinity(0, sizeof(set), &set);
}

// Another workload than the syscall mix: a binary taking ITERATIONS first,
// then `args`.
struct Workload {
	const char *binary = WORKLOAD_BINARY;
	std::vector<std::string> args;
};

// Runs the workload to completion; returns its CPU seconds, its reaped
// children's included.
double run_workload(long iterations, bool tracked, const Workload &w = {})
{
	std::string n = std::to_string(iterations);
	std::vector<std::string> args = {w.binary, n};
	if (tracked)
		args = {WORKLOAD_BINARY, n, "/etc/hostname", "400", kMarker};
	else
		args.insert(args.end(), w.args.begin(), w.args.end());
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	pid_t pid = fork();
	if (pid == 0) {
		pin_to_cpu(1);
		execv(argv[0], argv.data());
		_exit(127);
	}
	int status = 0;
	rusage ru{};
	wait4(pid, &status, 0, &ru);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		std::fprintf(stderr, "workload failed\n");
		std::exit(1);
	}
	return cpu_of(ru);
}

// CPU seconds of a live process, every thread's, exited ones included
// (its CPU-time clock, in ns).
double proc_cpu(pid_t pid)
{
	clockid_t clock;
	timespec ts{};
	if (clock_getcpuclockid(pid, &clock) != 0 || clock_gettime(clock, &ts) != 0) {
		std::fprintf(stderr, "cannot read the CPU time of pid %d\n", pid);
		std::exit(1);
	}
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

std::string slurp(const std::string &path)
{
	std::ifstream in(path);
	return std::string((std::istreambuf_iterator<char>(in)), {});
}

struct AgentRun {
	double workload_cpu = 0, workload_wall = 0, agent_cpu = 0, attach_s = 0;
	double peak_rss_mib = 0; // the agent's (VmHWM), at its stop
	nlohmann::json health;
};

AgentRun run_under_agent(const std::string &dir, long iterations, bool tracked,
                         const Workload &w = {})
{
	std::string out = dir + "/out.jsonl";
	unlink(out.c_str());
	pid_t agent = fork();
	if (agent == 0) {
		pin_to_cpu(0);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		std::string cfg = dir + "/bench.yaml";
		if (tracked)
			execl(KEYTRAIL_BINARY, KEYTRAIL_BINARY, "run", "--config", cfg.c_str(),
			      "--events", "-o", "/dev/null", nullptr);
		else
			execl(KEYTRAIL_BINARY, KEYTRAIL_BINARY, "run", "--config", cfg.c_str(),
			      "-o", out.c_str(), nullptr);
		_exit(127);
	}
	std::string status = dir + "/state/status.json";
	AgentRun r;
	for (int i = 0; i < 300; i++) {
		auto j = nlohmann::json::parse(slurp(status), nullptr, false);
		if (!j.is_discarded() && j.contains("attach_seconds") && j["pid"] == agent) {
			r.attach_s = j["attach_seconds"];
			break;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	double a0 = proc_cpu(agent);
	auto t0 = std::chrono::steady_clock::now();
	r.workload_cpu = run_workload(iterations, tracked, w);
	r.workload_wall =
	    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	std::this_thread::sleep_for(std::chrono::milliseconds(300)); // let it drain
	r.agent_cpu = proc_cpu(agent) - a0;
	std::ifstream st("/proc/" + std::to_string(agent) + "/status");
	for (std::string line; std::getline(st, line);)
		if (line.rfind("VmHWM:", 0) == 0)
			r.peak_rss_mib = std::atof(line.c_str() + 6) / 1024; // kB
	kill(agent, SIGTERM);
	waitpid(agent, nullptr, 0);
	r.health = nlohmann::json::parse(slurp(status), nullptr, false);
	return r;
}

double under_noop(long iterations, bool floor_only)
{
	noop_bpf *skel = noop_bpf__open();
	if (!skel)
		std::exit(1);
	bpf_program *prog;
	bpf_object__for_each_program(prog, skel->obj)
	{
		std::string name = bpf_program__name(prog);
		// keytrail reads open and read arguments at the syscall's exit
		// and has no close hook: those of the floor's are not its own.
		bool keytrails =
		    name != "f_openat_in" && name != "f_read_in" && name != "f_close_in";
		if (floor_only ? name.rfind("f_", 0) != 0 : !keytrails)
			bpf_program__set_autoload(prog, false);
	}
	if (noop_bpf__load(skel) || noop_bpf__attach(skel)) {
		std::fprintf(stderr, "cannot load the no-op programs\n");
		std::exit(1);
	}
	double cpu = run_workload(iterations, false);
	noop_bpf__destroy(skel);
	return cpu;
}

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	return v.empty() ? 0 : v[v.size() / 2];
}

double minimum(const std::vector<double> &v)
{
	return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}

double maximum(const std::vector<double> &v)
{
	return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// run_time_ns / run_cnt of every loaded program with one of these names.
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
		    std::find(names.begin(), names.end(), info.name) != names.end())
			out[info.name] = {info.run_time_ns, info.run_cnt};
		close(fd);
	}
	return out;
}

// (f) Process churn, untracked: bench/churn.c forks, execs /bin/true and
// waits, n times a run, alone and then under `keytrail run` (no rule
// matches /bin/true); then vforks and execs churn_exit, the smallest static
// binary, which is the fastest lifecycle the machine runs (fork + exec of
// /bin/true costs 2-3 ms of CPU on this VM: under 500 a second). What the
// agent's CPU (all its threads, idle time included) costs per process
// lifecycle (exec + exit records; an untracked parent's fork sends none).
struct ChurnResult {
	std::vector<double> us_per_proc, execs_per_s, alone_execs_per_s, agent_over_workload,
	    workload_us, alone_workload_us, peak_rss_mib;
	uint64_t drops = 0;
};

ChurnResult churn_pass(const std::string &dir, long n, int rounds, const Workload &w,
                       const char *what)
{
	ChurnResult c;
	for (int r = 0; r < rounds; r++) {
		std::fprintf(stderr, "churn round %d/%d\r", r + 1, rounds);
		auto t0 = std::chrono::steady_clock::now();
		double alone = run_workload(n, false, w);
		double wall =
		    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
		c.alone_execs_per_s.push_back(n / wall);
		c.alone_workload_us.push_back(alone / n * 1e6);
		AgentRun u = run_under_agent(dir, n, false, w);
		c.us_per_proc.push_back(u.agent_cpu / n * 1e6);
		c.execs_per_s.push_back(n / u.workload_wall);
		c.workload_us.push_back(u.workload_cpu / n * 1e6);
		c.peak_rss_mib.push_back(u.peak_rss_mib);
		if (u.workload_cpu > 0)
			c.agent_over_workload.push_back(u.agent_cpu / u.workload_cpu);
		if (!u.health.is_discarded() && u.health.contains("kernel"))
			c.drops += u.health["kernel"].value("drops", uint64_t{0});
	}
	std::printf("\nuntracked process churn (%s + wait), %ld processes, %d rounds:\n", what, n,
	            rounds);
	std::printf("  agent CPU per process      %6.1f us median (min %.1f, max %.1f)\n",
	            median(c.us_per_proc), minimum(c.us_per_proc), maximum(c.us_per_proc));
	std::printf("  agent CPU / workload CPU   %6.3f median (min %.3f, max %.3f)\n",
	            median(c.agent_over_workload), minimum(c.agent_over_workload),
	            maximum(c.agent_over_workload));
	std::printf("  execs/s                    %6.0f under keytrail, %.0f alone (median)\n",
	            median(c.execs_per_s), median(c.alone_execs_per_s));
	std::printf("  workload CPU per process   %6.1f us under keytrail, %.1f us alone "
	            "(median); %llu records dropped\n",
	            median(c.workload_us), median(c.alone_workload_us),
	            static_cast<unsigned long long>(c.drops));
	std::printf(
	    "  agent peak RSS             %6.1f MiB (VmHWM from its start; max over rounds)\n",
	    maximum(c.peak_rss_mib));
	return c;
}

// Kernel-side ns per call of the hooks the workload hits, untracked.
void kernel_pass(const std::string &dir, long iterations)
{
	int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (stats_fd < 0) {
		std::printf("kernel:    bpf_stats unavailable\n");
		return;
	}
	const std::vector<std::pair<std::string, std::string>> hooks = {
	    {"f_openat_in", "enter_openat"},
	    {"f_openat_out", "exit_openat"},
	    {"f_read_in", "enter_read"},
	    {"f_read_out", "exit_read"},
	    {"f_close_in", "enter_close"}};
	std::vector<std::string> names;
	for (auto &[f, k] : hooks) {
		names.push_back(f);
		names.push_back(k);
	}
	// No-op floor.
	noop_bpf *skel = noop_bpf__open_and_load();
	if (!skel || noop_bpf__attach(skel))
		return;
	auto before = prog_stats(names);
	run_workload(iterations, false);
	auto after = prog_stats(names);
	noop_bpf__destroy(skel);
	auto per_call = [&](const std::string &n) {
		uint64_t t = after[n].first - before[n].first,
		         c = after[n].second - before[n].second;
		return c ? static_cast<double>(t) / c : 0.0;
	};
	std::map<std::string, double> ns;
	for (auto &[f, k] : hooks)
		ns[f] = per_call(f);
	// keytrail, untracked workload.
	pid_t agent = fork();
	if (agent == 0) {
		pin_to_cpu(0);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		std::string cfg = dir + "/bench.yaml";
		execl(KEYTRAIL_BINARY, KEYTRAIL_BINARY, "run", "--config", cfg.c_str(), "-o",
		      "/dev/null", nullptr);
		_exit(127);
	}
	for (int i = 0; i < 300 && prog_stats({"exit_openat"}).empty(); i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	before = prog_stats(names);
	run_workload(iterations, false);
	after = prog_stats(names);
	kill(agent, SIGTERM);
	waitpid(agent, nullptr, 0);
	close(stats_fd);
	std::printf(
	    "\nkernel-side cost per call, untracked (bpf_stats run_time_ns/run_cnt; includes the "
	    "stats' own clock reads):\n");
	std::printf("  %-14s %10s %10s %8s\n", "hook", "no-op ns", "keytrail", "extra");
	double sum_f = 0, sum_k = 0;
	for (auto &[f, k] : hooks) {
		bool hooked = after.count(k); // before per_call, which adds it
		double kn = per_call(k);
		sum_f += ns[f];
		sum_k += kn;
		if (hooked)
			std::printf("  %-14s %10.1f %10.1f %+8.1f\n", k.c_str(), ns[f], kn,
			            kn - ns[f]);
		else
			std::printf("  %-14s %10.1f %10s %+8.1f\n", k.c_str(), ns[f], "not hooked",
			            -ns[f]);
	}
	std::printf("  %-14s %10.1f %10.1f %+8.1f\n", "all five", sum_f, sum_k, sum_k - sum_f);
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"KeyTrail overhead benchmark (run as root)"};
	long iterations = 500000;
	int rounds = 5;
	long churn = 10000;
	app.add_option("-n,--iterations", iterations, "Workload iterations per run")
	    ->capture_default_str()
	    ->check(CLI::PositiveNumber);
	app.add_option("-r,--rounds", rounds, "Paired rounds (median is reported)")
	    ->capture_default_str()
	    ->check(CLI::PositiveNumber);
	app.add_option("--churn", churn, "Processes per churn run, goal (f)")
	    ->capture_default_str()
	    ->check(CLI::PositiveNumber);
	CLI11_PARSE(app, argc, argv);
	if (geteuid() != 0) {
		std::fprintf(stderr, "keytrail-bench loads BPF programs: run it as root\n");
		return 1;
	}
	libbpf_set_print(nullptr);
	keytrail::ensure_tracefs();

	char tmpl[] = "/tmp/kt-bench-XXXXXX";
	std::string dir = mkdtemp(tmpl);
	// The agent's defaults otherwise: a health record a minute (what each
	// run reports is the last one, written at stop).
	std::ofstream(dir + "/bench.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n  ring_buffer_size: 16MiB\n"
	    << "tracking:\n  rules:\n    - name: bench\n      argv: \"" << kMarker << "\"\n";

	std::map<std::string, std::vector<double>> cpu;
	std::vector<double> agent_cpu_per_kevent, events_per_s, consumed_per_s, capacity, attach;
	uint64_t drops = 0, events = 0;
	std::vector<double> trio_ratio; // (a) of each unprobed/floor/keytrail trio
	for (int r = 0; r < rounds; r++) {
		std::fprintf(stderr, "round %d/%d\r", r + 1, rounds);
		// (a) is the difference of two differences of ~15%, each from
		// runs with ~1.5% noise: its trio, side by side, kTrios times.
		for (int t = 0; t < kTrios; t++) {
			double u = run_workload(iterations, false),
			       f = under_noop(iterations, true);
			AgentRun k = run_under_agent(dir, iterations, false);
			cpu["unprobed"].push_back(u);
			cpu["floor"].push_back(f);
			cpu["keytrail"].push_back(k.workload_cpu);
			attach.push_back(k.attach_s);
			if (f > u)
				trio_ratio.push_back((k.workload_cpu - u) / (f - u));
		}
		cpu["hooks"].push_back(under_noop(iterations, false));
		AgentRun t = run_under_agent(dir, iterations, true);
		cpu["keytrail-tracked"].push_back(t.workload_cpu);
		if (!t.health.is_discarded() && t.health.contains("kernel")) {
			uint64_t ev = t.health["kernel"]["events"];
			events += ev;
			drops += t.health["kernel"]["drops"].get<uint64_t>();
			if (ev > 0) {
				agent_cpu_per_kevent.push_back(t.agent_cpu / (ev / 1000.0));
				events_per_s.push_back(ev / t.workload_cpu);
				consumed_per_s.push_back(ev / t.workload_wall);
				if (t.agent_cpu > 0)
					capacity.push_back(ev / t.agent_cpu);
			}
		}
	}
	double base = median(cpu["unprobed"]), base_min = minimum(cpu["unprobed"]);
	std::printf(
	    "\nKeyTrail overhead: syscall mix (open+read+close, connect every 16), %ld iterations, "
	    "%d rounds\n\n",
	    iterations, rounds);
	std::printf("%-18s %10s %12s %11s %10s %12s\n", "mode", "median_s", "vs_unprobed", "added",
	            "min_s", "min_added");
	for (const char *m : {"unprobed", "floor", "hooks", "keytrail", "keytrail-tracked"}) {
		double c = median(cpu[m]), mn = minimum(cpu[m]);
		std::printf("%-18s %10.3f %11.3fx %10.1f%% %10.3f %11.1f%%\n", m, c, c / base,
		            (c - base) / base * 100, mn, (mn - base_min) / base_min * 100);
	}
	auto ratio = [&](double (*f)(const std::vector<double> &), double b) {
		double floor_added = f(cpu["floor"]) - b, kt_added = f(cpu["keytrail"]) - b;
		return floor_added > 0 ? kt_added / floor_added : 0.0;
	};
	double ratio_median = ratio([](const std::vector<double> &v) { return median(v); }, base),
	       ratio_min = ratio(minimum, base_min);
	std::printf(
	    "\nuntracked: keytrail's added CPU / floor's added CPU = %.2f by median, %.2f by "
	    "minimum (goal <= 1.00); trio by trio, median %.2f\n",
	    ratio_median, ratio_min, median(trio_ratio));
	std::printf(
	    "tracked:   %llu kernel events, %llu dropped; agent CPU %.3f ms per 1000 events; "
	    "workload produced %.0f events per CPU second\n",
	    static_cast<unsigned long long>(events), static_cast<unsigned long long>(drops),
	    median(agent_cpu_per_kevent) * 1000, median(events_per_s));
	std::printf("attach:    %.3f s (median; goal <= 1 s)\n", median(attach));
	kernel_pass(dir, iterations);
	ChurnResult ch =
	    churn_pass(dir, churn, rounds, {CHURN_BINARY, {}}, "fork + exec /bin/true");
#ifdef CHURN_EXIT_BINARY
	const char *fast_what = "vfork + exec of a static binary";
	ChurnResult fast =
	    churn_pass(dir, churn, rounds, {CHURN_BINARY, {CHURN_EXIT_BINARY, "vfork"}},
	               "vfork + exec of a static no-libc binary");
	// A compiler's argv: the agent masks and matches every argument.
	ChurnResult fat =
	    churn_pass(dir, churn, rounds, {CHURN_BINARY, {CHURN_EXIT_BINARY, "vfork", "32"}},
	               "vfork + exec of a static no-libc binary with 32 arguments, 1 KiB");
#else
	// No static no-libc binary for this architecture: /bin/true is the goal's.
	const char *fast_what = "fork + exec /bin/true";
	ChurnResult fast = ch, fat;
#endif

	// The correlator's replay and the live latency, in their own binary.
	std::printf("\n");
	std::fflush(stdout);
	std::string summary_path = dir + "/replay.json";
	setenv("KT_BENCH_SUMMARY", summary_path.c_str(), 1);
	int rc = std::system(REPLAY_BENCH_BINARY);
	auto rs = nlohmann::json::parse(slurp(summary_path), nullptr, false);
	if (rc != 0 || rs.is_discarded())
		rs = nlohmann::json::object();
	nlohmann::json replay = rs.value("replay", nlohmann::json::object()),
	               lat = rs.value("latency", nlohmann::json::object());

	auto verdict = [](bool met) { return met ? "met" : "MISSED"; };
	std::printf("\nSummary (one run, this machine)                       measured            "
	            "goal          \n");
	std::printf("(a) untracked: keytrail added CPU / no-op floor's     %5.2fx (min %.2fx)   "
	            "<= 1.00x       %s\n",
	            ratio_median, ratio_min, verdict(ratio_median <= 1.00));
	std::printf("    unprobed %.3f s, floor %+.1f%%, keytrail %+.1f%% (workload CPU, median)\n",
	            base, (median(cpu["floor"]) - base) / base * 100,
	            (median(cpu["keytrail"]) - base) / base * 100);
	std::printf("    trio by trio %.2fx to %.2fx, <= 1.00x in %zu of %zu\n",
	            minimum(trio_ratio), maximum(trio_ratio),
	            static_cast<size_t>(std::count_if(trio_ratio.begin(), trio_ratio.end(),
	                                              [](double x) { return x <= 1.00; })),
	            trio_ratio.size());
	double cap = median(capacity);
	std::printf("(b) tracked flood: agent consumes                    %7.0f ev/CPU-s     "
	            ">= 1000000     %s\n",
	            cap, verdict(cap >= 1000000 && drops == 0));
	std::printf(
	    "    %.0f ev/s arrived (the workload's pace), %llu dropped; agent CPU %.3f ms per "
	    "1000 events\n",
	    median(consumed_per_s), static_cast<unsigned long long>(drops),
	    median(agent_cpu_per_kevent) * 1000);
	double ips = replay.value("inputs_per_second", 0.0),
	       rss = replay.value("peak_rss_mib", 0.0);
	std::printf("(c) correlator replay                                %7.0f in/s        "
	            ">= 1000000     %s\n",
	            ips, verdict(ips >= 1e6));
	std::printf("    peak RSS                                         %7.1f MiB         "
	            "<= 64 MiB      %s\n",
	            rss, verdict(rss > 0 && rss <= 64));
	std::printf("(d) attach                                           %7.3f s           "
	            "<= 1 s         %s\n",
	            median(attach), verdict(median(attach) > 0 && median(attach) <= 1));
	double p50 = lat.value("p50", -1.0), p99 = lat.value("p99", -1.0);
	std::printf("(e) kernel event -> alert latency        p50 %6.1f ms, p99 %6.1f ms   "
	            "p99 <= 100 ms  %s\n",
	            p50, p99, verdict(p99 >= 0 && p99 <= 100));
	// The goal's rate is the fast churn's; /bin/true's figures beside it.
	double churn_us = median(fast.us_per_proc), churn_rate = median(fast.execs_per_s);
	std::printf(
	    "(f) untracked churn: agent CPU per process       %6.1f us (min %.1f)   "
	    "<= 10 us       %s\n",
	    churn_us, minimum(fast.us_per_proc),
	    verdict(churn_us > 0 && churn_us <= 10 && churn_rate >= 1000 && fast.drops == 0));
	std::printf("    at %.0f execs/s (goal >= 1000; %s), %llu dropped; agent CPU / workload "
	            "CPU %.3f\n",
	            churn_rate, fast_what, static_cast<unsigned long long>(fast.drops),
	            median(fast.agent_over_workload));
	std::printf("    fork + exec /bin/true: %.1f us per process at %.0f execs/s; agent CPU / "
	            "workload CPU %.3f\n",
	            median(ch.us_per_proc), median(ch.execs_per_s), median(ch.agent_over_workload));
	if (!fat.us_per_proc.empty())
		std::printf(
		    "    with 1 KiB of argv (32 arguments): %.1f us per process at %.0f execs/s "
		    "(%s for <= 10 us)\n",
		    median(fat.us_per_proc), median(fat.execs_per_s),
		    verdict(median(fat.us_per_proc) <= 10 && fat.drops == 0));
	double churn_rss = std::max(
	    {maximum(ch.peak_rss_mib), maximum(fast.peak_rss_mib), maximum(fat.peak_rss_mib)});
	std::printf(
	    "    agent peak RSS (VmHWM, its whole run)        %7.1f MiB         <= 64 MiB      "
	    "%s\n",
	    churn_rss, verdict(churn_rss > 0 && churn_rss <= 64));
	std::system(("rm -rf '" + dir + "'").c_str());
	return 0;
}
