// Decoded kernel events: what the ring buffer carries, as C++ values that
// own their strings. The decoder is the only code that reads the raw ABI.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "keytrail/net/dns.h"
#include "keytrail/util/kdev.h"
#include "keytrail/util/secret_bytes.h"

namespace keytrail
{

struct EventContext {
	uint64_t ts_ns = 0;         // CLOCK_BOOTTIME
	uint64_t start_time_ns = 0; // the process's start_boottime
	uint64_t cgroup_id = 0;
	uint32_t pid = 0, tid = 0, ppid = 0, uid = 0, gid = 0;
	uint32_t flags = 0; // KT_F_*
	std::string comm;
};

struct ExecEvent {
	EventContext ctx;
	std::string filename;
	std::vector<std::string> argv;
	// Its login session, for telling a person's commands apart: the
	// controlling terminal (/proc/PID/stat's tty_nr, 0: none), the POSIX
	// session (its leader's pid) and the audit login uid and session
	// (UINT32_MAX: unset).
	uint32_t tty_nr = 0, sid = 0;
	uint32_t loginuid = UINT32_MAX, sessionid = UINT32_MAX;
	// NUL-separated environ, captured for processes tracked at exec; wiped
	// when the last copy goes. Null when not captured.
	std::shared_ptr<const SecretBytes> env;
};

struct ForkEvent {
	EventContext ctx; // the parent
	uint32_t child_pid = 0;
	uint64_t child_start_time_ns = 0;
};

struct ExitEvent {
	EventContext ctx;
	int32_t exit_code = 0;
};

struct OpenEvent {
	EventContext ctx;
	int32_t dirfd = 0;
	int32_t fd = -1;
	uint32_t flags = 0, mode = 0;
	uint64_t dev = 0; // kernel dev_t encoding
	uint64_t ino = 0;
	uint32_t syscall = 0;
	std::string path; // as passed; empty for a watched open by an untracked process
};

struct CloseEvent {
	EventContext ctx;
	int32_t fd = -1;
	uint32_t reason = 0; // kt_close_reason
	uint64_t dev = 0, ino = 0;
	uint64_t bytes_read = 0, reads = 0;
};

struct ConnectEvent {
	EventContext ctx;
	int32_t fd = -1;
	int32_t ret = 0;
	uint16_t family = 0, port = 0, sock_type = 0;
	uint16_t lport = 0; // local port after the connect
	std::array<uint8_t, 16> addr{};
};

// The first bytes written on a fresh TCP socket, reduced at decode time to
// the upstream's name: the raw bytes may carry an Authorization header, so
// they are parsed from a private copy that is wiped, never kept.
struct PayloadEvent {
	EventContext ctx;
	int32_t fd = -1;
	uint32_t syscall = 0;
	uint32_t captured = 0;    // bytes the kernel captured
	std::string sni;          // TLS ClientHello server_name
	std::string http_host;    // HTTP/1.x Host header
	std::string proxy_target; // "host:port" a proxy is asked for (CONNECT, absolute URI)
};

// A DNS answer to a tracked process's resolver (ctx.pid: the tgid whose
// socket it was; no other process context). Parsed at decode time.
struct DnsEvent {
	EventContext ctx;
	uint16_t lport = 0;
	std::string server; // the answering resolver's address
	std::optional<DnsAnswer> answer;
};

// The first submission of an io_uring opcode by a tracked process.
struct IoUringEvent {
	EventContext ctx;
	uint32_t opcode = 0;
	bool sq_thread = false;
};

// IORING_OP_* by number ("openat", "read", "connect"), "op_N" if unknown.
std::string io_uring_op_name(uint32_t opcode);
// Operations that reach the network around the syscall hooks (file
// operations are common in libuv and only reported).
bool io_uring_op_evades(uint32_t opcode);

// A stdio MCP server's read of fd 0 (in) or write of fd 1 (out): JSON-RPC
// bytes, which may hold secrets in tool arguments and results, so they are
// kept wiped (SecretBytes) and reduced by mcp/ to methods, ids and names.
struct StdioEvent {
	EventContext ctx;
	uint32_t dir = 0;   // kt_stdio_dir
	uint64_t total = 0; // bytes of the call
	uint32_t head = 0;  // bytes[0, head) are the call's first; the rest its last
	std::shared_ptr<const SecretBytes> bytes;
	bool cut() const { return bytes && total > bytes->size(); }
};

using Event = std::variant<ExecEvent, ForkEvent, ExitEvent, OpenEvent, CloseEvent, ConnectEvent,
                           PayloadEvent, DnsEvent, IoUringEvent, StdioEvent>;

// "exec", "fork", ... of a kt_event_type (enum in abi.h), and an event's type.
const char *event_type_name(uint32_t type);
uint32_t event_type(const Event &ev);

// Decodes one ring-buffer record. Returns nullopt (and sets *error) for a
// record that is too short, has an unknown type or inconsistent lengths.
std::optional<Event> decode_event(const void *data, size_t size, std::string *error);

// Address text for a connect event ("127.0.0.1", "::1", "" for others).
std::string address_string(uint16_t family, const std::array<uint8_t, 16> &addr);

} // namespace keytrail
