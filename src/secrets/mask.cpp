#include "keytrail/secrets/mask.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "keytrail/secrets/catalog.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// A set of bytes, looked up in one load.
using ByteSet = std::array<bool, 256>;

constexpr ByteSet byte_set(std::string_view bytes)
{
	ByteSet set{};
	for (char c : bytes)
		set[static_cast<unsigned char>(c)] = true;
	return set;
}

// What separates a shell line's words (std::isspace's, and ; & | ( )).
#define KT_SEPARATORS " \t\n\v\f\r;&|()"
constexpr ByteSet kShellSeparators = byte_set(KT_SEPARATORS);

bool shell_separator(char c)
{
	return kShellSeparators[static_cast<unsigned char>(c)];
}

char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Token prefixes from the issuers' published formats. The prefix stays
// visible; the rest of the token is masked.
constexpr std::string_view kTokenPrefixes[] = {
    "github_pat_", "ghp_",      "gho_",     "ghu_",     "ghs_",     "ghr_",  "glpat-", "gldt-",
    "glrt-",       "glcbt-",    "xoxb-",    "xoxp-",    "xoxa-",    "xoxr-", "xoxs-",  "xapp-",
    "sk-ant-",     "sk-proj-",  "sk-",      "AKIA",     "ASIA",     "AIza",  "hf_",    "npm_",
    "pypi-",       "dckr_pat_", "secret_",  "ntn_",     "lin_api_", "hvs.",  "SG.",    "dapi",
    "dop_v1_",     "sk_live_",  "sk_test_", "rk_live_", "rk_test_"};

#define KT_ALNUM "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
constexpr ByteSet kTokenChars = byte_set(KT_ALNUM "_-./+=");
constexpr ByteSet kNameChars = byte_set(KT_ALNUM "_-.");
#undef KT_ALNUM

bool token_char(char c)
{
	return kTokenChars[static_cast<unsigned char>(c)];
}

// The first characters of the prefixes: a word starting with another one
// cannot be a prefixed token.
constexpr ByteSet kPrefixStarts = [] {
	ByteSet starts{};
	for (auto p : kTokenPrefixes)
		starts[static_cast<unsigned char>(p[0])] = true;
	return starts;
}();

// The length of the known prefix of a token ("<prefix><at least 8 token
// chars>") starting at s[i], at a word edge; 0 if none does.
size_t token_prefix_at(std::string_view s, size_t i)
{
	if ((i > 0 && token_char(s[i - 1])) || !kPrefixStarts[static_cast<unsigned char>(s[i])])
		return 0;
	for (auto p : kTokenPrefixes) {
		if (s.compare(i, p.size(), p) != 0)
			continue;
		size_t end = i + p.size();
		while (end < s.size() && token_char(s[end]))
			end++;
		return end - i - p.size() >= 8 ? p.size() : 0;
	}
	return 0;
}

// Masks every prefixed token.
std::string mask_prefixed_tokens(std::string s)
{
	for (size_t i = 0; i < s.size(); i++) {
		size_t p = token_prefix_at(s, i);
		if (p == 0)
			continue;
		size_t end = i + p;
		while (end < s.size() && token_char(s[end]))
			end++;
		s.replace(i + p, end - i - p, kMask);
		i += p + kMask.size();
	}
	return s;
}

// Whether the cheap mask can change a text: a pair and a URL need '=' or
// ':', an option's value a separator, a token its prefix at a word edge.
// Most arguments of most execs have none: mask_argv keeps them as they are
// and searches them no further.
constexpr ByteSet kCheapMaskBytes = byte_set("=:" KT_SEPARATORS);
#undef KT_SEPARATORS

