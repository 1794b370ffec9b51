#!/usr/bin/env bash
# Makes tests/golden/scenario.ktr: a recording of the correlator's inputs from
# the real agent (run as root) while stand-in MCP servers hold, read and use
# fake credentials in the ways the alert rules care about. The unit test
# replays it and compares with tests/golden/expected.jsonl, so a change that
# alters what the correlator decides shows up as a diff.
#
#   tests/golden/record.sh build/keytrail   # rewrites scenario.ktr and the config's key
#
# Every token below is generated here from a fixed seed and is fake.
set -euo pipefail
KT=$(realpath "${1:?usage: record.sh path/to/keytrail}")
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d /tmp/kt-golden-XXXXXX)
trap 'kill $AGENT $HTTP 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
chmod 755 "$DIR"

tok() { # prefix length seed
	python3 - "$@" <<'PY'
import random, string, sys
p, n, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(s)
print(p + "".join(r.choice(string.ascii_letters + string.digits) for _ in range(n)))
PY
}
GITLAB=$(tok glpat- 20 1)
GITHUB=$(tok ghp_ 36 2)
OPENAI=$(tok sk-proj- 48 3)
AKID=AKIA$(tok "" 16 4 | tr a-z A-Z)
ASECRET=$(tok "" 40 5)
CFGTOK=$(tok ghp_ 36 6)

mkdir -p "$DIR/alpha" "$DIR/delta/.aws" "$DIR/bin" "$DIR/state" "$DIR/client"
printf 'OPENAI_API_KEY=%s\n' "$OPENAI" >"$DIR/alpha/.env"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$AKID" "$ASECRET" \
	>"$DIR/delta/.aws/credentials"
printf '{"mcpServers":{"gh":{"command":"npx","args":["-y","@modelcontextprotocol/server-github"],"env":{"GITHUB_PERSONAL_ACCESS_TOKEN":"%s"}}}}\n' \
	"$CFGTOK" >"$DIR/client/mcp.json"

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
/usr/bin/python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1 &
HTTP=$!

# A stand-in server: waits, reads what it is told, sends one request per Host.
server() { # name, files to read, hosts...
	local name=$1 files=$2
	shift 2
	{
		echo '#!/bin/sh'
		echo 'sleep 0.3'
		for f in $files; do echo "cat $f >/dev/null"; done
		for h in "$@"; do echo "curl -s -m 1 -H 'Host: $h' http://127.0.0.1:$PORT/ >/dev/null"; done
		echo 'sleep 0.2'
	} >"$DIR/bin/$name"
	chmod 755 "$DIR/bin/$name"
}
server mcp-server-alpha "$DIR/alpha/.env" gitlab.golden.test evil.golden.test
server mcp-server-beta "" gitlab.golden.test
server mcp-server-gamma "" api.github.com
server mcp-server-delta "$DIR/delta/.aws/credentials" s3.golden.test

cat >"$DIR/cfg.yaml" <<YAML
agent:
  state_dir: $DIR/state
  connect_hold: 3s
secrets:
  scan_mcp_configs: false
  mcp_configs: ["$DIR/client/*.json"]
correlate:
  loopback_upstreams: true
environments:
  - name: prod
    match: {mcp.server: "mcp-server-alpha"}
  - name: dev
    match: {mcp.server: "mcp-server-beta"}
inventory:
  - id: gitlab-bot
    owner: platform-team
    purpose: GitLab API for the alpha server
    match: {env: GITLAB_TOKEN}
    expires: 2021-01-01
    allowed_identities: ["*mcp-server-alpha*"]
    allowed_upstreams: [gitlab.golden.test]
  - id: delta-aws
    match: {path: "*/delta/.aws/credentials"}
    status: revoked
  - id: openai
    owner: ml-team
    match: {env: OPENAI_API_KEY}
    rotate_every: 1d
YAML

"$KT" run -c "$DIR/cfg.yaml" --events --record "$DIR/scenario.ktr" -o "$DIR/out.jsonl" \
	2>"$DIR/agent.log" &
AGENT=$!
for _ in $(seq 100); do grep -q '"type":"ready"' "$DIR/out.jsonl" 2>/dev/null && break; sleep 0.1; done

B=$DIR/bin
GITLAB_TOKEN=$GITLAB "$B/mcp-server-alpha"
GITLAB_TOKEN=$GITLAB "$B/mcp-server-beta"
sh -c "exec $B/mcp-server-gamma --api-key $GITHUB"
"$B/mcp-server-delta"
# A person at a terminal reads the alpha server's .env, then uses it.
script -qec "cat $DIR/alpha/.env >/dev/null; curl -s -m 1 http://127.0.0.1:$PORT/ >/dev/null" /dev/null
sleep 4 # the connect hold
kill -INT $AGENT
wait $AGENT || true

cp "$DIR/scenario.ktr" "$HERE/scenario.ktr"
echo "recorded $(stat -c %s "$HERE/scenario.ktr") bytes; agent wrote $(wc -l <"$DIR/out.jsonl") records"
# (an AWS access key id is public, like a user name: records show it as the prefix)
for s in "$GITLAB" "$GITHUB" "$OPENAI" "$ASECRET" "$CFGTOK"; do
	if grep -qaF "$s" "$HERE/scenario.ktr" "$DIR/out.jsonl" "$DIR/agent.log"; then
		echo "a planted secret was written: $(grep -laF "$s" "$HERE/scenario.ktr" "$DIR/out.jsonl" "$DIR/agent.log")" >&2
		exit 1
	fi
done
grep -o '"rule":"[a-z_]*"' "$DIR/out.jsonl" | sort | uniq -c
