#!/usr/bin/env bash
# security.sh — issue 10: only pods and host processes reach services, only
# real backends are dialed, DNS answers go only where a real query came from.
# Topology: lib/topology.sh (walkthrough), the daemon on edge-node-a only:
#
#   pod-a 10.244.1.2 --(pa0, client interface)-- edge-node-a 10.77.0.1 --(LAN)-- 10.77.0.2 edge-node-b
#                                                 edgemesh-tproxy                  "LAN neighbour":
#                                                 listener *:10550 (stands for     routes 198.18.0.0/16
#                                                 the MetaServer / metadata)       via edge-node-a
#   dns 10.53.0.2 (dnsmasq) behind edge-node-a; nginx in pod-b behind edge-node-b.
#
# Checks: a LAN neighbour routing the fake range via the node is dropped
# while host and pod-a still connect; its DNS queries are not answered;
# spoofed-source queries (127.0.0.1 / a node address, sent from the LAN)
# deliver nothing to the node's sockets, with the daemon's ruleset and with
# a hand-made one without reverse-path check (the daemon's own check);
# Endpoints at loopback, link-local (169.254.169.254), the fake range,
# unspecified, multicast and broadcast are never dialed and are counted; a
# name with a newline is refused and reaches neither the state file nor the
# log as a line of its own; the daemon started as plain root keeps only
# CAP_NET_ADMIN, with no_new_privs; `nft flush ruleset` and a deleted policy
# rule are repaired within a second; a spoofed 127.0.0.1 query from a pod
# (a client interface) is stopped by the reverse-path rule; `--cleanup`
# removes what a SIGKILLed daemon left; a plugin in a world-writable
# directory is refused.
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/security.sh   (root)
# Last line: `N passed, N failed`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
. "$here/lib/topology.sh"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl

topo_up
# The LAN neighbour sends the fake range to edge-node-a.
nb ip route add 198.18.0.0/16 via 10.77.0.1
# 169.254.169.254 on edge-node-a, as a cloud metadata address would be.
na ip addr add 169.254.169.254/32 dev lo

# A selector-less service whose Endpoints name only forbidden addresses.
cat > "$TOPO_DIR/manifests/meta.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: meta, namespace: default}
spec:
  clusterIP: None
  ports: [{name: m, port: 10550, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: meta, namespace: default}
subsets:
- addresses: [{ip: 127.0.0.1}, {ip: 169.254.169.254}, {ip: 198.18.0.9}, {ip: 0.0.0.0},
              {ip: 224.0.0.1}, {ip: 255.255.255.255}, {ip: 127.0.0.2}]
  ports: [{name: m, port: 10550, protocol: TCP}]
EOF
# A service whose name carries a newline and a forged log priority.
printf '%s\n' '{"apiVersion":"v1","kind":"Service","metadata":{"name":"evil\n<3>forged 198.18.0.1","namespace":"default"},"spec":{"clusterIP":"None","selector":{"app":"nginx"},"ports":[{"name":"p","port":80}]}}' \
	> "$TOPO_DIR/manifests/evil.json"

# The node-local service that must never be reached through the mesh.
na /usr/bin/python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 10550)); s.listen(64)
while True:
    c, peer = s.accept()
    print("accepted local=%s:%d peer=%s:%d" % (c.getsockname() + peer), flush=True); c.close()
' > "$TOPO_DIR/local10550.log" 2>&1 &
echo $! > "$TOPO_DIR/local10550.pid"
wait_until 5 listening na -ltn 10550

snapshot_net() { na nft list ruleset; na ip -4 rule; na ip -6 rule; na ip -4 route show table all; na ip -6 route show table all; }
before=$(snapshot_net)
start_daemon a
check "daemon on edge-node-a answers DNS" wait_until 10 daemon_answers a
FAKE=$(na dig +short +time=2 +tries=1 @10.53.0.2 "$EM_FQDN" A)
META=$(na dig +short +time=2 +tries=1 @10.53.0.2 meta.default.svc.cluster.local A)
echo "# nginx-svc $FAKE, meta $META"

curl_fake() { "$@" curl -sS --max-time 3 "http://$FAKE:12345/" | grep -q 'Welcome to nginx!'; }

# ---- 0. least privilege -------------------------------------------------------
caps_kept() { # only CAP_NET_ADMIN (12), no_new_privs
	local st=/proc/$(daemon_pid a)/status
	grep -E '^(Cap|NoNewPrivs)' "$st"
	grep -q '^CapEff:[[:space:]]*0000000000001000$' "$st" &&
	grep -q '^CapPrm:[[:space:]]*0000000000001000$' "$st" &&
	grep -q '^CapInh:[[:space:]]*0000000000000000$' "$st" &&
	grep -q '^CapBnd:[[:space:]]*0000000000001000$' "$st" &&
	grep -q '^CapAmb:[[:space:]]*0000000000000000$' "$st" &&
	grep -q '^NoNewPrivs:[[:space:]]*1$' "$st"
}
check "started as plain root: /proc/PID/status shows only the kept capabilities" caps_kept

