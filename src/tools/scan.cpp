#include "keytrail/tools/scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>

#include "keytrail/schema/finding.h"
#include "keytrail/secrets/mask.h"
#include "keytrail/secrets/mcp_config.h"
#include "keytrail/secrets/paths.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// A path as a SARIF artifact URI: unreserved characters and '/' as they are,
// everything else percent-encoded (RFC 3986).
std::string uri_of(const std::string &path)
{
	static const char hex[] = "0123456789ABCDEF";
	std::string out;
	for (unsigned char c : path) {
		if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~')
			out.push_back(static_cast<char>(c));
		else {
			out.push_back('%');
			out.push_back(hex[c >> 4]);
			out.push_back(hex[c & 15]);
		}
	}
	return out;
}

std::string masked(const ScanFinding &f)
{
	return f.prefix.empty() ? "****" : sanitize_utf8(f.prefix) + "****";
}

std::string message(const ScanFinding &f)
{
	if (f.rule == "hardcoded_secret")
		return "MCP server '" + shown(f.server) + "' has a hard-coded " + f.type + " (" +
		       masked(f) + ") in " + shown(f.field) +
		       "; pass it from a secret store or the environment instead";
	return "MCP server '" + shown(f.server) + "' reads the credential file " +
	       shown(f.ref_path) + " (" + f.ref_kind + ") via " + shown(f.field);
}

// The scan's rules, once: SARIF's rule list and each result's level and
// index derive from it. Each has a section in docs/scan.md.
struct ScanRule {
	const char *id, *name, *level, *short_text, *full_text, *help_text;
	std::vector<const char *> tags;
};

const ScanRule kRules[] = {
    {"hardcoded_secret",
     "HardcodedSecret",
     "error",
     "Credential hard-coded in an MCP client config",
     "A literal credential in an MCP server's env, args, headers or URL is copied wherever "
     "the config goes and cannot be rotated in one place (OWASP NHI2:2025 Secret Leakage).",
     "Reference the secret from a secret store or pass it through the environment of the "
     "process that launches the server.",
     {"security", "secrets", "owasp-nhi.nhi2"}},
    {"secret_file_reference",
     "SecretFileReference",
     "warning",
     "MCP server reads a credential file",
     "The server is pointed at a credential file (cloud keys, kubeconfig, SSH key, .env); "
     "KeyTrail watches who reads it at run time.",
     "Check that the file belongs to this server alone and is rotated.",
     {"security", "secrets"}},
};

size_t rule_index(const std::string &id)
{
	for (size_t i = 0; i < std::size(kRules); i++)
		if (id == kRules[i].id)
			return i;
	return 0;
}

// The rule's section in the docs as installed (CMake's KEYTRAIL_DOCS_URL:
// file://<docdir> unless a packager points it at a web copy).
std::string help_uri(const char *rule)
{
	return std::string(KEYTRAIL_DOCS_URL) + "/scan.md#" + rule;
}

// One id per finding and place: the rule, the file, the line and what is
// there (the credential's fingerprint, or the server, field and file it
// names). Two files with one token get two ids; the token is never hashed.
std::string location_id(const ScanFinding &f)
{
	std::string key = f.path + '\0' + std::to_string(f.line) + '\0' + f.server + '\0' +
	                  f.field + '\0' + f.fingerprint + '\0' + f.ref_path;
	return finding_id("scan", f.rule, key);
}

nlohmann::json looked_json(const ScanReport &r)
{
	nlohmann::json out = nlohmann::json::array();
	for (const auto &l : r.looked)
		out.push_back({{"path", shown(l.path)}, {"what", l.what}});
	return out;
}

} // namespace

