#include "keytrail/secrets/paths.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "keytrail/secrets/mcp_config.h"
#include "keytrail/util/files.h"
#include "keytrail/util/kdev.h"
#include "keytrail/util/secret_bytes.h"
#include "keytrail/util/text.h"

namespace keytrail
{

std::optional<std::string> credential_file_kind(std::string_view path,
                                                const std::vector<std::string> &extra_globs)
{
	std::string_view base = basename_of(path);
	struct Rule {
		const char *suffix;
		const char *kind;
	};
	// Suffix rules on the full path.
	static const Rule rules[] = {
	    {"/.aws/credentials", "aws_credentials"},
	    {"/.aws/config", "aws_config"},
	    {"/gcloud/application_default_credentials.json", "gcp_credentials"},
	    {"/gcloud/credentials.db", "gcp_credentials"},
	    {"/.kube/config", "kubeconfig"},
	    {"/.docker/config.json", "docker_config"},
	    {"/.netrc", "netrc"},
	    {"/_netrc", "netrc"},
	    {"/.npmrc", "npmrc"},
	    {"/.pypirc", "pypirc"},
	    {"/.git-credentials", "git_credentials"},
	    {"/.vault-token", "vault_token"},
	    {"/serviceaccount/token", "kubernetes_token"},
	    {"/.cursor/mcp.json", "mcp_client_config"},
	    {"/.vscode/mcp.json", "mcp_client_config"},
	    {"/Code/User/settings.json", "mcp_client_config"},
	    {"/Code/User/mcp.json", "mcp_client_config"},
	    {"/.codeium/windsurf/mcp_config.json", "mcp_client_config"},
	    {"/.claude.json", "mcp_client_config"},
	    {"/.gemini/settings.json", "mcp_client_config"},
	    {"/claude_desktop_config.json", "mcp_client_config"},
	};
	for (const auto &r : rules)
		if (path.ends_with(r.suffix))
			return r.kind;
	if (is_mcp_config_path(path)) // the names `scan` looks for, too
		return "mcp_client_config";
	if (contains(path, "/.azure/"))
		return "azure_credentials";
	if (contains(path, "/.ssh/") && base.substr(0, 3) == "id_" && !base.ends_with(".pub"))
		return "ssh_private_key";
	if (path.substr(0, 13) == "/run/secrets/" || path.substr(0, 17) == "/var/run/secrets/")
		return "container_secret";
	if (base.substr(0, 4) == ".env" && base != ".envrc.sample" && !base.ends_with(".example") &&
	    !base.ends_with(".sample") && !base.ends_with(".template"))
		return "dotenv";
	for (std::string_view ext : {".pem", ".key", ".p12", ".pfx"})
		if (base.ends_with(ext))
			return "key_file";
	if (base.ends_with(".json") &&
	    (contains(base, "service-account") || contains(base, "service_account") ||
	     contains(base, "credentials")))
		return "gcp_credentials";
	if (contains(base, "kubeconfig"))
		return "kubeconfig";
	std::string p(path);
	for (const auto &g : extra_globs)
		if (glob_match(g, p))
			return "configured";
	return std::nullopt;
}

std::optional<ResolvedPath> resolve_process_path(pid_t pid, int dirfd, const std::string &path,
                                                 const std::string &proc_root)
{
	std::string proc = proc_root + "/" + std::to_string(pid);
	std::string logical;
	if (!path.empty() && path[0] == '/') {
		logical = path;
	} else {
		std::string base = dirfd == AT_FDCWD
		                       ? read_link(proc + "/cwd")
		                       : read_link(proc + "/fd/" + std::to_string(dirfd));
		if (base.empty() || base[0] != '/')
			return std::nullopt;
		logical = base + "/" + path;
	}
	// Only a path with "//" or a "/." can change (most have neither).
	if (logical.find("//") != std::string::npos || logical.find("/.") != std::string::npos)
		logical = std::filesystem::path(logical).lexically_normal().string();
	return ResolvedPath{logical, proc + "/root" + logical};
}

bool read_file_checked(const std::string &path, uint64_t kdev, uint64_t ino, size_t max,
                       SecretBytes *out, int64_t *mtime_ns, uint64_t *size)
{
	out->wipe();
	struct stat st;
	int fd = open_regular_file(path, &st);
	if (fd < 0)
		return false;
	if (st.st_ino != ino || (kdev && user_dev_to_kernel(st.st_dev) != kdev)) {
		close(fd);
		return false;
	}
	*mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
	*size = st.st_size;
	std::string &buf = out->mutable_str();
	buf.resize(std::min<size_t>(st.st_size, max));
	size_t got = 0;
	while (got < buf.size()) {
		ssize_t n = read(fd, buf.data() + got, buf.size() - got);
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf.resize(got);
	return true;
}

} // namespace keytrail
