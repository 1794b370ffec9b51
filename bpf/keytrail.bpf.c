// SPDX-License-Identifier: GPL-2.0
// KeyTrail's kernel side: process lifecycle for every process, file and
// network activity for tracked processes only. An untracked process pays a
// look at its own task_struct per hooked syscall (is there any task storage?)
// and, on a successful open while inodes are watched, an inode lookup.
// Opens and reads are hooked at their exit only (their arguments read from
// the registers the syscall saved), so a process pays one program per open
// or read, not two. Classification, identity and policy live in userspace.
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "core_fixes.bpf.h"
#include "keytrail/abi.h"

char LICENSE[] SEC("license") = "GPL";

#define EINPROGRESS 115
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_UDP 17
#define O_WRONLY 01
#define O_RDWR 02
#define O_ACCMODE 03
#define O_PATH 010000000
#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_PATH 0x4000
#define O_CREAT 0100
#define O_TRUNC 01000
#define S_IFMT 00170000
#define S_IFREG 0100000

// Set before load: the agent's own tgid (never tracked, never reported).
const volatile __u32 agent_tgid = 0;

// @brief the tracked set: task-local storage on each tracked process's group
// leader. An untracked process is recognised by a NULL task->bpf_storage in
// its own (hot) task_struct; a pid bitmap in .bss cost ~27 ns more per
// syscall here, because with KPTI and no PCID every kernel entry flushes the
// TLB and vmalloc'ed map memory is always a miss. Storage also dies with the
// task, so a reused pid can never inherit tracking.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kt_task_mark);
} tracked SEC(".maps");

// @brief the same set by tgid, written with every mark and removed at exit:
// consulted only when a task with storage fails the lookup above (see
// leader_tracked). A live tracked process is never evicted unless more than
// max_entries are tracked at once.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); // tgid
	__type(value, struct kt_task_mark);
} tracked_tgids SEC(".maps");

// @brief how many inodes are watched, and a bloom filter over them: an
// untracked open reaches the watched hash map only when its inode passes.
// One small value, so one page: with KPTI and no PCID every kernel entry
// flushes the TLB and any map memory is a miss (~30 ns here); this is the one
// such load every successful open on the host pays.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_watch_filter);
} watch_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); // resized by the loader before load
} events SEC(".maps");

// @brief per-CPU counters, enum kt_stat.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kt_stats SEC(".maps");

// @brief watched secret files, filled by userspace. Value: userspace's id.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct kt_inode_key);
	__type(value, __u32);
} watched SEC(".maps");

// @brief open regular files of tracked processes, keyed by (tgid, fd):
// reads are summed here and reported once the fd is seen closed. There is
// no close hook (every process on the host would pay for it): the probes
// report an entry when its number names another file at an open or a
// read, and userspace takes the rest at exec, at exit, and when
// /proc/PID/fd shows the fd closed. Each entry holds its open's time, so a
// reopen of the same file under the same number is another entry.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct kt_fd_key);
	__type(value, struct kt_fd_state);
} fds SEC(".maps");

// @brief new TCP sockets of tracked processes whose first write is still to
// be captured (SNI / HTTP Host), with the socket they were: a number closed
// before its first write may name another file or socket by then (there is
// no close hook to forget it). LRU: entries of sockets closed unwritten and
// of processes gone are evicted, never fill the map.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct kt_fd_key);
	__type(value, __u64);
} fresh_socks SEC(".maps");

// UDP destinations each tracked process has sent to without connecting
// (sendto/sendmsg with an address): one connect record per destination.
struct udp_dest {
	__u32 tgid;
	__u16 port;
	__u16 family;
	__u8 addr[16];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct udp_dest);
	__type(value, __u8);
} udp_dests SEC(".maps");

// @brief local ports of tracked processes' UDP sockets connected to port 53
// (their resolver's queries), to the tgid: the ingress hook copies only the
// answers those sockets receive, so a name can be checked against the
// address it was resolved to. LRU: a closed socket's entry ages out.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);
	__type(value, __u32);
} dns_ports SEC(".maps");

// Opcodes each tracked process has submitted (bit per IORING_OP_*): one
// record per process and opcode, however busy its ring.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   // tgid
	__type(value, __u64); // opcodes seen
} io_uring_ops SEC(".maps");

struct pending_io {
	__s32 fd;
	__u16 family;
	__u16 port;
	__u8 addr[16];
};

// @brief a tracked thread inside connect(): the address it asked for.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending_io);
} pending_io SEC(".maps");

// @brief per-CPU scratch for records too large for the BPF stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_exec_event);
} exec_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_open_event);
} open_scratch SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&kt_stats, &idx);
	if (v)
		(*v)++;
}

// The mark of a tracked process's leader, NULL if untracked.
static __always_inline struct kt_task_mark *leader_mark(struct task_struct *leader)
{
	struct kt_task_mark *m;
	__u32 tgid;

	if (!leader || !leader->bpf_storage)
		return NULL; // the common case: no BPF task storage at all
	m = bpf_task_storage_get(&tracked, leader, 0, 0);
	if (m)
		return m;
	// The lookup also fails while the kernel's per-CPU task storage lock is
	// held by a preempted task on this CPU (task frees under process churn):
	// ask the tgid set.
	tgid = leader->tgid;
	m = bpf_map_lookup_elem(&tracked_tgids, &tgid);
	if (m)
		stat_inc(KT_STAT_TRACK_BUSY);
	return m;
}

static __always_inline bool leader_tracked(struct task_struct *leader)
{
	return leader_mark(leader) != NULL;
}

static __always_inline struct kt_task_mark *current_mark(void)
{
	return leader_mark(bpf_get_current_task_btf()->group_leader);
}