bool cheap_mask_applies(std::string_view s)
{
	bool edge = true;
	for (size_t i = 0; i < s.size(); i++) {
		auto c = static_cast<unsigned char>(s[i]);
		if (kCheapMaskBytes[c] || (edge && kPrefixStarts[c] && token_prefix_at(s, i)))
			return true;
		edge = !kTokenChars[c];
	}
	return false;
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

// What a credential value becomes: its public prefix, if it has a known
// one, then the mask. References ($VAR, ${VAR}) are not values.
std::string masked_value(std::string_view v)
{
	for (auto p : kTokenPrefixes)
		if (v.size() > p.size() && v.compare(0, p.size(), p) == 0)
			return std::string(p) + std::string(kMask);
	return std::string(kMask);
}

bool name_char(char c)
{
	return kNameChars[static_cast<unsigned char>(c)];
}

// NAME=value, NAME: value, "name": "value" and HTTP headers
// (Authorization: Bearer X, X-Api-Key: X) anywhere in a text, when NAME
// is credential-like: the value is masked, an auth scheme word is kept.
std::string mask_pairs(std::string s)
{
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] != '=' && s[i] != ':')
			continue;
		size_t name_end = i;
		while (name_end > 0 && (s[name_end - 1] == ' ' || s[name_end - 1] == '\t'))
			name_end--; // `password = x`, `"password" : "x"`
		if (name_end > 0 && (s[name_end - 1] == '"' || s[name_end - 1] == '\''))
			name_end--;
		size_t name_start = name_end;
		while (name_start > 0 && name_char(s[name_start - 1]))
			name_start--;
		if (name_start == name_end || !credential_like_name(std::string_view(s).substr(
		                                  name_start, name_end - name_start)))
			continue;
		if (s.compare(i, 3, "://") == 0)
			continue;
		size_t v = i + 1;
		while (v < s.size() && (s[v] == ' ' || s[v] == '\t'))
			v++;
		char quote = 0;
		if (v < s.size() && (s[v] == '"' || s[v] == '\''))
			quote = s[v++];
		// Authorization: Bearer X / Basic X / token X: the scheme is public.
		for (std::string_view scheme : {"Bearer ", "bearer ", "Basic ", "basic ", "token ",
		                                "Token ", "Digest ", "Negotiate "})
			if (s.compare(v, scheme.size(), scheme) == 0) {
				v += scheme.size();
				break;
			}
		size_t end = v;
		if (quote)
			while (end < s.size() && s[end] != quote)
				end++;
		else
			while (end < s.size() &&
			       !std::isspace(static_cast<unsigned char>(s[end])) && s[end] != '&' &&
			       s[end] != ';' && s[end] != ',' && s[end] != '"' && s[end] != '\'')
				end++;
		std::string_view value = std::string_view(s).substr(v, end - v);
		if (value.empty() || value.front() == '$')
			continue;
		// Masked already is left as it is; masked in part (the catalog's
		// format inside "foo/AKIA…") is masked whole.
		std::string m = masked_value(value);
		if (m == value)
			continue;
		s.replace(v, end - v, m);
		i = v + m.size() - 1;
	}
	return s;
}

// `--api-token VALUE` inside one text (a command line shown whole): the
// word after an option that names a credential is masked, as mask_argv
// masks the argument after one (options only: a sentence that names a
// token type is not a command). $VAR is a reference, not a value.
std::string mask_option_values(std::string s)
{
	// A value follows an option in another word: one word has none.
	if (std::none_of(s.begin(), s.end(), shell_separator))
		return s;
	auto words = shell_words(s);
	bool mask_next = false;
	std::vector<const ShellWord *> values;
	for (const auto &w : words) {
		if (w.command)
			mask_next = false;
		if (mask_next && !w.reference && !w.text.empty())
			values.push_back(&w);
		mask_next = w.text.size() > 1 && w.text[0] == '-' &&
		            w.text.find('=') == std::string::npos && credential_like_name(w.text);
	}
	for (auto it = values.rbegin(); it != values.rend(); ++it) {
		const ShellWord &w = **it;
		if (w.text.find(kMask) != std::string::npos && w.text.size() == kMask.size())
			continue;
		s.replace(w.start, w.end - w.start, masked_value(w.text));
	}
	return s;
}

} // namespace

