#include "keytrail/tools/report.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <sstream>

#include "keytrail/correlate/policy.h"
#include "keytrail/ledger/ledger.h"
#include "keytrail/output/journal.h"
#include "keytrail/schema/record.h"
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/host.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

int weight(const std::string &name)
{
	return severity(name).weight;
}

std::string days(int64_t ns)
{
	return ns > 0 ? std::to_string(ns / 86400000000000LL) + "d" : "-";
}

std::string date_of(int64_t ns)
{
	return ns ? rfc3339(ns).substr(0, 10) : "never";
}

// RFC 3339 to the second, UTC ("2026-12-01T09:30:00Z"): what a person reads
// and a printout keeps.
std::string when(int64_t ns)
{
	return ns ? rfc3339(ns).substr(0, 19) + "Z" : "never";
}

// "env GITHUB_TOKEN", "file /srv/.env (API_KEY)": a sighting's source with
// its path and variable name.
std::string location_of(const std::string &source, const std::string &location,
                        const std::string &name)
{
	std::string o = source;
	if (!location.empty())
		o += " " + location;
	if (!name.empty() && name != location)
		o += " (" + name + ")";
	return o;
}

std::string join(const std::set<std::string> &s, const char *sep = ", ")
{
	std::string o;
	for (const auto &x : s)
		o += (o.empty() ? "" : sep) + x;
	return o;
}

void add_finding(ReportCredential &c, const std::string &rule, const std::string &detail)
{
	for (auto &f : c.findings)
		if (f.rule == rule) {
			if (f.detail.empty())
				f.detail = detail;
			return;
		}
	const RuleInfo *info = find_rule(rule);
	c.findings.push_back({rule, info ? info->severity : "info", detail, 0});
}

} // namespace

std::string html_escape(const std::string &s)
{
	std::string o;
	for (char c : sanitize_utf8(s)) {
		switch (c) {
		case '<': o += "&lt;"; break;
		case '>': o += "&gt;"; break;
		case '&': o += "&amp;"; break;
		case '"': o += "&quot;"; break;
		case '\'': o += "&#39;"; break;
		default: o.push_back(c);
		}
	}
	return o;
}

std::string csv_field(const std::string &s)
{
	std::string v = sanitize_utf8(s);
	if (v.find_first_of(",\"\n\r") == std::string::npos)
		return v;
	std::string o = "\"";
	for (char c : v) {
		if (c == '"')
			o.push_back('"');
		o.push_back(c);
	}
	return o + "\"";
}

namespace
{

std::string findings_text(const ReportCredential &c)
{
	std::string o;
	for (const auto &f : c.findings)
		o += (o.empty() ? "" : ",") + f.rule;
	return o.empty() ? "-" : o;
}

std::string fit(const std::string &s, size_t n)
{
	std::string v = sanitize_utf8(s);
	if (v.size() <= n)
		return v + std::string(n - v.size(), ' ');
	return v.substr(0, n - 1) + "~";
}

std::vector<std::string> sanitized(const std::set<std::string> &s)
{
	std::vector<std::string> o;
	for (const auto &x : s)
		o.push_back(sanitize_utf8(x));
	return o;
}

} // namespace

