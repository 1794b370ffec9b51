#include "keytrail/agent/agent.h"

#include <glob.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <set>
#include <tuple>

#include "keytrail/abi.h"
#include "keytrail/correlate/findings.h"
#include "keytrail/output/sink.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/host.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

Config with_options(Config cfg, const AgentOptions &opts)
{
	if (!opts.state_dir.empty())
		cfg.state_dir = opts.state_dir;
	if (!opts.metrics.empty())
		cfg.metrics_address = opts.metrics;
	return cfg;
}

} // namespace

Agent::Agent(Config cfg, AgentOptions opts, ProbeControl &probe, const Clock &clock, Emit emit)
    : cfg_(with_options(std::move(cfg), opts)), opts_(std::move(opts)), probe_(probe),
      clock_(clock), emit_(std::move(emit)),
      host_(cfg_.host_name.empty() ? host_name() : cfg_.host_name),
      want_events_(opts_.events || cfg_.events || cfg_.journal.enabled),
      self_pid_(static_cast<uint32_t>(getpid())),
      procs_(cfg_, host_, clock_, counters_.agent, [this](const Input &in) { feed(in); }),
      lifecycle_(cfg_, probe_, procs_, counters_.agent), files_(probe_, counters_.agent),
      connects_(cfg_.connect_hold), records_(host_, clock_, procs_)
{
	umask(077);
	make_private_dirs(cfg_.state_dir); // ours, 0700, nobody else's on the way
	std::string key_file = cfg_.fingerprint_key_file.empty()
	                           ? cfg_.state_dir + "/fingerprint.key"
	                           : cfg_.fingerprint_key_file;
	Fingerprinter keyed(load_or_create_key(key_file, cfg_.fingerprint_key_file.empty()));
	key_id_ = keyed.key_id();
	spdlog::info("fingerprint key {} ({})", key_id_, key_file);
	sources_ = std::make_unique<SecretSources>(std::move(keyed), cfg_.secret_paths,
	                                           cfg_.max_file_size);
	ledger_ = std::make_unique<Ledger>(cfg_.state_dir + "/ledger.db");
	if (!opts_.record.empty())
		recording_ = std::make_unique<RecordingWriter>(opts_.record);
	corr_ = std::make_unique<Correlator>(host_, cfg_, clock_,
	                                     [this](Record &&r) { correlated(std::move(r)); });
	corr_->set_known_findings(ledger_->findings(FindingBook::kMaxFindings));
	corr_->set_on_finding([this](const FindingState &f) { ledger_->record_finding(f); });
	{
		std::vector<Correlator::ToolUpstream> known;
		for (auto &u : ledger_->tool_uses())
			known.push_back(
			    {u.server, u.tool, u.fingerprint, u.upstream, u.first_used});
		corr_->set_tool_baseline(known);
	}
	corr_->set_on_tool_upstream([this](const Correlator::ToolUpstream &u) {
		ledger_->record_tool_use(
		    {u.server, u.tool, u.fingerprint, u.upstream, u.first_ns, u.first_ns, 1});
	});
	corr_->set_on_use([this](const std::string &fp, const std::string &identity,
	                         const std::string &upstream, const std::string &addr, int64_t t) {
		ledger_->record_use(fp, identity, upstream, addr, t);
	});
	intake_ =
	    std::make_unique<SecretIntake>(cfg_, *sources_, *ledger_, procs_, counters_.secrets,
	                                   clock_, [this](const Input &in) { feed(in); });
	procs_.on_retired([this](uint32_t pid) { files_.forget(pid); });
}

Agent::~Agent() = default;

