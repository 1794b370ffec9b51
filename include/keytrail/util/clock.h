// Time: the kernel stamps events with CLOCK_BOOTTIME; records carry RFC 3339
// wall-clock times. The Clock interface lets the correlator and tests run on
// a fake clock.
#pragma once

#include <cstdint>
#include <string>

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

// "2026-11-26T12:35:51.123456Z"
std::string rfc3339(int64_t wall_ns);
// Parses RFC 3339 ("...Z" or "+hh:mm", optional fraction) or a bare date
// (YYYY-MM-DD, midnight UTC). Returns false when it is neither, or outside
// what int64 nanoseconds hold (1677..2262).
bool parse_rfc3339(const std::string &s, int64_t *wall_ns);

// Ticks (1/sysconf(_SC_CLK_TCK) s) of a ns duration: the unit of
// /proc/PID/stat's starttime, so kernel and /proc stamps compare equal.
uint64_t ns_to_clock_ticks(uint64_t ns);
uint64_t clock_ticks_to_ns(uint64_t ticks);

} // namespace keytrail
