#include "keytrail/util/proc_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>

#include "keytrail/util/kdev.h"

namespace keytrail
{

ProcFd proc_fd(uint32_t pid, int fd)
{
	char link[64];
	std::snprintf(link, sizeof(link), "/proc/%u/fd/%d", pid, fd);
	ProcFd r;
	// The link's own mode is the fd's access: S_IRUSR for FMODE_READ.
	struct stat ls;
	struct statx sx;
	if (lstat(link, &ls) != 0 ||
	    statx(AT_FDCWD, link, AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &sx) != 0) {
		r.state = errno == ENOENT ? ProcFd::kGone : ProcFd::kUnknown;
		return r;
	}
	r.state = ProcFd::kFound;
	r.readable = ls.st_mode & S_IRUSR;
	r.dev = user_dev_to_kernel(makedev(sx.stx_dev_major, sx.stx_dev_minor));
	r.ino = sx.stx_ino;
	r.mode = sx.stx_mode;
	return r;
}

} // namespace keytrail
