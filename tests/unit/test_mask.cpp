#include <gtest/gtest.h>

#include "keytrail/secrets/mask.h"

using namespace keytrail;

TEST(Mask, UrlPasswords)
{
	EXPECT_EQ(mask_arg("postgresql://app:s3cr3t-pw@db.local:5432/prod"),
	          "postgresql://app:****@db.local:5432/prod");
	EXPECT_EQ(mask_arg("https://example.test/path?q=1"), "https://example.test/path?q=1");
	EXPECT_EQ(mask_arg("redis://:onlypass@cache:6379"), "redis://:****@cache:6379");
}

TEST(Mask, CredentialOptionsAndPairs)
{
	auto v = mask_argv(
	    {"server", "--token", "abcdef123456", "--path", "/srv", "--api-key=xyz987654",
	     "GITLAB_PERSONAL_ACCESS_TOKEN=glpat-aaaaaaaaaaaaaaaaaaaa", "--author", "me"});
	EXPECT_EQ(v[2], "****");
	EXPECT_EQ(v[4], "/srv");
	EXPECT_EQ(v[5], "--api-key=****");
	EXPECT_EQ(v[6], "GITLAB_PERSONAL_ACCESS_TOKEN=****");
	EXPECT_EQ(v[8], "me");
}

// Names are matched without regard to case; pat, pwd and auth only as whole
// words, wherever one occurs (not only where they first occur).
TEST(Mask, CredentialLikeNames)
{
	for (const char *yes : {"GITHUB_TOKEN", "--Api-Key", "client_secret", "DB_PWD", "x-auth",
	                        "path_pat", "author-auth", "Authorization", "--password"})
		EXPECT_TRUE(credential_like_name(yes)) << yes;
	for (const char *no : {"path", "--pattern", "author", "PWDIR", "", "---", "-I/usr/include"})
		EXPECT_FALSE(credential_like_name(no)) << no;
}

// Masking a long argv word by word, cheaply, changes only its credentials.
TEST(Mask, ALongArgvKeepsWhatIsNotACredential)
{
	std::vector<std::string> argv = {"/usr/bin/cc"};
	for (int i = 0; i < 32; i++)
		argv.push_back("-I/usr/include/churn/dir" + std::to_string(i));
	argv.push_back("--token");
	argv.push_back("ghp_aaaaaaaaaaaaaaaaaaaaaaaa");
	argv.push_back("see ghp_bbbbbbbbbbbbbbbbbbbbbbbb");
	auto v = mask_argv(argv, false);
	ASSERT_EQ(v.size(), argv.size());
	for (size_t i = 0; i < 33; i++)
		EXPECT_EQ(v[i], argv[i]);
	EXPECT_EQ(v[34], "****");
	EXPECT_EQ(v[35], "see ghp_****");
}

// A pair's whole value is masked, with or without the catalog: the
// catalog's format inside it (an AWS key id) does not leave the rest shown.
TEST(Mask, APairsValueIsMaskedWholeThoughTheCatalogKnowsAFormatInIt)
{
	for (bool catalog : {false, true}) {
		EXPECT_EQ(mask_text("X-Api-Key: foo/AKIAIOSFODNN7QWERTYU", catalog),
		          "X-Api-Key: ****");
		EXPECT_EQ(
		    mask_argv({"curl", "-H", "X-Api-Key: foo/AKIAIOSFODNN7QWERTYU"}, catalog)[2],
		    "X-Api-Key: ****");
	}
	// A PEM block after a pair's name: the pair rule alone would stop at its
	// first space and leave the body; the catalog masks the block first.
	const std::string body = "MIIEowIBAAKCAQEAx7Qm3dk2xVq9Lr8Tz0aQ1wErTy5uIoPaSdFgHjKl";
	const std::string pem = "--from-literal=private-key=-----BEGIN RSA PRIVATE KEY-----\n" +
	                        body + "\n-----END RSA PRIVATE KEY-----";
	EXPECT_EQ(mask_text(pem, true).find(body), std::string::npos) << mask_text(pem, true);
	EXPECT_EQ(mask_argv({"kubectl", "create", "secret", "generic", "k", pem})[5].find(body),
	          std::string::npos);
	// Outside a pair the catalog still finds it.
	EXPECT_EQ(mask_text("id foo/AKIAIOSFODNN7QWERTYU", true).find("IOSFODNN7QWERTYU"),
	          std::string::npos);
}

