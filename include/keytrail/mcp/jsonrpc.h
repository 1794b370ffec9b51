// MCP over stdio, as the probes see it: newline-delimited JSON-RPC bytes
// read from a server's fd 0 and written to its fd 1, captured whole up to
// KT_STDIO_MAX bytes per call or as its head and tail (abi.h). Framing
// reassembles messages split across calls in a bounded buffer; the parser
// keeps only what names a call: methods, ids, tool names, client and server
// names. Arguments and results can carry secrets and personal data: they are
// skipped byte by byte and never copied; the buffers that held them are
// wiped (SecretBytes).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "keytrail/util/secret_bytes.h"

namespace keytrail::mcp
{

// Bounds. A message's first kFront bytes are parsed as JSON; past them (or
// past a capture cut) only its last kBack bytes are kept, for the id and
// isError the TypeScript SDK writes last.
inline constexpr size_t kFront = 4096;
inline constexpr size_t kBack = 256;
inline constexpr size_t kMaxDepth = 64;        // JSON nesting followed; deeper is unparsable
inline constexpr size_t kMaxName = 128;        // bytes kept of a tool, client or server name
inline constexpr size_t kMaxId = 64;           // bytes of an id; a longer id is not matched
inline constexpr size_t kMaxTools = 256;       // tool names kept from one tools/list reply
inline constexpr size_t kMaxBatch = 64;        // messages taken from one batch array
inline constexpr size_t kMaxArgumentKeys = 32; // argument keys kept of one tools/call

// What is kept of one JSON-RPC message. No argument or result value.
struct Message {
	enum Kind : uint8_t { kRequest, kNotification, kResponse, kUnknown };
	Kind kind = kUnknown;
	std::string method; // requests and notifications
	std::string id;     // the id as JSON text (3, "a-1"); "" when absent or not seen
	std::string tool;   // tools/call: params.name
	// tools/call, when asked for: the top-level keys of params.arguments
	// (up to kMaxArgumentKeys, each cut at 32 bytes). Never a value.
	std::vector<std::string> argument_keys;
	// initialize: params.clientInfo and params.protocolVersion; its reply:
	// result.serverInfo and result.protocolVersion.
	std::string client_name, client_version, server_name, server_version, protocol_version;
	std::vector<std::string> tools; // a tools/list reply: result.tools[].name
	bool tools_truncated = false;   // more than kMaxTools, or the reply was cut
	bool is_error = false;          // a reply with "error", or result.isError true
	std::string cancelled_id;       // notifications/cancelled: params.requestId
	bool partial = false;           // parsed from a cut or truncated message
};

// Parses one message (or a batch array of them) from its first bytes and,
// when bytes in between were lost (`gap`), its last bytes. Appends what it
// could read to `out`; false when nothing could be (unparsable). With
// `argument_keys`, a tools/call's argument keys are kept too.
bool parse_message(std::string_view front, bool gap, std::string_view back,
                   std::vector<Message> &out, bool argument_keys = false);

struct FramerStats {
	uint64_t messages = 0;   // messages framed (a batch counts once)
	uint64_t partial = 0;    // framed with bytes missing in the middle
	uint64_t overflow = 0;   // longer than kFront: the middle skipped
	uint64_t unparsable = 0; // nothing read from them
};

// Newline-delimited framing of one direction of one process's stdio.
class Framer
{
      public:
	using Sink = std::function<void(const Message &)>;
	// One capture: its first bytes, and when the kernel cut it, its last
	// bytes after a gap. Calls `sink` for every message completed.
	void feed(std::string_view head, bool cut, std::string_view tail, const Sink &sink);
	// Bytes were lost (a dropped record): the message in progress has a gap.
	void lost();
	// Keep the keys of tools/call arguments (correlate.tool_argument_keys).
	void keep_argument_keys(bool on) { argument_keys_ = on; }
	const FramerStats &stats() const { return stats_; }
	size_t buffered() const { return front_.size() + back_.size(); }

      private:
	void append(std::string_view bytes, const Sink &sink);
	void complete(const Sink &sink);
	SecretBytes front_, back_;
	bool gap_ = false;
	bool argument_keys_ = false;
	FramerStats stats_;
	std::vector<Message> scratch_;
};

} // namespace keytrail::mcp
