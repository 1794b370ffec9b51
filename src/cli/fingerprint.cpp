// keytrail fingerprint: the fingerprint of a secret read on stdin, under the
// agent's key, to match an alert to a vault entry. Prints nothing else.
#include "keytrail/secrets/fingerprint.h"

#include <openssl/crypto.h>

#include <cstdio>

#include "commands.h"

namespace keytrail::cli
{

namespace
{

int fingerprint(const StateArgs &args)
{
	try {
		State st = resolve_state(args);
		Fingerprinter fp(load_or_create_key(st.key_file, false));
		SecretBytes in;
		std::string &buf = in.mutable_str();
		char chunk[4096];
		size_t n;
		while ((n = std::fread(chunk, 1, sizeof(chunk), stdin)) > 0 &&
		       buf.size() < (1u << 20))
			buf.append(chunk, n);
		OPENSSL_cleanse(chunk, sizeof(chunk));
		// A trailing newline is not part of it.
		SecretBytes secret = normalize_secret(in.view());
		if (secret.empty()) {
			std::fprintf(stderr, "keytrail fingerprint: no secret on stdin\n");
			return 2;
		}
		std::printf("%s\n", fp(secret.view()).c_str());
		std::fprintf(stderr, "keytrail fingerprint: key %s (%s)\n", fp.key_id().c_str(),
		             st.key_file.c_str());
		return 0;
	} catch (const Error &e) {
		std::fprintf(stderr, "keytrail fingerprint: %s\n", e.what());
		return 1;
	}
}

} // namespace

Command add_fingerprint(CLI::App &app)
{
	auto a = std::make_shared<StateArgs>();
	auto *sub = app.add_subcommand("fingerprint", "Read a secret on stdin and print its "
	                                              "fingerprint (to match an alert to a vault "
	                                              "entry)");
	add_state_args(sub, *a, true);
	return {sub, [a] { return fingerprint(*a); }};
}

} // namespace keytrail::cli
