#!/usr/bin/env bash
# quickstart.sh — install what edgemesh-tproxy needs on Debian 12, build it,
# and run the demo or the whole test suite. Run as root from the checkout.
#
#   bash contrib/quickstart.sh demo    install, build, run the walkthrough demo
#   bash contrib/quickstart.sh test    install, build, run every test
#   bash contrib/quickstart.sh deps    only install the Debian packages
#   bash contrib/quickstart.sh build   only install and build (./build)
#   bash contrib/quickstart.sh bench   install, build, run every benchmark (ratios vs peers)
#   bash contrib/quickstart.sh bench-short   the benchmarks in short mode: checks that
#                                      every case produces a figure (run by `test`)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

# Build: compiler, meson, the libraries. Run: nftables, iproute2.
# Tests: check, valgrind, clang's libFuzzer, nginx, dnsmasq, dig, curl, python3,
# sqlite3, iptables (compat NFQUEUE rules in some netns tests).
# Benchmarks: wrk, dnsperf, haproxy. Hardening checks: systemd (systemd-analyze),
# binutils (readelf).
PACKAGES=(
	meson ninja-build pkg-config gcc clang libclang-rt-14-dev
	libmnl-dev libnftnl-dev libnetfilter-queue-dev libnfnetlink-dev
	libhttp-parser-dev liburcu-dev libjansson-dev libyaml-dev
	libcurl4-openssl-dev libsqlite3-dev check
	nftables iproute2 iptables procps psmisc
	valgrind nginx-light dnsmasq-base dnsutils curl python3 sqlite3 socat
	wrk dnsperf haproxy
	systemd binutils
	debhelper lintian dpkg-dev file
)

deps() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Packages that ship a service (nginx, haproxy) must not start it in the
	# host's namespace: the tests run their own copies in namespaces.
	local policy=/usr/sbin/policy-rc.d added=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; added=1
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
		[ $added = 1 ] && rm -f "$policy"; return 1; }
	[ $added = 1 ] && rm -f "$policy"
	return 0
}

build() {
	if [ ! -d build ]; then
		meson setup build --buildtype=debugoptimized -Dwerror=true >/dev/null
	fi
	ninja -C build
}

build_fuzz() {
	if [ ! -d build-fuzz ]; then
		CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false >/dev/null
	fi
	ninja -C build-fuzz
}

# The root namespace's ruleset, policy rules and routes: tests must never
# change them (everything they do happens in namespaces of their own).
host_state() {
	nft list ruleset 2>/dev/null
	ip -4 rule; ip -6 rule
	{ ip -4 route show table all; ip -6 route show table all; } | sed 's/ expires [0-9]*sec//'
}

# What the tests and benchmarks start or make outside namespaces: the CPU
# cgroups of the proxy-bound benchmark (em-bench-*, v1 or v2) and processes
# of the programs they run.
test_residue() {
	ls -d /sys/fs/cgroup/cpu/em-bench-* /sys/fs/cgroup/em-bench-* 2>/dev/null
	pgrep -a -x 'edgemesh-tproxy|em-bench-load|nfq-noop|splice-floor|em-dns-driver|proxy-driver|nf-driver' 2>/dev/null
	return 0	# none found is the good case (ls and pgrep say 1 then)
}

