// Every detector, with fake values built here (never real credentials, and
// never a whole token literal in the source).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <random>

#include "keytrail/secrets/catalog.h"
#include "keytrail/secrets/fingerprint.h"
#include "keytrail/util/error.h"

using namespace keytrail;

namespace
{

std::string rnd(size_t n, const std::string &alphabet, unsigned seed = 7)
{
	std::mt19937 g(seed);
	std::string s;
	for (size_t i = 0; i < n; i++)
		s += alphabet[g() % alphabet.size()];
	return s;
}
const std::string kAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const std::string kHex = "0123456789abcdef";
const std::string kUpper32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const std::string kB64 = kAlnum + "+/";

std::string only_type(const std::string &text)
{
	auto f = scan_text(text);
	if (f.size() != 1)
		return "count=" + std::to_string(f.size());
	return f[0].type;
}

struct Case {
	const char *type;
	std::string value;
};

} // namespace

TEST(Catalog, EachDetectorFindsItsFormat)
{
	std::vector<Case> cases = {
	    {"github_pat_fine_grained", "github_pat_" + rnd(22, kAlnum) + "_" + rnd(59, kAlnum)},
	    {"github_token", "ghp_" + rnd(36, kAlnum)},
	    {"github_token", "ghs_" + rnd(36, kAlnum, 8)},
	    {"gitlab_pat", "glpat-" + rnd(20, kAlnum)},
	    {"gitlab_runner_token", "glrt-" + rnd(20, kAlnum)},
	    {"gitlab_ci_job_token", "glcbt-" + rnd(24, kAlnum)},
	    {"gitlab_deploy_token", "gldt-" + rnd(20, kAlnum)},
	    {"aws_access_key_id", "AKIA" + rnd(16, kUpper32)},
	    {"aws_access_key_id", "ASIA" + rnd(16, kUpper32, 9)},
	    {"slack_token", "xoxb-" + rnd(12, "0123456789") + "-" + rnd(24, kAlnum)},
	    {"slack_webhook", "https://hooks.slack.com/services/T" + rnd(8, kUpper32) + "/B" +
	                          rnd(8, kUpper32) + "/" + rnd(24, kAlnum)},
	    {"anthropic_api_key", "sk-ant-api03-" + rnd(93, kAlnum) + "AA"},
	    {"openai_api_key", "sk-proj-" + rnd(48, kAlnum)},
	    {"openai_api_key", "sk-" + rnd(48, kAlnum, 3)},
	    {"google_api_key", "AIza" + rnd(35, kAlnum)},
	    {"stripe_key", "sk_live_" + rnd(24, kAlnum)},
	    {"huggingface_token", "hf_" + rnd(34, kAlnum)},
	    {"npm_token", "npm_" + rnd(36, kAlnum)},
	    {"pypi_token", "pypi-AgEIcHlwaS5vcmc" + rnd(60, kAlnum)},
	    {"dockerhub_pat", "dckr_pat_" + rnd(27, kAlnum)},
	    {"notion_token", "ntn_" + rnd(46, kAlnum)},
	    {"linear_api_key", "lin_api_" + rnd(40, kAlnum)},
	    {"azure_client_secret", rnd(3, kAlnum) + "8Q~" + rnd(34, kAlnum)},
	    {"vault_token", "hvs." + rnd(90, kAlnum)},
	    {"sendgrid_api_key", "SG." + rnd(22, kAlnum) + "." + rnd(43, kAlnum)},
	    {"twilio_api_key", "SK" + rnd(32, kHex)},
	    {"databricks_token", "dapi" + rnd(32, kHex)},
	    {"digitalocean_token", "dop_v1_" + rnd(64, kHex)},
	    {"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx" + rnd(20, kAlnum) + "." + rnd(43, kAlnum)},
	};
	for (auto &c : cases) {
		EXPECT_EQ(only_type("token: " + c.value + "\n"), c.type) << c.value;
		auto f = scan_text(c.value);
		ASSERT_FALSE(f.empty()) << c.value;
		EXPECT_EQ(f[0].secret.view(), c.value) << c.type;
	}
}

