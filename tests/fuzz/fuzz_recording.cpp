// Recording frames (keytrail replay reads files people hand it): decoded and
// fed to a correlator, or rejected.
#include <cstdint>

#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static keytrail::ManualClock clock(1795000000000000000LL);
	static keytrail::Config cfg;
	keytrail::Correlator corr("fuzz", cfg, clock,
	                          [](keytrail::Record &&r) { (void)keytrail::serialize(r); });
	// Several frames: u16 length, then the frame.
	size_t at = 0;
	while (at + 2 <= size) {
		size_t n = data[at] | static_cast<size_t>(data[at + 1]) << 8;
		at += 2;
		if (n > size - at)
			break;
		if (auto in = keytrail::decode_input(data + at, n))
			corr.feed(*in);
		at += n;
	}
	return 0;
}
