// keytrail-bench-identity: the cost of workload identity, which is paid per
// exec and looked up per event, and the process table's memory.
//   per exec:  gather /proc facts + resolve selectors and rules (exe hash cached)
//   per event: find the process instance and its cached identity
//   memory:    the table with 10,000 live processes, each with an identity
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/identity/identity.h"
#include "keytrail/process/table.h"

using namespace keytrail;
using Clock = std::chrono::steady_clock;

namespace
{
double ns_since(Clock::time_point t0, size_t n)
{
	return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
}
} // namespace

int main()
{
	Config cfg = parse_config(R"(
identities:
  rules:
    - id: "spiffe://example.org/k8s/{k8s.pod_uid}/{mcp.server}"
      match: { k8s.pod_uid: "*" }
    - id: "spiffe://example.org/mcp/{mcp.server}/{unix.user}"
      match: { mcp.server: "*" }
environments:
  - name: prod
    match: { systemd.slice: "prod*.slice" }
)",
	                          "bench");
	IdentityResolver resolver("bench-host", "example.org", cfg.identities, cfg.environments);
	pid_t self = getpid();

	auto t0 = Clock::now();
	resolver.exe_sha256(self);
	double first_hash_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

	const size_t kExecs = 2000;
	t0 = Clock::now();
	for (size_t i = 0; i < kExecs; i++) {
		WorkloadFacts f = gather_facts(self, getppid());
		f.exe_sha256 = resolver.exe_sha256(self);
		f.mcp_server = "server-gitlab";
		Identity id = resolver.resolve(f);
		if (id.id.empty())
			return 1;
	}
	double per_exec = ns_since(t0, kExecs);

	// 10,000 live processes with realistic argv and a resolved identity.
	const size_t kLive = 10000;
	malloc_trim(0);
	size_t before = mallinfo2().uordblks;
	ProcessTable table("deadbeef", 300LL * 1000000000, 65536);
	WorkloadFacts f = gather_facts(self, getppid());
	f.mcp_server = "server-gitlab";
	for (uint32_t pid = 1000; pid < 1000 + kLive; pid++) {
		ProcessInfo p;
		p.pid = pid;
		p.ppid = 1;
		p.start_ticks = pid * 7;
		p.comm = "node";
		p.exe = "/usr/bin/node";
		p.argv = {"node",
		          "/root/.npm/_npx/9c1d4a/node_modules/@modelcontextprotocol/server-gitlab/"
		          "dist/index.js",
		          "--stdio"};
		auto w = std::make_shared<Workload>();
		w->server = "@modelcontextprotocol/server-gitlab";
		p.workload = w;
		f.pid = pid;
		p.identity = resolver.resolve(f);
		table.upsert(std::move(p));
	}
	size_t after = mallinfo2().uordblks;

	const size_t kLookups = 2000000;
	std::mt19937 rng(1);
	std::vector<uint32_t> pids(4096);
	for (auto &p : pids)
		p = 1000 + rng() % kLive;
	size_t hits = 0;
	t0 = Clock::now();
	for (size_t i = 0; i < kLookups; i++) {
		uint32_t pid = pids[i & 4095];
		ProcessInfo *p = table.find_instance(pid, pid * 7);
		hits += p && p->identity && !p->identity->id.empty();
	}
	double per_lookup = ns_since(t0, kLookups);

	std::printf("identity resolution, per exec:   %8.1f us  (/proc facts + selectors + rules; "
	            "exe hash cached)\n",
	            per_exec / 1000);
	std::printf("first exe hash (this binary):    %8.1f ms  (once per binary: "
	            "dev+inode+size+mtime cache)\n",
	            first_hash_ms);
	std::printf("per-event lookup:                %8.1f ns  (process instance + cached "
	            "identity; %zu hits)\n",
	            per_lookup, hits);
	std::printf(
	    "table memory, %zu live:       %8.1f MiB (%.0f bytes per process with identity)\n",
	    kLive, (after - before) / 1048576.0, static_cast<double>(after - before) / kLive);
	return 0;
}
