#!/bin/bash
# proxy-l4.sh — the L4 forwarder end to end: TPROXY capture, original
# destination lookup, round robin, refusal of non-service destinations,
# a 50 MB transfer checked by sha256, half-close, failover, and the
# throughput through the proxy against a direct connection.
#
#   em-proxy-$$-node                                   em-proxy-$$-be1
#     client (proxy-driver client)                      server "b1" 10.88.1.2:8080
#     proxy-driver proxy on 127.0.0.1:15001  v1 10.88.1.1 ----- eth0 10.88.1.2
#       (IP_TRANSPARENT, SO_REUSEPORT x2)
#     nft: output marks 198.18.0.0/16 -> fwmark 1  v2 10.88.2.1 ----- eth0 10.88.2.2
#          -> table 100 local route via lo                 em-proxy-$$-be2
#          -> prerouting tproxy to 127.0.0.1:15001         server "b2" 10.88.2.2:8080
#     upstream sockets carry SO_MARK 0x1e3 (bypass)
#
#   service 198.18.0.10:80 -> 10.88.1.2:8080, 10.88.2.2:8080 (round robin)
#
#   IPv6 alongside: links fd00:88:1::/64 and fd00:88:2::/64 (::1 node side,
#   ::2 backends), fake range fd00:198::/64 TPROXY'd to [::1]:15001,
#   service [fd00:198::10]:80 -> [fd00:88:1::2]:8080, [fd00:88:2::2]:8080
#
# Usage: EM_PROXY_DRIVER=<build>/tests/proxy-driver netns-tests/proxy-l4.sh
# Needs root. Everything it creates carries $$ and is removed on exit.

set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_PROXY_DRIVER=${EM_PROXY_DRIVER:-$here/../build/tests/proxy-driver}
[ -x "$EM_PROXY_DRIVER" ] || { echo "no proxy-driver at $EM_PROXY_DRIVER (build first)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "proxy-l4.sh: needs root"; exit 77; }

NS_NODE="em-proxy-$$-node"
NS_BE1="em-proxy-$$-be1"
NS_BE2="em-proxy-$$-be2"
DIR=$(mktemp -d "/tmp/em-proxy-l4.$$.XXXXXX")
FAKE=198.18.0.10
PASSED=0
FAILED=0
PIDS=()

nn()  { ip netns exec "$NS_NODE" "$@"; }
nb1() { ip netns exec "$NS_BE1" "$@"; }
nb2() { ip netns exec "$NS_BE2" "$@"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); log "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL: $*"; }
die() { fail "$*"; echo "$PASSED passed, $FAILED failed"; exit 1; }

cleanup() {
	local pid ns
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for ns in "$NS_NODE" "$NS_BE1" "$NS_BE2"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$DIR"
}
trap cleanup EXIT

# wait_until SECONDS CMD...: poll every 50 ms.
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
ip -n "$NS_NODE" addr add 10.88.1.1/24 dev v1
ip -n "$NS_NODE" addr add 10.88.2.1/24 dev v2
ip -n "$NS_BE1" addr add 10.88.1.2/24 dev eth0
ip -n "$NS_BE2" addr add 10.88.2.2/24 dev eth0
ip -n "$NS_NODE" addr add fd00:88:1::1/64 dev v1 nodad
ip -n "$NS_NODE" addr add fd00:88:2::1/64 dev v2 nodad
ip -n "$NS_BE1" addr add fd00:88:1::2/64 dev eth0 nodad
ip -n "$NS_BE2" addr add fd00:88:2::2/64 dev eth0 nodad
for l in v1 v2; do ip -n "$NS_NODE" link set "$l" up; done
ip -n "$NS_BE1" link set eth0 up
ip -n "$NS_BE2" link set eth0 up
ip -n "$NS_BE1" route add default via 10.88.1.1
ip -n "$NS_BE2" route add default via 10.88.2.1
# connect() needs some route to the fake range before netfilter sees it.
ip -n "$NS_NODE" route add 198.18.0.0/16 via 10.88.1.2
ip -n "$NS_NODE" -6 route add fd00:198::/64 via fd00:88:1::2
ip -n "$NS_BE1" -6 route add default via fd00:88:1::1
ip -n "$NS_BE2" -6 route add default via fd00:88:2::1

