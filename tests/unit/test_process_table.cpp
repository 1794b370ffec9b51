#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "keytrail/process/table.h"

using namespace keytrail;

namespace
{
ProcessInfo proc(uint32_t pid, uint64_t start, uint32_t ppid = 1)
{
	ProcessInfo p;
	p.pid = pid;
	p.ppid = ppid;
	p.start_ticks = start;
	return p;
}
} // namespace

TEST(ProcessTable, PidReuseGetsNewExecId)
{
	ProcessTable t("deadbeef", 1000);
	std::string first = t.upsert(proc(100, 5000)).exec_id;
	std::string second = t.upsert(proc(100, 9000)).exec_id; // same pid, later start
	EXPECT_NE(first, second);
	EXPECT_EQ(first, "deadbeef:5000:100");
	EXPECT_EQ(t.live(), 1u);
	EXPECT_EQ(t.exited(), 1u); // the old instance is retired, not merged
	EXPECT_EQ(t.find_instance(100, 5000), nullptr);
	EXPECT_NE(t.find_instance(100, 9000), nullptr);
}

TEST(ProcessTable, ExitedKeptForGraceThenEvictedAndBounded)
{
	ProcessTable t("b", /*grace*/ 1000, /*max_exited*/ 3);
	for (uint32_t i = 1; i <= 5; i++) {
		t.upsert(proc(i, i));
		t.mark_exited(i, 100);
	}
	EXPECT_EQ(t.evict(500), 2u); // over the bound
	EXPECT_EQ(t.exited(), 3u);
	EXPECT_EQ(t.evict(2000), 3u); // past the grace period
	EXPECT_EQ(t.exited(), 0u);
}

TEST(ProcessTable, ChildrenAndProcRead)
{
	ProcessTable t("b", 1000);
	t.upsert(proc(10, 1));
	t.upsert(proc(11, 2, 10));
	t.upsert(proc(12, 3, 10));
	EXPECT_EQ(t.children_of(10).size(), 2u);
	auto self = read_proc(getpid());
	ASSERT_TRUE(self);
	EXPECT_EQ(self->ppid, static_cast<uint32_t>(getppid()));
	EXPECT_FALSE(self->argv.empty());
	EXPECT_FALSE(read_proc(0x7FFFFFF0u));
	EXPECT_EQ(read_boot_id().size(), 8u);
}

// What /proc shows of a task being reaped (fs/proc/array.c without its
// signal handlers: ppid 0, session -1, no terminal) is a process that is
// gone, not a root process without a parent, or a session numbered
// 4294967295 that split one terminal's readers.
TEST(ProcessTable, AProcessBeingReapedIsGone)
{
	char tmpl[] = "/tmp/kt-proc-XXXXXX";
	ASSERT_NE(mkdtemp(tmpl), nullptr);
	std::string root = tmpl;
	auto stat_of = [&](uint32_t pid, const std::string &fields) {
		std::filesystem::create_directory(root + "/" + std::to_string(pid));
		std::ofstream(root + "/" + std::to_string(pid) + "/stat")
		    << pid << " (grep) " << fields << " 0 0 0 0 0 0 0 0 0 0 0 0 0 777 0 0\n";
	};
	stat_of(40, "X 0 -1 -1 0 -1");
	stat_of(41, "S 7 41 41 34816 41");
	EXPECT_FALSE(read_proc(40, root));
	auto live = read_proc(41, root);
	ASSERT_TRUE(live);
	EXPECT_EQ(live->ppid, 7u);
	EXPECT_EQ(live->sid, 41u);
	EXPECT_EQ(live->tty_nr, 34816u);
	EXPECT_EQ(live->start_ticks, 777u);
	std::filesystem::remove_all(root);
}