# ---- 1. capture scope ----------------------------------------------------------
check "host of edge-node-a reaches the service" curl_fake na
check "pod-a reaches the service" curl_fake npa
check "LAN neighbour routing the fake range via the node is refused" sh -c "! ip netns exec $NS_B curl -sS --max-time 3 http://$FAKE:12345/"
check "... counted by the ruleset's drop rule" sh -c \
	"ip netns exec $NS_A nft list chain inet edgemesh refuse | grep drop | grep -q 'packets [1-9]'"
check "LAN neighbour's DNS query (via the node) is not answered with a fake IP" sh -c \
	"! ip netns exec $NS_B dig +short +time=2 +tries=1 @10.53.0.2 $EM_FQDN A | grep -q '^198\\.18\\.'"
check "pod-a's DNS query is still answered" sh -c \
	"npa() { ip netns exec $NS_PA \"\$@\"; }; npa dig +short +time=2 +tries=1 @10.53.0.2 $EM_FQDN A | grep -q '^198\\.18\\.'"

# ---- 1b. the ruleset stays true ------------------------------------------------
table_back() { na nft list table inet edgemesh >/dev/null 2>&1 && na ip rule | grep -q 'lookup 482' &&
	na ip route show table main | grep -q '^local 198.18.0.0/16'; }
t0=$(date +%s%N)
na nft flush ruleset
check "nft flush ruleset: table, rule and fake-range route back within 1 s" wait_until 1 table_back
echo "# table back after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
check "... host reaches the service again" curl_fake na
check "... pod-a too, the LAN neighbour still not" sh -c \
	"ip netns exec $NS_PA curl -sS --max-time 3 http://$FAKE:12345/ | grep -q 'Welcome to nginx!' &&
	 ! ip netns exec $NS_B curl -sS --max-time 2 http://$FAKE:12345/"
check "... logged once" sh -c "[ \$(grep -c 'reinstalled in' '$TOPO_DIR/daemon-a.log') = 1 ]"
na ip rule del fwmark 0x1e2 lookup 482
check "a deleted policy rule is put back within 1 s" wait_until 1 sh -c "ip netns exec $NS_A ip rule | grep -q 'lookup 482'"
check "... and host connections work" curl_fake na

# ---- 2. spoofed DNS sources ------------------------------------------------------
cat > "$TOPO_DIR/spoof.py" <<'EOF'
import socket, struct, sys
src, sport, dst, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
q = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0' + struct.pack('!HH', 1, 1)
udp = struct.pack('!HHHH', sport, 53, 8 + len(q), 0) + q
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(3):
    s.sendto(ip + udp, (dst, 0))
EOF
cat > "$TOPO_DIR/catch.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(float(sys.argv[3]))
try:
    d, peer = s.recvfrom(2048); print("received %d bytes from %s" % (len(d), peer)); sys.exit(1)
except socket.timeout:
    print("nothing received")
EOF
# spoofed SRC: a socket of edge-node-a at SRC:PORT must receive nothing
spoofed_nothing() { # SRC PORT
	na /usr/bin/python3 "$TOPO_DIR/catch.py" "$1" "$2" 2.5 & local pid=$!
	sleep 0.3
	nb /usr/bin/python3 "$TOPO_DIR/spoof.py" "$1" "$2" 10.53.0.2 "$EM_FQDN"
	wait $pid
}
check "spoofed 127.0.0.1 query from the LAN: nothing delivered on the node" spoofed_nothing 127.0.0.1 5353
check "spoofed node-address query from the LAN: nothing delivered" spoofed_nothing 10.53.0.1 5354
# From pod-a (a client interface): only the reverse-path check stands between
# a spoofed 127.0.0.1 and the queue.
spoofed_from_pod() {
	na /usr/bin/python3 "$TOPO_DIR/catch.py" 127.0.0.1 5356 2.5 & local pid=$!
	sleep 0.3
	npa /usr/bin/python3 "$TOPO_DIR/spoof.py" 127.0.0.1 5356 10.53.0.2 "$EM_FQDN"
	wait $pid || return 1
	na nft list chain inet edgemesh scope | grep 'fib saddr' | grep -q 'packets [1-9]' ||
		{ na nft list chain inet edgemesh scope; return 1; }
}
check "spoofed 127.0.0.1 query from a pod: refused by the reverse-path rule" spoofed_from_pod