# The capture rules (KERNEL-NOTES), inside the node namespace only.
nn nft -f - <<'NFT'
table inet emproxytest {
	chain pre {
		type filter hook prerouting priority mangle; policy accept;
		meta mark 0x1e3 return
		meta l4proto tcp ip daddr 198.18.0.0/16 tproxy ip to 127.0.0.1:15001 meta mark set 1 accept
		meta l4proto tcp ip6 daddr fd00:198::/64 tproxy ip6 to [::1]:15001 meta mark set 1 accept
	}
	chain out {
		type route hook output priority mangle; policy accept;
		meta mark 0x1e3 return
		ip daddr 198.18.0.0/16 meta l4proto tcp meta mark set 1
		ip6 daddr fd00:198::/64 meta l4proto tcp meta mark set 1
	}
}
NFT
nn ip rule add fwmark 1 lookup 100
nn ip route add local 0.0.0.0/0 dev lo table 100
nn ip -6 rule add fwmark 1 lookup 100
nn ip -6 route add local ::/0 dev lo table 100

# Background jobs run `ip netns exec` directly (it execs the program), not
# through the helper functions: $! must be the program's pid, not a subshell's.
start_server() { # NS IP NAME
	ip netns exec "$1" "$EM_PROXY_DRIVER" server "$2" 8080 "$3" &
	PIDS+=($!)
	eval "PID_$3=$!"
}
start_server "$NS_BE1" 10.88.1.2 b1
start_server "$NS_BE2" 10.88.2.2 b2
start_server "$NS_BE1" fd00:88:1::2 b1v6
start_server "$NS_BE2" fd00:88:2::2 b2v6
listening() { ip netns exec "$1" ss -Hltn "src $2" | grep -q .; }
for srv in "$NS_BE1 10.88.1.2:8080" "$NS_BE2 10.88.2.2:8080" \
	   "$NS_BE1 [fd00:88:1::2]:8080" "$NS_BE2 [fd00:88:2::2]:8080"; do
	wait_until 5 listening $srv || die "server $srv did not start"
done

ip netns exec "$NS_NODE" "$EM_PROXY_DRIVER" proxy --port 15001 --workers 2 --mark 0x1e3 \
	--listen6 ::1 --service "$FAKE:80=10.88.1.2:8080,10.88.2.2:8080" \
	--service "[fd00:198::10]:80=[fd00:88:1::2]:8080,[fd00:88:2::2]:8080" >"$DIR/proxy.out" 2>"$DIR/proxy.err" &
PROXY=$!
PIDS+=("$PROXY")
wait_until 5 grep -q '^ready' "$DIR/proxy.out" || die "proxy did not start: $(cat "$DIR/proxy.err")"
RSS_IDLE=$(awk '/^VmRSS/ {print $2}' "/proc/$PROXY/status")

client() { nn "$EM_PROXY_DRIVER" client "$@"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

# ---- 1. a connection to the fake IP reaches a backend -----------------------
out=$(client "$FAKE" 80)
case "$out" in
backend=b[12]*"trailer=EOF 0"*) pass "fake $FAKE:80 reaches a backend ($out)" ;;
*) fail "fake $FAKE:80: $out" ;;
esac

# ---- 2. round robin alternates -------------------------------------------
seq=""
for i in 1 2 3 4 5 6; do seq="$seq$(client "$FAKE" 80 | field backend) "; done
case "$seq" in
"b1 b2 b1 b2 b1 b2 " | "b2 b1 b2 b1 b2 b1 ") pass "round robin alternates: $seq" ;;
*) fail "round robin: $seq" ;;
esac

# ---- 3. not a service port: refused ----------------------------------------
for dst in "$FAKE 81" "198.18.0.99 80" "127.0.0.1 15001"; do
	out=$(client $dst 2>&1)
	case "$out" in
	refused* | connect-failed*) pass "refused ${dst/ /:} ($out)" ;;
	*) fail "${dst/ /:} was not refused: $out" ;;
	esac
done

# ---- 3b. IPv6: TPROXY to [::1], round robin, refusal -----------------------
seq=""
for i in 1 2 3 4; do seq="$seq$(client fd00:198::10 80 | field backend) "; done
case "$seq" in
"b1v6 b2v6 b1v6 b2v6 " | "b2v6 b1v6 b2v6 b1v6 ") pass "IPv6 fake [fd00:198::10]:80 round robin: $seq" ;;
*) fail "IPv6 round robin: $seq" ;;
esac
out=$(client fd00:198::10 81 2>&1)
case "$out" in
refused* | connect-failed*) pass "refused [fd00:198::10]:81 ($out)" ;;
*) fail "[fd00:198::10]:81 was not refused: $out" ;;
esac

# ---- 4. half-close: our FIN reaches the backend, its reply still arrives ---
printf 'hello' > "$DIR/small"
out=$(client "$FAKE" 80 --in "$DIR/small" --out "$DIR/small.out")
if [[ "$out" == *"bytes=5 trailer=EOF 5"* ]] && cmp -s "$DIR/small" "$DIR/small.out"; then
	pass "half-close ($out)"
else
	fail "half-close: $out"
fi

