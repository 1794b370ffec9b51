// Which npm package a file belongs to: the "name" in the nearest
// package.json above its real path. Paths are a process's (symlinks are
// resolved inside its root, /proc/PID/root), and everything read is bounded:
// symlink hops, directory levels, file size, JSON depth; a FIFO or a device
// named package.json is never opened for reading.
#pragma once

#include <optional>
#include <string>

namespace keytrail
{

// root: the process's root directory as we can reach it ("/proc/PID/root",
// or "" for our own); path: absolute, as the process names it.
std::optional<std::string> npm_package_of(const std::string &root, const std::string &path);

// Whether a name is an npm package name we accept: [@scope/]name, at most
// 214 characters of [a-z0-9-._~].
bool valid_npm_name(const std::string &name);

} // namespace keytrail
