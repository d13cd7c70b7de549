#!/usr/bin/env bash
# daemon-options.sh — options of the daemon end to end, each shown through
# real clients: --capture-cidr (a ClusterIP), an IPv6 backend, --lb-plugin,
# --queues=2, --dns-host=no, --dns-pods=no, start-up failure rollback, and
# --manage-rules=no with nft/edgemesh.nft loaded by hand (and compared with
# the ruleset the daemon installs, so that the file cannot drift).
#
# Topology: netns-tests/lib/topology.sh, plus IPv6 between the nodes and a
# second backend in pod-b:
#
#   pod-a 10.244.1.2            edge-node-a ========= edge-node-b        pod-b 10.244.2.2 nginx :80
#     (client)                  edgemesh-tproxy  fd77::1/::2             10.244.2.3 http.server :80
#                               10.53.0.2 dnsmasq                        fd44:2::2 http.server :8080
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/daemon-options.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
PLUGIN=${EM_LB_PLUGIN:-$(dirname "$EM_BIN")/tests/em-lb-test-plugin.so}
NFT_FILE=$here/../nft/edgemesh.nft
. "$here/lib/topology.sh"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl

snapshot_net() { # RUN: ruleset, rules and routes, for before/after diffs
	$1 nft list ruleset; $1 ip -4 rule; $1 ip -6 rule
	$1 ip -4 route show table all; $1 ip -6 route show table all
}

svc_fqdn() { echo "$1.default.svc.cluster.local"; }
dig_a() { local run=$1 name=$2; $run dig +short +time=2 +tries=1 @10.53.0.2 "$name" A; }
answered() { dig_a "$1" "$(svc_fqdn "$2")" | grep -Eqx '198\.18\.[0-9]+\.[0-9]+'; }
# refused_by_resolver RUN SVC: our rewriter did not answer; the real resolver
# (dnsmasq, --no-resolv) did, with REFUSED: positive evidence, not a timeout.
refused_by_resolver() {
	local out; out=$($1 dig +time=2 +tries=1 @10.53.0.2 "$(svc_fqdn "$2")" A) || return 1
	grep -q 'status: REFUSED' <<<"$out" && ! grep -q '198\.18\.' <<<"$out"
}
body() { local run=$1; shift; $run curl -sS --max-time 5 "$@"; }
body_has() { # RUN URL TEXT
	local b; b=$(body "$1" "$2") || return 1; echo "$b" | head -n 3; [[ $b == *"$3"* ]]
}
# backends_10 RUN URL: ten requests, all answered; prints the distinct
# backends that answered, one a line.
backends_10() {
	local i b out=
	for i in $(seq 10); do
		b=$(body "$1" "$2") || { echo "request $i failed"; return 1; }
		out+=$(echo "$b" | grep -o 'backend-[a-z0-9]*\|Welcome to nginx!' | head -n1)$'\n'
	done
	printf '%s' "$out" | sort -u
}
# same_backend_10 / both_backends_10 RUN URL: one backend, or two, answered.
same_backend_10() { local s; s=$(backends_10 "$@") || { echo "$s"; return 1; }; echo "seen: $s"; [ "$(grep -c . <<<"$s")" = 1 ]; }
both_backends_10() { local s; s=$(backends_10 "$@") || { echo "$s"; return 1; }; echo "seen: $s"; [ "$(grep -c . <<<"$s")" = 2 ]; }
daemon_running() { kill -0 "$(daemon_pid a)"; }

extra_manifests() {
	cat > "$TOPO_DIR/manifests/extra.yaml" <<'EOF'
# A ClusterIP service, captured only with --capture-cidr.
apiVersion: v1
kind: Service
metadata: {name: cip-svc, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: nginx}
  ports: [{name: web, port: 8088, targetPort: 80}]
---
# An IPv6 backend behind a fake IPv4 address.
apiVersion: v1
kind: Service
metadata: {name: v6-svc, namespace: default}
spec:
  ports: [{name: web, port: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: v6-svc, namespace: default}
subsets:
- addresses: [{ip: "fd44:2::2"}]
  ports: [{name: web, port: 8080}]
---
# Two backends; the plugin strategy by annotation (first-backend: always the
# first usable one), and the same backends with the default round robin.
apiVersion: v1
kind: Service
metadata:
  name: plug-svc
  namespace: default
  annotations: {edgemesh.kubeedge.io/lb-strategy: first-backend}
spec:
  ports: [{name: web, port: 8081}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: plug-svc, namespace: default}
subsets:
- addresses: [{ip: 10.244.2.2}, {ip: 10.244.2.3}]
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: rr-svc, namespace: default}
spec:
  ports: [{name: web, port: 8082}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: rr-svc, namespace: default}
subsets:
- addresses: [{ip: 10.244.2.2}, {ip: 10.244.2.3}]
  ports: [{name: web, port: 80}]
EOF
}

