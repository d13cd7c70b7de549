#!/usr/bin/env bash
# svc-kinds.sh — every kind of Service on the real daemon (issue 15):
# ExternalName, UDP service ports through TPROXY for UDP, a DNS server pod
# published as a UDP service, mixed TCP+UDP on one port number, NodePort,
# SCTP-only and port-less services.
#
#   client pod 10.245.0.2, fd45::2 (udp-client.py, dig, curl)
#     |  (veth)
#   10.245.0.1, fd45::1            fake ranges 198.18.0.0/16, fd9e:6d65:7368::/64
#   node: edgemesh-tproxy ---- 10.53.0.1 (veth) ---- dns 10.53.0.2: dnsmasq,
#   10.246.1.1   10.246.2.1                          the node's resolver
#                                                    (web.example.test =
#                                                    10.246.1.2); 10.53.0.3:
#                                                    slow-dns.py, 3 s late
#     |  (veth)    |  (veth)
#   pod-1          pod-2         each: UDP echo :7000 (replies "<pod>:..."),
#   10.246.1.2     10.246.2.2    TCP echo :7001, dnsmasq :53 answering
#                                who.test = its own address; pod-1: HTTP
#                                :8080 (the ExternalName target)
#
# Services (namespace default):
#   udp-echo  NodePort  7000/UDP -> 7000, 7000/TCP -> 7001 (mixed), app=echo
#   dns-svc   ClusterIP 53/UDP -> 53, app=echo
#   sctp-only ClusterIP 9999/SCTP, app=echo
#   no-ports  ClusterIP no ports, app=echo
#   ext       ExternalName "Web.Example.Test." (case and dot normalised)
#   ext-slow  ExternalName slow.example.test (only the slow resolver knows it)
#
# Checks: ExternalName with getent and curl from the pod and the node
# (CNAME + the target's A record from the node's resolver), cached for the
# target's TTL, passed untouched when the resolver is too slow; flows spread over both pods and keep their pod; replies come from
# the fake IP:port; the same from the node itself; dig through dns-svc's
# fake IP; TCP on 7000 reaches the TCP target; SCTP and port-less services
# resolve but nothing is captured (UDP to them is refused by the kernel);
# the ruleset's udp4 set holds exactly the UDP service ports; pod-1 deleted
# -> its flows move to pod-2; DNS to the node's resolver is untouched.
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/svc-kinds.sh   (root)
# Last line: `N passed, N failed`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
topo_traps
topo_need root netns nft dnsmasq python3 dig curl socat getent
PY=/usr/bin/python3
TOOLS=$here/../tests/udp

NS_N="em-$TOPO_ID-node"
NS_C="em-$TOPO_ID-client"
NS_P1="em-$TOPO_ID-pod-1"
NS_P2="em-$TOPO_ID-pod-2"
NS_R="em-$TOPO_ID-resolver"
TOPO_NS="$NS_N $NS_C $NS_P1 $NS_P2 $NS_R"
nn() { ip netns exec "$NS_N" "$@"; }
nc_() { ip netns exec "$NS_C" "$@"; }
np1() { ip netns exec "$NS_P1" "$@"; }
np2() { ip netns exec "$NS_P2" "$@"; }
nr() { ip netns exec "$NS_R" "$@"; }

bg() { # bg NAME NS CMD...: a process in NS (its own pid), killed on exit
	local name=$1 ns=$2; shift 2
	ip netns exec "$ns" "$@" >"$TOPO_DIR/$name.log" 2>&1 &
	echo $! > "$TOPO_DIR/$name.pid"
}

network() {
	local ns
	for ns in $TOPO_NS; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	veth "$NS_N" c0 10.245.0.1/24 "$NS_C" eth0 10.245.0.2/24
	veth "$NS_N" p1 10.246.1.1/24 "$NS_P1" eth0 10.246.1.2/24
	veth "$NS_N" p2 10.246.2.1/24 "$NS_P2" eth0 10.246.2.2/24
	veth "$NS_N" r0 10.53.0.1/24 "$NS_R" eth0 10.53.0.2/24
	for ns in "$NS_C" "$NS_P1" "$NS_P2" "$NS_R"; do
		ip -n "$ns" route add default via "$(ip -n "$ns" -4 -o addr show eth0 |
			awk '{split($4, a, "/"); split(a[1], b, "."); print b[1]"."b[2]"."b[3]".1"}')"
	done
	nn sysctl -qw net.ipv4.ip_forward=1
	# IPv6 for the client only: UDP to the fake IPv6 address
	ip -n "$NS_N" addr add fd45::1/64 dev c0 nodad
	ip -n "$NS_C" addr add fd45::2/64 dev eth0 nodad
	ip -n "$NS_C" -6 route add default via fd45::1
	set_resolver "$NS_N" 10.53.0.2
	set_resolver "$NS_C" 10.53.0.2
}

