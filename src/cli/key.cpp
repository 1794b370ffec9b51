// keytrail key init FILE | id FILE: the fleet's fingerprint key. One key on
// every host makes fingerprints comparable across the fleet (docs/fleet.md);
// its id names it without revealing it, so hosts can be checked for the
// same key.
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "commands.h"
#include "keytrail/secrets/fingerprint.h"
#include "keytrail/util/error.h"

namespace keytrail::cli
{

namespace
{

int key_init(const std::string &path)
{
	SecretBytes key;
	key.mutable_str().resize(32);
	if (RAND_bytes(reinterpret_cast<unsigned char *>(key.mutable_str().data()), 32) != 1) {
		std::fprintf(stderr, "keytrail key init: no randomness from OpenSSL\n");
		return 1;
	}
	// Never over an existing key: every fingerprint made with it would stop
	// matching.
	int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		std::fprintf(stderr, "keytrail key init: %s: %s\n", path.c_str(),
		             errno == EEXIST ? "exists; a key is never overwritten (remove it "
		                               "first if you mean to replace it)"
		                             : std::strerror(errno));
		return 1;
	}
	bool ok = fchmod(fd, 0600) == 0 && write(fd, key.view().data(), 32) == 32 && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok) {
		std::fprintf(stderr, "keytrail key init: write %s: %s\n", path.c_str(),
		             std::strerror(errno));
		unlink(path.c_str());
		return 1;
	}
	std::printf("%s\n", Fingerprinter(std::move(key)).key_id().c_str());
	return 0;
}

int key_id(const std::string &path)
{
	try {
		std::printf("%s\n",
		            Fingerprinter(load_or_create_key(path, false)).key_id().c_str());
		return 0;
	} catch (const Error &e) {
		std::fprintf(stderr, "keytrail key id: %s\n", e.what());
		return 1;
	}
}

} // namespace

Command add_key(CLI::App &app)
{
	auto *sub = app.add_subcommand("key", "Make or name a fleet fingerprint key "
	                                      "(secrets.fingerprint_key_file)");
	sub->require_subcommand(1);
	auto path = std::make_shared<std::string>();
	auto *init = sub->add_subcommand("init", "Write 32 random bytes to FILE (0600, never "
	                                         "over an existing file); print its id");
	init->add_option("file", *path, "Key file to create")->required();
	auto *id = sub->add_subcommand("id", "Print the short public id of the key in FILE");
	id->add_option("file", *path, "Key file")->required();
	return {sub, [path, init] { return *init ? key_init(*path) : key_id(*path); }};
}

} // namespace keytrail::cli
