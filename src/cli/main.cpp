// keytrail: one binary, one subcommand per job (src/cli/, a file each).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.h"

namespace
{

void setup_logging(int verbosity)
{
	auto logger = spdlog::stderr_color_mt("keytrail");
	spdlog::set_default_logger(logger);
	spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z keytrail %^%l%$: %v");
	spdlog::set_level(verbosity >= 2   ? spdlog::level::trace
	                  : verbosity == 1 ? spdlog::level::debug
	                                   : spdlog::level::info);
}

} // namespace

int main(int argc, char **argv)
{
	using namespace keytrail::cli;
	CLI::App app{"KeyTrail: who used which secret, from where, to reach what.\n"
	             "Watches MCP servers from the kernel with eBPF and attributes every secret "
	             "use."};
	app.require_subcommand(0, 1);
	int verbosity = 0;
	app.add_flag("-v,--verbose", verbosity,
	             "More logging on stderr (-vv: libbpf and verifier)");
	app.set_version_flag("--version", KEYTRAIL_VERSION);
	const Command commands[] = {
	    add_run(app),   add_replay(app), add_check(app),  add_fingerprint(app), add_scan(app),
	    add_trace(app), add_report(app), add_status(app), add_key(app),         add_fleet(app)};
	// `keytrail help [CMD]`: the same as --help.
	std::string topic;
	CLI::App *help = app.add_subcommand("help", "Print this help, or a subcommand's");
	help->add_option("command", topic, "Subcommand");
	CLI11_PARSE(app, argc, argv);
	if (argc == 1 || *help) {
		CLI::App *of = &app;
		if (!topic.empty()) {
			of = nullptr;
			for (CLI::App *s : app.get_subcommands({}))
				if (s->get_name() == topic)
					of = s;
		}
		if (!of) {
			std::fprintf(stderr, "keytrail: no subcommand '%s'\n", topic.c_str());
			return 2;
		}
		std::fputs(of->help().c_str(), stdout);
		return 0;
	}
	setup_logging(verbosity);
	for (const auto &c : commands)
		if (*c.sub)
			return c.run();
	return 0;
}
