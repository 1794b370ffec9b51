#include "keytrail/output/output.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "keytrail/output/ocsf.h"
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"

namespace keytrail
{

namespace
{

// Raw observations come by the hundred thousand a second from a busy MCP
// server: their writer is woken per batch (or after kLinger), not per line.
// Everything else (alerts, secrets, health) wakes it at once.
constexpr size_t kBatchLines = 512;
constexpr size_t kStagedLines = 64;
constexpr auto kLinger = std::chrono::milliseconds(25);

int syslog_severity(const nlohmann::json &r)
{
	auto it = r.find("severity");
	if (it == r.end() || !it->is_string())
		return severity("info").syslog;
	return severity(it->get_ref<const std::string &>()).syslog;
}

std::string_view type_of(const nlohmann::json &r)
{
	auto it = r.find("type");
	if (it == r.end() || !it->is_string())
		return {};
	return it->get_ref<const std::string &>();
}

} // namespace

Output::~Output()
{
	close();
}

void Output::add(std::unique_ptr<Sink> sink, RouteOptions opts)
{
	auto r = std::make_unique<Route>();
	r->sink = std::move(sink);
	r->opts = std::move(opts);
	Route *raw = r.get();
	r->thread = std::thread([raw] { raw->run(); });
	routes_.push_back(std::move(r));
	observation_routes_.clear();
}

void Output::emit(const nlohmann::json &record)
{
	emit(
	    type_of(record), syslog_severity(record), [&] { return dump_json(record); },
	    [&] { return to_ocsf(record); });
}

void Output::emit(Record &&record)
{
	if (!record.line.empty()) {
		emit_observation(std::move(record));
		return;
	}
	emit(
	    type_of(record.fields), syslog_severity(record.fields),
	    [&] { return serialize(record); }, [&] { return to_ocsf(to_json(record)); });
}

void Output::emit(std::string_view type_name, int severity,
                  const std::function<std::string()> &json_line,
                  const std::function<nlohmann::json()> &ocsf)
{
	std::string type(type_name);
	std::string json; // serialized once, on first need
	int64_t now = wall_now_ns();
	bool urgent = !is_observation(type);
	size_t json_routes = 0; // the last one takes the line, the others copy it
	for (auto &r : routes_)
		json_routes += r->opts.format != "ocsf" &&
		               (r->opts.records.empty() || r->opts.records.count(type));
	for (auto &r : routes_) {
		if (!r->opts.records.empty() && !r->opts.records.count(type))
			continue;
		std::string line;
		if (r->opts.format == "ocsf") {
			if (type != "alert" && type != "update")
				continue;
			line = dump_json(ocsf());
		} else {
			if (json.empty())
				json = json_line();
			line = --json_routes ? json : std::move(json);
		}
		r->staged.push_back({std::move(line), type, severity, now, 0, nullptr});
		if (urgent || r->staged.size() >= kStagedLines)
			r->hand_over();
	}
}

const std::vector<Output::Route *> &Output::observation_routes(std::string_view type)
{
	for (const auto &[t, routes] : observation_routes_)
		if (t == type)
			return routes;
	std::vector<Route *> to;
	for (auto &r : routes_)
		if (r->opts.format != "ocsf" &&
		    (r->opts.records.empty() || r->opts.records.count(std::string(type))))
			to.push_back(r.get());
	observation_routes_.emplace_back(type, std::move(to));
	return observation_routes_.back().second;
}

void Output::emit_observation(Record &&record)
{
	static const int info = severity("info").syslog;
	const auto &to = observation_routes(record.type);
	// Its own time stands for when it was emitted: no clock read per line.
	int64_t now = record.time_ns ? record.time_ns : wall_now_ns();
	for (size_t i = 0; i < to.size(); i++) {
		Route *r = to[i];
		// The last route takes the line, the others copy it.
		r->staged.push_back({i + 1 < to.size() ? record.line : std::move(record.line),
		                     std::string(record.type), info, now, record.time_ns,
		                     record.keys});
		if (r->staged.size() >= kStagedLines)
			r->hand_over();
	}
}

void Output::flush()
{
	for (auto &r : routes_)
		r->hand_over();
}

void Output::Route::hand_over()
{
	if (staged.empty())
		return;
	std::unique_lock lock(mu);
	// Only the last can be other than an observation: it handed them over.
	urgent = urgent || !is_observation(staged.back().type);
	for (auto &item : staged) {
		if (opts.block_when_full && waiting == Wait::idle &&
		    queued_bytes + item.line.size() > opts.max_queue_bytes)
			cv.notify_one(); // what is queued frees room only once written
		if (opts.block_when_full)
			room.wait(lock, [&] {
				return stop || queued_bytes == 0 ||
				       queued_bytes + item.line.size() <= opts.max_queue_bytes;
			});
		if (queued_bytes + item.line.size() > opts.max_queue_bytes || stop) {
			dropped++;
			continue;
		}
		queued_bytes += item.line.size();
		queue.push_back(std::move(item));
	}
	staged.clear();
	// An idle writer is woken by the first lines, then lingers for more; a
	// lingering one by a full batch or an urgent line. Woken after the
	// unlock, so it does not wake only to wait for the lock.
	bool wake = (waiting == Wait::idle && !queue.empty()) ||
	            (waiting == Wait::linger && (urgent || queue.size() >= kBatchLines));
	lock.unlock();
	if (wake)
		cv.notify_one();
}

void Output::Route::run()
{
	using namespace std::chrono;
	milliseconds backoff{100};
	bool unflushed = false; // the sink buffers lines it accepted
	std::deque<Item> batch;
	std::unique_lock lock(mu);
	bool busy = false; // the last batch was full: more is on its way
	for (;;) {
		// Idle (nothing queued, nothing the sink holds, no flood going
		// on): asleep until a line comes, not woken every kLinger for
		// nothing. In a flood, straight to lingering for the next batch.
		if (queue.empty() && !unflushed && !busy) {
			waiting = Wait::idle;
			cv.wait(lock, [&] { return stop || !queue.empty(); });
		}
		waiting = Wait::linger;
		cv.wait_for(lock, kLinger,
		            [&] { return stop || urgent || queue.size() >= kBatchLines; });
		waiting = Wait::no;
		busy = queue.size() >= kBatchLines;
		if (queue.empty() && !unflushed) {
			if (stop)
				break;
			continue;
		}
		// Take everything queued; write it without the lock.
		batch.swap(queue);
		urgent = false;
		lock.unlock();
		size_t done = 0, bytes = 0;
		bool ok = true;
		int err = 0;
		for (; done < batch.size(); done++) {
			const Item &item = batch[done];
			if (!sink->write(item.line, LineMeta{item.type, item.severity, item.time_ns,
			                                     item.record_ns, item.keys.get()})) {
				ok = false;
				err = errno;
				break;
			}
			bytes += item.line.size();
		}
		if (done)
			unflushed = true;
		if (ok) {
			ok = sink->flush();
			err = errno;
			unflushed = !ok;
		}
		lock.lock();
		queued_bytes -= bytes;
		written += done;
		room.notify_all();
		// What was not written goes back to the front, in order.
		queue.insert(queue.begin(), std::make_move_iterator(batch.begin() + done),
		             std::make_move_iterator(batch.end()));
		batch.clear();
		if (ok) {
			if (!healthy.exchange(true))
				spdlog::info("output {} recovered after {} retries", sink->name(),
				             retries.load());
			backoff = milliseconds{100};
			continue;
		}
		// Failed: the lines stay queued (or buffered in the sink). Report,
		// wait, reopen and retry; a stop request ends the retries and what
		// is left is counted as dropped.
		errors++;
		last_error = std::strerror(err);
		if (healthy.exchange(false))
			spdlog::warn("output {} failed: {}; retrying", sink->name(), last_error);
		if (cv.wait_for(lock, backoff, [&] { return stop; })) {
			dropped += queue.size();
			queued_bytes = 0;
			queue.clear();
			room.notify_all();
			return;
		}
		backoff = std::min(backoff * 2, milliseconds{5000});
		retries++;
		lock.unlock();
		sink->reopen();
		lock.lock();
	}
}

void Output::finish(std::vector<Route *> routes, int timeout_ms)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	for (auto *r : routes) {
		r->hand_over();
		// Give every sink, failing ones too, until the deadline to drain.
		std::unique_lock lock(r->mu);
		while (!r->queue.empty() && std::chrono::steady_clock::now() < deadline) {
			lock.unlock();
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
			lock.lock();
		}
		r->stop = true;
		r->cv.notify_one();
		r->room.notify_all();
	}
	for (auto *r : routes) {
		if (r->thread.joinable())
			r->thread.join();
		r->sink->flush();
	}
}

