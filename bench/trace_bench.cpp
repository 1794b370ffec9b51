// keytrail-bench-trace [SEGMENTS] [MIB_PER_SEGMENT] [GIB]: `trace --secret` over a
// synthetic journal written through JournalSink (so segments are gzipped
// and indexed as the agent does it), with each segment's index and without
// (every segment read), and the ratio; then over the same journal grown to
// GIB of gzip (default 1, a week at the default retention) with links to
// its segments. Issue 15's goal: that answered in <= 1 s.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "keytrail/output/journal.h"
#include "keytrail/tools/trace.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/files.h"

using namespace keytrail;
using nlohmann::json;

namespace
{

std::string fp_of(uint64_t i)
{
	char buf[33];
	std::snprintf(buf, sizeof(buf), "%016llx%016llx",
	              static_cast<unsigned long long>(i * 0x9e3779b97f4a7c15ULL),
	              static_cast<unsigned long long>(i));
	return buf;
}

double cpu_seconds()
{
	rusage ru{};
	getrusage(RUSAGE_SELF, &ru);
	return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double seconds_since(std::chrono::steady_clock::time_point t0)
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t dir_bytes(const std::string &dir, const char *suffix)
{
	uint64_t n = 0;
	for (const auto &s : journal_segments(dir)) {
		struct stat st;
		std::string p = s + suffix;
		if (stat(p.c_str(), &st) == 0)
			n += static_cast<uint64_t>(st.st_size);
	}
	return n;
}

} // namespace

int main(int argc, char **argv)
{
	int segments = argc > 1 ? std::atoi(argv[1]) : 40;
	int mib = argc > 2 ? std::atoi(argv[2]) : 4;
	double goal_gib = argc > 3 ? std::atof(argv[3]) : 1.0;
	char tmpl[] = "/tmp/kt-trace-bench-XXXXXX";
	if (!mkdtemp(tmpl))
		return 1;
	std::string dir = std::string(tmpl) + "/journal";
	auto t0 = std::chrono::steady_clock::now();
	const int64_t start = 1800000000LL * 1000000000LL;
	uint64_t written = 0, proc = 0;
	const uint64_t needle = 1u << 30; // the credential asked for: one process, mid-journal
	bool needle_written = false;
	{
		JournalConfig cfg;
		cfg.dir = dir;
		cfg.segment_size = static_cast<uint64_t>(mib) << 20;
		cfg.segment_age = std::chrono::hours(24 * 365);
		JournalSink sink(cfg);
		const uint64_t total = static_cast<uint64_t>(segments) * cfg.segment_size;
		while (written < total) {
			int64_t t = start + static_cast<int64_t>(proc) * 1000000;
			std::string id =
			    "b:" + std::to_string(proc) + ":" + std::to_string(1000 + proc);
			uint32_t pid = 1000 + proc % 30000;
			// A server forks 500 helpers: a process's siblings sit in a
			// segment or two, as on a host with many servers.
			json anc =
			    json::array({{{"exec_id", "b:p:" + std::to_string(proc / 500)},
			                  {"pid", 900},
			                  {"comm", "node"}},
			                 {{"exec_id", "b:0:1"}, {"pid", 1}, {"comm", "systemd"}}});
			// Each server and its helpers hold its credential; the one asked
			// for was read by one helper, once.
			bool here = !needle_written && written >= total / 2;
			needle_written = needle_written || here;
			std::string fp = fp_of(here ? needle : proc / 500);
			json recs[] = {
			    {{"type", "exec"},
			     {"time", rfc3339(t)},
			     {"exec_id", id},
			     {"pid", pid},
			     {"comm", "node"},
			     {"filename", "/usr/bin/node"},
			     {"argv", {"node", "server.js", "--token", "****"}},
			     {"mcp_server", "mcp-server-" + std::to_string(proc % 50)},
			     {"identity",
			      {{"id", "spiffe://t/mcp-server-" + std::to_string(proc % 50)}}},
			     {"ancestry", anc}},
			    {{"type", "secret"},
			     {"time", rfc3339(t + 1000)},
			     {"exec_id", id},
			     {"pid", pid},
			     {"identity",
			      {{"id", "spiffe://t/mcp-server-" + std::to_string(proc % 50)}}},
			     {"secret",
			      {{"fingerprint", fp},
			       {"type", "github_token"},
			       {"source", "env"},
			       {"env", "GH"}}}},
			    {{"type", "connect"},
			     {"time", rfc3339(t + 2000)},
			     {"exec_id", id},
			     {"pid", pid},
			     {"addr", "203.0.113.7"},
			     {"port", 443},
			     {"sni", "api.github.com"}},
			    {{"type", "exit"},
			     {"time", rfc3339(t + 3000)},
			     {"exec_id", id},
			     {"pid", pid}}};
			for (const auto &r : recs) {
				std::string line = r.dump();
				written += line.size() + 1;
				sink.write(line, LineMeta{"x", 6, t});
			}
			proc++;
		}
	} // the destructor waits for gzip and the indexes
	std::printf("trace: %d segments of %d MiB, %llu processes, %.1f MiB gzip + %.2f MiB "
	            "index (written in %.1f s)\n",
	            segments, mib, static_cast<unsigned long long>(proc),
	            dir_bytes(dir, "") / 1048576.0, dir_bytes(dir, ".idx") / 1048576.0,
	            seconds_since(t0));
	TraceQuery q;
	q.secret = fp_of(needle).substr(0, 12);
	auto segs = journal_segments(dir);
	t0 = std::chrono::steady_clock::now();
	auto with = run_trace(dir, q);
	double indexed = seconds_since(t0);
	for (const auto &s : segs)
		rename((s + ".idx").c_str(), (s + ".idx.off").c_str());
	t0 = std::chrono::steady_clock::now();
	auto without = run_trace(dir, q);
	double full = seconds_since(t0);
	for (const auto &s : segs)
		rename((s + ".idx.off").c_str(), (s + ".idx").c_str());
	bool same =
	    trace_json(with)["processes"] == trace_json(without)["processes"] && with.error.empty();
	std::printf(
	    "  trace --secret with indexes    %7.3f s  (%llu of %llu segments read)\n", indexed,
	    static_cast<unsigned long long>(with.stats.segments - with.stats.skipped_segments),
	    static_cast<unsigned long long>(with.stats.segments));
	std::printf("  trace --secret reading all     %7.3f s\n", full);
	std::printf("  full / indexed: %.1fx   same answer: %s\n",
	            full / (indexed > 0 ? indexed : 1e-9), same ? "yes" : "NO");

	// A week-sized journal: the segments of the first quarter (the process
	// asked for, mid-journal, and its server's tree are far from them)
	// again under later names, as
	// hard links with their indexes, until the gzip total reaches the goal.
	// The query must skip every one of them on its index alone.
	uint64_t gz = dir_bytes(dir, ""), idx = dir_bytes(dir, ".idx");
	const uint64_t goal = static_cast<uint64_t>(goal_gib * (1ull << 30));
	size_t links = 0;
	for (int64_t t = start + 3650LL * 86400 * 1000000000LL; gz < goal && segs.size() > 4;
	     t += 1000) {
		const std::string &src = segs[links % std::max<size_t>(segs.size() / 4, 1)];
		std::string dst = dir + "/journal-" + compact_utc(t) + ".jsonl.gz";
		struct stat st, ist;
		if (stat(src.c_str(), &st) != 0 || stat((src + ".idx").c_str(), &ist) != 0 ||
		    link(src.c_str(), dst.c_str()) != 0 ||
		    link((src + ".idx").c_str(), (dst + ".idx").c_str()) != 0)
			return 1;
		gz += static_cast<uint64_t>(st.st_size);
		idx += static_cast<uint64_t>(ist.st_size);
		links++;
	}
	std::vector<double> times, cpu;
	TraceResult big;
	for (int round = 0; round < 3; round++) {
		double c0 = cpu_seconds();
		t0 = std::chrono::steady_clock::now();
		big = run_trace(dir, q);
		times.push_back(seconds_since(t0));
		cpu.push_back(cpu_seconds() - c0);
	}
	std::sort(times.begin(), times.end());
	std::sort(cpu.begin(), cpu.end());
	bool big_same =
	    trace_json(big)["processes"] == trace_json(with)["processes"] && big.error.empty();
	std::printf("  week-sized: %llu segments, %.0f MiB gzip + %.0f MiB index\n",
	            static_cast<unsigned long long>(big.stats.segments), gz / 1048576.0,
	            idx / 1048576.0);
	std::printf(
	    "  trace --secret with indexes    %7.3f s min, %.3f s median, %.3f s CPU  (%llu "
	    "segments read)   same answer: %s   goal: <= 1 s for 1 GiB gzip\n",
	    times.front(), times[1], cpu[1],
	    static_cast<unsigned long long>(big.stats.segments - big.stats.skipped_segments),
	    big_same ? "yes" : "NO");
	same = same && big_same;
	std::string rm = "rm -rf " + std::string(tmpl);
	if (std::getenv("KEYTRAIL_BENCH_KEEP")) // to look at it, e.g. keytrail trace --state-dir
		std::printf("  kept: %s\n", tmpl);
	else if (std::system(rm.c_str()) != 0)
		return 1;
	return same ? 0 : 1;
}
