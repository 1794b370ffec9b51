// The clickhouse output: ships the journal to ClickHouse, so fleet queries
// (tools/fleet.h) see every host's secret sightings, uses, findings and
// health. The journal is the spool: a shipper thread tails its segments and
// keeps a durable cursor (segment, line) of what ClickHouse acknowledged in
// the state dir, so a restart, an outage or a dead server loses nothing and
// nothing reaches the probes (the journal route never waits on ClickHouse).
// Every row carries a stable event id (host, segment, line): a batch sent
// again after a crash between the INSERT and the cursor write repeats ids,
// which ReplacingMergeTree folds and every fleet query ignores
// (docs/fleet.md).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/output/journal.h"
#include "keytrail/util/counters.h"
#include "keytrail/util/secret_bytes.h"

namespace keytrail
{

// Where a ClickHouse server is and how to log in to it.
struct ClickHouseTarget {
	std::string url; // http(s)://host:port, no query, no user
	std::string database = "keytrail";
	std::string user = "default";
	std::string password_file; // "" = no password
	std::string tls_ca;        // "" = the system's CAs
};

// One HTTP connection (libcurl, kept alive) to a ClickHouse server.
class ClickHouseClient
{
      public:
	// Reads the password file (at most 4 KiB; refused if others may read
	// it). Throws Error.
	explicit ClickHouseClient(ClickHouseTarget t);
	~ClickHouseClient();
	ClickHouseClient(const ClickHouseClient &) = delete;
	ClickHouseClient &operator=(const ClickHouseClient &) = delete;

	const ClickHouseTarget &target() const { return t_; }
	// Runs one statement (POSTed); *out gets the response (at most 64 MiB).
	// false with *err: the transport's error or the server's, first line.
	bool query(const std::string &sql, std::string *out, std::string *err);
	// INSERT INTO table [(columns)] FORMAT format with rows.
	bool insert(const std::string &table, const std::string &rows, std::string *err,
	            const std::string &format = "JSONEachRow", const std::string &columns = "");
	// query() that throws Error naming the statement's purpose.
	std::string run(const std::string &sql, const std::string &what);
	// How long one statement may take (default 120 s; 0 = no limit).
	void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

      private:
	bool post(const std::string &params, const std::string &body, std::string *out,
	          std::string *err);
	ClickHouseTarget t_;
	SecretBytes password_;
	std::chrono::milliseconds timeout_{120000};
	void *curl_ = nullptr;
};

// The row of `events` a journal record becomes (the columns of
// docs/fleet.md, but for `record`, the line itself).
struct ClickHouseRow {
	std::string event_id, host, type;
	int64_t time_ns = -1; // -1: no valid time
	std::string fingerprint, secret_type, source, inventory_id, identity, environment, workload,
	    upstream, rule, severity, finding_id, reason, key_id;
	uint64_t drops = 0;     // health: the kernel's drops, all types
	double lag_seconds = 0; // health: the largest output lag
	bool valid() const { return !type.empty() && time_ns >= 0; } // else not shipped
};
// The columns from one pass over the line, without building a document;
// nullopt when it is not one JSON object (or nests deeper than 64). The
// event id is the caller's (journal_event_id).
std::optional<ClickHouseRow> clickhouse_row(std::string_view record);
// The columns of `events` in the order append_row_binary() writes them.
extern const char *const kClickHouseEventColumns;
// Appends the row and its record in ClickHouse's RowBinary format.
void append_row_binary(const ClickHouseRow &row, std::string_view record, std::string *out);
// "<host>:<segment stamp>:<line>": the same for a record wherever and
// however often it is shipped.
std::string journal_event_id(const std::string &host, const std::string &segment_base,
                             uint64_t line);

// Reads a journal directory in order from a cursor, line by line, as the
// agent writes it: only whole lines of the open segment, and a segment is
// finished once a newer one exists (the writer closes one before it opens
// the next).
class JournalTail
{
      public:
	struct Line {
		std::string segment; // base name: journal-<stamp>.jsonl
		uint64_t line;       // 0-based, whole lines before it in the segment
		std::string text;
	};
	// From `line` of `segment` ("" = the oldest segment); complete: the
	// whole of `segment` was read, start after it.
	JournalTail(std::string dir, std::string segment, uint64_t line, bool complete = false);
	~JournalTail();
	JournalTail(const JournalTail &) = delete;
	JournalTail &operator=(const JournalTail &) = delete;
	// Appends up to max lines to out; returns how many.
	size_t read(size_t max, std::vector<Line> &out);
	const std::string &segment() const { return seg_; }
	uint64_t line() const { return line_; }
	uint64_t lost_segments() const { return lost_; }
	uint64_t cut_lines() const { return cut_; }
	// segment() was read to its end (a newer one exists).
	bool finished() const;

