#include "keytrail/output/sink.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "keytrail/util/error.h"

namespace keytrail
{

namespace
{

bool write_line(int fd, std::string_view line)
{
	char nl = '\n';
	iovec iov[2] = {{const_cast<char *>(line.data()), line.size()}, {&nl, 1}};
	size_t total = line.size() + 1, done = 0;
	while (done < total) {
		ssize_t n = writev(fd, iov, 2);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		done += n;
		// Advance the iovecs past what was written.
		size_t k = n;
		for (auto &v : iov) {
			size_t take = std::min(k, v.iov_len);
			v.iov_base = static_cast<char *>(v.iov_base) + take;
			v.iov_len -= take;
			k -= take;
		}
	}
	return true;
}

} // namespace

bool FdSink::write(std::string_view line)
{
	return write_line(fd_, line);
}

void make_private_dirs(const std::string &dir)
{
	if (dir.empty())
		return;
	for (size_t pos = 1; pos <= dir.size(); pos++) {
		if (pos != dir.size() && dir[pos] != '/')
			continue;
		std::string part = dir.substr(0, pos);
		if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
			throw sys_error("create directory " + part, errno);
	}
	struct stat st;
	if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
		throw Error(dir + " is not a directory");
}

FileSink::FileSink(std::string path) : path_(std::move(path))
{
	auto slash = path_.rfind('/');
	if (slash != std::string::npos && slash > 0)
		make_private_dirs(path_.substr(0, slash));
	fd_ = open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd_ < 0)
		throw sys_error("open output file " + path_, errno);
}

FileSink::~FileSink()
{
	if (fd_ >= 0)
		close(fd_);
}

bool FileSink::write(std::string_view line)
{
	return write_line(fd_, line);
}

std::unique_ptr<Sink> make_sink(const OutputSpec &spec)
{
	if (spec.type == "file" && spec.path != "-")
		return std::make_unique<FileSink>(spec.path);
	return std::make_unique<FdSink>(STDOUT_FILENO, "stdout");
}

void Output::emit(const nlohmann::json &record)
{
	std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
	for (auto &s : sinks_) {
		if (s->write(line)) {
			written_++;
		} else {
			if (errors_++ % 1000 == 0)
				spdlog::warn("output {} failed: {} ({} failures so far)", s->name(),
				             std::strerror(errno), errors_);
		}
	}
}

} // namespace keytrail
