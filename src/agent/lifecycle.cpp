#include "keytrail/agent/lifecycle.h"

#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <set>

#include "keytrail/abi.h"
#include "keytrail/detect/package.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/secrets/paths.h"

namespace keytrail
{

namespace
{

// /proc/PID/comm without its newline.
bool read_comm(pid_t pid, std::string *comm)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
	return static_cast<bool>(std::getline(in, *comm));
}

// Children of every thread of pid, as /proc lists them.
void proc_children(uint32_t pid, std::vector<uint32_t> *out)
{
	glob_t g{};
	std::string pattern = "/proc/" + std::to_string(pid) + "/task/*/children";
	if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++) {
			std::ifstream in(g.gl_pathv[i]);
			uint32_t c;
			while (in >> c)
				out->push_back(c);
		}
	}
	globfree(&g);
}

// A parent's name the detector is given when there is none.
const std::string kUnknown;

} // namespace

Lifecycle::Lifecycle(const Config &cfg, ProbeControl &probe, Processes &procs,
                     AgentCounters &counters)
    : probe_(probe), procs_(procs), counters_(counters),
      detector_(cfg.builtin_rules, cfg.rules,
                [this](pid_t pid, const std::string &path) { return package_of(pid, path); }),
      self_pid_(static_cast<uint32_t>(getpid()))
{
}

void Lifecycle::reconfigure(const Config &cfg)
{
	detector_ =
	    McpDetector(cfg.builtin_rules, cfg.rules, [this](pid_t pid, const std::string &path) {
		    return package_of(pid, path);
	    });
}

std::optional<std::string> Lifecycle::package_of(pid_t pid, const std::string &path)
{
	std::string root = "/proc/" + std::to_string(pid) + "/root";
	struct stat st;
	if (stat(root.c_str(), &st) != 0)
		return std::nullopt; // gone: its name is what argv says
	auto key = std::make_tuple(static_cast<uint64_t>(st.st_dev),
	                           static_cast<uint64_t>(st.st_ino), path);
	if (auto it = packages_.find(key); it != packages_.end())
		return it->second;
	if (packages_.size() >= 4096)
		packages_.clear();
	return packages_[key] = npm_package_of(root, path);
}

ProcessInfo Lifecycle::entry_of(const ExecEvent &e) const
{
	ProcessInfo info;
	info.pid = e.ctx.pid;
	info.ppid = e.ctx.ppid;
	info.uid = e.ctx.uid;
	info.gid = e.ctx.gid;
	info.start_ticks = ns_to_clock_ticks(e.ctx.start_time_ns);
	info.comm = e.ctx.comm;
	info.exe = e.filename;
	info.cgroup_id = e.ctx.cgroup_id;
	info.tty = e.ctx.flags & KT_F_TTY;
	info.tty_nr = e.tty_nr;
	info.sid = e.sid;
	info.loginuid = e.loginuid;
	info.sessionid = e.sessionid;
	info.tracked = e.ctx.flags & KT_F_TRACKED;
	info.exec_time_ns = procs_.wall_ns(e.ctx.ts_ns);
	// A relative exec path is relative to the cwd. Not /proc/PID/exe: for a
	// script that is the interpreter, and the script's name is what matters.
	if (!info.exe.empty() && info.exe[0] != '/')
		if (auto r = resolve_process_path(static_cast<pid_t>(info.pid), AT_FDCWD, info.exe))
			info.exe = r->logical;
	return info;
}

