// Files and directories an unprivileged user controls never steer the root
// agent: a planted symlink, a file or directory of theirs, a key they wrote.
// Each attack is made as `nobody` in a world-writable sticky directory (as
// /tmp is, with fs.protected_symlinks=0); the agent must refuse with a
// clear error, and the root-owned victims must be untouched.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "support/agent_process.h"
#include "support/tokens.h"

using namespace keytrail::test;

namespace
{

const std::string kNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";

struct Victim {
	std::string path, text;
	struct stat st {
	};
};

// A root-owned file (and its directory) that must come out as it went in.
Victim victim(const std::string &dir)
{
	Victim v;
	mkdir((dir + "/victim").c_str(), 0755);
	v.path = dir + "/victim/precious";
	v.text = "root:x:0:0:do not touch\n";
	std::ofstream(v.path) << v.text;
	chmod(v.path.c_str(), 0644);
	stat(v.path.c_str(), &v.st);
	return v;
}

void expect_untouched(const Victim &v)
{
	struct stat now {
	};
	ASSERT_EQ(stat(v.path.c_str(), &now), 0);
	EXPECT_EQ(slurp(v.path), v.text);
	EXPECT_EQ(now.st_mode, v.st.st_mode);
	EXPECT_EQ(now.st_uid, v.st.st_uid);
	struct stat d {
	};
	ASSERT_EQ(stat((v.path.substr(0, v.path.rfind('/'))).c_str(), &d), 0);
	EXPECT_EQ(d.st_mode & 07777, 0755u);
}

// A world-writable sticky directory, as /tmp is.
std::string shared_dir()
{
	std::string d = temp_dir();
	chmod(d.c_str(), 0755);
	std::string shared = d + "/shared";
	mkdir(shared.c_str(), 0755);
	chmod(shared.c_str(), 01777);
	return shared;
}

// `keytrail run` for a moment; its exit status and stderr.
int run_agent(const std::string &args, std::string *err)
{
	std::string dir = temp_dir();
	int rc = run_cmd(std::string(KEYTRAIL_BINARY) + " run --duration 1 " + args + " 2>" + dir +
	                 "/err >/dev/null");
	*err = slurp(dir + "/err");
	return rc;
}

} // namespace

