// Root integration tests: real probes, real syscalls, asserted event by event.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "keytrail/abi.h"
#include "probe_fixture.h"
#include "support/child.h"
#include "support/tls.h"

using namespace keytrail;
using namespace keytrail::test;

namespace
{

struct TempFile {
	std::string path;
	struct stat st {
	};
	explicit TempFile(size_t bytes, const std::string &name = "secret")
	{
		char dir[] = "/tmp/kt-it-XXXXXX";
		path = std::string(mkdtemp(dir)) + "/" + name;
		int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
		std::string data(bytes, 'x');
		EXPECT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(bytes));
		close(fd);
		stat(path.c_str(), &st);
	}
	~TempFile()
	{
		unlink(path.c_str());
		rmdir(path.substr(0, path.rfind('/')).c_str());
	}
	uint64_t kdev() const { return user_dev_to_kernel(st.st_dev); }
};

struct Listener {
	int fd = -1;
	uint16_t port = 0;
	Listener()
	{
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(a);
		bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a));
		listen(fd, 64);
		getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
		port = ntohs(a.sin_port);
	}
	~Listener() { close(fd); }
};

int read_all(const std::string &path, size_t chunk)
{
	int fd = open(path.c_str(), O_RDONLY);
	if (fd < 0)
		return 1;
	char buf[4096];
	while (read(fd, buf, chunk) > 0) {
	}
	close(fd);
	return 0;
}

enum class WriteCall { Write, Writev, Sendto, Sendmsg };

// Connects non-blocking (EINPROGRESS), waits until writable, sends the
// bytes with the given call.
int connect_and_send(uint16_t port, const std::string &bytes, WriteCall how)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int r = connect(s, reinterpret_cast<sockaddr *>(&a), sizeof(a));
	if (r != 0 && errno != EINPROGRESS)
		return 2;
	pollfd p{s, POLLOUT, 0};
	poll(&p, 1, 2000);
	iovec iov{const_cast<char *>(bytes.data()), bytes.size()};
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	ssize_t n = -1;
	switch (how) {
	case WriteCall::Write: n = write(s, bytes.data(), bytes.size()); break;
	case WriteCall::Writev: n = writev(s, &iov, 1); break;
	case WriteCall::Sendto: n = sendto(s, bytes.data(), bytes.size(), 0, nullptr, 0); break;
	case WriteCall::Sendmsg: n = sendmsg(s, &msg, 0); break;
	}
	close(s);
	return n == static_cast<ssize_t>(bytes.size()) ? 0 : 3;
}

} // namespace

class Probes : public ProbeTest
{
};

// There is no close hook: the kernel reports a file closed when the process
// is given its number again (here by the next open), with the reads summed.
TEST_F(Probes, TrackedOpenAndReadAreReportedOnceTheNumberIsGivenAgain)
{
	TempFile f(1000);
	Child child([&] {
		if (read_all(f.path, 300))
			return 1;
		int again = open("/dev/null", O_RDONLY); // the number read_all closed
		return again >= 0 ? 0 : 2;
	});
	ASSERT_TRUE(loader_->track(child.pid()));
	child.go();
	ASSERT_EQ(child.wait(), 0);

	pid_t pid = child.pid();
	auto open_ev = wait_for<OpenEvent>([&](const OpenEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(pid) && e.path == f.path;
	});
	ASSERT_TRUE(open_ev);
	EXPECT_GE(open_ev->fd, 0);
	EXPECT_EQ(open_ev->ino, f.st.st_ino);
	EXPECT_EQ(open_ev->dev, f.kdev());
	EXPECT_EQ(open_ev->ctx.ppid, static_cast<uint32_t>(getpid()));
	EXPECT_TRUE(open_ev->ctx.flags & KT_F_TRACKED);

	auto close_ev = wait_for<CloseEvent>([&](const CloseEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(pid) && e.ino == f.st.st_ino;
	});
	ASSERT_TRUE(close_ev);
	EXPECT_EQ(close_ev->bytes_read, 1000u);
	EXPECT_EQ(close_ev->reads, 4u); // 300+300+300+100; the 0-byte EOF read is not counted
	EXPECT_EQ(close_ev->fd, open_ev->fd);
	EXPECT_EQ(close_ev->reason, static_cast<uint32_t>(KT_CLOSE_CLOSE));
	EXPECT_TRUE(wait_for<ExitEvent>(
	    [&](const ExitEvent &e) { return e.ctx.pid == static_cast<uint32_t>(pid); }));
	EXPECT_EQ(count<CloseEvent>(
	              [&](const CloseEvent &e) { return e.ctx.pid == static_cast<uint32_t>(pid); }),
	          1u)
	    << "reported once";
	// /dev/null is not a regular file: no counters are kept for it.
	EXPECT_FALSE(loader_->take_fd_state(pid, open_ev->fd, nullptr));
}

