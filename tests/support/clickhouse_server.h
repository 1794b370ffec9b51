// A private ClickHouse server for tests: its own config.xml and users.xml
// in a temporary directory, data there too, listening on free loopback
// ports; stopped (and restartable) by the test. Needs clickhouse-server
// (tools/setup.sh installs it): a test without it fails, it never skips.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "keytrail/output/clickhouse.h"

namespace keytrail::test
{

// A loopback TCP port nobody listens on now.
inline int free_port()
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int port = -1;
	if (bind(s, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0 &&
	    getsockname(s, reinterpret_cast<sockaddr *>(&a), &len) == 0)
		port = ntohs(a.sin_port);
	close(s);
	return port;
}

inline std::string clickhouse_server_binary()
{
	for (const char *p : {"/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"})
		if (access(p, X_OK) == 0)
			return p;
	return "";
}

class ClickHouseServer
{
      public:
	// dir: a fresh directory of the test's. cluster: remote_servers entries,
	// "name" -> the tcp ports of its shards (all on 127.0.0.1).
	ClickHouseServer(std::string dir, std::string password)
	    : dir_(std::move(dir)), password_(std::move(password)), http_port_(free_port()),
	      tcp_port_(free_port())
	{
	}
	~ClickHouseServer() { stop(); }

	void set_cluster(const std::string &name, const std::vector<int> &shard_tcp_ports)
	{
		cluster_ = "<remote_servers><" + name + ">";
		for (int p : shard_tcp_ports)
			cluster_ += "<shard><replica><host>127.0.0.1</host><port>" +
			            std::to_string(p) + "</port><password>" + password_ +
			            "</password></replica></shard>";
		cluster_ += "</" + name + "></remote_servers>";
	}

	// Also serve HTTPS with a certificate for 127.0.0.1 of its own (made
	// with the openssl command); https_url() and ca_file() reach it.
	void enable_https()
	{
		mkdir(dir_.c_str(), 0700);
		https_port_ = free_port();
		std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "
		                  "/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
		                  dir_ + "/key.pem -out " + ca_file() + " 2>" + dir_ +
		                  "/openssl.log";
		ASSERT_EQ(system(cmd.c_str()), 0)
		    << "openssl could not make a certificate: see " << dir_ << "/openssl.log";
		https_ = "<https_port>" + std::to_string(https_port_) +
		         "</https_port>\n<openSSL><server><certificateFile>" + ca_file() +
		         "</certificateFile><privateKeyFile>" + dir_ +
		         "/key.pem</privateKeyFile><verificationMode>none</verificationMode>"
		         "<loadDefaultCAFile>false</loadDefaultCAFile></server></openSSL>";
	}
	std::string https_url() const { return "https://127.0.0.1:" + std::to_string(https_port_); }
	std::string ca_file() const { return dir_ + "/cert.pem"; }

	// Starts it and waits until it answers (up to 60 s). Test assertions
	// say why when it cannot.
	void start()
	{
		std::string bin = clickhouse_server_binary();
		ASSERT_FALSE(bin.empty()) << "clickhouse-server is not installed: tools/setup.sh "
		                             "installs it (apt-get install clickhouse-server "
		                             "clickhouse-client)";
		mkdir(dir_.c_str(), 0700);
		std::ofstream(dir_ + "/config.xml")
		    << "<?xml version=\"1.0\"?>\n<yandex>\n"
		    << "<logger><level>warning</level><log>" << dir_
		    << "/server.log</log><errorlog>" << dir_
		    << "/server.err.log</errorlog><console>0</console></logger>\n"
		    << "<listen_host>127.0.0.1</listen_host>\n"
		    << "<http_port>" << http_port_ << "</http_port>\n"
		    << "<tcp_port>" << tcp_port_ << "</tcp_port>\n"
		    << "<path>" << dir_ << "/data/</path>\n<tmp_path>" << dir_
		    << "/tmp/</tmp_path>\n"
		    << "<user_files_path>" << dir_ << "/user_files/</user_files_path>\n"
		    << "<format_schema_path>" << dir_ << "/format_schemas/</format_schema_path>\n"
		    << "<users_config>" << dir_ << "/users.xml</users_config>\n"
		    << "<default_profile>default</default_profile>\n"
		    << "<default_database>default</default_database>\n<timezone>UTC</timezone>\n"
		    << "<mark_cache_size>268435456</mark_cache_size>\n"
		    << "<uncompressed_cache_size>268435456</uncompressed_cache_size>\n"
		    << https_ << cluster_ << "\n</yandex>\n";
		std::ofstream(dir_ + "/users.xml")
		    << "<?xml version=\"1.0\"?>\n<yandex><profiles><default/></profiles>"
		    << "<users><default><password>" << password_ << "</password>"
		    << "<networks><ip>127.0.0.1</ip></networks><profile>default</profile>"
		    << "<quota>default</quota></default></users><quotas><default/></quotas></"
		       "yandex>\n";
		chmod((dir_ + "/users.xml").c_str(), 0600);
		pid_ = fork();
		if (pid_ == 0) {
			int null = open("/dev/null", O_RDWR);
			int log = open((dir_ + "/stdout.log").c_str(),
			               O_WRONLY | O_CREAT | O_APPEND, 0600);
			dup2(null, 0);
			dup2(log, 1);
			dup2(log, 2);
			execl(bin.c_str(), bin.c_str(),
			      ("--config-file=" + dir_ + "/config.xml").c_str(),
			      static_cast<char *>(nullptr));
			_exit(127);
		}
		ASSERT_GT(pid_, 0);
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
		std::string err;
		while (std::chrono::steady_clock::now() < deadline) {
			if (answers(&err))
				return;
			int status;
			if (waitpid(pid_, &status, WNOHANG) == pid_) {
				pid_ = -1;
				FAIL() << "clickhouse-server exited at start; see " << dir_
				       << "/server.err.log and stdout.log";
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(200));
		}
		FAIL() << "clickhouse-server did not answer within 60 s: " << err;
	}

	// SIGTERM, then SIGKILL after 30 s.
	void stop(int sig = SIGTERM)
	{
		if (pid_ <= 0)
			return;
		kill(pid_, sig);
		for (int i = 0; i < 300; i++) {
			if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
				pid_ = -1;
				return;
			}
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		}
		kill(pid_, SIGKILL);
		waitpid(pid_, nullptr, 0);
		pid_ = -1;
	}

	std::string url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
	int tcp_port() const { return tcp_port_; }
	const std::string &dir() const { return dir_; }

	// A password file for it (0600).
	std::string password_file() const
	{
		std::string p = dir_ + "/password";
		int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			(void)!write(fd, password_.data(), password_.size());
			close(fd);
		}
		return p;
	}

	ClickHouseTarget target(const std::string &database) const
	{
		return {url(), database, "default", password_file(), ""};
	}

	// A statement's answer (TSV), or a test failure.
	std::string query(const std::string &sql) const
	{
		ClickHouseClient c(target("default"));
		std::string out, err;
		EXPECT_TRUE(c.query(sql, &out, &err)) << sql << ": " << err;
		return out;
	}
	uint64_t count(const std::string &sql) const
	{
		std::string v = query(sql);
		return v.empty() ? 0 : std::stoull(v);
	}

      private:
	bool answers(std::string *err) const
	{
		ClickHouseClient c(target("default"));
		std::string out;
		return c.query("SELECT 1", &out, err) && out == "1\n";
	}

	std::string dir_, password_, cluster_, https_;
	int http_port_, tcp_port_, https_port_ = -1;
	pid_t pid_ = -1;
};

} // namespace keytrail::test