pod_servers() { # NS ADDR NAME
	local run=$1 addr=$2 name=$3
	bg "$name-udp" $run $PY "$TOOLS/udp-echo.py" "$addr" 7000 "$name"
	bg "$name-tcp" $run socat "TCP-LISTEN:7001,bind=$addr,reuseaddr,fork" "SYSTEM:echo tcp-$name"
	printf '%s who.test\n' "$addr" > "$TOPO_DIR/hosts-$name"
	bg "$name-dns" $run dnsmasq --keep-in-foreground --no-resolv --no-hosts \
		--addn-hosts="$TOPO_DIR/hosts-$name" --listen-address="$addr" --bind-interfaces \
		--user=root --group=root --pid-file= --log-facility=-
}

pod_yaml() { # NAME IP
	cat <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $1, namespace: default, labels: { app: echo } }
spec:
  containers:
    - name: c
      ports:
        - { containerPort: 7000, protocol: UDP }
        - { containerPort: 7001, protocol: TCP }
        - { containerPort: 53, protocol: UDP }
status:
  phase: Running
  podIP: $2
  hostIP: 10.245.0.1
  conditions: [ { type: Ready, status: "True" } ]
YAML
}

manifests() {
	mkdir -p "$TOPO_DIR/manifests"
	pod_yaml pod-1 10.246.1.2 > "$TOPO_DIR/manifests/pod-1.yaml"
	pod_yaml pod-2 10.246.2.2 > "$TOPO_DIR/manifests/pod-2.yaml"
	cat > "$TOPO_DIR/manifests/services.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: { name: udp-echo, namespace: default }
spec:
  type: NodePort
  selector: { app: echo }
  ports:
    - { name: u, port: 7000, protocol: UDP, targetPort: 7000, nodePort: 30700 }
    - { name: t, port: 7000, protocol: TCP, targetPort: 7001, nodePort: 30700 }
---
apiVersion: v1
kind: Service
metadata: { name: dns-svc, namespace: default }
spec:
  selector: { app: echo }
  ports:
    - { name: dns, port: 53, protocol: UDP, targetPort: 53 }
---
apiVersion: v1
kind: Service
metadata: { name: sctp-only, namespace: default }
spec:
  selector: { app: echo }
  ports:
    - { name: s, port: 9999, protocol: SCTP }
---
apiVersion: v1
kind: Service
metadata: { name: no-ports, namespace: default }
spec:
  selector: { app: echo }
---
apiVersion: v1
kind: Service
metadata: { name: ext, namespace: default }
spec:
  type: ExternalName
  externalName: Web.Example.Test.
  ports:
    - { name: http, port: 8080 }
---
apiVersion: v1
kind: Service
metadata: { name: ext-slow, namespace: default }
spec:
  type: ExternalName
  externalName: slow.example.test
YAML
}

network
printf '10.1.2.3 www.example.test\n10.246.1.2 web.example.test\n' > "$TOPO_DIR/hosts"
ip -n "$NS_R" addr add 10.53.0.3/24 dev eth0
bg slowdns "$NS_R" $PY "$TOOLS/slow-dns.py" 10.53.0.3 10.9.9.9 3
mkdir -p "$TOPO_DIR/www" && echo hello-external > "$TOPO_DIR/www/index.html"
bg http "$NS_P1" $PY -m http.server --bind 10.246.1.2 --directory "$TOPO_DIR/www" 8080
bg resolver "$NS_R" dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$TOPO_DIR/hosts" --local-ttl=30 \
	--listen-address=10.53.0.2 --bind-interfaces --user=root --group=root --pid-file= --log-facility=-
pod_servers "$NS_P1" 10.246.1.2 pod-1
pod_servers "$NS_P2" 10.246.2.2 pod-2
manifests
for run in np1 np2; do
	wait_until 5 listening $run -lun 7000 && wait_until 5 listening $run -ltn 7001 &&
		wait_until 5 listening $run -lun 53 || { echo "pod servers did not start"; exit 1; }
done
wait_until 5 listening nr -lun 53 && wait_until 5 listening np1 -ltn 8080 ||
	{ echo "resolver or HTTP server did not start"; exit 1; }

mkdir -p "$TOPO_DIR/state"
bg daemon "$NS_N" "$EM_BIN" --source "file:$TOPO_DIR/manifests" --state-dir "$TOPO_DIR/state" \
	--log-level debug --udp-idle-timeout 30 --fake-ipv6-range fd9e:6d65:7368::/64 \
	--client-iface c0
