// The policy: which inventory entry a credential falls under, and whether
// what was seen of it follows that entry. The correlator applies it live,
// event by event; `keytrail report` applies it to the ledger's history. One
// module for both, so the two cannot drift.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail::policy
{

// Where a credential was seen, as the inventory's `match` looks at it.
struct Seen {
	std::string_view fingerprint;
	std::string_view source;   // file, env, argv, mcp_config
	std::string_view location; // path, env var name, argv[i], config path
	std::string_view name;     // the key inside the location ("" if none)
	std::string_view identity; // the holder's identity id ("" for a config)
};

// The first entry whose match holds, or null.
const InventoryEntry *match(const std::vector<InventoryEntry> &inventory, const Seen &seen);

// An identity may hold and use the credential: the entry lists no
// allowed_identities, or one of its globs matches.
bool identity_allowed(const InventoryEntry &e, std::string_view identity);

// What a package runner (npx, uvx: ProcStart::launcher) may send while it
// fetches a server: a registry credential (npm, PyPI, Docker Hub tokens) or
// one it read from a file itself (.npmrc, pip.conf). The server's own
// credentials in its environment only pass through it.
bool fetch_credential(std::string_view type, std::string_view source);

// The registry a package runner sends a credential to: "host" or
// "host:port" of an npmrc key "//host[:port]/path/:_authToken" (or
// :_auth, :_password) read from an npmrc file. Empty: not scoped.
std::string_view credential_scope(std::string_view source, std::string_view location,
                                  std::string_view name);

// Whether a connect reaches that scope: the scope's host names the
// upstream (its proxy target, SNI, HTTP Host, or else its address), and
// the scope's port, when it has one, is the upstream's.
bool scope_reaches(std::string_view scope, const std::string &addr, uint16_t port,
                   const std::string &sni, const std::string &http_host,
                   const std::string &proxy_target);

// An upstream matches one of the patterns: a CIDR ("10.0.0.0/8",
// "::1/128") against the address, else a host glob against the address,
// the TLS SNI and the HTTP Host.
bool upstream_matches(const std::vector<std::string> &patterns, const std::string &addr,
                      const std::string &sni, const std::string &http_host);

// The credential may be sent there: the entry lists no allowed_upstreams,
// or the upstream matches one.
bool upstream_allowed(const InventoryEntry &e, const std::string &addr, const std::string &sni,
                      const std::string &http_host);

// What is known of a credential's age and use.
struct Lifetime {
	int64_t first_seen_ns = 0;   // first sighting anywhere
	int64_t oldest_mtime_ns = 0; // oldest modification time of a file it was read from
	int64_t last_used_ns = 0;    // 0 = never used
	bool retired = false;        // rotated out of every slot it was in
};

struct StaleReason {
	const char *reason;  // expired, rotation_overdue, unused
	int64_t since_ns;    // expiry, when it was born, or when it was last used
	std::string summary; // "... expired on ...", for alerts and the report
};

// Every way the credential is stale at `now` under entry e (none for a
// retired one). `what` names it in the summaries ("gitlab_pat d682aa367f5f").
std::vector<StaleReason> stale_reasons(const InventoryEntry &e, const Lifetime &life,
                                       int64_t now_ns, const std::string &what);

// Whether holders (identity ids) across environments (names seen, "" not
// counted) make a credential shared: two holders or two environments,
// unless its entry allows every holder and the environments do not differ.
struct Sharing {
	bool shared = false;
	bool across_environments = false;
};
Sharing sharing(const InventoryEntry *e, const std::vector<std::string> &holders,
                size_t environments);

} // namespace keytrail::policy