TEST(Hardening, OutputFilesAUserPlantedAreRefused)
{
	std::string shared = shared_dir();
	Victim v = victim(shared.substr(0, shared.rfind('/')));
	std::string state = shared.substr(0, shared.rfind('/')) + "/state";
	ASSERT_EQ(run_cmd(kNobody + "ln -s " + v.path + " " + shared + "/out.jsonl"), 0);
	ASSERT_EQ(run_cmd(kNobody + "sh -c 'touch " + shared + "/mine.jsonl; chmod 666 " + shared +
	                  "/mine.jsonl'"),
	          0);
	// A hard link to it (fs.protected_hardlinks stops `nobody` here; a host
	// without it would not).
	ASSERT_EQ(link(v.path.c_str(), (shared + "/hard.jsonl").c_str()), 0);
	std::string err;
	EXPECT_NE(run_agent("--state-dir " + state + " -o " + shared + "/out.jsonl", &err), 0);
	EXPECT_NE(err.find("is a symbolic link"), std::string::npos) << err;
	EXPECT_NE(run_agent("--state-dir " + state + " -o " + shared + "/mine.jsonl", &err), 0);
	EXPECT_NE(err.find("belongs to another user"), std::string::npos) << err;
	EXPECT_NE(run_agent("--state-dir " + state + " -o " + shared + "/hard.jsonl", &err), 0);
	EXPECT_NE(err.find("has other hard links"), std::string::npos) << err;
	unlink((shared + "/hard.jsonl").c_str());
	// A FIFO with no reader would block open() for good; the agent refuses.
	ASSERT_EQ(run_cmd(kNobody + "mkfifo " + shared + "/fifo.jsonl"), 0);
	EXPECT_NE(run_cmd("timeout 20 " + std::string(KEYTRAIL_BINARY) + " run --duration 1 " +
	                  "--state-dir " + state + " -o " + shared + "/fifo.jsonl 2>/dev/null"),
	          124); // not hung
	// A /dev path is a path like any other: a link planted in /dev/shm is
	// not followed.
	std::string shm = "/dev/shm/kt-hardening-" + std::to_string(getpid());
	ASSERT_EQ(run_cmd(kNobody + "ln -s " + v.path + " " + shm), 0);
	EXPECT_NE(run_agent("--state-dir " + state + " -o " + shm, &err), 0);
	EXPECT_NE(err.find("is a symbolic link"), std::string::npos) << err;
	unlink(shm.c_str());
	expect_untouched(v);
	// The user's own file is left as it was.
	struct stat st {
	};
	ASSERT_EQ(stat((shared + "/mine.jsonl").c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0666u);
	EXPECT_EQ(st.st_size, 0);
}

TEST(Hardening, StateAndJournalDirsAUserControlsAreRefused)
{
	std::string shared = shared_dir();
	std::string top = shared.substr(0, shared.rfind('/'));
	Victim v = victim(top);
	std::string vdir = top + "/victim";
	std::string err;
	// A state dir that is a symlink to a root-owned directory.
	ASSERT_EQ(run_cmd(kNobody + "ln -s " + vdir + " " + shared + "/state"), 0);
	EXPECT_NE(run_agent("--state-dir " + shared + "/state -o /dev/null", &err), 0);
	EXPECT_NE(err.find("symbolic link owned by uid 65534"), std::string::npos) << err;
	// A state dir the user made, with a key the user knows.
	ASSERT_EQ(run_cmd(kNobody + "sh -c 'mkdir -m 700 " + shared + "/state2 && head -c 32 " +
	                  "/dev/urandom > " + shared + "/state2/fingerprint.key && chmod 600 " +
	                  shared + "/state2/fingerprint.key'"),
	          0);
	EXPECT_NE(run_agent("--state-dir " + shared + "/state2 -o /dev/null", &err), 0);
	EXPECT_NE(err.find("belongs to another user"), std::string::npos) << err;
	// Below a directory the user owns.
	ASSERT_EQ(run_cmd(kNobody + "mkdir -m 755 " + shared + "/theirs"), 0);
	EXPECT_NE(run_agent("--state-dir " + shared + "/theirs/state -o /dev/null", &err), 0);
	EXPECT_NE(err.find("belongs to another user"), std::string::npos) << err;
	struct stat st {
	};
	EXPECT_NE(stat((shared + "/theirs/state").c_str(), &st), 0); // nothing created there
	// A journal directory below it, given in the config.
	std::string cfg = top + "/cfg.yaml";
	std::ofstream(cfg) << "agent:\n  state_dir: " << top
	                   << "/state\njournal:\n  dir: " << shared << "/theirs/journal\n";
	EXPECT_NE(run_agent("-c " + cfg + " -o /dev/null", &err), 0);
	EXPECT_NE(err.find("belongs to another user"), std::string::npos) << err;
	expect_untouched(v);
	// What was refused was not changed either.
	ASSERT_EQ(lstat((shared + "/state2").c_str(), &st), 0);
	EXPECT_EQ(st.st_uid, 65534u);
	EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(Hardening, AFingerprintKeyOthersWroteOrCanReadIsRefused)
{
	std::string shared = shared_dir();
	std::string top = shared.substr(0, shared.rfind('/'));
	ASSERT_EQ(run_cmd(kNobody + "sh -c 'head -c 32 /dev/urandom > " + shared +
	                  "/fleet.key && chmod 600 " + shared + "/fleet.key'"),
	          0);
	std::string cfg = top + "/cfg.yaml", err;
	std::ofstream(cfg) << "agent:\n  state_dir: " << top << "/state\nsecrets:\n"
	                   << "  fingerprint_key_file: " << shared << "/fleet.key\n";
	EXPECT_NE(run_agent("-c " + cfg + " -o /dev/null", &err), 0);
	EXPECT_NE(err.find("belongs to another user"), std::string::npos) << err;
	// Root's key, but through a link someone planted.
	std::string key = top + "/root.key";
	ASSERT_EQ(run_cmd("head -c 32 /dev/urandom > " + key + " && chmod 600 " + key), 0);
	ASSERT_EQ(run_cmd(kNobody + "ln -s " + key + " " + shared + "/link.key"), 0);
	std::ofstream(cfg) << "agent:\n  state_dir: " << top << "/state\nsecrets:\n"
	                   << "  fingerprint_key_file: " << shared << "/link.key\n";
	EXPECT_NE(run_agent("-c " + cfg + " -o /dev/null", &err), 0);
	EXPECT_NE(err.find("symbolic link"), std::string::npos) << err;
	// Readable by others.
	chmod(key.c_str(), 0644);
	std::ofstream(cfg) << "agent:\n  state_dir: " << top << "/state\nsecrets:\n"
	                   << "  fingerprint_key_file: " << key << "\n";
	EXPECT_NE(run_agent("-c " + cfg + " -o /dev/null", &err), 0);
	EXPECT_NE(err.find("readable or writable by others"), std::string::npos) << err;
}

// Item 3: every form of credential in a command line, a path, a config error
// and a parser message is masked before it is written, in every output.
TEST(Hardening, CredentialsInArgvPathsAndErrorsAreMaskedEverywhere)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string jwt =
	    token("eyJ", 20, 31) + ".eyJ" + token("", 24, 32) + "." + token("", 22, 33);
	const std::string api_key = token("", 24, 34);
	const std::string curl_pw = token("", 16, 35);
	const std::string mysql_pw = token("", 14, 36);
	const std::string aws_secret = token("", 40, 37);
	const std::string in_path = token("ghp_", 36, 38);
	const std::string in_file = token("sk-proj-", 48, 39);
	const std::string in_parser = token("glpat-", 20, 40);
	const std::string in_reload = token("glpat-", 20, 41);
	const std::vector<std::string> planted = {jwt,     api_key, curl_pw,   mysql_pw, aws_secret,
	                                          in_path, in_file, in_parser, in_reload};

	ASSERT_EQ(run_cmd("mkdir -p " + dir + "/bin " + dir + "/tok/" + in_path), 0);
	for (const char *prog : {"curl", "mysql", "aws"})
		ASSERT_EQ(symlink("/bin/true", (dir + "/bin/" + prog).c_str()), 0);
	std::ofstream(dir + "/tok/" + in_path + "/.env") << "OPENAI_API_KEY=" << in_file << "\n";
	std::ofstream(dir + "/bad.json")
	    << "{\"mcpServers\": {\"x\": {\"command\": \"a\", \"env\": {\"T\": " << in_parser
	    << "}}}}";
	std::string server = dir + "/mcp-server-kt-mask";
	std::ofstream(server) << "#!/bin/sh\ncd " << dir << "\n"
	                      << "bin/curl -H 'Authorization: Bearer " << jwt
	                      << "' -H 'X-Api-Key: " << api_key << "' -u alice:" << curl_pw
	                      << " http://127.0.0.1:9/\n"
	                      << "bin/mysql -ualice -p" << mysql_pw << " -h db\n"
	                      << "bin/aws configure set aws_secret_access_key " << aws_secret
	                      << "\n"
	                      << "cat tok/" << in_path << "/.env >/dev/null\nsleep 0.3\n";
	chmod(server.c_str(), 0755);
	std::string cfg = "agent:\n  state_dir: " + dir +
	                  "/state\nsecrets:\n  scan_mcp_configs: false\n  mcp_configs: [" + dir +
	                  "/bad.json]\n";
	std::ofstream(dir + "/cfg.yaml") << cfg;
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "--record",
	                dir + "/inputs.rec", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd(server), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("OPENAI_API_KEY") != std::string::npos; }, 5000));
	// A reload whose config error would quote the value.
	std::ofstream(dir + "/cfg.yaml")
	    << cfg << "correlate:\n  dedupe_window: " << in_reload << "\n";
	a.signal(SIGHUP);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("\"reload\"") != std::string::npos; }, 5000));
	EXPECT_EQ(a.stop(), 0);

	// The forms were seen (masked), so the search below is not vacuous.
	std::string out = slurp(a.out());
	EXPECT_NE(out.find("Authorization: Bearer ****"), std::string::npos);
	EXPECT_NE(out.find("X-Api-Key: ****"), std::string::npos);
	EXPECT_NE(out.find("alice:****"), std::string::npos);
	EXPECT_NE(out.find("-p****"), std::string::npos);
	EXPECT_NE(out.find("tok/ghp_****/.env"), std::string::npos);
	EXPECT_NE(out.find("\"ok\":false"), std::string::npos);
	EXPECT_NE(slurp(a.err()).find("bad.json:1:"), std::string::npos) << slurp(a.err());

	std::string everything = out + slurp(a.err()) + slurp(dir + "/inputs.rec");
	FILE *all =
	    popen(("find " + dir + "/state -type f -exec zcat -f {} + 2>/dev/null").c_str(), "r");
	ASSERT_TRUE(all);
	char buf[65536];
	for (size_t n; (n = fread(buf, 1, sizeof(buf), all)) > 0;)
		everything.append(buf, n);
	pclose(all);
	// The journal and the recording were read too: they name the file.
	size_t named = 0;
	for (size_t at = everything.find("tok/ghp_****"); at != std::string::npos;
	     at = everything.find("tok/ghp_****", at + 1))
		named++;
	EXPECT_GE(named, 3u);
	for (const auto &s : planted)
		EXPECT_EQ(everything.find(s), std::string::npos) << "planted secret written: " << s;
}

