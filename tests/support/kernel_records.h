// Synthetic kernel records, laid out as the probes write them (abi.h), and
// a fake of the probes' control maps: the agent's decisions run on them
// without root or a kernel.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "keytrail/abi.h"
#include "keytrail/probe/control.h"

namespace keytrail::test
{

class FakeProbe : public ProbeControl
{
      public:
	bool track(pid_t tgid) override
	{
		tracked.insert(tgid);
		return true;
	}
	void untrack(pid_t tgid) override
	{
		tracked.erase(tgid);
		untracked.insert(tgid);
	}
	bool capture_stdio(pid_t tgid) override
	{
		stdio.insert(tgid);
		return tracked.count(tgid) != 0;
	}
	std::set<pid_t> stdio;
	bool set_hint_words(const std::vector<uint32_t> &words) override
	{
		hint_words = words;
		return has_exec_hint;
	}
	std::vector<uint32_t> hint_words;
	bool has_exec_hint = true; // false: a kernel without bpf_loop
	bool watch(uint64_t kdev, uint64_t ino, uint32_t) override
	{
		watched.insert({kdev, ino});
		return true;
	}
	size_t watched_count() const override { return watched.size(); }
	std::optional<kt_fd_state> take_fd_state(pid_t tgid, int fd,
	                                         const kt_fd_open *file) override
	{
		auto it = fds.find({static_cast<uint32_t>(tgid), fd});
		if (it == fds.end() || (file && !is_open(it->second, *file)))
			return std::nullopt;
		kt_fd_state st = it->second;
		fds.erase(it);
		return st;
	}
	std::vector<kt_fd_key> fd_state_keys() const override
	{
		std::vector<kt_fd_key> keys;
		for (const auto &[k, v] : fds)
			keys.push_back({k.first, k.second});
		return keys;
	}
	KernelStats stats() const override { return kernel; }
	size_t attached_programs() const override { return 1; }
	double attach_seconds() const override { return 0.001; }
	uint32_t ring_buffer_bytes() const override { return 4096; }
	bool dns_capture() const override { return dns; }
	bool dns = true;

	std::set<pid_t> tracked, untracked;
	std::set<std::pair<uint64_t, uint64_t>> watched;
	std::map<std::pair<uint32_t, int>, kt_fd_state> fds;
	KernelStats kernel;
};

// A process as the records describe it. Pids above the kernel's pid_max
// (4194304) name no real process, so nothing is read from /proc for them.
struct FakeProc {
	uint32_t pid = 0, ppid = 1, uid = 0;
	uint64_t start_ns = 1000000000; // start_boottime
	std::string comm = "proc";
	uint32_t flags = 0;  // KT_F_*
	uint32_t tty_nr = 0; // its exec's controlling terminal
	uint32_t sid = 0;    // and session
};

class KernelRecords
{
      public:
	uint64_t now_ns = 5000000000; // CLOCK_BOOTTIME of the next record

	std::vector<char> exec(const FakeProc &p, const std::string &filename,
	                       const std::vector<std::string> &argv,
	                       const std::vector<std::string> &env = {})
	{
		std::string args, envb;
		for (const auto &a : argv)
			args += a + '\0';
		for (const auto &e : env)
			envb += e + '\0';
		std::vector<char> buf(sizeof(kt_exec_event));
		auto *e = reinterpret_cast<kt_exec_event *>(buf.data());
		size_t size =
		    offsetof(kt_exec_event, data) + filename.size() + args.size() + envb.size();
		e->hdr = header(KT_EV_EXEC, size, p);
		e->filename_len = static_cast<uint32_t>(filename.size());
		e->args_len = static_cast<uint32_t>(args.size());
		e->env_len = static_cast<uint32_t>(envb.size());
		e->tty_nr = p.tty_nr;
		e->sid = p.sid;
		e->loginuid = e->sessionid = UINT32_MAX;
		std::memcpy(e->data, filename.data(), filename.size());
		std::memcpy(e->data + filename.size(), args.data(), args.size());
		std::memcpy(e->data + filename.size() + args.size(), envb.data(), envb.size());
		buf.resize(size);
		return buf;
	}

	std::vector<char> fork(const FakeProc &parent, const FakeProc &child)
	{
		kt_fork_event e{};
		e.hdr = header(KT_EV_FORK, sizeof(e), parent);
		e.child_pid = child.pid;
		e.child_start_time = child.start_ns;
		return bytes(e);
	}

	std::vector<char> exit(const FakeProc &p, int32_t code = 0)
	{
		kt_exit_event e{};
		e.hdr = header(KT_EV_EXIT, sizeof(e), p);
		e.exit_code = code << 8;
		return bytes(e);
	}

