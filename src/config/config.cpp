#include "keytrail/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "keytrail/correlate/rules.h"
#include "keytrail/output/sink.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

class Parser
{
      public:
	explicit Parser(std::string name) : name_(std::move(name)) {}

	[[noreturn]] void fail(const YAML::Node &n, const std::string &why) const
	{
		const YAML::Mark m = n.Mark();
		throw ConfigError(name_ + ":" + std::to_string(m.line + 1) + ":" +
		                  std::to_string(m.column + 1) + ": " + why);
	}

	void only_keys(const YAML::Node &map, const std::string &where,
	               const std::set<std::string> &allowed) const
	{
		if (!map.IsMap())
			fail(map, where + " must be a mapping");
		for (const auto &kv : map) {
			std::string key = kv.first.as<std::string>();
			if (!allowed.count(key)) {
				std::string list;
				for (const auto &a : allowed)
					list += (list.empty() ? "" : ", ") + a;
				fail(kv.first, "unknown key '" + key + "' in " + where +
				                   " (expected one of: " + list + ")");
			}
		}
	}

	std::string str(const YAML::Node &n, const std::string &what) const
	{
		if (!n.IsScalar())
			fail(n, what + " must be a string");
		return n.as<std::string>();
	}

	bool boolean(const YAML::Node &n, const std::string &what) const
	{
		try {
			return n.as<bool>();
		} catch (const YAML::Exception &) {
			fail(n, what + " must be true or false");
		}
	}

	template <typename F> auto convert(const YAML::Node &n, const std::string &what, F f) const
	{
		std::string s = str(n, what);
		try {
			return f(s);
		} catch (const Error &e) {
			fail(n, what + ": " + e.what());
		}
	}

	uint64_t number(const YAML::Node &n, const std::string &what, uint64_t lo,
	                uint64_t hi) const
	{
		uint64_t v;
		try {
			v = n.as<uint64_t>();
		} catch (const YAML::Exception &) {
			fail(n, what + " must be a whole number");
		}
		if (v < lo || v > hi)
			fail(n, what + " must be between " + std::to_string(lo) + " and " +
			            std::to_string(hi));
		return v;
	}

	SelectorMatch selector_match(const YAML::Node &n, const std::string &what) const
	{
		if (!n.IsMap() || n.size() == 0)
			fail(n, what + " must be a mapping of selector: glob");
		SelectorMatch m;
		for (const auto &kv : n) {
			std::string key = kv.first.as<std::string>();
			check_selector(kv.first, key);
			m.emplace_back(key, str(kv.second, what + "." + key));
		}
		return m;
	}

	void check_selector(const YAML::Node &n, const std::string &key) const
	{
		const auto &known = known_selectors();
		if (std::find(known.begin(), known.end(), key) != known.end())
			return;
		std::string list;
		for (const auto &k : known)
			list += (list.empty() ? "" : ", ") + k;
		fail(n, "unknown selector '" + key + "' (known: " + list + ")");
	}

	// {selector} references in an id template must name known selectors.
	void check_template(const YAML::Node &n, const std::string &t) const
	{
		size_t pos = 0;
		while ((pos = t.find('{', pos)) != std::string::npos) {
			size_t end = t.find('}', pos);
			if (end == std::string::npos)
				fail(n, "unclosed '{' in identity template '" + t + "'");
			check_selector(n, t.substr(pos + 1, end - pos - 1));
			pos = end + 1;
		}
	}

