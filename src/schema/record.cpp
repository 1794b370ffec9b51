#include "keytrail/schema/record.h"

#include <simdjson.h>

#include "keytrail/schema/json_members.h"

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

namespace
{

// The fields dumped whole, the raw ones spliced in: for fields the fast
// path cannot write.
std::string serialize_dom(const Record &r)
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

} // namespace

std::string_view record_type(const Record &r)
{
	if (!r.line.empty())
		return r.type;
	auto it = r.fields.find("type");
	if (it == r.fields.end() || !it->is_string())
		return {};
	return it->get_ref<const std::string &>();
}

std::string serialize(const Record &r)
{
	if (!r.line.empty())
		return r.line;
	if (!r.fields.is_object())
		return serialize_dom(r);
	// Members one by one, in the document's (sorted) order: the bytes
	// dump_json would write, without its serializer for every scalar. Text
	// that is not valid UTF-8 goes through dump_json, which replaces it.
	JsonMembers m;
	auto utf8 = [](const std::string &t) {
		return simdjson::validate_utf8(t.data(), t.size());
	};
	for (auto it = r.fields.begin(); it != r.fields.end(); ++it) {
		const std::string &key = it.key();
		const nlohmann::json &v = it.value();
		if (!utf8(key))
			return serialize_dom(r);
		if (v.is_string() && utf8(v.get_ref<const std::string &>()))
			m.str(key, v.get_ref<const std::string &>());
		else if (v.is_number_unsigned())
			m.unum(key, v.get<uint64_t>());
		else if (v.is_number_integer())
			m.num(key, v.get<int64_t>());
		else if (v.is_boolean())
			m.boolean(key, v.get<bool>());
		else
			m.raw(key, dump_json(v));
	}
	for (const auto &f : r.raw) {
		if (f.key.empty())
			m.append(*f.json);
		else if (utf8(f.key))
			m.raw(f.key, *f.json);
		else
			return serialize_dom(r);
	}
	std::string s = m.take();
	s.insert(s.begin(), '{');
	s.push_back('}');
	return s;
}

nlohmann::json to_json(const Record &r)
{
	if (!r.line.empty())
		return nlohmann::json::parse(r.line, nullptr, false);
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
