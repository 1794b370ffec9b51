// fingerprint = hex(HMAC-SHA256(key, normalized secret)), first 32 hex
// digits (128 bits). The key is per host (created 0600 at first run) or
// fleet-wide (agent config), so fingerprints can match across hosts while a
// leaked ledger reveals nothing that can be brute-forced without the key.
#pragma once

#include <string>
#include <string_view>

#include "keytrail/util/secret_bytes.h"

namespace keytrail
{

inline constexpr size_t kFingerprintHexLength = 32;

class Fingerprinter
{
      public:
	explicit Fingerprinter(SecretBytes key);
	std::string operator()(std::string_view normalized_secret) const;
	// Names the key without revealing it (8 hex digits of an HMAC of a
	// fixed label): tools and the agent print it so an analyst can see two
	// fingerprints come from the same key.
	std::string key_id() const { return (*this)("keytrail key id").substr(0, 8); }

      private:
	SecretBytes key_;
};

// Loads the key from path; when the file is missing and create is true, makes
// a new random 32-byte key there (0600). Throws Error on a short or unreadable
// key, or a key file others can read.
SecretBytes load_or_create_key(const std::string &path, bool create);

// Trims surrounding whitespace and quotes; for PEM blocks, turns escaped
// "\n" (JSON) and CRLF into LF and drops trailing spaces, so the same key
// fingerprints the same wherever it was found.
SecretBytes normalize_secret(std::string_view raw);

} // namespace keytrail
