// Sinks, the async Output, the journal and OCSF, without a kernel.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "keytrail/output/journal.h"
#include "keytrail/output/ocsf.h"
#include "keytrail/output/output.h"
#include "keytrail/schema/record.h"
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"

using namespace keytrail;
using nlohmann::json;

namespace
{

std::string temp_dir()
{
	std::string t = ::testing::TempDir() + "/kt-out-XXXXXX";
	char *d = mkdtemp(t.data());
	return d ? d : "";
}

std::string gunzip(const std::string &path)
{
	gzFile gz = gzopen(path.c_str(), "rb");
	std::string out;
	if (!gz)
		return out;
	char buf[4096];
	int n;
	while ((n = gzread(gz, buf, sizeof(buf))) > 0)
		out.append(buf, n);
	gzclose(gz);
	return out;
}

mode_t mode_of(const std::string &p)
{
	struct stat st {
	};
	stat(p.c_str(), &st);
	return st.st_mode & 0777;
}

// Fails its first `failures` writes, then records lines.
class FlakySink : public Sink
{
      public:
	explicit FlakySink(int failures) : failures_(failures) {}
	bool write(std::string_view line, const LineMeta &) override
	{
		if (failures_ > 0) {
			failures_--;
			errno = ENOSPC;
			return false;
		}
		std::lock_guard lock(mu);
		lines.emplace_back(line);
		return true;
	}
	bool reopen() override
	{
		reopens++;
		return true;
	}
	std::string name() const override { return "flaky"; }
	std::mutex mu;
	std::vector<std::string> lines;
	std::atomic<int> reopens{0};

      private:
	std::atomic<int> failures_;
};

// Blocks every write until released.
class StuckSink : public Sink
{
      public:
	bool write(std::string_view, const LineMeta &) override
	{
		while (!release)
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
		return true;
	}
	std::string name() const override { return "stuck"; }
	std::atomic<bool> release{false};
};

} // namespace

TEST(FileSink, RotatesBySizeAndKeepsGzipSegments)
{
	std::string dir = temp_dir();
	std::string path = dir + "/sub/alerts.jsonl";
	{
		FileSink s(path, 4096, 3);
		std::string line(300, 'x');
		for (int i = 0; i < 100; i++) {
			std::string l = std::to_string(i) + line;
			ASSERT_TRUE(s.write(l, {}));
			ASSERT_TRUE(s.flush());
		}
		auto segs = s.segments();
		EXPECT_EQ(segs.size(), 3u);
		for (const auto &g : segs) {
			EXPECT_EQ(mode_of(g), 0600u);
			std::string content = gunzip(g);
			EXPECT_GT(content.size(), 3000u);
			EXPECT_LE(content.size(), 4096u);
			EXPECT_EQ(content.back(), '\n');
		}
		// The newest line is in the live file.
		std::ifstream in(path);
		std::string all((std::istreambuf_iterator<char>(in)), {});
		EXPECT_NE(all.find("99xxx"), std::string::npos);
	}
	EXPECT_EQ(mode_of(path), 0600u);
	EXPECT_EQ(mode_of(dir + "/sub"), 0700u);
}

TEST(FileSink, NeverRotatesWhatIsNotARegularFile)
{
	// `-o /dev/null` once renamed /dev/null away and left a regular file in
	// its place. A FIFO stands in for the device here.
	std::string dir = temp_dir();
	std::string fifo = dir + "/out.pipe";
	ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
	int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
	ASSERT_GE(reader, 0);
	{
		FileSink s(fifo, 1024, 3);
		std::string line(200, 'x'), drain(65536, '\0');
		for (int i = 0; i < 50; i++) {
			ASSERT_TRUE(s.write(line, {}));
			ASSERT_TRUE(s.flush());
			(void)!read(reader, drain.data(), drain.size());
		}
		EXPECT_TRUE(s.segments().empty());
	}
	close(reader);
	struct stat st;
	ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
	EXPECT_TRUE(S_ISFIFO(st.st_mode));
	EXPECT_EQ(mode_of(fifo), 0600u);
}

TEST(SyslogSink, WritesRfc5424AndRecoversWhenTheDaemonReturns)
{
	std::string dir = temp_dir();
	std::string sock = dir + "/log";
	SyslogSink s(sock, syslog_facility_code("local3"), "keytrail");
	// No daemon yet: a failure, not a crash.
	EXPECT_FALSE(s.write("{}", {}));
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	std::strcpy(sa.sun_path, sock.c_str());
	ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
	ASSERT_TRUE(s.reopen());
	int64_t t = 1795000000LL * 1000000000LL;
	ASSERT_TRUE(s.write(R"({"type":"alert"})", LineMeta{"alert", 3, t}));
	char buf[2048];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	ASSERT_GT(n, 0);
	std::string msg(buf, n);
	// local3 (19) * 8 + err (3) = 155
	EXPECT_EQ(msg.rfind("<155>1 " + rfc3339(t) + " ", 0), 0u) << msg;
	EXPECT_NE(
	    msg.find(" keytrail " + std::to_string(getpid()) + " alert - {\"type\":\"alert\"}"),
	    std::string::npos)
	    << msg;
	close(fd);
}

