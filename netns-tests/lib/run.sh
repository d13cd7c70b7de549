#!/bin/bash
# run.sh SCRIPT [ARGS...] — runs one netns-tests script the way
# `meson test --suite netns` and contrib/quickstart.sh judge it: its output
# passes through; exit 77 (skipped: not root, no network namespaces, a tool
# missing) is kept; otherwise it passes only if the script exits 0 with a
# last line `N passed, 0 failed`, N >= 1 ("0 passed" ran nothing). Each run
# is bounded (EM_SCRIPT_TIMEOUT, 900 s): a hung daemon or client fails it,
# and the script still gets SIGTERM first, so its cleanup trap runs.
set -u
script=$1
shift
log=$(mktemp /tmp/em-netns-run.XXXXXX)
trap 'rm -f "$log"' EXIT
timeout --kill-after=10 "${EM_SCRIPT_TIMEOUT:-900}" bash "$script" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" = 77 ] && { echo "SKIPPED: $script (a prerequisite is missing: exit 77)"; exit 77; }
last=$(tail -n 1 "$log")
[ "$rc" = 0 ] && [[ $last =~ ^[1-9][0-9]*\ passed,\ 0\ failed ]] && exit 0
[ "$rc" = 124 ] && echo "TIMEOUT: $script ran longer than ${EM_SCRIPT_TIMEOUT:-900} s"
echo "FAILED: $script (exit $rc)"
exit 1