// Item 8: a credential file opened under an innocent name is still one: a
// symlink by its target, a hardlink by its inode (known from an earlier
// read under its true name).
TEST(Hardening, CredentialFilesOpenedUnderOtherNamesAreSeen)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string via_link = token("sk-proj-", 48, 51);
	const std::string via_hard = token("glpat-", 20, 52);
	ASSERT_EQ(run_cmd("mkdir -p " + dir + "/a " + dir + "/b " + dir + "/c"), 0);
	std::ofstream(dir + "/a/.env") << "OPENAI_API_KEY=" << via_link << "\n";
	ASSERT_EQ(symlink((dir + "/a/.env").c_str(), (dir + "/c/settings.txt").c_str()), 0);
	std::ofstream(dir + "/b/.env") << "GITLAB_TOKEN=" << via_hard << "\n";
	ASSERT_EQ(link((dir + "/b/.env").c_str(), (dir + "/c/notes.txt").c_str()), 0);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	auto server = [&](const std::string &name, const std::string &body) {
		std::string path = dir + "/" + name;
		std::ofstream(path) << "#!/bin/sh\n" << body << "\nsleep 0.3\n";
		chmod(path.c_str(), 0755);
		return run_cmd(path);
	};
	// The symlink's target names it; nobody read it before.
	ASSERT_EQ(server("mcp-server-kt-link", "cat " + dir + "/c/settings.txt >/dev/null"), 0);
	// The hardlink: its inode was read as .env by one server, then another
	// reads it as notes.txt.
	ASSERT_EQ(server("mcp-server-kt-first", "cat " + dir + "/b/.env >/dev/null"), 0);
	ASSERT_EQ(server("mcp-server-kt-hard", "cat " + dir + "/c/notes.txt >/dev/null"), 0);
	auto holders = [&](const std::string &key) {
		std::set<std::string> servers;
		for (auto &r : records(a.out()))
			if (r.value("type", "") == "secret" && r["secret"].value("name", "") == key)
				servers.insert(r.value("mcp_server", ""));
		return servers;
	};
	ASSERT_TRUE(a.wait_until([&] { return holders("GITLAB_TOKEN").size() >= 2; }, 5000))
	    << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
	auto link_holders = holders("OPENAI_API_KEY");
	EXPECT_EQ(link_holders.count("mcp-server-kt-link"), 1u) << slurp(a.out());
	EXPECT_EQ(holders("GITLAB_TOKEN").count("mcp-server-kt-hard"), 1u);
	// Named by its true name.
	for (auto &r : records(a.out())) {
		if (r.value("type", "") == "secret" &&
		    r["secret"].value("name", "") == "OPENAI_API_KEY") {
			EXPECT_EQ(r["secret"].value("path", ""), dir + "/a/.env") << r.dump();
		}
	}
}

