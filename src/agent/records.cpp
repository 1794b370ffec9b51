#include "keytrail/agent/records.h"

#include <fcntl.h>
#include <sys/socket.h>

#include "keytrail/abi.h"
#include "keytrail/probe/names.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/kdev.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

nlohmann::json argv_json(const std::vector<std::string> &argv)
{
	nlohmann::json a = nlohmann::json::array();
	for (const auto &s : argv)
		a.push_back(sanitize_utf8(s)); // masked as it came in (mask_argv)
	return a;
}

} // namespace

nlohmann::json EventRecords::base(const char *type, const EventContext &ctx)
{
	nlohmann::json r;
	r["type"] = type;
	r["time"] = rfc3339(clock_.boot_to_wall_ns(ctx.ts_ns));
	r["host"] = host_;
	r["pid"] = ctx.pid;
	r["tid"] = ctx.tid;
	r["ppid"] = ctx.ppid;
	r["comm"] = shown(ctx.comm);
	r["uid"] = ctx.uid;
	r["gid"] = ctx.gid;
	ProcessInfo *p = procs_.of(ctx);
	r["exec_id"] = p ? p->exec_id
	                 : make_exec_id(procs_.table().boot_id(),
	                                ns_to_clock_ticks(ctx.start_time_ns), ctx.pid);
	if (p && !p->server().empty())
		r["mcp_server"] = p->server();
	if (p && (p->tracked || (ctx.flags & KT_F_TRACKED)))
		r["identity"] = procs_.identity(*p).id;
	return r;
}

template <typename Own>
Record EventRecords::observation(const char *type, const EventContext &ctx, Own own)
{
	// base() without what this record writes itself, as members, and the
	// keys the journal indexes them by.
	auto members = [&] {
		nlohmann::json b = base(type, ctx);
		for (const char *mine : {"type", "time", "tid"})
			b.erase(mine);
		std::string s = dump_json(b);
		auto json = std::make_shared<const std::string>(s.substr(1, s.size() - 2));
		// The keys as the line holds them (dump_json replaced any invalid
		// UTF-8 of a name): read back, once per process.
		nlohmann::json line = nlohmann::json::parse(s, nullptr, false);
		if (!line.is_object())
			return std::make_pair(json, std::shared_ptr<const IndexKeys>());
		auto keys = std::make_shared<IndexKeys>();
		keys->exec_id = line.value("exec_id", "");
		keys->mcp_server = line.value("mcp_server", "");
		keys->identity = line.value("identity", "");
		keys->pid = ctx.pid;
		keys->members = *json;
		return std::make_pair(json, std::shared_ptr<const IndexKeys>(std::move(keys)));
	};
	std::shared_ptr<const std::string> json;
	std::shared_ptr<const IndexKeys> keys;
	ProcessInfo *p = procs_.of(ctx);
	if (!p) {
		std::tie(json, keys) = members();
	} else {
		auto &m = p->members;
		bool identity = p->tracked || (ctx.flags & KT_F_TRACKED);
		if (!m.json || m.ppid != ctx.ppid || m.uid != ctx.uid || m.gid != ctx.gid ||
		    m.comm != ctx.comm || m.identity != identity) {
			auto [j, k] = members();
			m = {ctx.ppid, ctx.uid,      ctx.gid,     ctx.comm,
			     identity, std::move(j), std::move(k)};
		}
		json = m.json;
		keys = m.keys;
	}
	int64_t wall = clock_.boot_to_wall_ns(ctx.ts_ns);
	Record r;
	r.type = type;
	r.time_ns = rfc3339_time(wall);
	r.keys = std::move(keys);
	std::string line;
	line.reserve(json->size() + 256);
	line += "{\"type\":";
	append_json_string(line, type);
	if (!json->empty())
		line.append(",").append(*json);
	JsonMembers m(std::move(line));
	m.str("time", rfc3339_chars(wall).view()).unum("tid", ctx.tid);
	own(m);
	r.line = m.take();
	r.line.push_back('}');
	return r;
}

const std::string &EventRecords::shown_path(const std::string &path)
{
	// Opens and closes of a busy server name the same few files again and
	// again: masking each name once, not per record.
	auto &slot = shown_paths_[std::hash<std::string>{}(path) % shown_paths_.size()];
	if (!slot.valid || slot.path != path)
		slot = {true, path, shown(path)};
	return slot.shown;
}

const std::string &EventRecords::shown_flags(uint32_t flags)
{
	auto &slot = shown_flags_[(flags ^ (flags >> 12)) % shown_flags_.size()];
	if (!slot.valid || slot.flags != flags)
		slot = {true, flags, open_flags_string(flags)};
	return slot.shown;
}