TEST_F(Probes, OpenOnOneThreadReadOnAnotherIsSummedPerProcess)
{
	TempFile f(5000);
	Child child([&] {
		int fd = -1;
		std::thread opener([&] { fd = open(f.path.c_str(), O_RDONLY); });
		opener.join();
		char buf[1024];
		while (read(fd, buf, sizeof(buf)) > 0) {
		}
		close(fd);
		return open("/dev/null", O_RDONLY) >= 0 ? 0 : 1; // reports the close
	});
	loader_->track(child.pid());
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto open_ev = wait_for<OpenEvent>([&](const OpenEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid()) && e.ino == f.st.st_ino;
	});
	ASSERT_TRUE(open_ev);
	EXPECT_NE(open_ev->ctx.tid, open_ev->ctx.pid); // opened on the helper thread
	auto close_ev = wait_for<CloseEvent>([&](const CloseEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid()) && e.ino == f.st.st_ino;
	});
	ASSERT_TRUE(close_ev);
	EXPECT_EQ(close_ev->bytes_read, 5000u);
}

TEST_F(Probes, UnclosedFdCountersSurviveUntilUserspaceTakesThemAtExit)
{
	TempFile f(777);
	Child child([&] {
		int fd = open(f.path.c_str(), O_RDONLY);
		char buf[1000];
		return read(fd, buf, sizeof(buf)) == 777 ? 0 : 1; // exits without close()
	});
	loader_->track(child.pid());
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto open_ev = wait_for<OpenEvent>([&](const OpenEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid()) && e.ino == f.st.st_ino;
	});
	ASSERT_TRUE(open_ev);
	ASSERT_TRUE(wait_for<ExitEvent>(
	    [&](const ExitEvent &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); }));
	// Not when they are another file's: a newer open's stay.
	kt_fd_open other{f.kdev(), f.st.st_ino + 1, open_ev->ctx.ts_ns};
	EXPECT_FALSE(loader_->take_fd_state(child.pid(), open_ev->fd, &other));
	kt_fd_open reopened{f.kdev(), f.st.st_ino, open_ev->ctx.ts_ns + 1};
	EXPECT_FALSE(loader_->take_fd_state(child.pid(), open_ev->fd, &reopened))
	    << "the same file opened again under the number is another open";
	kt_fd_open file{f.kdev(), f.st.st_ino, open_ev->ctx.ts_ns};
	auto st = loader_->take_fd_state(child.pid(), open_ev->fd, &file);
	ASSERT_TRUE(st);
	EXPECT_EQ(st->bytes_read, 777u);
	EXPECT_FALSE(loader_->take_fd_state(child.pid(), open_ev->fd, nullptr)); // taken once
	EXPECT_FALSE(loader_->is_tracked(child.pid()));                          // cleared at exit
}

class ProbesWrite : public ProbeTest, public ::testing::WithParamInterface<WriteCall>
{
};