// Item 6: descriptors a server did not open while followed: inherited from
// an unfollowed parent across its exec, or received over a unix socket.
TEST(Hardening, CredentialFilesHeldThroughInheritedOrReceivedFdsAreSeen)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string inherited = token("glpat-", 20, 61);
	const std::string received = token("sk-proj-", 48, 62);
	ASSERT_EQ(run_cmd("mkdir -p " + dir + "/p1 " + dir + "/p2"), 0);
	std::ofstream(dir + "/p1/.env") << "GITLAB_TOKEN=" << inherited << "\n";
	std::ofstream(dir + "/p2/.env") << "OPENAI_API_KEY=" << received << "\n";
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	// The server reads fd 3, which its unfollowed parent opened.
	std::ofstream(dir + "/mcp-server-kt-inherit")
	    << "#!/bin/sh\nsleep 0.3\ncat <&3 >/dev/null\nsleep 0.2\n";
	// A helper (not a server) opens the file and passes the fd over a unix
	// socket; the server receives it, then connects upstream.
	std::ofstream(dir + "/passer.py")
	    << "import os, socket, sys\n"
	    << "s = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(1)\n"
	    << "open(sys.argv[1] + '.ready', 'w').close()\n"
	    << "c, _ = s.accept()\nfd = os.open(sys.argv[2], os.O_RDONLY)\n"
	    << "socket.send_fds(c, [b'x'], [fd])\nc.recv(1)\n";
	std::ofstream(dir + "/mcp-server-kt-recv")
	    << "#!/usr/bin/python3\nimport os, socket, sys, time\n"
	    << "u = socket.socket(socket.AF_UNIX)\nu.connect(sys.argv[1])\n"
	    << "_, fds, _, _ = socket.recv_fds(u, 1, 1)\nos.read(fds[0], 4096)\n"
	    << "time.sleep(1.2)\nt = socket.socket()\ntry:\n    t.connect(('127.0.0.1', 9))\n"
	    << "except OSError:\n    pass\nu.send(b'x')\ntime.sleep(0.3)\n";
	chmod((dir + "/mcp-server-kt-inherit").c_str(), 0755);
	chmod((dir + "/mcp-server-kt-recv").c_str(), 0755);
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	// (Named through the environment: an argv naming the server would
	// make the kernel follow the launcher itself from its exec.)
	std::ofstream(dir + "/launch") << "#!/bin/sh\nexec 3<\"$ENVFILE\"\nexec \"$SERVER\"\n";
	chmod((dir + "/launch").c_str(), 0755);
	setenv("ENVFILE", (dir + "/p1/.env").c_str(), 1);
	setenv("SERVER", (dir + "/mcp-server-kt-inherit").c_str(), 1);
	int rc = run_cmd(dir + "/launch");
	unsetenv("ENVFILE");
	unsetenv("SERVER");
	ASSERT_EQ(rc, 0);
	std::string sock = dir + "/pass.sock";
	ASSERT_EQ(run_cmd("(/usr/bin/python3 " + dir + "/passer.py " + sock + " " + dir +
	                  "/p2/.env &) ; for i in $(seq 50); do [ -e " + sock +
	                  ".ready ] && break; sleep 0.1; done; " + dir + "/mcp-server-kt-recv " +
	                  sock),
	          0);
	auto holder = [&](const std::string &key) {
		for (auto &r : records(a.out()))
			if (r.value("type", "") == "secret" && r["secret"].value("name", "") == key)
				return r.value("mcp_server", "");
		return std::string();
	};
	ASSERT_TRUE(a.wait_until([&] { return !holder("OPENAI_API_KEY").empty(); }, 5000))
	    << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
	EXPECT_EQ(holder("GITLAB_TOKEN"), "mcp-server-kt-inherit") << slurp(a.out());
	EXPECT_EQ(holder("OPENAI_API_KEY"), "mcp-server-kt-recv");
}

