#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "commands.h"
#include "keytrail/util/error.h"
#include "keytrail/util/files.h"

namespace keytrail::cli
{

std::string absolute_arg(std::string path)
{
	if (path.empty() || path == "-" || path[0] == '/')
		return path;
	std::error_code ec;
	auto abs = std::filesystem::absolute(path, ec);
	return ec ? path : abs.lexically_normal().string();
}

void add_state_args(CLI::App *sub, StateArgs &a, bool key_file)
{
	a.config_opt = sub->add_option("-c,--config", a.config,
	                               "YAML config file (agent.state_dir, "
	                               "secrets.fingerprint_key_file, ...)")
	                   ->capture_default_str();
	sub->add_option("--state-dir", a.state_dir,
	                "The agent's state dir (default: the config's, /var/lib/keytrail)")
	    ->transform(absolute_arg);
	if (key_file)
		sub->add_option("--key-file", a.key_file, "The fingerprint key to use")
		    ->transform(absolute_arg);
}

Config resolve_config(const std::string &path, bool explicit_path)
{
	struct stat st;
	if (!explicit_path && stat(path.c_str(), &st) != 0) {
		spdlog::debug("no {}; using built-in defaults", path);
		return Config{};
	}
	return load_config(path);
}

State resolve_state(const StateArgs &a)
{
	State s;
	s.cfg = resolve_config(a.config, a.config_opt && a.config_opt->count() > 0);
	s.state_dir = a.state_dir.empty() ? s.cfg.state_dir : a.state_dir;
	s.default_key = a.key_file.empty() && s.cfg.fingerprint_key_file.empty();
	s.key_file = !a.key_file.empty()                   ? a.key_file
	             : !s.cfg.fingerprint_key_file.empty() ? s.cfg.fingerprint_key_file
	                                                   : s.state_dir + "/fingerprint.key";
	s.journal = s.cfg.journal.dir.empty() || !a.state_dir.empty() ? s.state_dir + "/journal"
	                                                              : s.cfg.journal.dir;
	return s;
}

Progress::Progress() : tty_(isatty(STDERR_FILENO)) {}

void Progress::update(size_t i, size_t n, const std::string &what)
{
	if (!tty_)
		return;
	std::string w = what.size() > 60 ? "..." + what.substr(what.size() - 57) : what;
	std::fprintf(stderr, "\r\033[K[%zu/%zu] %s", i + 1, n, w.c_str());
	shown_ = true;
}

void Progress::note(const std::string &what)
{
	if (!tty_)
		return;
	std::fprintf(stderr, "\r\033[K%s", what.c_str());
	shown_ = true;
}

void Progress::done()
{
	if (shown_)
		std::fprintf(stderr, "\r\033[K");
	shown_ = false;
}

bool write_output(const std::string &out_path, const std::string &text, const char *cmd)
{
	if (out_path.empty() || out_path == "-") {
		std::fwrite(text.data(), 1, text.size(), stdout);
		return true;
	}
	std::string why;
	int fd = open_private_file(out_path, false, &why);
	if (fd < 0) {
		std::fprintf(stderr, "keytrail %s: cannot write %s: %s\n", cmd, out_path.c_str(),
		             why.empty() ? std::strerror(errno) : why.c_str());
		return false;
	}
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = ::write(fd, text.data() + done, text.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += static_cast<size_t>(n);
	}
	bool ok = ::close(fd) == 0 && done == text.size();
	if (!ok)
		std::fprintf(stderr, "keytrail %s: cannot write %s: %s\n", cmd, out_path.c_str(),
		             std::strerror(errno));
	return ok;
}

} // namespace keytrail::cli