TEST_P(ProbesWrite, NonBlockingConnectAndClientHelloSni)
{
	Listener l;
	std::string hello = client_hello("gitlab.internal.test");
	Child child([&] { return connect_and_send(l.port, hello, GetParam()); });
	loader_->track(child.pid());
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto c = wait_for<ConnectEvent>([&](const ConnectEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid()) && e.port == l.port;
	});
	ASSERT_TRUE(c);
	EXPECT_EQ(address_string(c->family, c->addr), "127.0.0.1");
	EXPECT_TRUE(c->ret == -EINPROGRESS || c->ret == 0) << c->ret;
	EXPECT_EQ(c->sock_type, SOCK_STREAM);
	auto p = wait_for<PayloadEvent>([&](const PayloadEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid()) && e.fd == c->fd;
	});
	ASSERT_TRUE(p);
	EXPECT_EQ(p->sni, "gitlab.internal.test");
	EXPECT_EQ(p->captured, hello.size());
}

INSTANTIATE_TEST_SUITE_P(AllWriteCalls, ProbesWrite,
                         ::testing::Values(WriteCall::Write, WriteCall::Writev, WriteCall::Sendto,
                                           WriteCall::Sendmsg));

// A socket closed before its first write leaves nothing behind for the next
// file or socket given its number: what is written there (a file, a socket
// that never connected) is not a payload, and the next connect's first
// write is its own.
TEST_F(Probes, AFirstWriteIsTheSocketsThatConnectedNotTheNextOneAtItsNumber)
{
	Listener l;
	TempFile f(0, "written");
	Child child([&] {
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_port = htons(l.port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		const std::string req = "GET / HTTP/1.1\r\nHost: reused.test\r\n\r\n";
		auto connected_then_closed = [&] {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			if (s < 0 || connect(s, reinterpret_cast<sockaddr *>(&a), sizeof(a)))
				return -1;
			close(s); // never written
			return s;
		};
		int s = connected_then_closed();
		int file = open(f.path.c_str(), O_WRONLY);
		if (s < 0 || file != s ||
		    write(file, req.data(), req.size()) != static_cast<ssize_t>(req.size()))
			return 2;
		close(file);
		s = connected_then_closed();
		int pair[2];
		if (s < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) || pair[0] != s ||
		    write(pair[0], req.data(), req.size()) != static_cast<ssize_t>(req.size()))
			return 3;
		close(pair[0]);
		close(pair[1]);
		return connect_and_send(l.port, "GET / HTTP/1.1\r\nHost: real.test\r\n\r\n",
		                        WriteCall::Write);
	});
	ASSERT_TRUE(loader_->track(child.pid()));
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto mine = [&](const auto &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); };
	ASSERT_TRUE(wait_for<ExitEvent>([&](const ExitEvent &e) { return mine(e); }));
	auto p = wait_for<PayloadEvent>([&](const PayloadEvent &e) { return mine(e); });
	ASSERT_TRUE(p);
	EXPECT_EQ(p->http_host, "real.test");
	EXPECT_EQ(count<PayloadEvent>(mine), 1u);
}

TEST_F(Probes, HttpHostFromPlainRequest)
{
	Listener l;
	std::string req =
	    "GET /api/v4/user HTTP/1.1\r\nHost: gitlab.local:" + std::to_string(l.port) +
	    "\r\nPRIVATE-TOKEN: glpat-notarealtokenvalue00\r\n\r\n";
	Child child([&] { return connect_and_send(l.port, req, WriteCall::Write); });
	loader_->track(child.pid());
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto p = wait_for<PayloadEvent>(
	    [&](const PayloadEvent &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); });
	ASSERT_TRUE(p);
	EXPECT_EQ(p->http_host, "gitlab.local:" + std::to_string(l.port));
}

