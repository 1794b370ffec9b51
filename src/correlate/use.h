// A connect on its way to becoming secret uses, shared by uses.cpp and
// tool_calls.cpp; not part of the correlator's interface.
#pragma once

#include <string>

#include "keytrail/correlate/correlator.h"
#include "upstream.h"

namespace keytrail
{

// A connect and what the correlator has worked out about it so far.
struct Correlator::Use {
	const ConnectSeen &e;
	Proc &p;
	correlate_detail::UpstreamOf up;
	uint64_t up_hash = 0; // the upstream (as records name it) and port
	std::string up_key;   // "name:port", built on first need
	nlohmann::json mcp;   // the tool call in flight ({tool_call: ...}), or null

	const std::string &key()
	{
		if (up_key.empty())
			up_key = up.key();
		return up_key;
	}
	// A secret_use record without its credential part.
	Record record(const Correlator &c, const char *pairing, uint64_t repeats) const
	{
		Record rec{c.base("secret_use", e.time_ns), {}};
		rec.fields["pairing"] = pairing;
		rec.fields["upstream"] = up.json();
		if (repeats)
			rec.fields["repeats"] = repeats;
		if (!mcp.is_null())
			rec.fields["mcp"] = mcp;
		c.add_process_raw(p, rec);
		return rec;
	}
};

} // namespace keytrail
