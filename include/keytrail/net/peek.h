// Names the upstream from the first bytes a client writes on a connection:
// the SNI of a TLS ClientHello, the Host header of an HTTP/1.x request, or
// what it asks an HTTP proxy to reach.
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

// What a client asks an HTTP proxy for, as "host:port": the authority of a
// CONNECT request ("CONNECT api.github.com:443 HTTP/1.1"), or the host of an
// absolute-form request target ("GET http://h:8080/x HTTP/1.1"; port 80 by
// default, 443 for https). IPv6 hosts keep their brackets. nullopt otherwise.
std::optional<std::string> parse_proxy_target(std::string_view data);

} // namespace keytrail
