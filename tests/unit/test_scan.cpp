// keytrail scan on hand-made MCP client configs: findings, masking, JSONC,
// malformed files, exit codes, and the SARIF shape.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "../../src/cli/commands.h"
#include "keytrail/tools/scan.h"

using namespace keytrail;

namespace
{

std::string temp_dir()
{
	std::string t = ::testing::TempDir() + "/kt-scan-XXXXXX";
	char *d = mkdtemp(t.data());
	return d ? d : "";
}

// A GitHub token in a valid format, built here (never a literal).
std::string fake_token(unsigned seed)
{
	const std::string a = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
	std::string s = "ghp_";
	for (size_t i = 0; i < 36; i++)
		s += a[(seed * 2654435761u + i * 40503u + i * i * 7u) % a.size()];
	return s;
}

Fingerprinter test_fp()
{
	return Fingerprinter(SecretBytes(std::string(32, 'k')));
}

} // namespace

TEST(Scan, FindsHardcodedSecretsAndFileReferencesInJsonc)
{
	std::string dir = temp_dir(), tok = fake_token(1);
	std::ofstream(dir + "/mcp.json")
	    << "{\n  // VS Code allows comments\n  \"servers\": {\n    \"gh\": {\n"
	    << "      \"command\": \"npx\",\n      \"args\": [\"-y\", \"server-github\"],\n"
	    << "      \"env\": {\"GITHUB_TOKEN\": \"" << tok << "\"},\n    },\n"
	    << "    \"kube\": {\"command\": \"k8s-mcp\", \"args\": [\"--kubeconfig\", "
	    << "\"/home/u/.kube/config\"]},\n  },\n}\n";
	auto r = run_scan({dir + "/mcp.json"}, test_fp());
	ASSERT_TRUE(r.errors.empty()) << r.errors[0].second;
	EXPECT_EQ(r.servers, 2u);
	ASSERT_EQ(r.findings.size(), 2u);
	const auto &h = r.findings[0];
	EXPECT_EQ(h.rule, "hardcoded_secret");
	EXPECT_EQ(h.server, "gh");
	EXPECT_EQ(h.field, "env.GITHUB_TOKEN");
	EXPECT_EQ(h.line, 7u);
	EXPECT_EQ(h.type, "github_token");
	EXPECT_EQ(h.fingerprint, test_fp()(tok));
	const auto &f = r.findings[1];
	EXPECT_EQ(f.rule, "secret_file_reference");
	EXPECT_EQ(f.ref_path, "/home/u/.kube/config");
	EXPECT_EQ(f.field, "args[1]"); // not the option before it
	EXPECT_EQ(scan_exit_code(r), 1);
	// No format ever holds the token.
	for (const std::string &out : {scan_text(r), scan_json(r).dump(), scan_sarif(r).dump()}) {
		EXPECT_EQ(out.find(tok), std::string::npos) << out;
		EXPECT_NE(out.find("ghp_****"), std::string::npos);
	}
}

