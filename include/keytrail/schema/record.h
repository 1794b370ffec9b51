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

struct Record {
	nlohmann::json fields; // an object, with "type"
	std::vector<RawField> raw;
};

// One JSON line (no newline): the fields, then the raw fields.
std::string serialize(const Record &r);
// The whole record as a DOM (the raw fields parsed).
nlohmann::json to_json(const Record &r);

} // namespace keytrail
