// Fake credentials in valid formats, built at run time (never committed as
// literals), and their fingerprints as the agent computes them.
#pragma once

#include <unistd.h>

#include <fstream>
#include <string>

#include "support/agent_process.h"
#include "support/tokens.h"

namespace keytrail::test
{

// `keytrail fingerprint` with the agent's key in state_dir.
inline std::string fingerprint_of(const std::string &secret, const std::string &state_dir)
{
	std::string dir = temp_dir();
	std::ofstream(dir + "/s", std::ios::binary) << secret;
	EXPECT_EQ(run_cmd(std::string(KEYTRAIL_BINARY) + " fingerprint --state-dir " + state_dir +
	                  " < " + dir + "/s > " + dir + "/fp"),
	          0);
	std::string fp = slurp(dir + "/fp");
	unlink((dir + "/s").c_str());
	return fp.substr(0, fp.find('\n'));
}

} // namespace keytrail::test
