// The config and inventory parser: any text is a config or a ConfigError.
#include <cstdint>
#include <string>

#include "keytrail/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try {
		keytrail::parse_config(std::string(reinterpret_cast<const char *>(data), size),
		                       "fuzz");
	} catch (const keytrail::Error &) {
	}
	return 0;
}
