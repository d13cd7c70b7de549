#!/usr/bin/env bash
# demo.sh — the seed walkthrough, shown: two edge nodes in network
# namespaces, nginx in a pod on edge-node-b, edgemesh-tproxy on both nodes
# reading the manifests in contrib/manifests/ (file source). Curls the service
# by name from edge-node-a, prints what it got, and tears everything down.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
. "$here/lib/topology.sh"
topo_traps

log "building the topology (namespaces: $TOPO_NS)"
topo_up
log "starting edgemesh-tproxy on edge-node-a and edge-node-b"
start_daemon a
start_daemon b
wait_until 10 daemon_answers a || { tail "$TOPO_DIR/daemon-a.log"; exit 1; }
wait_until 10 daemon_answers b || { tail "$TOPO_DIR/daemon-b.log"; exit 1; }

echo
echo "### edge-node-a\$ dig +short $EM_FQDN"
na dig +short "$EM_FQDN"
echo
echo "### edge-node-a\$ curl http://$EM_FQDN:12345"
na curl -sS --max-time 5 "http://$EM_FQDN:12345"
echo
echo "### pod-a\$ curl -s http://$EM_FQDN:12345 | grep title"
npa curl -sS --max-time 5 "http://$EM_FQDN:12345" | grep '<title>'
echo
echo "### edgemesh-tproxy log on edge-node-a"
cat "$TOPO_DIR/daemon-a.log"
stop_daemon a
stop_daemon b
log "done; tearing down"