namespace
{

// What the ledger holds about one credential, beyond the report's columns.
struct History {
	const InventoryEntry *inv = nullptr;
	std::set<std::string> environments;
	std::vector<std::pair<std::string, std::string>> uses; // upstream "name:port", addr
	std::vector<std::string> hardcoded;                    // "argv --db", ...
	bool retired = false;
};

History read_history(Ledger &ledger, const SecretRecord &s,
                     const std::vector<InventoryEntry> &inventory, ReportCredential &c)
{
	History h;
	for (const auto &x : ledger.sightings(s.fingerprint)) {
		if (!x.identity.empty())
			c.holders.insert(x.identity);
		if (!x.environment.empty())
			h.environments.insert(x.environment);
		c.sources.insert(x.source);
		c.locations.insert(location_of(x.source, x.location, x.name));
		if (!h.inv)
			h.inv = policy::match(
			    inventory, {s.fingerprint, x.source, x.location, x.name, x.identity});
		if (x.source == "argv" || x.source == "mcp_config")
			h.hardcoded.push_back(x.source + " " + sanitize_utf8(x.location));
	}
	for (const auto &u : ledger.uses(s.fingerprint)) {
		c.users.insert(u.identity);
		c.upstreams.insert(u.upstream);
		h.uses.emplace_back(u.upstream, u.addr);
	}
	for (const auto &t : ledger.tool_uses(s.fingerprint))
		c.tools.insert(t.tool + " (" + t.server + ") -> " + t.upstream);
	for (const auto &r : ledger.rotations(s.fingerprint)) {
		if (r.new_fingerprint == s.fingerprint) {
			c.rotations++;
			c.rotated_from.push_back(r.old_fingerprint);
		}
		// Rotated out of a slot and not seen since: retired, never stale.
		if (r.old_fingerprint == s.fingerprint && r.time_ns >= s.last_seen)
			h.retired = true;
	}
	return h;
}

// The correlator's rules (correlate/policy.h), over the ledger's history.
void apply_policy(ReportCredential &c, const SecretRecord &s, const History &h, int64_t now)
{
	const InventoryEntry *inv = h.inv;
	for (const auto &where : h.hardcoded)
		add_finding(c, "hardcoded_secret", "literal in " + where);
	std::vector<std::string> holders(c.holders.begin(), c.holders.end());
	policy::Sharing sh = policy::sharing(inv, holders, h.environments.size());
	if (sh.shared)
		add_finding(
		    c, "shared_credential",
		    std::to_string(c.holders.size()) + " identities hold it" +
		        (sh.across_environments
		             ? " across " + std::to_string(h.environments.size()) + " environments"
		             : ""));
	if (!c.users.empty() && (!inv || inv->owner.empty()))
		add_finding(c, "unowned_secret",
		            inv ? "inventory entry has no owner" : "no inventory entry");
	if (!inv)
		return;
	if (inv->status != "active")
		add_finding(c, "revoked_credential_used",
		            inv->status + " but seen " + when(c.last_seen));
	policy::Lifetime life{s.first_seen, s.oldest_mtime, s.last_used, h.retired};
	for (const auto &why : policy::stale_reasons(*inv, life, now, ""))
		add_finding(c, "stale_credential",
		            std::string(why.reason) == "expired" ? "expired " + when(why.since_ns)
		            : std::string(why.reason) == "rotation_overdue"
		                ? "not rotated for " + days(now - why.since_ns)
		                : "unused for " + days(now - why.since_ns));
	for (const auto &who : c.holders)
		if (!policy::identity_allowed(*inv, who))
			add_finding(c, "out_of_scope_identity", "held by " + who);
	for (const auto &who : c.users)
		if (!policy::identity_allowed(*inv, who))
			add_finding(c, "out_of_scope_identity", "used by " + who);
	for (const auto &[up, addr] : h.uses) {
		std::string host = up.substr(0, up.rfind(':'));
		if (!policy::upstream_allowed(*inv, addr.empty() ? host : addr, host, host))
			add_finding(c, "unexpected_upstream", "sent to " + up);
	}
}

ReportCredential credential(Ledger &ledger, const SecretRecord &s,
                            const std::vector<InventoryEntry> &inventory, int64_t now)
{
	ReportCredential c;
	c.fingerprint = s.fingerprint;
	c.type = s.type;
	c.prefix = s.prefix;
	c.first_seen = s.first_seen;
	c.last_seen = s.last_seen;
	c.last_used = s.last_used;
	History h = read_history(ledger, s, inventory, c);
	if (h.inv) {
		c.inventory_id = h.inv->id;
		c.owner = h.inv->owner;
		c.purpose = h.inv->purpose;
		c.environment = h.inv->environment;
		c.status = h.inv->status;
		c.expires = h.inv->expires_ns.value_or(0);
	}
	apply_policy(c, s, h, now);
	return c;
}

// What the agent itself raised (the journal), counted per rule on the
// credentials they name. Returns the records read.
uint64_t add_journal_alerts(const std::string &journal_dir,
                            std::map<std::string, ReportCredential> &by_fp,
                            const std::function<void(const std::string &)> &progress)
{
	struct stat jst;
	if (stat(journal_dir.c_str(), &jst) != 0)
		return 0;
	JournalReadStats js;
	read_journal(
	    journal_dir,
	    [&](nlohmann::json &&r) {
		    if (progress && js.records % 100000 == 0 && js.records)
			    progress("journal " + std::to_string(js.records) + " records");
		    if (r.value("type", "") != "alert")
			    return true;
		    std::string rule = r.value("rule", "");
		    auto add = [&](const nlohmann::json &s) {
			    std::string fp = s.is_object() ? s.value("fingerprint", "") : "";
			    auto it = by_fp.find(fp);
			    if (it == by_fp.end() || rule.empty())
				    return;
			    add_finding(it->second, rule, r.value("summary", ""));
			    for (auto &f : it->second.findings)
				    if (f.rule == rule)
					    f.alerts++;
		    };
		    if (r.contains("secret"))
			    add(r["secret"]);
		    for (const auto &c : r.value("candidates", nlohmann::json::array()))
			    add(c);
		    return true;
	    },
	    &js);
	return js.records;
}

} // namespace

