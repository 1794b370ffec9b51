#include "keytrail/output/ocsf.h"

#include <string>

#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"

namespace keytrail
{

namespace
{

const char *technique_name(const std::string &id)
{
	static const std::pair<const char *, const char *> names[] = {
	    {"T1078", "Valid Accounts"},
	    {"T1078.004", "Cloud Accounts"},
	    {"T1550.001", "Application Access Token"},
	    {"T1552.001", "Credentials In Files"},
	    {"T1562.001", "Disable or Modify Tools"}};
	for (auto &[k, v] : names)
		if (id == k)
			return v;
	return "";
}

int64_t ms_of(const nlohmann::json &r, const char *key)
{
	int64_t ns = 0;
	if (r.contains(key) && r[key].is_string())
		parse_rfc3339(r[key].get<std::string>(), &ns);
	return ns / 1000000;
}

// What the finding is about: the process, the upstream it reached.
nlohmann::json evidences(const nlohmann::json &a)
{
	nlohmann::json evidence;
	if (a.contains("process")) {
		const auto &p = a["process"];
		std::string line;
		for (const auto &arg : p.value("cmdline", nlohmann::json::array()))
			line += (line.empty() ? "" : " ") + arg.get<std::string>();
		evidence["process"] = {{"pid", p.value("pid", 0)},
		                       {"name", p.value("comm", "")},
		                       {"cmd_line", line},
		                       {"uid", p.value("exec_id", "")},
		                       {"file", {{"path", p.value("exe", "")}, {"type_id", 1}}},
		                       {"user", {{"uid", std::to_string(p.value("uid", 0))}}}};
	}
	if (a.contains("upstream")) {
		const auto &u = a["upstream"];
		evidence["dst_endpoint"] = {{"ip", u.value("addr", "")},
		                            {"port", u.value("port", 0)}};
		std::string host = u.value("sni", u.value("http_host", ""));
		if (!host.empty())
			evidence["dst_endpoint"]["hostname"] = host;
	}
	return evidence.empty() ? nlohmann::json::array() : nlohmann::json::array({evidence});
}

nlohmann::json finding_info(const nlohmann::json &a)
{
	std::string rule = a.value("rule", "");
	nlohmann::json attacks = nlohmann::json::array();
	for (const auto &t : a.value("tags", nlohmann::json::array())) {
		std::string s = t.get<std::string>();
		if (!s.starts_with("attack.t"))
			continue;
		std::string id = "T" + s.substr(8);
		for (auto &c : id)
			c = static_cast<char>(std::toupper(c));
		attacks.push_back({{"technique", {{"uid", id}, {"name", technique_name(id)}}},
		                   {"version", "14"}});
	}
	const RuleInfo *r = find_rule(rule);
	nlohmann::json info = {
	    {"uid", a.value("alert_id", "")},
	    {"title", r ? r->title : rule},
	    {"desc", a.value("summary", "")},
	    {"types", {rule}},
	    {"created_time", ms_of(a, a.contains("first_seen") ? "first_seen" : "time")},
	    {"analytic", {{"uid", rule}, {"name", rule}, {"type_id", 1}, {"type", "Rule"}}}};
	if (!attacks.empty())
		info["attacks"] = attacks;
	if (a.contains("first_seen")) {
		info["first_seen_time"] = ms_of(a, "first_seen");
		info["last_seen_time"] = ms_of(a, "last_seen");
	}
	return info;
}

} // namespace

nlohmann::json to_ocsf(const nlohmann::json &a)
{
	std::string severity = a.value("severity", "info");
	nlohmann::json f;
	f["class_uid"] = 2004;
	f["class_name"] = "Detection Finding";
	f["category_uid"] = 2;
	f["category_name"] = "Findings";
	// An `update` amends the finding its `alert` created (same uid).
	bool update = a.value("type", "") == "update";
	f["activity_id"] = update ? 2 : 1;
	f["activity_name"] = update ? "Update" : "Create";
	f["type_uid"] = update ? 200402 : 200401;
	f["type_name"] = update ? "Detection Finding: Update" : "Detection Finding: Create";
	f["severity_id"] = keytrail::severity(severity).ocsf_id;
	f["severity"] = keytrail::severity(severity).ocsf_name;
	f["status_id"] = update ? 2 : 1;
	f["status"] = update ? "In Progress" : "New";
	if (a.contains("count"))
		f["count"] = a["count"];
	f["time"] = ms_of(a, "event_time");
	f["message"] = a.value("summary", "");
	f["metadata"] = {
	    {"version", "1.1.0"},
	    {"product",
	     {{"name", "KeyTrail"}, {"vendor_name", "KeyTrail"}, {"version", KEYTRAIL_VERSION}}},
	    {"log_name", "alert"},
	    {"original_time", a.value("event_time", "")},
	    {"uid", a.value("alert_id", "")}};
	f["finding_info"] = finding_info(a);
	if (a.contains("remediation"))
		f["remediation"] = {{"desc", a["remediation"]}};
	f["device"] = {{"hostname", a.value("host", "")}, {"type_id", 0}};
	nlohmann::json ev = evidences(a);
	if (!ev.empty())
		f["evidences"] = ev;
	if (a.contains("secret") && a["secret"].contains("path"))
		f["resources"] = {{{"type", "file"}, {"name", a["secret"]["path"]}}};
	nlohmann::json unmapped;
	for (const char *k :
	     {"secret", "candidates", "identity", "identities", "reason", "new", "tags"})
		if (a.contains(k))
			unmapped[k] = a[k];
	f["unmapped"] = unmapped;
	return f;
}

} // namespace keytrail