TEST(Output, RetriesAFailingSinkAndCountsTheFailures)
{
	auto flaky = std::make_unique<FlakySink>(3);
	FlakySink *f = flaky.get();
	Output out;
	out.add(std::move(flaky));
	out.emit(json{{"type", "alert"}, {"n", 1}});
	out.emit(json{{"type", "alert"}, {"n", 2}});
	out.close(5000);
	ASSERT_EQ(f->lines.size(), 2u);
	EXPECT_NE(f->lines[0].find("\"n\":1"), std::string::npos); // order kept, none lost
	EXPECT_EQ(out.errors(), 3u);
	EXPECT_EQ(out.written(), 2u);
	EXPECT_GE(f->reopens.load(), 3);
	auto h = out.health();
	EXPECT_EQ(h[0]["healthy"], true);
	EXPECT_EQ(h[0]["last_error"], std::strerror(ENOSPC));
}

TEST(Output, AStuckSinkNeverBlocksEmitAndDropsAreCounted)
{
	auto stuck = std::make_unique<StuckSink>();
	StuckSink *s = stuck.get();
	auto flaky = std::make_unique<FlakySink>(0);
	FlakySink *ok = flaky.get();
	Output out;
	RouteOptions small;
	small.max_queue_bytes = 1000;
	out.add(std::move(stuck), small);
	out.add(std::move(flaky));
	auto t0 = std::chrono::steady_clock::now();
	for (int i = 0; i < 1000; i++)
		out.emit(json{{"type", "health"}, {"i", i}});
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	EXPECT_LT(secs, 2.0); // generous: the point is it returns at all
	EXPECT_GT(out.dropped(), 900u);
	s->release = true;
	out.close(5000);
	EXPECT_EQ(ok->lines.size(), 1000u); // the healthy sink got everything
}

TEST(Output, RecordFiltersAndOcsfRoutes)
{
	auto all = std::make_unique<FlakySink>(0);
	auto alerts = std::make_unique<FlakySink>(0);
	auto ocsf = std::make_unique<FlakySink>(0);
	FlakySink *a = all.get(), *b = alerts.get(), *c = ocsf.get();
	Output out;
	out.add(std::move(all));
	RouteOptions only;
	only.records = {"alert"};
	out.add(std::move(alerts), only);
	RouteOptions o;
	o.format = "ocsf";
	out.add(std::move(ocsf), o);
	out.emit(json{{"type", "open"}});
	out.emit(json{{"type", "alert"},
	              {"rule", "shared_credential"},
	              {"severity", "high"},
	              {"tags", {"attack.t1078"}},
	              {"time", "2026-11-26T10:00:00Z"},
	              {"event_time", "2026-11-26T10:00:00Z"},
	              {"summary", "s"}});
	out.close();
	EXPECT_EQ(a->lines.size(), 2u);
	EXPECT_EQ(b->lines.size(), 1u);
	ASSERT_EQ(c->lines.size(), 1u);
	json f = json::parse(c->lines[0]);
	EXPECT_EQ(f["class_uid"], 2004);
}

// Observations (built as their line) go to the JSON routes whose filter
// takes their type, as the routes are after a reload replaced them.
namespace
{

// Lines kept past the sink's end (a replaced route's sink is destroyed).
class KeptSink : public Sink
{
      public:
	explicit KeptSink(std::shared_ptr<std::vector<std::string>> lines)
	    : lines_(std::move(lines))
	{
	}
	bool write(std::string_view line, const LineMeta &) override
	{
		lines_->emplace_back(line); // one writer thread per sink
		return true;
	}
	std::string name() const override { return "kept"; }

      private:
	std::shared_ptr<std::vector<std::string>> lines_;
};

} // namespace

