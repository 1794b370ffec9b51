#include <gtest/gtest.h>

#include "keytrail/net/peek.h"
#include "support/tls.h"

using namespace keytrail;

TEST(TlsSni, ReadsServerNameFromClientHello)
{
	auto sni = parse_tls_sni(test::client_hello("gitlab.example.test"));
	ASSERT_TRUE(sni);
	EXPECT_EQ(*sni, "gitlab.example.test");
}

TEST(TlsSni, EveryTruncationIsRejectedOrParsedWithoutOverread)
{
	std::string hello = test::client_hello("api.example.test");
	for (size_t n = 0; n < hello.size(); n++) {
		auto sni = parse_tls_sni(std::string_view(hello.data(), n));
		if (sni) {
			EXPECT_EQ(*sni, "api.example.test") << "cut at " << n;
		}
	}
}

TEST(TlsSni, RejectsNonHandshakeAndBadNames)
{
	EXPECT_FALSE(parse_tls_sni("GET / HTTP/1.1\r\n\r\n"));
	EXPECT_FALSE(parse_tls_sni(std::string("\x17\x03\x03\x00\x05hello", 10)));
	EXPECT_FALSE(parse_tls_sni(test::client_hello("bad name\n.example")));
	EXPECT_FALSE(parse_tls_sni(""));
}

TEST(HttpHost, ReadsHostHeaderCaseInsensitively)
{
	auto h = parse_http_host(
	    "POST /api/v4/projects HTTP/1.1\r\nUser-Agent: x\r\nhOsT: gitlab.local:8080\r\n\r\n");
	ASSERT_TRUE(h);
	EXPECT_EQ(*h, "gitlab.local:8080");
	auto v6 = parse_http_host("GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n");
	ASSERT_TRUE(v6);
	EXPECT_EQ(*v6, "[::1]:9000");
}

TEST(HttpHost, RejectsNonHttpAndHostileValues)
{
	EXPECT_FALSE(parse_http_host("SSH-2.0-OpenSSH\r\n"));
	EXPECT_FALSE(parse_http_host("GET / HTTP/1.1\r\nHost: evil host\r\n\r\n"));
	EXPECT_FALSE(parse_http_host("GET / HTTP/1.1\r\nHost: a.b:12x\r\n\r\n"));
	EXPECT_FALSE(parse_http_host("GET / HTTP/1.1\r\nAccept: */*\r\n\r\nHost: late\r\n"));
	EXPECT_FALSE(parse_http_host("GET / HTTP/1.1\r\nHost: cut-sho"));
}

TEST(ProxyTarget, ConnectAuthorityAndAbsoluteForm)
{
	EXPECT_EQ(parse_proxy_target(
	              "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n"),
	          "api.github.com:443");
	EXPECT_EQ(parse_proxy_target("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n"),
	          "[2001:db8::1]:8443");
	EXPECT_EQ(
	    parse_proxy_target("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"),
	    "example.com:80");
	EXPECT_EQ(parse_proxy_target("POST https://u:p@h.example:8443/ HTTP/1.1\r\n\r\n"),
	          "h.example:8443");
	// A request to the server itself names no proxy target.
	EXPECT_FALSE(parse_proxy_target("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"));
	EXPECT_FALSE(parse_proxy_target("CONNECT api.github.com HTTP/1.1\r\n\r\n")); // no port
	EXPECT_FALSE(parse_proxy_target("CONNECT api.github.com:99999 HTTP/1.1\r\n\r\n"));
	EXPECT_FALSE(parse_proxy_target("CONNECT a b:1 HTTP/1.1\r\n\r\n"));
	EXPECT_FALSE(parse_proxy_target("CONNECT evil\"name:443 HTTP/1.1\r\n\r\n"));
	EXPECT_FALSE(parse_proxy_target("CONNECT api.github.com:443 HTTP/1.1")); // cut short
	EXPECT_FALSE(parse_proxy_target(std::string(4000, 'A')));
	for (size_t n = 0; n < 40; n++) // every truncation is safe
		parse_proxy_target(
		    std::string_view("CONNECT api.github.com:443 HTTP/1.1\r\n").substr(0, n));
}
