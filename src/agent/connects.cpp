#include "keytrail/agent/connects.h"

#include <sys/socket.h>

#include <cerrno>

namespace keytrail
{

std::optional<NamedConnect> HeldConnects::on_connect(const ConnectEvent &e)
{
	// A unix stream socket may be a local proxy's: its first bytes say.
	bool stream = e.family == AF_INET || e.family == AF_INET6 || e.family == AF_UNIX;
	bool attempt = e.ret == 0 || e.ret == -EINPROGRESS;
	if (!stream || e.sock_type != SOCK_STREAM || !attempt || hold_.count() <= 0)
		return NamedConnect{e, "", "", ""};
	held_[{e.ctx.pid, e.fd}] = Held{e, std::chrono::steady_clock::now() + hold_};
	return std::nullopt;
}

std::optional<NamedConnect> HeldConnects::on_payload(const PayloadEvent &e)
{
	auto it = held_.find({e.ctx.pid, e.fd});
	if (it == held_.end())
		return std::nullopt;
	NamedConnect c{it->second.ev, e.sni, e.http_host, e.proxy_target};
	held_.erase(it);
	return c;
}

std::vector<NamedConnect> HeldConnects::expire(bool all)
{
	std::vector<NamedConnect> out;
	auto now = std::chrono::steady_clock::now();
	for (auto it = held_.begin(); it != held_.end();) {
		if (all || it->second.deadline <= now) {
			out.push_back({it->second.ev, "", "", ""});
			it = held_.erase(it);
		} else {
			++it;
		}
	}
	return out;
}

std::vector<NamedConnect> HeldConnects::release(uint32_t pid)
{
	std::vector<NamedConnect> out;
	auto it = held_.lower_bound({pid, INT32_MIN});
	while (it != held_.end() && it->first.first == pid) {
		out.push_back({it->second.ev, "", "", ""});
		it = held_.erase(it);
	}
	return out;
}

} // namespace keytrail