	// identities: a list of rules, or {trust_domain: ..., rules: [...]}.
	void identities(const YAML::Node &n, Config *c) const
	{
		YAML::Node rules = n;
		if (n.IsMap()) {
			only_keys(n, "identities", {"trust_domain", "rules"});
			if (n["trust_domain"]) {
				c->trust_domain = str(n["trust_domain"], "identities.trust_domain");
				if (c->trust_domain.empty() ||
				    c->trust_domain.find('/') != std::string::npos)
					fail(n["trust_domain"],
					     "identities.trust_domain must be a bare name");
			}
			rules.reset(n["rules"]); // operator= would write into n
			if (!rules)
				return;
		}
		if (!rules.IsSequence())
			fail(rules, "identity rules must be a list");
		for (const auto &r : rules) {
			only_keys(r, "an identity rule", {"id", "match"});
			if (!r["id"])
				fail(r, "an identity rule needs an id template");
			IdentityRule rule{str(r["id"], "identity id"), {}};
			check_template(r["id"], rule.id);
			if (r["match"])
				rule.match = selector_match(r["match"], "match");
			c->identities.push_back(std::move(rule));
		}
	}

	void environments(const YAML::Node &n, Config *c) const
	{
		if (!n.IsSequence())
			fail(n, "environments must be a list");
		for (const auto &r : n) {
			only_keys(r, "an environment rule", {"name", "match"});
			if (!r["name"] || !r["match"])
				fail(r, "an environment rule needs a name and a match");
			c->environments.push_back(
			    EnvironmentRule{str(r["name"], "environment name"),
			                    selector_match(r["match"], "match")});
		}
	}

	void secrets(const YAML::Node &n, Config *c) const
	{
		only_keys(n, "secrets",
		          {"fingerprint_key_file", "paths", "max_file_size", "scan_mcp_configs",
		           "mcp_configs"});
		if (n["mcp_configs"])
			c->mcp_configs = str_list(n["mcp_configs"], "secrets.mcp_configs");
		if (n["fingerprint_key_file"]) {
			c->fingerprint_key_file =
			    str(n["fingerprint_key_file"], "secrets.fingerprint_key_file");
			if (c->fingerprint_key_file.empty() || c->fingerprint_key_file[0] != '/')
				fail(n["fingerprint_key_file"],
				     "secrets.fingerprint_key_file must be an absolute path");
		}
		if (n["paths"]) {
			if (!n["paths"].IsSequence())
				fail(n["paths"], "secrets.paths must be a list of globs");
			for (const auto &p : n["paths"])
				c->secret_paths.push_back(str(p, "a secrets path"));
		}
		if (n["max_file_size"]) {
			c->max_file_size =
			    convert(n["max_file_size"], "secrets.max_file_size", parse_size);
			if (c->max_file_size < 1024 || c->max_file_size > (64u << 20))
				fail(n["max_file_size"],
				     "secrets.max_file_size must be 1KiB..64MiB");
		}
		if (n["scan_mcp_configs"])
			c->scan_mcp_configs =
			    boolean(n["scan_mcp_configs"], "secrets.scan_mcp_configs");
	}

	std::vector<std::string> str_list(const YAML::Node &n, const std::string &what) const
	{
		std::vector<std::string> out;
		if (n.IsScalar()) {
			out.push_back(str(n, what));
			return out;
		}
		if (!n.IsSequence())
			fail(n, what + " must be a string or a list of strings");
		for (const auto &x : n)
			out.push_back(str(x, what));
		return out;
	}