void Agent::start()
{
	names_ = std::make_unique<NameTable>(probe_.dns_capture());
	// Config rules in the kernel, so their servers are followed from exec.
	std::vector<std::string> unhinted;
	auto words = rule_hint_words(cfg_.rules, &unhinted);
	bool hinted = probe_.set_hint_words(words); // false: this kernel has no exec hint
	if (!hinted && !words.empty())
		unhinted.insert(unhinted.begin(), "(all: this kernel has no exec hint)");
	exec_hint_complete_ = hinted && unhinted.empty();
	for (const auto &name : unhinted)
		spdlog::warn("tracking rule {}: no literal of 4+ characters in exe or argv for the "
		             "kernel to match at exec; its servers are followed once their exec is "
		             "read, so their first milliseconds can be missed",
		             name);
	for (const auto &pattern : cfg_.watch_paths) {
		glob_t g{};
		if (::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0)
			for (size_t i = 0; i < g.gl_pathc; i++)
				if (!files_.watch_path(g.gl_pathv[i]))
					spdlog::warn("cannot watch {}", shown(g.gl_pathv[i]));
		globfree(&g);
	}
	if (opts_.scan_host)
		collect(lifecycle_.scan_proc(opts_.track));
	else if (!opts_.track.empty())
		for (pid_t p : opts_.track)
			collect(lifecycle_.track(static_cast<uint32_t>(p), McpMatch{"", "manual"}));
	started_ = std::chrono::steady_clock::now();
	intake_->from_mcp_configs();

	nlohmann::json ready;
	ready["type"] = "ready";
	ready["schema"] = kSchemaVersion;
	ready["time"] = rfc3339(clock_.now_ns());
	ready["host"] = host_;
	ready["version"] = KEYTRAIL_VERSION;
	ready["programs"] = probe_.attached_programs();
	ready["attach_seconds"] = probe_.attach_seconds();
	ready["ring_buffer_bytes"] = probe_.ring_buffer_bytes();
	ready["tracked"] = procs_.table().count_tracked();
	ready["processes"] = procs_.table().live();
	ready["config"] = cfg_.source.empty() ? "(built-in defaults)" : cfg_.source;
	ready["state_dir"] = cfg_.state_dir;
	ready["key_id"] = key_id_;
	if (metrics_port_)
		ready["metrics_port"] = metrics_port_;
	emit(Record{std::move(ready), {}});
	write_status(cfg_.state_dir, health_record(false), true, probe_);
}

void Agent::on_record(const void *data, size_t size)
{
	if (size >= sizeof(kt_event_hdr)) {
		const auto *h = static_cast<const kt_event_hdr *>(data);
		prompt_records_ += kt_record_prompt(h->type, h->flags) ? 1 : 0;
	}
	std::string err;
	auto ev = decode_event(data, size, &err);
	if (!ev) {
		if (counters_.agent.decode_errors++ % 1000 == 0)
			spdlog::warn("undecodable kernel record ({} bytes): {}", size, err);
		return;
	}
	counters_.agent.records++;
	counters_.agent.records_by_type[event_type(*ev)]++;
	std::visit([this](auto &e) { handle(e); }, *ev);
}

// Argv and environment of processes now tracked: from the exec record for
// the process that exec'd, from /proc for the others.
void Agent::collect(const std::vector<ProcessInfo *> &procs, const ExecEvent *e)
{
	for (ProcessInfo *p : procs) {
		bool self = e && p->pid == e->ctx.pid;
		intake_->collect(*p, self ? &e->argv : nullptr, self ? e->env.get() : nullptr);
	}
}

void Agent::handle(ExecEvent &e)
{
	ExecOutcome out = lifecycle_.on_exec(e);
	if (want_events_ && out.reportable())
		emit(records_.exec(e, out));
	collect(out.newly_tracked, &e);
	// An exec closes the O_CLOEXEC fds without close(): report them now.
	if (out.was_tracked)
		closed(e.ctx, files_.flush(e.ctx.pid, KT_CLOSE_EXEC));
}

void Agent::handle(const ForkEvent &e)
{
	ProcessInfo &child = lifecycle_.on_fork(e);
	if (want_events_)
		emit(records_.fork(e, child));
}

