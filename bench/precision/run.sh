#!/usr/bin/env bash
# The precision run (docs/benchmark.md): ten stand-in MCP servers launched
# the ways clients and people launch them (a version-manager shim that forks
# helpers and execs python3, `sh -c`, `env VAR=… cmd`, a wrapper that runs
# the server as its child), each running git, sh -c, curl and reading its
# own files with the credentials it inherited, for DURATION seconds, with
# the real npm servers of the e2e tier (server-gitlab through `npx -y` from
# a loopback registry, server-filesystem) driven once a minute. Three true
# problems are planted; every other alert is a false one.
#
#   bench/precision/run.sh BUILD_DIR [DURATION_SECONDS=300]
#
# Prints one JSON object: alerts (and updates) by rule, which were planted,
# which were not, and per hour. Run as root. Every token is fake.
set -euo pipefail
BUILD=$(realpath "${1:?usage: run.sh BUILD_DIR [SECONDS]}")
DURATION=${2:-300}
KT=$BUILD/keytrail
E2E=$BUILD/tests/e2e
W=$(mktemp -d /tmp/kt-precision-XXXXXX)
chmod 755 "$W"
cleanup() {
	[ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null
	[ -n "${LOAD:-}" ] && kill -- -"$LOAD" 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

tok() { # prefix length seed
	/usr/bin/python3 -c 'import random,string,sys
p,n,s=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]); r=random.Random(s)
print(p+"".join(r.choice(string.ascii_letters+string.digits) for _ in range(n)))' "$@"
}

# Ten servers: name, env var, token. 9 and 10 share one token (planted).
VARS=(GITLAB_TOKEN GITHUB_TOKEN OPENAI_API_KEY SLACK_BOT_TOKEN GITLAB_TOKEN
	GITHUB_TOKEN OPENAI_API_KEY GITLAB_TOKEN GITHUB_TOKEN GITHUB_TOKEN)
PREFIX=(glpat- ghp_ sk-proj- xoxb- glpat- ghp_ sk-proj- glpat- ghp_ ghp_)
LEN=(20 36 48 40 20 36 48 20 36 36)
declare -a TOKENS
for i in $(seq 0 9); do TOKENS[$i]=$(tok "${PREFIX[$i]}" "${LEN[$i]}" $((700 + i))); done
TOKENS[9]=${TOKENS[8]}
DOTENV_KEY=$(tok sk-proj- 48 799) # server 3's .env (a person reads it: planted)

PORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
{
	echo "127.0.0.1 localhost"
	for i in $(seq 1 10); do echo "127.0.0.1 api.standin$i.test"; done
	echo "127.0.0.1 exfil.standin.test"
} >"$W/hosts"

# The stand-in server: a loop of what servers do with their credentials.
mkdir -p "$W/bin"
cat >"$W/bin/standin.py" <<'PY'
import os, subprocess, sys, time, urllib.request
n, port, until = sys.argv[1], sys.argv[2], float(sys.argv[3])
quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def get(host):
    try:
        req = urllib.request.Request(f"http://{host}:{port}/")
        urllib.request.urlopen(req, timeout=1).read()
    except Exception:
        pass
while time.time() < until:
    subprocess.run(["git", "--version"], **quiet)
    subprocess.run(["sh", "-c", f"curl -s -m 1 http://api.standin{n}.test:{port}/ >/dev/null"], **quiet)
    get(f"api.standin{n}.test")
    if os.path.exists(".env"):
        open(".env").read()
    if n == "4":  # planted: its token toward an upstream it is not allowed
        get("exfil.standin.test")
    time.sleep(2)
