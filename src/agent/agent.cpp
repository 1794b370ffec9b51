#include "keytrail/agent/agent.h"

#include <fcntl.h>
#include <glob.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "keytrail/abi.h"
#include "keytrail/output/journal.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/secrets/mcp_config.h"
#include "keytrail/secrets/paths.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

constexpr const char *kSchemaVersion = "2";

std::string hostname()
{
	char buf[256] = "";
	gethostname(buf, sizeof(buf) - 1);
	return buf;
}

std::string errno_name(int err)
{
	if (err == 0)
		return "ok";
	const char *n = strerrorname_np(err);
	return n ? n : "E" + std::to_string(err);
}

std::string open_flags_string(uint32_t f)
{
	std::string s;
	switch (f & O_ACCMODE) {
	case O_RDONLY: s = "O_RDONLY"; break;
	case O_WRONLY: s = "O_WRONLY"; break;
	default: s = "O_RDWR"; break;
	}
	static const std::pair<uint32_t, const char *> names[] = {
	    {O_CREAT, "O_CREAT"},       {O_EXCL, "O_EXCL"},         {O_TRUNC, "O_TRUNC"},
	    {O_APPEND, "O_APPEND"},     {O_NONBLOCK, "O_NONBLOCK"}, {O_DIRECTORY, "O_DIRECTORY"},
	    {O_NOFOLLOW, "O_NOFOLLOW"}, {O_CLOEXEC, "O_CLOEXEC"},   {O_PATH, "O_PATH"}};
	for (auto &[bit, name] : names)
		if ((f & bit) == bit)
			s += std::string("|") + name;
	return s;
}

const char *family_name(uint16_t f)
{
	switch (f) {
	case AF_INET: return "inet";
	case AF_INET6: return "inet6";
	case AF_UNIX: return "unix";
	case AF_NETLINK: return "netlink";
	default: return "other";
	}
}

const char *sock_type_name(uint16_t t)
{
	switch (t) {
	case SOCK_STREAM: return "tcp";
	case SOCK_DGRAM: return "udp";
	case SOCK_RAW: return "raw";
	default: return "other";
	}
}

const char *close_reason_name(uint32_t r)
{
	switch (r) {
	case KT_CLOSE_CLOSE: return "close";
	case KT_CLOSE_EXIT: return "exit";
	case KT_CLOSE_EXEC: return "exec";
	default: return "unknown";
	}
}

nlohmann::json argv_json(const std::vector<std::string> &argv)
{
	nlohmann::json a = nlohmann::json::array();
	for (const auto &s : argv)
		a.push_back(sanitize_utf8(s));
	return a;
}

// A table entry for a process first seen in /proc; its argv masked.
ProcessInfo from_snapshot(const ProcSnapshot &snap)
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

// /proc/PID/comm without its newline.
bool read_comm(pid_t pid, std::string *comm)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
	return static_cast<bool>(std::getline(in, *comm));
}

} // namespace

Agent::Agent(Config cfg, AgentOptions opts)
    : cfg_(std::move(cfg)), opts_(std::move(opts)), events_(opts_.events || cfg_.events),
      host_(hostname()), loader_(LoaderOptions{cfg_.ring_buffer_bytes, 0}),
      detector_(cfg_.builtin_rules, cfg_.rules),
      table_(read_boot_id(), static_cast<int64_t>(cfg_.process_grace.count()) * 1000000LL,
             cfg_.max_exited),
      resolver_(host_, cfg_.trust_domain, cfg_.identities, cfg_.environments)
{
	if (!opts_.state_dir.empty())
		cfg_.state_dir = opts_.state_dir;
	if (!opts_.metrics.empty())
		cfg_.metrics_address = opts_.metrics;
	// An exit record that was dropped: the pid was reused, or the process
	// was found gone.
	table_.on_missed_exit([this](const ProcessInfo &p) {
		missed_exit(p, p.exit_time_ns ? p.exit_time_ns : clock_.now_ns());
	});
}

// A process whose exit record was lost (ring buffer full) is retired anyway,
// or the correlator would keep it for ever.
void Agent::missed_exit(const ProcessInfo &p, int64_t when_ns)
{
	exits_missed_++;
	open_fds_.erase(p.pid);
	if (p.correlated)
		feed(ProcExit{when_ns, p.exec_id});
}

Agent::~Agent() = default;

nlohmann::json Agent::base(const char *type, const EventContext &ctx)
{
	nlohmann::json r;
	r["type"] = type;
	r["time"] = rfc3339(clock_.boot_to_wall_ns(ctx.ts_ns));
	r["host"] = host_;
	r["pid"] = ctx.pid;
	r["tid"] = ctx.tid;
	r["ppid"] = ctx.ppid;
	r["comm"] = sanitize_utf8(ctx.comm);
	r["uid"] = ctx.uid;
	r["gid"] = ctx.gid;
	ProcessInfo *p = process_for(ctx);
	r["exec_id"] =
	    p ? p->exec_id
	      : make_exec_id(table_.boot_id(), ns_to_clock_ticks(ctx.start_time_ns), ctx.pid);
	if (p && !p->mcp_server.empty())
		r["mcp_server"] = p->mcp_server;
	if (p && (p->tracked || (ctx.flags & KT_F_TRACKED)))
		r["identity"] = identity_of(*p).id;
	return r;
}

