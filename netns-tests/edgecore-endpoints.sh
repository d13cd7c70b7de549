#!/usr/bin/env bash
# edgecore-endpoints.sh — services of a real edge node, whose backends run on
# other nodes: since KubeEdge 1.8 a node receives only its own pods, so only
# the Endpoints / EndpointSlices know those backends (issue 14). Through the
# edgecore-db source (a database as edgecore writes it: meta_v2 with beego
# and then gorm columns, meta with bare values, podlists, stale legacy rows
# and every kind of row a reader must leave alone) and through the kube
# source (tools/fake-apiserver.py serving Endpoints and EndpointSlices for
# pods it does not list):
#   remote-svc  backends only in its Endpoints (edgecore) / EndpointSlice
#               (kube): nginx in pod-b on edge-node-b, whose pod is unknown
#               here -> dialed at the address the Endpoints give
#   local-svc   its Endpoints (edgecore: an EndpointSlice) name local-0, a
#               pod of this node with hostPort 30080 -> dialed at
#               hostIP:hostPort (10.77.0.1:30080), not at podIP:8080
#
#   pod-a 10.244.1.2                                     pod-b 10.244.2.2
#   :8080 "pod-direct"                                   nginx :80
#     | (veth)                                             | 10.244.2.3 :80 "remote-2"
#   edge-node-a 10.77.0.1 -------------------- 10.77.0.2 edge-node-b
#   :30080 "host-port" (as the hostPort DNAT would deliver)
#   edgemesh-tproxy --source edgecore-db:DB | kube:http://127.0.0.1:PORT
#     |
#   dns 10.53.0.2 (dnsmasq)
# (netns-tests/lib/topology.sh, namespaces renamed em-eps-$$-*)
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/edgecore-endpoints.sh [edgecore|kube]...
# Prints `N passed, N failed` last; exits non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tools=$here/../tools
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=/dev/null
. "$here/lib/topology.sh"
NS_A="em-eps-$$-node-a"
NS_B="em-eps-$$-node-b"
NS_PA="em-eps-$$-pod-a"
NS_PB="em-eps-$$-pod-b"
NS_DNS="em-eps-$$-dns"
TOPO_NS="$NS_A $NS_B $NS_PA $NS_PB $NS_DNS"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl
build=$(cd "$(dirname "$EM_BIN")" && pwd)
fqdn() { echo "$1.default.svc.cluster.local"; }

# ---- objects ----
svc_json() { # NAME APP PORT TARGET
	cat <<JSON
{"apiVersion":"v1","kind":"Service","metadata":{"name":"$1","namespace":"default"},
 "spec":{"clusterIP":"None","selector":{"app":"$2"},"ports":[{"name":"http","port":$3,"protocol":"TCP","targetPort":$4}]}}
JSON
}
local_pod_json() { # the pod of this node: container port 8080 mapped to host port 30080
	cat <<'JSON'
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"local-0","namespace":"default","labels":{"app":"local"}},
 "spec":{"nodeName":"edge-node-a","containers":[{"name":"web","ports":[{"name":"http","containerPort":8080,"hostPort":30080}]}]},
 "status":{"phase":"Running","podIP":"10.244.1.2","hostIP":"10.77.0.1","conditions":[{"type":"Ready","status":"True"}]}}
JSON
}
eps_json() { # NAME IP PORT POD
	cat <<JSON
{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"$1","namespace":"default"},
 "subsets":[{"addresses":[{"ip":"$2","targetRef":{"kind":"Pod","name":"$4","namespace":"default"}}],
             "ports":[{"name":"http","port":$3,"protocol":"TCP"}]}]}
