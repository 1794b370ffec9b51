// `keytrail run`: the agent on the real probes, its outputs and metrics,
// until stopped.
#pragma once

#include <atomic>

#include "keytrail/agent/agent.h"
#include "keytrail/output/output.h"

namespace keytrail
{

// The routes of the config's outputs (or --output), each with its format and
// record filter, in the group "outputs". Throws Error.
std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>>
configured_outputs(const Config &cfg, const AgentOptions &opts);

// The routes records take: configured_outputs() and the journal. Throws
// Error.
void open_outputs(Output &out, const Config &cfg, const AgentOptions &opts);

// Loads the probes and runs the agent until *stop is set or the duration
// elapses; reloads the config whenever *reload is set. Returns the exit
// code. Throws Error when it cannot start.
int run_agent(Config cfg, AgentOptions opts, const std::atomic<bool> &stop,
              std::atomic<bool> *reload = nullptr);

} // namespace keytrail
