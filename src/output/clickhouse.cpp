#include "keytrail/output/clickhouse.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <mutex>

#include "keytrail/output/journal.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/files.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

constexpr size_t kMaxResponse = 64u << 20;
constexpr size_t kMaxPasswordFile = 4096;
constexpr size_t kSpareBody = 32u << 20;    // a larger batch buffer is freed
constexpr size_t kIdleSpareBody = 1u << 20; // kept after a batch that was not full

struct Response {
	std::string *out;
	bool too_big = false;
};

size_t on_body(char *data, size_t size, size_t n, void *user)
{
	auto *r = static_cast<Response *>(user);
	if (r->out->size() + size * n > kMaxResponse) {
		r->too_big = true;
		return 0; // ends the transfer
	}
	r->out->append(data, size * n);
	return size * n;
}

SecretBytes read_password(const std::string &path)
{
	SecretBytes pw;
	if (path.empty())
		return pw;
	struct stat st;
	int fd = open_regular_file(path, &st);
	if (fd < 0)
		throw sys_error("read clickhouse password_file " + path, errno);
	if (st.st_mode & 007) {
		::close(fd);
		throw Error("clickhouse password_file " + path +
		            " is readable by others (chmod o-rwx it)");
	}
	std::string &s = pw.mutable_str();
	s.resize(kMaxPasswordFile + 1);
	ssize_t n = ::read(fd, s.data(), s.size());
	::close(fd);
	if (n < 0)
		throw sys_error("read clickhouse password_file " + path, errno);
	if (static_cast<size_t>(n) > kMaxPasswordFile)
		throw Error("clickhouse password_file " + path + " is larger than 4 KiB");
	s.resize(static_cast<size_t>(n));
	while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
		s.pop_back(); // the newline an editor adds is not part of it
	return pw;
}

void curl_init_once()
{
	static std::once_flag once;
	std::call_once(once, [] {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			throw Error("cannot initialise libcurl");
	});
}

std::string first_line(const std::string &s, size_t max = 300)
{
	std::string l = s.substr(0, std::min(s.find('\n'), max));
	return sanitize_utf8(l);
}

std::string segment_base(const std::string &path)
{
	std::string b(basename_of(path));
	if (b.ends_with(".gz"))
		b.resize(b.size() - 3);
	return b;
}

// Segments by base name, in order; the plain file when both exist (the
// compressor renamed the .gz into place and is about to unlink it).
std::map<std::string, std::string> segments_by_base(const std::string &dir)
{
	std::map<std::string, std::string> out;
	for (auto &p : journal_segments(dir)) {
		std::string b = segment_base(p);
		auto it = out.find(b);
		if (it == out.end() || p.ends_with(".jsonl"))
			out[b] = p;
	}
	return out;
}

} // namespace

// ---- the HTTP client ----

ClickHouseClient::ClickHouseClient(ClickHouseTarget t)
    : t_(std::move(t)), password_(read_password(t_.password_file))
{
	while (t_.url.ends_with("/"))
		t_.url.pop_back();
	curl_init_once();
	curl_ = curl_easy_init();
	if (!curl_)
		throw Error("cannot initialise libcurl");
}

ClickHouseClient::~ClickHouseClient()
{
	if (curl_)
		curl_easy_cleanup(static_cast<CURL *>(curl_));
}

bool ClickHouseClient::post(const std::string &params, const std::string &body, std::string *out,
                            std::string *err)
{
	CURL *c = static_cast<CURL *>(curl_);
	curl_easy_reset(c); // options only: the connection stays alive
	std::string url = t_.url + "/?" + params;
	char errbuf[CURL_ERROR_SIZE] = {0};
	out->clear();
	Response resp{out};
	curl_easy_setopt(c, CURLOPT_URL, url.c_str());
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
	curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
	curl_easy_setopt(c, CURLOPT_USERNAME, t_.user.c_str());
	curl_easy_setopt(c, CURLOPT_PASSWORD, password_.mutable_str().c_str());
	if (!t_.tls_ca.empty())
		curl_easy_setopt(c, CURLOPT_CAINFO, t_.tls_ca.c_str());
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	CURLcode rc = curl_easy_perform(c);
	if (resp.too_big) {
		*err = "the response is larger than 64 MiB";
		return false;
	}
	if (rc != CURLE_OK) {
		*err = sanitize_utf8(errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return false;
	}
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		*err = "HTTP " + std::to_string(code) + ": " + first_line(*out);
		return false;
	}
	return true;
}

