#include "keytrail/ledger/ledger.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iterator>
#include <nlohmann/json.hpp>

#include "keytrail/util/error.h"
#include "keytrail/util/files.h"

namespace keytrail
{

namespace
{

// Version 1: the tables. Each later version is a list of statements that
// moves a file up from the one before (kMigrations[v - 2]); a file is
// migrated when the agent opens it for writing. Readers accept any version
// up to kSchemaVersion.
constexpr const char *kSchemaV1 = R"(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets(
  fingerprint TEXT PRIMARY KEY, type TEXT NOT NULL, prefix TEXT NOT NULL,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sightings(
  fingerprint TEXT NOT NULL, source TEXT NOT NULL, location TEXT NOT NULL, name TEXT NOT NULL,
  identity TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY(fingerprint, source, location, name, identity));
CREATE TABLE IF NOT EXISTS uses(
  fingerprint TEXT NOT NULL, identity TEXT NOT NULL, upstream TEXT NOT NULL,
  first_used INTEGER NOT NULL, last_used INTEGER NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY(fingerprint, identity, upstream));
CREATE TABLE IF NOT EXISTS slots(
  source TEXT NOT NULL, location TEXT NOT NULL, name TEXT NOT NULL, identity TEXT NOT NULL, type TEXT NOT NULL,
  fingerprint TEXT NOT NULL, since INTEGER NOT NULL,
  PRIMARY KEY(source, location, name, identity, type));
CREATE TABLE IF NOT EXISTS rotations(
  source TEXT NOT NULL, location TEXT NOT NULL, name TEXT NOT NULL, identity TEXT NOT NULL,
  old_fingerprint TEXT NOT NULL, new_fingerprint TEXT NOT NULL, time INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rotations_by_fp ON rotations(new_fingerprint);
INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '1');
)";

// What the policy needs from history (correlate/policy.h): a holder's
// environment, the age of the file a credential came from, and the address
// a use went to.
constexpr const char *kMigrations[] = {
    "ALTER TABLE secrets ADD COLUMN oldest_mtime INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sightings ADD COLUMN environment TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE uses ADD COLUMN addr TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX IF NOT EXISTS rotations_by_old ON rotations(old_fingerprint);",
    // Findings survive a restart: it raises none of them again.
    "CREATE TABLE IF NOT EXISTS findings(id TEXT PRIMARY KEY, rule TEXT NOT NULL, "
    "key TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, "
    "reported INTEGER NOT NULL, count INTEGER NOT NULL, facets TEXT NOT NULL);",
    // Which MCP tools used a credential toward which upstreams (the
    // tool_credential_drift baseline, and the report's tools per credential).
    "CREATE TABLE IF NOT EXISTS tool_uses(server TEXT NOT NULL, tool TEXT NOT NULL, "
    "fingerprint TEXT NOT NULL, upstream TEXT NOT NULL, first_used INTEGER NOT NULL, "
    "last_used INTEGER NOT NULL, count INTEGER NOT NULL, "
    "PRIMARY KEY(server, tool, fingerprint, upstream));",
};
constexpr int kSchemaVersion = 1 + static_cast<int>(std::size(kMigrations));

void bind(sqlite3_stmt *s, int i, const std::string &v)
{
	sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}
void bind(sqlite3_stmt *s, int i, int64_t v)
{
	sqlite3_bind_int64(s, i, v);
}

template <typename... A> void bind_all(sqlite3_stmt *s, const A &...a)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	int i = 1;
	(bind(s, i++, a), ...);
}

std::string col(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? reinterpret_cast<const char *>(t) : "";
}

} // namespace

