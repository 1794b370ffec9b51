#include "keytrail/secrets/sources.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "keytrail/secrets/mcp_config.h"
#include "keytrail/secrets/paths.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/kdev.h"
#include "keytrail/util/text.h"

namespace keytrail
{

SecretSources::SecretSources(Fingerprinter fp, std::vector<std::string> extra_globs,
                             uint64_t max_file_size)
    : fp_(std::move(fp)), globs_(std::move(extra_globs)), max_file_size_(max_file_size)
{
}

std::vector<Obtained> SecretSources::fingerprint_all(std::vector<Finding> found,
                                                     const std::string &source,
                                                     const std::string &location)
{
	std::vector<Obtained> out;
	for (auto &f : found) {
		Obtained o;
		o.fingerprint = fp_(f.secret.view());
		o.type = f.type;
		o.prefix = f.prefix;
		o.source = source;
		o.location = location.empty() ? f.name : location;
		o.name = location.empty() ? "" : f.name;
		o.line = f.line;
		f.secret.wipe();
		out.push_back(std::move(o));
	}
	return out;
}

std::vector<Obtained> SecretSources::from_argv(const std::vector<std::string> &argv)
{
	if (argv.empty() || basename_of(argv[0]) != "env")
		return fingerprint_all(scan_argv(argv), "argv", "");
	// `env [options] NAME=VALUE... cmd`: the assignments are the command's
	// environment, set as a shell or a client config sets it, not a
	// credential written into a command line.
	std::vector<std::string> args = argv, assigned;
	for (size_t i = 1; i < args.size(); i++) {
		std::string &a = args[i];
		if (a == "-u" || a == "--unset" || a == "-C" || a == "--chdir")
			i++; // and its value
		else if (!a.starts_with("-") && a.find('=') != std::string::npos)
			assigned.push_back(std::exchange(a, std::string()));
		else if (!a.starts_with("-"))
			break; // the command
	}
	std::vector<Obtained> out = fingerprint_all(scan_environ(assigned), "env", "");
	for (auto &o : fingerprint_all(scan_argv(args), "argv", ""))
		out.push_back(std::move(o));
	for (auto *v : {&args, &assigned})
		for (auto &a : *v)
			OPENSSL_cleanse(a.data(), a.size());
	return out;
}

std::vector<Obtained> SecretSources::from_environ(const std::vector<std::string> &env)
{
	return fingerprint_all(scan_environ(env), "env", "");
}

std::optional<SecretBytes> read_proc_environ(pid_t pid)
{
	std::string path = "/proc/" + std::to_string(pid) + "/environ";
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return std::nullopt;
	SecretBytes block;
	std::string &buf = block.mutable_str();
	char chunk[8192];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0 && buf.size() < (1u << 20))
		buf.append(chunk, n);
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	if (n < 0)
		return std::nullopt;
	return block;
}

std::optional<FileScan> SecretSources::cached_inode(uint64_t kdev, uint64_t ino) const
{
	auto it = files_.find({kdev, ino});
	if (it == files_.end())
		return std::nullopt;
	FileScan s = it->second.scan;
	s.cached = true;
	return s;
}

std::optional<FileScan> SecretSources::unchanged(const OpenedFile &f) const
{
	// Known content is checked with stat(), which opens nothing. Opening the
	// file again would itself be a watched open that another agent on the
	// host (or a tool) reports and re-reads: a loop between them.
	auto it = files_.find({f.kdev, f.ino});
	if (it == files_.end())
		return std::nullopt;
	for (const std::string *p : {&f.via_fd, &f.access, &f.logical}) {
		struct stat st;
		if (p->empty() || stat(p->c_str(), &st) != 0 ||
		    static_cast<uint64_t>(st.st_ino) != f.ino)
			continue;
		int64_t m =
		    static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
		if (m != it->second.mtime_ns ||
		    static_cast<uint64_t>(st.st_size) != it->second.size)
			return std::nullopt; // changed: read it again
		FileScan cached = it->second.scan;
		cached.path = f.logical;
		cached.cached = true;
		return cached;
	}
	return std::nullopt;
}