# ---- 5. 50 MB through the proxy, intact --------------------------------------
head -c $((50 * 1024 * 1024)) /dev/urandom > "$DIR/big"
SHA_IN=$(sha256sum < "$DIR/big" | cut -d' ' -f1)
out=$(client "$FAKE" 80 --in "$DIR/big" --out "$DIR/big.out")
SHA_OUT=$(sha256sum < "$DIR/big.out" | cut -d' ' -f1)
if [ "$SHA_IN" = "$SHA_OUT" ] && [[ "$out" == *"trailer=EOF 52428800"* ]]; then
	pass "50 MB echoed intact through the proxy, sha256 $SHA_IN ($out)"
else
	fail "50 MB transfer: $out sha256 in $SHA_IN out $SHA_OUT"
fi
# Throughput: the same transfer through the proxy and straight to a backend,
# interleaved, ${EM_BENCH_RUNS:-5} runs each; the medians give the ratio.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
: > "$DIR/mbps.proxy"; : > "$DIR/mbps.direct"
for i in $(seq "${EM_BENCH_RUNS:-5}"); do
	client "$FAKE" 80 --in "$DIR/big" --out /dev/null | field MBps >> "$DIR/mbps.proxy"
	client 10.88.1.2 8080 --in "$DIR/big" --out /dev/null | field MBps >> "$DIR/mbps.direct"
done
MBPS_PROXY=$(median < "$DIR/mbps.proxy")
MBPS_DIRECT=$(median < "$DIR/mbps.direct")
log "throughput, 50 MB echoed (MB/s of payload), median of ${EM_BENCH_RUNS:-5}: proxy $MBPS_PROXY" \
	"[$(tr '\n' ' ' < "$DIR/mbps.proxy")] direct $MBPS_DIRECT [$(tr '\n' ' ' < "$DIR/mbps.direct")]"

# ---- 5b. 100 concurrent connections: all served, split exactly in two ------
printf 'concurrent' > "$DIR/c.in"
cpids=()
for i in $(seq 100); do
	client "$FAKE" 80 --in "$DIR/c.in" > "$DIR/c.$i" 2>&1 &
	cpids+=($!)
done
wait "${cpids[@]}"	# not a bare wait: the servers and the proxy are children too
n1=$(cat "$DIR"/c.* | grep -c '^backend=b1 bytes=10 trailer=EOF 10')
n2=$(cat "$DIR"/c.* | grep -c '^backend=b2 bytes=10 trailer=EOF 10')
[ "$n1" = 50 ] && [ "$n2" = 50 ] && pass "100 concurrent connections: b1 $n1, b2 $n2" \
	|| fail "100 concurrent connections: b1 $n1, b2 $n2"

# ---- 6. a backend goes away: connections fail over ------------------------
kill "$PID_b2"
wait "$PID_b2" 2>/dev/null
wait_until 5 sh -c "! ip netns exec $NS_BE2 ss -Hltn 'src 10.88.2.2:8080' | grep -q ."
ok=0
for i in 1 2 3 4; do
	client "$FAKE" 80 | grep -q '^backend=b1 .*trailer=EOF 0' && ok=$((ok + 1))
done
[ "$ok" = 4 ] && pass "failover: 4/4 connections served by b1 with b2 down" \
	|| fail "failover: $ok/4 connections served"

# ---- counters and a clean stop ------------------------------------------
kill -USR1 "$PROXY"
wait_until 5 grep -q '^stats' "$DIR/proxy.out"
RSS_AFTER=$(awk '/^VmRSS/ {print $2}' "/proc/$PROXY/status")
kill -TERM "$PROXY"
wait "$PROXY"
rc=$?
stats=$(grep '^stats' "$DIR/proxy.out" | tail -n 1)
log "$stats"
refused=$(echo "$stats" | field refused)
failures=$(echo "$stats" | field upstream_failures)
active=$(echo "$stats" | field active)
[ "$refused" = 4 ] && pass "4 refusals counted" || fail "refused counter $refused, expected 4"
[ "${failures:-0}" -ge 1 ] && pass "upstream failure counted ($failures)" \
	|| fail "upstream failures $failures"
[ "$active" = 0 ] && [ "$rc" = 0 ] && pass "clean stop (no connection, no balancer left)" \
	|| fail "stop: active=$active rc=$rc"
if grep -q '^<3>' "$DIR/proxy.err"; then
	fail "errors logged: $(grep '^<3>' "$DIR/proxy.err" | head -3)"
fi

log "driver RSS: idle ${RSS_IDLE} kB, after the transfers ${RSS_AFTER} kB"
if [ -n "$MBPS_PROXY" ] && [ -n "$MBPS_DIRECT" ]; then
	log "proxy/direct throughput ratio: $(awk -v a="$MBPS_PROXY" -v b="$MBPS_DIRECT" 'BEGIN { printf "%.2f", a / b }')"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
