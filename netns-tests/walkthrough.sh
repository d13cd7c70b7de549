#!/usr/bin/env bash
# walkthrough.sh — the seed walkthrough end to end, in network namespaces.
# Topology: see netns-tests/lib/topology.sh. Both edge nodes run
# edgemesh-tproxy on the same manifests (file source); nginx runs in pod-b on
# edge-node-b. Prints `N passed, N failed` last; exits non-zero on failure.
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/walkthrough.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
. "$here/lib/topology.sh"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl


snapshot_net() { # the namespace's ruleset, rules and routes, for before/after diffs
	local run=$1
	$run nft list ruleset
	$run ip -4 rule; $run ip -6 rule
	$run ip -4 route show table all; $run ip -6 route show table all
}

curl_page() { "$@" curl -sS --max-time 5 "http://$EM_FQDN:12345/" | grep -q 'Welcome to nginx!'; }
dig_a() { # RUN @SERVER NAME -> the A records
	local run=$1 server=$2 name=$3; shift 3
	$run dig +short +time=2 +tries=1 "$@" "$server" "$name" A
}
one_fake_a() { # RUN @SERVER NAME [dig args]
	local out; out=$(dig_a "$@")
	echo "answer: $out"
	[ "$(printf '%s\n' "$out" | grep -c .)" = 1 ] && printf '%s\n' "$out" | grep -Eq '^198\.18\.[0-9]+\.[0-9]+$'
}
echo_roundtrip() { # RUN
	local got
	got=$("$@" /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 23456), timeout=5)
s.sendall(b"edgemesh-l4-check\n"); s.shutdown(socket.SHUT_WR)
data = b""
while True:
    d = s.recv(4096)
    if not d: break
    data += d
print(data.decode().strip())' "$EM_FQDN")
	echo "echo got: $got"
	[ "$got" = edgemesh-l4-check ]
}
external_unchanged() { # RUN: a non-cluster name gets dnsmasq's own answer
	local got; got=$(dig_a "$1" @10.53.0.2 www.example.test)
	echo "got: $got"; [ "$got" = 10.1.2.3 ]
}

topo_up
before_a=$(snapshot_net na)
before_b=$(snapshot_net nb)

t0=$(date +%s%N)
start_daemon a
start_daemon b
check "daemon on edge-node-a answers DNS" wait_until 10 daemon_answers a
t1=$(date +%s%N)
check "daemon on edge-node-b answers DNS" wait_until 10 daemon_answers b
echo "# start to first answered query on edge-node-a: $(( (t1 - t0) / 1000000 )) ms"

check "curl from the host of edge-node-a" curl_page na
check "curl from the host of edge-node-b" curl_page nb
check "curl from pod-a (DNS through edge-node-a)" curl_page npa
check "dig A from edge-node-a: one A record in the fake range" one_fake_a na @10.53.0.2 "$EM_FQDN"
check "dig A with the name in upper case" one_fake_a na @10.53.0.2 NGINX-SVC.DEFAULT.SVC.CLUSTER.LOCAL
check "dig A without EDNS" one_fake_a na @10.53.0.2 "$EM_FQDN" +noedns
check "dig A from pod-a, resolver beyond the node" one_fake_a npa @10.53.0.2 "$EM_FQDN"
check "dig A from pod-a, resolver = the node's own address" one_fake_a npa @10.244.1.1 "$EM_FQDN"
check "edge-node-b also answers with one A record in the fake range" \
	one_fake_a nb @10.53.0.2 "$EM_FQDN"
check "a name outside the cluster domain is answered by dnsmasq (host)" external_unchanged na
check "a name outside the cluster domain is answered by dnsmasq (pod)" external_unchanged npa
check "L4 port (tcp-echo) forwarded from edge-node-a" echo_roundtrip na
check "L4 port (tcp-echo) forwarded from pod-a" echo_roundtrip npa
# Refused, not timed out nor unresolved: the address is the service's fake IP,
# curl fails with a refusal or reset (exit 7 or 56: the daemon resets the
# accepted connection, which may beat the handshake's end), and the daemon
# still runs.
refused_not_service_port() {
	local ip rc=0
	ip=$(dig_a na @10.53.0.2 "$EM_FQDN")
	echo "fake IP: $ip"
	printf '%s\n' "$ip" | grep -Eq '^198\.18\.[0-9]+\.[0-9]+$' || return 1
	na curl -sS --max-time 3 "http://$ip:80/" || rc=$?
	echo "curl exit: $rc (7 = connection refused, 56 = reset)"
	{ [ "$rc" = 7 ] || [ "$rc" = 56 ]; } && kill -0 "$(daemon_pid a)"
}
check "a fake IP on a port that is no service port is refused" refused_not_service_port

pid=$(daemon_pid a)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
echo "# idle RSS of edgemesh-tproxy on edge-node-a: ${rss} KiB"

ip_before=$(dig_a na @10.53.0.2 "$EM_FQDN")
stop_daemon a
check "stopping the daemon restores edge-node-a's ruleset, rules and routes" \
	diff <(echo "$before_a") <(snapshot_net na)
check "with the daemon stopped, a name outside the cluster resolves" external_unchanged na
state_a=$TOPO_DIR/state-a/fake-ips
check "the state file holds the service's fake IP ($ip_before)" \
	grep -qx "default/nginx-svc $ip_before" "$state_a"

# The address comes from a hash of the name, so getting the same one back
# proves nothing: hand the daemon a saved address the hash would not give,
# and it must answer with that one and keep it in the file.
seeded=198.18.77.77; [ "$ip_before" = "$seeded" ] && seeded=198.18.77.78
printf 'default/nginx-svc %s\n' "$seeded" > "$state_a"
start_daemon a
check "restarted daemon answers" wait_until 10 daemon_answers a
check "the service keeps the fake IP from the state file across a restart ($seeded)" \
	test "$(dig_a na @10.53.0.2 "$EM_FQDN")" = "$seeded"
check "... and curl reaches nginx through it" curl_page na
stop_daemon a
check "... and the state file still holds it" grep -qx "default/nginx-svc $seeded" "$state_a"
start_daemon a
check "daemon answers again" wait_until 10 daemon_answers a

stop_daemon a KILL
check "killed daemon: DNS still works (queue bypass)" external_unchanged na
start_daemon a
check "a daemon started over a killed one's rules answers" wait_until 10 daemon_answers a
check "... and forwards" curl_page na
stop_daemon a
check "... and removes everything at exit" diff <(echo "$before_a") <(snapshot_net na)

stop_daemon b
check "stopping the daemon restores edge-node-b" diff <(echo "$before_b") <(snapshot_net nb)

for n in a b; do
	check_log_errors "$TOPO_DIR/daemon-$n.log"
done
[ "$failed" = 0 ] || { echo "# daemon log (edge-node-a):"; tail -n 40 "$TOPO_DIR/daemon-a.log"; }
topo_result
