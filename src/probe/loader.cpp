#include "keytrail/probe/loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstring>
#include <string>

#include "keytrail.skel.h"

#include "keytrail/probe/features.h"
#include "keytrail/util/error.h"
#include "keytrail/util/mounts.h"

namespace keytrail
{

namespace
{

int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !spdlog::should_log(spdlog::level::trace))
		return 0;
	char buf[1024];
	int n = vsnprintf(buf, sizeof(buf), fmt, args);
	std::string line(buf, n > 0 ? std::min<size_t>(n, sizeof(buf) - 1) : 0);
	while (!line.empty() && line.back() == '\n')
		line.pop_back();
	if (level == LIBBPF_WARN)
		spdlog::warn("libbpf: {}", line);
	else
		spdlog::debug("libbpf: {}", line);
	return 0;
}

// Never return a negative value from here: libbpf would stop polling.
int on_record(void *ctx, void *data, size_t size)
{
	auto *handler = static_cast<Loader::RecordHandler *>(ctx);
	(*handler)(data, size);
	return 0;
}

// Syscall tracepoints that some kernels or architectures lack (arm64 has no
// open/creat; openat2 is 5.6+). Others are required.
bool optional_tracepoint(const std::string &name)
{
	return name == "sys_exit_open" || name == "sys_exit_creat" || name == "sys_exit_openat2" ||
	       name == "sys_exit_preadv";
}

uint32_t ring_size(uint32_t want)
{
	uint32_t page = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
	return std::bit_ceil(std::max(want, page));
}

} // namespace

Loader::Loader(LoaderOptions opts) : opts_(opts) {}

Loader::~Loader()
{
	stop();
}

void Loader::start(RecordHandler handler)
{
	handler_ = std::move(handler);
	libbpf_set_print(libbpf_log);
	std::string tracefs = ensure_tracefs();

	skel_ = keytrail_bpf__open();
	if (!skel_)
		throw sys_error("open BPF object", errno);

	skel_->rodata->agent_tgid = opts_.agent_pid ? opts_.agent_pid : getpid();
	// The exec hint needs bpf_loop (5.17+); without it the hint is off and
	// MCP servers are tracked once userspace reads their exec.
	skel_->rodata->use_exec_hint =
	    libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_loop, nullptr) == 1;
	ring_bytes_ = ring_size(opts_.ring_buffer_bytes);
	if (int err = bpf_map__set_max_entries(skel_->maps.events, ring_bytes_))
		throw sys_error("size ring buffer", -err);
	skel_->rodata->wakeup_bytes = ring_bytes_ / 8;

	bpf_program *prog;
	bpf_object__for_each_program(prog, skel_->obj)
	{
		std::string sec = bpf_program__section_name(prog);
		if (sec.rfind("tp/io_uring/", 0) == 0) {
			// Kernels without io_uring (or before 5.19's submit_req)
			// cannot use it either: nothing to see.
			struct stat st;
			std::string tp = sec.substr(3);
			if (stat((tracefs + "/events/" + tp).c_str(), &st) != 0) {
				spdlog::info("tracepoint {} not on this kernel; skipping it", tp);
				bpf_program__set_autoload(prog, false);
			}
			continue;
		}
		const std::string prefix = "tp/syscalls/";
		if (sec.rfind(prefix, 0) != 0)
			continue;
		std::string tp = sec.substr(prefix.size());
		struct stat st;
		if (stat((tracefs + "/events/syscalls/" + tp).c_str(), &st) != 0) {
			if (!optional_tracepoint(tp))
				throw Error(
				    "tracepoint syscalls:" + tp + " is missing from " + tracefs +
				    "/events (kernel built without CONFIG_FTRACE_SYSCALLS?)");
			spdlog::info("tracepoint syscalls:{} not on this kernel; skipping it", tp);
			bpf_program__set_autoload(prog, false);
		}
	}

	auto t0 = std::chrono::steady_clock::now();
	if (int err = keytrail_bpf__load(skel_))
		throw sys_error(
		    "load BPF programs (run `keytrail check`; with -v the verifier log is shown)",
		    -err);
	bpf_object__for_each_program(prog, skel_->obj)
	{
		if (!bpf_program__autoload(prog) || prog == skel_->progs.dns_answer)
			continue;
		bpf_link *link = bpf_program__attach(prog);
		if (!link)
			throw sys_error(std::string("attach ") + bpf_program__name(prog) + " (" +
			                    bpf_program__section_name(prog) + ")",
			                errno);
		// The skeleton's destroy frees links it knows; keep ours in its slots.
		for (int i = 0; i < skel_->skeleton->prog_cnt; i++)
			if (*skel_->skeleton->progs[i].prog == prog)
				*skel_->skeleton->progs[i].link = link;
		links_++;
	}
	attach_dns();
	attach_seconds_ =
	    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

	rb_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), on_record, &handler_, nullptr);
	if (!rb_)
		throw sys_error("create ring buffer reader", errno);
	spdlog::debug("attached {} programs in {:.3f}s, ring buffer {} KiB", links_,
	              attach_seconds_, ring_bytes_ / 1024);
}

