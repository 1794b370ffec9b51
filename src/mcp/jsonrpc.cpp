#include "keytrail/mcp/jsonrpc.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "keytrail/util/text.h"

namespace keytrail::mcp
{

namespace
{

// Where a JSON value sits, as far as what we keep is concerned. Everything
// else (arguments, results, content) is kOther and skipped unread.
enum class Role : uint8_t {
	kOther,
	kBatch,      // a top-level array of messages
	kMsg,        // a message object
	kParams,     // msg.params
	kClientInfo, // msg.params.clientInfo
	kResult,     // msg.result
	kServerInfo, // msg.result.serverInfo
	kTools,      // msg.result.tools
	kTool,       // msg.result.tools[i]
	kArguments,  // msg.params.arguments, when its keys are kept
};

// Keys we look at are short; a longer key is read (for its end) but not kept.
constexpr size_t kMaxKey = 32;

Role child_role(Role parent, std::string_view key, bool is_object, bool is_array)
{
	switch (parent) {
	case Role::kBatch: return is_object ? Role::kMsg : Role::kOther;
	case Role::kMsg:
		if (key == "params" && is_object)
			return Role::kParams;
		if (key == "result" && is_object)
			return Role::kResult;
		return Role::kOther;
	case Role::kParams:
		return key == "clientInfo" && is_object ? Role::kClientInfo : Role::kOther;
	case Role::kResult:
		if (key == "serverInfo" && is_object)
			return Role::kServerInfo;
		if (key == "tools" && is_array)
			return Role::kTools;
		return Role::kOther;
	case Role::kTools: return is_object ? Role::kTool : Role::kOther;
	default: return Role::kOther;
	}
}

// What one message's parse has seen, before it is a Message.
struct Partial {
	Message m;
	std::string param_name; // params.name: the tool when the method is tools/call
	bool any = false;       // something was read
};

void finish(Partial &p, bool partial, std::vector<Message> &out)
{
	if (!p.any)
		return;
	Message &m = p.m;
	if (m.kind == Message::kUnknown && !m.method.empty())
		m.kind = m.id.empty() ? Message::kNotification : Message::kRequest;
	if (m.method == "tools/call")
		m.tool = std::move(p.param_name);
	else
		m.argument_keys.clear();
	m.partial = m.partial || partial;
	if (partial && !m.tools.empty())
		m.tools_truncated = true;
	out.push_back(std::move(m));
	p = Partial{};
}

class Parser
{
      public:
	enum Outcome { kComplete, kTruncated, kError };
	Parser(std::string_view s, bool argument_keys) : s_(s), argument_keys_(argument_keys) {}

