// keytrail scan: hard-coded credentials and credential files in MCP client
// configs; exit 1 when there are findings.
#include "keytrail/tools/scan.h"

#include <spdlog/spdlog.h>

#include <optional>

#include "commands.h"
#include "keytrail/secrets/fingerprint.h"

namespace keytrail::cli
{

namespace
{

struct Args {
	StateArgs state;
	std::vector<std::string> paths;
	std::string format = "text", out;
	bool verbose = false;
};

int scan(const Args &a)
{
	State st;
	try {
		st = resolve_state(a.state);
	} catch (const Error &e) {
		std::fprintf(stderr, "keytrail scan: %s\n", e.what());
		return 2;
	}
	std::optional<Fingerprinter> fp;
	try {
		fp.emplace(load_or_create_key(st.key_file, false));
		spdlog::info("fingerprints under key {} ({})", fp->key_id(), st.key_file);
	} catch (const Error &e) {
		if (!st.default_key) {
			std::fprintf(stderr, "keytrail scan: %s\n", e.what());
			return 2;
		}
		spdlog::info("no fingerprint key at {}: findings carry no fingerprints",
		             st.key_file);
	}
	Progress progress;
	auto report = run_scan(a.paths, fp, [&](size_t i, size_t n, const std::string &p) {
		if (n)
			progress.update(i, n, p);
		else
			progress.note("walking " + p + ": " + std::to_string(i) + " entries");
	});
	progress.done();
	// `keytrail -v scan` as well as `keytrail scan -v`.
	bool verbose = a.verbose || spdlog::should_log(spdlog::level::debug);
	std::string text = a.format == "text"   ? scan_text(report, verbose)
	                   : a.format == "json" ? scan_json(report).dump(2) + "\n"
	                                        : scan_sarif(report).dump(2) + "\n";
	if (!write_output(a.out, text, "scan"))
		return 2;
	return scan_exit_code(report);
}

} // namespace

Command add_scan(CLI::App &app)
{
	auto a = std::make_shared<Args>();
	auto *sub = app.add_subcommand(
	    "scan", "Check MCP client configs for hard-coded credentials and credential files "
	            "(exit 1 when there are findings)");
	sub->add_option("PATHS", a->paths,
	                "Config files, or directories to walk for MCP client configs (default: "
	                "every user's well-known MCP client configs)");
	sub->add_flag("-v,--verbose", a->verbose,
	              "List every location looked at and what was there");
	sub->add_option("-f,--format", a->format, "text, json or sarif")
	    ->check(CLI::IsMember({"text", "json", "sarif"}))
	    ->capture_default_str();
	sub->add_option("-o,--output", a->out, "Write the report to FILE (default stdout)");
	add_state_args(sub, a->state, true);
	return {sub, [a] { return scan(*a); }};
}

} // namespace keytrail::cli
