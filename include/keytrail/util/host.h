// This machine's name, as records carry it ("" if the kernel has none).
#pragma once

#include <string>

namespace keytrail
{

std::string host_name();

} // namespace keytrail