void Agent::handle(const ExitEvent &e)
{
	if (e.ctx.flags & KT_F_TRACKED) {
		closed(e.ctx, files_.flush(e.ctx.pid, KT_CLOSE_EXIT));
		for (const auto &c : connects_.release(e.ctx.pid))
			connected(c);
		if (want_events_)
			emit(records_.exit(e));
	}
	files_.forget(e.ctx.pid);
	stdio_.erase(static_cast<uint64_t>(e.ctx.pid) << 2 | KT_STDIO_IN);
	stdio_.erase(static_cast<uint64_t>(e.ctx.pid) << 2 | KT_STDIO_OUT);
	lifecycle_.on_exit(e);
}

void Agent::handle(const OpenEvent &e)
{
	// Our own reads of watched files (checking a credential file) are not
	// observations.
	if (e.ctx.pid == self_pid_)
		return;
	ProcessInfo *p = procs_.of(e.ctx);
	bool watched = e.ctx.flags & KT_F_WATCHED;
	if (p && p->pending && !watched)
		return; // not followed until its exec decides (Lifecycle::on_fork)
	if (p && p->self) {
		// Another keytrail (a scan, a second agent) examining the file.
		probe_.untrack(static_cast<pid_t>(p->pid));
		p->tracked = false;
		return;
	}
	// Outside any workload, a watched open is what made the kernel follow
	// it: a reader. It is described now, as /proc shows it (its exec, long
	// before, was not followed), so every record and `trace` name it whole.
	if (p && watched && !p->workload && !p->reader) {
		p->reader = true;
		p->tracked = true;
		procs_.describe_reader(*p);
		if (want_events_)
			emit(records_.reader(e.ctx, *p));
	}
	std::string path = files_.on_open(e);
	if (e.fd >= 0) {
		if (auto scan = intake_->from_open(
		        p, e, path, watched, watched ? files_.watched_path(e.dev, e.ino) : "")) {
			if (scan->secrets.empty() && !scan->cached)
				emit(records_.credential_file(e.ctx, *scan));
			// Any process that opens it from now on is reported, tracked or not.
			if (!scan->secrets.empty())
				files_.watch(e.dev, e.ino, scan->path);
		}
	}
	if (want_events_)
		emit(records_.open(e, path));
}

void Agent::handle(const CloseEvent &e)
{
	ClosedFd c = files_.on_close(e);
	if (want_events_)
		emit(records_.close(e.ctx, c));
}

void Agent::closed(const EventContext &ctx, std::vector<ClosedFd> fds)
{
	if (!want_events_)
		return;
	for (const auto &c : fds)
		emit(records_.close(ctx, c));
}

// Files closed while their process runs on, found in /proc (the kernel
// has no close hook): stamped now, within a reap interval of the close.
void Agent::reap_closed_files()
{
	timespec now{};
	clock_gettime(CLOCK_BOOTTIME, &now);
	for (auto &[ctx, c] : files_.reap(kReapBudget)) {
		ctx.ts_ns = static_cast<uint64_t>(now.tv_sec) * 1000000000ULL +
		            static_cast<uint64_t>(now.tv_nsec);
		if (want_events_)
			emit(records_.close(ctx, c));
	}
}

void Agent::handle(const ConnectEvent &e)
{
	ProcessInfo *p = procs_.of(e.ctx);
	if (p && p->pending)
		return;
	if (p && p->secrets_collected)
		intake_->recheck_held_fds(*p, clock_.boot_to_wall_ns(e.ctx.ts_ns));
	if (auto now = connects_.on_connect(e))
		connected(*now);
}

void Agent::handle(const PayloadEvent &e)
{
	if (auto c = connects_.on_payload(e))
		connected(*c);
	else
		counters_.agent.late_payloads++;
}

