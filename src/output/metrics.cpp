#include "keytrail/output/metrics.h"

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
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

namespace
{

// Why host:port cannot be bound (httplib keeps no errno): bind it once more.
std::string bind_error(const std::string &host, int port)
{
	addrinfo hints{}, *ai = nullptr;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &ai);
	if (rc != 0)
		return gai_strerror(rc);
	std::string why = "unknown error";
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		why = std::strerror(errno);
	} else {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
			why = std::strerror(errno);
		close(fd);
	}
	freeaddrinfo(ai);
	return why;
}

} // namespace

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
	// httplib's default adds SO_REUSEPORT: a second agent would share the
	// port and answer half the scrapes. SO_REUSEADDR only.
	server_->set_socket_options([](socket_t sock) {
		int yes = 1;
		setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
	});
	server_->Get("/metrics", [this](const httplib::Request &, httplib::Response &res) {
		std::lock_guard lock(mu_);
		res.set_content(text_, "text/plain; version=0.0.4; charset=utf-8");
	});
	server_->Get("/healthz", [this](const httplib::Request &, httplib::Response &res) {
		std::lock_guard lock(mu_);
		res.status = healthy_ ? 200 : 503;
		res.set_content(healthy_ ? "ok\n" : why_ + "\n", "text/plain; charset=utf-8");
	});
	port_ = port == 0 ? server_->bind_to_any_port(host)
	                  : (server_->bind_to_port(host, port) ? port : -1);
	if (port_ <= 0)
		throw Error("cannot listen for metrics on " + address + ": " +
		            bind_error(host, port));
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

void MetricsServer::publish(std::string text, bool healthy, std::string why)
{
	std::lock_guard lock(mu_);
	text_ = std::move(text);
	healthy_ = healthy;
	why_ = std::move(why);
}

} // namespace keytrail
