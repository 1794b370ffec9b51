// Stdio MCP framing and the JSON-RPC reduction (mcp/jsonrpc.h): arbitrary
// bytes as a sequence of captures, some cut to head and tail as the kernel
// cuts them, and each whole input as one message.
#include <cstdint>
#include <string_view>
#include <vector>

#include "keytrail/abi.h"
#include "keytrail/mcp/jsonrpc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view in(reinterpret_cast<const char *>(data), size);
	std::vector<keytrail::mcp::Message> out;
	keytrail::mcp::parse_message(in, false, "", out);
	keytrail::mcp::parse_message(in, false, "", out, true); // argument keys kept
	for (const auto &m : out)
		if (m.argument_keys.size() > keytrail::mcp::kMaxArgumentKeys)
			__builtin_trap();
	keytrail::mcp::parse_message(in.substr(0, in.size() / 2), true, in.substr(in.size() / 2),
	                             out);
	// The first byte of each step sets the capture's length; past
	// KT_STDIO_MAX it is cut like the kernel cuts it.
	keytrail::mcp::Framer f;
	f.keep_argument_keys(size % 2);
	size_t messages = 0;
	auto sink = [&](const keytrail::mcp::Message &) { messages++; };
	while (!in.empty()) {
		size_t n = 1 + static_cast<uint8_t>(in[0]) * 8;
		in.remove_prefix(1);
		std::string_view call = in.substr(0, n);
		in.remove_prefix(call.size());
		if (call.size() <= KT_STDIO_MAX)
			f.feed(call, false, "", sink);
		else
			f.feed(call.substr(0, KT_STDIO_HEAD), true,
			       call.substr(call.size() - (KT_STDIO_MAX - KT_STDIO_HEAD)), sink);
		if (f.buffered() > keytrail::mcp::kFront + 2 * keytrail::mcp::kBack + KT_STDIO_MAX)
			__builtin_trap();
	}
	return 0;
}
