#include "keytrail/agent/secret_intake.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "keytrail/abi.h"
#include "keytrail/agent/name_table.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/secrets/mcp_config.h"
#include "keytrail/util/proc_fd.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{
// Fds looked at per process (and inodes remembered): a process holding
// more is not an MCP server worth the walk.
constexpr size_t kMaxHeldFds = 1024;
} // namespace

SecretIntake::SecretIntake(const Config &cfg, SecretSources &sources, Ledger &ledger,
                           Processes &procs, SecretCounters &counters, const Clock &clock,
                           Feed feed)
    : cfg_(&cfg), sources_(sources), ledger_(ledger), procs_(procs), counters_(counters),
      clock_(clock), feed_(std::move(feed))
{
}

void SecretIntake::collect(ProcessInfo &p, const std::vector<std::string> *raw_argv,
                           const SecretBytes *env_block)
{
	p.secrets_collected = true;
	// argv and environ were there from the exec: for a process first seen
	// in /proc, its start time (never "now", which may be after its connects).
	int64_t when = procs_.started_ns(p);
	std::vector<std::string> argv;
	if (raw_argv)
		argv = *raw_argv;
	else if (auto snap = read_proc(p.pid); snap && snap->start_ticks == p.start_ticks)
		argv = std::move(snap->argv);
	std::vector<Obtained> from_argv = sources_.from_argv(argv);
	for (auto &a : argv)
		OPENSSL_cleanse(a.data(), a.size());
	// The environment the kernel captured at exec, else /proc/PID/environ:
	// its credentials, and the proxies it names.
	std::optional<SecretBytes> proc_env;
	if (!env_block && (proc_env = read_proc_environ(static_cast<pid_t>(p.pid))))
		env_block = &*proc_env;
	std::optional<std::vector<Obtained>> env;
	if (env_block) {
		std::vector<std::string> vars = split_nul(env_block->view());
		env = sources_.from_environ(vars);
		p.proxies = proxies_from_environ(vars);
		for (auto &v : vars)
			OPENSSL_cleanse(v.data(), v.size());
	}
	if (!env)
		counters_.environ_unreadable++;
	procs_.correlate(p, false, env.has_value());
	for (const auto &o : from_argv)
		obtained(&p, o, when);
	if (env)
		for (const auto &o : *env)
			obtained(&p, o, when);
	from_held_fds(p, when);
}

void SecretIntake::from_held_fds(ProcessInfo &p, int64_t when)
{
	// Servers only: a process tracked for another reason (a hint the
	// detector rejected, `sh -c '... exec mcp-server-x'`) may by now be
	// another image, and its fds that image's.
	if (!p.workload)
		return;
	p.fds_checked_ns = clock_.now_ns();
	// What the parent held was looked at there: a child inherits it.
	const ProcessInfo *parent = procs_.table().find(p.ppid);
	if (parent && parent->workload == p.workload && p.fds_checked.empty())
		p.fds_checked = parent->fds_checked;
	std::string dir = "/proc/" + std::to_string(p.pid) + "/fd";
	DIR *d = opendir(dir.c_str());
	if (!d)
		return;
	size_t entries = 0;
	while (dirent *de = readdir(d)) {
		if (de->d_name[0] == '.')
			continue;
		if (++entries > kMaxHeldFds)
			break;
		// Looked at without opening it (a FIFO, a tty) or asking a FUSE
		// server; read below only if it may hold a credential.
		int fd = std::atoi(de->d_name);
		ProcFd f = proc_fd(p.pid, fd);
		if (f.state != ProcFd::kFound || !S_ISREG(f.mode))
			continue;
		std::pair<uint64_t, uint64_t> inode{f.dev, f.ino};
		if (p.fds_checked.count(inode))
			continue;
		if (p.fds_checked.size() < kMaxHeldFds)
			p.fds_checked.insert(inode);
		std::string name = read_link(dir + "/" + de->d_name);
		if (name.empty() || name[0] != '/' || !f.readable)
			continue;
		auto scan = sources_.from_open(static_cast<pid_t>(p.pid), fd, AT_FDCWD, name,
		                               inode.first, inode.second);
		if (!scan || scan->unreadable || scan->secrets.empty())
			continue;
		counters_.held_fd_files++;
		procs_.ensure_correlated(p);
		for (const auto &o : scan->secrets) {
			Obtained here = o;
			here.location = scan->path;
			here.mtime_ns = scan->mtime_ns;
			obtained(&p, here, when);
		}
	}
	closedir(d);
}

