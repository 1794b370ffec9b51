#include "keytrail/util/mounts.h"

#include <sys/vfs.h>

#include <fstream>
#include <sstream>

namespace keytrail
{

namespace
{
constexpr long kCgroup2Magic = 0x63677270;
bool is_cgroup2(const std::string &dir)
{
	struct statfs s;
	return statfs(dir.c_str(), &s) == 0 && s.f_type == kCgroup2Magic;
}
} // namespace

std::string cgroup2_root()
{
	for (const char *d : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"})
		if (is_cgroup2(d))
			return d;
	// mountinfo: ... mount-point ... - fstype source options
	std::ifstream in("/proc/self/mountinfo");
	for (std::string line; std::getline(in, line);) {
		size_t dash = line.find(" - ");
		if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0)
			continue;
		std::istringstream f(line.substr(0, dash));
		std::string id, parent, dev, root, mount;
		if (f >> id >> parent >> dev >> root >> mount && is_cgroup2(mount))
			return mount;
	}
	return "";
}

} // namespace keytrail
