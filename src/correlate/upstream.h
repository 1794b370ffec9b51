// What a connect reached, as records name it and as the policy checks it:
// the name it goes by (a proxy's target, the TLS SNI, the HTTP Host, else
// the address), whether that name is trusted, and whether it is an upstream
// at all. Part of the correlator, not of its interface.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "keytrail/config/config.h"
#include "keytrail/correlate/inputs.h"

namespace keytrail::correlate_detail
{

// Why a connect is not an upstream, or null when it is one. Loopback counts
// when configured, or when its first bytes name a host that is not local
// (a CONNECT, an SNI, a Host): a local proxy or sidecar on the way out.
const char *not_upstream(const ConnectSeen &e, bool loopback_upstreams);

class UpstreamOf
{
      public:
	explicit UpstreamOf(const ConnectSeen &e);

	const std::string &name() const { return name_; }
	uint16_t port() const { return port_; }
	bool proxied() const { return proxied_; }
	// "name:port", as records and the ledger name it.
	std::string key() const;
	nlohmann::json json() const;

	struct Verdict {
		bool allowed = false;
		bool unverified_name = false; // allowed by a name the process alone claims
	};
	// Against an entry's allowed_upstreams: by address, or by a name
	// resolved to that address (or the target a trusted proxy was asked for).
	Verdict check(const InventoryEntry &inv) const;

      private:
	const ConnectSeen &e_;
	std::string name_, host_; // host_: the name without a port, for patterns
	uint16_t port_;
	bool proxied_ = false;
};

} // namespace keytrail::correlate_detail
