#include <gtest/gtest.h>

#include "keytrail/identity/cgroup.h"

using namespace keytrail;

namespace
{
const std::string kId = "4b825dc642cb6eb9a060e54bf8d69288fbee4904e1f0b3e6b4c9e2f8a6d3c201";
const std::string kPod = "7c3a5b1e-9d2f-4e8a-b6c1-0f5d3e2a1b9c";
std::string underscored(std::string s)
{
	for (char &c : s)
		if (c == '-')
			c = '_';
	return s;
}
} // namespace

TEST(Cgroup, DockerCgroupfsAndSystemdDrivers)
{
	auto a = parse_cgroup_path("/docker/" + kId);
	EXPECT_EQ(a.runtime, "docker");
	EXPECT_EQ(a.container_id, kId);
	auto b = parse_cgroup_path("/system.slice/docker-" + kId + ".scope");
	EXPECT_EQ(b.runtime, "docker");
	EXPECT_EQ(b.container_id, kId);
	EXPECT_EQ(b.unit, "docker-" + kId + ".scope");
	EXPECT_EQ(b.slice, "system.slice");
}

TEST(Cgroup, KubernetesContainerdSystemd)
{
	std::string p = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
	                underscored(kPod) + ".slice/cri-containerd-" + kId + ".scope";
	auto c = parse_cgroup_path(p);
	EXPECT_EQ(c.runtime, "containerd");
	EXPECT_EQ(c.container_id, kId);
	EXPECT_EQ(c.pod_uid, kPod);
	EXPECT_EQ(c.qos, "burstable");
	EXPECT_EQ(c.slice, "kubepods-burstable-pod" + underscored(kPod) + ".slice");
}

TEST(Cgroup, KubernetesCgroupfsAndGuaranteed)
{
	auto c = parse_cgroup_path("/kubepods/besteffort/pod" + kPod + "/" + kId);
	EXPECT_EQ(c.runtime, "cri");
	EXPECT_EQ(c.pod_uid, kPod);
	EXPECT_EQ(c.qos, "besteffort");
	EXPECT_EQ(c.container_id, kId);
	auto g = parse_cgroup_path("/kubepods.slice/kubepods-pod" + underscored(kPod) +
	                           ".slice/crio-" + kId + ".scope");
	EXPECT_EQ(g.runtime, "cri-o");
	EXPECT_EQ(g.qos, "guaranteed");
	EXPECT_EQ(g.pod_uid, kPod);
}

TEST(Cgroup, PodmanBothDrivers)
{
	auto a = parse_cgroup_path("/machine.slice/libpod-" + kId + ".scope/container");
	EXPECT_EQ(a.runtime, "podman");
	EXPECT_EQ(a.container_id, kId);
	auto b = parse_cgroup_path("/libpod_parent/libpod-" + kId);
	EXPECT_EQ(b.runtime, "podman");
	EXPECT_EQ(b.container_id, kId);
	// conmon, the monitor, is not the container.
	EXPECT_EQ(parse_cgroup_path("/machine.slice/libpod-conmon-" + kId + ".scope").container_id,
	          "");
}

TEST(Cgroup, SystemdServicesAndUserSessions)
{
	auto s = parse_cgroup_path("/system.slice/mcp-gitlab.service");
	EXPECT_EQ(s.unit, "mcp-gitlab.service");
	EXPECT_EQ(s.slice, "system.slice");
	EXPECT_EQ(s.container_id, "");
	auto u = parse_cgroup_path("/user.slice/user-1000.slice/session-3.scope");
	EXPECT_EQ(u.unit, "session-3.scope");
	EXPECT_EQ(u.slice, "user-1000.slice");
	auto app = parse_cgroup_path(
	    "/user.slice/user-1000.slice/user@1000.service/app.slice/app-code-1234.scope");
	EXPECT_EQ(app.unit, "app-code-1234.scope");
	EXPECT_EQ(app.slice, "app.slice");
	EXPECT_EQ(parse_cgroup_path("/").unit, "");
}

TEST(Cgroup, ProcFileHybridAndV2)
{
	EXPECT_EQ(cgroup_path_from_proc("0::/system.slice/sshd.service\n"),
	          "/system.slice/sshd.service");
	std::string hybrid =
	    "12:pids:/docker/" + kId + "\n1:name=systemd:/docker/" + kId + "\n0::/\n";
	EXPECT_EQ(cgroup_path_from_proc(hybrid), "/docker/" + kId);
	EXPECT_EQ(cgroup_path_from_proc("1:name=systemd:/user.slice\n0::/\n"), "/user.slice");
	EXPECT_EQ(cgroup_path_from_proc("0::/\n"), "/");
	EXPECT_EQ(cgroup_path_from_proc(""), "");
	EXPECT_EQ(cgroup_path_from_proc("garbage without colons\n"), "");
}