      private:
	bool open_next();
	bool read_more(); // more bytes of the current segment into buf_
	void close_current();
	std::string dir_, seg_;
	uint64_t line_ = 0, skip_ = 0, lost_ = 0, cut_ = 0;
	int fd_ = -1;              // a plain (open) segment
	void *gz_ = nullptr;       // a closed .gz one
	std::string buf_;          // read, not yet split
	SegmentLines records_;     // of the current segment
	bool opened_once_ = false; // seg_ was opened (the cursor's is skipped into)
};

#define KT_CLICKHOUSE_COUNTERS(X)                                                                  \
	X(rows_sent, "Rows ClickHouse acknowledged.")                                              \
	X(records_skipped, "Journal records of types this output does not take.")                  \
	X(batches, "INSERTs ClickHouse acknowledged.")                                             \
	X(retries, "INSERTs sent again after a failure.")                                          \
	X(errors, "INSERTs that failed.")                                                          \
	X(bad_lines, "Journal lines that were not a JSON record.")                                 \
	X(cursor_errors, "Cursor writes that failed (the batch is sent again later).")             \
	X(lost_segments, "Journal segments retention removed before they were shipped.")           \
	X(cut_lines, "Journal lines not shipped: cut by a crash, or naming members their "         \
	             "segment does not hold.")

struct ClickHouseCounters {
	KT_CLICKHOUSE_COUNTERS(KT_COUNTER_FIELD)
	template <typename F> void each(F &&f) const { KT_CLICKHOUSE_COUNTERS(KT_COUNTER_VISIT) }
};

// The output: two threads, started by the constructor. One reads the
// journal and encodes batches, the other ships them, so ClickHouse takes one
// batch while the next is made.
class ClickHouseShipper
{
      public:
	// records: the types shipped (empty = secret, secret_use, alert, update,
	// health). Throws Error (password file, state dir).
	ClickHouseShipper(const OutputSpec &spec, std::string journal_dir, std::string state_dir,
	                  std::string host);
	~ClickHouseShipper();
	// Ships what is there for up to `drain`, then stops the thread.
	void stop(std::chrono::milliseconds drain);
	std::string name() const;
	// As Output::health() entries, plus lag_seconds, spool_bytes, cursor.
	nlohmann::json health() const;
	// The cursor file of an output (state dir, url and database).
	static std::string cursor_path(const std::string &state_dir, const std::string &url,
	                               const std::string &database);

      private:
	// Journal lines as one INSERT's rows, and the cursor after them.
	struct Batch {
		std::string body;  // RowBinary
		size_t lines = 0;  // journal lines read into it (rows, skipped, bad)
		bool full = false; // ended at batch_rows or kMaxBody: more was waiting
		size_t rows = 0;
		uint64_t skipped = 0, bad = 0;
		int64_t first_ns = 0, newest_ns = 0; // oldest pending, newest record
		std::string segment;
		uint64_t line = 0;
		bool complete = false;
	};
	static constexpr size_t kQueuedBatches = 1;   // in flight; the encoder makes the next
	static constexpr size_t kMaxBody = 16u << 20; // a batch ends at this many bytes

	void run();  // the encoder
	void send(); // the sender
	// Reads and encodes journal lines into b until it holds batch_rows
	// lines or kMaxBody bytes (true), or the journal has no more now.
	bool fill(Batch *b);
	void encode(const std::vector<JournalTail::Line> &lines, Batch *b) const;
	bool save_cursor(const std::string &segment, uint64_t line, bool complete);

	OutputSpec spec_;
	std::string journal_dir_, cursor_path_, host_;
	std::set<std::string> records_;
	std::set<std::string> whole_records_; // these fill the record column
	std::unique_ptr<ClickHouseClient> client_;
	std::unique_ptr<JournalTail> tail_;

	mutable std::mutex mu_;
	std::condition_variable cv_;
	bool stop_ = false;
	std::chrono::steady_clock::time_point drain_until_{};
	ClickHouseCounters counters_;  // under mu_
	std::string last_error_;       // under mu_
	bool healthy_ = true;          // under mu_
	bool caught_up_ = false;       // under mu_: the last read found nothing new
	int64_t acked_time_ns_ = 0;    // under mu_: newest record time acknowledged
	int64_t pending_first_ns_ = 0; // under mu_: the oldest time in the batch being filled
	std::string acked_segment_;    // under mu_
	uint64_t acked_line_ = 0;      // under mu_
	std::deque<Batch> queue_;      // under mu_: encoded, the oldest (in flight) first
	std::string spare_body_;       // under mu_: a shipped batch's buffer, for the next
	bool encoder_done_ = false;    // under mu_
	std::thread thread_, sender_;
};

} // namespace keytrail
