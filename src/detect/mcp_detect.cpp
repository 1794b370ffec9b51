#include "keytrail/detect/mcp_detect.h"

#include <algorithm>
#include <set>
#include <string_view>

#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// A package or binary reference, split into scope and name, version dropped:
// "@modelcontextprotocol/server-gitlab@1.0" -> {"@modelcontextprotocol", "server-gitlab"};
// "/x/node_modules/@zereight/mcp-gitlab/build/index.js" -> {"@zereight", "mcp-gitlab"};
// "/usr/local/bin/github-mcp-server" -> {"", "github-mcp-server"}.
struct PackageRef {
	std::string scope, name;
};

PackageRef package_ref(std::string_view arg)
{
	PackageRef ref;
	auto nm = arg.rfind("node_modules/");
	if (nm != std::string_view::npos) {
		std::string_view rest = arg.substr(nm + 13);
		if (rest.starts_with(".bin/"))
			return package_ref(rest.substr(5));
		auto slash = rest.find('/');
		if (rest.starts_with("@") && slash != std::string_view::npos) {
			ref.scope = rest.substr(0, slash);
			rest = rest.substr(slash + 1);
		}
		ref.name = rest.substr(0, rest.find('/'));
		return ref;
	}
	if (arg.starts_with("@")) {
		auto slash = arg.find('/');
		if (slash != std::string_view::npos) {
			ref.scope = arg.substr(0, slash);
			arg = arg.substr(slash + 1);
		}
	} else {
		arg = basename_of(arg);
	}
	ref.name = arg.substr(0, arg.find('@')); // drop "@version"
	for (std::string_view ext : {".js", ".mjs", ".cjs", ".ts", ".py"})
		if (ref.name.ends_with(ext))
			ref.name.resize(ref.name.size() - ext.size());
	return ref;
}

bool mcp_name(const PackageRef &r)
{
	const std::string &n = r.name;
	if (r.scope == "@modelcontextprotocol")
		return n.starts_with("server-"); // not the sdk or the inspector
	return n.find("mcp-server") != std::string::npos ||
	       n.find("mcp_server") != std::string::npos ||
	       n.find("server-mcp") != std::string::npos || n.starts_with("mcp-") ||
	       n.starts_with("mcp_") || n.ends_with("-mcp") || n.ends_with("_mcp");
}

// Options of launchers that take a value as the next argument.
const std::set<std::string_view> kValueOptions = {
    // node
    "-r", "--require", "--import", "--loader", "--experimental-loader", "--env-file", "-C",
    "--conditions", "--inspect-port",
    // npx / npm exec / pnpm / yarn
    "-p", "--package", "--registry", "--cache", "--prefix", "-c", "--call", "-w", "--workspace",
    // python / uv / pipx
    "-W", "-X", "--python", "--from", "--with", "--index-url", "--spec",
    // docker / podman run
    "-e", "--env", "-v", "--volume", "--name", "--publish", "--workdir", "--network", "--net", "-u",
    "--user", "--mount", "--entrypoint", "-l", "--label", "--platform", "--pull", "--cidfile", "-h",
    "--hostname", "--add-host", "--memory", "-m", "--cpus", "--restart", "--log-driver",
    "--security-opt", "--cap-add", "--cap-drop", "--device", "--tmpfs", "--ulimit", "--dns", "-a",
    "--attach", "--init-path", "--runtime", "--gpus"};

// The first operand after argv[from], skipping options and their values.
std::optional<size_t> first_operand(const std::vector<std::string> &argv, size_t from)
{
	for (size_t i = from; i < argv.size(); i++) {
		const std::string &a = argv[i];
		if (a == "--")
			return i + 1 < argv.size() ? std::optional<size_t>(i + 1) : std::nullopt;
		if (a.starts_with("-")) {
			if (a.find('=') == std::string::npos && kValueOptions.count(a))
				i++;
			continue;
		}
		return i;
	}
	return std::nullopt;
}

bool is_python(std::string_view b)
{
	return b == "python" || b.starts_with("python2") || b.starts_with("python3") ||
	       b == "pypy3";
}

std::optional<McpMatch> found(const PackageRef &r, const char *rule)
{
	if (!mcp_name(r))
		return std::nullopt;
	return McpMatch{r.name, rule};
}

// docker/podman run ... IMAGE: mcp/github, ghcr.io/github/github-mcp-server
std::optional<McpMatch> match_container(const std::vector<std::string> &argv)
{
	auto run = std::find(argv.begin() + 1, argv.end(), "run");
	if (run == argv.end())
		return std::nullopt;
	auto img = first_operand(argv, (run - argv.begin()) + 1);
	if (!img)
		return std::nullopt;
	std::string image = argv[*img];
	image = image.substr(0, image.find('@')); // digest
	auto colon = image.rfind(':');
	if (colon != std::string::npos && image.find('/', colon) == std::string::npos)
		image.resize(colon); // tag
	if (image.starts_with("mcp/") || image.find("/mcp/") != std::string::npos)
		return McpMatch{image.substr(image.rfind("mcp/")), "builtin:docker-image"};
	return found(PackageRef{"", std::string(basename_of(image))}, "builtin:docker-image");
}

} // namespace

