// keytrail-bench: what KeyTrail costs the host, measured side by side in one
// run, alternating modes so machine noise spreads evenly:
//   unprobed          the workload alone
//   floor             the shared no-op floor's 11 tracepoints
//   hooks             no-op programs on every tracepoint keytrail uses
//   keytrail          `keytrail run`, workload untracked (what every process pays)
//   keytrail-tracked  `keytrail run --events`, workload tracked (what an MCP server pays)
// CPU is the workload's user+sys time (wait4), not wall time.
#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

#include "keytrail/probe/features.h"
#include "noop.skel.h"

namespace {

constexpr const char *kMarker = "kt-bench-tracked";

double cpu_of(const rusage &ru)
{
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

// Runs the workload to completion; returns its CPU seconds.
double run_workload(long iterations, bool tracked)
{
	pid_t pid = fork();
	if (pid == 0) {
		std::string n = std::to_string(iterations);
		if (tracked)
			execl(WORKLOAD_BINARY, WORKLOAD_BINARY, n.c_str(), "/etc/hostname", "400", kMarker,
			      nullptr);
		else
			execl(WORKLOAD_BINARY, WORKLOAD_BINARY, n.c_str(), nullptr);
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

double proc_cpu(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string s((std::istreambuf_iterator<char>(in)), {});
	auto p = s.rfind(')');
	if (p == std::string::npos)
		return 0;
	std::istringstream rest(s.substr(p + 2));
	std::string f;
	double ut = 0, st = 0;
	for (int i = 3; i <= 15 && rest >> f; i++) {
		if (i == 14)
			ut = std::stod(f);
		if (i == 15)
			st = std::stod(f);
	}
	return (ut + st) / sysconf(_SC_CLK_TCK);
}

std::string slurp(const std::string &path)
{
	std::ifstream in(path);
	return std::string((std::istreambuf_iterator<char>(in)), {});
}

struct AgentRun {
	double workload_cpu = 0, agent_cpu = 0, attach_s = 0;
	nlohmann::json health;
};

AgentRun run_under_agent(const std::string &dir, long iterations, bool tracked)
{
	std::string out = dir + "/out.jsonl";
	unlink(out.c_str());
	pid_t agent = fork();
	if (agent == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		std::string cfg = dir + "/bench.yaml";
		if (tracked)
			execl(KEYTRAIL_BINARY, KEYTRAIL_BINARY, "run", "--config", cfg.c_str(), "--events",
			      "-o", "/dev/null", nullptr);
		else
			execl(KEYTRAIL_BINARY, KEYTRAIL_BINARY, "run", "--config", cfg.c_str(), "-o",
			      out.c_str(), nullptr);
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
	r.workload_cpu = run_workload(iterations, tracked);
	std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it drain
	r.agent_cpu = proc_cpu(agent) - a0;
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
		if (floor_only && name.rfind("floor_", 0) != 0)
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

}  // namespace

int main(int argc, char **argv)
{
	CLI::App app{"KeyTrail overhead benchmark (run as root)"};
	long iterations = 500000;
	int rounds = 5;
	app.add_option("-n,--iterations", iterations, "Workload iterations per run")->capture_default_str();
	app.add_option("-r,--rounds", rounds, "Paired rounds (median is reported)")->capture_default_str();
	CLI11_PARSE(app, argc, argv);
	if (geteuid() != 0) {
		std::fprintf(stderr, "keytrail-bench loads BPF programs: run it as root\n");
		return 1;
	}
	libbpf_set_print(nullptr);
	keytrail::ensure_tracefs();

	char tmpl[] = "/tmp/kt-bench-XXXXXX";
	std::string dir = mkdtemp(tmpl);
	std::ofstream(dir + "/bench.yaml") << "agent:\n  state_dir: " << dir
					   << "/state\n  health_interval: 1s\n  ring_buffer_size: 16MiB\n"
					   << "tracking:\n  rules:\n    - name: bench\n      argv: \"" << kMarker
					   << "\"\n";

	std::map<std::string, std::vector<double>> cpu;
	std::vector<double> agent_cpu_per_kevent, events_per_s, attach;
	uint64_t drops = 0, events = 0;
	for (int r = 0; r < rounds; r++) {
		std::fprintf(stderr, "round %d/%d\r", r + 1, rounds);
		cpu["unprobed"].push_back(run_workload(iterations, false));
		cpu["floor"].push_back(under_noop(iterations, true));
		cpu["hooks"].push_back(under_noop(iterations, false));
		AgentRun u = run_under_agent(dir, iterations, false);
		cpu["keytrail"].push_back(u.workload_cpu);
		attach.push_back(u.attach_s);
		AgentRun t = run_under_agent(dir, iterations, true);
		cpu["keytrail-tracked"].push_back(t.workload_cpu);
		if (!t.health.is_discarded() && t.health.contains("kernel")) {
			uint64_t ev = t.health["kernel"]["events"];
			events += ev;
			drops += t.health["kernel"]["drops"].get<uint64_t>();
			if (ev > 0) {
				agent_cpu_per_kevent.push_back(t.agent_cpu / (ev / 1000.0));
				events_per_s.push_back(ev / t.workload_cpu);
			}
		}
	}
	double base = median(cpu["unprobed"]);
	std::printf("\nKeyTrail overhead: syscall mix (open+read+close, connect every 16), %ld iterations, "
		    "median of %d rounds\n\n",
		    iterations, rounds);
	std::printf("%-18s %10s %12s %12s\n", "mode", "cpu_s", "vs_unprobed", "added_cpu");
	for (const char *m : {"unprobed", "floor", "hooks", "keytrail", "keytrail-tracked"}) {
		double c = median(cpu[m]);
		std::printf("%-18s %10.3f %11.3fx %11.1f%%\n", m, c, c / base, (c - base) / base * 100);
	}
	double floor_added = median(cpu["floor"]) - base;
	double kt_added = median(cpu["keytrail"]) - base;
	std::printf("\nuntracked: keytrail's added CPU / floor's added CPU = %.2f (goal <= 1.10)\n",
		    floor_added > 0 ? kt_added / floor_added : 0.0);
	std::printf("tracked:   %llu kernel events, %llu dropped; agent CPU %.3f ms per 1000 events; "
		    "workload produced %.0f events per CPU second\n",
		    static_cast<unsigned long long>(events), static_cast<unsigned long long>(drops),
		    median(agent_cpu_per_kevent) * 1000, median(events_per_s));
	std::printf("attach:    %.3f s (median; goal <= 1 s)\n", median(attach));
	std::system(("rm -rf '" + dir + "'").c_str());
	return 0;
}
