// A child process that waits for a go-ahead, runs a function, and exits:
// lets a test mark the child tracked (or not) before it acts.
#pragma once

#include <sys/types.h>

#include <functional>

namespace keytrail::test
{

class Child
{
      public:
	explicit Child(std::function<int()> body);
	~Child();
	pid_t pid() const { return pid_; }
	void go();
	// Waits for exit; returns the exit status (or -1).
	int wait();

      private:
	pid_t pid_ = -1;
	int go_fd_ = -1;
	bool reaped_ = false;
};

} // namespace keytrail::test
