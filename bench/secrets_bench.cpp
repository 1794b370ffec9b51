// keytrail-bench-secrets: the cost of finding credentials and recording them.
//   environ: one MCP server's environment block (60 variables, 2 credentials)
//   file:    a 64 KiB config file with a few credentials in it
//   ledger:  sightings written per second, committed in batches like the agent
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "keytrail/ledger/ledger.h"
#include "keytrail/secrets/catalog.h"
#include "keytrail/secrets/fingerprint.h"

using namespace keytrail;
using Clock = std::chrono::steady_clock;

namespace
{
std::string filler(size_t n, unsigned seed)
{
	const std::string a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	std::mt19937 g(seed);
	std::string s;
	for (size_t i = 0; i < n; i++)
		s += a[g() % a.size()];
	return s;
}
template <typename F> double ns_per(size_t n, F f)
{
	auto t0 = Clock::now();
	for (size_t i = 0; i < n; i++)
		f();
	return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
}
} // namespace

int main()
{
	std::vector<std::string> env;
	for (int i = 0; i < 58; i++)
		env.push_back("VAR_" + std::to_string(i) + "=" +
		              filler(30, i)); // not credential-named
	env.push_back("GITLAB_PERSONAL_ACCESS_TOKEN=glpat-" + filler(20, 99));
	env.push_back("DB_PASSWORD=" + filler(18, 98));
	size_t found = 0;
	double env_ns = ns_per(2000, [&] { found = scan_environ(env).size(); });

	std::string file;
	while (file.size() < 65536)
		file += "setting_" + std::to_string(file.size()) + " = " + filler(40, file.size()) +
		        "\n";
	file += "api_token = ghp_" + filler(36, 7) + "\naws_secret_access_key = " + filler(40, 8) +
	        "\n";
	size_t found_file = 0;
	double file_ns = ns_per(50, [&] { found_file = scan_file(file).size(); });

	Fingerprinter fp(SecretBytes(std::string(32, 'k')));
	double fp_ns = ns_per(100000, [&] { fp("glpat-abcdefghijklmnopqrst"); });

	char d[] = "/tmp/kt-lbench-XXXXXX";
	std::string path = std::string(mkdtemp(d)) + "/ledger.db";
	const size_t kWrites = 50000;
	double write_ns;
	{
		Ledger l(path);
		size_t i = 0;
		write_ns = ns_per(kWrites, [&] {
			l.record_sighting(Sighting{
			    fp("secret" + std::to_string(i % 1000)), "generic_secret", "", "env",
			    "VAR_" + std::to_string(i % 50), "",
			    "spiffe://b/x/" + std::to_string(i % 20), static_cast<int64_t>(i)});
			if (++i % 500 == 0)
				l.commit(); // the agent commits once per poll cycle
		});
		l.commit();
	}
	std::printf("scan environ (60 vars):          %8.1f us  (%zu credentials)\n", env_ns / 1000,
	            found);
	std::printf("scan 64 KiB file:                %8.1f us  (%zu credentials)\n",
	            file_ns / 1000, found_file);
	std::printf("fingerprint (HMAC-SHA256):       %8.1f ns\n", fp_ns);
	std::printf("ledger sightings:                %8.0f per second (batches of 500, WAL, "
	            "synchronous=NORMAL)\n",
	            1e9 / write_ns);
	return found == 2 && found_file == 2 ? 0 : 1;
}
