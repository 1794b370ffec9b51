#include "keytrail/secrets/catalog.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "keytrail/secrets/fingerprint.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

Detector det(std::string id, std::vector<std::string> kw, const std::string &re, size_t show,
             double entropy = 0, int group = 0, size_t window = 256, bool icase = false,
             size_t back = 0)
{
	auto flags = std::regex::ECMAScript | std::regex::optimize;
	if (icase)
		flags |= std::regex::icase;
	return Detector{std::move(id), std::move(kw), std::regex(re, flags), window, group, entropy,
	                show,          back};
}

bool token_char(char c)
{
	return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

} // namespace

const std::vector<Detector> &detectors()
{
	// Order matters where prefixes nest: sk-ant- before sk-.
	static const std::vector<Detector> all = {
	    det("github_pat_fine_grained", {"github_pat_"},
	        "github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}", 11),
	    det("github_token", {"ghp_", "gho_", "ghu_", "ghs_", "ghr_"},
	        "gh[pousr]_[A-Za-z0-9]{36}", 4, 3.0),
	    det("gitlab_pat", {"glpat-"}, "glpat-[A-Za-z0-9_\\-]{20}[A-Za-z0-9_.\\-]*", 6, 3.0),
	    det("gitlab_runner_token", {"glrt-", "GR1348941"},
	        "(glrt-|GR1348941)[A-Za-z0-9_\\-]{20,}", 5, 3.0),
	    det("gitlab_ci_job_token", {"glcbt-"}, "glcbt-[A-Za-z0-9_\\-]{20,}", 6, 3.0),
	    det("gitlab_deploy_token", {"gldt-"}, "gldt-[A-Za-z0-9_\\-]{20,}", 5, 3.0),
	    det("aws_access_key_id",
	        {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA",
	         "APKA"},
	        "(AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}", 4, 2.5),
	    det("aws_secret_access_key",
	        {"aws_secret_access_key", "secret_access_key", "secretaccesskey"},
	        "(aws_)?secret_?access_?key[\"']?\\s*[:=]\\s*[\"']?([A-Za-z0-9/"
	        "+]{40})(?![A-Za-z0-9/+])",
	        0, 3.5, 2, 128, true, 4),
	    det("slack_webhook", {"hooks.slack.com/"},
	        "(https://)?hooks\\.slack\\.com/(services|workflows)/[A-Za-z0-9]+/[A-Za-z0-9]+/"
	        "[A-Za-z0-9]{16,}",
	        25, 0, 0, 256, false, 8),
	    det("slack_token", {"xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-", "xapp-"},
	        "(xox[baprse]|xapp)-[0-9A-Za-z\\-]{10,}", 5, 3.0),
	    det("anthropic_api_key", {"sk-ant-"}, "sk-ant-[a-z0-9]+-[A-Za-z0-9_\\-]{40,}", 7, 3.5),
	    det("openai_api_key", {"sk-"},
	        "sk-(?!ant-)(proj-|svcacct-|admin-)?[A-Za-z0-9_\\-]{20,}", 3, 3.5),
	    det("google_api_key", {"AIza"}, "AIza[0-9A-Za-z_\\-]{35}", 4, 3.0),
	    det("stripe_key", {"sk_live_", "sk_test_", "rk_live_", "rk_test_"},
	        "[sr]k_(live|test)_[A-Za-z0-9]{24,}", 8, 3.0),
	    det("huggingface_token", {"hf_"}, "hf_[A-Za-z0-9]{34,}", 3, 3.0),
	    det("npm_token", {"npm_"}, "npm_[A-Za-z0-9]{36}", 4, 3.0),
	    det("pypi_token", {"pypi-AgE"}, "pypi-AgE[A-Za-z0-9_\\-]{50,}", 5, 3.0),
	    det("dockerhub_pat", {"dckr_pat_"}, "dckr_pat_[A-Za-z0-9_\\-]{27,}", 9, 3.0),
	    det("notion_token", {"secret_", "ntn_"}, "(secret_[A-Za-z0-9]{43}|ntn_[A-Za-z0-9]{46})",
	        4, 3.5),
	    det("linear_api_key", {"lin_api_"}, "lin_api_[A-Za-z0-9]{40}", 8, 3.0),
	    det("azure_client_secret", {"8Q~"}, "[A-Za-z0-9_~.\\-]{3}8Q~[A-Za-z0-9_~.\\-]{31,34}",
	        0, 3.0, 0, 48, false, 3),
	    det("azure_storage_key", {"AccountKey="}, "AccountKey=([A-Za-z0-9+/]{86}==)", 0, 4.0, 1,
	        110),
	    det("vault_token", {"hvs.", "hvb.", "hvr."}, "hv[sbr]\\.[A-Za-z0-9_\\-]{24,}", 4, 3.0),
	    det("sendgrid_api_key", {"SG."}, "SG\\.[A-Za-z0-9_\\-]{22}\\.[A-Za-z0-9_\\-]{43}", 3,
	        3.5),
	    det("twilio_api_key", {"SK"}, "SK[0-9a-f]{32}(?![0-9a-fA-F])", 2, 3.0),
	    det("databricks_token", {"dapi"}, "dapi[a-f0-9]{32}(-[0-9]+)?", 4, 3.0),
	    det("digitalocean_token", {"dop_v1_", "doo_v1_", "dor_v1_"}, "do[por]_v1_[a-f0-9]{64}",
	        7, 3.0),
	    det("jwt", {"eyJ"},
	        "eyJ[A-Za-z0-9_\\-]{10,}\\.eyJ[A-Za-z0-9_\\-]{10,}\\.[A-Za-z0-9_\\-]{10,}", 0, 0, 0,
	        8192),
	    det("private_key", {"-----BEGIN"},
	        "-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( "
	        "BLOCK)?-----[\\s\\S]*?-----END "
	        "((RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----",
	        0, 0, 0, 16384),
	    det("database_url", {"://"},
	        "(postgres|postgresql|mysql|mariadb|mongodb|mongodb\\+srv|redis|rediss|amqp|amqps|"
	        "mssql|sqlserver|"
	        "clickhouse|cockroachdb)://[^:/@\\s\"']*:([^@\\s/\"']+)@",
	        0, 0, 2, 512, false, 16),
	};
	return all;
}