Report build_report(const std::string &state_dir, const std::string &journal_dir,
                    const std::vector<InventoryEntry> &inventory, int64_t now,
                    const std::function<void(const std::string &)> &progress)
{
	Report rep;
	rep.generated = now;
	rep.host = host_name();
	std::string db = state_dir + "/ledger.db";
	struct stat st;
	if (stat(db.c_str(), &st) != 0)
		throw Error("no ledger at " + db + ": the agent has not run with state dir " +
		            state_dir);
	Ledger ledger(db, true);
	std::map<std::string, ReportCredential> by_fp;
	auto secrets = ledger.secrets();
	size_t n = 0;
	for (const auto &s : secrets) {
		if (progress && ++n % 64 == 0)
			progress("ledger " + std::to_string(n) + "/" +
			         std::to_string(secrets.size()));
		by_fp[s.fingerprint] = credential(ledger, s, inventory, now);
	}
	rep.journal_records = add_journal_alerts(journal_dir, by_fp, progress);
	for (auto &[fp, c] : by_fp) {
		for (const auto &f : c.findings) {
			c.risk += weight(f.severity);
			rep.by_rule[f.rule]++;
		}
		std::sort(c.findings.begin(), c.findings.end(), [](const auto &a, const auto &b) {
			return weight(a.severity) > weight(b.severity);
		});
		rep.credentials.push_back(std::move(c));
	}
	std::stable_sort(
	    rep.credentials.begin(), rep.credentials.end(), [](const auto &a, const auto &b) {
		    return a.risk != b.risk ? a.risk > b.risk : a.last_seen > b.last_seen;
	    });
	return rep;
}

std::string report_table(const Report &r, size_t width)
{
	std::ostringstream o;
	o << "KeyTrail credential report, " << sanitize_utf8(r.host) << ", " << rfc3339(r.generated)
	  << "\n";
	size_t risky = 0;
	for (const auto &c : r.credentials)
		risky += !c.findings.empty();
	std::string line = std::to_string(r.credentials.size()) + " credentials, " +
	                   std::to_string(risky) + " with findings";
	for (const auto &[rule, n] : r.by_rule) {
		std::string part = "; " + rule + " " + std::to_string(n);
		if (line.size() + part.size() > width) {
			o << line << ";\n";
			line = "  " + part.substr(2);
		} else {
			line += part;
		}
	}
	o << line << "\n\n";

	auto owner_of = [](const ReportCredential &c) {
		return c.owner.empty() ? (c.inventory_id.empty() ? "-" : c.inventory_id) : c.owner;
	};
	// Columns as wide as their widest value (plus a space), no wider; findings
	// first: type and owner give way (down to kMin) before findings wrap.
	constexpr size_t kMin = 6;
	size_t type_w = 5, owner_w = 6, findings_w = 8;
	for (const auto &c : r.credentials) {
		type_w = std::max(type_w, sanitize_utf8(c.type).size() + 1);
		owner_w = std::max(owner_w, sanitize_utf8(owner_of(c)).size() + 1);
		findings_w = std::max(findings_w, findings_text(c).size());
	}
	type_w = std::min<size_t>(type_w, 24);
	owner_w = std::min<size_t>(owner_w, 24);
	const size_t fixed = 5 + 13 + 9 + 11 + 6; // risk, fingerprint, hold/use, last used, age
	auto room = [&] {
		return width > fixed + type_w + owner_w ? width - fixed - type_w - owner_w : 0;
	};
	while (room() < findings_w && (owner_w > kMin || type_w > kMin)) {
		if (owner_w >= type_w && owner_w > kMin)
			owner_w--;
		else
			type_w--;
	}
	size_t fw = std::max<size_t>(room(), 20);
	o << fit("RISK", 5) << fit("TYPE", type_w) << fit("FINGERPRINT", 13)
	  << fit("OWNER", owner_w) << fit("HOLD/USE", 9) << fit("LAST USED", 11) << fit("AGE", 6)
	  << "FINDINGS\n";
	const std::string indent(fixed + type_w + owner_w, ' ');
	for (const auto &c : r.credentials) {
		o << fit(std::to_string(c.risk), 5) << fit(c.type, type_w)
		  << fit(short_fp(c.fingerprint), 13) << fit(owner_of(c), owner_w)
		  << fit(std::to_string(c.holders.size()) + "/" + std::to_string(c.users.size()), 9)
		  << fit(date_of(c.last_used), 11) << fit(days(r.generated - c.first_seen), 6);
		// Rule ids are short words: wrap between them, under the column.
		std::string row;
		for (const auto &f : c.findings) {
			std::string part = row.empty() ? f.rule : "," + f.rule;
			if (!row.empty() && row.size() + part.size() > fw) {
				o << row << ",\n" << indent;
				row = f.rule;
			} else {
				row += part;
			}
		}
		o << (c.findings.empty() ? "-" : row) << "\n";
	}
	bool tools = std::any_of(r.credentials.begin(), r.credentials.end(),
	                         [](const ReportCredential &c) { return !c.tools.empty(); });
	if (tools) {
		o << "\nMCP tools that used them:\n";
		for (const auto &c : r.credentials)
			for (const auto &t : c.tools)
				o << "  " << short_fp(c.fingerprint) << "  " << sanitize_utf8(t)
				  << "\n";
	}
	return o.str();
}

