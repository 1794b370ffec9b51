// The agent's own sections: agent, tracking, outputs, journal, correlate,
// secrets.
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"
#include "parser.h"

namespace keytrail::config_detail
{

void Parser::agent(const YAML::Node &n, Config *c) const
{
	only_keys(n, "agent",
	          {"state_dir", "ring_buffer_size", "health_interval", "connect_hold", "events",
	           "process_grace", "max_exited_processes", "ancestry_depth", "metrics_address",
	           "host_name"});
	if (n["host_name"]) {
		c->host_name = str(n["host_name"], "agent.host_name");
		if (c->host_name.empty() || c->host_name.size() > 255 ||
		    c->host_name.find_first_of(" \t\r\n/\"") != std::string::npos)
			fail(n["host_name"], "agent.host_name must be 1-255 characters, without "
			                     "spaces, quotes or slashes");
	}
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
		c->max_exited =
		    number(n["max_exited_processes"], "agent.max_exited_processes", 16, 10000000);
	if (n["ancestry_depth"])
		c->ancestry_depth = static_cast<uint32_t>(
		    number(n["ancestry_depth"], "agent.ancestry_depth", 0, 64));
	if (n["state_dir"]) {
		c->state_dir = str(n["state_dir"], "agent.state_dir");
		if (c->state_dir.empty() || c->state_dir[0] != '/')
			fail(n["state_dir"], "agent.state_dir must be an absolute path");
	}
	if (n["ring_buffer_size"]) {
		uint64_t b = convert(n["ring_buffer_size"], "agent.ring_buffer_size", parse_size);
		if (b < 4096 || b > (1ULL << 30))
			fail(n["ring_buffer_size"], "agent.ring_buffer_size must be 4KiB..1GiB");
		c->ring_buffer_bytes = static_cast<uint32_t>(b);
	}
	if (n["health_interval"]) {
		c->health_interval =
		    convert(n["health_interval"], "agent.health_interval", parse_duration);
		if (c->health_interval.count() < 100)
			fail(n["health_interval"], "agent.health_interval must be at least 100ms");
	}
	if (n["connect_hold"])
		c->connect_hold = convert(n["connect_hold"], "agent.connect_hold", parse_duration);
	if (n["events"])
		c->events = boolean(n["events"], "agent.events");
}

void Parser::tracking(const YAML::Node &n, Config *c) const
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

void Parser::clients(const YAML::Node &n, Config *c) const
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

void Parser::outputs(const YAML::Node &n, Config *c) const
{
	if (!n.IsSequence())
		fail(n, "outputs must be a list");
	for (const auto &o : n) {
		only_keys(o, "an output",
		          {"type", "path", "format", "records", "max_size", "keep", "facility",
		           "app_name", "url", "database", "user", "password_file", "tls_ca",
		           "batch_rows", "batch_interval", "allow_host_key", "record_column"});
		if (!o["type"])
			fail(o, "an output needs a type (stdout, file, syslog or clickhouse)");
		OutputSpec spec;
		spec.line = static_cast<size_t>(o.Mark().line) + 1;
		spec.type = str(o["type"], "output type");
		bool ch = spec.type == "clickhouse";
		for (const char *k :
		     {"url", "database", "user", "password_file", "tls_ca", "batch_rows",
		      "batch_interval", "allow_host_key", "record_column"})
			if (!ch && o[k])
				fail(o[k], std::string(k) + " applies to clickhouse outputs only");
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
		} else if (ch) {
			clickhouse_output(o, &spec);
		} else {
			fail(o["type"], "unknown output type '" + spec.type +
			                    "' (stdout, file, syslog or clickhouse)");
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
			spec.max_size = convert(o["max_size"], "output max_size", parse_size);
			if (spec.max_size < 4096)
				fail(o["max_size"], "output max_size must be at least 4KiB");
		}
		if (o["keep"])
			spec.keep =
			    static_cast<uint32_t>(number(o["keep"], "output keep", 0, 1000));
		if (o["facility"]) {
			spec.facility = str(o["facility"], "syslog facility");
			if (syslog_facility_code(spec.facility) < 0)
				fail(o["facility"],
				     "unknown syslog facility '" + spec.facility +
				         "' (daemon, user, auth, authpriv, local0..local7)");
		}
		if (o["app_name"])
			spec.app_name = str(o["app_name"], "syslog app_name");
		c->outputs.push_back(spec);
	}
}

} // namespace keytrail::config_detail

namespace keytrail
{

bool valid_clickhouse_name(const std::string &name)
{
	if (name.empty() || name.size() > 64 || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (char ch : name)
		if (!(ch == '_' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= 'A' && ch <= 'Z')))
			return false;
	return true;
}

} // namespace keytrail

