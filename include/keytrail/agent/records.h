// The agent's own records: observations of tracked processes (exec, fork,
// exit, open, close, connect) and credential files that held nothing.
// Secrets, uses and alerts come from the correlator; health from Health.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "keytrail/agent/connects.h"
#include "keytrail/agent/lifecycle.h"
#include "keytrail/agent/open_files.h"
#include "keytrail/agent/processes.h"
#include "keytrail/schema/json_members.h"
#include "keytrail/schema/record.h"
#include "keytrail/secrets/sources.h"

namespace keytrail
{

class EventRecords
{
      public:
	EventRecords(std::string host, const Clock &clock, Processes &procs)
	    : host_(std::move(host)), clock_(clock), procs_(procs)
	{
	}

	Record exec(const ExecEvent &e, const ExecOutcome &out);
	Record fork(const ForkEvent &e, const ProcessInfo &child);
	Record exit(const ExitEvent &e);
	Record io_uring(const IoUringEvent &e);
	Record open(const OpenEvent &e, const std::string &path);
	Record close(const EventContext &ctx, const ClosedFd &c);
	Record connect(const NamedConnect &c);
	Record credential_file(const EventContext &ctx, const FileScan &scan);
	// A process followed from a watched open on: an `exec` record as if its
	// exec had been followed, marked "tracked_by": "watched_open".
	Record reader(const EventContext &ctx, ProcessInfo &p);

      private:
	// Every field a record about the process that made the event carries.
	nlohmann::json base(const char *type, const EventContext &ctx);
	// An observation, built straight as its line: "type", the process's
	// cached members (the rest of base()), time, tid, then what own(JsonMembers &)
	// adds. A flood of opens builds no DOM and parses nothing back.
	template <typename Own>
	Record observation(const char *type, const EventContext &ctx, Own own);
	// shown(path), remembered for the last paths seen.
	const std::string &shown_path(const std::string &path);

	std::string host_;
	const Clock &clock_;
	Processes &procs_;
	struct ShownPath {
		bool valid = false;
		std::string path, shown;
	};
	std::array<ShownPath, 64> shown_paths_;
	// open_flags_string(), remembered for the last flag sets seen.
	const std::string &shown_flags(uint32_t flags);
	struct ShownFlags {
		bool valid = false;
		uint32_t flags = 0;
		std::string shown;
	};
	std::array<ShownFlags, 16> shown_flags_;
};

} // namespace keytrail
