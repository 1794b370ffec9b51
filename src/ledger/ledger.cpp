#include "keytrail/ledger/ledger.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keytrail/util/error.h"

namespace keytrail
{

namespace
{

constexpr const char *kSchema = R"(
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
		// Create it 0600 before SQLite does (umask aside).
		int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			throw sys_error("create ledger " + path, errno);
		fchmod(fd, 0600);
		close(fd);
	}
	int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) !=
	    SQLITE_OK) {
		std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
		sqlite3_close(db_);
		db_ = nullptr;
		throw Error("open ledger " + path + ": " + msg);
	}
	sqlite3_busy_timeout(db_, 2000);
	if (read_only)
		return;
	exec("PRAGMA journal_mode=WAL");
	exec("PRAGMA synchronous=NORMAL");
	exec(kSchema);
	upsert_secret_ =
	    prepare("INSERT INTO secrets(fingerprint, type, prefix, first_seen, last_seen) "
	            "VALUES(?1, ?2, ?3, ?4, ?4) "
	            "ON CONFLICT(fingerprint) DO UPDATE SET last_seen = max(last_seen, ?4), "
	            "first_seen = min(first_seen, ?4)");
	upsert_sighting_ =
	    prepare("INSERT INTO sightings VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6, 1) "
	            "ON CONFLICT(fingerprint, source, location, name, identity) DO UPDATE SET "
	            "last_seen = max(last_seen, ?6), count = count + 1");
	get_slot_ = prepare("SELECT fingerprint FROM slots WHERE source = ?1 AND location = ?2 AND "
	                    "name = ?3 AND identity = ?4 AND type = ?5");
	put_slot_ = prepare("INSERT OR REPLACE INTO slots VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	add_rotation_ = prepare("INSERT INTO rotations VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	upsert_use_ = prepare("INSERT INTO uses VALUES(?1, ?2, ?3, ?4, ?4, 1) ON "
	                      "CONFLICT(fingerprint, identity, upstream) "
	                      "DO UPDATE SET last_used = max(last_used, ?4), count = count + 1");
	touch_used_ =
	    prepare("UPDATE secrets SET last_used = max(last_used, ?2) WHERE fingerprint = ?1");
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

std::optional<std::string> Ledger::record_sighting(const Sighting &s)
{
	begin();
	bind_all(upsert_secret_, s.fingerprint, s.type, s.prefix, s.time_ns);
	sqlite3_step(upsert_secret_);
	bind_all(upsert_sighting_, s.fingerprint, s.source, s.location, s.name, s.identity,
	         s.time_ns);
	sqlite3_step(upsert_sighting_);

	std::optional<std::string> replaced;
	bind_all(get_slot_, s.source, s.location, s.name, s.identity, s.type);
	if (sqlite3_step(get_slot_) == SQLITE_ROW) {
		std::string old = col(get_slot_, 0);
		if (old != s.fingerprint)
			replaced = old;
	}
	sqlite3_reset(get_slot_);
	if (replaced) {
		bind_all(add_rotation_, s.source, s.location, s.name, s.identity, *replaced,
		         s.fingerprint, s.time_ns);
		sqlite3_step(add_rotation_);
	}
	bind_all(put_slot_, s.source, s.location, s.name, s.identity, s.type, s.fingerprint,
	         s.time_ns);
	sqlite3_step(put_slot_);
	return replaced;
}

void Ledger::record_use(const std::string &fingerprint, const std::string &identity,
                        const std::string &upstream, int64_t time_ns)
{
	begin();
	bind_all(upsert_use_, fingerprint, identity, upstream, time_ns);
	sqlite3_step(upsert_use_);
	bind_all(touch_used_, fingerprint, time_ns);
	sqlite3_step(touch_used_);
}

std::optional<SecretRecord> Ledger::secret(const std::string &fingerprint)
{
	for (auto &s : secrets())
		if (s.fingerprint == fingerprint)
			return s;
	return std::nullopt;
}

std::vector<SecretRecord> Ledger::secrets()
{
	std::vector<SecretRecord> out;
	sqlite3_stmt *s = nullptr;
	sqlite3_prepare_v2(db_,
	                   "SELECT fingerprint, type, prefix, first_seen, last_seen, last_used "
	                   "FROM secrets ORDER BY first_seen",
	                   -1, &s, nullptr);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), sqlite3_column_int64(s, 3),
		               sqlite3_column_int64(s, 4), sqlite3_column_int64(s, 5)});
	sqlite3_finalize(s);
	return out;
}

std::vector<SightingRecord> Ledger::sightings(const std::string &fingerprint)
{
	std::vector<SightingRecord> out;
	sqlite3_stmt *s = nullptr;
	sqlite3_prepare_v2(
	    db_,
	    "SELECT source, location, name, identity, first_seen, last_seen, count FROM sightings "
	    "WHERE fingerprint = ?1 ORDER BY first_seen",
	    -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), col(s, 2), col(s, 3),
		               sqlite3_column_int64(s, 4), sqlite3_column_int64(s, 5),
		               static_cast<uint64_t>(sqlite3_column_int64(s, 6))});
	sqlite3_finalize(s);
	return out;
}

std::vector<UseRecord> Ledger::uses(const std::string &fingerprint)
{
	std::vector<UseRecord> out;
	sqlite3_stmt *s = nullptr;
	sqlite3_prepare_v2(db_,
	                   "SELECT identity, upstream, first_used, last_used, count FROM uses "
	                   "WHERE fingerprint = ?1",
	                   -1, &s, nullptr);
	bind_all(s, fingerprint);
	while (s && sqlite3_step(s) == SQLITE_ROW)
		out.push_back({col(s, 0), col(s, 1), sqlite3_column_int64(s, 2),
		               sqlite3_column_int64(s, 3),
		               static_cast<uint64_t>(sqlite3_column_int64(s, 4))});
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
