// keytrail report on a ledger and inventory made here: findings, risk order,
// and the four formats (hostile names stay inert in CSV and HTML).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "keytrail/ledger/ledger.h"
#include "keytrail/output/sink.h"
#include "keytrail/tools/report.h"

using namespace keytrail;

namespace
{

constexpr int64_t kDay = 86400LL * 1000000000LL;
constexpr int64_t kNow = 1795000000LL * 1000000000LL;

std::string temp_dir()
{
	std::string t = ::testing::TempDir() + "/kt-report-XXXXXX";
	char *d = mkdtemp(t.data());
	return d ? d : "";
}

const std::string kShared(32, 'a'), kOld(32, 'b'), kFine(32, 'c'), kRevoked(32, 'd'), kNew(32, 'e');

std::string make_state()
{
	std::string dir = temp_dir();
	Ledger l(dir + "/ledger.db");
	auto sight = [&](const std::string &fp, const std::string &type, const std::string &src,
	                 const std::string &loc, const std::string &who, int64_t t) {
		l.record_sighting(Sighting{fp, type, "", src, loc, "", who, t});
	};
	// Shared by two identities, used, no inventory.
	sight(kShared, "github_token", "env", "GITHUB_TOKEN", "spiffe://t/a", kNow - 3 * kDay);
	sight(kShared, "github_token", "env", "GITHUB_TOKEN", "spiffe://t/<b>,\"x\"", kNow - kDay);
	l.record_use(kShared, "spiffe://t/a", "api.github.com:443", "140.82.112.5", kNow - kDay);
	// Owned, first seen 200 days ago, policy 90d; hard-coded in argv.
	sight(kOld, "database_url", "argv", "--db", "spiffe://t/pg", kNow - 200 * kDay);
	// Owned and fine.
	sight(kFine, "gitlab_pat", "env", "GITLAB_TOKEN", "spiffe://t/gl", kNow - 10 * kDay);
	l.record_use(kFine, "spiffe://t/gl", "gitlab.example.com:443", "10.1.2.3", kNow - kDay);
	// Revoked but still seen.
	sight(kRevoked, "slack_token", "file", "/srv/.env", "spiffe://t/bot", kNow - kDay);
	// A path someone else chose: markup in it stays text.
	l.record_sighting(Sighting{kRevoked, "slack_token", "", "file",
	                           "/srv/<img src=x onerror=alert(1)>.env", "SLACK_TOKEN",
	                           "spiffe://t/bot", kNow - kDay});
	// A rotation: kNew replaced kFine's sibling slot.
	sight(kNew, "gitlab_pat", "env", "GITLAB_TOKEN", "spiffe://t/gl", kNow - kDay / 2);
	l.commit();
	return dir;
}

std::vector<InventoryEntry> inventory()
{
	Config c = parse_config(R"(
inventory:
  - id: pg-app
    owner: data-team
    match: {fingerprint: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}
    rotate_every: 90d
    expires: 2021-01-01
  - id: gitlab-bot
    owner: platform
    purpose: "MCP GitLab, \"read\" <scope>"
    match: {env: GITLAB_TOKEN}
    allowed_upstreams: [gitlab.example.com]
  - id: old-slack
    owner: chat
    status: revoked
    match: {fingerprint: dddddddddddddddddddddddddddddddd}
)",
	                        "inv.yaml");
	return c.inventory;
}

const ReportCredential *find(const Report &r, const std::string &fp)
{
	for (const auto &c : r.credentials)
		if (c.fingerprint == fp)
			return &c;
	return nullptr;
}

bool has(const ReportCredential &c, const std::string &rule)
{
	for (const auto &f : c.findings)
		if (f.rule == rule)
			return true;
	return false;
}

} // namespace

