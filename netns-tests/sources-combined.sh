#!/usr/bin/env bash
# sources-combined.sh — one daemon, two sources: a manifest directory and a
# (fake) API server. Both define the service `web` with different backends.
# Checks the documented precedence (src/registry/registry.h: for each
# object the copy from the source registered first wins, and the daemon
# registers sources in the order of its --source flags), that the other copy
# takes over without a client error when the winner deletes its own, that
# the winner takes back over when it re-adds it, that the order the copies
# arrive in does not matter, and that services only one source knows are
# served. Within the file source, two files defining the same object: the
# first in name order at start wins.
#
#   edge-node-a 10.77.0.1 ------------------------ 10.77.0.2 edge-node-b
#   edgemesh-tproxy --source file:DIR --source kube:http://127.0.0.1:PORT
#   fake-apiserver on 127.0.0.1:PORT (node-a's loopback)      |
#   clients: curl loops (host)                         pod-b (veth)
#     |                                 10.244.2.2 nginx :80       "nginx" (dup-b.yaml)
#   dns 10.53.0.2 (dnsmasq)             10.244.2.3 http.server :80 "backend-file"
#                                       10.244.2.4 http.server :80 "backend-kube"
#
#   service    file copy (DIR/web.yaml)        kube copy
#   web        app=from-file -> backend-file   app=from-kube -> backend-kube
#   only-file  app=from-file -> backend-file   -
#   only-kube  -                               app=from-kube -> backend-kube
#   dup        dup-a.yaml: app=from-file, dup-b.yaml: app=nginx (same source)
#   dup2       dup2-b.yaml: app=nginx at start, dup2-a.yaml: app=from-file later
# Pods: file-0 (app=from-file, 10.244.2.3) and nginx-0 (app=nginx,
# 10.244.2.2) in the directory, kube-0 (app=from-kube, 10.244.2.4) in the
# API server.
# (netns-tests/lib/topology.sh, namespaces renamed em-combined-$$-*)
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/sources-combined.sh
# Prints `N passed, N failed` last; exits non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tools=$here/../tools
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=/dev/null
. "$here/lib/topology.sh"
NS_A="em-combined-$$-node-a"
NS_B="em-combined-$$-node-b"
NS_PA="em-combined-$$-pod-a"
NS_PB="em-combined-$$-pod-b"
NS_DNS="em-combined-$$-dns"
TOPO_NS="$NS_A $NS_B $NS_PA $NS_PB $NS_DNS"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl

DIR=$TOPO_DIR/manifests
ms() { echo $(( $(date +%s%N) / 1000000 )); }
fqdn() { echo "$1.default.svc.cluster.local"; }

# ---- objects (JSON: the API server takes it, and JSON is YAML) ----
pod_json() { # NAME APP IP
	cat <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","labels":{"app":"$2"}},
 "spec":{"nodeName":"edge-node-b","containers":[{"name":"web","ports":[{"name":"http","containerPort":80}]}]},
 "status":{"phase":"Running","podIP":"$3","hostIP":"10.77.0.2","conditions":[{"type":"Ready","status":"True"}]}}
EOF
}
svc_json() { # NAME APP
	cat <<EOF
{"apiVersion":"v1","kind":"Service","metadata":{"name":"$1","namespace":"default"},
 "spec":{"clusterIP":"None","selector":{"app":"$2"},"ports":[{"name":"http","port":8080,"protocol":"TCP","targetPort":80}]}}
EOF
}
# Config-management style: a hidden temporary file renamed over the target.
put() { # NAME < content: DIR/NAME
	cat > "$DIR/.$1.tmp" && mv -f "$DIR/.$1.tmp" "$DIR/$1"
}

# ---- the API server, on node-a's loopback ----
api_start() {
	ip netns exec "$NS_A" /usr/bin/python3 "$tools/fake-apiserver.py" --port 0 \
		> "$TOPO_DIR/api.out" 2>"$TOPO_DIR/api.err" &
	echo $! > "$TOPO_DIR/api.pid"
	wait_until 5 grep -q PORT "$TOPO_DIR/api.out" || { echo "fake-apiserver did not start"; cat "$TOPO_DIR/api.err"; exit 1; }
	API_PORT=$(awk '/PORT/ {print $2}' "$TOPO_DIR/api.out")
}
api() { # VERB JSON
	na curl -sS --fail -X POST --data-binary "$2" "http://127.0.0.1:$API_PORT/_ctl/$1" >/dev/null
}
kube_put_web() { api upsert "{\"resource\":\"services\",\"objects\":[$(svc_json web from-kube)]}"; }
kube_del_web() { api delete '{"resource":"services","namespace":"default","name":"web"}'; }