Record EventRecords::exec(const ExecEvent &e, const ExecOutcome &out)
{
	ProcessInfo &self = *out.proc;
	nlohmann::json r = base("exec", e.ctx);
	r["filename"] = shown(e.filename);
	r["argv"] = argv_json(self.argv);
	r["identity"] = procs_.identity(self).to_json();
	r["ancestry"] = procs_.ancestry_json(self);
	r["cgroup_id"] = e.ctx.cgroup_id;
	r["tty"] = static_cast<bool>(e.ctx.flags & KT_F_TTY);
	if (e.ctx.flags & KT_F_TRUNCATED)
		r["truncated"] = true;
	if (out.match)
		r["mcp_rule"] = out.match->rule;
	if (self.workload && self.workload->root_exec_id == self.exec_id &&
	    !self.workload->transport.empty())
		r["mcp_transport"] = self.workload->transport;
	return Record{std::move(r), {}};
}

Record EventRecords::fork(const ForkEvent &e, const ProcessInfo &child)
{
	nlohmann::json r = base("fork", e.ctx);
	r["child_pid"] = e.child_pid;
	r["child_exec_id"] = child.exec_id;
	return Record{std::move(r), {}};
}

Record EventRecords::exit(const ExitEvent &e)
{
	nlohmann::json r = base("exit", e.ctx);
	int status = e.exit_code;
	if (status & 0x7f)
		r["signal"] = status & 0x7f;
	else
		r["exit_code"] = (status >> 8) & 0xff;
	return Record{std::move(r), {}};
}

Record EventRecords::io_uring(const IoUringEvent &e)
{
	nlohmann::json r = base("io_uring", e.ctx);
	r["op"] = io_uring_op_name(e.opcode);
	r["opcode"] = e.opcode;
	r["sq_thread"] = e.sq_thread;
	return Record{std::move(r), {}};
}

Record EventRecords::open(const OpenEvent &e, const std::string &path)
{
	return observation("open", e.ctx, [&](JsonMembers &r) {
		r.str("path", shown_path(path));
		if (e.dirfd != AT_FDCWD && e.syscall != 0)
			r.num("dirfd", e.dirfd);
		r.str("flags", shown_flags(e.flags));
		r.num("fd", e.fd);
		r.str("result", errno_name(e.fd < 0 ? -e.fd : 0));
		if (e.fd >= 0) {
			r.str("dev", dev_string(e.dev));
			r.unum("inode", e.ino);
		}
		r.boolean("watched", e.ctx.flags & KT_F_WATCHED);
		if (e.ctx.flags & KT_F_TRUNCATED)
			r.boolean("truncated", true);
		if (e.ctx.flags & KT_F_READ_FAIL)
			r.boolean("path_unreadable", true);
	});
}

Record EventRecords::close(const EventContext &ctx, const ClosedFd &c)
{
	return observation("close", ctx, [&](JsonMembers &r) {
		r.num("fd", c.fd)
		    .str("path", shown_path(c.path))
		    .str("dev", dev_string(c.state.dev))
		    .unum("inode", c.state.ino)
		    .unum("bytes_read", c.state.bytes_read)
		    .unum("reads", c.state.reads)
		    .str("reason", close_reason_name(c.reason));
	});
}

Record EventRecords::connect(const NamedConnect &c)
{
	const ConnectEvent &e = c.ev;
	nlohmann::json r = base("connect", e.ctx);
	r["fd"] = e.fd;
	r["family"] = family_name(e.family);
	r["protocol"] = e.family == AF_UNIX ? "unix" : sock_type_name(e.sock_type);
	r["addr"] = address_string(e.family, e.addr);
	r["port"] = e.port;
	r["result"] = errno_name(e.ret < 0 ? -e.ret : 0);
	if (!c.sni.empty())
		r["sni"] = shown(c.sni);
	if (!c.http_host.empty())
		r["http_host"] = shown(c.http_host);
	if (!c.proxy_target.empty())
		r["proxy_target"] = shown(c.proxy_target);
	if (e.lport)
		r["local_port"] = e.lport;
	return Record{std::move(r), {}};
}

Record EventRecords::reader(const EventContext &ctx, ProcessInfo &p)
{
	nlohmann::json r = base("exec", ctx);
	r["time"] = rfc3339(procs_.started_ns(p));
	r["filename"] = shown(p.exe);
	r["argv"] = argv_json(p.argv);
	r["identity"] = procs_.identity(p).to_json();
	r["ancestry"] = procs_.ancestry_json(p);
	r["cgroup_id"] = ctx.cgroup_id;
	r["tty"] = p.tty || static_cast<bool>(ctx.flags & KT_F_TTY);
	if (p.loginuid != UINT32_MAX)
		r["login_uid"] = p.loginuid;
	if (p.sessionid != UINT32_MAX)
		r["session"] = p.sessionid;
	if (p.tty_nr)
		r["tty_nr"] = p.tty_nr;
	if (p.sid)
		r["sid"] = p.sid;
	r["tracked_by"] = "watched_open";
	return Record{std::move(r), {}};
}

// Listed in the catalog, but nothing credential-like inside.
Record EventRecords::credential_file(const EventContext &ctx, const FileScan &scan)
{
	nlohmann::json r = base("credential_file", ctx);
	r["path"] = shown(scan.path);
	r["kind"] = scan.kind;
	r["credentials"] = 0;
	r["summary"] = "credential file " + shown(scan.path) + " (" + scan.kind +
	               ") holds nothing credential-like";
	return Record{std::move(r), {}};
}

} // namespace keytrail
