// keytrail scan on hand-made MCP client configs: findings, masking, JSONC,
// malformed files, exit codes, and the SARIF shape.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

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
	EXPECT_EQ(res["partialFingerprints"]["keytrailSecret/v1"].get<std::string>().size(), 32u);
}