static __always_inline bool current_tracked(void)
{
	return current_mark() != NULL;
}

static __always_inline void track_leader(struct task_struct *leader, __u32 reason)
{
	struct kt_task_mark mark = {.reason = reason};
	__u32 tgid = leader->tgid;

	bpf_map_update_elem(&tracked_tgids, &tgid, &mark, BPF_ANY);
	if (!bpf_task_storage_get(&tracked, leader, &mark, BPF_LOCAL_STORAGE_GET_F_CREATE)) {
		// Not tracked: exit would not clean the entry (a reused pid
		// would inherit it).
		bpf_map_delete_elem(&tracked_tgids, &tgid);
		stat_inc(KT_STAT_TRACK_FAIL);
	}
}

// When a record wakes the agent. A wakeup is an irq_work + IPI (a VM exit
// here), paid by the process the record is about, plus a sleep and wake of
// the agent's main thread.
//  - Any record, once wakeup_bytes (set before load) are waiting.
//  - Exec, fork and exit of untracked processes (every process on the
//    host) and stdio captures, otherwise never (kt_record_prompt): ~15 us
//    per exec/exit in the probe, ~8 us per tool call (keytrail-bench-mcp);
//    the ring keeps them in order and the agent's poll picks them up.
//  - Other records, those of tracked processes (their exec, fork and exit
//    too) and opens of watched files, at most once per wakeup_interval_ns
//    host-wide: a sparse open is handled at once, while the process that
//    made it is still there to be read through /proc, and a flood is read
//    in batches. With the kernel's adaptive wakeup a tracked flood woke the
//    agent every 6 records; measured (412k records): the workload's CPU
//    2.8 s -> 1.7 s, the agent's 1.9 s -> 1.1 s (at 1 ms; 4 ms took another
//    4% off the agent's CPU).
const volatile __u64 wakeup_bytes = 0;
const volatile __u64 wakeup_interval_ns = 4000000;
__u64 last_wakeup_ns = 0; // racy across CPUs: at worst an extra wakeup

static __always_inline __u64 wakeup_flag(const struct kt_event_hdr *h)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	if (!kt_record_prompt(h->type, h->flags))
		return BPF_RB_NO_WAKEUP;
	__u64 now = bpf_ktime_get_ns();
	if (now - last_wakeup_ns < wakeup_interval_ns)
		return BPF_RB_NO_WAKEUP;
	last_wakeup_ns = now;
	return BPF_RB_FORCE_WAKEUP;
}

// Sends a record built in a map value; counts it either way.
static __always_inline void output(void *rec, __u32 size, __u32 type)
{
	if (bpf_ringbuf_output(&events, rec, size, wakeup_flag(rec)))
		stat_inc(KT_STAT_DROP_BASE + type);
	else
		stat_inc(KT_STAT_EVENTS);
}

static __always_inline void *reserve(__u32 size, __u32 type)
{
	void *rec = bpf_ringbuf_reserve(&events, size, 0);
	if (!rec)
		stat_inc(KT_STAT_DROP_BASE + type);
	return rec;
}

static __always_inline void submit(void *rec, __u32 type)
{
	bpf_ringbuf_submit(rec, wakeup_flag(rec));
	stat_inc(KT_STAT_EVENTS);
}

static __always_inline void fill_hdr(struct kt_event_hdr *h, __u32 type, __u32 size,
                                     struct task_struct *task)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	__u32 tgid = pid_tgid >> 32;

	h->type = type;
	h->size = size;
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->start_time = task_start_boottime(BPF_CORE_READ(task, group_leader));
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->pid = tgid;
	h->tid = (__u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->flags = current_tracked() ? KT_F_TRACKED : 0;
	if (BPF_CORE_READ(task, signal, tty))
		h->flags |= KT_F_TTY;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline struct file *fd_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **table;
	struct file *f = NULL;

	if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	table = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &table[fd]);
	return f;
}

static __always_inline struct kt_watch_filter *watching(void)
{
	__u32 zero = 0;
	struct kt_watch_filter *f = bpf_map_lookup_elem(&watch_filter, &zero);
	return f && f->count ? f : NULL;
}

static __always_inline bool bloom_hit(struct kt_watch_filter *f, __u64 ino)
{
	__u64 bit = kt_bloom_bit(ino);
	return f->bloom[(bit >> 6) & (KT_WATCH_BLOOM_WORDS - 1)] & (1ULL << (bit & 63));
}

static __always_inline bool inode_watched(struct kt_watch_filter *f, struct kt_inode_key *k)
{
	return bloom_hit(f, k->ino) && bpf_map_lookup_elem(&watched, k) != NULL;
}

/* ---------------------------------------------------------------- process lifecycle */

// The login session of an exec, as /proc would show it: read now, since a
// person's `cat` is gone before userspace could look.
static __always_inline void session_of(struct task_struct *task, struct kt_exec_event *e)
{
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	e->tty_nr = 0;
	if (tty) {
		// new_encode_dev(tty_devnum(tty))
		__u32 major = BPF_CORE_READ(tty, driver, major);
		__u32 minor = BPF_CORE_READ(tty, driver, minor_start) + BPF_CORE_READ(tty, index);
		e->tty_nr = (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
	}
	// The session leader's pid in the initial namespace: signal->pids[SID].
	struct pid *sid =
	    BPF_CORE_READ(task, signal, pids[bpf_core_enum_value(enum pid_type, PIDTYPE_SID)]);
	e->sid = sid ? BPF_CORE_READ(sid, numbers[0].nr) : 0;
	e->pad = 0;
	e->loginuid = e->sessionid = 0xffffffff;
	if (bpf_core_field_exists(task->sessionid)) {
		e->loginuid = BPF_CORE_READ(task, loginuid.val);
		e->sessionid = BPF_CORE_READ(task, sessionid);
	}
}

// Does filename+argv (data[0..len)) look like an MCP server launch? One
// pass over at most KT_HINT_SCAN bytes for "mcp" or "xtpro" (from
// "contextprotocol"). It closes the window between an MCP server's exec and
// userspace marking it, in which the server could read a secret unseen.
// Userspace confirms with the real rules.
struct hint_scan {
	const char *data; // the exec record's data: filename, then argv
	__u32 len;
	bool found;
	const struct kt_hint_words *rules; // null or empty: no config rules
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_hint_words);
} hint_words SEC(".maps");

