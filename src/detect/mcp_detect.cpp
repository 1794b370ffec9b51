#include "keytrail/detect/mcp_detect.h"

#include <algorithm>
#include <set>
#include <string_view>

#include "keytrail/abi.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// A package or binary reference, version dropped, and what kind of name it
// is: "@modelcontextprotocol/server-gitlab@1.0" -> npm {"@modelcontextprotocol",
// "server-gitlab"}; "/x/node_modules/@zereight/mcp-gitlab/build/index.js" ->
// npm {"@zereight", "mcp-gitlab"}; "/usr/local/bin/github-mcp-server" ->
// binary {"", "github-mcp-server"}.
struct PackageRef {
	enum Kind { kNpm, kPypi, kImage, kBinary } kind = kBinary;
	std::string scope, name;
};

PackageRef package_ref(std::string_view arg)
{
	PackageRef ref;
	auto nm = arg.rfind("node_modules/");
	if (nm != std::string_view::npos) {
		std::string_view rest = arg.substr(nm + 13);
		if (rest.starts_with(".bin/"))
			return package_ref(rest.substr(5)); // a bin: its package is found on disk
		ref.kind = PackageRef::kNpm;
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
			ref.kind = PackageRef::kNpm;
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

// A package spec given to a package runner (npx, bunx, npm exec, pnpm dlx).
PackageRef npm_spec(std::string_view arg)
{
	PackageRef ref = package_ref(arg);
	if (arg.find('/') == std::string_view::npos || arg.starts_with("@"))
		ref.kind = PackageRef::kNpm;
	return ref;
}

// A PyPI requirement given to uvx / pipx run / uv tool run: "pkg==1.2",
// "pkg[extra]@1.2", "pkg>=1".
PackageRef pypi_spec(std::string_view arg)
{
	PackageRef ref;
	ref.kind = PackageRef::kPypi;
	ref.name = arg.substr(0, arg.find_first_of("[=<>~!@; "));
	return ref;
}

// PEP 503: lowercase, runs of "-", "_" and "." are one "-".
std::string normalize_python(std::string_view name)
{
	std::string out;
	for (char c : name) {
		bool sep = c == '-' || c == '_' || c == '.';
		if (sep) {
			if (!out.empty() && out.back() != '-')
				out.push_back('-');
			continue;
		}
		out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
	}
	while (!out.empty() && out.back() == '-')
		out.pop_back();
	return out;
}

bool mcp_name(const PackageRef &r)
{
	if (r.scope == "@modelcontextprotocol")
		return r.name.starts_with("server-"); // not the sdk or the inspector
	// Compared in PEP 503 form: MCP_Server.git is mcp-server-git.
	std::string n = normalize_python(r.name);
	return n.find("mcp-server") != std::string::npos ||
	       n.find("server-mcp") != std::string::npos || n.starts_with("mcp-") ||
	       n.ends_with("-mcp");
}

std::string canonical_name(const PackageRef &r)
{
	switch (r.kind) {
	case PackageRef::kNpm: return r.scope.empty() ? r.name : r.scope + "/" + r.name;
	case PackageRef::kImage: return r.scope.empty() ? r.name : r.scope + "/" + r.name;
	default: return normalize_python(r.name);
	}
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

// A package manager's script run by its interpreter, as its shebang runs it
// ("node /usr/lib/node_modules/npm/bin/npx-cli.js", "python3 /usr/bin/pipx"):
// the runner it is.
std::optional<std::string> runner_script(std::string_view path)
{
	std::string s(basename_of(path));
	for (std::string_view ext : {".js", ".cjs", ".mjs", "-cli"})
		if (s.ends_with(ext))
			s.resize(s.size() - ext.size());
	static const std::set<std::string_view> runners = {"npx",  "npm", "pnpm", "pnpx", "yarn",
	                                                   "bunx", "uvx", "uv",   "pipx"};
	if (runners.count(s))
		return s;
	return std::nullopt;
}

// The command a wrapper starts: `env [-u NAME] [VAR=value] cmd ...` is cmd;
// an interpreter running a runner's script is that runner. Anything else
// is itself.
std::vector<std::string> unwrapped(std::vector<std::string> argv)
{
	for (int depth = 0; depth < 4 && !argv.empty(); depth++) {
		std::string prog(basename_of(argv[0]));
		size_t from = 0;
		if (prog == "env") {
			from = 1;
			while (from < argv.size() && (argv[from].starts_with("-") ||
			                              argv[from].find('=') != std::string::npos)) {
				const std::string &a = argv[from++];
				if (a == "--")
					break;
				if (a == "-u" || a == "--unset" || a == "-C" || a == "--chdir")
					from++; // and its value
			}
		} else if (prog == "node" || prog == "nodejs" || prog == "bun" || is_python(prog)) {
			auto op = first_operand(argv, 1);
			if (!op)
				break;
			auto runner = runner_script(argv[*op]);
			if (!runner)
				break;
			argv[*op] = *runner;
			from = *op;
		} else {
			break;
		}
		if (from >= argv.size())
			return {};
		argv.erase(argv.begin(), argv.begin() + static_cast<std::ptrdiff_t>(from));
	}
	return argv;
}

// argv itself when no wrapper starts it (every exec is matched: nothing is
// copied then), else what unwrapped() makes of it, kept in `storage`.
const std::vector<std::string> &unwrapped(const std::vector<std::string> &argv,
                                          std::vector<std::string> &storage)
{
	if (argv.empty())
		return argv;
	std::string_view prog = basename_of(argv[0]);
	if (prog != "env" && prog != "node" && prog != "nodejs" && prog != "bun" &&
	    !is_python(prog))
		return argv;
	storage = unwrapped(argv);
	return storage;
}

// The match for a reference, if it names an MCP server. A binary or script
// path may be in an npm package (a bin, a dist/index.js): its package.json
// names it better, and decides. A name given as a package is final.
std::optional<McpMatch> found(PackageRef r, const char *rule, const std::string &script = "",
                              const PackageLookup *lookup = nullptr, bool lookup_always = false)
{
	bool named = mcp_name(r);
	if (r.kind == PackageRef::kBinary && !script.empty() && lookup && *lookup &&
	    (named || lookup_always))
		if (auto pkg = (*lookup)(script)) {
			PackageRef p = package_ref(*pkg);
			p.kind = PackageRef::kNpm;
			if (mcp_name(p))
				return McpMatch{canonical_name(p), rule};
		}
	if (!named)
		return std::nullopt;
	return McpMatch{canonical_name(r), rule, r.kind != PackageRef::kBinary};
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
	// A registry host is not part of the name: it is a hostname with a dot
	// or a port, or localhost ("ghcr.io/github/x" -> "github/x").
	auto slash = image.find('/');
	if (slash != std::string::npos) {
		std::string first = image.substr(0, slash);
		if (first.find_first_of(".:") != std::string::npos || first == "localhost")
			image = image.substr(slash + 1);
	}
	if (image.starts_with("library/"))
		image = image.substr(8);
	PackageRef ref{PackageRef::kImage, "", image};
	auto last = image.rfind('/');
	if (last != std::string::npos) {
		ref.scope = image.substr(0, last);
		ref.name = image.substr(last + 1);
	}
	if (ref.scope == "mcp" || ref.scope.ends_with("/mcp"))
		return McpMatch{image, "builtin:docker-image"};
	return found(ref, "builtin:docker-image");
}

} // namespace

std::optional<McpMatch> match_builtin(const std::vector<std::string> &raw_argv,
                                      const std::string &exe, const PackageLookup &lookup)
{
	// A script run through its shebang: argv names the interpreter, the
	// executed file is the server ("/opt/bin/mcp-server-x" -> sh or node).
	if (!exe.empty() && !raw_argv.empty() && basename_of(exe) != basename_of(raw_argv[0]))
		if (auto m = found(package_ref(exe), "builtin:binary", exe, &lookup))
			return m;
	std::vector<std::string> storage;
	const std::vector<std::string> &argv = unwrapped(raw_argv, storage);
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
			return found(package_ref(argv[*op]), "builtin:binary", argv[*op], &lookup);
		return std::nullopt;
	}

	// python -m mcp_server_fetch
	if (is_python(prog)) {
		for (size_t i = 1; i + 1 < argv.size(); i++) {
			if (argv[i] == "-m")
				return found(PackageRef{PackageRef::kPypi, "", argv[i + 1]},
				             "builtin:python-module");
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
		bool npm_runner = prog == "npx" || prog == "bunx" || prog == "npm" ||
		                  prog == "pnpm" || prog == "yarn" || prog == "pnpx";
		bool pypi_runner = prog == "uvx" || prog == "uv" || prog == "pipx";
		// npx -p @scope/pkg bin, uvx --from pkg bin: the package is the
		// option's value.
		for (size_t i = from; i + 1 < argv.size(); i++) {
			if (npm_runner && (argv[i] == "-p" || argv[i] == "--package"))
				if (auto m = found(npm_spec(argv[i + 1]), "builtin:npm-package"))
					return m;
			if (pypi_runner && (argv[i] == "--from" || argv[i] == "--spec"))
				if (auto m = found(pypi_spec(argv[i + 1]), "builtin:pypi-package"))
					return m;
		}
		auto op = first_operand(argv, from);
		if (op && prog == "deno" && argv[*op] == "run")
			op = first_operand(argv, *op + 1);
		if (!op)
			return std::nullopt;
		const std::string &a = argv[*op];
		if (npm_runner)
			return found(npm_spec(a), "builtin:npm-package");
		if (pypi_runner)
			return found(pypi_spec(a), "builtin:pypi-package");
		// node SCRIPT: an npm package's script, whatever the file is called.
		bool js = prog == "node" || prog == "nodejs" || prog == "bun" || prog == "deno" ||
		          prog == "tsx" || prog == "ts-node";
		return found(package_ref(a), "builtin:package", a, &lookup, js);
	}
	// A server binary run directly: mcp-server-fetch, github-mcp-server.
	// (The executed file is the wrapper's, when argv was unwrapped.)
	bool wrapped = argv.size() != raw_argv.size();
	return found(package_ref(argv[0]), "builtin:binary", wrapped || exe.empty() ? argv[0] : exe,
	             &lookup);
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

namespace
{

// The longest run of plain characters a glob's every match contains.
std::string glob_literal(const std::string &glob)
{
	std::string best, run;
	bool in_class = false;
	for (char c : glob) {
		if (in_class) {
			in_class = c != ']';
			continue;
		}
		if (c == '*' || c == '?' || c == '[' || c == '\\') {
			best = run.size() > best.size() ? run : best;
			run.clear();
			in_class = c == '[';
		} else {
			run += c;
		}
	}
	return run.size() > best.size() ? run : best;
}

// The same for an ECMAScript regex, conservatively: only runs outside any
// group count, none if the top level has alternatives, and a character
// made optional by the quantifier after it is not part of its run.
std::string regex_literal(const std::string &re)
{
	std::string best, run;
	int depth = 0;
	bool in_class = false, in_count = false;
	auto end_run = [&] {
		best = run.size() > best.size() ? run : best;
		run.clear();
	};
	for (size_t i = 0; i < re.size(); i++) {
		char c = re[i];
		if (in_class || in_count) {
			if (in_class && c == '\\')
				i++; // an escaped ']' does not end the class
			in_class = in_class && c != ']';
			in_count = in_count && c != '}';
			continue;
		}
		if (c == '\\') {
			// An escape is no literal text, nor are the digits or letter
			// after \xHH, \uHHHH and \cX.
			end_run();
			char e = i + 1 < re.size() ? re[i + 1] : '\0';
			i += e == 'x' ? 3 : e == 'u' ? 5 : e == 'c' ? 2 : 1;
			continue;
		}
		if (c == '|' && depth == 0)
			return "";
		if (std::string_view("?*{").find(c) != std::string_view::npos && !run.empty())
			run.pop_back();
		if (std::string_view("^$.|?*+()[]{}").find(c) == std::string_view::npos) {
			if (depth == 0)
				run += c;
			continue;
		}
		end_run();
		depth += c == '(' ? 1 : c == ')' && depth > 0 ? -1 : 0;
		in_class = c == '[';
		in_count = c == '{';
	}
	end_run();
	return best;
}

} // namespace

bool package_runner(const std::vector<std::string> &raw_argv, const std::string &exe)
{
	if (!package_runner(raw_argv))
		return false;
	std::vector<std::string> storage;
	std::string prog(basename_of(unwrapped(raw_argv, storage).front()));
	std::string_view ran = basename_of(exe);
	if (ran == prog)
		return true;
	static constexpr std::string_view runtimes[] = {"node", "nodejs", "bun",  "deno", "env",
	                                                "sh",   "bash",   "dash", "uv"};
	bool runtime =
	    ran.starts_with("python") ||
	    std::find(std::begin(runtimes), std::end(runtimes), ran) != std::end(runtimes);
	if (!runtime)
		return false;
	for (size_t i = 1; i < raw_argv.size(); i++) {
		std::string_view b = basename_of(raw_argv[i]);
		if (b == prog || b.starts_with(prog + "-cli"))
			return true;
	}
	return false;
}

std::vector<uint32_t> rule_hint_words(const std::vector<TrackingRule> &rules,
                                      std::vector<std::string> *unhinted)
{
	std::vector<uint32_t> words;
	for (const auto &r : rules) {
		std::string lit;
		if (r.exe)
			lit = glob_literal(*r.exe);
		if (r.argv_source) {
			std::string a = regex_literal(*r.argv_source);
			if (a.size() > lit.size())
				lit = a;
		}
		if (lit.size() < 4 || words.size() >= KT_HINT_WORDS) {
			if (unhinted)
				unhinted->push_back(r.name);
			continue;
		}
		// Four bytes of it: the last window without '/' (nearest the
		// program's name, rarer than "/opt" or "/usr") and without a space
		// (the kernel sees argv NUL-separated), else the first without a
		// space.
		size_t at = std::string::npos, spaceless = std::string::npos;
		for (size_t k = lit.size() - 4 + 1; k-- > 0;) {
			std::string w = lit.substr(k, 4);
			if (w.find(' ') != std::string::npos)
				continue;
			spaceless = k;
			if (at == std::string::npos && w.find('/') == std::string::npos)
				at = k;
		}
		if (at == std::string::npos)
			at = spaceless;
		if (at == std::string::npos) {
			if (unhinted)
				unhinted->push_back(r.name);
			continue;
		}
		uint32_t w = 0;
		for (int k = 3; k >= 0; k--)
			w = w << 8 | static_cast<unsigned char>(lit[at + k]);
		if (std::find(words.begin(), words.end(), w) == words.end())
			words.push_back(w);
	}
	return words;
}

bool package_runner(const std::vector<std::string> &raw_argv)
{
	std::vector<std::string> storage;
	const std::vector<std::string> &argv = unwrapped(raw_argv, storage);
	if (argv.empty())
		return false;
	std::string prog(basename_of(argv[0]));
	auto sub = [&](size_t i, std::initializer_list<std::string_view> words) {
		return argv.size() > i &&
		       std::find(words.begin(), words.end(), argv[i]) != words.end();
	};
	return prog == "npx" || prog == "bunx" || prog == "pnpx" || prog == "uvx" ||
	       (prog == "npm" && sub(1, {"exec", "x"})) ||
	       (prog == "pnpm" && sub(1, {"dlx", "exec"})) || (prog == "yarn" && sub(1, {"dlx"})) ||
	       (prog == "uv" && sub(1, {"tool"}) && sub(2, {"run"})) ||
	       ((prog == "pipx" || prog == "uv") && sub(1, {"run"}));
}

McpDetector::McpDetector(bool builtin_rules, std::vector<TrackingRule> rules,
                         ProcessPackageLookup lookup)
    : builtin_(builtin_rules), rules_(std::move(rules)), lookup_(std::move(lookup))
{
	for (const auto &r : rules_)
		argv_literals_.push_back(r.argv && r.argv_source ? regex_literal(*r.argv_source)
		                                                 : "");
}

std::optional<McpMatch> McpDetector::match(const ProcessFacts &p) const
{
	std::string joined;
	for (size_t i = 0; i < rules_.size(); i++) {
		const TrackingRule &r = rules_[i];
		if (r.exe && !glob_match(*r.exe, p.exe))
			continue;
		if (r.uid && *r.uid != p.uid)
			continue;
		if (r.parent && !std::regex_search(p.parent_comm, *r.parent) &&
		    !std::regex_search(p.parent_exe, *r.parent))
			continue;
		if (r.argv) {
			// A literal the regex needs, with no space in it, is inside
			// one argument: most execs are let go without joining theirs.
			const std::string &lit = argv_literals_[i];
			if (!lit.empty() && lit.find(' ') == std::string::npos &&
			    std::none_of(p.argv.begin(), p.argv.end(), [&](const std::string &a) {
				    return a.find(lit) != std::string::npos;
			    }))
				continue;
			if (joined.empty())
				for (const auto &a : p.argv) {
					if (!joined.empty())
						joined += ' ';
					joined += a;
				}
			if ((!lit.empty() && joined.find(lit) == std::string::npos) ||
			    !std::regex_search(joined, *r.argv))
				continue;
		}
		return McpMatch{r.name, "config:" + r.name};
	}
	if (builtin_) {
		PackageLookup lookup;
		if (lookup_)
			lookup = [&](const std::string &path) { return lookup_(p.pid, path); };
		return match_builtin(p.argv, p.exe, lookup);
	}
	return std::nullopt;
}

} // namespace keytrail
