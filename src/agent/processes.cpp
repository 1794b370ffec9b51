#include "keytrail/agent/processes.h"

#include "keytrail/abi.h"
#include "keytrail/detect/mcp_detect.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/text.h"

namespace keytrail
{

ProcessInfo process_from_snapshot(const ProcSnapshot &snap)
{
	ProcessInfo info;
	info.pid = snap.pid;
	info.ppid = snap.ppid;
	info.uid = snap.uid;
	info.gid = snap.gid;
	info.start_ticks = snap.start_ticks;
	info.comm = snap.comm;
	info.exe = snap.exe;
	info.argv = mask_argv(snap.argv);
	info.tty = snap.tty;
	return info;
}

Processes::Processes(const Config &cfg, std::string host, const Clock &clock,
                     AgentCounters &counters, Feed feed)
    : cfg_(&cfg), host_(std::move(host)), clock_(clock), counters_(counters),
      feed_(std::move(feed)), table_(read_boot_id(), to_ns(cfg.process_grace), cfg.max_exited),
      resolver_(host_, cfg.trust_domain, cfg.identities, cfg.environments)
{
	// A process whose exit record was lost (ring buffer full) is retired
	// anyway, or the correlator would keep it for ever.
	table_.on_missed_exit([this](const ProcessInfo &p) {
		counters_.exits_missed++;
		if (retired_)
			retired_(p.pid);
		if (p.correlated)
			feed_(
			    ProcExit{p.exit_time_ns ? p.exit_time_ns : clock_.now_ns(), p.exec_id});
	});
}

void Processes::reconfigure(const Config &cfg)
{
	cfg_ = &cfg;
	resolver_ = IdentityResolver(host_, cfg.trust_domain, cfg.identities, cfg.environments);
}

ProcessInfo *Processes::of(const EventContext &ctx)
{
	uint64_t ticks = ns_to_clock_ticks(ctx.start_time_ns);
	if (ProcessInfo *p = table_.find_instance(ctx.pid, ticks))
		return p;
	auto snap = read_proc(ctx.pid);
	if (!snap || snap->start_ticks != ticks) {
		counters_.attribution_failures++;
		return nullptr;
	}
	ProcessInfo info = process_from_snapshot(*snap);
	info.cgroup_id = ctx.cgroup_id;
	info.tracked = ctx.flags & KT_F_TRACKED;
	if (const ProcessInfo *parent = table_.find(info.ppid))
		info.mcp_server = parent->mcp_server;
	return &table_.upsert(std::move(info));
}

const Identity &Processes::identity(ProcessInfo &p)
{
	if (p.identity)
		return *p.identity;
	// /proc is read only if it still shows this instance of the pid.
	auto snap = p.exit_time_ns ? std::nullopt : read_proc(p.pid);
	bool alive = snap && snap->start_ticks == p.start_ticks;
	WorkloadFacts f = alive ? gather_facts(p.pid, p.ppid) : WorkloadFacts{};
	f.pid = p.pid;
	f.uid = p.uid;
	f.gid = p.gid;
	if (f.exe.empty())
		f.exe = p.exe;
	if (!f.cgroup_path && p.cgroup_id)
		f.cgroup_path = cgroup_paths_.path_of(p.cgroup_id);
	if (alive)
		f.exe_sha256 = resolver_.exe_sha256(p.pid);
	f.mcp_server = p.mcp_server;
	for (ProcessInfo *a : table_.ancestry(p, 0)) {
		if (auto c = match_client(a->comm, a->exe, a->argv, cfg_->clients)) {
			f.mcp_client = *c;
			break;
		}
	}
	p.identity = resolver_.resolve(f);
	if (!alive)
		p.identity->unresolved.push_back("proc");
	counters_.identities_resolved++;
	if (!p.identity->resolved())
		counters_.identities_degraded++;
	return *p.identity;
}

nlohmann::json Processes::ancestry_json(ProcessInfo &p)
{
	nlohmann::json a = nlohmann::json::array();
	for (ProcessInfo *anc : table_.ancestry(p, cfg_->ancestry_depth))
		a.push_back({{"pid", anc->pid},
		             {"exec_id", anc->exec_id},
		             {"comm", sanitize_utf8(anc->comm)},
		             {"exe", sanitize_utf8(anc->exe)}});
	return a;
}

int64_t Processes::started_ns(const ProcessInfo &p) const
{
	if (p.exec_time_ns)
		return p.exec_time_ns;
	if (p.start_ticks)
		return clock_.boot_to_wall_ns(clock_ticks_to_ns(p.start_ticks));
	return clock_.now_ns();
}

void Processes::correlate(ProcessInfo &p, bool forked, bool env_observed)
{
	p.correlated = true;
	ProcStart st;
	st.time_ns = started_ns(p);
	st.exec_id = p.exec_id;
	ProcessInfo *parent = table_.parent_of(p);
	if (parent)
		st.parent_exec_id = parent->exec_id;
	st.pid = p.pid;
	st.ppid = p.ppid;
	st.uid = p.uid;
	st.gid = p.gid;
	st.tty = p.tty;
	st.tracked = p.tracked;
	st.forked = forked;
	st.env_observed = env_observed;
	st.comm = p.comm;
	st.exe = p.exe;
	st.mcp_server = p.mcp_server;
	st.cmdline = p.argv; // masked
	const Identity &id = identity(p);
	st.identity = id.id;
	st.selectors = id.selectors;
	st.unresolved = id.unresolved;
	// Ancestors first, so the correlator can walk up to them.
	if (parent && !parent->correlated)
		correlate(*parent);
	feed_(st);
}

void Processes::exited(ProcessInfo &p, int64_t when_ns)
{
	if (p.correlated)
		feed_(ProcExit{when_ns, p.exec_id});
}

} // namespace keytrail
