#include "keytrail/schema/record.h"

namespace keytrail
{

const std::vector<RecordType> &record_types()
{
	static const std::vector<RecordType> types = {
	    {"ready", false},     {"health", false},     {"reload", false},
	    {"secret", false},    {"secret_use", false}, {"credential_file", false},
	    {"alert", false},     {"update", false},     {"exec", true},
	    {"fork", true},       {"exit", true},        {"open", true},
	    {"close", true},      {"connect", true},     {"io_uring", true},
	    {"tool_call", false},
	};
	return types;
}

const RecordType *find_record_type(std::string_view name)
{
	for (const auto &t : record_types())
		if (name == t.name)
			return &t;
	return nullptr;
}

bool is_observation(std::string_view type)
{
	const RecordType *t = find_record_type(type);
	return t && t->observation;
}

std::string short_fp(std::string_view fingerprint)
{
	return std::string(fingerprint.substr(0, 12));
}

std::string dump_json(const nlohmann::json &j)
{
	return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string serialize(const Record &r)
{
	std::string s = dump_json(r.fields);
	if (r.raw.empty() || s.size() < 2 || s.back() != '}')
		return s;
	s.pop_back();
	bool empty = s.size() == 1; // "{"
	for (const auto &f : r.raw) {
		if (!empty)
			s.push_back(',');
		empty = false;
		if (!f.key.empty()) {
			s += nlohmann::json(f.key).dump();
			s.push_back(':');
		}
		s += *f.json;
	}
	s.push_back('}');
	return s;
}

nlohmann::json to_json(const Record &r)
{
	nlohmann::json j = r.fields;
	for (const auto &f : r.raw) {
		if (f.key.empty()) {
			auto members = nlohmann::json::parse("{" + *f.json + "}", nullptr, false);
			if (members.is_object())
				j.update(members);
		} else {
			j[f.key] = nlohmann::json::parse(*f.json, nullptr, false);
		}
	}
	return j;
}

} // namespace keytrail
