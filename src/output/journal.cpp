#include "keytrail/output/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>

#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/files.h"

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
		gzip_file(p, p + ".gz");
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
		gzip_file(path, path + ".gz"); // on failure the plain segment stays readable
		retain(wall_now_ns());
		lock.lock();
	}
}

bool JournalSink::open_segment(int64_t now_ns)
{
	path_ = cfg_.dir + "/" + kPrefix + compact_utc(now_ns) + ".jsonl";
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

bool read_journal(const std::string &dir, const std::function<bool(nlohmann::json &&)> &f,
                  JournalReadStats *stats)
{
	JournalReadStats local;
	JournalReadStats &st = stats ? *stats : local;
	for (const auto &path : journal_segments(dir)) {
		st.segments++;
		// gzopen reads plain files as they are, too.
		gzFile gz = gzopen(path.c_str(), "rb");
		if (!gz) {
			st.truncated_segments++;
			continue;
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
	}
	return true;
}

} // namespace keytrail