# ---- 3. backends -----------------------------------------------------------------
dial_meta() { # RUN: six tries (one per backend in turn); the local listener sees none
	local i
	for i in 1 2 3 4 5 6; do "$@" curl -sS --max-time 2 "http://$META:10550/" >/dev/null 2>&1; done
	sleep 0.3
	if grep -q accepted "$TOPO_DIR/local10550.log"; then cat "$TOPO_DIR/local10550.log"; return 1; fi
}
check "Endpoints at 127.0.0.1/169.254.169.254/fake range/...: never dialed (pod)" dial_meta npa
check "... never dialed (host)" dial_meta na
stats() { kill -USR1 "$(daemon_pid a)"; sleep 0.3; }
stats
check "rejected backend addresses counted" sh -c \
	"grep 'registry:' '$TOPO_DIR/daemon-a.log' | tail -n 1 | grep -Eq '[1-9][0-9]* rejected backend addresses'"
check "... and logged" grep -q 'backend address 169.254.169.254' "$TOPO_DIR/daemon-a.log"

# ---- 4. names --------------------------------------------------------------------
check "a name with a newline is refused" grep -q 'evil.*not a valid' "$TOPO_DIR/daemon-a.log"
check "... no line of the log starts with the forged priority" sh -c \
	"! grep -q '^<3>forged' '$TOPO_DIR/daemon-a.log'"
check "... and the fake-IP state file holds only valid names" sh -c \
	"f='$TOPO_DIR/state-a/fake-ips'; cat \"\$f\"; [ -s \"\$f\" ] && ! grep -Evq '^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])? ' \"\$f\""
stop_daemon a

# ---- 5. --cleanup (the unit's ExecStopPost) after a crash -------------------------
start_daemon a --fake-ipv6-range fd00:e3::/64
check "daemon with an IPv6 range up" wait_until 10 daemon_answers a
stop_daemon a KILL
check "SIGKILL leaves the table and the rule behind" sh -c "ip netns exec $NS_A nft list table inet edgemesh >/dev/null && ip netns exec $NS_A ip rule | grep -q 'lookup 482'"
check "--cleanup exits 0" na "$EM_BIN" --fake-ipv6-range fd00:e3::/64 --cleanup
check "... and removes table, rules and routes" diff <(echo "$before") <(snapshot_net)
check "--cleanup again: nothing left to remove is no error" na "$EM_BIN" --fake-ipv6-range fd00:e3::/64 --cleanup

# ---- 6. the daemon's own check: a ruleset without reverse-path check --------------
na iptables-nft -t mangle -A PREROUTING ! -i lo -p udp --dport 53 -j NFQUEUE --queue-num 0 --queue-bypass
start_daemon a --manage-rules=no
check "daemon without its ruleset is up" wait_until 10 sh -c "grep -q 'ready in' '$TOPO_DIR/daemon-a.log'"
check "hand-made queue rule, spoofed 127.0.0.1 query: nothing delivered" spoofed_nothing 127.0.0.1 5355
stats
check "... counted as spoofed" sh -c "grep 'dns:' '$TOPO_DIR/daemon-a.log' | tail -n 1 | grep -q 'spoofed=[1-9]'"
stop_daemon a
na iptables-nft -t mangle -F PREROUTING

# ---- 7. plugins ---------------------------------------------------------------------
PLUGIN=${EM_LB_PLUGIN:-$(dirname "$EM_BIN")/tests/em-lb-test-plugin.so}
if [ -f "$PLUGIN" ]; then
	mkdir -p "$TOPO_DIR/ww" && chmod 0777 "$TOPO_DIR/ww" && cp "$PLUGIN" "$TOPO_DIR/ww/p.so"
	refused_plugin() {
		local out rc=0
		out=$(na "$EM_BIN" --config /dev/null --source "file:$TOPO_DIR/manifests" \
			--state-dir "$TOPO_DIR/state-p" --manage-rules=no --dns-host=no --dns-pods=no \
			--lb-plugin "$TOPO_DIR/ww/p.so" 2>&1) || rc=$?
		echo "exit $rc: $out" | tail -n 3
		[ "$rc" != 0 ] && printf '%s' "$out" | grep -q 'group- or world-writable'
	}
	check "a plugin in a world-writable directory is refused before dlopen" refused_plugin
fi

check_log_errors "$TOPO_DIR/daemon-a.log"
[ "$failed" = 0 ] || { echo "# daemon log (edge-node-a):"; tail -n 30 "$TOPO_DIR/daemon-a.log"; }
topo_result
