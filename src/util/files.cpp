#include "keytrail/util/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "keytrail/util/error.h"

namespace keytrail
{

namespace
{

// A directory only root (or we) can change the entries of.
bool trusted_owner(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

std::string mode_text(mode_t m)
{
	char buf[8];
	snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(m & 07777));
	return buf;
}

} // namespace

namespace
{

int open_private_dir_at(const std::string &dir, DirUse use, int links);

} // namespace

int open_private_dir(const std::string &dir, DirUse use)
{
	return open_private_dir_at(dir, use, 0);
}

namespace
{

int open_private_dir_at(const std::string &dir, DirUse use, int links)
{
	if (dir.empty() || dir[0] != '/')
		throw Error("directory " + dir + " is not an absolute path");
	std::vector<std::string> parts;
	for (size_t i = 0; i < dir.size();) {
		size_t j = dir.find('/', i);
		if (j == std::string::npos)
			j = dir.size();
		std::string part = dir.substr(i, j - i);
		if (part == "..")
			throw Error("directory " + dir + " has a '..' component");
		if (!part.empty() && part != ".")
			parts.push_back(part);
		i = j + 1;
	}
	// Walked from / one component at a time, never following a symlink
	// that is not root's: a user who can write to a directory on the way
	// could otherwise point the agent at any file.
	int fd = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		throw sys_error("open /", errno);
	std::string at = "";
	bool sticky_parent = false; // the last one was a root-owned sticky dir (/tmp)
	for (size_t i = 0; i < parts.size(); i++) {
		const std::string &part = parts[i];
		std::string path = at + "/" + part;
		struct stat st;
		if (fstatat(fd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno != ENOENT) {
				int err = errno;
				::close(fd);
				throw sys_error("examine " + path, err);
			}
			if (mkdirat(fd, part.c_str(), 0700) != 0 && errno != EEXIST) {
				int err = errno;
				::close(fd);
				throw sys_error("create directory " + path, err);
			}
			if (fstatat(fd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
				int err = errno;
				::close(fd);
				throw sys_error("examine " + path, err);
			}
		}
		if (S_ISLNK(st.st_mode)) {
			// Root's own links (/var/run -> /run) are followed; nobody
			// else's.
			if (st.st_uid != 0 || sticky_parent || ++links > 16) {
				::close(fd);
				throw Error(path + " is a symbolic link owned by uid " +
				            std::to_string(st.st_uid) +
				            "; give the real directory");
			}
			char target[PATH_MAX];
			ssize_t n = readlinkat(fd, part.c_str(), target, sizeof(target) - 1);
			if (n <= 0) {
				::close(fd);
				throw sys_error("read link " + path, errno);
			}
			target[n] = '\0';
			std::string rest;
			for (size_t k = i + 1; k < parts.size(); k++)
				rest += "/" + parts[k];
			::close(fd);
			// `at` is real (no link on the way to it), so a relative
			// target's ".." is resolved lexically (/var/run -> ../run).
			std::string next = target[0] == '/' ? std::string(target) + rest
			                                    : at + "/" + target + rest;
			return open_private_dir_at(
			    std::filesystem::path(next).lexically_normal().string(), use, links);
		}
		int next =
		    openat(fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int err = errno;
		::close(fd);
		if (next < 0)
			throw sys_error("open directory " + path, err);
		fd = next;
		if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
			::close(fd);
			throw Error(path + " is not a directory");
		}
		bool last = i + 1 == parts.size();
		const char *refused = nullptr;
		if (!trusted_owner(st.st_uid))
			refused = "belongs to another user";
		else if ((st.st_mode & 022) && !(st.st_uid == 0 && (st.st_mode & S_ISVTX)) &&
		         !(last && use == DirUse::kPrivate && st.st_uid == geteuid()) &&
		         // Where an output file goes, a root dir a system group may
		         // write (Ubuntu's /var/log, root:syslog 0775): the file
		         // itself is opened without following links and checked.
		         !(last && use == DirUse::kParent && st.st_uid == 0 && st.st_gid < 1000 &&
		           !(st.st_mode & 002)))
			refused = "is writable by others";
		if (refused) {
			std::string why = path + " " + refused + " (owner uid " +
			                  std::to_string(st.st_uid) + ", mode " +
			                  mode_text(st.st_mode) +
			                  "): the agent runs as root and will not write below it";
			::close(fd);
			throw Error(why);
		}
		sticky_parent = st.st_uid == 0 && (st.st_mode & S_ISVTX) && (st.st_mode & 002);
		at = path;
	}
	if (use == DirUse::kPrivate) {
		struct stat st;
		if (fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
			::close(fd);
			throw Error(dir +
			            " belongs to another user; the agent keeps its state only in "
			            "a directory of its own");
		}
		if ((st.st_mode & 077) != 0)
			fchmod(fd, 0700);
	}
	return fd;
}

} // namespace

int lock_state_dir(const std::string &dir)
{
	std::string path = dir + "/agent.lock";
	std::string why;
	int fd = open_private_file(path, true, &why);
	if (fd < 0)
		throw why.empty() ? sys_error("cannot open " + path, errno) : Error(why);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int err = errno;
		::close(fd);
		char buf[32] = {};
		ssize_t n = -1;
		if (int r = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		    r >= 0) {
			n = ::read(r, buf, sizeof(buf) - 1);
			::close(r);
		}
		if (err != EWOULDBLOCK)
			throw sys_error("cannot lock " + path, err);
		std::string pid =
		    n > 0 ? std::string(buf, strnlen(buf, static_cast<size_t>(n))) : "";
		while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
			pid.pop_back();
		throw Error("another keytrail agent" + (pid.empty() ? "" : " (pid " + pid + ")") +
		            " is running on state dir " + dir +
		            "; stop it first, or give this one its own --state-dir");
	}
	std::string me = std::to_string(getpid()) + "\n";
	// (O_APPEND: after the truncation the pid is the whole file.) A pid
	// that cannot be written only makes the other's message vaguer.
	if (ftruncate(fd, 0) == 0 && ::write(fd, me.data(), me.size()) < 0)
		me.clear();
	return fd;
}

void make_private_dirs(const std::string &dir)
{
	::close(open_private_dir(dir, DirUse::kPrivate));
}

int open_regular_file(const std::string &path, struct stat *st)
{
	int p = ::open(path.c_str(), O_PATH | O_CLOEXEC);
	if (p < 0)
		return -1;
	if (fstat(p, st) != 0 || !S_ISREG(st->st_mode)) {
		::close(p);
		errno = EINVAL;
		return -1;
	}
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", p);
	int fd = ::open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int err = errno;
	::close(p);
	struct stat again;
	if (fd >= 0 && (fstat(fd, &again) != 0 || again.st_ino != st->st_ino ||
	                again.st_dev != st->st_dev || !S_ISREG(again.st_mode))) {
		::close(fd);
		fd = -1;
		err = EINVAL;
	}
	errno = err;
	return fd;
}

int open_private_file(const std::string &path, bool append, std::string *why)
{
	// The standard streams as the operator names them; any other path
	// under /dev (/dev/shm, /dev/../tmp) is a path like the rest.
	bool fd_path = path.rfind("/dev/fd/", 0) == 0 && path.size() > 8 &&
	               path.find_first_not_of("0123456789", 8) == std::string::npos;
	if (path == "/dev/stdout" || path == "/dev/stderr" || path == "/dev/null" ||
	    path == "/dev/tty" || fd_path)
		return ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (append ? O_APPEND : 0));
	// O_NONBLOCK: a FIFO planted there fails (ENXIO) or is refused below
	// instead of blocking the agent in open().
	int fd = ::open(path.c_str(),
	                O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
	                    (append ? O_APPEND : 0),
	                0600);
	if (fd < 0) {
		// Say why, whichever errno this kernel gave (ELOOP, or EACCES for a
		// link in a sticky directory).
		int err = errno;
		struct stat l;
		if (why && lstat(path.c_str(), &l) == 0) {
			if (S_ISLNK(l.st_mode))
				*why = path + " is a symbolic link";
			else if (l.st_uid != geteuid())
				*why = path + " belongs to another user";
		}
		errno = err;
		return -1;
	}
	struct stat st;
	const char *refused = nullptr;
	bool ok = fstat(fd, &st) == 0;
	// A FIFO or a character device the operator gave: written, not owned.
	bool stream = ok && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode));
	if (!ok)
		refused = "cannot be checked";
	else if (!stream && !S_ISREG(st.st_mode))
		refused = "is not a regular file";
	else if (st.st_uid != geteuid() && !(stream && st.st_uid == 0))
		refused = "belongs to another user";
	else if (!stream && st.st_nlink > 1)
		refused = "has other hard links";
	if (refused) {
		::close(fd);
		if (why)
			*why = path + " " + refused;
		errno = EPERM;
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (stream)
		return fd;
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