extra_network() {
	ip -n "$NS_A" addr add fd77::1/64 dev ab0 nodad
	ip -n "$NS_B" addr add fd77::2/64 dev ba0 nodad
	ip -n "$NS_B" addr add fd44:2::1/64 dev pb0 nodad
	ip -n "$NS_PB" addr add fd44:2::2/64 dev eth0 nodad
	ip -n "$NS_PB" -6 route add default via fd44:2::1
	ip -n "$NS_A" -6 route add fd44:2::/64 via fd77::2
	nb sysctl -qw net.ipv6.conf.all.forwarding=1
	# The ClusterIP range is routed as on a real node (the daemon captures
	# it, it does not route it: without a route, a host connect() fails
	# with ENETUNREACH before netfilter sees it).
	ip -n "$NS_A" route add 10.96.0.0/12 via 10.77.0.2
	ip -n "$NS_PB" addr add 10.244.2.3/24 dev eth0
	local d
	for d in b2 v6; do mkdir -p "$TOPO_DIR/$d"; echo "backend-$d" > "$TOPO_DIR/$d/index.html"; done
	npb /usr/bin/python3 -m http.server --bind 10.244.2.3 --directory "$TOPO_DIR/b2" 80 >/dev/null 2>&1 &
	echo $! > "$TOPO_DIR/http-b2.pid"
	npb /usr/bin/python3 -m http.server --bind fd44:2::2 --directory "$TOPO_DIR/v6" 8080 >/dev/null 2>&1 &
	echo $! > "$TOPO_DIR/http-v6.pid"
	# (http.server listens only after a reverse lookup of its address:
	# poll with a request, not with ss)
	wait_until 15 nb curl -sf --max-time 1 -o /dev/null http://10.244.2.3/ &&
		wait_until 15 nb curl -sf --max-time 1 -o /dev/null "http://[fd44:2::2]:8080/" ||
		topo_die "extra backends did not start"
}

# queue_ids_used RUN: the queue numbers whose id_sequence moved (the kernel's
# per-namespace /proc/net/netfilter/nfnetlink_queue: number, portid, total,
# mode, range, dropped, user_dropped, id_sequence).
queue_ids_used() { $1 awk '$8 > 0 {print $1}' /proc/net/netfilter/nfnetlink_queue | sort -n | tr '\n' ' '; }
many_queries() { # RUN: 40 queries from 40 source ports (fanout hashes on them)
	local i
	for i in $(seq 40); do dig_a "$1" "$(svc_fqdn nginx-svc)" >/dev/null; done
}

topo_up
extra_network
extra_manifests
before_a=$(snapshot_net na)

# ---- capture CIDR, IPv6 backend, plugin, two queues ------------------------------
start_daemon a --capture-cidr 10.96.0.0/16 --lb-plugin "$PLUGIN" --queues 2
check "daemon up (capture CIDR, plugin, 2 queues)" wait_until 10 daemon_answers a
check "--capture-cidr: host reaches the ClusterIP 10.96.0.10:8088" \
	body_has na http://10.96.0.10:8088/ 'Welcome to nginx!'
check "--capture-cidr: pod reaches the ClusterIP" body_has npa http://10.96.0.10:8088/ 'Welcome to nginx!'
check "IPv6 backend reached through a fake IPv4 address (host)" \
	body_has na "http://$(svc_fqdn v6-svc):8080/" backend-v6
check "IPv6 backend reached through a fake IPv4 address (pod)" \
	body_has npa "http://$(svc_fqdn v6-svc):8080/" backend-v6
check "--lb-plugin: the plugin's strategy (first-backend) sends every request to one backend" \
	same_backend_10 na "http://$(svc_fqdn plug-svc):8081/"
check "... while round robin over the same two backends uses both" \
	both_backends_10 na "http://$(svc_fqdn rr-svc):8082/"
check "--lb-plugin: loaded (logged)" grep -q "loaded strategy 'first-backend'" "$TOPO_DIR/daemon-a.log"
many_queries na
check "--queues 2: both queues carried queries" sh -c "[ \"\$(ip netns exec $NS_A awk '\$8 > 0 {print \$1}' /proc/net/netfilter/nfnetlink_queue | sort -n | tr '\n' ' ')\" = '0 1 ' ]"
echo "# queues that saw packets: $(queue_ids_used na)"
stop_daemon a
check "state as before after the daemon stopped" diff <(echo "$before_a") <(snapshot_net na)
check_log_errors "$TOPO_DIR/daemon-a.log"

# ---- --dns-host=no / --dns-pods=no ---------------------------------------------
start_daemon a --dns-host=no
check "--dns-host=no: pod queries answered" wait_until 10 answered npa nginx-svc
check "--dns-host=no: host queries reach the real resolver (REFUSED)" refused_by_resolver na nginx-svc
check "--dns-host=no: the daemon runs" daemon_running
stop_daemon a
start_daemon a --dns-pods=no
check "--dns-pods=no: host queries answered" wait_until 10 answered na nginx-svc
check "--dns-pods=no: pod queries reach the real resolver (REFUSED)" refused_by_resolver npa nginx-svc
check "--dns-pods=no: the daemon runs" daemon_running
stop_daemon a
check "state as before" diff <(echo "$before_a") <(snapshot_net na)

