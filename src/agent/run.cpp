#include "keytrail/agent/run.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstring>
#include <set>

#include "keytrail/abi.h"
#include "keytrail/output/clickhouse.h"
#include "keytrail/output/journal.h"
#include "keytrail/output/metrics.h"
#include "keytrail/probe/loader.h"

namespace keytrail
{

std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>>
configured_outputs(const Config &cfg, const AgentOptions &opts)
{
	// Raw observations go to the configured outputs only with agent.events;
	// the journal takes everything.
	std::set<std::string> findings;
	for (const auto &t : record_types())
		if (!t.observation)
			findings.emplace(t.name);
	bool events = opts.events || cfg.events;
	std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>> routes;
	auto route = [&](const OutputSpec &spec) {
		RouteOptions o;
		o.group = "outputs";
		o.format = opts.format.empty() ? spec.format : opts.format;
		if (!spec.records.empty())
			o.records = {spec.records.begin(), spec.records.end()};
		else if (!events)
			o.records = findings;
		routes.emplace_back(make_sink(spec), std::move(o));
	};
	if (!opts.output.empty()) {
		OutputSpec spec;
		spec.type = opts.output == "-" ? "stdout" : "file";
		spec.path = opts.output;
		route(spec);
	} else if (cfg.outputs.empty()) {
		OutputSpec spec;
		spec.type = "stdout";
		route(spec);
	} else {
		for (const auto &o : cfg.outputs)
			if (o.type != "clickhouse") // it ships the journal (open_shippers)
				route(o);
	}
	return routes;
}

void open_outputs(Output &out, const Config &cfg, const AgentOptions &opts)
{
	for (auto &[sink, o] : configured_outputs(cfg, opts))
		out.add(std::move(sink), std::move(o));
	if (cfg.journal.enabled) {
		JournalConfig j = cfg.journal;
		if (j.dir.empty())
			j.dir =
			    (opts.state_dir.empty() ? cfg.state_dir : opts.state_dir) + "/journal";
		RouteOptions o;
		o.group = "journal";
		out.add(std::make_unique<JournalSink>(j), std::move(o));
	}
}

// The clickhouse outputs: threads that ship the journal (cfg as the agent
// holds it, state_dir resolved).
std::vector<std::unique_ptr<ClickHouseShipper>> open_shippers(const Config &cfg,
                                                              const std::string &host)
{
	std::vector<std::unique_ptr<ClickHouseShipper>> out;
	const std::string &state = cfg.state_dir;
	std::string journal = cfg.journal.dir.empty() ? state + "/journal" : cfg.journal.dir;
	for (const auto &o : cfg.outputs)
		if (o.type == "clickhouse")
			out.push_back(std::make_unique<ClickHouseShipper>(o, journal, state, host));
	return out;
}

int run_agent(Config cfg, AgentOptions opts, const std::atomic<bool> &stop,
              std::atomic<bool> *reload)
{
	umask(077); // whatever is created from here on is ours alone
	// One agent per state dir, taken before anything in it is touched (the
	// journal would otherwise compress the running agent's open segment).
	const std::string state = opts.state_dir.empty() ? cfg.state_dir : opts.state_dir;
	make_private_dirs(state);
	struct Lock {
		int fd;
		~Lock() { ::close(fd); }
	} lock{lock_state_dir(state)};
	SystemClock clock;
	Output out;
	open_outputs(out, cfg, opts);
	Loader loader(LoaderOptions{cfg.ring_buffer_bytes, 0});
	double duration_s = opts.duration_s;
	Agent agent(std::move(cfg), std::move(opts), loader, clock,
	            [&out](Record &&r) { out.emit(std::move(r)); });
	const Config &c = agent.config();
	auto shippers = open_shippers(c, agent.host());
	auto outputs_health = [&out, &shippers] {
		nlohmann::json h = out.health();
		for (const auto &s : shippers)
			h.push_back(s->health());
		return h;
	};
	agent.set_outputs_health(outputs_health);
	// A reload opens the new outputs first (an error keeps the old ones),
	// then drains and closes the old.
	agent.set_outputs_reopen([&out, opts = agent.options()](const Config &fresh) {
		out.replace("outputs", configured_outputs(fresh, opts));
	});
	loader.start([&agent](const void *data, size_t size) { agent.on_record(data, size); });
	std::unique_ptr<MetricsServer> metrics;
	if (!c.metrics_address.empty()) {
		metrics = std::make_unique<MetricsServer>(c.metrics_address);
		agent.set_metrics_port(metrics->port());
		spdlog::info("metrics on http://{}/metrics", c.metrics_address);
	}
	agent.start();
	{
		// Where things are, for the person who started it.
		std::string outputs;
		for (const auto &o : outputs_health())
			outputs += (outputs.empty() ? "" : ", ") + o.value("name", std::string());
		spdlog::info("probes attached: {} programs in {:.2f} s; ring buffer {} KiB",
		             loader.attached_programs(), loader.attach_seconds(),
		             loader.ring_buffer_bytes() / 1024);
		spdlog::info("config {}; state dir {}",
		             c.source.empty() ? "(built-in defaults)" : c.source, state);
		spdlog::info("records to {}", outputs);
	}

	using steady = std::chrono::steady_clock;
	auto now = steady::now(), next_health = now + c.health_interval, next_metrics = now;
	auto deadline =
	    duration_s > 0
	        ? now + std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000))
	        : steady::time_point::max();
	steady::time_point last_prompt{};
	while (!stop.load()) {
		// The poll timeout bounds event latency. Records that may wake us
		// (kt_record_prompt: a tracked process's) do so at most once every
		// 4 ms, so for a few ms after one, look again soon: a burst's last
		// ones sent no wakeup. Otherwise the idle poll: exec, fork and exit
		// of untracked processes wake nobody and wait for it.
		uint64_t prompt = agent.prompt_records();
		int n = loader.poll(now - last_prompt < std::chrono::milliseconds(6)
		                        ? 4
		                        : static_cast<int>(agent.idle_poll().count()));
		if (n < 0) {
			spdlog::error("ring buffer poll failed: {}", std::strerror(-n));
			break;
		}
		now = steady::now();
		if (agent.prompt_records() > prompt)
			last_prompt = now;
		agent.tick();
		out.flush(); // the observations of this batch, to the writers at once
		if (reload && reload->exchange(false))
			agent.reload();
		if (now >= next_health) {
			clock.resync();
			agent.health(false);
			next_health = now + c.health_interval;
		}
		if (metrics && now >= next_metrics) {
			// What a scrape reads, at most a second old.
			nlohmann::json h = agent.health_record(false);
			std::string why;
			if (loader.attached_programs() == 0)
				why = "probes not attached";
			for (const auto &o : outputs_health())
				if (!o.value("healthy", true) && why.empty())
					// Its error is in status.json, for root: not for any
					// caller.
					why = "output " + o.value("name", std::string()) +
					      " is failing";
			metrics->publish(prometheus_text(health_metrics(h)), why.empty(), why);
			next_metrics = now + std::chrono::seconds(1);
		}
		if (now >= deadline)
			break;
	}
	// Drain what the kernel already produced, then report.
	while (loader.poll(0) > 0) {
	}
	agent.stop();
	loader.stop();
	out.close();
	// The journal is complete now: ship what is left, for a while.
	for (auto &s : shippers)
		s->stop(std::chrono::seconds(3));
	return 0;
}

} // namespace keytrail
