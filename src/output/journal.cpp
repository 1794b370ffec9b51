#include "keytrail/output/journal.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <type_traits>

#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/files.h"
#include "keytrail/util/json_dom.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

constexpr const char *kPrefix = "journal-";
constexpr size_t kCompressBacklog = 4; // closed segments waiting for gzip

bool is_open_segment(const std::string &n)
{
	return n.starts_with(kPrefix) && n.ends_with(".jsonl");
}

// A record type as the writer compacts it and the reader expands it.
bool is_name(std::string_view s)
{
	return !s.empty() && std::all_of(s.begin(), s.end(),
	                                 [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

void append_number(std::string &out, uint32_t n)
{
	char buf[16];
	auto r = std::to_chars(buf, buf + sizeof(buf), n);
	out.append(buf, static_cast<size_t>(r.ptr - buf));
}

constexpr std::string_view kMembersType = "{\"type\":\"journal_members\",\"journal_members\":";

bool is_closed_segment(const std::string &n)
{
	return n.starts_with(kPrefix) && n.ends_with(".jsonl.gz");
}

std::vector<std::string> list(const std::string &dir, bool (*want)(const std::string &))
{
	std::vector<std::string> out;
	DIR *d = opendir(dir.c_str());
	if (!d)
		return out;
	while (dirent *e = readdir(d))
		if (want(e->d_name))
			out.push_back(dir + "/" + e->d_name);
	closedir(d);
	std::sort(out.begin(), out.end());
	return out;
}

} // namespace

JournalSink::JournalSink(JournalConfig cfg) : cfg_(std::move(cfg))
{
	make_private_dirs(cfg_.dir);
	// Segments a crash left open: close them now (their last line may be cut).
	for (const auto &p : list(cfg_.dir, is_open_segment))
		compress(p, std::nullopt);
	int64_t now = wall_now_ns();
	retain(now);
	if (!open_segment(now))
		throw sys_error("create journal segment in " + cfg_.dir, errno);
	compressor_ = std::thread([this] { compress_closed(); });
}

JournalSink::~JournalSink()
{
	close_segment();
	{
		std::lock_guard lock(mu_);
		stop_ = true;
	}
	wake_.notify_one();
	compressor_.join(); // compresses what is queued first
}

void JournalSink::compress_closed()
{
	// gzip of a full segment takes about a second of CPU: at low priority,
	// so the writer and the probes' consumer keep the CPU.
	setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
	std::unique_lock lock(mu_);
	for (;;) {
		wake_.wait(lock, [this] { return stop_ || !closed_.empty(); });
		if (closed_.empty())
			return; // stopping, nothing left
		auto [path, ix] = std::move(closed_.front());
		closed_.pop_front();
		lock.unlock();
		compress_and_retain(path, std::move(ix));
		lock.lock();
	}
}

void JournalSink::compress_and_retain(const std::string &path, SegmentIndex ix)
{
	try {
		compress(path, std::move(ix));
		retain(wall_now_ns());
	} catch (const std::exception &e) {
		// Never the agent's end: the plain segment stays readable.
		spdlog::error("journal: cannot compress or index {}: {}", path, e.what());
	}
}

void JournalSink::compress(const std::string &path, std::optional<SegmentIndex> ix)
{
	// The index is written beside the .gz once that exists: a reader never
	// finds an index without its segment, and one without an index reads
	// it whole. A segment a crash left open is indexed off the file.
	if (!ix)
		ix = index_segment(path);
	if (!gzip_file(path, path + ".gz")) // on failure the plain segment stays readable
		return;
	// Retention (the writer's) may have removed the .gz already: its index
	// must not outlive it.
	std::lock_guard lock(retain_mu_);
	struct stat st;
	if (lstat((path + ".gz").c_str(), &st) == 0)
		write_segment_index(path + ".gz", std::move(*ix));
}

bool JournalSink::open_segment(int64_t now_ns)
{
	// Names sort in time order and are never reused: record times need not
	// increase, and a closed segment may still wait for the compressor
	// under its plain name.
	int64_t t = std::max(now_ns, named_ns_ + 1000);
	auto taken = [](const std::string &p) {
		struct stat st;
		return lstat(p.c_str(), &st) == 0 || lstat((p + ".gz").c_str(), &st) == 0;
	};
	for (int i = 0; i < 1000 && taken(cfg_.dir + "/" + kPrefix + compact_utc(t) + ".jsonl");
	     i++)
		t += 1000; // the names have microseconds
	named_ns_ = t;
	expand_leftover();
	members_.clear();
	member_ids_.clear();
	members_bytes_ = 0;
	last_keys_ = nullptr;
	path_ = cfg_.dir + "/" + kPrefix + compact_utc(t) + ".jsonl";
	fd_ = open_private_file(path_, true);
	if (fd_ < 0)
		return false;
	size_ = 0;
	opened_ns_ = now_ns;
	return true;
}

bool JournalSink::close_segment()
{
	if (fd_ < 0)
		return true;
	bool ok = flush();
	::close(fd_);
	fd_ = -1;
	if (!ok)
		return false;
	if (size_ == 0) {
		unlink(path_.c_str());
		return true;
	}
	std::optional<std::pair<std::string, SegmentIndex>> mine;
	{
		std::lock_guard lock(mu_);
		closed_.emplace_back(path_, std::move(ix_));
		// The compressor runs at low priority and starves on a busy host:
		// past a short backlog the writer compresses the oldest itself, so
		// the backlog (and the indexes it holds in memory) stays bounded
		// and a writer that cannot keep up slows its route instead.
		if (closed_.size() > kCompressBacklog) {
			mine = std::move(closed_.front());
			closed_.pop_front();
		}
	}
	ix_ = SegmentIndex();
	wake_.notify_one();
	if (mine)
		compress_and_retain(mine->first, std::move(mine->second));
	return true;
}

void JournalSink::expand_leftover()
{
	if (buf_.empty() || members_.empty())
		return;
	// They may refer to the failed segment's members: the next does not
	// have them.
	SegmentLines lines;
	std::string def;
	for (size_t i = 0; i < members_.size(); i++) {
		def.clear();
		SegmentLines::append_members_line(def, static_cast<uint32_t>(i), members_[i]);
		std::string_view ignored;
		lines.take(std::string_view(def).substr(0, def.size() - 1), ignored);
	}
	std::string whole;
	std::string_view rest = buf_;
	for (size_t nl; (nl = rest.find('\n')) != std::string_view::npos;
	     rest.remove_prefix(nl + 1)) {
		std::string_view record;
		if (lines.take(rest.substr(0, nl), record) == SegmentLines::Kind::record)
			whole.append(record).push_back('\n');
	}
	buf_ = std::move(whole);
}

bool JournalSink::write(std::string_view line, const LineMeta &meta)
{
	int64_t now = meta.time_ns ? meta.time_ns : wall_now_ns();
	bool full = size_ + buf_.size() + line.size() + 1 > cfg_.segment_size;
	bool old = now - opened_ns_ > to_ns(cfg_.segment_age);
	if (fd_ < 0 || ((full || old) && size_ + buf_.size() > 0)) {
		if (!close_segment())
			return false;
		if (!open_segment(now))
			return false;
	}
	if (buf_.size() >= (64u << 10) && !flush() && buf_.size() >= (4u << 20))
		return false;
	if (!meta.keys) {
		buf_.append(line);
		buf_.push_back('\n');
		ix_.add_line(line);
		return true;
	}
	// An observation: {"type":"<type>",<its process's members>,<the rest>}.
	// Its members go into the segment once; the line refers to them.
	const std::string &members = meta.keys->members;
	size_t head = 11 + meta.type.size(); // {"type":"<type>",
	// (A fork indexes its exec_id as a parent: never compacted.)
	bool compact =
	    !members.empty() && meta.type != "fork" && is_name(meta.type) &&
	    line.size() > head + members.size() && line.starts_with("{\"type\":\"") &&
	    line.substr(9, meta.type.size()) == meta.type && line.substr(head - 2, 2) == "\"," &&
	    line.substr(head, members.size()) == members && line[head + members.size()] == ',';
	bool fresh = false;
	std::optional<uint32_t> id;
	if (compact)
		id = members_id(*meta.keys, fresh);
	if (!id) {
		buf_.append(line);
		buf_.push_back('\n');
		ix_.add_keys(meta.type, meta.record_ns, *meta.keys);
		return true;
	}
	if (fresh) {
		SegmentLines::append_members_line(buf_, *id, members);
		ix_.add_keys(meta.type, meta.record_ns, *meta.keys);
	} else {
		ix_.add_time(meta.record_ns); // the same keys: they are in the index
	}
	buf_.append(line.substr(0, head));
	buf_.append("\"journal_members\":");
	append_number(buf_, *id);
	buf_.append(line.substr(head + members.size()));
	buf_.push_back('\n');
	return true;
}

std::optional<uint32_t> JournalSink::members_id(const IndexKeys &keys, bool &fresh)
{
	if (&keys == last_keys_ && members_[last_id_] == keys.members)
		return last_id_;
	auto it = member_ids_.find(keys.members);
	fresh = it == member_ids_.end();
	if (fresh) {
		// Within what a reader keeps of a segment's members; past it, the
		// segment's lines are written whole.
		size_t bytes = SegmentLines::members_line_size(
		    static_cast<uint32_t>(members_.size()), keys.members);
		if (members_bytes_ + bytes > SegmentLines::kMaxMembersBytes)
			return std::nullopt;
		members_bytes_ += bytes;
		members_.push_back(keys.members);
		it =
		    member_ids_.emplace(members_.back(), static_cast<uint32_t>(members_.size() - 1))
		        .first;
	}
	last_keys_ = &keys;
	last_id_ = it->second;
	return last_id_;
}

bool JournalSink::flush()
{
	if (buf_.empty())
		return true;
	if (fd_ < 0)
		return (errno = EBADF, false);
	size_t done = 0;
	while (done < buf_.size()) {
		ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			buf_.erase(0, done);
			size_ += done;
			return false;
		}
		done += static_cast<size_t>(n);
	}
	size_ += buf_.size();
	buf_.clear();
	return true;
}

bool JournalSink::reopen()
{
	if (fd_ >= 0)
		return true;
	return open_segment(wall_now_ns());
}

void JournalSink::retain(int64_t now_ns)
{
	std::lock_guard lock(retain_mu_); // the writer and the compressor both call it
	auto segs = list(cfg_.dir, is_closed_segment);
	uint64_t total = 0;
	std::vector<std::pair<std::string, uint64_t>> sized;
	for (const auto &p : segs) {
		struct stat st;
		uint64_t sz = stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
		if (stat((p + ".idx").c_str(), &st) == 0) // its index counts toward max_size
			sz += static_cast<uint64_t>(st.st_size);
		total += sz;
		sized.emplace_back(p, sz);
	}
	int64_t max_age = to_ns(cfg_.max_age);
	for (const auto &[p, sz] : sized) {
		struct stat st;
		bool too_old =
		    max_age > 0 && stat(p.c_str(), &st) == 0 &&
		    now_ns - static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL > max_age;
		if (!too_old && (cfg_.max_bytes == 0 || total <= cfg_.max_bytes))
			break; // oldest first: the rest are newer and fit
		unlink(p.c_str());
		unlink((p + ".idx").c_str());
		total -= sz;
	}
}

size_t SegmentLines::members_line_size(uint32_t id, std::string_view members)
{
	char digits[16];
	auto r = std::to_chars(digits, digits + sizeof(digits), id);
	return kMembersType.size() + static_cast<size_t>(r.ptr - digits) + members.size() + 2;
}

void SegmentLines::append_members_line(std::string &out, uint32_t id, std::string_view members)
{
	out.append(kMembersType);
	append_number(out, id);
	out.push_back(',');
	out.append(members);
	out.append("}\n");
}

SegmentLines::Kind SegmentLines::take(std::string_view line, std::string_view &record)
{
	record = line;
	// {"type":"<name>","journal_members":<N>, ...
	constexpr std::string_view kType = "{\"type\":\"", kRef = "\",\"journal_members\":";
	if (!line.starts_with(kType))
		return Kind::record;
	size_t end = line.find('"', kType.size());
	if (end == std::string_view::npos ||
	    !is_name(line.substr(kType.size(), end - kType.size())) ||
	    line.substr(end, kRef.size()) != kRef)
		return Kind::record;
	size_t at = end + kRef.size();
	uint32_t id = 0;
	auto [ptr, ec] = std::from_chars(line.data() + at, line.data() + line.size(), id);
	size_t after = static_cast<size_t>(ptr - line.data());
	if (ec != std::errc() || after >= line.size() || line[after] != ',')
		return Kind::record;
	if (line.starts_with(kMembersType)) {
		// Numbered in order from 0; bounded.
		if (id != members_.size() || !line.ends_with('}') ||
		    bytes_ + line.size() > kMaxMembersBytes)
			return Kind::unresolved;
		members_.emplace_back(line.substr(after + 1, line.size() - after - 2));
		bytes_ += line.size();
		return Kind::members;
	}
	if (id >= members_.size())
		return Kind::unresolved;
	whole_.assign(line.substr(0, end + 2)); // {"type":"<name>",
	whole_.append(members_[id]);
	whole_.append(line.substr(after));
	record = whole_;
	return Kind::record;
}

std::vector<std::string> journal_segments(const std::string &dir)
{
	auto out = list(dir, is_closed_segment);
	for (auto &p : list(dir, is_open_segment))
		out.push_back(std::move(p));
	// Names carry the start time: sort the two kinds together.
	std::sort(out.begin(), out.end());
	return out;
}

namespace
{

constexpr size_t kMaxLine = 16u << 20; // no record of ours comes near

// Calls f for each whole line of a segment (plain or gzip: gzopen reads
// plain files as they are). A cut last line, and a longer one than
// kMaxLine, are counted bad. Returns false if f does.
bool read_segment_lines(const std::string &path, const std::function<bool(std::string_view)> &f,
                        JournalReadStats &st)
{
	st.segments++;
	gzFile gz = gzopen(path.c_str(), "rb");
	if (!gz) {
		st.truncated_segments++;
		return true;
	}
	gzbuffer(gz, 128 * 1024);
	SegmentLines records;
	std::string line;
	bool too_long = false;
	char buf[64 * 1024];
	for (bool more = true; more;) {
		int n = gzread(gz, buf, sizeof(buf));
		if (n <= 0) {
			int err = Z_OK;
			gzerror(gz, &err);
			if (n < 0 || (err != Z_OK && err != Z_STREAM_END))
				st.truncated_segments++;
			more = false;
			n = 0;
		}
		size_t start = 0;
		for (const char *p = buf; (p = static_cast<const char *>(memchr(
		                               p, '\n', static_cast<size_t>(n - (p - buf)))));
		     p++) {
			size_t i = static_cast<size_t>(p - buf);
			std::string_view whole(buf + start, i - start);
			if (!line.empty() || too_long) {
				line.append(whole);
				whole = line;
			}
			start = i + 1;
			std::string_view record;
			if (too_long || whole.size() > kMaxLine) {
				st.bad_lines++;
			} else if (auto kind = records.take(whole, record);
			           kind == SegmentLines::Kind::unresolved) {
				st.bad_lines++;
			} else if (kind == SegmentLines::Kind::record && !f(record)) {
				gzclose(gz);
				return false;
			}
			line.clear();
			too_long = false;
		}
		if (!too_long)
			line.append(buf + start, static_cast<size_t>(n) - start);
		if (line.size() > kMaxLine) {
			too_long = true;
			line.clear();
		}
	}
	if (!line.empty() || too_long)
		st.bad_lines++; // a cut last line
	gzclose(gz);
	return true;
}

} // namespace

bool read_journal_segment_lines(const std::string &path,
                                const std::function<bool(std::string_view)> &f,
                                JournalReadStats *stats)
{
	JournalReadStats local;
	return read_segment_lines(path, f, stats ? *stats : local);
}

bool read_journal_segment(const std::string &path, const std::function<bool(nlohmann::json &&)> &f,
                          JournalReadStats *stats)
{
	JournalReadStats local;
	JournalReadStats &st = stats ? *stats : local;
	return read_segment_lines(
	    path,
	    [&](std::string_view line) {
		    auto j = nlohmann::json::parse(line, nullptr, false);
		    if (j.is_discarded() || !j.is_object()) {
			    st.bad_lines++;
			    return true;
		    }
		    st.records++;
		    return f(std::move(j));
	    },
	    st);
}

bool read_journal(const std::string &dir, const std::function<bool(nlohmann::json &&)> &f,
                  JournalReadStats *stats)
{
	for (const auto &path : journal_segments(dir))
		if (!read_journal_segment(path, f, stats))
			return false;
	return true;
}

namespace
{

using simdjson::dom::element;
using simdjson::dom::element_type;

// A pid as the index keeps it: a positive number that fits 32 bits.
void add_pid(element v, KeySet &pids)
{
	uint64_t u = 0;
	int64_t i = 0;
	if (v.type() == element_type::UINT64 && v.get_uint64().get(u) == simdjson::SUCCESS &&
	    u <= UINT32_MAX && u > 0)
		pids.add(std::to_string(u));
	else if (v.type() == element_type::INT64 && v.get_int64().get(i) == simdjson::SUCCESS &&
	         i > 0 && i <= UINT32_MAX)
		pids.add(std::to_string(i));
}

std::string_view str(element v)
{
	std::string_view s;
	return v.get_string().get(s) == simdjson::SUCCESS ? s : std::string_view{};
}

// Most lines repeat a name the segment already holds: look before
// allocating a node for it.
void add_name(SegmentIndex::Names &set, std::string_view name)
{
	if (name.empty())
		return;
	auto at = set.lower_bound(name);
	if (at == set.end() || *at != name)
		set.emplace_hint(at, name);
}

} // namespace

// Every field src/tools/trace.cpp reads a process, credential or link from:
// the record's own (time, type, exec_id, child_exec_id, mcp_server, identity,
// pid, child_pid), identity.id, process.{exec_id, mcp_server, pid},
// secret.{fingerprint, inventory_id, holder_exec_id}, and ancestry[].{exec_id,
// pid}. A repeated key counts every time (the last time for time, type and
// exec_id). One simdjson pass: the writer indexes every line it writes.
bool SegmentIndex::add_line(std::string_view text)
{
	simdjson::dom::parser *parser = thread_json_parser();
	simdjson::dom::object root;
	if (!parser || text.empty() || text.front() != '{' ||
	    parser->parse(text.data(), text.size()).get_object().get(root) != simdjson::SUCCESS)
		return false;
	records++;
	std::string_view time, type, exec_id;
	for (auto [key, v] : root) {
		switch (v.type()) {
		case element_type::STRING: {
			std::string_view s = str(v);
			if (s.empty())
				break;
			if (key == "time")
				time = s;
			else if (key == "type")
				type = s;
			else if (key == "exec_id")
				exec_id = s;
			else if (key == "child_exec_id")
				exec_ids.add(s);
			else if (key == "mcp_server")
				add_name(mcp_servers, s);
			else if (key == "identity")
				add_name(identities, s);
			break;
		}
		case element_type::INT64:
		case element_type::UINT64:
			if (key == "pid" || key == "child_pid")
				add_pid(v, pids);
			break;
		case element_type::OBJECT: {
			simdjson::dom::object o = v.get_object().value_unsafe();
			for (auto [k, m] : o) {
				if (key == "identity" && k == "id")
					add_name(identities, str(m));
				else if (key == "process" && k == "exec_id" && !str(m).empty())
					exec_ids.add(str(m));
				else if (key == "process" && k == "mcp_server")
					add_name(mcp_servers, str(m));
				else if (key == "process" && k == "pid")
					add_pid(m, pids);
				else if (key == "secret" && k == "fingerprint")
					add_name(fingerprints, str(m));
				else if (key == "secret" && k == "inventory_id")
					add_name(inventory_ids, str(m));
				else if (key == "secret" && k == "holder_exec_id" &&
				         !str(m).empty())
					exec_ids.add(str(m));
			}
			break;
		}
		case element_type::ARRAY: {
			if (key != "ancestry")
				break;
			simdjson::dom::array list = v.get_array().value_unsafe();
			for (element a : list) {
				simdjson::dom::object o;
				if (a.get_object().get(o) != simdjson::SUCCESS)
					continue;
				for (auto [k, m] : o) {
					if (k == "exec_id" && !str(m).empty())
						parents.add(str(m));
					else if (k == "pid")
						add_pid(m, pids);
				}
			}
			break;
		}
		default: break;
		}
	}
	int64_t t = 0;
	if (time.empty() || !parse_rfc3339(time, &t)) {
		untimed++;
	} else {
		first = first && first < t ? first : t;
		last = std::max(last, t);
	}
	if (!exec_id.empty())
		(type == "fork" ? parents : exec_ids).add(exec_id);
	return true;
}

void SegmentIndex::add_time(int64_t time_ns)
{
	records++;
	first = first && first < time_ns ? first : time_ns; // an observation has a time
	last = std::max(last, time_ns);
}

void SegmentIndex::add_keys(std::string_view type, int64_t time_ns, const IndexKeys &keys)
{
	add_time(time_ns);
	if (!keys.exec_id.empty())
		(type == "fork" ? parents : exec_ids).add(keys.exec_id);
	if (keys.pid) {
		char buf[16];
		auto r = std::to_chars(buf, buf + sizeof(buf), keys.pid);
		pids.add(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
	}
	add_name(mcp_servers, keys.mcp_server);
	add_name(identities, keys.identity);
}

namespace
{

// FNV-1a, then splitmix64's finalizer (FNV alone leaves names that differ
// in a digit close): the same in every build, as the file outlives the
// binary.
uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

// A lookup per process of the tree (hundreds) on every segment: each must
// be rarely wrong, so 24-48 bits an element and 12 hashes (~1e-5 each).
constexpr int kBloomHashes = 12;

// The kBloomHashes bit positions of a key hashed to h in a filter of `bits` (a power of 2),
// until f returns false. Each position is hashed on its own: positions
// derived from two hashes (h1 + i * h2) are the same for every key that
// agrees on both modulo `bits`, which in the small filters of a segment
// with few elements made false positives ~1e4 times likelier than the
// filter's fill allows.
template <typename F> bool each_bit(uint64_t h, uint64_t bits, F f)
{
	for (uint64_t i = 1; i <= kBloomHashes; i++)
		if (!f(mix(h + i * 0x9e3779b97f4a7c15ULL) & (bits - 1)))
			return false;
	return true;
}

constexpr size_t kBloomBitsPerElement = 24;

} // namespace

uint64_t KeySet::hash(std::string_view key)
{
	return fnv1a(key);
}

bool KeySet::may_have_hash(uint64_t h) const
{
	if (!words_)
		return hashes_.count(h) > 0;
	return each_bit(h, nwords_ * 64, [&](uint64_t bit) {
		uint64_t w;
		std::memcpy(&w, words_ + bit / 64 * 8, 8);
		return (le64toh(w) & (1ULL << (bit % 64))) != 0;
	});
}

std::string KeySet::bloom() const
{
	if (words_)
		return std::string(words_, nwords_ * 8);
	size_t bits = 64;
	while (bits < hashes_.size() * kBloomBitsPerElement)
		bits *= 2;
	std::vector<uint64_t> words(bits / 64);
	for (uint64_t h : hashes_)
		each_bit(h, bits, [&](uint64_t bit) {
			words[bit / 64] |= 1ULL << (bit % 64);
			return true;
		});
	for (auto &w : words)
		w = htole64(w);
	return std::string(reinterpret_cast<const char *>(words.data()), words.size() * 8);
}

std::optional<KeySet> KeySet::from_bloom(std::string_view file, size_t at, size_t len,
                                         std::shared_ptr<const void> owner)
{
	size_t words = len / 8;
	if (at > file.size() || len > file.size() - at || len % 8 || words == 0 ||
	    (words & (words - 1)))
		return std::nullopt; // a power of two words, as bloom() makes
	KeySet k;
	k.words_ = file.data() + at;
	k.nwords_ = words;
	k.owner_ = std::move(owner);
	return k;
}

namespace
{

// 2: JSON; 3: CBOR with copied filters; 4: positions from two hashes. An
// index of another version is never trusted (its segment is read whole).
constexpr int kIndexVersion = 5;
constexpr size_t kMaxIndexHeader = 64u << 20;

} // namespace

std::string SegmentIndex::encode() const
{
	using nlohmann::json;
	std::string blooms;
	json at = json::object();
	for (auto [k, set] : {std::pair{"exec_ids", &exec_ids}, std::pair{"parents", &parents},
	                      std::pair{"pids", &pids}}) {
		std::string b = set->bloom();
		at[k] = {blooms.size(), b.size()};
		blooms += b;
	}
	std::vector<uint8_t> head = json::to_cbor(json{{"version", kIndexVersion},
	                                               {"size", size},
	                                               {"records", records},
	                                               {"untimed", untimed},
	                                               {"first", first},
	                                               {"last", last},
	                                               {"fingerprints", fingerprints},
	                                               {"inventory_ids", inventory_ids},
	                                               {"identities", identities},
	                                               {"mcp_servers", mcp_servers},
	                                               {"filters", at}});
	uint32_t n = htole32(static_cast<uint32_t>(head.size()));
	std::string out(reinterpret_cast<const char *>(&n), 4);
	out.append(head.begin(), head.end());
	return out + blooms;
}

namespace
{

// Reads an index header's CBOR straight into a SegmentIndex: a trace reads
// thousands of them, and a document per header was most of that time.
// Anything but the shape encode() writes fails the parse.
class HeaderSax : public nlohmann::json_sax<nlohmann::json>
{
      public:
	explicit HeaderSax(SegmentIndex &ix) : ix_(ix) {}
	int version = 0;
	std::map<std::string, std::vector<uint64_t>, std::less<>> filters; // name -> at, len

	bool null() override { return false; }
	bool boolean(bool) override { return false; }
	bool number_integer(number_integer_t v) override { return number(v, v < 0); }
	bool number_unsigned(number_unsigned_t v) override
	{
		return number(static_cast<int64_t>(v), false);
	}
	bool number_float(number_float_t, const string_t &) override { return false; }
	bool binary(binary_t &) override { return false; }
	bool string(string_t &v) override
	{
		if (depth_ != 2 || !in_array_)
			return false;
		SegmentIndex::Names *set = key_ == "fingerprints"    ? &ix_.fingerprints
		                           : key_ == "inventory_ids" ? &ix_.inventory_ids
		                           : key_ == "identities"    ? &ix_.identities
		                           : key_ == "mcp_servers"   ? &ix_.mcp_servers
		                                                     : nullptr;
		if (!set)
			return false;
		set->insert(set->end(), std::move(v));
		return true;
	}
	bool start_object(std::size_t) override
	{
		// The header, and its "filters".
		return (depth_ == 0 || (depth_ == 1 && key_ == "filters")) && ++depth_;
	}
	bool end_object() override { return depth_-- > 0; }
	bool start_array(std::size_t) override
	{
		if (depth_ == 1)
			in_array_ = true; // a set of strings
		else if (depth_ == 2 && key_ == "filters")
			filter_ = &filters[sub_];
		else
			return false;
		depth_++;
		return true;
	}
	bool end_array() override
	{
		depth_--;
		in_array_ = false;
		filter_ = nullptr;
		return true;
	}
	bool key(string_t &k) override
	{
		(depth_ == 1 ? key_ : sub_) = k;
		return depth_ == 1 || depth_ == 2;
	}
	bool parse_error(std::size_t, const std::string &,
	                 const nlohmann::detail::exception &) override
	{
		return false;
	}

      private:
	bool number(int64_t v, bool negative)
	{
		if (filter_ && depth_ == 3) {
			if (negative || filter_->size() >= 2)
				return false;
			filter_->push_back(static_cast<uint64_t>(v));
			return true;
		}
		if (depth_ != 1)
			return false;
		auto u = static_cast<uint64_t>(v);
		if (key_ == "version")
			version = static_cast<int>(v);
		else if (key_ == "size" && !negative)
			ix_.size = u;
		else if (key_ == "records" && !negative)
			ix_.records = u;
		else if (key_ == "untimed" && !negative)
			ix_.untimed = u;
		else if (key_ == "first")
			ix_.first = v;
		else if (key_ == "last")
			ix_.last = v;
		return true; // a field a later version added
	}

	SegmentIndex &ix_;
	int depth_ = 0;
	bool in_array_ = false;
	std::string key_, sub_;
	std::vector<uint64_t> *filter_ = nullptr;
};

} // namespace

std::optional<SegmentIndex> SegmentIndex::decode(std::string_view file,
                                                 std::shared_ptr<const void> owner)
{
	uint32_t n = 0;
	if (file.size() < 4)
		return std::nullopt;
	std::memcpy(&n, file.data(), 4);
	n = le32toh(n);
	if (n > kMaxIndexHeader || n > file.size() - 4)
		return std::nullopt;
	SegmentIndex ix;
	HeaderSax sax(ix);
	// Not ours, cut, or another version: the segment is read whole.
	if (!nlohmann::json::sax_parse(file.begin() + 4, file.begin() + 4 + n, &sax,
	                               nlohmann::json::input_format_t::cbor) ||
	    sax.version != kIndexVersion)
		return std::nullopt;
	for (auto [k, set] : {std::pair{"exec_ids", &ix.exec_ids},
	                      std::pair{"parents", &ix.parents}, std::pair{"pids", &ix.pids}}) {
		auto at = sax.filters.find(std::string_view(k));
		if (at == sax.filters.end() || at->second.size() != 2 ||
		    at->second[0] > file.size())
			return std::nullopt;
		auto ks = KeySet::from_bloom(file, 4 + n + at->second[0], at->second[1], owner);
		if (!ks)
			return std::nullopt;
		*set = std::move(*ks);
	}
	return ix;
}

SegmentIndex index_segment(const std::string &path)
{
	SegmentIndex ix;
	JournalReadStats st;
	read_segment_lines(
	    path,
	    [&](std::string_view line) {
		    ix.add_line(line);
		    return true;
	    },
	    st);
	return ix;
}

bool write_segment_index(const std::string &segment, SegmentIndex ix)
{
	struct stat st;
	if (stat(segment.c_str(), &st) != 0)
		return false;
	ix.size = static_cast<uint64_t>(st.st_size);
	std::string bytes = ix.encode();
	std::string idx = segment + ".idx", tmp = idx + ".tmp";
	unlink(tmp.c_str());
	int fd = open_private_file(tmp, false);
	if (fd < 0)
		return false;
	bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
	ok = ::close(fd) == 0 && ok;
	if (!ok || rename(tmp.c_str(), idx.c_str()) != 0) {
		unlink(tmp.c_str());
		return false;
	}
	return true;
}

std::optional<SegmentIndex> read_segment_index(const std::string &segment)
{
	struct stat st, ist;
	if (stat(segment.c_str(), &st) != 0)
		return std::nullopt;
	int fd = open((segment + ".idx").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return std::nullopt;
	// Mapped, not read: a trace reads thousands of indexes and looks at a
	// few words of each filter. An index is a fraction of its segment: a
	// larger one is not ours. (Index files are replaced by rename, never
	// truncated in place, so a mapping never loses its bytes.)
	void *map = MAP_FAILED;
	size_t size = 0;
	if (fstat(fd, &ist) == 0 && S_ISREG(ist.st_mode) && ist.st_size > 0 &&
	    ist.st_size <= 4 * st.st_size + (1 << 20)) {
		size = static_cast<size_t>(ist.st_size);
		map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
	}
	::close(fd);
	if (map == MAP_FAILED)
		return std::nullopt;
	std::shared_ptr<const void> owner(
	    map, [size](const void *p) { munmap(const_cast<void *>(p), size); });
	auto ix = SegmentIndex::decode({static_cast<const char *>(map), size}, owner);
	if (!ix || ix->size != static_cast<uint64_t>(st.st_size))
		return std::nullopt;
	return ix;
}

} // namespace keytrail