// Observations (built as their line) go to the JSON routes whose filter
// takes their type, as the routes are after a reload replaced them.
TEST(Output, ObservationsFollowTheFiltersOfTheRoutesOfTheMoment)
{
	auto observation = [](const char *type, int i) {
		Record r;
		r.type = type;
		r.line = std::string("{\"type\":\"") + type + "\",\"i\":" + std::to_string(i) + "}";
		r.time_ns = 1;
		return r;
	};
	using Lines = std::vector<std::string>;
	auto all = std::make_shared<Lines>(), opens = std::make_shared<Lines>(),
	     closes = std::make_shared<Lines>(), ocsf = std::make_shared<Lines>();
	Output out;
	out.add(std::make_unique<KeptSink>(all));
	RouteOptions only;
	only.records = {"open"};
	only.group = "outputs";
	out.add(std::make_unique<KeptSink>(opens), only);
	RouteOptions f;
	f.format = "ocsf";
	out.add(std::make_unique<KeptSink>(ocsf), f);
	out.emit(observation("open", 1));
	out.emit(observation("close", 2));
	// A reload: the filtered route now takes closes only.
	RouteOptions now;
	now.records = {"close"};
	std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>> routes;
	routes.emplace_back(std::make_unique<KeptSink>(closes), now);
	out.replace("outputs", std::move(routes));
	out.emit(observation("open", 3));
	out.emit(observation("close", 4));
	out.close();
	EXPECT_EQ(*all, (Lines{"{\"type\":\"open\",\"i\":1}", "{\"type\":\"close\",\"i\":2}",
	                       "{\"type\":\"open\",\"i\":3}", "{\"type\":\"close\",\"i\":4}"}));
	EXPECT_EQ(*opens, (Lines{"{\"type\":\"open\",\"i\":1}"}));
	EXPECT_EQ(*closes, (Lines{"{\"type\":\"close\",\"i\":4}"}));
	EXPECT_TRUE(ocsf->empty());
}

namespace
{

// Fails its `at`-th write (from 1) once, then records lines.
class FailsOnceSink : public Sink
{
      public:
	explicit FailsOnceSink(int at) : at_(at) {}
	bool write(std::string_view line, const LineMeta &meta) override
	{
		if (++calls_ == at_) {
			errno = EIO;
			return false;
		}
		lines.emplace_back(line);
		types.emplace_back(meta.type);
		severities.push_back(meta.severity);
		return true;
	}
	std::string name() const override { return "fails-once"; }
	std::vector<std::string> lines, types; // one writer thread per sink
	std::vector<int> severities;

      private:
	int at_, calls_ = 0;
};

} // namespace

// A batch of observations is made once and shared by the routes that take
// them: each gets its own lines, in order with the other records, each once,
// even when a write fails in the middle of a batch and is retried.
TEST(Output, RoutesShareObservationBatchesAndResumeOneWhereAWriteFailed)
{
	auto fails = std::make_unique<FailsOnceSink>(70);
	auto opens = std::make_unique<FailsOnceSink>(0);
	FailsOnceSink *a = fails.get(), *o = opens.get();
	Output out;
	out.add(std::move(fails));
	RouteOptions only;
	only.records = {"open", "alert"};
	out.add(std::move(opens), only);
	std::vector<std::string> want_all, want_opens;
	for (int i = 0; i < 300; i++) {
		if (i == 150) {
			json alert{{"type", "alert"}, {"i", i}};
			out.emit(alert);
			want_all.push_back(alert.dump());
			want_opens.push_back(alert.dump());
		}
		Record r;
		r.type = i % 3 ? "open" : "close";
		r.line =
		    "{\"type\":\"" + std::string(r.type) + "\",\"i\":" + std::to_string(i) + "}";
		r.time_ns = 1;
		want_all.push_back(r.line);
		if (r.type == "open")
			want_opens.push_back(r.line);
		out.emit(std::move(r));
	}
	out.close(5000);
	EXPECT_EQ(a->lines, want_all);
	EXPECT_EQ(o->lines, want_opens);
	EXPECT_EQ(a->types[0], "close");
	EXPECT_EQ(out.errors(), 1u);
	EXPECT_EQ(out.written(), want_all.size() + want_opens.size());
	EXPECT_EQ(out.dropped(), 0u);
	for (const auto &h : out.health())
		EXPECT_EQ(h["queued"], 0) << h.dump();
}

// A sink learns each line's severity, an observation's too: info for the
// agent's own, the record's for one passed as JSON (a fleet's, a replay's).
TEST(Output, ObservationsKeepTheSeverityTheyWereEmittedWith)
{
	auto sink = std::make_unique<FailsOnceSink>(0);
	FailsOnceSink *k = sink.get();
	Output out;
	out.add(std::move(sink));
	Record r;
	r.type = "open";
	r.line = R"({"type":"open","i":0})";
	r.time_ns = 1;
	out.emit(std::move(r));
	out.emit(json{{"type", "open"}, {"severity", "high"}, {"i", 1}});
	out.emit(json{{"type", "alert"}, {"severity", "critical"}});
	out.close(5000);
	ASSERT_EQ(k->lines.size(), 3u);
	EXPECT_EQ(k->severities, (std::vector<int>{severity("info").syslog, severity("high").syslog,
	                                           severity("critical").syslog}));
}

