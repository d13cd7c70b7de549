#!/bin/bash
# proxy-l4.sh — the L4 forwarder end to end: TPROXY capture, original
# destination lookup, round robin, refusal of non-service destinations,
# a 50 MB transfer checked by sha256, half-close, failover, and the
# throughput through the proxy against a direct connection.
#
#   em-$$-proxy-node                                   em-$$-proxy-be1
#     client (proxy-driver client)                      server "b1" 10.88.1.2:8080
#     proxy-driver proxy on 127.0.0.1:15001  v1 10.88.1.1 ----- eth0 10.88.1.2
#       (IP_TRANSPARENT, SO_REUSEPORT x2)
#     nft: output marks 198.18.0.0/16 -> fwmark 1  v2 10.88.2.1 ----- eth0 10.88.2.2
#          -> table 100 local route via lo                 em-$$-proxy-be2
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
# Needs root. Everything it creates carries $$ and is removed on exit
# (lib/topology.sh: naming, traps, wait_until, check, result line).

set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_PROXY_DRIVER=${EM_PROXY_DRIVER:-$here/../build/tests/proxy-driver}
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
NS_NODE="em-$TOPO_ID-proxy-node"
NS_BE1="em-$TOPO_ID-proxy-be1"
NS_BE2="em-$TOPO_ID-proxy-be2"
TOPO_NS="$NS_NODE $NS_BE1 $NS_BE2"
topo_traps
topo_need root netns nft sha256sum
[ -x "$EM_PROXY_DRIVER" ] || topo_die "no proxy-driver at $EM_PROXY_DRIVER (build first)"
[ -x "$EM_PROXY_DRIVER" ] || topo_die "no proxy-driver at $EM_PROXY_DRIVER (build first)"

DIR=$TOPO_DIR
FAKE=198.18.0.10

nn()  { ip netns exec "$NS_NODE" "$@"; }
nb1() { ip netns exec "$NS_BE1" "$@"; }
nb2() { ip netns exec "$NS_BE2" "$@"; }
# like GLOB TEXT: TEXT matches the (extended) shell pattern GLOB
shopt -s extglob
# shellcheck disable=SC2053  # the unquoted pattern is the point
like() { [[ $2 == $1 ]] || { echo "got: $2"; return 1; }; }

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

# The capture rules (docs/kernel-notes.md), inside the node namespace only.
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
	echo $! > "$DIR/server-$3.pid"
	eval "PID_$3=$!"
}
start_server "$NS_BE1" 10.88.1.2 b1
start_server "$NS_BE2" 10.88.2.2 b2
start_server "$NS_BE1" fd00:88:1::2 b1v6
start_server "$NS_BE2" fd00:88:2::2 b2v6
serving() { ip netns exec "$1" ss -Hltn "src $2" | grep -q .; }	# serving NS ADDR:PORT
for srv in "$NS_BE1 10.88.1.2:8080" "$NS_BE2 10.88.2.2:8080" \
	   "$NS_BE1 [fd00:88:1::2]:8080" "$NS_BE2 [fd00:88:2::2]:8080"; do
	wait_until 5 serving $srv || topo_die "server $srv did not start"
done

ip netns exec "$NS_NODE" "$EM_PROXY_DRIVER" proxy --port 15001 --workers 2 --mark 0x1e3 \
	--listen6 ::1 --service "$FAKE:80=10.88.1.2:8080,10.88.2.2:8080" \
	--service "[fd00:198::10]:80=[fd00:88:1::2]:8080,[fd00:88:2::2]:8080" >"$DIR/proxy.out" 2>"$DIR/proxy.err" &
PROXY=$!
echo "$PROXY" > "$DIR/proxy.pid"
wait_until 5 grep -q '^ready' "$DIR/proxy.out" || topo_die "proxy did not start: $(cat "$DIR/proxy.err")"
RSS_IDLE=$(awk '/^VmRSS/ {print $2}' "/proc/$PROXY/status")

