#include "keytrail/correlate/findings.h"

#include <algorithm>

namespace keytrail
{

namespace
{

// Facets kept per finding, at most: a credential held by thousands of
// workloads is one finding with a long list, not an unbounded one.
constexpr size_t kMaxFacets = 256;

} // namespace

void FindingBook::load(std::vector<FindingState> known)
{
	for (auto &f : known) {
		auto key = std::make_pair(f.rule, f.key);
		book_[key] = std::move(f);
	}
	while (book_.size() > kMaxFindings)
		evict();
}

void FindingBook::evict()
{
	std::vector<int64_t> seen;
	seen.reserve(book_.size());
	for (const auto &[k, f] : book_)
		seen.push_back(f.last_ns);
	size_t n = std::max<size_t>(1, book_.size() / 8);
	std::nth_element(seen.begin(), seen.begin() + (n - 1), seen.end());
	int64_t cutoff = seen[n - 1];
	for (auto it = book_.begin(); it != book_.end() && n;) {
		if (it->second.last_ns <= cutoff) {
			it = book_.erase(it);
			n--;
		} else {
			++it;
		}
	}
}

Occurrence FindingBook::occur(const std::string &rule, const std::string &key,
                              const std::string &facet, int64_t now, int64_t window,
                              FindingState **state, bool roll_facets)
{
	if (book_.size() >= kMaxFindings && !book_.count({rule, key}))
		evict();
	auto [it, fresh] = book_.try_emplace(std::make_pair(rule, key));
	FindingState &f = it->second;
	*state = &f;
	f.count++;
	if (fresh) {
		f.id = finding_id(scope_, rule, key);
		f.rule = rule;
		f.key = key;
		f.first_ns = f.last_ns = now;
		if (!facet.empty())
			f.facets.push_back(facet);
		return Occurrence::kNew;
	}
	f.last_ns = std::max(f.last_ns, now);
	if (!facet.empty() && (f.facets.size() < kMaxFacets || roll_facets) &&
	    std::find(f.facets.begin(), f.facets.end(), facet) == f.facets.end()) {
		// Facets that are windows of time (monitor_degraded) never recur:
		// the newest kMaxFacets are kept, so every new one is an update.
		if (f.facets.size() >= kMaxFacets)
			f.facets.erase(f.facets.begin());
		f.facets.push_back(facet);
		return Occurrence::kNewFacet;
	}
	int64_t since;
	if (__builtin_sub_overflow(now, f.reported_ns, &since))
		since = now < f.reported_ns ? INT64_MIN : INT64_MAX;
	return since >= window ? Occurrence::kStillThere : Occurrence::kRepeat;
}

} // namespace keytrail
