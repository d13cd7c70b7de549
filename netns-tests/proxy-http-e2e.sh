#!/bin/bash
# proxy-http-e2e.sh — the L7 HTTP forwarder end to end with the scripted
# raw-socket client (tools/http-raw-client.py) and the python backends
# (tools/http-backend.py): keep-alive spreading over backends, pipelining,
# chunked upload, 100-continue, 64 MiB upload and download checked by
# sha256 (Content-Length, chunked, close-delimited), WebSocket echo, a
# backend dying mid-response, one never answering (504), all refusing
# (502), and the smuggling set (tests/proxy/http-smuggling.vectors) where
# the backend's own log proves it never saw a smuggled request.
#
#   em-http-$$-node                                         em-http-$$-be1
#     http-raw-client.py                                     b1    10.89.1.2:8080 (log)
#     proxy-driver proxy on 127.0.0.1:15001   v1 10.89.1.1 -- smug  10.89.1.2:8081 (log)
#     nft: output marks 198.18.0.0/16 -> fwmark 1            die   10.89.1.2:8082 (die)
#          -> table 100 local route via lo                   hang  10.89.1.2:8083 (hang)
#          -> prerouting tproxy to 127.0.0.1:15001
#     upstream sockets carry SO_MARK 0x1e3    v2 10.89.2.1 -- em-http-$$-be2
#                                                            b2    10.89.2.2:8080 (log)
#   services (all HTTP):
#     198.18.0.10:80 -> b1, b2          main suite
#     198.18.0.11:80 -> smug            smuggling set, one backend, one log
#     198.18.0.12:80 -> die             dies mid-response
#     198.18.0.13:80 -> hang            never answers: 504
#     198.18.0.14:80 -> 10.89.2.2:9 x2  nothing listens: 502
#
# How the proxy-driver is told that a service is HTTP is the forwarder's
# business: EM_HTTP_PROXY_OPTS is added to its command line (default
# "--http"); EM_HTTP_504_WITHIN bounds the wait for the 504 (default 65 s).
# The script first checks that the forwarder is L7 (two requests on one
# connection reach two backends) and exits 77 (skip) if not, unless
# EM_HTTP_FORCE=1 (then everything runs, e.g. over the L4 path, to see the
# harness itself work and the L7 checks fail).
#
# Usage: EM_PROXY_DRIVER=<build>/src/proxy/proxy-driver netns-tests/proxy-http-e2e.sh
# Needs root and python3. Everything it creates carries $$ and is removed on exit.