bool ClickHouseClient::query(const std::string &sql, std::string *out, std::string *err)
{
	return post("", sql, out, err);
}

bool ClickHouseClient::insert(const std::string &table, const std::string &rows, std::string *err,
                              const std::string &format, const std::string &columns)
{
	std::string sql = "INSERT INTO " + table + (columns.empty() ? "" : " (" + columns + ")") +
	                  " FORMAT " + format;
	char *q =
	    curl_easy_escape(static_cast<CURL *>(curl_), sql.c_str(), static_cast<int>(sql.size()));
	if (!q)
		return (*err = "out of memory", false);
	// A Distributed table acknowledges once every shard has the rows.
	std::string params = std::string("query=") + q + "&insert_distributed_sync=1";
	curl_free(q);
	std::string out;
	return post(params, rows, &out, err);
}

std::string ClickHouseClient::run(const std::string &sql, const std::string &what)
{
	std::string out, err;
	if (!query(sql, &out, &err))
		throw Error("clickhouse " + t_.url + ": " + what + ": " + err);
	return out;
}

// ---- rows ----

std::string journal_event_id(const std::string &host, const std::string &segment_base,
                             uint64_t line)
{
	std::string stamp = segment_base;
	if (stamp.starts_with("journal-"))
		stamp.erase(0, 8);
	if (stamp.ends_with(".jsonl"))
		stamp.resize(stamp.size() - 6);
	return host + ":" + stamp + ":" + std::to_string(line);
}

// ---- the journal tail ----

JournalTail::JournalTail(std::string dir, std::string segment, uint64_t line, bool complete)
    : dir_(std::move(dir)), seg_(std::move(segment)), skip_(complete ? 0 : line),
      opened_once_(complete)
{
}

JournalTail::~JournalTail()
{
	close_current();
}

void JournalTail::close_current()
{
	if (fd_ >= 0)
		::close(fd_);
	if (gz_)
		gzclose(static_cast<gzFile>(gz_));
	fd_ = -1;
	gz_ = nullptr;
	buf_.clear();
	records_ = SegmentLines();
}

bool JournalTail::open_next()
{
	auto segs = segments_by_base(dir_);
	std::string path;
	if (opened_once_ || seg_.empty()) {
		auto it = segs.upper_bound(seg_);
		if (it == segs.end())
			return false;
		seg_ = it->first;
		path = it->second;
		skip_ = 0;
	} else if (auto it = segs.find(seg_); it != segs.end()) {
		path = it->second; // the cursor's segment: skip what was shipped
	} else {
		auto next = segs.upper_bound(seg_);
		if (next == segs.end())
			return false;
		// Retention removed the cursor's segment before it was all shipped.
		lost_++;
		spdlog::warn("clickhouse: journal segment {} was removed before it was shipped",
		             seg_);
		seg_ = next->first;
		path = next->second;
		skip_ = 0;
	}
	line_ = 0;
	if (path.ends_with(".gz")) {
		gzFile gz = gzopen(path.c_str(), "rb");
		if (!gz)
			return false;
		gzbuffer(gz, 128 * 1024);
		gz_ = gz;
	} else {
		fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd_ < 0)
			return false;
	}
	opened_once_ = true;
	return true;
}

bool JournalTail::read_more()
{
	char chunk[64 * 1024];
	long n;
	if (gz_) {
		n = gzread(static_cast<gzFile>(gz_), chunk, sizeof(chunk));
	} else {
		do
			n = ::read(fd_, chunk, sizeof(chunk));
		while (n < 0 && errno == EINTR);
	}
	if (n <= 0)
		return false;
	buf_.append(chunk, static_cast<size_t>(n));
	return true;
}

