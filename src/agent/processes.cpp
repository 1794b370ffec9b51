#include "keytrail/agent/processes.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>

#include "keytrail/abi.h"
#include "keytrail/detect/mcp_detect.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/text.h"

namespace keytrail
{

// Whether the file at `path`, as the process sees it (its mount namespace),
// belongs to root and only root may change it.
static bool root_owned_in(uint32_t pid, const std::string &path)
{
	struct stat st;
	std::string in_ns = "/proc/" + std::to_string(pid) + "/root" + path;
	if (path.empty() || path[0] != '/' ||
	    (stat(in_ns.c_str(), &st) != 0 && stat(path.c_str(), &st) != 0))
		return false;
	return st.st_uid == 0 && !(st.st_mode & 022);
}

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
	info.loginuid = snap.loginuid;
	info.sessionid = snap.sessionid;
	info.tty_nr = snap.tty_nr;
	info.sid = snap.sid;
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
	info.self = is_keytrail(info);
	// A tracked process we learn of late is its parent's workload, as a
	// fork would have made it.
	if (const ProcessInfo *parent = table_.find(info.ppid); parent && info.tracked)
		info.workload = parent->workload;
	return &table_.upsert(std::move(info));
}

bool Processes::is_keytrail(const ProcessInfo &p) const
{
	if (basename_of(p.exe) != "keytrail")
		return false;
	// A binary only root can have put there: an unprivileged user cannot
	// hide behind the name.
	struct stat st;
	std::string exe = "/proc/" + std::to_string(p.pid) + "/exe";
	if (stat(exe.c_str(), &st) != 0 && stat(p.exe.c_str(), &st) != 0)
		return false;
	return st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

std::string stdio_of(pid_t pid)
{
	auto link = [&](int fd) {
		char path[64], buf[64];
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", static_cast<int>(pid), fd);
		ssize_t n = readlink(path, buf, sizeof(buf) - 1);
		return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
	};
	std::string in = link(0), out = link(1);
	auto pipe_like = [](const std::string &l) {
		return l.rfind("pipe:", 0) == 0 || l.rfind("socket:", 0) == 0;
	};
	return pipe_like(in) && pipe_like(out) ? in : "";
}

// A server asked for the Streamable HTTP (or SSE) transport, or a port:
// `--transport streamable-http`, `--http`, `--sse`, `--port 8080`, `http`
// as a subcommand.
bool http_transport(const std::vector<std::string> &argv)
{
	for (size_t i = 1; i < argv.size(); i++) {
		std::string a = argv[i];
		for (auto &c : a)
			c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
		if (a == "http" || a == "sse" || a == "--http" || a == "--sse" ||
		    a.find("streamable") != std::string::npos || a == "--port" ||
		    a.rfind("--port=", 0) == 0 || a == "--transport=http" ||
		    a == "--transport=sse" ||
		    (a == "--transport" && i + 1 < argv.size() && argv[i + 1] != "stdio"))
			return true;
	}
	return false;
}

std::shared_ptr<const Workload> Processes::make_workload(ProcessInfo &p, const McpMatch &m)
{
	auto w = std::make_shared<Workload>();
	w->root_exec_id = p.exec_id;
	w->server = m.server;
	w->rule = m.rule;
	w->identity = resolve_own(p, m.server);
	w->stdio = stdio_of(static_cast<pid_t>(p.pid));
	w->transport = !w->stdio.empty() ? "stdio" : http_transport(p.argv) ? "http" : "";
	return w;
}

const Identity &Processes::identity(ProcessInfo &p)
{
	if (p.identity)
		return *p.identity;
	if (p.workload) {
		// A descendant is its workload, unless a rule names its binary.
		if (resolver_.has_process_rules() && p.workload->root_exec_id != p.exec_id) {
			Identity own = resolve_own(p, p.workload->server);
			if (own.names_process)
				return *(p.identity = std::move(own));
		}
		p.identity = p.workload->identity;
		return *p.identity;
	}
	p.identity = resolve_own(p, "");
	return *p.identity;
}

Identity Processes::resolve_own(ProcessInfo &p, const std::string &server)
{
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
	f.mcp_server = server;
	for (ProcessInfo *a : table_.ancestry(p, 0)) {
		if (auto c = match_client(a->comm, a->exe, a->argv, cfg_->clients)) {
			f.mcp_client = *c;
			break;
		}
	}
	Identity id = resolver_.resolve(f);
	if (!alive)
		id.unresolved.push_back("proc");
	counters_.identities_resolved++;
	if (!id.resolved())
		counters_.identities_degraded++;
	return id;
}

nlohmann::json Processes::ancestry_json(ProcessInfo &p)
{
	nlohmann::json a = nlohmann::json::array();
	for (ProcessInfo *anc : table_.ancestry(p, cfg_->ancestry_depth))
		a.push_back({{"pid", anc->pid},
		             {"exec_id", anc->exec_id},
		             {"comm", shown(anc->comm)},
		             {"exe", shown(anc->exe)}});
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

namespace
{

// The login session /proc shows, where it shows one (read_proc takes a
// process being reaped for gone; one whose session leader is outside our
// pid namespace reads as session 0, and its audit files may be
// unreadable): what its exec record said (read in the kernel at exec)
// stays then, or a person's `cat` and `grep` of one terminal would be two
// readers.
void take_session(ProcessInfo &p, const ProcSnapshot &now)
{
	if (now.sid != 0) {
		p.sid = now.sid;
		p.tty_nr = now.tty_nr;
	}
	if (now.sessionid != UINT32_MAX) {
		p.loginuid = now.loginuid;
		p.sessionid = now.sessionid;
	}
}

} // namespace

void Processes::correlate(ProcessInfo &p, bool forked, bool env_observed)
{
	p.correlated = true;
	// A person's process (a reader outside any workload): which login
	// session it is, read while it still runs.
	if (!p.workload && p.sessionid == UINT32_MAX && !p.exit_time_ns)
		if (auto snap = read_proc(p.pid); snap && snap->start_ticks == p.start_ticks) {
			take_session(p, *snap);
			if (p.argv.empty())
				p.argv = process_from_snapshot(*snap).argv;
		}

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
	// Only a runner root installed: a user's copy named npx is not one.
	st.launcher = package_runner(p.argv, p.exe) && root_owned_in(p.pid, p.exe);
	st.comm = p.comm;
	st.exe = p.exe;
	st.mcp_server = p.server();
	if (p.workload)
		st.workload = p.workload->root_exec_id;
	p.argv = mask_argv(std::move(p.argv)); // complete the cheap mask of an unfollowed exec
	st.cmdline = p.argv;
	const Identity &id = identity(p);
	st.identity = id.id;
	st.selectors = id.selectors;
	st.unresolved = id.unresolved;
	st.loginuid = p.loginuid;
	st.sessionid = p.sessionid;
	st.tty_nr = p.tty_nr;
	st.sid = p.sid;
	// Ancestors first, so the correlator can walk up to them.
	if (parent && !parent->correlated)
		correlate(*parent);
	feed_(st);
}

void Processes::describe_reader(ProcessInfo &p)
{
	p.argv = mask_argv(std::move(p.argv)); // it will be written: the catalog's formats too
	auto snap = read_proc(p.pid);
	if (!snap || snap->start_ticks != p.start_ticks)
		return; // gone: what the kernel told is all there is
	ProcessInfo now = process_from_snapshot(*snap);
	if (!now.argv.empty())
		p.argv = std::move(now.argv);
	if (!now.exe.empty())
		p.exe = std::move(now.exe);
	p.tty = p.tty || now.tty;
	take_session(p, *snap);
	// Its ancestors, up to init, from /proc where the table does not know them.
	ProcessInfo *cur = &p;
	for (int depth = 0; depth < 32; depth++) {
		if (table_.parent_of(*cur) || cur->ppid <= 1)
			break;
		auto up = read_proc(cur->ppid);
		// A parent starts before its child: a later start is a reused pid
		// (the parent has exited), not to be taken for it or written over.
		if (!up || up->start_ticks > cur->start_ticks)
			break;
		cur = &table_.upsert(process_from_snapshot(*up));
	}
}

void Processes::exited(ProcessInfo &p, int64_t when_ns)
{
	if (p.correlated)
		feed_(ProcExit{when_ns, p.exec_id});
}

} // namespace keytrail