// Observations dropped by a full queue are counted line by line.
TEST(Output, ObservationsAFullQueueDropsAreCountedByTheLine)
{
	auto stuck = std::make_unique<StuckSink>();
	StuckSink *s = stuck.get();
	auto kept = std::make_shared<std::vector<std::string>>();
	Output out;
	RouteOptions small;
	small.max_queue_bytes = 2000;
	out.add(std::move(stuck), small);
	out.add(std::make_unique<KeptSink>(kept));
	for (int i = 0; i < 1000; i++) {
		Record r;
		r.type = "open";
		r.line = "{\"type\":\"open\",\"i\":" + std::to_string(i) + "}";
		r.time_ns = 1;
		out.emit(std::move(r));
	}
	out.flush();
	s->release = true;
	out.close(5000);
	EXPECT_EQ(kept->size(), 1000u);
	auto h = out.health();
	uint64_t stuck_written = h[0]["written"], stuck_dropped = h[0]["dropped"];
	EXPECT_EQ(stuck_written + stuck_dropped, 1000u) << h.dump();
	EXPECT_GT(stuck_dropped, 500u);
}

TEST(Ocsf, DetectionFindingCarriesTheRequiredFields)
{
	json alert = {
	    {"type", "alert"},
	    {"schema", "2"},
	    {"alert_id", "00ff"},
	    {"rule", "unexpected_upstream"},
	    {"severity", "high"},
	    {"tags", {"attack.t1550.001", "owasp-nhi.nhi5"}},
	    {"time", "2026-11-26T10:00:01Z"},
	    {"event_time", "2026-11-26T10:00:00.5Z"},
	    {"host", "h1"},
	    {"secret", {{"fingerprint", "ab"}, {"type", "github_pat"}, {"path", "/x"}}},
	    {"identity", {{"id", "spiffe://t/x"}}},
	    {"process",
	     {{"pid", 42},
	      {"comm", "node"},
	      {"exe", "/usr/bin/node"},
	      {"exec_id", "b:1:42"},
	      {"uid", 1000},
	      {"cmdline", {"node", "srv.js"}}}},
	    {"upstream", {{"addr", "203.0.113.1"}, {"port", 443}, {"sni", "evil.example"}}},
	    {"summary", "sent a token somewhere"}};
	json f = to_ocsf(alert);
	for (const char *k : {"activity_id", "category_uid", "class_uid", "finding_info",
	                      "metadata", "severity_id", "time", "type_uid"})
		EXPECT_TRUE(f.contains(k)) << k;
	EXPECT_EQ(f["type_uid"], 200401);
	EXPECT_EQ(f["severity_id"], 4);
	EXPECT_EQ(f["severity"], "High");
	int64_t event_ns = 0;
	ASSERT_TRUE(parse_rfc3339("2026-11-26T10:00:00.5Z", &event_ns));
	EXPECT_EQ(f["time"], event_ns / 1000000); // the event's time, in ms
	EXPECT_EQ(f["finding_info"]["uid"], "00ff");
	EXPECT_EQ(f["finding_info"]["analytic"]["name"], "unexpected_upstream");
	EXPECT_EQ(f["finding_info"]["attacks"][0]["technique"]["uid"], "T1550.001");
	EXPECT_EQ(f["finding_info"]["attacks"][0]["technique"]["name"], "Application Access Token");
	EXPECT_EQ(f["evidences"][0]["process"]["cmd_line"], "node srv.js");
	EXPECT_EQ(f["evidences"][0]["dst_endpoint"]["hostname"], "evil.example");
	EXPECT_EQ(f["unmapped"]["secret"]["fingerprint"], "ab");
	EXPECT_EQ(f["metadata"]["product"]["name"], "KeyTrail");
	EXPECT_EQ(severity("critical").ocsf_id, 5);
	EXPECT_STREQ(severity("no such").name, "info");
	// An update amends the same finding.
	alert["type"] = "update";
	alert["count"] = 3;
	alert["first_seen"] = "2026-11-26T09:00:00Z";
	alert["last_seen"] = "2026-11-26T10:00:00.5Z";
	alert["new"] = "evil.example:443";
	json u = to_ocsf(alert);
	EXPECT_EQ(u["activity_id"], 2);
	EXPECT_EQ(u["type_uid"], 200402);
	EXPECT_EQ(u["finding_info"]["uid"], "00ff");
	EXPECT_EQ(u["count"], 3);
	EXPECT_EQ(u["finding_info"]["last_seen_time"], event_ns / 1000000);
	EXPECT_LT(u["finding_info"]["first_seen_time"], u["finding_info"]["last_seen_time"]);
	EXPECT_EQ(u["unmapped"]["new"], "evil.example:443");
}

