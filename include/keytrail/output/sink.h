// Where records go. A Sink takes one finished JSON line at a time; Output
// fans a record out to every configured sink and counts what failed, so a
// broken sink is reported in `health` instead of stopping the agent.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "keytrail/config/config.h"

namespace keytrail
{

class Sink
{
      public:
	virtual ~Sink() = default;
	// Writes one line (without its newline). Returns false on failure.
	virtual bool write(std::string_view line) = 0;
	virtual std::string name() const = 0;
};

// Writes to a file descriptor it does not own (stdout).
class FdSink : public Sink
{
      public:
	FdSink(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
	bool write(std::string_view line) override;
	std::string name() const override { return name_; }

      private:
	int fd_;
	std::string name_;
};

// Appends to a file created 0600 (its directory 0700 when created).
class FileSink : public Sink
{
      public:
	explicit FileSink(std::string path); // throws Error
	~FileSink() override;
	bool write(std::string_view line) override;
	std::string name() const override { return "file:" + path_; }

      private:
	std::string path_;
	int fd_ = -1;
};

std::unique_ptr<Sink> make_sink(const OutputSpec &spec);

// Serializes a record once and writes it to every sink. Invalid UTF-8 cannot
// reach it (strings are sanitized when records are built), but dump() still
// replaces rather than throws, so a bug there costs a character, not a crash.
class Output
{
      public:
	void add(std::unique_ptr<Sink> sink) { sinks_.push_back(std::move(sink)); }
	void emit(const nlohmann::json &record);
	uint64_t written() const { return written_; }
	uint64_t errors() const { return errors_; }
	size_t sinks() const { return sinks_.size(); }

      private:
	std::vector<std::unique_ptr<Sink>> sinks_;
	uint64_t written_ = 0, errors_ = 0;
};

// mkdir -p with mode 0700 for every directory created. Throws Error.
void make_private_dirs(const std::string &dir);

} // namespace keytrail