void Agent::connected(const NamedConnect &c)
{
	const ConnectEvent &e = c.ev;
	if (ProcessInfo *p = procs_.of(e.ctx)) {
		procs_.ensure_correlated(*p);
		ConnectSeen in;
		in.time_ns = clock_.boot_to_wall_ns(e.ctx.ts_ns);
		in.exec_id = p->exec_id;
		in.family = e.family;
		in.sock_type = e.sock_type;
		in.result = e.ret;
		in.port = e.port;
		in.addr = address_string(e.family, e.addr);
		in.sni = c.sni;
		in.http_host = c.http_host;
		in.proxy_target = c.proxy_target;
		name_connect(*p, in);
		feed(in);
	}
	if (want_events_) {
		Record r = records_.connect(c);
		if (ProcessInfo *p = procs_.of(e.ctx)) {
			nlohmann::json call =
			    corr_->tool_call_at(p->exec_id, clock_.boot_to_wall_ns(e.ctx.ts_ns));
			if (!call.is_null())
				r.fields["mcp"] = {{"tool_call", std::move(call)}};
		}
		emit(std::move(r));
	}
}

// A stdio MCP server's read of fd 0 or write of fd 1: framed per process
// and direction, reduced to methods, ids and names for the correlator. The
// bytes (tool arguments and results) stay in wiped buffers.
void Agent::handle(const StdioEvent &e)
{
	ProcessInfo *p = procs_.of(e.ctx);
	if (!p || p->pending || p->self || !e.bytes)
		return;
	uint64_t key = static_cast<uint64_t>(e.ctx.pid) << 2 | e.dir;
	auto [it, fresh] = stdio_.try_emplace(key);
	if (fresh)
		counters_.agent.mcp_streams++;
	StdioStream &st = it->second;
	if (st.exec_id != p->exec_id) { // a reused pid, or a new image
		st = StdioStream{};
		st.exec_id = p->exec_id;
	}
	procs_.ensure_correlated(*p);
	int64_t t = clock_.boot_to_wall_ns(e.ctx.ts_ns);
	std::string_view bytes = e.bytes->view();
	const mcp::FramerStats before = st.framer.stats();
	st.framer.keep_argument_keys(cfg_.correlate.tool_argument_keys);
	st.framer.feed(bytes.substr(0, e.head), e.cut(), bytes.substr(e.head),
	               [&](const mcp::Message &m) {
		               McpSeen in;
		               in.time_ns = t;
		               in.exec_id = p->exec_id;
		               in.dir = e.dir == KT_STDIO_IN ? McpSeen::kIn : McpSeen::kOut;
		               in.kind = m.kind;
		               in.is_error = m.is_error;
		               in.partial = m.partial;
		               in.tools_truncated = m.tools_truncated;
		               in.method = m.method;
		               in.id = m.id;
		               in.tool = m.tool;
		               in.cancelled_id = m.cancelled_id;
		               in.client_name = m.client_name;
		               in.client_version = m.client_version;
		               in.server_name = m.server_name;
		               in.server_version = m.server_version;
		               in.protocol_version = m.protocol_version;
		               in.tools = m.tools;
		               in.argument_keys = m.argument_keys;
		               feed(in);
	               });
	const mcp::FramerStats &after = st.framer.stats();
	counters_.agent.mcp_messages += after.messages - before.messages;
	counters_.agent.mcp_partial += after.partial - before.partial;
	counters_.agent.mcp_unparsable += after.unparsable - before.unparsable;
}