	void inventory(const YAML::Node &n, Config *c) const
	{
		if (!n.IsSequence())
			fail(n, "inventory must be a list");
		std::set<std::string> ids;
		for (const auto &e : n) {
			only_keys(e, "an inventory entry",
			          {"id", "owner", "purpose", "match", "expires", "rotate_every",
			           "max_unused", "allowed_identities", "allowed_upstreams",
			           "environment", "status"});
			InventoryEntry entry;
			entry.line = e.Mark().line + 1;
			if (!e["id"])
				fail(e, "an inventory entry needs an id");
			entry.id = str(e["id"], "inventory id");
			if (!ids.insert(entry.id).second)
				fail(e["id"], "inventory id '" + entry.id + "' is defined twice");
			const std::string where = "inventory '" + entry.id + "'";
			if (e["owner"])
				entry.owner = str(e["owner"], where + ".owner");
			if (e["purpose"])
				entry.purpose = str(e["purpose"], where + ".purpose");
			if (!e["match"])
				fail(e, where + " needs a match (fingerprint, path or env)");
			const YAML::Node m = e["match"];
			only_keys(m, where + ".match", {"fingerprint", "path", "env", "identity"});
			if (m["fingerprint"]) {
				entry.fingerprints =
				    str_list(m["fingerprint"], where + ".match.fingerprint");
				for (auto &fp : entry.fingerprints) {
					bool hex = !fp.empty() &&
					           fp.find_first_not_of("0123456789abcdef") ==
					               std::string::npos;
					if (!hex || fp.size() != 32)
						fail(m["fingerprint"],
						     where + ".match.fingerprint '" + fp +
						         "' is not a 32-digit lowercase hex "
						         "fingerprint "
						         "(see keytrail fingerprint)");
				}
			}
			if (m["path"])
				entry.path = str(m["path"], where + ".match.path");
			if (m["env"])
				entry.env = str(m["env"], where + ".match.env");
			if (m["identity"])
				entry.identity = str(m["identity"], where + ".match.identity");
			if (entry.fingerprints.empty() && !entry.path && !entry.env)
				fail(m, where + ".match needs a fingerprint, path or env");
			if (e["expires"]) {
				int64_t t;
				if (!parse_rfc3339(str(e["expires"], where + ".expires"), &t))
					fail(e["expires"],
					     where + ".expires must be a date (2027-01-31) or an "
					             "RFC 3339 time");
				entry.expires_ns = t;
			}
			if (e["rotate_every"])
				entry.rotate_every = convert(
				    e["rotate_every"], where + ".rotate_every", parse_duration);
			if (e["max_unused"])
				entry.max_unused =
				    convert(e["max_unused"], where + ".max_unused", parse_duration);
			if (e["allowed_identities"])
				entry.allowed_identities = str_list(e["allowed_identities"],
				                                    where + ".allowed_identities");
			if (e["allowed_upstreams"])
				entry.allowed_upstreams =
				    str_list(e["allowed_upstreams"], where + ".allowed_upstreams");
			if (e["environment"])
				entry.environment = str(e["environment"], where + ".environment");
			if (e["status"]) {
				entry.status = str(e["status"], where + ".status");
				if (entry.status != "active" && entry.status != "revoked" &&
				    entry.status != "decommissioned")
					fail(e["status"], where + ".status must be active, revoked "
					                          "or decommissioned");
			}
			c->inventory.push_back(std::move(entry));
		}
	}

	void clients(const YAML::Node &n, Config *c) const
	{
		if (!n.IsSequence())
			fail(n, "tracking.clients must be a list");
		for (const auto &r : n) {
			only_keys(r, "a client rule", {"name", "exe", "comm", "argv"});
			if (!r["name"])
				fail(r, "a client rule needs a name");
			ClientRule rule;
			rule.name = str(r["name"], "client name");
			if (r["exe"])
				rule.exe = str(r["exe"], "client exe");
			if (r["comm"])
				rule.comm = regex(r["comm"], "client comm");
			if (r["argv"])
				rule.argv = regex(r["argv"], "client argv");
			if (!rule.exe && !rule.comm && !rule.argv)
				fail(r, "client rule '" + rule.name +
				            "' has no condition (exe, comm or argv)");
			c->clients.push_back(std::move(rule));
		}
	}

	std::regex regex(const YAML::Node &n, const std::string &what) const
	{
		std::string s = str(n, what);
		try {
			return std::regex(s, std::regex::ECMAScript | std::regex::optimize);
		} catch (const std::regex_error &e) {
			fail(n, what + " is not a valid regular expression: " + e.what());
		}
	}

