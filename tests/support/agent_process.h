// Runs the keytrail binary as an operator would, for integration tests.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace keytrail::test
{

inline std::string slurp(const std::string &path)
{
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	return ss.str();
}

// Every complete line of a JSON-lines file. A running agent's file can end in
// a line still being written (a reader sees a write() page by page), so the
// last line counts only once its newline is there, as a tailing SIEM reads it.
inline std::vector<nlohmann::json> records(const std::string &path)
{
	std::vector<nlohmann::json> out;
	std::string text = slurp(path);
	text.resize(text.find_last_of('\n') + 1); // npos + 1 == 0
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		auto j = nlohmann::json::parse(line, nullptr, false);
		EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
		if (!j.is_discarded())
			out.push_back(j);
	}
	return out;
}

class AgentProcess
{
      public:
	AgentProcess(std::vector<std::string> args, const std::string &dir) : dir_(dir)
	{
		out_ = dir + "/out.jsonl";
		err_ = dir + "/stderr.log";
		pid_ = fork();
		if (pid_ == 0) {
			int e = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
			dup2(e, 2);
			std::vector<char *> argv{const_cast<char *>(KEYTRAIL_BINARY)};
			for (auto &a : args)
				argv.push_back(const_cast<char *>(a.c_str()));
			argv.push_back(nullptr);
			execv(KEYTRAIL_BINARY, argv.data());
			_exit(127);
		}
	}
	~AgentProcess()
	{
		if (pid_ > 0 && !done_) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
		}
	}
	bool wait_ready(int ms = 15000)
	{
		return wait_until(
		    [&] { return slurp(out_).find("\"type\":\"ready\"") != std::string::npos; },
		    ms);
	}
	template <typename F> bool wait_until(F f, int ms)
	{
		for (int i = 0; i < ms / 50; i++) {
			if (f())
				return true;
			std::this_thread::sleep_for(std::chrono::milliseconds(50));
		}
		return false;
	}
	void signal(int sig) { kill(pid_, sig); }
	int stop(int sig = SIGTERM)
	{
		kill(pid_, sig);
		return wait();
	}
	int wait()
	{
		int status = 0;
		waitpid(pid_, &status, 0);
		done_ = true;
		return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
	const std::string &out() const { return out_; }
	const std::string &err() const { return err_; }
	pid_t pid() const { return pid_; }

      private:
	std::string dir_, out_, err_;
	pid_t pid_ = -1;
	bool done_ = false;
};

inline std::string temp_dir()
{
	char t[] = "/tmp/kt-cli-XXXXXX";
	return mkdtemp(t);
}

inline int run_cmd(const std::string &cmd)
{
	return WEXITSTATUS(std::system(cmd.c_str()));
}

} // namespace keytrail::test