TEST_F(Probes, UntrackedProcessesEmitNoFileOrNetworkEvents)
{
	TempFile f(100);
	Listener l;
	Child child([&] {
		return read_all(f.path, 100) + connect_and_send(l.port, "x", WriteCall::Write);
	});
	child.go();
	ASSERT_EQ(child.wait(), 0);
	// The exit is reported for every process: use it as the barrier.
	ASSERT_TRUE(wait_for<ExitEvent>(
	    [&](const ExitEvent &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); }));
	auto mine = [&](const auto &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); };
	EXPECT_EQ(count<OpenEvent>(mine), 0u);
	EXPECT_EQ(count<ConnectEvent>(mine), 0u);
	EXPECT_EQ(count<PayloadEvent>(mine), 0u);
}

TEST_F(Probes, UntrackedOpenOfWatchedInodeIsReportedAndTracked)
{
	TempFile secret(64, "credentials");
	TempFile other(64, "other");
	ASSERT_TRUE(loader_->watch(secret.kdev(), secret.st.st_ino, 7));
	Listener l;
	Child child([&] {
		read_all(other.path, 64);  // not watched: silent
		read_all(secret.path, 64); // watched: reported, and tracked from now on
		return connect_and_send(l.port, "GET / HTTP/1.1\r\nHost: exfil.test\r\n\r\n",
		                        WriteCall::Write);
	});
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto mine = [&](const auto &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); };
	auto o = wait_for<OpenEvent>([&](const OpenEvent &e) { return mine(e); });
	ASSERT_TRUE(o);
	EXPECT_TRUE(o->ctx.flags & KT_F_WATCHED);
	EXPECT_EQ(o->ino, secret.st.st_ino);
	EXPECT_TRUE(o->path.empty()); // userspace names it from its watch table
	auto conn = wait_for<ConnectEvent>([&](const ConnectEvent &e) { return mine(e); });
	ASSERT_TRUE(conn) << "the process should be tracked after opening a watched inode";
	EXPECT_EQ(conn->port, l.port);
	EXPECT_EQ(count<OpenEvent>(
	              [&](const OpenEvent &e) { return mine(e) && e.ino == other.st.st_ino; }),
	          0u);
	// Its reads were summed (the socket took the number without an open:
	// userspace takes the counters at exit).
	ASSERT_TRUE(wait_for<ExitEvent>([&](const ExitEvent &e) { return mine(e); }));
	auto st = loader_->take_fd_state(child.pid(), o->fd, nullptr);
	ASSERT_TRUE(st);
	EXPECT_EQ(st->bytes_read, 64u);
}

// The agent opens watched files too (it fingerprints them): that does not
// make it follow itself.
TEST_F(Probes, TheAgentOpeningAWatchedFileIsNotTracked)
{
	TempFile secret(64, "credentials");
	ASSERT_TRUE(loader_->watch(secret.kdev(), secret.st.st_ino, 7));
	ASSERT_EQ(read_all(secret.path, 64), 0); // this process loaded the probes
	Child child([&] { return read_all(secret.path, 64); });
	child.go();
	ASSERT_EQ(child.wait(), 0);
	ASSERT_TRUE(wait_for<OpenEvent>([&](const OpenEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid());
	})) << "anyone else's open of it is reported";
	EXPECT_FALSE(loader_->is_tracked(getpid()));
	EXPECT_EQ(count<OpenEvent>([&](const OpenEvent &e) {
		          return e.ctx.pid == static_cast<uint32_t>(getpid());
	          }),
	          0u);
}

