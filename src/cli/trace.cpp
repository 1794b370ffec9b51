// keytrail trace: the pivot chain around a secret, a process or an identity,
// rebuilt from the journal.
#include "keytrail/tools/trace.h"

#include <spdlog/spdlog.h>

#include "commands.h"
#include "keytrail/util/clock.h"

namespace keytrail::cli
{

namespace
{

struct Args {
	StateArgs state;
	TraceQuery q;
	std::string journal, format = "tree", out, since, until, at;
	uint32_t pid = 0;
	bool all = false;
	CLI::Option *pid_opt = nullptr;
};

// "2026-11-26T10:00:00Z", a date, or a span before now ("1h"); "" = open.
bool parse_time_opt(const std::string &s, int64_t *t, const char *what, bool relative = true)
{
	if (s.empty())
		return true;
	if (relative ? parse_trace_time(s, wall_now_ns(), t) : parse_rfc3339(s, t))
		return true;
	std::fprintf(stderr, "keytrail: %s must be an RFC 3339 time, a date%s, not '%s'\n", what,
	             relative ? " or a span before now (90s, 30m, 1h, 7d)" : "", s.c_str());
	return false;
}

int trace(Args &a)
{
	TraceQuery q = a.q;
	if (a.pid_opt->count())
		q.pid = a.pid;
	if (q.secret.empty() && q.inventory.empty() && !q.pid && q.exec_id.empty() &&
	    q.identity.empty()) {
		std::fprintf(stderr,
		             "keytrail trace: give --secret, --inventory, --pid, --exec-id or "
		             "--identity\n");
		return 2;
	}
	int64_t at_ns = 0;
	if (!parse_time_opt(a.since, &q.since, "--since") ||
	    !parse_time_opt(a.until, &q.until, "--until") ||
	    !parse_time_opt(a.at, &at_ns, "--at", false))
		return 2;
	if (!a.at.empty())
		q.at = at_ns;
	std::string journal = a.journal;
	if (journal.empty()) {
		try {
			journal = resolve_state(a.state).journal;
		} catch (const Error &e) {
			std::fprintf(stderr, "keytrail trace: %s\n", e.what());
			return 2;
		}
	}
	Progress progress;
	auto r = run_trace(journal, q, [&](size_t i, size_t n, const std::string &seg) {
		progress.update(i, n, "reading " + seg.substr(seg.rfind('/') + 1));
	});
	progress.done();
	if (r.stats.truncated_segments || r.stats.bad_lines)
		spdlog::warn("journal: {} truncated segment(s), {} unreadable line(s) skipped",
		             r.stats.truncated_segments, r.stats.bad_lines);
	if (!r.error.empty()) {
		std::fprintf(stderr,
		             "keytrail trace: %s (%llu records read in %s; %llu of %llu segments "
		             "skipped on their index)\n",
		             r.error.c_str(), static_cast<unsigned long long>(r.stats.records),
		             journal.c_str(),
		             static_cast<unsigned long long>(r.stats.skipped_segments),
		             static_cast<unsigned long long>(r.stats.segments));
		return 1;
	}
	std::string text = a.format == "json"  ? trace_json(r).dump(2) + "\n"
	                   : a.format == "dot" ? trace_dot(r)
	                                       : trace_tree(r, a.all);
	return write_output(a.out, text, "trace") ? 0 : 2;
}

} // namespace

Command add_trace(CLI::App &app)
{
	auto a = std::make_shared<Args>();
	auto *sub = app.add_subcommand(
	    "trace",
	    "Rebuild the pivot chain around a secret, process or identity from the journal");
	sub->add_option("--secret", a->q.secret,
	                "A credential's fingerprint (or its first digits)");
	sub->add_option("--inventory", a->q.inventory, "A credential's inventory id");
	a->pid_opt = sub->add_option("--pid", a->pid, "A process id");
	sub->add_option("--at", a->at, "With --pid: the process alive at this time");
	sub->add_option("--exec-id", a->q.exec_id, "A process instance (exec_id)");
	sub->add_option(
	    "--identity", a->q.identity,
	    "A workload identity id, a glob on one ('*alpha*'), or an MCP server's name");
	sub->add_option(
	    "--since", a->since,
	    "Only records at or after this time (RFC 3339, a date, or 90s, 30m, 1h, 7d ago)");
	sub->add_option("--until", a->until, "Only records at or before this time (as --since)");
	sub->add_option("-f,--format", a->format, "tree, json or dot (Graphviz)")
	    ->check(CLI::IsMember({"tree", "json", "dot"}))
	    ->capture_default_str();
	sub->add_flag("--all", a->all,
	              "In the tree, also every helper process with nothing to show (folded by "
	              "default)");
	sub->add_option("-o,--output", a->out, "Write to FILE (default stdout)");
	add_state_args(sub, a->state);
	sub->add_option("--journal", a->journal,
	                "The journal directory (default: the config's, or <state-dir>/journal)");
	return {sub, [a] { return trace(*a); }};
}

} // namespace keytrail::cli
