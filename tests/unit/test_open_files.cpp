// OpenFiles without a kernel: the fds are this test's own, /proc shows them,
// and a fake of the probes' map holds what the kernel would have counted.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "keytrail/abi.h"
#include "keytrail/agent/open_files.h"
#include "keytrail/util/kdev.h"
#include "support/kernel_records.h"

using namespace keytrail;
using namespace keytrail::test;

namespace
{

class OpenFilesTest : public ::testing::Test
{
      protected:
	void SetUp() override
	{
		char t[] = "/tmp/kt-openfiles-XXXXXX";
		ASSERT_TRUE(mkdtemp(t));
		dir = t;
	}
	void TearDown() override
	{
		for (int fd : held)
			close(fd);
		std::filesystem::remove_all(dir);
	}
	// A file of ours, opened: as the kernel would report its open.
	OpenEvent open_file(const std::string &name)
	{
		std::string path = dir + "/" + name;
		std::ofstream(path) << "contents of " << name << "\n";
		int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
		EXPECT_GE(fd, 0);
		held.push_back(fd);
		struct stat st {
		};
		fstat(fd, &st);
		OpenEvent e;
		e.ctx.pid = static_cast<uint32_t>(getpid());
		e.ctx.comm = "test";
		e.fd = fd;
		e.dev = user_dev_to_kernel(st.st_dev);
		e.ino = st.st_ino;
		e.path = path;
		return e;
	}
	// n files opened and reported, each with counters in the kernel's map.
	std::vector<OpenEvent> open_counted(int n)
	{
		std::vector<OpenEvent> opened;
		for (int i = 0; i < n; i++) {
			opened.push_back(open_file("f" + std::to_string(i)));
			const OpenEvent &e = opened.back();
			files.on_open(e);
			probe.fds[{e.ctx.pid, e.fd}] = kt_fd_state{e.dev, e.ino, 1, 1, e.ctx.ts_ns};
		}
		return opened;
	}
	// The kernel's close record of an open.
	static CloseEvent close_of(const OpenEvent &e)
	{
		CloseEvent c;
		c.ctx = e.ctx;
		c.fd = e.fd;
		c.dev = e.dev;
		c.ino = e.ino;
		c.reason = KT_CLOSE_CLOSE;
		return c;
	}
	void close_fd(int fd)
	{
		close(fd);
		std::erase(held, fd);
	}
	std::string dir;
	std::vector<int> held;
	FakeProbe probe;
	AgentCounters counters;
	OpenFiles files{probe, counters};
};

} // namespace

TEST_F(OpenFilesTest, AFileFoundClosedInProcIsReportedOnceWithTheKernelsCounters)
{
	auto a = open_file("a.env");
	auto b = open_file("b.env");
	files.on_open(a);
	files.on_open(b);
	probe.fds[{a.ctx.pid, a.fd}] = kt_fd_state{a.dev, a.ino, 40, 2};
	probe.fds[{b.ctx.pid, b.fd}] = kt_fd_state{b.dev, b.ino, 7, 1};
	EXPECT_TRUE(files.reap(100).empty()) << "both are open";

	close_fd(a.fd);
	auto closed = files.reap(100);
	ASSERT_EQ(closed.size(), 1u);
	EXPECT_EQ(closed[0].fd.fd, a.fd);
	EXPECT_EQ(closed[0].fd.path, a.path);
	EXPECT_EQ(closed[0].fd.reason, static_cast<uint32_t>(KT_CLOSE_CLOSE));
	EXPECT_EQ(closed[0].fd.state.bytes_read, 40u);
	EXPECT_EQ(closed[0].fd.state.reads, 2u);
	EXPECT_EQ(closed[0].ctx.pid, a.ctx.pid);
	EXPECT_EQ(closed[0].ctx.comm, "test");
	EXPECT_EQ(probe.fds.count({a.ctx.pid, a.fd}), 0u) << "taken from the kernel";
	EXPECT_TRUE(files.reap(100).empty()) << "reported once";
	EXPECT_EQ(probe.fds.count({b.ctx.pid, b.fd}), 1u) << "b is open still";
}

// The number names another file now, whose open the kernel already reported
// along with the old file's close: the newer file's counters stay.
TEST_F(OpenFilesTest, ANumberGivenToAnotherFileKeepsThatFilesCounters)
{
	auto old_file = open_file("old.env");
	files.on_open(old_file);
	int fd = old_file.fd;
	close_fd(fd);
	auto newer = open_file("new.env");
	ASSERT_EQ(newer.fd, fd) << "the lowest free number";
	probe.fds[{newer.ctx.pid, fd}] = kt_fd_state{newer.dev, newer.ino, 5, 1};
	EXPECT_TRUE(files.reap(100).empty());
	auto kept = probe.fds.find({newer.ctx.pid, fd});
	ASSERT_NE(kept, probe.fds.end());
	EXPECT_EQ(kept->second.bytes_read, 5u);
	// Its close, when the kernel reports it, names the file it was.
	files.on_open(newer);
	EXPECT_EQ(files.on_close(close_of(newer)).path, newer.path);
}

// Each reap looks at no more than its budget, and the next one goes on
// from there: every fd is looked at in turn.
TEST_F(OpenFilesTest, EachReapLooksAtItsBudgetAndTheNextGoesOn)
{
	std::vector<OpenEvent> opened = open_counted(5);
	for (const auto &e : opened)
		close_fd(e.fd);
	std::set<int> seen;
	for (int round = 0; round < 3; round++) {
		auto closed = files.reap(2);
		EXPECT_LE(closed.size(), 2u);
		for (const auto &r : closed)
			EXPECT_TRUE(seen.insert(r.fd.fd).second) << "reported twice: " << r.fd.fd;
	}
	EXPECT_EQ(seen.size(), 5u);
}

