// Where records go. A Sink writes one finished JSON line at a time, on its
// own writer thread (see output.h), so a slow or broken sink never blocks
// the probes. A failed write is retried after reopen().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keytrail/config/config.h"
#include "keytrail/schema/record.h"
#include "keytrail/util/files.h"

namespace keytrail
{

// What a sink may need to know about a line besides its text.
struct LineMeta {
	std::string_view type; // record type: alert, secret_use, health, ...
	int severity = 6;      // syslog severity: 2 crit .. 6 info
	int64_t time_ns = 0;   // wall clock
	// Known to the producer of an observation (Record::time_ns, keys): the
	// record's own time and index keys, so the journal need not parse it.
	int64_t record_ns = 0;
	const IndexKeys *keys = nullptr;
};

class Sink
{
      public:
	virtual ~Sink() = default;
	// Writes one line (without its newline). Returns false on failure;
	// errno tells why.
	virtual bool write(std::string_view line, const LineMeta &meta) = 0;
	// Pushes buffered lines out (called when the queue runs dry).
	virtual bool flush() { return true; }
	// Called before a retry after a failure.
	virtual bool reopen() { return true; }
	virtual std::string name() const = 0;
};

// Writes to a file descriptor it does not own (stdout).
class FdSink : public Sink
{
      public:
	FdSink(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
	bool write(std::string_view line, const LineMeta &meta) override;
	std::string name() const override { return name_; }

      private:
	int fd_;
	std::string name_;
};

// A size-rotated file of JSON lines, created 0600 (directories 0700). When
// the file would pass max_size it is renamed to <path>.<UTC time> and
// compressed to <path>.<UTC time>.gz; the newest `keep` of those are kept.
class FileSink : public Sink
{
      public:
	FileSink(std::string path, uint64_t max_size = 64ull << 20, uint32_t keep = 5);
	~FileSink() override;
	bool write(std::string_view line, const LineMeta &meta) override;
	bool flush() override;
	bool reopen() override;
	std::string name() const override { return "file:" + path_; }
	// Rotated segments, oldest first.
	std::vector<std::string> segments() const;

      private:
	bool open_file(std::string *why = nullptr);
	bool rotate();

	std::string path_;
	uint64_t max_size_;
	uint32_t keep_;
	int fd_ = -1;
	bool regular_ = false; // rotated by size only then
	uint64_t size_ = 0;
	std::string buf_;
};

// RFC 5424 messages over a local datagram socket (default /dev/log); the
// message is the JSON line, MSGID the record type.
class SyslogSink : public Sink
{
      public:
	SyslogSink(std::string socket_path, int facility, std::string app_name);
	~SyslogSink() override;
	bool write(std::string_view line, const LineMeta &meta) override;
	bool reopen() override;
	std::string name() const override { return "syslog:" + path_; }

      private:
	std::string path_, app_, host_;
	int facility_;
	int fd_ = -1;
	int connect_errno_ = 0;
	std::string msg_;
};

std::unique_ptr<Sink> make_sink(const OutputSpec &spec); // throws Error

// Compresses src into dst (0600) with zlib and removes src. Returns false
// (errno set) on failure, leaving src in place.
bool gzip_file(const std::string &src, const std::string &dst);

// "20261126T151600.123456Z": sorts in time order.
std::string compact_utc(int64_t wall_ns);

} // namespace keytrail
