// A recording the real agent made (tests/golden/record.sh) replayed through
// the correlator must give exactly the records in tests/golden/expected.jsonl.
// A change that alters what the correlator decides, or how it writes it,
// shows up here as a diff; regenerate expected.jsonl only on purpose
// (`keytrail replay tests/golden/scenario.ktr -c tests/golden/replay.yaml`,
// dropping " -c PATH" from the investigate commands).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "keytrail/config/config.h"
#include "keytrail/correlate/correlator.h"

using namespace keytrail;

namespace
{

const std::string kDir = std::string(KEYTRAIL_SOURCE_DIR) + "/tests/golden";

// Time as the recording tells it, as `keytrail replay` keeps it.
class RecordedClock : public Clock
{
      public:
	int64_t now_ns() const override { return now_; }
	int64_t boot_to_wall_ns(uint64_t b) const override { return static_cast<int64_t>(b); }
	void set(int64_t t) { now_ = std::max(now_, t); }

      private:
	int64_t now_ = 0;
};

std::vector<std::string> lines(const std::string &path)
{
	std::ifstream in(path);
	std::vector<std::string> out;
	for (std::string l; std::getline(in, l);)
		out.push_back(l);
	return out;
}

} // namespace

TEST(Golden, RecordingReplaysToTheExpectedRecords)
{
	Config cfg = load_config(kDir + "/replay.yaml");
	cfg.source = kDefaultConfigPath; // investigate commands then name no config: any checkout
	RecordedClock clock;
	std::vector<std::string> got;
	Correlator corr("replay", cfg, clock, [&](Record &&r) { got.push_back(serialize(r)); });
	RecordingReader reader(kDir + "/scenario.ktr");
	while (const Input *in = reader.next()) {
		clock.set(input_time(*in));
		corr.feed(*in);
	}
	ASSERT_EQ(reader.error(), "");
	std::vector<std::string> want = lines(kDir + "/expected.jsonl");
	ASSERT_EQ(got.size(), want.size());
	// Compared as JSON: raw fields are spliced at the end of a line, so the
	// order of keys is not part of what a record says.
	for (size_t i = 0; i < want.size(); i++)
		EXPECT_EQ(nlohmann::json::parse(got[i]), nlohmann::json::parse(want[i]))
		    << "record " << i << "\n got: " << got[i] << "\nwant: " << want[i];
}
