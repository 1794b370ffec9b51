#include "keytrail/schema/json_members.h"

#include <array>
#include <charconv>
#include <cstring>

namespace keytrail
{

namespace
{

// The bytes a JSON string must escape: control bytes, '"' and '\\'.
constexpr std::array<bool, 256> kEscape = [] {
	std::array<bool, 256> t{};
	for (int c = 0; c < 0x20; c++)
		t[c] = true;
	t['"'] = t['\\'] = true;
	return t;
}();

// Where the first byte to escape is (s.size(): none).
size_t first_escape(std::string_view s)
{
	size_t i = 0;
	while (i < s.size() && !kEscape[static_cast<unsigned char>(s[i])])
		i++;
	return i;
}

} // namespace

void append_json_string(std::string &out, std::string_view s)
{
	size_t first = first_escape(s);
	if (first == s.size()) {
		// Most strings (names, paths, times): one resize and a copy.
		size_t at = out.size();
		out.resize(at + s.size() + 2);
		char *d = out.data() + at;
		d[0] = '"';
		std::memcpy(d + 1, s.data(), s.size());
		d[s.size() + 1] = '"';
		return;
	}
	static const char hex[] = "0123456789abcdef";
	out.push_back('"');
	size_t plain = 0; // bytes since the last escape, appended in one go
	for (size_t i = first; i < s.size(); i++) {
		auto c = static_cast<unsigned char>(s[i]);
		if (!kEscape[c])
			continue;
		out.append(s.data() + plain, i - plain);
		plain = i + 1;
		out.push_back('\\');
		switch (c) {
		case '"': out.push_back('"'); break;
		case '\\': out.push_back('\\'); break;
		case '\b': out.push_back('b'); break;
		case '\f': out.push_back('f'); break;
		case '\n': out.push_back('n'); break;
		case '\r': out.push_back('r'); break;
		case '\t': out.push_back('t'); break;
		default:
			out.append("u00");
			out.push_back(hex[c >> 4]);
			out.push_back(hex[c & 15]);
		}
	}
	out.append(s.data() + plain, s.size() - plain);
	out.push_back('"');
}

void JsonMembers::key(std::string_view k)
{
	bool comma = !s_.empty();
	if (!comma)
		s_.reserve(512); // most records: one allocation
	if (first_escape(k) == k.size()) {
		// ,"key": in one go (every key the agent writes)
		size_t at = s_.size();
		s_.resize(at + comma + k.size() + 3);
		char *d = s_.data() + at;
		if (comma)
			*d++ = ',';
		*d++ = '"';
		std::memcpy(d, k.data(), k.size());
		d[k.size()] = '"';
		d[k.size() + 1] = ':';
		return;
	}
	if (comma)
		s_ += ',';
	append_json_string(s_, k);
	s_ += ':';
}

JsonMembers &JsonMembers::str(std::string_view k, std::string_view value)
{
	key(k);
	append_json_string(s_, value);
	return *this;
}

template <typename T> JsonMembers &JsonMembers::number(std::string_view k, T value)
{
	key(k);
	char buf[24];
	auto r = std::to_chars(buf, buf + sizeof(buf), value);
	s_.append(buf, r.ptr);
	return *this;
}

JsonMembers &JsonMembers::num(std::string_view k, int64_t value)
{
	return number(k, value);
}

JsonMembers &JsonMembers::unum(std::string_view k, uint64_t value)
{
	return number(k, value);
}

JsonMembers &JsonMembers::boolean(std::string_view k, bool value)
{
	key(k);
	s_.append(value ? "true" : "false");
	return *this;
}

JsonMembers &JsonMembers::raw(std::string_view k, std::string_view json)
{
	key(k);
	s_.append(json);
	return *this;
}

JsonMembers &JsonMembers::append(std::string_view members)
{
	if (members.empty())
		return *this;
	if (!s_.empty())
		s_.push_back(',');
	s_.append(members);
	return *this;
}

} // namespace keytrail
