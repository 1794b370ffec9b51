// SecretSources::from_open: where a credential file is read from when the fd
// that opened it is gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "keytrail/secrets/sources.h"
#include "keytrail/util/clock.h"

using namespace keytrail;

TEST(SecretSources, ADeletedFileIsReadThroughTheFdTheProcessDupedItTo)
{
	std::string dir = ::testing::TempDir() + "/kt-src-" + std::to_string(getpid());
	mkdir(dir.c_str(), 0700);
	std::string path = dir + "/.env";
	// Built at run time: no credential literal in the tree.
	std::string tok = "glpat-" + std::string("Zq3") + "x7Rk2Lm9Pw4Tn8Vb6Hc1";
	std::ofstream(path) << "GITLAB_TOKEN=" << tok << "\n";
	struct stat st;
	ASSERT_EQ(stat(path.c_str(), &st), 0);

	// A child does what `exec 3<file` does in a shell: open (fd 4 here),
	// dup2 to another fd, close the first; then the file is deleted.
	int ready[2], done[2];
	ASSERT_EQ(pipe(ready), 0);
	ASSERT_EQ(pipe(done), 0);
	pid_t child = fork();
	if (child == 0) {
		int fd = open(path.c_str(), O_RDONLY);
		dup2(fd, 9);
		close(fd);
		unlink(path.c_str());
		char c = 'r';
		(void)!write(ready[1], &c, 1);
		(void)!read(done[0], &c, 1);
		_exit(0);
	}
	char c;
	ASSERT_EQ(read(ready[0], &c, 1), 1);

	SecretSources sources(Fingerprinter(SecretBytes(std::string(32, 'k'))), {}, 1 << 20);
	auto scan = sources.from_open(child, /*fd, closed*/ 4, AT_FDCWD, path, 0, st.st_ino);
	(void)!write(done[1], &c, 1);
	waitpid(child, nullptr, 0);
	ASSERT_TRUE(scan);
	EXPECT_FALSE(scan->unreadable);
	ASSERT_EQ(scan->secrets.size(), 1u);
	EXPECT_EQ(scan->secrets[0].type, "gitlab_pat");
	EXPECT_EQ(sources.counters().files_unreadable, 0u);

	// Once nobody holds it, it is counted as unreadable, not guessed.
	auto gone = sources.from_open(child, 4, AT_FDCWD, dir + "/.env.other", 0, st.st_ino + 1);
	ASSERT_TRUE(gone);
	EXPECT_TRUE(gone->unreadable);
	EXPECT_EQ(sources.counters().files_unreadable, 1u);
	rmdir(dir.c_str());
}

// `cd proj && cat .env` by a process already gone: the relative name is
// tried under each cwd the agent could guess (the parent's, the workload's),
// and the one where it is this inode is taken, in whatever order they come.
TEST(SecretSources, ARelativeNameOfAGoneProcessIsResolvedUnderTheCwdWhereItIsThisInode)
{
	std::string dir = ::testing::TempDir() + "/kt-rel-" + std::to_string(getpid());
	mkdir(dir.c_str(), 0700);
	mkdir((dir + "/proj").c_str(), 0700);
	std::string tok = "glpat-" + std::string("Zq3") + "x7Rk2Lm9Pw4Tn8Vb6Hc1";
	std::ofstream(dir + "/proj/.env") << "GITLAB_TOKEN=" << tok << "\n";
	std::ofstream(dir + "/.env") << "PORT=1\n"; // same name, another inode
	struct stat st;
	ASSERT_EQ(stat((dir + "/proj/.env").c_str(), &st), 0);
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	waitpid(gone, nullptr, 0);

	for (const auto &hints : {std::vector<std::string>{dir, dir + "/proj"},
	                          std::vector<std::string>{dir + "/proj", dir}}) {
		SecretSources sources(Fingerprinter(SecretBytes(std::string(32, 'k'))), {},
		                      1 << 20);
		auto scan = sources.from_open(gone, 3, AT_FDCWD, ".env", 0, st.st_ino,
		                              [&] { return hints; });
		ASSERT_TRUE(scan);
		EXPECT_FALSE(scan->unreadable);
		EXPECT_EQ(scan->path, std::filesystem::path(dir + "/proj/.env").lexically_normal());
		ASSERT_EQ(scan->secrets.size(), 1u);
		EXPECT_EQ(scan->secrets[0].type, "gitlab_pat");
	}
	// No hint names it: unreadable, never the other file of that name.
	SecretSources sources(Fingerprinter(SecretBytes(std::string(32, 'k'))), {}, 1 << 20);
	auto scan = sources.from_open(gone, 3, AT_FDCWD, ".env", 0, st.st_ino,
	                              [&] { return std::vector<std::string>{dir}; });
	ASSERT_TRUE(scan);
	EXPECT_TRUE(scan->unreadable);
	std::filesystem::remove_all(dir);
}

