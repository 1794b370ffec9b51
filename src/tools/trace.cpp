#include "keytrail/tools/trace.h"

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <string_view>
#include <tuple>

#include "keytrail/output/journal.h"
#include "keytrail/schema/record.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// A process as a record names it: the record itself, its "process" object
// or one of its ancestors.
struct Named {
	std::string exec_id, comm, exe, identity, mcp_server;
	uint32_t pid = 0, ppid = 0;
};

struct Net {
	std::string addr, sni, http_host;
	uint32_t port = 0;
};

struct SecretFields {
	std::string fingerprint, type, source, inventory_id, env, arg, path;
};

struct Credential {
	std::string fingerprint, upstream;
};

// The fields of a journal record the model reads, and nothing else: a
// document per record (its parse, lookups and free) was most of the time
// a trace spent on the segments it read. A field that is absent or of
// another type is empty (or 0), as a lookup in the document gave. Lists
// are read from arrays only (the document's iteration also took an
// object's values; the agent writes arrays).
struct RecordFields {
	std::string type;
	int64_t time = 0, event_time = 0, started = 0;
	Named self; // exec_id, pid, ppid, comm, identity, mcp_server of the record
	std::string filename, child_exec_id;
	uint32_t child_pid = 0;
	std::vector<std::string> argv;
	std::vector<Named> ancestry; // an element that is no object: all empty
	bool ancestry_first_object = false;
	Net net;                   // a connect's own
	bool has_upstream = false; // "upstream" present, whatever its type
	Net upstream;
	bool has_secret = false; // "secret" present, whatever its type
	SecretFields secret;
	Named process;
	std::string rule, severity, finding_id, summary; // alert, update
	std::string id, tool, outcome, client;           // tool_call
	double duration_ms = 0;
	std::vector<std::string> upstreams;
	std::vector<Credential> credentials;
};

// Reads a record line into RecordFields without building a document.
// Only the first levels of a record hold fields the model reads; deeper
// values are parsed (nlohmann's parser does not recurse, and a line is at
// most 16 MiB) and dropped. A repeated key replaces what the earlier one
// gave, as in a document.
class RecordSax : public nlohmann::json_sax<nlohmann::json>
{
      public:
	// False if the line is not one JSON object; *r is then partly filled.
	bool parse(std::string_view line, RecordFields *r)
	{
		r_ = r;
		depth_ = 0;
		object_ = false;
		return nlohmann::json::sax_parse(line.begin(), line.end(), this) && object_;
	}

	bool null() override { return value(); }
	bool boolean(bool) override { return value(); }
	bool number_integer(number_integer_t v) override
	{
		// A negative count or id reads as 0.
		return number(static_cast<uint32_t>(std::max<int64_t>(0, v)),
		              static_cast<double>(v));
	}
	bool number_unsigned(number_unsigned_t v) override
	{
		return number(static_cast<uint32_t>(v), static_cast<double>(v));
	}
	bool number_float(number_float_t v, const string_t &) override { return number(0, v); }
	bool binary(binary_t &) override { return value(); }
	bool string(string_t &v) override
	{
		Slot *s = value_slot();
		if (!s)
			return true;
		if (s->str)
			*s->str = std::move(v);
		else if (s->strings)
			s->strings->push_back(std::move(v));
		else if (s->time && !v.empty())
			parse_rfc3339(v, s->time);
		return true;
	}
	bool start_object(std::size_t) override { return open(true); }
	bool start_array(std::size_t) override { return open(false); }
	bool end_object() override { return close(); }
	bool end_array() override { return close(); }
	bool key(string_t &k) override
	{
		if (depth_ < kFrames)
			frames_[depth_].slot = slot_for(frames_[depth_], std::string_view(k));
		return true;
	}
	bool parse_error(std::size_t, const std::string &,
	                 const nlohmann::detail::exception &) override
	{
		return false;
	}

      private:
	// What an object or array is: the record or one of the parts of it the
	// model reads.
	enum class In {
		other,
		record,
		named,    // "process", or an element of "ancestry"
		identity, // {"id": ...}
		secret,
		upstream,
		client,
		strings, // "argv", "upstreams"
		ancestry,
		credentials,
		credential,
	};

	// Where the value after a key (or an array's next element) goes.
	struct Slot {
		std::string *str = nullptr;
		uint32_t *num = nullptr;
		int64_t *time = nullptr; // an RFC 3339 string
		double *dbl = nullptr;
		std::vector<std::string> *strings = nullptr; // a string element
		In object = In::other, array = In::other;    // what a container here is
		Named *named = nullptr;                      // with In::named
	};