// The watch is on the inode: every name for it is the same file.
TEST_F(Probes, WatchedInodeIsSeenThroughAHardlinkASymlinkAndABindMount)
{
	TempFile secret(64, "credentials");
	ASSERT_TRUE(loader_->watch(secret.kdev(), secret.st.st_ino, 7));
	std::string dir = secret.path.substr(0, secret.path.rfind('/'));
	std::string hard = dir + "/hardlink", sym = dir + "/symlink";
	char mnt[] = "/tmp/kt-it-bind-XXXXXX";
	ASSERT_TRUE(mkdtemp(mnt));
	struct Cleanup {
		std::string hard, sym, mnt;
		~Cleanup()
		{
			unlink(hard.c_str());
			unlink(sym.c_str());
			umount2(mnt.c_str(), MNT_DETACH);
			rmdir(mnt.c_str());
		}
	} cleanup{hard, sym, mnt};
	ASSERT_EQ(link(secret.path.c_str(), hard.c_str()), 0);
	ASSERT_EQ(symlink(secret.path.c_str(), sym.c_str()), 0);
	ASSERT_EQ(mount(dir.c_str(), mnt, nullptr, MS_BIND, nullptr), 0) << strerror(errno);
	for (const std::string &via : {hard, sym, std::string(mnt) + "/credentials"}) {
		Child child([&] { return read_all(via, 64); }); // untracked until it opens
		child.go();
		ASSERT_EQ(child.wait(), 0);
		auto mine = [&](const auto &e) {
			return e.ctx.pid == static_cast<uint32_t>(child.pid());
		};
		auto o = wait_for<OpenEvent>([&](const OpenEvent &e) { return mine(e); });
		ASSERT_TRUE(o) << via;
		EXPECT_TRUE(o->ctx.flags & KT_F_WATCHED) << via;
		EXPECT_EQ(o->ino, secret.st.st_ino) << via;
		EXPECT_EQ(o->dev, secret.kdev()) << via;
		ASSERT_TRUE(wait_for<ExitEvent>([&](const ExitEvent &e) { return mine(e); }));
		auto st = loader_->take_fd_state(child.pid(), o->fd, nullptr);
		ASSERT_TRUE(st) << via;
		EXPECT_EQ(st->bytes_read, 64u) << via;
	}
}

// A dup'd fd and an fd a child inherited are not opens the kernel saw: the
// first read through one adopts it (reported as an open of the watched
// file, no path), and its reads are summed from there.
TEST_F(Probes, ReadsThroughADupdAndAnInheritedFdOfAWatchedFileAreSeen)
{
	TempFile secret(1000, "credentials");
	ASSERT_TRUE(loader_->watch(secret.kdev(), secret.st.st_ino, 7));
	int pipefd[2];
	ASSERT_EQ(pipe(pipefd), 0);
	Child child([&] {
		int fd = open(secret.path.c_str(), O_RDONLY);
		int copy = fcntl(fd, F_DUPFD, 100);
		char buf[300];
		if (fd < 0 || copy < 100 || read(copy, buf, 300) != 300)
			return 1;
		close(copy);
		pid_t kid = fork();
		if (kid == 0) // reads the inherited fd and exits without closing it
			_exit(read(fd, buf, 200) == 200 ? 0 : 1);
		int status = 0;
		waitpid(kid, &status, 0);
		close(fd);
		if (write(pipefd[1], &kid, sizeof(kid)) != sizeof(kid))
			return 3;
		return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 2;
	});
	ASSERT_TRUE(loader_->track(child.pid()));
	child.go();
	ASSERT_EQ(child.wait(), 0);
	pid_t kid = 0;
	ASSERT_EQ(read(pipefd[0], &kid, sizeof(kid)), static_cast<ssize_t>(sizeof(kid)));
	close(pipefd[0]);
	close(pipefd[1]);
	auto pid = static_cast<uint32_t>(child.pid());

	auto dup_open = wait_for<OpenEvent>(
	    [&](const OpenEvent &e) { return e.ctx.pid == pid && e.fd >= 100; });
	ASSERT_TRUE(dup_open) << "the dup'd fd's first read should adopt it";
	EXPECT_TRUE(dup_open->ctx.flags & KT_F_WATCHED);
	EXPECT_EQ(dup_open->ino, secret.st.st_ino);
	EXPECT_TRUE(dup_open->path.empty());
	ASSERT_TRUE(wait_for<ExitEvent>([&](const ExitEvent &e) { return e.ctx.pid == pid; }));
	// The adopted entry is that open record's: userspace takes it by its time.
	kt_fd_open adopted{secret.kdev(), secret.st.st_ino, dup_open->ctx.ts_ns};
	auto dup_st = loader_->take_fd_state(child.pid(), dup_open->fd, &adopted);
	ASSERT_TRUE(dup_st);
	EXPECT_EQ(dup_st->bytes_read, 300u);
	EXPECT_EQ(dup_st->reads, 1u);

	auto kid_open = wait_for<OpenEvent>(
	    [&](const OpenEvent &e) { return e.ctx.pid == static_cast<uint32_t>(kid); });
	ASSERT_TRUE(kid_open) << "the inherited fd's first read should adopt it";
	EXPECT_TRUE(kid_open->ctx.flags & KT_F_WATCHED);
	EXPECT_EQ(kid_open->ino, secret.st.st_ino);
	ASSERT_TRUE(wait_for<ExitEvent>(
	    [&](const ExitEvent &e) { return e.ctx.pid == static_cast<uint32_t>(kid); }));
	auto st = loader_->take_fd_state(kid, kid_open->fd, nullptr); // it never closed it
	ASSERT_TRUE(st);
	EXPECT_EQ(st->bytes_read, 200u);
}

