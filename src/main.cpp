// keytrail: one binary, one subcommand per job.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "keytrail/agent/agent.h"
#include "keytrail/config/config.h"
#include "keytrail/probe/features.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

void setup_logging(int verbosity)
{
	auto logger = spdlog::stderr_color_mt("keytrail");
	spdlog::set_default_logger(logger);
	spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z keytrail %^%l%$: %v");
	spdlog::set_level(verbosity >= 2 ? spdlog::level::trace
			  : verbosity == 1 ? spdlog::level::debug
					   : spdlog::level::info);
}

// The config to use: an explicit --config must exist; the default path is
// optional (built-in defaults when absent).
keytrail::Config resolve_config(const std::string &path, bool explicit_path)
{
	struct stat st;
	if (!explicit_path && stat(path.c_str(), &st) != 0) {
		spdlog::info("no {}; using built-in defaults", path);
		return keytrail::Config{};
	}
	return keytrail::load_config(path);
}

int cmd_check()
{
	auto features = keytrail::probe_features();
	std::printf("%-16s %-10s %s\n", "FEATURE", "STATUS", "DETAIL");
	for (const auto &f : features)
		std::printf("%-16s %-10s %s\n", f.name.c_str(),
			    f.available ? "ok" : (f.required ? "MISSING" : "no"), f.detail.c_str());
	std::string reason;
	if (keytrail::agent_can_run(features, &reason)) {
		std::printf("\nagent can run: yes (tracepoints, raw_tp and ring buffer are usable)\n");
		return 0;
	}
	std::printf("\nagent can run: no (%s)\n", reason.c_str());
	return 1;
}

}  // namespace

int main(int argc, char **argv)
{
	CLI::App app{"KeyTrail: who used which secret, from where, to reach what.\n"
		     "Watches MCP servers from the kernel with eBPF and attributes every secret use."};
	app.require_subcommand(1);
	int verbosity = 0;
	app.add_flag("-v,--verbose", verbosity, "More logging on stderr (-vv: libbpf and verifier)");
	app.set_version_flag("--version", KEYTRAIL_VERSION);

	std::string config_path = keytrail::kDefaultConfigPath;
	keytrail::AgentOptions run_opts;
	std::vector<int> track_pids;
	auto *run = app.add_subcommand("run", "Load the probes and write JSON lines until stopped");
	auto *config_opt = run->add_option("-c,--config", config_path, "YAML config file")
			       ->capture_default_str();
	run->add_option("--state-dir", run_opts.state_dir,
			"Where keys, ledger and journal are kept (default /var/lib/keytrail)");
	run->add_option("-o,--output", run_opts.output, "Write records to FILE, or - for stdout");
	run->add_flag("--events", run_opts.events, "Also write raw observations (exec, open, connect, ...)");
	run->add_option("--duration", run_opts.duration_s, "Stop after SECONDS")->check(CLI::NonNegativeNumber);
	run->add_option("--track", track_pids, "Also track these pids and their descendants");

	auto *check = app.add_subcommand("check", "Report which kernel hooks work here and whether the agent can run");

	CLI11_PARSE(app, argc, argv);
	setup_logging(verbosity);

	if (*check)
		return cmd_check();

	if (*run) {
		keytrail::Config cfg;
		try {
			cfg = resolve_config(config_path, config_opt->count() > 0);
		} catch (const keytrail::Error &e) {
			std::fprintf(stderr, "keytrail: bad config: %s\n", e.what());
			return 2;
		}
		for (int p : track_pids)
			run_opts.track.push_back(p);
		struct sigaction sa {};
		sa.sa_handler = on_signal;
		sigaction(SIGINT, &sa, nullptr);
		sigaction(SIGTERM, &sa, nullptr);
		signal(SIGPIPE, SIG_IGN);
		try {
			keytrail::Agent agent(std::move(cfg), run_opts);
			return agent.run(g_stop);
		} catch (const keytrail::Error &e) {
			std::fprintf(stderr, "keytrail: %s\n", e.what());
			return 1;
		}
	}
	return 0;
}
