// Object members written straight into a string, for records built at event
// rate (opens and closes of a busy server): no DOM, the same bytes
// dump_json() would write for the same values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace keytrail
{

// `s` as a JSON string: quoted, escaped as nlohmann escapes (\" \\ \b \f
// \n \r \t, other control bytes as \u00XX, UTF-8 as it is). `s` must be
// valid UTF-8: shown() and sanitize_utf8() make it so.
void append_json_string(std::string &out, std::string_view s);

// `"k":v` members, comma-separated, without the braces (a Record's raw
// members).
class JsonMembers
{
      public:
	JsonMembers() = default;
	// Members written after `start` (a comma first, unless it is empty).
	explicit JsonMembers(std::string start) : s_(std::move(start)) {}
	JsonMembers &str(std::string_view key, std::string_view value);
	JsonMembers &num(std::string_view key, int64_t value);
	JsonMembers &unum(std::string_view key, uint64_t value);
	JsonMembers &boolean(std::string_view key, bool value);
	// A member whose value is JSON text already.
	JsonMembers &raw(std::string_view key, std::string_view json);
	// Another set of members, appended after these.
	JsonMembers &append(std::string_view members);
	const std::string &text() const { return s_; }
	std::string take() { return std::move(s_); }

      private:
	void key(std::string_view k);
	template <typename T> JsonMembers &number(std::string_view k, T value);
	std::string s_;
};

} // namespace keytrail