	// Runs to the end of the top-level value, of the input, or to the first
	// error. Messages that closed go to `out`; one left open is in open().
	Outcome run(std::vector<Message> &out)
	{
		struct Frame {
			Role role;
			bool array;
		};
		Frame stack[kMaxDepth];
		size_t depth = 0, batch_msgs = 0;
		std::string key;
		bool expect_value = true;
		for (;;) {
			if (!expect_value && depth == 0)
				return kComplete; // what follows the message is not ours
			ws();
			if (at_end())
				return kTruncated;
			char c = s_[i_];
			if (!expect_value) {
				const Frame &top = stack[depth - 1];
				if (c == ',') {
					i_++;
					if (!top.array && !key_(key))
						return at_end() ? kTruncated : kError;
					if (!top.array)
						note_key(top.role, key);
					expect_value = true;
				} else if (c == (top.array ? ']' : '}')) {
					i_++;
					if (stack[--depth].role == Role::kMsg)
						finish(cur_, false, out);
				} else {
					return kError;
				}
				continue;
			}
			Role parent = depth ? stack[depth - 1].role : Role::kOther;
			bool in_object = depth && !stack[depth - 1].array;
			std::string_view k = in_object ? std::string_view(key) : std::string_view();
			if (c == '{' || c == '[') {
				bool obj = c == '{';
				Role role = depth == 0 ? (obj ? Role::kMsg : Role::kBatch)
				                       : child_role(parent, k, obj, !obj);
				if (argument_keys_ && parent == Role::kParams && k == "arguments" &&
				    obj)
					role = Role::kArguments;
				if (parent == Role::kMsg && (k == "result" || k == "error")) {
					cur_.m.kind = Message::kResponse;
					cur_.m.is_error = cur_.m.is_error || k == "error";
				}
				if (role == Role::kMsg) {
					if (batch_msgs >= kMaxBatch) {
						role = Role::kOther;
						batch_cut_ = true;
					} else {
						batch_msgs++;
						cur_ = Partial{};
						cur_.any = true;
					}
				}
				if (depth >= kMaxDepth)
					return kError;
				stack[depth++] = {role, !obj};
				i_++;
				ws();
				if (at_end())
					return kTruncated;
				if (s_[i_] == (obj ? '}' : ']')) {
					i_++;
					if (stack[--depth].role == Role::kMsg)
						finish(cur_, false, out);
					expect_value = false;
				} else if (obj && !key_(key)) {
					return at_end() ? kTruncated : kError;
				} else if (obj) {
					note_key(role, key);
				}
				continue;
			}
			if (depth == 0)
				return kError; // a message is an object or an array of them
			std::string_view raw;
			std::string text;
			if (c == '"') {
				bool keep = wants_string(parent, k);
				if (!string(keep ? &text : nullptr, kMaxName))
					return at_end() ? kTruncated : kError;
			} else if (!scalar(raw)) {
				return at_end() ? kTruncated : kError;
			}
			take_scalar(parent, k, c == '"', text, raw);
			expect_value = false;
		}
	}

	Partial &open() { return cur_; }
	bool batch_cut() const { return batch_cut_; }

      private:
	bool at_end() const { return i_ >= s_.size(); }

	// A key of the arguments object: kept (cut at kMaxKey bytes), never
	// its value.
	void note_key(Role in, const std::string &key)
	{
		auto &keys = cur_.m.argument_keys;
		if (in == Role::kArguments && keys.size() < kMaxArgumentKeys)
			keys.push_back(sanitize_utf8(key));
	}