TEST(ProcessTable, AncestryReachesExitedParents)
{
	ProcessTable t("b", 1000000);
	t.upsert(proc(1, 1, 0));
	t.upsert(proc(50, 10, 1));  // the MCP client
	t.upsert(proc(60, 20, 50)); // npx
	t.upsert(proc(70, 30, 60)); // node server
	t.mark_exited(60, 5);       // npx exits; node lives on
	ProcessInfo *node = t.find(70);
	ASSERT_NE(node, nullptr);
	EXPECT_EQ(t.find_exec(node->exec_id), node); // live, by its pid
	EXPECT_EQ(t.find_exec("b:30:71"), nullptr);
	EXPECT_EQ(t.find_exec("b:31:70"), nullptr); // another instance of pid 70
	ASSERT_NE(t.find_exec("b:20:60"), nullptr); // exited
	EXPECT_EQ(t.find_exec("b:20:60")->exit_time_ns, 5);
	auto chain = t.ancestry(*node, 0);
	ASSERT_EQ(chain.size(), 3u);
	EXPECT_EQ(chain[0]->pid, 60u);
	EXPECT_EQ(chain[0]->exit_time_ns, 5);
	EXPECT_EQ(chain[1]->pid, 50u);
	EXPECT_EQ(chain[2]->pid, 1u);
	EXPECT_EQ(t.ancestry(*node, 2).size(), 2u);
	// A new process reusing pid 60 is not node's parent.
	t.upsert(proc(60, 99, 1));
	EXPECT_EQ(t.ancestry(*node, 1)[0]->start_ticks, 20u);
	// Once evicted, the chain stops there, without dangling.
	t.evict(2000000);
	EXPECT_EQ(t.ancestry(*node, 0).size(), 0u);
}

// A process that execs again after its parent exited (reparented to init
// by then) keeps the parent that started it.
TEST(ProcessTable, AReExecAfterReparentingKeepsItsParent)
{
	ProcessTable t("b", 1000000);
	t.upsert(proc(1, 1, 0));
	t.upsert(proc(50, 10, 1));  // bash script
	t.upsert(proc(60, 20, 50)); // sh -c '...; exec cat creds' &
	t.mark_exited(50, 5);       // bash exits; sh is reparented
	ProcessInfo again = proc(60, 20, 1);
	t.upsert(std::move(again)); // the exec of cat, ppid 1 now
	auto chain = t.ancestry(*t.find(60), 0);
	ASSERT_GE(chain.size(), 1u);
	EXPECT_EQ(chain[0]->pid, 50u) << "the launcher, not init";
}

TEST(ProcessTable, MissedExitsAreRetired)
{
	ProcessTable t("b", 1000);
	std::vector<std::string> missed;
	std::vector<int64_t> exit_times;
	t.on_missed_exit([&](const ProcessInfo &p) {
		missed.push_back(p.exec_id);
		exit_times.push_back(p.exit_time_ns);
	});
	// A pid reused before the old instance's exit was seen.
	std::string old = t.upsert(proc(100, 5000)).exec_id;
	t.upsert(proc(100, 9000));
	EXPECT_EQ(missed, std::vector<std::string>{old});
	EXPECT_EQ(exit_times, std::vector<int64_t>{0}); // not known: the agent says when
	t.mark_exited(100, 1);
	// A process that is gone (no such pid) with no exit record.
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	waitpid(gone, nullptr, 0);
	std::string gone_id = t.upsert(proc(static_cast<uint32_t>(gone), 1)).exec_id;
	t.upsert(proc(static_cast<uint32_t>(getpid()), 2));
	ASSERT_EQ(t.sweep_vanished(777), 1u); // the reaped child
	EXPECT_EQ(missed, (std::vector<std::string>{old, gone_id}));
	EXPECT_EQ(exit_times, (std::vector<int64_t>{0, 777}));
	EXPECT_NE(t.find(static_cast<uint32_t>(getpid())), nullptr); // alive: kept
	EXPECT_EQ(t.find(static_cast<uint32_t>(gone)), nullptr);
}

TEST(ProcessTable, ChurnStaysBounded)
{
	ProcessTable t("b", 1000, 1000);
	for (uint32_t i = 0; i < 100000; i++) {
		t.upsert(proc(1000 + (i % 5000), i, 1)); // pids wrap: reuse
		t.mark_exited(1000 + (i % 5000), i);
		if (i % 100 == 0)
			t.evict(i);
	}
	t.evict(100000);
	EXPECT_LE(t.exited(), 1000u);
	EXPECT_EQ(t.live(), 0u);
}