size_t JournalTail::read(size_t max, std::vector<Line> &out)
{
	size_t n = 0;
	while (n < max) {
		if (fd_ < 0 && !gz_ && !open_next())
			return n;
		size_t start = 0, nl;
		while (n < max && (nl = buf_.find('\n', start)) != std::string::npos) {
			// Line numbers count every line of the file (event ids name
			// them); members lines are read even where skipped, never sent.
			uint64_t no = line_++;
			std::string_view record;
			auto kind =
			    records_.take(std::string_view(buf_).substr(start, nl - start), record);
			if (skip_ > 0) {
				skip_--;
			} else if (kind == SegmentLines::Kind::record) {
				out.push_back({seg_, no, std::string(record)});
				n++;
			} else if (kind == SegmentLines::Kind::unresolved) {
				cut_++;
			}
			start = nl + 1;
		}
		buf_.erase(0, start);
		if (n >= max)
			return n;
		if (read_more())
			continue;
		// No more bytes now. The segment is done once a newer one exists;
		// until then the agent may still append to it.
		auto segs = segments_by_base(dir_);
		if (segs.upper_bound(seg_) == segs.end())
			return n;
		if (read_more()) // written before the newer one was created
			continue;
		if (!buf_.empty())
			cut_++; // a crash cut the last line: readers skip it
		close_current();
	}
	return n;
}

bool JournalTail::finished() const
{
	return opened_once_ && fd_ < 0 && !gz_;
}

// ---- the shipper ----

namespace
{

std::set<std::string> default_records()
{
	return {"secret", "secret_use", "alert", "update", "health", "ready"};
}

} // namespace

std::string ClickHouseShipper::cursor_path(const std::string &state_dir, const std::string &url,
                                           const std::string &database)
{
	char hex[17];
	std::snprintf(hex, sizeof(hex), "%016llx",
	              static_cast<unsigned long long>(fnv1a(url + "\n" + database)));
	return state_dir + "/clickhouse-" + hex + ".cursor";
}

ClickHouseShipper::ClickHouseShipper(const OutputSpec &spec, std::string journal_dir,
                                     std::string state_dir, std::string host)
    : spec_(spec), journal_dir_(std::move(journal_dir)),
      cursor_path_(cursor_path(state_dir, spec.url, spec.database)), host_(std::move(host))
{
	records_ = spec_.records.empty()
	               ? default_records()
	               : std::set<std::string>(spec_.records.begin(), spec_.records.end());
	whole_records_.insert(spec_.record_column.begin(), spec_.record_column.end());
	client_ = std::make_unique<ClickHouseClient>(ClickHouseTarget{
	    spec_.url, spec_.database, spec_.user, spec_.password_file, spec_.tls_ca});
	// The cursor: what ClickHouse acknowledged. None: the whole journal.
	std::string segment;
	uint64_t line = 0;
	bool complete = false;
	struct stat st;
	int fd = open_regular_file(cursor_path_, &st);
	if (fd >= 0) {
		std::string text(4096, '\0');
		ssize_t n = ::read(fd, text.data(), text.size());
		::close(fd);
		text.resize(n > 0 ? static_cast<size_t>(n) : 0);
		auto j = nlohmann::json::parse(text, nullptr, false);
		if (j.is_object() && j.contains("segment") && j["segment"].is_string() &&
		    j.contains("line") && j["line"].is_number_unsigned()) {
			segment = j["segment"].get<std::string>();
			line = j["line"].get<uint64_t>();
			complete = j.value("complete", false);
		} else {
			spdlog::warn(
			    "clickhouse: cursor {} is unreadable; shipping the whole journal "
			    "again (event ids make it harmless)",
			    cursor_path_);
		}
	} else if (errno != ENOENT) {
		throw sys_error("read clickhouse cursor " + cursor_path_, errno);
	}
	tail_ = std::make_unique<JournalTail>(journal_dir_, segment, line, complete);
	acked_segment_ = segment;
	acked_line_ = line;
	thread_ = std::thread([this] { run(); });
	try {
		sender_ = std::thread([this] { send(); });
	} catch (...) {
		stop(std::chrono::milliseconds(0));
		throw;
	}
}

ClickHouseShipper::~ClickHouseShipper()
{
	stop(std::chrono::milliseconds(0));
}

void ClickHouseShipper::stop(std::chrono::milliseconds drain)
{
	{
		std::lock_guard lock(mu_);
		if (!stop_) {
			stop_ = true;
			drain_until_ = std::chrono::steady_clock::now() + drain;
		}
	}
	cv_.notify_all();
	if (thread_.joinable())
		thread_.join();
	if (sender_.joinable())
		sender_.join();
}

