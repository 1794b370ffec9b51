// The secret scanners on an environment / argv (NUL-separated input) and on
// file text, and argv masking: no crash, no undefined behaviour.
#include <cstdint>
#include <string>
#include <vector>

#include "keytrail/secrets/catalog.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view in(reinterpret_cast<const char *>(data), size);
	std::vector<std::string> parts = keytrail::split_nul(in);
	(void)keytrail::scan_environ(parts);
	(void)keytrail::scan_argv(parts);
	if (keytrail::mask_argv(parts).size() != parts.size())
		__builtin_trap(); // masking keeps every argument
	(void)keytrail::scan_file(in);
	return 0;
}
