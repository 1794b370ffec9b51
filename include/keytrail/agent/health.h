// The agent's health: its counters (agent/counters.h), the kernel's, the
// correlator's and the outputs', in one `health` record; the same record in
// <state_dir>/status.json for `keytrail status`; the same counters as
// Prometheus families for /metrics; and how long events take to become
// records.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "keytrail/agent/counters.h"
#include "keytrail/output/metrics.h"
#include "keytrail/probe/control.h"

namespace keytrail
{

class Correlator;
class ProcessTable;
class SecretSources;

// Event -> secret_use/alert latency: a reservoir of samples.
class Latency
{
      public:
	void add(int64_t ns);
	nlohmann::json to_json() const; // {"samples", "p50", "p99", "max"} in ms

      private:
	std::vector<int64_t> samples_;
	uint64_t seen_ = 0;
};

// What a health record is made of; pointers may be null before start.
struct HealthParts {
	const ProbeControl *probe = nullptr;
	const Counters *counters = nullptr;
	const ProcessTable *table = nullptr;
	const SecretSources *sources = nullptr;
	const Correlator *correlator = nullptr;
	const Latency *latency = nullptr;
	std::function<nlohmann::json()> outputs; // the outputs' health, an array
};

nlohmann::json health_record(const HealthParts &parts, const std::string &host, int64_t now_ns,
                             double uptime_s, bool final);

// The keytrail_* metrics of a health record, from the same declarations
// that named its fields.
std::vector<MetricFamily> health_metrics(const nlohmann::json &health);

// <state_dir>/status.json: the latest health plus what `keytrail status`
// and the benchmark need to find this agent. Replaced atomically.
void write_status(const std::string &state_dir, const nlohmann::json &health, bool running,
                  const ProbeControl &probe);

} // namespace keytrail
