// Where a process gets its credentials: argv, environment, files it opens,
// and MCP client configs on disk. Each source yields Obtained records that
// hold only the fingerprint and what is safe to show; the secret bytes are
// fingerprinted and wiped inside.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "keytrail/secrets/catalog.h"
#include "keytrail/secrets/fingerprint.h"
#include "keytrail/util/counters.h"

namespace keytrail
{

struct Obtained {
	std::string fingerprint, type, prefix;
	std::string source;   // argv, env, file, mcp_config
	std::string location; // argv[i] / option, env var name, file path
	std::string name;     // key inside the location (file assignments, config field)
	size_t line = 0;
	std::string server;   // mcp_config: the server entry
	int64_t mtime_ns = 0; // file: modification time of the content read
};

struct FileScan {
	std::string path; // as the process saw it
	std::string kind; // catalog kind
	std::vector<Obtained> secrets;
	bool cached = false; // content unchanged since last read: not read again
	bool unreadable =
	    false;            // gone or rewritten before it could be read: nothing is known of it
	int64_t mtime_ns = 0; // of the content read
};

struct ConfigScanResult {
	std::string path;
	std::vector<Obtained> secrets;
	std::vector<std::string> secret_files; // credential files the config points at
	std::optional<std::string> error;      // malformed: "path:line:col: reason"
};

#define KT_SOURCE_COUNTERS(X)                                                                      \
	X(files_read, "Credential files read and scanned.")                                        \
	X(files_unreadable, "Credential files gone before they could be read.")                    \
	X(files_by_true_name, "Credential files opened under another name (symlink, hardlink).")   \
	X(files_rewritten, "Credential files emptied or rewritten around an open, before the "     \
	                   "agent's read: not reported as holding nothing.")

struct SourceCounters {
	KT_SOURCE_COUNTERS(KT_COUNTER_FIELD)
	template <typename F> void each(F &&f) const { KT_SOURCE_COUNTERS(KT_COUNTER_VISIT) }
};

// /proc/PID/environ (at most 1 MiB), wiped when it goes; nullopt when
// unreadable (the process is gone).
std::optional<SecretBytes> read_proc_environ(pid_t pid);

class SecretSources
{
      public:
	// Where a file a process opened can be read: its fd, its mount
	// namespace's path, the logical path.
	struct OpenedFile {
		pid_t pid;
		int fd;
		uint64_t kdev, ino;
		std::string via_fd, access, logical;
	};

	SecretSources(Fingerprinter fp, std::vector<std::string> extra_globs,
	              uint64_t max_file_size);

	std::vector<Obtained> from_argv(const std::vector<std::string> &argv);
	std::vector<Obtained> from_environ(const std::vector<std::string> &env);

	// A file a process opened: nullopt unless it is a credential file.
	// Read through /proc/PID/fd/FD (the very file it opened), else the path
	// in its mount namespace; read once per (dev, inode, mtime, size).
	// cwd_hints: where a relative path may have started, asked only when
	// the process is gone: the first under which the path names this very
	// inode (no other is guessed).
	// A file is a credential file by the name it was opened as, else by
	// what that name hides: a symlink's target, or an inode known as one
	// (watched as `known_as`, or scanned before under another name: a
	// hardlink, a bind mount). It is then named by its true name.
	// opened_ns (wall clock, 0 = unknown): when the process opened it. A
	// file found without credentials, but rewritten clearly after the open,
	// is taken as its scan from before the open; emptied about when it was
	// opened, nothing is known of it (unreadable).
	using CwdHints = std::function<std::vector<std::string>()>;
	std::optional<FileScan> from_open(pid_t pid, int fd, int dirfd, const std::string &path,
	                                  uint64_t kdev, uint64_t ino,
	                                  const CwdHints &cwd_hints = {},
	                                  const std::string &known_as = "", int64_t opened_ns = 0);
	// The cached scan of an inode seen before (watched opens).
	std::optional<FileScan> cached_inode(uint64_t kdev, uint64_t ino) const;

	ConfigScanResult from_mcp_config(const std::string &path);

	const Fingerprinter &fingerprinter() const { return fp_; }
	const SourceCounters &counters() const { return counters_; }

      private:
	// A credential file read before, by (dev, ino): what it held at that
	// modification time and size.
	struct KnownFile {
		int64_t mtime_ns = 0;
		uint64_t size = 0;
		FileScan scan;
	};

	std::vector<Obtained> fingerprint_all(std::vector<Finding> found, const std::string &source,
	                                      const std::string &location);
	// The known scan, when stat() shows the content unchanged (nothing opened).
	std::optional<FileScan> unchanged(const OpenedFile &f) const;
	bool read_content(const OpenedFile &f, SecretBytes *content, int64_t *mtime,
	                  uint64_t *size);
	FileScan scan_content(const std::string &path, const std::string &kind,
	                      std::string_view content);

	Fingerprinter fp_;
	std::vector<std::string> globs_;
	uint64_t max_file_size_;
	SourceCounters counters_;
	std::map<std::pair<uint64_t, uint64_t>, KnownFile> files_;
	// Names (dev, inode, the name opened) whose true name was read lately
	// and named no credential file, to when that answer expires: a server
	// opening the same plain file all day reads its fd's link once a
	// kPlainTtl, not at every open. Any other name for the inode (a
	// hardlink, a symlink to it) is looked at afresh; a watched inode is
	// never held back by it.
	struct PlainName {
		uint64_t dev, ino;
		std::string name;
	};
	struct PlainView { // a lookup of a PlainName without its string
		uint64_t dev, ino;
		std::string_view name;
	};
	struct PlainOrder {
		using is_transparent = void;
		template <typename A, typename B> bool operator()(const A &a, const B &b) const
		{
			using T = std::tuple<uint64_t, uint64_t, std::string_view>;
			return T(a.dev, a.ino, a.name) < T(b.dev, b.ino, b.name);
		}
	};
	// Whether (dev, ino, name) was found plain lately (kPlainTtl).
	bool plain_lately(uint64_t dev, uint64_t ino, std::string_view name) const;
	std::map<PlainName, std::chrono::steady_clock::time_point, PlainOrder> plain_;
};

} // namespace keytrail