nlohmann::json report_json(const Report &r)
{
	nlohmann::json creds = nlohmann::json::array();
	for (const auto &c : r.credentials) {
		nlohmann::json f = nlohmann::json::array();
		for (const auto &x : c.findings)
			f.push_back({{"rule", x.rule},
			             {"severity", x.severity},
			             {"detail", sanitize_utf8(x.detail)},
			             {"alerts", x.alerts}});
		nlohmann::json j = {
		    {"fingerprint", c.fingerprint},
		    {"type", c.type},
		    {"risk", c.risk},
		    {"inventory_id", c.inventory_id},
		    {"owner", c.owner},
		    {"purpose", c.purpose},
		    {"environment", c.environment},
		    {"status", c.status.empty() ? "unknown" : c.status},
		    {"holders", sanitized(c.holders)},
		    {"users", sanitized(c.users)},
		    {"upstreams", sanitized(c.upstreams)},
		    {"tools", sanitized(c.tools)},
		    {"sources", c.sources},
		    {"locations", sanitized(c.locations)},
		    {"first_seen", c.first_seen ? rfc3339(c.first_seen) : ""},
		    {"last_seen", c.last_seen ? rfc3339(c.last_seen) : ""},
		    {"last_used", c.last_used ? rfc3339(c.last_used) : ""},
		    {"age_days",
		     c.first_seen ? (r.generated - c.first_seen) / 86400000000000LL : 0},
		    {"expires", c.expires ? rfc3339(c.expires) : ""},
		    {"rotations", c.rotations},
		    {"rotated_from", c.rotated_from},
		    {"findings", f}};
		if (!c.prefix.empty())
			j["prefix"] = sanitize_utf8(c.prefix);
		creds.push_back(std::move(j));
	}
	return {
	    {"generated", rfc3339(r.generated)},
	    {"host", sanitize_utf8(r.host)},
	    {"summary", {{"credentials", r.credentials.size()}, {"findings_by_rule", r.by_rule}}},
	    {"credentials", creds}};
}

