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
#include "keytrail/probe/control.h"

struct keytrail_bpf;
struct ring_buffer;

namespace keytrail
{

struct LoaderOptions {
	uint32_t ring_buffer_bytes = 8u << 20; // rounded up to a power of two >= page size
	pid_t agent_pid = 0;                   // never tracked; 0 = this process
};

class Loader : public ProbeControl
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
	// through a pidfd (which names the process instance, never a reused pid).
	bool track(pid_t tgid) override;
	void untrack(pid_t tgid) override;
	bool capture_stdio(pid_t tgid) override;
	bool is_tracked(pid_t tgid) const;

	bool watch(uint64_t kdev, uint64_t ino, uint32_t id) override;
	bool set_hint_words(const std::vector<uint32_t> &words) override;
	size_t watched_count() const override;
	std::optional<kt_fd_state> take_fd_state(pid_t tgid, int fd,
	                                         const kt_fd_open *file) override;
	std::vector<kt_fd_key> fd_state_keys() const override;
	KernelStats stats() const override;
	size_t attached_programs() const override { return links_; }
	double attach_seconds() const override { return attach_seconds_; }
	uint32_t ring_buffer_bytes() const override { return ring_bytes_; }
	bool dns_capture() const override { return dns_capture_; }

      private:
	void rebuild_bloom();
	void attach_dns();

	LoaderOptions opts_;
	keytrail_bpf *skel_ = nullptr;
	ring_buffer *rb_ = nullptr;
	RecordHandler handler_;
	size_t links_ = 0;
	double attach_seconds_ = 0;
	uint32_t ring_bytes_ = 0;
	bool dns_capture_ = false;
	std::vector<std::pair<uint64_t, uint64_t>> watched_; // mirror, for the bloom filter
};

} // namespace keytrail
