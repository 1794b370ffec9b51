// Files tracked processes hold open, and the inodes watched host-wide: what
// an fd was opened as (for its close record) and which paths name watched
// credential files (the kernel reports those opens without a path).
//
// There is no close hook (every process on the host would pay for one): the
// kernel reports a file closed when its number names another file at the
// process's next open or read of it; the rest are found here, at exec, at
// exit, and by reap(), which looks at /proc/PID/fd.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "keytrail/agent/counters.h"
#include "keytrail/probe/control.h"
#include "keytrail/probe/events.h"

namespace keytrail
{

// An fd closed, with what was read through it.
struct ClosedFd {
	int32_t fd = -1;
	uint32_t reason = 0; // kt_close_reason
	std::string path;
	kt_fd_state state{};
};

class OpenFiles
{
      public:
	OpenFiles(ProbeControl &probe, AgentCounters &counters) : probe_(probe), counters_(counters)
	{
	}

	// The path an open names: as passed, or the watched file's when the
	// kernel sent none. A successful open is remembered.
	std::string on_open(const OpenEvent &e);
	ClosedFd on_close(const CloseEvent &e);
	// The fds a process still held when it exited or exec'd (for exec: only
	// those the exec closed), with their read counters taken from the kernel.
	std::vector<ClosedFd> flush(uint32_t pid, uint32_t reason);
	void forget(uint32_t pid);
	// Up to `budget` open fds, round robin, checked against
	// /proc/PID/fd: those closed since, with their read counters and the
	// context of the open (its ts_ns is the open's, for the caller to set).
	struct Reaped {
		EventContext ctx;
		ClosedFd fd;
	};
	std::vector<Reaped> reap(size_t budget);

	// Watches an inode: any process that opens it is reported. false if the
	// kernel's map is full.
	bool watch(uint64_t kdev, uint64_t ino, const std::string &path);
	bool watched(uint64_t kdev, uint64_t ino) const { return paths_.count({kdev, ino}) > 0; }
	std::string watched_path(uint64_t kdev, uint64_t ino) const
	{
		auto it = paths_.find({kdev, ino});
		return it == paths_.end() ? "" : it->second;
	}
	// A file by path (tracking.watch_paths): false if it is not a regular file.
	bool watch_path(const std::string &path);
	// Read counters whose close or exit record was lost would stay in the
	// kernel's map for ever: drops those of processes that are gone.
	void sweep_kernel_state();

      private:
	struct OpenFd {
		std::string path;
		uint64_t dev = 0, ino = 0;
		EventContext ctx; // the open's
	};
	using Key = std::pair<uint32_t, int>; // pid, fd
	// The close of an fd whose file is gone from it, with that open's
	// counters, if the kernel still has them (else the path waits in gone_
	// for the kernel's record).
	std::optional<ClosedFd> take(const Key &k, OpenFd &o, uint32_t reason);
	ProbeControl &probe_;
	AgentCounters &counters_;
	std::map<std::pair<uint64_t, uint64_t>, std::string> paths_; // watched inode -> path
	std::map<Key, OpenFd> open_;
	Key reap_from_{};
	// Fds found closed (reap, exec) after the kernel had reported them, for
	// its record: by pid, fd, dev, ino, for one to two reap rounds.
	struct Gone {
		std::string path;
		uint32_t reason = 0;
	};
	using GoneKey = std::tuple<uint32_t, int, uint64_t, uint64_t>;
	std::map<GoneKey, Gone> gone_, gone_before_;
};

} // namespace keytrail
