#include "keytrail/agent/open_files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "keytrail/abi.h"
#include "keytrail/util/kdev.h"
#include "keytrail/util/proc_fd.h"

namespace keytrail
{

namespace
{

// Whether the fd still names the regular file it was opened as: no when it
// is gone or names another, yes when it does or that cannot be told. By
// inode number: the device stat() shows is not always the superblock's the
// kernel reported (a btrfs subvolume's).
bool still_open(uint32_t pid, int fd, uint64_t ino, AgentCounters &counters)
{
	ProcFd now = proc_fd(pid, fd);
	if (now.state == ProcFd::kUnknown)
		counters.fd_checks_unknown++; // another user's FUSE mount, ptrace refused
	return now.state == ProcFd::kUnknown ||
	       (now.state == ProcFd::kFound && S_ISREG(now.mode) && now.ino == ino);
}

// Still running: a zombie's or a vanished process's fds went with its exit,
// which its exit record reports.
bool running(uint32_t pid)
{
	char path[64], buf[512];
	std::snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return false;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	const char *paren = std::strrchr(buf, ')'); // comm may hold ')' too
	return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

} // namespace

std::string OpenFiles::on_open(const OpenEvent &e)
{
	std::string path = e.path;
	if (path.empty()) {
		auto it = paths_.find({e.dev, e.ino});
		if (it != paths_.end())
			path = it->second;
	}
	if (e.fd >= 0)
		open_[{e.ctx.pid, e.fd}] = OpenFd{path, e.dev, e.ino, e.ctx};
	return path;
}

ClosedFd OpenFiles::on_close(const CloseEvent &e)
{
	ClosedFd c{e.fd, e.reason, "", {e.dev, e.ino, e.bytes_read, e.reads}};
	auto it = open_.find({e.ctx.pid, e.fd});
	if (it != open_.end() && it->second.dev == e.dev && it->second.ino == e.ino) {
		c.path = std::move(it->second.path);
		open_.erase(it);
	}
	if (c.path.empty()) { // found closed by us after the kernel reported it
		for (auto *gone : {&gone_, &gone_before_}) {
			auto r = gone->find({e.ctx.pid, e.fd, e.dev, e.ino});
			if (r != gone->end()) {
				c.path = std::move(r->second.path);
				c.reason = r->second.reason;
				gone->erase(r);
				break;
			}
		}
	}
	if (c.path.empty()) { // a dup'd or inherited fd the kernel adopted
		auto w = paths_.find({e.dev, e.ino});
		if (w != paths_.end())
			c.path = w->second;
	}
	return c;
}

std::optional<ClosedFd> OpenFiles::take(const Key &k, OpenFd &o, uint32_t reason)
{
	kt_fd_open file{o.dev, o.ino, o.ctx.ts_ns};
	if (auto st = probe_.take_fd_state(static_cast<pid_t>(k.first), k.second, &file))
		return ClosedFd{k.second, reason, std::move(o.path), *st};
	// The probes found it closed first (the process was given its number
	// again) and reported it: that record may still be on its way.
	gone_[{k.first, k.second, o.dev, o.ino}] = Gone{std::move(o.path), reason};
	return std::nullopt;
}

std::vector<ClosedFd> OpenFiles::flush(uint32_t pid, uint32_t reason)
{
	std::vector<ClosedFd> closed;
	for (auto it = open_.lower_bound({pid, INT_MIN});
	     it != open_.end() && it->first.first == pid;) {
		if (reason == KT_CLOSE_EXEC) {
			if (still_open(pid, it->first.second, it->second.ino, counters_)) {
				++it; // survived the exec (no O_CLOEXEC)
				continue;
			}
		}
		if (auto c = take(it->first, it->second, reason))
			closed.push_back(std::move(*c));
		it = open_.erase(it);
	}
	return closed;
}

void OpenFiles::forget(uint32_t pid)
{
	open_.erase(open_.lower_bound({pid, INT_MIN}), open_.lower_bound({pid + 1, INT_MIN}));
}

std::vector<OpenFiles::Reaped> OpenFiles::reap(size_t budget)
{
	std::vector<Reaped> closed;
	// A record not here a round (a second) after its file was found closed
	// is not coming.
	gone_before_ = std::move(gone_);
	gone_.clear();
	auto it = open_.lower_bound(reap_from_);
	for (size_t n = std::min(budget, open_.size()); n > 0; n--) {
		if (it == open_.end())
			it = open_.begin();
		auto [pid, fd] = it->first;
		if (still_open(pid, fd, it->second.ino, counters_) || !running(pid)) {
			++it; // open still, or gone with its process (the exit reports it)
			continue;
		}
		// Closed, or the number names another file.
		if (auto c = take(it->first, it->second, KT_CLOSE_CLOSE))
			closed.push_back({it->second.ctx, std::move(*c)});
		it = open_.erase(it);
	}
	reap_from_ = it == open_.end() ? Key{} : it->first;
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
		probe_.take_fd_state(static_cast<pid_t>(k.tgid), k.fd, nullptr);
		counters_.fd_states_swept++;
	}
}

} // namespace keytrail
