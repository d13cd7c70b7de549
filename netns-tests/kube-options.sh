#!/usr/bin/env bash
# kube-options.sh — the kube source's options and error paths through the
# daemon: HTTPS with --kube-ca-file, a bearer token from --kube-token-file,
# --pods-on-node-only; an unknown CA and a certificate for another host name
# each refused for that reason; an API server that answers 200 with a body
# that is not JSON, and one whose watch stream turns to garbage.
#
#   edge-node-a 10.77.0.1 ---------------------- 10.77.0.2 edge-node-b
#   edgemesh-tproxy --source kube:https://127.0.0.1:P     pod-b 10.244.2.2 nginx :80
#   API server on 127.0.0.1 (tools/fake-apiserver.py or tools/bad-apiserver.py)
#     |
#   dns 10.53.0.2 (dnsmasq)
# (netns-tests/lib/topology.sh; certificates made here with openssl)
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/kube-options.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
tools=$here/../tools
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=/dev/null
. "$here/lib/topology.sh"
NS_A="em-kopt-$$-node-a"
NS_B="em-kopt-$$-node-b"
NS_PA="em-kopt-$$-pod-a"
NS_PB="em-kopt-$$-pod-b"
NS_DNS="em-kopt-$$-dns"
TOPO_NS="$NS_A $NS_B $NS_PA $NS_PB $NS_DNS"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl openssl

URL="http://$EM_FQDN:12345/"
C=$TOPO_DIR/certs

# ---- certificates: a CA we trust, and three server certificates --------------
make_certs() {
	mkdir -p "$C"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=em-test-ca -keyout "$C/ca.key" -out "$C/ca.crt" 2>/dev/null
	# issue NAME SAN [CA]: a server certificate signed by CA (default: ours)
	issue() {
		local ca=${3:-ca}
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
			-keyout "$C/$1.key" -out "$C/$1.csr" 2>/dev/null
		printf 'subjectAltName=%s\n' "$2" > "$C/$1.ext"
		openssl x509 -req -in "$C/$1.csr" -CA "$C/$ca.crt" -CAkey "$C/$ca.key" \
			-CAcreateserial -days 2 -extfile "$C/$1.ext" -out "$C/$1.crt" 2>/dev/null
	}
	issue good IP:127.0.0.1
	issue mismatch DNS:other.example
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=other-ca -keyout "$C/other-ca.key" -out "$C/other-ca.crt" 2>/dev/null
	issue unknown IP:127.0.0.1 other-ca
}

# ---- objects ----
pod_json() { # NAME IP NODE
	cat <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","labels":{"app":"nginx"}},
 "spec":{"nodeName":"$3","containers":[{"name":"web","ports":[{"name":"http","containerPort":80}]}]},
 "status":{"phase":"Running","podIP":"$2","hostIP":"10.77.0.2","conditions":[{"type":"Ready","status":"True"}]}}
EOF
}
svc_json() {
	cat <<'EOF'
{"apiVersion":"v1","kind":"Service","metadata":{"name":"nginx-svc","namespace":"default"},
 "spec":{"clusterIP":"None","selector":{"app":"nginx"},"ports":[{"name":"http-0","port":12345,"protocol":"TCP","targetPort":80}]}}
EOF
}

# ---- API servers ----
api_start() { # CERT-NAME | "" (plain HTTP)
	local tls=()
	[ -n "$1" ] && tls=(--tls-cert "$C/$1.crt" --tls-key "$C/$1.key")
	rm -f "$TOPO_DIR/api.out"
	ip netns exec "$NS_A" /usr/bin/python3 "$tools/fake-apiserver.py" --port 0 "${tls[@]}" \
		> "$TOPO_DIR/api.out" 2>"$TOPO_DIR/api.err" &
	echo $! > "$TOPO_DIR/api.pid"
	wait_until 5 grep -q PORT "$TOPO_DIR/api.out"
	API_PORT=$(awk '/PORT/ {print $2}' "$TOPO_DIR/api.out")
}
bad_start() { # MODE
	rm -f "$TOPO_DIR/api.out"
	ip netns exec "$NS_A" /usr/bin/python3 "$tools/bad-apiserver.py" "$1" \
		> "$TOPO_DIR/api.out" 2>"$TOPO_DIR/api.err" &
	echo $! > "$TOPO_DIR/api.pid"
	wait_until 5 grep -q PORT "$TOPO_DIR/api.out"
	API_PORT=$(awk '/PORT/ {print $2}' "$TOPO_DIR/api.out")
}
api_stop() { kill "$(cat "$TOPO_DIR/api.pid")"; wait "$(cat "$TOPO_DIR/api.pid")" 2>/dev/null; rm -f "$TOPO_DIR/api.pid"; }
# api VERB JSON: control the fake API server (plain HTTP on its control path
# is not available with TLS: curl --cacert)
api() {
	na curl -sS --fail --cacert "$C/ca.crt" -X POST --data-binary "$2" \
		"$API_SCHEME://127.0.0.1:$API_PORT/_ctl/$1" >/dev/null
}
requests() { na curl -sS --cacert "$C/ca.crt" "$API_SCHEME://127.0.0.1:$API_PORT/_ctl/requests"; }