static long hint_step(__u32 i, struct hint_scan *h)
{
	const char *d = h->data;
	if (i + 2 >= h->len)
		return 1;
	char x = d[i & (KT_HINT_SCAN - 1)];
	char y = d[(i + 1) & (KT_HINT_SCAN - 1)];
	char z = d[(i + 2) & (KT_HINT_SCAN - 1)];
	if (x == 'm' && y == 'c' && z == 'p') {
		h->found = true;
		return 1;
	}
	if (h->rules && i + 3 < h->len) {
		__u32 w = (__u8)x | (__u8)y << 8 | (__u8)z << 16 |
		          (__u32)(__u8)d[(i + 3) & (KT_HINT_SCAN - 1)] << 24;
		__u32 n = h->rules->count;
		for (int k = 0; k < KT_HINT_WORDS; k++) {
			if (k >= n)
				break;
			if (h->rules->words[k] == w) {
				h->found = true;
				return 1;
			}
		}
	}
	// "...contextprotocol": 'x' 't' 'p' is rare enough to confirm.
	if (x == 'x' && y == 't' && z == 'p' && i + 5 < h->len &&
	    d[(i + 3) & (KT_HINT_SCAN - 1)] == 'r' && d[(i + 4) & (KT_HINT_SCAN - 1)] == 'o') {
		h->found = true;
		return 1;
	}
	return 0;
}

// bpf_loop (5.17+) keeps the verifier's work constant; where it is missing
// the loader clears use_exec_hint and this code is dead.
const volatile bool use_exec_hint = true;

static __always_inline bool exec_hint(const char *data, __u32 len)
{
	struct hint_scan h = {.data = data, .len = len > KT_HINT_SCAN ? KT_HINT_SCAN : len};
	__u32 zero = 0;
	if (!use_exec_hint)
		return false;
	h.rules = bpf_map_lookup_elem(&hint_words, &zero);
	if (h.rules && h.rules->count == 0)
		h.rules = NULL; // the common case: one load, then the built-in scan only
	bpf_loop(KT_HINT_SCAN, hint_step, &h, 0);
	return h.found;
}

SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 zero = 0, fn_off, n;
	long r;
	struct kt_exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!e)
		return 0;
	if ((bpf_get_current_pid_tgid() >> 32) == agent_tgid)
		return 0;

	fill_hdr(&e->hdr, KT_EV_EXEC, 0, task);
	fn_off = ctx->__data_loc_filename & 0xFFFF;
	r = bpf_probe_read_kernel_str(e->data, KT_PATH_MAX, (void *)ctx + fn_off);
	n = r > 0 ? r - 1 : 0; // without the NUL
	e->filename_len = n;

	__u64 arg_start = BPF_CORE_READ(task, mm, arg_start);
	__u64 arg_end = BPF_CORE_READ(task, mm, arg_end);
	__u32 len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > KT_ARGS_MAX) {
		len = KT_ARGS_MAX;
		e->hdr.flags |= KT_F_TRUNCATED;
		stat_inc(KT_STAT_PATH_TRUNCATED);
	}
	n &= KT_PATH_MAX - 1;
	if (len && bpf_probe_read_user(&e->data[n], len, (void *)arg_start)) {
		e->hdr.flags |= KT_F_READ_FAIL;
		stat_inc(KT_STAT_READ_FAIL);
		len = 0;
	}
	e->args_len = len;
	e->env_len = 0;
	session_of(task, e);
	if (!(e->hdr.flags & KT_F_TRACKED) && exec_hint(e->data, n + len)) {
		// After exec the task leads its thread group.
		track_leader(bpf_get_current_task_btf(), KT_TRACK_EXEC_HINT);
		e->hdr.flags |= KT_F_TRACKED | KT_F_PROVISIONAL;
	}
	__u32 off = (n + len) & (KT_PATH_MAX + KT_ARGS_MAX - 1);
	__u32 env = 0;
	if (e->hdr.flags & KT_F_TRACKED) {
		__u64 env_start = BPF_CORE_READ(task, mm, env_start);
		__u64 env_end = BPF_CORE_READ(task, mm, env_end);
		env = env_end > env_start ? env_end - env_start : 0;
		if (env > KT_ENV_MAX) {
			env = KT_ENV_MAX;
			e->hdr.flags |= KT_F_TRUNCATED;
			stat_inc(KT_STAT_PATH_TRUNCATED);
		}
		if (env && bpf_probe_read_user(&e->data[off], env, (void *)env_start)) {
			e->hdr.flags |= KT_F_READ_FAIL;
			stat_inc(KT_STAT_READ_FAIL);
			env = 0;
		}
		e->env_len = env;
	}
	__u32 size = offsetof(struct kt_exec_event, data) + off + env;
	if (size > sizeof(*e))
		return 0; // unreachable; bounds the size for the verifier
	e->hdr.size = size;
	output(e, size, KT_EV_EXEC);
	return 0;
}