TEST(Journal, SegmentsRotateCompressAndReadBackInOrder)
{
	std::string dir = temp_dir() + "/journal";
	JournalConfig cfg;
	cfg.dir = dir;
	cfg.segment_size = 4096;
	{
		JournalSink j(cfg);
		for (int i = 0; i < 200; i++) {
			std::string line =
			    json{{"type", "exec"}, {"i", i}, {"pad", std::string(50, 'p')}}.dump();
			ASSERT_TRUE(j.write(line, LineMeta{"exec", 6, SystemClock().now_ns()}));
			ASSERT_TRUE(j.flush());
		}
	}
	EXPECT_EQ(mode_of(dir), 0700u);
	auto segs = journal_segments(dir);
	EXPECT_GT(segs.size(), 3u);
	for (const auto &s : segs) {
		EXPECT_TRUE(s.ends_with(".jsonl.gz")) << s;
		EXPECT_EQ(mode_of(s), 0600u);
	}
	std::vector<int> seen;
	JournalReadStats st;
	read_journal(
	    dir,
	    [&](json &&r) {
		    seen.push_back(r["i"]);
		    return true;
	    },
	    &st);
	ASSERT_EQ(seen.size(), 200u);
	for (int i = 0; i < 200; i++)
		EXPECT_EQ(seen[i], i);
	EXPECT_EQ(st.bad_lines, 0u);
}

TEST(Journal, RetentionDropsTheOldestPastTheSizeLimit)
{
	std::string dir = temp_dir() + "/journal";
	JournalConfig cfg;
	cfg.dir = dir;
	cfg.segment_size = 4096;
	cfg.max_bytes = 3000; // compressed: a few segments at most
	JournalSink j(cfg);
	for (int i = 0; i < 2000; i++) {
		// Incompressible-ish content so segments have real size.
		std::string pad;
		for (int k = 0; k < 40; k++)
			pad.push_back(static_cast<char>('a' + (i * 7 + k * 13) % 26));
		ASSERT_TRUE(j.write(json{{"i", i}, {"p", pad}}.dump(),
		                    LineMeta{"x", 6, SystemClock().now_ns()}));
		j.flush();
	}
	uint64_t total = 0;
	for (const auto &s : journal_segments(dir)) {
		if (!s.ends_with(".gz"))
			continue;
		struct stat st {
		};
		stat(s.c_str(), &st);
		total += st.st_size;
	}
	EXPECT_LE(total, 3000u + 4096u); // the limit, plus at most the newest segment
}

// Each closed segment gets an index beside it (0600) that says what it
// holds; retention removes a segment's index with it.
TEST(Journal, ClosedSegmentsCarryAnIndexThatRetentionRemovesWithThem)
{
	std::string dir = temp_dir() + "/journal";
	JournalConfig cfg;
	cfg.dir = dir;
	cfg.segment_size = 4096;
	cfg.max_bytes = 6000;
	{
		JournalSink j(cfg);
		for (int i = 0; i < 2000; i++) {
			std::string pad;
			for (int k = 0; k < 40; k++)
				pad.push_back(static_cast<char>('a' + (i * 7 + k * 13) % 26));
			json r = {{"type", "exec"},
			          {"time", rfc3339(SystemClock().now_ns())},
			          {"exec_id", "b:1:" + std::to_string(i)},
			          {"pid", i + 1},
			          {"p", pad}};
			ASSERT_TRUE(j.write(r.dump(), LineMeta{"exec", 6, SystemClock().now_ns()}));
			j.flush();
		}
	}
	auto segs = journal_segments(dir);
	ASSERT_FALSE(segs.empty());
	uint64_t records = 0;
	for (const auto &s : segs) {
		auto ix = read_segment_index(s);
		ASSERT_TRUE(ix) << s;
		EXPECT_EQ(mode_of(s + ".idx"), 0600u);
		EXPECT_GT(ix->records, 0u);
		EXPECT_FALSE(ix->may_name_exec_id("b:9:404")) << "a false positive, or all";
		EXPECT_EQ(ix->untimed, 0u);
		EXPECT_LE(ix->first, ix->last);
		records += ix->records;
	}
	EXPECT_LT(records, 2000u); // retention dropped the oldest
	DIR *d = opendir(dir.c_str());
	ASSERT_NE(d, nullptr);
	size_t idx = 0;
	while (dirent *e = readdir(d)) {
		std::string n = e->d_name;
		if (!n.ends_with(".idx"))
			continue;
		idx++;
		struct stat st {
		};
		EXPECT_EQ(stat((dir + "/" + n.substr(0, n.size() - 4)).c_str(), &st), 0)
		    << n << " outlived its segment";
	}
	closedir(d);
	EXPECT_EQ(idx, segs.size());
}

