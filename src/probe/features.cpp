#include "keytrail/probe/features.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "keytrail/util/error.h"

namespace keytrail
{

namespace
{

constexpr long kTracefsMagic = 0x74726163;
constexpr const char *kTracefs = "/sys/kernel/tracing";
constexpr const char *kDebugTracefs = "/sys/kernel/debug/tracing";

bool is_tracefs(const char *dir)
{
	struct statfs sfs;
	return statfs(dir, &sfs) == 0 && sfs.f_type == kTracefsMagic;
}

std::string read_file(const std::string &path)
{
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

bool exists(const std::string &path)
{
	struct stat st;
	return stat(path.c_str(), &st) == 0;
}

// CAP_SYS_ADMIN, or CAP_BPF + CAP_PERFMON (5.8+), in the effective set.
bool has_bpf_privileges(std::string *detail)
{
	__user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
	__user_cap_data_struct data[2]{};
	if (syscall(SYS_capget, &hdr, data) != 0) {
		*detail = std::string("capget: ") + std::strerror(errno);
		return false;
	}
	auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1; };
	constexpr int kCapSysAdmin = 21, kCapPerfmon = 38, kCapBpf = 39;
	if (has(kCapSysAdmin)) {
		*detail = geteuid() == 0 ? "root" : "CAP_SYS_ADMIN";
		return true;
	}
	if (has(kCapBpf) && has(kCapPerfmon)) {
		*detail = "CAP_BPF + CAP_PERFMON";
		return true;
	}
	*detail = "not root and lacks CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN): run as root";
	return false;
}

// Loads "r0 = 0; exit" as a tracing program bound to a BTF id and attaches
// it, which is where kernels without fentry/LSM say no (EPERM, ENOTSUPP).
bool try_btf_program(bpf_prog_type type, bpf_attach_type attach, const char *target, __u32 kind,
                     std::string *detail)
{
	btf *vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		*detail = "no vmlinux BTF";
		return false;
	}
	int id = btf__find_by_name_kind(vmlinux, target, kind);
	btf__free(vmlinux);
	if (id < 0) {
		*detail = std::string(target) + " not in BTF";
		return false;
	}
	const bpf_insn insns[] = {
	    {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
	    {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = attach,
	            .attach_btf_id = static_cast<__u32>(id));
	int fd = bpf_prog_load(type, "kt_probe", "GPL", insns, 2, &opts);
	if (fd < 0) {
		*detail = std::string("load: ") + std::strerror(errno);
		return false;
	}
	int link = type == BPF_PROG_TYPE_LSM ? bpf_link_create(fd, 0, attach, nullptr)
	                                     : bpf_raw_tracepoint_open(nullptr, fd);
	int err = errno;
	close(fd);
	if (link < 0) {
		*detail = std::string("attach: ") + std::strerror(err);
		return false;
	}
	close(link);
	*detail = std::string("attached to ") + target;
	return true;
}

Feature prog_type(const char *name, bpf_prog_type t, bool required)
{
	Feature f{name, libbpf_probe_bpf_prog_type(t, nullptr) == 1, required, ""};
	f.detail = f.available ? "program type loads" : "program type rejected by the kernel";
	return f;
}

} // namespace

std::string ensure_tracefs()
{
	if (is_tracefs(kTracefs))
		return kTracefs;
	if (is_tracefs(kDebugTracefs))
		return kDebugTracefs;
	if (mount("tracefs", kTracefs, "tracefs", 0, nullptr) == 0)
		return kTracefs;
	int err = errno;
	throw Error(std::string("tracefs is not mounted and mounting it failed (") +
	            std::strerror(err) + "); as root run: mount -t tracefs tracefs " + kTracefs);
}

namespace
{

// What the host allows: privileges, BTF, lockdown, tracefs.
void host_features(std::vector<Feature> &fs)
{
	Feature priv{"privileges", false, true, ""};
	priv.available = has_bpf_privileges(&priv.detail);
	fs.push_back(priv);

	Feature btf{"btf", exists("/sys/kernel/btf/vmlinux"), true, ""};
	btf.detail = btf.available
	                 ? "/sys/kernel/btf/vmlinux"
	                 : "no /sys/kernel/btf/vmlinux: kernel needs CONFIG_DEBUG_INFO_BTF=y";
	fs.push_back(btf);

	Feature lockdown{"lockdown", true, true, "no lockdown LSM"};
	std::string ld = read_file("/sys/kernel/security/lockdown");
	if (!ld.empty()) {
		lockdown.available = ld.find("[confidentiality]") == std::string::npos;
		lockdown.detail =
		    lockdown.available
		        ? "mode " + ld.substr(0, ld.find('\n'))
		        : "lockdown=confidentiality forbids BPF reads of kernel memory";
	}
	fs.push_back(lockdown);

	Feature tracefs{"tracefs", false, true, ""};
	try {
		bool was_mounted = is_tracefs(kTracefs) || is_tracefs(kDebugTracefs);
		std::string dir = ensure_tracefs();
		tracefs.available = true;
		tracefs.detail = was_mounted ? dir : dir + " (mounted by keytrail)";
	} catch (const Error &e) {
		tracefs.detail = e.what();
	}
	fs.push_back(tracefs);
}

// What the BPF subsystem offers, probed by loading small programs. The
// hooks KeyTrail does not need (fentry, BPF LSM) are reported, never required.
void bpf_features(std::vector<Feature> &fs, bool btf, bool tracefs)
{
	Feature tp = prog_type("tracepoint", BPF_PROG_TYPE_TRACEPOINT, true);
	if (tp.available && tracefs) {
		std::string dir = is_tracefs(kTracefs) ? kTracefs : kDebugTracefs;
		tp.available = exists(dir + "/events/syscalls/sys_enter_openat");
		tp.detail = tp.available ? "syscall tracepoints present"
		                         : "no syscalls:* tracepoints (CONFIG_FTRACE_SYSCALLS=n)";
	}
	fs.push_back(tp);
	fs.push_back(prog_type("raw_tracepoint", BPF_PROG_TYPE_RAW_TRACEPOINT, true));

	Feature rb{"ring_buffer", libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) == 1,
	           true, ""};
	rb.detail = rb.available ? "BPF_MAP_TYPE_RINGBUF" : "needs Linux 5.8+";
	fs.push_back(rb);