Ledger::Ledger(const std::string &path, bool read_only) : path_(path)
{
	if (!read_only) {
		// Create it 0600 before SQLite does (umask aside), and never
		// through a link or into someone else's file.
		std::string why;
		int fd = open_private_file(path, true, &why);
		if (fd < 0)
			throw why.empty() ? sys_error("create ledger " + path, errno)
			                  : Error("ledger " + why);
		close(fd);
	}
	int flags =
	    (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
	    SQLITE_OPEN_NOFOLLOW;
	if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) !=
	    SQLITE_OK) {
		std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
		sqlite3_close(db_);
		db_ = nullptr;
		throw Error("open ledger " + path + ": " + msg);
	}
	sqlite3_busy_timeout(db_, 2000);
	if (read_only) {
		schema_ = read_schema();
		if (schema_ > kSchemaVersion)
			throw Error("ledger " + path + " has schema " + std::to_string(schema_) +
			            ", newer than this keytrail reads (" +
			            std::to_string(kSchemaVersion) + ")");
		return;
	}
	exec("PRAGMA journal_mode=WAL");
	exec("PRAGMA synchronous=NORMAL");
	migrate();
	upsert_secret_ = prepare(
	    "INSERT INTO secrets(fingerprint, type, prefix, first_seen, last_seen, oldest_mtime) "
	    "VALUES(?1, ?2, ?3, ?4, ?4, ?5) "
	    "ON CONFLICT(fingerprint) DO UPDATE SET last_seen = max(last_seen, ?4), "
	    "first_seen = min(first_seen, ?4), oldest_mtime = CASE WHEN ?5 = 0 THEN "
	    "oldest_mtime WHEN oldest_mtime = 0 THEN ?5 ELSE min(oldest_mtime, ?5) END");
	get_secret_ = prepare("SELECT first_seen, last_used FROM secrets WHERE fingerprint = ?1");
	upsert_sighting_ = prepare(
	    "INSERT INTO sightings(fingerprint, source, location, name, identity, first_seen, "
	    "last_seen, count, environment) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, ?7) "
	    "ON CONFLICT(fingerprint, source, location, name, identity) DO UPDATE SET "
	    "last_seen = max(last_seen, ?6), count = count + 1, environment = ?7");
	get_slot_ = prepare("SELECT fingerprint FROM slots WHERE source = ?1 AND location = ?2 AND "
	                    "name = ?3 AND identity = ?4 AND type = ?5");
	put_slot_ = prepare("INSERT OR REPLACE INTO slots VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	add_rotation_ = prepare("INSERT INTO rotations VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	upsert_use_ = prepare(
	    "INSERT INTO uses(fingerprint, identity, upstream, first_used, last_used, count, addr) "
	    "VALUES(?1, ?2, ?3, ?4, ?4, 1, ?5) ON CONFLICT(fingerprint, identity, upstream) "
	    "DO UPDATE SET last_used = max(last_used, ?4), count = count + 1, addr = ?5");
	touch_used_ =
	    prepare("UPDATE secrets SET last_used = max(last_used, ?2) WHERE fingerprint = ?1");
	upsert_tool_use_ = prepare(
	    "INSERT INTO tool_uses VALUES(?1, ?2, ?3, ?4, ?5, ?5, 1) "
	    "ON CONFLICT(server, tool, fingerprint, upstream) DO UPDATE SET "
	    "first_used = min(first_used, ?5), last_used = max(last_used, ?5), count = count + 1");
	put_finding_ =
	    prepare("INSERT OR REPLACE INTO findings VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	// The WAL and shared-memory files SQLite makes follow the umask: 0600 too.
	for (const char *suffix : {"-wal", "-shm"})
		chmod((path + suffix).c_str(), 0600);
}

Ledger::~Ledger()
{
	if (!db_)
		return;
	commit();
	for (auto *s : stmts_)
		sqlite3_finalize(s);
	sqlite3_close(db_);
}

void Ledger::exec(const char *sql)
{
	char *err = nullptr;
	if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
		std::string msg = err ? err : "?";
		sqlite3_free(err);
		throw Error("ledger " + path_ + ": " + msg);
	}
}

sqlite3_stmt *Ledger::prepare(const char *sql)
{
	sqlite3_stmt *s = nullptr;
	if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK)
		throw Error("ledger " + path_ + ": " + sqlite3_errmsg(db_));
	stmts_.push_back(s);
	return s;
}

