#include "keytrail/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace keytrail
{

int open_private_file(const std::string &path, bool append, std::string *why)
{
	if (path.rfind("/dev/", 0) == 0)
		return ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (append ? O_APPEND : 0));
	int fd = ::open(
	    path.c_str(),
	    O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | (append ? O_APPEND : 0), 0600);
	if (fd < 0) {
		if (errno == ELOOP && why)
			*why = path + " is a symbolic link";
		return -1;
	}
	struct stat st;
	const char *refused = nullptr;
	if (fstat(fd, &st) != 0)
		refused = "cannot be checked";
	else if (!S_ISREG(st.st_mode))
		refused = "is not a regular file";
	else if (st.st_uid != geteuid())
		refused = "belongs to another user";
	else if (st.st_nlink > 1)
		refused = "has other hard links";
	if (refused) {
		::close(fd);
		if (why)
			*why = path + " " + refused;
		errno = EPERM;
		return -1;
	}
	if ((st.st_mode & 077) != 0)
		fchmod(fd, 0600);
	if (!append && ftruncate(fd, 0) != 0) {
		int err = errno;
		::close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

} // namespace keytrail
