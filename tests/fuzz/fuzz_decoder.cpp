// The kernel record decoder: any bytes decode or are rejected with a reason.
#include <cstdint>
#include <string>

#include "keytrail/probe/events.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string err;
	auto ev = keytrail::decode_event(data, size, &err);
	if (ev) {
		(void)keytrail::event_type_name(keytrail::event_type(*ev));
	} else if (err.empty()) {
		__builtin_trap(); // a rejection always says why
	}
	return 0;
}