// An observation record: type, time and tid as fields, the rest of base()
// spliced from the process's cached members (a flood of opens builds three
// fields per record, not twelve).
Record Agent::observation(const char *type, const EventContext &ctx)
{
	Record r;
	ProcessInfo *p = process_for(ctx);
	if (!p) {
		r.fields = base(type, ctx);
		return r;
	}
	r.fields["type"] = type;
	r.fields["time"] = rfc3339(clock_.boot_to_wall_ns(ctx.ts_ns));
	r.fields["tid"] = ctx.tid;
	auto &m = p->members;
	bool identity = p->tracked || (ctx.flags & KT_F_TRACKED);
	if (!m.json || m.ppid != ctx.ppid || m.uid != ctx.uid || m.gid != ctx.gid ||
	    m.comm != ctx.comm || m.identity != identity) {
		nlohmann::json b = base(type, ctx);
		for (const char *own : {"type", "time", "tid"})
			b.erase(own);
		std::string s = b.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
		m = {ctx.ppid, ctx.uid,
		     ctx.gid,  ctx.comm,
		     identity, std::make_shared<const std::string>(s.substr(1, s.size() - 2))};
	}
	r.raw.push_back({"", m.json});
	return r;
}

const Identity &Agent::identity_of(ProcessInfo &p)
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
		if (auto c = match_client(a->comm, a->exe, a->argv, cfg_.clients)) {
			f.mcp_client = *c;
			break;
		}
	}
	p.identity = resolver_.resolve(f);
	if (!alive)
		p.identity->unresolved.push_back("proc");
	identities_resolved_++;
	if (!p.identity->resolved())
		identities_degraded_++;
	return *p.identity;
}

nlohmann::json Agent::ancestry_json(ProcessInfo &p)
{
	nlohmann::json a = nlohmann::json::array();
	for (ProcessInfo *anc : table_.ancestry(p, cfg_.ancestry_depth))
		a.push_back({{"pid", anc->pid},
		             {"exec_id", anc->exec_id},
		             {"comm", sanitize_utf8(anc->comm)},
		             {"exe", sanitize_utf8(anc->exe)}});
	return a;
}

// The table entry for the process that made the event; read from /proc the
// first time a process is seen (it started before us or its exec was lost).
ProcessInfo *Agent::process_for(const EventContext &ctx)
{
	uint64_t ticks = ns_to_clock_ticks(ctx.start_time_ns);
	if (ProcessInfo *p = table_.find_instance(ctx.pid, ticks))
		return p;
	auto snap = read_proc(ctx.pid);
	if (!snap || snap->start_ticks != ticks) {
		unattributed_++;
		return nullptr;
	}
	ProcessInfo info = from_snapshot(*snap);
	info.cgroup_id = ctx.cgroup_id;
	info.tracked = ctx.flags & KT_F_TRACKED;
	if (const ProcessInfo *parent = table_.find(info.ppid)) {
		info.mcp_server = parent->mcp_server;
		info.mcp_rule = parent->mcp_rule;
	}
	return &table_.upsert(std::move(info));
}

int64_t Agent::started_ns(const ProcessInfo &p) const
{
	if (p.exec_time_ns)
		return p.exec_time_ns;
	if (p.start_ticks)
		return clock_.boot_to_wall_ns(clock_ticks_to_ns(p.start_ticks));
	return clock_.now_ns();
}

size_t Agent::tracked_live() const
{
	return table_.count_tracked();
}

void Agent::track(uint32_t pid, const McpMatch &why)
{
	// Depth-first over the known tree and /proc's children lists: children
	// forked before we decided to track the parent are tracked too.
	std::vector<uint32_t> todo{pid};
	std::set<uint32_t> seen;
	while (!todo.empty()) {
		uint32_t p = todo.back();
		todo.pop_back();
		if (!seen.insert(p).second || p == static_cast<uint32_t>(getpid()))
			continue;
		loader_.track(p);
		ProcessInfo *info = table_.find(p);
		if (!info) {
			if (auto snap = read_proc(p))
				info = &table_.upsert(from_snapshot(*snap));
		}
		if (info) {
			info->tracked = true;
			if (info->mcp_server.empty()) {
				info->mcp_server = why.server;
				info->mcp_rule = why.rule;
			}
			if (!info->secrets_collected && sources_)
				collect_process_secrets(*info, nullptr, nullptr);
		}
		for (uint32_t c : table_.children_of(p))
			todo.push_back(c);
		std::string task_dir = "/proc/" + std::to_string(p) + "/task";
		glob_t g{};
		if (glob((task_dir + "/*/children").c_str(), 0, nullptr, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++) {
				std::ifstream in(g.gl_pathv[i]);
				uint32_t c;
				while (in >> c)
					todo.push_back(c);
			}
		}
		globfree(&g);
	}
}

bool Agent::watch_path(const std::string &path)
{
	struct stat st;
	if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	uint64_t kdev = user_dev_to_kernel(st.st_dev);
	if (!loader_.watch(kdev, st.st_ino, static_cast<uint32_t>(watched_paths_.size() + 1)))
		return false;
	watched_paths_[{kdev, st.st_ino}] = path;
	return true;
}

void Agent::scan_proc()
{
	for (uint32_t pid : list_pids()) {
		auto snap = read_proc(pid);
		if (!snap)
			continue; // exited while we looked
		ProcessInfo info = from_snapshot(*snap);
		ProcessFacts facts{
		    static_cast<pid_t>(pid), snap->uid, snap->exe, snap->argv, "", ""};
		table_.upsert(std::move(info));
		if (pid == static_cast<uint32_t>(getpid()))
			continue;
		if (auto m = detector_.match(facts))
			track(pid, *m);
	}
	// Pids given with --track, and their descendants.
	for (pid_t p : opts_.track)
		track(static_cast<uint32_t>(p), McpMatch{"", "manual"});
}