// Item 5: a server that opens, reads and connects through io_uring is not
// seen by the syscall hooks; its use of the ring is reported, once per
// operation, and a network operation raises io_uring_evasion.
TEST(Hardening, IoUringUseByAServerIsReportedAndAlerted)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::ofstream(dir + "/.env") << "API_TOKEN=" << token("", 32, 71) << "\n";
	std::string server = dir + "/mcp-server-kt-uring";
	ASSERT_EQ(symlink(KT_URING_TOOL, server.c_str()), 0);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd(server + " " + dir + "/.env 9"), 0);
	auto alerts = [&] {
		std::vector<nlohmann::json> out;
		for (auto &r : records(a.out()))
			if (r.value("rule", "") == "io_uring_evasion")
				out.push_back(r);
		return out;
	};
	ASSERT_TRUE(a.wait_until([&] { return alerts().size() >= 1; }, 5000)) << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
	std::set<std::string> ops;
	for (auto &r : records(a.out()))
		if (r.value("type", "") == "io_uring" && r.value("comm", "") == "mcp-server-kt-u")
			ops.insert(r.value("op", ""));
	EXPECT_TRUE(ops.count("openat") && ops.count("read") && ops.count("connect"));
	// File operations are records only (libuv uses them); connect alerts.
	auto al = alerts();
	ASSERT_EQ(al.size(), 1u);
	EXPECT_EQ(al[0].value("type", ""), "alert");
	EXPECT_EQ(al[0].value("severity", ""), "high");
	EXPECT_EQ(al[0].value("io_uring_op", ""), "connect");
}

