// Output: fans each record out to every route whose filter takes it. A route
// is a sink, a format (JSON, or OCSF for alerts) and a bounded queue drained
// by the route's own thread: emit() never blocks on a sink. A sink that
// fails is retried with backoff; lines that do not fit in its queue meanwhile
// are dropped and counted. health() reports all of it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "keytrail/output/sink.h"
#include "keytrail/schema/record.h"

namespace keytrail
{

struct RouteOptions {
	std::string format = "json";   // json | ocsf
	std::set<std::string> records; // empty = every record type
	size_t max_queue_bytes = 32u << 20;
	// Wait for room instead of dropping (replay: nothing to protect, and
	// nothing may be lost).
	bool block_when_full = false;
	// Routes of one group are replaced together (replace()): "outputs" for
	// the config's outputs; the journal has its own.
	std::string group;
};

class Output
{
      public:
	Output() = default;
	~Output();
	Output(const Output &) = delete;
	Output &operator=(const Output &) = delete;

	void add(std::unique_ptr<Sink> sink, RouteOptions opts = {});
	// Drains (up to timeout_ms) and stops the routes of `group`, then adds
	// `routes` in their place: a reload's new outputs. Call it from the
	// thread that emits.
	void replace(const std::string &group,
	             std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>> routes,
	             int timeout_ms = 2000);
	void emit(const nlohmann::json &record);
	void emit(Record &&record);
	// Hands the observations emit() staged to the routes' writers (any
	// other record hands them over itself, before it). The emitting thread
	// calls it after each batch of kernel records.
	void flush();
	// Waits up to `timeout_ms` for the queues to drain, then stops the
	// writer threads. Idempotent.
	void close(int timeout_ms = 3000);

	uint64_t written() const;
	uint64_t errors() const;
	uint64_t dropped() const;
	nlohmann::json health() const;

      private:
	// `json_line` is called once, on first need.
	void emit(std::string_view type, int severity,
	          const std::function<std::string()> &json_line,
	          const std::function<nlohmann::json()> &ocsf);

	// Observations staged by the emitting thread (no lock): one copy of each
	// line, shared by the routes it goes to (a bit each), handed over
	// kStagedLines at a time or by flush(): a flood takes each route's lock
	// and wakes its writer per batch, not per line.
	struct Observation {
		std::string line, type;
		int severity; // syslog's
		int64_t time_ns, record_ns;
		std::shared_ptr<const IndexKeys> keys;
		uint64_t routes; // Route::bit of each route that takes it
	};
	using Observations = std::vector<Observation>;

	struct Route {
		std::unique_ptr<Sink> sink;
		RouteOptions opts;
		uint64_t bit = 0; // its bit in Observation::routes, for its life
		// A line, or this route's lines of a batch of observations (from
		// `from` on; `lines` of them are left).
		struct Item {
			std::string line, type;
			int severity = 0;
			int64_t time_ns = 0, record_ns = 0;
			std::shared_ptr<const IndexKeys> keys;
			std::shared_ptr<const Observations> batch;
			size_t from = 0, lines = 1;
		};
		// Queues an item of `lines` lines and `bytes` bytes (or drops it,
		// counted, when the queue is full) and wakes the writer if due.
		void take(Item item, size_t bytes, bool urgent_item);
		mutable std::mutex mu;
		std::condition_variable cv, room;
		std::deque<Item> queue;
		size_t queued_bytes = 0, queued_lines = 0;
		bool stop = false;
		bool urgent = false; // a record other than a raw observation is queued
		// How the writer sleeps on cv: idle (until a line comes) or
		// lingering (until a batch is full, an urgent line or kLinger).
		enum class Wait { no, idle, linger } waiting = Wait::no;
		std::atomic<uint64_t> written{0}, errors{0}, dropped{0}, retries{0};
		std::atomic<bool> healthy{true};
		std::string last_error; // under mu
		std::thread thread;
		void run();
		// Writes what `item` holds for this route from where it stands;
		// false (item advanced past what was written) if the sink failed.
		bool write(Item &item, size_t &lines, size_t &bytes);
	};
	static void finish(std::vector<Route *> routes, int timeout_ms);
	// An observation (its line made already): staged for the JSON routes
	// that take its type, found once per type.
	void emit_observation(Record &&record);
	uint64_t observation_routes(std::string_view type);
	void stage(Observation &&o);
	// The staged observations, to their routes (before any other record,
	// and before the routes change).
	void hand_over();

	std::vector<std::unique_ptr<Route>> routes_;
	// By observation type, the bits of its routes; cleared when the routes
	// change.
	std::vector<std::pair<std::string, uint64_t>> observation_routes_;
	std::shared_ptr<Observations> staged_;
	uint64_t staged_routes_ = 0;
	bool closed_ = false;
	uint64_t retired_written_ = 0, retired_errors_ = 0, retired_dropped_ = 0; // replaced routes
};

} // namespace keytrail
