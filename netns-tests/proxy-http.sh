#!/usr/bin/env bash
# proxy-http.sh — the HTTP/1.x forwarder of the real daemon, end to end:
# per-request balancing over keep-alive, pods added under an open
# connection, bodies (length, chunked, 100-continue, pipelining, large up and
# down by checksum), WebSocket, failures (502/503/504, mid-response death)
# and the smuggling set, proven by the backends' own logs.
#
#   em-$$-node: edgemesh-tproxy (--capture-cidr 10.96.0.0/16), curl, clients
#     |- n1 10.244.1.1 ---- eth0 10.244.1.2  em-$$-p1: nginx :80, sum :8080
#     |- n2 10.244.2.1 ---- eth0 10.244.2.2  em-$$-p2: nginx :80, die :8081, silent :8082
#     |- n3 10.244.3.1 ---- eth0 10.244.3.2  em-$$-p3: nginx :80 (its pod is added later)
#
#   services (ClusterIP, captured; ports named http-* are HTTP ports)
#     web     10.96.0.10:80   -> pods app=web :80  (p1, p2; p3 later)
#     sum     10.96.0.11:80   -> p1:8080  (checksums, WebSocket echo)
#     die     10.96.0.12:80   -> p2:8081  (dies mid-response)
#     silent  10.96.0.13:80   -> p2:8082  (never answers)
#     refuse  10.96.0.14:80   -> app=web :8099 (nobody listens)
#     none    10.96.0.15:80   -> no pod
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/proxy-http.sh
# Needs root; every namespace, process and file carries $$ and goes on exit.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
[ "$(id -u)" = 0 ] || { echo "proxy-http.sh: needs root"; exit 77; }
. "$here/lib/topology.sh"
NS_N="em-$TOPO_ID-node"
NS_P1="em-$TOPO_ID-p1"
NS_P2="em-$TOPO_ID-p2"
NS_P3="em-$TOPO_ID-p3"
TOPO_NS="$NS_N $NS_P1 $NS_P2 $NS_P3"
topo_traps
topo_need root netns nginx python3 curl
BACKEND=$here/../tests/proxy/http-backend.py
CLIENT=$here/../tests/proxy/http-client.py
D=$TOPO_DIR

nn() { ip netns exec "$NS_N" "$@"; }
np() { local i=$1; shift; ip netns exec "em-$TOPO_ID-p$i" "$@"; }

setup_net() {
	local i
	for ns in $TOPO_NS; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	for i in 1 2 3; do
		veth "$NS_N" "n$i" "10.244.$i.1/24" "em-$TOPO_ID-p$i" eth0 "10.244.$i.2/24"
		ip -n "em-$TOPO_ID-p$i" route add default via "10.244.$i.1"
	done
	# connect() to a ClusterIP needs a route before the capture sees it.
	ip -n "$NS_N" route add 10.96.0.0/16 via 10.244.1.2
}

start_nginx() { # POD
	local i=$1 dir=$D/nginx-$1
	mkdir -p "$dir/html"
	echo "p$i" > "$dir/html/index.html"
	ln -s "$D/big.bin" "$dir/html/big.bin"
	cat > "$dir/nginx.conf" <<NGINX
daemon off;
user root root;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 512; }
http {
	access_log $dir/access.log;
	client_body_temp_path $dir;
	proxy_temp_path $dir;
	fastcgi_temp_path $dir;
	uwsgi_temp_path $dir;
	scgi_temp_path $dir;
	server { listen 10.244.$i.2:80; root $dir/html; }
}
NGINX
	np "$i" nginx -c "$dir/nginx.conf" -e "$dir/error.log" &
	echo $! > "$D/nginx-$i.pid"
	wait_until 5 listening "np $i" -ltn 80
}

start_backend() { # POD MODE PORT
	np "$1" python3 "$BACKEND" "$2" "p$1" "10.244.$1.2" "$3" "$D/$2.log" &
	echo $! > "$D/backend-$2.pid"
	wait_until 5 listening "np $1" -ltn "$3"
}

pod() { # NAME IP LABEL
	cat <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $1, namespace: default, labels: { app: $3 } }
spec: { nodeName: node }
status:
  phase: Running
  podIP: $2
  hostIP: 10.244.1.1
  conditions: [ { type: Ready, status: "True" } ]
---
YAML
}

