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
	    {"shared_credential",
	     "high",
	     {"attack.t1078", "owasp-nhi.nhi9", "owasp-nhi.nhi8"},
	     "Credential shared across workloads",
	     "Issue each workload (each MCP server, in each environment) its own credential, "
	     "then revoke the shared one."},
	    {"stale_credential",
	     "medium",
	     {"attack.t1078", "owasp-nhi.nhi7"},
	     "Stale credential: expired, overdue for rotation or unused",
	     "Rotate it now, or revoke it if nothing needs it; then update its inventory entry "
	     "(expires, rotate_every, max_unused)."},
	    {"unowned_secret",
	     "low",
	     {"attack.t1078", "owasp-nhi.nhi1"},
	     "Credential used with no owner",
	     "Add an inventory entry that names its owner and purpose, or revoke it if nobody "
	     "claims it."},
	    {"revoked_credential_used",
	     "critical",
	     {"attack.t1078", "owasp-nhi.nhi1"},
	     "Revoked credential still in use",
	     "Find where the workload still gets it (the investigate command), replace it with "
	     "the current credential, and confirm the upstream rejects the revoked one."},
	    {"out_of_scope_identity",
	     "high",
	     {"attack.t1550.001", "attack.t1078.004", "owasp-nhi.nhi5"},
	     "Credential held or used by an identity it is not issued to",
	     "Remove the credential from this workload; if the use is intended, add the identity "
	     "to the entry's allowed_identities."},
	    {"unexpected_upstream",
	     "high",
	     {"attack.t1550.001", "attack.t1078.004", "owasp-nhi.nhi5"},
	     "Credential sent to an upstream outside its scope",
	     "Check the destination: if it is not intended, revoke the credential and block the "
	     "workload's egress there; if it is, add it to the entry's allowed_upstreams."},
	    {"hardcoded_secret",
	     "medium",
	     {"attack.t1552.001", "owasp-nhi.nhi2"},
	     "Credential hard-coded in an MCP config or command line",
	     "Move it to a secret store or the launching process's environment, and rotate it: "
	     "every copy of the config or shell history holds it."},
	    {"human_use",
	     "medium",
	     {"attack.t1078", "attack.t1552.001", "owasp-nhi.nhi10"},
	     "A person read an MCP workload's credential",
	     "Confirm the access with the person whose session read it; if it was not "
	     "sanctioned, rotate the credential."},
	    {"monitor_degraded",
	     "medium",
	     {"attack.t1562.001"},
	     "KeyTrail lost events",
	     "Events in this interval may be missing: raise agent.ring_buffer_size or reduce "
	     "what is tracked, and check the host for a process flooding syscalls."},
	    {"io_uring_evasion",
	     "high",
	     {"attack.t1562.001", "attack.t1106"},
	     "Tracked workload did network I/O through io_uring",
	     "io_uring bypasses syscall monitoring: investigate the process, and disable io_uring "
	     "(sysctl kernel.io_uring_disabled=2) where workloads do not need it."},
	    {"tool_credential_drift",
	     "medium",
	     {"attack.t1078", "attack.t1567", "owasp-nhi.nhi5"},
	     "MCP tool sent a credential to an upstream it had not used before",
	     "Check what the tool was asked to do (the tool_call record and the client's log); "
	     "if the new upstream is not intended, revoke the credential and restrict the "
	     "server's egress."},
	    {"secret_use_outside_tool_call",
	     "low",
	     {"attack.t1078", "owasp-nhi.nhi5"},
	     "MCP server used a credential with no tool call in flight",
	     "Find out what the server does in the background (telemetry, update checks, "
	     "prefetching); add an exception for a sanctioned upstream, or give that traffic "
	     "its own credential."},
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