// tp_btf for typed task pointers: the classic tracepoint gives no tgid, and
// task storage needs a BTF task pointer.
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct kt_fork_event *e;

	if (child->tgid == parent->tgid || !leader_tracked(parent->group_leader))
		return 0;                   // a new thread, or an untracked parent
	track_leader(child, KT_TRACK_FORK); // inherited with no userspace round trip
	e = reserve(sizeof(*e), KT_EV_FORK);
	if (!e)
		return 0;
	fill_hdr(&e->hdr, KT_EV_FORK, sizeof(*e), (struct task_struct *)bpf_get_current_task());
	e->child_pid = child->tgid;
	e->pad = 0;
	e->child_start_time = task_start_boottime(child);
	submit(e, KT_EV_FORK);
	return 0;
}

SEC("tp/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct kt_exit_event *e;

	// Fires per thread; the process is gone when the last one leaves
	// (signal->live is decremented before the tracepoint).
	if (BPF_CORE_READ(task, signal, live.counter) != 0 || tgid == agent_tgid)
		return 0;
	if (current_tracked()) { // a reused pid starts afresh
		bpf_map_delete_elem(&io_uring_ops, &tgid);
		bpf_map_delete_elem(&tracked_tgids, &tgid);
	}
	e = reserve(sizeof(*e), KT_EV_EXIT);
	if (e) {
		fill_hdr(&e->hdr, KT_EV_EXIT, sizeof(*e), task);
		e->exit_code = BPF_CORE_READ(task, exit_code);
		e->pad = 0;
		submit(e, KT_EV_EXIT);
	}
	return 0; // the task storage goes away with the task
}

/* ---------------------------------------------------------------- files */

// Records the fd of a regular file so its reads are summed.
static __always_inline void remember_fd(__u32 tgid, int fd, struct kt_inode_key *ik,
                                        __u64 opened_ns)
{
	struct kt_fd_key k = {.tgid = tgid, .fd = fd};
	struct kt_fd_state st = {.dev = ik->dev, .ino = ik->ino, .opened_ns = opened_ns};
	if (bpf_map_update_elem(&fds, &k, &st, BPF_ANY))
		stat_inc(KT_STAT_PENDING_FULL);
}

// open flags with the access mode the kernel gave the file (f_mode), not the
// one the process asked for in memory another thread can rewrite (openat2's
// struct open_how): userspace decides from it whether the file is readable.
static __always_inline __u32 kernel_access(__u32 flags, struct file *f)
{
	__u32 mode = BPF_CORE_READ(f, f_mode);
	flags &= ~(__u32)(O_ACCMODE | O_PATH);
	if (mode & FMODE_PATH)
		return flags | O_PATH;
	if ((mode & FMODE_READ) && (mode & FMODE_WRITE))
		return flags | O_RDWR;
	return flags | ((mode & FMODE_WRITE) ? O_WRONLY : 0);
}

// A close record for an fd's summed reads, sent by whoever removes the
// entry (userspace takes entries too). The file was closed before now: its
// number names another file, or none.
static __always_inline void report_close(struct kt_fd_key *k, struct kt_fd_state *entry,
                                         struct task_struct *task)
{
	struct kt_fd_state st = *entry;

	if (bpf_map_delete_elem(&fds, k))
		return;
	struct kt_close_event *e = reserve(sizeof(*e), KT_EV_CLOSE);
	if (e) {
		fill_hdr(&e->hdr, KT_EV_CLOSE, sizeof(*e), task);
		e->fd = k->fd;
		e->reason = KT_CLOSE_CLOSE;
		e->dev = st.dev;
		e->ino = st.ino;
		e->bytes_read = st.bytes_read;
		e->reads = st.reads;
		submit(e, KT_EV_CLOSE);
	}
}

// A tracked process's open*() arguments, read at the syscall's exit from the
// registers it saved on entry: one program per open for every process on
// the host, not two. The path is copied from the process's memory after the
// kernel's own copy, so a second thread that rewrites it in between can
// change the path shown, never the inode (dev, ino and the fd are the
// kernel's, and userspace names the file from the fd as well).
static __always_inline void open_args(struct kt_open_event *e, __u32 syscall,
                                      struct task_struct *task)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	const char *path;
	long n;

	e->hdr.flags = 0;
	e->syscall = syscall;
	e->dirfd = -100; // AT_FDCWD
	if (syscall == KT_SYS_OPENAT || syscall == KT_SYS_OPENAT2) {
		e->dirfd = PT_REGS_PARM1_CORE_SYSCALL(regs);
		path = (const char *)PT_REGS_PARM2_CORE_SYSCALL(regs);
	} else {
		path = (const char *)PT_REGS_PARM1_CORE_SYSCALL(regs);
	}
	if (syscall == KT_SYS_OPENAT) {
		e->flags = PT_REGS_PARM3_CORE_SYSCALL(regs);
		e->mode = PT_REGS_PARM4_CORE_SYSCALL(regs);
	} else if (syscall == KT_SYS_OPEN) {
		e->flags = PT_REGS_PARM2_CORE_SYSCALL(regs);
		e->mode = PT_REGS_PARM3_CORE_SYSCALL(regs);
	} else if (syscall == KT_SYS_CREAT) {
		e->flags = O_CREAT | O_WRONLY | O_TRUNC;
		e->mode = PT_REGS_PARM2_CORE_SYSCALL(regs);
	} else {
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)PT_REGS_PARM3_CORE_SYSCALL(regs));
		e->flags = how.flags;
		e->mode = how.mode;
	}
	n = bpf_probe_read_user_str(e->path, KT_PATH_MAX, path);
	if (n < 0) {
		e->hdr.flags |= KT_F_READ_FAIL;
		stat_inc(KT_STAT_READ_FAIL);
		n = 1;
	} else if (n == KT_PATH_MAX) {
		e->hdr.flags |= KT_F_TRUNCATED;
		stat_inc(KT_STAT_PATH_TRUNCATED);
	}
	e->path_len = n > 0 ? n - 1 : 0;
}

