// A TCP listener on 127.0.0.1 whose backlog completes connects; nothing is
// ever read. Integration tests point servers' upstreams at it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

namespace keytrail::test
{

class Listener
{
      public:
	Listener()
	{
		fd_ = socket(AF_INET, SOCK_STREAM, 0);
		sockaddr_in sa{};
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
		listen(fd_, 64);
		socklen_t len = sizeof(sa);
		getsockname(fd_, reinterpret_cast<sockaddr *>(&sa), &len);
		port_ = ntohs(sa.sin_port);
	}
	~Listener() { close(fd_); }
	Listener(const Listener &) = delete;
	Listener &operator=(const Listener &) = delete;
	uint16_t port() const { return port_; }

      private:
	int fd_;
	uint16_t port_;
};

} // namespace keytrail::test