// `env NAME=VALUE cmd` sets cmd's environment: env-sourced, never "hard-coded
// in a command line"; a credential among cmd's own arguments still is.
TEST(SecretSources, EnvAssignmentsAreEnvironmentNotCommandLine)
{
	SecretSources sources(Fingerprinter(SecretBytes(std::string(32, 'k'))), {}, 1 << 20);
	std::string tok = "glpat-" + std::string("Zq3") + "x7Rk2Lm9Pw4Tn8Vb6Hc1";
	std::string other = "ghp_" + std::string("aZ4kQ9mW2xR7tY5pL8nB3vC6dF1gH0jK4sE2");
	auto got = sources.from_argv({"/usr/bin/env", "-u", "HOME", "GITLAB_TOKEN=" + tok,
	                              "mcp-server-x", "--token=" + other});
	ASSERT_EQ(got.size(), 2u);
	EXPECT_EQ(got[0].source, "env");
	EXPECT_EQ(got[0].location, "GITLAB_TOKEN");
	EXPECT_EQ(got[1].source, "argv");
	EXPECT_EQ(got[1].location, "--token");
	// Not env: the same word is a command-line credential.
	auto plain = sources.from_argv({"mcp-server-x", "GITLAB_TOKEN=" + tok});
	ASSERT_EQ(plain.size(), 1u);
	EXPECT_EQ(plain[0].source, "argv");
}

// `printf ... > .env` of a script's next step can empty a file between a
// reader's open and the agent's read of it: the scan from before the open
// stands for what the reader read, and without one nothing is claimed.
TEST(SecretSources, AFileRewrittenAfterTheOpenIsNotReportedEmpty)
{
	std::string dir = ::testing::TempDir() + "/kt-rw-" + std::to_string(getpid());
	mkdir(dir.c_str(), 0700);
	std::string path = dir + "/.env", fresh = dir + "/fresh/.env";
	mkdir((dir + "/fresh").c_str(), 0700);
	std::string tok = "glpat-" + std::string("Zq3") + "x7Rk2Lm9Pw4Tn8Vb6Hc1";
	constexpr int64_t s = 1000000000;
	int64_t t0 = 1790000000 * s;
	auto write_at = [](const std::string &p, const std::string &text, int64_t ns) {
		std::ofstream(p, std::ios::trunc) << text;
		timespec ts[2] = {{ns / s, ns % s}, {ns / s, ns % s}};
		ASSERT_EQ(utimensat(AT_FDCWD, p.c_str(), ts, 0), 0);
	};
	auto ino = [](const std::string &p) {
		struct stat st;
		EXPECT_EQ(stat(p.c_str(), &st), 0);
		return static_cast<uint64_t>(st.st_ino);
	};
	SecretSources sources(Fingerprinter(SecretBytes(std::string(32, 'k'))), {}, 1 << 20);
	pid_t gone = 0; // the readers exited: the files are read by name

	write_at(path, "GITLAB_TOKEN=" + tok + "\n", t0);
	auto first = sources.from_open(gone, 3, AT_FDCWD, path, 0, ino(path), {}, "", t0 + s);
	ASSERT_TRUE(first);
	ASSERT_EQ(first->secrets.size(), 1u);

	// Opened at t0 + 2 s, emptied at t0 + 3 s, read after: the token stands.
	write_at(path, "", t0 + 3 * s);
	auto raced = sources.from_open(gone, 3, AT_FDCWD, path, 0, ino(path), {}, "", t0 + 2 * s);
	ASSERT_TRUE(raced);
	EXPECT_FALSE(raced->unreadable);
	ASSERT_EQ(raced->secrets.size(), 1u);
	EXPECT_EQ(raced->secrets[0].fingerprint, first->secrets[0].fingerprint);
	EXPECT_EQ(sources.counters().files_rewritten, 1u);

	// A file never read before, rewritten after the open: nothing known.
	write_at(fresh, "", t0 + 3 * s);
	auto unknown =
	    sources.from_open(gone, 3, AT_FDCWD, fresh, 0, ino(fresh), {}, "", t0 + 2 * s);
	ASSERT_TRUE(unknown);
	EXPECT_TRUE(unknown->unreadable);
	EXPECT_EQ(sources.counters().files_rewritten, 2u);

	// Opened after it was emptied: it holds nothing, and says so.
	for (const auto &p : {path, fresh}) {
		auto later = sources.from_open(gone, 3, AT_FDCWD, p, 0, ino(p), {}, "", t0 + 4 * s);
		ASSERT_TRUE(later) << p;
		EXPECT_FALSE(later->unreadable) << p;
		EXPECT_TRUE(later->secrets.empty()) << p;
	}
	EXPECT_EQ(sources.counters().files_rewritten, 2u);

	// Emptied 20 ms before the open (a revocation's `: > .env`, then a
	// restart): the server read nothing, and the old token is not its.
	write_at(path, "GITLAB_TOKEN=" + tok + "\n", t0 + 5 * s);
	ASSERT_EQ(sources.from_open(gone, 3, AT_FDCWD, path, 0, ino(path), {}, "", t0 + 6 * s)
	              ->secrets.size(),
	          1u);
	write_at(path, "", t0 + 7 * s - 20000000);
	auto emptied = sources.from_open(gone, 3, AT_FDCWD, path, 0, ino(path), {}, "", t0 + 7 * s);
	ASSERT_TRUE(emptied);
	EXPECT_TRUE(emptied->unreadable);
	EXPECT_TRUE(emptied->secrets.empty());
	EXPECT_EQ(sources.counters().files_rewritten, 3u);

	// Written with no credential 20 ms before the open (`printf > .env &&
	// node server.js`): that is what it holds, and it says so.
	std::string plain = dir + "/fresh/.env.local";
	write_at(plain, "DEBUG=1\n", t0 + 8 * s - 20000000);
	auto written =
	    sources.from_open(gone, 3, AT_FDCWD, plain, 0, ino(plain), {}, "", t0 + 8 * s);
	ASSERT_TRUE(written);
	EXPECT_FALSE(written->unreadable);
	EXPECT_FALSE(written->cached);
	EXPECT_TRUE(written->secrets.empty());

	// A time in the future is a skewed clock (a copy, a network share), not
	// a rewrite: reported once, then known.
	std::string skewed = dir + "/fresh/.env.skewed";
	write_at(skewed, "", wall_now_ns() + 3600 * s);
	for (bool again : {false, true}) {
		auto r = sources.from_open(gone, 3, AT_FDCWD, skewed, 0, ino(skewed), {}, "",
		                           t0 + 9 * s);
		ASSERT_TRUE(r);
		EXPECT_FALSE(r->unreadable);
		EXPECT_EQ(r->cached, again);
	}
	EXPECT_EQ(sources.counters().files_rewritten, 3u);
	std::filesystem::remove_all(dir);
}

