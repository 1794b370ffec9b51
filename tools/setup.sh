#!/usr/bin/env bash
# KeyTrail set-up: installs what is missing (Debian 12 packages), builds, and
# then either starts the monitor or runs the whole test suite.
#
#   tools/setup.sh run [keytrail run options...]   build, then `keytrail run`
#   tools/setup.sh test                            build, then every test tier
#   tools/setup.sh build                           build only
#   tools/setup.sh bench [options...]              build, then every benchmark, goals (a)-(f)
#   tools/setup.sh precision [SECONDS]             build, then the precision run (default 300 s)
#   tools/setup.sh fuzz [SECONDS]                  fuzz every target for SECONDS (default 600)
#   tools/setup.sh sanitize                        unit + root tiers under ASan and UBSan
#
# Environment: BUILD_DIR (default build), JOBS (default nproc).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
JOBS=${JOBS:-$(nproc)}
MODE=${1:-}
[ $# -gt 0 ] && shift

PACKAGES=(
	build-essential cmake pkg-config clang llvm
	libbpf-dev bpftool libelf-dev zlib1g-dev
	libspdlog-dev nlohmann-json3-dev libsimdjson-dev libdeflate-dev libyaml-cpp-dev libcli11-dev
	libssl-dev libsqlite3-dev libcpp-httplib-dev libcurl4-openssl-dev
	clickhouse-server clickhouse-client
	libgtest-dev libgmock-dev libpng-dev chromium fonts-liberation poppler-utils
	python3-prometheus-client
	iproute2 procps curl systemd openssl util-linux jq
)

die() { echo "setup: $*" >&2; exit 1; }

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[ -n "$MODE" ] || usage
[ "$(id -u)" -eq 0 ] || die "run as root: installing packages and loading eBPF programs need it (sudo $0 $MODE)"

install_packages() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
	[ -r /sys/kernel/btf/vmlinux ] || die "this kernel has no BTF (/sys/kernel/btf/vmlinux): CO-RE needs CONFIG_DEBUG_INFO_BTF=y"
	cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$BUILD_DIR" -j "$JOBS"
}

# The libFuzzer targets, in their own clang build with everything
# instrumented (ASan + UBSan), each run for $1 seconds.
fuzz() {
	local dir=${BUILD_DIR}-fuzz
	CC=clang CXX=clang++ cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DKEYTRAIL_FUZZ=ON -DKEYTRAIL_FUZZ_SECONDS="$1" >/dev/null
	cmake --build "$dir" -j "$JOBS"
	(cd "$dir" && ctest --output-on-failure -L fuzz)
}

# The unit and root tiers again, in a clang build with AddressSanitizer and
# UBSan (the agent the root tests start is instrumented too). Reports go to
# files, so one from any process fails the run. The minute-long load tests are
# left out: ASan's quarantine alone is larger than their memory bound.
sanitize() {
	local dir=${BUILD_DIR}-asan reports rc=0
	CC=clang CXX=clang++ cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DKEYTRAIL_SANITIZE=ON >/dev/null
	cmake --build "$dir" -j "$JOBS"
	reports=$(mktemp -d /tmp/keytrail-sanitizers-XXXXXX)
	(
		cd "$dir"
		export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1"
		export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
		# (set -e does not hold in a subshell on the left of ||)
		ctest --output-on-failure -L unit -j "$JOBS" &&
			ctest --output-on-failure -L root -E '^Load\.'
	) || rc=$?
	if compgen -G "$reports/*" >/dev/null; then
		cat "$reports"/* >&2
		echo "setup: the sanitizers reported the errors above" >&2
		rc=1
	fi
	rm -rf "$reports"
	return "$rc"
}

case "$MODE" in
build)
	install_packages
	build
	;;
run)
	install_packages
	build
	exec "$BUILD_DIR/keytrail" run "$@"
	;;
test)
	install_packages
	build
	cd "$BUILD_DIR"
	# Unit tier first (seconds, no kernel), then the tools checked with outside
	# validators (npm), then the root tier (real probes, load), then real MCP
	# servers from npm end to end, then unit and root again under ASan and
	# UBSan, then a bounded run of every fuzz target (FUZZ_SECONDS each,
	# default 20).
	ctest --output-on-failure -L unit -j "$JOBS"
	ctest --output-on-failure -L tools
	ctest --output-on-failure -L root
	ctest --output-on-failure -L e2e
	sanitize
	fuzz "${FUZZ_SECONDS:-20}"
	;;
sanitize)
	install_packages
	sanitize
	;;
fuzz)
	install_packages
	fuzz "${1:-600}"
	;;
bench)
	install_packages
	build
	# Micro-benchmarks first, then every goal (a)-(f) in one run.
	"$BUILD_DIR/bench/keytrail-bench-identity"
	"$BUILD_DIR/bench/keytrail-bench-secrets"
	exec "$BUILD_DIR/bench/keytrail-bench" "$@"
	;;
precision)
	install_packages
	build
	# The real servers of the e2e tier, installed where that tier puts them.
	E2E_INSTALL_ONLY=1 tests/e2e/run.sh "$BUILD_DIR/keytrail" "$BUILD_DIR/tests/e2e"
	exec bench/precision/run.sh "$BUILD_DIR" "${1:-300}"
	;;
*)
	usage
	;;
esac
