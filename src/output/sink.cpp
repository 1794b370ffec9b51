#include "keytrail/output/sink.h"

#include <dirent.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/host.h"

namespace keytrail
{

namespace
{

bool write_all(int fd, std::string_view data)
{
	size_t done = 0;
	while (done < data.size()) {
		ssize_t n = ::write(fd, data.data() + done, data.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO; // no progress: never loop on it
			return false;
		}
		done += static_cast<size_t>(n);
	}
	return true;
}

std::string dir_of(const std::string &path)
{
	auto slash = path.rfind('/');
	return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

constexpr size_t kBufferBytes = 64 * 1024;

} // namespace

std::string compact_utc(int64_t wall_ns)
{
	time_t secs = static_cast<time_t>(wall_ns / 1000000000LL);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[64];
	size_t n = strftime(buf, sizeof(buf), "%Y%m%dT%H%M%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%06lldZ",
	         static_cast<long long>((wall_ns % 1000000000LL) / 1000));
	return buf;
}

bool gzip_file(const std::string &src, const std::string &dst)
{
	// libdeflate (about 2x zlib's speed at level 1, a smaller file), one
	// gzip member per MiB so memory stays bounded whatever the segment size:
	// gzip readers (zlib's gzread, zcat) read the members as one stream.
	constexpr size_t kChunk = 1u << 20;
	int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return false;
	// Created afresh, never through what is already there (a link planted
	// in a shared directory).
	std::string tmp = dst + ".tmp";
	unlink(tmp.c_str());
	int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	std::unique_ptr<libdeflate_compressor, void (*)(libdeflate_compressor *)> c(
	    libdeflate_alloc_compressor(1), libdeflate_free_compressor);
	if (out < 0 || !c) {
		::close(in);
		if (out >= 0) {
			::close(out);
			unlink(tmp.c_str());
		}
		return false;
	}
	// Kept by the thread (the compressor, or a writer catching up): 2 MiB
	// allocated and faulted in once, not per segment.
	thread_local std::string plain, packed;
	plain.resize(kChunk);
	packed.resize(libdeflate_gzip_compress_bound(c.get(), kChunk));
	bool ok = true;
	size_t members = 0;
	for (;;) {
		size_t got = 0;
		while (got < kChunk) {
			ssize_t n = ::read(in, plain.data() + got, kChunk - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				ok = false;
			if (n <= 0)
				break;
			got += static_cast<size_t>(n);
		}
		if (!ok || (got == 0 && members > 0))
			break; // an empty file still gets one (empty) member: a valid gzip
		size_t len = libdeflate_gzip_compress(c.get(), plain.data(), got, packed.data(),
		                                      packed.size());
		if (len == 0 || !write_all(out, std::string_view(packed.data(), len))) {
			ok = false;
			break;
		}
		members++;
		if (got < kChunk)
			break;
	}
	int saved = errno;
	ok = ::close(out) == 0 && ok;
	::close(in);
	if (!ok || rename(tmp.c_str(), dst.c_str()) != 0) {
		unlink(tmp.c_str());
		errno = saved ? saved : EIO;
		return false;
	}
	unlink(src.c_str());
	return true;
}

bool FdSink::write(std::string_view line, const LineMeta &)
{
	std::string s;
	s.reserve(line.size() + 1);
	s.append(line);
	s.push_back('\n');
	return write_all(fd_, s);
}

FileSink::FileSink(std::string path, uint64_t max_size, uint32_t keep)
    : path_(std::move(path)), max_size_(max_size), keep_(keep)
{
	::close(open_private_dir(dir_of(path_), DirUse::kParent));
	std::string why;
	if (!open_file(&why))
		throw why.empty()
		    ? sys_error("open output file " + path_, errno)
		    : Error("output file " + why + "; the agent will not write to it");
}

FileSink::~FileSink()
{
	flush();
	if (fd_ >= 0)
		::close(fd_);
}

bool FileSink::open_file(std::string *why)
{
	if (fd_ >= 0)
		::close(fd_);
	fd_ = open_private_file(path_, true, why);
	if (fd_ < 0)
		return false;
	struct stat st;
	regular_ = fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
	size_ = regular_ ? static_cast<uint64_t>(st.st_size) : 0;
	return true;
}

bool FileSink::write(std::string_view line, const LineMeta &)
{
	if (fd_ < 0)
		return (errno = EBADF, false);
	// Only a regular file is rotated: never /dev/null, a FIFO or a tty.
	if (regular_ && max_size_ && size_ + buf_.size() + line.size() + 1 > max_size_ &&
	    size_ + buf_.size() > 0) {
		if (!flush() || !rotate())
			return false;
	}
	// A line appended is accepted: flush() keeps what it could not write.
	if (buf_.size() >= kBufferBytes && !flush() && buf_.size() >= 64 * kBufferBytes)
		return false;
	buf_.append(line);
	buf_.push_back('\n');
	return true;
}

bool FileSink::flush()
{
	if (buf_.empty())
		return true;
	if (fd_ < 0 || !write_all(fd_, buf_))
		return false; // kept: retried after reopen()
	size_ += buf_.size();
	buf_.clear();
	return true;
}

bool FileSink::reopen()
{
	return open_file();
}

std::vector<std::string> FileSink::segments() const
{
	std::vector<std::string> out;
	std::string dir = dir_of(path_), base = path_.substr(path_.rfind('/') + 1) + ".";
	DIR *d = opendir(dir.c_str());
	if (!d)
		return out;
	while (dirent *e = readdir(d)) {
		std::string n = e->d_name;
		if (n.starts_with(base) && n.ends_with(".gz"))
			out.push_back(dir + "/" + n);
	}
	closedir(d);
	std::sort(out.begin(), out.end());
	return out;
}

bool FileSink::rotate()
{
	std::string rotated = path_ + "." + compact_utc(wall_now_ns());
	if (rename(path_.c_str(), rotated.c_str()) != 0)
		return false;
	if (!open_file())
		return false;
	// A failed compression keeps the plain segment rather than lose it.
	gzip_file(rotated, rotated + ".gz");
	auto segs = segments();
	for (size_t i = 0; i + keep_ < segs.size(); i++)
		unlink(segs[i].c_str());
	return true;
}

SyslogSink::SyslogSink(std::string socket_path, int facility, std::string app_name)
    : path_(socket_path.empty() ? "/dev/log" : std::move(socket_path)), app_(std::move(app_name)),
      host_(host_name().empty() ? "-" : host_name()), facility_(facility)
{
	// A syslog daemon that is not there yet is a sink failure, retried later.
	reopen();
}

SyslogSink::~SyslogSink()
{
	if (fd_ >= 0)
		::close(fd_);
}

bool SyslogSink::reopen()
{
	if (fd_ >= 0)
		::close(fd_);
	fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd_ < 0)
		return false;
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	if (path_.size() >= sizeof(sa.sun_path))
		return (errno = ENAMETOOLONG, false);
	std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
	if (connect(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0) {
		connect_errno_ = errno;
		::close(fd_);
		fd_ = -1;
		errno = connect_errno_;
		return false;
	}
	return true;
}

bool SyslogSink::write(std::string_view line, const LineMeta &meta)
{
	if (fd_ < 0)
		return (errno = connect_errno_ ? connect_errno_ : ENOTCONN,
		        false); // why it is down
	// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
	std::string ts = rfc3339(meta.time_ns ? meta.time_ns : wall_now_ns());
	msg_ = "<" + std::to_string(facility_ * 8 + meta.severity) + ">1 " + ts + " " + host_ +
	       " " + app_ + " " + std::to_string(getpid()) + " " +
	       std::string(meta.type.empty() ? "-" : meta.type) + " - ";
	msg_.append(line);
	for (;;) {
		ssize_t n = send(fd_, msg_.data(), msg_.size(), MSG_NOSIGNAL);
		if (n >= 0)
			return true;
		if (errno != EINTR)
			return false;
	}
}

std::unique_ptr<Sink> make_sink(const OutputSpec &spec)
{
	if (spec.type == "file" && spec.path != "-")
		return std::make_unique<FileSink>(spec.path, spec.max_size, spec.keep);
	if (spec.type == "syslog")
		return std::make_unique<SyslogSink>(spec.path, syslog_facility_code(spec.facility),
		                                    spec.app_name);
	return std::make_unique<FdSink>(STDOUT_FILENO, "stdout");
}

} // namespace keytrail