bool credential_like_name(std::string_view name)
{
	// Called for every argument of every exec: one pass, no allocation.
	static constexpr std::string_view words[] = {
	    "token",      "secret",      "password",      "passwd",      "pwd",
	    "apikey",     "api_key",     "api-key",       "private_key", "private-key",
	    "access_key", "access-key",  "credential",    "auth",        "pat",
	    "bearer",     "session_key", "client_secret", "webhook",     "authorization",
	    "cookie",     "dsn"};
	// The words by their first letter, and those letters in either case.
	static const auto by_start = [] {
		std::array<std::vector<std::string_view>, 256> index;
		for (auto w : words)
			index[static_cast<unsigned char>(w[0])].push_back(w);
		return index;
	}();
	static const ByteSet starts = [] {
		ByteSet set{};
		for (auto w : words) {
			set[static_cast<unsigned char>(w[0])] = true;
			set[static_cast<unsigned char>(w[0] - 'a' + 'A')] = true;
		}
		return set;
	}();
	while (!name.empty() && name.front() == '-')
		name.remove_prefix(1);
	auto alpha = [&](size_t k) {
		return k < name.size() && std::isalpha(static_cast<unsigned char>(name[k]));
	};
	for (size_t i = 0; i < name.size(); i++) {
		if (!starts[static_cast<unsigned char>(name[i])])
			continue;
		for (auto w : by_start[static_cast<unsigned char>(ascii_lower(name[i]))]) {
			if (w.size() > name.size() - i)
				continue;
			size_t k = 0;
			while (k < w.size() && ascii_lower(name[i + k]) == w[k])
				k++;
			if (k < w.size())
				continue;
			// Whole words only: "path", "pattern" and "author" are not credentials.
			if ((w == "pat" || w == "pwd" || w == "auth") &&
			    ((i > 0 && alpha(i - 1)) || alpha(i + w.size())))
				continue;
			return true;
		}
	}
	return false;
}

namespace
{

// The rules that need no catalog: URL passwords, credential-like pairs,
// option values, prefixed tokens.
std::string mask_by_rules(std::string s)
{
	return mask_prefixed_tokens(
	    mask_option_values(mask_pairs(mask_url_password(std::move(s)))));
}

} // namespace

std::string mask_text(std::string_view text, bool catalog)
{
	if (!catalog && !cheap_mask_applies(text))
		return std::string(text);
	std::string s(text);
	if (!catalog)
		return mask_by_rules(std::move(s));
	// The catalog's formats first (a JWT, an AWS key, a PEM block that a
	// pair or option rule would cut at its first space), from the back so
	// offsets stay right; overlapping spans are masked once. Then the
	// rules, which mask a pair's value whole though the catalog masked only
	// a format inside it.
	auto spans = credential_spans(s);
	std::sort(spans.begin(), spans.end(),
	          [](const CredentialSpan &a, const CredentialSpan &b) { return a.pos > b.pos; });
	size_t limit = s.size();
	for (const auto &sp : spans) {
		if (sp.pos + sp.len > limit || sp.len <= sp.public_len)
			continue;
		s.replace(sp.pos + sp.public_len, sp.len - sp.public_len, kMask);
		limit = sp.pos;
	}
	return mask_by_rules(std::move(s));
}

std::string mask_arg(std::string_view arg, bool catalog)
{
	// curl --user=alice:pw, --proxy-user=alice:pw
	for (std::string_view opt : {"--user=", "--proxy-user="})
		if (arg.starts_with(opt)) {
			size_t colon = arg.find(':', opt.size());
			if (colon != std::string_view::npos && colon + 1 < arg.size())
				return std::string(arg.substr(0, colon + 1)) + std::string(kMask);
		}
	// NAME=VALUE and --name=value with a credential-like name: all of it.
	size_t eq = arg.find('=');
	if (eq != std::string::npos && eq > 0 && arg.find("://") > eq && eq + 1 < arg.size() &&
	    credential_like_name(arg.substr(0, eq)) &&
	    arg.find_first_of(" \t") > eq) // not a shell line that starts with one
		return std::string(arg.substr(0, eq + 1)) + std::string(kMask);
	return mask_text(arg, catalog);
}

