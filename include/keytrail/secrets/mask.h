// Masks credentials in text before it is written anywhere (argv, paths,
// error and parser messages): the catalog's formats, passwords in URLs,
// values of credential-named options, pairs and headers, and tokens with a
// known public prefix (the prefix is kept: it is not secret and tells the
// reader what kind of credential was there).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

inline constexpr std::string_view kMask = "****";

// True for names like GITHUB_TOKEN, api-key, --password, client_secret.
bool credential_like_name(std::string_view name);

// Any text with every credential in it masked: the catalog's formats, known
// token prefixes, passwords in URLs, and values of credential-named pairs
// and headers (TOKEN=x, "password": "x", Authorization: Bearer x,
// X-Api-Key: x). Masking is idempotent.
// `catalog` false skips the catalog's formats (regexes): a cheaper first
// pass for text that is kept but not yet written; masking again with the
// catalog before writing completes it.
std::string mask_text(std::string_view text, bool catalog = true);

// What every writer calls for text it did not make (paths, names, error
// messages, parser messages): valid UTF-8, credentials masked.
std::string shown(std::string_view text);

// One argument: NAME=VALUE with a credential-like name is masked whole,
// anything else as mask_text.
std::string mask_arg(std::string_view arg, bool catalog = true);

// A word of a shell line: where it stands in the line, its text with
// quotes and escapes removed, whether it starts a command (first, or after
// ; & |), and whether it is a $reference rather than a literal.
struct ShellWord {
	size_t start = 0, end = 0;
	std::string text;
	bool command = false, reference = false;
};
std::vector<ShellWord> shell_words(std::string_view line, size_t max_words = 1024);
// argv[i] is the line a shell runs: `sh -c LINE`, `bash -lc LINE`.
bool shell_line_arg(const std::vector<std::string> &argv, size_t i);

// Masks a whole argv, including values given as the next argument:
// "--token" V, "aws_secret_access_key" V, curl's "-u" user:V, and "-p" V or
// -pV for programs where -p is a password (mysql, docker login, sshpass).
// The line a shell runs is masked command by command with the same rules.
// Taken by value: an argv moved in is masked in place, and an argument with
// nothing to mask is never copied.
std::vector<std::string> mask_argv(std::vector<std::string> argv, bool catalog = true);

} // namespace keytrail