// The very file it opened (its fd), else the path in its mount namespace,
// else -- the process is gone -- the path in ours, else another fd of the
// process on the same inode. The inode check keeps every fallback honest.
bool SecretSources::read_content(const OpenedFile &f, SecretBytes *content, int64_t *mtime,
                                 uint64_t *size)
{
	auto read = [&](const std::string &path) {
		return read_file_checked(path, f.kdev, f.ino, max_file_size_, content, mtime, size);
	};
	if (f.fd >= 0 && read(f.via_fd))
		return true;
	if (!f.access.empty() && read(f.access))
		return true;
	if (!f.logical.empty() && f.logical[0] == '/' && read(f.logical))
		return true;
	if (f.pid <= 0)
		return false;
	// Closed and deleted, but the process may still hold it through another
	// fd (a shell's `exec 3<file` opens, dup2s and closes). stat() first:
	// only the very inode is opened, never a FIFO or tty.
	std::string fds = "/proc/" + std::to_string(f.pid) + "/fd";
	DIR *d = opendir(fds.c_str());
	if (!d)
		return false;
	bool ok = false;
	while (dirent *de = readdir(d)) {
		std::string p = fds + "/" + de->d_name;
		struct stat st;
		if (de->d_name[0] == '.' || stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
		    static_cast<uint64_t>(st.st_ino) != f.ino)
			continue;
		if ((ok = read(p)))
			break;
	}
	closedir(d);
	return ok;
}

FileScan SecretSources::scan_content(const std::string &path, const std::string &kind,
                                     std::string_view content)
{
	FileScan scan{path, kind, {}, false};
	if (kind != "mcp_client_config") {
		scan.secrets = fingerprint_all(scan_file(content), "file", path);
		return scan;
	}
	McpConfigScan m = scan_mcp_config(content);
	for (auto &cs : m.secrets) {
		std::vector<Finding> one;
		one.push_back(std::move(cs.finding));
		for (auto &o : fingerprint_all(std::move(one), "file", path)) {
			o.name = cs.server + "." + cs.field;
			o.line = cs.line;
			scan.secrets.push_back(std::move(o));
		}
	}
	return scan;
}

namespace
{

constexpr auto kPlainTtl = std::chrono::seconds(2);
constexpr size_t kMaxPlain = 16384;

// Whether `path` is that very inode (kdev 0: any device).
bool names_inode(const char *path, uint64_t kdev, uint64_t ino)
{
	struct stat st;
	return stat(path, &st) == 0 && static_cast<uint64_t>(st.st_ino) == ino &&
	       (!kdev || user_dev_to_kernel(st.st_dev) == kdev);
}

// The name of the very inode an open reached, when the name used was a
// symlink: the fd's link while it is open, else the used name resolved.
// The inode must match either way: a link changed since names nothing, and
// the fd number may be another file's by now (a process that opened a
// locale file, closed it and opened .env under the same number).
std::string true_name(const SecretSources::OpenedFile &f)
{
	std::string t = read_link(f.via_fd);
	if (!t.empty() && names_inode(f.via_fd.c_str(), f.kdev, f.ino))
		return t;
	for (const std::string *p : {&f.access, &f.logical}) {
		if (p->empty() || (*p)[0] != '/')
			continue;
		char buf[PATH_MAX];
		if (realpath(p->c_str(), buf) && names_inode(buf, f.kdev, f.ino))
			return buf;
	}
	return "";
}

} // namespace

bool SecretSources::plain_lately(uint64_t dev, uint64_t ino, std::string_view name) const
{
	auto p = plain_.find(PlainView{dev, ino, name});
	return p != plain_.end() && p->second > std::chrono::steady_clock::now();
}