TEST(Journal, ReaderSurvivesTruncatedSegmentsCutLinesAndGarbage)
{
	std::string dir = temp_dir();
	// A closed segment cut short mid-stream.
	{
		std::string tmp = dir + "/full.jsonl";
		std::ofstream o(tmp);
		for (int i = 0; i < 2000; i++)
			o << json{{"i", i}, {"x", std::to_string(i * 7919)}}.dump() << "\n";
		o.close();
		ASSERT_TRUE(gzip_file(tmp, dir + "/journal-20260101T000000.000000Z.jsonl.gz"));
		std::string gz = dir + "/journal-20260101T000000.000000Z.jsonl.gz";
		struct stat st {
		};
		stat(gz.c_str(), &st);
		ASSERT_EQ(truncate(gz.c_str(), st.st_size / 2), 0);
	}
	// An open segment whose last line was cut by a crash, plus garbage.
	{
		std::ofstream o(dir + "/journal-20260102T000000.000000Z.jsonl");
		o << "{\"i\":-1}\nnot json\n[1,2]\n{\"i\":-2}\n{\"i\":-3, \"cut";
	}
	std::vector<int> seen;
	JournalReadStats st;
	read_journal(
	    dir,
	    [&](json &&r) {
		    seen.push_back(r.value("i", 0));
		    return true;
	    },
	    &st);
	EXPECT_EQ(st.segments, 2u);
	EXPECT_EQ(st.truncated_segments, 1u);
	EXPECT_GT(seen.size(), 100u);
	EXPECT_EQ(seen[0], 0);
	EXPECT_EQ(seen.back(), -2);
	EXPECT_EQ(st.bad_lines, 4u); // garbage, an array, the cut line, the cut gzip line
}

TEST(Journal, ASegmentLeftOpenByACrashIsClosedAtStart)
{
	std::string dir = temp_dir();
	{
		std::ofstream o(dir + "/journal-20260102T000000.000000Z.jsonl");
		o << "{\"i\":1}\n";
	}
	JournalConfig cfg;
	cfg.dir = dir;
	JournalSink j(cfg);
	auto segs = journal_segments(dir);
	ASSERT_FALSE(segs.empty());
	EXPECT_EQ(segs[0], dir + "/journal-20260102T000000.000000Z.jsonl.gz");
	EXPECT_EQ(gunzip(segs[0]), "{\"i\":1}\n");
}

namespace
{

// An observation as EventRecords::observation builds it: the type, its
// process's members (what IndexKeys::members holds), then its own.
struct Observation {
	std::string line;
	std::shared_ptr<const IndexKeys> keys;
};

std::shared_ptr<const IndexKeys> process_keys(uint32_t pid, const std::string &comm)
{
	auto k = std::make_shared<IndexKeys>();
	k->exec_id = "b00t:" + std::to_string(pid * 7) + ":" + std::to_string(pid);
	k->pid = pid;
	k->mcp_server = "github";
	k->identity = "spiffe://keytrail.local/h/github/u1000";
	std::string m = json{
	    {"comm", comm},
	    {"exec_id", k->exec_id},
	    {"gid", 1000},
	    {"host", "h"},
	    {"identity", k->identity},
	    {"mcp_server", k->mcp_server},
	    {"pid", pid},
	    {"ppid", 1},
	    {"uid", 1000}}.dump();
	k->members = m.substr(1, m.size() - 2);
	return k;
}

Observation observation(const std::shared_ptr<const IndexKeys> &k, const char *type, int i)
{
	return {std::string("{\"type\":\"") + type + "\"," + k->members +
	            ",\"time\":\"2026-12-03T04:00:00.000001Z\",\"fd\":" + std::to_string(i) +
	            ",\"path\":\"/srv/\\\"members\\\":" + std::to_string(i) + "\"}",
	        k};
}

std::vector<std::string> segment_lines(const std::string &path, JournalReadStats *st = nullptr)
{
	std::vector<std::string> out;
	read_journal_segment_lines(
	    path,
	    [&](std::string_view l) {
		    out.emplace_back(l);
		    return true;
	    },
	    st);
	return out;
}

} // namespace