# ---- start-up failure: the listener port is taken -------------------------------
ip netns exec "$NS_A" /usr/bin/python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 15001)); s.listen(1); time.sleep(60)' &
echo $! > "$TOPO_DIR/squatter.pid"
wait_until 5 listening na -ltn 15001
rc=0
timeout 20 ip netns exec "$NS_A" "$EM_BIN" --source "file:$TOPO_DIR/manifests" \
	--state-dir "$TOPO_DIR/state-a" >"$TOPO_DIR/daemon-fail.log" 2>&1 || rc=$?
check "port 15001 taken: the daemon exits non-zero (got $rc), not killed by timeout" \
	sh -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "... and says why (the port)" grep -q '15001' "$TOPO_DIR/daemon-fail.log"
check "... and leaves nothing installed (ruleset, rules, routes as before)" \
	diff <(echo "$before_a") <(snapshot_net na)
kill "$(cat "$TOPO_DIR/squatter.pid")"; wait "$(cat "$TOPO_DIR/squatter.pid")" 2>/dev/null
rm -f "$TOPO_DIR/squatter.pid"

# ---- --manage-rules=no with nft/edgemesh.nft --------------------------------------
# The table the daemon installs, against the file loaded by hand: the same
# rules (counters and the queue statement aside; this kernel lacks the
# native queue expression the file uses, see the file's own comment).
norm_table() { # RUN: `inet edgemesh` without counters, handles and queue rules
	$1 nft list table inet edgemesh 2>/dev/null | sed -e 's/counter packets [0-9]* bytes [0-9]* //' \
		-e 's/ # handle [0-9]*//' | grep -v 'queue\|NFQUEUE\|xt target\|^\s*$'
}
start_daemon a
check "daemon up (managing its rules)" wait_until 10 daemon_answers a
norm_table na > "$TOPO_DIR/table-daemon"
stop_daemon a
# The pod's interface as the client interface, as start_daemon gives it
# (--client-iface pa0), the one define an admin adapts.
client_ifaces='s/^define EM_CLIENT_IFACES = .*/define EM_CLIENT_IFACES = { "pa0" }/'
sed -e '/queue num/d' -e "$client_ifaces" "$NFT_FILE" > "$TOPO_DIR/edgemesh-noqueue.nft"
if nft -c -f "$NFT_FILE" >/dev/null 2>&1; then
	echo "# this kernel has the native queue: loading the file unchanged"
	sed -e "$client_ifaces" "$NFT_FILE" > "$TOPO_DIR/edgemesh-noqueue.nft"
fi
check "nft/edgemesh.nft loads (nft -f, queue rules per the file's comment)" \
	na nft -f "$TOPO_DIR/edgemesh-noqueue.nft"
norm_table na > "$TOPO_DIR/table-file"
check "the file's table matches the daemon's (no drift)" \
	diff -u "$TOPO_DIR/table-daemon" "$TOPO_DIR/table-file"
# The rest of the manual set-up, as the file's comment says.
na ip rule add fwmark 0x1e2 lookup 482 priority 482
na ip route add local 0.0.0.0/0 dev lo table 482
na ip route add local 198.18.0.0/16 dev lo src 127.0.0.1 table main
na iptables-nft -t mangle -A PREROUTING ! -i lo -p udp --dport 53 -m mark ! --mark 0x1e3 \
	-j NFQUEUE --queue-num 0 --queue-bypass
na iptables-nft -t mangle -A OUTPUT -p udp --dport 53 -m mark ! --mark 0x1e3 \
	-j NFQUEUE --queue-num 0 --queue-bypass
no_counters() { sed 's/counter packets [0-9]* bytes [0-9]*/counter/'; }
manual=$(snapshot_net na | no_counters)
start_daemon a --manage-rules=no
check "--manage-rules=no: answers DNS through the hand-made rules" wait_until 10 daemon_answers a
check "--manage-rules=no: host curl through the file's capture" \
	body_has na "http://$EM_FQDN:12345/" 'Welcome to nginx!'
check "--manage-rules=no: pod curl" body_has npa "http://$EM_FQDN:12345/" 'Welcome to nginx!'
stop_daemon a
check "--manage-rules=no: the daemon left the hand-made rules as they were" \
	diff <(echo "$manual") <(snapshot_net na | no_counters)
check_log_errors "$TOPO_DIR/daemon-a.log"

[ "$failed" = 0 ] || { echo "# daemon log (edge-node-a):"; tail -n 40 "$TOPO_DIR/daemon-a.log"; }
topo_result