void Agent::start()
{
	umask(077);
	make_private_dirs(cfg_.state_dir);
	chmod(cfg_.state_dir.c_str(), 0700);

	open_outputs();

	std::string key_file = cfg_.fingerprint_key_file.empty()
	                           ? cfg_.state_dir + "/fingerprint.key"
	                           : cfg_.fingerprint_key_file;
	sources_ = std::make_unique<SecretSources>(
	    Fingerprinter(load_or_create_key(key_file, cfg_.fingerprint_key_file.empty())),
	    cfg_.secret_paths, cfg_.max_file_size);
	ledger_ = std::make_unique<Ledger>(cfg_.state_dir + "/ledger.db");
	if (!opts_.record.empty())
		recording_ = std::make_unique<RecordingWriter>(opts_.record);
	corr_ = std::make_unique<Correlator>(host_, cfg_, clock_,
	                                     [this](Record &&r) { on_correlated(std::move(r)); });
	corr_->set_on_use([this](const std::string &fp, const std::string &identity,
	                         const std::string &upstream,
	                         int64_t t) { ledger_->record_use(fp, identity, upstream, t); });

	loader_.start([this](const void *data, size_t size) { on_record(data, size); });
	for (const auto &pattern : cfg_.watch_paths) {
		glob_t g{};
		if (::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0)
			for (size_t i = 0; i < g.gl_pathc; i++)
				if (!watch_path(g.gl_pathv[i]))
					spdlog::warn("cannot watch {}",
					             sanitize_utf8(g.gl_pathv[i]));
		globfree(&g);
	}
	scan_proc();
	started_ = std::chrono::steady_clock::now();
	if (!cfg_.metrics_address.empty()) {
		metrics_ = std::make_unique<MetricsServer>(cfg_.metrics_address);
		spdlog::info("metrics on http://{}/metrics", cfg_.metrics_address);
	}
	scan_mcp_configs();

	nlohmann::json ready;
	ready["type"] = "ready";
	ready["schema"] = kSchemaVersion;
	ready["time"] = rfc3339(clock_.now_ns());
	ready["host"] = host_;
	ready["version"] = KEYTRAIL_VERSION;
	ready["programs"] = loader_.attached_programs();
	ready["attach_seconds"] = loader_.attach_seconds();
	ready["ring_buffer_bytes"] = loader_.ring_buffer_bytes();
	ready["tracked"] = tracked_live();
	ready["processes"] = table_.live();
	ready["config"] = cfg_.source.empty() ? "(built-in defaults)" : cfg_.source;
	ready["state_dir"] = cfg_.state_dir;
	if (metrics_)
		ready["metrics_port"] = metrics_->port();
	out_.emit(ready);
	write_status(health_record(false), true);
}

int Agent::run(const std::atomic<bool> &stop, std::atomic<bool> *reload)
{
	start();
	auto next_health = std::chrono::steady_clock::now() + cfg_.health_interval;
	auto next_metrics = std::chrono::steady_clock::now();
	auto deadline = opts_.duration_s > 0
	                    ? started_ + std::chrono::milliseconds(
	                                     static_cast<int64_t>(opts_.duration_s * 1000))
	                    : std::chrono::steady_clock::time_point::max();
	while (!stop.load()) {
		// The poll timeout bounds event latency: the kernel wakes us only
		// for a backlog.
		int n = loader_.poll(25);
		if (n < 0) {
			spdlog::error("ring buffer poll failed: {}", std::strerror(-n));
			break;
		}
		auto now = std::chrono::steady_clock::now();
		table_.evict(clock_.now_ns());
		expire_connects(false);
		corr_->tick();
		if (!ledger_->commit())
			ledger_errors_++;
		if (recording_)
			recording_->flush();
		if (reload && reload->exchange(false))
			reload_config();
		if (now >= next_health) {
			clock_.resync();
			table_.sweep_vanished(clock_.now_ns());
			// Untracked processes send no exit record.
			std::erase_if(hint_rejected_, [](const auto &kv) {
				return kill(kv.first, 0) != 0 && errno == ESRCH;
			});
			sweep_fd_states();
			emit_health(false);
			next_health = now + cfg_.health_interval;
		}
		if (metrics_ && now >= next_metrics) {
			metrics_->publish(health_record(false)); // what a scrape reads, <= 1 s old
			next_metrics = now + std::chrono::seconds(1);
		}
		if (now >= deadline)
			break;
	}
	// Drain what the kernel already produced, then report.
	while (loader_.poll(0) > 0) {
	}
	expire_connects(true);
	if (!ledger_->commit())
		ledger_errors_++;
	emit_health(true);
	loader_.stop();
	if (recording_ && !recording_->flush())
		spdlog::error("cannot write the recording {}: {}", opts_.record,
		              std::strerror(errno));
	out_.close();
	return 0;
}

void Agent::on_record(const void *data, size_t size)
{
	std::string err;
	auto ev = decode_event(data, size, &err);
	if (!ev) {
		if (decode_errors_++ % 1000 == 0)
			spdlog::warn("undecodable kernel record ({} bytes): {}", size, err);
		return;
	}
	records_++;
	by_type_[ev->index()]++;
	std::visit([this](auto &e) { handle(e); }, *ev);
}

