// DNS answers, as a tracked process's resolver received them: which names
// it was told resolve to which addresses. Input is untrusted and may be cut
// short; the parser never reads past it and follows at most a few
// compression pointers per name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

struct DnsAddress {
	std::string name; // the owner name, lowercase, without the final dot
	std::string addr; // "203.0.113.5", "2001:db8::1"
	uint32_t ttl = 0;
};

struct DnsAnswer {
	std::string question;              // the name asked for, lowercase
	std::vector<DnsAddress> addresses; // A and AAAA records of the answer section
	std::vector<std::pair<std::string, std::string>> aliases; // CNAME: owner -> target
};

// A response (QR set, no error) with its question and answers; nullopt for
// anything else.
std::optional<DnsAnswer> parse_dns_response(std::string_view msg);

} // namespace keytrail