// An argv moved in is masked in place: what changes is replaced, what has
// nothing to mask keeps its own buffer (no copy per argument per exec), and
// the result is the one a copy gets.
TEST(Mask, AnArgvMovedInKeepsTheBuffersOfWhatItDoesNotMask)
{
	std::vector<std::string> argv = {"/usr/bin/cc", "-I/usr/include/a/long/include/dir",
	                                 "--api-key", "ghp_aaaaaaaaaaaaaaaaaaaaaaaa",
	                                 "TOKEN=ghp_bbbbbbbbbbbbbbbbbbbbbbbb"};
	for (bool catalog : {false, true}) {
		std::vector<std::string> in = argv;
		const char *kept = in[1].data();
		auto v = mask_argv(std::move(in), catalog);
		EXPECT_EQ(v, mask_argv(argv, catalog));
		EXPECT_EQ(v[1].data(), kept);
		EXPECT_EQ(v[3], "****");
		EXPECT_EQ(v[4], "TOKEN=****");
	}
}

// An argument the cheap mask copies as it is has no '=', ':', separator or
// prefixed token at a word edge; one with any of them is masked whole.
TEST(Mask, TheCheapMaskFindsATokenAnywhereAWordStarts)
{
	auto v = mask_argv({"tool", "x,ghp_aaaaaaaaaaaaaaaaaaaaaaaa", "/srv/ghp_aaaaaaaaaaaa",
	                    "a(sk-proj-bbbbbbbbbbbbbbbbbbbb)", "token=ghp_aaaaaaaaaaaaaaaaaaaaaaaa",
	                    "https://u:pw123456@h/x", "ghp_short"},
	                   false);
	EXPECT_EQ(v[1], "x,ghp_****");
	EXPECT_EQ(v[2], "/srv/ghp_aaaaaaaaaaaa"); // inside a path word: not a token's start
	EXPECT_EQ(v[3], "a(sk-proj-****)");
	EXPECT_EQ(v[4], "token=****");
	EXPECT_EQ(v[5], "https://u:****@h/x");
	EXPECT_EQ(v[6], "ghp_short");
}

// One argument holding a shell line (npm's `sh -c`): the word after a
// credential option is masked as the next argument would be.
TEST(Mask, OptionValuesInsideAShellLine)
{
	std::string g = "9f3a61c0d2b74e58a1c6f0e2d4b8", svc = "Qm7vT2xK9pL4wR8nZ3bC6dF1";
	auto v = mask_argv({"sh", "-c",
	                    "'mcp-server-everything' stdio --api-token " + g +
	                        " --client-secret=abc123XYZ789 --path /srv; deploy "
	                        "--service-token \"" +
	                        svc + "\" --verbose --token $TOKEN"});
	EXPECT_EQ(v[2], "'mcp-server-everything' stdio --api-token **** --client-secret=**** "
	                "--path /srv; deploy --service-token **** --verbose --token $TOKEN");
	// Escapes, quotes, values that look like options or pairs, and the
	// argv rules (curl -u, mysql -p, sshpass -p) hold inside the line too.
	for (const auto &[line, secret] : std::vector<std::pair<std::string, std::string>>{
	         {"echo it\\'s; deploy --api-token Zq3x7Rk2Lm9Pw4Tn", "Zq3x7Rk2Lm9Pw4Tn"},
	         {"tool --password \\\n Zq3x7Rk2Lm9Pw4Tn", "Zq3x7Rk2Lm9Pw4Tn"},
	         {"tool --password -Xk9vQ2mL7pR4", "Xk9vQ2mL7pR4"},
	         {"tool --password '$Up3rS3cr3tV4lue'", "Up3rS3cr3tV4lue"},
	         {"tool --password MyPassword=2024xQ7", "2024xQ7"},
	         {"tool --password MyPassword=2024xQ7", "MyPassword"},
	         {"cd /x && curl -u alice:S3cr3tPw9 https://h", "S3cr3tPw9"},
	         {"mysql -pS3cr3tPw9 db", "S3cr3tPw9"},
	         {"sshpass -p S3cr3tPw9 ssh h", "S3cr3tPw9"}}) {
		std::string got = mask_argv({"/bin/bash", "-lc", line})[2];
		EXPECT_EQ(got.find(secret), std::string::npos) << line << " -> " << got;
	}
	// A sentence is not a command line.
	EXPECT_EQ(mask_text("github_token used by node toward api.github.com"),
	          "github_token used by node toward api.github.com");
}

TEST(Mask, KnownTokenPrefixesKeepOnlyThePrefix)
{
	std::string gh = "ghp_" + std::string(36, 'A');
	EXPECT_EQ(mask_arg(gh), "ghp_****");
	EXPECT_EQ(mask_arg("Bearer:" + gh), "Bearer:ghp_****");
	EXPECT_EQ(mask_arg("AKIA" + std::string(16, 'Z')), "AKIA****");
	EXPECT_EQ(mask_arg("sk-"), "sk-");                 // too short to be a token
	EXPECT_EQ(mask_arg("task-runner"), "task-runner"); // "sk-" inside a word
}

