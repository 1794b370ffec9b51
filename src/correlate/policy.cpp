#include "keytrail/correlate/policy.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

namespace keytrail::policy
{

namespace
{

constexpr int64_t kDayNs = 86400LL * 1000000000LL;

// now - then, saturated: times come from recordings and ledgers people hand us.
int64_t since(int64_t now, int64_t then)
{
	int64_t d;
	if (__builtin_sub_overflow(now, then, &d))
		return now < then ? INT64_MIN : INT64_MAX;
	return d;
}

// Whether addr lies in the CIDR `pattern`; *is_cidr says whether the
// pattern was a CIDR at all (then no glob is tried).
bool cidr_match(const std::string &pattern, const std::string &addr, bool *is_cidr)
{
	*is_cidr = false;
	size_t slash = pattern.find('/');
	if (slash == std::string::npos)
		return false;
	std::string net = pattern.substr(0, slash);
	int bits = -1;
	const char *b = pattern.data() + slash + 1, *e = pattern.data() + pattern.size();
	if (std::from_chars(b, e, bits).ptr != e)
		return false;
	unsigned char a[16], n[16];
	int len = 0;
	if (inet_pton(AF_INET, net.c_str(), n) == 1)
		len = 4;
	else if (inet_pton(AF_INET6, net.c_str(), n) == 1)
		len = 16;
	else
		return false;
	*is_cidr = true;
	if (inet_pton(len == 4 ? AF_INET : AF_INET6, addr.c_str(), a) != 1)
		return false;
	if (bits < 0 || bits > len * 8)
		return false;
	for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
		unsigned char mask =
		    bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
		if ((a[i] & mask) != (n[i] & mask))
			return false;
	}
	return true;
}

} // namespace

const InventoryEntry *match(const std::vector<InventoryEntry> &inventory, const Seen &seen)
{
	// An env var's name is its location; other sources name a key inside.
	std::string_view name = seen.source == "env" ? seen.location : seen.name;
	for (const auto &e : inventory) {
		if (!e.fingerprints.empty() &&
		    std::find(e.fingerprints.begin(), e.fingerprints.end(), seen.fingerprint) ==
		        e.fingerprints.end())
			continue;
		if (e.path && !((seen.source == "file" || seen.source == "mcp_config") &&
		                glob_match(*e.path, std::string(seen.location))))
			continue;
		if (e.env && !(seen.source == "env" && glob_match(*e.env, std::string(name))))
			continue;
		if (e.identity && !glob_match(*e.identity, std::string(seen.identity)))
			continue;
		return &e;
	}
	return nullptr;
}

namespace
{

bool iequals(std::string_view a, std::string_view b)
{
	return a.size() == b.size() &&
	       std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
		       return std::tolower(static_cast<unsigned char>(x)) ==
		              std::tolower(static_cast<unsigned char>(y));
	       });
}

struct HostPort {
	std::string_view host;
	int port = -1; // none written
};

// "host", "host:port", "[v6]:port" or a bare IPv6 address; an IPv4-mapped
// address is its IPv4 one.
HostPort host_port(std::string_view s)
{
	HostPort hp{s};
	std::string_view rest;
	if (!s.empty() && s[0] == '[') {
		size_t close = s.find(']');
		if (close == std::string_view::npos)
			return hp;
		hp.host = s.substr(1, close - 1);
		rest = s.substr(close + 1);
	} else if (size_t colon = s.find(':');
	           colon != std::string_view::npos && s.rfind(':') == colon) {
		hp.host = s.substr(0, colon);
		rest = s.substr(colon);
	}
	if (rest.size() > 1 && rest[0] == ':') {
		int port = 0;
		auto r = std::from_chars(rest.data() + 1, rest.data() + rest.size(), port);
		if (r.ec == std::errc() && r.ptr == rest.data() + rest.size() && port > 0 &&
		    port < 65536)
			hp.port = port;
	}
	if (hp.host.size() > 1 && hp.host.back() == '.') // a fully qualified name
		hp.host.remove_suffix(1);
	constexpr std::string_view mapped = "::ffff:";
	if (hp.host.size() > mapped.size() && iequals(hp.host.substr(0, mapped.size()), mapped) &&
	    hp.host.find('.') != std::string_view::npos)
		hp.host.remove_prefix(mapped.size());
	return hp;
}

} // namespace