void Agent::handle(ExecEvent &e)
{
	uint32_t pid = e.ctx.pid;
	ProcessInfo info;
	info.pid = pid;
	info.ppid = e.ctx.ppid;
	info.uid = e.ctx.uid;
	info.gid = e.ctx.gid;
	info.start_ticks = ns_to_clock_ticks(e.ctx.start_time_ns);
	info.comm = e.ctx.comm;
	info.exe = e.filename;
	info.argv = mask_argv(e.argv);
	info.cgroup_id = e.ctx.cgroup_id;
	info.tty = e.ctx.flags & KT_F_TTY;
	info.tracked = e.ctx.flags & KT_F_TRACKED;
	info.exec_time_ns = clock_.boot_to_wall_ns(e.ctx.ts_ns);
	const ProcessInfo *parent = table_.find(e.ctx.ppid);
	// An exec from a non-leader thread replaces the group leader, and the
	// mark on it: a process we tracked keeps being tracked.
	if (const ProcessInfo *before = table_.find(pid);
	    before && before->tracked && !info.tracked)
		info.tracked = loader_.track(static_cast<pid_t>(pid));
	// A relative exec path is relative to the cwd. Not /proc/PID/exe: for a
	// script that is the interpreter, and the script's name is what matters.
	if (!info.exe.empty() && info.exe[0] != '/')
		if (auto r = resolve_process_path(static_cast<pid_t>(pid), -100, info.exe))
			info.exe = r->logical;
	ProcessFacts facts{
	    static_cast<pid_t>(pid),  e.ctx.uid, info.exe, e.argv, parent ? parent->comm : "",
	    parent ? parent->exe : ""};
	std::optional<McpMatch> match = detector_.match(facts);
	// A tracked child keeps its server's label unless it is a server itself.
	if (match) {
		info.mcp_server = match->server;
		info.mcp_rule = match->rule;
	} else if (parent && info.tracked) {
		info.mcp_server = parent->mcp_server;
		info.mcp_rule = parent->mcp_rule;
	}
	// The kernel's exec hint tracked it provisionally: the real rules decide.
	bool provisional = e.ctx.flags & KT_F_PROVISIONAL;
	bool was_tracked = info.tracked && !provisional;
	if (auto it = hint_rejected_.find(pid); it != hint_rejected_.end()) {
		// The previous image of this process had its exec hint rejected
		// (`sh -c 'exec mcp-server-x'`); the kernel still marked this exec
		// tracked. This image decides afresh.
		HintRejected h = it->second;
		hint_rejected_.erase(it);
		if (h.start_ticks == info.start_ticks && was_tracked) {
			if (!h.untracked && !match)
				loader_.untrack(static_cast<pid_t>(pid)); // deferred until now
			if (h.untracked || !match)
				was_tracked = info.tracked =
				    false; // tracked again below if it matches
		}
	}
	if (provisional && !match) {
		// Untrack it, unless it has already exec'd something else (its comm
		// changed): that image's own exec record decides, or the server it
		// became would be blind until then.
		std::string now_comm;
		bool replaced =
		    read_comm(static_cast<pid_t>(pid), &now_comm) && now_comm != e.ctx.comm;
		if (!replaced)
			loader_.untrack(static_cast<pid_t>(pid));
		hint_rejected_[pid] = {info.start_ticks, !replaced};
		info.tracked = false;
		hint_misses_++;
	} else if (provisional) {
		hint_hits_++;
	}
	ProcessInfo &entry = table_.upsert(std::move(info));
	if (match && !was_tracked)
		track(pid, *match); // also its children forked before we got here
	// Resolve now, while /proc still shows this exec.
	if (entry.tracked || match) {
		identity_of(*table_.find(pid));
		collect_process_secrets(*table_.find(pid), &e.argv, e.env.get());
	}

	// An exec closes the O_CLOEXEC fds without close(): report them now.
	if (was_tracked)
		flush_fds(pid, KT_CLOSE_EXEC, e.ctx);

	if (!want_events_ || !(was_tracked || match))
		return;
	ProcessInfo *self = table_.find(pid);
	auto r = base("exec", e.ctx);
	r["filename"] = sanitize_utf8(e.filename);
	r["argv"] = argv_json(self->argv);
	r["identity"] = identity_of(*self).to_json();
	r["ancestry"] = ancestry_json(*self);
	r["cgroup_id"] = e.ctx.cgroup_id;
	r["tty"] = static_cast<bool>(e.ctx.flags & KT_F_TTY);
	if (e.ctx.flags & KT_F_TRUNCATED)
		r["truncated"] = true;
	if (match)
		r["mcp_rule"] = match->rule;
	out_.emit(r);
}

void Agent::handle(ForkEvent &e)
{
	const ProcessInfo *parent = process_for(e.ctx);
	// track() may have found the child in /proc first, or its exec may have
	// been read first: never replace what we know about this instance.
	if (ProcessInfo *known =
	        table_.find_instance(e.child_pid, ns_to_clock_ticks(e.child_start_time_ns))) {
		known->tracked = true;
		if (!known->correlated)
			feed_start(*known, true, false);
		if (want_events_) {
			auto r = base("fork", e.ctx);
			r["child_pid"] = e.child_pid;
			r["child_exec_id"] = known->exec_id;
			out_.emit(r);
		}
		return;
	}
	ProcessInfo child;
	child.pid = e.child_pid;
	child.ppid = e.ctx.pid;
	child.uid = e.ctx.uid;
	child.gid = e.ctx.gid;
	child.start_ticks = ns_to_clock_ticks(e.child_start_time_ns);
	child.comm = e.ctx.comm;
	child.cgroup_id = e.ctx.cgroup_id;
	child.tracked = true;
	child.tty = e.ctx.flags & KT_F_TTY;
	if (parent) {
		child.exe = parent->exe;
		child.argv = parent->argv;
		child.mcp_server = parent->mcp_server;
		child.mcp_rule = parent->mcp_rule;
	}
	ProcessInfo &c = table_.upsert(std::move(child));
	c.exec_time_ns = clock_.boot_to_wall_ns(e.ctx.ts_ns);
	if (parent && parent->correlated)
		feed_start(c, true, false);
	if (!want_events_)
		return;
	auto r = base("fork", e.ctx);
	r["child_pid"] = e.child_pid;
	r["child_exec_id"] = c.exec_id;
	out_.emit(r);
}

void Agent::handle(ExitEvent &e)
{
	bool tracked = e.ctx.flags & KT_F_TRACKED;
	if (tracked) {
		flush_fds(e.ctx.pid, KT_CLOSE_EXIT, e.ctx);
		for (auto it = held_.begin(); it != held_.end();) {
			if (it->first.first == e.ctx.pid) {
				emit_connect(it->second.ev, "", "");
				it = held_.erase(it);
			} else {
				++it;
			}
		}
		if (want_events_) {
			auto r = base("exit", e.ctx);
			int status = e.exit_code;
			if (status & 0x7f)
				r["signal"] = status & 0x7f;
			else
				r["exit_code"] = (status >> 8) & 0xff;
			out_.emit(r);
		}
	}
	open_fds_.erase(e.ctx.pid);
	hint_rejected_.erase(e.ctx.pid);
	int64_t when = clock_.boot_to_wall_ns(e.ctx.ts_ns);
	if (ProcessInfo *p =
	        table_.find_instance(e.ctx.pid, ns_to_clock_ticks(e.ctx.start_time_ns));
	    p && p->correlated)
		feed(ProcExit{when, p->exec_id});
	table_.mark_exited(e.ctx.pid, when);
}

