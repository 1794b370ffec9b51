// The kernel <-> userspace ABI: event records the BPF programs write to the
// ring buffer, and the maps userspace fills. Fixed-width types and constants
// only, so both compilers lay it out the same; layout is pinned by
// static_asserts in src/probe/decoder.cpp.
#ifndef KEYTRAIL_ABI_H
#define KEYTRAIL_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

// Bloom filter over watched (dev, inode): untracked processes only reach the
// hash map when their freshly opened inode passes it. Small on purpose: it
// shares one page with the watch count (100 watched files: ~2% of opens
// take the extra hash lookup).
#define KT_WATCH_BLOOM_BITS 4096u
#define KT_WATCH_BLOOM_WORDS (KT_WATCH_BLOOM_BITS / 64)

// The bloom filter's bit for an inode; one definition for both sides. By
// inode number only: an untracked open reads no more of the inode than that
// unless the bit is set.
static inline __u64 kt_bloom_bit(__u64 ino)
{
	return ((ino * 0x9E3779B97F4A7C15ULL) >> 32) & (KT_WATCH_BLOOM_BITS - 1);
}

#define KT_COMM_LEN 16
#define KT_PATH_MAX 4096   // PATH_MAX: a path longer than this is truncated and flagged
#define KT_ARGS_MAX 4096   // argv bytes kept per exec
#define KT_ENV_MAX 8192    // environment bytes kept per exec of a tracked process
#define KT_PAYLOAD_MAX 512 // first bytes written on a new TCP connection
#define KT_DNS_MAX 512     // bytes of a DNS answer kept (the classic UDP limit)
// Bytes kept of each read of fd 0 / write of fd 1 by a stdio MCP server: the
// whole call when it fits, else its first KT_STDIO_HEAD bytes and its last
// KT_STDIO_MAX - KT_STDIO_HEAD. A JSON-RPC message's method, tool name and
// (Python SDK) id come first; the TypeScript SDK writes "jsonrpc" and "id"
// last, and a result's "isError" just before them: the tail keeps those.
#define KT_STDIO_MAX 512
#define KT_STDIO_HEAD 384

enum kt_event_type {
	KT_EV_EXEC = 1,
	KT_EV_FORK = 2,
	KT_EV_EXIT = 3,
	KT_EV_OPEN = 4,
	KT_EV_CLOSE = 5,
	KT_EV_CONNECT = 6,
	KT_EV_PAYLOAD = 7,
	KT_EV_DNS = 8,
	KT_EV_IO_URING = 9,
	KT_EV_STDIO = 10,
	KT_EV_MAX = 11,
};

// Per-CPU counters in the kt_stats map. Drops are counted per event type at
// KT_STAT_DROP_BASE + type, so a lost exec and a lost close read differently.
enum kt_stat {
	KT_STAT_EVENTS = 0,         // records successfully submitted
	KT_STAT_READ_FAIL = 1,      // bpf_probe_read_* failed (record still sent, degraded)
	KT_STAT_PENDING_FULL = 2,   // per-thread or per-fd map full: event not tracked
	KT_STAT_PATH_TRUNCATED = 3, // path or argv longer than the copy bound
	KT_STAT_TRACK_FAIL = 4,     // task storage could not be created: process not tracked
	KT_STAT_TRACK_BUSY = 5,     // task storage lock busy: tracking read from the tgid set
	KT_STAT_STDIO_CUT = 6,      // stdio captures cut to head + tail (the middle not sent)
	KT_STAT_DROP_BASE = 8,      // + enum kt_event_type: ring buffer full
	KT_STAT_MAX = KT_STAT_DROP_BASE + KT_EV_MAX,
};

// Header of every record. Process context is the task that made the call.
struct kt_event_hdr {
	__u32 type;       // enum kt_event_type
	__u32 size;       // bytes of the whole record
	__u64 ts_ns;      // bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME
	__u64 start_time; // group leader's start_boottime (ns): half of the exec_id
	__u64 cgroup_id;  // cgroup v2 id of the task
	__u32 pid;        // tgid
	__u32 tid;        // thread id
	__u32 ppid;       // real parent's tgid
	__u32 uid;
	__u32 gid;
	__u32 flags; // KT_F_*
	char comm[KT_COMM_LEN];
};