	void agent(const YAML::Node &n, Config *c) const
	{
		only_keys(n, "agent",
		          {"state_dir", "ring_buffer_size", "health_interval", "connect_hold",
		           "events", "process_grace", "max_exited_processes", "ancestry_depth",
		           "metrics_address"});
		if (n["metrics_address"]) {
			c->metrics_address = str(n["metrics_address"], "agent.metrics_address");
			if (!c->metrics_address.empty() &&
			    c->metrics_address.find(':') == std::string::npos)
				fail(n["metrics_address"],
				     "agent.metrics_address must be host:port (127.0.0.1:9464)");
		}
		if (n["process_grace"])
			c->process_grace =
			    convert(n["process_grace"], "agent.process_grace", parse_duration);
		if (n["max_exited_processes"])
			c->max_exited = number(n["max_exited_processes"],
			                       "agent.max_exited_processes", 16, 10000000);
		if (n["ancestry_depth"])
			c->ancestry_depth = static_cast<uint32_t>(
			    number(n["ancestry_depth"], "agent.ancestry_depth", 0, 64));
		if (n["state_dir"]) {
			c->state_dir = str(n["state_dir"], "agent.state_dir");
			if (c->state_dir.empty() || c->state_dir[0] != '/')
				fail(n["state_dir"], "agent.state_dir must be an absolute path");
		}
		if (n["ring_buffer_size"]) {
			uint64_t b =
			    convert(n["ring_buffer_size"], "agent.ring_buffer_size", parse_size);
			if (b < 4096 || b > (1ULL << 30))
				fail(n["ring_buffer_size"],
				     "agent.ring_buffer_size must be 4KiB..1GiB");
			c->ring_buffer_bytes = static_cast<uint32_t>(b);
		}
		if (n["health_interval"]) {
			c->health_interval =
			    convert(n["health_interval"], "agent.health_interval", parse_duration);
			if (c->health_interval.count() < 100)
				fail(n["health_interval"],
				     "agent.health_interval must be at least 100ms");
		}
		if (n["connect_hold"])
			c->connect_hold =
			    convert(n["connect_hold"], "agent.connect_hold", parse_duration);
		if (n["events"])
			c->events = boolean(n["events"], "agent.events");
	}

	void tracking(const YAML::Node &n, Config *c) const
	{
		only_keys(n, "tracking", {"builtin_rules", "rules", "watch_paths", "clients"});
		if (n["clients"])
			clients(n["clients"], c);
		if (n["builtin_rules"])
			c->builtin_rules = boolean(n["builtin_rules"], "tracking.builtin_rules");
		if (n["watch_paths"]) {
			if (!n["watch_paths"].IsSequence())
				fail(n["watch_paths"],
				     "tracking.watch_paths must be a list of paths or globs");
			for (const auto &w : n["watch_paths"]) {
				std::string path = str(w, "a watch path");
				if (path.empty() || path[0] != '/')
					fail(w, "watch path '" + path + "' must be absolute");
				c->watch_paths.push_back(path);
			}
		}
		if (!n["rules"])
			return;
		const YAML::Node rules = n["rules"];
		if (!rules.IsSequence())
			fail(rules, "tracking.rules must be a list");
		for (const auto &r : rules) {
			only_keys(r, "a tracking rule", {"name", "exe", "argv", "parent", "uid"});
			TrackingRule rule;
			if (!r["name"])
				fail(r, "a tracking rule needs a name");
			rule.name = str(r["name"], "rule name");
			if (rule.name.empty())
				fail(r["name"], "rule name must not be empty");
			if (r["exe"])
				rule.exe = str(r["exe"], "rule exe");
			if (r["argv"]) {
				rule.argv_source = str(r["argv"], "rule argv");
				rule.argv = regex(r["argv"], "rule argv");
			}
			if (r["parent"]) {
				rule.parent_source = str(r["parent"], "rule parent");
				rule.parent = regex(r["parent"], "rule parent");
			}
			if (r["uid"]) {
				try {
					rule.uid = r["uid"].as<uid_t>();
				} catch (const YAML::Exception &) {
					fail(r["uid"], "rule uid must be a number");
				}
			}
			if (!rule.exe && !rule.argv && !rule.parent && !rule.uid)
				fail(r, "tracking rule '" + rule.name +
				            "' has no condition (exe, argv, parent or uid)");
			c->rules.push_back(std::move(rule));
		}
	}