static __always_inline int open_exit(struct trace_event_raw_sys_exit *ctx, __u32 syscall)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	struct task_struct *task;
	struct kt_inode_key ik = {};
	struct kt_open_event *e;
	struct kt_watch_filter *filter;
	struct file *f = NULL;
	bool tracked, watched_hit = false, regular = false;
	long fd = ctx->ret;

	tracked = current_tracked();
	filter = fd >= 0 ? watching() : NULL;
	if (!tracked && !filter)
		return 0; // the common case for every untracked process

	task = bpf_get_current_task_btf();
	if (fd >= 0) {
		f = fd_file(task, fd);
		if (f) {
			struct inode *inode = BPF_CORE_READ(f, f_inode);
			ik.ino = BPF_CORE_READ(inode, i_ino);
			if (!tracked && (!filter || !bloom_hit(filter, ik.ino)))
				return 0; // an untracked open of a file nobody watches
			ik.dev = BPF_CORE_READ(inode, i_sb, s_dev);
			regular = (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFREG;
			watched_hit = filter && inode_watched(filter, &ik);
		}
	}
	// The agent reads watched files itself (to fingerprint them): it never
	// follows itself.
	if (!tracked && (!watched_hit || tgid == agent_tgid))
		return 0;
	if (tracked && fd >= 0) {
		// The kernel gave this number again: what it named before was closed.
		struct kt_fd_key k = {.tgid = tgid, .fd = fd};
		struct kt_fd_state *old = bpf_map_lookup_elem(&fds, &k);
		if (old)
			report_close(&k, old, task);
	}
	e = bpf_map_lookup_elem(&open_scratch, &zero);
	if (!e)
		return 0;
	if (tracked) {
		open_args(e, syscall, task);
	} else {
		// An untracked process opened a watched secret file: report it and
		// follow the process from now on.
		track_leader(task->group_leader, KT_TRACK_WATCHED);
		e->hdr.flags = 0;
		e->syscall = 0;
		e->dirfd = -1;
		e->flags = 0;
		e->mode = 0;
		e->path_len = 0; // userspace names it from the watched table
	}
	__u32 extra = e->hdr.flags;
	fill_hdr(&e->hdr, KT_EV_OPEN, 0, task);
	e->hdr.flags |= extra | (watched_hit ? KT_F_WATCHED : 0);
	e->fd = fd;
	e->dev = ik.dev;
	e->ino = ik.ino;
	if (f)
		e->flags = kernel_access(e->flags, f);
	if (fd >= 0 && regular)
		remember_fd(tgid, fd, &ik, e->hdr.ts_ns);

	__u32 size = offsetof(struct kt_open_event, path) + (e->path_len & (KT_PATH_MAX - 1));
	e->hdr.size = size;
	output(e, size, KT_EV_OPEN);
	return 0;
}

SEC("tp/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx, KT_SYS_OPENAT);
}
SEC("tp/syscalls/sys_exit_open")
int exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx, KT_SYS_OPEN);
}
SEC("tp/syscalls/sys_exit_creat")
int exit_creat(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx, KT_SYS_CREAT);
}
SEC("tp/syscalls/sys_exit_openat2")
int exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return open_exit(ctx, KT_SYS_OPENAT2);
}

// Sends what a stdio MCP server read from fd 0 or writes to fd 1: the
// whole call up to KT_STDIO_MAX bytes, else its head and tail (abi.h).
// Only processes userspace marked KT_MARK_STDIO get here.
static __always_inline void stdio_capture(__u32 dir, const char *buf, __s64 total)
{
	struct kt_stdio_event *e;
	__u32 head = total, tail = 0;

	if (total <= 0)
		return;
	e = reserve(sizeof(*e), KT_EV_STDIO);
	if (!e)
		return;
	fill_hdr(&e->hdr, KT_EV_STDIO, sizeof(*e), (struct task_struct *)bpf_get_current_task());
	if (total > KT_STDIO_MAX) {
		head = KT_STDIO_HEAD;
		tail = KT_STDIO_MAX - KT_STDIO_HEAD;
		e->hdr.flags |= KT_F_TRUNCATED;
		stat_inc(KT_STAT_STDIO_CUT);
	}
	if (head > KT_STDIO_MAX)
		head = KT_STDIO_MAX;
	if (bpf_probe_read_user(e->data, head, buf) ||
	    (tail && bpf_probe_read_user(e->data + KT_STDIO_HEAD, KT_STDIO_MAX - KT_STDIO_HEAD,
	                                 buf + total - (KT_STDIO_MAX - KT_STDIO_HEAD)))) {
		e->hdr.flags |= KT_F_READ_FAIL;
		stat_inc(KT_STAT_READ_FAIL);
		head = tail = 0;
	}
	e->dir = dir;
	e->len = head + tail;
	e->total = total;
	e->head = head;
	e->pad = 0;
	submit(e, KT_EV_STDIO);
}

static __always_inline void stdio_capture_iov(__u32 dir, const struct iovec *iov, __s64 total)
{
	struct iovec first = {};
	if (bpf_probe_read_user(&first, sizeof(first), iov)) {
		stat_inc(KT_STAT_READ_FAIL);
		return;
	}
	if (total > (__s64)first.iov_len) {
		stat_inc(KT_STAT_STDIO_CUT); // the later iovecs are not sent
		total = first.iov_len;
	}
	stdio_capture(dir, first.iov_base, total);
}