namespace
{
// Test-made credentials in the catalog's formats (random enough to pass the
// entropy floors); never real ones.
const std::string kJwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrdC10ZXN0In0.Qm9ndXNTaWduYXR1cmVYeVo";
const std::string kPw = "Hq7vK2mZp9xR4t";
const std::string kAwsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Nw3Lt5R";

void expect_clean(const std::vector<std::string> &v, const std::string &secret)
{
	for (const auto &a : v)
		EXPECT_EQ(a.find(secret), std::string::npos) << a;
}
} // namespace

TEST(Mask, HeadersOptionsAndProgramFormsFromTheIssue)
{
	auto curl = mask_argv({"curl", "-H", "Authorization: Bearer " + kJwt, "-H",
	                       "X-Api-Key: " + kPw, "-u", "alice:" + kPw, "https://api.test/"});
	expect_clean(curl, kJwt);
	expect_clean(curl, kPw);
	EXPECT_EQ(curl[2], "Authorization: Bearer ****");
	EXPECT_EQ(curl[4], "X-Api-Key: ****");
	EXPECT_EQ(curl[6], "alice:****");
	EXPECT_EQ(curl[7], "https://api.test/");

	auto mysql = mask_argv({"/usr/bin/mysql", "-ualice", "-p" + kPw, "-h", "db"});
	EXPECT_EQ(mysql[1], "-ualice");
	EXPECT_EQ(mysql[2], "-p****");
	auto docker = mask_argv({"docker", "login", "-u", "bob", "-p", kPw, "reg.test"});
	EXPECT_EQ(docker[3], "bob");
	EXPECT_EQ(docker[5], "****");
	EXPECT_EQ(mask_argv({"curl", "--user=alice:" + kPw, "https://h.test/"})[1],
	          "--user=alice:****");
	EXPECT_EQ(mask_argv({"sudo", "mysql", "-p" + kPw})[2], "-p****");
	EXPECT_EQ(mask_argv({"docker", "run", "-p", "8080:80", "img"})[3], "8080:80"); // a port
	EXPECT_EQ(mask_text("password = " + kPw), "password = ****");
	EXPECT_EQ(mask_text("{\"password\" : \"" + kPw + "\"}"), "{\"password\" : \"****\"}");
	// -p is a port elsewhere, and stays.
	EXPECT_EQ(mask_argv({"ssh", "-p", "2222", "host"})[2], "2222");
	EXPECT_EQ(mask_argv({"python3", "-p8080"})[1], "-p8080");

	auto aws = mask_argv({"aws", "configure", "set", "aws_secret_access_key", kAwsSecret});
	EXPECT_EQ(aws[4], "****");
	EXPECT_EQ(mask_argv({"git", "config", "user.password", kPw})[3], "****");
	EXPECT_EQ(mask_argv({"git", "credential", "fill"})[2], "fill");
	// A shell line carries the same forms inside one argument.
	auto sh =
	    mask_argv({"sh", "-c",
	               "curl -H 'Authorization: token " + kPw + "' -d '{\"password\":\"" + kPw +
	                   "\"}' \"https://u:" + kPw + "@h.test/?api_key=" + kPw + "&x=1\""});
	expect_clean(sh, kPw);
	EXPECT_NE(sh[2].find("Authorization: token ****"), std::string::npos) << sh[2];
	EXPECT_NE(sh[2].find("&x=1"), std::string::npos) << sh[2];
}

TEST(Mask, AnyTextCatalogFormatsPathsAndMessages)
{
	std::string gh = "ghp_" + std::string("Zq8Lm3Vx7Kp2Rt9Wb4Nc6Hy1Jd5Fg0Sa3Ue7");
	std::string gl = "glpat-" + std::string("Ab3dEf6hIj9kLm2nOp5q");
	// Tokens in file and directory names.
	EXPECT_EQ(mask_text("/tmp/" + gh + "/creds.json"), "/tmp/ghp_****/creds.json");
	EXPECT_EQ(mask_text("/srv/" + kJwt + ".txt"), "/srv/****.txt");
	// An error that quotes a value.
	std::string e = mask_text("'" + gl + "' is not a duration (like 250ms)");
	EXPECT_EQ(e.find("Ab3dEf6hIj9kLm2nOp5q"), std::string::npos) << e;
	std::string aws = mask_text("aws_secret_access_key = " + kAwsSecret);
	EXPECT_EQ(aws.find(kAwsSecret), std::string::npos) << aws;
	// Idempotent, and plain text stays as it was.
	EXPECT_EQ(mask_text(mask_text("token=" + kPw)), "token=****");
	for (std::string plain :
	     {"/usr/lib/node_modules/npm/bin/npm-cli.js", "author: me",
	      "https://api.github.com:443/repos", "path=/srv/app", "TOKEN=$TOKEN"})
		EXPECT_EQ(mask_text(plain), plain);
	// shown() also makes the bytes valid UTF-8.
	EXPECT_EQ(shown(std::string("a\xff") + gh), "a\\xFFghp_****");
}
