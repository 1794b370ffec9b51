// The workload: what a busy host does all day, in a tight loop. Each
// iteration opens, reads and closes a small file; every 16th also connects
// to a loopback listener. The same mix as the shared no-op floor's.
//   usage: syscall_mix ITERATIONS [FILE [START_DELAY_MS]]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	const char *path = argc > 2 ? argv[2] : "/etc/hostname";
	long delay_ms = argc > 3 ? atol(argv[3]) : 0;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[256];

	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096) ||
	    getsockname(lfd, (struct sockaddr *)&a, &al)) {
		perror("listen");
		return 1;
	}
	if (delay_ms > 0) { // lets an agent decide to track us before the loop
		struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof(buf)) < 0) {
			perror("open/read");
			return 1;
		}
		close(fd);
		if (i % 16 == 0) {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(s, (struct sockaddr *)&a, sizeof(a))) {
				perror("connect");
				return 1;
			}
			close(s);
			int c = accept(lfd, NULL, NULL);
			if (c >= 0)
				close(c);
		}
	}
	return 0;
}