double shannon_entropy(std::string_view s)
{
	if (s.empty())
		return 0;
	size_t counts[256] = {};
	for (unsigned char c : s)
		counts[c]++;
	double h = 0;
	for (size_t c : counts) {
		if (!c)
			continue;
		double p = static_cast<double>(c) / s.size();
		h -= p * std::log2(p);
	}
	return h;
}

namespace
{

// Adds a finding unless the same (type, secret) is already there.
void add(std::vector<Finding> &out, Finding f)
{
	for (const auto &o : out)
		if (o.type == f.type && o.secret.view() == f.secret.view())
			return;
	out.push_back(std::move(f));
}

size_t line_of(std::string_view text, size_t pos)
{
	return 1 + std::count(text.begin(), text.begin() + std::min(pos, text.size()), '\n');
}

bool placeholder(std::string_view v)
{
	// ${VAR}, <token>, {{secret}}, xxxx..., your-token-here: not secrets.
	if (v.empty() || v.front() == '$' || v.front() == '<' || v.substr(0, 2) == "{{")
		return true;
	if (std::all_of(v.begin(), v.end(), [&](char c) { return c == v.front(); }))
		return true;
	std::string l(v);
	std::transform(l.begin(), l.end(), l.begin(), ::tolower);
	for (const char *p : {"your", "changeme", "example", "placeholder", "redacted", "****"})
		if (l.find(p) != std::string::npos)
			return true;
	return false;
}

} // namespace

