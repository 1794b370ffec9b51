// The responder tools on what the real agent wrote: a tracked MCP server
// reads a token from a .env file with `cat`, holds another in its
// environment, and spawns curl, which connects out.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <png.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>

#include "support/agent_process.h"
#include "support/fake_secrets.h"

using namespace keytrail::test;

namespace
{

uint16_t listen_loopback(int *fd)
{
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in sa{};
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(*fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa));
	listen(*fd, 16);
	socklen_t len = sizeof(sa);
	getsockname(*fd, reinterpret_cast<sockaddr *>(&sa), &len);
	return ntohs(sa.sin_port);
}

std::string host_name()
{
	char buf[256] = "";
	gethostname(buf, sizeof(buf) - 1);
	return buf;
}

std::string run_out(const std::string &cmd, int *rc)
{
	std::string out = temp_dir() + "/out";
	*rc = run_cmd(cmd + " > " + out + " 2>&1");
	return slurp(out);
}

} // namespace

TEST(Tools, TraceRebuildsThePivotFromTheRealJournal)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	int lfd;
	uint16_t port = listen_loopback(&lfd);
	const std::string env_tok = token("ghp_", 36, 61), file_tok = token("sk-proj-", 48, 62);
	std::ofstream(dir + "/.env") << "OPENAI_API_KEY=" << file_tok << "\n";
	std::string server = dir + "/mcp-server-kttrace";
	std::ofstream(server) << "#!/bin/sh\nsleep 0.2\ncat " << dir << "/.env > /dev/null\n"
	                      << "curl -s -m 0.5 -H 'Host: api.kt.test' http://127.0.0.1:" << port
	                      << "/ > /dev/null\nexit 0\n";
	chmod(server.c_str(), 0755);
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n"
	                                 << "secrets:\n  scan_mcp_configs: false\n"
	                                 << "correlate:\n  loopback_upstreams: true\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + env_tok + " " + server), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("\"secret_use\"") != std::string::npos; }, 8000));
	EXPECT_EQ(a.stop(), 0);
	close(lfd);
	std::string state = dir + "/state", bin = KEYTRAIL_BINARY;
	std::string env_fp = fingerprint_of(env_tok, state),
	            file_fp = fingerprint_of(file_tok, state);

	// The env token: the server holds it, its curl child used it toward the listener.
	int rc;
	std::string js =
	    run_out(bin + " trace --state-dir " + state + " --secret " + env_fp + " -f json", &rc);
	ASSERT_EQ(rc, 0) << js;
	auto j = nlohmann::json::parse(js);
	bool server_holds = false, curl_used = false;
	for (const auto &p : j["processes"]) {
		for (const auto &s : p["secrets"])
			server_holds = server_holds || (s["fingerprint"] == env_fp &&
			                                p["mcp_server"] == "mcp-server-kttrace");
		for (const auto &u : p["upstreams"])
			if (p["comm"] == "curl" && u["port"] == port && u["name"] == "api.kt.test")
				curl_used = curl_used || (u["secrets_used"].size() == 1 &&
				                          u["secrets_used"][0] == env_fp);
		if (p["mcp_server"] == "mcp-server-kttrace") {
			EXPECT_FALSE(p["start"].get<std::string>().empty()) << p.dump();
		}
	}
	EXPECT_TRUE(server_holds) << js;
	EXPECT_TRUE(curl_used) << js;

	// The file token: `cat` read it; curl, its sibling, connected after.
	std::string tree = run_out(
	    bin + " trace --state-dir " + state + " --secret " + file_fp.substr(0, 12), &rc);
	ASSERT_EQ(rc, 0) << tree;
	EXPECT_NE(tree.find("* secret openai_api_key " + file_fp.substr(0, 12) + " from file " +
	                    dir + "/.env"),
	          std::string::npos)
	    << tree;
	EXPECT_NE(tree.find("> connect api.kt.test:" + std::to_string(port)), std::string::npos)
	    << tree;
	EXPECT_NE(tree.find("exited"), std::string::npos);

	std::string dot = run_out(bin + " trace --state-dir " + state + " --identity " +
	                              "spiffe://keytrail.local/" + host_name() +
	                              "/mcp-server-kttrace/root -f dot",
	                          &rc);
	ASSERT_EQ(rc, 0) << dot;
	EXPECT_EQ(dot.rfind("digraph keytrail {", 0), 0u);
	EXPECT_NE(dot.find("shape=hexagon"), std::string::npos);
	EXPECT_NE(dot.find("shape=cylinder"), std::string::npos);

	// Nothing matches: exit 1 with a reason; no query: exit 2.
	EXPECT_NE(run_out(bin + " trace --state-dir " + state + " --exec-id nope", &rc)
	              .find("nothing in the journal matches"),
	          std::string::npos);
	EXPECT_EQ(rc, 1);
	run_out(bin + " trace --state-dir " + state, &rc);
	EXPECT_EQ(rc, 2);
	// No secret in any of it.
	for (const std::string &out : {js, tree, dot}) {
		EXPECT_EQ(out.find(env_tok), std::string::npos);
		EXPECT_EQ(out.find(file_tok), std::string::npos);
	}
}

