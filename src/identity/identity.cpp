#include "keytrail/identity/identity.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "keytrail/identity/cgroup.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

std::optional<std::string> read_text(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		return std::nullopt;
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

// The short readable part of an id: "node", "server-gitlab".
std::string id_segment(const std::string &s)
{
	std::string out;
	for (char c : s)
		out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
		        c == '.')
		           ? c
		           : '_';
	return out.empty() ? "unknown" : out;
}

} // namespace

nlohmann::json Identity::to_json() const
{
	nlohmann::json j;
	j["id"] = id;
	nlohmann::json sel = nlohmann::json::object();
	for (const auto &[k, v] : selectors)
		sel[k] = sanitize_utf8(v);
	j["selectors"] = sel;
	if (!unresolved.empty())
		j["unresolved"] = unresolved;
	return j;
}

std::string stdio_transport(uint32_t pid, uint32_t ppid, const std::string &proc_root)
{
	std::string fd0 = read_link(proc_root + "/" + std::to_string(pid) + "/fd/0");
	std::string fd1 = read_link(proc_root + "/" + std::to_string(pid) + "/fd/1");
	auto is_channel = [](const std::string &l) {
		return l.rfind("pipe:[", 0) == 0 || l.rfind("socket:[", 0) == 0;
	};
	if (!is_channel(fd0) || !is_channel(fd1) || ppid == 0)
		return "unknown";
	// The parent holds the other ends: some fd of it names a pipe of ours
	// (for pipes, both ends share the inode; for socketpairs we accept a
	// parent that holds sockets, since the peer inode is not in /proc).
	std::string dir = proc_root + "/" + std::to_string(ppid) + "/fd";
	bool sockets = fd0.rfind("socket:[", 0) == 0;
	DIR *d = opendir(dir.c_str());
	if (!d)
		return "unknown";
	std::string found = "unknown";
	while (dirent *e = readdir(d)) {
		if (e->d_name[0] == '.')
			continue;
		std::string l = read_link(dir + "/" + e->d_name);
		if (l == fd0 || l == fd1 || (sockets && l.rfind("socket:[", 0) == 0)) {
			found = "stdio";
			break;
		}
	}
	closedir(d);
	return found;
}

WorkloadFacts gather_facts(uint32_t pid, uint32_t ppid, const std::string &proc_root)
{
	WorkloadFacts f;
	f.pid = pid;
	std::string dir = proc_root + "/" + std::to_string(pid);
	f.exe = read_link(dir + "/exe");
	f.cwd = read_link(dir + "/cwd");
	if (auto cg = read_text(dir + "/cgroup"))
		f.cgroup_path = cgroup_path_from_proc(*cg);
	f.transport = stdio_transport(pid, ppid, proc_root);
	return f;
}

IdentityResolver::IdentityResolver(std::string host, std::string trust_domain,
                                   std::vector<IdentityRule> rules,
                                   std::vector<EnvironmentRule> environments)
    : host_(std::move(host)), trust_domain_(std::move(trust_domain)), rules_(std::move(rules)),
      environments_(std::move(environments))
{
}

std::string IdentityResolver::user_name(uint32_t uid)
{
	auto it = users_.find(uid);
	if (it != users_.end())
		return it->second;
	passwd pw{}, *res = nullptr;
	char buf[4096];
	std::string name = getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res
	                       ? pw.pw_name
	                       : std::to_string(uid);
	return users_[uid] = name;
}

std::string IdentityResolver::group_name(uint32_t gid)
{
	auto it = groups_.find(gid);
	if (it != groups_.end())
		return it->second;
	group gr{}, *res = nullptr;
	char buf[4096];
	std::string name = getgrgid_r(gid, &gr, buf, sizeof(buf), &res) == 0 && res
	                       ? gr.gr_name
	                       : std::to_string(gid);
	return groups_[gid] = name;
}

