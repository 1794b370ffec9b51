#include "keytrail/agent/health.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "keytrail/correlate/correlator.h"
#include "keytrail/output/clickhouse.h"
#include "keytrail/probe/events.h"
#include "keytrail/process/table.h"
#include "keytrail/schema/record.h"
#include "keytrail/secrets/sources.h"
#include "keytrail/util/clock.h"

namespace keytrail
{

void Latency::add(int64_t ns)
{
	if (ns < 0)
		return;
	seen_++;
	if (samples_.size() < 8192)
		samples_.push_back(ns);
	else
		samples_[seen_ % samples_.size()] = ns;
}

nlohmann::json Latency::to_json() const
{
	if (samples_.empty())
		return {{"samples", 0}};
	std::vector<int64_t> v = samples_;
	std::sort(v.begin(), v.end());
	auto at = [&](double q) {
		return static_cast<double>(v[static_cast<size_t>(q * (v.size() - 1))]) / 1e6;
	};
	return {{"samples", seen_}, {"p50", at(0.5)}, {"p99", at(0.99)}, {"max", at(1.0)}};
}

nlohmann::json health_record(const HealthParts &h, const std::string &host, int64_t now_ns,
                             double uptime_s, bool final)
{
	nlohmann::json r;
	r["type"] = "health";
	r["time"] = rfc3339(now_ns);
	r["host"] = host;
	r["final"] = final;
	r["uptime_seconds"] = uptime_s;
	KernelStats ks = h.probe ? h.probe->stats() : KernelStats{};
	r["kernel"] = ks.to_json();

	Counters none;
	const Counters &c = h.counters ? *h.counters : none;
	nlohmann::json outputs = h.outputs ? h.outputs() : nlohmann::json::array();
	nlohmann::json &agent = r["agent"] = counters_json(c.agent);
	nlohmann::json by_type = nlohmann::json::object();
	for (uint32_t t = 1; t < KT_EV_MAX; t++)
		by_type[event_type_name(t)] = c.agent.records_by_type[t];
	agent["records_by_type"] = by_type;
	// Totals over the outputs listed below.
	for (const char *k : {"written", "errors", "dropped"}) {
		uint64_t sum = 0;
		for (const auto &o : outputs)
			sum += o.value(k, uint64_t{0});
		agent[std::string("output_") + k] = sum;
	}
	if (h.table)
		r["processes"] = {{"live", h.table->live()},
		                  {"exited_kept", h.table->exited()},
		                  {"tracked", h.table->count_tracked()}};
	nlohmann::json &secrets = r["secrets"] = counters_json(c.secrets);
	add_counters(secrets, h.sources ? h.sources->counters() : SourceCounters{});
	r["config"] = counters_json(c.config);
	r["outputs"] = std::move(outputs);
	r["latency_ms"] = h.latency ? h.latency->to_json() : nlohmann::json{{"samples", 0}};
	if (h.correlator)
		r["correlator"] = h.correlator->counters_json();
	if (h.probe) {
		r["watched_inodes"] = h.probe->watched_count();
		r["ring_buffer_bytes"] = h.probe->ring_buffer_bytes();
	}
	return r;
}

namespace
{

double num(const nlohmann::json &j, const std::string &a, const std::string &b = "")
{
	const nlohmann::json *p = &j;
	for (const std::string *k : {&a, &b}) {
		if (k->empty())
			break;
		if (!p->is_object() || !p->contains(*k))
			return 0;
		p = &(*p)[*k];
	}
	return p->is_number() ? p->get<double>() : p->is_boolean() ? (p->get<bool>() ? 1 : 0) : 0;
}

// keytrail_<group>_<name>_total for every counter of a group, read from the
// health record under the same names that wrote it.
template <typename Group>
void counter_families(std::vector<MetricFamily> &out, const nlohmann::json &h,
                      const std::string &group)
{
	Group{}.each([&](const char *name, const char *help, uint64_t) {
		out.push_back({"keytrail_" + group + "_" + name + "_total",
		               "counter",
		               help,
		               {{"", num(h, group, name)}}});
	});
}

void kernel_families(std::vector<MetricFamily> &out, const nlohmann::json &h)
{
	out.push_back({"keytrail_kernel_events_total",
	               "counter",
	               "Records the probes submitted.",
	               {{"", num(h, "kernel", "events")}}});
	MetricFamily drops{"keytrail_kernel_drops_total",
	                   "counter",
	                   "Records lost because the ring buffer was full, by event type.",
	                   {}};
	for (uint32_t t = 1; t < KT_EV_MAX; t++) {
		const char *type = event_type_name(t);
		double v = h.contains("kernel") && h["kernel"].contains("drops_by_type")
		               ? num(h["kernel"]["drops_by_type"], type)
		               : 0;
		drops.samples.push_back({metric_label("type", type), v});
	}
	out.push_back(std::move(drops));
	for (const auto &s : kernel_stat_info())
		out.push_back({std::string("keytrail_kernel_") + s.name + "_total",
		               "counter",
		               s.help,
		               {{"", num(h, "kernel", s.name)}}});
}

void output_families(std::vector<MetricFamily> &out, const nlohmann::json &h)
{
	MetricFamily lines{
	    "keytrail_output_lines_total", "counter", "Lines per output, by result.", {}};
	MetricFamily healthy{
	    "keytrail_output_healthy", "gauge", "1 when the output's last write worked.", {}};
	MetricFamily retries{
	    "keytrail_output_retries_total", "counter", "Writes retried after a failure.", {}};
	MetricFamily lag{"keytrail_output_lag_seconds",
	                 "gauge",
	                 "Age of the oldest record a shipping output has not delivered.",
	                 {}};
	MetricFamily spool{"keytrail_output_spool_bytes",
	                   "gauge",
	                   "Journal bytes a shipping output still holds on to.",
	                   {}};
	std::vector<MetricFamily> shipped; // the clickhouse output's counters, by name
	ClickHouseCounters{}.each([&](const char *name, const char *help, uint64_t) {
		shipped.push_back(
		    {std::string("keytrail_clickhouse_") + name + "_total", "counter", help, {}});
	});
	for (const auto &o : h.value("outputs", nlohmann::json::array())) {
		std::string l = metric_label("output", o.value("name", std::string("?")));
		lines.samples.push_back({l + ",result=\"written\"", num(o, "written")});
		lines.samples.push_back({l + ",result=\"dropped\"", num(o, "dropped")});
		lines.samples.push_back({l + ",result=\"error\"", num(o, "errors")});
		healthy.samples.push_back({l, num(o, "healthy")});
		retries.samples.push_back({l, num(o, "retries")});
		if (o.value("format", std::string()) != "clickhouse")
			continue;
		lag.samples.push_back({l, num(o, "lag_seconds")});
		spool.samples.push_back({l, num(o, "spool_bytes")});
		size_t i = 0;
		ClickHouseCounters{}.each([&](const char *name, const char *, uint64_t) {
			shipped[i++].samples.push_back({l, num(o, name)});
		});
	}
	out.push_back(std::move(lines));
	out.push_back(std::move(healthy));
	out.push_back(std::move(retries));
	out.push_back(std::move(lag));
	out.push_back(std::move(spool));
	for (auto &f : shipped)
		out.push_back(std::move(f));
}

void correlator_families(std::vector<MetricFamily> &out, const nlohmann::json &h)
{
	counter_families<CorrelatorCounters>(out, h, "correlator");
	MetricFamily alerts{"keytrail_alerts_total", "counter", "Alerts written, by rule.", {}};
	if (h.contains("correlator") && h["correlator"].contains("alerts_by_rule"))
		for (const auto &[rule, v] : h["correlator"]["alerts_by_rule"].items())
			alerts.samples.push_back({metric_label("rule", rule), v.get<double>()});
	out.push_back(std::move(alerts));
	out.push_back({"keytrail_secrets_known",
	               "gauge",
	               "Distinct credentials the correlator knows.",
	               {{"", num(h, "correlator", "secrets")}}});
}

} // namespace

std::vector<MetricFamily> health_metrics(const nlohmann::json &h)
{
	std::vector<MetricFamily> out;
	out.push_back({"keytrail_up", "gauge", "1 while the agent runs.", {{"", 1}}});
	out.push_back({"keytrail_build_info",
	               "gauge",
	               "The running version, as a label.",
	               {{metric_label("version", KEYTRAIL_VERSION), 1}}});
	out.push_back({"keytrail_uptime_seconds",
	               "gauge",
	               "Seconds since the probes were attached.",
	               {{"", num(h, "uptime_seconds")}}});
	kernel_families(out, h);
	counter_families<AgentCounters>(out, h, "agent");
	counter_families<SecretCounters>(out, h, "secrets");
	counter_families<SourceCounters>(out, h, "secrets");
	counter_families<ConfigCounters>(out, h, "config");
	MetricFamily procs{"keytrail_processes", "gauge", "Processes in the agent's table.", {}};
	for (const char *s : {"live", "tracked", "exited_kept"})
		procs.samples.push_back({metric_label("state", s), num(h, "processes", s)});
	out.push_back(std::move(procs));
	correlator_families(out, h);
	output_families(out, h);
	MetricFamily lat{"keytrail_event_to_record_seconds",
	                 "summary",
	                 "Latency from a kernel event to its secret_use or alert.",
	                 {}};
	if (h.contains("latency_ms") && h["latency_ms"].contains("p50")) {
		lat.samples.push_back({"quantile=\"0.5\"", num(h, "latency_ms", "p50") / 1000});
		lat.samples.push_back({"quantile=\"0.99\"", num(h, "latency_ms", "p99") / 1000});
	}
	lat.samples.push_back({"", num(h, "latency_ms", "samples"), "_count"});
	out.push_back(std::move(lat));
	return out;
}

void write_status(const std::string &state_dir, const nlohmann::json &health, bool running,
                  const ProbeControl &probe)
{
	nlohmann::json st = health;
	st["pid"] = getpid();
	st["running"] = running;
	st["programs"] = probe.attached_programs();
	st["attach_seconds"] = probe.attach_seconds();
	std::string path = state_dir + "/status.json", tmp = path + ".tmp";
	std::string text = st.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
	unlink(tmp.c_str());
	int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		spdlog::warn("cannot write {}: {}", tmp, std::strerror(errno));
		return;
	}
	bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
	ok = ::close(fd) == 0 && ok;
	if (!ok || rename(tmp.c_str(), path.c_str()) != 0)
		spdlog::warn("cannot write {}: {}", path, std::strerror(errno));
}

} // namespace keytrail