std::optional<FileScan> SecretSources::from_open(pid_t pid, int fd, int dirfd,
                                                 const std::string &path, uint64_t kdev,
                                                 uint64_t ino, const CwdHints &cwd_hints,
                                                 const std::string &known_as, int64_t opened_ns)
{
	// The same plain file opened again by the same absolute name (most
	// opens of a busy server): answered before any name is built. A name
	// found plain was normal (lexically_normal), so an unnormalized one
	// never matches here.
	if (!path.empty() && path[0] == '/' && known_as.empty() &&
	    files_.find({kdev, ino}) == files_.end() && plain_lately(kdev, ino, path))
		return std::nullopt;
	OpenedFile f{
	    pid, fd,  kdev, ino, "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd),
	    "",  path};
	if (!path.empty()) {
		if (auto r = resolve_process_path(pid, dirfd, path)) {
			f.logical = r->logical;
			f.access = r->access;
		} else if (path[0] != '/' && dirfd == AT_FDCWD) {
			for (const auto &cwd :
			     cwd_hints ? cwd_hints() : std::vector<std::string>{}) {
				std::string c = std::filesystem::path(cwd + "/" + path)
				                    .lexically_normal()
				                    .string();
				if (!cwd.empty() && names_inode(c.c_str(), kdev, ino)) {
					f.logical = c;
					break;
				}
			}
		}
	}
	auto kind = credential_file_kind(f.logical, globs_);
	if (!kind) {
		auto it = files_.find({kdev, ino});
		bool by_link = it == files_.end() && known_as.empty();
		if (by_link && plain_lately(kdev, ino, f.logical))
			return std::nullopt;
		std::string real = it != files_.end()  ? it->second.scan.path
		                   : !known_as.empty() ? known_as
		                                       : true_name(f);
		if (real.empty() || real == f.logical ||
		    !(kind = credential_file_kind(real, globs_))) {
			if (by_link && !real.empty()) {
				if (plain_.size() >= kMaxPlain)
					plain_.clear();
				plain_[PlainName{kdev, ino, f.logical}] =
				    std::chrono::steady_clock::now() + kPlainTtl;
			}
			return std::nullopt;
		}
		counters_.files_by_true_name++;
		f.logical = real;
	}
	if (auto known = unchanged(f))
		return known;

	SecretBytes content;
	int64_t mtime = 0;
	uint64_t size = 0;
	if (!read_content(f, &content, &mtime, &size)) {
		// Unreadable now (closed and gone): a previous scan still names it.
		if (auto cached = cached_inode(kdev, ino))
			return cached;
		counters_.files_unreadable++;
		return FileScan{f.logical, *kind, {}, false, true};
	}
	auto key = std::make_pair(kdev, ino);
	auto it = files_.find(key);
	if (it != files_.end() && it->second.mtime_ns == mtime && it->second.size == size) {
		FileScan s = it->second.scan;
		s.path = f.logical;
		s.cached = true;
		return s;
	}
	counters_.files_read++;
	FileScan scan = scan_content(f.logical, *kind, content.view());
	scan.mtime_ns = mtime;
	// Rewritten around the open (a script's next `> .env` racing this read)
	// an empty answer would be a claim about content the process may never
	// have seen. File times come from a coarse clock, the open's from
	// another: here they disagreed by up to 17 ms, hence the margin. Written
	// clearly after the open, the content scanned before it (if any) is what
	// the process read; emptied about when it was opened, nothing is known.
	// An mtime in the future is a skewed clock (a copy, a network share),
	// not a rewrite.
	constexpr int64_t kMargin = 50000000;
	bool skewed = mtime > wall_now_ns() + kMargin;
	bool after_open = mtime > opened_ns + kMargin;
	bool emptied = size == 0 && mtime >= opened_ns - kMargin;
	if (scan.secrets.empty() && opened_ns > 0 && !skewed && (after_open || emptied)) {
		counters_.files_rewritten++;
		if (after_open && it != files_.end() && it->second.mtime_ns < mtime &&
		    it->second.mtime_ns <= opened_ns) {
			FileScan before = it->second.scan;
			before.path = f.logical;
			before.cached = true;
			return before;
		}
		// Not kept: the next open reads it again and reports what it holds.
		scan.unreadable = true;
		return scan;
	}
	files_[key] = KnownFile{mtime, size, scan};
	return scan;
}

ConfigScanResult SecretSources::from_mcp_config(const std::string &path)
{
	ConfigScanResult r;
	r.path = path;
	struct stat st;
	if (stat(path.c_str(), &st) != 0)
		return r;
	SecretBytes content;
	int64_t mtime;
	uint64_t size;
	if (!read_file_checked(path, 0, st.st_ino, max_file_size_, &content, &mtime, &size)) {
		r.error = path + ": cannot read";
		return r;
	}
	McpConfigScan m = scan_mcp_config(content.view());
	if (m.error) {
		r.error = path + ":" + *m.error;
		return r;
	}
	for (auto &cs : m.secrets) {
		std::vector<Finding> one;
		one.push_back(std::move(cs.finding));
		for (auto &o : fingerprint_all(std::move(one), "mcp_config", path)) {
			o.name = cs.field;
			o.server = cs.server;
			o.line = cs.line;
			r.secrets.push_back(std::move(o));
		}
	}
	for (auto &f : m.secret_files)
		r.secret_files.push_back(f.path);
	return r;
}

} // namespace keytrail
