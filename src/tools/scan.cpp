#include "keytrail/tools/scan.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>

#include "keytrail/secrets/mask.h"
#include "keytrail/secrets/mcp_config.h"
#include "keytrail/secrets/paths.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

constexpr size_t kMaxConfig = 4u << 20;

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

} // namespace

ScanReport run_scan(const std::vector<std::string> &given, const std::optional<Fingerprinter> &fp,
                    const std::function<void(size_t, size_t, const std::string &)> &progress)
{
	ScanReport r;
	r.fingerprints = fp.has_value();
	std::vector<std::string> paths = given;
	bool explicit_paths = !given.empty();
	if (!explicit_paths) {
		std::set<std::string> seen;
		for (const auto &home : user_homes())
			for (auto &p : mcp_config_locations(home))
				if (seen.insert(p).second)
					paths.push_back(std::move(p));
	}
	for (size_t i = 0; i < paths.size(); i++) {
		const std::string &path = paths[i];
		if (progress)
			progress(i, paths.size(), path);
		struct stat st;
		if (stat(path.c_str(), &st) != 0) {
			if (explicit_paths)
				r.errors.emplace_back(path, "cannot read: " +
				                                std::string(strerror(errno)));
			continue; // a well-known location that this user does not have
		}
		if (!S_ISREG(st.st_mode)) {
			r.errors.emplace_back(path, "not a regular file");
			continue;
		}
		SecretBytes content;
		int64_t mtime;
		uint64_t size;
		if (!read_file_checked(path, 0, st.st_ino, kMaxConfig, &content, &mtime, &size)) {
			r.errors.emplace_back(path, "cannot read: " + std::string(strerror(errno)));
			continue;
		}
		r.scanned.push_back(path);
		McpConfigScan m = scan_mcp_config(content.view());
		if (m.error) {
			r.errors.emplace_back(path, *m.error);
			continue;
		}
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

std::string scan_text(const ScanReport &r)
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
	return o.str();
}

nlohmann::json scan_json(const ScanReport &r)
{
	nlohmann::json j;
	j["scanned"] = nlohmann::json::array();
	for (const auto &p : r.scanned)
		j["scanned"].push_back(shown(p));
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
	rules.push_back(
	    {{"id", "hardcoded_secret"},
	     {"name", "HardcodedSecret"},
	     {"shortDescription", {{"text", "Credential hard-coded in an MCP client config"}}},
	     {"fullDescription",
	      {{"text", "A literal credential in an MCP server's env, args, headers or URL is "
	                "copied wherever the config goes and cannot be rotated in one place "
	                "(OWASP NHI2:2025 Secret Leakage)."}}},
	     {"help",
	      {{"text", "Reference the secret from a secret store or pass it through the "
	                "environment of the process that launches the server."}}},
	     {"defaultConfiguration", {{"level", "error"}}},
	     {"properties", {{"tags", {"security", "secrets", "owasp-nhi.nhi2"}}}}});
	rules.push_back(
	    {{"id", "secret_file_reference"},
	     {"name", "SecretFileReference"},
	     {"shortDescription", {{"text", "MCP server reads a credential file"}}},
	     {"fullDescription",
	      {{"text", "The server is pointed at a credential file (cloud keys, kubeconfig, "
	                "SSH key, .env); KeyTrail watches who reads it at run time."}}},
	     {"help",
	      {{"text", "Check that the file belongs to this server alone and is "
	                "rotated."}}},
	     {"defaultConfiguration", {{"level", "warning"}}},
	     {"properties", {{"tags", {"security", "secrets"}}}}});

	nlohmann::json results = nlohmann::json::array();
	for (const auto &f : r.findings) {
		bool hard = f.rule == "hardcoded_secret";
		nlohmann::json loc = {
		    {"physicalLocation", {{"artifactLocation", {{"uri", uri_of(f.path)}}}}}};
		if (f.line)
			loc["physicalLocation"]["region"] = {{"startLine", f.line}};
		nlohmann::json res = {{"ruleId", f.rule},
		                      {"ruleIndex", hard ? 0 : 1},
		                      {"level", hard ? "error" : "warning"},
		                      {"message", {{"text", message(f)}}},
		                      {"locations", {loc}}};
		if (!f.fingerprint.empty())
			res["partialFingerprints"] = {{"keytrailSecret/v1", f.fingerprint}};
		results.push_back(std::move(res));
	}
	nlohmann::json notes = nlohmann::json::array();
	for (const auto &[path, why] : r.errors)
		notes.push_back(
		    {{"level", "error"},
		     {"message", {{"text", shown(path) + ":" + shown(why)}}},
		     {"locations",
		      {{{"physicalLocation", {{"artifactLocation", {{"uri", uri_of(path)}}}}}}}}});
	nlohmann::json invocation = {{"executionSuccessful", true}};
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
