#!/usr/bin/env bash
# coexist.sh — edgemesh-tproxy next to what already runs on a node:
#   A. a kube-proxy-style nftables table that DNATs the ClusterIP range
#      (cluster DNS 10.96.0.10 -> dnsmasq, a service ClusterIP -> pod-b);
#   B. the same with --capture-cidr=10.96.0.0/12 (ClusterIP capture on);
#   C. Docker's iptables-nft tables (nat DOCKER chains, MASQUERADE, FORWARD
#      policy DROP with DOCKER-USER).
# Each phase: names resolve and connections reach the service through the
# daemon, the other tables still do their job, and they are byte-for-byte
# the same after the daemon has started and stopped.
#
# Topology (lib/topology.sh), pod-a's resolver is the cluster DNS ClusterIP:
#
#   pod-a 10.244.1.2                                         pod-b 10.244.2.2
#   resolv.conf: 10.96.0.10                                  nginx :80, echo :9000
#     |  (veth)                                                |  (veth)
#   10.244.1.1                                             10.244.2.1
#   edge-node-a 10.77.0.1 ------------------------ 10.77.0.2 edge-node-b
#   edgemesh-tproxy, table ip kube-proxy-test (A, B) or
#   iptables-nft nat/filter as Docker leaves them (C)
#   10.53.0.1 -- dns 10.53.0.2 (dnsmasq)
#
# Service default/nginx-cip has ClusterIP 10.96.0.20 (port 80 -> pod-b:80);
# nginx-svc (headless) comes from contrib/manifests/nginx.yaml.
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/coexist.sh   (root)
# Last line: `N passed, N failed`; exit status non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl
topo_up

cat >> "$TOPO_DIR/manifests/nginx.yaml" <<'YAML'
---
apiVersion: v1
kind: Service
metadata: {name: nginx-cip, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: nginx}
  ports: [{name: web, port: 80, targetPort: 80}]
YAML
set_resolver "$NS_PA" 10.96.0.10
ip -n "$NS_A" route add default via 10.53.0.2
METRICS=127.0.0.1:9482

kube_proxy_table() {
	na nft -f - <<'NFT'
table ip kube-proxy-test {
	chain services {
		ip daddr 10.96.0.10 udp dport 53 dnat to 10.53.0.2:53
		ip daddr 10.96.0.10 tcp dport 53 dnat to 10.53.0.2:53
		ip daddr 10.96.0.20 tcp dport 80 dnat to 10.244.2.2:80
	}
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
	chain output { type nat hook output priority -100; policy accept; jump services; }
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; }
}
NFT
}

docker_tables() {
	na iptables-nft -t nat -N DOCKER
	na iptables-nft -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
	na iptables-nft -t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
	na iptables-nft -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
	na iptables-nft -t nat -A DOCKER ! -i docker0 -p tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
	na iptables-nft -N DOCKER-USER
	na iptables-nft -N DOCKER-ISOLATION-STAGE-1
	na iptables-nft -P FORWARD DROP
	na iptables-nft -A FORWARD -j DOCKER-USER
	na iptables-nft -A FORWARD -j DOCKER-ISOLATION-STAGE-1
	na iptables-nft -A DOCKER-USER -j RETURN
	na iptables-nft -A DOCKER-ISOLATION-STAGE-1 -j RETURN
}

# The tables that are not ours, without comments and counters.
others() { na nft list ruleset | awk '/^table inet edgemesh /{skip=1} skip&&/^}/{skip=0;next} !skip'; }

run_daemon() { # flags...
	ip netns exec "$NS_A" "$EM_BIN" --source "file:$TOPO_DIR/manifests" \
		--state-dir "$TOPO_DIR/state-a" --control-socket= --client-iface pa0 "$@" \
		>>"$TOPO_DIR/daemon-a.log" 2>&1 &
	echo $! > "$TOPO_DIR/daemon-a.pid"
	wait_until 10 daemon_answers a
}

requests_of() { # SERVICE PORT -> service_requests_total (0 if none)
	local v
	v=$(na curl -s --max-time 3 "http://$METRICS/metrics" |
		grep -F "edgemesh_tproxy_service_requests_total{service=\"default/$1\",port=\"$2\"}" | awk '{print $NF}')
	echo "${v:-0}"
}

