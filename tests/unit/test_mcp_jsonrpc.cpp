// MCP stdio framing and the JSON-RPC reduction: what is kept (methods, ids,
// names) and what never is (arguments, results).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "keytrail/abi.h"
#include "keytrail/mcp/jsonrpc.h"

using namespace keytrail;
using namespace keytrail::mcp;

namespace
{

std::vector<Message> parse(std::string_view s)
{
	std::vector<Message> out;
	parse_message(s, false, "", out);
	return out;
}

// Feeds `bytes` as the kernel would capture a call of `total` bytes: whole
// up to KT_STDIO_MAX, else head and tail.
void capture(Framer &f, const std::string &bytes, std::vector<Message> &out)
{
	auto sink = [&](const Message &m) { out.push_back(m); };
	if (bytes.size() <= KT_STDIO_MAX) {
		f.feed(bytes, false, "", sink);
		return;
	}
	f.feed(std::string_view(bytes).substr(0, KT_STDIO_HEAD), true,
	       std::string_view(bytes).substr(bytes.size() - (KT_STDIO_MAX - KT_STDIO_HEAD)), sink);
}

const char *kSecret = "glpat-PLANTEDsecretVALUE0123456789";

bool holds_secret(const Message &m)
{
	std::string all = m.method + m.id + m.tool + m.client_name + m.client_version +
	                  m.server_name + m.server_version + m.protocol_version + m.cancelled_id;
	for (const auto &t : m.tools)
		all += t;
	for (const auto &k : m.argument_keys)
		all += k;
	return all.find("PLANTED") != std::string::npos;
}

} // namespace

TEST(McpJsonRpc, ReadsInitializeAndItsReply)
{
	auto m = parse(R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{)"
	               R"("protocolVersion":"2025-06-18","capabilities":{"roots":{}},)"
	               R"("clientInfo":{"name":"claude-code","version":"1.2.3"}}})");
	ASSERT_EQ(m.size(), 1u);
	EXPECT_EQ(m[0].kind, Message::kRequest);
	EXPECT_EQ(m[0].method, "initialize");
	EXPECT_EQ(m[0].id, "0");
	EXPECT_EQ(m[0].client_name, "claude-code");
	EXPECT_EQ(m[0].client_version, "1.2.3");
	EXPECT_EQ(m[0].protocol_version, "2025-06-18");
	EXPECT_FALSE(m[0].partial);
	auto r = parse(
	    R"({"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},)"
	    R"("serverInfo":{"name":"gitlab-mcp","version":"0.6.2"}},"jsonrpc":"2.0","id":0})");
	ASSERT_EQ(r.size(), 1u);
	EXPECT_EQ(r[0].kind, Message::kResponse);
	EXPECT_EQ(r[0].id, "0");
	EXPECT_EQ(r[0].server_name, "gitlab-mcp");
	EXPECT_EQ(r[0].server_version, "0.6.2");
}

TEST(McpJsonRpc, KeepsToolNamesNeverArgumentsOrResults)
{
	std::string call =
	    std::string(R"({"method":"tools/call","params":{"name":"get_file_contents",)") +
	    R"("arguments":{"token":")" + kSecret + R"(","nested":{"name":"not-a-tool"}}},)" +
	    R"("jsonrpc":"2.0","id":7})";
	auto m = parse(call);
	ASSERT_EQ(m.size(), 1u);
	EXPECT_EQ(m[0].method, "tools/call");
	EXPECT_EQ(m[0].tool, "get_file_contents");
	EXPECT_EQ(m[0].id, "7");
	EXPECT_FALSE(holds_secret(m[0]));
	std::string reply = std::string(R"({"result":{"content":[{"type":"text","text":")") +
	                    kSecret + R"("}],"isError":true},"jsonrpc":"2.0","id":7})";
	auto r = parse(reply);
	ASSERT_EQ(r.size(), 1u);
	EXPECT_EQ(r[0].kind, Message::kResponse);
	EXPECT_TRUE(r[0].is_error);
	EXPECT_FALSE(holds_secret(r[0]));
	auto e = parse(R"({"jsonrpc":"2.0","id":"a-1","error":{"code":-32602,"message":"x"}})");
	ASSERT_EQ(e.size(), 1u);
	EXPECT_EQ(e[0].id, "\"a-1\"");
	EXPECT_TRUE(e[0].is_error);
}

