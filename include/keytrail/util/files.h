// Files the agent and its tools create, opened so that nobody else can
// steer them: no symlink is followed, an existing file is taken only if it
// is a regular file of ours with one link (never a planted hardlink to a
// root-owned file), and it is made 0600.
#pragma once

#include <sys/stat.h>

#include <string>

namespace keytrail
{

// Opens `path` for writing: appending, or truncated (after the checks, not
// before). A path under /dev/ (a tty, /dev/stdout, /dev/null) is opened as
// it is, never created. Returns the fd, or -1 with errno set (EPERM: the
// file there is not one we may write; *why says so).
int open_private_file(const std::string &path, bool append, std::string *why = nullptr);

// Opens a file that someone else named, for reading, only if it is a
// regular file: it is looked at (O_PATH) before it is opened, so a device,
// FIFO or socket planted there (`ln -s /dev/watchdog package.json`) is never
// opened, and opening never blocks or has effects. *st gets its stat.
// Returns the fd, or -1 (errno EINVAL: not a regular file).
int open_regular_file(const std::string &path, struct stat *st);

// Takes the state dir for this process: `<dir>/agent.lock`, flock'ed for
// as long as the returned fd stays open, holding our pid. Throws an Error
// naming the running agent's pid when another holds it. The dir must exist.
int lock_state_dir(const std::string &dir);

enum class DirUse {
	kPrivate, // the agent's own (state, journal): ours, made 0700
	kParent,  // only where a file of ours goes (it may be /tmp)
};

// Opens directory `dir` (absolute), creating what is missing with 0700, so
// that no other user steered the way: every component is a directory that
// only root or we can change (or a root-owned sticky one, such as /tmp,
// whose next component is root's or ours); symbolic links are followed only
// when root owns them. kPrivate: the last one must be ours, and is made
// 0700. Returns an O_DIRECTORY fd; throws Error saying which component is
// wrong and why.
int open_private_dir(const std::string &dir, DirUse use);

// open_private_dir(dir, kPrivate), fd closed.
void make_private_dirs(const std::string &dir);

} // namespace keytrail