// DNS answers are seen on the cgroup v2 root's ingress. Optional: without
// it (no cgroup v2, a kernel that refuses), names are not checked against
// the addresses they resolved to, and dns_capture() says so.
void Loader::attach_dns()
{
	std::string root = cgroup2_root();
	if (root.empty()) {
		spdlog::warn("DNS answers not seen: no cgroup v2 hierarchy is mounted "
		             "(mount -t cgroup2 none /sys/fs/cgroup/unified)");
		return;
	}
	int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		spdlog::warn("DNS answers not seen: cannot open {}: {}", root,
		             std::strerror(errno));
		return;
	}
	bpf_link *link = bpf_program__attach_cgroup(skel_->progs.dns_answer, fd);
	int err = errno;
	::close(fd);
	if (!link) {
		spdlog::warn("DNS answers not seen: cannot attach to {}: {}", root,
		             std::strerror(err));
		return;
	}
	skel_->links.dns_answer = link;
	links_++;
	dns_capture_ = true;
}

void Loader::stop()
{
	if (rb_) {
		ring_buffer__free(rb_);
		rb_ = nullptr;
	}
	if (skel_) {
		keytrail_bpf__destroy(skel_);
		skel_ = nullptr;
	}
	links_ = 0;
}

int Loader::poll(int timeout_ms)
{
	if (!rb_)
		return -EINVAL;
	// The kernel wakes us only for a backlog (wakeup_bytes); otherwise the
	// timeout is the clock: consume whatever arrived meanwhile.
	int n = ring_buffer__poll(rb_, timeout_ms);
	if (n == -EINTR)
		n = 0;
	if (n < 0)
		return n;
	int more = ring_buffer__consume(rb_);
	if (more == -EINTR)
		more = 0;
	return more < 0 ? more : n + more;
}

namespace
{
// A pidfd names the process instance, not the number: tracking can never
// land on a process that reused the pid.
int open_pidfd(pid_t pid)
{
	return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}
} // namespace

bool Loader::track(pid_t tgid)
{
	if (!skel_ || tgid <= 0)
		return false;
	int pidfd = open_pidfd(tgid);
	if (pidfd < 0)
		return false; // gone already
	kt_task_mark mark{KT_TRACK_USER, 0};
	int err = bpf_map__update_elem(skel_->maps.tracked, &pidfd, sizeof(pidfd), &mark,
	                               sizeof(mark), BPF_ANY);
	close(pidfd);
	if (err == 0) // the probes' fallback when task storage is locked
		bpf_map__update_elem(skel_->maps.tracked_tgids, &tgid, sizeof(tgid), &mark,
		                     sizeof(mark), BPF_ANY);
	return err == 0;
}

void Loader::untrack(pid_t tgid)
{
	int pidfd = skel_ && tgid > 0 ? open_pidfd(tgid) : -1;
	if (pidfd < 0)
		return;
	bpf_map__delete_elem(skel_->maps.tracked, &pidfd, sizeof(pidfd), 0);
	bpf_map__delete_elem(skel_->maps.tracked_tgids, &tgid, sizeof(tgid), 0);
	close(pidfd);
}

bool Loader::capture_stdio(pid_t tgid)
{
	int pidfd = skel_ && tgid > 0 ? open_pidfd(tgid) : -1;
	if (pidfd < 0)
		return false;
	kt_task_mark mark{};
	int err = bpf_map__lookup_elem(skel_->maps.tracked, &pidfd, sizeof(pidfd), &mark,
	                               sizeof(mark), 0);
	if (err == 0) {
		mark.flags |= KT_MARK_STDIO;
		err = bpf_map__update_elem(skel_->maps.tracked, &pidfd, sizeof(pidfd), &mark,
		                           sizeof(mark), BPF_EXIST);
	}
	close(pidfd);
	if (err == 0)
		bpf_map__update_elem(skel_->maps.tracked_tgids, &tgid, sizeof(tgid), &mark,
		                     sizeof(mark), BPF_ANY);
	return err == 0;
}