TEST(McpJsonRpc, ToolsListAndCancelled)
{
	auto r =
	    parse(R"({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"search",)"
	          R"("inputSchema":{"type":"object","properties":{"name":{"type":"string"}}}},)"
	          R"({"name":"create_issue","description":"d"}]}})");
	ASSERT_EQ(r.size(), 1u);
	EXPECT_EQ(r[0].tools, (std::vector<std::string>{"search", "create_issue"}));
	auto c = parse(R"({"jsonrpc":"2.0","method":"notifications/cancelled",)"
	               R"("params":{"requestId":7,"reason":"user"}})");
	ASSERT_EQ(c.size(), 1u);
	EXPECT_EQ(c[0].kind, Message::kNotification);
	EXPECT_EQ(c[0].cancelled_id, "7");
}

TEST(McpJsonRpc, BatchArrays)
{
	auto m = parse(R"([{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},)"
	               R"({"jsonrpc":"2.0","method":"notifications/initialized"},)"
	               R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}}])");
	ASSERT_EQ(m.size(), 3u);
	EXPECT_EQ(m[0].tool, "a");
	EXPECT_EQ(m[1].kind, Message::kNotification);
	EXPECT_EQ(m[2].tool, "b");
	EXPECT_EQ(m[2].id, "2");
	std::string big = "[";
	for (size_t i = 0; i < kMaxBatch + 10; i++)
		big += std::string(i ? "," : "") + R"({"id":)" + std::to_string(i) +
		       R"(,"method":"ping"})";
	big += "]";
	auto b = parse(big);
	EXPECT_EQ(b.size(), kMaxBatch);
	EXPECT_TRUE(b.back().partial);
}

TEST(McpJsonRpc, TruncatedHeadStillNamesTheCall)
{
	std::string call =
	    R"({"method":"tools/call","params":{"name":"list_projects","arguments":{"q":"xxxxx)";
	std::vector<Message> out;
	EXPECT_TRUE(parse_message(call, false, "", out));
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].tool, "list_projects");
	EXPECT_TRUE(out[0].partial);
	// Every prefix parses without reading past it, keeping only true names.
	std::string full =
	    R"({"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"t1","arguments":{}}})";
	for (size_t n = 0; n <= full.size(); n++) {
		std::vector<Message> o;
		parse_message(std::string_view(full.data(), n), false, "", o);
		for (const auto &m : o) {
			EXPECT_TRUE(m.tool.empty() || m.tool == "t1") << n;
			EXPECT_TRUE(m.id.empty() || m.id == "12") << n;
		}
	}
}

TEST(McpJsonRpc, DeepNestingAndGarbageAreBounded)
{
	std::string deep(100000, '[');
	std::vector<Message> out;
	EXPECT_FALSE(parse_message(deep, false, "", out));
	std::string obj = R"({"method":"tools/call","params":{"name":"x","arguments":)" +
	                  std::string(200, '[') + std::string(200, ']') + "}}";
	out.clear();
	parse_message(obj, false, "", out);
	ASSERT_EQ(out.size(), 1u); // what came before the bound is kept
	EXPECT_EQ(out[0].tool, "x");
	EXPECT_TRUE(out[0].partial);
	out.clear();
	EXPECT_FALSE(parse_message("not json at all", false, "", out));
	EXPECT_FALSE(parse_message("42", false, "", out));
}

TEST(McpJsonRpc, NonUtf8NamesAreMadeValid)
{
	auto m = parse("{\"method\":\"tools/call\",\"params\":{\"name\":\"t\xff\xfe\"},\"id\":1}");
	ASSERT_EQ(m.size(), 1u);
	EXPECT_EQ(m[0].tool, "t\\xFF\\xFE");
	auto u = parse(R"({"method":"tools/call","params":{"name":"\u00e9\ud800"},"id":1})");
	ASSERT_EQ(u.size(), 1u);
	EXPECT_EQ(u[0].tool, "\xc3\xa9\xef\xbf\xbd");
}