void Agent::handle(OpenEvent &e)
{
	// Our own reads of watched files (checking a credential file) are not
	// observations.
	if (e.ctx.pid == self_pid_)
		return;
	std::string path = e.path;
	if (path.empty()) {
		auto it = watched_paths_.find({e.dev, e.ino});
		if (it != watched_paths_.end())
			path = it->second;
	}
	if (e.fd >= 0) {
		open_fds_[e.ctx.pid][e.fd] = OpenFd{path, e.dev, e.ino};
		file_secrets(process_for(e.ctx), e, path);
	}
	if (!want_events_)
		return;
	Record rec = observation("open", e.ctx);
	auto &r = rec.fields;
	r["path"] = sanitize_utf8(path);
	if (e.dirfd != -100 && e.syscall != 0)
		r["dirfd"] = e.dirfd;
	r["flags"] = open_flags_string(e.flags);
	r["fd"] = e.fd;
	r["result"] = errno_name(e.fd < 0 ? -e.fd : 0);
	if (e.fd >= 0) {
		r["dev"] = dev_string(e.dev);
		r["inode"] = e.ino;
	}
	r["watched"] = static_cast<bool>(e.ctx.flags & KT_F_WATCHED);
	if (e.ctx.flags & KT_F_TRUNCATED)
		r["truncated"] = true;
	if (e.ctx.flags & KT_F_READ_FAIL)
		r["path_unreadable"] = true;
	out_.emit(rec);
}

void Agent::collect_process_secrets(ProcessInfo &p, const std::vector<std::string> *raw_argv,
                                    const SecretBytes *env_block)
{
	p.secrets_collected = true;
	// argv and environ were there from the exec: for a process first seen
	// in /proc, its start time (never "now", which may be after its connects).
	int64_t now = started_ns(p);
	std::vector<std::string> argv;
	if (raw_argv) {
		argv = *raw_argv;
	} else if (auto snap = read_proc(p.pid); snap && snap->start_ticks == p.start_ticks) {
		argv = std::move(snap->argv);
	}
	std::vector<Obtained> from_argv = sources_->from_argv(argv);
	for (auto &a : argv)
		OPENSSL_cleanse(a.data(), a.size());
	// The environment the kernel captured at exec, else /proc/PID/environ.
	std::optional<std::vector<Obtained>> env;
	if (env_block) {
		std::vector<std::string> vars = split_nul(env_block->view());
		env = sources_->from_environ(vars);
		for (auto &v : vars)
			OPENSSL_cleanse(v.data(), v.size());
	} else {
		env = sources_->from_proc_environ(static_cast<pid_t>(p.pid));
	}
	if (!env)
		environ_unreadable_++;
	feed_start(p, false, env.has_value());
	for (const auto &o : from_argv)
		obtained(&p, o, now);
	if (env)
		for (const auto &o : *env)
			obtained(&p, o, now);
}

void Agent::feed_start(ProcessInfo &p, bool forked, bool env_observed)
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
	st.tty = p.tty;
	st.tracked = p.tracked;
	st.forked = forked;
	st.env_observed = env_observed;
	st.comm = p.comm;
	st.exe = p.exe;
	st.mcp_server = p.mcp_server;
	st.cmdline = p.argv; // masked
	const Identity &id = identity_of(p);
	st.identity = id.id;
	st.selectors = id.selectors;
	// Ancestors first, so the correlator can walk up to them.
	if (parent && !parent->correlated)
		feed_start(*parent, false, false);
	feed(st);
}

void Agent::feed(const Input &in)
{
	if (recording_)
		recording_->write(in);
	feeding_ns_ = input_time(in);
	corr_->feed(in);
}

// A secret_use or alert from the correlator: measured (kernel event to now),
// then written.
void Agent::on_correlated(Record &&r)
{
	int64_t lat = clock_.now_ns() - feeding_ns_;
	if (lat >= 0) {
		latency_seen_++;
		if (latency_ns_.size() < 8192)
			latency_ns_.push_back(lat);
		else
			latency_ns_[latency_seen_ % latency_ns_.size()] = lat;
	}
	out_.emit(r);
}

nlohmann::json Agent::latency_json() const
{
	if (latency_ns_.empty())
		return {{"samples", 0}};
	std::vector<int64_t> v = latency_ns_;
	std::sort(v.begin(), v.end());
	auto at = [&](double q) {
		return static_cast<double>(v[static_cast<size_t>(q * (v.size() - 1))]) / 1e6;
	};
	return {{"samples", latency_seen_}, {"p50", at(0.5)}, {"p99", at(0.99)}, {"max", at(1.0)}};
}

void Agent::open_outputs()
{
	// Raw observations go to the configured outputs only with agent.events;
	// the journal takes everything.
	std::set<std::string> findings = {"ready",      "health",          "reload", "secret",
	                                  "secret_use", "credential_file", "alert"};
	auto route = [&](const OutputSpec &spec) {
		RouteOptions o;
		o.format = opts_.format.empty() ? spec.format : opts_.format;
		if (!spec.records.empty())
			o.records = {spec.records.begin(), spec.records.end()};
		else if (!events_)
			o.records = findings;
		out_.add(make_sink(spec), o);
	};
	if (!opts_.output.empty()) {
		OutputSpec spec;
		spec.type = opts_.output == "-" ? "stdout" : "file";
		spec.path = opts_.output;
		route(spec);
	} else if (cfg_.outputs.empty()) {
		OutputSpec spec;
		spec.type = "stdout";
		route(spec);
	} else {
		for (const auto &o : cfg_.outputs)
			route(o);
	}
	if (cfg_.journal.enabled) {
		JournalConfig j = cfg_.journal;
		if (j.dir.empty())
			j.dir = cfg_.state_dir + "/journal";
		out_.add(std::make_unique<JournalSink>(j));
	}
	want_events_ = events_ || cfg_.journal.enabled;
}

