// The policy sections: inventory, identities, environments.
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"
#include "parser.h"

namespace keytrail::config_detail
{

void Parser::identities(const YAML::Node &n, Config *c) const
{
	YAML::Node rules = n;
	if (n.IsMap()) {
		only_keys(n, "identities", {"trust_domain", "rules"});
		if (n["trust_domain"]) {
			c->trust_domain = str(n["trust_domain"], "identities.trust_domain");
			if (c->trust_domain.empty() ||
			    c->trust_domain.find('/') != std::string::npos)
				fail(n["trust_domain"],
				     "identities.trust_domain must be a bare name");
		}
		if (!n["rules"])
			return;          // a trust domain alone
		rules.reset(n["rules"]); // operator= would write into n
	}
	if (!rules.IsSequence())
		fail(rules, "identity rules must be a list");
	for (const auto &r : rules) {
		only_keys(r, "an identity rule", {"id", "match"});
		if (!r["id"])
			fail(r, "an identity rule needs an id template");
		IdentityRule rule{str(r["id"], "identity id"), {}};
		check_template(r["id"], rule.id);
		if (r["match"])
			rule.match = selector_match(r["match"], "match");
		c->identities.push_back(std::move(rule));
	}
}

void Parser::environments(const YAML::Node &n, Config *c) const
{
	if (!n.IsSequence())
		fail(n, "environments must be a list");
	for (const auto &r : n) {
		only_keys(r, "an environment rule", {"name", "match"});
		if (!r["name"] || !r["match"])
			fail(r, "an environment rule needs a name and a match");
		c->environments.push_back(EnvironmentRule{str(r["name"], "environment name"),
		                                          selector_match(r["match"], "match")});
	}
}

void Parser::inventory(const YAML::Node &n, Config *c) const
{
	if (!n.IsSequence())
		fail(n, "inventory must be a list");
	std::set<std::string> ids;
	for (const auto &e : n) {
		InventoryEntry entry = inventory_entry(e);
		if (!ids.insert(entry.id).second)
			fail(e["id"], "inventory id '" + entry.id + "' is defined twice");
		c->inventory.push_back(std::move(entry));
	}
}

InventoryEntry Parser::inventory_entry(const YAML::Node &e) const
{
	only_keys(e, "an inventory entry",
	          {"id", "owner", "purpose", "match", "expires", "rotate_every", "max_unused",
	           "allowed_identities", "allowed_upstreams", "environment", "status"});
	InventoryEntry entry;
	entry.line = e.Mark().line + 1;
	if (!e["id"])
		fail(e, "an inventory entry needs an id");
	entry.id = str(e["id"], "inventory id");
	const std::string where = "inventory '" + entry.id + "'";
	if (e["owner"])
		entry.owner = str(e["owner"], where + ".owner");
	if (e["purpose"])
		entry.purpose = str(e["purpose"], where + ".purpose");
	if (!e["match"])
		fail(e, where + " needs a match (fingerprint, path or env)");
	inventory_match(e["match"], where, &entry);
	if (e["expires"]) {
		int64_t t;
		if (!parse_rfc3339(str(e["expires"], where + ".expires"), &t))
			fail(e["expires"],
			     where + ".expires must be a date (2027-01-31) or an RFC 3339 time");
		entry.expires_ns = t;
	}
	if (e["rotate_every"])
		entry.rotate_every =
		    convert(e["rotate_every"], where + ".rotate_every", parse_duration);
	if (e["max_unused"])
		entry.max_unused = convert(e["max_unused"], where + ".max_unused", parse_duration);
	if (e["allowed_identities"])
		entry.allowed_identities =
		    str_list(e["allowed_identities"], where + ".allowed_identities");
	if (e["allowed_upstreams"])
		entry.allowed_upstreams =
		    str_list(e["allowed_upstreams"], where + ".allowed_upstreams");
	if (e["environment"])
		entry.environment = str(e["environment"], where + ".environment");
	if (e["status"]) {
		entry.status = str(e["status"], where + ".status");
		if (entry.status != "active" && entry.status != "revoked" &&
		    entry.status != "decommissioned")
			fail(e["status"],
			     where + ".status must be active, revoked or decommissioned");
	}
	return entry;
}

void Parser::inventory_match(const YAML::Node &m, const std::string &where,
                             InventoryEntry *entry) const
{
	only_keys(m, where + ".match", {"fingerprint", "path", "env", "identity"});
	if (m["fingerprint"]) {
		entry->fingerprints = str_list(m["fingerprint"], where + ".match.fingerprint");
		for (const auto &fp : entry->fingerprints)
			// Never echoed: someone may have pasted the secret itself here.
			if (fp.size() != 32 ||
			    fp.find_first_not_of("0123456789abcdef") != std::string::npos)
				fail(m["fingerprint"],
				     where + ".match.fingerprint must be 32 lowercase hex "
				             "digits, as `keytrail fingerprint` prints");
	}
	if (m["path"])
		entry->path = str(m["path"], where + ".match.path");
	if (m["env"])
		entry->env = str(m["env"], where + ".match.env");
	if (m["identity"])
		entry->identity = str(m["identity"], where + ".match.identity");
	if (entry->fingerprints.empty() && !entry->path && !entry->env)
		fail(m, where + ".match needs a fingerprint, path or env");
}

void Parser::exceptions(const YAML::Node &n, Config *c) const
{
	if (!n.IsSequence())
		fail(n, "exceptions must be a list");
	for (const auto &e : n) {
		only_keys(
		    e, "an exception",
		    {"name", "rule", "identity", "exe", "comm", "uid", "fingerprint", "upstream"});
		AlertException x;
		x.line = e.Mark().line + 1;
		x.name = e["name"] ? str(e["name"], "exception name")
		                   : "exception at line " + std::to_string(x.line);
		if (e["rule"]) {
			x.rule = str(e["rule"], "exception rule");
			if (x.rule != "*" && !find_rule(x.rule))
				fail(e["rule"], "unknown rule in an exception (rules: " +
				                    rule_ids() + ", or *)");
		}
		auto glob = [&](const char *k, std::optional<std::string> &out) {
			if (e[k])
				out = str(e[k], std::string("exception ") + k);
		};
		glob("identity", x.identity);
		glob("exe", x.exe);
		glob("comm", x.comm);
		glob("upstream", x.upstream);
		if (e["fingerprint"]) {
			x.fingerprint = str(e["fingerprint"], "exception fingerprint");
			if (x.fingerprint->size() != 32 ||
			    x.fingerprint->find_first_not_of("0123456789abcdef") !=
			        std::string::npos)
				fail(e["fingerprint"],
				     "an exception's fingerprint must be 32 lowercase hex "
				     "digits, as `keytrail fingerprint` prints");
		}
		if (e["uid"])
			x.uid =
			    static_cast<uint32_t>(number(e["uid"], "exception uid", 0, UINT32_MAX));
		if (!x.identity && !x.exe && !x.comm && !x.upstream && !x.fingerprint && !x.uid)
			fail(
			    e,
			    "an exception needs a condition (identity, exe, comm, uid, fingerprint "
			    "or "
			    "upstream): one that matches everything is `correlate.disabled_rules`");
		c->correlate.exceptions.push_back(std::move(x));
	}
}

} // namespace keytrail::config_detail
