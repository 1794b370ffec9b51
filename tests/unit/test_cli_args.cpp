// Paths given on the command line: the agent takes only absolute ones, so
// the CLI makes a relative one absolute against the caller's cwd.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "../../src/cli/commands.h"

using keytrail::cli::absolute_arg;

TEST(CliArgs, ARelativePathIsMadeAbsoluteAgainstTheCallersCwd)
{
	std::string cwd = std::filesystem::current_path().string();
	EXPECT_EQ(absolute_arg("out.jsonl"), cwd + "/out.jsonl");
	EXPECT_EQ(absolute_arg("./state/"), cwd + "/state/");
	EXPECT_EQ(absolute_arg("../x.jsonl"),
	          (std::filesystem::path(cwd).parent_path() / "x.jsonl").string());
	EXPECT_EQ(absolute_arg("/var/lib/keytrail"), "/var/lib/keytrail");
	EXPECT_EQ(absolute_arg("-"), "-");
	EXPECT_EQ(absolute_arg(""), "");
}