JSON
}
slice_json() { # SERVICE IP PORT POD
	cat <<JSON
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","addressType":"IPv4",
 "metadata":{"name":"$1-x1","namespace":"default","labels":{"kubernetes.io/service-name":"$1"}},
 "endpoints":[{"addresses":["$2"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","name":"$4","namespace":"default"}}],
 "ports":[{"name":"http","port":$3,"protocol":"TCP"}]}
JSON
}

# ---- backends ----
http_reply() { # RUN ADDR PORT BODY: answers every request with BODY
	"$1" /usr/bin/python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
body = sys.argv[3].encode() + b"\n"
def serve(c):
    with c:
        c.settimeout(5)
        d = b""
        while b"\r\n\r\n" not in d:
            r = c.recv(4096)
            if not r: return
            d += r
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' "$2" "$3" "$4" &
	echo $! > "$TOPO_DIR/http-$2-$3.pid"
	wait_until 5 listening "$1" -ltn "$3"
}

# ---- probes ----
answers() { na dig +short +time=1 +tries=1 @10.53.0.2 "$(fqdn "$1")" A | grep -q '^198\.18\.'; }
no_answer() { ! answers "$1"; }
body() { na curl -sS --max-time 2 "http://$(fqdn "$1"):$2/"; }
served_by() { # SVC PORT TEXT: 4 requests in a row answered by TEXT
	local i b
	for i in 1 2 3 4; do
		b=$(body "$1" "$2") || { echo "request $i failed"; return 1; }
		[[ $b == *"$3"* ]] || { echo "request $i answered by: $b"; return 1; }
	done
}

daemon_start() { # NAME SOURCE
	mkdir -p "$TOPO_DIR/state-$1"
	ip netns exec "$NS_A" "$EM_BIN" --source "$2" --state-dir "$TOPO_DIR/state-$1" --node-name edge-node-a \
		--poll-interval-ms 100 --log-level "${EM_LOG_LEVEL:-info}" >>"$TOPO_DIR/daemon-$1.log" 2>&1 &
	echo $! > "$TOPO_DIR/daemon-$1.pid"
}
daemon_stop() { # NAME
	stop_pid "$1" "$(cat "$TOPO_DIR/daemon-$1.pid")"
	check "$1: the rules are gone once it has exited" sh -c "! ip netns exec $NS_A nft list table inet edgemesh"
	check_log_errors "$TOPO_DIR/daemon-$1.log"
	[ "$failed" = 0 ] || { echo "# daemon log ($1):"; tail -n 30 "$TOPO_DIR/daemon-$1.log"; }
}

common_checks() { # NAME
	check "$1: daemon up" wait_until 10 na nft list table inet edgemesh
	check "$1: remote-svc answered" wait_until 10 answers remote-svc
	check "$1: remote-svc served from its Endpoints or EndpointSlice (pod on edge-node-b, not known here)" \
		wait_until 5 served_by remote-svc 8080 'Welcome to nginx!'
	check "$1: local-svc: the local pod's hostPort dialed (hostIP:hostPort, not podIP:8080)" \
		wait_until 5 served_by local-svc 8081 host-port
}

# ---- edgecore-db ----
DB=$TOPO_DIR/edgecore.db
run_edgecore() {
	local dump="$build/tests/edgecore-bench"
	# the database of a node upgraded from a beego-era edgecore: services
	# written then, the rest after the upgrade (gorm's columns added)
	{ echo "["; svc_json remote-svc remote 8080 80; echo ","; svc_json local-svc local 8081 8080; echo "]"; } |
		/usr/bin/python3 "$tools/make-edgecore-db.py" "$DB" --v2 --columns beego -
	{ echo "["; local_pod_json; echo ","; eps_json remote-svc 10.244.2.2 80 nginx-remote; echo ",";
	  slice_json local-svc 10.244.1.2 8080 local-0; echo "]"; } |
		/usr/bin/python3 "$tools/make-edgecore-db.py" "$DB" --v2 --columns upgraded --podlist --ignorable -
	# a pre-upgrade service nobody removed, only in meta
	/usr/bin/python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
with c:
    c.execute("INSERT INTO meta VALUES (?, ?, ?)", ("default/service/stale-svc", "service",
              "{\"metadata\":{\"name\":\"stale-svc\",\"namespace\":\"default\"},\"spec\":{\"ports\":[{\"port\":80}]}}"))' "$DB"

	# what the source reads of it: exactly the objects served
	check "edgecore: the reader is built ($dump)" test -x "$dump"
	if [ -x "$dump" ]; then
		cat > "$TOPO_DIR/expected" <<'TXT'	# (in strcmp order)
EndpointSlice default/local-svc-x1
Endpoints default/remote-svc
Pod default/local-0
Service default/local-svc
Service default/remote-svc
TXT
		check "edgecore: the reader takes exactly the served objects (no secret, configmap, Knative Service, stale row...)" \
			diff "$TOPO_DIR/expected" <("$dump" "$DB" --dump | grep -v '^#')
		check "edgecore: nothing unusable among the rows read" sh -c "'$dump' '$DB' --dump | grep -q '^# rows .* skipped 0 '"
		check "edgecore: with --edgecore-merge-legacy the stale row is read" \
			sh -c "'$dump' '$DB' --dump --merge-legacy | grep -qx 'Service default/stale-svc'"
	fi

	daemon_start edgecore "edgecore-db:$DB"
	common_checks edgecore
	check "edgecore: a stale legacy meta row is not served" no_answer stale-svc
	check "edgecore: a Knative Service stored under the type service is not served" no_answer kn-hello
	# The Endpoints move to another backend on edge-node-b: followed.
	eps_json remote-svc 10.244.2.3 80 nginx-remote-2 |
		/usr/bin/python3 "$tools/make-edgecore-db.py" "$DB" --v2 --columns upgraded -
	check "edgecore: Endpoints changed -> the new backend serves" wait_until 10 served_by remote-svc 8080 remote-2
	# The Service's rows deleted (the source hands the registry a remove,
	# not a new whole set): no longer answered; local-svc still is.
	/usr/bin/python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
with c:
    c.execute("DELETE FROM meta_v2 WHERE key = ?", ("/core/v1/services/default/remote-svc",))
    c.execute("DELETE FROM meta WHERE key = ?", ("default/service/remote-svc",))' "$DB"
	check "edgecore: Service deleted -> no longer answered" wait_until 10 no_answer remote-svc
	check "edgecore: the other Service still answered" answers local-svc
	daemon_stop edgecore
}

# ---- kube ----
api() { # VERB JSON
	na curl -sS --fail -X POST --data-binary "$2" "http://127.0.0.1:$API_PORT/_ctl/$1" >/dev/null
}
run_kube() {
	ip netns exec "$NS_A" /usr/bin/python3 "$tools/fake-apiserver.py" --port 0 \
		> "$TOPO_DIR/api.out" 2>"$TOPO_DIR/api.err" &
	echo $! > "$TOPO_DIR/api.pid"
	wait_until 5 grep -q PORT "$TOPO_DIR/api.out" || { echo "fake-apiserver did not start"; cat "$TOPO_DIR/api.err"; return; }
	API_PORT=$(awk '/PORT/ {print $2}' "$TOPO_DIR/api.out")
	# like MetaServer: this node's pod only; the backends on edge-node-b
	# appear in an EndpointSlice, the local one in Endpoints
	api upsert "{\"resource\":\"pods\",\"objects\":[$(local_pod_json)]}"
	api upsert "{\"resource\":\"services\",\"objects\":[$(svc_json remote-svc remote 8080 80),$(svc_json local-svc local 8081 8080)]}"
	api upsert "{\"resource\":\"endpointslices\",\"objects\":[$(slice_json remote-svc 10.244.2.2 80 nginx-remote)]}"
	api upsert "{\"resource\":\"endpoints\",\"objects\":[$(eps_json local-svc 10.244.1.2 8080 local-0)]}"
	daemon_start kube "kube:http://127.0.0.1:$API_PORT"
	common_checks kube
	api upsert "{\"resource\":\"endpointslices\",\"objects\":[$(slice_json remote-svc 10.244.2.3 80 nginx-remote-2)]}"
	check "kube: EndpointSlice changed -> the new backend serves" wait_until 10 served_by remote-svc 8080 remote-2
	# The local pod goes away (its Endpoints stay, as after a missed
	# update): its address is then dialed as the Endpoints give it.
	api delete '{"resource":"pods","namespace":"default","name":"local-0"}'
	check "kube: local pod unknown -> podIP:targetPort from the Endpoints" \
		wait_until 10 served_by local-svc 8081 pod-direct
	daemon_stop kube
	kill "$(cat "$TOPO_DIR/api.pid")"; wait "$(cat "$TOPO_DIR/api.pid")" 2>/dev/null; rm -f "$TOPO_DIR/api.pid"
}

topo_network
topo_dnsmasq
topo_nginx
ip -n "$NS_PB" addr add 10.244.2.3/24 dev eth0
http_reply npb 10.244.2.3 80 remote-2
http_reply npa 10.244.1.2 8080 pod-direct
http_reply na 10.77.0.1 30080 host-port
check "backends up" sh -c "ip netns exec $NS_A curl -sf --max-time 2 http://10.77.0.1:30080/ | grep -q host-port"

for s in "${@:-edgecore kube}"; do
	for one in $s; do
		case $one in
		edgecore|edgecore-db) run_edgecore ;;
		kube) run_kube ;;
		*) echo "unknown source $one (edgecore, kube)"; exit 2 ;;
		esac
	done
done
topo_result
