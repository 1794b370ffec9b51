// A journal line as the clickhouse output reads it: any bytes give a row or
// nothing, and a row encodes as RowBinary whatever its strings hold.
#include <cstdint>
#include <string>
#include <string_view>

#include "keytrail/output/clickhouse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view in(reinterpret_cast<const char *>(data), size);
	if (auto row = keytrail::clickhouse_row(in)) {
		row->event_id = keytrail::journal_event_id("h", "journal-x.jsonl", 1);
		std::string out;
		keytrail::append_row_binary(*row, in, &out);
		if (out.size() < in.size())
			__builtin_trap(); // the record is in the row whole
	}
	return 0;
}