// A tracked process reading through an fd the open above did not record:
// one it dup'd, or inherited from its parent. The file is watched (checked
// by the caller): the fd is reported as an open of it (syscall 0, no path)
// and its reads are summed from here on. Reported once: the entry is made
// only if none is there (another thread of the process may be adopting it),
// and a full map is counted, not reported again and again.
static __always_inline struct kt_fd_state *adopt_fd(struct task_struct *task, struct kt_fd_key *k,
                                                    struct kt_inode_key *ik, struct file *f)
{
	struct kt_fd_state fresh = {
	    .dev = ik->dev, .ino = ik->ino, .opened_ns = bpf_ktime_get_boot_ns()};
	struct kt_open_event *e;
	__u32 zero = 0;

	if (bpf_map_update_elem(&fds, k, &fresh, BPF_NOEXIST)) {
		struct kt_fd_state *st = bpf_map_lookup_elem(&fds, k);
		if (!st)
			stat_inc(KT_STAT_PENDING_FULL);
		return st;
	}
	e = bpf_map_lookup_elem(&open_scratch, &zero);
	if (e) {
		fill_hdr(&e->hdr, KT_EV_OPEN, 0, task);
		e->hdr.ts_ns = fresh.opened_ns;
		e->hdr.flags |= KT_F_WATCHED;
		e->syscall = 0;
		e->dirfd = -1;
		e->flags = kernel_access(0, f);
		e->mode = 0;
		e->path_len = 0; // userspace names it from the watched table
		e->fd = k->fd;
		e->dev = ik->dev;
		e->ino = ik->ino;
		e->hdr.size = offsetof(struct kt_open_event, path);
		output(e, offsetof(struct kt_open_event, path), KT_EV_OPEN);
	}
	return bpf_map_lookup_elem(&fds, k);
}

// Reads are seen at their exit only: one program per read for every process
// on the host, not two. The fd and buffer come from the registers the
// syscall saved on entry (bpf_task_pt_regs), which it leaves as they were;
// arm64 keeps the first argument in orig_x0 (libbpf's _SYSCALL accessors).
// stdio: 0 for pread*/preadv (never stdio), READ_STDIO_BUF for read,
// READ_STDIO_IOV for readv.
#define READ_STDIO_BUF 1
#define READ_STDIO_IOV 2
static __always_inline int read_exit(struct trace_event_raw_sys_exit *ctx, int stdio)
{
	struct kt_task_mark *m = current_mark();
	struct kt_watch_filter *filter;
	struct kt_inode_key ik = {};
	struct task_struct *task;
	struct kt_fd_state *st;
	struct pt_regs *regs;
	struct inode *inode;
	struct file *f;
	long ret = ctx->ret;

	if (!m || ret <= 0) // untracked: nothing more
		return 0;
	task = bpf_get_current_task_btf();
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	struct kt_fd_key k = {.tgid = bpf_get_current_pid_tgid() >> 32,
	                      .fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs)};
	if (stdio && k.fd == 0 && (m->flags & KT_MARK_STDIO)) {
		__u64 buf = PT_REGS_PARM2_CORE_SYSCALL(regs);
		if (stdio == READ_STDIO_IOV)
			stdio_capture_iov(KT_STDIO_IN, (const struct iovec *)buf, ret);
		else
			stdio_capture(KT_STDIO_IN, (const char *)buf, ret);
		return 0;
	}
	st = bpf_map_lookup_elem(&fds, &k);
	filter = watching();
	if (!st && !filter)
		return 0;
	f = fd_file(task, k.fd);
	if (!f)
		return 0;
	inode = BPF_CORE_READ(f, f_inode);
	ik.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	ik.ino = BPF_CORE_READ(inode, i_ino);
	if (st && (st->dev != ik.dev || st->ino != ik.ino)) {
		// The number names another file now (dup2/dup3 over it,
		// close_range, an exec's close-on-exec): the old file was closed.
		report_close(&k, st, task);
		st = NULL;
	}
	if (!st) {
		if (!filter || !inode_watched(filter, &ik))
			return 0;
		st = adopt_fd(task, &k, &ik, f);
	}
	if (st) {
		__sync_fetch_and_add(&st->bytes_read, ret);
		__sync_fetch_and_add(&st->reads, 1);
	}
	return 0;
}

SEC("tp/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return read_exit(ctx, READ_STDIO_BUF);
}
SEC("tp/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return read_exit(ctx, READ_STDIO_IOV);
}
SEC("tp/syscalls/sys_exit_pread64")
int exit_pread64(struct trace_event_raw_sys_exit *ctx)
{
	return read_exit(ctx, 0);
}
SEC("tp/syscalls/sys_exit_preadv")
int exit_preadv(struct trace_event_raw_sys_exit *ctx)
{
	return read_exit(ctx, 0);
}

/* ---------------------------------------------------------------- network */

// A user sockaddr's family, and for IPv4/IPv6 its port (host order) and
// address (IPv4 in the first 4 bytes). 0 if it cannot be read.
static __always_inline __u16 read_sockaddr(const void *sa, __u16 *port, __u8 addr[16])
{
	__u16 family = 0;
	if (!sa || bpf_probe_read_user(&family, sizeof(family), sa))
		return 0;
	if (family == AF_INET) {
		struct sockaddr_in in = {};
		bpf_probe_read_user(&in, sizeof(in), sa);
		*port = bpf_ntohs(in.sin_port);
		__builtin_memcpy(addr, &in.sin_addr.s_addr, 4);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 in6 = {};
		bpf_probe_read_user(&in6, sizeof(in6), sa);
		*port = bpf_ntohs(in6.sin6_port);
		__builtin_memcpy(addr, &in6.sin6_addr, 16);
	}
	return family;
}

SEC("tp/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_io p = {.fd = ctx->args[0]};
	const void *sa = (const void *)ctx->args[1];

	if (!current_tracked())
		return 0;
	p.family = read_sockaddr(sa, &p.port, p.addr);
	if (bpf_map_update_elem(&pending_io, &id, &p, BPF_ANY))
		stat_inc(KT_STAT_PENDING_FULL);
	return 0;
}

