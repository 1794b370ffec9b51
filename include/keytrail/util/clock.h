// Time: the kernel stamps events with CLOCK_BOOTTIME; records carry RFC 3339
// wall-clock times. The Clock interface lets the correlator and tests run on
// a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace keytrail
{

class Clock
{
      public:
	virtual ~Clock() = default;
	// Wall-clock now, ns since the epoch.
	virtual int64_t now_ns() const = 0;
	// Wall-clock time of a CLOCK_BOOTTIME stamp from the kernel.
	virtual int64_t boot_to_wall_ns(uint64_t boot_ns) const = 0;
};

// Wall-clock now, ns since the epoch (CLOCK_REALTIME), for code that needs
// only that: no offset to sample, nothing to construct.
int64_t wall_now_ns();

// The real clocks. The boot->wall offset is sampled at construction and on
// resync(), so a stepped wall clock is followed within one health interval.
class SystemClock : public Clock
{
      public:
	SystemClock();
	int64_t now_ns() const override;
	int64_t boot_to_wall_ns(uint64_t boot_ns) const override;
	void resync();

      private:
	int64_t offset_ns_ = 0;
};

// A clock that tells the time it is told: unit tests, the fuzzers and
// `keytrail replay` (where time is what the recording says). Kernel boot
// stamps read as wall time plus boot_offset_ns.
class ManualClock : public Clock
{
      public:
	explicit ManualClock(int64_t now_ns = 0) : now_(now_ns) {}
	int64_t now_ns() const override { return now_; }
	int64_t boot_to_wall_ns(uint64_t boot_ns) const override
	{
		return static_cast<int64_t>(boot_ns) + boot_offset_ns;
	}
	void set(int64_t now_ns) { now_ = now_ns; }
	// Moves forward to t, never back (inputs may arrive out of order).
	void advance_to(int64_t t) { now_ = t > now_ ? t : now_; }
	int64_t boot_offset_ns = 0;

      private:
	int64_t now_;
};

// A duration from the config in nanoseconds, saturated at INT64_MAX.
inline int64_t to_ns(std::chrono::milliseconds d)
{
	int64_t ns;
	if (d.count() < 0)
		return 0;
	return __builtin_mul_overflow(static_cast<int64_t>(d.count()), int64_t{1000000}, &ns)
	           ? INT64_MAX
	           : ns;
}

// "2026-11-26T12:35:51.123456Z"
std::string rfc3339(int64_t wall_ns);
// The same text without an allocation, for records made at event rate.
struct Rfc3339 {
	char text[28] = "0000-00-00T00:00:00.000000Z";
	std::string_view view() const { return {text, 27}; }
};
Rfc3339 rfc3339_chars(int64_t wall_ns);
// The time rfc3339(wall_ns) writes, as parse_rfc3339 reads it back.
int64_t rfc3339_time(int64_t wall_ns);
// "2026-11-26" for midnight UTC (a date-only expiry), else rfc3339().
std::string date_or_time(int64_t wall_ns);
// Parses RFC 3339 ("...Z" or "+hh:mm", optional fraction) or a bare date
// (YYYY-MM-DD, midnight UTC). Returns false when it is neither, or outside
// what int64 nanoseconds hold (1677..2262).
bool parse_rfc3339(std::string_view s, int64_t *wall_ns);

// Ticks (1/sysconf(_SC_CLK_TCK) s) of a ns duration: the unit of
// /proc/PID/stat's starttime, so kernel and /proc stamps compare equal.
uint64_t ns_to_clock_ticks(uint64_t ns);
uint64_t clock_ticks_to_ns(uint64_t ticks);

} // namespace keytrail
