// A journal line as an `events` row: parsed by simdjson (the whole line
// validated, UTF-8 included, nesting bounded, the CPU's fastest kernel chosen
// at run time), the columns taken from it, encoded as ClickHouse RowBinary.
#include <simdjson.h>

#include <bit>
#include <cstring>
#include <memory>

#include "keytrail/output/clickhouse.h"
#include "keytrail/util/clock.h"
#include "keytrail/util/json_dom.h"

namespace keytrail
{

namespace
{

using simdjson::SUCCESS;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

constexpr size_t kMaxRecord = 1u << 20;     // a longer line is not a record to ship
constexpr int64_t kMaxSeconds = UINT32_MAX; // DateTime's last second (2106)

// A string member's value; "" for a member of another JSON type.
void take(element v, std::string *out)
{
	std::string_view s;
	if (v.get_string().get(s) == SUCCESS)
		out->assign(s);
	else
		out->clear();
}

// A number as a whole number (a fraction is cut, as a cast would).
std::optional<int64_t> whole(element v)
{
	switch (v.type()) {
	case element_type::INT64: return v.get_int64().value_unsafe();
	case element_type::UINT64:
		return static_cast<int64_t>(
		    std::min<uint64_t>(v.get_uint64().value_unsafe(), INT64_MAX));
	case element_type::DOUBLE: {
		double d = v.get_double().value_unsafe();
		if (!(d > -9.2e18 && d < 9.2e18))
			return std::nullopt; // no int64 (or NaN): no number
		return static_cast<int64_t>(d);
	}
	default: return std::nullopt;
	}
}

// Calls f(key, value) for each member of v, if v is an object. A repeated
// member is visited each time, so the last one wins (as a parsed document
// keeps it).
template <typename F> void members(element v, F f)
{
	object o;
	if (v.get_object().get(o) != SUCCESS)
		return;
	for (auto [key, value] : o)
		f(key, value);
}

struct Upstream {
	std::string text, name, addr;
	std::optional<int64_t> port;
	bool object = false;
};

void root_member(std::string_view k, element v, ClickHouseRow *r, std::string *time,
                 std::string *process_server, Upstream *up)
{
	static const std::pair<const char *, std::string ClickHouseRow::*> kStrings[] = {
	    {"type", &ClickHouseRow::type},           {"host", &ClickHouseRow::host},
	    {"mcp_server", &ClickHouseRow::workload}, {"rule", &ClickHouseRow::rule},
	    {"severity", &ClickHouseRow::severity},   {"finding_id", &ClickHouseRow::finding_id},
	    {"reason", &ClickHouseRow::reason},       {"key_id", &ClickHouseRow::key_id}};
	for (const auto &[name, member] : kStrings)
		if (k == name)
			return take(v, &(r->*member));
	if (k == "time") {
		take(v, time);
	} else if (k == "secret") {
		for (auto *f : {&r->fingerprint, &r->secret_type, &r->source, &r->inventory_id})
			f->clear();
		members(v, [&](std::string_view sk, element sv) {
			if (sk == "fingerprint")
				take(sv, &r->fingerprint);
			else if (sk == "type")
				take(sv, &r->secret_type);
			else if (sk == "source")
				take(sv, &r->source);
			else if (sk == "inventory_id")
				take(sv, &r->inventory_id);
		});
	} else if (k == "identity") {
		r->identity.clear();
		r->environment.clear();
		if (v.is_string())
			return take(v, &r->identity);
		members(v, [&](std::string_view ik, element iv) {
			if (ik == "id")
				take(iv, &r->identity);
			else if (ik == "selectors")
				members(iv, [&](std::string_view sk, element sv) {
					if (sk == "env")
						take(sv, &r->environment);
				});
		});
	} else if (k == "process") {
		process_server->clear();
		members(v, [&](std::string_view pk, element pv) {
			if (pk == "mcp_server")
				take(pv, process_server);
		});
	} else if (k == "upstream") {
		*up = Upstream{};
		if (v.is_string())
			return take(v, &up->text);
		up->object = v.is_object();
		members(v, [&](std::string_view uk, element uv) {
			if (uk == "name")
				take(uv, &up->name);
			else if (uk == "addr")
				take(uv, &up->addr);
			else if (uk == "port")
				up->port = whole(uv);
		});
	} else if (k == "kernel") {
		r->drops = 0;
		members(v, [&](std::string_view kk, element kv) {
			if (kk != "drops_by_type")
				return;
			r->drops = 0;
			members(kv, [&](std::string_view, element dv) {
				// Counts are whole numbers that fit an int64; others are no count.
				int64_t n = 0;
				if (dv.get_int64().get(n) == SUCCESS && n > 0)
					r->drops += static_cast<uint64_t>(n);
			});
		});
	} else if (k == "outputs") {
		r->lag_seconds = 0;
		simdjson::dom::array outs;
		if (v.get_array().get(outs) != SUCCESS)
			return;
		for (element o : outs)
			members(o, [&](std::string_view ok, element ov) {
				double lag = 0;
				if (ok == "lag_seconds" && ov.get_double().get(lag) == SUCCESS)
					r->lag_seconds = std::max(r->lag_seconds, lag);
			});
	}
}

void put_varint(uint64_t v, std::string *out)
{
	while (v >= 0x80) {
		out->push_back(static_cast<char>((v & 0x7f) | 0x80));
		v >>= 7;
	}
	out->push_back(static_cast<char>(v));
}

void put_string(std::string_view s, std::string *out)
{
	put_varint(s.size(), out);
	out->append(s);
}

template <typename T> void put_le(T v, std::string *out)
{
	static_assert(std::endian::native == std::endian::little, "RowBinary is little-endian");
	char b[sizeof(T)];
	std::memcpy(b, &v, sizeof(T));
	out->append(b, sizeof(T));
}

} // namespace

const char *const kClickHouseEventColumns =
    "event_id, host, type, time, time_us, fingerprint, secret_type, source, inventory_id, "
    "identity, environment, workload, upstream, rule, severity, finding_id, reason, key_id, "
    "drops, lag_seconds, record";

std::optional<ClickHouseRow> clickhouse_row(std::string_view record)
{
	if (record.size() > kMaxRecord)
		return std::nullopt;
	simdjson::dom::parser *parser = thread_json_parser();
	if (!parser)
		return std::nullopt;
	element doc;
	object root;
	if (parser->parse(record.data(), record.size()).get(doc) != SUCCESS ||
	    doc.get_object().get(root) != SUCCESS)
		return std::nullopt;
	ClickHouseRow row;
	std::string time, process_server;
	Upstream up;
	for (auto [key, value] : root)
		root_member(key, value, &row, &time, &process_server, &up);
	if (row.workload.empty())
		row.workload = std::move(process_server);
	row.upstream = !up.text.empty() ? std::move(up.text) : std::move(up.name);
	if (row.upstream.empty() && up.object) {
		row.upstream = std::move(up.addr);
		if (up.port)
			row.upstream += ":" + std::to_string(*up.port);
	}
	if (row.type != "health")
		row.drops = 0, row.lag_seconds = 0;
	int64_t ns = -1;
	if (!time.empty() && parse_rfc3339(time, &ns) && ns >= 0 && ns / 1000000000 <= kMaxSeconds)
		row.time_ns = ns;
	return row;
}

void append_row_binary(const ClickHouseRow &r, std::string_view record, std::string *out)
{
	put_string(r.event_id, out);
	put_string(r.host, out);
	put_string(r.type, out);
	put_le(static_cast<uint32_t>(r.time_ns / 1000000000), out);
	put_le(static_cast<uint64_t>(r.time_ns / 1000), out);
	for (const std::string *s : {&r.fingerprint, &r.secret_type, &r.source, &r.inventory_id,
	                             &r.identity, &r.environment, &r.workload, &r.upstream, &r.rule,
	                             &r.severity, &r.finding_id, &r.reason, &r.key_id})
		put_string(*s, out);
	put_le(r.drops, out);
	put_le(r.lag_seconds, out);
	put_string(record, out);
}

} // namespace keytrail
