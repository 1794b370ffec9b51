#include "keytrail/net/peek.h"

#include <cctype>
#include <cstdint>

namespace keytrail
{

namespace
{

// Bounds-checked big-endian reader over a byte string.
class Reader
{
      public:
	explicit Reader(std::string_view d) : d_(d) {}
	bool u8(uint32_t *v) { return read(1, v); }
	bool u16(uint32_t *v) { return read(2, v); }
	bool u24(uint32_t *v) { return read(3, v); }
	bool skip(size_t n)
	{
		if (n > d_.size() - pos_)
			return false;
		pos_ += n;
		return true;
	}
	bool sub(size_t n, Reader *out)
	{
		if (n > d_.size() - pos_)
			return false;
		*out = Reader(d_.substr(pos_, n));
		pos_ += n;
		return true;
	}
	std::string_view rest() const { return d_.substr(pos_); }
	bool empty() const { return pos_ >= d_.size(); }

      private:
	bool read(size_t n, uint32_t *v)
	{
		if (n > d_.size() - pos_)
			return false;
		*v = 0;
		for (size_t i = 0; i < n; i++)
			*v = (*v << 8) | static_cast<uint8_t>(d_[pos_ + i]);
		pos_ += n;
		return true;
	}
	std::string_view d_;
	size_t pos_ = 0;
};

bool valid_hostname(std::string_view h)
{
	if (h.empty() || h.size() > 253)
		return false;
	for (char c : h)
		if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
		      c == '_'))
			return false;
	return true;
}

// "host:port", "[v6]:port": a valid host and a port 1..65535.
bool valid_authority(std::string_view a)
{
	size_t colon = a.rfind(':');
	if (colon == std::string_view::npos || colon + 1 >= a.size() || a.size() - colon > 6)
		return false;
	uint32_t port = 0;
	for (char d : a.substr(colon + 1)) {
		if (!std::isdigit(static_cast<unsigned char>(d)))
			return false;
		port = port * 10 + static_cast<uint32_t>(d - '0');
	}
	if (port == 0 || port > 65535)
		return false;
	std::string_view host = a.substr(0, colon);
	if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
		for (char c : host.substr(1, host.size() - 2))
			if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
				return false;
		return true;
	}
	return valid_hostname(host);
}

} // namespace

std::optional<std::string> parse_proxy_target(std::string_view data)
{
	size_t eol = data.find("\r\n");
	if (eol == std::string_view::npos || eol > 2048)
		return std::nullopt;
	std::string_view line = data.substr(0, eol);
	size_t sp1 = line.find(' ');
	size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
	if (sp2 == std::string_view::npos || line.substr(sp2 + 1).substr(0, 7) != "HTTP/1.")
		return std::nullopt;
	std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
	if (method == "CONNECT")
		return valid_authority(target) ? std::optional<std::string>(target) : std::nullopt;
	for (char c : method)
		if (c < 'A' || c > 'Z')
			return std::nullopt;
	std::string_view port = ":80";
	if (target.substr(0, 7) == "http://")
		target.remove_prefix(7);
	else if (target.substr(0, 8) == "https://") {
		target.remove_prefix(8);
		port = ":443";
	} else
		return std::nullopt; // origin-form: a request to the server itself
	target = target.substr(0, target.find_first_of("/?#"));
	if (target.find('@') != std::string_view::npos)
		target = target.substr(target.rfind('@') + 1); // user:password@ never kept
	std::string authority(target);
	bool bracketed = !authority.empty() && authority.front() == '[';
	size_t colon = authority.rfind(':');
	if (colon == std::string::npos || (bracketed && colon < authority.find(']')))
		authority += port;
	if (!valid_authority(authority))
		return std::nullopt;
	return authority;
}

