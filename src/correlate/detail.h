// Helpers the correlator's source files share; not part of its interface.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "keytrail/util/text.h"

namespace keytrail::correlate_detail
{

using keytrail::fnv1a;

inline std::string hex64(uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	std::string s(16, '0');
	for (int i = 15; i >= 0; i--, v >>= 4)
		s[i] = digits[v & 0xf];
	return s;
}

// now - then, saturated: times come from recordings people hand us.
inline int64_t since(int64_t now, int64_t then)
{
	int64_t d;
	if (__builtin_sub_overflow(now, then, &d))
		return now < then ? INT64_MIN : INT64_MAX;
	return d;
}

// now + d, saturated.
inline int64_t later(int64_t now, int64_t d)
{
	int64_t t;
	return __builtin_add_overflow(now, d, &t) ? INT64_MAX : t;
}

// Processes are keyed by a 64-bit hash of their exec_id: no string compare
// per event; a collision among live processes is a 1-in-10^10 event at 100k.
inline uint64_t proc_key(const std::string &exec_id)
{
	return fnv1a(exec_id);
}

} // namespace keytrail::correlate_detail
