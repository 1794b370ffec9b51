// The credential catalog: each format has an id, literal keywords that must
// appear for its pattern to be tried (a cheap pre-filter), a pattern written
// from the issuer's published format, and where useful a minimum entropy.
// Scanners return Findings that own the secret bytes (wiped when dropped)
// plus what is safe to show: the type and the public prefix.
#pragma once

#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "keytrail/util/secret_bytes.h"

namespace keytrail
{

struct Detector {
	std::string id;                    // "github_pat", "aws_secret_access_key", ...
	std::vector<std::string> keywords; // at least one must occur; the match starts there
	std::regex pattern;                // matched from a keyword occurrence (ECMAScript)
	size_t window = 256;               // bytes after the keyword the match may span
	int group = 0;                     // capture group that is the secret (0 = all)
	double min_entropy = 0;            // Shannon bits/char of the secret
	size_t show_prefix = 0;            // leading chars that are public ("ghp_", "AKIA")
	size_t keyword_back = 0;           // bytes before the keyword the match may start at
};

struct Finding {
	std::string type;   // detector id, or "generic_secret"
	SecretBytes secret; // normalized; wiped when the Finding goes
	std::string prefix; // public part, safe to write
	std::string name;   // env var / option / key name it was under, when known
	size_t line = 0;    // 1-based line in a file, when known
};

const std::vector<Detector> &detectors();

double shannon_entropy(std::string_view s);

// Every credential in a text (file content, a config value).
std::vector<Finding> scan_text(std::string_view text);

// Where the catalog's credentials are in a text, for masking: the secret's
// offset and length, and how many of its leading bytes are public.
struct CredentialSpan {
	size_t pos, len, public_len;
};
std::vector<CredentialSpan> credential_spans(std::string_view text);

// A credential file's content: scan_text, plus assignments line by line
// (KEY=VALUE, export KEY=VALUE, key: value, "key": "value", netrc's
// "password X") so findings carry their names and the generic rule applies.
std::vector<Finding> scan_file(std::string_view text);

// NAME=VALUE strings (environ): a value in a known format, or any value of
// a credential-like name that is long and random enough.
std::vector<Finding> scan_environ(const std::vector<std::string> &env);

// argv: known formats, passwords in URLs, and values of credential-named
// options (--token=X, --api-key X).
std::vector<Finding> scan_argv(const std::vector<std::string> &argv);

// The generic rule on its own: is this value of this name a secret?
bool generic_secret(std::string_view name, std::string_view value);

} // namespace keytrail