namespace
{

// What one directory walk found: config files by name, and how far it went.
struct Walk {
	std::vector<std::string> found;
	size_t entries = 0, dirs = 0;
	bool cut = false; // stopped at max_entries
};

// Iterative, so a deep tree costs a vector, not the stack. Symlinks to
// directories are not followed (O_NOFOLLOW below the root) and each
// directory is entered once by (dev, ino), so bind-mount loops end too.
Walk walk_dir(const std::string &root, size_t max_entries,
              std::vector<std::pair<std::string, std::string>> &errors,
              const std::function<void(size_t, size_t, const std::string &)> &progress)
{
	Walk w;
	std::set<std::pair<dev_t, ino_t>> seen;
	std::vector<std::pair<std::string, size_t>> stack{{root, 0}};
	while (!stack.empty() && !w.cut) {
		auto [dir, depth] = std::move(stack.back());
		stack.pop_back();
		int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (depth ? O_NOFOLLOW : 0);
		int fd = open(dir.c_str(), flags);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			if (fd < 0 && errno != ELOOP && errno != ENOTDIR)
				errors.emplace_back(dir, "cannot open directory: " +
				                             std::string(strerror(errno)));
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (!seen.insert({st.st_dev, st.st_ino}).second) {
			close(fd);
			continue;
		}
		DIR *d = fdopendir(fd);
		if (!d) {
			close(fd);
			continue;
		}
		w.dirs++;
		std::string prefix = dir.ends_with('/') ? dir : dir + "/";
		while (dirent *e = readdir(d)) {
			std::string_view name = e->d_name;
			if (name == "." || name == "..")
				continue;
			if (++w.entries > max_entries) {
				w.cut = true;
				break;
			}
			if (progress && w.entries % 4096 == 0)
				progress(w.entries, 0, dir);
			unsigned char type = e->d_type;
			if (type == DT_UNKNOWN) {
				struct stat ls;
				if (fstatat(dirfd(d), e->d_name, &ls, AT_SYMLINK_NOFOLLOW) != 0)
					continue;
				type = S_ISDIR(ls.st_mode)   ? DT_DIR
				       : S_ISREG(ls.st_mode) ? DT_REG
				       : S_ISLNK(ls.st_mode) ? DT_LNK
				                             : DT_UNKNOWN;
			}
			std::string path = prefix + std::string(name);
			if (type == DT_DIR) {
				if (depth + 1 < kScanMaxDepth)
					stack.emplace_back(std::move(path), depth + 1);
			} else if (type == DT_REG && is_mcp_config_path(path)) {
				w.found.push_back(std::move(path));
			} else if (type == DT_LNK && is_mcp_config_path(path)) {
				// A dotfile manager's link, yes; a link another user planted
				// to someone else's config, no: the target must be the
				// link owner's regular file.
				struct stat ls, ts;
				if (fstatat(dirfd(d), e->d_name, &ls, AT_SYMLINK_NOFOLLOW) == 0 &&
				    fstatat(dirfd(d), e->d_name, &ts, 0) == 0 &&
				    S_ISREG(ts.st_mode) && ts.st_uid == ls.st_uid)
					w.found.push_back(std::move(path));
				else
					errors.emplace_back(
					    path, "a symbolic link to another owner's file: "
					          "not read");
			}
		}
		closedir(d);
	}
	std::sort(w.found.begin(), w.found.end());
	return w;
}

// One config file to read, and where to say what became of it (an index in
// looked, or none for a file a walk found).
struct Target {
	std::string path;
	bool must_exist;
	std::optional<size_t> looked;
};

} // namespace

