#!/usr/bin/env bash
# bench-udp.sh — UDP request/response rate through the daemon's UDP
# forwarder, against the direct path and against socat relaying on the node,
# measured in the same run (ratios only: absolute rates on a shared 2-core VM
# mean little, and the Python client and echo server cost the same in every
# case).
#
#   client 10.247.0.2 ---- 10.247.0.1  node  10.248.0.1 ---- server 10.248.0.2
#   (udp-rr.py)                (edgemesh-tproxy,              (udp-echo-fast.py :7000)
#                               socat UDP relay :7100)
#
# Runs: (1) direct: client -> 10.248.0.2:7000 routed by the node;
# (2) daemon: client -> the service's fake IP:7000 (TPROXY for UDP, a flow
# per client socket); (3) socat: client -> 10.247.0.1:7100, `socat
# UDP-RECVFROM:7100,fork UDP-SENDTO:10.248.0.2:7000` (socat forks a child per
# datagram in this mode: the classic userspace UDP relay, not a fast one).
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/bench-udp.sh [seconds] [flows]   (root)
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
secs=${1:-5}
flows=${2:-8}
PY=/usr/bin/python3
TOOLS=$here/../tests/udp
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"	# naming, traps, wait_until (no checks: figures only)
C=em-$TOPO_ID-budp-client N=em-$TOPO_ID-budp-node S=em-$TOPO_ID-budp-server
TOPO_NS="$C $N $S"
topo_traps
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }
tmp=$TOPO_DIR

for n in "$C" "$N" "$S"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add c0 netns "$C" type veth peer name n0 netns "$N"
ip link add s0 netns "$S" type veth peer name n1 netns "$N"
ip -n "$C" addr add 10.247.0.2/24 dev c0; ip -n "$N" addr add 10.247.0.1/24 dev n0
ip -n "$S" addr add 10.248.0.2/24 dev s0; ip -n "$N" addr add 10.248.0.1/24 dev n1
for l in "$C c0" "$N n0" "$N n1" "$S s0"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n "$C" route add default via 10.247.0.1
ip -n "$S" route add default via 10.248.0.1
ip netns exec "$N" sysctl -qw net.ipv4.ip_forward=1
mkdir -p "/etc/netns/$C"
printf 'nameserver 10.247.0.1\n' > "/etc/netns/$C/resolv.conf"

ip netns exec "$S" $PY "$TOOLS/udp-echo-fast.py" 10.248.0.2 7000 & echo $! > "$tmp/echo.pid"
mkdir -p "$tmp/m" "$tmp/state"
cat > "$tmp/m/svc.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec:
  ports: [ { name: u, port: 7000, protocol: UDP } ]
---
apiVersion: v1
kind: Endpoints
metadata: { name: echo, namespace: default }
subsets:
  - addresses: [ { ip: 10.248.0.2 } ]
    ports: [ { name: u, port: 7000, protocol: UDP } ]
YAML
ip netns exec "$N" "$EM_BIN" --source "file:$tmp/m" --state-dir "$tmp/state" --log-level warn \
	--dns-host=no --dns-pods=no --client-iface n0 >"$tmp/daemon.log" 2>&1 & echo $! > "$tmp/daemon.pid"
# the fake IP, from the daemon's UDP capture set (the only UDP service port)
fake() { ip netns exec "$N" nft list set inet edgemesh udp4 2>/dev/null |
	grep -oE '198\.18\.[0-9]+\.[0-9]+ \. 7000' | cut -d' ' -f1; }
fake_ready() { [ -n "$(fake)" ]; }
wait_until 5 fake_ready || { echo "no UDP capture set entry"; cat "$tmp/daemon.log"; exit 1; }
FAKE=$(fake)
[ -n "$FAKE" ] || { echo "no fake IP in the UDP set:"; ip netns exec "$N" nft list set inet edgemesh udp4; cat "$tmp/daemon.log"; exit 1; }
ip netns exec "$N" socat UDP-RECVFROM:7100,bind=10.247.0.1,fork UDP-SENDTO:10.248.0.2:7000 & echo $! > "$tmp/socat.pid"
wait_until 5 sh -c "ip netns exec $N ss -Hlun 'sport = :7100' | grep -q ."

rr() { ip netns exec "$C" $PY "$TOOLS/udp-rr.py" "$1" "$2" "$flows" "$secs"; }
direct=$(rr 10.248.0.2 7000); echo "direct (routed by the node): $direct (replies/s, lost)"
daemon=$(rr "$FAKE" 7000); echo "daemon (fake IP $FAKE, TPROXY UDP): $daemon"
socat_=$(rr 10.247.0.1 7100); echo "socat UDP-RECVFROM,fork relay: $socat_"
awk -v a="${direct%% *}" -v b="${daemon%% *}" -v c="${socat_%% *}" 'BEGIN {
	if (a > 0) printf "ratio to direct: daemon %.2f, socat %.2f\n", b / a, c / a
	if (c > 0) printf "ratio daemon/socat: %.2f\n", b / c }'