ExecOutcome Lifecycle::on_exec(ExecEvent &e)
{
	uint32_t pid = e.ctx.pid;
	ProcessInfo info = entry_of(e);
	ProcessTable &table = procs_.table();
	const ProcessInfo *parent = table.find(e.ctx.ppid);
	const ProcessInfo *before = table.find_instance(pid, info.start_ticks);
	// A process we tracked keeps being tracked, though the kernel's exec
	// record says otherwise: an exec from a non-leader thread replaces the
	// group leader and the mark on it, and a mark lookup can fail while task
	// storage is locked. Marked again if it is still there.
	if (before && before->tracked && !info.tracked) {
		info.tracked = true;
		counters_.marks_restored++;
		probe_.track(static_cast<pid_t>(pid));
	}

	ProcessFacts facts{static_cast<pid_t>(pid),
	                   e.ctx.uid,
	                   info.exe,
	                   e.argv,
	                   parent ? parent->comm : kUnknown,
	                   parent ? parent->exe : kUnknown};
	ExecOutcome out;
	info.self = procs_.is_keytrail(info);
	if (!info.self)
		out.match = detector_.match(facts);
	// The workload it was in stays its own (a shim exec'ing its
	// interpreter, `exec node ...`), unless this image is another server.
	if (before) {
		info.workload = before->workload;
		info.reader = before->reader;
	} else if (parent && info.tracked) {
		info.workload = parent->workload;
		info.reader = parent->reader;
	}
	bool new_root =
	    out.match &&
	    (!info.workload || (out.match->named && out.match->server != info.workload->server));
	settle_hint(e, info, out.match.has_value(), &out.was_tracked);
	// Every exec's argv is kept (a reader's or a server's parent's is
	// written later), masked fully (the catalog's formats) when it is
	// followed, cheaply otherwise, and fully before any is written
	// (Processes::correlate). An exec that is not followed gives the record
	// its argv: nothing reads it after this.
	if (info.tracked || out.match)
		info.argv = mask_argv(e.argv);
	else
		info.argv = mask_argv(std::move(e.argv), false);
	ProcessInfo &entry = table.upsert(std::move(info));
	if (new_root)
		entry.workload = procs_.make_workload(entry, *out.match);
	if (out.match && !out.was_tracked)
		out.newly_tracked = track(pid, *out.match); // and its children forked before
	out.proc = table.find(pid);
	if (out.proc->tracked && !keep_tracking(*out.proc)) {
		let_go(pid, out.proc->start_ticks, e.ctx.comm);
		out.proc->tracked = false;
		out.proc->untracked = true;
		out.was_tracked = false;
	}
	if (out.proc->tracked)
		capture_stdio(*out.proc);
	if (out.proc->tracked || out.match) {
		// Resolved now, while /proc still shows this exec.
		procs_.identity(*out.proc);
		if (std::find(out.newly_tracked.begin(), out.newly_tracked.end(), out.proc) ==
		    out.newly_tracked.end())
			out.newly_tracked.insert(out.newly_tracked.begin(), out.proc);
	}
	return out;
}

void Lifecycle::settle_hint(const ExecEvent &e, ProcessInfo &info, bool matched, bool *was_tracked)
{
	uint32_t pid = e.ctx.pid;
	bool provisional = e.ctx.flags & KT_F_PROVISIONAL;
	bool drop = false;
	*was_tracked = info.tracked && !provisional;
	if (auto it = let_go_.find(pid); it != let_go_.end()) {
		// We let go of this process's previous image (a rejected hint: `sh
		// -c 'exec mcp-server-x'`; a child of one: `env mcp-server-x`); the
		// kernel may still have marked this exec tracked. It decides afresh:
		// tracked again below if it matches, let go of again if not.
		LetGo h = it->second;
		let_go_.erase(it);
		if (h.start_ticks == info.start_ticks && *was_tracked &&
		    (h.untracked || !matched)) {
			*was_tracked = info.tracked = false;
			drop = !matched;
		}
	}
	if (provisional) {
		if (matched) {
			counters_.exec_hint_hits++;
			return;
		}
		counters_.exec_hint_misses++;
		drop = true;
	}
	if (drop) {
		let_go(pid, info.start_ticks, e.ctx.comm);
		info.tracked = false;
	}
}

void Lifecycle::let_go(uint32_t pid, uint64_t start_ticks, const std::string &comm)
{
	// Untrack it, unless it has already exec'd something else (its comm
	// changed): that image's own exec record decides, or the server it
	// became would be blind until then. If it execs between this look and
	// the untrack, that exec record says tracked, and settle_hint knows
	// better.
	std::string now_comm;
	bool replaced = read_comm(static_cast<pid_t>(pid), &now_comm) && now_comm != comm;
	if (!replaced)
		probe_.untrack(static_cast<pid_t>(pid));
	let_go_[pid] = {start_ticks, !replaced};
}

ProcessInfo &Lifecycle::on_fork(const ForkEvent &e)
{
	ProcessInfo *parent = procs_.of(e.ctx);
	ProcessTable &table = procs_.table();
	// track() may have found the child in /proc first, or its exec may have
	// been read first: never replace what we know about this instance.
	if (ProcessInfo *known =
	        table.find_instance(e.child_pid, ns_to_clock_ticks(e.child_start_time_ns))) {
		known->tracked = true;
		if (!known->correlated)
			procs_.correlate(*known, true, false);
		return *known;
	}
	ProcessInfo child;
	child.pid = e.child_pid;
	child.ppid = e.ctx.pid;
	child.uid = e.ctx.uid;
	child.gid = e.ctx.gid;
	child.start_ticks = ns_to_clock_ticks(e.child_start_time_ns);
	child.comm = e.ctx.comm;
	child.cgroup_id = e.ctx.cgroup_id;
	child.tracked = true; // the kernel marked it at fork
	child.tty = e.ctx.flags & KT_F_TTY;
	if (parent) {
		child.exe = parent->exe;
		child.argv = parent->argv;
		child.workload = parent->workload;
		child.reader = parent->reader;
		child.self = parent->self;
		child.proxies = parent->proxies;
	}
	bool parent_correlated = parent && parent->correlated;
	ProcessInfo &c = table.upsert(std::move(child));
	c.exec_time_ns = procs_.wall_ns(e.ctx.ts_ns);
	if (!keep_tracking(c)) {
		// A child the kernel marked under a parent whose exec hint the rules
		// rejected. Not followed; the kernel's mark stays until its own exec
		// decides (it may be the server: `sh -c 'exec mcp-server-x'` forks
		// first), so no fork of it in the meantime is ever missed.
		c.tracked = false;
		c.pending = true;
		return c;
	}
	if (parent_correlated)
		procs_.correlate(c, true, false);
	return c;
}

