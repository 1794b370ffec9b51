// Builds a minimal but well-formed TLS 1.2/1.3 ClientHello carrying an SNI,
// the way a real client writes its first bytes.
#pragma once

#include <string>

namespace keytrail::test
{

std::string client_hello(const std::string &sni);

} // namespace keytrail::test