ScanReport run_scan(const std::vector<std::string> &given, const std::optional<Fingerprinter> &fp,
                    const std::function<void(size_t, size_t, const std::string &)> &progress,
                    size_t max_entries)
{
	ScanReport r;
	r.fingerprints = fp.has_value();
	std::vector<Target> targets;
	if (given.empty()) {
		std::set<std::string> seen;
		for (const auto &home : user_homes())
			for (auto &p : mcp_config_locations(home))
				if (seen.insert(p).second) {
					r.looked.push_back({p, "absent"});
					targets.push_back(
					    {std::move(p), false, r.looked.size() - 1});
				}
	}
	for (const auto &path : given) {
		struct stat st;
		if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
			Walk w = walk_dir(path, max_entries, r.errors, progress);
			std::string what = "directory: " + std::to_string(w.found.size()) +
			                   " config(s) in " + std::to_string(w.entries) +
			                   " entries, " + std::to_string(w.dirs) + " directories";
			if (w.cut) {
				what += ", stopped at the bound";
				r.errors.emplace_back(
				    path, "walk stopped after " + std::to_string(max_entries) +
				              " entries; name a smaller directory");
			}
			r.looked.push_back({path, what});
			for (auto &f : w.found)
				targets.push_back({std::move(f), true, std::nullopt});
			continue;
		}
		r.looked.push_back({path, "absent"});
		targets.push_back({path, true, r.looked.size() - 1});
	}
	for (size_t i = 0; i < targets.size(); i++) {
		const std::string &path = targets[i].path;
		auto say = [&](const std::string &what) {
			if (targets[i].looked)
				r.looked[*targets[i].looked].what = what;
		};
		if (progress)
			progress(i, targets.size(), path);
		struct stat st;
		if (stat(path.c_str(), &st) != 0) {
			if (targets[i].must_exist) {
				r.errors.emplace_back(path, "cannot read: " +
				                                std::string(strerror(errno)));
				say("cannot read");
			}
			continue; // a well-known location that this user does not have
		}
		if (!S_ISREG(st.st_mode)) {
			r.errors.emplace_back(path, "not a regular file");
			say("not a regular file");
			continue;
		}
		if (static_cast<uint64_t>(st.st_size) > kScanMaxConfig) {
			r.errors.emplace_back(path, "larger than " +
			                                std::to_string(kScanMaxConfig >> 20) +
			                                " MiB; not read");
			say("too large");
			continue;
		}
		SecretBytes content;
		int64_t mtime;
		uint64_t size;
		if (!read_file_checked(path, 0, st.st_ino, kScanMaxConfig, &content, &mtime,
		                       &size)) {
			r.errors.emplace_back(path, "cannot read: " + std::string(strerror(errno)));
			say("cannot read");
			continue;
		}
		r.scanned.push_back(path);
		McpConfigScan m = scan_mcp_config(content.view());
		if (m.error) {
			r.errors.emplace_back(path, *m.error);
			say("not valid JSON/JSONC");
			continue;
		}
		say("read");
		r.servers += m.servers;
		for (auto &cs : m.secrets) {
			ScanFinding f;
			f.rule = "hardcoded_secret";
			f.path = path;
			f.line = cs.line;
			f.server = cs.server;
			f.field = cs.field;
			f.type = cs.finding.type;
			f.prefix = cs.finding.prefix;
			if (fp)
				f.fingerprint = (*fp)(cs.finding.secret.view());
			r.findings.push_back(std::move(f));
		}
		for (auto &ref : m.secret_files) {
			ScanFinding f;
			f.rule = "secret_file_reference";
			f.path = path;
			f.line = ref.line;
			f.server = ref.server;
			f.field = ref.field;
			f.ref_path = ref.path;
			f.ref_kind = ref.kind;
			r.findings.push_back(std::move(f));
		}
	}
	return r;
}

int scan_exit_code(const ScanReport &r)
{
	if (!r.findings.empty())
		return 1;
	return r.errors.empty() ? 0 : 2;
}

std::string scan_text(const ScanReport &r, bool verbose)
{
	std::ostringstream o;
	for (const auto &f : r.findings) {
		o << shown(f.path);
		if (f.line)
			o << ":" << f.line;
		o << ": " << (f.rule == "hardcoded_secret" ? "error" : "warning") << ": "
		  << message(f) << " [" << f.rule << "]";
		if (!f.fingerprint.empty())
			o << " fingerprint " << f.fingerprint;
		o << "\n";
	}
	for (const auto &[path, why] : r.errors)
		o << shown(path) << ":" << shown(why) << " [unreadable_config]\n";
	size_t hard = 0;
	for (const auto &f : r.findings)
		hard += f.rule == "hardcoded_secret";
	o << r.scanned.size() << " config file(s), " << r.servers << " MCP server(s): " << hard
	  << " hard-coded credential(s), " << r.findings.size() - hard
	  << " credential file reference(s), " << r.errors.size() << " unreadable\n";
	if (verbose || r.scanned.empty()) {
		o << (r.scanned.empty() ? "no MCP client config found; looked in " : "looked in ")
		  << r.looked.size() << " location(s):\n";
		for (const auto &l : r.looked)
			o << "  " << shown(l.path) << ": " << l.what << "\n";
	}
	return o.str();
}

