#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "keytrail/secrets/paths.h"
#include "keytrail/util/kdev.h"
#include "keytrail/util/secret_bytes.h"

using namespace keytrail;

TEST(CredentialPaths, WellKnownLocations)
{
	EXPECT_EQ(credential_file_kind("/home/a/.aws/credentials"), "aws_credentials");
	EXPECT_EQ(credential_file_kind("/root/.config/gcloud/application_default_credentials.json"),
	          "gcp_credentials");
	EXPECT_EQ(credential_file_kind("/home/a/.kube/config"), "kubeconfig");
	EXPECT_EQ(credential_file_kind("/home/a/.docker/config.json"), "docker_config");
	EXPECT_EQ(credential_file_kind("/home/a/.netrc"), "netrc");
	EXPECT_EQ(credential_file_kind("/home/a/.npmrc"), "npmrc");
	EXPECT_EQ(credential_file_kind("/home/a/.pypirc"), "pypirc");
	EXPECT_EQ(credential_file_kind("/home/a/.git-credentials"), "git_credentials");
	EXPECT_EQ(credential_file_kind("/home/a/.ssh/id_ed25519"), "ssh_private_key");
	EXPECT_EQ(credential_file_kind("/srv/tls/server.key"), "key_file");
	EXPECT_EQ(credential_file_kind("/srv/app/.env.production"), "dotenv");
	EXPECT_EQ(credential_file_kind("/root/.vault-token"), "vault_token");
	EXPECT_EQ(credential_file_kind("/var/run/secrets/kubernetes.io/serviceaccount/token"),
	          "kubernetes_token");
	EXPECT_EQ(credential_file_kind("/run/secrets/db_password"), "container_secret");
	EXPECT_EQ(credential_file_kind("/home/a/.cursor/mcp.json"), "mcp_client_config");
	// The names scan looks for: a project's .mcp.json, Zed's settings.
	EXPECT_EQ(credential_file_kind("/srv/app/.mcp.json"), "mcp_client_config");
	EXPECT_EQ(credential_file_kind("/home/a/.config/zed/settings.json"), "mcp_client_config");
	EXPECT_EQ(credential_file_kind("/home/a/.config/Claude/claude_desktop_config.json"),
	          "mcp_client_config");
	EXPECT_EQ(credential_file_kind("/home/a/.azure/msal_token_cache.json"),
	          "azure_credentials");
	EXPECT_EQ(credential_file_kind("/opt/app/conf/db.secret", {"/opt/app/conf/*.secret"}),
	          "configured");
}

TEST(CredentialPaths, NotCredentials)
{
	EXPECT_FALSE(credential_file_kind("/home/a/.ssh/id_ed25519.pub"));
	EXPECT_FALSE(credential_file_kind("/home/a/.ssh/known_hosts"));
	EXPECT_FALSE(credential_file_kind("/srv/app/.env.example"));
	EXPECT_FALSE(credential_file_kind("/usr/lib/node_modules/x/index.js"));
	EXPECT_FALSE(credential_file_kind("/etc/hostname"));
}

TEST(ProcessPaths, RelativeToCwdAndDirfdInsideTheProcessRoot)
{
	auto abs = resolve_process_path(getpid(), AT_FDCWD, "/etc/../etc/hostname");
	ASSERT_TRUE(abs);
	EXPECT_EQ(abs->logical, "/etc/hostname");
	EXPECT_EQ(abs->access, "/proc/" + std::to_string(getpid()) + "/root/etc/hostname");

	char cwd[4096];
	ASSERT_TRUE(getcwd(cwd, sizeof(cwd)));
	auto rel = resolve_process_path(getpid(), AT_FDCWD, "./a/../b.txt");
	ASSERT_TRUE(rel);
	EXPECT_EQ(rel->logical, std::string(cwd) + "/b.txt");

	int dfd = open("/usr", O_RDONLY | O_DIRECTORY);
	auto viafd = resolve_process_path(getpid(), dfd, "lib/os-release");
	close(dfd);
	ASSERT_TRUE(viafd);
	EXPECT_EQ(viafd->logical, "/usr/lib/os-release");
	EXPECT_FALSE(resolve_process_path(0x7FFFFFF0, AT_FDCWD, "rel"));
}

TEST(ProcessPaths, ReadChecksTheInode)
{
	char d[] = "/tmp/kt-rd-XXXXXX";
	std::string f = std::string(mkdtemp(d)) + "/x";
	std::ofstream(f) << "0123456789";
	struct stat st;
	stat(f.c_str(), &st);
	SecretBytes out;
	int64_t mtime;
	uint64_t size;
	ASSERT_TRUE(
	    read_file_checked(f, user_dev_to_kernel(st.st_dev), st.st_ino, 4, &out, &mtime, &size));
	EXPECT_EQ(out.view(), "0123");
	EXPECT_EQ(size, 10u);
	EXPECT_FALSE(
	    read_file_checked(f, 0, st.st_ino + 1, 100, &out, &mtime, &size)); // replaced file
	EXPECT_TRUE(out.empty());
}
