#include "keytrail/probe/control.h"

#include "keytrail/probe/events.h"

namespace keytrail
{

uint64_t KernelStats::drops() const
{
	uint64_t n = 0;
	for (uint32_t t = 0; t < KT_EV_MAX; t++)
		n += v[KT_STAT_DROP_BASE + t];
	return n;
}

const std::vector<KernelStatInfo> &kernel_stat_info()
{
	static const std::vector<KernelStatInfo> info = {
	    {KT_STAT_READ_FAIL, "read_failures", "Memory the probes could not read."},
	    {KT_STAT_PENDING_FULL, "pending_map_full",
	     "Events not followed because a helper map was full."},
	    {KT_STAT_PATH_TRUNCATED, "truncated", "Paths, argv or environ cut at their bound."},
	    {KT_STAT_TRACK_FAIL, "track_failures", "Processes the kernel could not mark tracked."},
	    {KT_STAT_TRACK_BUSY, "track_lock_busy",
	     "Tracked checks answered by the tgid set while task storage was locked."},
	    {KT_STAT_STDIO_CUT, "stdio_cut",
	     "Stdio MCP captures cut to their first and last bytes (the middle not sent)."},
	};
	return info;
}

nlohmann::json KernelStats::to_json() const
{
	nlohmann::json drops_by_type = nlohmann::json::object();
	for (uint32_t t = 1; t < KT_EV_MAX; t++)
		drops_by_type[event_type_name(t)] = drops_of(t);
	nlohmann::json j = {
	    {"events", events()}, {"drops", drops()}, {"drops_by_type", drops_by_type}};
	for (const auto &s : kernel_stat_info())
		j[s.name] = v[s.stat];
	return j;
}

} // namespace keytrail