void Output::close(int timeout_ms)
{
	if (closed_)
		return;
	closed_ = true;
	std::vector<Route *> all;
	for (auto &r : routes_)
		all.push_back(r.get());
	finish(all, timeout_ms);
}

void Output::replace(const std::string &group,
                     std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>> routes,
                     int timeout_ms)
{
	std::vector<Route *> old;
	for (auto &r : routes_)
		if (r->opts.group == group)
			old.push_back(r.get());
	finish(old, timeout_ms);
	for (auto *r : old) {
		retired_written_ += r->written;
		retired_errors_ += r->errors;
		retired_dropped_ += r->dropped;
	}
	std::erase_if(routes_, [&](const auto &r) { return r->opts.group == group; });
	observation_routes_.clear();
	for (auto &[sink, opts] : routes) {
		opts.group = group;
		add(std::move(sink), std::move(opts));
	}
}

uint64_t Output::written() const
{
	uint64_t n = retired_written_;
	for (const auto &r : routes_)
		n += r->written;
	return n;
}

uint64_t Output::errors() const
{
	uint64_t n = retired_errors_;
	for (const auto &r : routes_)
		n += r->errors;
	return n;
}

uint64_t Output::dropped() const
{
	uint64_t n = retired_dropped_;
	for (const auto &r : routes_)
		n += r->dropped;
	return n;
}

nlohmann::json Output::health() const
{
	nlohmann::json a = nlohmann::json::array();
	for (const auto &r : routes_) {
		std::lock_guard lock(r->mu);
		nlohmann::json j = {{"name", r->sink->name()},      {"format", r->opts.format},
		                    {"healthy", r->healthy.load()}, {"written", r->written.load()},
		                    {"errors", r->errors.load()},   {"retries", r->retries.load()},
		                    {"dropped", r->dropped.load()}, {"queued", r->queue.size()}};
		if (!r->last_error.empty())
			j["last_error"] = r->last_error;
		a.push_back(std::move(j));
	}
	return a;
}

} // namespace keytrail