#define KT_F_TRACKED (1u << 0)     // the process is in the tracked set
#define KT_F_TTY (1u << 1)         // has a controlling terminal
#define KT_F_WATCHED (1u << 2)     // open of a watched inode
#define KT_F_TRUNCATED (1u << 3)   // a path/argv/payload was cut at its bound
#define KT_F_READ_FAIL (1u << 4)   // some field could not be read
#define KT_F_PROVISIONAL (1u << 5) // exec: tracked by the kernel's name hint, to be confirmed

// Whether a record may wake the agent (bpf/keytrail.bpf.c wakeup_flag, at
// most once per wakeup interval; src/agent/run.cpp looks again soon after
// one): a tracked process's records, and opens of watched files, but not
// stdio captures. Exec, fork and exit of the rest of the host (every
// process) wait for the agent's poll.
static inline int kt_record_prompt(__u32 type, __u32 flags)
{
	if (type == KT_EV_STDIO)
		return 0;
	if (type == KT_EV_EXEC || type == KT_EV_FORK || type == KT_EV_EXIT)
		return (flags & KT_F_TRACKED) != 0;
	return 1;
}

// Exec hint: the kernel tracks a process at exec, before userspace has read
// the record, when its filename or the first KT_HINT_SCAN bytes of argv hold
// "mcp" or "contextprotocol" (@modelcontextprotocol/...). Userspace then
// applies the real rules and untracks it if none match.
#define KT_HINT_SCAN 1024

// The config's tracking rules in the kernel, compactly: the first four
// bytes of each rule's longest literal (from its exe glob or argv regex),
// little endian. An exec whose filename or argv holds one is tracked at
// once, like the built-in hint, and userspace confirms with the full rule.
#define KT_HINT_WORDS 8
struct kt_hint_words {
	__u32 count;
	__u32 words[KT_HINT_WORDS];
};

// The environment is captured only for processes tracked at exec (children
// of MCP servers): they may exit before userspace can read /proc/PID/environ.
// It carries secrets: userspace scans it into fingerprints and writes none of it.
struct kt_exec_event {
	struct kt_event_hdr hdr;
	__u32 filename_len; // bytes at data[0], no NUL
	__u32 args_len;     // NUL-separated argv at data[filename_len]
	__u32 env_len;      // NUL-separated environ at data[filename_len + args_len]
	__u32 tty_nr;       // controlling terminal, encoded as /proc/PID/stat's tty_nr; 0: none
	__u32 loginuid;     // audit login uid; UINT32_MAX: unset or not built in
	__u32 sessionid;    // audit session id; UINT32_MAX: unset or not built in
	__u32 sid;          // POSIX session (its leader's pid, as the agent's namespace sees it)
	__u32 pad;
	char data[KT_PATH_MAX + KT_ARGS_MAX + KT_ENV_MAX];
};

struct kt_fork_event {
	struct kt_event_hdr hdr; // the parent
	__u32 child_pid;
	__u32 pad;
	__u64 child_start_time;
};

struct kt_exit_event {
	struct kt_event_hdr hdr;
	__s32 exit_code; // wait status as the kernel keeps it
	__u32 pad;
};

struct kt_open_event {
	struct kt_event_hdr hdr;
	__s32 dirfd;
	__s32 fd; // result: fd or -errno
	__u32 flags;
	__u32 mode;
	__u64 dev; // kernel dev_t of the inode's superblock (MAJOR << 20 | MINOR)
	__u64 ino;
	__u32 syscall;  // enum kt_open_syscall
	__u32 path_len; // bytes in path, no NUL; 0 for a watched open by an untracked process
	char path[KT_PATH_MAX];
};

enum kt_open_syscall { KT_SYS_OPEN = 1, KT_SYS_OPENAT = 2, KT_SYS_OPENAT2 = 3, KT_SYS_CREAT = 4 };

enum kt_close_reason { KT_CLOSE_CLOSE = 1, KT_CLOSE_EXIT = 2, KT_CLOSE_EXEC = 3 };

