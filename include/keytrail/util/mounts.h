// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified),
// /sys/fs/cgroup/unified (hybrid), or wherever /proc/self/mountinfo says.
// "" when there is none.
#pragma once

#include <string>

namespace keytrail
{

std::string cgroup2_root();

} // namespace keytrail
