// The record vocabulary every writer and reader shares: the schema version,
// the record types, how a fingerprint is shown, and the Record itself.
//
// A Record is a record on its way out: a JSON object, plus fields already
// serialized that many records share (a process's description and identity,
// built once per process instead of once per record). Writers splice the raw
// fields into the serialized object; readers that need a DOM call to_json().
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace keytrail
{

// Carried by `ready`, `secret`, `secret_use` and `alert` records
// (docs/alerts.md says what a bump means).
inline constexpr const char *kSchemaVersion = "2";

struct RecordType {
	std::string_view name;
	bool observation; // a raw kernel observation (agent.events), not a finding
};

// Every record type the agent writes.
const std::vector<RecordType> &record_types();
const RecordType *find_record_type(std::string_view name);
bool is_observation(std::string_view type);

// How records and messages show a fingerprint: its first 12 hex digits.
std::string short_fp(std::string_view fingerprint);

// One line of JSON; invalid UTF-8 (which sanitize_utf8 should already have
// removed) is replaced rather than thrown on.
std::string dump_json(const nlohmann::json &j);

struct RawField {
	std::string key; // empty: `json` is serialized members, "k":v,... spliced as they are
	std::shared_ptr<const std::string> json; // a serialized JSON value
};

// What the journal indexes an observation by (SegmentIndex::add_keys),
// known to whoever built it: a process's keys are made once with its
// serialized members and shared by all its records. `members` are those
// members as the line holds them, right after its "type": the journal
// writes them once per segment and the line refers to them.
struct IndexKeys {
	std::string exec_id, mcp_server, identity; // empty: absent
	uint32_t pid = 0;
	std::string members;
};

struct Record {
	nlohmann::json fields; // an object, with "type"
	std::vector<RawField> raw;
	// Observations (by the hundred thousand a second) are built straight as
	// their line: `line` holds the whole object, fields and raw stay empty,
	// `type` names it (a static string), `time_ns` is its "time" as written
	// (µs) and `keys` what else the journal indexes it by.
	std::string line;
	std::string_view type;
	int64_t time_ns = 0;
	std::shared_ptr<const IndexKeys> keys;
};

// The record's type, for either form.
std::string_view record_type(const Record &r);

// One JSON line (no newline): the fields, then the raw fields (or the line).
std::string serialize(const Record &r);
// The whole record as a DOM (the raw fields parsed).
nlohmann::json to_json(const Record &r);

} // namespace keytrail
