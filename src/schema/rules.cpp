#include "keytrail/schema/rules.h"

namespace keytrail
{

const std::vector<Severity> &severities()
{
	static const std::vector<Severity> scale = {
	    {"info", 1, "Informational", 6, 0}, {"low", 2, "Low", 5, 1},
	    {"medium", 3, "Medium", 4, 3},      {"high", 4, "High", 3, 6},
	    {"critical", 5, "Critical", 2, 10},
	};
	return scale;
}

const Severity &severity(std::string_view name)
{
	for (const auto &s : severities())
		if (name == s.name)
			return s;
	return severities().front();
}

const std::vector<RuleInfo> &rule_catalog()
{
	static const std::vector<RuleInfo> rules = {
	    {"shared_credential", "high", {"attack.t1078", "owasp-nhi.nhi9", "owasp-nhi.nhi8"}},
	    {"stale_credential", "medium", {"attack.t1078", "owasp-nhi.nhi7"}},
	    {"unowned_secret", "low", {"attack.t1078", "owasp-nhi.nhi1"}},
	    {"revoked_credential_used", "critical", {"attack.t1078", "owasp-nhi.nhi1"}},
	    {"out_of_scope_identity",
	     "high",
	     {"attack.t1550.001", "attack.t1078.004", "owasp-nhi.nhi5"}},
	    {"unexpected_upstream",
	     "high",
	     {"attack.t1550.001", "attack.t1078.004", "owasp-nhi.nhi5"}},
	    {"hardcoded_secret", "medium", {"attack.t1552.001", "owasp-nhi.nhi2"}},
	    {"human_use", "medium", {"attack.t1078", "attack.t1552.001", "owasp-nhi.nhi10"}},
	    {"monitor_degraded", "medium", {"attack.t1562.001"}},
	    {"io_uring_evasion", "high", {"attack.t1562.001", "attack.t1106"}},
	};
	return rules;
}

const RuleInfo *find_rule(std::string_view id)
{
	for (const auto &r : rule_catalog())
		if (id == r.id)
			return &r;
	return nullptr;
}

std::string rule_ids()
{
	std::string s;
	for (const auto &r : rule_catalog())
		s += (s.empty() ? "" : ", ") + std::string(r.id);
	return s;
}

} // namespace keytrail
