// Text helpers for data that comes from the kernel or from other people's
// files: bytes that need not be UTF-8, may hold control characters, and must
// still become valid JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

// Returns s with valid UTF-8 kept and every byte of an invalid sequence
// written as the text "\xNN", so any byte string becomes valid UTF-8 and a
// reader can still tell which bytes were there.
std::string sanitize_utf8(std::string_view s);

// Splits a NUL-separated block (argv, environ) into its strings. A trailing
// string without NUL (cut at a bound) is kept.
std::vector<std::string> split_nul(std::string_view block);

// FNV-1a, 64 bits: the same in every build (journal indexes outlive the
// binary that wrote them).
inline uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull)
{
	for (unsigned char c : s)
		h = (h ^ c) * 1099511628211ull;
	return h;
}

inline bool contains(std::string_view s, std::string_view part)
{
	return s.find(part) != std::string_view::npos;
}

// Where JSON (or JSONC) text nests deeper than max_depth arrays and objects:
// the offset of the bracket that goes one level too deep, or npos. Strings
// are skipped, so brackets inside them do not count. Parsers check this
// first, so no tree they build or walk is deeper than they can recurse.
size_t json_too_deep(std::string_view text, size_t max_depth);

// Last path component ("/usr/bin/node" -> "node").
std::string_view basename_of(std::string_view path);

// The target of a symlink (/proc/PID/exe, /proc/PID/fd/N), "" if unreadable.
std::string read_link(const std::string &path);

// Shell-style glob (fnmatch, no FNM_PATHNAME): '*' also crosses '/'.
bool glob_match(const std::string &pattern, const std::string &s);

} // namespace keytrail
