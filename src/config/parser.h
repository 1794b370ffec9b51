// The config parser's inside: a YAML walker that checks every key and value
// and fails with file:line:col. parser.cpp has its helpers and the top
// level, sections.cpp the agent's own sections, inventory.cpp the policy
// (inventory, identities, environments).
#pragma once

#include <yaml-cpp/yaml.h>

#include <regex>
#include <set>
#include <string>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail::config_detail
{

class Parser
{
      public:
	explicit Parser(std::string name) : name_(std::move(name)) {}

	Config parse(const std::string &text) const;

	[[noreturn]] void fail(const YAML::Node &n, const std::string &why) const;
	void only_keys(const YAML::Node &map, const std::string &where,
	               const std::set<std::string> &allowed) const;
	std::string str(const YAML::Node &n, const std::string &what) const;
	bool boolean(const YAML::Node &n, const std::string &what) const;
	uint64_t number(const YAML::Node &n, const std::string &what, uint64_t lo,
	                uint64_t hi) const;
	std::vector<std::string> str_list(const YAML::Node &n, const std::string &what) const;
	std::regex regex(const YAML::Node &n, const std::string &what) const;
	SelectorMatch selector_match(const YAML::Node &n, const std::string &what) const;
	void check_selector(const YAML::Node &n, const std::string &key) const;
	void check_template(const YAML::Node &n, const std::string &t) const;
	std::vector<std::string> records_list(const YAML::Node &n, const std::string &what) const;
	// A string converted by f (parse_duration, parse_size): f's Error
	// becomes a ConfigError at the node.
	template <typename F> auto convert(const YAML::Node &n, const std::string &what, F f) const
	{
		std::string s = str(n, what);
		try {
			return f(s);
		} catch (const Error &e) {
			// "'VALUE' is not a duration (...)": the value is not quoted
			// back (it may be a secret pasted on the wrong line).
			std::string why = e.what();
			size_t q = why.rfind("' ", why.find(" is not"));
			if (!why.empty() && why[0] == '\'' && q != std::string::npos)
				why = "the value" + why.substr(q + 1);
			fail(n, what + ": " + why);
		}
	}

	// Sections.
	void agent(const YAML::Node &n, Config *c) const;
	void tracking(const YAML::Node &n, Config *c) const;
	void clients(const YAML::Node &n, Config *c) const;
	void outputs(const YAML::Node &n, Config *c) const;
	void clickhouse_output(const YAML::Node &o, OutputSpec *spec) const;
	void journal(const YAML::Node &n, Config *c) const;
	void correlate(const YAML::Node &n, Config *c) const;
	void secrets(const YAML::Node &n, Config *c) const;
	void identities(const YAML::Node &n, Config *c) const;
	void environments(const YAML::Node &n, Config *c) const;
	void inventory(const YAML::Node &n, Config *c) const;
	void exceptions(const YAML::Node &n, Config *c) const;
	InventoryEntry inventory_entry(const YAML::Node &e) const;
	void inventory_match(const YAML::Node &m, const std::string &where,
	                     InventoryEntry *entry) const;

      private:
	Config parse(const YAML::Node &root) const;

	std::string name_;
};

} // namespace keytrail::config_detail
