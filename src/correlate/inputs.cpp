#include "keytrail/correlate/inputs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "keytrail/util/error.h"
#include "keytrail/util/files.h"

namespace keytrail
{

namespace
{

constexpr char kMagic[8] = {'K', 'T', 'R', 'E', 'C', '0', '1', '\n'};
constexpr uint32_t kMaxFrame = 16u << 20;

class Enc
{
      public:
	explicit Enc(std::string *out) : out_(out) {}
	template <typename T> void num(T v)
	{
		static_assert(std::is_integral_v<T>);
		for (size_t i = 0; i < sizeof(T); i++)
			out_->push_back(
			    static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
	}
	void str(const std::string &s)
	{
		num<uint32_t>(static_cast<uint32_t>(s.size()));
		out_->append(s);
	}
	void strs(const std::vector<std::string> &v)
	{
		num<uint32_t>(static_cast<uint32_t>(v.size()));
		for (const auto &s : v)
			str(s);
	}
	void sels(const Selectors &m)
	{
		num<uint32_t>(static_cast<uint32_t>(m.size()));
		for (const auto &[k, v] : m) {
			str(k);
			str(v);
		}
	}

      private:
	std::string *out_;
};

template <typename T> T byteswap(T v)
{
	T out;
	auto *a = reinterpret_cast<unsigned char *>(&v),
	     *b = reinterpret_cast<unsigned char *>(&out);
	for (size_t i = 0; i < sizeof(T); i++)
		b[i] = a[sizeof(T) - 1 - i];
	return out;
}

// Little-endian fields (the recording's byte order).
class Dec
{
      public:
	Dec(const unsigned char *p, size_t n) : p_(p), end_(p + n) {}
	bool ok() const { return ok_; }
	bool done() const { return p_ == end_; }
	// Fields appended by a later version follow.
	bool more() const { return ok_ && p_ != end_; }
	template <typename T> T num()
	{
		if (static_cast<size_t>(end_ - p_) < sizeof(T)) {
			ok_ = false;
			return 0;
		}
		T v;
		std::memcpy(&v, p_, sizeof(T));
		p_ += sizeof(T);
		if constexpr (std::endian::native == std::endian::big)
			v = byteswap(v);
		return v;
	}
	std::string str()
	{
		uint32_t n = num<uint32_t>();
		if (!ok_ || static_cast<size_t>(end_ - p_) < n) {
			ok_ = false;
			return {};
		}
		std::string s(reinterpret_cast<const char *>(p_), n);
		p_ += n;
		return s;
	}
	// Into an existing string: its buffer is reused (the replay hot path).
	void str(std::string &dst)
	{
		uint32_t n = num<uint32_t>();
		if (!ok_ || static_cast<size_t>(end_ - p_) < n) {
			ok_ = false;
			dst.clear();
			return;
		}
		dst.assign(reinterpret_cast<const char *>(p_), n);
		p_ += n;
	}
	std::vector<std::string> strs()
	{
		uint32_t n = num<uint32_t>();
		std::vector<std::string> v;
		for (uint32_t i = 0; ok_ && i < n; i++)
			v.push_back(str());
		return v;
	}
	Selectors sels()
	{
		uint32_t n = num<uint32_t>();
		Selectors m;
		for (uint32_t i = 0; ok_ && i < n; i++) {
			std::string k = str();
			m[k] = str();
		}
		return m;
	}