	struct Frame {
		In in = In::other;
		Named *named = nullptr;                      // In::named
		std::string *id = nullptr;                   // In::identity
		std::vector<std::string> *strings = nullptr; // In::strings
		Slot slot;
	};

	// The record, an object in it, and one in that (an ancestor's fields,
	// a process's identity): nothing the model reads sits deeper.
	static constexpr int kFrames = 4;

	// Keys compare as string_views: most differ in length alone.
	Slot slot_for(const Frame &f, std::string_view k)
	{
		using namespace std::literals;
		RecordFields &r = *r_;
		Slot s;
		auto text = [&](std::string &x) {
			x.clear();
			s.str = &x;
		};
		auto count = [&](uint32_t &x) {
			x = 0;
			s.num = &x;
		};
		auto when = [&](int64_t &x) {
			x = 0;
			s.time = &x;
		};
		auto identity = [&](std::string &x) {
			text(x);
			s.object = In::identity;
		};
		auto named = [&](Named &n) {
			if (k == "exec_id"sv)
				text(n.exec_id);
			else if (k == "pid"sv)
				count(n.pid);
			else if (k == "ppid"sv)
				count(n.ppid);
			else if (k == "comm"sv)
				text(n.comm);
			else if (k == "exe"sv)
				text(n.exe);
			else if (k == "identity"sv)
				identity(n.identity);
			else if (k == "mcp_server"sv)
				text(n.mcp_server);
		};
		auto net = [&](Net &n) {
			if (k == "addr"sv)
				text(n.addr);
			else if (k == "sni"sv)
				text(n.sni);
			else if (k == "http_host"sv)
				text(n.http_host);
			else if (k == "port"sv)
				count(n.port);
		};
		switch (f.in) {
		case In::record:
			if (k == "type"sv)
				text(r.type);
			else if (k == "time"sv)
				when(r.time);
			else if (k == "event_time"sv)
				when(r.event_time);
			else if (k == "started"sv)
				when(r.started);
			else if (k == "filename"sv)
				text(r.filename);
			else if (k == "child_exec_id"sv)
				text(r.child_exec_id);
			else if (k == "child_pid"sv)
				count(r.child_pid);
			else if (k == "argv"sv) {
				r.argv.clear();
				s.array = In::strings;
				s.strings = &r.argv;
			} else if (k == "ancestry"sv) {
				r.ancestry.clear();
				r.ancestry_first_object = false;
				s.array = In::ancestry;
			} else if (k == "upstream"sv) {
				r.has_upstream = true;
				r.upstream = {};
				s.object = In::upstream;
			} else if (k == "secret"sv) {
				r.has_secret = true;
				r.secret = {};
				s.object = In::secret;
			} else if (k == "process"sv) {
				r.process = {};
				s.object = In::named;
				s.named = &r.process;
			} else if (k == "rule"sv)
				text(r.rule);
			else if (k == "severity"sv)
				text(r.severity);
			else if (k == "finding_id"sv)
				text(r.finding_id);
			else if (k == "summary"sv)
				text(r.summary);
			else if (k == "id"sv)
				text(r.id);
			else if (k == "tool"sv)
				text(r.tool);
			else if (k == "outcome"sv)
				text(r.outcome);
			else if (k == "client"sv) {
				r.client.clear();
				s.object = In::client;
			} else if (k == "duration_ms"sv) {
				r.duration_ms = 0;
				s.dbl = &r.duration_ms;
			} else if (k == "upstreams"sv) {
				r.upstreams.clear();
				s.array = In::strings;
				s.strings = &r.upstreams;
			} else if (k == "credentials"sv) {
				r.credentials.clear();
				s.array = In::credentials;
			} else if (k == "addr"sv || k == "sni"sv || k == "http_host"sv ||
			           k == "port"sv)
				net(r.net);
			else
				named(r.self);
			break;
		case In::named: named(*f.named); break;
		case In::identity:
			if (k == "id"sv)
				text(*f.id);
			break;
		case In::secret:
			for (auto [name, field] :
			     {std::pair{"fingerprint"sv, &r.secret.fingerprint},
			      {"type", &r.secret.type},
			      {"source", &r.secret.source},
			      {"inventory_id", &r.secret.inventory_id},
			      {"env", &r.secret.env},
			      {"arg", &r.secret.arg},
			      {"path", &r.secret.path}})
				if (k == name)
					text(*field);
			break;
		case In::upstream: net(r.upstream); break;
		case In::client:
			if (k == "name"sv)
				text(r.client);
			break;
		case In::credential:
			if (k == "fingerprint"sv)
				text(r.credentials.back().fingerprint);
			else if (k == "upstream"sv)
				text(r.credentials.back().upstream);
			break;
		default: break;
		}
		return s;
	}

