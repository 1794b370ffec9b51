// keytrail: one binary, one subcommand per job.
#include <openssl/crypto.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

#include "keytrail/agent/agent.h"
#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/output/ocsf.h"
#include "keytrail/probe/features.h"
#include "keytrail/secrets/fingerprint.h"
#include "keytrail/tools/report.h"
#include "keytrail/tools/scan.h"
#include "keytrail/tools/status.h"
#include "keytrail/tools/trace.h"

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

void setup_logging(int verbosity)
{
	auto logger = spdlog::stderr_color_mt("keytrail");
	spdlog::set_default_logger(logger);
	spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z keytrail %^%l%$: %v");
	spdlog::set_level(verbosity >= 2   ? spdlog::level::trace
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

int cmd_check(const std::string &config)
{
	if (!config.empty()) {
		try {
			keytrail::Config cfg = keytrail::load_config(config);
			std::printf("config %s: ok (%zu inventory entries, %zu tracking rules, %zu "
			            "outputs)\n\n",
			            config.c_str(), cfg.inventory.size(), cfg.rules.size(),
			            cfg.outputs.size());
		} catch (const keytrail::Error &e) {
			std::printf("config %s: %s\n", config.c_str(), e.what());
			return 2;
		}
	}
	auto features = keytrail::probe_features();
	std::printf("%-16s %-10s %s\n", "FEATURE", "STATUS", "DETAIL");
	for (const auto &f : features)
		std::printf("%-16s %-10s %s\n", f.name.c_str(),
		            f.available ? "ok" : (f.required ? "MISSING" : "no"), f.detail.c_str());
	std::string reason;
	if (keytrail::agent_can_run(features, &reason)) {
		std::printf(
		    "\nagent can run: yes (tracepoints, raw_tp and ring buffer are usable)\n");
		return 0;
	}
	std::printf("\nagent can run: no (%s)\n", reason.c_str());
	return 1;
}

// Reads one secret from stdin (a trailing newline is not part of it) and
// prints only its fingerprint; the bytes are wiped.
int cmd_fingerprint(const std::string &config_path, bool explicit_config,
                    const std::string &state_dir, std::string key_file)
{
	try {
		if (key_file.empty()) {
			keytrail::Config cfg = resolve_config(config_path, explicit_config);
			key_file = !cfg.fingerprint_key_file.empty()
			               ? cfg.fingerprint_key_file
			               : state_dir + "/fingerprint.key";
		}
		keytrail::Fingerprinter fp(keytrail::load_or_create_key(key_file, false));
		keytrail::SecretBytes in;
		std::string &buf = in.mutable_str();
		char chunk[4096];
		size_t n;
		while ((n = std::fread(chunk, 1, sizeof(chunk), stdin)) > 0 &&
		       buf.size() < (1u << 20))
			buf.append(chunk, n);
		OPENSSL_cleanse(chunk, sizeof(chunk));
		keytrail::SecretBytes secret = keytrail::normalize_secret(in.view());
		if (secret.empty()) {
			std::fprintf(stderr, "keytrail fingerprint: no secret on stdin\n");
			return 2;
		}
		std::printf("%s\n", fp(secret.view()).c_str());
		return 0;
	} catch (const keytrail::Error &e) {
		std::fprintf(stderr, "keytrail fingerprint: %s\n", e.what());
		return 1;
	}
}

// Time as the recording tells it: alerts carry the times they would have had.
class ReplayClock : public keytrail::Clock
{
      public:
	int64_t now_ns() const override { return now_; }
	int64_t boot_to_wall_ns(uint64_t boot_ns) const override
	{
		return static_cast<int64_t>(boot_ns);
	}
	void set(int64_t t) { now_ = std::max(now_, t); }

      private:
	int64_t now_ = 0;
};

// Feeds a recording through the correlator as fast as it can, on this
// thread, and writes what it raises. Statistics go to stderr as JSON.
int cmd_replay(const std::string &file, keytrail::Config cfg, const std::string &out_path,
               const std::string &format, bool decode_only)
{
	try {
		keytrail::RecordingReader reader(file);
		FILE *out = nullptr;
		if (out_path == "-")
			out = stdout;
		else if (out_path != "none" && !(out = std::fopen(out_path.c_str(), "we")))
			throw keytrail::sys_error("cannot write " + out_path, errno);
		ReplayClock clock;
		uint64_t written = 0;
		keytrail::Correlator corr("replay", cfg, clock, [&](keytrail::Record &&r) {
			if (!out)
				return;
			bool alert = r.fields["type"] == "alert";
			if (format == "ocsf" && !alert)
				return;
			std::string s = format == "ocsf"
			                    ? keytrail::to_ocsf(keytrail::to_json(r))
			                          .dump(-1, ' ', false,
			                                nlohmann::json::error_handler_t::replace)
			                    : keytrail::serialize(r);
			s.push_back('\n');
			std::fwrite(s.data(), 1, s.size(), out);
			written++;
		});
		auto t0 = std::chrono::steady_clock::now();
		uint64_t decoded = 0;
		while (auto in = reader.next()) {
			decoded++;
			clock.set(keytrail::input_time(*in));
			if (!decode_only)
				corr.feed(*in);
		}
		double secs =
		    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
		if (out && out != stdout)
			std::fclose(out);
		else if (out)
			std::fflush(out);
		struct rusage ru {
		};
		getrusage(RUSAGE_SELF, &ru);
		const auto &c = corr.counters();
		nlohmann::json stats = {
		    {"inputs", decode_only ? decoded : c.inputs},
		    {"seconds", secs},
		    {"inputs_per_second", secs > 0 ? static_cast<double>(decoded) / secs : 0.0},
		    {"peak_rss_mib", static_cast<double>(ru.ru_maxrss) / 1024.0},
		    {"records_written", written},
		    {"correlator", corr.counters_json()}};
		if (!reader.error().empty())
			stats["error"] = reader.error();
		std::fprintf(stderr, "%s\n", stats.dump().c_str());
		if (!reader.error().empty()) {
			std::fprintf(stderr, "keytrail replay: %s: %s\n", file.c_str(),
			             reader.error().c_str());
			return 1;
		}
		return 0;
	} catch (const keytrail::Error &e) {
		std::fprintf(stderr, "keytrail replay: %s\n", e.what());
		return 1;
	}
}

// A progress line on a terminal (stderr), nothing when piped.
class Progress
{
      public:
	Progress() : tty_(isatty(STDERR_FILENO)) {}
	~Progress() { done(); }
	void update(size_t i, size_t n, const std::string &what)
	{
		if (!tty_)
			return;
		std::string w = what.size() > 60 ? "..." + what.substr(what.size() - 57) : what;
		std::fprintf(stderr, "\r\033[K[%zu/%zu] %s", i + 1, n, w.c_str());
		shown_ = true;
	}
	void note(const std::string &what)
	{
		if (!tty_)
			return;
		std::fprintf(stderr, "\r\033[K%s", what.c_str());
		shown_ = true;
	}
	void done()
	{
		if (shown_)
			std::fprintf(stderr, "\r\033[K");
		shown_ = false;
	}

      private:
	bool tty_, shown_ = false;
};

bool write_output(const std::string &out_path, const std::string &text, const char *cmd)
{
	if (out_path.empty() || out_path == "-") {
		std::fwrite(text.data(), 1, text.size(), stdout);
		return true;
	}
	FILE *f = std::fopen(out_path.c_str(), "we");
	if (!f) {
		std::fprintf(stderr, "keytrail %s: cannot write %s: %s\n", cmd, out_path.c_str(),
		             std::strerror(errno));
		return false;
	}
	std::fwrite(text.data(), 1, text.size(), f);
	return std::fclose(f) == 0;
}

int cmd_scan(const std::vector<std::string> &paths, const std::string &format,
             const std::string &out_path, const std::string &state_dir, const std::string &key_file)
{
	std::optional<keytrail::Fingerprinter> fp;
	std::string key = key_file.empty() ? state_dir + "/fingerprint.key" : key_file;
	try {
		fp.emplace(keytrail::load_or_create_key(key, false));
	} catch (const keytrail::Error &e) {
		if (!key_file.empty()) {
			std::fprintf(stderr, "keytrail scan: %s\n", e.what());
			return 2;
		}
		spdlog::info("no fingerprint key at {}: findings carry no fingerprints", key);
	}
	Progress progress;
	auto report = keytrail::run_scan(
	    paths, fp, [&](size_t i, size_t n, const std::string &p) { progress.update(i, n, p); });
	progress.done();
	std::string text = format == "text"   ? keytrail::scan_text(report)
	                   : format == "json" ? keytrail::scan_json(report).dump(2) + "\n"
	                                      : keytrail::scan_sarif(report).dump(2) + "\n";
	if (!write_output(out_path, text, "scan"))
		return 2;
	return keytrail::scan_exit_code(report);
}

// "2026-11-26T10:00:00Z" or a date; "" = open.
bool parse_time_opt(const std::string &s, int64_t *t, const char *what)
{
	if (s.empty())
		return true;
	if (keytrail::parse_rfc3339(s, t))
		return true;
	std::fprintf(stderr, "keytrail: %s must be an RFC 3339 time or a date, not '%s'\n", what,
	             s.c_str());
	return false;
}

int cmd_trace(keytrail::TraceQuery q, const std::string &journal, const std::string &format,
              const std::string &out_path, const std::string &since, const std::string &until,
              const std::string &at)
{
	int64_t at_ns = 0;
	if (!parse_time_opt(since, &q.since, "--since") ||
	    !parse_time_opt(until, &q.until, "--until") || !parse_time_opt(at, &at_ns, "--at"))
		return 2;
	if (!at.empty())
		q.at = at_ns;
	auto r = keytrail::run_trace(journal, q);
	if (r.stats.truncated_segments || r.stats.bad_lines)
		spdlog::warn("journal: {} truncated segment(s), {} unreadable line(s) skipped",
		             r.stats.truncated_segments, r.stats.bad_lines);
	if (!r.error.empty()) {
		std::fprintf(stderr, "keytrail trace: %s (%llu records read)\n", r.error.c_str(),
		             static_cast<unsigned long long>(r.stats.records));
		return 1;
	}
	std::string text = format == "json"  ? keytrail::trace_json(r).dump(2) + "\n"
	                   : format == "dot" ? keytrail::trace_dot(r)
	                                     : keytrail::trace_tree(r);
	return write_output(out_path, text, "trace") ? 0 : 2;
}

int cmd_report(const std::string &state_dir, const std::string &journal, const std::string &config,
               bool explicit_config, const std::string &format, const std::string &out_path,
               size_t width)
{
	try {
		keytrail::Config cfg = resolve_config(config, explicit_config);
		Progress progress;
		auto r = keytrail::build_report(state_dir, journal, cfg.inventory,
		                                keytrail::SystemClock().now_ns(),
		                                [&](const std::string &w) { progress.note(w); });
		progress.done();
		if (!width) {
			winsize ws{};
			width = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 80
			            ? std::min<size_t>(ws.ws_col, 160)
			            : 100;
		}
		std::string text = format == "json"   ? keytrail::report_json(r).dump(2) + "\n"
		                   : format == "csv"  ? keytrail::report_csv(r)
		                   : format == "html" ? keytrail::report_html(r)
		                                      : keytrail::report_table(r, width);
		return write_output(out_path, text, "report") ? 0 : 2;
	} catch (const keytrail::Error &e) {
		std::fprintf(stderr, "keytrail report: %s\n", e.what());
		return 2;
	}
}

int cmd_status(const std::string &state_dir, bool json)
{
	try {
		auto st = keytrail::read_status(state_dir);
		if (json)
			std::printf("%s\n", st.dump(2).c_str());
		else
			std::fputs(keytrail::status_text(st).c_str(), stdout);
		return st.value("running", false) ? 0 : 3;
	} catch (const keytrail::Error &e) {
		std::fprintf(stderr, "keytrail status: %s\n", e.what());
		return 4;
	}
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{
	    "KeyTrail: who used which secret, from where, to reach what.\n"
	    "Watches MCP servers from the kernel with eBPF and attributes every secret use."};
	app.require_subcommand(1);
	int verbosity = 0;
	app.add_flag("-v,--verbose", verbosity,
	             "More logging on stderr (-vv: libbpf and verifier)");
	app.set_version_flag("--version", KEYTRAIL_VERSION);

	std::string config_path = keytrail::kDefaultConfigPath;
	keytrail::AgentOptions run_opts;
	std::vector<int> track_pids;
	auto *run = app.add_subcommand("run", "Load the probes and write JSON lines until stopped");
	auto *config_opt =
	    run->add_option("-c,--config", config_path, "YAML config file")->capture_default_str();
	run->add_option("--state-dir", run_opts.state_dir,
	                "Where keys, ledger and journal are kept (default /var/lib/keytrail)");
	run->add_option("-o,--output", run_opts.output, "Write records to FILE, or - for stdout");
	run->add_flag("--events", run_opts.events,
	              "Also write raw observations (exec, open, connect, ...)");
	run->add_option("--duration", run_opts.duration_s, "Stop after SECONDS")
	    ->check(CLI::NonNegativeNumber);
	run->add_option("--track", track_pids, "Also track these pids and their descendants");
	run->add_option("--format", run_opts.format,
	                "json (default), or ocsf: alerts as OCSF Detection Findings")
	    ->check(CLI::IsMember({"json", "ocsf"}));
	run->add_option("--metrics", run_opts.metrics,
	                "Serve Prometheus metrics at ADDR/metrics (e.g. 127.0.0.1:9464)");
	run->add_option("--record", run_opts.record,
	                "Also write the correlator's inputs to FILE (for keytrail replay)");

	std::string replay_file, replay_out = "-", replay_format = "json",
	                         replay_config = keytrail::kDefaultConfigPath;
	auto *replay = app.add_subcommand(
	    "replay", "Feed a recording (run --record) through the correlator as fast as it can");
	replay->add_option("FILE", replay_file, "The recording")->required();
	auto *replay_config_opt = replay->add_option(
	    "-c,--config", replay_config, "YAML config (inventory, identities, correlate)");
	replay
	    ->add_option("-o,--output", replay_out,
	                 "Where alerts and secret uses go: FILE, - (stdout) or none")
	    ->capture_default_str();
	replay->add_option("--format", replay_format, "json or ocsf")
	    ->check(CLI::IsMember({"json", "ocsf"}))
	    ->capture_default_str();
	bool replay_decode_only = false;
	replay->add_flag("--decode-only", replay_decode_only,
	                 "Only read and decode (the benchmark's baseline)");

	std::string check_config;
	auto *check = app.add_subcommand(
	    "check", "Report which kernel hooks work here and whether the agent can run");
	check->add_option("-c,--config", check_config,
	                  "Also validate this config file (exit 2 if bad)");

	std::string fp_state_dir = "/var/lib/keytrail", fp_key_file,
	            fp_config = keytrail::kDefaultConfigPath;
	auto *fingerprint =
	    app.add_subcommand("fingerprint", "Read a secret on stdin and print its fingerprint "
	                                      "(to match an alert to a vault entry)");
	auto *fp_config_opt = fingerprint->add_option(
	    "-c,--config", fp_config, "YAML config (for secrets.fingerprint_key_file)");
	fingerprint->add_option("--state-dir", fp_state_dir, "Where the agent keeps its key")
	    ->capture_default_str();
	fingerprint->add_option("--key-file", fp_key_file, "Use this key file instead");

	std::vector<std::string> scan_paths;
	std::string scan_format = "text", scan_out, scan_state = "/var/lib/keytrail", scan_key;
	auto *scan = app.add_subcommand(
	    "scan", "Check MCP client configs for hard-coded credentials and credential files "
	            "(exit 1 when there are findings)");
	scan->add_option("PATHS", scan_paths,
	                 "Config files (default: every user's well-known MCP client configs)");
	scan->add_option("-f,--format", scan_format, "text, json or sarif")
	    ->check(CLI::IsMember({"text", "json", "sarif"}))
	    ->capture_default_str();
	scan->add_option("-o,--output", scan_out, "Write the report to FILE (default stdout)");
	scan->add_option("--state-dir", scan_state,
	                 "Where the agent's fingerprint key is (fingerprints match its alerts)")
	    ->capture_default_str();
	scan->add_option("--key-file", scan_key, "Use this fingerprint key instead");

	keytrail::TraceQuery tq;
	std::string trace_state = "/var/lib/keytrail", trace_journal, trace_format = "tree",
	            trace_out, trace_since, trace_until, trace_at;
	uint32_t trace_pid = 0;
	auto *trace = app.add_subcommand(
	    "trace",
	    "Rebuild the pivot chain around a secret, process or identity from the journal");
	trace->add_option("--secret", tq.secret,
	                  "A credential's fingerprint (or its first digits)");
	trace->add_option("--inventory", tq.inventory, "A credential's inventory id");
	auto *trace_pid_opt = trace->add_option("--pid", trace_pid, "A process id");
	trace->add_option("--at", trace_at, "With --pid: the process alive at this time");
	trace->add_option("--exec-id", tq.exec_id, "A process instance (exec_id)");
	trace->add_option("--identity", tq.identity, "A workload identity id");
	trace->add_option("--since", trace_since, "Only records at or after this time");
	trace->add_option("--until", trace_until, "Only records at or before this time");
	trace->add_option("-f,--format", trace_format, "tree, json or dot (Graphviz)")
	    ->check(CLI::IsMember({"tree", "json", "dot"}))
	    ->capture_default_str();
	trace->add_option("-o,--output", trace_out, "Write to FILE (default stdout)");
	trace->add_option("--state-dir", trace_state, "The agent's state dir")
	    ->capture_default_str();
	trace->add_option("--journal", trace_journal,
	                  "The journal directory (default <state-dir>/journal)");

	std::string report_state = "/var/lib/keytrail", report_journal, report_format = "table",
	            report_out, report_config = keytrail::kDefaultConfigPath;
	size_t report_width = 0;
	auto *report = app.add_subcommand(
	    "report", "Every credential seen: owner, holders, upstreams, age, findings, by risk");
	report->add_option("--state-dir", report_state, "The agent's state dir")
	    ->capture_default_str();
	auto *report_config_opt =
	    report->add_option("-c,--config", report_config, "Config with the inventory");
	report->add_option("--journal", report_journal,
	                   "The journal, for the alerts raised (default <state-dir>/journal)");
	report->add_option("-f,--format", report_format, "table, json, csv or html")
	    ->check(CLI::IsMember({"table", "json", "csv", "html"}))
	    ->capture_default_str();
	report->add_option("-o,--output", report_out, "Write to FILE (default stdout)");
	report->add_option("--width", report_width, "Table width (default: the terminal's, or 100)")
	    ->check(CLI::Range(80, 400));

	std::string status_state = "/var/lib/keytrail";
	bool status_json = false;
	auto *status = app.add_subcommand(
	    "status", "Is the agent running, and how is it doing (exit 3 when it is not running)");
	status->add_option("--state-dir", status_state, "The agent's state dir")
	    ->capture_default_str();
	status->add_flag("--json", status_json, "The full status as JSON");

	CLI11_PARSE(app, argc, argv);
	setup_logging(verbosity);

	if (*check)
		return cmd_check(check_config);
	if (*scan)
		return cmd_scan(scan_paths, scan_format, scan_out, scan_state, scan_key);
	if (*status)
		return cmd_status(status_state, status_json);
	if (*report)
		return cmd_report(report_state,
		                  report_journal.empty() ? report_state + "/journal"
		                                         : report_journal,
		                  report_config, report_config_opt->count() > 0, report_format,
		                  report_out, report_width);
	if (*trace) {
		if (trace_pid_opt->count())
			tq.pid = trace_pid;
		if (tq.secret.empty() && tq.inventory.empty() && !tq.pid && tq.exec_id.empty() &&
		    tq.identity.empty()) {
			std::fprintf(stderr, "keytrail trace: give --secret, --inventory, --pid, "
			                     "--exec-id or --identity\n");
			return 2;
		}
		return cmd_trace(tq,
		                 trace_journal.empty() ? trace_state + "/journal" : trace_journal,
		                 trace_format, trace_out, trace_since, trace_until, trace_at);
	}
	if (*fingerprint)
		return cmd_fingerprint(fp_config, fp_config_opt->count() > 0, fp_state_dir,
		                       fp_key_file);

	if (*replay) {
		keytrail::Config cfg;
		try {
			cfg = resolve_config(replay_config, replay_config_opt->count() > 0);
		} catch (const keytrail::Error &e) {
			std::fprintf(stderr, "keytrail: bad config: %s\n", e.what());
			return 2;
		}
		return cmd_replay(replay_file, std::move(cfg), replay_out, replay_format,
		                  replay_decode_only);
	}
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
		try {
			keytrail::Agent agent(std::move(cfg), run_opts);
			return agent.run(g_stop, &g_reload);
		} catch (const keytrail::Error &e) {
			std::fprintf(stderr, "keytrail: %s\n", e.what());
			return 1;
		}
	}
	return 0;
}