// A process that is gone: its exit record reports its fds, not a reap.
TEST_F(OpenFilesTest, AProcessThatIsGoneIsLeftToItsExit)
{
	OpenEvent e;
	e.ctx.pid = 4500077; // above pid_max: no such process
	e.fd = 3;
	e.dev = 1;
	e.ino = 2;
	e.path = "/x";
	files.on_open(e);
	probe.fds[{e.ctx.pid, 3}] = kt_fd_state{1, 2, 9, 1};
	EXPECT_TRUE(files.reap(100).empty());
	auto at_exit = files.flush(e.ctx.pid, KT_CLOSE_EXIT);
	ASSERT_EQ(at_exit.size(), 1u);
	EXPECT_EQ(at_exit[0].state.bytes_read, 9u);
	EXPECT_EQ(at_exit[0].reason, static_cast<uint32_t>(KT_CLOSE_EXIT));
}

// The kernel found the file closed first, at the process's next open of
// its number, and its close record is still on its way when a reap finds
// the fd closed: the newer open's counters stay (the same file opened again
// is another open), and the record gets the path, for a round or two.
TEST_F(OpenFilesTest, ACloseTheKernelReportedBeforeAReapKeepsItsPath)
{
	auto a = open_file("a.env");
	a.ctx.ts_ns = 100;
	files.on_open(a);
	close_fd(a.fd);
	// The same file again under the same number, opened at 200 and closed
	// since: the kernel reported a's close and holds the new open's counters.
	probe.fds[{a.ctx.pid, a.fd}] = kt_fd_state{a.dev, a.ino, 5, 1, 200};
	EXPECT_TRUE(files.reap(100).empty()) << "nothing of a's to take";
	ASSERT_EQ(probe.fds.count({a.ctx.pid, a.fd}), 1u) << "the newer open's counters stay";
	EXPECT_EQ((probe.fds[{a.ctx.pid, a.fd}].bytes_read), 5u);
	CloseEvent c = close_of(a);
	c.bytes_read = 3;
	ClosedFd got = files.on_close(c);
	EXPECT_EQ(got.path, a.path);
	EXPECT_EQ(got.state.bytes_read, 3u);

	auto b = open_file("b.env");
	files.on_open(b);
	close_fd(b.fd);
	for (int round = 0; round < 3; round++)
		files.reap(100);
	EXPECT_EQ(files.on_close(close_of(b)).path, "") << "kept for a round or two, not for ever";
}

// An exec closed an fd and the new program's first open took its number
// before the agent saw the exec: the kernel reported the close (as at any
// open), and its record still says it was the exec.
TEST_F(OpenFilesTest, AnExecCloseTheKernelReportedKeepsItsPathAndReason)
{
	auto a = open_file("a.env");
	files.on_open(a);
	close_fd(a.fd);
	auto b = open_file("ld.so.cache"); // the lowest free number: a's
	ASSERT_EQ(b.fd, a.fd);
	b.ctx.ts_ns = 300;
	probe.fds[{b.ctx.pid, b.fd}] = kt_fd_state{b.dev, b.ino, 0, 0, 300};
	EXPECT_TRUE(files.flush(a.ctx.pid, KT_CLOSE_EXEC).empty());
	EXPECT_EQ(probe.fds.count({b.ctx.pid, b.fd}), 1u) << "the new program's open stays";
	ClosedFd got = files.on_close(close_of(a));
	EXPECT_EQ(got.path, a.path);
	EXPECT_EQ(got.reason, static_cast<uint32_t>(KT_CLOSE_EXEC));
}

// Fds that stay open at the front of the order do not starve the rest: the
// cursor passes them by.
TEST_F(OpenFilesTest, FdsThatStayOpenDoNotHideTheOnesAfterThem)
{
	std::vector<OpenEvent> opened = open_counted(6);
	close_fd(opened[4].fd);
	close_fd(opened[5].fd);
	std::set<int> seen;
	for (int round = 0; round < 3; round++) // 6 fds, 2 a round
		for (const auto &r : files.reap(2))
			seen.insert(r.fd.fd);
	EXPECT_EQ(seen, (std::set<int>{opened[4].fd, opened[5].fd}));
}

// At exec only the fds the exec closed are reported: one that survived it
// (no O_CLOEXEC) stays, with its counters.
TEST_F(OpenFilesTest, AnExecReportsTheFdsItClosedAndKeepsTheRest)
{
	auto kept = open_file("kept.env");
	auto gone = open_file("gone.env");
	for (const auto &e : {kept, gone}) {
		files.on_open(e);
		probe.fds[{e.ctx.pid, e.fd}] = kt_fd_state{e.dev, e.ino, 4, 1};
	}
	close_fd(gone.fd);
	auto closed = files.flush(gone.ctx.pid, KT_CLOSE_EXEC);
	ASSERT_EQ(closed.size(), 1u);
	EXPECT_EQ(closed[0].fd, gone.fd);
	EXPECT_EQ(closed[0].path, gone.path);
	EXPECT_EQ(closed[0].reason, static_cast<uint32_t>(KT_CLOSE_EXEC));
	EXPECT_EQ(probe.fds.count({kept.ctx.pid, kept.fd}), 1u);
	close_fd(kept.fd);
	auto later = files.reap(100);
	ASSERT_EQ(later.size(), 1u);
	EXPECT_EQ(later[0].fd.path, kept.path);
}
