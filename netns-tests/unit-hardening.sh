#!/usr/bin/env bash
# unit-hardening.sh — contrib/edgemesh-tproxy.service stays hardened: the
# exposure rating of `systemd-analyze security --offline=true` is at most
# 2.0 ("OK"), and `systemd-analyze verify` is clean. No namespaces needed
# (it only reads the unit); it lives here to run with the other scenarios.
#
# verify checks that ExecStart= exists: the unit is verified as a copy whose
# /usr/sbin/edgemesh-tproxy is $EM_BIN. The Documentation= man page comes
# with issue 12: when the checkout has it (a file edgemesh-tproxy.8
# anywhere), MANPATH points at it and the verify must be clean; until then
# exactly one message is tolerated, "Command 'man edgemesh-tproxy(8)'
# failed ...", and the run says so. Any other output fails.
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/unit-hardening.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$here/..
EM_BIN=${EM_BIN:-$top/build/edgemesh-tproxy}
UNIT=${UNIT:-$top/contrib/edgemesh-tproxy.service}
MAX=2.0
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
TOPO_NS=""	# no namespaces: the library's traps, check and result line only
topo_traps
DIR=$TOPO_DIR
command -v systemd-analyze >/dev/null || { echo "unit-hardening: no systemd-analyze"; echo "0 passed, 0 failed"; exit 77; }

rating() { # UNIT-FILE -> the overall exposure number
	systemd-analyze security --offline=true "$1" 2>/dev/null |
		sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p'
}
rated_at_most() { # UNIT-FILE MAX
	local r; r=$(rating "$1")
	echo "exposure rating: ${r:-none} (at most $2)"
	[ -n "$r" ] && awk -v r="$r" -v m="$2" 'BEGIN { exit !(r <= m) }'
}
check "systemd-analyze security rates the unit <= $MAX" rated_at_most "$UNIT" "$MAX"
echo "# $(rating "$UNIT") $(systemd-analyze security --offline=true "$UNIT" 2>/dev/null | tail -n 1)"

# The check can fail: the same unit without its hardening block rates worse.
sed '/^# ---- hardening/,/^\[Install\]/{/^\[Install\]/!d}' "$UNIT" > "$DIR/bare.service"
rated_above() { ! rated_at_most "$@"; }
check "... and the check can fail (the unit without its hardening block rates > $MAX)" \
	rated_above "$DIR/bare.service" "$MAX"

# verify, on a copy that runs $EM_BIN
mkdir -p "$DIR/unit"
sed "s#/usr/sbin/edgemesh-tproxy#$(cd "$(dirname "$EM_BIN")" && pwd)/$(basename "$EM_BIN")#g" "$UNIT" \
	> "$DIR/unit/edgemesh-tproxy.service"
man_page=$(find "$top" -path "$top/build" -prune -o -name 'edgemesh-tproxy.8' -print 2>/dev/null | head -n 1)
verify_clean() {
	if [ -n "$man_page" ]; then
		mkdir -p "$DIR/man/man8" && cp "$man_page" "$DIR/man/man8/"
		export MANPATH="$DIR/man"
	fi
	systemd-analyze verify "$DIR/unit/edgemesh-tproxy.service" >"$DIR/verify.out" 2>&1
	local rc=$?
	cat "$DIR/verify.out"
	if [ -z "$man_page" ]; then
		# Until issue 12's man page exists: only its message is tolerated.
		if grep -v "Command 'man edgemesh-tproxy(8)' failed with code" "$DIR/verify.out" | grep -q .; then
			return 1
		fi
		return 0
	fi
	[ "$rc" = 0 ] && ! grep -q . "$DIR/verify.out"
}
check "systemd-analyze verify is clean${man_page:+ (man page $man_page)}" verify_clean
[ -n "$man_page" ] || echo "# NOTE: no edgemesh-tproxy.8 in the checkout yet (issue 12): the missing-man-page message of verify is tolerated, nothing else"

topo_result
