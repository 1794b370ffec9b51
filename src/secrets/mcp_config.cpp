#include "keytrail/secrets/mcp_config.h"

#include <pwd.h>
#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "keytrail/secrets/paths.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

size_t line_at(std::string_view text, size_t pos)
{
	return 1 + std::count(text.begin(), text.begin() + std::min(pos, text.size()), '\n');
}

// Deeper than any editor's config; the walk below recurses once per level.
constexpr size_t kMaxConfigDepth = 64;

// "LINE:COLUMN" of a byte offset.
std::string position(std::string_view text, size_t pos)
{
	pos = std::min(pos, text.size());
	size_t nl = pos ? text.rfind('\n', pos - 1) : std::string_view::npos;
	size_t col = pos - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
	return std::to_string(line_at(text, pos)) + ":" + std::to_string(col);
}

// The line of a value, found by its text (a server's values are distinct
// enough; the first occurrence is good enough to point a person at it).
size_t line_of_value(std::string_view text, const std::string &value)
{
	size_t pos = text.find(value);
	return pos == std::string_view::npos ? 0 : line_at(text, pos);
}

class Scanner
{
      public:
	Scanner(std::string_view text, McpConfigScan *out) : text_(text), out_(out) {}

	void walk(const nlohmann::json &j)
	{
		if (!j.is_object()) {
			if (j.is_array())
				for (const auto &e : j)
					walk(e);
			return;
		}
		for (auto it = j.begin(); it != j.end(); ++it) {
			const std::string &k = it.key();
			if ((k == "mcpServers" || k == "servers" || k == "context_servers") &&
			    it->is_object()) {
				for (auto s = it->begin(); s != it->end(); ++s)
					if (s->is_object() &&
					    (s->contains("command") || s->contains("url") ||
					     s->contains("serverUrl") || s->contains("httpUrl")))
						server(s.key(), *s);
			} else {
				walk(*it);
			}
		}
	}

      private:
	void record(const std::string &server, const std::string &field, std::vector<Finding> found,
	            const std::string &raw)
	{
		for (auto &f : found) {
			ConfigSecret cs;
			cs.server = server;
			cs.field = field;
			cs.line = line_of_value(text_, raw);
			cs.finding = std::move(f);
			out_->secrets.push_back(std::move(cs));
		}
	}

	void named_value(const std::string &server, const std::string &field,
	                 const std::string &name, const std::string &value)
	{
		std::vector<Finding> found = scan_text(value);
		if (found.empty()) {
			// "Bearer xyz", "token xyz": the credential is the last word.
			std::string_view v = value;
			size_t sp = v.rfind(' ');
			std::string_view last = sp == std::string_view::npos ? v : v.substr(sp + 1);
			if (generic_secret(name, last)) {
				Finding f;
				f.type = "generic_secret";
				f.secret = SecretBytes(last);
				f.name = name;
				found.push_back(std::move(f));
			}
		}
		record(server, field, std::move(found), value);
	}

	void server(const std::string &name, const nlohmann::json &s)
	{
		out_->servers++;
		for (const char *block : {"env", "headers", "requestInit"}) {
			if (!s.contains(block) || !s[block].is_object())
				continue;
			const nlohmann::json &b =
			    std::string(block) == "requestInit" && s[block].contains("headers")
			        ? s[block]["headers"]
			        : s[block];
			for (auto it = b.begin(); it != b.end(); ++it) {
				if (!it->is_string())
					continue;
				std::string field = std::string(block) + "." + it.key();
				const std::string &value = it->get_ref<const std::string &>();
				named_value(name, field, it.key(), value);
				// AWS_SHARED_CREDENTIALS_FILE=~/.aws/credentials, KUBECONFIG=...
				if (auto kind = credential_file_kind(value))
					out_->secret_files.push_back({name, field, value, *kind,
					                              line_of_value(text_, value)});
			}
		}
		if (s.contains("args") && s["args"].is_array()) {
			std::vector<std::string> args;
			for (const auto &a : s["args"])
				args.push_back(a.is_string() ? a.get<std::string>() : a.dump());
			auto found = scan_argv(args);
			for (auto &f : found) {
				// scan_argv names them argv[i] or by option; keep the option.
				std::string field = "args";
				if (f.name.rfind("argv[", 0) == 0)
					field += f.name.substr(4);
				else
					field += "." + f.name;
				std::string raw(f.secret.view());
				std::vector<Finding> one;
				one.push_back(std::move(f));
				record(name, field, std::move(one), raw);
			}
			for (size_t i = 0; i < args.size(); i++) {
				// An option names no file ("--kubeconfig"); its value may
				// ("--kubeconfig=/x/config").
				std::string path = args[i];
				if (path.starts_with("-")) {
					size_t eq = path.find('=');
					if (eq == std::string::npos)
						continue;
					path = path.substr(eq + 1);
				}
				if (auto kind = credential_file_kind(path))
					out_->secret_files.push_back(
					    {name, "args[" + std::to_string(i) + "]", path, *kind,
					     line_of_value(text_, args[i])});
			}
		}
		for (const char *u : {"url", "serverUrl", "httpUrl"}) {
			if (!s.contains(u) || !s[u].is_string())
				continue;
			std::string url = s[u];
			auto found = scan_text(url);
			// ?token=..., &api_key=...
			size_t q = url.find('?');
			while (found.empty() && q != std::string::npos) {
				size_t amp = url.find('&', q + 1);
				std::string pair =
				    url.substr(q + 1, amp == std::string::npos ? std::string::npos
				                                               : amp - q - 1);
				size_t eq = pair.find('=');
				if (eq != std::string::npos &&
				    generic_secret(pair.substr(0, eq), pair.substr(eq + 1))) {
					Finding f;
					f.type = "generic_secret";
					f.secret = SecretBytes(pair.substr(eq + 1));
					f.name = pair.substr(0, eq);
					found.push_back(std::move(f));
				}
				q = amp;
			}
			record(name, u, std::move(found), url);
		}
	}

