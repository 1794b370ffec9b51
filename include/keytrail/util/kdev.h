// Device numbers: the kernel's dev_t encoding (MAJOR << 20 | MINOR, what
// the probes read from a superblock) against userspace's (stat's st_dev).
#pragma once

#include <cstdint>
#include <string>

namespace keytrail
{

uint64_t kernel_dev_to_user(uint64_t kdev);
uint64_t user_dev_to_kernel(uint64_t udev);
// "8:1"
std::string dev_string(uint64_t kdev);

} // namespace keytrail
