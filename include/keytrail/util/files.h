// Files the agent and its tools create, opened so that nobody else can
// steer them: no symlink is followed, an existing file is taken only if it
// is a regular file of ours with one link (never a planted hardlink to a
// root-owned file), and it is made 0600.
#pragma once

#include <string>

namespace keytrail
{

// Opens `path` for writing: appending, or truncated (after the checks, not
// before). A path under /dev/ (a tty, /dev/stdout, /dev/null) is opened as
// it is, never created. Returns the fd, or -1 with errno set (EPERM: the
// file there is not one we may write; *why says so).
int open_private_file(const std::string &path, bool append, std::string *why = nullptr);

} // namespace keytrail