TEST(McpFramer, MessagesSplitAcrossReads)
{
	Framer f;
	std::vector<Message> out;
	std::string msgs = R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}})"
	                   "\n"
	                   R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}})"
	                   "\n";
	for (char c : msgs)
		capture(f, std::string(1, c), out);
	ASSERT_EQ(out.size(), 2u);
	EXPECT_EQ(out[0].tool, "a");
	EXPECT_EQ(out[1].id, "2");
	EXPECT_EQ(f.stats().messages, 2u);
	EXPECT_EQ(f.stats().unparsable, 0u);
	EXPECT_EQ(f.buffered(), 0u);
}

TEST(McpFramer, CutCaptureKeepsHeadNamesAndTailId)
{
	// The TypeScript SDK writes the id last, after arbitrarily long
	// arguments; the kernel sends head and tail only.
	std::string args(5000, 'a');
	std::string call =
	    std::string(
	        R"({"method":"tools/call","params":{"name":"create_file","arguments":{"content":")") +
	    kSecret + args + R"("}},"jsonrpc":"2.0","id":42})" + "\n";
	Framer f;
	std::vector<Message> out;
	capture(f, call, out);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].tool, "create_file");
	EXPECT_EQ(out[0].id, "42");
	EXPECT_TRUE(out[0].partial);
	EXPECT_FALSE(holds_secret(out[0]));
	std::string reply = std::string(R"({"result":{"content":[{"type":"text","text":")") + args +
	                    kSecret + R"("}],"isError":true},"jsonrpc":"2.0","id":42})" + "\n";
	out.clear();
	capture(f, reply, out);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].kind, Message::kResponse);
	EXPECT_EQ(out[0].id, "42");
	EXPECT_TRUE(out[0].is_error);
	EXPECT_FALSE(holds_secret(out[0]));
	// Python's order: id first, isError last inside result.
	std::string py =
	    std::string(R"({"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":")") +
	    args + R"("}],"isError":false}})" + "\n";
	out.clear();
	capture(f, py, out);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].id, "5");
	EXPECT_FALSE(out[0].is_error);
	EXPECT_EQ(out[0].kind, Message::kResponse);
}

TEST(McpFramer, HugeMessagesStayBounded)
{
	Framer f;
	std::vector<Message> out;
	std::string head =
	    R"({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"big","arguments":{"x":")";
	f.feed(head, false, "", [&](const Message &m) { out.push_back(m); });
	std::string chunk(4096, 'z');
	for (int i = 0; i < 1000; i++) {
		f.feed(chunk, false, "", [&](const Message &m) { out.push_back(m); });
		EXPECT_LE(f.buffered(), kFront + 2 * kBack + chunk.size());
	}
	f.feed("\"}}}\n", false, "", [&](const Message &m) { out.push_back(m); });
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].tool, "big");
	EXPECT_EQ(out[0].id, "9");
	EXPECT_EQ(f.stats().overflow, 1u);
}

TEST(McpFramer, LostBytesAndGarbageAreCounted)
{
	Framer f;
	std::vector<Message> out;
	auto sink = [&](const Message &m) { out.push_back(m); };
	f.feed("\x01\x02 binary \xff\n", false, "", sink);
	f.feed("\n\n", false, "", sink); // blank lines are not messages
	EXPECT_EQ(f.stats().unparsable, 1u);
	EXPECT_EQ(f.stats().messages, 1u);
	f.feed(R"({"jsonrpc":"2.0","id":3,"meth)", false, "", sink);
	f.lost();
	f.feed("ing\"}\n", false, "", sink);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].id, "3");
	EXPECT_TRUE(out[0].partial);
}