      private:
	const unsigned char *p_, *end_;
	bool ok_ = true;
};

enum Kind : uint8_t {
	kProcStart = 1,
	kProcExit,
	kSecret,
	kConnect,
	kHealth,
	kTick,
	kIoUring,
	kMcp
};

} // namespace

int64_t input_time(const Input &in)
{
	return std::visit([](const auto &v) { return v.time_ns; }, in);
}

std::string encode_input(const Input &in)
{
	std::string out;
	Enc e(&out);
	std::visit(
	    [&](const auto &v) {
		    using T = std::decay_t<decltype(v)>;
		    if constexpr (std::is_same_v<T, ProcStart>) {
			    e.num<uint8_t>(kProcStart);
			    e.num(v.time_ns);
			    e.str(v.exec_id);
			    e.str(v.parent_exec_id);
			    e.num(v.pid);
			    e.num(v.ppid);
			    e.num(v.uid);
			    e.num<uint8_t>(v.tty | v.tracked << 1 | v.forked << 2 |
			                   v.env_observed << 3 | v.launcher << 4);
			    e.str(v.comm);
			    e.str(v.exe);
			    e.str(v.mcp_server);
			    e.strs(v.cmdline);
			    e.str(v.identity);
			    e.sels(v.selectors);
			    e.num(v.gid); // appended fields
			    e.strs(v.unresolved);
			    e.str(v.workload);
			    e.num(v.loginuid);
			    e.num(v.sessionid);
			    e.num(v.tty_nr);
			    e.num(v.sid);
		    } else if constexpr (std::is_same_v<T, ProcExit>) {
			    e.num<uint8_t>(kProcExit);
			    e.num(v.time_ns);
			    e.str(v.exec_id);
		    } else if constexpr (std::is_same_v<T, SecretSeen>) {
			    e.num<uint8_t>(kSecret);
			    e.num(v.time_ns);
			    for (const std::string *s :
			         {&v.exec_id, &v.fingerprint, &v.type, &v.source, &v.location,
			          &v.name, &v.server, &v.rotated_from})
				    e.str(*s);
			    e.num(v.line);
			    e.num(v.first_seen_ns);
			    e.num(v.last_used_ns);
			    e.num(v.file_mtime_ns);
			    e.str(v.prefix); // appended
		    } else if constexpr (std::is_same_v<T, ConnectSeen>) {
			    e.num<uint8_t>(kConnect);
			    e.num(v.time_ns);
			    e.str(v.exec_id);
			    e.num(v.family);
			    e.num(v.sock_type);
			    e.num(v.result);
			    e.num(v.port);
			    e.str(v.addr);
			    e.str(v.sni);
			    e.str(v.http_host);
			    e.str(v.proxy_target); // appended
			    e.num<uint8_t>(v.via_proxy);
			    e.num(v.name_check);
		    } else if constexpr (std::is_same_v<T, HealthSeen>) {
			    e.num<uint8_t>(kHealth);
			    e.num(v.time_ns);
			    e.num(v.kernel_events);
			    e.num(v.kernel_drops);
			    e.num(v.attribution_failures);
			    e.num(v.identities_degraded);
		    } else if constexpr (std::is_same_v<T, IoUringSeen>) {
			    e.num<uint8_t>(kIoUring);
			    e.num(v.time_ns);
			    e.str(v.exec_id);
			    e.num(v.opcode);
		    } else if constexpr (std::is_same_v<T, McpSeen>) {
			    e.num<uint8_t>(kMcp);
			    e.num(v.time_ns);
			    e.str(v.exec_id);
			    e.num(v.dir);
			    e.num(v.kind);
			    e.num<uint8_t>(v.is_error | v.partial << 1 | v.tools_truncated << 2);
			    for (const std::string *s :
			         {&v.method, &v.id, &v.tool, &v.cancelled_id, &v.client_name,
			          &v.client_version, &v.server_name, &v.server_version,
			          &v.protocol_version})
				    e.str(*s);
			    e.strs(v.tools);
			    e.strs(v.argument_keys);
		    } else {
			    e.num<uint8_t>(kTick);
			    e.num(v.time_ns);
		    }
	    },
	    in);
	return out;
}

namespace
{

// The alternative T of `in`, default-constructed only if it held another.
template <typename T> T &as(Input &in)
{
	if (!std::holds_alternative<T>(in))
		in.emplace<T>();
	return std::get<T>(in);
}

} // namespace

bool decode_input(const unsigned char *p, size_t n, Input &out)
{
	Dec d(p, n);
	switch (d.num<uint8_t>()) {
	case kProcStart: {
		ProcStart &v = as<ProcStart>(out);
		v.time_ns = d.num<int64_t>();
		d.str(v.exec_id);
		d.str(v.parent_exec_id);
		v.pid = d.num<uint32_t>();
		v.ppid = d.num<uint32_t>();
		v.uid = d.num<uint32_t>();
		auto flags = d.num<uint8_t>();
		v.tty = flags & 1;
		v.tracked = flags & 2;
		v.forked = flags & 4;
		v.env_observed = flags & 8;
		v.launcher = flags & 16;
		d.str(v.comm);
		d.str(v.exe);
		d.str(v.mcp_server);
		v.cmdline = d.strs();
		d.str(v.identity);
		v.selectors = d.sels();
		v.gid = d.more() ? d.num<uint32_t>() : 0;
		if (d.more())
			v.unresolved = d.strs();
		else
			v.unresolved.clear();
		if (d.more())
			d.str(v.workload);
		else
			v.workload.clear();
		v.loginuid = d.more() ? d.num<uint32_t>() : UINT32_MAX;
		v.sessionid = d.more() ? d.num<uint32_t>() : UINT32_MAX;
		v.tty_nr = d.more() ? d.num<uint32_t>() : 0;
		v.sid = d.more() ? d.num<uint32_t>() : 0;
		break;
	}
	case kProcExit: {
		ProcExit &v = as<ProcExit>(out);
		v.time_ns = d.num<int64_t>();
		d.str(v.exec_id);
		break;
	}
	case kSecret: {
		SecretSeen &v = as<SecretSeen>(out);
		v.time_ns = d.num<int64_t>();
		for (std::string *s : {&v.exec_id, &v.fingerprint, &v.type, &v.source, &v.location,
		                       &v.name, &v.server, &v.rotated_from})
			d.str(*s);
		v.line = d.num<uint32_t>();
		v.first_seen_ns = d.num<int64_t>();
		v.last_used_ns = d.num<int64_t>();
		v.file_mtime_ns = d.num<int64_t>();
		if (d.more())
			d.str(v.prefix);
		else
			v.prefix.clear();
		break;
	}
	case kConnect: {
		ConnectSeen &v = as<ConnectSeen>(out);
		v.time_ns = d.num<int64_t>();
		d.str(v.exec_id);
		v.family = d.num<uint16_t>();
		v.sock_type = d.num<uint16_t>();
		v.result = d.num<int32_t>();
		v.port = d.num<uint16_t>();
		d.str(v.addr);
		d.str(v.sni);
		d.str(v.http_host);
		if (d.more())
			d.str(v.proxy_target);
		else
			v.proxy_target.clear();
		v.via_proxy = d.more() && d.num<uint8_t>();
		v.name_check = d.more() ? d.num<uint8_t>() : uint8_t{ConnectSeen::kNoCheck};
		break;
	}
	case kHealth: {
		HealthSeen &v = as<HealthSeen>(out);
		v.time_ns = d.num<int64_t>();
		v.kernel_events = d.num<uint64_t>();
		v.kernel_drops = d.num<uint64_t>();
		v.attribution_failures = d.num<uint64_t>();
		v.identities_degraded = d.num<uint64_t>();
		break;
	}
	case kTick: as<Tick>(out).time_ns = d.num<int64_t>(); break;
	case kIoUring: {
		IoUringSeen &v = as<IoUringSeen>(out);
		v.time_ns = d.num<int64_t>();
		d.str(v.exec_id);
		v.opcode = d.num<uint32_t>();
		break;
	}
	case kMcp: {
		McpSeen &v = as<McpSeen>(out);
		v.time_ns = d.num<int64_t>();
		d.str(v.exec_id);
		v.dir = d.num<uint8_t>();
		v.kind = d.num<uint8_t>();
		uint8_t flags = d.num<uint8_t>();
		v.is_error = flags & 1;
		v.partial = flags & 2;
		v.tools_truncated = flags & 4;
		for (std::string *s :
		     {&v.method, &v.id, &v.tool, &v.cancelled_id, &v.client_name, &v.client_version,
		      &v.server_name, &v.server_version, &v.protocol_version})
			d.str(*s);
		v.tools = d.strs();
		if (!d.done()) // absent from recordings made before it was kept
			v.argument_keys = d.strs();
		break;
	}
	default: return false;
	}
	return d.ok() && d.done();
}

std::optional<Input> decode_input(const unsigned char *p, size_t n)
{
	Input in;
	if (!decode_input(p, n, in))
		return std::nullopt;
	return in;
}

RecordingWriter::RecordingWriter(const std::string &path)
{
	std::string why;
	int fd = open_private_file(path, false, &why);
	if (fd < 0)
		throw why.empty() ? sys_error("cannot create recording " + path, errno)
		                  : Error("recording " + why);
	f_ = fdopen(fd, "wb");
	if (!f_) {
		::close(fd);
		throw sys_error("cannot open recording " + path, errno);
	}
	fwrite(kMagic, 1, sizeof(kMagic), f_);
}

RecordingWriter::~RecordingWriter()
{
	if (f_)
		fclose(f_);
}

void RecordingWriter::write(const Input &in)
{
	buf_ = encode_input(in);
	uint32_t n = static_cast<uint32_t>(buf_.size());
	unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
	                        static_cast<unsigned char>(n >> 16),
	                        static_cast<unsigned char>(n >> 24)};
	fwrite(len, 1, 4, f_);
	fwrite(buf_.data(), 1, buf_.size(), f_);
}

bool RecordingWriter::flush()
{
	return fflush(f_) == 0 && !ferror(f_);
}

RecordingReader::RecordingReader(const std::string &path)
{
	f_ = fopen(path.c_str(), "rbe");
	if (!f_)
		throw sys_error("cannot open recording " + path, errno);
	char magic[sizeof(kMagic)];
	if (fread(magic, 1, sizeof(magic), f_) != sizeof(magic) ||
	    std::memcmp(magic, kMagic, sizeof(magic)) != 0) {
		fclose(f_);
		f_ = nullptr;
		throw Error(path + " is not a KeyTrail recording (bad magic)");
	}
	offset_ = sizeof(kMagic);
	setvbuf(f_, nullptr, _IOFBF, 1 << 20);
}

RecordingReader::~RecordingReader()
{
	if (f_)
		fclose(f_);
}

const Input *RecordingReader::next()
{
	if (!error_.empty())
		return nullptr;
	unsigned char len[4];
	size_t got = fread_unlocked(len, 1, 4, f_);
	if (got == 0)
		return nullptr;
	uint32_t n = len[0] | len[1] << 8 | len[2] << 16 | static_cast<uint32_t>(len[3]) << 24;
	if (got != 4 || n == 0 || n > kMaxFrame) {
		error_ = "bad frame length at offset " + std::to_string(offset_);
		return nullptr;
	}
	buf_.resize(n);
	if (fread_unlocked(buf_.data(), 1, n, f_) != n) {
		error_ = "truncated frame at offset " + std::to_string(offset_);
		return nullptr;
	}
	if (!decode_input(reinterpret_cast<const unsigned char *>(buf_.data()), n, cur_)) {
		error_ = "malformed frame at offset " + std::to_string(offset_);
		return nullptr;
	}
	offset_ += 4 + n;
	return &cur_;
}

} // namespace keytrail
