// The ledger: a durable local record (SQLite, WAL, file 0600) of each
// credential's life by fingerprint: type, first/last seen, last used, where
// it was seen, which identities held or used it, toward which upstreams, and
// its rotations. It never holds a secret value: only fingerprints and public
// prefixes. Writes are batched into one transaction per poll cycle (commit());
// a committed record survives kill -9 (WAL, synchronous=NORMAL).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "keytrail/schema/finding.h"

struct sqlite3;
struct sqlite3_stmt;

namespace keytrail
{

struct Sighting {
	std::string fingerprint, type, prefix;
	std::string source;   // file, env, argv, mcp_config
	std::string location; // path, env var name, argv[i], config path + field
	std::string name;     // variable / key name inside the location ("" if none)
	std::string identity; // identity id
	int64_t time_ns = 0;
	std::string environment; // the holder's environment ("" if none)
	int64_t mtime_ns = 0;    // file sources: when the content read was last modified
};

// What the ledger knew of a credential once a sighting was recorded.
struct SightingResult {
	std::optional<std::string> rotated_from; // it replaced this one in its slot
	int64_t first_seen = 0, last_used = 0;   // ns; last_used 0 = never
};

struct SecretRecord {
	std::string fingerprint, type, prefix;
	int64_t first_seen = 0, last_seen = 0, last_used = 0; // ns; last_used 0 = never
	int64_t oldest_mtime = 0; // oldest content it was read from; 0 = not from a file
};

struct SightingRecord {
	std::string source, location, name, identity, environment;
	int64_t first_seen = 0, last_seen = 0;
	uint64_t count = 0;
};

struct UseRecord {
	std::string identity, upstream, addr;
	int64_t first_used = 0, last_used = 0;
	uint64_t count = 0;
};

struct Rotation {
	std::string source, location, name, identity, old_fingerprint, new_fingerprint;
	int64_t time_ns = 0;
};

// An MCP tool's use of a credential toward an upstream (tool_call records).
struct ToolUseRecord {
	std::string server, tool, fingerprint, upstream;
	int64_t first_used = 0, last_used = 0;
	uint64_t count = 0;
};

class Ledger
{
      public:
	// Opens or creates the database (0600). Throws Error.
	explicit Ledger(const std::string &path, bool read_only = false);
	~Ledger();
	Ledger(const Ledger &) = delete;
	Ledger &operator=(const Ledger &) = delete;

	// Records a sighting. A different fingerprint in the same slot
	// (source, location, name, identity, type) before it is a rotation.
	SightingResult record_sighting(const Sighting &s);
	// upstream: "name:port" as records show it; addr: the address connected to.
	void record_use(const std::string &fingerprint, const std::string &identity,
	                const std::string &upstream, const std::string &addr, int64_t time_ns);
	void record_finding(const FindingState &f);
	// One tool call's use (first_used: its time); counted per call.
	void record_tool_use(const ToolUseRecord &u);
	// Every tool use, or those of one credential.
	std::vector<ToolUseRecord> tool_uses(const std::string &fingerprint = "");
	// The `limit` most recently seen findings; older ones are deleted.
	std::vector<FindingState> findings(size_t limit);
	// Commits the open batch. Returns false (and logs) on failure.
	bool commit();

	std::optional<SecretRecord> secret(const std::string &fingerprint);
	// Every credential, or the one with this fingerprint.
	std::vector<SecretRecord> secrets(const std::string &fingerprint = "");
	std::vector<SightingRecord> sightings(const std::string &fingerprint);
	std::vector<UseRecord> uses(const std::string &fingerprint);
	std::vector<Rotation> rotations(const std::string &fingerprint = "");
	const std::string &path() const { return path_; }

      private:
	void exec(const char *sql);
	sqlite3_stmt *prepare(const char *sql);
	void begin();
	void migrate();
	int read_schema();

	std::string path_;
	sqlite3 *db_ = nullptr;
	bool in_tx_ = false;
	int schema_ = 0; // the file's schema version
	std::vector<sqlite3_stmt *> stmts_;
	sqlite3_stmt *upsert_secret_ = nullptr, *upsert_sighting_ = nullptr, *get_slot_ = nullptr,
	             *put_slot_ = nullptr, *add_rotation_ = nullptr, *upsert_use_ = nullptr,
	             *touch_used_ = nullptr, *get_secret_ = nullptr, *put_finding_ = nullptr,
	             *upsert_tool_use_ = nullptr;
};

} // namespace keytrail