// The agent reads an open's event after the fact: by then the fd number may
// name another file. A process that opened a plain file, closed it and
// opened .env under the same number: the plain file's open is not a
// credential file named .env.
TEST(SecretSources, AnFdNumberReusedSinceTheOpenDoesNotNameTheFile)
{
	std::string dir = ::testing::TempDir() + "/kt-reuse-" + std::to_string(getpid());
	mkdir(dir.c_str(), 0700);
	std::string plain = dir + "/LC_IDENTIFICATION", env = dir + "/.env";
	std::ofstream(plain) << "identification data\n";
	std::string tok = "glpat-" + std::string("Zq3") + "x7Rk2Lm9Pw4Tn8Vb6Hc1";
	std::ofstream(env) << "GITLAB_TOKEN=" << tok << "\n";
	struct stat st;
	ASSERT_EQ(stat(plain.c_str(), &st), 0);
	// Through a symlink, so the name opened says nothing and the fd's link
	// is asked.
	std::string link = dir + "/data";
	ASSERT_EQ(symlink(plain.c_str(), link.c_str()), 0);

	int ready[2], done[2];
	ASSERT_EQ(pipe(ready), 0);
	ASSERT_EQ(pipe(done), 0);
	pid_t child = fork();
	if (child == 0) {
		int a = open(link.c_str(), O_RDONLY);
		close(a);
		int b = open(env.c_str(), O_RDONLY); // the same number
		char c = b == a ? 'r' : 'x';
		(void)!write(ready[1], &c, 1);
		(void)!read(done[0], &c, 1);
		_exit(0);
	}
	char c = 0;
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	int fd = 0;
	for (const auto &e :
	     std::filesystem::directory_iterator("/proc/" + std::to_string(child) + "/fd"))
		if (std::filesystem::read_symlink(e.path()) == env)
			fd = std::stoi(e.path().filename());
	SecretSources sources(Fingerprinter(SecretBytes(std::string(32, 'k'))), {}, 1 << 20);
	auto scan = sources.from_open(child, fd, AT_FDCWD, link, 0, st.st_ino);
	(void)!write(done[1], &c, 1);
	waitpid(child, nullptr, 0);
	EXPECT_EQ(c, 'r');
	EXPECT_FALSE(scan) << scan->path;
	std::filesystem::remove_all(dir);
}