# ---- the daemon ----
kdaemon_start() { # NAME ARGS...
	local name=$1; shift
	mkdir -p "$TOPO_DIR/state-$name"
	ip netns exec "$NS_A" "$EM_BIN" --state-dir "$TOPO_DIR/state-$name" --node-name edge-node-a \
		--log-level "${EM_LOG_LEVEL:-info}" "$@" >>"$TOPO_DIR/daemon-$name.log" 2>&1 &
	echo $! > "$TOPO_DIR/daemon-$name.pid"
	wait_until 10 na nft list table inet edgemesh
}
log_has() { grep -q -- "$2" "$TOPO_DIR/daemon-$1.log"; }
answers() { na dig +short +time=1 +tries=1 @10.53.0.2 "$1" A | grep -Eqx '198\.18\.[0-9]+\.[0-9]+'; }
refused() { # NAME: dnsmasq answered REFUSED: the daemon does not know it
	local out; out=$(na dig +time=2 +tries=1 @10.53.0.2 "$1" A) || return 1
	grep -q 'status: REFUSED' <<<"$out"
}
six_ok() { local i; for i in 1 2 3 4 5 6; do na curl -sS --max-time 3 "$URL" | grep -q 'Welcome to nginx!' || return 1; done; }

topo_network
topo_dnsmasq
topo_nginx
make_certs
check "test certificates made" test -s "$C/unknown.crt"

# ---- HTTPS, CA file, token, pods of this node only ------------------------------
API_SCHEME=https
api_start good
printf 's3cret-token' > "$TOPO_DIR/token"
# nginx-0 is this node's pod; nginx-9 is on another node and would be a dead
# backend (nothing listens at 10.244.2.9) if --pods-on-node-only were ignored.
api upsert "{\"resource\":\"pods\",\"objects\":[$(pod_json nginx-0 10.244.2.2 edge-node-a),$(pod_json nginx-9 10.244.2.9 edge-node-b)]}"
api upsert "{\"resource\":\"services\",\"objects\":[$(svc_json)]}"
kdaemon_start tls --source "kube:https://127.0.0.1:$API_PORT" --kube-ca-file "$C/ca.crt" \
	--kube-token-file "$TOPO_DIR/token" --pods-on-node-only=yes
check "https + --kube-ca-file: service answered" wait_until 10 answers "$EM_FQDN"
check "--pods-on-node-only: six requests, all served (the other node's dead pod is not a backend)" six_ok
requests > "$TOPO_DIR/requests.json"
check "--kube-token-file: every API request carries the bearer token" /usr/bin/python3 -c '
import json, sys
reqs = [r for r in json.load(open(sys.argv[1])) if not r.startswith("GET /_ctl")]
print(len(reqs), "requests"); assert reqs
bad = [r for r in reqs if not r.endswith("[Bearer s3cret-token]")]
assert not bad, bad' "$TOPO_DIR/requests.json"
check "--pods-on-node-only: pods are asked for with fieldSelector=spec.nodeName=edge-node-a" \
	/usr/bin/python3 -c '
import json, sys
pods = [r for r in json.load(open(sys.argv[1])) if r.startswith("GET /api/v1/pods")]
print(pods[:3]); assert pods
assert all("fieldSelector=spec.nodeName%3Dedge-node-a" in r or "fieldSelector=spec.nodeName=edge-node-a" in r
           for r in pods), pods' "$TOPO_DIR/requests.json"
stop_pid tls "$(cat "$TOPO_DIR/daemon-tls.pid")"
check_log_errors "$TOPO_DIR/daemon-tls.log"
api_stop

# ---- refused for the right reason: unknown CA, another host name -----------------
for case in unknown:'SSL certificate problem' mismatch:'subject name'; do
	cert=${case%%:*} why=${case#*:}
	api_start "$cert"
	API_SCHEME=https
	kdaemon_start "$cert" --source "kube:https://127.0.0.1:$API_PORT" --kube-ca-file "$C/ca.crt"
	check "$cert certificate: the daemon says why (TLS: $why)" wait_until 10 log_has "$cert" "$why"
	grep -i 'kube' "$TOPO_DIR/daemon-$cert.log" | grep -i "$why" | head -n 1 | sed 's/^/# /'
	check "$cert certificate: nothing listed from it (the name is not answered)" refused "$EM_FQDN"
	check "$cert certificate: the daemon keeps running" kill -0 "$(cat "$TOPO_DIR/daemon-$cert.pid")"
	stop_pid "$cert" "$(cat "$TOPO_DIR/daemon-$cert.pid")"
	api_stop
done

# ---- EndpointSlices: several slices merged, one deleted through the watch -------
slice_json() { # NAME IP
	cat <<EOF
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"$1","namespace":"default",
 "labels":{"kubernetes.io/service-name":"sliced"}},"addressType":"IPv4",
 "endpoints":[{"addresses":["$2"],"conditions":{"ready":true}}],"ports":[{"name":"web","port":80,"protocol":"TCP"}]}