std::optional<std::string> parse_tls_sni(std::string_view data)
{
	Reader r(data);
	uint32_t type, ver, len, hs_type, hs_len, v;
	// TLS record header: handshake (22), version 3.x, length. The first
	// record may be cut by our capture bound; parse what is there.
	if (!r.u8(&type) || type != 22 || !r.u16(&ver) || (ver >> 8) != 3 || !r.u16(&len))
		return std::nullopt;
	if (!r.u8(&hs_type) || hs_type != 1 || !r.u24(&hs_len))
		return std::nullopt;
	// client_version, random, session_id, cipher_suites, compression_methods
	if (!r.skip(2 + 32) || !r.u8(&v) || !r.skip(v) || !r.u16(&v) || !r.skip(v) || !r.u8(&v) ||
	    !r.skip(v))
		return std::nullopt;
	uint32_t ext_total;
	if (!r.u16(&ext_total))
		return std::nullopt;
	Reader exts(std::string_view{});
	if (!r.sub(ext_total, &exts)) {
		// Cut short: walk what we have.
		exts = Reader(r.rest());
	}
	while (!exts.empty()) {
		uint32_t ext_type, ext_len;
		if (!exts.u16(&ext_type) || !exts.u16(&ext_len))
			return std::nullopt;
		Reader ext(std::string_view{});
		if (!exts.sub(ext_len, &ext))
			return std::nullopt;
		if (ext_type != 0) // server_name
			continue;
		uint32_t list_len;
		Reader list(std::string_view{});
		if (!ext.u16(&list_len) || !ext.sub(list_len, &list))
			return std::nullopt;
		while (!list.empty()) {
			uint32_t name_type, name_len;
			if (!list.u8(&name_type) || !list.u16(&name_len))
				return std::nullopt;
			std::string_view rest = list.rest();
			if (name_len > rest.size())
				return std::nullopt;
			std::string_view name = rest.substr(0, name_len);
			list.skip(name_len);
			if (name_type == 0 && valid_hostname(name))
				return std::string(name);
		}
		return std::nullopt;
	}
	return std::nullopt;
}

std::optional<std::string> parse_http_host(std::string_view data)
{
	// Request line: METHOD SP target SP HTTP/1.x CRLF
	static constexpr std::string_view methods[] = {"GET ",   "POST ", "PUT ",     "DELETE ",
	                                               "PATCH ", "HEAD ", "OPTIONS ", "CONNECT "};
	bool is_http = false;
	for (auto m : methods)
		if (data.substr(0, m.size()) == m)
			is_http = true;
	if (!is_http)
		return std::nullopt;
	size_t eol = data.find("\r\n");
	if (eol == std::string_view::npos ||
	    data.substr(0, eol).find(" HTTP/1.") == std::string_view::npos)
		return std::nullopt;
	size_t pos = eol + 2;
	while (pos < data.size()) {
		size_t end = data.find("\r\n", pos);
		if (end == std::string_view::npos || end == pos)
			return std::nullopt; // cut short, or end of headers
		std::string_view line = data.substr(pos, end - pos);
		pos = end + 2;
		size_t colon = line.find(':');
		if (colon != 4)
			continue;
		std::string_view name = line.substr(0, 4);
		bool host = true;
		for (size_t i = 0; i < 4; i++)
			if (std::tolower(static_cast<unsigned char>(name[i])) != "host"[i])
				host = false;
		if (!host)
			continue;
		std::string_view value = line.substr(5);
		while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
			value.remove_prefix(1);
		while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
			value.remove_suffix(1);
		// host[:port] or [v6]:port
		std::string_view host_part = value;
		if (!host_part.empty() && host_part.front() == '[') {
			size_t close = host_part.find(']');
			if (close == std::string_view::npos)
				return std::nullopt;
			return std::string(value);
		}
		size_t c = host_part.find(':');
		if (c != std::string_view::npos) {
			for (char d : host_part.substr(c + 1))
				if (!std::isdigit(static_cast<unsigned char>(d)))
					return std::nullopt;
			host_part = host_part.substr(0, c);
		}
		if (!valid_hostname(host_part))
			return std::nullopt;
		return std::string(value);
	}
	return std::nullopt;
}

} // namespace keytrail