TEST(Report, FindingsFromLedgerAndInventory)
{
	std::string state = make_state();
	auto r = build_report(state, state + "/journal", inventory(), kNow);
	ASSERT_EQ(r.credentials.size(), 5u);
	const auto *shared = find(r, kShared);
	ASSERT_TRUE(shared);
	EXPECT_TRUE(has(*shared, "shared_credential"));
	EXPECT_TRUE(has(*shared, "unowned_secret"));
	EXPECT_EQ(shared->holders.size(), 2u);
	EXPECT_EQ(*shared->upstreams.begin(), "api.github.com:443");
	const auto *old = find(r, kOld);
	EXPECT_EQ(old->owner, "data-team");
	EXPECT_TRUE(has(*old, "stale_credential"));
	EXPECT_TRUE(has(*old, "hardcoded_secret"));
	const auto *fine = find(r, kFine);
	EXPECT_EQ(fine->inventory_id, "gitlab-bot");
	EXPECT_TRUE(fine->findings.empty());
	EXPECT_TRUE(has(*find(r, kRevoked), "revoked_credential_used"));
	// Highest risk first: revoked (critical) and shared (high + low) lead.
	EXPECT_GE(r.credentials[0].risk, r.credentials[1].risk);
	EXPECT_EQ(r.credentials.back().risk, 0);
	EXPECT_EQ(r.by_rule.at("stale_credential"), 1u);
}

TEST(Report, FormatsStayInertAndFitTheTerminal)
{
	std::string state = make_state();
	auto r = build_report(state, state + "/journal", inventory(), kNow);
	std::string table = report_table(r, 100);
	std::istringstream lines(table);
	std::string line;
	while (std::getline(lines, line))
		EXPECT_LE(line.size(), 120u) << line;
	EXPECT_NE(table.find("revoked_credential_used"), std::string::npos);

	std::string csv = report_csv(r);
	EXPECT_NE(csv.find("\"spiffe://t/<b>,\"\"x\"\";spiffe://t/a\""), std::string::npos) << csv;
	EXPECT_NE(csv.find("\"MCP GitLab, \"\"read\"\" <scope>\""), std::string::npos);

	std::string html = report_html(r);
	EXPECT_EQ(html.find("<b>,"), std::string::npos); // the identity is escaped
	EXPECT_NE(html.find("spiffe://t/&lt;b&gt;,&quot;x&quot;"), std::string::npos);
	EXPECT_EQ(html.find("http"), std::string::npos);             // no external assets
	EXPECT_LT(html.find("id=\"summary\""), html.find("<table")); // summary first

	auto j = report_json(r);
	EXPECT_EQ(j["credentials"].size(), 5u);
	EXPECT_EQ(j["summary"]["credentials"], 5);
}

TEST(Report, HtmlShowsEveryDetailAsText)
{
	std::string state = make_state();
	auto r = build_report(state, state + "/journal", inventory(), kNow);
	std::string html = report_html(r);
	// Details are text in the page, not tooltips a printout drops.
	EXPECT_EQ(html.find("title="), std::string::npos);
	EXPECT_NE(html.find("<b>shared_credential</b>: 2 identities hold it"), std::string::npos)
	    << html;
	EXPECT_NE(
	    html.find("<b>revoked_credential_used</b>: revoked but seen 2026-11-17T11:06:40Z"),
	    std::string::npos);
	// Times to the second, UTC.
	EXPECT_NE(html.find("last used <span class=\"ts\">2026-11-17T11:06:40Z</span>"),
	          std::string::npos);
	EXPECT_EQ(html.find(">2026-11-17<"), std::string::npos); // no bare dates
	// The past expiry is marked, with its time and how long ago.
	size_t expired = html.find("<span class=\"expired\">EXPIRED</span>");
	ASSERT_NE(expired, std::string::npos);
	EXPECT_LT(expired, html.find("2021-01-01T00:00:00Z", expired));
	EXPECT_NE(html.find("expired 2021-01-01T00:00:00Z"), std::string::npos); // the finding
	// A legend for the score, from the severity scale.
	EXPECT_NE(html.find("id=\"legend\""), std::string::npos);
	EXPECT_NE(html.find("critical 10</span>, "), std::string::npos);
	EXPECT_NE(html.find("low 1</span>"), std::string::npos);
	// Sources with paths and variable names; a hostile path stays inert.
	EXPECT_NE(html.find("<code>env GITHUB_TOKEN</code>"), std::string::npos);
	EXPECT_NE(html.find("<code>argv --db</code>"), std::string::npos);
	EXPECT_NE(html.find("<code>file /srv/&lt;img src=x onerror=alert(1)&gt;.env "
	                    "(SLACK_TOKEN)</code>"),
	          std::string::npos);
	EXPECT_EQ(html.find("<img"), std::string::npos);
	EXPECT_EQ(html.find("<script"), std::string::npos);
	// JSON and CSV carry the same sources.
	auto j = report_json(r);
	bool env = false;
	for (const auto &c : j["credentials"])
		for (const auto &l : c["locations"])
			env |= l == "env GITHUB_TOKEN";
	EXPECT_TRUE(env);
	EXPECT_NE(report_csv(r).find(",locations,tools\n"), std::string::npos);
}

