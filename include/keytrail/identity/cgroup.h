// What a cgroup path says about a workload: container runtime and id,
// Kubernetes pod and QoS class, systemd unit and slice. Pure string parsing
// of the shapes each runtime writes (cgroupfs and systemd drivers alike).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace keytrail
{

struct CgroupInfo {
	std::string path;         // as in /proc/PID/cgroup
	std::string runtime;      // docker, containerd, cri-o, podman, cri (k8s, runtime not named)
	std::string container_id; // full id as the path shows it
	std::string pod_uid;      // Kubernetes pod UID, dashed form
	std::string qos;          // guaranteed, burstable, besteffort
	std::string unit;         // innermost systemd unit (*.service, *.scope)
	std::string slice;        // innermost systemd slice (*.slice)
};

CgroupInfo parse_cgroup_path(std::string_view path);

// The path to use from /proc/PID/cgroup's content: the v2 line ("0::/…"),
// else the v1 hierarchy that names a container, else name=systemd, else the
// first line. Empty when there is none.
std::string cgroup_path_from_proc(std::string_view content);

} // namespace keytrail

namespace keytrail
{

// cgroup v2 id (what bpf_get_current_cgroup_id() returns: the kernfs inode
// of the cgroup's directory) -> path, by walking the v2 mount. Lets a process
// that exited before /proc could be read still be placed in its cgroup.
class CgroupPaths
{
      public:
	explicit CgroupPaths(std::string root = ""); // "" = find the v2 mount
	std::optional<std::string> path_of(uint64_t id);
	const std::string &root() const { return root_; }

      private:
	void rescan();
	std::string root_;
	std::unordered_map<uint64_t, std::string> paths_;
	std::chrono::steady_clock::time_point last_scan_{};
};

} // namespace keytrail