// The journal writes a process's members once per segment and its
// observations refer to them; every reader gets each record back byte for
// byte, from any segment read alone.
TEST(Journal, ObservationsReferToTheirProcessAndReadBackWhole)
{
	std::string dir = temp_dir() + "/journal";
	JournalConfig cfg;
	cfg.dir = dir;
	cfg.segment_size = 8192;
	auto a = process_keys(4100, "node"), b = process_keys(4101, "git \"x\" \u00fc");
	// Another process's keys whose members the line does not hold: whole.
	auto liar = process_keys(4102, "curl");
	std::vector<std::string> written;
	{
		JournalSink j(cfg);
		for (int i = 0; i < 300; i++) {
			Observation o = observation(i % 3 ? a : b, i % 2 ? "open" : "close", i);
			if (i % 50 == 7)
				o = {observation(a, "open", i).line, liar};
			LineMeta meta{i % 2 ? "open" : "close", 6, SystemClock().now_ns(),
			              SystemClock().now_ns(), o.keys.get()};
			ASSERT_TRUE(j.write(o.line, meta));
			written.push_back(o.line);
			if (i % 10 == 0) {
				std::string alert = json{{"type", "alert"}, {"i", i}}.dump();
				ASSERT_TRUE(
				    j.write(alert, LineMeta{"alert", 4, SystemClock().now_ns()}));
				written.push_back(alert);
			}
			ASSERT_TRUE(j.flush());
		}
	}
	auto segs = journal_segments(dir);
	ASSERT_GT(segs.size(), 3u);
	std::vector<std::string> read;
	size_t raw_bytes = 0, whole_bytes = 0;
	for (const auto &s : segs) {
		JournalReadStats st;
		auto lines = segment_lines(s, &st);
		EXPECT_EQ(st.bad_lines, 0u) << s;
		std::string raw = gunzip(s);
		raw_bytes += raw.size();
		// Each segment defines the members it uses, from 0.
		EXPECT_NE(raw.find("{\"type\":\"journal_members\",\"journal_members\":0,"),
		          std::string::npos);
		for (auto &l : lines)
			whole_bytes += l.size() + 1;
		read.insert(read.end(), lines.begin(), lines.end());
	}
	EXPECT_EQ(read, written);
	EXPECT_LT(raw_bytes, whole_bytes * 2 / 3); // the members are most of a line here
	// Every segment's index holds the keys of its processes, though they
	// were added once per segment.
	for (const auto &s : segs) {
		auto ix = read_segment_index(s);
		ASSERT_TRUE(ix) << s;
		EXPECT_TRUE(ix->may_name_exec_id(a->exec_id)) << s;
		EXPECT_TRUE(ix->may_name_exec_id(b->exec_id)) << s;
		EXPECT_TRUE(ix->may_name_pid(4100) && ix->may_name_pid(4101)) << s;
		EXPECT_EQ(ix->records, segment_lines(s).size()) << s;
	}
}

// A reader keeps up to 64 MiB of a segment's members: past that, the
// writer writes lines whole, and nothing is lost.
TEST(Journal, PastWhatAReaderKeepsOfMembersLinesAreWrittenWhole)
{
	std::string dir = temp_dir() + "/journal";
	JournalConfig cfg;
	cfg.dir = dir;
	cfg.segment_size = 256u << 20;
	const size_t kPad = 16u << 10;
	size_t processes = SegmentLines::kMaxMembersBytes / kPad + 100;
	std::vector<std::string> written;
	{
		JournalSink j(cfg);
		for (size_t i = 0; i < processes; i++) {
			auto k = std::make_shared<IndexKeys>();
			k->exec_id = "b00t:1:" + std::to_string(i);
			k->pid = static_cast<uint32_t>(i + 1);
			k->members = "\"exec_id\":\"" + k->exec_id + "\",\"pad\":\"" +
			             std::string(kPad, 'a' + i % 26) + "\"";
			Observation o = observation(k, "open", static_cast<int>(i));
			ASSERT_TRUE(j.write(o.line, LineMeta{"open", 6, 1, 1, k.get()}));
			written.push_back(o.line);
		}
		ASSERT_TRUE(j.flush());
	}
	auto segs = journal_segments(dir);
	ASSERT_EQ(segs.size(), 1u);
	JournalReadStats st;
	auto lines = segment_lines(segs[0], &st);
	EXPECT_EQ(st.bad_lines, 0u);
	ASSERT_EQ(lines.size(), written.size());
	EXPECT_TRUE(lines == written);
	// The last ones went in whole.
	EXPECT_NE(gunzip(segs[0]).find(written.back() + "\n"), std::string::npos);
}

// A segment that cannot be written (the disk is full) leaves lines that
// refer to its members: the next segment gets them whole.
TEST(Journal, LinesAFailedSegmentLeftGoWholeIntoTheNext)
{
	signal(SIGXFSZ, SIG_IGN); // a write past the limit fails with EFBIG instead
	std::string dir = temp_dir() + "/journal";
	JournalConfig cfg;
	cfg.dir = dir;
	cfg.segment_size = 4096;
	auto k = process_keys(4200, "node");
	std::vector<std::string> accepted;
	rlimit old{};
	ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
	{
		JournalSink j(cfg);
		int i = 0;
		auto put = [&] {
			Observation o = observation(k, "open", i++);
			if (!j.write(o.line, LineMeta{"open", 6, 1, 1, k.get()}))
				return false;
			accepted.push_back(o.line);
			return true;
		};
		ASSERT_TRUE(put());
		ASSERT_TRUE(j.flush());
		// Full: no byte more fits in the segment (its members line is in).
		auto segs = journal_segments(dir);
		ASSERT_EQ(segs.size(), 1u);
		struct stat st {
		};
		ASSERT_EQ(stat(segs[0].c_str(), &st), 0);
		rlimit full{static_cast<rlim_t>(st.st_size), old.rlim_max};
		ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &full), 0);
		ASSERT_TRUE(put());
		EXPECT_FALSE(j.flush());
		while (put() && i < 1000) {
		} // until the segment is full and cannot be closed
		ASSERT_LT(i, 1000);
		ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
		ASSERT_TRUE(j.reopen());
		for (int n = 0; n < 3; n++)
			ASSERT_TRUE(put());
		ASSERT_TRUE(j.flush());
	}
	std::vector<std::string> read;
	JournalReadStats st;
	for (const auto &s : journal_segments(dir)) {
		auto lines = segment_lines(s, &st);
		read.insert(read.end(), lines.begin(), lines.end());
	}
	EXPECT_EQ(st.bad_lines, 0u);
	EXPECT_EQ(read, accepted);
	EXPECT_GE(accepted.size(), 5u);
}