// dup2 of a watched file over an fd that named another file: the next
// read finds the number naming another inode, reports the old file closed
// and adopts the watched one, whose reads it sums.
TEST_F(Probes, AnFdNumberDup2dOverIsTheNewFileAtItsNextRead)
{
	TempFile secret(500, "credentials");
	TempFile plain(100, "plain");
	ASSERT_TRUE(loader_->watch(secret.kdev(), secret.st.st_ino, 7));
	Child child([&] {
		int p = open(plain.path.c_str(), O_RDONLY);
		int s = open(secret.path.c_str(), O_RDONLY);
		char buf[500];
		if (p < 0 || s < 0 || read(p, buf, 10) != 10 || dup2(s, p) != p ||
		    read(p, buf, 500) != 500)
			return 1;
		close(p);
		close(s);
		return 0;
	});
	ASSERT_TRUE(loader_->track(child.pid()));
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto pid = static_cast<uint32_t>(child.pid());
	auto plain_open = wait_for<OpenEvent>(
	    [&](const OpenEvent &e) { return e.ctx.pid == pid && e.ino == plain.st.st_ino; });
	ASSERT_TRUE(plain_open);
	int fd = plain_open->fd;
	auto plain_close = wait_for<CloseEvent>([&](const CloseEvent &e) {
		return e.ctx.pid == pid && e.fd == fd && e.ino == plain.st.st_ino;
	});
	ASSERT_TRUE(plain_close) << "the file dup2 replaced should be reported closed";
	EXPECT_EQ(plain_close->bytes_read, 10u);
	auto adopted = wait_for<OpenEvent>([&](const OpenEvent &e) {
		return e.ctx.pid == pid && e.fd == fd && e.ino == secret.st.st_ino;
	});
	ASSERT_TRUE(adopted) << "the watched file now at that number should be adopted";
	EXPECT_TRUE(adopted->ctx.flags & KT_F_WATCHED);
	ASSERT_TRUE(wait_for<ExitEvent>([&](const ExitEvent &e) { return e.ctx.pid == pid; }));
	auto secret_st = loader_->take_fd_state(child.pid(), fd, nullptr);
	ASSERT_TRUE(secret_st);
	EXPECT_EQ(secret_st->bytes_read, 500u);
}

