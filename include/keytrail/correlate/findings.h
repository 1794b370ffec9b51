// Findings: what an analyst acts on. One finding per (rule, credential[,
// workload or place]); it is opened once (an `alert` record) and then
// updated (an `update` record) when something new joins it: another holder,
// another upstream, another stale reason, another loss window. A repeat
// that adds nothing is counted, and reported again only after
// correlate.dedupe_window. Its id is derived from what it is about, never
// from time, so the same finding has the same id in every record, after a
// restart, and (for fleet findings) on every host.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keytrail/schema/finding.h"

namespace keytrail
{

// What to do with one occurrence of a finding.
enum class Occurrence {
	kNew,        // never seen: an alert
	kNewFacet,   // something new joined it: an update
	kStillThere, // nothing new, but not reported for a dedupe window: an update
	kRepeat,     // nothing new, reported recently: counted only
};

class FindingBook
{
      public:
	// Findings kept; beyond, the least recently seen eighth is forgotten
	// (a finding that comes back after that is raised again).
	static constexpr size_t kMaxFindings = 65536;

	explicit FindingBook(std::string scope) : scope_(std::move(scope)) {}

	// Findings a previous run left (the ledger): their repeats are not new.
	void load(std::vector<FindingState> known);
	// Records one occurrence and says what it is; *state is the finding.
	Occurrence occur(const std::string &rule, const std::string &key, const std::string &facet,
	                 int64_t now_ns, int64_t window_ns, FindingState **state,
	                 bool roll_facets = false);
	// A report was written (or withheld by the rate limit: not written).
	void reported(FindingState &f, int64_t now_ns) { f.reported_ns = now_ns; }
	size_t size() const { return book_.size(); }
	const std::string &scope() const { return scope_; }

      private:
	void evict();

	std::string scope_;
	std::map<std::pair<std::string, std::string>, FindingState> book_; // (rule, key)
};

} // namespace keytrail
