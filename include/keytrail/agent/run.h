// `keytrail run`: the agent on the real probes, its outputs and metrics,
// until stopped.
#pragma once

#include <atomic>

#include "keytrail/agent/agent.h"
#include "keytrail/output/output.h"

namespace keytrail
{

// The routes records take: the config's outputs (or --output), each with
// its format and record filter, and the journal. Throws Error.
void open_outputs(Output &out, const Config &cfg, const AgentOptions &opts);

// Loads the probes and runs the agent until *stop is set or the duration
// elapses; reloads the config whenever *reload is set. Returns the exit
// code. Throws Error when it cannot start.
int run_agent(Config cfg, AgentOptions opts, const std::atomic<bool> &stop,
              std::atomic<bool> *reload = nullptr);

} // namespace keytrail