void Agent::file_secrets(ProcessInfo *p, const OpenEvent &e, const std::string &path)
{
	bool watched = e.ctx.flags & KT_F_WATCHED;
	// Where a relative path started, should the process be gone by now: its
	// cwd as resolved at exec, else its parent's (a shell's `cd dir && cat
	// .env` child inherits it). A wrong guess fails the inode check.
	std::string cwd;
	if (p && p->identity) {
		auto it = p->identity->selectors.find("mcp.cwd");
		if (it != p->identity->selectors.end())
			cwd = it->second;
	}
	if (cwd.empty() && e.ctx.ppid)
		cwd = read_link("/proc/" + std::to_string(e.ctx.ppid) + "/cwd");
	auto scan = watched && e.path.empty()
	                ? sources_->cached_inode(e.dev, e.ino)
	                : sources_->from_open(static_cast<pid_t>(e.ctx.pid), e.fd, e.dirfd, path,
	                                      e.dev, e.ino, cwd);
	if (!scan || scan->unreadable)
		return; // counted in health: secrets.files_unreadable
	int64_t when = clock_.boot_to_wall_ns(e.ctx.ts_ns);
	if (scan->secrets.empty() && !scan->cached) {
		// Listed in the catalog, but nothing credential-like inside.
		auto r = base("credential_file", e.ctx);
		r["path"] = sanitize_utf8(scan->path);
		r["kind"] = scan->kind;
		r["credentials"] = 0;
		r["summary"] = "credential file " + sanitize_utf8(scan->path) + " (" + scan->kind +
		               ") holds nothing credential-like";
		out_.emit(r);
		return;
	}
	if (p && !p->correlated && !scan->secrets.empty())
		feed_start(*p, false, false);
	for (const auto &o : scan->secrets) {
		Obtained here = o;
		here.location = scan->path;
		here.mtime_ns = scan->mtime_ns;
		obtained(p, here, when);
	}
	// Any process that opens it from now on is reported, tracked or not.
	if (!scan->secrets.empty() && !watched_paths_.count({e.dev, e.ino}) &&
	    loader_.watch(e.dev, e.ino, 0))
		watched_paths_[{e.dev, e.ino}] = scan->path;
}

void Agent::obtained(ProcessInfo *p, const Obtained &o, int64_t time_ns)
{
	if (p) {
		for (const auto &h : p->secrets)
			if (h.fingerprint == o.fingerprint && h.source == o.source &&
			    h.location == o.location)
				return; // already known to hold it this way
		p->secrets.push_back(
		    {o.fingerprint, o.type, o.source, o.location, o.name, time_ns});
	}
	secrets_obtained_++;
	std::string identity = p ? identity_of(*p).id : "";
	const InventoryEntry *inv =
	    match_inventory(cfg_.inventory, o.fingerprint, o.source, o.location,
	                    o.source == "env" ? o.location : o.name, identity);
	Sighting s{o.fingerprint, o.type, o.prefix, o.source,
	           o.location,    o.name, identity, time_ns};
	auto rotated_from = ledger_->record_sighting(s);
	{
		SecretSeen in;
		in.time_ns = time_ns;
		if (p) {
			if (!p->correlated)
				feed_start(*p, false, false);
			in.exec_id = p->exec_id;
		}
		in.fingerprint = o.fingerprint;
		in.type = o.type;
		in.source = o.source;
		in.location = o.location;
		in.name = o.name;
		in.server = o.server;
		in.line = static_cast<uint32_t>(o.line);
		in.file_mtime_ns = o.mtime_ns;
		if (auto rec = ledger_->secret(o.fingerprint)) {
			in.first_seen_ns = rec->first_seen;
			in.last_used_ns = rec->last_used;
		}
		if (rotated_from)
			in.rotated_from = *rotated_from;
		feed(in);
	}

	nlohmann::json r;
	r["type"] = "secret";
	r["time"] = rfc3339(time_ns);
	r["host"] = host_;
	if (p) {
		r["pid"] = p->pid;
		r["ppid"] = p->ppid;
		r["comm"] = sanitize_utf8(p->comm);
		r["uid"] = p->uid;
		r["gid"] = p->gid;
		r["exec_id"] = p->exec_id;
		if (!p->mcp_server.empty())
			r["mcp_server"] = p->mcp_server;
		r["identity"] = identity_of(*p).to_json();
	}
	nlohmann::json sec = {
	    {"fingerprint", o.fingerprint}, {"type", o.type}, {"source", o.source}};
	if (!o.prefix.empty())
		sec["prefix"] = sanitize_utf8(o.prefix);
	const char *loc_key = o.source == "env" ? "env" : o.source == "argv" ? "arg" : "path";
	sec[loc_key] = sanitize_utf8(o.location);
	if (!o.name.empty())
		sec["name"] = sanitize_utf8(o.name);
	if (o.line)
		sec["line"] = o.line;
	if (!o.server.empty())
		sec["server"] = sanitize_utf8(o.server);
	if (inv) {
		sec["inventory_id"] = inv->id;
		if (!inv->owner.empty())
			sec["owner"] = inv->owner;
	}
	r["secret"] = sec;
	if (rotated_from) {
		rotations_++;
		r["rotated_from"] = *rotated_from;
	}
	if (o.source == "mcp_config" || o.source == "argv")
		r["hardcoded"] = true;
	std::string who = p ? sanitize_utf8(p->comm) + " (pid " + std::to_string(p->pid) +
	                          (p->mcp_server.empty() ? "" : ", " + p->mcp_server) + ")"
	                    : "MCP client config";
	r["summary"] = who + (p ? " obtained " : " hard-codes ") + o.type + " " +
	               o.fingerprint.substr(0, 12) + " from " + o.source + " " +
	               sanitize_utf8(o.location) + (inv ? " (inventory " + inv->id + ")" : "");
	out_.emit(r);
}

