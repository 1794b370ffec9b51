#include "keytrail/output/output.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "keytrail/output/ocsf.h"
#include "keytrail/schema/rules.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/error.h"

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
	uint64_t used = 0;
	for (const auto &x : routes_)
		used |= x->bit;
	if (~used == 0)
		throw Error("at most 64 outputs");
	auto r = std::make_unique<Route>();
	r->bit = ~used & (used + 1); // the lowest one free
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
	int64_t now = wall_now_ns();
	if (is_observation(type)) {
		if (uint64_t to = observation_routes(type))
			stage(Observation{json_line(), std::move(type), severity, now, 0, nullptr,
			                  to});
		return;
	}
	hand_over();            // the observations before it go first
	std::string json;       // serialized once, on first need
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
		size_t bytes = line.size();
		Route::Item item;
		item.line = std::move(line);
		item.type = type;
		item.severity = severity;
		item.time_ns = now;
		r->take(std::move(item), bytes, true);
	}
}

uint64_t Output::observation_routes(std::string_view type)
{
	for (const auto &[t, bits] : observation_routes_)
		if (t == type)
			return bits;
	uint64_t bits = 0;
	for (auto &r : routes_)
		if (r->opts.format != "ocsf" &&
		    (r->opts.records.empty() || r->opts.records.count(std::string(type))))
			bits |= r->bit;
	observation_routes_.emplace_back(type, bits);
	return bits;
}

void Output::emit_observation(Record &&record)
{
	uint64_t to = observation_routes(record.type);
	if (!to)
		return;
	// Its own time stands for when it was emitted: no clock read per line.
	int64_t now = record.time_ns ? record.time_ns : wall_now_ns();
	static const int info = severity("info").syslog;
	stage(Observation{std::move(record.line), std::string(record.type), info, now,
	                  record.time_ns, std::move(record.keys), to});
}

void Output::stage(Observation &&o)
{
	if (!staged_) {
		staged_ = std::make_shared<Observations>();
		staged_->reserve(kStagedLines);
	}
	staged_routes_ |= o.routes;
	staged_->push_back(std::move(o));
	if (staged_->size() >= kStagedLines)
		hand_over();
}

void Output::hand_over()
{
	if (!staged_)
		return;
	std::shared_ptr<const Observations> batch = std::move(staged_);
	staged_.reset();
	for (auto &r : routes_) {
		if (!(staged_routes_ & r->bit))
			continue;
		Route::Item item;
		item.batch = batch;
		item.lines = 0;
		size_t bytes = 0;
		for (const auto &o : *batch)
			if (o.routes & r->bit) {
				item.lines++;
				bytes += o.line.size();
			}
		r->take(std::move(item), bytes, false);
	}
	staged_routes_ = 0;
}

void Output::flush()
{
	hand_over();
}

void Output::Route::take(Item item, size_t bytes, bool urgent_item)
{
	std::unique_lock lock(mu);
	if (opts.block_when_full && waiting == Wait::idle &&
	    queued_bytes + bytes > opts.max_queue_bytes)
		cv.notify_one(); // what is queued frees room only once written
	if (opts.block_when_full)
		room.wait(lock, [&] {
			return stop || queued_bytes == 0 ||
			       queued_bytes + bytes <= opts.max_queue_bytes;
		});
	// A batch is taken whole, and alone whatever its size: the bound holds
	// to within one batch.
	bool fits =
	    queued_bytes + bytes <= opts.max_queue_bytes || (item.batch && queued_bytes == 0);
	if (!fits || stop) {
		dropped += item.lines;
		return;
	}
	queued_bytes += bytes;
	queued_lines += item.lines;
	queue.push_back(std::move(item));
	urgent = urgent || urgent_item;
	// An idle writer is woken by the first lines, then lingers for more; a
	// lingering one by a full batch or an urgent line. Woken after the
	// unlock, so it does not wake only to wait for the lock.
	bool wake = waiting == Wait::idle ||
	            (waiting == Wait::linger && (urgent || queued_lines >= kBatchLines));
	lock.unlock();
	if (wake)
		cv.notify_one();
}

bool Output::Route::write(Item &item, size_t &lines, size_t &bytes)
{
	if (!item.batch) {
		if (!sink->write(item.line, LineMeta{item.type, item.severity, item.time_ns,
		                                     item.record_ns, item.keys.get()}))
			return false;
		lines++;
		bytes += item.line.size();
		item.lines = 0;
		return true;
	}
	const Observations &obs = *item.batch;
	for (; item.from < obs.size(); item.from++) {
		const Observation &o = obs[item.from];
		if (!(o.routes & bit))
			continue;
		if (!sink->write(
		        o.line, LineMeta{o.type, o.severity, o.time_ns, o.record_ns, o.keys.get()}))
			return false;
		lines++;
		bytes += o.line.size();
		item.lines--;
	}
	return true;
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
		            [&] { return stop || urgent || queued_lines >= kBatchLines; });
		waiting = Wait::no;
		busy = queued_lines >= kBatchLines;
		if (queue.empty() && !unflushed) {
			if (stop)
				break;
			continue;
		}
		// Take everything queued; write it without the lock.
		batch.swap(queue);
		urgent = false;
		lock.unlock();
		size_t done = 0, lines = 0, bytes = 0;
		bool ok = true;
		int err = 0;
		for (; done < batch.size(); done++)
			if (!write(batch[done], lines, bytes)) {
				ok = false;
				err = errno;
				break;
			}
		if (lines)
			unflushed = true;
		if (ok) {
			ok = sink->flush();
			err = errno;
			unflushed = !ok;
		}
		lock.lock();
		queued_bytes -= bytes;
		queued_lines -= lines;
		written += lines;
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
			dropped += queued_lines;
			queued_bytes = queued_lines = 0;
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
		// Give every sink, failing ones too, until the deadline to drain:
		// what it is writing counts (queued_lines falls only once written),
		// or a batch that fails in flight would come back to a stopped
		// route and be dropped.
		std::unique_lock lock(r->mu);
		while ((!r->queue.empty() || r->queued_lines > 0) &&
		       std::chrono::steady_clock::now() < deadline) {
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
	hand_over();
	std::vector<Route *> all;
	for (auto &r : routes_)
		all.push_back(r.get());
	finish(all, timeout_ms);
}

void Output::replace(const std::string &group,
                     std::vector<std::pair<std::unique_ptr<Sink>, RouteOptions>> routes,
                     int timeout_ms)
{
	hand_over();
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
		                    {"dropped", r->dropped.load()}, {"queued", r->queued_lines}};
		if (!r->last_error.empty())
			j["last_error"] = r->last_error;
		a.push_back(std::move(j));
	}
	return a;
}

} // namespace keytrail