int Ledger::read_schema()
{
	sqlite3_stmt *s = nullptr;
	int v = 0;
	if (sqlite3_prepare_v2(db_, "SELECT value FROM meta WHERE key = 'schema'", -1, &s,
	                       nullptr) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = std::atoi(col(s, 0).c_str());
	sqlite3_finalize(s);
	return v;
}

void Ledger::migrate()
{
	exec("BEGIN IMMEDIATE");
	try {
		exec(kSchemaV1);
		schema_ = read_schema();
		if (schema_ > kSchemaVersion)
			throw Error("ledger " + path_ + " has schema " + std::to_string(schema_) +
			            ", newer than this keytrail writes (" +
			            std::to_string(kSchemaVersion) + ")");
		for (; schema_ < kSchemaVersion; schema_++)
			exec(kMigrations[schema_ - 1]);
		// Older agents kept an AWS access key id whole as its prefix.
		exec("UPDATE secrets SET prefix = substr(prefix, 1, 4) "
		     "WHERE type = 'aws_access_key_id' AND length(prefix) > 4");
		exec(("UPDATE meta SET value = '" + std::to_string(schema_) +
		      "' WHERE key = 'schema'")
		         .c_str());
		exec("COMMIT");
	} catch (const Error &) {
		sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
		throw;
	}
}

void Ledger::begin()
{
	if (!in_tx_) {
		exec("BEGIN");
		in_tx_ = true;
	}
}

bool Ledger::commit()
{
	if (!in_tx_)
		return true;
	char *err = nullptr;
	int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, &err);
	if (rc != SQLITE_OK) {
		spdlog::error("ledger commit failed: {}", err ? err : "?");
		sqlite3_free(err);
		sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
	}
	in_tx_ = false;
	return rc == SQLITE_OK;
}

SightingResult Ledger::record_sighting(const Sighting &s)
{
	begin();
	SightingResult r;
	bind_all(upsert_secret_, s.fingerprint, s.type, s.prefix, s.time_ns, s.mtime_ns);
	sqlite3_step(upsert_secret_);
	bind_all(upsert_sighting_, s.fingerprint, s.source, s.location, s.name, s.identity,
	         s.time_ns, s.environment);
	sqlite3_step(upsert_sighting_);
	bind_all(get_secret_, s.fingerprint);
	if (sqlite3_step(get_secret_) == SQLITE_ROW) {
		r.first_seen = sqlite3_column_int64(get_secret_, 0);
		r.last_used = sqlite3_column_int64(get_secret_, 1);
	}
	sqlite3_reset(get_secret_);

	bind_all(get_slot_, s.source, s.location, s.name, s.identity, s.type);
	if (sqlite3_step(get_slot_) == SQLITE_ROW) {
		std::string old = col(get_slot_, 0);
		if (old != s.fingerprint)
			r.rotated_from = old;
	}
	sqlite3_reset(get_slot_);
	if (r.rotated_from) {
		bind_all(add_rotation_, s.source, s.location, s.name, s.identity, *r.rotated_from,
		         s.fingerprint, s.time_ns);
		sqlite3_step(add_rotation_);
	}
	bind_all(put_slot_, s.source, s.location, s.name, s.identity, s.type, s.fingerprint,
	         s.time_ns);
	sqlite3_step(put_slot_);
	return r;
}

void Ledger::record_use(const std::string &fingerprint, const std::string &identity,
                        const std::string &upstream, const std::string &addr, int64_t time_ns)
{
	begin();
	bind_all(upsert_use_, fingerprint, identity, upstream, time_ns, addr);
	sqlite3_step(upsert_use_);
	bind_all(touch_used_, fingerprint, time_ns);
	sqlite3_step(touch_used_);
}

std::optional<SecretRecord> Ledger::secret(const std::string &fingerprint)
{
	auto all = secrets(fingerprint);
	if (all.empty())
		return std::nullopt;
	return all.front();
}

std::vector<SecretRecord> Ledger::secrets(const std::string &fingerprint)
{
	std::vector<SecretRecord> out;
	sqlite3_stmt *s = nullptr;
	std::string sql = std::string("SELECT fingerprint, type, prefix, first_seen, last_seen, "
	                              "last_used, ") +
	                  (schema_ >= 2 ? "oldest_mtime" : "0") +
	                  " FROM secrets WHERE ?1 = '' OR fingerprint = ?1 ORDER BY first_seen";
	sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), sqlite3_column_int64(s, 3),
		               sqlite3_column_int64(s, 4), sqlite3_column_int64(s, 5),
		               sqlite3_column_int64(s, 6)});
	sqlite3_finalize(s);
	return out;
}

std::vector<SightingRecord> Ledger::sightings(const std::string &fingerprint)
{
	std::vector<SightingRecord> out;
	sqlite3_stmt *s = nullptr;
	std::string sql = std::string("SELECT source, location, name, identity, ") +
	                  (schema_ >= 2 ? "environment" : "''") +
	                  ", first_seen, last_seen, count FROM sightings WHERE fingerprint = ?1 "
	                  "ORDER BY first_seen";
	sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), col(s, 3), col(s, 4),
		               sqlite3_column_int64(s, 5), sqlite3_column_int64(s, 6),
		               static_cast<uint64_t>(sqlite3_column_int64(s, 7))});
	sqlite3_finalize(s);
	return out;
}