SEC("tp/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct kt_connect_event *e;
	struct pending_io *p;
	struct socket *sock = NULL;
	struct file *f;
	__u16 type = 0, lport = 0;

	if (!current_tracked())
		return 0;
	p = bpf_map_lookup_elem(&pending_io, &id);
	if (!p)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	f = fd_file(task, p->fd);
	if (f) {
		sock = BPF_CORE_READ(f, private_data);
		type = BPF_CORE_READ(sock, type);
		lport = BPF_CORE_READ(sock, sk, __sk_common.skc_num);
	}
	// The resolver's socket: its answers are worth keeping (dns_answer).
	if (type == SOCK_DGRAM && p->port == 53 && ctx->ret == 0 && lport) {
		__u32 tgid = id >> 32;
		bpf_map_update_elem(&dns_ports, &lport, &tgid, BPF_ANY);
	}
	e = reserve(sizeof(*e), KT_EV_CONNECT);
	if (e) {
		fill_hdr(&e->hdr, KT_EV_CONNECT, sizeof(*e), task);
		e->fd = p->fd;
		e->ret = ctx->ret;
		e->family = p->family;
		e->port = p->port;
		e->sock_type = type;
		e->lport = lport;
		__builtin_memcpy(e->addr, p->addr, sizeof(e->addr));
		submit(e, KT_EV_CONNECT);
	}
	// Every Node fetch connects non-blocking: EINPROGRESS is an attempt. A
	// unix stream socket may be a local proxy's (its first line: CONNECT).
	if (type == SOCK_STREAM &&
	    (p->family == AF_INET || p->family == AF_INET6 || p->family == AF_UNIX) &&
	    (ctx->ret == 0 || ctx->ret == -EINPROGRESS)) {
		struct kt_fd_key k = {.tgid = id >> 32, .fd = p->fd};
		__u64 was = (__u64)sock;
		if (bpf_map_update_elem(&fresh_socks, &k, &was, BPF_ANY))
			stat_inc(KT_STAT_PENDING_FULL);
	}
	bpf_map_delete_elem(&pending_io, &id);
	return 0;
}

// Captures the first bytes written on a fresh TCP socket (TLS ClientHello or
// HTTP request line), whichever of the four write calls the runtime uses:
// Node uses write/writev, Python send(to), Go write, glibc's curl sendmsg.
static __always_inline int first_write(int fd, const void *buf, __u64 len, __u32 syscall)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct kt_fd_key k = {.tgid = id >> 32, .fd = fd};
	struct kt_payload_event *e;
	struct file *f;
	__u64 *was;
	__u32 n;

	was = bpf_map_lookup_elem(&fresh_socks, &k);
	if (!was)
		return 0;
	f = fd_file((struct task_struct *)bpf_get_current_task(), fd);
	if (!f || (__u64)BPF_CORE_READ(f, private_data) != *was) {
		// Closed unwritten: the number names another file now.
		bpf_map_delete_elem(&fresh_socks, &k);
		return 0;
	}
	bpf_map_delete_elem(&fresh_socks, &k);
	e = reserve(sizeof(*e), KT_EV_PAYLOAD);
	if (!e)
		return 0;
	fill_hdr(&e->hdr, KT_EV_PAYLOAD, sizeof(*e), (struct task_struct *)bpf_get_current_task());
	n = len > KT_PAYLOAD_MAX ? KT_PAYLOAD_MAX : len;
	if (bpf_probe_read_user(e->data, n, buf)) {
		e->hdr.flags |= KT_F_READ_FAIL;
		stat_inc(KT_STAT_READ_FAIL);
		n = 0;
	}
	e->fd = fd;
	e->syscall = syscall;
	e->len = n;
	e->pad = 0;
	submit(e, KT_EV_PAYLOAD);
	return 0;
}

static __always_inline int first_write_iov(int fd, const struct iovec *iov, __u32 syscall)
{
	struct iovec first = {};
	if (bpf_probe_read_user(&first, sizeof(first), iov))
		return 0;
	return first_write(fd, first.iov_base, first.iov_len, syscall);
}

SEC("tp/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	struct kt_task_mark *m = current_mark();

	if (!m)
		return 0;
	// Each argument read once, after the tracked check (untracked processes
	// pay nothing for them): clang would otherwise keep a pointer into ctx,
	// which the verifier refuses.
	int fd = ctx->args[0];
	const char *buf = (const char *)ctx->args[1];
	__u64 len = ctx->args[2];
	// Captured at entry: there is no write exit hook, and adding one would
	// cost every process. A partial write on a non-blocking pipe is then
	// sent again from its rest (the parser counts what it cannot frame).
	if (fd == 1 && (m->flags & KT_MARK_STDIO))
		stdio_capture(KT_STDIO_OUT, buf, len);
	return first_write(fd, buf, len, KT_SYS_WRITE);
}

// A datagram sent to an address on an unconnected UDP socket: reported as
// a connect (protocol udp) the first time the process sends there. DNS
// (port 53) is the resolver's, seen by dns_answer.
static __always_inline void udp_send(int fd, const void *sa)
{
	struct udp_dest d = {.tgid = bpf_get_current_pid_tgid() >> 32};
	struct task_struct *task;
	struct kt_connect_event *e;
	struct file *f;
	__u8 one = 1;

	d.family = read_sockaddr(sa, &d.port, d.addr);
	if (d.family != AF_INET && d.family != AF_INET6)
		return;
	if (d.port == 53 || bpf_map_lookup_elem(&udp_dests, &d))
		return;
	task = (struct task_struct *)bpf_get_current_task();
	f = fd_file(task, fd);
	if (!f)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (BPF_CORE_READ(sock, type) != SOCK_DGRAM)
		return;
	bpf_map_update_elem(&udp_dests, &d, &one, BPF_ANY);
	e = reserve(sizeof(*e), KT_EV_CONNECT);
	if (!e)
		return;
	fill_hdr(&e->hdr, KT_EV_CONNECT, sizeof(*e), task);
	e->fd = fd;
	e->ret = 0;
	e->family = d.family;
	e->port = d.port;
	e->sock_type = SOCK_DGRAM;
	e->lport = BPF_CORE_READ(sock, sk, __sk_common.skc_num);
	__builtin_memcpy(e->addr, d.addr, sizeof(e->addr));
	submit(e, KT_EV_CONNECT);
}

