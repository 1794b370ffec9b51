// The journal: every record the agent produces, as JSON lines in segments
// under one directory. The open segment is journal-<UTC start>.jsonl; when
// it reaches its size or age it is compressed to .jsonl.gz (names sort in
// time order) by a background thread at low priority, so writing never
// waits for gzip. Retention drops the oldest segments past a total size or
// age. A segment left open by a crash is compressed at the next start; its
// last line may be cut, and readers skip such a line. Beside each closed
// segment, <segment>.idx says what it holds (SegmentIndex), so the tools
// skip segments that cannot answer a query without decompressing them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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
	void compress_closed();                 // the compressor thread
	void compress(const std::string &path); // gzip, then write its index

	JournalConfig cfg_;
	int fd_ = -1;
	std::string path_;
	uint64_t size_ = 0;
	int64_t opened_ns_ = 0;
	int64_t named_ns_ = 0; // the time in the newest segment's name
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
	// segments a reader passed over on their index, and those that had one
	uint64_t skipped_segments = 0, indexed_segments = 0;
};

// A Bloom filter (12 hashes, 24-48 bits an element: about 1e-5 false
// positives a lookup, never a false negative), for the index's large sets.
class Bloom
{
      public:
	static Bloom sized(size_t n);
	void add(std::string_view v);
	bool may_have(std::string_view v) const;
	std::string hex() const;
	static std::optional<Bloom> from_hex(const std::string &h);

      private:
	std::vector<uint64_t> words_;
};

// What a closed segment holds: its time range and every value `trace`
// looks records up by (no secret values: fingerprints are HMACs). The sets
// a reader matches by prefix or glob are written as lists; exec_ids,
// parents and pids (thousands in a segment of a busy host) as Bloom filters.
// A reader skips a segment only on what its index says is absent.
struct SegmentIndex {
	uint64_t size = 0; // of the segment file it describes: another size voids it
	uint64_t records = 0, untimed = 0; // untimed: records with no "time"
	int64_t first = 0, last = 0;       // record times (wall ns)
	std::set<std::string> fingerprints, inventory_ids, identities, mcp_servers;
	// While indexing (empty when read back: see may_name_*): exec_ids, whom
	// records are about (exec_id, process.exec_id, a fork's child, a
	// holder); parents, a fork's parent and every exec_id in an ancestry.
	std::set<std::string> exec_ids, parents;
	std::set<uint32_t> pids; // pid, process.pid, child_pid, ancestry pids

	void add(const nlohmann::json &record);
	bool may_name_exec_id(const std::string &id) const;
	bool may_name_parent(const std::string &id) const;
	bool may_name_pid(uint32_t pid) const;
	nlohmann::json to_json() const;
	static std::optional<SegmentIndex> from_json(const nlohmann::json &j);

      private:
	std::optional<Bloom> exec_bloom_, parent_bloom_, pid_bloom_; // when read back
};

// The index of a segment read whole (plain or gzip).
SegmentIndex index_segment(const std::string &path);

// Writes segment + ".idx" (0600, atomically) for the segment as it is now.
bool write_segment_index(const std::string &segment, SegmentIndex ix);

// The index beside a segment, if there is one and it describes the segment.
std::optional<SegmentIndex> read_segment_index(const std::string &segment);

// Calls f for each record of one segment; as read_journal.
bool read_journal_segment(const std::string &path, const std::function<bool(nlohmann::json &&)> &f,
                          JournalReadStats *stats = nullptr);

// Calls f for each record of every segment in order. Lines that are not
// JSON objects (a cut last line, garbage) are counted and skipped; a
// truncated gzip stream yields what it holds. Returns false if f does.
bool read_journal(const std::string &dir, const std::function<bool(nlohmann::json &&)> &f,
                  JournalReadStats *stats = nullptr);

} // namespace keytrail
