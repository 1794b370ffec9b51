#include "keytrail/secrets/mask.h"

#include <algorithm>
#include <cctype>

namespace keytrail
{

namespace
{

std::string lower(std::string_view s)
{
	std::string out(s);
	std::transform(out.begin(), out.end(), out.begin(),
	               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
	return out;
}

// Token prefixes from the issuers' published formats. The prefix stays
// visible; the rest of the token is masked.
constexpr std::string_view kTokenPrefixes[] = {
    "github_pat_", "ghp_",      "gho_",     "ghu_",     "ghs_",     "ghr_",  "glpat-", "gldt-",
    "glrt-",       "glcbt-",    "xoxb-",    "xoxp-",    "xoxa-",    "xoxr-", "xoxs-",  "xapp-",
    "sk-ant-",     "sk-proj-",  "sk-",      "AKIA",     "ASIA",     "AIza",  "hf_",    "npm_",
    "pypi-",       "dckr_pat_", "secret_",  "ntn_",     "lin_api_", "hvs.",  "SG.",    "dapi",
    "dop_v1_",     "sk_live_",  "sk_test_", "rk_live_", "rk_test_"};

bool token_char(char c)
{
	return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
	       c == '/' || c == '+' || c == '=';
}

// Masks "<prefix><at least 8 token chars>" wherever it starts at a word edge.
std::string mask_prefixed_tokens(std::string s)
{
	for (size_t i = 0; i < s.size(); i++) {
		if (i > 0 && token_char(s[i - 1]))
			continue;
		for (auto p : kTokenPrefixes) {
			if (s.compare(i, p.size(), p) != 0)
				continue;
			size_t end = i + p.size();
			while (end < s.size() && token_char(s[end]))
				end++;
			if (end - i - p.size() >= 8) {
				s.replace(i + p.size(), end - i - p.size(), kMask);
				i += p.size() + kMask.size();
			}
			break;
		}
	}
	return s;
}

// scheme://user:password@host -> scheme://user:****@host
std::string mask_url_password(std::string s)
{
	size_t from = 0;
	while (true) {
		size_t scheme = s.find("://", from);
		if (scheme == std::string::npos)
			return s;
		size_t auth_start = scheme + 3;
		size_t auth_end = s.find_first_of("/?#", auth_start);
		std::string_view authority(s.data() + auth_start,
		                           (auth_end == std::string::npos ? s.size() : auth_end) -
		                               auth_start);
		size_t at = authority.rfind('@');
		size_t colon = authority.find(':');
		if (at != std::string_view::npos && colon != std::string_view::npos && colon < at &&
		    at > colon + 1) {
			s.replace(auth_start + colon + 1, at - colon - 1, kMask);
			from = auth_start + colon + 1 + kMask.size();
		} else {
			from = auth_start;
		}
	}
}

} // namespace

bool credential_like_name(std::string_view name)
{
	std::string n = lower(name);
	while (!n.empty() && n.front() == '-')
		n.erase(0, 1);
	static constexpr std::string_view words[] = {
	    "token",      "secret",      "password",      "passwd",      "pwd",
	    "apikey",     "api_key",     "api-key",       "private_key", "private-key",
	    "access_key", "access-key",  "credential",    "auth",        "pat",
	    "bearer",     "session_key", "client_secret", "webhook",     "authorization",
	    "cookie",     "dsn"};
	for (auto w : words) {
		size_t pos = n.find(w);
		if (pos == std::string::npos)
			continue;
		if (w == "pat" || w == "pwd" || w == "auth") {
			// Whole words only: "path", "pattern" and "author" are not credentials.
			auto edge = [&](size_t k) {
				return k >= n.size() || !std::isalpha((unsigned char)n[k]);
			};
			if (!(pos == 0 || !std::isalpha((unsigned char)n[pos - 1])) ||
			    !edge(pos + w.size()))
				continue;
		}
		return true;
	}
	return false;
}

std::string mask_arg(std::string_view arg)
{
	std::string s(arg);
	// NAME=VALUE and --name=value with a credential-like name.
	size_t eq = s.find('=');
	if (eq != std::string::npos && eq > 0 && s.find("://") > eq &&
	    credential_like_name(std::string_view(s).substr(0, eq)) && eq + 1 < s.size())
		return s.substr(0, eq + 1) + std::string(kMask);
	return mask_prefixed_tokens(mask_url_password(std::move(s)));
}

std::vector<std::string> mask_argv(const std::vector<std::string> &argv)
{
	std::vector<std::string> out;
	out.reserve(argv.size());
	bool mask_next = false;
	for (const auto &a : argv) {
		if (mask_next && !a.empty() && a[0] != '-') {
			out.emplace_back(kMask);
			mask_next = false;
			continue;
		}
		out.push_back(mask_arg(a));
		mask_next = a.size() > 1 && a[0] == '-' && a.find('=') == std::string::npos &&
		            credential_like_name(a);
	}
	return out;
}

} // namespace keytrail
