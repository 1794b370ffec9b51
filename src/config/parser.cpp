// The YAML walker's helpers, and the top level.
#include "parser.h"

#include <yaml-cpp/depthguard.h>

#include <algorithm>
#include <set>

#include "keytrail/schema/record.h"
#include "keytrail/secrets/mask.h"

namespace keytrail::config_detail
{

void Parser::fail(const YAML::Node &n, const std::string &why) const
{
	const YAML::Mark m = n.Mark();
	// Position and key; a value some messages name (an unknown type) is
	// masked if it looks like a credential.
	throw ConfigError(name_ + ":" + std::to_string(m.line + 1) + ":" +
	                  std::to_string(m.column + 1) + ": " + shown(why));
}

void Parser::only_keys(const YAML::Node &map, const std::string &where,
                       const std::set<std::string> &allowed) const
{
	if (!map.IsMap())
		fail(map, where + " must be a mapping");
	std::set<std::string> seen;
	for (const auto &kv : map) {
		std::string key = kv.first.as<std::string>();
		// YAML keeps both; only the first would count, silently.
		if (!seen.insert(key).second)
			fail(kv.first, "key '" + key + "' appears twice in " + where);
		if (!allowed.count(key)) {
			std::string list;
			for (const auto &a : allowed)
				list += (list.empty() ? "" : ", ") + a;
			fail(kv.first, "unknown key '" + key + "' in " + where +
			                   " (expected one of: " + list + ")");
		}
	}
}

std::string Parser::str(const YAML::Node &n, const std::string &what) const
{
	if (!n.IsScalar())
		fail(n, what + " must be a string");
	return n.as<std::string>();
}

bool Parser::boolean(const YAML::Node &n, const std::string &what) const
{
	try {
		return n.as<bool>();
	} catch (const YAML::Exception &) {
		fail(n, what + " must be true or false");
	}
}

uint64_t Parser::number(const YAML::Node &n, const std::string &what, uint64_t lo,
                        uint64_t hi) const
{
	uint64_t v;
	try {
		v = n.as<uint64_t>();
	} catch (const YAML::Exception &) {
		fail(n, what + " must be a whole number");
	}
	if (v < lo || v > hi)
		fail(n, what + " must be between " + std::to_string(lo) + " and " +
		            std::to_string(hi));
	return v;
}

SelectorMatch Parser::selector_match(const YAML::Node &n, const std::string &what) const
{
	if (!n.IsMap() || n.size() == 0)
		fail(n, what + " must be a mapping of selector: glob");
	SelectorMatch m;
	for (const auto &kv : n) {
		std::string key = kv.first.as<std::string>();
		check_selector(kv.first, key);
		m.emplace_back(key, str(kv.second, what + "." + key));
	}
	return m;
}

void Parser::check_selector(const YAML::Node &n, const std::string &key) const
{
	const auto &known = known_selectors();
	if (std::find(known.begin(), known.end(), key) != known.end())
		return;
	std::string list;
	for (const auto &k : known)
		list += (list.empty() ? "" : ", ") + k;
	fail(n, "unknown selector '" + key + "' (known: " + list + ")");
}

void Parser::check_template(const YAML::Node &n, const std::string &t) const
{
	size_t pos = 0;
	while ((pos = t.find('{', pos)) != std::string::npos) {
		size_t end = t.find('}', pos);
		if (end == std::string::npos)
			fail(n, "unclosed '{' in identity template '" + t + "'");
		check_selector(n, t.substr(pos + 1, end - pos - 1));
		pos = end + 1;
	}
}

std::vector<std::string> Parser::str_list(const YAML::Node &n, const std::string &what) const
{
	std::vector<std::string> out;
	if (n.IsScalar()) {
		out.push_back(str(n, what));
		return out;
	}
	if (!n.IsSequence())
		fail(n, what + " must be a string or a list of strings");
	for (const auto &x : n)
		out.push_back(str(x, what));
	return out;
}

std::regex Parser::regex(const YAML::Node &n, const std::string &what) const
{
	std::string s = str(n, what);
	try {
		return std::regex(s, std::regex::ECMAScript | std::regex::optimize);
	} catch (const std::regex_error &e) {
		fail(n, what + " is not a valid regular expression: " + e.what());
	}
}

std::vector<std::string> Parser::records_list(const YAML::Node &n, const std::string &what) const
{
	std::vector<std::string> out = str_list(n, what);
	for (size_t i = 0; i < out.size(); i++) {
		if (find_record_type(out[i]))
			continue;
		std::string list;
		for (const auto &t : record_types())
			list += (list.empty() ? "" : ", ") + std::string(t.name);
		fail(n.IsSequence() ? n[i] : n, "unknown record type '" + out[i] + "' in " + what +
		                                    " (expected one of: " + list + ")");
	}
	return out;
}

Config Parser::parse(const std::string &text) const
{
	YAML::Node root;
	if (text.size() > (1u << 20))
		throw ConfigError(name_ + ": config is larger than 1 MiB");
	try {
		root = YAML::Load(text);
	} catch (const YAML::DeepRecursion &e) {
		throw ConfigError(name_ + ":" + std::to_string(e.mark.line + 1) + ":" +
		                  std::to_string(e.mark.column + 1) + ": nested too deep");
	} catch (const YAML::ParserException &e) {
		// YAML indents with spaces; a tab there reads as a bad value.
		size_t line = 1, at = 0;
		while (at < text.size() && line <= static_cast<size_t>(e.mark.line) + 1) {
			size_t end = text.find('\n', at);
			std::string_view l(text.data() + at,
			                   (end == std::string::npos ? text.size() : end) - at);
			size_t lead = l.find_first_not_of(" \t");
			if (lead != std::string_view::npos &&
			    l.substr(0, lead).find('\t') != l.npos)
				throw ConfigError(
				    name_ + ":" + std::to_string(line) + ":" +
				    std::to_string(l.substr(0, lead).find('\t') + 1) +
				    ": a tab in the indentation; YAML indents with spaces");
			if (end == std::string::npos)
				break;
			at = end + 1;
			line++;
		}
		throw ConfigError(name_ + ":" + std::to_string(e.mark.line + 1) + ":" +
		                  std::to_string(e.mark.column + 1) + ": " + e.msg);
	}
	try {
		return parse(root);
	} catch (const YAML::Exception &e) {
		// yaml-cpp's own complaints (a bad conversion, an invalid node): a
		// node of the wrong kind somewhere, when it has no position.
		if (e.mark.is_null())
			throw ConfigError(name_ + ": a section has the wrong shape (" + e.msg +
			                  "); compare it with docs/config.md");
		throw ConfigError(name_ + ":" + std::to_string(e.mark.line + 1) + ":" +
		                  std::to_string(e.mark.column + 1) + ": " + e.msg);
	}
}

Config Parser::parse(const YAML::Node &root) const
{
	Config c;
	c.source = name_;
	if (root.IsNull())
		return c; // an empty file means defaults
	only_keys(root, "the top level",
	          {"agent", "tracking", "outputs", "journal", "correlate", "identities",
	           "environments", "secrets", "inventory", "exceptions"});
	if (root["agent"])
		agent(root["agent"], &c);
	if (root["tracking"])
		tracking(root["tracking"], &c);
	if (root["outputs"])
		outputs(root["outputs"], &c);
	if (root["journal"])
		journal(root["journal"], &c);
	if (root["correlate"])
		correlate(root["correlate"], &c);
	if (root["identities"] && !root["identities"].IsNull())
		identities(root["identities"], &c);
	if (root["environments"] && !root["environments"].IsNull())
		environments(root["environments"], &c);
	if (root["secrets"])
		secrets(root["secrets"], &c);
	if (root["inventory"] && !root["inventory"].IsNull())
		inventory(root["inventory"], &c);
	if (root["exceptions"] && !root["exceptions"].IsNull())
		exceptions(root["exceptions"], &c);
	// Fleet queries join hosts on fingerprints: those of a per-host key
	// never match, and would look like a fleet without sharing.
	for (const auto &o : c.outputs) {
		if (o.type != "clickhouse")
			continue;
		if (c.fingerprint_key_file.empty() && !o.allow_host_key)
			throw ConfigError(
			    name_ + ":" + std::to_string(o.line) +
			    ": a clickhouse output needs fleet-keyed fingerprints: set "
			    "secrets.fingerprint_key_file to the fleet key (keytrail key "
			    "init FILE, the same file on every host), or allow_host_key: "
			    "true to ship per-host fingerprints that never match across "
			    "hosts");
		if (!c.journal.enabled)
			throw ConfigError(
			    name_ + ":" + std::to_string(o.line) +
			    ": a clickhouse output ships the journal: journal.enabled "
			    "must be true");
	}
	// Sections of single settings by setting; lists and rule sets whole.
	static const std::set<std::string> by_key = {"agent", "tracking", "journal", "correlate",
	                                             "secrets"};
	for (const auto &kv : root) {
		std::string k = kv.first.as<std::string>();
		if (by_key.count(k) && kv.second.IsMap())
			for (const auto &sub : kv.second)
				c.settings[k + "." + sub.first.as<std::string>()] =
				    YAML::Dump(sub.second);
		else
			c.settings[k] = YAML::Dump(kv.second);
	}
	return c;
}

} // namespace keytrail::config_detail
