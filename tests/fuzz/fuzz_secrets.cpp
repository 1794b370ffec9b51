// The secret scanners on an environment / argv (NUL-separated input) and on
// file text, and argv masking: no crash, and masking never leaves a found
// secret in place.
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
	auto found = keytrail::scan_argv(parts);
	auto masked = keytrail::mask_argv(parts);
	for (const auto &f : found)
		for (const auto &m : masked)
			if (f.secret.view().size() >= 8 && m.find(f.secret.view()) != std::string::npos)
				__builtin_trap(); // a credential survived masking
	(void)keytrail::scan_file(in);
	return 0;
}
