// Load: thousands of short-lived tracked processes a second for a minute
// (memory stays bounded, every fork and exec is accounted for), and a flood of opens
// that overruns the ring buffer (drops are counted and reported, and the
// agent keeps working once it stops). KT_LOAD_SECONDS shortens the churn.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "keytrail/output/journal.h"
#include "support/agent_process.h"
#include "support/child.h"
#include "support/fake_secrets.h"

using namespace keytrail;
using namespace keytrail::test;
using Clock = std::chrono::steady_clock;

namespace
{

long rss_kib(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/status");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("VmRSS:", 0) == 0)
			return std::stol(line.substr(6));
	return -1;
}

double cpu_seconds(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string s((std::istreambuf_iterator<char>(in)), {});
	auto close = s.rfind(')');
	if (close == std::string::npos)
		return 0;
	std::istringstream rest(s.substr(close + 2));
	std::string f;
	unsigned long utime = 0, stime = 0;
	for (int i = 3; i <= 15 && rest >> f; i++) {
		if (i == 14)
			utime = std::stoul(f);
		if (i == 15)
			stime = std::stoul(f);
	}
	return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

nlohmann::json last_health(const std::string &out)
{
	nlohmann::json h;
	for (auto &r : records(out))
		if (r["type"] == "health")
			h = r;
	return h;
}

int load_seconds()
{
	const char *s = getenv("KT_LOAD_SECONDS");
	return s ? std::max(5, atoi(s)) : 60;
}

// Creates children as fast as it can for `seconds`: one in eight execs
// /bin/true (an exec costs ~2 ms on this VM), the others exit at once.
// Writes how many children and execs it made, and its pid, to `out`.
[[noreturn]] void churn_worker(int seconds, const std::string &out)
{
	volatile long children = 0, execs = 0; // volatile: live across vfork()
	auto end = Clock::now() + std::chrono::seconds(seconds);
	char arg0[] = "true";
	char *argv[] = {arg0, nullptr};
	char *envp[] = {nullptr};
	while (Clock::now() < end) {
		pid_t c;
		if (children % 8 == 0) {
			if (posix_spawn(&c, "/bin/true", nullptr, nullptr, argv, envp) != 0)
				continue;
			execs = execs + 1;
		} else if ((c = vfork()) == 0) {
			_exit(0);
		} else if (c < 0) {
			continue;
		}
		waitpid(c, nullptr, 0);
		children = children + 1;
	}
	std::ofstream(out) << long(children) << " " << long(execs) << " " << getpid();
	_exit(0);
}

} // namespace

TEST(Load, ProcessChurnForAMinuteStaysBoundedAndAccountsForEveryExec)
{
	const int seconds = load_seconds();
	const int workers = 2;
	std::string dir = temp_dir();
	std::string counts = dir + "/spawned";
	// `workers` processes create children as fast as they can.
	Child spawner([&] {
		std::vector<pid_t> kids;
		for (int w = 0; w < workers; w++) {
			pid_t k = fork();
			if (k == 0)
				churn_worker(seconds, counts + std::to_string(w));
			kids.push_back(k);
		}
		for (pid_t k : kids)
			waitpid(k, nullptr, 0);
		return 0;
	});
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\n"
	    << "  health_interval: 1s\n"
	    << "  max_exited_processes: 4096\n"
	    << "secrets:\n  scan_mcp_configs: false\n"
	    << "journal:\n  max_size: 1GiB\n"; // every record is counted back
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl", "--track",
	                std::to_string(spawner.pid())},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());

	double cpu0 = cpu_seconds(a.pid());
	auto t0 = Clock::now();
	spawner.go();
	std::vector<long> rss; // one sample a second
	std::atomic<bool> done{false};
	std::thread sampler([&] {
		while (!done) {
			rss.push_back(rss_kib(a.pid()));
			std::this_thread::sleep_for(std::chrono::seconds(1));
		}
	});
	EXPECT_EQ(spawner.wait(), 0);
	double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
	done = true;
	sampler.join();
	long children = workers, execs = 0; // the workers are forks too
	std::set<long> parents = {spawner.pid()};
	for (int w = 0; w < workers; w++) {
		long c = 0, e = 0, pid = 0;
		std::ifstream(counts + std::to_string(w)) >> c >> e >> pid;
		children += c;
		execs += e;
		parents.insert(pid);
	}
	ASSERT_GT(execs, 0);

	// Every fork and exec is accounted for: a record in the journal or a
	// counted drop. (The health counters alone would also count whatever
	// else on the host is tracked.)
	auto accounted = [&](const nlohmann::json &h, const char *type) {
		if (h.is_null())
			return 0L;
		return h["agent"]["records_by_type"][type].get<long>() +
		       h["kernel"]["drops_by_type"][type].get<long>();
	};
	a.wait_until(
	    [&] {
		    auto h = last_health(a.out());
		    return accounted(h, "fork") >= children && accounted(h, "exec") >= execs;
	    },
	    30000);
	double cpu = cpu_seconds(a.pid()) - cpu0;
	ASSERT_EQ(a.stop(), 0) << "the agent must survive the churn: " << slurp(a.err());
	auto h = last_health(a.out());
	ASSERT_TRUE(h.value("final", false));
	long forks_seen = 0, execs_seen = 0;
	std::vector<std::string> strays; // exec records with another parent
	JournalReadStats js;
	ASSERT_TRUE(read_journal(
	    dir + "/state/journal",
	    [&](nlohmann::json &&r) {
		    // A fork record is the parent's; an exec record names its parent.
		    if (r["type"] == "fork" && parents.count(r["pid"].get<long>()))
			    forks_seen++;
		    if (r["type"] == "exec" && parents.count(r["ppid"].get<long>()))
			    execs_seen++;
		    else if (r["type"] == "exec" && strays.size() < 5)
			    strays.push_back(r.dump()); // for the failure message
		    return true;
	    },
	    &js));
	EXPECT_EQ(js.bad_lines, 0u);
	long drops = h["kernel"]["drops"].get<long>();
	auto fork_drops = h["kernel"]["drops_by_type"]["fork"].get<long>(),
	     exec_drops = h["kernel"]["drops_by_type"]["exec"].get<long>();
	EXPECT_LE(forks_seen, children);
	EXPECT_GE(forks_seen + fork_drops, children) << h.dump();
	EXPECT_LE(execs_seen, execs);
	EXPECT_GE(execs_seen + exec_drops, execs)
	    << h.dump() << "\nexec records with another parent:\n"
	    << testing::PrintToString(strays);
	// Exits are accounted for too: no tracked process is left live.
	EXPECT_EQ(h["processes"]["tracked"].get<long>(), 0) << h["processes"].dump();
	// Bounded: exited processes are capped, and memory stops growing once
	// the caps are reached (no more than 16 MiB over the second half).
	EXPECT_LE(h["processes"]["exited_kept"].get<long>(), 4096);
	EXPECT_LE(h["correlator"]["processes"].get<long>(), 4096 + 16);
	ASSERT_GE(rss.size(), 4u);
	long mid = rss[rss.size() / 2], peak = *std::max_element(rss.begin(), rss.end());
	long late_peak = *std::max_element(rss.begin() + rss.size() / 2, rss.end());
	EXPECT_LE(late_peak - mid, 16 * 1024)
	    << "RSS grew in the second half (KiB): " << mid << " -> " << late_peak
	    << "; samples: " << testing::PrintToString(rss);
	EXPECT_LT(peak, 256 * 1024) << "peak RSS (KiB)";
	std::printf("[ churn    ] %ld processes (%ld execs) in %.1f s: %.0f/s, %ld kernel drops, "
	            "%ld checks while task storage was locked, agent CPU %.2f s (%.1f%% of one "
	            "core), RSS %ld -> %ld KiB (peak %ld)\n",
	            children, execs, elapsed, children / elapsed, drops,
	            h["kernel"]["track_lock_busy"].get<long>(), cpu, 100 * cpu / elapsed,
	            rss.front(), rss.back(), peak);
	std::printf("[ churn    ] RSS samples (KiB, 1/s): %s\n",
	            testing::PrintToString(rss).c_str());
	// Every line written is JSON (records() fails the test otherwise).
	EXPECT_FALSE(records(a.out()).empty());
}