TEST(Catalog, KeyedFormats)
{
	std::string secret = rnd(40, kB64);
	auto f = scan_text("[default]\naws_access_key_id = AKIA" + rnd(16, kUpper32) +
	                   "\naws_secret_access_key = " + secret + "\n");
	ASSERT_EQ(f.size(), 2u);
	EXPECT_EQ(f[1].type, "aws_secret_access_key");
	EXPECT_EQ(f[1].secret.view(), secret);
	EXPECT_EQ(f[1].line, 3u);
	EXPECT_EQ(f[0].prefix, "AKIA"); // its kind, not the key id

	std::string key = rnd(86, kB64) + "==";
	auto az = scan_text("DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + key +
	                    ";EndpointSuffix=core");
	ASSERT_EQ(az.size(), 1u);
	EXPECT_EQ(az[0].type, "azure_storage_key");
	EXPECT_EQ(az[0].secret.view(), key);

	auto db = scan_text("postgresql://app:" + rnd(16, kAlnum) + "@db.internal:5432/prod");
	ASSERT_EQ(db.size(), 1u);
	EXPECT_EQ(db[0].type, "database_url");
	EXPECT_EQ(db[0].prefix, "postgresql://app:");
}

TEST(Catalog, PrivateKeysInPemAndJson)
{
	std::string body = rnd(64, kB64) + "\n" + rnd(64, kB64) + "\n";
	std::string pem =
	    "-----BEGIN OPENSSH PRIVATE KEY-----\n" + body + "-----END OPENSSH PRIVATE KEY-----";
	auto f = scan_text("junk\n" + pem + "\n");
	ASSERT_EQ(f.size(), 1u);
	EXPECT_EQ(f[0].type, "private_key");
	// The same key JSON-escaped (GCP service account) fingerprints the same.
	std::string escaped =
	    "-----BEGIN PRIVATE KEY-----\\n" + rnd(64, kB64) + "\\n-----END PRIVATE KEY-----\\n";
	std::string json = "{\"type\": \"service_account\", \"private_key\": \"" + escaped + "\"}";
	auto j = scan_text(json);
	ASSERT_EQ(j.size(), 1u);
	Fingerprinter fp(SecretBytes(std::string(32, 'k')));
	std::string plain = escaped;
	for (size_t p; (p = plain.find("\\n")) != std::string::npos;)
		plain.replace(p, 2, "\n");
	EXPECT_EQ(fp(j[0].secret.view()), fp(normalize_secret(plain).view()));
}

