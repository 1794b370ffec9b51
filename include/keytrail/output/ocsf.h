// Alerts as OCSF 1.1 Detection Finding objects (class_uid 2004), for SIEMs
// that ingest OCSF. Fields KeyTrail has no OCSF place for (the fingerprint,
// the identity) go under `unmapped`.
#pragma once

#include <nlohmann/json.hpp>

namespace keytrail
{

nlohmann::json to_ocsf(const nlohmann::json &alert);

} // namespace keytrail
