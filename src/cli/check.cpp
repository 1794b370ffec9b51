// keytrail check: which kernel hooks work here, and is a config valid.
#include <cstdio>

#include "commands.h"
#include "keytrail/probe/features.h"

namespace keytrail::cli
{

namespace
{

int check(const std::string &config)
{
	if (!config.empty()) {
		try {
			Config cfg = load_config(config);
			std::printf("config %s: ok (%zu inventory entries, %zu tracking rules, %zu "
			            "outputs)\n\n",
			            config.c_str(), cfg.inventory.size(), cfg.rules.size(),
			            cfg.outputs.size());
		} catch (const Error &e) {
			std::printf("config %s: %s\n", config.c_str(), e.what());
			return 2;
		}
	}
	auto features = probe_features();
	std::printf("%-16s %-10s %s\n", "FEATURE", "STATUS", "DETAIL");
	for (const auto &f : features)
		std::printf("%-16s %-10s %s\n", f.name.c_str(),
		            f.available ? "ok" : (f.required ? "MISSING" : "no"), f.detail.c_str());
	std::string reason;
	if (agent_can_run(features, &reason)) {
		std::printf(
		    "\nagent can run: yes (tracepoints, raw_tp and ring buffer are usable)\n");
		return 0;
	}
	std::printf("\nagent can run: no (%s)\n", reason.c_str());
	return 1;
}

} // namespace

Command add_check(CLI::App &app)
{
	auto config = std::make_shared<std::string>();
	auto *sub = app.add_subcommand(
	    "check", "Report which kernel hooks work here and whether the agent can run");
	sub->add_option("-c,--config", *config, "Also validate this config file (exit 2 if bad)");
	return {sub, [config] { return check(*config); }};
}

} // namespace keytrail::cli