std::string ClickHouseShipper::name() const
{
	return "clickhouse:" + spec_.url + "/" + spec_.database;
}

bool ClickHouseShipper::save_cursor(const std::string &segment, uint64_t line, bool complete)
{
	std::string text =
	    nlohmann::json{{"segment", segment}, {"line", line}, {"complete", complete}}.dump() +
	    "\n";
	std::string tmp = cursor_path_ + ".tmp";
	unlink(tmp.c_str());
	int fd = open_private_file(tmp, false);
	if (fd < 0)
		return false;
	bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
	          fsync(fd) == 0;
	ok = ::close(fd) == 0 && ok;
	if (!ok || rename(tmp.c_str(), cursor_path_.c_str()) != 0) {
		unlink(tmp.c_str());
		return false;
	}
	// The rename itself must survive a power cut.
	std::string dir = cursor_path_.substr(0, cursor_path_.rfind('/'));
	int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		::close(dfd);
	}
	return true;
}

void ClickHouseShipper::encode(const std::vector<JournalTail::Line> &lines, Batch *b) const
{
	for (const auto &l : lines) {
		auto row = clickhouse_row(l.text);
		if (b->first_ns == 0) // untimed: lag counts from now
			b->first_ns = row && row->time_ns >= 0 ? row->time_ns : wall_now_ns();
		if (!row) {
			b->bad++;
			continue;
		}
		if (!records_.count(row->type)) {
			b->skipped++;
			continue;
		}
		if (!row->valid()) {
			b->bad++;
			continue;
		}
		row->event_id = journal_event_id(host_, l.segment, l.line);
		b->newest_ns = std::max(b->newest_ns, row->time_ns);
		bool whole = whole_records_.count(row->type);
		append_row_binary(*row, whole ? std::string_view(l.text) : std::string_view(),
		                  &b->body);
		b->rows++;
	}
}

bool ClickHouseShipper::fill(Batch *b)
{
	// A few lines at a time: a batch never holds its records twice.
	constexpr size_t kChunk = 256;
	std::vector<JournalTail::Line> lines;
	while (b->lines < spec_.batch_rows && b->body.size() < kMaxBody) {
		size_t want = std::min<size_t>(kChunk, spec_.batch_rows - b->lines);
		lines.clear();
		size_t n = tail_->read(want, lines);
		encode(lines, b);
		b->lines += n;
		// The tail stands right after the batch's last line.
		b->segment = tail_->segment();
		b->line = tail_->line();
		b->complete = tail_->finished();
		if (n < want)
			return false;
	}
	return true;
}

// Reads the journal into encoded batches, while the sender ships the one
// before: one batch in flight, the next being made.
void ClickHouseShipper::run()
{
	using namespace std::chrono;
	Batch b; // being filled
	std::unique_lock lock(mu_);
	// After a read: caught up, and the oldest time not yet queued.
	auto filled = [&] {
		caught_up_ = b.lines == 0;
		pending_first_ns_ = b.first_ns;
		counters_.lost_segments = tail_->lost_segments();
		counters_.cut_lines = tail_->cut_lines();
	};
	for (;;) {
		bool stopping = stop_;
		if (stopping &&
		    (steady_clock::now() >= drain_until_ || (caught_up_ && b.lines == 0)))
			break;
		if (b.lines == 0 && spare_body_.capacity() > b.body.capacity()) {
			std::swap(b.body, spare_body_);
			b.body.clear();
		}
		lock.unlock();
		bool full = b.full = fill(&b);
		lock.lock();
		filled();
		if (!full && !stopping) {
			// Wait for a fuller batch (or the interval), then top it up.
			if (cv_.wait_for(lock, spec_.batch_interval, [&] { return stop_; }))
				continue;
			lock.unlock();
			b.full = fill(&b);
			lock.lock();
			filled();
		}
		if (b.lines == 0)
			continue;
		// Made while the one before was in flight; queued once that is
		// acknowledged. Past the drain it is dropped unacknowledged: the
		// cursor stands before it, and a restart ships it.
		cv_.wait(lock, [&] { return stop_ || queue_.size() < kQueuedBatches; });
		if (queue_.size() >= kQueuedBatches && !cv_.wait_until(lock, drain_until_, [&] {
			    return queue_.size() < kQueuedBatches;
		    }))
			break;
		queue_.push_back(std::move(b));
		b = Batch{};
		pending_first_ns_ = 0;
		cv_.notify_all();
	}
	encoder_done_ = true;
	cv_.notify_all();
}