std::optional<McpMatch> match_builtin(const std::vector<std::string> &argv, const std::string &exe)
{
	// A script run through its shebang: argv names the interpreter, the
	// executed file is the server ("/opt/bin/mcp-server-x" -> sh or node).
	if (!exe.empty() && !argv.empty() && basename_of(exe) != basename_of(argv[0]))
		if (auto m = found(package_ref(exe), "builtin:binary"))
			return m;
	if (argv.empty())
		return std::nullopt;
	std::string prog(basename_of(argv[0]));

	if (prog == "docker" || prog == "podman" || prog == "nerdctl")
		return match_container(argv);

	// A shell script as /proc shows it after the exec ("/bin/sh
	// /opt/bin/mcp-server-x"): the script is the server. Not `sh -c '...'`.
	static const std::set<std::string_view> shells = {"sh", "bash", "dash", "zsh", "ksh"};
	if (shells.count(prog)) {
		if (std::find(argv.begin() + 1, argv.end(), "-c") != argv.end())
			return std::nullopt;
		if (auto op = first_operand(argv, 1))
			return found(package_ref(argv[*op]), "builtin:binary");
		return std::nullopt;
	}

	// python -m mcp_server_fetch
	if (is_python(prog)) {
		for (size_t i = 1; i + 1 < argv.size(); i++) {
			if (argv[i] == "-m")
				return found(PackageRef{"", argv[i + 1]}, "builtin:python-module");
			if (!std::string_view(argv[i]).starts_with("-"))
				break;
		}
	}

	// Runners whose first operand is the package or script.
	static const std::set<std::string_view> runners = {
	    "node", "nodejs", "npx", "bun", "bunx", "deno", "uvx", "tsx", "ts-node"};
	size_t from = 0;
	if (runners.count(prog) || is_python(prog))
		from = 1;
	else if ((prog == "npm" || prog == "pnpm" || prog == "yarn") && argv.size() > 1 &&
	         (argv[1] == "exec" || argv[1] == "x" || argv[1] == "dlx"))
		from = 2;
	else if ((prog == "uv" && argv.size() > 2 && argv[1] == "tool" && argv[2] == "run"))
		from = 3;
	else if ((prog == "pipx" || prog == "uv") && argv.size() > 1 && argv[1] == "run")
		from = 2;

	if (from) {
		// npx -p @scope/pkg bin: the package is the option's value.
		for (size_t i = from; i + 1 < argv.size(); i++)
			if (argv[i] == "-p" || argv[i] == "--package")
				if (auto m = found(package_ref(argv[i + 1]), "builtin:npm-package"))
					return m;
		if (auto op = first_operand(argv, from)) {
			if (prog == "deno" && argv[*op] == "run")
				op = first_operand(argv, *op + 1);
			if (op)
				return found(package_ref(argv[*op]), "builtin:package");
		}
		return std::nullopt;
	}
	// A server binary run directly: mcp-server-fetch, github-mcp-server.
	return found(package_ref(argv[0]), "builtin:binary");
}

std::optional<std::string> match_client(const std::string &comm, const std::string &exe,
                                        const std::vector<std::string> &argv,
                                        const std::vector<ClientRule> &rules)
{
	std::string joined;
	for (const auto &a : argv)
		joined += (joined.empty() ? "" : " ") + a;
	for (const auto &r : rules) {
		if (r.exe && !glob_match(*r.exe, exe))
			continue;
		if (r.comm && !std::regex_search(comm, *r.comm))
			continue;
		if (r.argv && !std::regex_search(joined, *r.argv))
			continue;
		return r.name;
	}
	std::string base(basename_of(exe));
	std::string lexe = exe;
	std::transform(lexe.begin(), lexe.end(), lexe.begin(), ::tolower);
	auto has = [&](const char *needle) { return joined.find(needle) != std::string::npos; };
	if (has("@modelcontextprotocol/inspector"))
		return "mcp-inspector";
	if (comm == "claude" || base == "claude" || has("@anthropic-ai/claude-code"))
		return "claude-code";
	if (base == "claude-desktop" || base == "Claude" ||
	    lexe.find("claude-desktop") != std::string::npos ||
	    lexe.find("/claude.app/") != std::string::npos)
		return "claude-desktop";
	if (comm == "gemini" || has("@google/gemini-cli"))
		return "gemini-cli";
	if (base == "cursor" || base == "Cursor" || lexe.find("/cursor/") != std::string::npos)
		return "cursor";
	if (base == "windsurf" || base == "Windsurf" ||
	    lexe.find("/windsurf/") != std::string::npos)
		return "windsurf";
	if (base == "code" || base == "code-insiders" || base == "codium" || base == "Code" ||
	    lexe.find("/usr/share/code/") != std::string::npos)
		return "vscode";
	return std::nullopt;
}

McpDetector::McpDetector(bool builtin_rules, std::vector<TrackingRule> rules)
    : builtin_(builtin_rules), rules_(std::move(rules))
{
}

std::optional<McpMatch> McpDetector::match(const ProcessFacts &p) const
{
	std::string joined;
	for (const auto &r : rules_) {
		if (r.exe && !glob_match(*r.exe, p.exe))
			continue;
		if (r.uid && *r.uid != p.uid)
			continue;
		if (r.parent && !std::regex_search(p.parent_comm, *r.parent) &&
		    !std::regex_search(p.parent_exe, *r.parent))
			continue;
		if (r.argv) {
			if (joined.empty())
				for (const auto &a : p.argv)
					joined += (joined.empty() ? "" : " ") + a;
			if (!std::regex_search(joined, *r.argv))
				continue;
		}
		return McpMatch{r.name, "config:" + r.name};
	}
	if (builtin_)
		return match_builtin(p.argv, p.exe);
	return std::nullopt;
}

} // namespace keytrail
