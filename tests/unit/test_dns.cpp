// DNS answers as the probes capture them, and what the agent makes of them:
// which names are really the addresses connects reach.
#include <gtest/gtest.h>

#include <string>

#include "keytrail/agent/name_table.h"
#include "keytrail/net/dns.h"

using namespace keytrail;

namespace
{

std::string name(const std::string &dotted)
{
	std::string out;
	size_t i = 0;
	while (i < dotted.size()) {
		size_t j = dotted.find('.', i);
		if (j == std::string::npos)
			j = dotted.size();
		out.push_back(static_cast<char>(j - i));
		out += dotted.substr(i, j - i);
		i = j + 1;
	}
	return out + std::string(1, '\0');
}

std::string u16(unsigned v)
{
	return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

// api.github.com CNAME github.map.fastly.net, which is 140.82.112.5.
std::string github_answer()
{
	std::string m = u16(0x1234) + u16(0x8180) + u16(1) + u16(2) + u16(0) + u16(0);
	m += name("api.github.com") + u16(1) + u16(1);
	std::string target = name("github.map.fastly.net");
	m += u16(0xC00C) + u16(5) + u16(1) + u16(0) + u16(300) + u16(target.size()) + target;
	size_t target_at = m.size() - target.size();
	m += u16(0xC000 | target_at) + u16(1) + u16(1) + u16(0) + u16(60) + u16(4);
	m += std::string{'\x8c', '\x52', '\x70', '\x05'};
	return m;
}

} // namespace

TEST(Dns, AnswersWithAliasesAndCompression)
{
	auto a = parse_dns_response(github_answer());
	ASSERT_TRUE(a);
	EXPECT_EQ(a->question, "api.github.com");
	ASSERT_EQ(a->addresses.size(), 1u);
	EXPECT_EQ(a->addresses[0].name, "github.map.fastly.net");
	EXPECT_EQ(a->addresses[0].addr, "140.82.112.5");
	ASSERT_EQ(a->aliases.size(), 1u);
	EXPECT_EQ(a->aliases[0].second, "github.map.fastly.net");
}

TEST(Dns, HostileMessagesAreRejectedOrReadWithoutOverread)
{
	std::string good = github_answer();
	for (size_t n = 0; n < good.size(); n++)
		parse_dns_response(good.substr(0, n)); // never reads past what it has
	// A pointer loop ends.
	std::string loop = u16(1) + u16(0x8180) + u16(1) + u16(0) + u16(0) + u16(0) + u16(0xC00C);
	EXPECT_FALSE(parse_dns_response(loop));
	// A query, an error, two questions: not answers.
	std::string query = good;
	query[2] = 0x01;
	EXPECT_FALSE(parse_dns_response(query));
	std::string nx = good;
	nx[3] = static_cast<char>(0x83);
	EXPECT_FALSE(parse_dns_response(nx));
}

TEST(NameTable, VerifiesWhatTheResolverSaidAndNothingElse)
{
	NameTable t(true);
	DnsEvent e;
	e.answer = parse_dns_response(github_answer());
	int64_t now = 1000000000000;
	t.learn(e, now);
	std::vector<pid_t> none{0x7FFFFFF0}; // no such process: no /etc/hosts to read
	EXPECT_EQ(t.check("api.github.com", "140.82.112.5", none, now), ConnectSeen::kVerified);
	EXPECT_EQ(t.check("API.GitHub.com.", "::ffff:140.82.112.5", none, now),
	          ConnectSeen::kVerified);
	// The same name toward another address is only the process's claim.
	EXPECT_EQ(t.check("api.github.com", "203.0.113.9", none, now), ConnectSeen::kUnverified);
	EXPECT_EQ(t.check("203.0.113.9", "203.0.113.9", none, now), ConnectSeen::kVerified);
	EXPECT_EQ(t.check("localhost", "127.0.0.1", none, now), ConnectSeen::kVerified);
	// An answer counts for its TTL (at least a minute), then not.
	EXPECT_EQ(t.check("api.github.com", "140.82.112.5", none, now + 3601LL * 1000000000),
	          ConnectSeen::kUnverified);
	// Without DNS capture nothing is "unverified", only unchecked.
	NameTable blind(false);
	EXPECT_EQ(blind.check("api.github.com", "203.0.113.9", none, now), ConnectSeen::kNoCheck);
}

TEST(NameTable, Ipv6AnswersVerifyTheAddressInAnyOfItsForms)
{
	// v6.example.test AAAA 2001:db8::5
	std::string m = u16(7) + u16(0x8180) + u16(1) + u16(1) + u16(0) + u16(0);
	m += name("v6.example.test") + u16(28) + u16(1);
	m += u16(0xC00C) + u16(28) + u16(1) + u16(0) + u16(300) + u16(16);
	m += std::string{'\x20', '\x01', '\x0d', '\xb8'} + std::string(11, '\0') + '\x05';
	DnsEvent e;
	e.answer = parse_dns_response(m);
	ASSERT_TRUE(e.answer);
	ASSERT_EQ(e.answer->addresses.size(), 1u);
	EXPECT_EQ(e.answer->addresses[0].addr, "2001:db8::5");
	NameTable t(true);
	int64_t now = 1000000000000;
	t.learn(e, now);
	std::vector<pid_t> none{0x7FFFFFF0};
	EXPECT_EQ(t.check("v6.example.test", "2001:db8::5", none, now), ConnectSeen::kVerified);
	EXPECT_EQ(t.check("v6.example.test", "2001:db8::6", none, now), ConnectSeen::kUnverified);
	EXPECT_EQ(t.check("[2001:db8::5]", "2001:db8::5", none, now), ConnectSeen::kVerified);
	EXPECT_EQ(t.check("localhost", "::1", none, now), ConnectSeen::kVerified);
	EXPECT_EQ(t.check("localhost", "::ffff:127.0.0.1", none, now), ConnectSeen::kVerified);
}

TEST(NameTable, ProxiesFromTheEnvironmentNeverKeepCredentials)
{
	auto p = proxies_from_environ({"HTTPS_PROXY=http://user:pw@127.0.0.1:3128/", "no_proxy=x",
	                               "http_proxy=proxy.corp", "ALL_PROXY=socks5://[::1]:1080",
	                               "PATH=/bin"});
	ASSERT_EQ(p.size(), 3u);
	EXPECT_EQ(p[0], "127.0.0.1:3128");
	EXPECT_EQ(p[1], "[::1]:1080");
	EXPECT_EQ(p[2], "proxy.corp:80");
}
