// The agent's counters, declared once (util/counters.h): `health`,
// status.json and the keytrail_<group>_<name>_total metrics all come from
// these lists.
#pragma once

#include <array>
#include <cstdint>

#include "keytrail/abi.h"
#include "keytrail/util/counters.h"

namespace keytrail
{

#define KT_AGENT_COUNTERS(X)                                                                       \
	X(records, "Kernel records decoded.")                                                      \
	X(decode_errors, "Kernel records that could not be decoded.")                              \
	X(attribution_failures, "Events whose process could not be resolved.")                     \
	X(exec_hint_hits, "Execs the kernel's name hint tracked that the rules confirmed.")        \
	X(exec_hint_misses, "Execs the kernel's name hint tracked that the rules rejected.")       \
	X(identities_resolved, "Workload identities resolved.")                                    \
	X(identities_degraded, "Identities resolved with a selector group unreadable.")            \
	X(late_payloads, "First writes whose connect was no longer held.")                         \
	X(fd_states_swept, "Read counters of vanished processes dropped from the kernel.")         \
	X(fd_checks_unknown, "Checks of a tracked open fd /proc could not answer (its close is "   \
	                     "seen at exit or when its number is reused).")                        \
	X(exits_missed, "Processes retired without their exit record (it was dropped).")           \
	X(marks_restored, "Execs of a tracked process the kernel saw as untracked (mark "          \
	                  "restored).")                                                            \
	X(stdio_servers,                                                                           \
	  "Processes marked for stdio MCP capture (they read their server's pipe).")               \
	X(mcp_messages, "JSON-RPC messages framed from stdio captures.")                           \
	X(mcp_partial, "JSON-RPC messages framed with bytes missing in the middle.")               \
	X(mcp_unparsable, "JSON-RPC messages nothing could be read from.")                         \
	X(mcp_streams, "Stdio streams (process and direction) being framed.")

#define KT_SECRET_COUNTERS(X)                                                                      \
	X(obtained, "Credential sightings.")                                                       \
	X(environ_unreadable, "Environments that could not be read.")                              \
	X(held_fd_files,                                                                           \
	  "Credential files found among fds a process held before it was followed.")               \
	X(rotations, "Credentials that replaced another in its slot.")                             \
	X(ledger_errors, "Ledger commits that failed.")

#define KT_CONFIG_COUNTERS(X)                                                                      \
	X(reloads, "Config reloads applied.")                                                      \
	X(reload_errors, "Config reloads refused.")

struct AgentCounters {
	KT_AGENT_COUNTERS(KT_COUNTER_FIELD)
	std::array<uint64_t, KT_EV_MAX> records_by_type{}; // by kt_event_type
	template <typename F> void each(F &&f) const { KT_AGENT_COUNTERS(KT_COUNTER_VISIT) }
};

struct SecretCounters {
	KT_SECRET_COUNTERS(KT_COUNTER_FIELD)
	template <typename F> void each(F &&f) const { KT_SECRET_COUNTERS(KT_COUNTER_VISIT) }
};

struct ConfigCounters {
	KT_CONFIG_COUNTERS(KT_COUNTER_FIELD)
	template <typename F> void each(F &&f) const { KT_CONFIG_COUNTERS(KT_COUNTER_VISIT) }
};

struct Counters {
	AgentCounters agent;
	SecretCounters secrets;
	ConfigCounters config;
};

} // namespace keytrail
