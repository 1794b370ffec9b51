// MCP client configs (JSON/JSONC, as users write them): scanned or reported
// with a line, never thrown.
#include <cstdint>
#include <string_view>

#include "keytrail/secrets/mcp_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	auto r =
	    keytrail::scan_mcp_config(std::string_view(reinterpret_cast<const char *>(data), size));
	(void)r;
	return 0;
}
