// Fake credentials in valid formats, built at run time from a seed (never
// committed as literals).
#pragma once

#include <random>
#include <string>

namespace keytrail::test
{

// Distinct seeds give distinct tokens (a PRNG per seed, not an offset).
inline std::string token(const std::string &prefix, size_t n, unsigned seed)
{
	const std::string a = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
	std::mt19937 g(seed);
	std::string s = prefix;
	for (size_t i = 0; i < n; i++)
		s += a[g() % a.size()];
	return s;
}

} // namespace keytrail::test
