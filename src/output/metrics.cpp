#include "keytrail/output/metrics.h"

#include <httplib.h>

#include <chrono>
#include <sstream>

#include "keytrail/util/error.h"

namespace keytrail
{

std::string metric_label(const std::string &key, const std::string &v)
{
	std::string o = key + "=\"";
	for (char c : v) {
		if (c == '\\' || c == '"')
			o.push_back('\\');
		if (c == '\n') {
			o += "\\n";
			continue;
		}
		o.push_back(c);
	}
	return o + "\"";
}

std::string prometheus_text(const std::vector<MetricFamily> &families)
{
	std::ostringstream o;
	o.precision(17);
	for (const auto &f : families) {
		o << "# HELP " << f.name << " " << f.help << "\n# TYPE " << f.name << " " << f.type
		  << "\n";
		for (const auto &s : f.samples) {
			o << f.name << s.suffix;
			if (!s.labels.empty())
				o << "{" << s.labels << "}";
			o << " " << s.value << "\n";
		}
	}
	return o.str();
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

void MetricsServer::publish(std::string text)
{
	std::lock_guard lock(mu_);
	text_ = std::move(text);
}

} // namespace keytrail