namespace
{

// Regex attempts per detector and text: generous for content (a file of
// many keys), tight for masking, which runs on every exec's argv.
constexpr size_t kScanTries = 4096, kMaskTries = 4;

// Calls fn(detector, start of the match, the secret) for every credential
// in the text, in detector order.
template <typename Fn> void each_match(std::string_view text, size_t max_tries, Fn fn)
{
	for (const auto &d : detectors()) {
		std::set<size_t> tried;
		for (const auto &kw : d.keywords) {
			for (size_t pos = text.find(kw); pos != std::string_view::npos;
			     pos = text.find(kw, pos + 1)) {
				size_t start = pos >= d.keyword_back ? pos - d.keyword_back : 0;
				// A bound on the regex work per detector: a text made
				// of keywords ("-----BEGIN" x 400 in an argv) cannot make
				// every exec cost milliseconds. Past it, nothing more of
				// this format is found in this text.
				if (tried.size() >= max_tries)
					break;
				if (!tried.insert(start).second)
					continue;
				size_t end = std::min(text.size(), pos + kw.size() + d.window);
				std::string_view win = text.substr(start, end - start);
				std::match_results<std::string_view::const_iterator> m;
				if (!std::regex_search(win.begin(), win.end(), m, d.pattern))
					continue;
				size_t abs = start + m.position(0);
				if (abs > pos)
					continue; // the match must cover this keyword occurrence
				if (abs > 0 && d.keyword_back == 0 && token_char(text[abs - 1]))
					continue; // inside a longer word
				std::string_view secret(&*m[d.group].first, m[d.group].length());
				if (d.min_entropy > 0 && shannon_entropy(secret) < d.min_entropy)
					continue;
				if (placeholder(secret))
					continue;
				fn(d, abs, secret);
			}
		}
	}
}

} // namespace

std::vector<Finding> scan_text(std::string_view text)
{
	std::vector<Finding> out;
	each_match(text, kScanTries, [&](const Detector &d, size_t abs, std::string_view secret) {
		Finding f;
		f.type = d.id;
		f.secret = normalize_secret(secret);
		f.prefix = std::string(secret.substr(0, std::min(d.show_prefix, secret.size())));
		f.line = line_of(text, abs);
		if (d.id == "database_url") // scheme://user: is public
			f.prefix = std::string(text.substr(abs, secret.data() - &text[abs]));
		add(out, std::move(f));
	});
	return out;
}

std::vector<CredentialSpan> credential_spans(std::string_view text)
{
	std::vector<CredentialSpan> out;
	each_match(text, kMaskTries, [&](const Detector &d, size_t, std::string_view secret) {
		size_t pos = static_cast<size_t>(secret.data() - text.data());
		out.push_back({pos, secret.size(), std::min(d.show_prefix, secret.size())});
	});
	return out;
}

bool generic_secret(std::string_view name, std::string_view value)
{
	if (!credential_like_name(name) || placeholder(value))
		return false;
	if (value.size() < 8 || value.size() > 4096)
		return false;
	if (value.front() == '/' || value.substr(0, 2) == "./")
		return false; // a path to a secret is not the secret
	if (value == "true" || value == "false" || value == "null")
		return false;
	return shannon_entropy(value) >= 3.0;
}

namespace
{

// name and value of an assignment line, or false.
bool assignment(std::string_view line, std::string_view *name, std::string_view *value)
{
	auto trim = [](std::string_view v) {
		while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
			v.remove_prefix(1);
		while (!v.empty() &&
		       (v.back() == ' ' || v.back() == '\t' || v.back() == ',' || v.back() == '\r'))
			v.remove_suffix(1);
		return v;
	};
	line = trim(line);
	if (line.substr(0, 7) == "export ")
		line = trim(line.substr(7));
	if (line.empty() || line[0] == '#')
		return false;
	// netrc: "machine h login u password p"
	size_t pw = line.find("password ");
	if (pw != std::string_view::npos && (pw == 0 || line[pw - 1] == ' ')) {
		*name = "password";
		std::string_view rest = trim(line.substr(pw + 9));
		*value = rest.substr(0, rest.find(' '));
		return true;
	}
	// An .npmrc registry key ("//host:port/:_authToken=...") holds colons:
	// its value starts after the '='.
	size_t sep = line.substr(0, 2) == "//" && line.find('=') != std::string_view::npos
	                 ? line.find('=')
	                 : line.find_first_of("=:");
	if (sep == std::string_view::npos || sep == 0)
		return false;
	*name = trim(line.substr(0, sep));
	*value = trim(line.substr(sep + 1));
	auto unquote = [](std::string_view v) {
		if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') &&
		    v.back() == v.front())
			return v.substr(1, v.size() - 2);
		return v;
	};
	*name = unquote(*name);
	*value = unquote(*value);
	return !name->empty() && name->find(' ') == std::string_view::npos;
}

} // namespace