namespace
{

// Programs whose -p is a password (attached, -pSECRET, or the next
// argument), not a port or a path.
bool p_is_password(std::string_view prog)
{
	static constexpr std::string_view progs[] = {
	    "mysql",   "mysqldump",    "mysqladmin",    "mysqlimport", "mysqlshow", "mysqlcheck",
	    "mariadb", "mariadb-dump", "mariadb-admin", "sshpass",     "docker",    "podman",
	    "nerdctl", "buildah",      "skopeo",        "helm",        "oras",      "crane"};
	return std::find(std::begin(progs), std::end(progs), prog) != std::end(progs);
}

// A bare word that names a credential and whose value follows as the next
// argument: `aws configure set aws_secret_access_key V`, `git config
// user.password V`. Only compound names (with '_' or '.'), so `git
// credential fill` keeps its verb.
bool credential_key_word(std::string_view a)
{
	if (std::none_of(a.begin(), a.end(), [](char c) { return c == '_' || c == '.'; }))
		return false;
	for (char c : a)
		if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' &&
		    c != '-')
			return false;
	return credential_like_name(a);
}

} // namespace

std::vector<ShellWord> shell_words(std::string_view line, size_t max_words)
{
	auto separator = shell_separator;
	std::vector<ShellWord> words;
	bool command = true;
	size_t i = 0;
	while (i < line.size() && words.size() < max_words) {
		while (i < line.size() && separator(line[i])) {
			if (line[i] == ';' || line[i] == '&' || line[i] == '|' || line[i] == '(')
				command = true;
			i++;
		}
		if (i >= line.size())
			break;
		ShellWord w;
		w.start = i;
		w.command = command;
		command = false;
		w.reference =
		    line[i] == '$' || (line[i] == '"' && i + 1 < line.size() && line[i + 1] == '$');
		char quote = 0;
		for (; i < line.size(); i++) {
			char c = line[i];
			if (quote == '\'') {
				if (c == quote)
					quote = 0;
				else
					w.text += c;
			} else if (c == '\\' && i + 1 < line.size()) {
				if (line[++i] != '\n') // a line continuation is nothing
					w.text += line[i];
			} else if (quote) {
				if (c == quote)
					quote = 0;
				else
					w.text += c;
			} else if (c == '"' || c == '\'') {
				quote = c;
			} else if (separator(c)) {
				break;
			} else {
				w.text += c;
			}
		}
		w.end = i;
		if (w.text.empty() && line[w.start] == '\\')
			continue; // only a line continuation: no word
		words.push_back(std::move(w));
	}
	return words;
}

bool shell_line_arg(const std::vector<std::string> &argv, size_t i)
{
	if (i < 2 || i >= argv.size())
		return false;
	std::string_view flag = argv[i - 1]; // asked for every argument: the flag first
	if (flag.size() < 2 || flag[0] != '-' || flag[1] == '-' || flag.back() != 'c')
		return false;
	static constexpr std::string_view shells[] = {"sh",  "bash", "dash", "zsh",
	                                              "ksh", "ash",  "mksh", "busybox"};
	return std::find(std::begin(shells), std::end(shells), basename_of(argv[0])) !=
	       std::end(shells);
}

