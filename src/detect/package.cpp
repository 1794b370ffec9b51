#include "keytrail/detect/package.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "keytrail/util/files.h"

namespace keytrail
{

namespace
{

constexpr int kMaxHops = 16;           // symlinks followed
constexpr int kMaxLevels = 12;         // directories walked up
constexpr size_t kMaxJson = 256 << 10; // bytes of a package.json read
constexpr int kMaxDepth = 32;          // JSON nesting kept

// The path's components, "." and empty ones dropped, ".." applied.
std::vector<std::string> components(const std::string &path)
{
	std::vector<std::string> out;
	size_t i = 0;
	while (i <= path.size()) {
		size_t j = path.find('/', i);
		if (j == std::string::npos)
			j = path.size();
		std::string c = path.substr(i, j - i);
		if (c == "..") {
			if (!out.empty())
				out.pop_back();
		} else if (!c.empty() && c != ".") {
			out.push_back(c);
		}
		i = j + 1;
	}
	return out;
}

std::string join(const std::vector<std::string> &parts, size_t n)
{
	std::string s;
	for (size_t i = 0; i < n; i++)
		s += "/" + parts[i];
	return s.empty() ? "/" : s;
}

// Symlinks resolved component by component, absolute targets taken as
// relative to root (the process's root, not ours).
std::optional<std::string> real_path(const std::string &root, const std::string &path)
{
	std::vector<std::string> todo = components(path), done;
	int hops = 0;
	while (!todo.empty()) {
		std::string c = todo.front();
		todo.erase(todo.begin());
		done.push_back(c);
		std::string here = root + join(done, done.size());
		char buf[4096];
		ssize_t n = readlink(here.c_str(), buf, sizeof(buf) - 1);
		if (n < 0)
			continue; // not a link (or gone: the lookup fails later)
		if (++hops > kMaxHops)
			return std::nullopt;
		std::string target(buf, static_cast<size_t>(n));
		done.pop_back();
		std::string base =
		    target[0] == '/' ? target : join(done, done.size()) + "/" + target;
		std::vector<std::string> rest = components(base);
		rest.insert(rest.end(), todo.begin(), todo.end());
		todo = std::move(rest);
		done.clear();
	}
	return join(done, done.size());
}

// The "name" of a package.json, if it is a regular file we can read.
std::optional<std::string> name_in(const std::string &file)
{
	struct stat st;
	int fd = open_regular_file(file, &st);
	if (fd < 0)
		return std::nullopt;
	std::string text;
	if (static_cast<size_t>(st.st_size) <= kMaxJson) {
		text.resize(static_cast<size_t>(st.st_size));
		ssize_t n = ::read(fd, text.data(), text.size());
		text.resize(n > 0 ? static_cast<size_t>(n) : 0);
	}
	::close(fd);
	if (text.empty())
		return std::nullopt;
	// Nested values past kMaxDepth are dropped as they are parsed: the name
	// is at the top, and a hostile file cannot make the tree deep.
	auto keep = [](int depth, nlohmann::json::parse_event_t, nlohmann::json &) {
		return depth <= kMaxDepth;
	};
	auto j = nlohmann::json::parse(text, keep, false);
	if (!j.is_object() || !j.contains("name") || !j["name"].is_string())
		return std::nullopt;
	std::string name = j["name"].get<std::string>();
	if (!valid_npm_name(name))
		return std::nullopt;
	return name;
}

} // namespace

bool valid_npm_name(const std::string &name)
{
	if (name.empty() || name.size() > 214)
		return false;
	size_t slash = name.find('/');
	if (name[0] == '@' && (slash == std::string::npos || slash < 2 || slash + 1 == name.size()))
		return false;
	if (name[0] != '@' && slash != std::string::npos)
		return false;
	for (size_t i = name[0] == '@' ? 1 : 0; i < name.size(); i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		          c == '.' || c == '_' || c == '~' || (c == '/' && i == slash);
		if (!ok)
			return false;
	}
	return name.find("/", slash + 1) == std::string::npos;
}

std::optional<std::string> npm_package_of(const std::string &root, const std::string &path)
{
	if (path.empty() || path[0] != '/')
		return std::nullopt;
	auto real = real_path(root, path);
	if (!real)
		return std::nullopt;
	std::vector<std::string> parts = components(*real);
	// The file itself, then each directory up: the nearest package.json.
	for (int level = 0; level < kMaxLevels && !parts.empty(); level++) {
		parts.pop_back();
		if (auto name = name_in(root + join(parts, parts.size()) + "/package.json"))
			return name;
	}
	return std::nullopt;
}

} // namespace keytrail
