// The one owner of the BPF object's lifecycle: open -> configure -> load ->
// attach -> poll -> destroy. The daemon and the integration tests both use it.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keytrail/abi.h"

struct keytrail_bpf;
struct ring_buffer;

namespace keytrail
{

struct LoaderOptions {
	uint32_t ring_buffer_bytes = 8u << 20; // rounded up to a power of two >= page size
	pid_t agent_pid = 0;                   // never tracked; 0 = this process
};

// Sums of the kernel's per-CPU counters (enum kt_stat).
struct KernelStats {
	std::array<uint64_t, KT_STAT_MAX> v{};
	uint64_t events() const { return v[KT_STAT_EVENTS]; }
	uint64_t drops() const;
	uint64_t drops_of(uint32_t event_type) const { return v[KT_STAT_DROP_BASE + event_type]; }
};

class Loader
{
      public:
	// Raw record handler; the bytes (read-only ring memory) are valid only
	// during the call.
	using RecordHandler = std::function<void(const void *data, size_t size)>;

	explicit Loader(LoaderOptions opts = {});
	~Loader();
	Loader(const Loader &) = delete;
	Loader &operator=(const Loader &) = delete;

	// Mounts tracefs if needed, opens, sizes, loads and attaches every
	// program. Throws Error naming the stage and the reason.
	void start(RecordHandler handler);
	// Detaches and frees everything; safe to call twice.
	void stop();

	// Consumes ready records, waiting up to timeout_ms. Returns the number
	// consumed, or -errno (EINTR is returned as 0).
	int poll(int timeout_ms);

	// The tracked set: task storage on the process's group leader, set
	// through a pidfd. track() returns false if the process is gone.
	bool track(pid_t tgid);
	void untrack(pid_t tgid);
	bool is_tracked(pid_t tgid) const;

	// Watched inodes (kernel dev_t encoding). Returns false if the map is full.
	bool watch(uint64_t kdev, uint64_t ino, uint32_t id);
	void unwatch(uint64_t kdev, uint64_t ino);
	size_t watched_count() const;

	// Takes (reads and deletes) the read counters of an open fd.
	std::optional<kt_fd_state> take_fd_state(pid_t tgid, int fd);
	// All fd-state keys in the kernel map (for sweeping exited processes).
	std::vector<kt_fd_key> fd_state_keys() const;

	KernelStats stats() const;
	size_t attached_programs() const { return links_; }
	double attach_seconds() const { return attach_seconds_; }
	uint32_t ring_buffer_bytes() const { return ring_bytes_; }

      private:
	void rebuild_bloom();

	LoaderOptions opts_;
	keytrail_bpf *skel_ = nullptr;
	ring_buffer *rb_ = nullptr;
	RecordHandler handler_;
	size_t links_ = 0;
	double attach_seconds_ = 0;
	uint32_t ring_bytes_ = 0;
	std::vector<std::pair<uint64_t, uint64_t>> watched_; // mirror, for the bloom filter
};

} // namespace keytrail
