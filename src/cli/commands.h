// The subcommands of the one `keytrail` binary: each file registers its
// options on the CLI11 app and returns what to run when it is chosen.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "keytrail/config/config.h"

namespace keytrail::cli
{

struct Command {
	CLI::App *sub;
	std::function<int()> run;
};

Command add_run(CLI::App &app);
Command add_replay(CLI::App &app);
Command add_check(CLI::App &app);
Command add_fingerprint(CLI::App &app);
Command add_scan(CLI::App &app);
Command add_trace(CLI::App &app);
Command add_report(CLI::App &app);
Command add_status(CLI::App &app);
Command add_key(CLI::App &app);
Command add_fleet(CLI::App &app);

// Where a tool finds the agent's state: -c/--config and --state-dir, the
// same on every subcommand.
struct StateArgs {
	std::string config = kDefaultConfigPath;
	std::string state_dir; // "" = the config's agent.state_dir
	std::string key_file;  // "" = the config's, else <state_dir>/fingerprint.key
	CLI::Option *config_opt = nullptr;
};
void add_state_args(CLI::App *sub, StateArgs &a, bool key_file = false);
// A path given on the command line, absolute: relative to the caller's cwd
// ("-" and "" as they are). The agent takes only absolute paths.
std::string absolute_arg(std::string path);

// The config (an explicit --config must exist; the default path is
// optional) and what follows from it. Throws Error.
struct State {
	Config cfg;
	std::string state_dir, key_file, journal;
	bool default_key = true; // the key is the per-host one the agent creates
};
State resolve_state(const StateArgs &a);
Config resolve_config(const std::string &path, bool explicit_path);

// A progress line on a terminal (stderr), nothing when piped.
class Progress
{
      public:
	Progress();
	~Progress() { done(); }
	void update(size_t i, size_t n, const std::string &what);
	void note(const std::string &what);
	void done();

      private:
	bool tty_, shown_ = false;
};

// Writes text to out_path (0600), or stdout for "" or "-". Reports a
// failure on stderr, as `keytrail <cmd>`.
bool write_output(const std::string &out_path, const std::string &text, const char *cmd);

} // namespace keytrail::cli
