#include "keytrail/net/dns.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cctype>

namespace keytrail
{

namespace
{

constexpr int kMaxPointers = 16;     // compression pointers followed per name
constexpr uint32_t kMaxRecords = 64; // answers read per message

uint32_t u16(std::string_view m, size_t at)
{
	return static_cast<uint32_t>(static_cast<uint8_t>(m[at])) << 8 |
	       static_cast<uint8_t>(m[at + 1]);
}

uint32_t u32(std::string_view m, size_t at)
{
	return u16(m, at) << 16 | u16(m, at + 2);
}

// The name at *pos (which moves past it); compression pointers followed.
std::optional<std::string> read_name(std::string_view m, size_t *pos)
{
	std::string name;
	size_t at = *pos;
	bool jumped = false;
	for (int hops = 0;;) {
		if (at >= m.size())
			return std::nullopt;
		uint8_t len = static_cast<uint8_t>(m[at]);
		if ((len & 0xC0) == 0xC0) {
			if (at + 1 >= m.size() || ++hops > kMaxPointers)
				return std::nullopt;
			if (!jumped)
				*pos = at + 2;
			jumped = true;
			at = (len & 0x3F) << 8 | static_cast<uint8_t>(m[at + 1]);
			continue;
		}
		if (len & 0xC0)
			return std::nullopt; // reserved label types
		at++;
		if (len == 0)
			break;
		if (at + len > m.size() || name.size() + len + 1 > 255)
			return std::nullopt;
		if (!name.empty())
			name.push_back('.');
		for (size_t i = 0; i < len; i++)
			name.push_back(
			    static_cast<char>(std::tolower(static_cast<unsigned char>(m[at + i]))));
		at += len;
	}
	if (!jumped)
		*pos = at;
	return name;
}

} // namespace

std::optional<DnsAnswer> parse_dns_response(std::string_view m)
{
	if (m.size() < 12)
		return std::nullopt;
	uint32_t flags = u16(m, 2), qd = u16(m, 4), an = u16(m, 6);
	if (!(flags & 0x8000) || (flags & 0x000F) != 0 ||
	    qd != 1) // a response, NOERROR, one question
		return std::nullopt;
	size_t pos = 12;
	DnsAnswer out;
	auto q = read_name(m, &pos);
	if (!q || pos + 4 > m.size())
		return std::nullopt;
	out.question = *q;
	pos += 4; // qtype, qclass
	for (uint32_t i = 0; i < an && i < kMaxRecords; i++) {
		auto owner = read_name(m, &pos);
		if (!owner || pos + 10 > m.size())
			break; // cut short: keep what was read
		uint32_t type = u16(m, pos), cls = u16(m, pos + 2), ttl = u32(m, pos + 4),
		         len = u16(m, pos + 8);
		pos += 10;
		if (pos + len > m.size())
			break;
		if (cls == 1 && type == 1 && len == 4) { // A
			char buf[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, m.data() + pos, buf, sizeof(buf));
			out.addresses.push_back({*owner, buf, ttl});
		} else if (cls == 1 && type == 28 && len == 16) { // AAAA
			char buf[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, m.data() + pos, buf, sizeof(buf));
			out.addresses.push_back({*owner, buf, ttl});
		} else if (cls == 1 && type == 5) { // CNAME
			size_t at = pos;
			if (auto target = read_name(m, &at))
				out.aliases.emplace_back(*owner, *target);
		}
		pos += len;
	}
	return out;
}

} // namespace keytrail
