#include "keytrail/tools/trace.h"

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>

#include "keytrail/output/journal.h"
#include "keytrail/schema/record.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

std::string str(const nlohmann::json &j, const char *k)
{
	auto it = j.find(k);
	return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

uint64_t num(const nlohmann::json &j, const char *k)
{
	auto it = j.find(k);
	return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>()
	       : it != j.end() && it->is_number_integer()
	           ? static_cast<uint64_t>(std::max<int64_t>(0, it->get<int64_t>()))
	           : 0;
}

int64_t time_of(const nlohmann::json &r, const char *k = "time")
{
	int64_t t = 0;
	std::string s = str(r, k);
	if (!s.empty())
		parse_rfc3339(s, &t);
	return t;
}

// The identity id of a record: a string, or an object with "id".
std::string identity_of(const nlohmann::json &r)
{
	auto it = r.find("identity");
	if (it == r.end())
		return "";
	if (it->is_string())
		return it->get<std::string>();
	return it->is_object() ? str(*it, "id") : "";
}

// Everything the journal says, by exec_id.
struct Model {
	std::map<std::string, TraceProcess> procs;
	// fingerprint -> identity -> an exec_id that held it
	std::map<std::string, std::map<std::string, std::string>> holders;
	std::map<std::string, std::set<std::string>> inventory; // id -> fingerprints
	// fingerprint -> alerts that name no process (stale_credential, ...)
	std::map<std::string, std::vector<TraceAlert>> credential_alerts;
	std::set<std::string> execd; // processes with an exec record of their own

	TraceProcess &proc(const std::string &exec_id)
	{
		TraceProcess &p = procs[exec_id];
		p.exec_id = exec_id;
		return p;
	}

	void add(const nlohmann::json &r)
	{
		std::string type = str(r, "type");
		int64_t t = time_of(r);
		if (type == "alert" || type == "update")
			add_alert(r, type, t);
		if (type == "secret_use" || type == "alert" || type == "update") {
			add_use(r, type == "secret_use");
			return;
		}
		if (type == "tool_call") {
			add_tool_call(r);
			return;
		}
		std::string id = str(r, "exec_id");
		if (id.empty())
			return;
		if (type == "secret") {
			add_secret(r, id, t);
			return;
		}
		TraceProcess &p = proc(id);
		fill(p, r, t);
		if (type == "exec")
			add_exec(r, p, t);
		else if (type == "fork")
			add_fork(r, p, id, t);
		else if (type == "exit")
			p.exit = t;
		else if (type == "connect")
			add_connect(r, p, t);
	}

	// A connect a secret_use (or an alert) names; a use binds a credential to it.
	void add_use(const nlohmann::json &r, bool use)
	{
		const nlohmann::json &pj = r.value("process", nlohmann::json::object());
		std::string id = str(pj, "exec_id");
		if (id.empty() || !r.contains("secret") || !r.contains("upstream"))
			return;
		TraceProcess &p = proc(id);
		const auto &u = r["upstream"];
		std::string addr = str(u, "addr"), name = str(u, "sni");
		if (name.empty())
			name = str(u, "http_host");
		auto port = static_cast<uint32_t>(num(u, "port"));
		auto c = std::find_if(p.connects.begin(), p.connects.end(), [&](auto &x) {
			return x.addr == addr && x.port == port && x.name == name;
		});
		if (c == p.connects.end()) {
			p.connects.push_back({addr, name, port, time_of(r, "event_time"), {}});
			c = p.connects.end() - 1;
		}
		std::string fp = str(r["secret"], "fingerprint");
		if (use && !fp.empty() &&
		    std::find(c->used.begin(), c->used.end(), fp) == c->used.end())
			c->used.push_back(fp);
	}

	void add_tool_call(const nlohmann::json &r)
	{
		const nlohmann::json &pj = r.value("process", nlohmann::json::object());
		std::string id = str(pj, "exec_id");
		if (id.empty())
			return;
		TraceProcess &p = proc(id);
		fill(p, pj, 0);
		TraceToolCall c;
		c.id = str(r, "id");
		c.tool = str(r, "tool");
		c.outcome = str(r, "outcome");
		if (auto cl = r.find("client"); cl != r.end() && cl->is_object())
			c.client = str(*cl, "name");
		c.start = time_of(r, "started");
		c.end = time_of(r, "event_time");
		if (auto d = r.find("duration_ms"); d != r.end() && d->is_number())
			c.duration_ms = d->get<double>();
		for (const auto &u : r.value("upstreams", nlohmann::json::array()))
			if (u.is_string())
				c.upstreams.push_back(u.get<std::string>());
		for (const auto &x : r.value("credentials", nlohmann::json::array()))
			if (x.is_object())
				c.credentials.emplace_back(str(x, "fingerprint"),
				                           str(x, "upstream"));
		for (const auto &x : p.tool_calls)
			if (x.id == c.id && x.start == c.start)
				return; // the same record read twice
		p.tool_calls.push_back(std::move(c));
	}

	void add_alert(const nlohmann::json &r, const std::string &type, int64_t t)
	{
		TraceAlert a{type,
		             str(r, "rule"),
		             str(r, "severity"),
		             str(r, "finding_id"),
		             str(r, "summary"),
		             "",
		             t};
		if (auto s = r.find("secret"); s != r.end() && s->is_object())
			a.fingerprint = str(*s, "fingerprint");
		auto pj = r.find("process");
		std::string id = pj != r.end() && pj->is_object() ? str(*pj, "exec_id") : "";
		if (id.empty()) {
			if (!a.fingerprint.empty())
				add_once(credential_alerts[a.fingerprint], std::move(a));
			return;
		}
		TraceProcess &p = proc(id);
		// What the alert says about its process, where nothing else did.
		fill(p, *pj, 0);
		// The agent's exe for it, over what a fork record guessed (the parent's).
		if (!execd.count(id) && !str(*pj, "exe").empty())
			p.exe = str(*pj, "exe");
		if (p.identity.empty())
			p.identity = identity_of(r);
		add_once(p.alerts, std::move(a));
	}

	// An update repeating what is already there adds nothing to show.
	static void add_once(std::vector<TraceAlert> &v, TraceAlert &&a)
	{
		for (const auto &x : v)
			if (x.finding_id == a.finding_id && x.type == a.type &&
			    x.summary == a.summary)
				return;
		v.push_back(std::move(a));
	}

	void add_secret(const nlohmann::json &r, const std::string &id, int64_t t)
	{
		const nlohmann::json &s = r.value("secret", nlohmann::json::object());
		TraceSecret ts{str(s, "fingerprint"),  str(s, "type"),
		               str(s, "source"),       "",
		               str(s, "inventory_id"), t};
		for (const char *k : {"env", "arg", "path"})
			if (ts.location.empty())
				ts.location = str(s, k);
		if (ts.fingerprint.empty())
			return;
		if (!ts.inventory_id.empty())
			inventory[ts.inventory_id].insert(ts.fingerprint);
		TraceProcess &p = proc(id);
		fill(p, r, t);
		std::string who = identity_of(r);
		if (!who.empty())
			holders[ts.fingerprint].emplace(who, id);
		for (const auto &x : p.secrets)
			if (x.fingerprint == ts.fingerprint && x.location == ts.location)
				return;
		p.secrets.push_back(std::move(ts));
	}

	void add_exec(const nlohmann::json &r, TraceProcess &p, int64_t t)
	{
		execd.insert(p.exec_id);
		p.start = t;
		p.comm = str(r, "comm"); // a fork record named it after its parent
		p.exe = str(r, "filename");
		p.argv.clear();
		for (const auto &a : r.value("argv", nlohmann::json::array()))
			if (a.is_string())
				p.argv.push_back(a.get<std::string>());
		const auto &anc = r.value("ancestry", nlohmann::json::array());
		if (anc.empty() || !anc[0].is_object())
			return;
		link(str(anc[0], "exec_id"), p);
		// Ancestors the journal never saw exec are still named.
		for (size_t i = 0; i < anc.size(); i++) {
			TraceProcess &a = proc(str(anc[i], "exec_id"));
			if (a.comm.empty())
				a.comm = str(anc[i], "comm");
			if (a.exe.empty())
				a.exe = str(anc[i], "exe");
			if (!a.pid)
				a.pid = static_cast<uint32_t>(num(anc[i], "pid"));
			if (i + 1 < anc.size())
				link(str(anc[i + 1], "exec_id"), a);
		}
	}

	void add_fork(const nlohmann::json &r, TraceProcess &p, const std::string &id, int64_t t)
	{
		TraceProcess &c = proc(str(r, "child_exec_id"));
		c.pid = static_cast<uint32_t>(num(r, "child_pid"));
		c.ppid = p.pid;
		if (!c.start || (t && t < c.start)) // its own records may have come first
			c.start = t;
		if (c.comm.empty())
			c.comm = p.comm;
		if (c.exe.empty())
			c.exe = p.exe;
		link(id, c);
	}

	void add_connect(const nlohmann::json &r, TraceProcess &p, int64_t t)
	{
		std::string addr = str(r, "addr"), name = str(r, "sni");
		if (name.empty())
			name = str(r, "http_host");
		auto port = static_cast<uint32_t>(num(r, "port"));
		if (addr.empty() || port == 0)
			return;
		for (const auto &c : p.connects)
			if (c.addr == addr && c.port == port && c.name == name)
				return;
		p.connects.push_back({addr, name, port, t, {}});
	}

	void fill(TraceProcess &p, const nlohmann::json &r, int64_t t)
	{
		if (!p.pid)
			p.pid = static_cast<uint32_t>(num(r, "pid"));
		if (!p.ppid)
			p.ppid = static_cast<uint32_t>(num(r, "ppid"));
		if (p.comm.empty())
			p.comm = str(r, "comm");
		if (p.identity.empty())
			p.identity = identity_of(r);
		if (p.mcp_server.empty())
			p.mcp_server = str(r, "mcp_server");
		if (!p.start || (t && t < p.start))
			p.start = t;
	}

	void link(const std::string &parent, TraceProcess &child)
	{
		if (parent.empty() || parent == child.exec_id)
			return;
		child.parent = parent;
		proc(parent).children.insert(child.exec_id);
	}
};

} // namespace

