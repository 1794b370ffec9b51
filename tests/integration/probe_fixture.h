// Loads the real probes for one test and collects decoded events.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "keytrail/probe/events.h"
#include "keytrail/probe/loader.h"

namespace keytrail::test
{

class ProbeTest : public ::testing::Test
{
      protected:
	void start(LoaderOptions opts = {})
	{
		ASSERT_EQ(geteuid(), 0u) << "integration tests load BPF programs: run them as root";
		loader_ = std::make_unique<Loader>(opts);
		loader_->start([this](const void *d, size_t n) {
			std::string err;
			if (auto ev = decode_event(d, n, &err))
				events_.push_back(std::move(*ev));
			else
				decode_errors_++;
		});
	}
	void SetUp() override { start(); }
	void TearDown() override
	{
		if (loader_)
			loader_->stop();
		EXPECT_EQ(decode_errors_, 0u);
	}

	// Polls until an event of type T satisfies pred, or timeout.
	template <typename T>
	std::optional<T> wait_for(std::function<bool(const T &)> pred, int timeout_ms = 5000)
	{
		auto deadline =
		    std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
		size_t seen = 0;
		while (true) {
			for (; seen < events_.size(); seen++)
				if (auto *e = std::get_if<T>(&events_[seen]); e && pred(*e))
					return *e;
			if (std::chrono::steady_clock::now() > deadline)
				return std::nullopt;
			loader_->poll(50);
		}
	}

	template <typename T> size_t count(std::function<bool(const T &)> pred)
	{
		loader_->poll(0);
		size_t n = 0;
		for (auto &ev : events_)
			if (auto *e = std::get_if<T>(&ev); e && pred(*e))
				n++;
		return n;
	}

	std::unique_ptr<Loader> loader_;
	std::vector<Event> events_;
	size_t decode_errors_ = 0;
};

} // namespace keytrail::test
