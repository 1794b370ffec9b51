#!/bin/sh
# run.sh FUZZER TARGET SOURCE_DIR CORPUS_DIR SECONDS
# First every regression input once (they must not crash any more), then
# SECONDS of fuzzing from the seeds. A crash leaves its input in the working
# corpus dir; copy it to regressions/TARGET/ with the fix.
set -eu
fuzzer=$1 target=$2 src=$3 corpus=$4/$2 seconds=$5
mkdir -p "$corpus"
if [ -d "$src/regressions/$target" ] && [ -n "$(ls -A "$src/regressions/$target")" ]; then
	"$fuzzer" -runs=0 "$src/regressions/$target"/*
fi
# Seeds with credentials in valid formats are made here, not committed.
rand() { head -c 512 /dev/urandom | tr -dc 'A-HJ-NP-Za-km-z2-9' | head -c "$1"; }
case "$target" in
secrets)
	printf 'PATH=/usr/bin\0GITHUB_TOKEN=ghp_%s\0DB_PASSWORD=%s\0--token\0glpat-%s\0postgresql://u:%s@db/x' \
		"$(rand 36)" "$(rand 18)" "$(rand 20)" "$(rand 16)" > "$corpus/seed-env"
	;;
mcp_config)
	printf '{\n // c\n "mcpServers": {"gh": {"command": "npx", "args": ["-y", "x", "--token=ghp_%s"], "env": {"GITHUB_TOKEN": "ghp_%s", "KUBECONFIG": "/home/u/.kube/config"}, "headers": {"Authorization": "Bearer sk-proj-%s"},},\n "u": {"url": "https://x.example/mcp?api_key=%s"}},\n}\n' \
		"$(rand 36)" "$(rand 36)" "$(rand 48)" "$(rand 24)" > "$corpus/seed-config"
	;;
esac
cd "$corpus"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$corpus/" "$corpus" "$src/seeds/$target"
