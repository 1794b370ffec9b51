#include "keytrail/output/record.h"

namespace keytrail
{

std::string serialize(const Record &r)
{
	std::string s = r.fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