TEST_F(Probes, ForkInheritsTrackingAndExecCarriesArgv)
{
	TempFile f(10);
	Child child([&] {
		pid_t gc = fork();
		if (gc == 0) {
			int devnull = open("/dev/null", O_WRONLY);
			dup2(devnull, 1);
			execl("/bin/cat", "cat", f.path.c_str(), "--", nullptr);
			_exit(127);
		}
		int status;
		waitpid(gc, &status, 0);
		return 0;
	});
	loader_->track(child.pid());
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto fk = wait_for<ForkEvent>(
	    [&](const ForkEvent &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); });
	ASSERT_TRUE(fk);
	uint32_t gc = fk->child_pid;
	auto ex = wait_for<ExecEvent>([&](const ExecEvent &e) { return e.ctx.pid == gc; });
	ASSERT_TRUE(ex);
	EXPECT_EQ(ex->filename, "/bin/cat");
	ASSERT_EQ(ex->argv.size(), 3u);
	EXPECT_EQ(ex->argv[1], f.path);
	EXPECT_EQ(ex->ctx.ppid, static_cast<uint32_t>(child.pid()));
	EXPECT_TRUE(ex->ctx.flags & KT_F_TRACKED);
	EXPECT_NE(ex->ctx.start_time_ns, 0u);
	EXPECT_EQ(ex->ctx.start_time_ns, fk->child_start_time_ns);
	auto op = wait_for<OpenEvent>(
	    [&](const OpenEvent &e) { return e.ctx.pid == gc && e.path == f.path; });
	ASSERT_TRUE(op);
	ASSERT_TRUE(wait_for<ExitEvent>([&](const ExitEvent &e) { return e.ctx.pid == gc; }));
	auto st = loader_->take_fd_state(static_cast<pid_t>(gc), op->fd, nullptr);
	ASSERT_TRUE(st);
	EXPECT_EQ(st->bytes_read, 10u);
}

TEST_F(Probes, LongAndHostilePathsArriveIntact)
{
	// A relative path of ~4000 bytes through nested dirs with a newline and
	// invalid UTF-8 in the names; opened relative to a dirfd.
	char base[] = "/tmp/kt-long-XXXXXX";
	std::string root = mkdtemp(base);
	std::string rel;
	std::string seg = std::string(200, 'd') + "\n\xFF";
	int dfd = open(root.c_str(), O_RDONLY | O_DIRECTORY);
	while (rel.size() + seg.size() + 10 < 4000) {
		rel += (rel.empty() ? "" : "/") + seg;
		mkdirat(dfd, rel.c_str(), 0700);
	}
	std::string file = rel + "/f\"q";
	file += std::string(4050 - file.size(), 'n'); // past 4,000 bytes, under PATH_MAX
	close(openat(dfd, file.c_str(), O_CREAT | O_WRONLY, 0600));
	Child child([&] {
		int fd = openat(dfd, file.c_str(), O_RDONLY);
		return fd >= 0 ? 0 : 1;
	});
	loader_->track(child.pid());
	child.go();
	ASSERT_EQ(child.wait(), 0);
	auto o = wait_for<OpenEvent>([&](const OpenEvent &e) {
		return e.ctx.pid == static_cast<uint32_t>(child.pid()) && e.fd >= 0;
	});
	ASSERT_TRUE(o);
	EXPECT_EQ(o->path, file);
	EXPECT_EQ(o->path.size(), 4050u);
	EXPECT_EQ(o->dirfd, dfd);
	close(dfd);
	std::system(("rm -rf '" + root + "'").c_str());
}

class TinyRing : public ProbeTest
{
      protected:
	void SetUp() override { start(LoaderOptions{4096, 0}); }
};

TEST_F(TinyRing, DropsAreCountedNotSilent)
{
	TempFile f(10);
	Child child([&] {
		for (int i = 0; i < 3000; i++)
			close(open(f.path.c_str(), O_RDONLY));
		return 0;
	});
	loader_->track(child.pid());
	child.go(); // we do not poll while it runs: the 4 KiB ring overflows
	ASSERT_EQ(child.wait(), 0);
	KernelStats s = loader_->stats();
	EXPECT_GT(s.drops_of(KT_EV_OPEN), 0u);
	EXPECT_GT(s.drops(), 1000u);
	uint64_t delivered = count<OpenEvent>(
	    [&](const OpenEvent &e) { return e.ctx.pid == static_cast<uint32_t>(child.pid()); });
	EXPECT_LT(delivered, 3000u);
	// Every open is either delivered or counted as dropped.
	EXPECT_GE(delivered + s.drops_of(KT_EV_OPEN), 3000u);
}
