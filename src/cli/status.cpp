// keytrail status: is the agent running, and how is it doing.
#include "keytrail/tools/status.h"

#include <cstdio>

#include "commands.h"

namespace keytrail::cli
{

Command add_status(CLI::App &app)
{
	struct Args {
		StateArgs state;
		bool json = false;
	};
	auto a = std::make_shared<Args>();
	auto *sub = app.add_subcommand(
	    "status", "Is the agent running, and how is it doing (exit 3 when it is not running)");
	add_state_args(sub, a->state);
	sub->add_flag("--json", a->json, "The full status as JSON");
	return {sub, [a] {
		        try {
			        State s = resolve_state(a->state);
			        auto st = read_status(s.state_dir);
			        if (a->json)
				        std::printf("%s\n", st.dump(2).c_str());
			        else
				        std::fputs(status_text(st).c_str(), stdout);
			        return st.value("running", false) ? 0 : 3;
		        } catch (const Error &e) {
			        std::fprintf(stderr, "keytrail status: %s\n", e.what());
			        return 4;
		        }
	        }};
}

} // namespace keytrail::cli
