#include "keytrail/process/table.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

bool read_small_file(const std::string &path, std::string *out, size_t max = 1 << 20)
{
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	out->clear();
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0 && out->size() < max)
		out->append(buf, n);
	close(fd);
	return n >= 0;
}

} // namespace

std::optional<ProcSnapshot> read_proc(uint32_t pid, const std::string &proc_root)
{
	std::string dir = proc_root + "/" + std::to_string(pid);
	std::string stat;
	if (!read_small_file(dir + "/stat", &stat))
		return std::nullopt;
	// comm is in parentheses and may itself hold ')' or spaces: split at the last ')'.
	size_t open_p = stat.find('('), close_p = stat.rfind(')');
	if (open_p == std::string::npos || close_p == std::string::npos || close_p < open_p)
		return std::nullopt;
	ProcSnapshot s;
	s.pid = pid;
	s.comm = stat.substr(open_p + 1, close_p - open_p - 1);
	std::istringstream rest(stat.substr(close_p + 2));
	std::string state;
	long long f[20] = {};
	rest >> state;
	// fields 4..22: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime
	for (int i = 0; i < 19; i++)
		rest >> f[i];
	if (!rest)
		return std::nullopt;
	s.ppid = static_cast<uint32_t>(f[0]);
	s.tty = f[3] != 0;
	// A task being reaped (its signal handlers gone) shows session -1, ppid
	// 0 and no terminal, and its other files read as root's or empty: it is
	// gone, not a root process without a parent or a session.
	if (f[2] < 0)
		return std::nullopt;
	s.sid = static_cast<uint32_t>(f[2]);
	s.tty_nr = static_cast<uint32_t>(f[3]);
	s.start_ticks = static_cast<uint64_t>(f[18]);

	std::string status;
	if (read_small_file(dir + "/status", &status)) {
		std::istringstream in(status);
		std::string line;
		while (std::getline(in, line)) {
			if (line.rfind("Uid:", 0) == 0)
				s.uid = static_cast<uint32_t>(
				    std::strtoul(line.c_str() + 4, nullptr, 10));
			else if (line.rfind("Gid:", 0) == 0)
				s.gid = static_cast<uint32_t>(
				    std::strtoul(line.c_str() + 4, nullptr, 10));
		}
	}
	std::string cmdline;
	if (read_small_file(dir + "/cmdline", &cmdline, 64 << 10))
		s.argv = split_nul(cmdline);
	s.exe = read_link(dir + "/exe");
	for (auto [file, out] :
	     {std::pair{"/loginuid", &s.loginuid}, {"/sessionid", &s.sessionid}}) {
		std::string v;
		if (read_small_file(dir + file, &v, 32) && !v.empty())
			*out = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
	}
	return s;
}

std::vector<uint32_t> list_pids(const std::string &proc_root)
{
	std::vector<uint32_t> pids;
	DIR *d = opendir(proc_root.c_str());
	if (!d)
		return pids;
	while (dirent *e = readdir(d)) {
		char *end;
		unsigned long v = std::strtoul(e->d_name, &end, 10);
		if (*end == '\0' && v > 0)
			pids.push_back(static_cast<uint32_t>(v));
	}
	closedir(d);
	return pids;
}

std::string read_boot_id()
{
	std::string id;
	read_small_file("/proc/sys/kernel/random/boot_id", &id);
	id.erase(std::remove(id.begin(), id.end(), '-'), id.end());
	return id.substr(0, 8);
}

std::string make_exec_id(const std::string &boot_id, uint64_t start_ticks, uint32_t pid)
{
	char ticks[24], num[16];
	char *ticks_end = std::to_chars(ticks, ticks + sizeof(ticks), start_ticks).ptr;
	char *num_end = std::to_chars(num, num + sizeof(num), pid).ptr;
	std::string id;
	id.reserve(boot_id.size() + 2 + static_cast<size_t>(ticks_end - ticks) +
	           static_cast<size_t>(num_end - num));
	id.append(boot_id)
	    .append(1, ':')
	    .append(ticks, ticks_end)
	    .append(1, ':')
	    .append(num, num_end);
	return id;
}

ProcessTable::ProcessTable(std::string boot_id, int64_t exit_grace_ns, size_t max_exited)
    : boot_id_(std::move(boot_id)), grace_ns_(exit_grace_ns), max_exited_(max_exited)
{
}

void ProcessTable::retire(std::unordered_map<uint32_t, ProcessInfo>::iterator it)
{
	exited_.push_back(std::move(it->second));
	by_exec_[exited_.back().exec_id] = &exited_.back();
	live_.erase(it);
}

