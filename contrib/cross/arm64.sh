#!/usr/bin/env bash
# arm64.sh — cross-build edgemesh-tproxy for arm64 and run the Check unit
# tests under qemu-user-static.
#
#   contrib/cross/arm64.sh deps    # gcc-aarch64-linux-gnu, qemu-user-static, the sysroot
#   contrib/cross/arm64.sh build   # meson + ninja with contrib/cross/aarch64-linux-gnu.ini
#   contrib/cross/arm64.sh test    # unit tests under qemu (CK_FORK=no, no scale tests)
#   contrib/cross/arm64.sh all     # the three
#
# The :arm64 library packages and everything they depend on are downloaded
# (apt-get download) and unpacked (dpkg -x) into $EM_SYSROOT; nothing is
# installed for arm64, so the native build keeps its libraries (the arm64
# libhttp-parser-dev would replace the native one). Needs root for `deps`
# (dpkg --add-architecture arm64, apt-get).
#
# Under qemu-user, Check's fork mode hangs: the tests run with CK_FORK=no.
# Scale tests stay out of the emulated run: the registry benchmark at 10k
# services is a separate program (netns-tests/bench-registry.sh, native
# only), and a test case that grows slow is tagged "scale"
# (tcase_set_tags), which CK_EXCLUDE_TAGS=scale leaves out here. The whole
# emulated run took about 95 s on a 2-core machine.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
EM_SYSROOT=${EM_SYSROOT:-/var/tmp/em-sysroot-arm64}
BUILD=${EM_ARM64_BUILD:-$src/build-arm64}
TRIPLET=aarch64-linux-gnu

# What the build links against (the -dev packages) plus libc for the sysroot.
DEV_PACKAGES=(
	libc6-dev libmnl-dev libnftnl-dev libnetfilter-queue-dev libnfnetlink-dev
	libhttp-parser-dev liburcu-dev libjansson-dev libyaml-dev libcurl4-openssl-dev
	libsqlite3-dev libsystemd-dev check libsubunit-dev
)

deps() {
	export DEBIAN_FRONTEND=noninteractive
	local native=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static pkg-config file)
	local missing=() p
	for p in "${native[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64
		apt-get update -qq
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	sysroot
}

# The closure of DEV_PACKAGES for arm64, each unpacked into $EM_SYSROOT.
sysroot() {
	local stamp="$EM_SYSROOT/.packages" want pkgs debs
	want=$(printf '%s:arm64\n' "${DEV_PACKAGES[@]}")
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		echo "sysroot $EM_SYSROOT is up to date"
		return 0
	fi
	# Real packages only (virtual ones print as <name>), arm64 or arch:all.
	pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances $want 2>/dev/null |
		grep -E '^[a-z0-9]' | sed 's/:arm64$//' | sort -u)
	debs=$(mktemp -d /var/tmp/em-arm64-debs.XXXXXX)
	chmod 755 "$debs"
	id _apt >/dev/null 2>&1 && chown _apt "$debs"
	# arm64 packages by name:arm64, arch:all ones by name alone.
	# shellcheck disable=SC2086
	(cd "$debs" && apt-get download -qq $(apt-cache show --no-all-versions \
		$(printf '%s:arm64 ' $pkgs) 2>/dev/null | awk '
		/^Package:/ { p = $2 }
		/^Architecture:/ { print ($2 == "all" ? p : p ":" $2) }' | sort -u))
	rm -rf "$EM_SYSROOT"
	mkdir -p "$EM_SYSROOT"
	for d in "$debs"/*.deb; do
		dpkg -x "$d" "$EM_SYSROOT"
	done
	rm -rf "$debs"
	# Absolute symlinks would point into the build machine: make them
	# relative to the sysroot.
	find "$EM_SYSROOT" -type l -lname '/*' | while read -r l; do
		ln -sfn "$EM_SYSROOT$(readlink "$l")" "$l"
	done
	echo "$want" > "$stamp"
	echo "sysroot $EM_SYSROOT: $(ls "$EM_SYSROOT/usr/lib/$TRIPLET" | wc -l) files in usr/lib/$TRIPLET"
}

build() {
	local consts="$BUILD.sysroot.ini"
	printf "[constants]\nsysroot = '%s'\n" "$EM_SYSROOT" > "$consts"
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" "$src" -Dwerror=true --cross-file "$consts" \
			--cross-file "$src/contrib/cross/aarch64-linux-gnu.ini"
	fi
	ninja -C "$BUILD"
	file "$BUILD/edgemesh-tproxy" | grep -q 'ARM aarch64' ||
		{ echo "edgemesh-tproxy is not an arm64 binary" >&2; return 1; }
	echo "arm64 build: $(file -b "$BUILD/edgemesh-tproxy" | cut -d, -f1-2)"
}

test_() {
	local t0=$SECONDS
	CK_FORK=no CK_EXCLUDE_TAGS=scale EM_TEST_DATA="$src/tests/data" \
		qemu-aarch64-static -L "$EM_SYSROOT" "$BUILD/tests/unit-tests"
	echo "# arm64 unit tests under qemu-user: $((SECONDS - t0)) s"
}

case "${1:-all}" in
deps) deps ;;
sysroot) sysroot ;;
build) build ;;
test) test_ ;;
all) deps; build; test_ ;;
*) echo "usage: $0 deps|sysroot|build|test|all" >&2; exit 2 ;;
esac