TEST(Journal, AReferenceToMembersTheSegmentLacksIsCountedNotGuessed)
{
	std::string dir = temp_dir();
	{
		std::ofstream o(dir + "/journal-20260102T000000.000000Z.jsonl");
		o << "{\"type\":\"journal_members\",\"journal_members\":0,\"pid\":1}\n"
		  << "{\"type\":\"open\",\"journal_members\":0,\"fd\":3}\n"
		  << "{\"type\":\"open\",\"journal_members\":1,\"fd\":4}\n"
		  << "{\"type\":\"journal_members\",\"journal_members\":5,\"pid\":2}\n"
		  << "{\"type\":\"open\",\"journal_members\":x,\"fd\":5}\n";
	}
	JournalReadStats st;
	auto lines = segment_lines(dir + "/journal-20260102T000000.000000Z.jsonl", &st);
	ASSERT_EQ(lines.size(), 2u);
	EXPECT_EQ(lines[0], "{\"type\":\"open\",\"pid\":1,\"fd\":3}");
	EXPECT_EQ(lines[1], "{\"type\":\"open\",\"journal_members\":x,\"fd\":5}"); // not ours
	EXPECT_EQ(st.bad_lines, 2u); // member 1 never defined; 5 out of order
}

TEST(Record, SplicesRawValuesAndRawMembers)
{
	Record r;
	r.fields = {{"type", "open"}, {"path", "/a\n\"b"}};
	r.raw.push_back({"process", std::make_shared<const std::string>(R"({"pid":7})")});
	r.raw.push_back({"", std::make_shared<const std::string>(R"("host":"vm","uid":0)")});
	std::string line = serialize(r);
	auto j = nlohmann::json::parse(line); // valid JSON
	EXPECT_EQ(j["path"], "/a\n\"b");
	EXPECT_EQ(j["process"]["pid"], 7);
	EXPECT_EQ(j["host"], "vm");
	EXPECT_EQ(j["uid"], 0);
	EXPECT_EQ(to_json(r), j);
}

// gzip_file writes one gzip member a MiB: what every gzip reader reads as
// one stream, an empty file included (one empty member, not zero bytes).
TEST(GzipFile, MembersReadBackAsOneStreamAndAnEmptyFileIsValidGzip)
{
	std::string dir = temp_dir();
	std::string plain = dir + "/big", empty = dir + "/empty";
	std::string data;
	for (int i = 0; data.size() < (5u << 20) / 2; i++)
		data += "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i % 50, 'x') +
		        "\"}\n";
	std::ofstream(plain) << data;
	std::ofstream(empty).close();
	ASSERT_TRUE(gzip_file(plain, plain + ".gz"));
	ASSERT_TRUE(gzip_file(empty, empty + ".gz"));
	EXPECT_EQ(mode_of(plain + ".gz"), 0600u);
	struct stat st {
	};
	EXPECT_NE(stat(plain.c_str(), &st), 0) << "the source is removed";
	ASSERT_EQ(stat((empty + ".gz").c_str(), &st), 0);
	EXPECT_GT(st.st_size, 0) << "an empty gzip is 20 bytes, not none";
	auto read_gz = [](const std::string &path) {
		std::string out;
		gzFile gz = gzopen(path.c_str(), "rb");
		char buf[65536];
		int n;
		while (gz && (n = gzread(gz, buf, sizeof(buf))) > 0)
			out.append(buf, static_cast<size_t>(n));
		if (gz)
			gzclose(gz);
		return out;
	};
	EXPECT_EQ(read_gz(plain + ".gz"), data);
	EXPECT_EQ(read_gz(empty + ".gz"), "");
	EXPECT_EQ(std::system(("gzip -t " + plain + ".gz " + empty + ".gz").c_str()), 0);
}
