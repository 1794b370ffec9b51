#include "upstream.h"

#include <sys/socket.h>

#include <cerrno>
#include <charconv>

#include "keytrail/correlate/policy.h"
#include "keytrail/util/text.h"

namespace keytrail::correlate_detail
{

namespace
{

bool loopback(const std::string &addr)
{
	return addr.starts_with("127.") || addr == "::1" || addr.starts_with("::ffff:127.");
}

// Multicast and broadcast (mDNS, SSDP): the local network, not an upstream.
bool local_broadcast(const std::string &addr)
{
	if (addr == "255.255.255.255" || addr.starts_with("ff") ||
	    addr.starts_with("::ffff:224.") || addr.starts_with("::ffff:239."))
		return true;
	unsigned first = 0;
	auto [end, ec] = std::from_chars(addr.data(), addr.data() + addr.size(), first);
	return ec == std::errc() && end != addr.data() + addr.size() && *end == '.' &&
	       first >= 224 && first <= 239;
}

// A host name (or address) that is not this machine.
bool remote_name(const std::string &host)
{
	if (host.empty() || host == "localhost" || host.ends_with(".localhost"))
		return false;
	std::string h =
	    host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
	return !loopback(h) && h != "0.0.0.0" && h != "::";
}

// "host:port" -> host; "[v6]:port" -> "[v6]"; "host" -> host.
std::string without_port(const std::string &hp)
{
	size_t colon = hp.rfind(':');
	if (colon == std::string::npos || hp.find(']', colon) != std::string::npos ||
	    (hp.front() != '[' && hp.find(':') != colon))
		return hp;
	return hp.substr(0, colon);
}

} // namespace

const char *not_upstream(const ConnectSeen &e, bool loopback_upstreams)
{
	if (e.family == AF_UNIX && !e.proxy_target.empty() &&
	    (e.result == 0 || e.result == -EINPROGRESS))
		return nullptr; // a local proxy on a unix socket, asked for an upstream
	if (e.family != AF_INET && e.family != AF_INET6)
		return "not_inet"; // unix, netlink
	if (e.result != 0 && e.result != -EINPROGRESS)
		return "failed";
	if (e.port == 53)
		return "dns";
	if (e.port == 0 || e.addr == "0.0.0.0" || e.addr == "::")
		return "no_peer"; // the UDP connect getaddrinfo makes to port 0
	if (e.sock_type == SOCK_DGRAM && local_broadcast(e.addr))
		return "no_peer"; // mDNS, SSDP: nobody's upstream
	if (!loopback(e.addr) || loopback_upstreams)
		return nullptr;
	std::string named = !e.proxy_target.empty() ? without_port(e.proxy_target)
	                    : !e.sni.empty()        ? e.sni
	                                            : without_port(e.http_host);
	return remote_name(named) ? nullptr : "loopback";
}

UpstreamOf::UpstreamOf(const ConnectSeen &e) : e_(e), port_(e.port)
{
	if (!e.proxy_target.empty()) {
		size_t colon = e.proxy_target.rfind(':');
		host_ = e.proxy_target.substr(0, colon);
		unsigned port = 0;
		const char *b = e.proxy_target.data() + colon + 1,
		           *end = e.proxy_target.data() + e.proxy_target.size();
		if (colon != std::string::npos && std::from_chars(b, end, port).ptr == end &&
		    port && port < 65536) {
			port_ = static_cast<uint16_t>(port);
			proxied_ = true;
		} else {
			host_.clear(); // a malformed target (a damaged recording): not a proxy's
		}
	} else if (!e.sni.empty()) {
		host_ = e.sni;
	} else {
		host_ = without_port(e.http_host);
	}
	name_ = sanitize_utf8(host_.empty() ? e.addr : host_);
}

std::string UpstreamOf::key() const
{
	return name_ + ":" + std::to_string(port_);
}

nlohmann::json UpstreamOf::json() const
{
	nlohmann::json u;
	if (proxied_) {
		// The proxy resolves and reaches it: its address is not ours to see.
		if (e_.family == AF_UNIX)
			u["via"] = {{"unix", true}};
		else
			u["via"] = {{"addr", e_.addr}, {"port", e_.port}};
		u["proxy_target"] = sanitize_utf8(e_.proxy_target);
	} else {
		u["addr"] = e_.addr;
	}
	u["name"] = name_;
	u["port"] = port_;
	u["protocol"] = e_.sock_type == SOCK_DGRAM ? "udp" : "tcp";
	if (!e_.sni.empty())
		u["sni"] = sanitize_utf8(e_.sni);
	if (!e_.http_host.empty())
		u["http_host"] = sanitize_utf8(e_.http_host);
	if (e_.result == -EINPROGRESS)
		u["in_progress"] = true;
	if (e_.via_proxy && !proxied_)
		u["via_proxy"] = true;
	if (e_.name_check != ConnectSeen::kNoCheck && !host_.empty())
		u["name_verified"] = e_.name_check == ConnectSeen::kVerified;
	return u;
}

UpstreamOf::Verdict UpstreamOf::check(const InventoryEntry &inv) const
{
	if (inv.allowed_upstreams.empty())
		return {true, false};
	const std::string addr = proxied_ ? "" : e_.addr;
	bool by_addr = !addr.empty() && policy::upstream_allowed(inv, addr, "", "");
	bool by_name = policy::upstream_allowed(inv, addr, host_, proxied_ ? "" : e_.http_host);
	if (e_.name_check == ConnectSeen::kUnverified)
		return {by_addr, by_name && !by_addr};
	return {by_name, false};
}

} // namespace keytrail::correlate_detail
