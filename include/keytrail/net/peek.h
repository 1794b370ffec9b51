// Names the upstream from the first bytes a client writes on a connection:
// the SNI of a TLS ClientHello or the Host header of an HTTP/1.x request.
// Input is untrusted and may be cut short; the parsers never read past it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace keytrail
{

// server_name (host_name type) from a TLS ClientHello record, or nullopt.
std::optional<std::string> parse_tls_sni(std::string_view data);

// Host header value of an HTTP/1.x request (port kept), or nullopt.
std::optional<std::string> parse_http_host(std::string_view data);

} // namespace keytrail
