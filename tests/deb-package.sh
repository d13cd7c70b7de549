#!/bin/bash
# deb-package.sh — builds the Debian package from contrib/debian/ the way
# the README says (dpkg-buildpackage -us -uc -b on a copy of the tree with
# debian/ -> contrib/debian), then checks: lintian reports no errors, and
# the package holds the daemon, unit, config (as conffiles), nft file,
# header and man page; the unit passes systemd-analyze verify against the
# unpacked package.
#
# Usage: bash tests/deb-package.sh [SOURCE_DIR]   (no root needed)
# Last line: `N passed, N failed`. Builds in a temporary directory that is
# removed on exit. Takes a few minutes (a full build and the unit tests;
# DEB_BUILD_OPTIONS=nocheck skips the tests).
set -u
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
work=$(mktemp -d /tmp/em-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP
passed=0 failed=0
check() {
	local what=$1; shift
	if "$@" >"$work/check.out" 2>&1; then
		passed=$((passed + 1)); echo "ok - $what"
	else
		failed=$((failed + 1)); echo "FAIL - $what"; sed 's/^/    /' "$work/check.out" | tail -n 25
	fi
}

# The tree without build outputs and VCS data.
mkdir "$work/edgemesh-tproxy"
tar -C "$src" --exclude=./build --exclude='./build-*' --exclude=./.git --exclude=./debian \
	-cf - . | tar -C "$work/edgemesh-tproxy" -xf -
ln -s contrib/debian "$work/edgemesh-tproxy/debian"
( cd "$work/edgemesh-tproxy" && dpkg-buildpackage -us -uc -b ) >"$work/build.log" 2>&1
rc=$?
check "dpkg-buildpackage -us -uc -b succeeds" sh -c "[ $rc = 0 ] || { tail -n 40 '$work/build.log'; exit 1; }"
deb=$(ls "$work"/edgemesh-tproxy_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { echo "$passed passed, $failed failed"; exit 1; }

lintian --fail-on error --suppress-tags-from-file /dev/null "$deb" >"$work/lintian.out" 2>&1
lrc=$?
check "lintian reports no errors" sh -c "cat '$work/lintian.out'; [ $lrc = 0 ] && ! grep -q '^E:' '$work/lintian.out'"
sed 's/^/# lintian: /' "$work/lintian.out"
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' > "$work/contents"
for f in /usr/sbin/edgemesh-tproxy /etc/edgemesh-tproxy/edgemesh-tproxy.conf \
	/etc/nftables.d/edgemesh.nft /usr/include/edgemesh/balancer.h \
	/usr/share/man/man8/edgemesh-tproxy.8.gz /etc/edgemesh-tproxy/manifests/; do
	check "package holds $f" grep -qx -- "$f" "$work/contents"
done
check "package holds the README" grep -qE '^/usr/share/doc/edgemesh-tproxy/README.md(.gz)?$' "$work/contents"
check "package holds the systemd unit" grep -qE '^/(usr/)?lib/systemd/system/edgemesh-tproxy.service$' "$work/contents"
dpkg-deb -e "$deb" "$work/control"
check "config and nft file are conffiles" sh -c "
	grep -qx /etc/edgemesh-tproxy/edgemesh-tproxy.conf '$work/control/conffiles' &&
	grep -qx /etc/nftables.d/edgemesh.nft '$work/control/conffiles'"
check "maintainer scripts enable the unit" grep -q 'deb-systemd-helper' "$work/control/postinst"
dpkg-deb -x "$deb" "$work/root"
check "the packaged daemon runs (--version)" "$work/root/usr/sbin/edgemesh-tproxy" --version
check "the packaged man page renders with the option list" sh -c "
	MANWIDTH=80 man -l '$work/root/usr/share/man/man8/edgemesh-tproxy.8.gz' 2>/dev/null | grep -q -- '--metrics-listen'"
unit=$(ls "$work"/root/{usr/,}lib/systemd/system/edgemesh-tproxy.service 2>/dev/null | head -n 1)
check "packaged unit is Type=notify with a watchdog" sh -c "grep -qx Type=notify '$unit' && grep -q '^WatchdogSec=' '$unit'"
if command -v systemd-analyze >/dev/null; then
	# The unit as installed, pointed at the unpacked binary; the man: link
	# is looked up in the unpacked package.
	sed "s|/usr/sbin/edgemesh-tproxy|$work/root/usr/sbin/edgemesh-tproxy|g" "$unit" \
		> "$work/edgemesh-tproxy.service"
	check "systemd-analyze verify accepts the unit" sh -c "
		MANPATH='$work/root/usr/share/man' systemd-analyze verify '$work/edgemesh-tproxy.service' 2>&1 |
		tee /dev/stderr | grep -q . && exit 1 || exit 0"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