SEC("tp/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	if (!current_tracked())
		return 0;
	if (ctx->args[4])
		udp_send(ctx->args[0], (const void *)ctx->args[4]);
	return first_write(ctx->args[0], (const void *)ctx->args[1], ctx->args[2], KT_SYS_SENDTO);
}

SEC("tp/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	struct kt_task_mark *m = current_mark();

	if (!m)
		return 0;
	// As in enter_write: each argument read once, after the tracked check.
	int fd = ctx->args[0];
	const struct iovec *iov = (const struct iovec *)ctx->args[1];
	__u64 iovcnt = ctx->args[2];
	if (fd == 1 && (m->flags & KT_MARK_STDIO)) {
		struct iovec first = {};
		if (iovcnt > 1)
			stat_inc(KT_STAT_STDIO_CUT); // the later iovecs are not sent
		if (bpf_probe_read_user(&first, sizeof(first), iov))
			stat_inc(KT_STAT_READ_FAIL);
		else
			stdio_capture(KT_STDIO_OUT, first.iov_base, first.iov_len);
	}
	return first_write_iov(fd, iov, KT_SYS_WRITEV);
}

SEC("tp/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	struct user_msghdr msg = {};
	if (!current_tracked())
		return 0;
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)ctx->args[1]))
		return 0;
	if (msg.msg_name)
		udp_send(ctx->args[0], msg.msg_name);
	return first_write_iov(ctx->args[0], msg.msg_iov, KT_SYS_SENDMSG);
}

/* ---------------------------------------------------------------- io_uring */

// Fires only for processes that use io_uring (SQPOLL threads belong to the
// submitter's thread group, so the tracked mark is theirs too).
SEC("tp/io_uring/io_uring_submit_req")
int io_uring_submit(struct trace_event_raw_io_uring_submit_req *ctx)
{
	struct task_struct *task;
	struct kt_io_uring_event *e;
	__u32 tgid;
	__u64 bit, *seen, fresh;

	if (!current_tracked())
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	bit = 1ULL << (BPF_CORE_READ(ctx, opcode) & 63);
	seen = bpf_map_lookup_elem(&io_uring_ops, &tgid);
	if (seen) {
		if (*seen & bit)
			return 0;
		__sync_fetch_and_or(seen, bit);
	} else {
		fresh = bit;
		bpf_map_update_elem(&io_uring_ops, &tgid, &fresh, BPF_ANY);
	}
	e = reserve(sizeof(*e), KT_EV_IO_URING);
	if (!e)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	fill_hdr(&e->hdr, KT_EV_IO_URING, sizeof(*e), task);
	e->opcode = BPF_CORE_READ(ctx, opcode);
	e->sq_thread = BPF_CORE_READ(ctx, sq_thread);
	submit(e, KT_EV_IO_URING);
	return 0;
}

/* ---------------------------------------------------------------- DNS answers */

// Every packet the host receives passes here (cgroup v2 root, ingress), so
// the common case is three loads and a return: not UDP from port 53, or not
// to a socket a tracked process's resolver connected. Never drops (always 1).
SEC("cgroup_skb/ingress")
int dns_answer(struct __sk_buff *skb)
{
	__u32 off;
	__u16 family;
	__u8 addr[16] = {};

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_UDP)
			return 1;
		off = ip.ihl * 4;
		family = AF_INET;
		__builtin_memcpy(addr, &ip.saddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_UDP)
			return 1;
		off = sizeof(ip6);
		family = AF_INET6;
		__builtin_memcpy(addr, &ip6.saddr, 16);
	} else {
		return 1;
	}
	struct udphdr udp;
	if (off > 60 || bpf_skb_load_bytes(skb, off, &udp, sizeof(udp)) ||
	    udp.source != bpf_htons(53))
		return 1;
	__u16 lport = bpf_ntohs(udp.dest);
	__u32 *tgid = bpf_map_lookup_elem(&dns_ports, &lport);
	if (!tgid)
		return 1;
	__u32 len = skb->len > off + sizeof(udp) ? skb->len - off - sizeof(udp) : 0;
	if (len > KT_DNS_MAX)
		len = KT_DNS_MAX;
	if (len < 12) // not even a DNS header
		return 1;
	struct kt_dns_event *e = reserve(sizeof(*e), KT_EV_DNS);
	if (!e)
		return 1;
	__builtin_memset(&e->hdr, 0, sizeof(e->hdr));
	e->hdr.type = KT_EV_DNS;
	e->hdr.size = sizeof(*e);
	e->hdr.ts_ns = bpf_ktime_get_boot_ns();
	e->hdr.pid = *tgid;
	e->lport = lport;
	e->family = family;
	__builtin_memcpy(e->addr, addr, sizeof(addr));
	if (bpf_skb_load_bytes(skb, off + sizeof(udp), e->data, len)) {
		e->hdr.flags |= KT_F_READ_FAIL;
		stat_inc(KT_STAT_READ_FAIL);
		len = 0;
	}
	e->len = len;
	submit(e, KT_EV_DNS);
	return 1;
}
