// Counters declared once, the way Envoy's stats macros do it: a group is a
// list of X(name, help) entries; the struct, its JSON in `health` and
// status.json, and its Prometheus families are all derived from that list,
// so no name is ever written twice.
//
//   #define MY_COUNTERS(X) X(reads, "Files read") X(errors, "Reads that failed")
//   struct MyCounters {
//           MY_COUNTERS(KT_COUNTER_FIELD)
//           template <typename F> void each(F &&f) const { MY_COUNTERS(KT_COUNTER_VISIT) }
//   };
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#define KT_COUNTER_FIELD(name, help) uint64_t name = 0;
#define KT_COUNTER_VISIT(name, help) f(#name, help, name);

namespace keytrail
{

// {"name": value, ...} of a counter group, into `out`.
template <typename Group> void add_counters(nlohmann::json &out, const Group &g)
{
	g.each([&](const char *name, const char *, uint64_t v) { out[name] = v; });
}

template <typename Group> nlohmann::json counters_json(const Group &g)
{
	nlohmann::json j = nlohmann::json::object();
	add_counters(j, g);
	return j;
}

} // namespace keytrail
