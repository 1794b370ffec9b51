#include "keytrail/identity/cgroup.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace keytrail
{

namespace
{

bool is_hex_id(std::string_view s)
{
	return s.size() >= 12 && std::all_of(s.begin(), s.end(), [](char c) {
		       return std::isxdigit(static_cast<unsigned char>(c)) &&
		              !std::isupper((unsigned char)c);
	       });
}

std::vector<std::string_view> components(std::string_view path)
{
	std::vector<std::string_view> parts;
	size_t start = 0;
	while (start <= path.size()) {
		size_t end = path.find('/', start);
		if (end == std::string_view::npos)
			end = path.size();
		if (end > start)
			parts.push_back(path.substr(start, end - start));
		start = end + 1;
	}
	return parts;
}

// "<prefix><id>.scope" -> id, for the systemd driver's scope names.
bool scoped_id(std::string_view c, std::string_view prefix, std::string *id)
{
	if (!c.starts_with(prefix) || !c.ends_with(".scope"))
		return false;
	std::string_view rest = c.substr(prefix.size(), c.size() - prefix.size() - 6);
	if (!is_hex_id(rest))
		return false;
	*id = rest;
	return true;
}

} // namespace

CgroupInfo parse_cgroup_path(std::string_view path)
{
	CgroupInfo info;
	info.path = path;
	auto parts = components(path);
	bool kube = false;
	for (size_t i = 0; i < parts.size(); i++) {
		std::string_view c = parts[i];
		std::string id;
		if (c.ends_with(".slice"))
			info.slice = c;
		if (c.ends_with(".service") || c.ends_with(".scope"))
			info.unit = c;

		// Kubernetes: "kubepods", "kubepods.slice", "kubepods-burstable.slice",
		// "burstable", "pod<uid>", "kubepods-besteffort-pod<uid_underscored>.slice".
		if (c.starts_with("kubepods"))
			kube = true;
		if (kube) {
			for (std::string_view q : {"burstable", "besteffort"})
				if (c == q ||
				    c.find("-" + std::string(q)) != std::string_view::npos)
					info.qos = q;
			size_t pod = c.rfind("pod");
			if (pod != std::string_view::npos && (pod == 0 || c[pod - 1] == '-')) {
				std::string_view uid = c.substr(pod + 3);
				if (uid.ends_with(".slice"))
					uid.remove_suffix(6);
				if (uid.size() >= 32) {
					info.pod_uid = uid;
					std::replace(info.pod_uid.begin(), info.pod_uid.end(), '_',
					             '-');
				}
			}
		}

		if (scoped_id(c, "docker-", &id)) {
			info.runtime = "docker";
			info.container_id = id;
		} else if (scoped_id(c, "cri-containerd-", &id)) {
			info.runtime = "containerd";
			info.container_id = id;
		} else if (scoped_id(c, "crio-", &id)) {
			info.runtime = "cri-o";
			info.container_id = id;
		} else if (scoped_id(c, "libpod-", &id)) {
			info.runtime = "podman";
			info.container_id = id;
		} else if (is_hex_id(c) && c.size() == 64) {
			// cgroupfs driver: the bare id under its runtime's directory.
			std::string_view parent = i > 0 ? parts[i - 1] : "";
			info.container_id = c;
			if (parent == "docker")
				info.runtime = "docker";
			else if (parent.starts_with("libpod"))
				info.runtime = "podman";
			else if (kube)
				info.runtime = "cri";
			else
				info.runtime = "unknown";
		} else if (c.starts_with("libpod-") && is_hex_id(c.substr(7))) {
			info.runtime = "podman";
			info.container_id = c.substr(7);
		}
	}
	if (kube && info.qos.empty() && !info.pod_uid.empty())
		info.qos = "guaranteed";
	return info;
}

std::string cgroup_path_from_proc(std::string_view content)
{
	std::string v2, container, systemd, first;
	size_t start = 0;
	while (start < content.size()) {
		size_t end = content.find('\n', start);
		if (end == std::string_view::npos)
			end = content.size();
		std::string_view line = content.substr(start, end - start);
		start = end + 1;
		// hierarchy-id:controllers:path
		size_t a = line.find(':');
		size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
		if (b == std::string_view::npos)
			continue;
		std::string_view hier = line.substr(0, a), ctrl = line.substr(a + 1, b - a - 1);
		std::string path(line.substr(b + 1));
		if (hier == "0" && ctrl.empty())
			v2 = path;
		else if (container.empty() && !parse_cgroup_path(path).container_id.empty())
			container = path;
		else if (ctrl == "name=systemd")
			systemd = path;
		if (first.empty())
			first = path;
	}
	// In hybrid mode the v2 path is often "/" while v1 hierarchies say more.
	if (!v2.empty() && v2 != "/")
		return v2;
	if (!container.empty())
		return container;
	if (!systemd.empty())
		return systemd;
	return !v2.empty() ? v2 : first;
}

} // namespace keytrail

#include <sys/stat.h>
#include <sys/statfs.h>

#include <filesystem>

#include "keytrail/util/mounts.h"

namespace keytrail
{

CgroupPaths::CgroupPaths(std::string root) : root_(std::move(root))
{
	if (root_.empty())
		root_ = cgroup2_root();
}

void CgroupPaths::rescan()
{
	last_scan_ = std::chrono::steady_clock::now();
	if (root_.empty())
		return;
	std::error_code ec;
	struct stat st;
	if (stat(root_.c_str(), &st) == 0)
		paths_[st.st_ino] = "/";
	namespace fs = std::filesystem;
	for (auto it = fs::recursive_directory_iterator(
	         root_, fs::directory_options::skip_permission_denied, ec);
	     !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
		if (!it->is_directory(ec))
			continue;
		if (stat(it->path().c_str(), &st) == 0)
			paths_[st.st_ino] = it->path().string().substr(root_.size());
	}
}

std::optional<std::string> CgroupPaths::path_of(uint64_t id)
{
	auto it = paths_.find(id);
	if (it != paths_.end())
		return it->second;
	// New cgroups appear all the time; rescan at most once a second.
	if (std::chrono::steady_clock::now() - last_scan_ > std::chrono::seconds(1)) {
		rescan();
		it = paths_.find(id);
		if (it != paths_.end())
			return it->second;
	}
	return std::nullopt;
}

} // namespace keytrail
