// `keytrail status`: what the agent last reported in <state_dir>/status.json,
// whether it is still running, and what the ledger knows.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace keytrail
{

// The status as JSON: the agent's last health record plus `running` (checked
// now, not as written), `status_age_seconds`, `events_per_second` (over the
// agent's uptime) and `secrets_known` (ledger). Throws Error when there is
// no status file (the agent never ran with this state dir).
nlohmann::json read_status(const std::string &state_dir);
// A screenful for a person.
std::string status_text(const nlohmann::json &st);

} // namespace keytrail
