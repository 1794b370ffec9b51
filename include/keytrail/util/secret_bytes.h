// Secret bytes live in memory only as long as needed: this owner wipes them
// (OPENSSL_cleanse) when it goes, and cannot be copied by accident.
#pragma once

#include <openssl/crypto.h>

#include <string>
#include <string_view>

namespace keytrail
{

class SecretBytes
{
      public:
	SecretBytes() = default;
	explicit SecretBytes(std::string_view s) : s_(s) {}
	~SecretBytes() { wipe(); }
	SecretBytes(const SecretBytes &) = delete;
	SecretBytes &operator=(const SecretBytes &) = delete;
	SecretBytes(SecretBytes &&o) noexcept : s_(std::move(o.s_)) { o.wipe(); }
	SecretBytes &operator=(SecretBytes &&o) noexcept
	{
		if (this != &o) {
			wipe();
			s_ = std::move(o.s_);
			o.wipe();
		}
		return *this;
	}

	std::string_view view() const { return s_; }
	size_t size() const { return s_.size(); }
	bool empty() const { return s_.empty(); }
	// For building the normalized form in place; the string stays owned here.
	std::string &mutable_str() { return s_; }
	void wipe()
	{
		if (!s_.empty())
			OPENSSL_cleanse(s_.data(), s_.size());
		s_.clear();
	}

      private:
	std::string s_;
};

} // namespace keytrail