fake() { nc_ dig +short +time=1 +tries=1 "$1.default.svc.cluster.local" A | grep '^198\.18\.'; }
wait_until 10 fake udp-echo || { echo "daemon not ready:"; tail -20 "$TOPO_DIR/daemon.log"; exit 1; }
ECHO=$(fake udp-echo)
DNSVC=$(fake dns-svc)
SCTP=$(fake sctp-only)
NOPORTS=$(fake no-ports)
log "udp-echo $ECHO, dns-svc $DNSVC, sctp-only $SCTP, no-ports $NOPORTS"
# The capture set is filled by the UDP thread right after start.
set_has() { nn nft list set inet edgemesh udp4 | grep -q "$1 . $2"; }
wait_until 5 set_has "$ECHO" 7000
[ -n "${SVC_PAUSE:-}" ] && { echo "paused: $TOPO_ID"; sleep "$SVC_PAUSE"; }


# ---- ExternalName ----------------------------------------------------------------
EXT=ext.default.svc.cluster.local
dns_stats() { # the daemon's DNS counter line after SIGUSR1
	local before; before=$(grep -c 'dns: packets' "$TOPO_DIR/daemon.log")
	kill -USR1 "$(cat "$TOPO_DIR/daemon.pid")"
	wait_until 3 sh -c "[ \$(grep -c 'dns: packets' $TOPO_DIR/daemon.log) -gt $before ]"
	grep 'dns: packets' "$TOPO_DIR/daemon.log" | tail -1
}
held() { dns_stats | grep -oE ' held=[0-9]+' | cut -d= -f2 || echo 0; }
ext_dig() {
	local out; out=$(nc_ dig +time=3 +tries=1 "$EXT" A)
	echo "$out"
	grep -qE "^$EXT\.[[:space:]]+5[[:space:]]+IN[[:space:]]+CNAME[[:space:]]+web\.example\.test\.\$" <<<"$out" &&
		grep -qE '^web\.example\.test\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+10\.246\.1\.2$' <<<"$out" &&
		grep -q 'flags: qr aa' <<<"$out" && grep -q 'OPT PSEUDOSECTION' <<<"$out"
}
check "ExternalName: dig gets CNAME web.example.test + its A record (EDNS)" ext_dig
ext_getent() { $1 getent hosts "$EXT" | tee /dev/stderr | grep -q '^10\.246\.1\.2[[:space:]]'; }
check "ExternalName: getent hosts from a pod" ext_getent nc_
check "ExternalName: getent hosts from the node" ext_getent nn
ext_curl() { $1 curl -sS --max-time 5 "http://$EXT:8080/" | grep -x hello-external; }
check "ExternalName: curl from a pod reaches the target" ext_curl nc_
check "ExternalName: curl from the node reaches the target" ext_curl nn
cached() { # dnsmasq gives its hosts 30 s (--local-ttl): answered from the cache
	local h1 h2 out
	h1=$(held); out=$(nc_ dig +noall +answer +time=2 +tries=1 "$EXT" A)
	h2=$(held); echo "$out"; echo "held before $h1, after $h2"
	[ "$h1" -ge 1 ] && [ "$h2" -eq "$h1" ] &&
		grep -qE '^web\.example\.test\.[[:space:]]+([0-9]|[12][0-9]|30)[[:space:]]+IN[[:space:]]+A[[:space:]]+10\.246\.1\.2$' <<<"$out"
}
check "ExternalName: the target's records are cached for their TTL" cached
ext_slow() {
	local out h1 h2; h1=$(held)
	# the slow resolver answers the daemon too late: the client's own query
	# passes and gets the slow resolver's own (late) answer
	out=$(nc_ dig +time=8 +tries=1 @10.53.0.3 "ext-slow.default.svc.cluster.local" A)
	echo "$out"; h2=$(held)
	grep -qE "^ext-slow\.default\.svc\.cluster\.local\.[[:space:]]+60[[:space:]]+IN[[:space:]]+A[[:space:]]+10\.9\.9\.9\$" <<<"$out" &&
		! grep -q CNAME <<<"$out" && [ "$h2" -gt "$h1" ] && dns_stats | grep -qE 'held_passed=[1-9]'
}
check "ExternalName: resolver too slow -> the query passes untouched" ext_slow
ext_no_fake() { ! nn nft list set inet edgemesh udp4 | grep -q "$(nc_ dig +short "$EXT" A | tail -1) \."; }
check "ExternalName: no fake IP, nothing captured" ext_no_fake

