#include "keytrail/util/text.h"

#include <fnmatch.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace keytrail
{

namespace
{

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t utf8_seq_len(std::string_view s, size_t i)
{
	auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
	unsigned char c = b(i);
	size_t n;
	unsigned min;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0) {
		n = 2;
		min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		n = 3;
		min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		n = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (i + n > s.size())
		return 0;
	unsigned cp = c & (0x7F >> n);
	for (size_t k = 1; k < n; k++) {
		if ((b(i + k) & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (b(i + k) & 0x3F);
	}
	// Overlong forms, UTF-16 surrogates and values past U+10FFFF are invalid.
	if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return n;
}

} // namespace

std::string sanitize_utf8(std::string_view s)
{
	std::string out;
	out.reserve(s.size());
	for (size_t i = 0; i < s.size();) {
		size_t n = utf8_seq_len(s, i);
		if (n == 0) {
			char esc[5];
			std::snprintf(esc, sizeof(esc), "\\x%02X",
			              static_cast<unsigned char>(s[i]));
			out += esc;
			i++;
		} else {
			out.append(s.substr(i, n));
			i += n;
		}
	}
	return out;
}

std::vector<std::string> split_nul(std::string_view block)
{
	std::vector<std::string> parts;
	if (block.empty())
		return parts;
	size_t n = 1; // counted first: an argv is split for every exec

	for (const char *p = block.data(), *end = p + block.size();
	     (p = static_cast<const char *>(std::memchr(p, '\0', end - p))); p++)
		n++;
	parts.reserve(n);
	size_t start = 0;
	while (start < block.size()) {
		size_t end = block.find('\0', start);
		if (end == std::string_view::npos)
			end = block.size();
		parts.emplace_back(block.substr(start, end - start));
		start = end + 1;
	}
	return parts;
}

size_t json_too_deep(std::string_view text, size_t max_depth)
{
	size_t depth = 0;
	for (size_t i = 0; i < text.size(); i++) {
		switch (text[i]) {
		case '"':
			for (i++; i < text.size() && text[i] != '"'; i++)
				if (text[i] == '\\')
					i++;
			break;
		case '[':
		case '{':
			if (++depth > max_depth)
				return i;
			break;
		case ']':
		case '}':
			if (depth)
				depth--;
			break;
		default: break;
		}
	}
	return std::string_view::npos;
}

std::string_view basename_of(std::string_view path)
{
	auto slash = path.rfind('/');
	return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string read_link(const std::string &path)
{
	char buf[4096];
	ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
	return n > 0 ? std::string(buf, n) : "";
}

bool glob_match(const std::string &pattern, const std::string &s)
{
	return fnmatch(pattern.c_str(), s.c_str(), 0) == 0;
}

} // namespace keytrail