PY
# A version-manager shim, as pyenv's and asdf's are: helpers, then exec.
cat >"$W/bin/shim" <<'SH'
#!/bin/bash
prog=$(basename "$0"); dir=$(dirname "$(readlink -f "$0")"); env >/dev/null
exec /usr/bin/python3 "$dir/standin.py" "$@"
SH
chmod 755 "$W/bin/shim"
UNTIL=$(($(date +%s) + DURATION))
launch() { # i: the server, launched the i-th way
	local i=$1 n=$(($1 + 1)) d="$W/srv$(($1 + 1))"
	mkdir -p "$d"
	ln -sf "$W/bin/shim" "$d/mcp-server-standin$n"
	[ "$n" = 3 ] && printf 'OPENAI_API_KEY=%s\n' "$DOTENV_KEY" >"$d/.env" && chmod 600 "$d/.env"
	local cmd="$d/mcp-server-standin$n $n $PORT $UNTIL"
	case $((i % 4)) in
	0) (cd "$d" && env "${VARS[$i]}=${TOKENS[$i]}" "$d/mcp-server-standin$n" $n "$PORT" "$UNTIL") ;;
	1) (cd "$d" && export "${VARS[$i]}=${TOKENS[$i]}" && sh -c "sleep 0.1; $cmd") ;;
	2) (cd "$d" && export "${VARS[$i]}=${TOKENS[$i]}" && exec "$d/mcp-server-standin$n" $n "$PORT" "$UNTIL") ;;
	3) printf '#!/bin/sh\ncd "%s"\n%s\necho done >/dev/null\n' "$d" "$cmd" >"$d/run-wrapper.sh" &&
		chmod 755 "$d/run-wrapper.sh" &&
		(export "${VARS[$i]}=${TOKENS[$i]}" && "$d/run-wrapper.sh") ;;
	esac
}

# The inventory owns every token and allows each server its own upstream,
# so nothing but the planted problems is an alert.
{
	cat <<YAML
agent:
  state_dir: $W/state
  connect_hold: 2s
secrets:
  scan_mcp_configs: false
correlate:
  loopback_upstreams: true
outputs:
  - type: file
    path: $W/out.jsonl
inventory:
YAML
	for i in $(seq 0 8); do
		n=$((i + 1))
		hosts="api.standin$n.test"
		[ "$i" = 8 ] && hosts="api.standin9.test, api.standin10.test"
		cat <<YAML
  - id: standin$n
    owner: team-$n
    match: {fingerprint: FP$i}
    allowed_upstreams: [$hosts]
YAML
	done
	cat <<YAML
  - id: e2e-gitlab
    owner: e2e
    match: {env: GITLAB_PERSONAL_ACCESS_TOKEN}
    allowed_upstreams: [127.0.0.1]
  - id: standin3-dotenv
    owner: team-3
    match: {path: "$W/srv3/.env"}
YAML
} >"$W/cfg.yaml"
mkdir -p "$W/state"
chmod 700 "$W/state"
(umask 077 && head -c 32 /dev/urandom >"$W/state/fingerprint.key")
for i in $(seq 0 8); do
	fp=$(printf '%s' "${TOKENS[$i]}" | "$KT" fingerprint --state-dir "$W/state")
	sed -i "s/FP$i}/$fp}/" "$W/cfg.yaml"
done
chmod 600 "$W/cfg.yaml"

/usr/bin/python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1 &
HTTP=$!
"$KT" run -c "$W/cfg.yaml" 2>"$W/agent.log" &
AGENT=$!
for _ in $(seq 100); do grep -q '"type":"ready"' "$W/out.jsonl" 2>/dev/null && break; sleep 0.2; done
grep -q '"type":"ready"' "$W/out.jsonl" || { cat "$W/agent.log" >&2; exit 1; }

# Everything the servers do happens in a mount namespace whose /etc/hosts
# names their upstreams (the agent reads it through /proc/PID/root). The
# launcher gets the tokens from a file, so no server inherits another's.
{
	declare -p VARS TOKENS W PORT UNTIL DOTENV_KEY
	declare -f launch
	echo 'mount --bind "$W/hosts" /etc/hosts'
	echo 'for i in $(seq 0 9); do launch $i & done'
	echo 'wait'
} >"$W/launch.sh"
chmod 600 "$W/launch.sh"
setsid unshare -m --propagation private bash "$W/launch.sh" &
LOAD=$!