service() { # NAME CLUSTERIP SELECTOR TARGETPORT
	cat <<YAML
apiVersion: v1
kind: Service
metadata: { name: $1, namespace: default }
spec:
  clusterIP: $2
  selector: { app: $3 }
  ports: [ { name: http-$1, port: 80, protocol: TCP, targetPort: $4 } ]
---
YAML
}

manifests() {
	mkdir -p "$D/manifests"
	{
		pod p1 10.244.1.2 web
		pod p2 10.244.2.2 web
		pod sum 10.244.1.2 sum
		pod die 10.244.2.2 die
		pod silent 10.244.2.2 silent
		service web 10.96.0.10 web 80
		service sum 10.96.0.11 sum 8080
		service die 10.96.0.12 die 8081
		service silent 10.96.0.13 silent 8082
		service refuse 10.96.0.14 web 8099
		service none 10.96.0.15 nothing 80
	} > "$D/manifests/base.yaml"
}

code_of() { # URL [curl args]: the status code curl saw
	local url=$1; shift
	nn curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$url"
}

# ---- checks ------------------------------------------------------------------

ready() { [ "$(code_of http://10.96.0.10/)" = 200 ]; }

curl_page() { nn curl -sS --max-time 5 http://10.96.0.10/ | grep -qx 'p[12]'; }

hundred_on_one() {
	local out conns
	out=$(nn curl -sS --max-time 20 -w '%{num_connects}\n' "http://10.96.0.10/?[1-100]")
	conns=$(printf '%s\n' "$out" | grep -x '[0-9]*' | awk '{ s += $1 } END { print s }')
	echo "connections opened: $conns"
	printf '%s\n' "$out" | grep -x 'p[0-9]' | sort | uniq -c
	[ "$conns" = 1 ] && [ "$(printf '%s\n' "$out" | grep -cx p1)" = 50 ] &&
		[ "$(printf '%s\n' "$out" | grep -cx p2)" = 50 ]
}

pod_added_under_open_conn() {
	local out
	pod p3 10.244.3.2 web > "$D/p3.yaml"
	# Between the halves: the file source notices (inotify) and publishes.
	out=$(nn python3 "$CLIENT" addpod 10.96.0.10 80 30 \
		sh -c "mv '$D/p3.yaml' '$D/manifests/p3.yaml' && sleep 1")
	printf '%s\n' "$out" | sort | uniq -c
	printf '%s\n' "$out" | tail -n 15 | grep -qx p3 && ! printf '%s\n' "$out" | head -n 15 | grep -qx p3
}

sum_of() { sha256sum "$1" | cut -d' ' -f1; }

upload_length() {
	local out; out=$(nn curl -sS --max-time 60 --data-binary "@$D/big.bin" http://10.96.0.11/up)
	echo "$out"; [ "$out" = "p1 $(stat -c %s "$D/big.bin") $(sum_of "$D/big.bin")" ]
}

upload_chunked() {
	local out
	out=$(nn curl -sS --max-time 60 -H 'Transfer-Encoding: chunked' --data-binary "@$D/mid.bin" \
		http://10.96.0.11/up)
	echo "$out"; [ "$out" = "p1 $(stat -c %s "$D/mid.bin") $(sum_of "$D/mid.bin")" ]
}

upload_continue() {
	local out
	out=$(nn curl -sS -v --max-time 20 -H 'Expect: 100-continue' --data-binary "@$D/mid.bin" \
		http://10.96.0.11/up 2>"$D/continue.err")
	echo "$out"; grep -q '< HTTP/1.1 100 Continue' "$D/continue.err" &&
		[ "$out" = "p1 $(stat -c %s "$D/mid.bin") $(sum_of "$D/mid.bin")" ]
}

download() {
	local got; got=$(nn curl -sS --max-time 60 http://10.96.0.10/big.bin | sha256sum | cut -d' ' -f1)
	echo "got $got"; [ "$got" = "$(sum_of "$D/big.bin")" ]
}

pipelined() {
	local out; out=$(nn python3 "$CLIENT" pipeline 10.96.0.11 80)
	echo "$out"; [ "$out" = "$(printf '200 p1 3\n200 p1 1000\n200 p1 70000')" ]
}

websocket() { [ "$(nn python3 "$CLIENT" websocket 10.96.0.11 80)" = ok ]; }

died_mid_response() {
	local rc
	nn curl -sS --max-time 10 -o "$D/die.out" http://10.96.0.12/; rc=$?
	echo "curl exit $rc, $(stat -c %s "$D/die.out") bytes"
	# 18: partial file, 56: receive failure (reset): never a clean 0.
	[ "$rc" = 18 ] || [ "$rc" = 56 ]
}

silent_504() {
	local t0 t1 code
	t0=$(date +%s%N); code=$(code_of http://10.96.0.13/); t1=$(date +%s%N)
	echo "code $code after $(( (t1 - t0) / 1000000 )) ms"
	[ "$code" = 504 ] && [ $(( (t1 - t0) / 1000000 )) -lt 4000 ]
}

status_is() { local c; c=$(code_of "$1"); echo "code $c"; [ "$c" = "$2" ]; }

smuggle() { # NAME BYTES...: sent raw to the sum service; the answer must be 400/501/505
	local f=$D/vec-$1 out; shift
	printf "$@" > "$f"
	out=$(nn timeout 10 python3 "$CLIENT" raw 10.96.0.11 80 "$f")
	printf '%s\n' "$out" | head -n 3
	printf '%s\n' "$out" | head -n 1 | grep -Eq '^HTTP/1.1 (400|501|505)'
}

no_smuggled_seen() {
	wc -l "$D/sum.log"
	! cat "$D"/nginx-*/access.log "$D/sum.log" | grep -i smuggled
}

stats_line() { # the daemon's counters (SIGUSR1): the smuggling set counted
	local before line
	before=$(grep -c 'forwarder http' "$D/daemon-n.log")
	kill -USR1 "$(daemon_pid n)"
	wait_until 5 sh -c "[ \$(grep -c 'forwarder http' '$D/daemon-n.log') -gt $before ]"
	line=$(grep 'forwarder http' "$D/daemon-n.log" | tail -n 1)
	echo "$line"
	printf '%s\n' "$line" | grep -Eq 'bad requests ([1-9][0-9]+)' &&
		printf '%s\n' "$line" | grep -Eq 'timeouts head [0-9]+ response [1-9]'
}

# ---- run ---------------------------------------------------------------------

setup_net
head -c $((32 * 1024 * 1024)) /dev/urandom > "$D/big.bin"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom > "$D/mid.bin"
for i in 1 2 3; do start_nginx "$i"; done
start_backend 1 sum 8080
start_backend 2 die 8081
start_backend 2 silent 8082
manifests
mkdir -p "$D/state"
ip netns exec "$NS_N" "$EM_BIN" --source "file:$D/manifests" --state-dir "$D/state" --node-name node \
	--capture-cidr 10.96.0.0/16 --dns-host no --dns-pods no \
	--http-response-timeout-ms 1500 --log-level info >>"$D/daemon-n.log" 2>&1 &
echo $! > "$D/daemon-n.pid"

check "daemon forwards HTTP (curl)" wait_until 10 ready
check "curl gets a pod's page" curl_page
check "100 requests on one keep-alive connection reach every backend" hundred_on_one
check "a pod added under an open keep-alive connection gets its requests" pod_added_under_open_conn
check "32 MiB upload (Content-Length) arrives intact" upload_length
check "chunked upload arrives intact" upload_chunked
check "Expect: 100-continue" upload_continue
check "32 MiB download intact" download
check "pipelined requests answered in order" pipelined
check "WebSocket upgrade and echo through the tunnel" websocket
check "backend dying mid-response closes the client connection" died_mid_response
check "backend never answering: 504 within the response timeout" silent_504
check "every backend refusing: 502" status_is http://10.96.0.14/ 502
check "no backend: 503" status_is http://10.96.0.15/ 503
check "smuggling: CL + TE" smuggle clte 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: TE + CL" smuggle tecl 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n0\r\n\r\n'
check "smuggling: space in a header name" smuggle space 'POST / HTTP/1.1\r\nHost: t\r\nContent Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: bare LF" smuggle lf 'POST / HTTP/1.1\nHost: t\nContent-Length: 0\n\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: obs-fold" smuggle fold 'GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n Content-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: duplicate Content-Length" smuggle dupcl 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: Content-Length list" smuggle listcl 'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0, 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: TE not ending in chunked" smuggle tenotlast 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: TE on HTTP/1.0" smuggle te10 'POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: non-hex chunk size" smuggle badsize 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: chunk data not followed by CRLF" smuggle nocrlf 'POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: NUL in a field value" smuggle nul 'GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "smuggling: request line without a valid version" smuggle nover 'GET / HTTP/9\r\nHost: t\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n'
check "no backend ever saw a smuggled request (their own logs)" no_smuggled_seen
check "counters (SIGUSR1)" stats_line
stop_daemon n
check_log_errors "$D/daemon-n.log"
topo_result
