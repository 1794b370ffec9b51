// keytrail run: the agent, until SIGINT/SIGTERM; SIGHUP reloads the config.
#include "keytrail/agent/run.h"

#include <csignal>

#include "commands.h"

namespace keytrail::cli
{

namespace
{

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void on_signal(int)
{
	g_stop.store(true);
}

void on_hup(int)
{
	g_reload.store(true);
}

void install_signals()
{
	struct sigaction sa {
	};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
	struct sigaction hup {
	};
	hup.sa_handler = on_hup;
	sigaction(SIGHUP, &hup, nullptr);
	signal(SIGPIPE, SIG_IGN);
}

} // namespace

Command add_run(CLI::App &app)
{
	struct Args {
		StateArgs state;
		AgentOptions opts;
		std::vector<int> track;
	};
	auto a = std::make_shared<Args>();
	auto *run = app.add_subcommand("run", "Load the probes and write JSON lines until stopped");
	add_state_args(run, a->state);
	run->add_option("-o,--output", a->opts.output, "Write records to FILE, or - for stdout")
	    ->transform(absolute_arg);
	run->add_flag("--events", a->opts.events,
	              "Also write raw observations (exec, open, connect, ...)");
	run->add_option("--duration", a->opts.duration_s, "Stop after SECONDS")
	    ->check(CLI::NonNegativeNumber);
	run->add_option("--track", a->track, "Also track these pids and their descendants");
	run->add_option("--format", a->opts.format,
	                "json (default), or ocsf: alerts as OCSF Detection Findings")
	    ->check(CLI::IsMember({"json", "ocsf"}));
	run->add_option("--metrics", a->opts.metrics,
	                "Serve Prometheus metrics at ADDR/metrics (e.g. 127.0.0.1:9464)");
	run->add_option("--record", a->opts.record,
	                "Also write the correlator's inputs to FILE (for keytrail replay)")
	    ->transform(absolute_arg);
	return {run, [a] {
		        Config cfg;
		        try {
			        cfg = resolve_config(a->state.config,
			                             a->state.config_opt->count() > 0);
		        } catch (const Error &e) {
			        std::fprintf(stderr, "keytrail: bad config: %s\n", e.what());
			        return 2;
		        }
		        a->opts.state_dir = a->state.state_dir;
		        for (int p : a->track)
			        a->opts.track.push_back(p);
		        install_signals();
		        try {
			        return run_agent(std::move(cfg), a->opts, g_stop, &g_reload);
		        } catch (const Error &e) {
			        std::fprintf(stderr, "keytrail: %s\n", e.what());
			        return 1;
		        }
	        }};
}

} // namespace keytrail::cli