TEST(Load, AnOpenFloodIsCountedReportedAndTheAgentRecovers)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string file = dir + "/flood.txt", env = dir + "/.env";
	std::ofstream(file) << "nothing secret\n";
	std::string tok = token("glpat-", 20, 4242);
	std::ofstream(env) << "GITLAB_TOKEN=" << tok << "\n";
	// Floods opens and reads for 4 s, rests, then reads a credential file.
	Child flooder([&] {
		char buf[64];
		auto end = Clock::now() + std::chrono::seconds(4);
		while (Clock::now() < end)
			for (int i = 0; i < 1000; i++) {
				int fd = open(file.c_str(), O_RDONLY);
				if (fd >= 0) {
					(void)!read(fd, buf, sizeof(buf));
					close(fd);
				}
			}
		sleep(3);
		int fd = open(env.c_str(), O_RDONLY);
		if (fd < 0)
			return 1;
		(void)!read(fd, buf, sizeof(buf));
		close(fd);
		sleep(1);
		return 0;
	});
	// The smallest ring buffer, so the flood overruns it.
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n"
	                                 << "  health_interval: 1s\n  ring_buffer_size: 4KiB\n"
	                                 << "secrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl", "--track",
	                std::to_string(flooder.pid())},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	flooder.go();
	ASSERT_EQ(flooder.wait(), 0);
	std::string fp = fingerprint_of(tok, dir + "/state");
	// Recovered: the credential read after the flood is seen.
	EXPECT_TRUE(
	    a.wait_until([&] { return slurp(a.out()).find(fp) != std::string::npos; }, 10000))
	    << "the agent did not see the read after the flood";
	// And a health interval passes with no new drops.
	long drops_after = -1;
	EXPECT_TRUE(a.wait_until(
	    [&] {
		    long prev = -1;
		    for (auto &r : records(a.out()))
			    if (r["type"] == "health") {
				    long d = r["kernel"]["drops"].get<long>();
				    if (d > 0 && d == prev)
					    drops_after = d;
				    prev = d;
			    }
		    return drops_after > 0;
	    },
	    10000));
	ASSERT_EQ(a.stop(), 0) << slurp(a.err());

	auto recs = records(a.out());
	auto h = last_health(a.out());
	long drops = h["kernel"]["drops"].get<long>();
	EXPECT_GT(drops, 0) << "a 4 KiB ring buffer must overflow under the flood";
	EXPECT_EQ(drops, drops_after) << "no drops once the flood stopped";
	auto by_type = h["kernel"]["drops_by_type"];
	EXPECT_GT(by_type["open"].get<long>() + by_type["close"].get<long>(), 0) << by_type.dump();
	// Reported as an alert, once per dedupe window, naming the drops.
	std::vector<nlohmann::json> degraded;
	for (auto &r : recs)
		if (r["type"] == "alert" && r["rule"] == "monitor_degraded")
			degraded.push_back(r);
	ASSERT_EQ(degraded.size(), 1u);
	EXPECT_EQ(degraded[0]["reason"], "kernel_drops");
	EXPECT_GT(degraded[0]["kernel_drops"].get<long>(), 0);
	// status.json says so too.
	auto st = nlohmann::json::parse(slurp(dir + "/state/status.json"));
	EXPECT_EQ(st["kernel"]["drops"].get<long>(), drops);
	std::printf("[ flood    ] %ld kernel events, %ld dropped (%s)\n",
	            h["kernel"]["events"].get<long>(), drops, by_type.dump().c_str());
}