std::string_view credential_scope(std::string_view source, std::string_view location,
                                  std::string_view name)
{
	auto ends = [](std::string_view s, std::string_view tail) {
		return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
	};
	if (source != "file" || !ends(location, "npmrc") || name.substr(0, 2) != "//" ||
	    !(ends(name, ":_authToken") || ends(name, ":_auth") || ends(name, ":_password")))
		return {};
	name.remove_prefix(2);
	size_t end = name.find('/');
	return end == std::string_view::npos ? std::string_view{} : name.substr(0, end);
}

bool scope_reaches(std::string_view scope, const std::string &addr, uint16_t port,
                   const std::string &sni, const std::string &http_host,
                   const std::string &proxy_target)
{
	HostPort want = host_port(scope);
	if (want.host.empty())
		return false;
	auto reaches = [&](std::string_view name) {
		if (name.empty())
			return false;
		HostPort got = host_port(name);
		int p = got.port >= 0 ? got.port : port;
		return iequals(got.host, want.host) && (want.port < 0 || want.port == p);
	};
	// Through a proxy, its address is not the registry's.
	return reaches(proxy_target) || reaches(sni) || reaches(http_host) ||
	       (proxy_target.empty() && reaches(addr));
}

bool fetch_credential(std::string_view type, std::string_view source)
{
	return source == "file" || type == "npm_token" || type == "pypi_token" ||
	       type == "dockerhub_pat";
}

bool identity_allowed(const InventoryEntry &e, std::string_view identity)
{
	if (e.allowed_identities.empty())
		return true;
	std::string id(identity);
	return std::any_of(e.allowed_identities.begin(), e.allowed_identities.end(),
	                   [&](const std::string &g) { return glob_match(g, id); });
}

bool upstream_matches(const std::vector<std::string> &patterns, const std::string &addr,
                      const std::string &sni, const std::string &http_host)
{
	for (const auto &p : patterns) {
		bool is_cidr;
		if (cidr_match(p, addr, &is_cidr))
			return true;
		if (is_cidr)
			continue;
		if (glob_match(p, addr) || (!sni.empty() && glob_match(p, sni)) ||
		    (!http_host.empty() && glob_match(p, http_host)))
			return true;
	}
	return false;
}

bool upstream_allowed(const InventoryEntry &e, const std::string &addr, const std::string &sni,
                      const std::string &http_host)
{
	return e.allowed_upstreams.empty() ||
	       upstream_matches(e.allowed_upstreams, addr, sni, http_host);
}

std::vector<StaleReason> stale_reasons(const InventoryEntry &e, const Lifetime &life, int64_t now,
                                       const std::string &what)
{
	std::vector<StaleReason> out;
	if (life.retired)
		return out;
	std::string named = what + " (" + e.id + ")";
	auto days = [](int64_t ns) { return std::to_string(ns / kDayNs); };
	if (e.expires_ns && now > *e.expires_ns)
		out.push_back(
		    {"expired", *e.expires_ns,
		     named + " expired on " + date_or_time(*e.expires_ns) +
		         (life.last_used_ns > *e.expires_ns
		              ? " and was used since (last " + date_or_time(life.last_used_ns) + ")"
		              : " and is still held")});
	// Born when first seen, or earlier if a file it came from is older.
	int64_t born = life.first_seen_ns;
	if (life.oldest_mtime_ns && life.oldest_mtime_ns < born)
		born = life.oldest_mtime_ns;
	if (e.rotate_every && born && since(now, born) > to_ns(*e.rotate_every))
		out.push_back({"rotation_overdue", born,
		               named + " was last rotated " + days(since(now, born)) +
		                   " days ago, past its rotate_every"});
	int64_t last = life.last_used_ns ? life.last_used_ns : life.first_seen_ns;
	if (e.max_unused && last && since(now, last) > to_ns(*e.max_unused))
		out.push_back({"unused", last,
		               named + " has not been used for " + days(since(now, last)) +
		                   " days, past its max_unused"});
	return out;
}

Sharing sharing(const InventoryEntry *e, const std::vector<std::string> &holders,
                size_t environments)
{
	Sharing s;
	s.across_environments = environments >= 2;
	if (holders.size() < 2 && !s.across_environments)
		return s;
	// An entry that names every holder as allowed sanctions sharing within
	// one environment.
	if (e && !s.across_environments && !e->allowed_identities.empty() &&
	    std::all_of(holders.begin(), holders.end(),
	                [&](const std::string &h) { return identity_allowed(*e, h); }))
		return s;
	s.shared = true;
	return s;
}

} // namespace keytrail::policy