TEST(Report, TableGivesFindingsTheirWidthFirst)
{
	std::string state = make_state();
	auto r = build_report(state, state + "/journal", inventory(), kNow);
	for (size_t width : {80u, 100u, 160u}) {
		std::string table = report_table(r, width);
		std::istringstream lines(table);
		std::string line, findings;
		size_t header_owner = 0;
		while (std::getline(lines, line)) {
			EXPECT_LE(line.size(), width) << line;
			if (line.rfind("RISK", 0) == 0)
				header_owner = line.find("HOLD/USE") - line.find("OWNER");
			findings += line + "\n";
		}
		// Every rule of every credential is there in full.
		for (const auto &c : r.credentials)
			for (const auto &f : c.findings)
				EXPECT_NE(findings.find(f.rule), std::string::npos) << width << "\n"
				                                                    << table;
		// The owner column is as wide as its widest value, no wider; at 80
		// columns it gives way to the findings.
		if (width >= 100) {
			EXPECT_EQ(header_owner, std::string("data-team").size() + 1) << table;
			EXPECT_EQ(table.find('~'), std::string::npos) << table; // nothing cut
		} else {
			EXPECT_LT(header_owner, std::string("data-team").size() + 1) << table;
		}
	}
}

TEST(Report, AlertsFromTheJournalAreCountedOnTheirCredential)
{
	std::string state = make_state();
	make_private_dirs(state + "/journal");
	std::ofstream(state + "/journal/journal-20261126T000000.000000Z.jsonl")
	    << R"({"type":"alert","rule":"unexpected_upstream","summary":"sent to paste","secret":{"fingerprint":")"
	    << kFine << "\"}}\n"
	    << R"({"type":"alert","rule":"unexpected_upstream","secret":{"fingerprint":")" << kFine
	    << "\"}}\n{\"type\":\"future_record\"}\n";
	auto r = build_report(state, state + "/journal", inventory(), kNow);
	const auto *fine = find(r, kFine);
	ASSERT_TRUE(has(*fine, "unexpected_upstream"));
	EXPECT_EQ(fine->findings[0].alerts, 2u);
	EXPECT_EQ(r.journal_records, 3u);
}

TEST(Report, NoLedgerIsAClearError)
{
	EXPECT_THROW(build_report("/nonexistent", "/nonexistent/journal", {}, kNow), Error);
}

// The MCP tools that used a credential (the ledger's tool_uses) are listed
// with it, in every format.
TEST(Report, ToolsThatUsedACredentialAreListed)
{
	std::string state = make_state();
	{
		Ledger l(state + "/ledger.db");
		l.record_tool_use({"server-gitlab", "get_project", kFine, "gitlab.example.com:443",
		                   kNow - kDay, kNow - kDay, 1});
		l.record_tool_use({"server-gitlab", "get_project", kFine, "gitlab.example.com:443",
		                   kNow - kDay / 2, kNow - kDay / 2, 1});
		l.commit();
		auto uses = l.tool_uses(kFine);
		ASSERT_EQ(uses.size(), 1u);
		EXPECT_EQ(uses[0].count, 2u);
		EXPECT_EQ(uses[0].first_used, kNow - kDay);
		EXPECT_EQ(uses[0].last_used, kNow - kDay / 2);
	}
	auto r = build_report(state, state + "/journal", inventory(), kNow);
	const auto *fine = find(r, kFine);
	ASSERT_TRUE(fine);
	EXPECT_EQ(fine->tools,
	          (std::set<std::string>{"get_project (server-gitlab) -> gitlab.example.com:443"}));
	EXPECT_TRUE(find(r, kShared)->tools.empty());
	auto j = report_json(r);
	bool listed = false;
	for (const auto &c : j["credentials"])
		if (c["fingerprint"] == kFine)
			listed = c["tools"].size() == 1;
	EXPECT_TRUE(listed);
	EXPECT_NE(report_table(r).find("MCP tools that used them"), std::string::npos);
	EXPECT_NE(report_html(r).find("by MCP tools: "), std::string::npos);
	EXPECT_NE(report_csv(r).find("get_project (server-gitlab) -> gitlab.example.com:443"),
	          std::string::npos);
}
