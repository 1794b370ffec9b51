// The detection rules: ids, default severities and tags (MITRE ATT&CK as
// "attack.tNNNN", OWASP Non-Human Identity Top 10 2025 as "owasp-nhi.nhiN").
// docs/alerts.md describes each.
#pragma once

#include <string>
#include <vector>

namespace keytrail
{

struct RuleInfo {
	const char *id;
	const char *severity; // info, low, medium, high, critical
	std::vector<const char *> tags;
};

const std::vector<RuleInfo> &rule_catalog();
const RuleInfo *find_rule(const std::string &id);

// OCSF severity_id of a severity name (1 informational .. 5 critical).
int severity_id(const std::string &severity);

} // namespace keytrail