ProcessInfo &ProcessTable::upsert(ProcessInfo info)
{
	info.exec_id = make_exec_id(boot_id_, info.start_ticks, info.pid);
	auto it = live_.find(info.pid);
	if (it != live_.end() && it->second.start_ticks != info.start_ticks) {
		// pid reuse whose exit we missed
		if (missed_exit_)
			missed_exit_(it->second);
		retire(it);
	} else if (it != live_.end()) {
		// The same process (a new image): what it held, it still holds, and
		// its children are still its children.
		if (info.secrets.empty())
			info.secrets = std::move(it->second.secrets);
		info.parent = info.parent || it->second.parent;
		// ... and its parent is the one that started it, even if that one
		// has exited and the kernel has reparented it since.
		if (info.parent_exec_id.empty())
			info.parent_exec_id = it->second.parent_exec_id;
	}
	if (info.parent_exec_id.empty())
		if (ProcessInfo *parent = find(info.ppid);
		    parent && parent->start_ticks <= info.start_ticks) {
			info.parent_exec_id = parent->exec_id;
			parent->parent = true;
		}
	auto &slot = live_[info.pid];
	slot = std::move(info);
	return slot;
}

ProcessInfo *ProcessTable::find(uint32_t pid)
{
	auto it = live_.find(pid);
	return it == live_.end() ? nullptr : &it->second;
}

const ProcessInfo *ProcessTable::find(uint32_t pid) const
{
	auto it = live_.find(pid);
	return it == live_.end() ? nullptr : &it->second;
}

ProcessInfo *ProcessTable::find_instance(uint32_t pid, uint64_t start_ticks)
{
	ProcessInfo *p = find(pid);
	return p && p->start_ticks == start_ticks ? p : nullptr;
}

ProcessInfo *ProcessTable::find_exec(const std::string &exec_id)
{
	// A live instance by its pid (the exec_id's last field), else an exited one.
	size_t colon = exec_id.rfind(':');
	if (colon != std::string::npos) {
		char *end;
		unsigned long pid = std::strtoul(exec_id.c_str() + colon + 1, &end, 10);
		if (*end == '\0')
			if (ProcessInfo *p = find(static_cast<uint32_t>(pid));
			    p && p->exec_id == exec_id)
				return p;
	}
	auto it = by_exec_.find(exec_id);
	return it == by_exec_.end() ? nullptr : it->second;
}

ProcessInfo *ProcessTable::parent_of(ProcessInfo &p)
{
	if (p.parent_exec_id.empty()) {
		// Seen before its parent (start-up scan order): link it now.
		ProcessInfo *parent = find(p.ppid);
		if (!parent || parent->start_ticks > p.start_ticks || parent == &p)
			return nullptr;
		p.parent_exec_id = parent->exec_id;
		parent->parent = true;
	}
	return find_exec(p.parent_exec_id);
}

std::vector<ProcessInfo *> ProcessTable::ancestry(ProcessInfo &p, size_t depth)
{
	std::vector<ProcessInfo *> chain;
	ProcessInfo *cur = &p;
	while ((depth == 0 || chain.size() < depth) && (cur = parent_of(*cur))) {
		if (std::find(chain.begin(), chain.end(), cur) != chain.end() || cur == &p)
			break; // a cycle can only come from corrupt input; stop
		chain.push_back(cur);
	}
	return chain;
}

void ProcessTable::mark_exited(uint32_t pid, int64_t when_ns)
{
	auto it = live_.find(pid);
	if (it == live_.end())
		return;
	it->second.exit_time_ns = when_ns;
	retire(it);
}

size_t ProcessTable::sweep_vanished(int64_t when_ns)
{
	size_t gone = 0;
	for (auto it = live_.begin(); it != live_.end();) {
		auto next = std::next(it);
		if (kill(static_cast<pid_t>(it->first), 0) != 0 && errno == ESRCH) {
			it->second.exit_time_ns = when_ns;
			retire(it);
			if (missed_exit_)
				missed_exit_(exited_.back());
			gone++;
		}
		it = next;
	}
	return gone;
}

size_t ProcessTable::evict(int64_t now_ns)
{
	size_t n = 0;
	while (!exited_.empty() && (exited_.size() > max_exited_ ||
	                            exited_.front().exit_time_ns + grace_ns_ < now_ns)) {
		auto it = by_exec_.find(exited_.front().exec_id);
		if (it != by_exec_.end() && it->second == &exited_.front())
			by_exec_.erase(it);
		exited_.pop_front();
		n++;
	}
	return n;
}

size_t ProcessTable::count_tracked() const
{
	size_t n = 0;
	for (const auto &[pid, info] : live_)
		n += info.tracked;
	return n;
}

std::vector<uint32_t> ProcessTable::children_of(uint32_t pid) const
{
	std::vector<uint32_t> kids;
	for (const auto &[p, info] : live_)
		if (info.ppid == pid && p != pid)
			kids.push_back(p);
	return kids;
}

} // namespace keytrail