# ---- UDP flows from the pod ---------------------------------------------------
nc_ $PY "$TOOLS/udp-client.py" "$ECHO" 7000 8 3 > "$TOPO_DIR/flows.out"
spread() {
	cat "$TOPO_DIR/flows.out"
	[ "$(grep -c ' pod-1:' "$TOPO_DIR/flows.out")" -gt 0 ] &&
		[ "$(grep -c ' pod-2:' "$TOPO_DIR/flows.out")" -gt 0 ] &&
		[ "$(grep -c ':' "$TOPO_DIR/flows.out")" -eq 24 ]
}
check "UDP flows from a pod spread over both backends (24 replies)" spread
sticky() { # every socket saw one pod only
	local i
	for i in 0 1 2 3 4 5 6 7; do
		[ "$(awk -v i=$i '$1 == i {split($3, a, ":"); print a[1]}' "$TOPO_DIR/flows.out" | sort -u | wc -l)" -eq 1 ] ||
			{ echo "socket $i changed backend"; cat "$TOPO_DIR/flows.out"; return 1; }
	done
}
check "a flow keeps its backend" sticky
from_fake() { ! awk '{print $2}' "$TOPO_DIR/flows.out" | grep -v "^$ECHO:7000\$"; }
check "replies come from the fake IP:port ($ECHO:7000)" from_fake

host_flow() {
	nn $PY "$TOOLS/udp-client.py" "$ECHO" 7000 4 2 | tee "$TOPO_DIR/host.out"
	[ "$(grep -c " $ECHO:7000 pod-" "$TOPO_DIR/host.out")" -eq 8 ]
}
check "UDP from the node itself, replies from the fake IP" host_flow


v6_flows() {
	local f6; f6=$(nc_ dig +short +time=1 +tries=1 udp-echo.default.svc.cluster.local AAAA)
	[ -n "$f6" ] || return 1
	nc_ $PY "$TOOLS/udp-client.py" "$f6" 7000 4 2 | tee "$TOPO_DIR/v6.out"
	[ "$(grep -c " $f6:7000 pod-" "$TOPO_DIR/v6.out")" -eq 8 ] &&
		nn nft list set inet edgemesh udp6 | grep -q "$f6 . 7000"
}
check "UDP over IPv6 to the fake IPv6 address (backends IPv4), replies from it" v6_flows

# ---- a DNS server pod published as a UDP service ------------------------------
dig_pod() {
	local out; out=$(nc_ dig +time=2 +tries=1 "@$DNSVC" who.test A)
	echo "$out"
	grep -qE '^who\.test\..*IN[[:space:]]+A[[:space:]]+10\.246\.[12]\.2' <<<"$out" &&
		grep -q "SERVER: $DNSVC#53" <<<"$out"
}
check "dig @dns-svc's fake IP reaches a dnsmasq pod (from a pod)" dig_pod
dig_host() { nn dig +short +time=2 +tries=1 "@$DNSVC" who.test A | grep -E '^10\.246\.[12]\.2$'; }
check "dig @dns-svc's fake IP from the node" dig_host
resolver_untouched() {
	nc_ dig +short +time=2 +tries=1 @10.53.0.2 www.example.test A | grep -x 10.1.2.3 &&
		nn nft list set inet edgemesh udp4 | grep -v '10\.53\.0\.2'
}
check "DNS to the node's resolver is untouched (and not in the UDP set)" resolver_untouched

# ---- mixed TCP+UDP on one port, NodePort -----------------------------------------
tcp_mixed() { nc_ socat -T2 - "TCP:$ECHO:7000,connect-timeout=2" </dev/null | grep -E '^tcp-pod-[12]$'; }
check "TCP on the same port number goes to the TCP target (NodePort service)" tcp_mixed

# ---- SCTP only, no ports -----------------------------------------------------------
set_exact() {
	nn nft list set inet edgemesh udp4 | tee "$TOPO_DIR/set.out"
	grep -q "$ECHO . 7000" "$TOPO_DIR/set.out" && grep -q "$DNSVC . 53" "$TOPO_DIR/set.out" &&
		! grep -qE "$SCTP|$NOPORTS" "$TOPO_DIR/set.out" &&
		[ "$(grep -oE '198\.18\.[0-9.]+ \. [0-9]+' "$TOPO_DIR/set.out" | wc -l)" -eq 2 ]
}
check "the udp4 set holds exactly the two UDP service ports" set_exact
sctp_logged() { grep -q "SCTP is not forwarded" "$TOPO_DIR/daemon.log" &&
	[ "$(grep -c 'SCTP is not forwarded' "$TOPO_DIR/daemon.log")" -eq 1 ]; }