	std::vector<std::string> records_list(const YAML::Node &n, const std::string &what) const
	{
		static const std::set<std::string> known = {
		    "alert",  "secret_use", "secret", "credential_file",
		    "health", "ready",      "reload", "exec",
		    "fork",   "exit",       "open",   "close",
		    "connect"};
		std::vector<std::string> out = str_list(n, what);
		for (size_t i = 0; i < out.size(); i++)
			if (!known.count(out[i]))
				fail(n[i], "unknown record type '" + out[i] + "' in " + what);
		return out;
	}

	void outputs(const YAML::Node &n, Config *c) const
	{
		if (!n.IsSequence())
			fail(n, "outputs must be a list");
		for (const auto &o : n) {
			only_keys(o, "an output",
			          {"type", "path", "format", "records", "max_size", "keep",
			           "facility", "app_name"});
			if (!o["type"])
				fail(o, "an output needs a type (stdout, file or syslog)");
			OutputSpec spec;
			spec.type = str(o["type"], "output type");
			if (spec.type == "file") {
				if (!o["path"])
					fail(o, "a file output needs a path");
				spec.path = str(o["path"], "output path");
				if (spec.path.empty() || spec.path[0] != '/')
					fail(o["path"], "a file output's path must be absolute");
			} else if (spec.type == "stdout") {
				if (o["path"])
					fail(o["path"], "a stdout output takes no path");
			} else if (spec.type == "syslog") {
				if (o["path"])
					spec.path = str(o["path"], "syslog socket path");
			} else {
				fail(o["type"], "unknown output type '" + spec.type +
				                    "' (stdout, file or syslog)");
			}
			if (spec.type != "file" && (o["max_size"] || o["keep"]))
				fail(o, "max_size and keep apply to file outputs only");
			if (spec.type != "syslog" && (o["facility"] || o["app_name"]))
				fail(o, "facility and app_name apply to syslog outputs only");
			if (o["format"]) {
				spec.format = str(o["format"], "output format");
				if (spec.format != "json" && spec.format != "ocsf")
					fail(o["format"], "output format must be json or ocsf");
			}
			if (o["records"])
				spec.records = records_list(o["records"], "output records");
			if (o["max_size"]) {
				spec.max_size =
				    convert(o["max_size"], "output max_size", parse_size);
				if (spec.max_size < 4096)
					fail(o["max_size"],
					     "output max_size must be at least 4KiB");
			}
			if (o["keep"])
				spec.keep = static_cast<uint32_t>(
				    number(o["keep"], "output keep", 0, 1000));
			if (o["facility"]) {
				spec.facility = str(o["facility"], "syslog facility");
				if (syslog_facility_code(spec.facility) < 0)
					fail(
					    o["facility"],
					    "unknown syslog facility '" + spec.facility +
					        "' (daemon, user, auth, authpriv, local0..local7)");
			}
			if (o["app_name"])
				spec.app_name = str(o["app_name"], "syslog app_name");
			c->outputs.push_back(spec);
		}
	}

