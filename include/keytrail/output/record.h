// A record on its way out: a JSON object, plus fields already serialized
// that many records share (a process's description and identity, built once
// per process instead of once per record). Writers splice the raw fields
// into the serialized object; readers that need a DOM call to_json().
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace keytrail
{

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
