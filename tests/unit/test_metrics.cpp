// The Prometheus exposition of a health record, and the server behind it.
#include <gtest/gtest.h>
#include <httplib.h>

#include <regex>
#include <set>
#include <sstream>

#include "keytrail/agent/health.h"
#include "keytrail/output/metrics.h"
#include "keytrail/util/error.h"

using namespace keytrail;

TEST(Metrics, EveryLineIsValidExpositionFormat)
{
	nlohmann::json h = {
	    {"uptime_seconds", 12.5},
	    {"kernel", {{"events", 1000}, {"drops_by_type", {{"exec", 2}, {"open", 0}}}}},
	    {"agent", {{"attribution_failures", 3}}},
	    {"processes", {{"live", 40}, {"tracked", 2}, {"exited_kept", 5}}},
	    {"correlator",
	     {{"secret_uses", 7},
	      {"alerts_by_rule", {{"shared_credential", 1}}},
	      {"alerts_deduplicated", 4},
	      {"alerts_rate_limited", 0}}},
	    {"outputs",
	     {{{"name", "file:/var/log/a \"b\"\\c\nd"}, {"written", 9}, {"healthy", false}}}},
	    {"latency_ms", {{"samples", 3}, {"p50", 1.5}, {"p99", 20.0}}}};
	std::string text = prometheus_text(health_metrics(h));
	std::regex sample(
	    R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? -?[0-9.e+]+$)");
	std::istringstream in(text);
	std::string line;
	int samples = 0;
	while (std::getline(in, line)) {
		if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0)
			continue;
		EXPECT_TRUE(std::regex_match(line, sample)) << line;
		samples++;
	}
	EXPECT_GT(samples, 20);
	EXPECT_NE(text.find("keytrail_kernel_drops_total{type=\"exec\"} 2\n"), std::string::npos);
	EXPECT_NE(text.find("keytrail_alerts_total{rule=\"shared_credential\"} 1\n"),
	          std::string::npos);
	EXPECT_NE(text.find("keytrail_event_to_record_seconds{quantile=\"0.99\"} 0.02\n"),
	          std::string::npos);
	EXPECT_NE(text.find(R"(output="file:/var/log/a \"b\"\\c\nd")"), std::string::npos);
	EXPECT_NE(text.find("keytrail_processes{state=\"tracked\"} 2\n"), std::string::npos);
	EXPECT_NE(text.find("keytrail_agent_attribution_failures_total 3\n"), std::string::npos);
	EXPECT_NE(text.find("keytrail_build_info{version=\""), std::string::npos);
}

// Every family is written whole: its HELP and TYPE, then all its samples,
// before the next family starts (a parser types samples by the last TYPE).
TEST(Metrics, FamiliesAreContiguous)
{
	nlohmann::json h = {{"outputs",
	                     {{{"name", "a"}, {"written", 1}, {"healthy", true}},
	                      {{"name", "b"}, {"written", 2}, {"healthy", false}}}}};
	std::istringstream in(prometheus_text(health_metrics(h)));
	std::string line, family;
	std::set<std::string> done;
	while (std::getline(in, line)) {
		if (line.rfind("# TYPE ", 0) == 0) {
			if (!family.empty())
				done.insert(family);
			family = line.substr(7, line.find(' ', 7) - 7);
			EXPECT_EQ(done.count(family), 0u) << family << " typed twice";
			continue;
		}
		if (line.rfind("# ", 0) == 0)
			continue;
		std::string name = line.substr(0, line.find_first_of("{ "));
		EXPECT_TRUE(name == family || name == family + "_count" || name == family + "_sum")
		    << name << " under " << family;
	}
}

TEST(Metrics, BadAddressesAreClearErrors)
{
	EXPECT_THROW(MetricsServer("127.0.0.1"), Error);
	EXPECT_THROW(MetricsServer("127.0.0.1:99999"), Error);
	EXPECT_THROW(MetricsServer("203.0.113.1:9464"), Error); // not an address of this host
	MetricsServer ok("127.0.0.1:0");
	EXPECT_GT(ok.port(), 0);
	// A port in use says so.
	try {
		MetricsServer again("127.0.0.1:" + std::to_string(ok.port()));
		ADD_FAILURE() << "bound a port in use";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("Address already in use"), std::string::npos)
		    << e.what();
	}
}

TEST(Metrics, HealthzIsOkOnlyWhileHealthy)
{
	MetricsServer m("127.0.0.1:0");
	httplib::Client c("127.0.0.1", m.port());
	auto r = c.Get("/healthz");
	ASSERT_TRUE(r);
	EXPECT_EQ(r->status, 503) << "not healthy before the first publish";
	m.publish("keytrail_up 1\n", true);
	r = c.Get("/healthz");
	ASSERT_TRUE(r);
	EXPECT_EQ(r->status, 200);
	EXPECT_EQ(r->body, "ok\n");
	m.publish("keytrail_up 1\n", false, "output file:/x is failing: disk full");
	r = c.Get("/healthz");
	ASSERT_TRUE(r);
	EXPECT_EQ(r->status, 503);
	EXPECT_NE(r->body.find("disk full"), std::string::npos);
}
