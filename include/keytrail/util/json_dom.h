#pragma once
// One simdjson DOM parser per thread for reading our own record lines fast
// (whole-line validation, UTF-8 included).
#include <simdjson.h>

#include <cstddef>

namespace keytrail
{

// Nesting deeper than this is not a record of ours.
constexpr size_t kMaxRecordDepth = 64;

// The calling thread's parser, reused line after line; one a long line grew
// past 64 KiB is replaced before it is handed out again, so a thread does
// not keep that memory for good. Null only if it cannot be allocated.
simdjson::dom::parser *thread_json_parser();

} // namespace keytrail
