#!/usr/bin/env bash
# elf-hardening.sh — the daemon's ELF carries the build hardening of
# meson.build (issue 10): PIE, full RELRO (-z relro -z now), stack
# protector (-fstack-protector-strong), stack clash protection,
# _FORTIFY_SOURCE (checked *_chk calls), and on x86-64 CET (-fcf-protection:
# endbr64 at function entries). Read with readelf, checksec-style; no namespaces.
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/elf-hardening.sh
# (EM_BIN may be the installed /usr/sbin/edgemesh-tproxy.) Last line:
# `N passed, N failed`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
TOPO_NS=""	# no namespaces: the library's traps, check and result line only
topo_traps
DIR=$TOPO_DIR
command -v readelf >/dev/null || { echo "elf-hardening: no readelf"; echo "0 passed, 0 failed"; exit 77; }
[ -f "$EM_BIN" ] || topo_die "no binary at $EM_BIN"

readelf -hW "$EM_BIN" > "$DIR/h"
readelf -lW "$EM_BIN" > "$DIR/l"
readelf -dW "$EM_BIN" > "$DIR/d"
readelf --dyn-syms -W "$EM_BIN" > "$DIR/s"
# The compiler's switches, recorded per unit in DW_AT_producer (-g builds).
readelf --debug-dump=info "$EM_BIN" 2>/dev/null | grep -a 'DW_AT_producer' | sort -u > "$DIR/p"

check "PIE (ELF type DYN)" grep -q 'Type:[[:space:]]*DYN' "$DIR/h"
check "RELRO (GNU_RELRO segment)" grep -q 'GNU_RELRO' "$DIR/l"
check "BIND_NOW (full RELRO: -z now)" grep -Eq '\(BIND_NOW\)|FLAGS.*BIND_NOW|FLAGS_1.*NOW' "$DIR/d"
check "stack protector (__stack_chk_fail)" grep -q '__stack_chk_fail' "$DIR/s"
check "_FORTIFY_SOURCE (checked __*_chk calls)" grep -Eq ' __[a-z_]+_chk(@|$)' "$DIR/s"
if [ -s "$DIR/p" ]; then
	# every unit of ours; the C runtime's own objects are not compiled here
	ours() { grep -a 'GNU C11' "$DIR/p"; }
	all_have() { local flag=$1; ours | grep -q . && ! ours | grep -v -- "$flag" | grep -q .; }
	check "every unit built with -fstack-protector-strong" all_have -fstack-protector-strong
	check "every unit built with -fstack-clash-protection" all_have -fstack-clash-protection
	if [ "$(uname -m)" = x86_64 ]; then
		check "every unit built with -fcf-protection" all_have -fcf-protection
	fi
else
	echo "# no DWARF producer strings (stripped binary): compiler switches not checked"
fi
# CET in the code: our functions begin with endbr64 (-fcf-protection=branch).
# The IBT/SHSTK property note of the whole ELF is the AND over every linked
# object, and Debian 12's crt1.o/crti.o carry none, so it cannot be asked.
if [ "$(uname -m)" = x86_64 ] && command -v objdump >/dev/null; then
	endbr() { # every em_ function in .text starts with endbr64
		objdump -d --no-show-raw-insn "$EM_BIN" | awk '
			/^[0-9a-f]+ <em_[a-z0-9_]+>:$/ { want = 1; n++; next }
			want { want = 0; if ($2 != "endbr64") { bad++; print "no endbr64:", prev } }
			{ prev = $0 }
			END { print n, "em_ functions,", bad + 0, "without endbr64"; exit !(n > 0 && bad == 0) }'
	}
	check "CET: every em_ function starts with endbr64" endbr
fi
topo_result
