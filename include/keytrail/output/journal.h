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
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/output/sink.h"

namespace keytrail
{

// Segments of a journal directory in time order (closed .jsonl.gz ones,
// then an open .jsonl one).
std::vector<std::string> journal_segments(const std::string &dir);

struct JournalReadStats {
	uint64_t records = 0, bad_lines = 0, segments = 0, truncated_segments = 0;
	// segments a reader passed over on their index, and those that had one
	uint64_t skipped_segments = 0, indexed_segments = 0;
};

// A set of keys, as their 64-bit hashes while a segment is written, and as
// a Bloom filter (12 hashes, 24-48 bits a key: about 1e-5 false positives
// a lookup, never a false negative) once its index is read back, where the
// filter is a view of the index file's bytes.
class KeySet
{
      public:
	static uint64_t hash(std::string_view key);
	void add(std::string_view key) { hashes_.insert(hash(key)); }
	bool may_have(std::string_view key) const { return may_have_hash(hash(key)); }
	bool may_have_hash(uint64_t h) const;
	std::string bloom() const; // the filter: little-endian 64-bit words
	// A view of `len` bytes at `at` in `file` (kept alive by `owner`), as
	// bloom() wrote them.
	static std::optional<KeySet> from_bloom(std::string_view file, size_t at, size_t len,
	                                        std::shared_ptr<const void> owner);

      private:
	std::unordered_set<uint64_t> hashes_;
	std::shared_ptr<const void> owner_; // of the bytes, when read back
	const char *words_ = nullptr;
	size_t nwords_ = 0;
};

// What a closed segment holds: its time range and every value `trace`
// looks records up by (no secret values: fingerprints are HMACs). The sets
// a reader matches by prefix or glob are kept whole; exec_ids, parents and
// pids (thousands in a segment of a busy host) as KeySets. The writer
// builds it line by line; it is stored beside the segment (encode()). A
// reader skips a segment only on what its index says is absent.
struct SegmentIndex {
	uint64_t size = 0; // of the segment file it describes: another size voids it
	uint64_t records = 0, untimed = 0; // untimed: records with no "time"
	int64_t first = 0, last = 0;       // record times (wall ns)
	using Names = std::set<std::string, std::less<>>;
	Names fingerprints, inventory_ids, identities, mcp_servers;
	// exec_ids: whom records are about (exec_id, process.exec_id, a fork's
	// child, a holder); parents: a fork's parent and every exec_id in an
	// ancestry; pids: pid, process.pid, child_pid, ancestry pids.
	KeySet exec_ids, parents, pids;

	// Adds one record line; false (and nothing added) if it is not a JSON
	// object.
	bool add_line(std::string_view line);
	// What add_line would add for an observation line its producer
	// described (Record::time_ns, keys) without parsing it.
	void add_keys(std::string_view type, int64_t time_ns, const IndexKeys &keys);
	// Another observation whose keys were added before.
	void add_time(int64_t time_ns);
	bool may_name_exec_id(const std::string &id) const { return exec_ids.may_have(id); }
	bool may_name_parent(const std::string &id) const { return parents.may_have(id); }
	bool may_name_pid(uint32_t pid) const { return pids.may_have(std::to_string(pid)); }
	// The index file: a 4-byte little-endian header length, a CBOR header,
	// then the three filters.
	std::string encode() const;
	// `file`'s filters are used in place: `owner` keeps its bytes alive.
	static std::optional<SegmentIndex> decode(std::string_view file,
	                                          std::shared_ptr<const void> owner);
};

// A segment's lines as records. The journal writes a process's members
// (comm, exec_id, host, pid, ...: what every observation of it repeats)
// once per segment, as
//   {"type":"journal_members","journal_members":N,<the members>}
// and each observation of it (open, close) as
//   {"type":"open","journal_members":N,<the rest of the record>}
// A reader passes every line of one segment, from its first, through one
// SegmentLines, which gives each record back whole, byte for byte as it
// was emitted, and hides the members lines.
class SegmentLines
{
      public:
	enum class Kind {
		record,     // `record` is the record
		members,    // a members line: not a record
		unresolved, // refers to members this segment never defined
	};
	// `record` stays valid until the next call.
	Kind take(std::string_view line, std::string_view &record);
	// The members line for `members` as number `id`, and its size without
	// the newline (a reader keeps up to kMaxMembersBytes of them a segment).
	static void append_members_line(std::string &out, uint32_t id, std::string_view members);
	static size_t members_line_size(uint32_t id, std::string_view members);
	static constexpr size_t kMaxMembersBytes = 64u << 20;

      private:
	std::vector<std::string> members_;
	size_t bytes_ = 0;
	std::string whole_;
};

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
	// The number of these members in the open segment; fresh: not written
	// before (the caller writes its members line).
	// None once the segment's members lines would pass what a reader keeps.
	std::optional<uint32_t> members_id(const IndexKeys &keys, bool &fresh);
	// Lines a failed segment left unwritten, made whole for the next one.
	void expand_leftover();
	bool close_segment();
	void retain(int64_t now_ns);
	void compress_closed(); // the compressor thread
	// gzip, then write its index (read off the file when there is none)
	void compress(const std::string &path, std::optional<SegmentIndex> ix);
	// compress(), then retention; a failure is logged, never thrown (the
	// compressor thread and a writer past the backlog).
	void compress_and_retain(const std::string &path, SegmentIndex ix);

	JournalConfig cfg_;
	int fd_ = -1;
	std::string path_;
	uint64_t size_ = 0;
	int64_t opened_ns_ = 0;
	int64_t named_ns_ = 0; // the time in the newest segment's name
	std::string buf_;
	SegmentIndex ix_; // of the open segment, line by line
	// The open segment's members lines: text by number, number by text.
	std::deque<std::string> members_;
	std::unordered_map<std::string_view, uint32_t> member_ids_;
	size_t members_bytes_ = 0;             // their lines', as a reader counts them
	const IndexKeys *last_keys_ = nullptr; // and its number: most lines repeat it
	uint32_t last_id_ = 0;

	std::mutex mu_;        // guards closed_ and stop_
	std::mutex retain_mu_; // one retention pass at a time
	std::condition_variable wake_;
	std::deque<std::pair<std::string, SegmentIndex>> closed_; // waiting for gzip
	bool stop_ = false;
	std::thread compressor_;
};

// The index of a segment read whole (plain or gzip).
SegmentIndex index_segment(const std::string &path);

// Writes segment + ".idx" (0600, atomically) for the segment as it is now.
bool write_segment_index(const std::string &segment, SegmentIndex ix);

// The index beside a segment, if there is one and it describes the segment.
std::optional<SegmentIndex> read_segment_index(const std::string &segment);

// Calls f for each record line of one segment (plain or gzip), made whole
// (SegmentLines), for a reader that parses records its own way; lines over
// the size bound, a cut last line and a reference to undefined members are
// counted bad and not passed. Returns false if f does.
bool read_journal_segment_lines(const std::string &path,
                                const std::function<bool(std::string_view)> &f,
                                JournalReadStats *stats = nullptr);

// Calls f for each record of one segment; as read_journal.
bool read_journal_segment(const std::string &path, const std::function<bool(nlohmann::json &&)> &f,
                          JournalReadStats *stats = nullptr);

// Calls f for each record of every segment in order. Lines that are not
// JSON objects (a cut last line, garbage) are counted and skipped; a
// truncated gzip stream yields what it holds. Returns false if f does.
bool read_journal(const std::string &dir, const std::function<bool(nlohmann::json &&)> &f,
                  JournalReadStats *stats = nullptr);

} // namespace keytrail