EOF
}
sliced_svc='{"apiVersion":"v1","kind":"Service","metadata":{"name":"sliced","namespace":"default"},
 "spec":{"clusterIP":"None","ports":[{"name":"web","port":8080,"protocol":"TCP"}]}}'
SLICED=http://sliced.default.svc.cluster.local:8080/
# backends_seen N: N requests, all answered; prints the distinct backends
backends_seen() {
	local i b
	for i in $(seq "$1"); do
		b=$(na curl -sS --max-time 3 "$SLICED") || { echo "request $i failed"; return 1; }
		echo "$b" | grep -o 'backend-2\|Welcome to nginx!' | head -n 1
	done | LC_ALL=C sort -u | tr '\n' ','
}
both_slices() { local s; s=$(backends_seen 8); echo "$s"; [ "$s" = 'Welcome to nginx!,backend-2,' ]; }
only_nginx() { local s; s=$(backends_seen 6); echo "$s"; [ "$s" = 'Welcome to nginx!,' ]; }
ip -n "$NS_PB" addr add 10.244.2.3/24 dev eth0
mkdir -p "$TOPO_DIR/b2"; echo backend-2 > "$TOPO_DIR/b2/index.html"
ip netns exec "$NS_PB" /usr/bin/python3 -m http.server --bind 10.244.2.3 --directory "$TOPO_DIR/b2" 80 >/dev/null 2>&1 &
echo $! > "$TOPO_DIR/b2.pid"
wait_until 15 nb curl -sf --max-time 1 -o /dev/null http://10.244.2.3/ || echo "# backend 2 did not start"
API_SCHEME=http
api_start ""
api upsert "{\"resource\":\"services\",\"objects\":[$sliced_svc]}"
api upsert "{\"resource\":\"endpointslices\",\"objects\":[$(slice_json sliced-a 10.244.2.2),$(slice_json sliced-b 10.244.2.3)]}"
kdaemon_start slices --source "kube:http://127.0.0.1:$API_PORT"
check "EndpointSlices: the service is answered" wait_until 10 answers sliced.default.svc.cluster.local
check "EndpointSlices: two slices merged, both backends serve" both_slices
api delete '{"resource":"endpointslices","namespace":"default","name":"sliced-b"}'
check "EndpointSlices: a slice deleted through the watch -> only the other backend serves" \
	wait_until 10 only_nginx
stop_pid slices "$(cat "$TOPO_DIR/daemon-slices.pid")"
check_log_errors "$TOPO_DIR/daemon-slices.log"
api_stop

# ---- an API server that misbehaves --------------------------------------------
API_SCHEME=http
bad_start notjson
kdaemon_start notjson --source "kube:http://127.0.0.1:$API_PORT"
check "200 with a body that is not JSON: logged as not a list" wait_until 10 log_has notjson 'not a list'
grep 'not a list' "$TOPO_DIR/daemon-notjson.log" | head -n 1 | sed 's/^/# /'
check "... the daemon keeps running" kill -0 "$(cat "$TOPO_DIR/daemon-notjson.pid")"
check "... and retries the list" wait_until 10 sh -c \
	"[ \$(ip netns exec $NS_A curl -sS http://127.0.0.1:$API_PORT/_ctl/requests | grep -o 'GET /api/v1/services' | wc -l) -ge 2 ]"
stop_pid notjson "$(cat "$TOPO_DIR/daemon-notjson.pid")"
api_stop

bad_start garbled
kdaemon_start garbled --source "kube:http://127.0.0.1:$API_PORT"
check "garbled watch: the listed service is answered" wait_until 10 answers good-svc.default.svc.cluster.local
check "garbled watch: the garbage is logged" wait_until 10 log_has garbled 'watch'
grep -i 'watch' "$TOPO_DIR/daemon-garbled.log" | grep -v '^<6>source' | head -n 2 | sed 's/^/# /'
# Like client-go's reflector: a broken stream is watched again from the last
# resourceVersion (a relist is for 410 Gone).
check "garbled watch: the daemon watches again after it" wait_until 15 sh -c \
	"[ \$(ip netns exec $NS_A curl -sS http://127.0.0.1:$API_PORT/_ctl/requests | grep -o 'GET /api/v1/services?[^\"]*' | grep -c 'watch=') -ge 2 ]"
check "garbled watch: the listed service is still answered" answers good-svc.default.svc.cluster.local
stop_pid garbled "$(cat "$TOPO_DIR/daemon-garbled.pid")"
api_stop

topo_result
