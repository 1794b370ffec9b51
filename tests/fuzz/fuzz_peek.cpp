// The first bytes a tracked process writes to a socket: TLS ClientHello
// (SNI) and HTTP request (Host) parsers.
#include <cstdint>
#include <string_view>

#include "keytrail/net/peek.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view in(reinterpret_cast<const char *>(data), size);
	(void)keytrail::parse_tls_sni(in);
	(void)keytrail::parse_http_host(in);
	return 0;
}
