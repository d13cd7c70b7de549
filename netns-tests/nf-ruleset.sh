#!/bin/bash
# nf-ruleset.sh — the nf area (src/nf) against the kernel: the table, the
# policy routing and the DNS queue that em_nf_install puts in a namespace,
# and that em_nf_remove leaves nothing behind.
#
#   ┌──────────────── node: em-$$-nf-node ─────────────────┐        ┌─── pod: em-$$-nf-pod ───┐
#   │ nf-driver  (em_nf_install ... SIGTERM ... em_nf_remove)       │                         │
#   │ tproxy listeners 127.0.0.1:15001, [::1]:15001        │  veth  │ 10.77.0.2/24            │
#   │ plain TCP server *:12345, UDP server *:53            ├────────┤ fd77::2/64              │
#   │ 10.77.0.1/24  fd77::1/64   NO default route          │ vn  vp │ default via the node    │
#   └──────────────────────────────────────────────────────┘        └─────────────────────────┘
#   fake ranges 198.18.0.0/16 and fd00:e3::/64, extra capture 10.96.0.0/12
#
# Usage: NF_DRIVER=/tmp/b-nf/tests/nf-driver netns-tests/nf-ruleset.sh
# (default: build/tests/nf-driver). Needs root, python3 in /usr/bin.
# Shares lib/topology.sh (naming, traps, wait_until, check, result line).
# Prints one line per check and `N passed, N failed` last; exit 1 on failure.

here=$(cd "$(dirname "$0")" && pwd)
NF_DRIVER=${NF_DRIVER:-$here/../build/tests/nf-driver}
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
NODE="em-$TOPO_ID-nf-node"
POD="em-$TOPO_ID-nf-pod"
TOPO_NS="$NODE $POD"
topo_traps
topo_need root netns nft python3
PY=/usr/bin/python3
DIR=$TOPO_DIR
skipped=0

n() { ip netns exec "$NODE" "$@"; }
p() { ip netns exec "$POD" "$@"; }

[ -x "$NF_DRIVER" ] || topo_die "nf-ruleset: no driver at $NF_DRIVER (set NF_DRIVER)"

# ---- small helpers run inside the namespaces ----
cat >"$DIR/h.py" <<'EOF'
import socket, sys
SO_MARK, IP_TRANSPARENT, IPV6_TRANSPARENT = 36, 19, 75
cmd, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
def fmt(a):
    return ('[%s]:%d' if ':' in a[0] else '%s:%d') % (a[0], a[1])
if cmd in ('tlisten', 'plain'):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # transparent both: a socket may only answer from a fake IP (an address
    # that is routed locally but is not the node's) with IP_TRANSPARENT
    if True:
        if fam == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, peer = s.accept()
        print('%s local=%s peer=%s' % (cmd, fmt(c.getsockname()), fmt(peer)), flush=True)
        c.close()
elif cmd == 'connect':
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
    if len(sys.argv) > 4:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, int(sys.argv[4], 0))
    try:
        s.connect((addr, port)); print('connected from', fmt(s.getsockname()))
    except OSError as e:
        print('connect:', e); sys.exit(1)
elif cmd == 'udpserve':
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    while True:
        d, peer = s.recvfrom(2048)
        print('udp from=%s' % fmt(peer), flush=True); s.sendto(d, peer)
elif cmd == 'udpask':
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
    if len(sys.argv) > 4:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, int(sys.argv[4], 0))
    s.sendto(b'edgemesh-test-query', (addr, port))
    try:
        s.recvfrom(2048); print('reply')
    except OSError as e:
        print('udp:', e); sys.exit(1)
EOF

bg() { # bg NAME NS CMD...: start in the background, output to $DIR/NAME.log
	local name=$1 ns=$2; shift 2
	ip netns exec "$ns" "$@" >"$DIR/$name.log" 2>&1 &
	echo $! >"$DIR/$name.pid"
}
stop() { # stop NAME: SIGTERM and wait; returns the exit status
	local pid; pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null; wait "$pid"; local rc=$?
	rm -f "$DIR/$1.pid"; return $rc
}

driver_start() { # driver_start NAME ARGS...: start nf-driver, wait for "ready"
	local name=$1; shift
	bg "$name" "$NODE" "$NF_DRIVER" "$@"
	wait_until 10 grep -q '^ready' "$DIR/$name.log" ||
		{ echo "driver $name did not get ready:"; cat "$DIR/$name.log"; return 1; }
}

state() { # everything the driver may touch, for before/after diffs
	n nft list ruleset 2>&1
	n ip rule; n ip -6 rule
	n ip route show table all; n ip -6 route show table all
}

