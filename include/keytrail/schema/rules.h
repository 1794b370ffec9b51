// The detection rules and the severity scale: one table each. Config
// validation, OCSF, syslog, the report's risk score and the docs all derive
// from these; docs/alerts.md describes each rule. Tags are MITRE ATT&CK
// ("attack.tNNNN") and the OWASP Non-Human Identity Top 10 2025
// ("owasp-nhi.nhiN").
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

struct Severity {
	const char *name;      // info, low, medium, high, critical
	int ocsf_id;           // OCSF severity_id: 1 informational .. 5 critical
	const char *ocsf_name; // OCSF severity
	int syslog;            // RFC 5424 severity: 6 informational .. 2 critical
	int weight;            // the report's risk score per finding
};

// The scale, lowest first.
const std::vector<Severity> &severities();
// A severity by name; an unknown name is "info".
const Severity &severity(std::string_view name);

struct RuleInfo {
	const char *id;
	const char *severity; // a name from severities()
	std::vector<const char *> tags;
	const char *title;       // for people: OCSF finding_info.title, the report
	const char *remediation; // what to do, one or two sentences
};

const std::vector<RuleInfo> &rule_catalog();
const RuleInfo *find_rule(std::string_view id);
// "a, b, c": the rule ids, for messages that list what is valid.
std::string rule_ids();

} // namespace keytrail
