#include <gtest/gtest.h>
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
		EXPECT_FALSE(l.record_sighting(s("fp1", "GITLAB_TOKEN", 200)));
		EXPECT_FALSE(l.record_sighting(s("fp1", "GITLAB_TOKEN", 100))); // out of order
		EXPECT_FALSE(l.record_sighting(s("fp1", "GITLAB_TOKEN", 300, "spiffe://x/b")));
		l.record_use("fp1", "spiffe://x/a", "127.0.0.1:443 gitlab.test", 400);
		ASSERT_TRUE(l.commit());
	}
	Ledger l(path, true);
	auto r = l.secret("fp1");
	ASSERT_TRUE(r);
	EXPECT_EQ(r->first_seen, 100);
	EXPECT_EQ(r->last_seen, 300);
	EXPECT_EQ(r->last_used, 400);
	EXPECT_EQ(r->prefix, "glpat-");
	auto sg = l.sightings("fp1");
	ASSERT_EQ(sg.size(), 2u); // two identities held it
	EXPECT_EQ(sg[0].count, 2u);
	ASSERT_EQ(l.uses("fp1").size(), 1u);
	EXPECT_EQ(l.uses("fp1")[0].upstream, "127.0.0.1:443 gitlab.test");
	struct stat st;
	ASSERT_EQ(stat(path.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Ledger, NewFingerprintInTheSameSlotIsARotation)
{
	Ledger l(temp_db());
	EXPECT_FALSE(l.record_sighting(s("old", "GITLAB_TOKEN", 1)));
	auto r = l.record_sighting(s("new", "GITLAB_TOKEN", 2));
	ASSERT_TRUE(r);
	EXPECT_EQ(*r, "old");
	EXPECT_FALSE(l.record_sighting(
	    s("other", "GITLAB_TOKEN", 3, "spiffe://x/other"))); // another identity
	EXPECT_FALSE(l.record_sighting(s("x", "OTHER_VAR", 4))); // another slot
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
