#include "keytrail/agent/open_files.h"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>

#include "keytrail/abi.h"
#include "keytrail/util/kdev.h"

namespace keytrail
{

std::string OpenFiles::on_open(const OpenEvent &e)
{
	std::string path = e.path;
	if (path.empty()) {
		auto it = paths_.find({e.dev, e.ino});
		if (it != paths_.end())
			path = it->second;
	}
	if (e.fd >= 0)
		open_[e.ctx.pid][e.fd] = OpenFd{path, e.dev, e.ino};
	return path;
}

ClosedFd OpenFiles::on_close(const CloseEvent &e)
{
	ClosedFd c{e.fd, e.reason, "", {e.dev, e.ino, e.bytes_read, e.reads}};
	auto pit = open_.find(e.ctx.pid);
	if (pit != open_.end()) {
		auto fit = pit->second.find(e.fd);
		if (fit != pit->second.end()) {
			c.path = std::move(fit->second.path);
			pit->second.erase(fit);
		}
	}
	if (c.path.empty()) { // a dup'd or inherited fd the kernel adopted
		auto it = paths_.find({e.dev, e.ino});
		if (it != paths_.end())
			c.path = it->second;
	}
	return c;
}

std::vector<ClosedFd> OpenFiles::flush(uint32_t pid, uint32_t reason)
{
	std::vector<ClosedFd> closed;
	auto pit = open_.find(pid);
	if (pit == open_.end())
		return closed;
	for (auto it = pit->second.begin(); it != pit->second.end();) {
		int fd = it->first;
		if (reason == KT_CLOSE_EXEC) {
			struct stat st;
			std::string link =
			    "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
			if (stat(link.c_str(), &st) == 0 && st.st_ino == it->second.ino) {
				++it; // survived the exec (no O_CLOEXEC)
				continue;
			}
		}
		if (auto st = probe_.take_fd_state(static_cast<pid_t>(pid), fd))
			closed.push_back({fd, reason, std::move(it->second.path), *st});
		it = pit->second.erase(it);
	}
	if (reason == KT_CLOSE_EXIT)
		open_.erase(pit);
	return closed;
}

bool OpenFiles::watch(uint64_t kdev, uint64_t ino, const std::string &path)
{
	if (paths_.count({kdev, ino}))
		return true;
	if (!probe_.watch(kdev, ino, static_cast<uint32_t>(paths_.size() + 1)))
		return false;
	paths_[{kdev, ino}] = path;
	return true;
}

bool OpenFiles::watch_path(const std::string &path)
{
	struct stat st;
	if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	return watch(user_dev_to_kernel(st.st_dev), st.st_ino, path);
}

void OpenFiles::sweep_kernel_state()
{
	for (const auto &k : probe_.fd_state_keys()) {
		if (kill(static_cast<pid_t>(k.tgid), 0) == 0 || errno != ESRCH)
			continue;
		probe_.take_fd_state(static_cast<pid_t>(k.tgid), k.fd);
		counters_.fd_states_swept++;
	}
}

} // namespace keytrail