namespace keytrail::config_detail
{

void Parser::clickhouse_output(const YAML::Node &o, OutputSpec *spec) const
{
	if (o["path"] || o["format"])
		fail(o, "a clickhouse output takes no path or format (it ships JSON rows)");
	if (!o["url"])
		fail(o, "a clickhouse output needs a url (http://host:8123)");
	spec->url = str(o["url"], "clickhouse url");
	if (!spec->url.starts_with("http://") && !spec->url.starts_with("https://"))
		fail(o["url"], "a clickhouse url must start with http:// or https://");
	if (spec->url.find('?') != std::string::npos || spec->url.find('@') != std::string::npos)
		fail(o["url"], "a clickhouse url takes no query or user@ (use user and "
		               "password_file)");
	if (o["database"]) {
		spec->database = str(o["database"], "clickhouse database");
		if (!valid_clickhouse_name(spec->database))
			fail(o["database"], "a clickhouse database name is letters, digits and _");
	}
	if (o["user"])
		spec->user = str(o["user"], "clickhouse user");
	for (auto [k, dst] :
	     {std::pair{"password_file", &spec->password_file}, std::pair{"tls_ca", &spec->tls_ca}})
		if (o[k]) {
			*dst = str(o[k], std::string("clickhouse ") + k);
			if (dst->empty() || (*dst)[0] != '/')
				fail(o[k],
				     std::string("clickhouse ") + k + " must be an absolute path");
		}
	if (o["batch_rows"])
		spec->batch_rows = static_cast<uint32_t>(
		    number(o["batch_rows"], "clickhouse batch_rows", 1, 1000000));
	if (o["batch_interval"]) {
		spec->batch_interval =
		    convert(o["batch_interval"], "clickhouse batch_interval", parse_duration);
		if (spec->batch_interval.count() < 10 || spec->batch_interval.count() > 3600000)
			fail(o["batch_interval"], "clickhouse batch_interval must be 10ms..1h");
	}
	if (o["allow_host_key"])
		spec->allow_host_key = boolean(o["allow_host_key"], "clickhouse allow_host_key");
	if (o["record_column"])
		spec->record_column = records_list(o["record_column"], "clickhouse record_column");
}

void Parser::journal(const YAML::Node &n, Config *c) const
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
		j.segment_size = convert(n["segment_size"], "journal.segment_size", parse_size);
		if (j.segment_size < 4096)
			fail(n["segment_size"], "journal.segment_size must be at least 4KiB");
	}
	if (n["segment_age"])
		j.segment_age = convert(n["segment_age"], "journal.segment_age", parse_duration);
	if (n["max_size"])
		j.max_bytes = convert(n["max_size"], "journal.max_size", parse_size);
	if (n["max_age"])
		j.max_age = convert(n["max_age"], "journal.max_age", parse_duration);
}

void Parser::correlate(const YAML::Node &n, Config *c) const
{
	only_keys(n, "correlate",
	          {"use_window", "loopback_upstreams", "trusted_proxies", "dedupe_window",
	           "max_alerts_per_minute", "stale_check_interval", "degraded_drops",
	           "degraded_attribution_failures", "disabled_rules", "tool_call_linger",
	           "tool_call_timeout", "tool_baseline_window", "tool_call_startup_grace",
	           "tool_argument_keys"});
	CorrelateConfig &k = c->correlate;
	for (auto [key, dst] : {std::pair{"tool_call_linger", &k.tool_call_linger},
	                        std::pair{"tool_call_timeout", &k.tool_call_timeout},
	                        std::pair{"tool_baseline_window", &k.tool_baseline_window},
	                        std::pair{"tool_call_startup_grace", &k.tool_call_startup_grace}})
		if (n[key])
			*dst = convert(n[key], std::string("correlate.") + key, parse_duration);
	if (n["use_window"])
		k.use_window = convert(n["use_window"], "correlate.use_window", parse_duration);
	if (n["loopback_upstreams"])
		k.loopback_upstreams =
		    boolean(n["loopback_upstreams"], "correlate.loopback_upstreams");
	if (n["tool_argument_keys"])
		k.tool_argument_keys =
		    boolean(n["tool_argument_keys"], "correlate.tool_argument_keys");
	if (n["trusted_proxies"]) {
		k.trusted_proxies = str_list(n["trusted_proxies"], "correlate.trusted_proxies");
		for (const auto &p : k.trusted_proxies)
			if (p.find(':') == std::string::npos)
				fail(n["trusted_proxies"], "correlate.trusted_proxies entries are "
				                           "address:port (127.0.0.1:3128)");
	}
	if (n["dedupe_window"])
		k.dedupe_window =
		    convert(n["dedupe_window"], "correlate.dedupe_window", parse_duration);
	if (n["max_alerts_per_minute"])
		k.max_alerts_per_minute = static_cast<uint32_t>(number(
		    n["max_alerts_per_minute"], "correlate.max_alerts_per_minute", 0, 1000000));
	if (n["stale_check_interval"]) {
		k.stale_check_interval = convert(n["stale_check_interval"],
		                                 "correlate.stale_check_interval", parse_duration);
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
		const YAML::Node list = n["disabled_rules"];
		k.disabled_rules = str_list(list, "correlate.disabled_rules");
		for (size_t i = 0; i < k.disabled_rules.size(); i++)
			if (!find_rule(k.disabled_rules[i]))
				fail(list.IsSequence() ? list[i] : list,
				     "unknown rule '" + k.disabled_rules[i] +
				         "' in correlate.disabled_rules (rules: " + rule_ids() +
				         ")");
	}
}

void Parser::secrets(const YAML::Node &n, Config *c) const
{
	only_keys(
	    n, "secrets",
	    {"fingerprint_key_file", "paths", "max_file_size", "scan_mcp_configs", "mcp_configs"});
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
		c->max_file_size = convert(n["max_file_size"], "secrets.max_file_size", parse_size);
		if (c->max_file_size < 1024 || c->max_file_size > (64u << 20))
			fail(n["max_file_size"], "secrets.max_file_size must be 1KiB..64MiB");
	}
	if (n["scan_mcp_configs"])
		c->scan_mcp_configs = boolean(n["scan_mcp_configs"], "secrets.scan_mcp_configs");
}

} // namespace keytrail::config_detail