namespace
{

// The processes a query names.
std::set<std::string> seeds_of(Model &m, const TraceQuery &q)
{
	std::set<std::string> fps;
	if (!q.secret.empty())
		for (const auto &[fp, h] : m.holders)
			if (fp.rfind(q.secret, 0) == 0)
				fps.insert(fp);
	if (!q.inventory.empty())
		for (const auto &fp : m.inventory[q.inventory])
			fps.insert(fp);
	std::set<std::string> seeds;
	for (const auto &[id, p] : m.procs) {
		bool hit = (!q.exec_id.empty() && id == q.exec_id) ||
		           (!q.identity.empty() &&
		            trace_identity_matches(q.identity, p.identity, p.mcp_server));
		for (const auto &s : p.secrets)
			hit = hit || fps.count(s.fingerprint);
		for (const auto &c : p.connects)
			for (const auto &u : c.used)
				hit = hit || fps.count(u);
		if (hit)
			seeds.insert(id);
	}
	if (!q.pid)
		return seeds;
	// A pid at a time: the instance that started last before then (one pid
	// is one process at a time; an exit record may have been lost).
	const TraceProcess *best = nullptr;
	for (const auto &[id, p] : m.procs) {
		if (p.pid != *q.pid)
			continue;
		if (!q.at)
			seeds.insert(id);
		else if (p.start <= *q.at && (!p.exit || *q.at <= p.exit) &&
		         (!best || p.start > best->start))
			best = &p;
	}
	if (best)
		seeds.insert(best->exec_id);
	return seeds;
}

// Ancestors and descendants of every seed, and its siblings: a script's
// `cat .env` and the `curl` after it are the pivot.
// Those above the seeds' parents go to *ancestors too: only their own
// records count, not their other children.
std::set<std::string> around(Model &m, const std::set<std::string> &seeds,
                             std::set<std::string> *ancestors = nullptr)
{
	std::set<std::string> keep;
	std::vector<std::string> todo;
	for (const auto &s : seeds) {
		const std::string &parent = m.procs[s].parent;
		todo.push_back(parent.empty() ? s : parent);
		std::string up = parent.empty() ? "" : m.procs[parent].parent;
		for (int guard = 0; !up.empty() && guard < 64; guard++) {
			keep.insert(up);
			if (ancestors)
				ancestors->insert(up);
			up = m.procs[up].parent;
		}
	}
	while (!todo.empty()) {
		std::string id = std::move(todo.back());
		todo.pop_back();
		if (!keep.insert(id).second)
			continue;
		for (const auto &c : m.procs[id].children)
			todo.push_back(c);
	}
	return keep;
}

// One segment's records in the query's time range, parsed.
struct SegmentRead {
	std::vector<nlohmann::json> records;
	JournalReadStats stats;
};

constexpr size_t kCachedRecords = 200000;

std::shared_ptr<const SegmentRead> read_segment(const std::string &path, const TraceQuery &q)
{
	auto r = std::make_shared<SegmentRead>();
	read_journal_segment(
	    path,
	    [&](nlohmann::json &&rec) {
		    int64_t t = time_of(rec);
		    if (!(q.since && t && t < q.since) && !(q.until && t && t > q.until))
			    r->records.push_back(std::move(rec));
		    return true;
	    },
	    &r->stats);
	return r;
}

bool in_time(const SegmentIndex &ix, const TraceQuery &q)
{
	if (ix.records == 0)
		return false;
	if (ix.untimed)
		return true; // the reader keeps untimed records whatever the range
	return !(q.since && ix.last < q.since) && !(q.until && ix.first > q.until);
}

// Could a record of this segment make a process a seed (seeds_of)?
bool may_seed(const SegmentIndex &ix, const TraceQuery &q)
{
	if (!q.secret.empty()) {
		auto it = ix.fingerprints.lower_bound(q.secret);
		if (it != ix.fingerprints.end() && it->starts_with(q.secret))
			return true;
	}
	if (!q.inventory.empty() && ix.inventory_ids.count(q.inventory))
		return true;
	if (q.pid && ix.may_name_pid(*q.pid))
		return true;
	if (!q.exec_id.empty() && (ix.may_name_exec_id(q.exec_id) || ix.may_name_parent(q.exec_id)))
		return true;
	if (!q.identity.empty())
		for (const auto *set : {&ix.identities, &ix.mcp_servers})
			for (const auto &v : *set)
				if (glob_match(q.identity, v))
					return true;
	return false;
}

template <class Set, class F> bool names_any(const Set &ids, F may_name)
{
	return std::any_of(ids.begin(), ids.end(), may_name);
}

} // namespace

