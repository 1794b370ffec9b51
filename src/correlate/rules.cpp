#include "keytrail/correlate/rules.h"

namespace keytrail
{

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
	};
	return rules;
}

const RuleInfo *find_rule(const std::string &id)
{
	for (const auto &r : rule_catalog())
		if (id == r.id)
			return &r;
	return nullptr;
}

int severity_id(const std::string &severity)
{
	static const char *names[] = {"info", "low", "medium", "high", "critical"};
	for (int i = 0; i < 5; i++)
		if (severity == names[i])
			return i + 1;
	return 0;
}

} // namespace keytrail
