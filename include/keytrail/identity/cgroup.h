// What a cgroup path says about a workload: container runtime and id,
// Kubernetes pod and QoS class, systemd unit and slice. Pure string parsing
// of the shapes each runtime writes (cgroupfs and systemd drivers alike).
#pragma once

#include <string>
#include <string_view>

namespace keytrail {

struct CgroupInfo {
	std::string path;          // as in /proc/PID/cgroup
	std::string runtime;       // docker, containerd, cri-o, podman, cri (k8s, runtime not named)
	std::string container_id;  // full id as the path shows it
	std::string pod_uid;       // Kubernetes pod UID, dashed form
	std::string qos;           // guaranteed, burstable, besteffort
	std::string unit;          // innermost systemd unit (*.service, *.scope)
	std::string slice;         // innermost systemd slice (*.slice)
};

CgroupInfo parse_cgroup_path(std::string_view path);

// The path to use from /proc/PID/cgroup's content: the v2 line ("0::/…"),
// else the v1 hierarchy that names a container, else name=systemd, else the
// first line. Empty when there is none.
std::string cgroup_path_from_proc(std::string_view content);

}  // namespace keytrail
