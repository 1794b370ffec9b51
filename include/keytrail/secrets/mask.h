// Masks credentials in command lines before they are written anywhere:
// passwords in URLs, values of credential-named options and KEY=VALUE pairs,
// and tokens with a known public prefix (the prefix is kept: it is not secret
// and tells the reader what kind of credential was there).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

inline constexpr std::string_view kMask = "****";

// True for names like GITHUB_TOKEN, api-key, --password, client_secret.
bool credential_like_name(std::string_view name);

// Returns arg with any credential inside it masked.
std::string mask_arg(std::string_view arg);

// Masks a whole argv, including the value that follows a credential-named
// option given as two arguments ("--token", "ghp_...").
std::vector<std::string> mask_argv(const std::vector<std::string> &argv);

} // namespace keytrail
