#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <sys/sysmacros.h>

#include <cstddef>
#include <cstring>

#include "keytrail/abi.h"
#include "keytrail/net/peek.h"
#include "keytrail/probe/events.h"
#include "keytrail/util/text.h"

// The layout both compilers must agree on (clang -target bpf and the host
// compiler). A change here is an ABI change: bump both sides together.
static_assert(sizeof(kt_event_hdr) == 72);
static_assert(offsetof(kt_event_hdr, comm) == 56);
static_assert(offsetof(kt_exec_event, data) == 104);
static_assert(sizeof(kt_fork_event) == 88);
static_assert(sizeof(kt_exit_event) == 80);
static_assert(offsetof(kt_open_event, path) == 112);
static_assert(sizeof(kt_close_event) == 112);
static_assert(sizeof(kt_connect_event) == 104);
static_assert(offsetof(kt_payload_event, data) == 88);
static_assert(offsetof(kt_dns_event, data) == 96 && sizeof(kt_dns_event) == 96 + KT_DNS_MAX);
static_assert(sizeof(kt_io_uring_event) == 80);
static_assert(offsetof(kt_stdio_event, data) == 96 && sizeof(kt_stdio_event) == 96 + KT_STDIO_MAX);
static_assert(sizeof(kt_task_mark) == 8);
static_assert(sizeof(kt_fd_state) == 40 && sizeof(kt_fd_key) == 8 && sizeof(kt_inode_key) == 16);