	void journal(const YAML::Node &n, Config *c) const
	{
		only_keys(n, "journal",
		          {"enabled", "dir", "segment_size", "segment_age", "max_size", "max_age"});
		JournalConfig &j = c->journal;
		if (n["enabled"])
			j.enabled = boolean(n["enabled"], "journal.enabled");
		if (n["dir"]) {
			j.dir = str(n["dir"], "journal.dir");
			if (j.dir.empty() || j.dir[0] != '/')
				fail(n["dir"], "journal.dir must be an absolute path");
		}
		if (n["segment_size"]) {
			j.segment_size =
			    convert(n["segment_size"], "journal.segment_size", parse_size);
			if (j.segment_size < 4096)
				fail(n["segment_size"],
				     "journal.segment_size must be at least 4KiB");
		}
		if (n["segment_age"])
			j.segment_age =
			    convert(n["segment_age"], "journal.segment_age", parse_duration);
		if (n["max_size"])
			j.max_bytes = convert(n["max_size"], "journal.max_size", parse_size);
		if (n["max_age"])
			j.max_age = convert(n["max_age"], "journal.max_age", parse_duration);
	}

	void correlate(const YAML::Node &n, Config *c) const
	{
		only_keys(n, "correlate",
		          {"use_window", "loopback_upstreams", "dedupe_window",
		           "max_alerts_per_minute", "stale_check_interval", "degraded_drops",
		           "degraded_attribution_failures", "disabled_rules"});
		CorrelateConfig &k = c->correlate;
		if (n["use_window"])
			k.use_window =
			    convert(n["use_window"], "correlate.use_window", parse_duration);
		if (n["loopback_upstreams"])
			k.loopback_upstreams =
			    boolean(n["loopback_upstreams"], "correlate.loopback_upstreams");
		if (n["dedupe_window"])
			k.dedupe_window =
			    convert(n["dedupe_window"], "correlate.dedupe_window", parse_duration);
		if (n["max_alerts_per_minute"])
			k.max_alerts_per_minute = static_cast<uint32_t>(
			    number(n["max_alerts_per_minute"], "correlate.max_alerts_per_minute", 0,
			           1000000));
		if (n["stale_check_interval"]) {
			k.stale_check_interval =
			    convert(n["stale_check_interval"], "correlate.stale_check_interval",
			            parse_duration);
			if (k.stale_check_interval.count() < 1000)
				fail(n["stale_check_interval"],
				     "correlate.stale_check_interval must be at least 1s");
		}
		if (n["degraded_drops"])
			k.degraded_drops =
			    number(n["degraded_drops"], "correlate.degraded_drops", 0, UINT64_MAX);
		if (n["degraded_attribution_failures"])
			k.degraded_attribution_failures =
			    number(n["degraded_attribution_failures"],
			           "correlate.degraded_attribution_failures", 0, UINT64_MAX);
		if (n["disabled_rules"]) {
			auto known_rule = [](const std::string &id) {
				return find_rule(id) != nullptr;
			};
			k.disabled_rules =
			    str_list(n["disabled_rules"], "correlate.disabled_rules");
			for (size_t i = 0; i < k.disabled_rules.size(); i++)
				if (!known_rule(k.disabled_rules[i]))
					fail(n["disabled_rules"][i],
					     "unknown rule '" + k.disabled_rules[i] + "'");
		}
	}

	Config parse(const std::string &text) const
	{
		YAML::Node root;
		try {
			root = YAML::Load(text);
		} catch (const YAML::ParserException &e) {
			throw ConfigError(name_ + ":" + std::to_string(e.mark.line + 1) + ":" +
			                  std::to_string(e.mark.column + 1) + ": " + e.msg);
		}
		try {
			return parse(root);
		} catch (const YAML::Exception &e) {
			// yaml-cpp's own complaints (a bad conversion, an invalid node).
			throw ConfigError(name_ + ":" + std::to_string(e.mark.line + 1) + ":" +
			                  std::to_string(e.mark.column + 1) + ": " + e.msg);
		}
	}