// Item 9: datagrams sent to an address without connect, and a local proxy
// reached over a unix socket, are upstreams like any other.
TEST(Hardening, UdpSendtoAndUnixSocketProxiesAreUpstreams)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::string sock = dir + "/proxy.sock";
	std::ofstream(dir + "/proxy.py")
	    << "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\n"
	    << "s.listen(1)\nopen(sys.argv[1] + '.ready', 'w').close()\nc, _ = s.accept()\n"
	    << "c.recv(4096)\nc.recv(1)\n";
	std::string server = dir + "/mcp-server-kt-udp";
	std::ofstream(server) << "#!/usr/bin/python3\nimport socket, sys, time\n"
	                      << "d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
	                      << "for _ in range(3):\n    d.sendto(b'x', ('192.0.2.10', 8125))\n"
	                      << "u = socket.socket(socket.AF_UNIX)\nu.connect(sys.argv[1])\n"
	                      << "u.send(b'CONNECT api.github.com:443 HTTP/1.1\\r\\nHost: "
	                         "api.github.com:443\\r\\n\\r\\n')\n"
	                      << "time.sleep(0.3)\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("(/usr/bin/python3 " + dir + "/proxy.py " + sock +
	                  " &) ; for i in $(seq 50); do [ -e " + sock +
	                  ".ready ] && break; sleep 0.1; done; GITLAB_TOKEN=" +
	                  token("glpat-", 20, 81) + " " + server + " " + sock),
	          0);
	auto uses = [&] {
		std::set<std::string> out;
		for (auto &r : records(a.out()))
			if (r.value("type", "") == "secret_use")
				out.insert(r["upstream"].value("protocol", "") + " " +
				           r["upstream"].value("name", "") + ":" +
				           std::to_string(r["upstream"].value("port", 0)));
		return out;
	};
	ASSERT_TRUE(a.wait_until([&] { return uses().size() >= 2; }, 5000)) << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
	auto u = uses();
	EXPECT_TRUE(u.count("udp 192.0.2.10:8125")) << slurp(a.out());
	EXPECT_TRUE(u.count("tcp api.github.com:443")) << slurp(a.out());
	size_t udp_connects = 0, unix_connects = 0;
	for (auto &r : records(a.out())) {
		if (r.value("type", "") != "connect" || r.value("comm", "") != "mcp-server-kt-u")
			continue;
		udp_connects += r.value("protocol", "") == "udp" && r.value("port", 0) == 8125;
		unix_connects += r.value("protocol", "") == "unix" &&
		                 r.value("proxy_target", "") == "api.github.com:443";
	}
	EXPECT_EQ(udp_connects, 1u); // three datagrams, one destination
	EXPECT_EQ(unix_connects, 1u);
}

// Item 7: a server declared only by a config rule (no "mcp" anywhere) that
// reads its secret in its first millisecond is followed from its exec.
TEST(Hardening, ServersOfConfigRulesAreFollowedFromExec)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	std::ofstream(dir + "/.env") << "BILLING_API_TOKEN=" << token("", 32, 91) << "\n";
	std::string server = dir + "/billing-agent-kt";
	// It reads at once, through a child that may exit before userspace has
	// read the server's exec record.
	std::ofstream(server) << "#!/bin/sh\nexec cat " << dir << "/.env\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n"
	    << "tracking:\n  rules:\n    - name: billing-tools\n      exe: "
	       "\"*/billing-agent-kt\"\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	std::set<std::string> pids;
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ(run_cmd(server + " >/dev/null"), 0);
	}
	auto readers = [&] {
		std::set<int> out;
		for (auto &r : records(a.out()))
			if (r.value("type", "") == "secret" &&
			    r.value("mcp_server", "") == "billing-tools")
				out.insert(r.value("pid", 0));
		return out;
	};
	a.wait_until([&] { return readers().size() >= 10; }, 5000);
	EXPECT_EQ(a.stop(), 0);
	EXPECT_EQ(readers().size(), 10u) << slurp(a.out());
	EXPECT_EQ(slurp(a.err()).find("no literal"), std::string::npos);
}

