#include "keytrail/output/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/files.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

constexpr const char *kPrefix = "journal-";

bool is_open_segment(const std::string &n)
{
	return n.starts_with(kPrefix) && n.ends_with(".jsonl");
}

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
		compress(p);
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
		std::string path = std::move(closed_.front());
		closed_.pop_front();
		lock.unlock();
		try {
			compress(path);
			retain(wall_now_ns());
		} catch (const std::exception &e) {
			// Never the agent's end: the plain segment stays readable.
			spdlog::error("journal: cannot compress or index {}: {}", path, e.what());
		}
		lock.lock();
	}
}

void JournalSink::compress(const std::string &path)
{
	// The index is read off the plain file (the page cache has it), then
	// written beside the .gz once that exists: a reader never finds an index
	// without its segment, and one without an index reads it whole.
	SegmentIndex ix = index_segment(path);
	if (gzip_file(path, path + ".gz")) // on failure the plain segment stays readable
		write_segment_index(path + ".gz", std::move(ix));
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
	{
		std::lock_guard lock(mu_);
		closed_.push_back(path_);
	}
	wake_.notify_one();
	return true;
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
	buf_.append(line);
	buf_.push_back('\n');
	return true;
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

std::vector<std::string> journal_segments(const std::string &dir)
{
	auto out = list(dir, is_closed_segment);
	for (auto &p : list(dir, is_open_segment))
		out.push_back(std::move(p));
	// Names carry the start time: sort the two kinds together.
	std::sort(out.begin(), out.end());
	return out;
}

bool read_journal_segment(const std::string &path, const std::function<bool(nlohmann::json &&)> &f,
                          JournalReadStats *stats)
{
	JournalReadStats local;
	JournalReadStats &st = stats ? *stats : local;
	st.segments++;
	// gzopen reads plain files as they are, too.
	gzFile gz = gzopen(path.c_str(), "rb");
	if (!gz) {
		st.truncated_segments++;
		return true;
	}
	gzbuffer(gz, 128 * 1024);
	std::string line;
	char buf[64 * 1024];
	bool more = true;
	while (more) {
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
		for (int i = 0; i < n; i++) {
			if (buf[i] != '\n')
				continue;
			line.append(buf + start, i - start);
			start = i + 1;
			auto j = nlohmann::json::parse(line, nullptr, false);
			line.clear();
			if (j.is_discarded() || !j.is_object()) {
				st.bad_lines++;
				continue;
			}
			st.records++;
			if (!f(std::move(j))) {
				gzclose(gz);
				return false;
			}
		}
		line.append(buf + start, n - start);
	}
	if (!line.empty())
		st.bad_lines++; // a cut last line
	gzclose(gz);
	return true;
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

std::string jstr(const nlohmann::json &j, const char *k)
{
	auto it = j.find(k);
	return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

void add_pid(std::set<uint32_t> &pids, const nlohmann::json &j, const char *k)
{
	auto it = j.find(k);
	if (it != j.end() && it->is_number_integer() && it->get<int64_t>() > 0 &&
	    it->get<int64_t>() <= UINT32_MAX)
		pids.insert(static_cast<uint32_t>(it->get<int64_t>()));
}

void add_str(std::set<std::string> &set, const nlohmann::json &j, const char *k)
{
	std::string v = jstr(j, k);
	if (!v.empty())
		set.insert(std::move(v));
}

} // namespace

// Every field src/tools/trace.cpp reads a process, credential or link from.
void SegmentIndex::add(const nlohmann::json &r)
{
	records++;
	int64_t t = 0;
	std::string ts = jstr(r, "time");
	if (ts.empty() || !parse_rfc3339(ts, &t)) {
		untimed++;
	} else {
		first = first && first < t ? first : t;
		last = std::max(last, t);
	}
	bool fork = jstr(r, "type") == "fork";
	add_str(fork ? parents : exec_ids, r, "exec_id");
	add_str(exec_ids, r, "child_exec_id");
	add_pid(pids, r, "pid");
	add_pid(pids, r, "child_pid");
	add_str(mcp_servers, r, "mcp_server");
	if (auto it = r.find("identity"); it != r.end()) {
		if (it->is_string())
			add_str(identities, r, "identity");
		else if (it->is_object())
			add_str(identities, *it, "id");
	}
	if (auto a = r.find("ancestry"); a != r.end() && a->is_array())
		for (const auto &x : *a)
			if (x.is_object()) {
				add_str(parents, x, "exec_id");
				add_pid(pids, x, "pid");
			}
	if (auto p = r.find("process"); p != r.end() && p->is_object()) {
		add_str(exec_ids, *p, "exec_id");
		add_pid(pids, *p, "pid");
		add_str(mcp_servers, *p, "mcp_server");
	}
	if (auto s = r.find("secret"); s != r.end() && s->is_object()) {
		add_str(fingerprints, *s, "fingerprint");
		add_str(inventory_ids, *s, "inventory_id");
		add_str(exec_ids, *s, "holder_exec_id");
	}
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

// The kBloomHashes bit positions of v in a filter of `bits` (a power of 2),
// until f returns false.
template <typename F> bool each_bit(std::string_view v, uint64_t bits, F f)
{
	uint64_t h = fnv1a(v), h1 = mix(h), h2 = mix(h ^ 0x9e3779b97f4a7c15ULL) | 1;
	for (int i = 0; i < kBloomHashes; i++)
		if (!f((h1 + static_cast<uint64_t>(i) * h2) & (bits - 1)))
			return false;
	return true;
}

constexpr size_t kBloomBitsPerElement = 24;

} // namespace

Bloom Bloom::sized(size_t n)
{
	size_t bits = 64;
	while (bits < n * kBloomBitsPerElement)
		bits *= 2;
	Bloom b;
	b.words_.assign(bits / 64, 0);
	return b;
}

void Bloom::add(std::string_view v)
{
	each_bit(v, words_.size() * 64, [&](uint64_t bit) {
		words_[bit / 64] |= 1ULL << (bit % 64);
		return true;
	});
}

bool Bloom::may_have(std::string_view v) const
{
	return !words_.empty() && each_bit(v, words_.size() * 64, [&](uint64_t bit) {
		return (words_[bit / 64] & (1ULL << (bit % 64))) != 0;
	});
}

std::string Bloom::hex() const
{
	static const char *digits = "0123456789abcdef";
	std::string o;
	o.reserve(words_.size() * 16);
	for (uint64_t w : words_)
		for (int shift = 60; shift >= 0; shift -= 4)
			o.push_back(digits[(w >> shift) & 15]);
	return o;
}

std::optional<Bloom> Bloom::from_hex(const std::string &h)
{
	size_t words = h.size() / 16;
	if (h.size() % 16 || words == 0 || (words & (words - 1)))
		return std::nullopt; // a power of two words, as sized() makes
	Bloom b;
	b.words_.assign(words, 0);
	for (size_t i = 0; i < h.size(); i++) {
		char c = h[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return std::nullopt;
		b.words_[i / 16] = b.words_[i / 16] << 4 | static_cast<uint64_t>(d);
	}
	return b;
}

namespace
{

template <class Set> Bloom bloom_of(const Set &set)
{
	Bloom b = Bloom::sized(set.size());
	for (const auto &v : set) {
		if constexpr (std::is_same_v<typename Set::value_type, std::string>)
			b.add(v);
		else
			b.add(std::to_string(v));
	}
	return b;
}

} // namespace

bool SegmentIndex::may_name_exec_id(const std::string &id) const
{
	return exec_bloom_ ? exec_bloom_->may_have(id) : exec_ids.count(id) > 0;
}

bool SegmentIndex::may_name_parent(const std::string &id) const
{
	return parent_bloom_ ? parent_bloom_->may_have(id) : parents.count(id) > 0;
}

bool SegmentIndex::may_name_pid(uint32_t pid) const
{
	return pid_bloom_ ? pid_bloom_->may_have(std::to_string(pid)) : pids.count(pid) > 0;
}

nlohmann::json SegmentIndex::to_json() const
{
	return {{"version", 2},
	        {"size", size},
	        {"records", records},
	        {"untimed", untimed},
	        {"first", first ? rfc3339(first) : ""},
	        {"last", last ? rfc3339(last) : ""},
	        {"fingerprints", fingerprints},
	        {"inventory_ids", inventory_ids},
	        {"identities", identities},
	        {"mcp_servers", mcp_servers},
	        {"exec_ids_bloom", bloom_of(exec_ids).hex()},
	        {"parents_bloom", bloom_of(parents).hex()},
	        {"pids_bloom", bloom_of(pids).hex()}};
}

std::optional<SegmentIndex> SegmentIndex::from_json(const nlohmann::json &j)
{
	try {
		if (!j.is_object() || j.at("version") != 2)
			return std::nullopt;
		SegmentIndex ix;
		ix.size = j.at("size").get<uint64_t>();
		ix.records = j.at("records").get<uint64_t>();
		ix.untimed = j.at("untimed").get<uint64_t>();
		for (auto [k, t] : {std::pair{"first", &ix.first}, std::pair{"last", &ix.last}}) {
			std::string s = j.at(k).get<std::string>();
			if (!s.empty() && !parse_rfc3339(s, t))
				return std::nullopt;
		}
		ix.fingerprints = j.at("fingerprints").get<std::set<std::string>>();
		ix.inventory_ids = j.at("inventory_ids").get<std::set<std::string>>();
		ix.identities = j.at("identities").get<std::set<std::string>>();
		ix.mcp_servers = j.at("mcp_servers").get<std::set<std::string>>();
		ix.exec_bloom_ = Bloom::from_hex(j.at("exec_ids_bloom").get<std::string>());
		ix.parent_bloom_ = Bloom::from_hex(j.at("parents_bloom").get<std::string>());
		ix.pid_bloom_ = Bloom::from_hex(j.at("pids_bloom").get<std::string>());
		if (!ix.exec_bloom_ || !ix.parent_bloom_ || !ix.pid_bloom_)
			return std::nullopt;
		return ix;
	} catch (const nlohmann::json::exception &) {
		return std::nullopt; // not ours, or cut: the segment is read whole
	}
}

SegmentIndex index_segment(const std::string &path)
{
	SegmentIndex ix;
	read_journal_segment(path, [&](nlohmann::json &&r) {
		ix.add(r);
		return true;
	});
	return ix;
}

bool write_segment_index(const std::string &segment, SegmentIndex ix)
{
	struct stat st;
	if (stat(segment.c_str(), &st) != 0)
		return false;
	ix.size = static_cast<uint64_t>(st.st_size);
	std::string text = ix.to_json().dump() + "\n";
	std::string idx = segment + ".idx", tmp = idx + ".tmp";
	unlink(tmp.c_str());
	int fd = open_private_file(tmp, false);
	if (fd < 0)
		return false;
	bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
	ok = ::close(fd) == 0 && ok;
	if (!ok || rename(tmp.c_str(), idx.c_str()) != 0) {
		unlink(tmp.c_str());
		return false;
	}
	return true;
}

std::optional<SegmentIndex> read_segment_index(const std::string &segment)
{
	struct stat st;
	if (stat(segment.c_str(), &st) != 0)
		return std::nullopt;
	FILE *f = std::fopen((segment + ".idx").c_str(), "re");
	if (!f)
		return std::nullopt;
	auto j = nlohmann::json::parse(f, nullptr, false);
	std::fclose(f);
	auto ix = SegmentIndex::from_json(j);
	if (!ix || ix->size != static_cast<uint64_t>(st.st_size))
		return std::nullopt;
	return ix;
}

} // namespace keytrail
