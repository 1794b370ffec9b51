#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keytrail/ledger/ledger.h"

using namespace keytrail;

namespace
{
std::string temp_db()
{
	char d[] = "/tmp/kt-ledger-XXXXXX";
	return std::string(mkdtemp(d)) + "/ledger.db";
}
Sighting s(const std::string &fp, const std::string &loc, int64_t t,
           const std::string &id = "spiffe://x/a")
{
	return Sighting{fp, "gitlab_pat", "glpat-", "env", loc, "", id, t};
}
} // namespace

TEST(Ledger, SightingsUsesAndFirstLastSeen)
{
	std::string path = temp_db();
	{
		Ledger l(path);
		EXPECT_FALSE(l.record_sighting(s("fp1", "GITLAB_TOKEN", 200)).rotated_from);
		EXPECT_FALSE(
		    l.record_sighting(s("fp1", "GITLAB_TOKEN", 100)).rotated_from); // out of order
		auto r3 = l.record_sighting(s("fp1", "GITLAB_TOKEN", 300, "spiffe://x/b"));
		EXPECT_FALSE(r3.rotated_from);
		EXPECT_EQ(r3.first_seen, 100); // what the ledger knew, in the same call
		EXPECT_EQ(r3.last_used, 0);
		l.record_use("fp1", "spiffe://x/a", "gitlab.test:443", "127.0.0.1", 400);
		EXPECT_EQ(l.record_sighting(s("fp1", "GITLAB_TOKEN", 500)).last_used, 400);
		ASSERT_TRUE(l.commit());
	}
	Ledger l(path, true);
	auto r = l.secret("fp1");
	ASSERT_TRUE(r);
	EXPECT_EQ(r->first_seen, 100);
	EXPECT_EQ(r->last_seen, 500);
	EXPECT_EQ(r->last_used, 400);
	EXPECT_EQ(r->prefix, "glpat-");
	auto sg = l.sightings("fp1");
	ASSERT_EQ(sg.size(), 2u); // two identities held it
	EXPECT_EQ(sg[0].count, 3u);
	ASSERT_EQ(l.uses("fp1").size(), 1u);
	EXPECT_EQ(l.uses("fp1")[0].upstream, "gitlab.test:443");
	EXPECT_EQ(l.uses("fp1")[0].addr, "127.0.0.1");
	struct stat st;
	ASSERT_EQ(stat(path.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Ledger, NewFingerprintInTheSameSlotIsARotation)
{
	Ledger l(temp_db());
	EXPECT_FALSE(l.record_sighting(s("old", "GITLAB_TOKEN", 1)).rotated_from);
	auto r = l.record_sighting(s("new", "GITLAB_TOKEN", 2)).rotated_from;
	ASSERT_TRUE(r);
	EXPECT_EQ(*r, "old");
	EXPECT_FALSE(l.record_sighting(s("other", "GITLAB_TOKEN", 3, "spiffe://x/other"))
	                 .rotated_from);                                      // another identity
	EXPECT_FALSE(l.record_sighting(s("x", "OTHER_VAR", 4)).rotated_from); // another slot
	l.commit();
	auto rot = l.rotations("new");
	ASSERT_EQ(rot.size(), 1u);
	EXPECT_EQ(rot[0].old_fingerprint, "old");
	EXPECT_EQ(rot[0].location, "GITLAB_TOKEN");
}

TEST(Ledger, CommittedRecordsSurviveKill9)
{
	std::string path = temp_db();
	pid_t child = fork();
	if (child == 0) {
		Ledger l(path);
		l.record_sighting(s("committed", "A", 1));
		l.commit();
		l.record_sighting(s("uncommitted", "B", 2)); // open transaction at the kill
		kill(getpid(), SIGKILL);
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	ASSERT_TRUE(WIFSIGNALED(status));
	Ledger l(path); // recovers the WAL
	EXPECT_TRUE(l.secret("committed"));
	EXPECT_FALSE(l.secret("uncommitted"));
	l.record_sighting(s("after", "C", 3));
	EXPECT_TRUE(l.commit());
}

TEST(Ledger, MtimeAndEnvironmentAreKept)
{
	Ledger l(temp_db());
	Sighting a = s("fp", "/srv/.env", 100);
	a.source = "file";
	a.mtime_ns = 50;
	a.environment = "prod";
	l.record_sighting(a);
	a.mtime_ns = 70; // a newer copy does not make it younger
	a.time_ns = 200;
	l.record_sighting(a);
	a.mtime_ns = 0; // not from a file: nothing to say
	l.record_sighting(a);
	l.commit();
	EXPECT_EQ(l.secret("fp")->oldest_mtime, 50);
	EXPECT_EQ(l.sightings("fp")[0].environment, "prod");
}

// A ledger written by schema 1 (before environments, mtimes and addresses
// were kept) is read as it is, and migrated when the agent opens it.
TEST(Ledger, ReadsAndMigratesSchemaOne)
{
	std::string path = temp_db();
	{
		sqlite3 *db = nullptr;
		ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
		const char *v1 = R"(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE secrets(fingerprint TEXT PRIMARY KEY, type TEXT NOT NULL, prefix TEXT NOT NULL,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE sightings(fingerprint TEXT NOT NULL, source TEXT NOT NULL, location TEXT NOT NULL,
  name TEXT NOT NULL, identity TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  count INTEGER NOT NULL, PRIMARY KEY(fingerprint, source, location, name, identity));
CREATE TABLE uses(fingerprint TEXT NOT NULL, identity TEXT NOT NULL, upstream TEXT NOT NULL,
  first_used INTEGER NOT NULL, last_used INTEGER NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY(fingerprint, identity, upstream));
INSERT INTO meta VALUES('schema', '1');
INSERT INTO secrets VALUES('fp', 'gitlab_pat', 'glpat-', 10, 20, 30);
INSERT INTO sightings VALUES('fp', 'env', 'GITLAB_TOKEN', '', 'spiffe://x/a', 10, 20, 2);
INSERT INTO uses VALUES('fp', 'spiffe://x/a', 'gitlab.test:443', 30, 30, 1);
)";
		ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, nullptr), SQLITE_OK);
		sqlite3_close(db);
	}
	{
		Ledger old(path, true);
		EXPECT_EQ(old.secret("fp")->last_used, 30);
		EXPECT_EQ(old.sightings("fp")[0].environment, "");
		EXPECT_EQ(old.uses("fp")[0].addr, "");
	}
	Ledger l(path);
	l.record_use("fp", "spiffe://x/a", "gitlab.test:443", "10.0.0.1", 40);
	l.commit();
	EXPECT_EQ(l.uses("fp")[0].addr, "10.0.0.1");
	EXPECT_EQ(l.secret("fp")->last_used, 40);
}

// Agents before this one kept an AWS access key id whole as its prefix: a
// ledger they wrote shows only its kind once opened again.
TEST(Ledger, AnAwsKeyIdKeptWholeIsCutToItsKindOnOpen)
{
	std::string path = temp_db();
	const std::string id = "AKIAQ3EGT5LMNOPRSTUV";
	{
		Ledger l(path);
		l.record_sighting(Sighting{"fpaws", "aws_access_key_id", id, "file",
		                           "/root/.aws/credentials", "", "spiffe://x/a", 100});
		ASSERT_TRUE(l.commit());
	}
	{
		Ledger l(path);
		ASSERT_TRUE(l.commit());
	}
	Ledger l(path, true);
	auto r = l.secret("fpaws");
	ASSERT_TRUE(r);
	EXPECT_EQ(r->prefix, "AKIA");
}
