// Prometheus text exposition (format 0.0.4), served on
// agent.metrics_address (off by default) at /metrics. Which metrics there
// are is the agent's business (agent/health.h); this renders them.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib
{
class Server;
}

namespace keytrail
{

struct MetricSample {
	std::string labels; // name="value",... already escaped (metric_label)
	double value = 0;
	const char *suffix = ""; // "_count", "_sum" of a summary
};

struct MetricFamily {
	std::string name;
	const char *type; // counter, gauge, summary
	std::string help;
	std::vector<MetricSample> samples;
};

// A label value with backslash, quote and newline escaped: `key="value"`.
std::string metric_label(const std::string &key, const std::string &value);
// Every family with its HELP and TYPE, then its samples, family after family.
std::string prometheus_text(const std::vector<MetricFamily> &families);

// A small HTTP server on its own thread. The agent publishes fresh text now
// and then; a scrape reads the latest.
class MetricsServer
{
      public:
	// "127.0.0.1:9464", "[::1]:9464", ":9464" (all addresses). Throws Error
	// when the address is malformed or cannot be bound.
	explicit MetricsServer(const std::string &address);
	~MetricsServer();
	// What /metrics serves, and what /healthz says: 200 "ok" while the
	// agent is healthy (probes attached, every output healthy), else 503
	// with why.
	void publish(std::string text, bool healthy = true, std::string why = "");
	int port() const { return port_; }

      private:
	std::unique_ptr<httplib::Server> server_;
	std::thread thread_;
	std::mutex mu_;
	std::string text_ = "keytrail_up 1\n";
	bool healthy_ = false; // until the first publish
	std::string why_ = "starting";
	int port_ = 0;
};

} // namespace keytrail