# The real servers, once a minute, in a network namespace of their own.
e2e_round() {
	[ -d "$E2E/node_modules" ] || return 1 # not installed: tools/setup.sh precision does
	local t=$1 spec
	spec=$(/usr/bin/python3 - "$E2E" "$W" "$t" "$NPX" <<'PY'
import json, os, sys
e2e, w, t, npx = sys.argv[1:5]
token = "glpat-" + ("e2eprecision" + t).ljust(20, "x")[:20]
os.makedirs(f"{w}/fs-root", exist_ok=True)
env = {"GITLAB_PERSONAL_ACCESS_TOKEN": token, "GITLAB_API_URL": "http://127.0.0.1:8080/api/v4",
       "npm_config_registry": "http://127.0.0.1:8080/npm", "npm_config_cache": f"{w}/npx-cache",
       "npm_config_update_notifier": "false"}
print(json.dumps({"gitlab": {"token": token}, "registry": ["@modelcontextprotocol/server-gitlab"],
  "servers": [
    {"name": "gitlab", "command": npx,
     "args": ["-y", "@modelcontextprotocol/server-gitlab"], "env": env, "cwd": w,
     "tool": "search_repositories", "arguments": {"search": "keytrail"}},
    {"name": "filesystem", "command": f"{e2e}/node_modules/.bin/mcp-server-filesystem",
     "args": [f"{w}/fs-root"], "tool": "list_directory", "arguments": {"path": f"{w}/fs-root"}}]}))
PY
)
	echo "$spec" | unshare --net --mount --propagation private node "$E2E/scenario.mjs" \
		>"$W/e2e-$t.json" 2>>"$W/e2e.log" || { echo "e2e round $t failed" >&2; return 1; }
}
NPX=$(dirname "$(readlink -f "$(command -v node)")")/npx
START=$(date +%s)
sleep 5
# A person at a terminal reads server 3's .env (planted human_use).
script -qec "cat $W/srv3/.env >/dev/null; grep -c KEY $W/srv3/.env >/dev/null" /dev/null >/dev/null
round=0
while [ "$(date +%s)" -lt "$UNTIL" ]; do
	e2e_round $round && round=$((round + 1))
	left=$((UNTIL - $(date +%s)))
	sleep $((left > 60 ? 60 : (left > 0 ? left : 0)))
done
wait "$LOAD" 2>/dev/null || true
LOAD=
sleep 3
kill "$AGENT"
wait "$AGENT" || true
AGENT=
kill "$HTTP" 2>/dev/null || true
ELAPSED=$(($(date +%s) - START))

fp() { printf '%s' "$1" | "$KT" fingerprint --state-dir "$W/state"; }
SHARED=$(fp "${TOKENS[8]}")
EXFIL=$(fp "${TOKENS[3]}")
DOTENV=$(fp "$DOTENV_KEY")
/usr/bin/python3 - "$W/out.jsonl" "$ELAPSED" "$SHARED" "$EXFIL" "$DOTENV" "$round" <<'PY'
import collections, json, sys
out, elapsed, shared, exfil, dotenv, rounds = sys.argv[1], float(sys.argv[2]), *sys.argv[3:6], int(sys.argv[6])
planted = {("shared_credential", shared), ("unexpected_upstream", exfil), ("human_use", dotenv)}
alerts, updates, found, false = collections.Counter(), collections.Counter(), set(), []
holders, health, uses = collections.defaultdict(set), {}, 0
for line in open(out):
    r = json.loads(line)
    t = r.get("type")
    if t == "secret":
        holders[r["secret"]["fingerprint"]].add(r["identity"]["id"])
    elif t == "secret_use":
        uses += 1
    elif t == "health":
        health = r
    elif t in ("alert", "update"):
        fp = (r.get("secret") or {}).get("fingerprint", "")
        (alerts if t == "alert" else updates)[r["rule"]] += 1
        if (r["rule"], fp) in planted:
            found.add((r["rule"], fp))
        elif t == "alert":
            false.append({"rule": r["rule"], "summary": r.get("summary", "")})
per_hour = 3600.0 / max(elapsed, 1)
print(json.dumps({
    "seconds": elapsed, "e2e_rounds": rounds,
    "alerts": sum(alerts.values()), "updates": sum(updates.values()),
    "alerts_by_rule": alerts, "updates_by_rule": updates,
    "planted": len(planted), "planted_found": len(found),
    "false_alerts": len(false), "false_alerts_per_hour": round(len(false) * per_hour, 1),
    "alerts_per_hour": round(sum(alerts.values()) * per_hour, 1),
    "secret_uses": uses,
    "credentials": len(holders), "max_holders_per_credential": max((len(v) for v in holders.values()), default=0),
    "kernel_drops": health.get("kernel", {}).get("drops"),
    "attribution_failures": health.get("agent", {}).get("attribution_failures"),
    "false": false[:20]}, indent=1))
PY