bool parse_trace_time(const std::string &s, int64_t now_ns, int64_t *t)
{
	if (parse_rfc3339(s, t))
		return true;
	// A span: one or more <digits><unit>, e.g. 90s, 1h30m, 7d.
	int64_t span = 0;
	size_t i = 0;
	while (i < s.size()) {
		size_t digits = 0;
		int64_t n = 0;
		for (; i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 9; i++, digits++)
			n = n * 10 + (s[i] - '0');
		if (digits == 0 || i >= s.size())
			return false;
		int64_t unit = s[i] == 's'   ? 1
		               : s[i] == 'm' ? 60
		               : s[i] == 'h' ? 3600
		               : s[i] == 'd' ? 86400
		                             : 0;
		if (unit == 0)
			return false;
		i++;
		span += n * unit;
		if (span > 100LL * 365 * 86400)
			return false; // a century back is a typo
	}
	if (s.empty())
		return false;
	*t = now_ns - span * 1000000000LL;
	return true;
}

bool trace_identity_matches(const std::string &pattern, const std::string &identity,
                            const std::string &mcp_server)
{
	return (!identity.empty() && glob_match(pattern, identity)) ||
	       (!mcp_server.empty() && glob_match(pattern, mcp_server));
}

TraceResult run_trace(const std::string &journal_dir, const TraceQuery &q,
                      const TraceProgress &progress)
{
	TraceResult res;
	struct stat st;
	if (stat(journal_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
		res.error = "no journal at " + journal_dir;
		return res;
	}
	// Segments whose index says they are out of the time range, or name
	// nothing the query or its tree could need, are not read. The rest are
	// read in time order; when the tree found reaches into segments not read
	// yet (a parent's exec, a sibling, another holder of a credential), they
	// are added and the model is rebuilt from scratch, so it is the model a
	// full read of the time range would give.
	std::vector<std::string> segs = journal_segments(journal_dir);
	std::vector<std::optional<SegmentIndex>> idx(segs.size());
	std::vector<bool> take(segs.size());
	uint64_t indexed = 0;
	// Thousands of index files in a week: read on two threads.
	auto load = [&](size_t from, size_t step) {
		for (size_t i = from; i < segs.size(); i += step)
			idx[i] = read_segment_index(segs[i]);
	};
	auto other = std::async(std::launch::async, load, 1, 2);
	load(0, 2);
	other.get();
	for (size_t i = 0; i < segs.size(); i++) {
		indexed += idx[i].has_value();
		take[i] = !idx[i] || (in_time(*idx[i], q) && may_seed(*idx[i], q));
	}
	Model m;
	std::set<std::string> seeds;
	std::vector<bool> done(segs.size());
	std::vector<std::shared_ptr<const SegmentRead>> reads(segs.size());
	size_t cached = 0;
	for (;;) {
		// Records are taken in time order: a segment added after all those
		// read is read on top, one added before them means starting over.
		size_t end_done =
		    static_cast<size_t>(done.rend() - std::find(done.rbegin(), done.rend(), true));
		for (size_t i = 0; i < end_done; i++)
			if (take[i] && !done[i]) {
				m = Model();
				res.stats = {};
				std::fill(done.begin(), done.end(), false);
				break;
			}
		size_t n = static_cast<size_t>(std::count(take.begin(), take.end(), true));
		size_t k = static_cast<size_t>(std::count(done.begin(), done.end(), true));
		std::vector<size_t> todo;
		for (size_t i = 0; i < segs.size(); i++)
			if (take[i] && !done[i])
				todo.push_back(i);
		// Parsing is the cost: two segments at a time, added in order.
		std::deque<std::pair<size_t, std::future<std::shared_ptr<const SegmentRead>>>>
		    ahead;
		size_t next = 0;
		for (size_t i : todo) {
			while (ahead.size() < 2 && next < todo.size()) {
				size_t j = todo[next++];
				ahead.emplace_back(
				    j, reads[j] ? std::async(std::launch::deferred,
				                             [&reads, j] { return reads[j]; })
				                : std::async(std::launch::async, [&, j] {
					                  return read_segment(segs[j], q);
				                  }));
			}
			auto r = ahead.front().second.get();
			ahead.pop_front();
			done[i] = true;
			if (progress)
				progress(k++, n, segs[i]);
			for (const auto &rec : r->records)
				m.add(rec);
			res.stats.records += r->stats.records;
			res.stats.bad_lines += r->stats.bad_lines;
			res.stats.segments += r->stats.segments;
			res.stats.truncated_segments += r->stats.truncated_segments;
			// Kept for a start over, up to a bound (a parsed record is ~1 KiB).
			if (!reads[i] && cached + r->records.size() <= kCachedRecords) {
				cached += r->records.size();
				reads[i] = r;
			}
		}
		seeds = seeds_of(m, q);
		if (seeds.empty())
			break;
		std::set<std::string> ancestors, fps;
		std::set<std::string> keep = around(m, seeds, &ancestors), below;
		for (const auto &id : keep) {
			if (!ancestors.count(id))
				below.insert(id);
			for (const auto &sec : m.procs[id].secrets)
				fps.insert(sec.fingerprint);
			for (const auto &c : m.procs[id].connects)
				fps.insert(c.used.begin(), c.used.end());
		}
		bool more = false;
		std::vector<uint64_t> keep_h, below_h;
		for (const auto &id : keep)
			keep_h.push_back(KeySet::hash(id));
		for (const auto &id : below)
			below_h.push_back(KeySet::hash(id));
		for (size_t i = 0; i < segs.size(); i++)
			if (!take[i] && in_time(*idx[i], q) &&
			    (names_any(
			         keep_h,
			         [&](uint64_t h) { return idx[i]->exec_ids.may_have_hash(h); }) ||
			     names_any(
			         below_h,
			         [&](uint64_t h) { return idx[i]->parents.may_have_hash(h); }) ||
			     names_any(fps, [&](auto &fp) {
				     return idx[i]->fingerprints.count(fp) > 0;
			     })))
				more = take[i] = true;
		if (!more)
			break;
	}
	res.stats.segments = segs.size();
	res.stats.indexed_segments = indexed;
	res.stats.skipped_segments =
	    segs.size() - static_cast<size_t>(std::count(take.begin(), take.end(), true));
	if (seeds.empty()) {
		res.error = "nothing in the journal matches the query";
		return res;
	}
	std::set<std::string> keep = around(m, seeds);
	for (const auto &id : keep)
		res.processes[id] = m.procs[id];
	for (auto &[id, p] : res.processes) {
		std::set<std::string> kept;
		for (const auto &c : p.children)
			if (keep.count(c))
				kept.insert(c);
		p.children = std::move(kept);
		if (p.parent.empty() || !keep.count(p.parent))
			res.roots.push_back(id);
	}
	// Alerts about a credential with no process: where it came into the tree.
	for (auto &[id, p] : res.processes) {
		const TraceProcess *parent =
		    res.processes.count(p.parent) ? &res.processes.at(p.parent) : nullptr;
		for (const auto &s : p.secrets) {
			bool inherited =
			    parent && std::any_of(parent->secrets.begin(), parent->secrets.end(),
			                          [&](const auto &x) {
				                          return x.fingerprint == s.fingerprint;
			                          });
			auto it = m.credential_alerts.find(s.fingerprint);
			if (!inherited && it != m.credential_alerts.end())
				for (const auto &a : it->second)
					Model::add_once(p.alerts, TraceAlert(a));
		}
		std::stable_sort(p.alerts.begin(), p.alerts.end(),
		                 [](const auto &a, const auto &b) { return a.time < b.time; });
	}
	std::sort(res.roots.begin(), res.roots.end(), [&](const auto &a, const auto &b) {
		return res.processes[a].start < res.processes[b].start;
	});
	res.seeds.assign(seeds.begin(), seeds.end());
	// Other identities holding the credentials seen in the tree.
	std::set<std::string> tree_ids;
	for (const auto &[id, p] : res.processes)
		tree_ids.insert(p.identity);
	for (const auto &[id, p] : res.processes)
		for (const auto &s : p.secrets)
			for (const auto &[who, eid] : m.holders[s.fingerprint])
				if (!tree_ids.count(who))
					res.shared[s.fingerprint].insert(who);
	return res;
}

} // namespace keytrail