	// The slot of the value that starts now, if anything reads it. In an
	// array, an element of the ancestry is counted whatever it is.
	Slot *value_slot()
	{
		if (depth_ == 0 || depth_ >= kFrames)
			return nullptr;
		Frame &f = frames_[depth_];
		switch (f.in) {
		case In::strings:
			f.slot = {};
			f.slot.strings = f.strings;
			break;
		case In::ancestry:
			f.slot = {};
			f.slot.object = In::named;
			f.slot.named = &r_->ancestry.emplace_back();
			break;
		case In::credentials:
			f.slot = {};
			f.slot.object = In::credential;
			break;
		default: break;
		}
		return &f.slot;
	}

	bool value()
	{
		value_slot();
		return true;
	}

	bool number(uint32_t n, double d)
	{
		Slot *s = value_slot();
		if (s && s->num)
			*s->num = n;
		if (s && s->dbl)
			*s->dbl = d;
		return true;
	}

	bool open(bool object)
	{
		Frame f;
		if (depth_ == 0) {
			object_ = object;
			f.in = object ? In::record : In::other;
		} else if (Slot *s = value_slot()) {
			f.in = object ? s->object : s->array;
			f.named = s->named;
			f.id = s->str;
			f.strings = s->strings;
			if (f.in == In::named && frames_[depth_].in == In::ancestry &&
			    r_->ancestry.size() == 1)
				r_->ancestry_first_object = true;
			if (f.in == In::credential)
				r_->credentials.emplace_back();
		}
		// A string expected and a container found: the string stays empty.
		depth_++;
		if (depth_ < kFrames)
			frames_[depth_] = f;
		return true;
	}

	bool close()
	{
		depth_--;
		return true;
	}

