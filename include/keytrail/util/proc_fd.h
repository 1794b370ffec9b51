// Another process's fd, looked at through /proc/PID/fd/N without waiting
// on what that process controls: no /proc/PID/fdinfo (an epoll fd's takes
// the epoll's mutex, which epoll_ctl() holds while a FUSE file's poll waits
// on its server) and no stat() that asks a FUSE server (statx with
// AT_STATX_DONT_SYNC answers from FUSE's cache; NFS may still revalidate a
// stale handle, 9p and gfs2 ignore the flag: mounts only root makes).
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
	uint64_t dev = 0; // stat's device in the kernel's encoding (the probes'
	                  // s_dev but on btrfs subvolumes and mixed overlayfs)
	uint64_t ino = 0;
	uint32_t mode = 0;     // the file's st_mode
	bool readable = false; // opened for reading (not O_PATH, not O_WRONLY)
};

// What `pid`'s fd `fd` names now.
ProcFd proc_fd(uint32_t pid, int fd);

} // namespace keytrail