void SecretIntake::recheck_held_fds(ProcessInfo &p, int64_t when)
{
	// Fds received over a unix socket (SCM_RIGHTS) since the last look:
	// checked before a use is attributed, at most once a second.
	if (clock_.now_ns() - p.fds_checked_ns >= 1000000000LL)
		from_held_fds(p, when);
}

std::optional<FileScan> SecretIntake::from_open(ProcessInfo *p, const OpenEvent &e,
                                                const std::string &path, bool watched,
                                                const std::string &watched_as)
{
	// An fd that cannot read (O_PATH needs only search permission on the
	// way; O_WRONLY) holds no secret: the agent must not read it for them.
	if (!e.path.empty() && ((e.flags & O_PATH) || (e.flags & O_ACCMODE) == O_WRONLY))
		return std::nullopt;
	// Where a relative path started, should the process be gone by now: its
	// parent's cwd (a shell's `cd dir && cat .env` child inherits it), else
	// its workload's at exec. The one under which the path is this inode
	// wins; a wrong guess fails the inode check.
	auto cwds = [&] {
		std::vector<std::string> out;
		if (e.ctx.ppid)
			out.push_back(read_link("/proc/" + std::to_string(e.ctx.ppid) + "/cwd"));
		if (p && p->identity) {
			auto it = p->identity->selectors.find("mcp.cwd");
			if (it != p->identity->selectors.end())
				out.push_back(it->second);
		}
		return out;
	};
	int64_t when = procs_.wall_ns(e.ctx.ts_ns);
	auto scan = watched && e.path.empty()
	                ? sources_.cached_inode(e.dev, e.ino)
	                : sources_.from_open(static_cast<pid_t>(e.ctx.pid), e.fd, e.dirfd, path,
	                                     e.dev, e.ino, cwds, watched_as, when);
	if (!scan || scan->unreadable)
		return std::nullopt; // counted: secrets.files_unreadable, files_rewritten
	if (p && !scan->secrets.empty())
		procs_.ensure_correlated(*p);
	for (const auto &o : scan->secrets) {
		Obtained here = o;
		here.location = scan->path;
		here.mtime_ns = scan->mtime_ns;
		obtained(p, here, when);
	}
	return scan;
}

void SecretIntake::from_mcp_configs()
{
	std::vector<std::string> paths;
	if (cfg_->scan_mcp_configs)
		for (const auto &home : user_homes())
			for (auto &p : mcp_config_locations(home))
				paths.push_back(std::move(p));
	for (const auto &pattern : cfg_->mcp_configs) {
		glob_t g{};
		if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
			for (size_t i = 0; i < g.gl_pathc; i++)
				paths.push_back(g.gl_pathv[i]);
		globfree(&g);
	}
	int64_t now = clock_.now_ns();
	for (const auto &path : paths) {
		ConfigScanResult r = sources_.from_mcp_config(path);
		if (r.error) {
			spdlog::warn("MCP client config {}", shown(*r.error));
			continue;
		}
		for (const auto &o : r.secrets)
			obtained(nullptr, o, now);
	}
}

void SecretIntake::obtained(ProcessInfo *p, const Obtained &o, int64_t time_ns)
{
	// A token in a file or directory name is masked before the location
	// reaches the ledger, the correlator or any record.
	const std::string location = shown(o.location);
	if (p) {
		for (const auto &h : p->secrets)
			if (h.fingerprint == o.fingerprint && h.source == o.source &&
			    h.location == location)
				return; // already known to hold it this way
		p->secrets.push_back({o.fingerprint, o.type, o.source, location, o.name, time_ns});
	}
	counters_.obtained++;
	Sighting s{o.fingerprint, o.type, o.prefix, o.source, location, o.name, "", time_ns};
	if (p) {
		const Identity &id = procs_.identity(*p);
		s.identity = id.id;
		if (auto env = id.selectors.find("env"); env != id.selectors.end())
			s.environment = env->second;
		procs_.ensure_correlated(*p);
	}
	s.mtime_ns = o.mtime_ns;
	SightingResult known = ledger_.record_sighting(s);

	SecretSeen in;
	in.time_ns = time_ns;
	in.exec_id = p ? p->exec_id : "";
	in.fingerprint = o.fingerprint;
	in.type = o.type;
	in.prefix = o.prefix;
	in.source = o.source;
	in.location = location;
	in.name = o.name;
	in.server = o.server;
	in.line = static_cast<uint32_t>(o.line);
	in.file_mtime_ns = o.mtime_ns;
	in.first_seen_ns = known.first_seen;
	in.last_used_ns = known.last_used;
	if (known.rotated_from) {
		counters_.rotations++;
		in.rotated_from = *known.rotated_from;
	}
	feed_(in);
}

} // namespace keytrail