struct kt_close_event {
	struct kt_event_hdr hdr;
	__s32 fd;
	__u32 reason; // enum kt_close_reason
	__u64 dev;
	__u64 ino;
	__u64 bytes_read;
	__u64 reads;
};

struct kt_connect_event {
	struct kt_event_hdr hdr;
	__s32 fd;
	__s32 ret;       // 0, -EINPROGRESS (an attempt), or another -errno
	__u16 family;    // AF_INET, AF_INET6, AF_UNIX, ...
	__u16 port;      // host byte order
	__u16 sock_type; // SOCK_STREAM, SOCK_DGRAM, ...
	__u16 lport;     // the socket's local port after the connect (host order), 0 if unknown
	__u8 addr[16];   // IPv4 in the first 4 bytes
};

// A DNS answer (UDP from port 53) to a tracked process's resolver socket,
// seen on ingress (cgroup_skb: no process context; hdr.pid is the tgid that
// connected the socket, the rest of hdr is zero but for ts_ns).
struct kt_dns_event {
	struct kt_event_hdr hdr;
	__u16 lport;  // the socket's local port
	__u16 family; // AF_INET, AF_INET6 of the server
	__u32 len;    // bytes in data: the DNS message
	__u8 addr[16];
	char data[KT_DNS_MAX];
};

// A tracked process submitted an io_uring operation it had not submitted
// before (one record per process and opcode): its opens, reads and
// connects through the ring bypass the syscall hooks.
struct kt_io_uring_event {
	struct kt_event_hdr hdr;
	__u32 opcode;    // IORING_OP_*
	__u32 sq_thread; // submitted by the kernel's SQPOLL thread
};

enum kt_write_syscall {
	KT_SYS_WRITE = 1,
	KT_SYS_WRITEV = 2,
	KT_SYS_SENDTO = 3,
	KT_SYS_SENDMSG = 4
};

// A stdio MCP server's read of fd 0 or write of fd 1 (abi: KT_STDIO_*).
// JSON-RPC arguments and results may carry secrets: userspace keeps the
// bytes only in a wiped buffer until it has read the method, id and names.
enum kt_stdio_dir { KT_STDIO_IN = 1, KT_STDIO_OUT = 2 };
struct kt_stdio_event {
	struct kt_event_hdr hdr;
	__u32 dir;   // enum kt_stdio_dir
	__u32 len;   // bytes in data
	__u64 total; // bytes the call read or was asked to write
	__u32 head;  // data[0, head): the call's first bytes; data[head, len): its last
	__u32 pad;
	char data[KT_STDIO_MAX];
};

struct kt_payload_event {
	struct kt_event_hdr hdr;
	__s32 fd;
	__u32 syscall; // enum kt_write_syscall
	__u32 len;     // bytes in data
	__u32 pad;
	char data[KT_PAYLOAD_MAX];
};

// Map keys and values userspace reads or writes.
struct kt_fd_key {
	__u32 tgid;
	__s32 fd;
};

struct kt_fd_state {
	__u64 dev;
	__u64 ino;
	__u64 bytes_read;
	__u64 reads;
	// The boot-clock time of the open (its open record's ts_ns): tells the
	// entry from a later open of the same file under the same number.
	__u64 opened_ns;
};

// Which open an fds entry must be to be taken: its file and open time.
struct kt_fd_open {
	__u64 dev;
	__u64 ino;
	__u64 opened_ns;
};

struct kt_watch_filter {
	__u32 count; // entries in the watched map; 0 = nothing to check
	__u32 pad;
	__u64 bloom[KT_WATCH_BLOOM_WORDS];
};

// Value of the tracked task-storage map: why the process is tracked.
enum kt_track_reason {
	KT_TRACK_USER = 1,
	KT_TRACK_FORK = 2,
	KT_TRACK_WATCHED = 3,
	KT_TRACK_EXEC_HINT = 4,
};
// Mark flags, set by userspace on a tracked process. Not inherited at fork.
#define KT_MARK_STDIO (1u << 0) // a stdio MCP server: its fd 0 reads and fd 1 writes are captured
struct kt_task_mark {
	__u32 reason; // enum kt_track_reason
	__u32 flags;  // KT_MARK_*
};

struct kt_inode_key {
	__u64 dev;
	__u64 ino;
};

#endif