void Agent::scan_mcp_configs()
{
	std::vector<std::string> paths;
	if (cfg_.scan_mcp_configs)
		for (const auto &home : user_homes())
			for (auto &p : mcp_config_locations(home))
				paths.push_back(std::move(p));
	for (const auto &pattern : cfg_.mcp_configs) {
		glob_t g{};
		if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
			for (size_t i = 0; i < g.gl_pathc; i++)
				paths.push_back(g.gl_pathv[i]);
		globfree(&g);
	}
	int64_t now = clock_.now_ns();
	for (const auto &path : paths) {
		ConfigScanResult r = sources_->from_mcp_config(path);
		if (r.error) {
			spdlog::warn("MCP client config {}", sanitize_utf8(*r.error));
			continue;
		}
		for (const auto &o : r.secrets)
			obtained(nullptr, o, now);
	}
}

void Agent::reload_config()
{
	if (cfg_.source.empty()) {
		spdlog::info("SIGHUP: running on built-in defaults, nothing to reload");
		return;
	}
	nlohmann::json r;
	r["type"] = "reload";
	r["time"] = rfc3339(clock_.now_ns());
	r["host"] = host_;
	r["config"] = cfg_.source;
	try {
		Config fresh = load_config(cfg_.source);
		cfg_.inventory = std::move(fresh.inventory);
		cfg_.identities = fresh.identities;
		cfg_.environments = fresh.environments;
		cfg_.trust_domain = fresh.trust_domain;
		cfg_.clients = std::move(fresh.clients);
		resolver_ =
		    IdentityResolver(host_, cfg_.trust_domain, cfg_.identities, cfg_.environments);
		corr_->set_inventory(cfg_.inventory);
		reloads_++;
		r["ok"] = true;
		r["inventory_entries"] = cfg_.inventory.size();
		spdlog::info("reloaded {}: {} inventory entries", cfg_.source,
		             cfg_.inventory.size());
	} catch (const Error &e) {
		reload_errors_++;
		r["ok"] = false;
		r["error"] = sanitize_utf8(e.what());
		spdlog::error("reload failed, keeping the running config: {}", e.what());
	}
	out_.emit(r);
}

void Agent::handle(CloseEvent &e)
{
	std::string path;
	auto pit = open_fds_.find(e.ctx.pid);
	if (pit != open_fds_.end()) {
		auto fit = pit->second.find(e.fd);
		if (fit != pit->second.end()) {
			path = fit->second.path;
			pit->second.erase(fit);
		}
	}
	if (!want_events_)
		return;
	Record rec = observation("close", e.ctx);
	auto &r = rec.fields;
	r["fd"] = e.fd;
	r["path"] = sanitize_utf8(path);
	r["dev"] = dev_string(e.dev);
	r["inode"] = e.ino;
	r["bytes_read"] = e.bytes_read;
	r["reads"] = e.reads;
	r["reason"] = close_reason_name(e.reason);
	out_.emit(rec);
}

// Reports the read counters of fds the process still held when it exited or
// exec'd (for exec: only those the exec closed).
void Agent::flush_fds(uint32_t pid, uint32_t reason, const EventContext &ctx)
{
	auto pit = open_fds_.find(pid);
	if (pit == open_fds_.end())
		return;
	for (auto it = pit->second.begin(); it != pit->second.end();) {
		int fd = it->first;
		if (reason == KT_CLOSE_EXEC) {
			struct stat st;
			std::string link =
			    "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
			if (stat(link.c_str(), &st) == 0 && st.st_ino == it->second.ino) {
				++it; // survived the exec (no O_CLOEXEC)
				continue;
			}
		}
		auto st = loader_.take_fd_state(pid, fd);
		if (st) {
			CloseEvent c{ctx, fd, reason, st->dev, st->ino, st->bytes_read, st->reads};
			handle(c); // erases the entry from open_fds_
			it = pit->second.lower_bound(fd);
		} else {
			it = pit->second.erase(it);
		}
	}
}

void Agent::handle(ConnectEvent &e)
{
	bool inet = e.family == AF_INET || e.family == AF_INET6;
	bool attempt = e.ret == 0 || e.ret == -EINPROGRESS;
	if (inet && e.sock_type == SOCK_STREAM && attempt && cfg_.connect_hold.count() > 0) {
		// Hold it until the first write names the upstream (SNI / Host).
		held_[{e.ctx.pid, e.fd}] =
		    HeldConnect{e, std::chrono::steady_clock::now() + cfg_.connect_hold};
		return;
	}
	emit_connect(e, "", "");
}

void Agent::handle(PayloadEvent &e)
{
	auto it = held_.find({e.ctx.pid, e.fd});
	if (it == held_.end()) {
		late_payloads_++;
		return;
	}
	emit_connect(it->second.ev, e.sni, e.http_host);
	held_.erase(it);
}

