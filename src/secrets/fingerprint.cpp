#include "keytrail/secrets/fingerprint.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "keytrail/util/error.h"
#include "keytrail/util/files.h"

namespace keytrail
{

Fingerprinter::Fingerprinter(SecretBytes key) : key_(std::move(key)) {}

std::string Fingerprinter::operator()(std::string_view secret) const
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	HMAC(EVP_sha256(), key_.view().data(), static_cast<int>(key_.size()),
	     reinterpret_cast<const unsigned char *>(secret.data()), secret.size(), md, &len);
	std::string hex;
	char two[3];
	for (unsigned i = 0; i < len && hex.size() < kFingerprintHexLength; i++) {
		std::snprintf(two, sizeof(two), "%02x", md[i]);
		hex += two;
	}
	OPENSSL_cleanse(md, sizeof(md));
	return hex;
}

SecretBytes load_or_create_key(const std::string &path, bool create)
{
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT && create) {
		SecretBytes key;
		key.mutable_str().resize(32);
		if (RAND_bytes(reinterpret_cast<unsigned char *>(key.mutable_str().data()), 32) !=
		    1)
			throw Error("cannot generate a fingerprint key: no randomness");
		int out =
		    open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (out < 0)
			throw sys_error("create fingerprint key " + path, errno);
		bool ok = write(out, key.view().data(), 32) == 32 && fsync(out) == 0;
		close(out);
		if (!ok)
			throw sys_error("write fingerprint key " + path, errno);
		return key;
	}
	if (fd < 0 && errno == ELOOP)
		throw Error("fingerprint key " + path +
		            " is a symbolic link; give the file itself");
	if (fd < 0)
		throw sys_error("read fingerprint key " + path, errno);
	// A key someone else could have written, or can read, is known to them:
	// their fingerprints would match ours.
	struct stat st;
	const char *refused = nullptr;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		refused = "is not a regular file";
	else if (st.st_uid != geteuid())
		refused = "belongs to another user (chown it to the agent's user)";
	else if (st.st_mode & 077)
		refused = "is readable or writable by others (chmod 600 it)";
	else if (st.st_nlink > 1)
		refused = "has other hard links (another name may let others read it)";
	if (refused) {
		close(fd);
		throw Error("fingerprint key " + path + " " + refused);
	}
	SecretBytes key;
	key.mutable_str().resize(4096);
	ssize_t n = read(fd, key.mutable_str().data(), 4096);
	close(fd);
	if (n < 16)
		throw Error("fingerprint key " + path + " is shorter than 16 bytes");
	key.mutable_str().resize(n);
	return key;
}

SecretBytes normalize_secret(std::string_view raw)
{
	auto is_trim = [](char c) {
		return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'';
	};
	while (!raw.empty() && is_trim(raw.front()))
		raw.remove_prefix(1);
	while (!raw.empty() && is_trim(raw.back()))
		raw.remove_suffix(1);
	SecretBytes out;
	std::string &s = out.mutable_str();
	if (raw.find("-----BEGIN") == std::string_view::npos) {
		s.assign(raw);
		return out;
	}
	// PEM: one canonical line structure.
	s.reserve(raw.size());
	for (size_t i = 0; i < raw.size(); i++) {
		if (raw[i] == '\\' && i + 1 < raw.size() && raw[i + 1] == 'n') {
			s += '\n';
			i++;
		} else if (raw[i] != '\r') {
			s += raw[i];
		}
	}
	std::string lines;
	size_t start = 0;
	while (start <= s.size()) {
		size_t end = s.find('\n', start);
		if (end == std::string::npos)
			end = s.size();
		std::string_view line(s.data() + start, end - start);
		while (!line.empty() && (line.back() == ' ' || line.back() == '\t'))
			line.remove_suffix(1);
		if (!line.empty())
			lines.append(line).append("\n");
		start = end + 1;
	}
	OPENSSL_cleanse(s.data(), s.size());
	s = std::move(lines);
	OPENSSL_cleanse(lines.data(), lines.size());
	return out;
}

} // namespace keytrail