	std::string_view text_;
	McpConfigScan *out_;
};

} // namespace

std::string jsonc_to_json(std::string_view t)
{
	std::string out;
	out.reserve(t.size());
	size_t pending_comma = std::string::npos; // index in out of a comma that may trail
	for (size_t i = 0; i < t.size(); i++) {
		char c = t[i];
		if (c == '"') {
			size_t j = i + 1;
			while (j < t.size() && t[j] != '"')
				j += t[j] == '\\' ? 2 : 1;
			out.append(t.substr(i, std::min(j, t.size() - 1) - i + 1));
			i = j;
			pending_comma = std::string::npos;
			continue;
		}
		if (c == '/' && i + 1 < t.size() && t[i + 1] == '/') {
			while (i < t.size() && t[i] != '\n')
				i++;
			if (i < t.size())
				out += '\n';
			continue;
		}
		if (c == '/' && i + 1 < t.size() && t[i + 1] == '*') {
			size_t end = t.find("*/", i + 2);
			end = end == std::string_view::npos ? t.size() : end + 2;
			for (size_t k = i; k < end; k++)
				if (t[k] == '\n')
					out += '\n';
			i = end - 1;
			continue;
		}
		if ((c == '}' || c == ']') && pending_comma != std::string::npos)
			out[pending_comma] = ' ';
		if (c == ',')
			pending_comma = out.size();
		else if (!std::isspace(static_cast<unsigned char>(c)))
			pending_comma = std::string::npos;
		out += c;
	}
	return out;
}

McpConfigScan scan_mcp_config(std::string_view text)
{
	McpConfigScan out;
	std::string json = jsonc_to_json(text);
	if (size_t deep = json_too_deep(json, kMaxConfigDepth); deep != std::string::npos) {
		out.error = position(json, deep) + ": nested deeper than " +
		            std::to_string(kMaxConfigDepth) + " levels";
		return out;
	}
	nlohmann::json j;
	try {
		j = nlohmann::json::parse(json);
	} catch (const nlohmann::json::parse_error &e) {
		// nlohmann says what it read last ("last read: '<text>'"): that
		// text may be the secret itself, so only its reason is kept.
		std::string what = e.what();
		size_t from = what.find(": ", what.find("parse error"));
		std::string reason = from == std::string::npos ? "" : what.substr(from + 2);
		if (size_t lr = reason.find("; last read: '"); lr != std::string::npos) {
			size_t end = reason.find("'; expected", lr);
			reason.erase(lr,
			             end == std::string::npos ? std::string::npos : end + 1 - lr);
		}
		out.error = position(json, e.byte ? e.byte - 1 : 0) + ": not valid JSON/JSONC" +
		            (reason.empty() ? "" : " (" + reason + ")");
		return out;
	} catch (const nlohmann::json::exception &) {
		// Valid syntax nlohmann still refuses (a number out of range).
		out.error = "1:1: not valid JSON/JSONC (a number or string it cannot hold)";
		return out;
	}
	Scanner(json, &out).walk(j);
	return out;
}

namespace
{

// Where MCP clients keep their configs, relative to a home directory...
constexpr const char *kHomeConfigs[] = {
    ".cursor/mcp.json",
    ".vscode/mcp.json",
    ".config/Code/User/settings.json",
    ".config/Code/User/mcp.json",
    ".codeium/windsurf/mcp_config.json",
    ".claude.json",
    ".gemini/settings.json",
    ".config/Claude/claude_desktop_config.json",
    "Library/Application Support/Claude/claude_desktop_config.json",
    ".config/zed/settings.json",
};
// ...and relative to a project a client opens (Claude Code's project scope,
// Zed's project settings; the others are the same names as at home).
constexpr const char *kProjectConfigs[] = {".mcp.json", ".zed/settings.json"};

} // namespace

std::vector<std::string> mcp_config_locations(const std::string &home)
{
	std::vector<std::string> out;
	for (const char *rel : kHomeConfigs)
		out.push_back(home + "/" + rel);
	return out;
}

bool is_mcp_config_path(std::string_view path)
{
	auto under = [&](std::string_view rel) {
		return path.size() > rel.size() && path.ends_with(rel) &&
		       path[path.size() - rel.size() - 1] == '/';
	};
	for (const char *rel : kHomeConfigs)
		if (under(rel))
			return true;
	for (const char *rel : kProjectConfigs)
		if (under(rel))
			return true;
	return false;
}

std::vector<std::string> user_homes()
{
	std::set<std::string> homes{"/root"};
	setpwent();
	while (passwd *pw = getpwent()) {
		struct stat st;
		std::string h = pw->pw_dir ? pw->pw_dir : "";
		if (h.size() > 1 && h != "/nonexistent" && stat(h.c_str(), &st) == 0 &&
		    S_ISDIR(st.st_mode) &&
		    (h.rfind("/home/", 0) == 0 || h == "/root" || pw->pw_uid >= 1000))
			homes.insert(h);
	}
	endpwent();
	return {homes.begin(), homes.end()};
}

} // namespace keytrail
