// What the agent asks of the running probes: the tracked set, the watched
// inodes, the read counters of open files, and the kernel's own counters.
// probe::Loader implements it on the real BPF maps; tests fake it, so the
// agent's decisions run without root.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "keytrail/abi.h"

namespace keytrail
{

// Sums of the kernel's per-CPU counters (enum kt_stat).
struct KernelStats {
	std::array<uint64_t, KT_STAT_MAX> v{};
	uint64_t events() const { return v[KT_STAT_EVENTS]; }
	uint64_t drops() const;
	uint64_t drops_of(uint32_t event_type) const { return v[KT_STAT_DROP_BASE + event_type]; }
	// {"events", "drops", "drops_by_type": {...}, "read_failures", ...}
	nlohmann::json to_json() const;
};

// The counters after events and drops, by name and help (`health.kernel`
// and the keytrail_kernel_* metrics).
struct KernelStatInfo {
	enum kt_stat stat;
	const char *name, *help;
};
const std::vector<KernelStatInfo> &kernel_stat_info();

class ProbeControl
{
      public:
	virtual ~ProbeControl() = default;

	// The tracked set. track() returns false if the process is gone.
	virtual bool track(pid_t tgid) = 0;
	virtual void untrack(pid_t tgid) = 0;
	// Marks a tracked process as a stdio MCP server: the probes then send
	// what it reads from fd 0 and writes to fd 1 (abi.h: KT_MARK_STDIO).
	// false if it is gone or not tracked.
	virtual bool capture_stdio(pid_t tgid) = 0;
	// Watched inodes (kernel dev_t encoding). false if the map is full.
	virtual bool watch(uint64_t kdev, uint64_t ino, uint32_t id) = 0;
	// The config rules' hint words (abi.h: kt_hint_words); false if the
	// kernel cannot take them (no exec hint there).
	virtual bool set_hint_words(const std::vector<uint32_t> &words) = 0;
	virtual size_t watched_count() const = 0;
	// Whether an fds entry is that open's (its file, opened then).
	static bool is_open(const kt_fd_state &s, const kt_fd_open &file)
	{
		return s.dev == file.dev && s.ino == file.ino && s.opened_ns == file.opened_ns;
	}
	// Takes (reads and deletes) the read counters of an fd. With `file`,
	// only if they are that open's: the number may name a newer file (or
	// the same file opened again) by now, whose counters stay.
	virtual std::optional<kt_fd_state> take_fd_state(pid_t tgid, int fd,
	                                                 const kt_fd_open *file) = 0;
	// Every fd-state key (for sweeping processes whose exit was lost).
	virtual std::vector<kt_fd_key> fd_state_keys() const = 0;
	virtual KernelStats stats() const = 0;

	virtual size_t attached_programs() const = 0;
	virtual double attach_seconds() const = 0;
	virtual uint32_t ring_buffer_bytes() const = 0;
	// DNS answers to tracked processes are seen (names can be verified).
	virtual bool dns_capture() const = 0;
};

} // namespace keytrail
