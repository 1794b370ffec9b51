// TCP connects held back until their first write names the upstream (TLS
// SNI or HTTP Host), for at most agent.connect_hold; then released with or
// without a name.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keytrail/probe/events.h"

namespace keytrail
{

// A connect on its way out, with the names its first write gave.
struct NamedConnect {
	ConnectEvent ev;
	std::string sni, http_host, proxy_target;
};

class HeldConnects
{
      public:
	explicit HeldConnects(std::chrono::milliseconds hold) : hold_(hold) {}

	// Holds an attempt on a fresh TCP socket; otherwise hands it back.
	std::optional<NamedConnect> on_connect(const ConnectEvent &e);
	// The held connect this first write names; nullopt if none is held
	// (it was released already: a late payload).
	std::optional<NamedConnect> on_payload(const PayloadEvent &e);
	// Connects held past their deadline (all of them with all = true).
	std::vector<NamedConnect> expire(bool all);
	// Every connect a process still holds (it exited).
	std::vector<NamedConnect> release(uint32_t pid);
	void set_hold(std::chrono::milliseconds hold) { hold_ = hold; }

      private:
	struct Held {
		ConnectEvent ev;
		std::chrono::steady_clock::time_point deadline;
	};
	std::chrono::milliseconds hold_;
	std::map<std::pair<uint32_t, int>, Held> held_; // (pid, fd)
};

} // namespace keytrail