	Feature ts{"task_storage",
	           libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, nullptr) == 1, true, ""};
	ts.detail = ts.available ? "BPF_MAP_TYPE_TASK_STORAGE (the tracked set)"
	                         : "needs Linux 5.11+ with CONFIG_BPF_SYSCALL";
	fs.push_back(ts);

	Feature regs{
	    "task_pt_regs",
	    libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_task_pt_regs, nullptr) == 1,
	    true, ""};
	regs.detail = regs.available
	                  ? "bpf_task_pt_regs: open and read arguments read at the syscall's exit"
	                  : "needs Linux 5.15+ (bpf_task_pt_regs)";
	fs.push_back(regs);

	Feature loop{"bpf_loop",
	             libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_loop, nullptr) == 1,
	             false, ""};
	loop.detail = loop.available
	                  ? "MCP servers are tracked in the kernel at exec"
	                  : "needs 5.17+: MCP servers tracked once userspace reads their exec";
	fs.push_back(loop);

	Feature tpbtf{"tp_btf", false, true, ""};
	tpbtf.available =
	    btf && try_btf_program(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP,
	                           "btf_trace_sched_process_exec", BTF_KIND_TYPEDEF, &tpbtf.detail);
	fs.push_back(tpbtf);

	Feature fentry{"fentry", false, false, ""};
	fentry.available = btf && try_btf_program(BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY,
	                                          "vfs_read", BTF_KIND_FUNC, &fentry.detail);
	fs.push_back(fentry);

	Feature lsm{"lsm", false, false, ""};
	std::string lsms = read_file("/sys/kernel/security/lsm");
	if (lsms.find("bpf") == std::string::npos)
		lsm.detail = "bpf not in /sys/kernel/security/lsm (boot with lsm=...,bpf)";
	else
		lsm.available = try_btf_program(BPF_PROG_TYPE_LSM, BPF_LSM_MAC, "bpf_lsm_file_open",
		                                BTF_KIND_FUNC, &lsm.detail);
	fs.push_back(lsm);
}

Feature cgroup_v2()
{
	Feature cg{"cgroup_v2", false, false, ""};
	struct statfs sfs;
	constexpr long kCgroup2Magic = 0x63677270;
	if (statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == kCgroup2Magic) {
		cg.available = true;
		cg.detail = "unified at /sys/fs/cgroup";
	} else if (statfs("/sys/fs/cgroup/unified", &sfs) == 0 && sfs.f_type == kCgroup2Magic) {
		cg.available = true;
		cg.detail = "hybrid: v2 at /sys/fs/cgroup/unified";
	} else {
		cg.detail = "no cgroup v2 mount: cgroup ids will not resolve to paths";
	}
	return cg;
}

bool available(const std::vector<Feature> &fs, const std::string &name)
{
	for (const auto &f : fs)
		if (f.name == name)
			return f.available;
	return false;
}

} // namespace

std::vector<Feature> probe_features()
{
	std::vector<Feature> fs;
	host_features(fs);
	if (available(fs, "privileges"))
		bpf_features(fs, available(fs, "btf"), available(fs, "tracefs"));
	Feature kprobe{"kprobes", exists("/sys/bus/event_source/devices/kprobe/type"), false, ""};
	kprobe.detail =
	    kprobe.available ? "kprobe PMU present" : "no kprobe PMU (CONFIG_KPROBES=n)";
	fs.push_back(kprobe);
	fs.push_back(cgroup_v2());
	return fs;
}

bool agent_can_run(const std::vector<Feature> &features, std::string *reason)
{
	for (const auto &f : features) {
		if (f.required && !f.available) {
			*reason = f.name + ": " + f.detail;
			return false;
		}
	}
	return true;
}

} // namespace keytrail
