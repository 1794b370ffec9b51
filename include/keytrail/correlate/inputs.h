// What the correlator is told: processes starting and exiting, secrets they
// obtain, connections they open, the agent's health, and the passing of
// time. The agent derives these from kernel events, /proc and the ledger;
// `keytrail replay` and the tests read them from a recording. None of them
// can carry a secret value: secrets are fingerprints, command lines are
// masked.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "keytrail/identity/identity.h"

namespace keytrail
{

struct ProcStart {
	int64_t time_ns = 0; // exec (or first sight), wall clock
	std::string exec_id, parent_exec_id;
	uint32_t pid = 0, ppid = 0, uid = 0, gid = 0;
	bool tty = false;          // has a controlling terminal
	bool tracked = false;      // the kernel follows it (a workload, or a watched open)
	bool forked = false;       // a fork without exec: shares its parent's memory
	bool env_observed = false; // its own environment was scanned
	bool launcher = false;     // a package runner (npx, uvx...) fetching its server
	std::string comm, exe, mcp_server;
	std::string workload;             // its MCP workload's root exec_id; "" if none
	std::vector<std::string> cmdline; // masked
	std::string identity;             // id
	Selectors selectors;
	std::vector<std::string> unresolved; // selector groups that could not be read
	uint32_t loginuid = UINT32_MAX;      // audit login uid; UINT32_MAX: none or unknown
	uint32_t sessionid = UINT32_MAX;     // audit session id
	uint32_t tty_nr = 0;                 // controlling terminal's device; 0 if none or unknown
	uint32_t sid = 0;                    // POSIX session (leader's pid); 0 if unknown
};

struct ProcExit {
	int64_t time_ns = 0;
	std::string exec_id;
};

// A credential obtained by a process (or found in an MCP client config when
// exec_id is empty).
struct SecretSeen {
	int64_t time_ns = 0;
	std::string exec_id;
	std::string fingerprint, type;
	std::string prefix;   // the public part ("ghp_"), safe to show
	std::string source;   // file, env, argv, mcp_config
	std::string location; // path, variable name, argv[i], config path + field
	std::string name;     // key inside the location, "" if none
	std::string server;   // MCP server name in a client config
	uint32_t line = 0;
	int64_t first_seen_ns = 0; // the ledger's first sighting of this fingerprint
	int64_t last_used_ns = 0;  // the ledger's last use, 0 = never
	int64_t file_mtime_ns = 0; // file sources
	std::string rotated_from;  // the fingerprint this one replaced in its slot
};

struct ConnectSeen {
	int64_t time_ns = 0;
	std::string exec_id;
	uint16_t family = 0;    // AF_INET, AF_INET6, AF_UNIX, ...
	uint16_t sock_type = 0; // SOCK_STREAM, SOCK_DGRAM
	int32_t result = 0;     // 0 or -errno (-EINPROGRESS is an attempt)
	uint16_t port = 0;
	std::string addr, sni, http_host;
	std::string proxy_target; // "host:port" asked of an HTTP proxy (CONNECT, absolute URI)
	bool via_proxy = false;   // addr:port is the process's proxy (its *_PROXY variables)
	// Whether the name the connect goes by (proxy target, SNI, Host) was
	// resolved to addr by the process's resolver or /etc/hosts.
	enum NameCheck : uint8_t { kNoCheck = 0, kVerified = 1, kUnverified = 2 };
	uint8_t name_check = kNoCheck;
};

struct HealthSeen {
	int64_t time_ns = 0;
	uint64_t kernel_events = 0, kernel_drops = 0; // totals since start
	uint64_t attribution_failures = 0, identities_degraded = 0;
};

struct Tick {
	int64_t time_ns = 0;
};

// A process first submitted this io_uring operation (IORING_OP_*).
struct IoUringSeen {
	int64_t time_ns = 0;
	std::string exec_id;
	uint32_t opcode = 0;
};

// One JSON-RPC message a stdio MCP server read from its client (in) or
// wrote to it (out), as mcp/jsonrpc.h reduced it: methods, ids and names,
// never arguments or results.
struct McpSeen {
	int64_t time_ns = 0;
	std::string exec_id;   // the server process
	uint8_t dir = 0;       // kIn (client to server) or kOut
	uint8_t kind = 0;      // mcp::Message::Kind
	bool is_error = false; // a reply with "error" or result.isError
	bool partial = false;  // read from a cut message
	bool tools_truncated = false;
	std::string method, id, tool, cancelled_id;
	std::string client_name, client_version, server_name, server_version, protocol_version;
	std::vector<std::string> tools;
	std::vector<std::string> argument_keys; // tools/call, with correlate.tool_argument_keys
	enum Dir : uint8_t { kIn = 1, kOut = 2 };
};

using Input = std::variant<ProcStart, ProcExit, SecretSeen, ConnectSeen, HealthSeen, Tick,
                           IoUringSeen, McpSeen>;

// Time of any input.
int64_t input_time(const Input &in);

// A recording: a stream of inputs, each framed as
//   u32 length (little endian) | u8 kind | fields
// after an 8-byte magic "KTREC01\n". Written by `keytrail run --record`,
// read by `keytrail replay`. Fields added later are appended to a kind's
// frame; a reader takes them when the frame has them, so older recordings
// still read.
class RecordingWriter
{
      public:
	explicit RecordingWriter(const std::string &path); // creates 0600; throws Error
	~RecordingWriter();
	RecordingWriter(const RecordingWriter &) = delete;
	RecordingWriter &operator=(const RecordingWriter &) = delete;
	void write(const Input &in);
	bool flush();

      private:
	FILE *f_ = nullptr;
	std::string buf_;
};

class RecordingReader
{
      public:
	explicit RecordingReader(const std::string &path); // throws Error
	~RecordingReader();
	RecordingReader(const RecordingReader &) = delete;
	RecordingReader &operator=(const RecordingReader &) = delete;
	// The next input, valid until the next call; null at the end. A
	// truncated or malformed frame ends the stream and sets error().
	const Input *next();
	const std::string &error() const { return error_; }
	uint64_t offset() const { return offset_; }

      private:
	FILE *f_ = nullptr;
	std::string buf_, error_;
	uint64_t offset_ = 0;
	Input cur_; // reused: its strings keep their buffers
};

// Decodes one frame body (kind + fields); nullopt when malformed. Exposed
// for the fuzzer.
std::optional<Input> decode_input(const unsigned char *p, size_t n);
// Same, into `out`, reusing its storage when it holds the same kind.
bool decode_input(const unsigned char *p, size_t n, Input &out);
std::string encode_input(const Input &in);

} // namespace keytrail
