#!/bin/bash
# proxy-http-e2e.sh — the daemon's L7 HTTP forwarder driven by the scripted
# raw-socket client (tools/http-raw-client.py) against the python backends
# (tools/http-backend.py): keep-alive spreading over backends, pipelining,
# chunked upload, 100-continue, 64 MiB upload and downloads (Content-Length,
# chunked, close-delimited) checked by sha256, WebSocket echo, a backend dying
# mid-response, one never answering (504), all refusing (502), none (503),
# and the whole smuggling set of tests/proxy/http-smuggling.vectors (request
# and response side) where the backend's own log proves that it never saw a
# smuggled request. Complements proxy-http.sh (nginx, curl, pod churn).
#
#   em-$$-node: edgemesh-tproxy (--capture-cidr 10.96.0.0/16), the client
#     |- n1 10.244.1.1 ---- eth0 10.244.1.2  em-$$-p1: b1 :8080, smug :8081 (log)
#     |- n2 10.244.2.1 ---- eth0 10.244.2.2  em-$$-p2: b2 :8080 (log), die :8082, hang :8083
#
#   services (ClusterIP, captured; ports named http-*)
#     e2e     10.96.0.20:80 -> app=e2e :8080 (b1, b2)
#     smug    10.96.0.21:80 -> app=smug :8081 (one backend, one log)
#     die     10.96.0.22:80 -> app=die :8082 (dies mid-response)
#     hang    10.96.0.23:80 -> app=hang :8083 (never answers)
#     refuse  10.96.0.24:80 -> app=e2e :8099 (nobody listens)
#     none    10.96.0.25:80 -> no pod
#
# EM_HTTP_DAEMON_OPTS is added to the daemon's command line (default
# "--http-response-timeout-ms 1500"); EM_HTTP_504_WITHIN (default 4 s) bounds
# the wait for the 504. It exits 77 (skip) only for a daemon that refuses
# those options (one from before the L7 forwarder). A daemon whose forwarder
# is not L7 (four requests on one connection do not reach both backends)
# fails at once, unless EM_HTTP_FORCE=1 (then everything runs, e.g. to see
# the harness work over the L4 path and the L7 checks fail).
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/proxy-http-e2e.sh
# Needs root and python3; every namespace, process and file carries $$ and
# is removed on exit.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
EM_BIN=${EM_BIN:-$top/build/edgemesh-tproxy}
EM_HTTP_DAEMON_OPTS=${EM_HTTP_DAEMON_OPTS---http-response-timeout-ms 1500}
EM_HTTP_504_WITHIN=${EM_HTTP_504_WITHIN:-4}
[ "$(id -u)" = 0 ] || { echo "proxy-http-e2e.sh: needs root"; exit 77; }
. "$here/lib/topology.sh"
NS_N="em-$TOPO_ID-node"
NS_P1="em-$TOPO_ID-p1"
NS_P2="em-$TOPO_ID-p2"
TOPO_NS="$NS_N $NS_P1 $NS_P2"
topo_traps
topo_need root netns python3
D=$TOPO_DIR
BACKEND=$top/tools/http-backend.py
CLIENT=$top/tools/http-raw-client.py

nn() { ip netns exec "$NS_N" "$@"; }

for ns in $TOPO_NS; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
veth "$NS_N" n1 10.244.1.1/24 "$NS_P1" eth0 10.244.1.2/24
veth "$NS_N" n2 10.244.2.1/24 "$NS_P2" eth0 10.244.2.2/24
ip -n "$NS_P1" route add default via 10.244.1.1
ip -n "$NS_P2" route add default via 10.244.2.1
# connect() to a ClusterIP needs a route before the capture sees it.
ip -n "$NS_N" route add 10.96.0.0/16 via 10.244.1.2

backend() { # NS ADDR PORT NAME MODE
	ip netns exec "$1" python3 "$BACKEND" --listen "$2:$3" --name "$4" --mode "$5" \
		--log "$D/$4.log" >"$D/$4.out" 2>&1 &
	echo $! > "$D/backend-$4.pid"
}
backend "$NS_P1" 10.244.1.2 8080 b1 log
backend "$NS_P1" 10.244.1.2 8081 smug log
backend "$NS_P2" 10.244.2.2 8080 b2 log
backend "$NS_P2" 10.244.2.2 8082 die die
backend "$NS_P2" 10.244.2.2 8083 hang hang
bound() { ip netns exec "$1" ss -Hltn "src $2" | grep -q .; }
for b in "$NS_P1 10.244.1.2:8080" "$NS_P1 10.244.1.2:8081" "$NS_P2 10.244.2.2:8080" \
	 "$NS_P2 10.244.2.2:8082" "$NS_P2 10.244.2.2:8083"; do
	# shellcheck disable=SC2086 # "NS ADDR" on purpose
	wait_until 15 bound $b || { echo "backend $b did not start"; echo "0 passed, 1 failed"; exit 1; }