	std::vector<char> open(const FakeProc &p, const std::string &path, int32_t fd,
	                       uint64_t kdev, uint64_t ino, uint32_t extra_flags = 0)
	{
		std::vector<char> buf(sizeof(kt_open_event));
		auto *e = reinterpret_cast<kt_open_event *>(buf.data());
		size_t size = offsetof(kt_open_event, path) + path.size();
		e->hdr = header(KT_EV_OPEN, size, p);
		e->hdr.flags |= extra_flags;
		e->dirfd = -100;
		e->fd = fd;
		e->dev = kdev;
		e->ino = ino;
		e->syscall = path.empty() ? 0 : KT_SYS_OPENAT;
		e->path_len = static_cast<uint32_t>(path.size());
		std::memcpy(e->path, path.data(), path.size());
		buf.resize(size);
		return buf;
	}

	std::vector<char> close(const FakeProc &p, int32_t fd, uint64_t kdev, uint64_t ino,
	                        uint64_t bytes_read)
	{
		kt_close_event e{};
		e.hdr = header(KT_EV_CLOSE, sizeof(e), p);
		e.fd = fd;
		e.reason = KT_CLOSE_CLOSE;
		e.dev = kdev;
		e.ino = ino;
		e.bytes_read = bytes_read;
		e.reads = 1;
		return bytes(e);
	}

	std::vector<char> connect(const FakeProc &p, int32_t fd, const uint8_t (&ip4)[4],
	                          uint16_t port, int32_t ret = -115 /* EINPROGRESS */)
	{
		kt_connect_event e{};
		e.hdr = header(KT_EV_CONNECT, sizeof(e), p);
		e.fd = fd;
		e.ret = ret;
		e.family = AF_INET;
		e.port = port;
		e.sock_type = SOCK_STREAM;
		std::memcpy(e.addr, ip4, 4);
		return bytes(e);
	}

	// The first bytes written on a connected socket.
	std::vector<char> payload(const FakeProc &p, int32_t fd, const std::string &data)
	{
		std::vector<char> buf(sizeof(kt_payload_event));
		auto *e = reinterpret_cast<kt_payload_event *>(buf.data());
		size_t size = offsetof(kt_payload_event, data) + data.size();
		e->hdr = header(KT_EV_PAYLOAD, size, p);
		e->fd = fd;
		e->syscall = KT_SYS_WRITE;
		e->len = static_cast<uint32_t>(data.size());
		std::memcpy(e->data, data.data(), data.size());
		buf.resize(size);
		return buf;
	}

	// A stdio MCP server's read of fd 0 (KT_STDIO_IN) or write to fd 1, cut
	// to head and tail past KT_STDIO_MAX as the probes cut it.
	std::vector<char> stdio(const FakeProc &p, uint32_t dir, const std::string &data)
	{
		std::vector<char> buf(sizeof(kt_stdio_event));
		auto *e = reinterpret_cast<kt_stdio_event *>(buf.data());
		size_t n = std::min<size_t>(data.size(), KT_STDIO_MAX);
		size_t size = offsetof(kt_stdio_event, data) + n;
		e->hdr = header(KT_EV_STDIO, size, p);
		e->dir = dir;
		e->len = static_cast<uint32_t>(n);
		e->total = data.size();
		if (data.size() <= KT_STDIO_MAX) {
			e->head = static_cast<uint32_t>(n);
			std::memcpy(e->data, data.data(), n);
		} else {
			e->head = KT_STDIO_HEAD;
			std::memcpy(e->data, data.data(), KT_STDIO_HEAD);
			std::memcpy(e->data + KT_STDIO_HEAD,
			            data.data() + data.size() - (KT_STDIO_MAX - KT_STDIO_HEAD),
			            KT_STDIO_MAX - KT_STDIO_HEAD);
		}
		buf.resize(size);
		return buf;
	}

	// A DNS answer to pid's resolver socket, as the ingress hook sends it.
	std::vector<char> dns(uint32_t pid, const std::string &message)
	{
		std::vector<char> buf(sizeof(kt_dns_event));
		auto *e = reinterpret_cast<kt_dns_event *>(buf.data());
		e->hdr.type = KT_EV_DNS;
		e->hdr.size = sizeof(kt_dns_event);
		e->hdr.ts_ns = now_ns += 1000000;
		e->hdr.pid = pid;
		e->lport = 40000;
		e->family = AF_INET;
		e->len = static_cast<uint32_t>(message.size());
		std::memcpy(e->data, message.data(), std::min<size_t>(message.size(), KT_DNS_MAX));
		return buf;
	}

      private:
	kt_event_hdr header(uint32_t type, size_t size, const FakeProc &p)
	{
		kt_event_hdr h{};
		h.type = type;
		h.size = static_cast<uint32_t>(size);
		h.ts_ns = now_ns += 1000000; // a millisecond per record
		h.start_time = p.start_ns;
		h.pid = p.pid;
		h.tid = p.pid;
		h.ppid = p.ppid;
		h.uid = p.uid;
		h.gid = p.uid;
		h.flags = p.flags;
		std::strncpy(h.comm, p.comm.c_str(), sizeof(h.comm) - 1);
		return h;
	}
	template <typename T> static std::vector<char> bytes(const T &e)
	{
		std::vector<char> b(sizeof(e));
		std::memcpy(b.data(), &e, sizeof(e));
		return b;
	}
};

} // namespace keytrail::test