std::vector<UseRecord> Ledger::uses(const std::string &fingerprint)
{
	std::vector<UseRecord> out;
	sqlite3_stmt *s = nullptr;
	std::string sql = std::string("SELECT identity, upstream, ") +
	                  (schema_ >= 2 ? "addr" : "''") +
	                  ", first_used, last_used, count FROM uses WHERE fingerprint = ?1";
	sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), sqlite3_column_int64(s, 3),
		               sqlite3_column_int64(s, 4),
		               static_cast<uint64_t>(sqlite3_column_int64(s, 5))});
	sqlite3_finalize(s);
	return out;
}

void Ledger::record_finding(const FindingState &f)
{
	begin();
	bind_all(put_finding_, f.id, f.rule, f.key, f.first_ns, f.last_ns, f.reported_ns,
	         static_cast<int64_t>(f.count), nlohmann::json(f.facets).dump());
	sqlite3_step(put_finding_);
}

std::vector<FindingState> Ledger::findings(size_t limit)
{
	std::vector<FindingState> out;
	if (schema_ < 3)
		return out;
	sqlite3_stmt *s = nullptr;
	sqlite3_prepare_v2(db_,
	                   "DELETE FROM findings WHERE id NOT IN "
	                   "(SELECT id FROM findings ORDER BY last_seen DESC LIMIT ?1)",
	                   -1, &s, nullptr);
	if (s) {
		begin();
		bind_all(s, static_cast<int64_t>(limit));
		sqlite3_step(s);
		sqlite3_finalize(s);
		s = nullptr;
	}
	sqlite3_prepare_v2(db_,
	                   "SELECT id, rule, key, first_seen, last_seen, reported, count, facets "
	                   "FROM findings ORDER BY last_seen DESC LIMIT ?1",
	                   -1, &s, nullptr);
	if (s)
		bind_all(s, static_cast<int64_t>(limit));
	while (s && sqlite3_step(s) == SQLITE_ROW) {
		FindingState f;
		f.id = col(s, 0);
		f.rule = col(s, 1);
		f.key = col(s, 2);
		f.first_ns = sqlite3_column_int64(s, 3);
		f.last_ns = sqlite3_column_int64(s, 4);
		f.reported_ns = sqlite3_column_int64(s, 5);
		f.count = static_cast<uint64_t>(sqlite3_column_int64(s, 6));
		auto facets = nlohmann::json::parse(col(s, 7), nullptr, false);
		if (facets.is_array())
			for (const auto &x : facets)
				if (x.is_string())
					f.facets.push_back(x.get<std::string>());
		out.push_back(std::move(f));
	}
	sqlite3_finalize(s);
	return out;
}

void Ledger::record_tool_use(const ToolUseRecord &u)
{
	begin();
	bind_all(upsert_tool_use_, u.server, u.tool, u.fingerprint, u.upstream, u.first_used);
	sqlite3_step(upsert_tool_use_);
}

std::vector<ToolUseRecord> Ledger::tool_uses(const std::string &fingerprint)
{
	std::vector<ToolUseRecord> out;
	if (schema_ < 4)
		return out;
	sqlite3_stmt *s = nullptr;
	sqlite3_prepare_v2(db_,
	                   "SELECT server, tool, fingerprint, upstream, first_used, last_used, "
	                   "count FROM tool_uses WHERE ?1 = '' OR fingerprint = ?1 "
	                   "ORDER BY fingerprint, server, tool, upstream",
	                   -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), col(s, 3),
		               sqlite3_column_int64(s, 4), sqlite3_column_int64(s, 5),
		               static_cast<uint64_t>(sqlite3_column_int64(s, 6))});
	sqlite3_finalize(s);
	return out;
}

std::vector<Rotation> Ledger::rotations(const std::string &fingerprint)
{
	std::vector<Rotation> out;
	sqlite3_stmt *s = nullptr;
	sqlite3_prepare_v2(
	    db_,
	    "SELECT source, location, name, identity, old_fingerprint, new_fingerprint, time FROM "
	    "rotations "
	    "WHERE ?1 = '' OR old_fingerprint = ?1 OR new_fingerprint = ?1 ORDER BY time",
	    -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), col(s, 3), col(s, 4), col(s, 5),
		               sqlite3_column_int64(s, 6)});
	sqlite3_finalize(s);
	return out;
}

} // namespace keytrail