std::string report_csv(const Report &r)
{
	std::ostringstream o;
	o << "risk,fingerprint,type,inventory_id,owner,purpose,status,holders,users,upstreams,"
	     "first_seen,last_seen,last_used,expires,rotations,findings,locations,tools\n";
	for (const auto &c : r.credentials) {
		o << c.risk << "," << c.fingerprint << "," << csv_field(c.type) << ","
		  << csv_field(c.inventory_id) << "," << csv_field(c.owner) << ","
		  << csv_field(c.purpose) << "," << csv_field(c.status) << ","
		  << csv_field(join(c.holders, ";")) << "," << csv_field(join(c.users, ";")) << ","
		  << csv_field(join(c.upstreams, ";")) << ","
		  << (c.first_seen ? rfc3339(c.first_seen) : "") << ","
		  << (c.last_seen ? rfc3339(c.last_seen) : "") << ","
		  << (c.last_used ? rfc3339(c.last_used) : "") << ","
		  << (c.expires ? rfc3339(c.expires) : "") << "," << c.rotations << ","
		  << csv_field(findings_text(c) == "-" ? "" : findings_text(c)) << ","
		  << csv_field(join(c.locations, ";")) << "," << csv_field(join(c.tools, ";"))
		  << "\n";
	}
	return o.str();
}