set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
EM_PROXY_DRIVER=${EM_PROXY_DRIVER:-$top/build/src/proxy/proxy-driver}
EM_HTTP_PROXY_OPTS=${EM_HTTP_PROXY_OPTS---http}
EM_HTTP_504_WITHIN=${EM_HTTP_504_WITHIN:-65}
[ -x "$EM_PROXY_DRIVER" ] || { echo "no proxy-driver at $EM_PROXY_DRIVER (build first)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "proxy-http-e2e.sh: needs root"; exit 77; }

NS_NODE="em-http-$$-node"
NS_BE1="em-http-$$-be1"
NS_BE2="em-http-$$-be2"
DIR=$(mktemp -d "/tmp/em-http-e2e.$$.XXXXXX")
PASSED=0
FAILED=0
PIDS=()

nn() { ip netns exec "$NS_NODE" "$@"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; FAILED=$((FAILED + 1)); echo "$PASSED passed, $FAILED failed"; exit 1; }

cleanup() {
	local pid ns
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	sleep 0.3	# SIGTERM first: the proxy prints its stats and exits cleanly
	for ns in "$NS_NODE" "$NS_BE1" "$NS_BE2"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$DIR"
}
trap cleanup EXIT

wait_until() {
	local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
	until "$@" >/dev/null 2>&1; do
		[ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# ---- topology -------------------------------------------------------------
for ns in "$NS_NODE" "$NS_BE1" "$NS_BE2"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip link add v1 netns "$NS_NODE" type veth peer name eth0 netns "$NS_BE1"
ip link add v2 netns "$NS_NODE" type veth peer name eth0 netns "$NS_BE2"
ip -n "$NS_NODE" addr add 10.89.1.1/24 dev v1
ip -n "$NS_NODE" addr add 10.89.2.1/24 dev v2
ip -n "$NS_BE1" addr add 10.89.1.2/24 dev eth0
ip -n "$NS_BE2" addr add 10.89.2.2/24 dev eth0
for l in v1 v2; do ip -n "$NS_NODE" link set "$l" up; done
ip -n "$NS_BE1" link set eth0 up
ip -n "$NS_BE2" link set eth0 up
ip -n "$NS_BE1" route add default via 10.89.1.1
ip -n "$NS_BE2" route add default via 10.89.2.1
ip -n "$NS_NODE" route add 198.18.0.0/16 via 10.89.1.2

nn nft -f - <<'NFT'
table inet emhttptest {
	chain pre {
		type filter hook prerouting priority mangle; policy accept;
		meta mark 0x1e3 return
		meta l4proto tcp ip daddr 198.18.0.0/16 tproxy ip to 127.0.0.1:15001 meta mark set 1 accept
	}
	chain out {
		type route hook output priority mangle; policy accept;
		meta mark 0x1e3 return
		ip daddr 198.18.0.0/16 meta l4proto tcp meta mark set 1
	}
}
NFT
nn ip rule add fwmark 1 lookup 100
nn ip route add local 0.0.0.0/0 dev lo table 100

# ---- backends ---------------------------------------------------------------
backend() { # NS ADDR PORT NAME MODE
	ip netns exec "$1" python3 "$top/tools/http-backend.py" --listen "$2:$3" --name "$4" \
		--mode "$5" --log "$DIR/$4.log" >"$DIR/$4.out" 2>&1 &
	PIDS+=($!)
}
listening() { ip netns exec "$1" ss -Hltn "src $2" | grep -q .; }
backend "$NS_BE1" 10.89.1.2 8080 b1 log
backend "$NS_BE2" 10.89.2.2 8080 b2 log
backend "$NS_BE1" 10.89.1.2 8081 smug log
backend "$NS_BE1" 10.89.1.2 8082 die die
backend "$NS_BE1" 10.89.1.2 8083 hang hang
for srv in "$NS_BE1 10.89.1.2:8080" "$NS_BE2 10.89.2.2:8080" "$NS_BE1 10.89.1.2:8081" \
	   "$NS_BE1 10.89.1.2:8082" "$NS_BE1 10.89.1.2:8083"; do
	wait_until 15 listening $srv || die "backend $srv did not start"
done

# shellcheck disable=SC2086 # EM_HTTP_PROXY_OPTS is a list of options
ip netns exec "$NS_NODE" "$EM_PROXY_DRIVER" proxy --port 15001 --workers 2 --mark 0x1e3 \
	$EM_HTTP_PROXY_OPTS \
	--service "198.18.0.10:80=10.89.1.2:8080,10.89.2.2:8080" \
	--service "198.18.0.11:80=10.89.1.2:8081" \
	--service "198.18.0.12:80=10.89.1.2:8082" \
	--service "198.18.0.13:80=10.89.1.2:8083" \
	--service "198.18.0.14:80=10.89.2.2:9,10.89.1.2:9" \
	>"$DIR/proxy.out" 2>"$DIR/proxy.err" &
PIDS+=($!)
if ! wait_until 5 grep -q '^ready' "$DIR/proxy.out"; then
	log "proxy-driver did not start with EM_HTTP_PROXY_OPTS='$EM_HTTP_PROXY_OPTS': $(cat "$DIR/proxy.err")"
	echo "0 passed, 0 failed (skipped: no L7 proxy-driver)"
	exit 77
fi

# client SERVICE-IP ARGS...: run the raw client in the node namespace; its
# ok/FAIL lines are counted.
client() {
	local ip=$1; shift
	local out
	out=$(nn python3 "$top/tools/http-raw-client.py" --to "$ip:80" "$@" 2>&1)
	printf '%s\n' "$out"
	PASSED=$((PASSED + $(printf '%s\n' "$out" | grep -c '^ok - ')))
	FAILED=$((FAILED + $(printf '%s\n' "$out" | grep -c '^FAIL - ')))
}

# ---- is it L7? ---------------------------------------------------------------
out=$(nn python3 "$top/tools/http-raw-client.py" --to 198.18.0.10:80 keepalive -n 4 --backends b1,b2 2>&1)
if ! grep -q '^ok - every backend' <<<"$out"; then
	if [ "${EM_HTTP_FORCE:-0}" != 1 ]; then
		log "the forwarder is not L7 on 198.18.0.10:80 (one connection stuck to one backend): $out"
		echo "0 passed, 0 failed (skipped: not an L7 forwarder)"
		exit 77
	fi
	log "EM_HTTP_FORCE=1: running over a forwarder that is not L7"
fi

# ---- main suite ----------------------------------------------------------
S=198.18.0.10
client $S keepalive -n 100 --backends b1,b2
client $S pipeline -n 50
client $S chunked-upload --size $((3 * 1024 * 1024))
client $S continue --size 200000
client $S upload --size $((64 * 1024 * 1024))
client $S download --size $((64 * 1024 * 1024))
client $S download --size $((16 * 1024 * 1024)) --chunked
client $S download --size $((16 * 1024 * 1024)) --close
client $S websocket

# ---- failures ---------------------------------------------------------------
client 198.18.0.12 die --size $((8 * 1024 * 1024))
client 198.18.0.13 --timeout $((EM_HTTP_504_WITHIN + 5)) get /never --expect 504 --within "$EM_HTTP_504_WITHIN"
client 198.18.0.14 get /refused --expect 502 --within 10

# ---- smuggling: the backend's log is the witness -----------------------------
client 198.18.0.11 --timeout 3 smuggle --vectors "$top/tests/proxy/http-smuggling.vectors" \
	--backend-log "$DIR/smug.log"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