# ---- backends ----
backend_start() { # IP BODY
	ip -n "$NS_PB" addr add "$1/24" dev eth0
	mkdir -p "$TOPO_DIR/www-$1" && echo "$2" > "$TOPO_DIR/www-$1/index.html"
	ip netns exec "$NS_PB" /usr/bin/python3 -m http.server --bind "$1" --directory "$TOPO_DIR/www-$1" 80 >/dev/null 2>&1 &
	echo $! > "$TOPO_DIR/http-$1.pid"
	# (not `ss -H`: it exits 0 with no match; http.server listens only
	# after a reverse lookup of its address, seconds in a namespace)
	wait_until 15 nb curl -sf --max-time 1 -o /dev/null "http://$1/" || { echo "backend $1 did not start"; exit 1; }
}

# ---- probes ----
fake_ip() { na dig +short +time=1 +tries=1 @10.53.0.2 "$(fqdn "$1")" A | grep '^198\.18\.'; }
answers() { fake_ip "$1" >/dev/null; }
# Not answered by us, with positive evidence: the real resolver (dnsmasq,
# --no-resolv) answered REFUSED without an address, and the daemon runs.
no_answer() {
	local out; out=$(na dig +time=1 +tries=1 @10.53.0.2 "$(fqdn "$1")" A) || return 1
	grep -q 'status: REFUSED' <<<"$out" && ! grep -q '198\.18\.' <<<"$out" &&
		kill -0 "$(cat "$TOPO_DIR/daemon-$DAEMON.pid")"
}
# generation NAME: the registry's generation, from a fresh SIGUSR1 counter line.
generation() {
	local log=$TOPO_DIR/daemon-$1.log n
	n=$(grep -c '^<6>registry: generation' "$log")
	kill -USR1 "$(cat "$TOPO_DIR/daemon-$1.pid")"
	wait_until 5 sh -c "[ \$(grep -c '^<6>registry: generation' '$log') -gt $n ]" || return 1
	grep '^<6>registry: generation' "$log" | tail -n 1 | sed 's/.*generation \([0-9]*\).*/\1/'
}
# committed NAME G0: wait until the registry has published past generation G0
# (the change just made was taken in), instead of sleeping and hoping.
committed() {
	local deadline=$(( $(ms) + 10000 )) g
	while g=$(generation "$1") && [ "$g" -le "$2" ]; do
		[ "$(ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
	[ -n "$g" ]
}
body() { na curl -sS --max-time 2 "http://$(fqdn "$1"):8080/"; }
# served_by SVC TEXT: 6 requests in a row all answered by the backend whose
# page holds TEXT (round robin over the service's backends would show any other).
served_by() {
	local i b
	for i in 1 2 3 4 5 6; do
		b=$(body "$1") || { echo "request $i failed"; return 1; }
		[[ $b == *"$2"* ]] || { echo "request $i answered by: $b"; return 1; }
	done
}
# took T0 SVC TEXT: polls one request every 10 ms until TEXT answers;
# prints the ms since T0 (each request itself takes ~5-15 ms).
took() {
	local t0=$1 deadline=$(( $(ms) + 10000 )) b
	until b=$(body "$2" 2>/dev/null) && [[ $b == *"$3"* ]]; do
		[ "$(ms)" -lt "$deadline" ] || { echo "not within 10 s"; return; }
		sleep 0.01
	done
	echo "$(( $(ms) - t0 )) ms"
}
who() { # dup2: which file's copy serves
	local b; b=$(body "$1") || { echo "error"; return; }
	[[ $b == *backend-file* ]] && echo "dup2-a.yaml (added later)" || echo "dup2-b.yaml (present at start)"
}
clients_start() { # SVC: 3 curl loops, one line per request: ok / FAIL
	local i
	for i in 1 2 3; do
		ip netns exec "$NS_A" sh -c "while [ ! -e $TOPO_DIR/clients.stop ]; do
			if curl -sS --max-time 3 -o /dev/null -w '%{http_code}\n' http://$(fqdn "$1"):8080/ 2>&1 | grep -q '^200\$'; then echo ok; else echo FAIL; fi
			sleep 0.05; done" > "$TOPO_DIR/client-$i.log" 2>&1 &
		echo $! > "$TOPO_DIR/client-$i.pid"
	done
}
clients_stop() {
	local i
	touch "$TOPO_DIR/clients.stop"
	for i in 1 2 3; do wait "$(cat "$TOPO_DIR/client-$i.pid")" 2>/dev/null; rm -f "$TOPO_DIR/client-$i.pid"; done
	rm -f "$TOPO_DIR/clients.stop"
}
clients_clean() {
	local ok fail
	ok=$(cat "$TOPO_DIR"/client-*.log | grep -c '^ok$')
	fail=$(cat "$TOPO_DIR"/client-*.log | grep -vc '^ok$')
	echo "requests: $ok ok, $fail failed"
	rm -f "$TOPO_DIR"/client-*.log
	[ "$ok" -gt 10 ] && [ "$fail" = 0 ]
}

daemon_start() { # NAME SOURCE...
	local name=$1 src args=(); shift
	DAEMON=$name
	for src in "$@"; do args+=(--source "$src"); done
	mkdir -p "$TOPO_DIR/state-$name"
	ip netns exec "$NS_A" "$EM_BIN" "${args[@]}" --state-dir "$TOPO_DIR/state-$name" --node-name edge-node-a \
		--log-level "${EM_LOG_LEVEL:-info}" >>"$TOPO_DIR/daemon-$name.log" 2>&1 &
	echo $! > "$TOPO_DIR/daemon-$name.pid"
}
daemon_stop() { # NAME
	stop_pid "$1" "$(cat "$TOPO_DIR/daemon-$1.pid")"
	check "$1: the rules are gone once it has exited" \
		sh -c "! ip netns exec $NS_A nft list table inet edgemesh"
	check_log_errors "$TOPO_DIR/daemon-$1.log"
	[ "$failed" = 0 ] || { echo "# daemon log ($1):"; tail -n 30 "$TOPO_DIR/daemon-$1.log"; }
	[ -n "${EM_KEEP_LOG:-}" ] && cp "$TOPO_DIR/daemon-$1.log" "$EM_KEEP_LOG.$1"
}

topo_network
topo_dnsmasq
topo_nginx
backend_start 10.244.2.3 backend-file
backend_start 10.244.2.4 backend-kube
api_start
api upsert "{\"resource\":\"pods\",\"objects\":[$(pod_json kube-0 from-kube 10.244.2.4)]}"
api upsert "{\"resource\":\"services\",\"objects\":[$(svc_json web from-kube),$(svc_json only-kube from-kube)]}"
mkdir -p "$DIR"
pod_json file-0 from-file 10.244.2.3 | put pods.json
pod_json nginx-0 nginx 10.244.2.2 | put pods-nginx.json
svc_json web from-file | put web.yaml
svc_json only-file from-file | put only-file.yaml
svc_json dup from-file | put dup-a.yaml
svc_json dup nginx | put dup-b.yaml
svc_json dup2 nginx | put dup2-b.yaml

# ---- file first ----
# web's fake IP comes from the state file: an address the hash of the name
# would not give, so keeping it proves the mapping is read and kept.
mkdir -p "$TOPO_DIR/state-ff"
printf 'default/web 198.18.77.77\n' > "$TOPO_DIR/state-ff/fake-ips"
daemon_start ff "file:$DIR" "kube:http://127.0.0.1:$API_PORT"
check "file first: daemon up" wait_until 10 na nft list table inet edgemesh
check "file first: kube source listed (only-kube answered)" wait_until 10 answers only-kube
check "file first: web answered" answers web
check "file first: web served by the file copy (first --source wins)" served_by web backend-file
check "file first: only-file served" served_by only-file backend-file
check "file first: only-kube served" served_by only-kube backend-kube
check "file first: dup (two files) served by dup-a.yaml's copy (first in name order)" served_by dup backend-file
# A file added later with an object an existing file holds: documented
# (registry.h) to rank after the files already seen, whatever its name. So
# which copy wins depends on arrival here and on name order after a
# restart: reported, not counted.
g=$(generation ff); svc_json dup2 from-file | put dup2-a.yaml
check "file first: dup2-a.yaml taken in" committed ff "$g"
echo "# file first: dup2 in dup2-b.yaml at start, dup2-a.yaml added later: served by $(who dup2)"
WEB_IP=$(fake_ip web)
check "file first: web has the fake IP from the state file" test "$WEB_IP" = 198.18.77.77

clients_start web
sleep 0.3
# The winner deletes its copy: the kube copy takes over, the service never
# stops existing, so no client may see an error.
t0=$(ms); rm "$DIR/web.yaml"
echo "# file first: web.yaml removed -> kube copy in use: $(took "$t0" web backend-kube)"
check "file first: file copy removed -> kube copy takes over" wait_until 10 served_by web backend-kube
check "file first: same fake IP after the takeover" test "$(fake_ip web)" = "$WEB_IP"
# The winner adds it back (it arrives after the kube copy): it wins again.
t0=$(ms); svc_json web from-file | put web.yaml
echo "# file first: web.yaml back -> file copy in use: $(took "$t0" web backend-file)"
check "file first: file copy back -> file copy wins again" wait_until 10 served_by web backend-file
# The loser deletes and re-adds its copy: nothing visible changes.
g=$(generation ff); kube_del_web
check "file first: kube copy deleted -> taken in" committed ff "$g"
check "file first: kube copy deleted -> still the file copy" served_by web backend-file
g=$(generation ff); kube_put_web
check "file first: kube copy re-added -> taken in" committed ff "$g"
check "file first: kube copy re-added -> still the file copy" served_by web backend-file
# The kube copy changes (new selector: the nginx pod): still not used.
g=$(generation ff)
api upsert "{\"resource\":\"services\",\"objects\":[$(svc_json web nginx)]}"
check "file first: kube copy changed -> taken in" committed ff "$g"
check "file first: kube copy changed -> still the file copy" served_by web backend-file
kube_put_web
# The winner changes its copy: used at once.
svc_json web nginx | put web.yaml
check "file first: file copy changed (selector app=nginx) -> nginx serves" wait_until 10 served_by web 'Welcome to nginx!'
svc_json web from-file | put web.yaml
check "file first: file copy changed back -> backend-file" wait_until 10 served_by web backend-file
clients_stop
check "file first: no client error on web through takeovers and changes" clients_clean
echo "# web: $(sed -n 's/^requests: //p' "$TOPO_DIR/check.out") (3 curl loops)"

# The file copy of dup-a.yaml goes: dup-b.yaml's copy takes over.
rm "$DIR/dup-a.yaml"
check "file first: dup-a.yaml removed -> dup-b.yaml's copy serves" wait_until 10 served_by dup 'Welcome to nginx!'
# Both copies gone: the service is gone.
rm "$DIR/web.yaml"; kube_del_web
check "file first: both copies of web deleted -> no longer answered" wait_until 10 no_answer web
check "file first: only-kube still served" served_by only-kube backend-kube
kube_put_web
check "file first: web re-added by kube only -> kube copy" wait_until 10 served_by web backend-kube
check "file first: web got its fake IP back" test "$(fake_ip web)" = "$WEB_IP"
daemon_stop ff

# ---- kube first: the same data, the other order ----
svc_json web from-file | put web.yaml
svc_json dup from-file | put dup-a.yaml
daemon_start kf "kube:http://127.0.0.1:$API_PORT" "file:$DIR"
check "kube first: daemon up" wait_until 10 na nft list table inet edgemesh
check "kube first: web answered" wait_until 10 answers web
check "kube first: web served by the kube copy (first --source wins)" served_by web backend-kube
check "kube first: only-file served" served_by only-file backend-file
check "kube first: only-kube served" served_by only-kube backend-kube
echo "# kube first (restarted, both dup2 files present at start): dup2 served by $(who dup2 | sed 's/ (.*//')"
clients_start web
sleep 0.3
t0=$(ms); kube_del_web
echo "# kube first: kube copy deleted -> file copy in use: $(took "$t0" web backend-file)"
check "kube first: kube copy deleted -> file copy takes over" wait_until 10 served_by web backend-file
t0=$(ms); kube_put_web
echo "# kube first: kube copy back -> kube copy in use: $(took "$t0" web backend-kube)"
check "kube first: kube copy back -> kube copy wins again" wait_until 10 served_by web backend-kube
clients_stop
check "kube first: no client error on web through the takeovers" clients_clean
echo "# web: $(sed -n 's/^requests: //p' "$TOPO_DIR/check.out") (3 curl loops)"
daemon_stop kf

topo_result