namespace
{

struct Image {
	int w = 0, h = 0;
	std::vector<unsigned char> rgba;
	bool near(int x, int y, int r, int g, int b, int tol = 12) const
	{
		const unsigned char *p = &rgba[(static_cast<size_t>(y) * w + x) * 4];
		return std::abs(p[0] - r) <= tol && std::abs(p[1] - g) <= tol &&
		       std::abs(p[2] - b) <= tol;
	}
};

bool read_png(const std::string &path, Image *img)
{
	png_image pi{};
	pi.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_file(&pi, path.c_str()))
		return false;
	pi.format = PNG_FORMAT_RGBA;
	img->w = static_cast<int>(pi.width);
	img->h = static_cast<int>(pi.height);
	img->rgba.resize(PNG_IMAGE_SIZE(pi));
	return png_image_finish_read(&pi, nullptr, img->rgba.data(), 0, nullptr) != 0;
}

} // namespace

TEST(Tools, ReportHtmlRendersItsSummaryInHeadlessChromium)
{
	std::string dir = temp_dir();
	chmod(dir.c_str(), 0755);
	const std::string tok = token("ghp_", 36, 71);
	std::string a_srv = dir + "/mcp-server-ktrep-a", b_srv = dir + "/mcp-server-ktrep-b";
	for (const auto &s : {a_srv, b_srv}) {
		std::ofstream(s) << "#!/bin/sh\nsleep 0.3\n";
		chmod(s.c_str(), 0755);
	}
	std::ofstream(dir + "/cfg.yaml") << "agent:\n  state_dir: " << dir << "/state\n"
	                                 << "secrets:\n  scan_mcp_configs: false\n";
	AgentProcess a({"run", "--config", dir + "/cfg.yaml", "-o", dir + "/out.jsonl"}, dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + a_srv), 0);
	ASSERT_EQ(run_cmd("GITHUB_TOKEN=" + tok + " " + b_srv), 0);
	ASSERT_TRUE(a.wait_until(
	    [&] { return slurp(a.out()).find("shared_credential") != std::string::npos; }, 8000));
	EXPECT_EQ(a.stop(), 0);

	std::string bin = KEYTRAIL_BINARY, html = dir + "/report.html";
	ASSERT_EQ(run_cmd(bin + " report --state-dir " + dir + "/state -c " + dir +
	                  "/cfg.yaml -f html -o " + html),
	          0);
	std::string page = slurp(html);
	EXPECT_NE(page.find("shared_credential"), std::string::npos);
	EXPECT_EQ(page.find(tok), std::string::npos);

	// Chromium as this machine allows it: headless, no sandbox (root), no
	// network chatter, a fresh profile.
	std::string chrome = "chromium --headless --no-sandbox --disable-gpu --disable-quic "
	                     "--no-first-run --disable-background-networking "
	                     "--disable-component-update --disable-sync --user-data-dir=" +
	                     dir + "/profile --window-size=1200,800 ";
	std::string shot = dir + "/shot.png";
	ASSERT_EQ(run_cmd(chrome + "--screenshot=" + shot + " file://" + html + " >" + dir +
	                  "/chrome.log 2>&1"),
	          0)
	    << slurp(dir + "/chrome.log");
	Image img;
	ASSERT_TRUE(read_png(shot, &img)) << "no screenshot";
	ASSERT_EQ(img.w, 1200);
	// The header band (#7a1f2b) across the top, then the summary cards:
	// white boxes on the page's grey (#f6f7f9), left to right.
	int header = 0;
	for (int x = 0; x < img.w; x += 10)
		header += img.near(x, 10, 0x7a, 0x1f, 0x2b);
	EXPECT_GT(header, 100) << "the header did not render";
	int header_bottom = 0;
	for (int y = 0; y < 200 && !header_bottom; y++)
		if (!img.near(600, y, 0x7a, 0x1f, 0x2b))
			header_bottom = y;
	ASSERT_GT(header_bottom, 20);
	int white = 0, grey = 0, dark = 0;
	for (int y = header_bottom + 20; y < header_bottom + 90; y += 2)
		for (int x = 28; x < 700; x += 4) {
			white += img.near(x, y, 255, 255, 255, 2);
			grey += img.near(x, y, 0xf6, 0xf7, 0xf9, 2);
			const unsigned char *p =
			    &img.rgba[(static_cast<size_t>(y) * img.w + x) * 4];
			dark += p[0] < 80 && p[1] < 80 && p[2] < 80; // the numbers and labels
		}
	EXPECT_GT(white, 1000) << "no summary cards";
	EXPECT_GT(grey, 100) << "no gaps between the cards";
	EXPECT_GT(dark, 20) << "the cards have no text";
	// And the rendered page says what the summary should.
	std::string dom = dir + "/dom.html";
	ASSERT_EQ(run_cmd(chrome + "--dump-dom file://" + html + " >" + dom + " 2>/dev/null"), 0);
	std::string rendered = slurp(dom);
	EXPECT_NE(rendered.find("credentials seen"), std::string::npos);
	EXPECT_NE(rendered.find("shared_credential"), std::string::npos);

	// The details are visible text, not tooltips: the DOM holds a title
	// attribute too, so ask the renderer. innerText is the text as laid out
	// (no title attributes, nothing hidden); a copy of the page writes it
	// into the DOM, next to two controls that must not show.
	std::string probe = dir + "/probe.html";
	std::string with_probe = page;
	with_probe.insert(
	    with_probe.rfind("</body>"),
	    "<span title=\"kt-tooltip-control\">.</span>"
	    "<span style=\"display:none\">kt-hidden-control</span>"
	    "<script>(function(){var p=document.createElement('pre');p.id='kt-visible';"
	    "p.textContent=document.body.innerText;document.documentElement.appendChild(p);})();"
	    "</script>");
	std::ofstream(probe) << with_probe;
	ASSERT_EQ(run_cmd(chrome + "--dump-dom file://" + probe + " >" + dom + " 2>/dev/null"), 0);
	std::string probed = slurp(dom);
	size_t at = probed.find("<pre id=\"kt-visible\">");
	ASSERT_NE(at, std::string::npos) << probed;
	std::string visible = probed.substr(at, probed.find("</pre>", at) - at);
	EXPECT_EQ(visible.find("kt-tooltip-control"), std::string::npos); // the method works
	EXPECT_EQ(visible.find("kt-hidden-control"), std::string::npos);
	// And on paper: printed to PDF, its text read back with pdftotext.
	std::string pdf = dir + "/report.pdf";
	ASSERT_EQ(run_cmd(chrome + "--no-pdf-header-footer --print-to-pdf=" + pdf + " file://" +
	                  html + " >" + dir + "/chrome.log 2>&1"),
	          0)
	    << slurp(dir + "/chrome.log");
	int rc = 0;
	std::string printed = run_out("pdftotext -layout " + pdf + " - 2>&1", &rc);
	ASSERT_EQ(rc, 0) << "pdftotext (poppler-utils, installed by tools/setup.sh): " << printed;
	const std::regex timestamp("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ");
	for (const std::string *text : {&visible, &printed}) {
		const char *where = text == &visible ? "on screen" : "printed";
		for (const char *want :
		     {"shared_credential: 2 identities hold it", "Sources", "env GITHUB_TOKEN",
		      "Risk score", "critical 10", "first seen", "last used"})
			EXPECT_NE(text->find(want), std::string::npos)
			    << "not visible " << where << ": " << want << "\n"
			    << *text;
		EXPECT_TRUE(std::regex_search(*text, timestamp)) << where << "\n" << *text;
		EXPECT_EQ(text->find(tok), std::string::npos);
	}
}

