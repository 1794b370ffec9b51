#include "keytrail/util/json_dom.h"

#include <memory>

namespace keytrail
{

namespace
{
constexpr size_t kKeepParser = 64u << 10; // a parser grown past this is made anew
}

simdjson::dom::parser *thread_json_parser()
{
	thread_local std::unique_ptr<simdjson::dom::parser> parser;
	if (!parser || parser->capacity() > kKeepParser) {
		parser = std::make_unique<simdjson::dom::parser>();
		if (parser->allocate(4096, kMaxRecordDepth) != simdjson::SUCCESS)
			parser.reset();
	}
	return parser.get();
}

} // namespace keytrail