TEST(Scan, MalformedConfigsAreReportedWithLineNotFatal)
{
	std::string dir = temp_dir(), tok = fake_token(2);
	std::ofstream(dir + "/broken.json")
	    << "{\n  \"mcpServers\": {\n    \"x\": {\"command\": }\n";
	std::ofstream(dir + "/empty.json") << "";
	std::ofstream(dir + "/bin.json") << std::string("\xff\xfe\x00\x01garbage", 12);
	std::ofstream(dir + "/ok.json") << "{\"mcpServers\": {\"a\": {\"command\": \"x\"}}}";
	auto r = run_scan({dir + "/broken.json", dir + "/empty.json", dir + "/bin.json",
	                   dir + "/ok.json", dir + "/missing.json"},
	                  std::nullopt);
	EXPECT_TRUE(r.findings.empty());
	ASSERT_EQ(r.errors.size(), 4u); // broken, empty, binary, missing
	EXPECT_EQ(r.errors[0].first, dir + "/broken.json");
	EXPECT_EQ(r.errors[0].second.rfind("3:", 0), 0u) << r.errors[0].second; // line 3
	EXPECT_EQ(scan_exit_code(r), 2);
	EXPECT_FALSE(r.fingerprints);
	auto sarif = scan_sarif(r);
	EXPECT_EQ(sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"].size(), 4u);
	// A clean file alone: exit 0.
	EXPECT_EQ(scan_exit_code(run_scan({dir + "/ok.json"}, std::nullopt)), 0);
}

TEST(Scan, HostileFileNamesStayValidUtf8AndUris)
{
	std::string dir = temp_dir(), tok = fake_token(3);
	std::string name = dir + "/we\"ird \n name\xff.json";
	std::ofstream(name)
	    << "{\"mcpServers\": {\"s\": {\"command\": \"x\", \"env\": {\"API_KEY\": \"" << tok
	    << "\"}}}}";
	auto r = run_scan({name}, std::nullopt);
	ASSERT_EQ(r.findings.size(), 1u);
	auto j = scan_json(r);
	std::string dumped = j.dump(); // throws on invalid UTF-8
	EXPECT_NE(dumped.find("\\\\xFF"), std::string::npos);
	std::string uri = scan_sarif(r)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
	                               ["artifactLocation"]["uri"];
	EXPECT_EQ(uri.find(' '), std::string::npos);
	EXPECT_NE(uri.find("%22"), std::string::npos);
	EXPECT_NE(uri.find("%0A"), std::string::npos);
	EXPECT_NE(uri.find("%FF"), std::string::npos);
}

TEST(Scan, SarifHasRulesResultsAndLocations)
{
	std::string dir = temp_dir(), tok = fake_token(4);
	std::ofstream(dir + "/c.json")
	    << "{\"mcpServers\": {\"s\": {\"url\": \"https://x.example/mcp?"
	       "token="
	    << tok << "\"}}}";
	auto s = scan_sarif(run_scan({dir + "/c.json"}, test_fp()));
	EXPECT_EQ(s["version"], "2.1.0");
	const auto &run = s["runs"][0];
	EXPECT_EQ(run["tool"]["driver"]["name"], "keytrail");
	EXPECT_EQ(run["tool"]["driver"]["rules"].size(), 2u);
	ASSERT_EQ(run["results"].size(), 1u);
	const auto &res = run["results"][0];
	EXPECT_EQ(res["ruleId"], "hardcoded_secret");
	EXPECT_EQ(res["ruleIndex"], 0);
	EXPECT_EQ(res["level"], "error");
	EXPECT_EQ(res["locations"][0]["physicalLocation"]["region"]["startLine"], 1);
	EXPECT_EQ(res["partialFingerprints"]["keytrailLocation/v1"].get<std::string>().size(), 32u);
	EXPECT_EQ(res["properties"]["fingerprint"], test_fp()(tok));
}

namespace
{

// A config with one token (at line 3) and one credential file (at line 4).
void write_config(const std::string &path, const std::string &tok)
{
	std::filesystem::create_directories(std::filesystem::path(path).parent_path());
	std::ofstream(path) << "{\n  \"mcpServers\": {\n"
	                    << "    \"gh\": {\"command\": \"x\", \"env\": {\"GITHUB_TOKEN\": \""
	                    << tok << "\"}},\n"
	                    << "    \"aws\": {\"command\": \"y\", \"env\": "
	                       "{\"AWS_SHARED_CREDENTIALS_FILE\": \"/home/u/.aws/credentials\"}}\n"
	                    << "  }\n}\n";
}

std::string all_outputs(const ScanReport &r)
{
	return scan_text(r, true) + scan_json(r).dump() + scan_sarif(r).dump();
}

} // namespace

TEST(Scan, SarifRulesLinkTheDocsAndEveryResultHasARegion)
{
	std::string dir = temp_dir(), tok = fake_token(5);
	write_config(dir + "/c.json", tok);
	auto r = run_scan({dir + "/c.json"}, std::nullopt);
	ASSERT_EQ(r.findings.size(), 2u);
	auto s = scan_sarif(r);
	const auto &run = s["runs"][0];
	for (const auto &rule : run["tool"]["driver"]["rules"]) {
		std::string uri = rule["helpUri"];
		EXPECT_NE(uri.find("://"), std::string::npos) << uri; // absolute, as SARIF wants
		EXPECT_TRUE(uri.ends_with("/scan.md#" + rule["id"].get<std::string>())) << uri;
		EXPECT_FALSE(rule["fullDescription"]["text"].get<std::string>().empty());
		EXPECT_FALSE(rule["help"]["text"].get<std::string>().empty());
	}
	std::map<std::string, int> lines;
	for (const auto &res : run["results"]) {
		const auto &region = res["locations"][0]["physicalLocation"]["region"];
		ASSERT_TRUE(region.contains("startLine")) << res.dump();
		lines[res["ruleId"]] = region["startLine"];
		// Index and level follow the rule list.
		const auto &rule = run["tool"]["driver"]["rules"][res["ruleIndex"].get<size_t>()];
		EXPECT_EQ(rule["id"], res["ruleId"]);
		EXPECT_EQ(rule["defaultConfiguration"]["level"], res["level"]);
	}
	EXPECT_EQ(lines["hardcoded_secret"], 3);
	EXPECT_EQ(lines["secret_file_reference"], 4); // the real line, not a default
	EXPECT_EQ(all_outputs(r).find(tok), std::string::npos);
}

TEST(Scan, OneTokenInTwoFilesHasTwoPartialFingerprints)
{
	std::string dir = temp_dir(), tok = fake_token(6);
	write_config(dir + "/a/mcp.json", tok);
	write_config(dir + "/b/mcp.json", tok);
	auto r = run_scan({dir + "/a/mcp.json", dir + "/b/mcp.json"}, test_fp());
	auto results = scan_sarif(r)["runs"][0]["results"];
	ASSERT_EQ(results.size(), 4u);
	std::set<std::string> ids;
	for (const auto &res : results) {
		std::string id = res["partialFingerprints"]["keytrailLocation/v1"];
		EXPECT_EQ(id.size(), 32u);
		ids.insert(id);
	}
	EXPECT_EQ(ids.size(), 4u); // per finding and place
	// The same credential still says so, by its keyed fingerprint.
	EXPECT_EQ(results[0]["properties"]["fingerprint"], results[2]["properties"]["fingerprint"]);
	// And the same run again gives the same ids (stable across scans).
	auto again = scan_sarif(run_scan({dir + "/a/mcp.json", dir + "/b/mcp.json"}, test_fp()));
	EXPECT_EQ(again["runs"][0]["results"][0]["partialFingerprints"],
	          results[0]["partialFingerprints"]);
	// Without a key too: the location alone tells them apart.
	auto keyless =
	    scan_sarif(run_scan({dir + "/a/mcp.json", dir + "/b/mcp.json"}, std::nullopt));
	EXPECT_NE(keyless["runs"][0]["results"][0]["partialFingerprints"],
	          keyless["runs"][0]["results"][2]["partialFingerprints"]);
	EXPECT_EQ(all_outputs(r).find(tok), std::string::npos);
	EXPECT_EQ(keyless.dump().find(tok), std::string::npos);
}

TEST(Scan, DirectoriesAreWalkedForKnownConfigNamesWithinBounds)
{
	namespace fs = std::filesystem;
	std::string dir = temp_dir(), outside = temp_dir(), tok = fake_token(7);
	write_config(dir + "/.vscode/mcp.json", tok);            // VS Code, project
	write_config(dir + "/repo/.mcp.json", tok);              // Claude Code, project
	write_config(dir + "/u/.config/zed/settings.json", tok); // Zed, home
	write_config(dir + "/notes/mcp.json", tok);              // not a client's name: not read
	write_config(dir + "/repo/.vscode/settings.json", tok);  // not a client's MCP file
	std::string deep = dir;
	for (size_t i = 0; i < kScanMaxDepth; i++)
		deep += "/d";
	write_config(deep + "/.cursor/mcp.json", tok); // past the depth bound
	write_config(outside + "/.cursor/mcp.json", tok);
	fs::create_directory_symlink(outside, dir + "/linked"); // not followed
	fs::create_directory_symlink(dir, dir + "/repo/loop");  // no loop
	// Too large to read: reported, not read.
	fs::create_directories(dir + "/big");
	std::ofstream(dir + "/big/.mcp.json") << std::string(kScanMaxConfig + 1, ' ');
	std::vector<std::string> progress;
	auto r = run_scan({dir}, test_fp(), [&](size_t i, size_t n, const std::string &p) {
		progress.push_back(std::to_string(i) + "/" + std::to_string(n) + " " + p);
	});
	std::vector<std::string> want = {dir + "/.vscode/mcp.json", dir + "/repo/.mcp.json",
	                                 dir + "/u/.config/zed/settings.json"};
	std::vector<std::string> got = r.scanned;
	std::sort(got.begin(), got.end());
	EXPECT_EQ(got, want);
	EXPECT_EQ(r.findings.size(), 6u); // a token and a file reference in each
	ASSERT_EQ(r.errors.size(), 1u);
	EXPECT_EQ(r.errors[0].first, dir + "/big/.mcp.json");
	EXPECT_NE(r.errors[0].second.find("larger than"), std::string::npos);
	ASSERT_EQ(r.looked.size(), 1u);
	EXPECT_EQ(r.looked[0].path, dir);
	EXPECT_NE(r.looked[0].what.find("4 config(s)"), std::string::npos) << r.looked[0].what;
	EXPECT_EQ(progress.size(), 4u); // one per config found
	EXPECT_EQ(scan_exit_code(r), 1);
	EXPECT_EQ(all_outputs(r).find(tok), std::string::npos);

	// The entry bound stops the walk and says so.
	auto cut = run_scan({dir}, test_fp(), {}, 3);
	ASSERT_FALSE(cut.errors.empty());
	EXPECT_NE(cut.errors.back().second.find("walk stopped after 3 entries"), std::string::npos);
	EXPECT_NE(cut.looked[0].what.find("stopped at the bound"), std::string::npos);
}

TEST(Scan, WithoutPathsItSaysWhereItLooked)
{
	auto r = run_scan({}, std::nullopt);
	ASSERT_FALSE(r.looked.empty());
	bool root_cursor = false;
	for (const auto &l : r.looked) {
		root_cursor |= l.path == "/root/.cursor/mcp.json";
		EXPECT_FALSE(l.what.empty());
	}
	EXPECT_TRUE(root_cursor);
	std::string verbose = scan_text(r, true);
	EXPECT_NE(verbose.find("looked in " + std::to_string(r.looked.size()) + " location(s)"),
	          std::string::npos)
	    << verbose;
	for (const auto &l : r.looked)
		EXPECT_NE(verbose.find("  " + l.path + ": " + l.what + "\n"), std::string::npos);
	EXPECT_EQ(scan_json(r)["looked"].size(), r.looked.size());
	// Found nothing: it says where it looked even without -v.
	ScanReport none;
	none.looked = {{"/home/u/.cursor/mcp.json", "absent"}};
	std::string quiet = scan_text(none);
	EXPECT_NE(quiet.find("no MCP client config found; looked in 1 location(s):\n"
	                     "  /home/u/.cursor/mcp.json: absent"),
	          std::string::npos)
	    << quiet;
}

TEST(Scan, TheCommandTakesDirectoriesAndVerbose)
{
	std::string dir = temp_dir(), tok = fake_token(8);
	write_config(dir + "/proj/.cursor/mcp.json", tok);
	CLI::App app;
	auto cmd = cli::add_scan(app);
	std::string out = dir + "/out.txt";
	app.parse("scan -v --state-dir " + dir + "/state -o " + out + " " + dir + "/proj", false);
	ASSERT_TRUE(*cmd.sub);
	EXPECT_EQ(cmd.run(), 1); // findings
	std::ifstream in(out);
	std::string text((std::istreambuf_iterator<char>(in)), {});
	EXPECT_NE(text.find(dir + "/proj/.cursor/mcp.json:3: error:"), std::string::npos) << text;
	EXPECT_NE(text.find("looked in 1 location(s):\n  " + dir + "/proj: directory: 1 config(s)"),
	          std::string::npos)
	    << text;
	EXPECT_EQ(text.find(tok), std::string::npos);
	struct stat st;
	ASSERT_EQ(stat(out.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
}