namespace keytrail
{

namespace
{

std::string bounded_string(const char *p, size_t max)
{
	return std::string(p, strnlen(p, max));
}

EventContext context_from(const kt_event_hdr &h)
{
	EventContext c;
	c.ts_ns = h.ts_ns;
	c.start_time_ns = h.start_time;
	c.cgroup_id = h.cgroup_id;
	c.pid = h.pid;
	c.tid = h.tid;
	c.ppid = h.ppid;
	c.uid = h.uid;
	c.gid = h.gid;
	c.flags = h.flags;
	c.comm = bounded_string(h.comm, sizeof(h.comm));
	return c;
}

template <typename T> bool fixed_size_ok(size_t size, std::string *error)
{
	if (size < sizeof(T)) {
		*error = "record shorter than its type";
		return false;
	}
	return true;
}

} // namespace

namespace
{

using Decoded = std::optional<Event>;

Decoded fail(std::string *error, const char *why)
{
	*error = why;
	return std::nullopt;
}

Decoded decode_exec(const kt_event_hdr &h, const char *base, std::string *error)
{
	constexpr size_t off = offsetof(kt_exec_event, data);
	if (h.size < off)
		return fail(error, "exec record too short");
	uint32_t fn_len, args_len, env_len;
	std::memcpy(&fn_len, base + offsetof(kt_exec_event, filename_len), 4);
	std::memcpy(&args_len, base + offsetof(kt_exec_event, args_len), 4);
	std::memcpy(&env_len, base + offsetof(kt_exec_event, env_len), 4);
	if (fn_len > KT_PATH_MAX || args_len > KT_ARGS_MAX || env_len > KT_ENV_MAX ||
	    off + fn_len + args_len + env_len > h.size)
		return fail(error, "exec record lengths inconsistent");
	ExecEvent e;
	e.ctx = context_from(h);
	std::memcpy(&e.tty_nr, base + offsetof(kt_exec_event, tty_nr), 4);
	std::memcpy(&e.loginuid, base + offsetof(kt_exec_event, loginuid), 4);
	std::memcpy(&e.sessionid, base + offsetof(kt_exec_event, sessionid), 4);
	std::memcpy(&e.sid, base + offsetof(kt_exec_event, sid), 4);
	e.filename.assign(base + off, fn_len);
	e.argv = split_nul(std::string_view(base + off + fn_len, args_len));
	if (env_len)
		e.env = std::make_shared<SecretBytes>(
		    std::string_view(base + off + fn_len + args_len, env_len));
	return e;
}

Decoded decode_open(const kt_event_hdr &h, const char *base, std::string *error)
{
	constexpr size_t off = offsetof(kt_open_event, path);
	if (h.size < off)
		return fail(error, "open record too short");
	kt_open_event r;
	std::memcpy(&r, base, off);
	if (r.path_len >= KT_PATH_MAX || off + r.path_len > h.size)
		return fail(error, "open record path length inconsistent");
	OpenEvent e;
	e.ctx = context_from(h);
	e.dirfd = r.dirfd;
	e.fd = r.fd;
	e.flags = r.flags;
	e.mode = r.mode;
	e.dev = r.dev;
	e.ino = r.ino;
	e.syscall = r.syscall;
	e.path.assign(base + off, r.path_len);
	return e;
}

Decoded decode_connect(const kt_event_hdr &h, const char *base)
{
	kt_connect_event r;
	std::memcpy(&r, base, sizeof(r));
	ConnectEvent e;
	e.ctx = context_from(h);
	e.fd = r.fd;
	e.ret = r.ret;
	e.family = r.family;
	e.port = r.port;
	e.sock_type = r.sock_type;
	e.lport = r.lport;
	std::memcpy(e.addr.data(), r.addr, sizeof(r.addr));
	return e;
}

Decoded decode_dns(const kt_event_hdr &h, const char *base, std::string *error)
{
	constexpr size_t off = offsetof(kt_dns_event, data);
	if (h.size < off)
		return fail(error, "dns record too short");
	kt_dns_event r;
	std::memcpy(&r, base, off);
	if (r.len > KT_DNS_MAX || off + r.len > h.size)
		return fail(error, "dns record length inconsistent");
	DnsEvent e;
	e.ctx = context_from(h);
	e.lport = r.lport;
	std::array<uint8_t, 16> addr{};
	std::memcpy(addr.data(), r.addr, sizeof(r.addr));
	e.server = address_string(r.family, addr);
	e.answer = parse_dns_response(std::string_view(base + off, r.len));
	return e;
}

Decoded decode_payload(const kt_event_hdr &h, const char *base, std::string *error)
{
	constexpr size_t off = offsetof(kt_payload_event, data);
	if (h.size < off)
		return fail(error, "payload record too short");
	kt_payload_event r;
	std::memcpy(&r, base, off);
	if (r.len > KT_PAYLOAD_MAX || off + r.len > h.size)
		return fail(error, "payload record length inconsistent");
	PayloadEvent e;
	e.ctx = context_from(h);
	e.fd = r.fd;
	e.syscall = r.syscall;
	e.captured = r.len;
	// The ring buffer is mapped read-only: parse a private copy and wipe
	// it; the kernel's copy is overwritten as the ring wraps.
	char bytes[KT_PAYLOAD_MAX];
	std::memcpy(bytes, base + off, r.len);
	std::string_view view(bytes, r.len);
	if (auto sni = parse_tls_sni(view)) {
		e.sni = *sni;
	} else {
		if (auto target = parse_proxy_target(view))
			e.proxy_target = *target;
		if (auto host = parse_http_host(view))
			e.http_host = *host;
	}
	OPENSSL_cleanse(bytes, sizeof(bytes));
	return e;
}

Decoded decode_stdio(const kt_event_hdr &h, const char *base, std::string *error)
{
	constexpr size_t off = offsetof(kt_stdio_event, data);
	if (h.size < off)
		return fail(error, "stdio record too short");
	kt_stdio_event r;
	std::memcpy(&r, base, off);
	if (r.len > KT_STDIO_MAX || r.head > r.len || off + r.len > h.size || r.total < r.len ||
	    (r.dir != KT_STDIO_IN && r.dir != KT_STDIO_OUT))
		return fail(error, "stdio record length inconsistent");
	StdioEvent e;
	e.ctx = context_from(h);
	e.dir = r.dir;
	e.total = r.total;
	e.head = r.head;
	e.bytes = std::make_shared<const SecretBytes>(std::string_view(base + off, r.len));
	return e;
}

// A fixed-size record, read whole.
template <typename T>
std::optional<T> fixed(const kt_event_hdr &h, const char *base, std::string *error)
{
	if (!fixed_size_ok<T>(h.size, error))
		return std::nullopt;
	T r;
	std::memcpy(&r, base, sizeof(r));
	return r;
}

} // namespace

std::optional<Event> decode_event(const void *data, size_t size, std::string *error)
{
	if (size < sizeof(kt_event_hdr))
		return fail(error, "record shorter than its header");
	kt_event_hdr h;
	std::memcpy(&h, data, sizeof(h));
	if (h.size > size)
		return fail(error, "record size field exceeds the record");
	const char *base = static_cast<const char *>(data);
	switch (h.type) {
	case KT_EV_EXEC: return decode_exec(h, base, error);
	case KT_EV_FORK:
		if (auto r = fixed<kt_fork_event>(h, base, error))
			return ForkEvent{context_from(h), r->child_pid, r->child_start_time};
		return std::nullopt;
	case KT_EV_EXIT:
		if (auto r = fixed<kt_exit_event>(h, base, error))
			return ExitEvent{context_from(h), r->exit_code};
		return std::nullopt;
	case KT_EV_OPEN: return decode_open(h, base, error);
	case KT_EV_CLOSE:
		if (auto r = fixed<kt_close_event>(h, base, error))
			return CloseEvent{context_from(h), r->fd,         r->reason, r->dev,
			                  r->ino,          r->bytes_read, r->reads};
		return std::nullopt;
	case KT_EV_CONNECT:
		if (!fixed_size_ok<kt_connect_event>(h.size, error))
			return std::nullopt;
		return decode_connect(h, base);
	case KT_EV_PAYLOAD: return decode_payload(h, base, error);
	case KT_EV_DNS: return decode_dns(h, base, error);
	case KT_EV_STDIO: return decode_stdio(h, base, error);
	case KT_EV_IO_URING:
		if (auto r = fixed<kt_io_uring_event>(h, base, error))
			return IoUringEvent{context_from(h), r->opcode, r->sq_thread != 0};
		return std::nullopt;
	default: *error = "unknown record type " + std::to_string(h.type); return std::nullopt;
	}
}

// The Event variant is in kt_event_type order: index = type - 1.
static_assert(std::is_same_v<std::variant_alternative_t<KT_EV_EXEC - 1, Event>, ExecEvent>);
static_assert(std::is_same_v<std::variant_alternative_t<KT_EV_PAYLOAD - 1, Event>, PayloadEvent>);
static_assert(std::is_same_v<std::variant_alternative_t<KT_EV_DNS - 1, Event>, DnsEvent>);
static_assert(std::is_same_v<std::variant_alternative_t<KT_EV_IO_URING - 1, Event>, IoUringEvent>);
static_assert(std::is_same_v<std::variant_alternative_t<KT_EV_STDIO - 1, Event>, StdioEvent>);
static_assert(std::variant_size_v<Event> == KT_EV_MAX - 1);

const char *event_type_name(uint32_t type)
{
	static constexpr const char *names[KT_EV_MAX] = {"",     "exec",     "fork",    "exit",
	                                                 "open", "close",    "connect", "payload",
	                                                 "dns",  "io_uring", "stdio"};
	return type < KT_EV_MAX ? names[type] : "unknown";
}

std::string io_uring_op_name(uint32_t opcode)
{
	// IORING_OP_* in include/uapi/linux/io_uring.h order (stable ABI).
	static constexpr const char *names[] = {"nop",
	                                        "readv",
	                                        "writev",
	                                        "fsync",
	                                        "read_fixed",
	                                        "write_fixed",
	                                        "poll_add",
	                                        "poll_remove",
	                                        "sync_file_range",
	                                        "sendmsg",
	                                        "recvmsg",
	                                        "timeout",
	                                        "timeout_remove",
	                                        "accept",
	                                        "async_cancel",
	                                        "link_timeout",
	                                        "connect",
	                                        "fallocate",
	                                        "openat",
	                                        "close",
	                                        "files_update",
	                                        "statx",
	                                        "read",
	                                        "write",
	                                        "fadvise",
	                                        "madvise",
	                                        "send",
	                                        "recv",
	                                        "openat2",
	                                        "epoll_ctl",
	                                        "splice",
	                                        "provide_buffers",
	                                        "remove_buffers",
	                                        "tee",
	                                        "shutdown",
	                                        "renameat",
	                                        "unlinkat",
	                                        "mkdirat",
	                                        "symlinkat",
	                                        "linkat",
	                                        "msg_ring",
	                                        "fsetxattr",
	                                        "setxattr",
	                                        "fgetxattr",
	                                        "getxattr",
	                                        "socket",
	                                        "uring_cmd",
	                                        "send_zc",
	                                        "sendmsg_zc",
	                                        "read_multishot",
	                                        "waitid",
	                                        "futex_wait",
	                                        "futex_wake",
	                                        "futex_waitv",
	                                        "fixed_fd_install",
	                                        "ftruncate",
	                                        "bind",
	                                        "listen",
	                                        "recv_zc",
	                                        "epoll_wait",
	                                        "readv_fixed",
	                                        "writev_fixed",
	                                        "pipe"};
	if (opcode < std::size(names))
		return names[opcode];
	return "op_" + std::to_string(opcode);
}

bool io_uring_op_evades(uint32_t opcode)
{
	// The network: connects and sends the hooks would have named. File
	// operations are not here: libuv (Node 20.3 to 20.11, UV_USE_IO_URING)
	// opens and reads files through a ring, so every such Node server would
	// raise it; they are reported as io_uring records instead.
	switch (opcode) {
	case 9:  // sendmsg
	case 16: // connect
	case 26: // send
	case 45: // socket
	case 47: // send_zc
	case 48: // sendmsg_zc
		return true;
	default: return false;
	}
}

uint32_t event_type(const Event &ev)
{
	return static_cast<uint32_t>(ev.index()) + 1;
}

std::string address_string(uint16_t family, const std::array<uint8_t, 16> &addr)
{
	char buf[INET6_ADDRSTRLEN] = "";
	if (family == AF_INET)
		inet_ntop(AF_INET, addr.data(), buf, sizeof(buf));
	else if (family == AF_INET6)
		inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
	return buf;
}

} // namespace keytrail