std::optional<std::string> IdentityResolver::exe_sha256(uint32_t pid, const std::string &proc_root)
{
	int fd =
	    open((proc_root + "/" + std::to_string(pid) + "/exe").c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return std::nullopt;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return std::nullopt;
	}
	auto key = std::make_tuple(
	    static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
	    static_cast<int64_t>(st.st_size),
	    static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
	auto it = hashes_.find(key);
	if (it != hashes_.end()) {
		close(fd);
		return it->second;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
	std::vector<char> buf(1 << 16);
	ssize_t n;
	while ((n = read(fd, buf.data(), buf.size())) > 0)
		EVP_DigestUpdate(ctx, buf.data(), n);
	close(fd);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	if (n < 0)
		return std::nullopt;
	std::string hex;
	char two[3];
	for (unsigned i = 0; i < len; i++) {
		std::snprintf(two, sizeof(two), "%02x", md[i]);
		hex += two;
	}
	return hashes_[key] = hex;
}

std::string IdentityResolver::expand(const std::string &tmpl, const Selectors &s)
{
	std::string out;
	size_t pos = 0;
	while (pos < tmpl.size()) {
		size_t open_b = tmpl.find('{', pos);
		if (open_b == std::string::npos) {
			out += tmpl.substr(pos);
			break;
		}
		size_t close_b = tmpl.find('}', open_b);
		if (close_b == std::string::npos) {
			out += tmpl.substr(pos);
			break;
		}
		out += tmpl.substr(pos, open_b - pos);
		auto it = s.find(tmpl.substr(open_b + 1, close_b - open_b - 1));
		out += it != s.end() && !it->second.empty() ? id_segment(it->second) : "unknown";
		pos = close_b + 1;
	}
	return out;
}

bool IdentityResolver::matches(const SelectorMatch &m, const Selectors &s)
{
	// A selector the process lacks matches only an explicit "" (SPIRE-like:
	// "*" means "present, any value").
	for (const auto &[key, pattern] : m) {
		auto it = s.find(key);
		if (it == s.end() || it->second.empty() ? !pattern.empty()
		                                        : !glob_match(pattern, it->second))
			return false;
	}
	return true;
}

namespace
{
bool names_process(const IdentityRule &r)
{
	for (const auto &[key, pattern] : r.match)
		if (key == "unix.exe" || key == "unix.sha256")
			return true;
	return false;
}
} // namespace

bool IdentityResolver::has_process_rules() const
{
	for (const auto &r : rules_)
		if (names_process(r))
			return true;
	return false;
}

Identity IdentityResolver::resolve(const WorkloadFacts &f)
{
	Identity id;
	Selectors &s = id.selectors;
	s["host"] = host_;
	s["unix.uid"] = std::to_string(f.uid);
	s["unix.gid"] = std::to_string(f.gid);
	s["unix.user"] = user_name(f.uid);
	s["unix.group"] = group_name(f.gid);
	if (!f.exe.empty())
		s["unix.exe"] = f.exe;
	else
		id.unresolved.push_back("unix.exe");
	if (f.exe_sha256)
		s["unix.sha256"] = *f.exe_sha256;
	if (f.cgroup_path) {
		CgroupInfo cg = parse_cgroup_path(*f.cgroup_path);
		s["cgroup.path"] = cg.path;
		auto put = [&](const char *k, const std::string &v) {
			if (!v.empty())
				s[k] = v;
		};
		put("cgroup.runtime", cg.runtime);
		put("cgroup.container_id", cg.container_id);
		put("k8s.pod_uid", cg.pod_uid);
		put("k8s.qos", cg.qos);
		put("systemd.unit", cg.unit);
		put("systemd.slice", cg.slice);
	} else {
		id.unresolved.push_back("cgroup");
	}
	if (!f.mcp_server.empty())
		s["mcp.server"] = f.mcp_server;
	if (!f.mcp_client.empty())
		s["mcp.client"] = f.mcp_client;
	s["mcp.transport"] = f.transport;
	if (!f.cwd.empty())
		s["mcp.cwd"] = f.cwd;

	for (const auto &e : environments_)
		if (matches(e.match, s)) {
			s["env"] = e.name;
			break;
		}
	for (const auto &r : rules_)
		if (matches(r.match, s)) {
			id.id = expand(r.id, s);
			id.names_process = names_process(r);
			return id;
		}
	// Default: stable across restarts of one workload (no pid, no time),
	// different for a different server, user or container.
	// "@modelcontextprotocol/server-github" -> "modelcontextprotocol.server-github",
	// "mcp/github" -> "mcp.github": the scope kept, readable in a URI.
	std::string who = !f.mcp_server.empty() ? f.mcp_server : std::string(basename_of(f.exe));
	if (who.starts_with("@"))
		who.erase(0, 1);
	std::replace(who.begin(), who.end(), '/', '.');
	id.id = "spiffe://" + trust_domain_ + "/" + id_segment(host_) + "/" + id_segment(who) +
	        "/" + id_segment(s["unix.user"]);
	if (s.count("cgroup.container_id"))
		id.id += "/" + s["cgroup.container_id"].substr(0, 12);
	return id;
}

} // namespace keytrail