namespace
{

// The line a shell runs, masked command by command as an argv.
std::string mask_shell_line(std::string_view line, bool catalog)
{
	std::string s(line);
	auto words = shell_words(line);
	std::vector<std::pair<const ShellWord *, std::string>> changed;
	for (size_t from = 0; from < words.size();) {
		size_t to = from + 1;
		while (to < words.size() && !words[to].command)
			to++;
		std::vector<std::string> cmd;
		for (size_t k = from; k < to; k++)
			cmd.push_back(words[k].text);
		auto masked = mask_argv(std::move(cmd), catalog);
		for (size_t k = from; k < to; k++)
			if (masked[k - from] != words[k].text && !words[k].reference)
				changed.emplace_back(&words[k], masked[k - from]);
		from = to;
	}
	for (auto it = changed.rbegin(); it != changed.rend(); ++it)
		s.replace(it->first->start, it->first->end - it->first->start, it->second);
	return mask_text(s, catalog);
}

} // namespace

std::vector<std::string> mask_argv(std::vector<std::string> argv, bool catalog)
{
	// Every decision reads the arguments as given; what changes is replaced
	// at the end, and an argument with nothing to mask is not copied.
	std::vector<std::pair<size_t, std::string>> changed;
	auto replace = [&](size_t i, std::string masked) {
		if (masked != argv[i])
			changed.emplace_back(i, std::move(masked));
	};
	// Without the catalog, what the cheap mask finds nothing in is as given.
	auto mask_one = [&](size_t i) {
		if (catalog || cheap_mask_applies(argv[i]))
			replace(i, mask_arg(argv[i], catalog));
	};
	// The program, also behind a wrapper (sudo mysql -pX, env docker login).
	bool pw_p = false, login = false;
	for (size_t i = 0; i < argv.size() && i < 4; i++)
		pw_p = pw_p || p_is_password(basename_of(argv[i]));
	// docker/podman: -p is a password only for `login` (else a port).
	if (pw_p) {
		for (std::string_view a : argv)
			login = login || a == "login";
		bool container_cli = false;
		for (size_t i = 0; i < argv.size() && i < 4; i++)
			for (std::string_view c :
			     {"docker", "podman", "nerdctl", "buildah", "helm", "oras"})
				container_cli = container_cli || basename_of(argv[i]) == c;
		pw_p = !container_cli || login;
	}
	enum { kNone, kAll, kAfterColon } next = kNone;
	for (size_t i = 0; i < argv.size(); i++) {
		const std::string &a = argv[i];
		std::string_view word = a; // compared by size first, not by memcmp
		if (shell_line_arg(argv, i)) {
			replace(i, mask_shell_line(a, catalog));
			next = kNone;
			continue;
		}
		if (next != kNone && !a.empty() && (a[0] != '-' || next == kAll)) {
			size_t colon = a.find(':');
			if (next == kAfterColon && colon != std::string::npos)
				replace(i, a.substr(0, colon + 1) + std::string(kMask));
			else if (next == kAll)
				replace(i, std::string(kMask));
			else
				mask_one(i);
			next = kNone;
			continue;
		}
		next = kNone;
		bool option = a.size() > 1 && a[0] == '-';
		if (option && a.find('=') == std::string::npos && credential_like_name(a))
			next = kAll; // --token V
		else if (i > 0 && credential_key_word(a))
			next = kAll; // aws_secret_access_key V
		else if (word == "-u" || word == "--user" || word == "-U" || word == "--proxy-user")
			next = kAfterColon; // curl -u user:password
		else if (pw_p && (word == "-p" || word == "--password"))
			next = kAll;
		if (pw_p && a.size() > 2 && a.compare(0, 2, "-p") == 0 && a[2] != '-') {
			replace(i, "-p" + std::string(kMask)); // mysql -pSECRET
			continue;
		}
		if (a.size() > 2 && a.compare(0, 2, "-u") == 0 &&
		    a.find(':') != std::string::npos) {
			replace(i, a.substr(0, a.find(':') + 1) + std::string(kMask)); // -uuser:pw
			continue;
		}
		mask_one(i);
	}
	for (auto &[i, masked] : changed)
		argv[i] = std::move(masked);
	return argv;
}

std::string shown(std::string_view text)
{
	// Masked first: the escape of a bad byte (\\xFF) must not glue onto a token.
	return sanitize_utf8(mask_text(text));
}

} // namespace keytrail
