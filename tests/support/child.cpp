#include "child.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace keytrail::test
{

Child::Child(std::function<int()> body)
{
	int fds[2];
	if (pipe(fds) != 0)
		return;
	pid_ = fork();
	if (pid_ == 0) {
		close(fds[1]);
		char c;
		if (read(fds[0], &c, 1) != 1)
			_exit(100);
		_exit(body());
	}
	close(fds[0]);
	go_fd_ = fds[1];
}

Child::~Child()
{
	if (go_fd_ >= 0)
		close(go_fd_);
	if (pid_ > 0 && !reaped_) {
		kill(pid_, SIGKILL);
		waitpid(pid_, nullptr, 0);
	}
}

void Child::go()
{
	char c = 'g';
	(void)!write(go_fd_, &c, 1);
}

int Child::wait()
{
	int status = 0;
	if (waitpid(pid_, &status, 0) != pid_)
		return -1;
	reaped_ = true;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace keytrail::test