TEST(McpFramer, OneReadOfManyRequestsLosesTheOnesInItsCutMiddle)
{
	// A server that falls behind its client reads several requests at once
	// (keytrail-bench-mcp at 1,000 calls/s). Past KT_STDIO_MAX bytes the
	// kernel sends the read's head and tail only: of 8 requests of 110
	// bytes, 1000-1002 and 1007 are whole, 1003's head is framed with 1006's
	// tail (one partial message: 1003's tool, 1006's id), and 1003-1005 are
	// never seen (their replies match no call: mcp_replies_unmatched).
	auto req = [](int id) {
		return R"({"method":"tools/call","params":{"name":"bench_tool","arguments":)"
		       R"({"q":"keytrail"}},"jsonrpc":"2.0","id":)" +
		       std::to_string(id) + "}\n";
	};
	std::string read;
	for (int i = 1000; i < 1008; i++)
		read += req(i);
	ASSERT_EQ(read.size(), 880u);
	Framer f;
	std::vector<Message> out;
	capture(f, read, out);
	std::vector<std::string> ids;
	for (const auto &m : out) {
		EXPECT_EQ(m.tool, "bench_tool");
		ids.push_back(m.id);
	}
	EXPECT_EQ(ids, (std::vector<std::string>{"1000", "1001", "1002", "1006", "1007"}));
	EXPECT_TRUE(out[3].partial);
	EXPECT_EQ(f.stats().partial, 1u);
	// Up to 4 whole requests (440 bytes) fit in one capture; 5 (550) are
	// cut but the 4th's head and tail are its own: nothing lost.
	std::string five;
	for (int i = 1010; i < 1015; i++)
		five += req(i);
	out.clear();
	capture(f, five, out);
	ASSERT_EQ(out.size(), 5u);
	EXPECT_EQ(out[3].id, "1013");
}

// Asked for, a tools/call keeps the top-level keys of its arguments, in
// order, bounded; never a value, nor a nested key, nor keys of any other
// method's params. Not asked for, nothing.
TEST(McpJsonRpc, ArgumentKeysOnlyWhenAskedAndNeverValues)
{
	std::string call =
	    std::string(R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{)") +
	    R"("name":"create_issue","arguments":{"project":"g/p","token":")" + kSecret +
	    R"(","body":{"nested_key":")" + kSecret +
	    R"("},"labels":["a"],"a_key_longer_than_thirty_two_bytes_in_all":1}}})";
	auto off = parse(call);
	ASSERT_EQ(off.size(), 1u);
	EXPECT_TRUE(off[0].argument_keys.empty());
	std::vector<Message> on;
	ASSERT_TRUE(parse_message(call, false, "", on, true));
	ASSERT_EQ(on.size(), 1u);
	EXPECT_EQ(on[0].tool, "create_issue");
	EXPECT_EQ(on[0].argument_keys,
	          (std::vector<std::string>{"project", "token", "body", "labels",
	                                    "a_key_longer_than_thirty_two_byt"}));
	EXPECT_FALSE(holds_secret(on[0]));

	// Another method's params: nothing kept.
	std::vector<Message> other;
	ASSERT_TRUE(parse_message(
	    R"({"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"x","arguments":{"k":1}}})",
	    false, "", other, true));
	ASSERT_EQ(other.size(), 1u);
	EXPECT_TRUE(other[0].argument_keys.empty());

	// Bounded: a flood of keys keeps the first kMaxArgumentKeys.
	std::string many =
	    R"({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":{)";
	for (int i = 0; i < 100; i++)
		many += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":0";
	many += "}}}";
	std::vector<Message> lots;
	ASSERT_TRUE(parse_message(many, false, "", lots, true));
	ASSERT_EQ(lots.size(), 1u);
	EXPECT_EQ(lots[0].argument_keys.size(), kMaxArgumentKeys);
	EXPECT_EQ(lots[0].argument_keys.front(), "k0");

	// Through the framer, as the agent feeds it.
	Framer f;
	f.keep_argument_keys(true);
	std::vector<Message> framed;
	capture(f, call + "\n", framed);
	ASSERT_EQ(framed.size(), 1u);
	EXPECT_EQ(framed[0].argument_keys.size(), 5u);
}
