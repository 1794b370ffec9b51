#!/usr/bin/env bash
# docs/quickstart.md runs as written: every ```sh block, in order, in one bash
# with `set -euo pipefail`, `keytrail` on PATH being the build's binary, in a
# scratch TMPDIR. A block right after a line starting with
# `<!-- quickstart: skip` is not run (installing, systemd, Graphviz). Then the
# outcomes the page promises are checked, and that neither planted token was
# written anywhere but where the page put it. Needs root (the agent).
#   quickstart.sh KEYTRAIL_BINARY WORK_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(realpath "$1")
work=$2
page=$src/docs/quickstart.md
fail() { echo "quickstart: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (the page runs the agent)"
for tool in jq curl openssl /usr/bin/python3; do
	command -v "$tool" >/dev/null || fail "$tool is required (tools/setup.sh installs it)"
done

rm -rf "$work"
mkdir -p "$work/bin" "$work/tmp"
ln -s "$bin" "$work/bin/keytrail"
script=$work/quickstart.bash
log=$work/transcript.log

# The agent must never outlive the test: the page's own $AGENT and
# $LISTENER first (the trap in the generated script), then any agent still
# holding a demo state dir's lock (its pid is in the lock file).
cleanup() {
	local lock pid
	for lock in "$work"/tmp/keytrail-demo.*/state/agent.lock; do
		[ -f "$lock" ] || continue
		pid=$(tr -dc 0-9 <"$lock")
		if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != keytrail ]; then continue; fi
		kill "$pid" 2>/dev/null
		for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
	done
	return 0
}
trap cleanup EXIT

{
	echo 'set -euo pipefail'
	# shellcheck disable=SC2016 # expanded by the generated script
	echo 'trap '\''kill ${AGENT:-} ${LISTENER:-} 2>/dev/null || true; wait'\'' EXIT'
	awk '
		/^<!-- quickstart: skip/ { skip = 1; next }
		/^```sh$/ && !inblock { inblock = 1; n++; text = ""; body = ""; next }
		/^```$/ && inblock {
			inblock = 0
			if (skip) { printf "echo \"### block %d: skipped\"\n", n }
			else {
				printf "echo \"### block %d\"\ncat <<'\''__QUICKSTART_%d__'\''\n%s__QUICKSTART_%d__\n%s\n", n, n, text, n, body
			}
			skip = 0
			next
		}
		inblock { text = text "$ " $0 "\n"; body = body $0 "\n"; next }
		/^[^[:space:]]/ { skip = 0 }
	' "$page"
} >"$script"
grep -q "### block" "$script" || fail "no sh blocks in $page"

# timeout: a block that waits forever (an agent that never starts) fails the
# test instead of hanging it; bash runs its EXIT trap on the TERM.
rc=0
(cd "$work" && PATH="$work/bin:$PATH" TMPDIR="$work/tmp" timeout 90 bash "$script") >"$log" 2>&1 || rc=$?
cat "$log"
[ "$rc" -eq 0 ] || fail "the page's commands failed (exit $rc); the last block run is the last '### block' above"

demo=$(echo "$work"/tmp/keytrail-demo.*)
[ -d "$demo" ] || fail "the page made no demo directory"
alerts=$demo/alerts.jsonl

# An alert an analyst can act on, with the command that investigates it.
alert=$(jq -c 'select(.type == "alert" and .rule == "unowned_secret")' "$alerts" | head -n 1)
[ -n "$alert" ] || fail "no unowned_secret alert in alerts.jsonl"
for f in finding_id rule severity title remediation investigate; do
	[ -n "$(jq -r ".$f // empty" <<<"$alert")" ] || fail "the alert has no $f: $alert"
done
fp=$(jq -r '.secret.fingerprint' <<<"$alert")
jq -r .investigate <<<"$alert" | grep -q -- "trace .*--secret $fp" || fail "investigate does not trace $fp"
# The OCSF output has the same finding.
jq -e --arg id "$(jq -r .finding_id <<<"$alert")" 'select(.finding_info.uid == $id)' \
	"$demo/findings.ocsf.jsonl" >/dev/null || fail "no OCSF finding for the alert"
# fingerprint on stdin gives the alert's fingerprint; trace finds it and the
# server that read it; dot has the graph; scan finds the hard-coded token.
grep -qx "$fp" "$log" || fail "keytrail fingerprint did not print the alert's fingerprint $fp"
grep -q "secret github_token ${fp:0:12} from file .*/.env" "$log" || fail "trace did not show the secret read from .env"
grep -q 'mcp-server-demo.*<==' "$log" || fail "trace did not mark the stand-in server"
grep -q '^digraph' "$demo/pivot.dot" || fail "pivot.dot is not a Graphviz graph"
grep -q 'exit status 1: hard-coded credentials found' "$log" || fail "scan did not report the hard-coded token"

# The tokens the page planted appear only where it planted them.
token=$(cut -d= -f2- "$demo/.env")
cfgtoken=$(jq -r '.mcpServers.github.env.GITHUB_PERSONAL_ACCESS_TOKEN' "$demo/project/.cursor/mcp.json")
if [ ${#token} -ne 40 ] || [ ${#cfgtoken} -ne 40 ]; then fail "planted tokens not found"; fi
while IFS= read -r -d '' f; do
	case $f in "$demo/.env" | "$demo/project/.cursor/mcp.json") continue ;; esac
	if zcat -f -- "$f" | grep -qaF -e "$token" -e "$cfgtoken"; then
		fail "a planted token was written to $f"
	fi
done < <(find "$work" -type f -print0)
echo "quickstart: every block ran as written; alert, trace, fingerprint, scan as promised; no token leaked"