# ---- topology ----
ip netns add "$NODE" && ip netns add "$POD" || topo_die "cannot create the namespaces"
n ip link set lo up; p ip link set lo up
ip link add vn netns "$NODE" type veth peer name vp netns "$POD"
n ip addr add 10.77.0.1/24 dev vn; n ip addr add fd77::1/64 dev vn nodad
p ip addr add 10.77.0.2/24 dev vp; p ip addr add fd77::2/64 dev vp nodad
n ip link set vn up; p ip link set vp up
p ip route add default via 10.77.0.1; p ip -6 route add default via fd77::1
# the link-local address comes with its local route once DAD is over
wait_until 5 sh -c "ip -n $NODE -6 route show table local | grep -q fe80" ||
	topo_die "no IPv6 link-local address on vn"
state >"$DIR/before"

bg tl4 "$NODE" "$PY" "$DIR/h.py" tlisten 127.0.0.1 15001
bg tl6 "$NODE" "$PY" "$DIR/h.py" tlisten ::1 15001
bg plain "$NODE" "$PY" "$DIR/h.py" plain 0.0.0.0 12345
bg udp4 "$NODE" "$PY" "$DIR/h.py" udpserve 0.0.0.0 53
bg udp6 "$NODE" "$PY" "$DIR/h.py" udpserve :: 53
wait_until 5 sh -c "ip netns exec $NODE ss -Hltn 'sport = :15001' | grep -c . | grep -qx 2" &&
	wait_until 5 sh -c "ip netns exec $NODE ss -Hlun 'sport = :53' | grep -c . | grep -qx 2" &&
	wait_until 5 sh -c "ip netns exec $NODE ss -Hltn 'sport = :12345' | grep -q ." ||
	{ cat "$DIR"/*.log; topo_die "helpers did not start"; }

conn() { local ns=$1; shift; ip netns exec "$ns" "$PY" "$DIR/h.py" connect "$@"; }
ask() { local ns=$1; shift; ip netns exec "$ns" "$PY" "$DIR/h.py" udpask "$@"; }
seen() { wait_until 3 grep -qF -- "$2" "$DIR/$1.log" || { echo "no \"$2\" in $1.log:"; cat "$DIR/$1.log"; return 1; }; }
count() { grep -cF -- "$2" "$DIR/$1.log"; }
queued() { count drv "queued"; }

# captured TCP: a connection reaches the TPROXY listener, and the accepted
# socket's name is the destination the client dialled.
captured() { # captured NS LISTENER ADDR PORT PEER
	local before; before=$(count "$2" "local=$3:$4")
	conn "$1" "${3//[\[\]]/}" "$4" || return 1
	wait_until 3 sh -c "[ \$(grep -cF -- 'local=$3:$4 peer=$5' '$DIR/$2.log') -gt 0 ] && [ \$(grep -cF -- 'local=$3:$4' '$DIR/$2.log') -gt $before ]" ||
		{ echo "not seen by $2:"; cat "$DIR/$2.log"; return 1; }
}

# a DNS query reaches the queue listener exactly `want` times and the UDP
# server answers (the listener accepts every packet unchanged).
dns_queued() { # dns_queued NS ADDR WANT [MARK]
	local before; before=$(queued)
	ask "$1" "$2" 53 ${4:+"$4"} || return 1
	if [ "$3" -gt 0 ]; then
		wait_until 3 sh -c "[ \$(grep -c queued '$DIR/drv.log') -ge $((before + $3)) ]" || true
	fi
	local got=$(( $(queued) - before ))
	[ "$got" -eq "$3" ] || { echo "queued $got times, want $3"; cat "$DIR/drv.log"
		n nft list ruleset 2>/dev/null | grep queue; n cat /proc/net/netfilter/nfnetlink_queue; return 1; }
}

# ---- 1. install with everything on; the queue read by the driver ----
check "install (probe picks a queue variant)" driver_start drv --fake6 fd00:e3::/64 \
	--capture 10.96.0.0/12 --queues 2 --listen
variant=$(sed -n 's/^ready //p' "$DIR/drv.log")
echo "     | queue variant on this kernel: $variant"
check "table inet edgemesh with prerouting/output/output_dns, and raw chains for --capture" \
	sh -c "ip netns exec $NODE nft list table inet edgemesh | grep -c 'hook' | grep -qx 5 &&
	       ip netns exec $NODE nft list chain inet edgemesh prerouting_raw | grep -q 'ip daddr 10.96.0.0/12 notrack'"
check "ip rule fwmark 0x1e2 lookup 482 (v4 and v6)" \
	sh -c "ip netns exec $NODE ip rule | grep -q 'fwmark 0x1e2 lookup 482' && ip netns exec $NODE ip -6 rule | grep -q 'fwmark 0x1e2 lookup 482'"
main_routes() {
	# `ip -6 route show table main` hides local routes: filter `table all`
	n ip route show table main | grep -q '^local 198.18.0.0/16 dev lo .*src 127.0.0.1' &&
		n ip -6 route show table all | grep -v ' table ' | grep -q '^local fd00:e3::/64 dev lo' ||
		{ n ip route show table all; n ip -6 route show table all; return 1; }
}
check "main-table local route for the fake ranges" main_routes

# (a) host process, no default route: the main-table route `local
# 198.18.0.0/16 dev lo src 127.0.0.1` gives connect() a route and a source
check "(a) host -> 198.18.0.10:12345 captured, original dst seen" \
	captured "$NODE" tl4 198.18.0.10 12345 127.0.0.1
check "(a) host -> [fd00:e3::10]:12345 captured (IPv6)" \
	captured "$NODE" tl6 "[fd00:e3::10]" 12345 "[fd77::1]"
# (b) pod through the veth
check "(b) pod -> 198.18.0.10:12345 captured" \
	captured "$POD" tl4 198.18.0.10 12345 10.77.0.2
check "(b) pod -> [fd00:e3::10]:12345 captured (IPv6)" \
	captured "$POD" tl6 "[fd00:e3::10]" 12345 "[fd77::2]"
check "(b) pod -> 10.96.0.10:443 captured (extra CIDR)" \
	captured "$POD" tl4 10.96.0.10 443 10.77.0.2
# (f) the daemon's own sockets
check "(f) bypass-marked host socket -> 198.18.0.10:12345 not captured" sh -c "
	before=\$(grep -c . '$DIR/tl4.log')
	ip netns exec $NODE $PY $DIR/h.py connect 198.18.0.10 12345 0x1e3 || exit 1
	grep -q 'plain local=198.18.0.10:12345' '$DIR/plain.log' || { sleep 0.3; grep -q 'plain local=198.18.0.10:12345' '$DIR/plain.log'; } || exit 1
	[ \$(grep -c . '$DIR/tl4.log') -eq \$before ]"
check "(a) plain server saw no captured connection" \
	sh -c "[ \$(grep -c . '$DIR/plain.log') -eq 1 ]"

# (c) DNS to the queue
check "(c) host query -> 10.77.0.1:53 queued once, answered" dns_queued "$NODE" 10.77.0.1 1
check "(c) host query -> 127.0.0.1:53 queued once (not again on lo)" dns_queued "$NODE" 127.0.0.1 1
check "(c) pod query -> 10.77.0.1:53 queued once, answered" dns_queued "$POD" 10.77.0.1 1
check "(c) pod query -> [fd77::1]:53 queued (IPv6)" dns_queued "$POD" fd77::1 1
check "(c) bypass-marked host query not queued" dns_queued "$NODE" 10.77.0.1 0 0x1e3
check "(c) both fanout queues bound" \
	sh -c "n=\$(ip netns exec $NODE cat /proc/net/netfilter/nfnetlink_queue | awk '\$1==0||\$1==1' | wc -l); [ \$n -eq 2 ]"

# (d) removal leaves the namespace as it was
check "(d) driver exits 0 on SIGTERM" stop drv
state >"$DIR/after"
check "(d) ruleset, rules and routes as before" diff -u "$DIR/before" "$DIR/after"

# (c) fail-open: queue rules without a program on the queue
check "(c) install without a queue listener" driver_start drv --queues 2
check "(c) bypass: host query answered with no listener" ask "$NODE" 10.77.0.1 53
check "(c) bypass: pod query answered with no listener" ask "$POD" 10.77.0.1 53
queue_pkts() { # queue_pkts CHAIN: packets counted by the queue rule of the inet table
	n nft list chain inet edgemesh "$1" 2>/dev/null | grep queue | grep -o 'packets [0-9]*' | cut -d' ' -f2
}
check "(c) the queue rules saw both (rule counters)" sh -c "
	[ '$(queue_pkts output_dns)' -ge 1 ] && [ '$(queue_pkts prerouting)' -ge 1 ]"
check "(c) no queue bound meanwhile" \
	sh -c "! ip netns exec $NODE cat /proc/net/netfilter/nfnetlink_queue | grep -q ."
check "(d) second run removed cleanly" stop drv
state >"$DIR/after"
check "(d) state as before after the second run" diff -u "$DIR/before" "$DIR/after"

# (e) a crashed driver leaves its table; the next start replaces it
driver_start crash --fake6 fd00:e3::/64 && kill -9 "$(cat "$DIR/crash.pid")" && wait "$(cat "$DIR/crash.pid")" 2>/dev/null
rm -f "$DIR/crash.pid"
check "(e) stale table and rule left by the crash" \
	sh -c "ip netns exec $NODE nft list table inet edgemesh >/dev/null && ip netns exec $NODE ip rule | grep -q 'lookup 482'"
check "(e) restart over the stale state" driver_start drv --fake6 fd00:e3::/64
check "(e) exactly one table, one rule per family after restart" sh -c "
	[ \$(ip netns exec $NODE nft list tables | grep -c edgemesh) -eq 1 ] &&
	[ \$(ip netns exec $NODE ip rule | grep -c 'lookup 482') -eq 1 ] &&
	[ \$(ip netns exec $NODE ip -6 rule | grep -c 'lookup 482') -eq 1 ]"
check "(e) capture works after restart" captured "$POD" tl4 198.18.0.10 12345 10.77.0.2
check "(e) removal after restart" stop drv
state >"$DIR/after"
check "(e) state as before" diff -u "$DIR/before" "$DIR/after"

# why the main-table route: without it (and without a default route) a host
# process cannot even send the SYN, while pods are still captured
check "--no-main-route: install" driver_start drv --no-main-route
check "--no-main-route: host connect() fails with ENETUNREACH" sh -c "
	ip netns exec $NODE $PY $DIR/h.py connect 198.18.0.10 12345 2>&1 | grep -q 'Network is unreachable'"
check "--no-main-route: pod still captured" captured "$POD" tl4 198.18.0.10 12345 10.77.0.2
check "--no-main-route: removal" stop drv
state >"$DIR/after"
check "--no-main-route: state as before" diff -u "$DIR/before" "$DIR/after"

# capture scope: the pod is a client by its interface or its source range;
# with neither matching, its connections to the capture ranges are dropped
# (counted) and its DNS queries are not queued
check "scope: install with --client-cidr 10.77.0.0/24" driver_start drv --client-cidr 10.77.0.0/24 --listen
check "scope: pod inside the client range captured" captured "$POD" tl4 198.18.0.10 12345 10.77.0.2
check "scope: pod query queued" dns_queued "$POD" 10.77.0.1 1
check "scope: removal" stop drv
check "scope: install with --client-iface cni0 (not the pod's)" driver_start drv --client-iface cni0 --listen
check "scope: pod outside the scope: connection dropped, not captured" sh -c "
	! ip netns exec $POD $PY $DIR/h.py connect 198.18.0.10 12345 &&
	ip netns exec $NODE nft list chain inet edgemesh refuse | grep drop | grep -q 'packets [1-9]'"
check "scope: pod outside the scope: query answered by the server, not queued" dns_queued "$POD" 10.77.0.1 0
check "scope: host still captured" captured "$NODE" tl4 198.18.0.10 12345 127.0.0.1
check "scope: removal" stop drv
check "scope: install with --client-iface v* (a prefix)" driver_start drv --client-iface 'v*'
check "scope: pod on vn captured through the prefix" captured "$POD" tl4 198.18.0.10 12345 10.77.0.2
check "scope: removal" stop drv
state >"$DIR/after"
check "scope: state as before" diff -u "$DIR/before" "$DIR/after"

# forced variants: the ip/ip6 tables, and a refused variant leaves nothing
check "compat-ip variant: install" driver_start drv --variant compat-ip --listen
check "compat-ip variant: host query queued" dns_queued "$NODE" 10.77.0.1 1
check "compat-ip variant: pod query queued" dns_queued "$POD" 10.77.0.1 1
check "compat-ip variant: removal" stop drv
state >"$DIR/after"
check "compat-ip variant: state as before" diff -u "$DIR/before" "$DIR/after"
if [ "$variant" != native ]; then
	check "native variant refused by this kernel, driver exits 1" sh -c \
		"! ip netns exec $NODE $NF_DRIVER --variant native </dev/null"
	state >"$DIR/after"
	check "refused install leaves the state as before (atomic)" diff -u "$DIR/before" "$DIR/after"
else
	# A kernel with the native queue refuses no variant: nothing to refuse.
	skipped=$((skipped + 2))
	echo "skip native variant refused / refused install atomic: this kernel has the native queue"
fi
check "no DNS queueing (--queues 0): no output_dns chain" sh -c "
	ip netns exec $NODE $NF_DRIVER --queues 0 >'$DIR/q0.log' 2>&1 & pid=\$!
	for i in \$(seq 100); do grep -q ready '$DIR/q0.log' && break; sleep 0.05; done
	ip netns exec $NODE nft list table inet edgemesh | grep -q output_dns; has=\$?
	kill \$pid; wait \$pid || exit 1
	[ \$has -ne 0 ] && grep -q 'ready none' '$DIR/q0.log'"
state >"$DIR/after"
check "no DNS queueing: state as before" diff -u "$DIR/before" "$DIR/after"

[ "$skipped" = 0 ] || echo "# $skipped skipped"
topo_result