TEST(Catalog, Negatives)
{
	EXPECT_TRUE(scan_text("ghp_short").empty());
	EXPECT_TRUE(scan_text("ghp_" + std::string(36, 'a')).empty()); // no entropy
	EXPECT_TRUE(scan_text("xghp_" + rnd(36, kAlnum)).empty());     // inside a word
	EXPECT_TRUE(scan_text("task-runner sk-learn").empty());
	EXPECT_TRUE(scan_text("AKIAIOSFODNN7EXAMPLE").empty()); // lower entropy / docs example
	EXPECT_TRUE(scan_text("https://user@example.com/path").empty());
	EXPECT_TRUE(scan_text("postgresql://app:${DB_PASSWORD}@db/prod").empty());
	EXPECT_TRUE(scan_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----").empty());
	EXPECT_TRUE(scan_text("SK" + std::string(32, '0')).empty());
	EXPECT_TRUE(scan_text("").empty());
}

TEST(Catalog, EnvironAndGenericRule)
{
	std::string tok = "glpat-" + rnd(20, kAlnum);
	auto f = scan_environ({"PATH=/usr/bin", "GITLAB_PERSONAL_ACCESS_TOKEN=" + tok,
	                       "DB_PASSWORD=" + rnd(16, kAlnum), "API_TOKEN=changeme",
	                       "SECRET_FILE=/run/secrets/x", "MY_PAT=" + rnd(24, kAlnum, 4),
	                       "HOME=/root", "COLOR=" + rnd(16, kAlnum)});
	ASSERT_EQ(f.size(), 3u);
	EXPECT_EQ(f[0].type, "gitlab_pat");
	EXPECT_EQ(f[0].name, "GITLAB_PERSONAL_ACCESS_TOKEN");
	EXPECT_EQ(f[1].type, "generic_secret");
	EXPECT_EQ(f[1].name, "DB_PASSWORD");
	EXPECT_EQ(f[2].name, "MY_PAT");
}

TEST(Catalog, Argv)
{
	std::string pw = rnd(14, kAlnum);
	auto f =
	    scan_argv({"node", "index.js", "postgresql://app:" + pw + "@127.0.0.1/db", "--token",
	               rnd(30, kAlnum), "--api-key=" + rnd(30, kAlnum, 2), "--path", "/srv/data"});
	ASSERT_EQ(f.size(), 3u);
	EXPECT_EQ(f[0].type, "database_url");
	EXPECT_EQ(f[0].secret.view(), pw);
	EXPECT_EQ(f[0].name, "argv[2]");
	EXPECT_EQ(f[1].name, "--token");
	EXPECT_EQ(f[2].name, "--api-key");
}

// npm runs a bin as `sh -c "'bin' --api-token X --client-secret=Y"`: one
// argument holding a shell line. Each credential is named by its option,
// and no name holds a value.
TEST(Catalog, ArgvShellLineNamesEachCredentialByItsOption)
{
	std::string g = rnd(28, "0123456789abcdef"), h = rnd(30, kAlnum, 3);
	std::string gh = "ghp_" + rnd(36, kAlnum, 4), svc = rnd(32, kAlnum, 5);
	auto f = scan_argv({"sh", "-c",
	                    "'mcp-server-everything' stdio --api-token " + g +
	                        " --client-secret=" + h + " --github-token \"" + gh +
	                        "\"; deploy --service-token " + svc + " --verbose"});
	ASSERT_EQ(f.size(), 4u);
	std::map<std::string, std::string> by_name;
	for (const auto &x : f) {
		by_name[x.name] = x.type;
		for (const auto &v : {g, h, gh, svc})
			EXPECT_EQ(x.name.find(v), std::string::npos) << x.name;
	}
	EXPECT_EQ(by_name["--api-token"], "generic_secret");
	EXPECT_EQ(by_name["--client-secret"], "generic_secret");
	EXPECT_EQ(by_name["--github-token"], "github_token");
	EXPECT_EQ(by_name["--service-token"], "generic_secret");
	// A known format after its option is one finding, named by the option.
	auto one = scan_argv({"server", "--github-token", gh});
	ASSERT_EQ(one.size(), 1u);
	EXPECT_EQ(one[0].type, "github_token");
	EXPECT_EQ(one[0].name, "--github-token");
	// No name holds a value: a URL with a password and a query is scanned
	// whole and named by its slot; anchored formats are still found.
	std::string pw = rnd(14, kAlnum, 6);
	auto url = scan_argv({"tool", "https://ci:" + pw + "@git.example.test/api?access_token=" +
	                                  rnd(24, kAlnum, 7)});
	for (const auto &x : url)
		EXPECT_EQ(x.name.find(pw), std::string::npos) << x.name;
	auto db = scan_argv({"tool", "postgres://app:" + pw + "@db/app?sslmode=require"});
	ASSERT_EQ(db.size(), 1u);
	EXPECT_EQ(db[0].type, "database_url");
	EXPECT_EQ(db[0].name, "argv[1]");
	// A password with spaces or shell characters, as its own argument.
	auto spaced = scan_argv({"tool", "--password", "Xk9&mP2;qz correct horse"});
	ASSERT_EQ(spaced.size(), 1u);
	EXPECT_EQ(spaced[0].name, "--password");
	EXPECT_EQ(spaced[0].secret.view(), "Xk9&mP2;qz correct horse");
	// Shell text that passes nothing: nothing (git's helper, printf lines).
	EXPECT_TRUE(scan_argv({"sh", "-c",
	                       "git -c credential.helper=store credential fill <<EOF\n"
	                       "protocol=https\nhost=example.test\nEOF"})
	                .empty());
}

TEST(Fingerprint, KeyedStableAndTruncated)
{
	Fingerprinter a(SecretBytes(std::string(32, 'a'))), b(SecretBytes(std::string(32, 'b')));
	std::string fa = a("ghp_x"), fb = b("ghp_x");
	EXPECT_EQ(fa.size(), kFingerprintHexLength);
	EXPECT_EQ(fa, a("ghp_x"));
	EXPECT_NE(fa, fb); // a different key, a different fingerprint
	EXPECT_NE(fa, a("ghp_y"));
	EXPECT_EQ(a(normalize_secret("  'tok'\n").view()), a("tok"));
}

TEST(Fingerprint, KeyFileCreatedPrivateAndReloaded)
{
	char d[] = "/tmp/kt-key-XXXXXX";
	std::string path = std::string(mkdtemp(d)) + "/fingerprint.key";
	SecretBytes k1 = load_or_create_key(path, true);
	EXPECT_EQ(k1.size(), 32u);
	struct stat st;
	ASSERT_EQ(stat(path.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
	SecretBytes k2 = load_or_create_key(path, false);
	EXPECT_EQ(k1.view(), k2.view());
	chmod(path.c_str(), 0644);
	EXPECT_THROW(load_or_create_key(path, false), Error);
	EXPECT_THROW(load_or_create_key(path + ".missing", false), Error);
}

TEST(Catalog, FilesGetNamesAndTheGenericRule)
{
	std::string pw = rnd(18, kAlnum, 11), key = "sk-proj-" + rnd(48, kAlnum, 12);
	std::string env = "# app\nexport DATABASE_PASSWORD=\"" + pw + "\"\nOPENAI_API_KEY=" + key +
	                  "\nDEBUG=true\nPORT=8080\n";
	auto f = scan_file(env);
	ASSERT_EQ(f.size(), 2u);
	EXPECT_EQ(f[0].type, "openai_api_key");
	EXPECT_EQ(f[0].name, "OPENAI_API_KEY");
	EXPECT_EQ(f[0].line, 3u);
	EXPECT_EQ(f[1].type, "generic_secret");
	EXPECT_EQ(f[1].name, "DATABASE_PASSWORD");
	EXPECT_EQ(f[1].secret.view(), pw);
	auto netrc = scan_file("machine api.example.test login bot password " + pw + "\n");
	ASSERT_EQ(netrc.size(), 1u);
	EXPECT_EQ(netrc[0].name, "password");
	EXPECT_TRUE(scan_file("HOSTNAME=web-1\nLOG_LEVEL=debug\n").empty());
	// .npmrc registry keys hold colons: the name is the whole key (its
	// scope), the value what follows '='.
	std::string npm = "npm_" + rnd(36, kAlnum, 13);
	auto npmrc =
	    scan_file("registry=http://127.0.0.1:4873/\n//127.0.0.1:4873/:_authToken=" + npm +
	              "\n//npm.example.test/:_authToken=" + pw + "\n");
	ASSERT_EQ(npmrc.size(), 2u);
	EXPECT_EQ(npmrc[0].name, "//127.0.0.1:4873/:_authToken");
	EXPECT_EQ(npmrc[0].secret.view(), npm);
	EXPECT_EQ(npmrc[1].type, "generic_secret");
	EXPECT_EQ(npmrc[1].name, "//npm.example.test/:_authToken");
	EXPECT_EQ(npmrc[1].secret.view(), pw);
}
