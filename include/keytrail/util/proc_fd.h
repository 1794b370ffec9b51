// Another process's fd, looked at through /proc/PID/fd/N without ever
// waiting on someone else: no /proc/PID/fdinfo (an epoll fd's takes the
// epoll's mutex, which epoll_ctl() holds while a FUSE file's poll waits on
// its server) and no stat() that asks the file's filesystem (statx with
// AT_STATX_DONT_SYNC answers from what the kernel has cached, FUSE and NFS
// included).
#pragma once

#include <cstdint>

namespace keytrail
{

struct ProcFd {
	enum State {
		kGone,    // no such fd (closed, or the process is gone or a zombie)
		kUnknown, // could not tell (EACCES on another user's FUSE mount, ...)
		kFound,
	} state = kGone;
	uint64_t dev = 0; // the kernel's encoding (what the probes report)
	uint64_t ino = 0;
	uint32_t mode = 0;     // the file's st_mode
	bool readable = false; // opened for reading (not O_PATH, not O_WRONLY)
};

// What `pid`'s fd `fd` names now.
ProcFd proc_fd(uint32_t pid, int fd);

} // namespace keytrail