void Agent::emit_connect(const ConnectEvent &c, const std::string &sni, const std::string &host)
{
	if (ProcessInfo *p = process_for(c.ctx)) {
		if (!p->correlated)
			feed_start(*p, false, false);
		ConnectSeen in;
		in.time_ns = clock_.boot_to_wall_ns(c.ctx.ts_ns);
		in.exec_id = p->exec_id;
		in.family = c.family;
		in.sock_type = c.sock_type;
		in.result = c.ret;
		in.port = c.port;
		in.addr = address_string(c.family, c.addr);
		in.sni = sni;
		in.http_host = host;
		feed(in);
	}
	if (!want_events_)
		return;
	auto r = base("connect", c.ctx);
	r["fd"] = c.fd;
	r["family"] = family_name(c.family);
	r["protocol"] = sock_type_name(c.sock_type);
	r["addr"] = address_string(c.family, c.addr);
	r["port"] = c.port;
	r["result"] = errno_name(c.ret < 0 ? -c.ret : 0);
	if (!sni.empty())
		r["sni"] = sanitize_utf8(sni);
	if (!host.empty())
		r["http_host"] = sanitize_utf8(host);
	out_.emit(r);
}

void Agent::expire_connects(bool all)
{
	auto now = std::chrono::steady_clock::now();
	for (auto it = held_.begin(); it != held_.end();) {
		if (all || it->second.deadline <= now) {
			emit_connect(it->second.ev, "", "");
			it = held_.erase(it);
		} else {
			++it;
		}
	}
}

// fd counters whose close or exit record was lost (ring buffer full) would
// stay in the kernel map forever; drop those of processes that are gone.
void Agent::sweep_fd_states()
{
	for (const auto &k : loader_.fd_state_keys()) {
		if (kill(static_cast<pid_t>(k.tgid), 0) == 0 || errno != ESRCH)
			continue;
		loader_.take_fd_state(k.tgid, k.fd);
		fd_states_swept_++;
	}
}

void Agent::emit_health(bool final)
{
	nlohmann::json r = health_record(final);
	feed(HealthSeen{clock_.now_ns(), r["kernel"]["events"].get<uint64_t>(),
	                r["kernel"]["drops"].get<uint64_t>(), unattributed_, identities_degraded_});
	r["correlator"] = corr_->counters_json();
	out_.emit(r);
	write_status(r, !final);
	if (final)
		spdlog::info("stopped: {} kernel events, {} dropped, {} attribution failures",
		             r["kernel"]["events"].get<uint64_t>(),
		             r["kernel"]["drops"].get<uint64_t>(), unattributed_);
}

// <state_dir>/status.json: the latest health plus what `keytrail status` and
// the benchmark need to find this agent. Replaced atomically.
void Agent::write_status(const nlohmann::json &health, bool running)
{
	nlohmann::json st = health;
	st["pid"] = getpid();
	st["running"] = running;
	st["programs"] = loader_.attached_programs();
	st["attach_seconds"] = loader_.attach_seconds();
	std::string path = cfg_.state_dir + "/status.json", tmp = path + ".tmp";
	{
		std::ofstream out(tmp, std::ios::trunc);
		out << st.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
		if (!out)
			return;
	}
	chmod(tmp.c_str(), 0600);
	if (rename(tmp.c_str(), path.c_str()) != 0)
		spdlog::warn("cannot write {}: {}", path, std::strerror(errno));
}

nlohmann::json Agent::health_record(bool final)
{
	KernelStats ks = loader_.stats();
	nlohmann::json r;
	r["type"] = "health";
	r["time"] = rfc3339(clock_.now_ns());
	r["host"] = host_;
	r["final"] = final;
	r["uptime_seconds"] =
	    std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
	nlohmann::json drops_by_type = nlohmann::json::object();
	static const char *names[KT_EV_MAX] = {"",     "exec",  "fork",    "exit",
	                                       "open", "close", "connect", "payload"};
	for (uint32_t t = 1; t < KT_EV_MAX; t++)
		drops_by_type[names[t]] = ks.drops_of(t);
	r["kernel"] = {{"events", ks.events()},
	               {"drops", ks.drops()},
	               {"drops_by_type", drops_by_type},
	               {"read_failures", ks.v[KT_STAT_READ_FAIL]},
	               {"pending_map_full", ks.v[KT_STAT_PENDING_FULL]},
	               {"truncated", ks.v[KT_STAT_PATH_TRUNCATED]},
	               {"track_failures", ks.v[KT_STAT_TRACK_FAIL]}};
	nlohmann::json by_type = nlohmann::json::object();
	for (size_t i = 0; i < 7; i++)
		by_type[names[i + 1]] = by_type_[i];
	r["agent"] = {{"records", records_},
	              {"records_by_type", by_type},
	              {"decode_errors", decode_errors_},
	              {"attribution_failures", unattributed_},
	              {"exec_hint_hits", hint_hits_},
	              {"exec_hint_misses", hint_misses_},
	              {"identities_resolved", identities_resolved_},
	              {"identities_degraded", identities_degraded_},
	              {"late_payloads", late_payloads_},
	              {"fd_states_swept", fd_states_swept_},
	              {"exits_missed", exits_missed_},
	              {"output_written", out_.written()},
	              {"output_errors", out_.errors()},
	              {"output_dropped", out_.dropped()}};
	r["processes"] = {
	    {"live", table_.live()}, {"exited_kept", table_.exited()}, {"tracked", tracked_live()}};
	r["secrets"] = {{"obtained", secrets_obtained_},
	                {"files_read", sources_ ? sources_->files_read() : 0},
	                {"files_unreadable", sources_ ? sources_->files_unreadable() : 0},
	                {"environ_unreadable", environ_unreadable_},
	                {"rotations", rotations_},
	                {"ledger_errors", ledger_errors_}};
	r["config"] = {{"reloads", reloads_}, {"reload_errors", reload_errors_}};
	r["outputs"] = out_.health();
	r["latency_ms"] = latency_json();
	if (corr_)
		r["correlator"] = corr_->counters_json();
	r["watched_inodes"] = loader_.watched_count();
	r["ring_buffer_bytes"] = loader_.ring_buffer_bytes();
	return r;
}

} // namespace keytrail
