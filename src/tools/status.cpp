#include "keytrail/tools/status.h"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "keytrail/ledger/ledger.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"
#include "keytrail/util/text.h"

namespace keytrail
{

namespace
{

// The pid is ours only if it still runs keytrail (pids are reused).
bool agent_running(int pid)
{
	if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
		return false;
	std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
	std::string comm;
	std::getline(in, comm);
	return comm == "keytrail";
}

template <typename T> T at(const nlohmann::json &j, const char *a, const char *b, T dflt)
{
	if (!j.contains(a) || !j[a].is_object() || !j[a].contains(b))
		return dflt;
	return j[a][b].get<T>();
}

} // namespace

nlohmann::json read_status(const std::string &state_dir)
{
	std::string path = state_dir + "/status.json";
	std::ifstream in(path);
	if (!in)
		throw Error("no " + path + ": the agent has not run with state dir " + state_dir +
		            " (start it with `keytrail run`, or pass --state-dir)");
	auto st = nlohmann::json::parse(in, nullptr, false);
	if (st.is_discarded() || !st.is_object())
		throw Error(path + " is not valid JSON");
	bool written_running = st.value("running", false);
	st["running"] = written_running && agent_running(st.value("pid", 0));
	int64_t written = 0;
	if (st.contains("time") && st["time"].is_string())
		parse_rfc3339(st["time"].get<std::string>(), &written);
	struct stat sb;
	if (stat(path.c_str(), &sb) == 0 && !written)
		written = static_cast<int64_t>(sb.st_mtime) * 1000000000LL;
	st["status_age_seconds"] =
	    written ? static_cast<double>(wall_now_ns() - written) / 1e9 : -1.0;
	double up = st.value("uptime_seconds", 0.0);
	st["events_per_second"] =
	    up > 0 ? static_cast<double>(at<uint64_t>(st, "kernel", "events", 0)) / up : 0.0;
	try {
		Ledger ledger(state_dir + "/ledger.db", true);
		st["secrets_known"] = ledger.secrets().size();
	} catch (const Error &) {
		st["secrets_known"] = nullptr; // no ledger yet
	}
	return st;
}

std::string status_text(const nlohmann::json &st)
{
	std::ostringstream o;
	bool running = st.value("running", false);
	o << "agent:        " << (running ? "running" : "not running");
	if (st.contains("pid"))
		o << " (pid " << st["pid"].get<int>() << (running ? "" : ", last seen") << ")";
	o << "\n";
	o << "reported:     " << st.value("time", std::string("?")) << " ("
	  << static_cast<int64_t>(st.value("status_age_seconds", -1.0)) << " s ago)\n";
	if (st.contains("programs"))
		o << "probes:       "
		  << (st["programs"].is_array() ? st["programs"].size()
		                                : st["programs"].get<size_t>())
		  << " programs attached in " << st.value("attach_seconds", 0.0) << " s\n";
	o << "events:       " << at<uint64_t>(st, "kernel", "events", 0) << " ("
	  << static_cast<uint64_t>(st.value("events_per_second", 0.0)) << "/s over "
	  << static_cast<uint64_t>(st.value("uptime_seconds", 0.0)) << " s)\n";
	o << "drops:        " << at<uint64_t>(st, "kernel", "drops", 0) << " kernel, "
	  << at<uint64_t>(st, "agent", "output_dropped", 0) << " output\n";
	o << "attribution:  " << at<uint64_t>(st, "agent", "attribution_failures", 0)
	  << " failures, " << at<uint64_t>(st, "agent", "identities_degraded", 0)
	  << " degraded identities\n";
	o << "processes:    " << at<uint64_t>(st, "processes", "tracked", 0) << " tracked, "
	  << at<uint64_t>(st, "processes", "live", 0) << " known\n";
	o << "secrets:      ";
	if (st.contains("secrets_known") && !st["secrets_known"].is_null())
		o << st["secrets_known"].get<uint64_t>() << " in the ledger, ";
	o << at<uint64_t>(st, "secrets", "obtained", 0) << " sightings this run";
	if (st.contains("key_id") && st["key_id"].is_string()) // hosts of a fleet share it
		o << "; fingerprint key " << sanitize_utf8(st["key_id"].get<std::string>());
	o << "\n";
	if (st.contains("correlator")) {
		auto c = [&](const char *k) { return at<uint64_t>(st, "correlator", k, 0); };
		o << "findings:     " << c("findings") << " open; " << c("secret_uses")
		  << " secret uses; " << c("alerts") - c("alert_updates") << " alerts, "
		  << c("alert_updates") << " updates (" << c("alerts_deduplicated") << " repeats, "
		  << c("alerts_excepted") << " excepted, " << c("alerts_rate_limited")
		  << " rate-limited)\n";
		o << "connects:     not upstreams: " << c("connects_ignored_loopback")
		  << " loopback, " << c("connects_ignored_dns") << " dns, "
		  << c("connects_ignored_failed") << " failed, " << c("connects_ignored_no_peer")
		  << " no peer, " << c("connects_ignored_not_inet") << " unix/netlink; "
		  << c("launcher_fetches") << " package-runner fetches\n";
	}
	if (st.contains("outputs"))
		for (const auto &s : st["outputs"]) {
			o << "output:       " << sanitize_utf8(s.value("name", std::string("?")))
			  << ": " << (s.value("healthy", false) ? "ok" : "FAILING") << ", "
			  << s.value("written", 0) << " written, " << s.value("errors", 0)
			  << " errors, " << s.value("dropped", 0) << " dropped";
			if (s.contains("lag_seconds"))
				o << ", " << s.value("retries", 0) << " retries, lag "
				  << s.value("lag_seconds", 0.0) << " s, spool "
				  << s.value("spool_bytes", 0) << " bytes";
			if (s.contains("last_error"))
				o << " (last error: " << s["last_error"].get<std::string>() << ")";
			o << "\n";
		}
	if (st.contains("latency_ms") && st["latency_ms"].contains("p99"))
		o << "latency:      p50 " << st["latency_ms"]["p50"].get<double>() << " ms, p99 "
		  << st["latency_ms"]["p99"].get<double>() << " ms (event to alert)\n";
	return o.str();
}

} // namespace keytrail