check "SCTP-only service: resolves, logged once as not forwarded" sctp_logged
sctp_not_captured() {
	! nn nft list chain inet edgemesh prerouting | grep -i sctp &&
		nc_ env CONNECT=1 $PY "$TOOLS/udp-client.py" "$SCTP" 9999 1 1 | grep -x '0 timeout'
}
check "nothing captures the SCTP-only service's address" sctp_not_captured
no_ports() {
	local rc
	# UDP: not captured, so nothing answers. (No ICMP either: with the
	# daemon's fwmark rule the kernel unmerges its local and main tables,
	# and an ICMP error from a fake IP, which only main routes, finds no
	# route: see the issue-15 note.)
	nc_ env CONNECT=1 $PY "$TOOLS/udp-client.py" "$NOPORTS" 7000 1 1 | grep -x '0 timeout' || return 1
	# TCP: the forwarder accepts (TPROXY) and resets at once: curl sees a
	# refused connection, a reset or an empty reply (7/52/56), never a
	# timeout (28).
	nc_ curl -sS --max-time 3 "http://$NOPORTS:7000/"; rc=$?
	[ "$rc" -eq 7 ] || [ "$rc" -eq 52 ] || [ "$rc" -eq 56 ]
}
check "a service without ports: UDP not captured, TCP reset at once" no_ports
udp_stats_line() { # asks the daemon for its counters; prints the new udp line
	local before; before=$(grep -c 'udp: flows' "$TOPO_DIR/daemon.log")
	kill -USR1 "$(cat "$TOPO_DIR/daemon.pid")"
	wait_until 3 sh -c "[ \$(grep -c 'udp: flows' $TOPO_DIR/daemon.log) -gt $before ]"
	grep 'udp: flows' "$TOPO_DIR/daemon.log" | tail -1
}
not_seen() { udp_stats_line | grep 'refused 0,'; }
check "the UDP forwarder never saw the SCTP-only or port-less services" not_seen


# ---- an ICMP error from the backend ends the flow ------------------------------------
icmp_ends_flow() {
	local before after
	kill "$(cat "$TOPO_DIR/pod-2-udp.pid")"
	wait_until 3 sh -c "! ip netns exec $NS_P2 ss -Hlun 'sport = :7000' | grep -q ."
	# pod-2's flows: the first datagram meets port unreachable (the flow
	# ends), the next one starts a new flow on a backend that answers
	nc_ $PY "$TOOLS/udp-client.py" "$ECHO" 7000 6 3 | tee "$TOPO_DIR/icmp.out"
	before=$(grep -c ' pod-1:r2' "$TOPO_DIR/icmp.out")
	udp_stats_line | tee "$TOPO_DIR/icmp.stats"
	grep -qE 'icmp [1-9]' "$TOPO_DIR/icmp.stats" && [ "$before" -eq 6 ]
}
check "ICMP port unreachable from a backend ends the flow; the client moves on" icmp_ends_flow
bg pod-2-udp "$NS_P2" $PY "$TOOLS/udp-echo.py" 10.246.2.2 7000 pod-2
wait_until 5 listening np2 -lun 7000

# ---- backend deleted: its flows move -----------------------------------------------
rm -f "$TOPO_DIR/go"
nc_ $PY "$TOOLS/udp-client.py" "$ECHO" 7000 8 1 "$TOPO_DIR/go" > "$TOPO_DIR/move.out" &
client=$!
wait_until 10 sh -c "[ \$(wc -l < $TOPO_DIR/move.out) -ge 8 ]"
rm "$TOPO_DIR/manifests/pod-1.yaml"
# The registry drops pod-1 (inotify); the UDP thread checks every 200 ms.
pod1_gone() { nn dig +short +time=1 +tries=1 @10.53.0.2 _u._udp.udp-echo.default.svc.cluster.local SRV | grep -q 7000 && sleep 1; }
pod1_gone
touch "$TOPO_DIR/go"
wait "$client"
moved() {
	cat "$TOPO_DIR/move.out"
	grep -q '^[0-9] .* pod-1:r0' "$TOPO_DIR/move.out" &&
		[ "$(grep -c ' pod-2:after' "$TOPO_DIR/move.out")" -eq 8 ]
}
check "after pod-1 is deleted, its flows move to pod-2" moved

counters() { udp_stats_line | tee "$TOPO_DIR/udp.stats" | grep -q 'moved [1-9]'; }
check "the daemon counted the moved flows" counters
cat "$TOPO_DIR/udp.stats"
stop_pid svc "$(cat "$TOPO_DIR/daemon.pid")"
check_log_errors "$TOPO_DIR/daemon.log"
topo_result
