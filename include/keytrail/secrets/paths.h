// Which files hold credentials, and where a file a process opened really is.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

// The catalog kind of a credential file path ("aws_credentials",
// "kubeconfig", "dotenv", "mcp_client_config", ...), or nullopt. extra_globs
// come from the config and yield kind "configured".
std::optional<std::string> credential_file_kind(std::string_view path,
                                                const std::vector<std::string> &extra_globs = {});

struct ResolvedPath {
	std::string logical; // the absolute path as the process saw it
	std::string access;  // where we can open it: /proc/PID/root/<logical>
};

// Resolves a path passed to open*() the way the process saw it: relative to
// its cwd or to dirfd, inside its mount namespace (/proc/PID/root). nullopt
// when the process (or dirfd) is gone.
std::optional<ResolvedPath> resolve_process_path(pid_t pid, int dirfd, const std::string &path,
                                                 const std::string &proc_root = "/proc");

// Reads at most max bytes of a file, checking that it is (dev, ino) in the
// kernel's encoding. Returns false (and leaves out empty) when it cannot, or
// the file there is another one now.
class SecretBytes;
bool read_file_checked(const std::string &path, uint64_t kdev, uint64_t ino, size_t max,
                       SecretBytes *out, int64_t *mtime_ns, uint64_t *size);

} // namespace keytrail
