// What this kernel offers, for `keytrail check` and for the loader's choice
// of hooks. Every probe is non-fatal: a missing feature is reported with its
// reason, never an abort.
#pragma once

#include <string>
#include <vector>

namespace keytrail
{

struct Feature {
	std::string name;
	bool available = false;
	bool required = false; // the agent cannot run without it
	std::string detail;    // why not, or what was found
};

// Mounts tracefs at /sys/kernel/tracing when no tracefs is mounted. Returns
// the tracefs directory in use, or throws Error with what to do.
std::string ensure_tracefs();

std::vector<Feature> probe_features();

// True when every required feature is available; *reason names the first
// one that is not.
bool agent_can_run(const std::vector<Feature> &features, std::string *reason);

} // namespace keytrail