nlohmann::json scan_json(const ScanReport &r)
{
	nlohmann::json j;
	j["scanned"] = nlohmann::json::array();
	for (const auto &p : r.scanned)
		j["scanned"].push_back(shown(p));
	j["looked"] = looked_json(r);
	j["servers"] = r.servers;
	j["fingerprints"] = r.fingerprints;
	nlohmann::json fs = nlohmann::json::array();
	for (const auto &f : r.findings) {
		nlohmann::json x = {{"rule", f.rule},
		                    {"path", shown(f.path)},
		                    {"server", shown(f.server)},
		                    {"field", shown(f.field)},
		                    {"message", message(f)}};
		if (f.line)
			x["line"] = f.line;
		if (f.rule == "hardcoded_secret") {
			x["type"] = f.type;
			x["masked"] = masked(f);
			if (!f.fingerprint.empty())
				x["fingerprint"] = f.fingerprint;
		} else {
			x["file"] = shown(f.ref_path);
			x["kind"] = f.ref_kind;
		}
		fs.push_back(std::move(x));
	}
	j["findings"] = std::move(fs);
	nlohmann::json errs = nlohmann::json::array();
	for (const auto &[path, why] : r.errors)
		errs.push_back({{"path", shown(path)}, {"error", shown(why)}});
	j["errors"] = std::move(errs);
	return j;
}

nlohmann::json scan_sarif(const ScanReport &r)
{
	nlohmann::json rules = nlohmann::json::array();
	for (const auto &rule : kRules)
		rules.push_back({{"id", rule.id},
		                 {"name", rule.name},
		                 {"shortDescription", {{"text", rule.short_text}}},
		                 {"fullDescription", {{"text", rule.full_text}}},
		                 {"help", {{"text", rule.help_text}}},
		                 {"helpUri", help_uri(rule.id)},
		                 {"defaultConfiguration", {{"level", rule.level}}},
		                 {"properties", {{"tags", rule.tags}}}});

	nlohmann::json results = nlohmann::json::array();
	for (const auto &f : r.findings) {
		size_t index = rule_index(f.rule);
		// A line the value was not found on still needs a region: the top.
		nlohmann::json loc = {{"physicalLocation",
		                       {{"artifactLocation", {{"uri", uri_of(f.path)}}},
		                        {"region", {{"startLine", f.line ? f.line : 1}}}}}};
		nlohmann::json res = {
		    {"ruleId", f.rule},
		    {"ruleIndex", index},
		    {"level", kRules[index].level},
		    {"message", {{"text", message(f)}}},
		    {"locations", {loc}},
		    {"partialFingerprints", {{"keytrailLocation/v1", location_id(f)}}}};
		if (!f.fingerprint.empty())
			res["properties"] = {{"fingerprint", f.fingerprint}};
		results.push_back(std::move(res));
	}
	nlohmann::json notes = nlohmann::json::array();
	for (const auto &[path, why] : r.errors)
		notes.push_back(
		    {{"level", "error"},
		     {"message", {{"text", shown(path) + ":" + shown(why)}}},
		     {"locations",
		      {{{"physicalLocation", {{"artifactLocation", {{"uri", uri_of(path)}}}}}}}}});
	nlohmann::json invocation = {{"executionSuccessful", true},
	                             {"properties", {{"looked", looked_json(r)}}}};
	if (!notes.empty())
		invocation["toolExecutionNotifications"] = notes;
	nlohmann::json run = {{"tool",
	                       {{"driver",
	                         {{"name", "keytrail"},
	                          {"version", KEYTRAIL_VERSION},
	                          {"semanticVersion", KEYTRAIL_VERSION},
	                          {"rules", rules}}}}},
	                      {"invocations", {invocation}},
	                      {"results", results}};
	return {{"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
	        {"version", "2.1.0"},
	        {"runs", {run}}};
}

} // namespace keytrail
