// A finding as every part of KeyTrail knows it: the correlator keeps them,
// the ledger stores them across restarts, outputs carry their ids.
// correlate/findings.h says how they open and update.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keytrail
{

struct FindingState {
	std::string id, rule, key;
	int64_t first_ns = 0, last_ns = 0; // first and latest occurrence
	int64_t reported_ns = 0;           // latest record written about it
	uint64_t count = 0;                // occurrences, written or not
	std::vector<std::string> facets;   // what it has named so far
};

// 32 hex digits: the first 16 bytes of SHA-256 over scope, rule and key.
// scope is the host name for a host's findings ("fleet" for the fleet's):
// never time, so a finding has the same id in every record and every run.
std::string finding_id(const std::string &scope, const std::string &rule, const std::string &key);

} // namespace keytrail