TEST(Tools, StatusAndPrometheusMetricsFromTheRunningAgent)
{
	std::string dir = temp_dir();
	AgentProcess a({"run", "--state-dir", dir + "/state", "--metrics", "127.0.0.1:0", "-o",
	                dir + "/out.jsonl"},
	               dir);
	ASSERT_TRUE(a.wait_ready()) << slurp(a.err());
	int port = 0;
	for (auto &r : records(a.out()))
		if (r["type"] == "ready")
			port = r.value("metrics_port", 0);
	ASSERT_GT(port, 0);
	std::string bin = KEYTRAIL_BINARY;
	// The status file appears with the first health (at start).
	ASSERT_TRUE(a.wait_until([&] { return !slurp(dir + "/state/status.json").empty(); }, 5000));
	int rc;
	std::string st = run_out(bin + " status --state-dir " + dir + "/state", &rc);
	EXPECT_EQ(rc, 0) << st;
	EXPECT_NE(st.find("agent:        running"), std::string::npos) << st;
	EXPECT_NE(st.find("programs attached"), std::string::npos) << st;
	std::string metrics;
	ASSERT_TRUE(a.wait_until(
	    [&] {
		    metrics = run_out(
		        "curl -s http://127.0.0.1:" + std::to_string(port) + "/metrics", &rc);
		    return metrics.find("keytrail_kernel_events_total") != std::string::npos;
	    },
	    5000))
	    << metrics;
	EXPECT_NE(metrics.find("# TYPE keytrail_correlator_alerts_deduplicated_total counter"),
	          std::string::npos);
	EXPECT_NE(metrics.find("keytrail_output_healthy{output="), std::string::npos);
	EXPECT_NE(metrics.find("keytrail_build_info{"), std::string::npos);
	// A real parser (Prometheus' Python client) reads every family, typed.
	std::ofstream(dir + "/metrics.txt") << metrics;
	std::string parsed =
	    run_out("/usr/bin/python3 -c 'import sys\n"
	            "from prometheus_client.parser import text_string_to_metric_families as f\n"
	            "fams = list(f(open(sys.argv[1]).read()))\n"
	            "bad = [x.name for x in fams if x.type == \"unknown\"]\n"
	            "print(len(fams), \"families\", \"untyped:\", bad)\n"
	            "sys.exit(1 if bad or not fams else 0)' " +
	                dir + "/metrics.txt 2>&1",
	            &rc);
	EXPECT_EQ(rc, 0) << parsed;
	EXPECT_NE(parsed.find("untyped: []"), std::string::npos) << parsed;
	// Healthy while the probes are attached and the outputs write.
	std::string healthz = run_out(
	    "curl -s -w ' %{http_code}' http://127.0.0.1:" + std::to_string(port) + "/healthz",
	    &rc);
	EXPECT_EQ(healthz, "ok\n 200");
	// Where things are, said once at start.
	std::string err = slurp(a.err());
	EXPECT_NE(err.find("probes attached: "), std::string::npos) << err;
	EXPECT_NE(err.find("state dir " + dir + "/state"), std::string::npos) << err;
	EXPECT_NE(err.find("records to file:" + dir + "/out.jsonl"), std::string::npos) << err;
	EXPECT_EQ(a.stop(), 0);
	st = run_out(bin + " status --state-dir " + dir + "/state", &rc);
	EXPECT_EQ(rc, 3) << st; // stopped
	EXPECT_NE(st.find("not running"), std::string::npos);
	EXPECT_EQ(run_out(bin + " status --state-dir " + dir + "/nope", &rc).find("has not run") ==
	              std::string::npos,
	          false);
	EXPECT_EQ(rc, 4);
}