// Item 10: a server that replaces itself in place (a wrapper ending in
// `exec payload`, or a fileless memfd image run with fexecve) stays the
// server: same workload, same identity, its reads still its own.
TEST(Hardening, ExecInPlaceKeepsTheServersIdentity)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	ASSERT_EQ(run_cmd("mkdir -p " + dir + "/w " + dir + "/m"), 0);
	std::ofstream(dir + "/w/.env") << "PAYLOAD_TOKEN=" << token("", 32, 101) << "\n";
	std::ofstream(dir + "/m/.env") << "PAYLOAD_TOKEN=" << token("", 32, 102) << "\n";
	std::string wrapper = dir + "/mcp-server-kt-wrap";
	std::ofstream(wrapper) << "#!/bin/sh\nsleep 0.2\nexec /bin/cat " << dir << "/w/.env\n";
	std::string fileless = dir + "/mcp-server-kt-memfd";
	std::ofstream(fileless) << "#!/usr/bin/python3\nimport os, time\ntime.sleep(0.2)\n"
	                        << "fd = os.memfd_create('kworker', 0)\n"
	                        << "os.write(fd, open('/bin/cat', 'rb').read())\n"
	                        << "os.execve(fd, ['kworker', '" << dir << "/m/.env'], {})\n";
	chmod(wrapper.c_str(), 0755);
	chmod(fileless.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml")
	    << "agent:\n  state_dir: " << dir << "/state\nsecrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd(wrapper + " >/dev/null"), 0);
	ASSERT_EQ(run_cmd(fileless + " >/dev/null"), 0);
	auto holders = [&] {
		std::map<std::string, std::string> out; // server -> identity
		for (auto &r : records(a.out()))
			if (r.value("type", "") == "secret")
				out[r.value("mcp_server", "")] = r["identity"].value("id", "");
		return out;
	};
	ASSERT_TRUE(a.wait_until([&] { return holders().size() >= 2; }, 5000)) << slurp(a.out());
	EXPECT_EQ(a.stop(), 0);
	auto h = holders();
	EXPECT_EQ(h.size(), 2u) << slurp(a.out()); // no holder outside the two servers
	EXPECT_NE(h["mcp-server-kt-wrap"].find("/mcp-server-kt-wrap/"), std::string::npos);
	EXPECT_NE(h["mcp-server-kt-memfd"].find("/mcp-server-kt-memfd/"), std::string::npos);
	// One identity per server: no shared_credential between its images.
	for (auto &r : records(a.out()))
		EXPECT_NE(r.value("rule", ""), "shared_credential") << r.dump();
}

// One agent per state dir: a second refuses, naming the first, and leaves
// its journal and status alone.
TEST(Hardening, ASecondAgentOnTheSameStateDirRefuses)
{
	std::string dir = temp_dir();
	AgentProcess a({"run", "--state-dir", dir + "/state", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	std::string err;
	EXPECT_NE(run_agent("--state-dir " + dir + "/state -o " + dir + "/second.jsonl", &err), 0);
	EXPECT_NE(err.find("another keytrail agent (pid " + std::to_string(a.pid()) + ")"),
	          std::string::npos)
	    << err;
	std::string status = dir + "/status.txt";
	EXPECT_EQ(run_cmd(std::string(KEYTRAIL_BINARY) + " status --state-dir " + dir + "/state >" +
	                  status),
	          0);
	EXPECT_NE(slurp(status).find("running (pid " + std::to_string(a.pid()) + ")"),
	          std::string::npos)
	    << slurp(status);
	EXPECT_EQ(a.stop(), 0);
	// The first agent's journal segment was never taken from it.
	EXPECT_EQ(run_cmd("ls " + dir + "/state/journal/*.gz >/dev/null 2>&1"), 0);
	EXPECT_EQ(run_cmd("zcat " + dir + "/state/journal/*.gz | grep -q '\"type\":\"ready\"'"), 0);
}