bool Loader::is_tracked(pid_t tgid) const
{
	int pidfd = skel_ && tgid > 0 ? open_pidfd(tgid) : -1;
	if (pidfd < 0)
		return false;
	kt_task_mark mark{};
	bool yes = bpf_map__lookup_elem(skel_->maps.tracked, &pidfd, sizeof(pidfd), &mark,
	                                sizeof(mark), 0) == 0;
	close(pidfd);
	return yes;
}

bool Loader::set_hint_words(const std::vector<uint32_t> &words)
{
	if (!skel_ || !skel_->rodata->use_exec_hint)
		return false;
	kt_hint_words v{};
	v.count = static_cast<uint32_t>(std::min<size_t>(words.size(), KT_HINT_WORDS));
	std::copy_n(words.begin(), v.count, v.words);
	uint32_t zero = 0;
	return bpf_map__update_elem(skel_->maps.hint_words, &zero, sizeof(zero), &v, sizeof(v),
	                            BPF_ANY) == 0;
}

bool Loader::watch(uint64_t kdev, uint64_t ino, uint32_t id)
{
	if (!skel_)
		return false;
	kt_inode_key key{kdev, ino};
	if (bpf_map__update_elem(skel_->maps.watched, &key, sizeof(key), &id, sizeof(id), BPF_ANY))
		return false;
	bool known = false;
	for (auto &w : watched_)
		known |= (w.first == kdev && w.second == ino);
	if (!known)
		watched_.emplace_back(kdev, ino);
	rebuild_bloom();
	return true;
}

size_t Loader::watched_count() const
{
	return watched_.size();
}

void Loader::rebuild_bloom()
{
	kt_watch_filter f{};
	f.count = static_cast<uint32_t>(watched_.size());
	for (auto &[dev, ino] : watched_) {
		uint64_t bit = kt_bloom_bit(ino);
		f.bloom[bit >> 6] |= 1ULL << (bit & 63);
	}
	// The hash map entry is in place before its bit appears, so a racing
	// open is never missed.
	uint32_t zero = 0;
	bpf_map__update_elem(skel_->maps.watch_filter, &zero, sizeof(zero), &f, sizeof(f), BPF_ANY);
}

std::optional<kt_fd_state> Loader::take_fd_state(pid_t tgid, int fd, const kt_fd_open *file)
{
	if (!skel_)
		return std::nullopt;
	bpf_map *fds = skel_->maps.fds;
	kt_fd_key key{static_cast<uint32_t>(tgid), fd};
	kt_fd_state st{};
	if (bpf_map__lookup_elem(fds, &key, sizeof(key), &st, sizeof(st), 0))
		return std::nullopt;
	if (file && !is_open(st, *file))
		return std::nullopt; // a newer open's, since: not ours to take
	// Taken in one step (a hash map's lookup-and-delete, 5.14): whoever
	// deletes the entry reports it, the probes (an open or read that found
	// the number reused) or we. ENOENT: the probes did.
	if (bpf_map__lookup_and_delete_elem(fds, &key, sizeof(key), &st, sizeof(st), 0))
		return std::nullopt;
	if (!file || is_open(st, *file))
		return st;
	// Replaced between the two looks (microseconds): the newer open's goes
	// back. Its reads in between are not summed.
	bpf_map__update_elem(fds, &key, sizeof(key), &st, sizeof(st), BPF_NOEXIST);
	return std::nullopt;
}

std::vector<kt_fd_key> Loader::fd_state_keys() const
{
	std::vector<kt_fd_key> keys;
	if (!skel_)
		return keys;
	kt_fd_key key{}, next{};
	const void *prev = nullptr;
	while (bpf_map__get_next_key(skel_->maps.fds, prev, &next, sizeof(next)) == 0) {
		keys.push_back(next);
		key = next;
		prev = &key;
	}
	return keys;
}

KernelStats Loader::stats() const
{
	KernelStats s;
	if (!skel_)
		return s;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return s;
	std::vector<uint64_t> per_cpu(ncpu);
	for (uint32_t i = 0; i < KT_STAT_MAX; i++) {
		if (bpf_map__lookup_elem(skel_->maps.kt_stats, &i, sizeof(i), per_cpu.data(),
		                         per_cpu.size() * sizeof(uint64_t), 0))
			continue;
		for (uint64_t c : per_cpu)
			s.v[i] += c;
	}
	return s;
}

} // namespace keytrail