	void ws()
	{
		while (i_ < s_.size() &&
		       (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n'))
			i_++;
	}

	// A key and its colon.
	bool key_(std::string &key)
	{
		ws();
		if (at_end() || s_[i_] != '"')
			return false;
		key.clear();
		if (!string(&key, kMaxKey))
			return false;
		ws();
		if (at_end() || s_[i_] != ':')
			return false;
		i_++;
		return true;
	}

	static bool wants_string(Role parent, std::string_view key)
	{
		switch (parent) {
		case Role::kMsg: return key == "method" || key == "id";
		case Role::kParams:
			return key == "name" || key == "protocolVersion" || key == "requestId";
		case Role::kClientInfo:
		case Role::kServerInfo: return key == "name" || key == "version";
		case Role::kResult: return key == "protocolVersion";
		case Role::kTool: return key == "name";
		default: return false;
		}
	}

	void take_scalar(Role parent, std::string_view key, bool is_string, std::string &text,
	                 std::string_view raw)
	{
		Message &m = cur_.m;
		auto id_text = [&]() -> std::string {
			if (is_string)
				return text.size() < kMaxId ? "\"" + sanitize_utf8(text) + "\""
				                            : "";
			return raw.size() < kMaxId ? std::string(raw) : "";
		};
		switch (parent) {
		case Role::kMsg:
			if (key == "method" && is_string)
				m.method = sanitize_utf8(text);
			else if (key == "id" && raw != "null")
				m.id = id_text();
			else if (key == "error")
				m.kind = Message::kResponse, m.is_error = true;
			else if (key == "result")
				m.kind = Message::kResponse;
			break;
		case Role::kParams:
			if (key == "name" && is_string)
				cur_.param_name = sanitize_utf8(text);
			else if (key == "protocolVersion" && is_string)
				m.protocol_version = sanitize_utf8(text);
			else if (key == "requestId")
				m.cancelled_id = id_text();
			break;
		case Role::kClientInfo:
			if (key == "name" && is_string)
				m.client_name = sanitize_utf8(text);
			else if (key == "version" && is_string)
				m.client_version = sanitize_utf8(text);
			break;
		case Role::kServerInfo:
			if (key == "name" && is_string)
				m.server_name = sanitize_utf8(text);
			else if (key == "version" && is_string)
				m.server_version = sanitize_utf8(text);
			break;
		case Role::kResult:
			if (key == "isError")
				m.is_error = raw == "true";
			else if (key == "protocolVersion" && is_string)
				m.protocol_version = sanitize_utf8(text);
			break;
		case Role::kTool:
			if (key == "name" && is_string) {
				if (m.tools.size() < kMaxTools)
					m.tools.push_back(sanitize_utf8(text));
				else
					m.tools_truncated = true;
			}
			break;
		default: break;
		}
	}

	// A JSON string at i_; its decoded text (up to `cap` bytes) into `out`
	// when given. False when it does not end in the input or is invalid.
	bool string(std::string *out, size_t cap)
	{
		i_++; // the quote
		while (i_ < s_.size()) {
			unsigned char c = static_cast<unsigned char>(s_[i_]);
			if (c == '"') {
				i_++;
				return true;
			}
			if (c < 0x20)
				return false;
			if (c != '\\') {
				if (out && out->size() < cap)
					out->push_back(static_cast<char>(c));
				i_++;
				continue;
			}
			if (i_ + 1 >= s_.size())
				return false;
			char e = s_[i_ + 1];
			i_ += 2;
			char lit = 0;
			switch (e) {
			case '"': lit = '"'; break;
			case '\\': lit = '\\'; break;
			case '/': lit = '/'; break;
			case 'b': lit = '\b'; break;
			case 'f': lit = '\f'; break;
			case 'n': lit = '\n'; break;
			case 'r': lit = '\r'; break;
			case 't': lit = '\t'; break;
			case 'u': {
				if (i_ + 4 > s_.size())
					return false;
				unsigned v = 0;
				for (int k = 0; k < 4; k++) {
					char h = s_[i_ + k];
					v <<= 4;
					if (h >= '0' && h <= '9')
						v |= h - '0';
					else if (h >= 'a' && h <= 'f')
						v |= h - 'a' + 10;
					else if (h >= 'A' && h <= 'F')
						v |= h - 'A' + 10;
					else
						return false;
				}
				i_ += 4;
				// Names are ASCII in practice: other code points are kept as
				// UTF-8 of the BMP unit (a lone surrogate becomes U+FFFD).
				if (out && out->size() < cap) {
					if (v >= 0xD800 && v <= 0xDFFF)
						v = 0xFFFD;
					if (v < 0x80) {
						out->push_back(static_cast<char>(v));
					} else if (v < 0x800) {
						out->push_back(static_cast<char>(0xC0 | (v >> 6)));
						out->push_back(
						    static_cast<char>(0x80 | (v & 0x3F)));
					} else {
						out->push_back(static_cast<char>(0xE0 | (v >> 12)));
						out->push_back(
						    static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
						out->push_back(
						    static_cast<char>(0x80 | (v & 0x3F)));
					}
				}
				continue;
			}
			default: return false;
			}
			if (out && out->size() < cap)
				out->push_back(lit);
		}
		return false;
	}

	// A number, true, false or null; its text in `raw`.
	bool scalar(std::string_view &raw)
	{
		size_t start = i_;
		while (i_ < s_.size()) {
			char c = s_[i_];
			bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' ||
			          c == '+' || c == '.' || c == 'E';
			if (!ok)
				break;
			i_++;
		}
		if (i_ == start || i_ >= s_.size())
			return false; // nothing, or it may go on past the input
		raw = s_.substr(start, i_ - start);
		if (raw == "true" || raw == "false" || raw == "null")
			return true;
		return raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9');
	}

	std::string_view s_;
	size_t i_ = 0;
	Partial cur_;
	bool batch_cut_ = false;
	bool argument_keys_;
};

// The tail of a message whose middle was lost: what a message writer that
// puts "jsonrpc" and "id" last (the TypeScript SDK) leaves there. Only
// patterns that can be nothing but top-level members are taken: a member
// right before the final '}'.
namespace tail
{

bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// Moves `end` back over whitespace.
size_t skip_ws_back(std::string_view s, size_t end)
{
	while (end > 0 && is_ws(s[end - 1]))
		end--;
	return end;
}

// A scalar member `"key":value` ending at `end` (exclusive); its start
// (the key's opening quote) and parts, or npos.
size_t member_back(std::string_view s, size_t end, std::string_view *key, std::string_view *value)
{
	end = skip_ws_back(s, end);
	if (end == 0)
		return std::string_view::npos;
	size_t vstart;
	if (s[end - 1] == '"') {
		size_t q = s.rfind('"', end >= 2 ? end - 2 : 0);
		if (q == std::string_view::npos || q + 1 >= end ||
		    s.substr(q, end - q).find('\\') != std::string_view::npos)
			return std::string_view::npos;
		vstart = q;
	} else {
		vstart = end;
		while (vstart > 0 &&
		       (std::isalnum(static_cast<unsigned char>(s[vstart - 1])) ||
		        s[vstart - 1] == '-' || s[vstart - 1] == '+' || s[vstart - 1] == '.'))
			vstart--;
		if (vstart == end)
			return std::string_view::npos;
	}
	*value = s.substr(vstart, end - vstart);
	size_t colon = skip_ws_back(s, vstart);
	if (colon == 0 || s[colon - 1] != ':')
		return std::string_view::npos;
	size_t kend = skip_ws_back(s, colon - 1);
	if (kend < 2 || s[kend - 1] != '"')
		return std::string_view::npos;
	size_t kq = s.rfind('"', kend - 2);
	if (kq == std::string_view::npos || (kq > 0 && s[kq - 1] == '\\'))
		return std::string_view::npos;
	*key = s.substr(kq + 1, kend - 1 - kq - 1);
	if (key->find('\\') != std::string_view::npos)
		return std::string_view::npos;
	return kq;
}

// From the end of a message: its trailing scalar members (up to four),
// last first, and where they start. False unless the message ends in '}'.
struct Trailer {
	std::string_view keys[4], values[4];
	size_t n = 0;
	size_t start = 0;              // where the first of them (or the closing '}') starts
	bool first_after_open = false; // preceded by '{' (they are the whole object)
};

bool trailer(std::string_view s, Trailer &t)
{
	size_t end = skip_ws_back(s, s.size());
	if (end == 0 || s[end - 1] != '}')
		return false;
	end--;
	t.start = end;
	while (t.n < 4) {
		std::string_view k, v;
		size_t at = member_back(s, end, &k, &v);
		if (at == std::string_view::npos)
			break;
		t.keys[t.n] = k;
		t.values[t.n] = v;
		t.n++;
		t.start = at;
		size_t before = skip_ws_back(s, at);
		if (before == 0)
			break;
		if (s[before - 1] == '{') {
			t.first_after_open = true;
			break;
		}
		if (s[before - 1] != ',')
			break;
		end = before - 1;
	}
	return true;
}

std::string id_of(std::string_view v)
{
	if (v.size() >= kMaxId || v == "null" || v == "true" || v == "false")
		return "";
	return sanitize_utf8(v);
}

// Reads the top-level id and result.isError from the tail into `m`.
void read(std::string_view back, Message &m)
{
	Trailer t;
	if (!trailer(back, t))
		return;
	for (size_t i = 0; i < t.n; i++)
		if (t.keys[i] == "id" && m.id.empty())
			m.id = id_of(t.values[i]);
	if (t.first_after_open)
		return;
	// result.isError: the last member of "result", which closes right
	// before the top-level trailer (`"isError":true},"jsonrpc":"2.0","id":3}`,
	// or `..."isError":false}}` for a writer that puts result last).
	size_t close = skip_ws_back(back, t.start);
	if (t.n > 0) {
		if (close == 0 || back[close - 1] != ',')
			return;
		close = skip_ws_back(back, close - 1);
	}
	if (close == 0 || back[close - 1] != '}')
		return;
	std::string_view k, v;
	if (member_back(back, close - 1, &k, &v) != std::string_view::npos && k == "isError") {
		m.is_error = m.is_error || v == "true";
		if (m.kind == Message::kUnknown)
			m.kind = Message::kResponse;
	}
}

} // namespace tail

} // namespace

bool parse_message(std::string_view front, bool gap, std::string_view back,
                   std::vector<Message> &out, bool argument_keys)
{
	size_t before = out.size();
	Parser p(front, argument_keys);
	Parser::Outcome r = p.run(out);
	bool cut = gap || r != Parser::kComplete || p.batch_cut();
	Partial &open = p.open();
	if (gap && (open.any || front.empty() || r == Parser::kError)) {
		// The middle is lost: the tail can still give the id and isError of
		// the message the head began (not of a batch: its tail is a later
		// message's).
		if (!open.any) {
			open = Partial{};
			open.any = true;
		}
		tail::read(back, open.m);
		if (open.m.method.empty() && open.m.id.empty() && open.m.kind == Message::kUnknown)
			open.any = false;
	}
	if (open.any &&
	    (r != Parser::kError || gap || !open.m.method.empty() || !open.m.id.empty()))
		finish(open, true, out);
	for (size_t i = before; i < out.size(); i++)
		out[i].partial = out[i].partial || cut;
	return out.size() > before;
}

void Framer::feed(std::string_view head, bool cut, std::string_view tail, const Sink &sink)
{
	append(head, sink);
	if (cut)
		lost();
	append(tail, sink);
}

void Framer::lost()
{
	// Whatever followed the bytes we have is gone; a message that had not
	// started yet is simply one we will see begin mid-way.
	gap_ = true;
	back_.wipe();
}

void Framer::append(std::string_view bytes, const Sink &sink)
{
	while (!bytes.empty()) {
		size_t nl = bytes.find('\n');
		std::string_view chunk = bytes.substr(0, nl);
		if (!chunk.empty()) {
			if (!gap_) {
				size_t room = kFront - front_.size();
				size_t take = std::min(room, chunk.size());
				front_.mutable_str().append(chunk.data(), take);
				chunk.remove_prefix(take);
				if (!chunk.empty()) {
					gap_ = true; // longer than we parse: only its end is kept
					stats_.overflow++;
				}
			}
			if (gap_ && !chunk.empty()) {
				std::string &b = back_.mutable_str();
				b.append(chunk.data(), chunk.size());
				if (b.size() > 2 * kBack) {
					size_t drop = b.size() - kBack;
					OPENSSL_cleanse(b.data(), drop);
					b.erase(0, drop);
				}
			}
		}
		if (nl == std::string_view::npos)
			return;
		complete(sink);
		bytes.remove_prefix(nl + 1);
	}
}

void Framer::complete(const Sink &sink)
{
	std::string_view front = front_.view();
	std::string_view back = back_.view();
	if (back.size() > kBack)
		back.remove_prefix(back.size() - kBack);
	bool blank = back.empty() && front.find_first_not_of(" \t\r") == std::string_view::npos;
	if (!blank) {
		scratch_.clear();
		stats_.messages++;
		if (gap_)
			stats_.partial++;
		if (!parse_message(front, gap_, back, scratch_, argument_keys_))
			stats_.unparsable++;
		for (const Message &m : scratch_)
			sink(m);
	}
	front_.wipe();
	back_.wipe();
	gap_ = false;
}

} // namespace keytrail::mcp