std::vector<Finding> scan_file(std::string_view text)
{
	std::vector<Finding> out = scan_text(text);
	size_t line_no = 0, start = 0;
	while (start < text.size()) {
		size_t end = text.find('\n', start);
		if (end == std::string_view::npos)
			end = text.size();
		std::string_view line = text.substr(start, end - start);
		start = end + 1;
		line_no++;
		std::string_view name, value;
		if (!assignment(line, &name, &value))
			continue;
		bool named = false;
		for (auto &f : out)
			if (f.line == line_no && f.name.empty()) {
				f.name = name;
				named = true;
			}
		if (!named && generic_secret(name, value)) {
			Finding f;
			f.type = "generic_secret";
			f.secret = normalize_secret(value);
			f.name = name;
			f.line = line_no;
			add(out, std::move(f));
		}
	}
	return out;
}

std::vector<Finding> scan_environ(const std::vector<std::string> &env)
{
	std::vector<Finding> out;
	for (const auto &kv : env) {
		size_t eq = kv.find('=');
		if (eq == std::string::npos || eq == 0)
			continue;
		std::string_view name(kv.data(), eq), value(kv.data() + eq + 1, kv.size() - eq - 1);
		auto found = scan_text(value);
		for (auto &f : found) {
			f.name = name;
			f.line = 0;
			add(out, std::move(f));
		}
		if (found.empty() && generic_secret(name, value)) {
			Finding f;
			f.type = "generic_secret";
			f.secret = normalize_secret(value);
			f.name = name;
			add(out, std::move(f));
		}
	}
	return out;
}

namespace
{

// A name shown for a credential: one plain word, never a value.
bool plain_name(std::string_view n)
{
	return !n.empty() && n.size() <= 128 && std::all_of(n.begin(), n.end(), [](char c) {
		return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
		       c == '.';
	});
}

std::vector<Finding> scan_args(const std::vector<std::string> &argv, bool nested)
{
	std::vector<Finding> out;
	for (size_t i = 0; i < argv.size(); i++) {
		const std::string &a = argv[i];
		std::string at = "argv[" + std::to_string(i) + "]";
		// The line a shell runs: its words, each named by its option.
		if (!nested && shell_line_arg(argv, i)) {
			std::vector<std::string> words;
			for (auto &w : shell_words(a))
				words.push_back(std::move(w.text));
			for (auto &f : scan_args(words, true)) {
				if (!plain_name(f.name) || f.name.starts_with("argv"))
					f.name = at;
				add(out, std::move(f));
			}
			// And formats that span words (a PEM key).
			for (auto &f : scan_text(a)) {
				f.name = at;
				f.line = 0;
				add(out, std::move(f));
			}
			continue;
		}
		// --token=VALUE, NAME=VALUE, or --token VALUE.
		size_t eq = a.find('=');
		std::string_view name, value;
		bool next = false;
		if (eq != std::string::npos && eq > 0) {
			name = std::string_view(a).substr(0, eq);
			value = std::string_view(a).substr(eq + 1);
		} else if (a.size() > 1 && a[0] == '-' && i + 1 < argv.size() &&
		           (nested || !shell_line_arg(argv, i + 1)) &&
		           (!argv[i + 1].starts_with("-") || credential_like_name(a))) {
			name = a;
			value = argv[i + 1];
			next = true;
		}
		// Only a plain word is a name (not a URL with a password before its
		// query's '='): else the whole argument is scanned, and named by its slot.
		if (!plain_name(name))
			name = {}, value = {}, next = false;
		// A known format is named by the option it is passed to; formats
		// anchored on the whole argument (a URL, `AccountKey=`) are found too.
		std::vector<Finding> found;
		if (!name.empty())
			for (auto &f : scan_text(value)) {
				f.name = std::string(name);
				f.line = 0;
				add(found, std::move(f));
			}
		for (auto &f : scan_text(a)) {
			f.name = at;
			f.line = 0;
			add(found, std::move(f));
		}
		if (!found.empty()) {
			for (auto &f : found)
				add(out, std::move(f));
			i += next; // the value was this option's
			continue;
		}
		if (name.empty())
			continue;
		if (generic_secret(name, value)) {
			Finding f;
			f.type = "generic_secret";
			f.secret = normalize_secret(value);
			f.name = std::string(name);
			add(out, std::move(f));
			i += next;
		}
	}
	return out;
}

} // namespace

std::vector<Finding> scan_argv(const std::vector<std::string> &argv)
{
	return scan_args(argv, false);
}

} // namespace keytrail
