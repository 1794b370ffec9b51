#include <gtest/gtest.h>

#include "keytrail/secrets/mcp_config.h"

using namespace keytrail;

namespace
{
std::string gl()
{
	return "glpat-" + std::string("Ab3dEf6hIj9kLm2nOp5q");
}
} // namespace

TEST(McpConfig, ClaudeDesktopEnvArgsAndHeaders)
{
	std::string text = R"({
  "mcpServers": {
    "gitlab": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-gitlab"],
      "env": { "GITLAB_PERSONAL_ACCESS_TOKEN": ")" +
	                   gl() + R"(", "GITLAB_API_URL": "https://gitlab.example" }
    },
    "postgres": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-postgres", "postgresql://app:Xq9vK2mN4pR7@db/prod"]
    },
    "remote": { "url": "https://mcp.example/sse", "headers": { "Authorization": "Bearer Zk8sQ2wE5rT7yU1iO3pA" } },
    "aws": { "command": "aws-mcp", "args": ["--credentials", "/home/a/.aws/credentials"] },
    "clean": { "command": "mcp-server-time", "env": { "TZ": "UTC", "API_TOKEN": "${env:API_TOKEN}" } }
  }
})";
	auto s = scan_mcp_config(text);
	ASSERT_FALSE(s.error);
	EXPECT_EQ(s.servers, 5u);
	ASSERT_EQ(s.secrets.size(), 3u);
	bool gitlab = false, header = false, pg = false;
	for (auto &x : s.secrets) {
		if (x.server == "gitlab") {
			gitlab = true;
			EXPECT_EQ(x.field, "env.GITLAB_PERSONAL_ACCESS_TOKEN");
			EXPECT_EQ(x.finding.type, "gitlab_pat");
			EXPECT_EQ(x.line, 6u);
		}
		if (x.server == "remote") {
			header = true;
			EXPECT_EQ(x.field, "headers.Authorization");
			EXPECT_EQ(x.finding.secret.view(), "Zk8sQ2wE5rT7yU1iO3pA");
		}
		if (x.server == "postgres") {
			pg = true;
			EXPECT_EQ(x.field, "args[2]");
			EXPECT_EQ(x.finding.type, "database_url");
		}
	}
	EXPECT_TRUE(gitlab && header && pg);
	ASSERT_EQ(s.secret_files.size(), 1u);
	EXPECT_EQ(s.secret_files[0].kind, "aws_credentials");
}

TEST(McpConfig, VsCodeJsoncWithCommentsAndTrailingCommas)
{
	std::string text =
	    "// user settings\n{\n  \"editor.fontSize\": 13,\n  /* mcp */\n  \"mcp\": {\n    "
	    "\"servers\": {\n"
	    "      \"gh\": { \"type\": \"stdio\", \"command\": \"github-mcp-server\",\n"
	    "        \"env\": { \"GITHUB_TOKEN\": \"ghp_" +
	    std::string("aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2") +
	    "\", },\n"
	    "      },\n    },\n  },\n}\n";
	auto s = scan_mcp_config(text);
	ASSERT_FALSE(s.error) << *s.error;
	ASSERT_EQ(s.secrets.size(), 1u);
	EXPECT_EQ(s.secrets[0].finding.type, "github_token");
	EXPECT_EQ(s.secrets[0].line, 8u);
	EXPECT_EQ(s.secrets[0].finding.prefix, "ghp_");
}

TEST(McpConfig, MalformedIsReportedWithLineNeverThrown)
{
	auto s = scan_mcp_config("{\n  \"mcpServers\": {\n    \"x\": { \"command\": \"a\" \n  }\n");
	ASSERT_TRUE(s.error);
	EXPECT_NE(s.error->find("not valid JSON"), std::string::npos);
	EXPECT_EQ(s.error->substr(0, 2), "5:");
	for (std::string bad :
	     std::vector<std::string>{"", "{", "[", "\"", "{\"a\":", "/*",
	                              "{\"mcpServers\": [1,2,]}", std::string("\xff\xfe{", 3)})
		EXPECT_NO_THROW(scan_mcp_config(bad));
	EXPECT_EQ(jsonc_to_json("{\"a\": \"x // not a comment\",}"),
	          "{\"a\": \"x // not a comment\" }");
}

TEST(McpConfig, NestingPastTheBoundIsAnErrorNotACrash)
{
	// 20,000 levels took the recursive walk (and the root agent) down.
	for (std::string open : {"[", "{\"a\":"}) {
		std::string deep;
		for (int i = 0; i < 20000; i++)
			deep += open;
		auto s = scan_mcp_config(deep);
		ASSERT_TRUE(s.error);
		EXPECT_NE(s.error->find("nested deeper than 64 levels"), std::string::npos)
		    << *s.error;
		EXPECT_EQ(s.error->substr(0, 2), "1:");
	}
	// Brackets inside strings are not nesting; a config at the bound scans.
	std::string ok = "{\"mcpServers\": {\"gl\": {\"command\": \"x\", \"env\": {\"T\": \"" +
	                 std::string(100, '[') + gl() + "\"}}}, \"deep\": ";
	for (int i = 0; i < 60; i++)
		ok += "[";
	for (int i = 0; i < 60; i++)
		ok += "]";
	ok += "}";
	auto s = scan_mcp_config(ok);
	ASSERT_FALSE(s.error) << *s.error;
	ASSERT_EQ(s.secrets.size(), 1u);
}

TEST(McpConfig, ParseErrorsNeverEchoTheText)
{
	// nlohmann's message ends "last read: '<the text>'": a token cut by a
	// stray quote or control character would be printed.
	for (std::string bad :
	     {"{\"env\": {\"T\": \"" + gl() + "\n\"}}", "{\"env\": {\"T\": " + gl() + "}}",
	      "{\"T\": \"" + gl() + "\" \"x\"}"}) {
		auto s = scan_mcp_config(bad);
		ASSERT_TRUE(s.error);
		EXPECT_EQ(s.error->find("Ab3dEf6hIj9kLm2nOp5q"), std::string::npos) << *s.error;
		EXPECT_EQ(s.error->find("last read"), std::string::npos) << *s.error;
		EXPECT_NE(s.error->find("not valid JSON"), std::string::npos);
	}
}
