#include "keytrail/util/clock.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>

namespace keytrail
{

namespace
{
int64_t read_ns(clockid_t id)
{
	timespec ts{};
	clock_gettime(id, &ts);
	return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}
} // namespace

SystemClock::SystemClock()
{
	resync();
}

void SystemClock::resync()
{
	// Bracket the realtime read with two boottime reads and take the middle,
	// which keeps the offset error below the gap between the calls.
	int64_t b1 = read_ns(CLOCK_BOOTTIME);
	int64_t r = read_ns(CLOCK_REALTIME);
	int64_t b2 = read_ns(CLOCK_BOOTTIME);
	offset_ns_ = r - (b1 + (b2 - b1) / 2);
}

int64_t wall_now_ns()
{
	return read_ns(CLOCK_REALTIME);
}

int64_t SystemClock::now_ns() const
{
	return read_ns(CLOCK_REALTIME);
}

int64_t SystemClock::boot_to_wall_ns(uint64_t boot_ns) const
{
	return static_cast<int64_t>(boot_ns) + offset_ns_;
}

std::string date_or_time(int64_t wall_ns)
{
	constexpr int64_t kDay = 86400LL * 1000000000LL;
	std::string t = rfc3339(wall_ns);
	return wall_ns % kDay == 0 ? t.substr(0, 10) : t;
}

namespace
{

// 1970 .. 2262 (int64 ns): a time from a damaged recording is clamped,
// never a signed overflow in the calendar arithmetic.
int64_t clamp_wall(int64_t wall_ns)
{
	constexpr int64_t kMax = INT64_MAX - 2 * 86400LL * 1000000000LL;
	return std::clamp<int64_t>(wall_ns, 0, kMax);
}

} // namespace

int64_t rfc3339_time(int64_t wall_ns)
{
	return clamp_wall(wall_ns) / 1000 * 1000;
}

Rfc3339 rfc3339_chars(int64_t wall_ns)
{
	// Called for every record: std::chrono's calendar instead of gmtime_r
	// and snprintf (no locale, no tz lock), digits written in place.
	using namespace std::chrono;
	wall_ns = clamp_wall(wall_ns);
	sys_time<nanoseconds> tp{nanoseconds{wall_ns}};
	auto day = floor<days>(tp);
	year_month_day ymd{day};
	auto us = duration_cast<microseconds>(tp - day).count();
	Rfc3339 out;
	char *buf = out.text;
	auto put = [&](int pos, long long v, int width) {
		for (int i = width - 1; i >= 0; i--, v /= 10)
			buf[pos + i] = static_cast<char>('0' + v % 10);
	};
	int y = static_cast<int>(ymd.year());
	if (y < 0 || y > 9999)
		y = 0;
	put(0, y, 4);
	put(5, static_cast<unsigned>(ymd.month()), 2);
	put(8, static_cast<unsigned>(ymd.day()), 2);
	long long secs = us / 1000000;
	put(11, secs / 3600, 2);
	put(14, secs / 60 % 60, 2);
	put(17, secs % 60, 2);
	put(20, us % 1000000, 6);
	return out;
}

std::string rfc3339(int64_t wall_ns)
{
	return std::string(rfc3339_chars(wall_ns).view());
}

namespace
{

// n decimal digits of s at i, and nothing else.
bool digits(std::string_view s, size_t i, int n, int *out)
{
	if (i + static_cast<size_t>(n) > s.size())
		return false;
	int v = 0;
	for (int k = 0; k < n; k++) {
		char c = s[i + static_cast<size_t>(k)];
		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*out = v;
	return true;
}

} // namespace

bool parse_rfc3339(std::string_view s, int64_t *wall_ns)
{
	int y, mo, d, h = 0, mi = 0, sec = 0;
	if (!digits(s, 0, 4, &y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, &mo) ||
	    s[7] != '-' || !digits(s, 8, 2, &d))
		return false;
	size_t i = 10;
	int64_t frac_ns = 0, tz_offset_s = 0;
	if (i < s.size()) {
		if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
			return false;
		if (!digits(s, i + 1, 2, &h) || s.size() < i + 9 || s[i + 3] != ':' ||
		    !digits(s, i + 4, 2, &mi) || s[i + 6] != ':' || !digits(s, i + 7, 2, &sec))
			return false;
		i += 9;
		if (i < s.size() && s[i] == '.') {
			int64_t scale = 100000000;
			size_t nfrac = 0;
			for (i++; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++, nfrac++) {
				frac_ns += (s[i] - '0') * scale;
				scale /= 10;
			}
			if (nfrac == 0)
				return false;
		}
		if (i >= s.size())
			return false; // a time needs a zone
		if (s[i] == 'Z' || s[i] == 'z') {
			i++;
		} else if (s[i] == '+' || s[i] == '-') {
			int oh, om;
			if (!digits(s, i + 1, 2, &oh) || s.size() < i + 6 || s[i + 3] != ':' ||
			    !digits(s, i + 4, 2, &om))
				return false;
			tz_offset_s = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
			i += 6;
		} else {
			return false;
		}
		if (i != s.size())
			return false;
	}
	using namespace std::chrono;
	year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
	                   day{static_cast<unsigned>(d)}};
	if (!ymd.ok() || h > 23 || mi > 59 || sec > 60)
		return false;
	int64_t secs = duration_cast<seconds>(sys_days{ymd}.time_since_epoch()).count() +
	               h * 3600LL + mi * 60LL + sec;
	// Only what int64 nanoseconds can hold (1677..2262): "1013-..." is an error.
	int64_t ns;
	if (__builtin_mul_overflow(secs - tz_offset_s, 1000000000LL, &ns) ||
	    __builtin_add_overflow(ns, frac_ns, &ns))
		return false;
	*wall_ns = ns;
	return true;
}

uint64_t ns_to_clock_ticks(uint64_t ns)
{
	static const uint64_t hz = static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
	return ns / (1000000000ULL / hz);
}

uint64_t clock_ticks_to_ns(uint64_t ticks)
{
	static const uint64_t hz = static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
	return ticks * (1000000000ULL / hz);
}

} // namespace keytrail