done

pod() { # NAME IP LABEL
	printf 'apiVersion: v1\nkind: Pod\nmetadata: { name: %s, namespace: default, labels: { app: %s } }\n' "$1" "$3"
	printf 'spec: { nodeName: node }\nstatus:\n  phase: Running\n  podIP: %s\n  hostIP: 10.244.1.1\n' "$2"
	printf '  conditions: [ { type: Ready, status: "True" } ]\n---\n'
}
service() { # NAME CLUSTERIP SELECTOR TARGETPORT
	printf 'apiVersion: v1\nkind: Service\nmetadata: { name: %s, namespace: default }\n' "$1"
	printf 'spec:\n  clusterIP: %s\n  selector: { app: %s }\n' "$2" "$3"
	printf '  ports: [ { name: http-%s, port: 80, protocol: TCP, targetPort: %s } ]\n---\n' "$1" "$4"
}
mkdir -p "$D/manifests" "$D/state"
{
	pod b1 10.244.1.2 e2e
	pod b2 10.244.2.2 e2e
	pod smug 10.244.1.2 smug
	pod die 10.244.2.2 die
	pod hang 10.244.2.2 hang
	service e2e 10.96.0.20 e2e 8080
	service smug 10.96.0.21 smug 8081
	service die 10.96.0.22 die 8082
	service hang 10.96.0.23 hang 8083
	service refuse 10.96.0.24 e2e 8099
	service none 10.96.0.25 nothing 80
} > "$D/manifests/e2e.yaml"

# shellcheck disable=SC2086 # EM_HTTP_DAEMON_OPTS is a list of options
ip netns exec "$NS_N" "$EM_BIN" --source "file:$D/manifests" --state-dir "$D/state" --node-name node \
	--capture-cidr 10.96.0.0/16 --dns-host no --dns-pods no $EM_HTTP_DAEMON_OPTS \
	--log-level info >>"$D/daemon.log" 2>&1 &
echo $! > "$D/daemon.pid"

# client SERVICE-IP ARGS...: the raw client in the node namespace; each of
# its ok/FAIL lines counts as one check.
client() {
	local ip=$1 out; shift
	out=$(nn python3 "$CLIENT" --to "$ip:80" "$@" 2>&1)
	printf '%s\n' "$out"
	passed=$((passed + $(printf '%s\n' "$out" | grep -c '^ok - ')))
	failed=$((failed + $(printf '%s\n' "$out" | grep -c '^FAIL - ')))
}

if ! wait_until 15 nn python3 "$CLIENT" --to 10.96.0.20:80 --timeout 2 get /who; then
	if grep -q 'unrecognized option' "$D/daemon.log"; then
		# A daemon from before the L7 forwarder: nothing to test here.
		log "$(head -n 1 "$D/daemon.log")"
		echo "0 passed, 0 failed (skipped: this daemon has no HTTP forwarder options)"
		exit 77
	fi
	topo_die "the daemon does not forward 10.96.0.20:80: $(tail -n 5 "$D/daemon.log")"
fi
if ! nn python3 "$CLIENT" --to 10.96.0.20:80 keepalive -n 4 --backends b1,b2 >"$D/l7.out" 2>&1; then
	failed=$((failed + 1))
	echo "FAIL - four requests on one connection reach both backends (L7): $(tr '\n' ' ' <"$D/l7.out")"
	[ "${EM_HTTP_FORCE:-0}" = 1 ] || { topo_result; exit 1; }
	log "EM_HTTP_FORCE=1: going on over a forwarder that is not L7"
fi

S=10.96.0.20
client $S keepalive -n 100 --backends b1,b2
client $S pipeline -n 50
client $S chunked-upload --size $((3 * 1024 * 1024 + 17))
client $S continue --size 200000
client $S upload --size $((64 * 1024 * 1024))
client $S download --size $((64 * 1024 * 1024))
client $S download --size $((16 * 1024 * 1024)) --chunked
client $S download --size $((16 * 1024 * 1024)) --close
client $S websocket

client 10.96.0.22 die --size $((8 * 1024 * 1024))
client 10.96.0.23 --timeout $((EM_HTTP_504_WITHIN + 5)) get /never --expect 504 --within "$EM_HTTP_504_WITHIN"
client 10.96.0.24 get /refused --expect 502 --within 10
client 10.96.0.25 get /none --expect 503 --within 5

client 10.96.0.21 --timeout 3 smuggle --vectors "$top/tests/proxy/http-smuggling.vectors" \
	--backend-log "$D/smug.log"

stop_pid e2e "$(cat "$D/daemon.pid")"
check_log_errors "$D/daemon.log"
topo_result
