// keytrail replay: a recording (run --record) fed through the correlator as
// fast as it can, on this thread; what it writes goes out the way the agent
// writes it. Statistics go to stderr as JSON.
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "commands.h"
#include "keytrail/correlate/correlator.h"
#include "keytrail/output/output.h"
#include "keytrail/output/sink.h"
#include "keytrail/util/files.h"

namespace keytrail::cli
{

namespace
{

struct Args {
	StateArgs state;
	std::string file, out = "-", format = "json";
	bool decode_only = false;
};

std::unique_ptr<Sink> sink_for(const std::string &path)
{
	if (path != "-") {
		// A replay writes its file afresh (the sink appends, as the agent's do).
		std::string why;
		int fd = open_private_file(path, false, &why);
		if (fd < 0)
			throw Error("cannot write " + path + ": " +
			            (why.empty() ? std::strerror(errno) : why));
		::close(fd);
	}
	OutputSpec spec;
	spec.type = path == "-" ? "stdout" : "file";
	spec.path = path;
	spec.max_size = 0; // one file, never rotated
	return make_sink(spec);
}

int replay(const Args &a)
{
	try {
		Config cfg = resolve_state(a.state).cfg;
		RecordingReader reader(a.file);
		Output out;
		if (a.out != "none") {
			RouteOptions o;
			o.format = a.format;
			o.block_when_full = true;
			out.add(sink_for(a.out), o);
		}
		// Time is what the recording says: alerts carry the times they
		// would have had.
		ManualClock clock;
		Correlator corr("replay", cfg, clock, [&](Record &&r) { out.emit(std::move(r)); });
		auto t0 = std::chrono::steady_clock::now();
		uint64_t decoded = 0;
		while (const Input *in = reader.next()) {
			decoded++;
			clock.advance_to(input_time(*in));
			if (!a.decode_only)
				corr.feed(*in);
		}
		double secs =
		    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
		out.close(INT32_MAX);
		struct rusage ru {
		};
		getrusage(RUSAGE_SELF, &ru);
		nlohmann::json stats = {
		    {"inputs", a.decode_only ? decoded : corr.counters().inputs},
		    {"seconds", secs},
		    {"inputs_per_second", secs > 0 ? static_cast<double>(decoded) / secs : 0.0},
		    {"peak_rss_mib", static_cast<double>(ru.ru_maxrss) / 1024.0},
		    {"records_written", out.written()},
		    {"correlator", corr.counters_json()}};
		if (!reader.error().empty())
			stats["error"] = reader.error();
		std::fprintf(stderr, "%s\n", stats.dump().c_str());
		if (!reader.error().empty()) {
			std::fprintf(stderr, "keytrail replay: %s: %s\n", a.file.c_str(),
			             reader.error().c_str());
			return 1;
		}
		return 0;
	} catch (const Error &e) {
		std::fprintf(stderr, "keytrail replay: %s\n", e.what());
		return 1;
	}
}

} // namespace

Command add_replay(CLI::App &app)
{
	auto a = std::make_shared<Args>();
	auto *sub = app.add_subcommand(
	    "replay", "Feed a recording (run --record) through the correlator as fast as it can");
	sub->add_option("FILE", a->file, "The recording")->required();
	add_state_args(sub, a->state);
	sub->add_option("-o,--output", a->out,
	                "Where secrets, uses and alerts go: FILE, - (stdout) or none")
	    ->capture_default_str();
	sub->add_option("--format", a->format, "json or ocsf (alerts only)")
	    ->check(CLI::IsMember({"json", "ocsf"}))
	    ->capture_default_str();
	sub->add_flag("--decode-only", a->decode_only,
	              "Only read and decode (the benchmark's baseline)");
	return {sub, [a] { return replay(*a); }};
}

} // namespace keytrail::cli