	RecordFields *r_ = nullptr;
	int depth_ = 0; // containers open
	bool object_ = false;
	Frame frames_[kFrames];
};

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

	void add(const RecordFields &r)
	{
		const std::string &type = r.type;
		int64_t t = r.time;
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
		const std::string &id = r.self.exec_id;
		if (id.empty())
			return;
		if (type == "secret") {
			add_secret(r, id, t);
			return;
		}
		TraceProcess &p = proc(id);
		fill(p, r.self, t);
		if (type == "exec")
			add_exec(r, p, t);
		else if (type == "fork")
			add_fork(r, p, id, t);
		else if (type == "exit")
			p.exit = t;
		else if (type == "connect")
			add_connect(r.net, p, t);
	}

	// A connect a secret_use (or an alert) names; a use binds a credential to it.
	void add_use(const RecordFields &r, bool use)
	{
		const std::string &id = r.process.exec_id;
		if (id.empty() || !r.has_secret || !r.has_upstream)
			return;
		TraceProcess &p = proc(id);
		const Net &u = r.upstream;
		const std::string &name = u.sni.empty() ? u.http_host : u.sni;
		auto c = std::find_if(p.connects.begin(), p.connects.end(), [&](auto &x) {
			return x.addr == u.addr && x.port == u.port && x.name == name;
		});
		if (c == p.connects.end()) {
			p.connects.push_back({u.addr, name, u.port, r.event_time, {}});
			c = p.connects.end() - 1;
		}
		const std::string &fp = r.secret.fingerprint;
		if (use && !fp.empty() &&
		    std::find(c->used.begin(), c->used.end(), fp) == c->used.end())
			c->used.push_back(fp);
	}

	void add_tool_call(const RecordFields &r)
	{
		const std::string &id = r.process.exec_id;
		if (id.empty())
			return;
		TraceProcess &p = proc(id);
		fill(p, r.process, 0);
		TraceToolCall c;
		c.id = r.id;
		c.tool = r.tool;
		c.outcome = r.outcome;
		c.client = r.client;
		c.start = r.started;
		c.end = r.event_time;
		c.duration_ms = r.duration_ms;
		c.upstreams = r.upstreams;
		for (const auto &x : r.credentials)
			c.credentials.emplace_back(x.fingerprint, x.upstream);
		for (const auto &x : p.tool_calls)
			if (x.id == c.id && x.start == c.start)
				return; // the same record read twice
		p.tool_calls.push_back(std::move(c));
	}

	void add_alert(const RecordFields &r, const std::string &type, int64_t t)
	{
		TraceAlert a{
		    type, r.rule, r.severity, r.finding_id, r.summary, r.secret.fingerprint, t};
		const std::string &id = r.process.exec_id;
		if (id.empty()) {
			if (!a.fingerprint.empty())
				add_once(credential_alerts[a.fingerprint], std::move(a));
			return;
		}
		TraceProcess &p = proc(id);
		// What the alert says about its process, where nothing else did.
		fill(p, r.process, 0);
		// The agent's exe for it, over what a fork record guessed (the parent's).
		if (!execd.count(id) && !r.process.exe.empty())
			p.exe = r.process.exe;
		if (p.identity.empty())
			p.identity = r.self.identity;
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

	void add_secret(const RecordFields &r, const std::string &id, int64_t t)
	{
		const SecretFields &s = r.secret;
		TraceSecret ts{s.fingerprint, s.type, s.source, "", s.inventory_id, t};
		for (const std::string *x : {&s.env, &s.arg, &s.path})
			if (ts.location.empty())
				ts.location = *x;
		if (ts.fingerprint.empty())
			return;
		if (!ts.inventory_id.empty())
			inventory[ts.inventory_id].insert(ts.fingerprint);
		TraceProcess &p = proc(id);
		fill(p, r.self, t);
		const std::string &who = r.self.identity;
		if (!who.empty())
			holders[ts.fingerprint].emplace(who, id);
		for (const auto &x : p.secrets)
			if (x.fingerprint == ts.fingerprint && x.location == ts.location)
				return;
		p.secrets.push_back(std::move(ts));
	}

	void add_exec(const RecordFields &r, TraceProcess &p, int64_t t)
	{
		execd.insert(p.exec_id);
		p.start = t;
		p.comm = r.self.comm; // a fork record named it after its parent
		p.exe = r.filename;
		p.argv = r.argv;
		const auto &anc = r.ancestry;
		if (anc.empty() || !r.ancestry_first_object)
			return;
		link(anc[0].exec_id, p);
		// Ancestors the journal never saw exec are still named.
		for (size_t i = 0; i < anc.size(); i++) {
			TraceProcess &a = proc(anc[i].exec_id);
			if (a.comm.empty())
				a.comm = anc[i].comm;
			if (a.exe.empty())
				a.exe = anc[i].exe;
			if (!a.pid)
				a.pid = anc[i].pid;
			if (i + 1 < anc.size())
				link(anc[i + 1].exec_id, a);
		}
	}

	void add_fork(const RecordFields &r, TraceProcess &p, const std::string &id, int64_t t)
	{
		TraceProcess &c = proc(r.child_exec_id);
		c.pid = r.child_pid;
		c.ppid = p.pid;
		if (!c.start || (t && t < c.start)) // its own records may have come first
			c.start = t;
		if (c.comm.empty())
			c.comm = p.comm;
		if (c.exe.empty())
			c.exe = p.exe;
		link(id, c);
	}

	void add_connect(const Net &n, TraceProcess &p, int64_t t)
	{
		const std::string &name = n.sni.empty() ? n.http_host : n.sni;
		if (n.addr.empty() || n.port == 0)
			return;
		for (const auto &c : p.connects)
			if (c.addr == n.addr && c.port == n.port && c.name == name)
				return;
		p.connects.push_back({n.addr, name, n.port, t, {}});
	}

	void fill(TraceProcess &p, const Named &n, int64_t t)
	{
		if (!p.pid)
			p.pid = n.pid;
		if (!p.ppid)
			p.ppid = n.ppid;
		if (p.comm.empty())
			p.comm = n.comm;
		if (p.identity.empty())
			p.identity = n.identity;
		if (p.mcp_server.empty())
			p.mcp_server = n.mcp_server;
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
	std::vector<RecordFields> records;
	JournalReadStats stats;
};

constexpr size_t kCachedRecords = 200000;

// expect: the records its index counted. Reserved up front, as growing
// the vector touched twice the memory, and page faults were a third of
// the parse; bounded, as the index is input too.
std::shared_ptr<const SegmentRead> read_segment(const std::string &path, const TraceQuery &q,
                                                uint64_t expect)
{
	auto r = std::make_shared<SegmentRead>();
	r->records.reserve(std::min<uint64_t>(expect, 1u << 16));
	RecordSax sax;
	read_journal_segment_lines(
	    path,
	    [&](std::string_view line) {
		    RecordFields &rec = r->records.emplace_back();
		    if (!sax.parse(line, &rec)) {
			    r->records.pop_back();
			    r->stats.bad_lines++; // not a JSON object
			    return true;
		    }
		    r->stats.records++;
		    int64_t t = rec.time;
		    if ((q.since && t && t < q.since) || (q.until && t && t > q.until))
			    r->records.pop_back();
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
				    j, reads[j]
				           ? std::async(std::launch::deferred,
				                        [&reads, j] { return reads[j]; })
				           : std::async(std::launch::async, [&, j] {
					             return read_segment(
					                 segs[j], q, idx[j] ? idx[j]->records : 0);
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
			// Kept for a start over, up to a bound (a record read is ~1.3 KiB).
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