// Ships the oldest encoded batch until ClickHouse takes it, then moves the
// cursor past it: batches are acknowledged in journal order.
void ClickHouseShipper::send()
{
	using namespace std::chrono;
	milliseconds backoff{200};
	std::unique_lock lock(mu_);
	for (;;) {
		cv_.wait(lock, [&] { return !queue_.empty() || encoder_done_; });
		if (queue_.empty() || (stop_ && steady_clock::now() >= drain_until_))
			break;
		Batch &b = queue_.front(); // only this thread pops; push_back keeps it in place
		lock.unlock();
		std::string err;
		bool ok = b.rows == 0 || client_->insert(spec_.database + ".events", b.body, &err,
		                                         "RowBinary", kClickHouseEventColumns);
		bool saved = ok && save_cursor(b.segment, b.line, b.complete);
		lock.lock();
		if (ok) {
			if (!saved)
				counters_.cursor_errors++;
			counters_.rows_sent += b.rows;
			counters_.batches += b.rows > 0;
			counters_.records_skipped += b.skipped;
			counters_.bad_lines += b.bad;
			acked_segment_ = b.segment;
			acked_line_ = b.line;
			acked_time_ns_ = std::max(acked_time_ns_, b.newest_ns);
			// Kept for the next while catching up (a full batch); a large
			// buffer is not held once the output is idle.
			if (b.body.capacity() <= kSpareBody &&
			    (b.full || b.body.capacity() <= kIdleSpareBody))
				spare_body_ = std::move(b.body);
			queue_.pop_front();
			backoff = milliseconds{200};
			if (!healthy_) {
				healthy_ = true;
				spdlog::info("output {} recovered after {} retries", name(),
				             counters_.retries);
			}
			cv_.notify_all();
			continue;
		}
		counters_.errors++;
		if (healthy_ || err != last_error_)
			spdlog::warn("output {} failed: {}; retrying", name(), err);
		healthy_ = false;
		last_error_ = err;
		// Wait out the backoff; a stop cuts it short at its drain deadline
		// (what is left stays in the journal for the next start).
		auto retry_at = steady_clock::now() + backoff;
		if (cv_.wait_until(lock, retry_at, [&] { return stop_; }))
			cv_.wait_until(lock, std::min(retry_at, drain_until_),
			               [&] { return steady_clock::now() >= drain_until_; });
		if (stop_ && steady_clock::now() >= drain_until_)
			break;
		backoff = std::min(backoff * 2, milliseconds{30000});
		counters_.retries++;
	}
}

nlohmann::json ClickHouseShipper::health() const
{
	std::lock_guard lock(mu_);
	nlohmann::json j = {{"name", name()},
	                    {"format", "clickhouse"},
	                    {"healthy", healthy_},
	                    {"written", counters_.rows_sent},
	                    {"errors", counters_.errors},
	                    {"retries", counters_.retries},
	                    {"dropped", 0}};
	add_counters(j, counters_);
	// Spool: the journal from the acknowledged segment on.
	uint64_t spool = 0;
	for (const auto &[base, path] : segments_by_base(journal_dir_)) {
		struct stat st;
		if (base >= acked_segment_ && stat(path.c_str(), &st) == 0)
			spool += static_cast<uint64_t>(st.st_size);
	}
	j["spool_bytes"] = spool;
	// Lag: the age of the oldest record not yet acknowledged.
	int64_t oldest = !queue_.empty() ? queue_.front().first_ns : pending_first_ns_;
	double lag = 0;
	if (oldest > 0)
		lag = std::max(0.0, static_cast<double>(wall_now_ns() - oldest) / 1e9);
	j["lag_seconds"] = lag;
	j["cursor"] = acked_segment_ + ":" + std::to_string(acked_line_);
	if (!last_error_.empty())
		j["last_error"] = last_error_;
	return j;
}

} // namespace keytrail