std::string report_html(const Report &r)
{
	std::ostringstream o;
	size_t risky = 0, critical = 0;
	for (const auto &c : r.credentials) {
		risky += !c.findings.empty();
		for (const auto &f : c.findings)
			critical += f.severity == "critical" || f.severity == "high";
	}
	auto list = [](const std::set<std::string> &s, const char *none) {
		if (s.empty())
			return std::string(none);
		std::string out;
		for (const auto &x : s)
			out += (out.empty() ? "" : "<br>") + html_escape(x);
		return out;
	};
	o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	  << "<title>KeyTrail credential report</title>\n<style>\n"
	  << "body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}\n"
	  << "header{background:#7a1f2b;color:#fff;padding:20px 28px}\n"
	  << "header h1{margin:0 0 6px;font-size:22px}\n"
	  << "#summary{display:flex;gap:16px;flex-wrap:wrap;padding:18px 28px}\n"
	  << ".card{background:#fff;border-radius:8px;padding:12px 16px;min-width:140px;"
	     "box-shadow:0 1px 3px rgba(0,0,0,.15)}\n"
	  << ".card b{display:block;font-size:26px}\n"
	  << "#legend{margin:0 28px 16px;font-size:13px}\n#legend h2{font-size:15px;margin:0 0 "
	     "4px}\n"
	  << "table{border-collapse:collapse;margin:0 28px 28px;width:calc(100% - 56px);"
	     "background:#fff;font-size:13px}\n"
	  << "th,td{padding:6px 10px;border-bottom:1px solid #e3e5e8;text-align:left;"
	     "vertical-align:top;overflow-wrap:anywhere}\n"
	  << "th{background:#eef0f3}\ntd.risk{font-size:18px;font-weight:bold}\n"
	  << "tr.cred td{border-bottom:none}\ntr.detail td{padding-top:0}\n"
	  << "tr.detail ul{margin:2px 0 6px;padding-left:18px}\n.ts{white-space:nowrap}\n"
	  << ".sev-critical{color:#fff;background:#b00020}\n"
	  << ".sev-high{color:#fff;background:#d9480f}\n.sev-medium{background:#ffd43b}\n"
	  << ".sev-low{background:#d0ebff}\n.sev-info{background:#e9ecef}\n"
	  << ".tag{display:inline-block;border-radius:4px;padding:1px 6px;margin:1px}\n"
	  << ".expired{color:#fff;background:#b00020;font-weight:bold;padding:1px 4px}\n"
	  << ".expiring{background:#ffd43b;padding:1px 4px}\ncode{font-size:12px}\n"
	  << "@media print{body{background:#fff}table{margin:0;width:100%}#summary,#legend"
	     "{padding-left:0;padding-right:0;margin-left:0}tr{break-inside:avoid}"
	     "header,.tag,.expired,.expiring{-webkit-print-color-adjust:exact;"
	     "print-color-adjust:exact}}\n"
	  << "</style></head><body>\n";
	o << "<header><h1>KeyTrail credential report</h1><div>" << html_escape(r.host)
	  << " &middot; generated <span class=\"ts\">" << when(r.generated)
	  << "</span></div></header>\n";
	o << "<section id=\"summary\"><div class=\"card\"><b>" << r.credentials.size()
	  << "</b>credentials seen</div><div class=\"card\"><b>" << risky
	  << "</b>with findings</div><div class=\"card\"><b>" << critical
	  << "</b>high or critical findings</div>";
	for (const auto &[rule, n] : r.by_rule)
		o << "<div class=\"card\"><b>" << n << "</b>" << html_escape(rule) << "</div>";
	o << "</section>\n<section id=\"legend\"><h2>Risk score</h2><p>A credential's risk is "
	     "the sum of its findings' severities: ";
	const auto &scale = severities();
	for (auto it = scale.rbegin(); it != scale.rend(); ++it)
		o << (it == scale.rbegin() ? "" : ", ") << "<span class=\"tag sev-" << it->name
		  << "\">" << it->name << " " << it->weight << "</span>";
	o << ". Highest risk first. Times are UTC. An expiry in the past is marked "
	     "<span class=\"expired\">EXPIRED</span>, one within 30 days "
	     "<span class=\"expiring\">expires soon</span>.</p></section>\n";
	o << "<table><thead><tr><th>Risk</th><th>Credential</th><th>Inventory / owner</th>"
	  << "<th>Holders</th><th>Users &rarr; upstreams</th><th>Seen</th><th>Expires</th>"
	  << "<th>Rotations</th></tr></thead><tbody>\n";
	constexpr int64_t kSoon = 30 * 86400000000000LL;
	for (const auto &c : r.credentials) {
		o << "<tr class=\"cred\"><td class=\"risk\" rowspan=\"2\">" << c.risk << "</td><td>"
		  << html_escape(c.type) << "<br><code>" << short_fp(c.fingerprint) << "</code>"
		  << (c.prefix.empty() ? "" : " <code>" + html_escape(c.prefix) + "&hellip;</code>")
		  << "</td><td>"
		  << html_escape(c.inventory_id.empty() ? "no inventory entry" : c.inventory_id)
		  << "<br>" << html_escape(c.owner.empty() ? "no owner" : c.owner)
		  << (c.purpose.empty() ? "" : "<br>" + html_escape(c.purpose))
		  << (c.status.empty() || c.status == "active" ? ""
		                                               : "<br>" + html_escape(c.status))
		  << "</td><td>" << list(c.holders, "-") << "</td><td>" << list(c.users, "none")
		  << (c.upstreams.empty() ? "" : "<br>&rarr; " + list(c.upstreams, ""))
		  << (c.tools.empty() ? "" : "<br>by MCP tools: " + list(c.tools, ""))
		  << "</td><td>first seen <span class=\"ts\">" << when(c.first_seen)
		  << "</span><br>last seen <span class=\"ts\">" << when(c.last_seen)
		  << "</span><br>last used <span class=\"ts\">" << when(c.last_used)
		  << "</span></td><td>";
		if (!c.expires)
			o << "-";
		else if (c.expires <= r.generated)
			o << "<span class=\"expired\">EXPIRED</span><br><span class=\"ts\">"
			  << when(c.expires) << "</span><br>" << days(r.generated - c.expires)
			  << " ago";
		else if (c.expires - r.generated <= kSoon)
			o << "<span class=\"expiring\">expires soon</span><br><span class=\"ts\">"
			  << when(c.expires) << "</span>";
		else
			o << "<span class=\"ts\">" << when(c.expires) << "</span>";
		o << "</td><td>" << c.rotations << "</td></tr>\n";
		// The details under it, as text across the row's width: they print.
		o << "<tr class=\"detail\"><td colspan=\"7\"><b>Findings</b>";
		if (c.findings.empty())
			o << ": none";
		else
			o << "<ul>";
		for (const auto &f : c.findings) {
			o << "<li><span class=\"tag sev-" << html_escape(f.severity) << "\">"
			  << html_escape(f.severity) << "</span> <b>" << html_escape(f.rule)
			  << "</b>";
			if (!f.detail.empty())
				o << ": " << html_escape(f.detail);
			if (f.alerts)
				o << " (" << f.alerts << (f.alerts == 1 ? " alert" : " alerts")
				  << ")";
			o << "</li>";
		}
		if (!c.findings.empty())
			o << "</ul>";
		o << "<b>Sources</b>";
		if (c.locations.empty())
			o << ": none recorded";
		else {
			o << "<ul>";
			for (const auto &l : c.locations)
				o << "<li><code>" << html_escape(l) << "</code></li>";
			o << "</ul>";
		}
		o << "</td></tr>\n";
	}
	o << "</tbody></table>\n</body></html>\n";
	return o.str();
}

} // namespace keytrail