// Whether the connect goes to the process's proxy, and whether the name it
// goes by is the address it reached (or, through a trusted proxy, trusted).
void Agent::name_connect(const ProcessInfo &p, ConnectSeen &in)
{
	std::vector<pid_t> pids{static_cast<pid_t>(p.pid), static_cast<pid_t>(p.ppid)};
	if (p.workload)
		if (const ProcessInfo *root = procs_.table().find_exec(p.workload->root_exec_id))
			pids.push_back(static_cast<pid_t>(root->pid));
	int64_t now = clock_.now_ns();
	std::string here =
	    (in.addr.find(':') != std::string::npos ? "[" + in.addr + "]" : in.addr) + ":" +
	    std::to_string(in.port);
	for (const auto &proxy : p.proxies) {
		size_t colon = proxy.rfind(':');
		if (proxy.substr(colon + 1) == std::to_string(in.port) &&
		    names_->same(proxy.substr(0, colon), in.addr, pids, now))
			in.via_proxy = true;
	}
	if (!in.proxy_target.empty()) {
		bool trusted = std::any_of(
		    cfg_.correlate.trusted_proxies.begin(), cfg_.correlate.trusted_proxies.end(),
		    [&](const std::string &g) { return glob_match(g, here); });
		in.name_check = trusted ? ConnectSeen::kVerified : ConnectSeen::kUnverified;
		return;
	}
	std::string name = in.sni;
	if (name.empty()) { // a Host header's port is not part of the name
		name = in.http_host;
		size_t colon = name.rfind(':');
		if (colon != std::string::npos && name.find(']', colon) == std::string::npos &&
		    (name.front() == '[' || name.find(':') == colon))
			name.resize(colon);
	}
	in.name_check = names_->check(name, in.addr, pids, now);
}

void Agent::handle(const DnsEvent &e)
{
	names_->learn(e, clock_.now_ns());
}

void Agent::handle(const IoUringEvent &e)
{
	ProcessInfo *p = procs_.of(e.ctx);
	if (!p || p->pending || p->self)
		return;
	if (want_events_)
		emit(records_.io_uring(e));
	procs_.ensure_correlated(*p);
	feed(IoUringSeen{clock_.boot_to_wall_ns(e.ctx.ts_ns), p->exec_id, e.opcode});
}

void Agent::feed(const Input &in)
{
	if (recording_)
		recording_->write(in);
	feeding_ns_ = input_time(in);
	corr_->feed(in);
}

void Agent::correlated(Record &&r)
{
	latency_.add(clock_.now_ns() - feeding_ns_);
	emit(std::move(r));
}

void Agent::tick()
{
	auto now = std::chrono::steady_clock::now();
	if (now >= next_reap_) {
		next_reap_ = now + kReapInterval;
		reap_closed_files();
	}
	procs_.table().evict(clock_.now_ns());
	for (const auto &c : connects_.expire(false))
		connected(c);
	corr_->tick();
	if (!ledger_->commit())
		counters_.secrets.ledger_errors++;
	if (recording_)
		recording_->flush();
}

nlohmann::json Agent::health_record(bool final) const
{
	HealthParts parts{&probe_,     &counters_, &procs_.table(), sources_.get(),
	                  corr_.get(), &latency_,  outputs_health_};
	double uptime =
	    std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
	nlohmann::json r = keytrail::health_record(parts, host_, clock_.now_ns(), uptime, final);
	r["key_id"] = key_id_; // so a fleet can check its hosts share one key
	return r;
}

void Agent::health(bool final)
{
	if (!final) {
		procs_.table().sweep_vanished(clock_.now_ns());
		// Stdio streams of processes whose exit record was lost.
		std::erase_if(stdio_, [&](const auto &kv) {
			const ProcessInfo *p =
			    procs_.table().find(static_cast<uint32_t>(kv.first >> 2));
			return !p || p->exec_id != kv.second.exec_id;
		});
		lifecycle_.sweep();
		files_.sweep_kernel_state();
	}
	nlohmann::json r = health_record(final);
	feed(HealthSeen{clock_.now_ns(), r["kernel"]["events"].get<uint64_t>(),
	                r["kernel"]["drops"].get<uint64_t>(), counters_.agent.attribution_failures,
	                counters_.agent.identities_degraded});
	// Again: feeding the health may have raised monitor_degraded.
	r["correlator"] = corr_->counters_json();
	emit(Record{r, {}});
	write_status(cfg_.state_dir, r, !final, probe_);
	if (final)
		spdlog::info("stopped: {} kernel events, {} dropped, {} attribution failures",
		             r["kernel"]["events"].get<uint64_t>(),
		             r["kernel"]["drops"].get<uint64_t>(),
		             counters_.agent.attribution_failures);
}