client() { nn "$EM_PROXY_DRIVER" client "$@"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

# ---- 1. a connection to the fake IP reaches a backend -----------------------
out=$(client "$FAKE" 80)
check "fake $FAKE:80 reaches a backend ($out)" like 'backend=b[12]*trailer=EOF 0*' "$out"

# ---- 2. round robin alternates -------------------------------------------
seq=""
for i in 1 2 3 4 5 6; do seq="$seq$(client "$FAKE" 80 | field backend) "; done
check "round robin alternates: $seq" like '@(b1 b2 b1 b2 b1 b2 |b2 b1 b2 b1 b2 b1 )' "$seq"

# ---- 3. not a service port: refused ----------------------------------------
for dst in "$FAKE 81" "198.18.0.99 80" "127.0.0.1 15001"; do
	out=$(client $dst 2>&1)
	check "refused ${dst/ /:} ($out)" like '@(refused*|connect-failed*)' "$out"
done

# ---- 3b. IPv6: TPROXY to [::1], round robin, refusal -----------------------
seq=""
for i in 1 2 3 4; do seq="$seq$(client fd00:198::10 80 | field backend) "; done
check "IPv6 fake [fd00:198::10]:80 round robin: $seq" \
	like '@(b1v6 b2v6 b1v6 b2v6 |b2v6 b1v6 b2v6 b1v6 )' "$seq"
out=$(client fd00:198::10 81 2>&1)
check "refused [fd00:198::10]:81 ($out)" like '@(refused*|connect-failed*)' "$out"

# ---- 4. half-close: our FIN reaches the backend, its reply still arrives ---
printf 'hello' > "$DIR/small"
out=$(client "$FAKE" 80 --in "$DIR/small" --out "$DIR/small.out")
check "half-close ($out)" sh -c '
	case "$1" in *"bytes=5 trailer=EOF 5"*) ;; *) exit 1 ;; esac
	cmp "$2" "$3"' _ "$out" "$DIR/small" "$DIR/small.out"

# ---- 5. 50 MB through the proxy, intact --------------------------------------
head -c $((50 * 1024 * 1024)) /dev/urandom > "$DIR/big"
SHA_IN=$(sha256sum < "$DIR/big" | cut -d' ' -f1)
out=$(client "$FAKE" 80 --in "$DIR/big" --out "$DIR/big.out")
SHA_OUT=$(sha256sum < "$DIR/big.out" | cut -d' ' -f1)
check "50 MB echoed intact through the proxy, sha256 $SHA_IN ($out)" sh -c '
	[ "$1" = "$2" ] || { echo "sha256 in $1 out $2"; exit 1; }
	case "$3" in *"trailer=EOF 52428800"*) ;; *) exit 1 ;; esac' _ "$SHA_IN" "$SHA_OUT" "$out"
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
check "100 concurrent connections: b1 $n1, b2 $n2 (50 each)" test "$n1:$n2" = 50:50

# ---- 6. a backend goes away: connections fail over ------------------------
kill "$PID_b2"
wait "$PID_b2" 2>/dev/null
rm -f "$DIR/server-b2.pid"
wait_until 5 sh -c "! ip netns exec $NS_BE2 ss -Hltn 'src 10.88.2.2:8080' | grep -q ."
ok=0
for i in 1 2 3 4; do
	client "$FAKE" 80 | grep -q '^backend=b1 .*trailer=EOF 0' && ok=$((ok + 1))
done
check "failover: $ok/4 connections served by b1 with b2 down" test "$ok" = 4

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
rm -f "$DIR/proxy.pid"
check "4 refusals counted (refused=$refused)" test "$refused" = 4
check "upstream failure counted ($failures)" test "${failures:-0}" -ge 1
check "clean stop (no connection, no balancer left: active=$active rc=$rc)" test "$active:$rc" = 0:0
check_log_errors "$DIR/proxy.err"

log "driver RSS: idle ${RSS_IDLE} kB, after the transfers ${RSS_AFTER} kB"
if [ -n "$MBPS_PROXY" ] && [ -n "$MBPS_DIRECT" ]; then
	log "proxy/direct throughput ratio: $(awk -v a="$MBPS_PROXY" -v b="$MBPS_DIRECT" 'BEGIN { printf "%.2f", a / b }')"
fi
topo_result
