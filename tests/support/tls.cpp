#include "tls.h"

#include <cstdint>

namespace keytrail::test
{

namespace
{
void u8(std::string &s, unsigned v)
{
	s.push_back(static_cast<char>(v & 0xFF));
}
void u16(std::string &s, unsigned v)
{
	u8(s, v >> 8);
	u8(s, v);
}
void u24(std::string &s, unsigned v)
{
	u8(s, v >> 16);
	u16(s, v);
}
} // namespace

std::string client_hello(const std::string &sni)
{
	std::string ext;
	// supported_versions (TLS 1.3) before server_name, as browsers mix them.
	u16(ext, 43);
	u16(ext, 3);
	u8(ext, 2);
	u16(ext, 0x0304);
	// server_name
	std::string list;
	u8(list, 0);
	u16(list, sni.size());
	list += sni;
	u16(ext, 0);
	u16(ext, list.size() + 2);
	u16(ext, list.size());
	ext += list;

	std::string body;
	u16(body, 0x0303);
	body.append(32, '\x11'); // random
	u8(body, 0);             // session id
	u16(body, 4);            // cipher suites
	u16(body, 0x1301);
	u16(body, 0xC02F);
	u8(body, 1); // compression: null
	u8(body, 0);
	u16(body, ext.size());
	body += ext;

	std::string hs;
	u8(hs, 1); // ClientHello
	u24(hs, body.size());
	hs += body;

	std::string rec;
	u8(rec, 22);
	u16(rec, 0x0301);
	u16(rec, hs.size());
	rec += hs;
	return rec;
}

} // namespace keytrail::test