void Agent::stop()
{
	for (const auto &c : connects_.expire(true))
		connected(c);
	corr_->flush_tool_calls();
	if (!ledger_->commit())
		counters_.secrets.ledger_errors++;
	health(true);
	if (recording_ && !recording_->flush())
		spdlog::error("cannot write the recording {}: {}", opts_.record,
		              std::strerror(errno));
}

void Agent::reload()
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
		// What changed, and whether it applies live.
		auto live = [this](const std::string &k) {
			return k == "inventory" || k == "identities" || k == "environments" ||
			       k == "exceptions" || k == "tracking.clients" ||
			       k.starts_with("correlate.") ||
			       (outputs_reopen_ && (k == "outputs" || k == "agent.events"));
		};
		nlohmann::json applied = nlohmann::json::array(), restart = nlohmann::json::array();
		std::set<std::string> keys;
		for (const auto *c : {&cfg_, &fresh})
			for (const auto &kv : c->settings)
				keys.insert(kv.first);
		auto said = [](const Config &c, const std::string &k) {
			auto it = c.settings.find(k);
			return it == c.settings.end() ? std::string() : it->second;
		};
		// clickhouse outputs ship the journal on their own threads, opened
		// at start: a change to one needs a restart.
		auto shipped = [](const Config &c) {
			std::vector<std::tuple<std::string, std::string, std::string, std::string,
			                       std::string, uint32_t, int64_t, bool,
			                       std::vector<std::string>, std::vector<std::string>>>
			    v;
			for (const auto &o : c.outputs)
				if (o.type == "clickhouse")
					v.emplace_back(o.url, o.database, o.user, o.password_file,
					               o.tls_ca, o.batch_rows,
					               o.batch_interval.count(), o.allow_host_key,
					               o.records, o.record_column);
			return v;
		};
		for (const auto &k : keys)
			if (said(cfg_, k) != said(fresh, k))
				(live(k) && (k != "outputs" || shipped(cfg_) == shipped(fresh))
				     ? applied
				     : restart)
				    .push_back(k);
		// First, as it is the one step that can fail (a path it cannot
		// open): then nothing is applied and the old outputs stay.
		bool outputs = std::any_of(applied.begin(), applied.end(), [](const auto &k) {
			return k == "outputs" || k == "agent.events";
		});
		if (outputs) {
			outputs_reopen_(fresh);
			cfg_.outputs = fresh.outputs;
			cfg_.events = fresh.events;
		}
		cfg_.inventory = std::move(fresh.inventory);
		cfg_.identities = fresh.identities;
		cfg_.environments = fresh.environments;
		cfg_.trust_domain = fresh.trust_domain;
		cfg_.clients = std::move(fresh.clients);
		cfg_.correlate = fresh.correlate;
		for (const auto &k : applied)
			cfg_.settings[k] = said(fresh, k);
		procs_.reconfigure(cfg_);
		corr_->set_inventory(cfg_.inventory);
		corr_->set_config(cfg_.correlate);
		counters_.config.reloads++;
		r["ok"] = restart.empty();
		r["applied"] = applied;
		if (!restart.empty())
			r["restart_required"] = restart;
		r["inventory_entries"] = cfg_.inventory.size();
		if (restart.empty())
			spdlog::info("reloaded {}: {} inventory entries", cfg_.source,
			             cfg_.inventory.size());
		else
			spdlog::warn("reloaded {} in part: {} take effect only after a restart",
			             cfg_.source, restart.dump());
	} catch (const Error &e) {
		counters_.config.reload_errors++;
		r["ok"] = false;
		r["error"] = shown(e.what());
		spdlog::error("reload failed, keeping the running config: {}", shown(e.what()));
	}
	emit(Record{std::move(r), {}});
}

} // namespace keytrail