pod_curl() { npa curl -sS --max-time 5 "$@" | grep -q 'Welcome to nginx!'; }
pod_fake() { npa dig +short +time=2 +tries=1 "$EM_FQDN" A | grep -Eq '^198\.18\.'; }

# ---- A. kube-proxy's nft table --------------------------------------------------
kube_proxy_table
others > "$TOPO_DIR/before-a"
run_daemon
check "A: pod-a (resolver = DNS ClusterIP, DNATed) gets the fake IP of a cluster name" pod_fake
check "A: names outside the cluster still resolve through kube-proxy's DNAT" \
	sh -c "ip netns exec $NS_PA dig +short +time=2 +tries=1 www.example.test A | grep -qx 10.1.2.3"
check "A: pod-a reaches nginx-svc by name through the daemon" pod_curl "http://$EM_FQDN:12345/"
check "A: the ClusterIP is kube-proxy's (capture off): DNAT works, daemon not involved" \
	sh -c "ip netns exec $NS_PA curl -sS --max-time 5 http://10.96.0.20/ | grep -q 'Welcome to nginx!' &&
	       [ \$(ip netns exec $NS_A curl -s http://$METRICS/metrics | grep -c 'service=\"default/nginx-cip\"') = 0 ]"
stop_daemon a
others > "$TOPO_DIR/after-a"
check "A: kube-proxy's table unchanged after the daemon ran" diff "$TOPO_DIR/before-a" "$TOPO_DIR/after-a"

# ---- B. ClusterIP capture on -------------------------------------------------------
run_daemon --capture-cidr=10.96.0.0/12
check "B: pod-a to the ClusterIP is captured before kube-proxy's DNAT" \
	sh -c "ip netns exec $NS_PA curl -sS --max-time 5 http://10.96.0.20/ | grep -q 'Welcome to nginx!'"
check "B: ... and balanced by the daemon (1 request for nginx-cip:80)" test "$(requests_of nginx-cip 80)" = 1
check "B: the cluster DNS ClusterIP (UDP) still reaches dnsmasq through kube-proxy" \
	sh -c "ip netns exec $NS_PA dig +short +time=2 +tries=1 www.example.test A | grep -qx 10.1.2.3"
check "B: the host's own connection to the ClusterIP is captured too" \
	sh -c "ip netns exec $NS_A curl -sS --max-time 5 http://10.96.0.20/ | grep -q 'Welcome to nginx!' &&
	       [ \$(ip netns exec $NS_A curl -s http://$METRICS/metrics | grep -F 'service_requests_total{service=\"default/nginx-cip\",port=\"80\"}' | awk '{print \$NF}') = 2 ]"
check "B: fake IPs still work" pod_curl "http://$EM_FQDN:12345/"
stop_daemon a
others > "$TOPO_DIR/after-b"
check "B: kube-proxy's table unchanged after the daemon ran" diff "$TOPO_DIR/before-a" "$TOPO_DIR/after-b"
na nft delete table ip kube-proxy-test

# ---- C. Docker's iptables-nft tables --------------------------------------------------
set_resolver "$NS_PA" 10.53.0.2
docker_tables
# iptables-nft-save without comments and counters.
ipt_rules() { na iptables-nft-save | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'; }
ipt_rules > "$TOPO_DIR/before-c"
run_daemon
check "C: forwarding is Docker's DROP: pod-a cannot reach pod-b directly" \
	sh -c "! ip netns exec $NS_PA curl -s --max-time 2 http://10.244.2.2/ >/dev/null"
check "C: pod-a still gets the fake IP (answer from the node, not forwarded)" pod_fake
check "C: and reaches nginx-svc through the daemon (TPROXY is local delivery)" \
	pod_curl "http://$EM_FQDN:12345/"
check "C: Docker's nat and filter chains coexist with table inet edgemesh" \
	sh -c "ip netns exec $NS_A nft list tables | grep -q 'inet edgemesh' && ip netns exec $NS_A iptables-nft -t nat -S DOCKER | grep -q 8080"
stop_daemon a
ipt_rules > "$TOPO_DIR/after-c"
check "C: Docker's iptables-nft rules unchanged after the daemon ran" diff "$TOPO_DIR/before-c" "$TOPO_DIR/after-c"
check "C: and our table is gone" sh -c "! ip netns exec $NS_A nft list tables | grep -q 'inet edgemesh'"
check_log_errors "$TOPO_DIR/daemon-a.log"

topo_result
