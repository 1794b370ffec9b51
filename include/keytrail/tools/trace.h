// `keytrail trace`: the pivot chain around a secret, a process or an
// identity, rebuilt from the journal (not /proc: exited processes appear).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "keytrail/output/journal.h"

namespace keytrail
{

struct TraceQuery {
	std::string secret;    // fingerprint (or a unique prefix of one)
	std::string inventory; // inventory id
	std::optional<uint32_t> pid;
	std::optional<int64_t> at; // with pid: the process alive then
	std::string exec_id;
	std::string identity;         // a glob on the identity id, or an MCP server's name
	int64_t since = 0, until = 0; // 0 = open
};

struct TraceSecret {
	std::string fingerprint, type, source, location, inventory_id;
	int64_t time = 0;
};

struct TraceConnect {
	std::string addr, name; // name: SNI or Host, "" if none
	uint32_t port = 0;
	int64_t time = 0;
	std::vector<std::string> used; // fingerprints a secret_use bound to it
};

// An alert or update the correlator wrote about a process (process.exec_id),
// or about a credential with no process (then shown where it came in).
struct TraceAlert {
	std::string type; // "alert" or "update"
	std::string rule, severity, finding_id, summary, fingerprint;
	int64_t time = 0;
};

// A tool call an MCP server (this process) served: its `tool_call` record.
struct TraceToolCall {
	std::string id, tool, client, outcome;
	int64_t start = 0, end = 0;
	double duration_ms = 0;
	std::vector<std::string> upstreams;                           // "name:port"
	std::vector<std::pair<std::string, std::string>> credentials; // fingerprint, upstream
};

struct TraceProcess {
	std::string exec_id, parent; // parent's exec_id
	uint32_t pid = 0, ppid = 0;
	std::string comm, exe, identity, mcp_server;
	std::vector<std::string> argv; // masked by the agent
	int64_t start = 0, exit = 0;
	std::vector<TraceSecret> secrets;
	std::vector<TraceConnect> connects;
	std::vector<TraceAlert> alerts; // in time order
	std::vector<TraceToolCall> tool_calls;
	std::set<std::string> children;
};

struct TraceResult {
	std::map<std::string, TraceProcess> processes; // the tree(s): seeds, ancestors, descendants
	std::vector<std::string> roots, seeds;
	// fingerprint -> identities outside the tree that hold it too
	std::map<std::string, std::set<std::string>> shared;
	JournalReadStats stats;
	std::string error; // the query matched nothing, or the journal is missing
};

// --since/--until: an RFC 3339 time, a date, or a span before now_ns
// ("90s", "30m", "1h", "7d", "1h30m"). False if it is none of these.
bool parse_trace_time(const std::string &s, int64_t now_ns, int64_t *t);

// --identity: a glob on the process's identity id, or on the name of the MCP
// server it is or descends from (so a bare server name matches too).
bool trace_identity_matches(const std::string &pattern, const std::string &identity,
                            const std::string &mcp_server);

// Called before each segment read: (i, n, path), i from 0.
using TraceProgress = std::function<void(size_t, size_t, const std::string &)>;

// Reads the segments that can matter to q (their .idx says so; a segment
// without one is read whole) and rebuilds the tree. res.stats counts the
// segments skipped.
TraceResult run_trace(const std::string &journal_dir, const TraceQuery &q,
                      const TraceProgress &progress = {});

// The indented tree; unless all, helpers with nothing to show are folded.
std::string trace_tree(const TraceResult &r, bool all = false);
nlohmann::json trace_json(const TraceResult &r);
std::string trace_dot(const TraceResult &r);

} // namespace keytrail