void Lifecycle::on_exit(const ExitEvent &e)
{
	let_go_.erase(e.ctx.pid);
	int64_t when = procs_.wall_ns(e.ctx.ts_ns);
	ProcessTable &table = procs_.table();
	ProcessInfo *p = table.find_instance(e.ctx.pid, ns_to_clock_ticks(e.ctx.start_time_ns));
	if (p)
		procs_.exited(*p, when);
	// Kept for a while as exited only if something can still ask for it: a
	// child's ancestry, a trace of a process the correlator knows, a
	// workload's root. Most processes on a host (`/bin/true` from a shell
	// loop, a compiler from make) are none of these, and are gone now.
	if (p && !p->parent && !p->correlated && !p->tracked && !p->pending && !p->reader &&
	    !p->workload && p->secrets.empty())
		table.forget(e.ctx.pid);
	else
		table.mark_exited(e.ctx.pid, when);
}

// A tracked process is a workload's, a reader of a watched file's, or a
// mistake: a child the kernel marked at fork under a parent whose exec hint
// the rules then rejected. Never our own processes.
bool Lifecycle::keep_tracking(const ProcessInfo &p) const
{
	return !p.self && (p.workload || p.reader);
}

void Lifecycle::capture_stdio(const ProcessInfo &p)
{
	if (!p.workload || p.workload->stdio.empty() || p.self)
		return;
	if (stdio_of(static_cast<pid_t>(p.pid)) == p.workload->stdio &&
	    probe_.capture_stdio(static_cast<pid_t>(p.pid)))
		counters_.stdio_servers++;
}

std::vector<ProcessInfo *> Lifecycle::track(uint32_t pid, const McpMatch &why)
{
	// Depth-first over the known tree and /proc's children lists: children
	// forked before we decided to track the parent are tracked too, and are
	// the root's workload.
	std::vector<ProcessInfo *> fresh;
	std::vector<uint32_t> todo{pid};
	std::set<uint32_t> seen;
	ProcessTable &table = procs_.table();
	std::shared_ptr<const Workload> root, before; // the root's new workload, and its old one
	while (!todo.empty()) {
		uint32_t p = todo.back();
		todo.pop_back();
		if (!seen.insert(p).second || p == self_pid_)
			continue;
		probe_.track(static_cast<pid_t>(p));
		ProcessInfo *info = table.find(p);
		if (!info)
			if (auto snap = read_proc(p))
				info = &table.upsert(process_from_snapshot(*snap));
		if (info && info->self) {
			probe_.untrack(static_cast<pid_t>(p));
			continue;
		}
		if (info) {
			info->tracked = true;
			if (!root) {
				before = info->workload;
				root = before && before->root_exec_id == info->exec_id
				           ? before
				           : procs_.make_workload(*info, why);
			}
			// Descendants are the root's workload, unless they are one of
			// their own (a nested server found earlier in the scan).
			if (!info->workload || info->workload == before || p == pid)
				info->workload = root;
			capture_stdio(*info);
			if (!info->secrets_collected)
				fresh.push_back(info);
		}
		for (uint32_t c : table.children_of(p))
			todo.push_back(c);
		proc_children(p, &todo);
	}
	return fresh;
}

std::vector<ProcessInfo *> Lifecycle::scan_proc(const std::vector<pid_t> &extra)
{
	std::vector<ProcessInfo *> fresh;
	auto add = [&](std::vector<ProcessInfo *> more) {
		for (ProcessInfo *p : more)
			if (std::find(fresh.begin(), fresh.end(), p) == fresh.end())
				fresh.push_back(p);
	};
	ProcessTable &table = procs_.table();
	for (uint32_t pid : list_pids()) {
		auto snap = read_proc(pid);
		if (!snap)
			continue; // exited while we looked
		ProcessFacts facts{
		    static_cast<pid_t>(pid), snap->uid, snap->exe, snap->argv, kUnknown, kUnknown};
		table.upsert(process_from_snapshot(*snap));
		if (pid == self_pid_)
			continue;
		if (auto m = detector_.match(facts))
			add(track(pid, *m));
	}
	for (pid_t p : extra)
		add(track(static_cast<uint32_t>(p), McpMatch{"", "manual"}));
	return fresh;
}

void Lifecycle::sweep()
{
	// Untracked processes send no exit record.
	std::erase_if(let_go_,
	              [](const auto &kv) { return kill(kv.first, 0) != 0 && errno == ESRCH; });
}

} // namespace keytrail
