// Secret intake: where a tracked process gets a credential (argv, its
// environment, a credential file it opens) and what MCP client configs
// hard-code. Each sighting is written once to the ledger and told once to
// the correlator, which writes the `secret` record.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "keytrail/agent/counters.h"
#include "keytrail/agent/processes.h"
#include "keytrail/ledger/ledger.h"
#include "keytrail/secrets/sources.h"

namespace keytrail
{

class SecretIntake
{
      public:
	SecretIntake(const Config &cfg, SecretSources &sources, Ledger &ledger, Processes &procs,
	             SecretCounters &counters, const Clock &clock, Feed feed);

	// argv and environ of a process: from its exec record when given, else
	// from /proc. Tells the correlator the process started.
	void collect(ProcessInfo &p, const std::vector<std::string> *raw_argv,
	             const SecretBytes *env_block);
	// A file a process opened (p null: unknown). nullopt unless it is a
	// credential file that could be read; the scan says what it held.
	// `watched_as`: the watched file's path when the inode is watched.
	std::optional<FileScan> from_open(ProcessInfo *p, const OpenEvent &e,
	                                  const std::string &path, bool watched,
	                                  const std::string &watched_as = "");
	// Credential files among the fds a process holds that it did not open
	// while followed (inherited from an unfollowed parent across exec,
	// received over a unix socket). Done when it becomes tracked; again
	// (at most once a second) before its upstream uses are attributed.
	void from_held_fds(ProcessInfo &p, int64_t when);
	void recheck_held_fds(ProcessInfo &p, int64_t when);
	// Every MCP client config (users' well-known ones and secrets.mcp_configs).
	void from_mcp_configs();
	void reconfigure(const Config &cfg) { cfg_ = &cfg; }

      private:
	// One sighting: deduplicated per process, one ledger write, one input.
	void obtained(ProcessInfo *p, const Obtained &o, int64_t time_ns);

	const Config *cfg_;
	SecretSources &sources_;
	Ledger &ledger_;
	Processes &procs_;
	SecretCounters &counters_;
	const Clock &clock_;
	Feed feed_;
};

} // namespace keytrail
