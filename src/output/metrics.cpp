#include "keytrail/output/metrics.h"

#include <httplib.h>

#include <chrono>
#include <sstream>

#include "keytrail/util/error.h"

namespace keytrail
{

namespace
{

// A label value: backslash, quote and newline escaped.
std::string label(const std::string &v)
{
	std::string o;
	for (char c : v) {
		if (c == '\\' || c == '"')
			o.push_back('\\');
		if (c == '\n') {
			o += "\\n";
			continue;
		}
		o.push_back(c);
	}
	return o;
}

class Writer
{
      public:
	void family(const std::string &name, const char *type, const char *help)
	{
		o_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type
		   << "\n";
	}
	void sample(const std::string &name, double v, const std::string &labels = "")
	{
		o_ << name;
		if (!labels.empty())
			o_ << "{" << labels << "}";
		o_ << " " << v << "\n";
	}
	std::string str() const { return o_.str(); }

      private:
	std::ostringstream o_;
};

double num(const nlohmann::json &j, std::initializer_list<const char *> path)
{
	const nlohmann::json *p = &j;
	for (const char *k : path) {
		if (!p->is_object() || !p->contains(k))
			return 0;
		p = &(*p)[k];
	}
	return p->is_number() ? p->get<double>() : p->is_boolean() ? (p->get<bool>() ? 1 : 0) : 0;
}

} // namespace

std::string prometheus_text(const nlohmann::json &h)
{
	Writer w;
	w.family("keytrail_up", "gauge", "1 while the agent runs.");
	w.sample("keytrail_up", 1);
	w.family("keytrail_uptime_seconds", "gauge", "Seconds since the probes were attached.");
	w.sample("keytrail_uptime_seconds", num(h, {"uptime_seconds"}));
	w.family("keytrail_kernel_events_total", "counter", "Records the probes submitted.");
	w.sample("keytrail_kernel_events_total", num(h, {"kernel", "events"}));
	w.family("keytrail_kernel_drops_total", "counter",
	         "Records lost because the ring buffer was full, by event type.");
	if (h.contains("kernel") && h["kernel"].contains("drops_by_type"))
		for (const auto &[type, v] : h["kernel"]["drops_by_type"].items())
			w.sample("keytrail_kernel_drops_total", v.get<double>(),
			         "type=\"" + label(type) + "\"");
	w.family("keytrail_kernel_read_failures_total", "counter",
	         "Memory the probes could not read.");
	w.sample("keytrail_kernel_read_failures_total", num(h, {"kernel", "read_failures"}));
	w.family("keytrail_attribution_failures_total", "counter",
	         "Events whose process could not be resolved.");
	w.sample("keytrail_attribution_failures_total", num(h, {"agent", "attribution_failures"}));
	w.family("keytrail_identities_degraded_total", "counter",
	         "Identities resolved with a selector group unreadable.");
	w.sample("keytrail_identities_degraded_total", num(h, {"agent", "identities_degraded"}));
	w.family("keytrail_processes", "gauge", "Processes in the agent's table.");
	for (const char *s : {"live", "tracked", "exited_kept"})
		w.sample("keytrail_processes", num(h, {"processes", s}),
		         std::string("state=\"") + s + "\"");
	w.family("keytrail_secrets_obtained_total", "counter", "Credential sightings.");
	w.sample("keytrail_secrets_obtained_total", num(h, {"secrets", "obtained"}));
	w.family("keytrail_secrets_known", "gauge", "Distinct credentials the correlator knows.");
	w.sample("keytrail_secrets_known", num(h, {"correlator", "secrets"}));
	w.family("keytrail_secret_uses_total", "counter", "secret_use records written.");
	w.sample("keytrail_secret_uses_total", num(h, {"correlator", "secret_uses"}));
	w.family("keytrail_alerts_total", "counter", "Alerts written, by rule.");
	if (h.contains("correlator") && h["correlator"].contains("alerts_by_rule"))
		for (const auto &[rule, v] : h["correlator"]["alerts_by_rule"].items())
			w.sample("keytrail_alerts_total", v.get<double>(),
			         "rule=\"" + label(rule) + "\"");
	w.family("keytrail_alerts_suppressed_total", "counter",
	         "Alerts not written: duplicates within the window, or over the rate limit.");
	w.sample("keytrail_alerts_suppressed_total", num(h, {"correlator", "alerts_deduplicated"}),
	         "reason=\"duplicate\"");
	w.sample("keytrail_alerts_suppressed_total", num(h, {"correlator", "alerts_rate_limited"}),
	         "reason=\"rate_limit\"");
	w.family("keytrail_output_lines_total", "counter", "Lines per output, by result.");
	w.family("keytrail_output_healthy", "gauge", "1 when the output's last write worked.");
	if (h.contains("outputs"))
		for (const auto &o : h["outputs"]) {
			std::string l =
			    "output=\"" + label(o.value("name", std::string("?"))) + "\"";
			w.sample("keytrail_output_lines_total", num(o, {"written"}),
			         l + ",result=\"written\"");
			w.sample("keytrail_output_lines_total", num(o, {"dropped"}),
			         l + ",result=\"dropped\"");
			w.sample("keytrail_output_lines_total", num(o, {"errors"}),
			         l + ",result=\"error\"");
			w.sample("keytrail_output_healthy", num(o, {"healthy"}), l);
		}
	w.family("keytrail_event_to_record_seconds", "summary",
	         "Latency from a kernel event to its secret_use or alert.");
	if (h.contains("latency_ms") && h["latency_ms"].contains("p50")) {
		w.sample("keytrail_event_to_record_seconds", num(h, {"latency_ms", "p50"}) / 1000,
		         "quantile=\"0.5\"");
		w.sample("keytrail_event_to_record_seconds", num(h, {"latency_ms", "p99"}) / 1000,
		         "quantile=\"0.99\"");
	}
	w.sample("keytrail_event_to_record_seconds_count", num(h, {"latency_ms", "samples"}));
	return w.str();
}

MetricsServer::MetricsServer(const std::string &address)
{
	size_t colon = address.rfind(':');
	if (colon == std::string::npos)
		throw Error("metrics address '" + address + "' needs a port (127.0.0.1:9464)");
	std::string host = address.substr(0, colon);
	if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
		host = host.substr(1, host.size() - 2);
	if (host.empty())
		host = "0.0.0.0";
	int port = 0;
	try {
		port = std::stoi(address.substr(colon + 1));
	} catch (const std::exception &) {
		port = -1;
	}
	if (port < 0 || port > 65535)
		throw Error("metrics address '" + address + "': bad port");
	server_ = std::make_unique<httplib::Server>();
	server_->Get("/metrics", [this](const httplib::Request &, httplib::Response &res) {
		std::lock_guard lock(mu_);
		res.set_content(text_, "text/plain; version=0.0.4; charset=utf-8");
	});
	port_ = port == 0 ? server_->bind_to_any_port(host)
	                  : (server_->bind_to_port(host, port) ? port : -1);
	if (port_ <= 0)
		throw Error("cannot listen for metrics on " + address);
	thread_ = std::thread([this] { server_->listen_after_bind(); });
	// stop() before the loop runs would be lost: wait until it does.
	while (!server_->is_running())
		std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

MetricsServer::~MetricsServer()
{
	server_->stop();
	if (thread_.joinable())
		thread_.join();
}

void MetricsServer::publish(const nlohmann::json &health)
{
	std::string text = prometheus_text(health);
	std::lock_guard lock(mu_);
	text_ = std::move(text);
}

} // namespace keytrail
