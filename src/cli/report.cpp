// keytrail report: every credential the ledger has seen, by risk.
#include "keytrail/tools/report.h"

#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include "commands.h"
#include "keytrail/util/clock.h"

namespace keytrail::cli
{

namespace
{

struct Args {
	StateArgs state;
	std::string journal, format = "table", out;
	size_t width = 0;
};

int report(const Args &a)
{
	try {
		State st = resolve_state(a.state);
		Progress progress;
		spdlog::info("ledger {}/ledger.db, journal {}", st.state_dir,
		             a.journal.empty() ? st.journal : a.journal);
		auto r = build_report(st.state_dir, a.journal.empty() ? st.journal : a.journal,
		                      st.cfg.inventory, wall_now_ns(),
		                      [&](const std::string &w) { progress.note(w); });
		progress.done();
		size_t width = a.width;
		if (!width) {
			winsize ws{};
			width = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 80
			            ? std::min<size_t>(ws.ws_col, 160)
			            : 100;
		}
		std::string text = a.format == "json"   ? report_json(r).dump(2) + "\n"
		                   : a.format == "csv"  ? report_csv(r)
		                   : a.format == "html" ? report_html(r)
		                                        : report_table(r, width);
		return write_output(a.out, text, "report") ? 0 : 2;
	} catch (const Error &e) {
		std::fprintf(stderr, "keytrail report: %s\n", e.what());
		return 2;
	}
}

} // namespace

Command add_report(CLI::App &app)
{
	auto a = std::make_shared<Args>();
	auto *sub = app.add_subcommand(
	    "report", "Every credential seen: owner, holders, upstreams, age, findings, by risk");
	add_state_args(sub, a->state);
	sub->add_option("--journal", a->journal,
	                "The journal, for the alerts raised (default <state-dir>/journal)");
	sub->add_option("-f,--format", a->format, "table, json, csv or html")
	    ->check(CLI::IsMember({"table", "json", "csv", "html"}))
	    ->capture_default_str();
	sub->add_option("-o,--output", a->out, "Write to FILE (default stdout)");
	sub->add_option("--width", a->width, "Table width (default: the terminal's, or 100)")
	    ->check(CLI::Range(80, 400));
	return {sub, [a] { return report(*a); }};
}

} // namespace keytrail::cli
