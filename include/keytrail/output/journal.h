// The journal: every record the agent produces, as JSON lines in segments
// under one directory. The open segment is journal-<UTC start>.jsonl; when
// it reaches its size or age it is compressed to .jsonl.gz (names sort in
// time order) by a background thread at low priority, so writing never
// waits for gzip. Retention drops the oldest segments past a total size or
// age. A segment left open by a crash is compressed at the next start; its
// last line may be cut, and readers skip such a line.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/output/sink.h"

namespace keytrail
{

class JournalSink : public Sink
{
      public:
	explicit JournalSink(JournalConfig cfg); // cfg.dir must be set; throws Error
	~JournalSink() override;
	bool write(std::string_view line, const LineMeta &meta) override;
	bool flush() override;
	bool reopen() override;
	std::string name() const override { return "journal:" + cfg_.dir; }

      private:
	bool open_segment(int64_t now_ns);
	bool close_segment();
	void retain(int64_t now_ns);
	void compress_closed(); // the compressor thread

	JournalConfig cfg_;
	int fd_ = -1;
	std::string path_;
	uint64_t size_ = 0;
	int64_t opened_ns_ = 0;
	std::string buf_;

	std::mutex mu_; // guards closed_ and stop_
	std::condition_variable wake_;
	std::deque<std::string> closed_; // segments waiting for gzip
	bool stop_ = false;
	std::thread compressor_;
};

// Segments of a journal directory in time order (closed .jsonl.gz ones,
// then an open .jsonl one).
std::vector<std::string> journal_segments(const std::string &dir);

struct JournalReadStats {
	uint64_t records = 0, bad_lines = 0, segments = 0, truncated_segments = 0;
};

// Calls f for each record of every segment in order. Lines that are not
// JSON objects (a cut last line, garbage) are counted and skipped; a
// truncated gzip stream yields what it holds. Returns false if f does.
bool read_journal(const std::string &dir, const std::function<bool(nlohmann::json &&)> &f,
                  JournalReadStats *stats = nullptr);

} // namespace keytrail