# Every test; the last line is the total `N passed, N failed`.
run_tests() {
	local passed=0 failed=0 out rc line t left
	local ns_before; ns_before=$(ip netns list | awk '{print $1}' | sort)
	local host_before; host_before=$(host_state)
	local residue_before; residue_before=$(test_residue)
	export EM_BIN=$top/build/edgemesh-tproxy

	echo "== unit tests (Check)"
	if EM_TEST_DATA=$top/tests/data ./build/tests/unit-tests; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1)); echo "FAILED: unit tests"
	fi

	echo "== unit tests under valgrind"
	if meson test -C build --setup=valgrind --print-errorlogs unit >/dev/null 2>&1; then
		passed=$((passed + 1)); echo "valgrind: clean"
	else
		failed=$((failed + 1)); echo "FAILED: unit tests under valgrind"
		tail -n 60 build/meson-logs/testlog-valgrind.txt || true
	fi

	echo "== fuzz targets (bounded runs)"
	build_fuzz
	# Every tests/fuzz/fuzz-NAME.c must have been built and must run: a
	# target that silently failed to build would otherwise test nothing.
	local src name
	for src in tests/fuzz/fuzz-*.c; do
		name=${src##*/fuzz-}; name=${name%.c}
		t=build-fuzz/tests/fuzz-$name
		if [ ! -x "$t" ]; then
			failed=$((failed + 1)); echo "FAILED: fuzz $name: $t was not built"; continue
		fi
		local corpus=$top/tests/fuzz/corpus/$name
		local work; work=$(mktemp -d)
		[ -d "$corpus" ] && cp -r "$corpus/." "$work/"
		if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			"$t" -max_total_time="${EM_FUZZ_SECONDS:-60}" -rss_limit_mb=2048 "$work" \
			>"$work.log" 2>&1; then
			passed=$((passed + 1)); echo "fuzz $name: $(grep -Eo 'Done [0-9]+ runs' "$work.log" | tail -n1)"
		else
			failed=$((failed + 1)); echo "FAILED: fuzz $name"; tail -n 30 "$work.log"
		fi
		rm -rf "$work" "$work.log"
	done

	echo "== man page covers every option"
	if bash tests/man-check.sh build/edgemesh-tproxy build/src/daemon/edgemesh-tproxy.8; then
		passed=$((passed + 1)); echo "man page: every --help flag documented, renders cleanly"
	else
		failed=$((failed + 1)); echo "FAILED: man page"
	fi

	# Issue 12: the Debian package and the arm64 cross build (EM_DEB=0,
	# EM_ARM64=0 leave them out, e.g. offline: both fetch from Debian).
	if [ "${EM_DEB:-1}" = 1 ]; then
		echo "== Debian package (contrib/debian)"
		out=$(DEB_BUILD_OPTIONS=nocheck bash tests/deb-package.sh 2>&1) && rc=0 || rc=$?
		printf '%s\n' "$out" | grep -v '^ok - ' || true
		if [ $rc -eq 0 ]; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1)); echo "FAILED: Debian package"
		fi
	fi
	if [ "${EM_ARM64:-1}" = 1 ]; then
		echo "== arm64: cross build, unit tests under qemu-user"
		if bash contrib/cross/arm64.sh all >build-arm64.log 2>&1; then
			passed=$((passed + 1)); grep -E '^(arm64 build|[0-9]+%|# arm64)' build-arm64.log
		else
			failed=$((failed + 1)); echo "FAILED: arm64"; tail -n 40 build-arm64.log
		fi
	fi

	echo "== netns tests"
	for t in netns-tests/*.sh; do
		case $t in */demo.sh|*bench*) continue ;; esac
		echo "-- $t"
		# lib/run.sh judges it as `meson test --suite netns` does (exit 0
		# and at least one check passed, a bound on its time), except that
		# here a skip (77: a prerequisite missing) fails too.
		if bash netns-tests/lib/run.sh "$t"; then
			passed=$((passed + 1))
		else
			failed=$((failed + 1))
		fi
	done
	echo "== benchmarks, short mode (every case produces a figure; numbers not judged)"
	if BENCH_SHORT=1 BENCH_CHECK=1 BENCH_JSON=/tmp/em-bench-short.json \
		bash netns-tests/bench/run.sh >/tmp/em-bench-short.log 2>&1; then
		passed=$((passed + 1)); tail -n 1 /tmp/em-bench-short.log
	else
		failed=$((failed + 1)); echo "FAILED: bench-short"; tail -n 40 /tmp/em-bench-short.log
	fi
	echo "== leftovers"
	left=$(comm -13 <(echo "$ns_before") <(ip netns list | awk '{print $1}' | sort))
	if [ -n "$left" ]; then
		failed=$((failed + 1)); echo "FAILED: namespaces left behind:"; echo "$left"
	else
		passed=$((passed + 1)); echo "no namespaces left behind"
	fi
	if [ "$(host_state)" != "$host_before" ]; then
		failed=$((failed + 1)); echo "FAILED: the host's ruleset, rules or routes changed:"
		diff <(echo "$host_before") <(host_state)
	else
		passed=$((passed + 1)); echo "host ruleset, rules and routes untouched"
	fi
	left=$(comm -13 <(echo "$residue_before" | sort) <(test_residue | sort))
	if [ -n "$left" ]; then
		failed=$((failed + 1)); echo "FAILED: cgroups or processes left behind:"; echo "$left"
	else
		passed=$((passed + 1)); echo "no benchmark cgroups or test processes left behind"
	fi
	echo "$passed passed, $failed failed"
	[ $failed -eq 0 ]
}

case "${1:-}" in
deps) deps ;;
build) deps && build ;;
demo) deps && build && bash netns-tests/demo.sh ;;
test) deps && build && run_tests ;;
bench) deps && build && bash netns-tests/bench/run.sh ;;
bench-short) deps && build && BENCH_SHORT=1 BENCH_CHECK=1 bash netns-tests/bench/run.sh ;;
*) sed -n '2,12p' "$0"; exit 2 ;;
esac
