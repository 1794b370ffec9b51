// proc_fd on this test's own fds: what /proc shows of an fd without
// reading its fdinfo or asking its filesystem.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "keytrail/util/kdev.h"
#include "keytrail/util/proc_fd.h"

using namespace keytrail;

namespace
{
uint32_t self()
{
	return static_cast<uint32_t>(getpid());
}
} // namespace

TEST(ProcFd, ARegularFileShowsItsInodeAndAccess)
{
	char path[] = "/tmp/kt-procfd-XXXXXX";
	int w = mkstemp(path);
	ASSERT_GE(w, 0);
	int r = open(path, O_RDONLY | O_CLOEXEC);
	int wo = open(path, O_WRONLY | O_CLOEXEC);
	int p = open(path, O_PATH | O_CLOEXEC);
	ASSERT_GE(r, 0);
	ASSERT_GE(wo, 0);
	ASSERT_GE(p, 0);
	struct stat st {
	};
	ASSERT_EQ(fstat(r, &st), 0);

	ProcFd f = proc_fd(self(), r);
	EXPECT_EQ(f.state, ProcFd::kFound);
	EXPECT_TRUE(S_ISREG(f.mode));
	EXPECT_EQ(f.ino, st.st_ino);
	EXPECT_EQ(f.dev, user_dev_to_kernel(st.st_dev));
	EXPECT_TRUE(f.readable);
	EXPECT_TRUE(proc_fd(self(), w).readable) << "mkstemp opens O_RDWR";
	EXPECT_FALSE(proc_fd(self(), wo).readable);
	ProcFd op = proc_fd(self(), p);
	EXPECT_EQ(op.state, ProcFd::kFound);
	EXPECT_EQ(op.ino, st.st_ino);
	EXPECT_FALSE(op.readable) << "O_PATH reads nothing";

	for (int fd : {w, r, wo, p})
		close(fd);
	unlink(path);
	EXPECT_EQ(proc_fd(self(), r).state, ProcFd::kGone);
}

// What a number that once named a file may name later: not a regular file.
TEST(ProcFd, AnEpollFdOrAPipeIsNotARegularFile)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int pipefd[2];
	ASSERT_GE(ep, 0);
	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	for (int fd : {ep, pipefd[0]}) {
		ProcFd f = proc_fd(self(), fd);
		EXPECT_EQ(f.state, ProcFd::kFound);
		EXPECT_FALSE(S_ISREG(f.mode)) << fd;
	}
	close(ep);
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST(ProcFd, AProcessThatDoesNotExistHasNoFds)
{
	EXPECT_EQ(proc_fd(4500077, 0).state, ProcFd::kGone); // above pid_max
}

// The access shown is the file's the number names now, not a cached one of
// the file it named before.
TEST(ProcFd, ANumberGivenToAWriteOnlyFileIsNotReadableAnyMore)
{
	char path[] = "/tmp/kt-procfd-XXXXXX";
	int w = mkstemp(path);
	ASSERT_GE(w, 0);
	int r = open(path, O_RDONLY | O_CLOEXEC);
	ASSERT_GE(r, 0);
	EXPECT_TRUE(proc_fd(self(), r).readable);
	close(r);
	int wo = open(path, O_WRONLY | O_CLOEXEC);
	ASSERT_EQ(wo, r) << "the lowest free number";
	EXPECT_FALSE(proc_fd(self(), wo).readable);
	close(wo);
	close(w);
	unlink(path);
}
