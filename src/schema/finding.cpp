#include "keytrail/schema/finding.h"

#include <openssl/evp.h>

namespace keytrail
{

std::string finding_id(const std::string &scope, const std::string &rule, const std::string &key)
{
	std::string in = "keytrail-finding";
	for (const std::string *s : {&scope, &rule, &key}) {
		in.push_back('\0');
		in += *s;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_Digest(in.data(), in.size(), md, &len, EVP_sha256(), nullptr);
	static const char hex[] = "0123456789abcdef";
	std::string out;
	for (unsigned i = 0; i < 16 && i < len; i++) {
		out.push_back(hex[md[i] >> 4]);
		out.push_back(hex[md[i] & 0xf]);
	}
	return out;
}

} // namespace keytrail
