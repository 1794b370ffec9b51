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
