#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "keytrail/abi.h"
#include "keytrail/probe/events.h"
#include "support/tls.h"

using namespace keytrail;

namespace
{
kt_event_hdr header(uint32_t type, uint32_t size)
{
	kt_event_hdr h{};
	h.type = type;
	h.size = size;
	h.pid = 42;
	h.tid = 43;
	h.ppid = 1;
	h.uid = 1000;
	h.flags = KT_F_TRACKED;
	std::memcpy(h.comm, "node", 5);
	return h;
}
} // namespace

TEST(Decoder, Exec)
{
	std::vector<char> buf(sizeof(kt_exec_event));
	auto *e = reinterpret_cast<kt_exec_event *>(buf.data());
	std::string fn = "/usr/bin/node";
	std::string args("node\0/srv/index.js\0", 19);
	e->hdr = header(KT_EV_EXEC, offsetof(kt_exec_event, data) + fn.size() + args.size());
	e->filename_len = fn.size();
	e->args_len = args.size();
	std::memcpy(e->data, fn.data(), fn.size());
	std::memcpy(e->data + fn.size(), args.data(), args.size());
	std::string err;
	auto ev = decode_event(buf.data(), e->hdr.size, &err);
	ASSERT_TRUE(ev) << err;
	auto &x = std::get<ExecEvent>(*ev);
	EXPECT_EQ(x.filename, fn);
	ASSERT_EQ(x.argv.size(), 2u);
	EXPECT_EQ(x.argv[1], "/srv/index.js");
	EXPECT_EQ(x.ctx.comm, "node");
	EXPECT_EQ(x.ctx.pid, 42u);
}

TEST(Decoder, RejectsInconsistentLengths)
{
	std::vector<char> buf(sizeof(kt_exec_event));
	auto *e = reinterpret_cast<kt_exec_event *>(buf.data());
	e->hdr = header(KT_EV_EXEC, offsetof(kt_exec_event, data) + 10);
	e->filename_len = 4000; // claims more than the record holds
	e->args_len = 0;
	std::string err;
	EXPECT_FALSE(decode_event(buf.data(), e->hdr.size, &err));
	EXPECT_FALSE(err.empty());

	kt_event_hdr h = header(99, sizeof(kt_event_hdr));
	EXPECT_FALSE(decode_event(&h, sizeof(h), &err));
	EXPECT_NE(err.find("unknown"), std::string::npos);
	EXPECT_FALSE(decode_event(&h, 10, &err));
	h = header(KT_EV_CLOSE, sizeof(kt_event_hdr));
	EXPECT_FALSE(decode_event(&h, sizeof(h), &err)); // close needs its body
}

TEST(Decoder, OpenWithHostilePath)
{
	kt_open_event e{};
	std::string path = "dir/new\nline \"q\" \xFF";
	e.hdr = header(KT_EV_OPEN, offsetof(kt_open_event, path) + path.size());
	e.fd = 7;
	e.dev = (8ULL << 20) | 1;
	e.ino = 1234;
	e.path_len = path.size();
	std::memcpy(e.path, path.data(), path.size());
	std::string err;
	auto ev = decode_event(&e, e.hdr.size, &err);
	ASSERT_TRUE(ev) << err;
	auto &o = std::get<OpenEvent>(*ev);
	EXPECT_EQ(o.path, path);
	EXPECT_EQ(dev_string(o.dev), "8:1");
	EXPECT_EQ(kernel_dev_to_user(o.dev), makedev(8, 1));
	EXPECT_EQ(user_dev_to_kernel(makedev(259, 70000)), (259ULL << 20) | 70000);
}

TEST(Decoder, ConnectAndPayloadKeepOnlyTheName)
{
	kt_connect_event c{};
	c.hdr = header(KT_EV_CONNECT, sizeof(c));
	c.family = AF_INET6;
	c.port = 443;
	inet_pton(AF_INET6, "::1", c.addr);
	std::string err;
	auto ev = decode_event(&c, sizeof(c), &err);
	ASSERT_TRUE(ev);
	auto &cc = std::get<ConnectEvent>(*ev);
	EXPECT_EQ(address_string(cc.family, cc.addr), "::1");

	kt_payload_event p{};
	std::string hello = test::client_hello("vault.example.test");
	p.hdr = header(KT_EV_PAYLOAD, offsetof(kt_payload_event, data) + hello.size());
	p.len = hello.size();
	std::memcpy(p.data, hello.data(), hello.size());
	auto pe = decode_event(&p, p.hdr.size, &err);
	ASSERT_TRUE(pe);
	EXPECT_EQ(std::get<PayloadEvent>(*pe).sni, "vault.example.test");
	EXPECT_EQ(std::get<PayloadEvent>(*pe).captured, hello.size());
}
