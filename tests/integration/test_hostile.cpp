// Hostile input end to end, through `keytrail run`: an MCP server that lives
// in a directory whose name has a newline, quotes, a backslash and invalid
// UTF-8, reads a credential file behind a path of more than 4,000 bytes, reads
// one that was deleted while open, and starts children that exit before /proc
// can be read. Every line of every output stays valid JSON, every credential
// is still found, and what could not be attributed is counted. The server is
// started the way clients often do, `sh -c 'exec "$0" ...'`: the shell's own
// exec hint is rejected after the server has already replaced it, which once
// left the server untracked.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "keytrail/output/journal.h"
#include "support/agent_process.h"
#include "support/fake_secrets.h"

using namespace keytrail;
using namespace keytrail::test;

TEST(Hostile, NamesDeletedFilesAndVanishingProcessesKeepEveryLineValid)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string evil = "h\n\"q'\\\xff\xfe\t%s";
	std::string home = dir + "/" + evil;
	ASSERT_EQ(mkdir(home.c_str(), 0755), 0);

	// A credential file behind > 4,000 bytes of hostile directory names.
	std::string deep = home;
	const std::string seg = std::string(180, 'd') + "\n\"\xc3\x28";
	while (deep.size() + seg.size() + 16 < 4060) {
		deep += "/" + seg;
		ASSERT_EQ(mkdir(deep.c_str(), 0755), 0) << strerror(errno);
	}
	deep += "/" + std::string(4050 - 6 - deep.size() - 1, 'p'); // to 4,050 bytes
	ASSERT_EQ(mkdir(deep.c_str(), 0755), 0) << strerror(errno);
	std::string long_env = deep + "/.env";
	ASSERT_GT(long_env.size(), 4000u);
	std::string tok_long = token("glpat-", 20, 301), tok_gone = token("ghp_", 36, 302),
	            tok_short = token("glpat-", 20, 303);
	std::ofstream(long_env) << "GITLAB_TOKEN=" << tok_long << "\n";
	std::string gone_env = home + "/.env.local";
	std::ofstream(gone_env) << "GITHUB_TOKEN=" << tok_gone << "\n";

	// The server: reads the deep file, opens the second and deletes it
	// before reading it, then starts children that exit at once, each with
	// a token in its environment.
	std::string server = home + "/mcp-server-kthostile";
	std::ofstream(server) << "#!/bin/sh\n"
	                      << "cat \"$1\" >/dev/null\n"
	                      << "exec 3<\"$2\"\nrm -f \"$2\"\nsleep 0.3\ncat <&3 >/dev/null\n"
	                      << "exec 3<&-\n"
	                      // Not inherited (that would be the server's sighting): given anew.
	                      << "S=\"$KT_SHORT\"; unset KT_SHORT\n"
	                      << "for i in 1 2 3 4 5 6 7 8; do SHORT_TOKEN=\"$S\" /bin/true; done\n"
	                      << "sleep 0.3\n";
	chmod(server.c_str(), 0755);

	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n"
	                                 << "  health_interval: 500ms\n"
	                                 << "secrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "--events", "-o", dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	pid_t srv = fork();
	if (srv == 0) {
		// The token goes in through the environment of the exec, not argv,
		// so it is never in a command line.
		std::string env = "KT_SHORT=" + tok_short, path = "PATH=/usr/bin:/bin";
		char *envp[] = {env.data(), path.data(), nullptr};
		execle("/bin/sh", "sh", "-c", "exec \"$0\" \"$1\" \"$2\"", server.c_str(),
		       long_env.c_str(), gone_env.c_str(), nullptr, envp);
		_exit(127);
	}
	int status = 0;
	ASSERT_EQ(waitpid(srv, &status, 0), srv);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
	std::string state = dir + "/state";
	std::string fp_long = fingerprint_of(tok_long, state),
	            fp_gone = fingerprint_of(tok_gone, state),
	            fp_short = fingerprint_of(tok_short, state);
	a.wait_until(
	    [&] {
		    std::string out = slurp(a.out());
		    return out.find(fp_long) != std::string::npos &&
		           out.find(fp_gone) != std::string::npos &&
		           out.find(fp_short) != std::string::npos;
	    },
	    8000);
	std::this_thread::sleep_for(std::chrono::milliseconds(600)); // one more health
	ASSERT_EQ(a.stop(), 0) << slurp(a.err());

	// Every line parses (records() fails the test on one that does not), in
	// the output and in the journal.
	auto recs = records(a.out());
	JournalReadStats js;
	ASSERT_TRUE(read_journal(
	    state + "/journal", [](nlohmann::json &&) { return true; }, &js));
	EXPECT_EQ(js.bad_lines, 0u);
	EXPECT_GT(js.records, 10u);

	// Each credential is found, whatever its path.
	auto secret = [&](const std::string &fp,
	                  const std::string &comm = "") -> const nlohmann::json * {
		for (const auto &r : recs)
			if (r["type"] == "secret" && r["secret"]["fingerprint"] == fp &&
			    (comm.empty() || r["comm"] == comm))
				return &r;
		return nullptr;
	};
	const auto *l = secret(fp_long);
	ASSERT_NE(l, nullptr) << "the file behind the 4,000-byte path";
	std::string shown = l->at("secret").at("path");
	EXPECT_GT(shown.size(), 4000u);
	EXPECT_NE(shown.find('\n'), std::string::npos); // kept, JSON-escaped
	EXPECT_NE(shown.find("\\xFF\\xFE"), std::string::npos) << "invalid UTF-8 is escaped";
	EXPECT_TRUE(shown.ends_with("/.env"));
	const auto *g = secret(fp_gone);
	ASSERT_NE(g, nullptr) << "the file deleted while open (read through its fd)";
	EXPECT_EQ(g->at("secret").at("type"), "github_token");
	bool short_seen = false;
	for (const auto &r : recs)
		short_seen = short_seen || (r["type"] == "secret" && r["comm"] == "true" &&
		                            r["secret"]["fingerprint"] == fp_short);
	EXPECT_TRUE(short_seen) << "the environment of a child that exited at once";

	// The server's own records name it through its hostile path.
	bool exec_seen = false;
	for (const auto &r : recs)
		if (r["type"] == "exec" && r.value("mcp_server", "") == "mcp-server-kthostile") {
			exec_seen = true;
			EXPECT_NE(r.dump().find("\\n\\\"q'\\\\"), std::string::npos) << r.dump();
		}
	EXPECT_TRUE(exec_seen);

	// What could not be attributed is counted, not hidden: the children
	// were gone before their identity could be read from /proc.
	nlohmann::json h;
	for (const auto &r : recs)
		if (r["type"] == "health")
			h = r;
	ASSERT_FALSE(h.is_null());
	EXPECT_GE(h["agent"]["identities_degraded"].get<int>() +
	              h["secrets"]["environ_unreadable"].get<int>(),
	          1)
	    << h.dump();
	for (const auto &t : {tok_long, tok_gone, tok_short})
		EXPECT_EQ(slurp(a.out()).find(t), std::string::npos);
	std::system(("rm -rf '" + dir + "'").c_str());
}