	Config parse(const YAML::Node &root) const
	{
		Config c;
		c.source = name_;
		if (root.IsNull())
			return c; // an empty file means defaults
		only_keys(root, "the top level",
		          {"agent", "tracking", "outputs", "journal", "correlate", "identities",
		           "environments", "secrets", "inventory"});
		if (root["agent"])
			agent(root["agent"], &c);
		if (root["tracking"])
			tracking(root["tracking"], &c);
		if (root["outputs"])
			outputs(root["outputs"], &c);
		if (root["journal"])
			journal(root["journal"], &c);
		if (root["correlate"])
			correlate(root["correlate"], &c);
		if (root["identities"] && !root["identities"].IsNull())
			identities(root["identities"], &c);
		if (root["environments"] && !root["environments"].IsNull())
			environments(root["environments"], &c);
		if (root["secrets"])
			secrets(root["secrets"], &c);
		if (root["inventory"] && !root["inventory"].IsNull())
			inventory(root["inventory"], &c);
		return c;
	}

      private:
	std::string name_;
};

} // namespace

const InventoryEntry *match_inventory(const std::vector<InventoryEntry> &inv,
                                      const std::string &fingerprint, const std::string &source,
                                      const std::string &location, const std::string &name,
                                      const std::string &identity)
{
	for (const auto &e : inv) {
		if (!e.fingerprints.empty() &&
		    std::find(e.fingerprints.begin(), e.fingerprints.end(), fingerprint) ==
		        e.fingerprints.end())
			continue;
		if (e.path && !((source == "file" || source == "mcp_config") &&
		                glob_match(*e.path, location)))
			continue;
		if (e.env && !(source == "env" && glob_match(*e.env, name)))
			continue;
		if (e.identity && !glob_match(*e.identity, identity))
			continue;
		return &e;
	}
	return nullptr;
}

const std::vector<std::string> &known_selectors()
{
	static const std::vector<std::string> k = {"host",
	                                           "env",
	                                           "unix.uid",
	                                           "unix.user",
	                                           "unix.gid",
	                                           "unix.group",
	                                           "unix.exe",
	                                           "unix.sha256",
	                                           "cgroup.path",
	                                           "cgroup.runtime",
	                                           "cgroup.container_id",
	                                           "k8s.pod_uid",
	                                           "k8s.qos",
	                                           "systemd.unit",
	                                           "systemd.slice",
	                                           "mcp.server",
	                                           "mcp.client",
	                                           "mcp.transport",
	                                           "mcp.cwd"};
	return k;
}

Config parse_config(const std::string &text, const std::string &name)
{
	return Parser(name).parse(text);
}

Config load_config(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		throw ConfigError(path + ": cannot read config file");
	std::stringstream ss;
	ss << in.rdbuf();
	return parse_config(ss.str(), path);
}

std::chrono::milliseconds parse_duration(const std::string &s)
{
	size_t i = 0;
	while (i < s.size() && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 0 || i > 12)
		throw Error("'" + s + "' is not a duration (like 250ms, 30s, 5m, 12h, 90d)");
	uint64_t n = std::stoull(s.substr(0, i));
	std::string unit = s.substr(i);
	static const std::pair<const char *, uint64_t> units[] = {
	    {"ms", 1},      {"s", 1000},     {"m", 60000},
	    {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
	for (auto &[u, mult] : units)
		if (unit == u)
			return std::chrono::milliseconds(n * mult);
	throw Error("'" + s + "' has no known unit (ms, s, m, h, d, w)");
}

uint64_t parse_size(const std::string &s)
{
	size_t i = 0;
	while (i < s.size() && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 0 || i > 12)
		throw Error("'" + s + "' is not a size (like 4096, 512KiB, 8MiB)");
	uint64_t n = std::stoull(s.substr(0, i));
	std::string unit = s.substr(i);
	static const std::pair<const char *, uint64_t> units[] = {
	    {"", 1}, {"B", 1}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}};
	for (auto &[u, mult] : units)
		if (unit == u)
			return n * mult;
	throw Error("'" + s + "' has no known unit (B, KiB, MiB, GiB)");
}

} // namespace keytrail
