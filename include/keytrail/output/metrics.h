// Prometheus text exposition (format 0.0.4) of the agent's health, served on
// agent.metrics_address (off by default) at /metrics.
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace httplib
{
class Server;
}

namespace keytrail
{

// The same counters as the `health` record, as Prometheus metrics.
std::string prometheus_text(const nlohmann::json &health);

// A small HTTP server on its own thread. The agent publishes a fresh health
// record now and then; a scrape reads the latest one.
class MetricsServer
{
      public:
	// "127.0.0.1:9464", "[::1]:9464", ":9464" (all addresses). Throws Error
	// when the address is malformed or cannot be bound.
	explicit MetricsServer(const std::string &address);
	~MetricsServer();
	void publish(const nlohmann::json &health);
	int port() const { return port_; }

      private:
	std::unique_ptr<httplib::Server> server_;
	std::thread thread_;
	std::mutex mu_;
	std::string text_ = "keytrail_up 1\n";
	int port_ = 0;
};

} // namespace keytrail
