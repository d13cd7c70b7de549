#!/usr/bin/env bash
# lb-strategies.sh — the balancer strategies of the real daemon, through real
# connections: one set of three nginx pods behind one Service per strategy
# (each chosen by its edgemesh.kubeedge.io/lb-strategy annotation), pod
# weights 1, 1, 2 from the edgemesh.kubeedge.io/weight annotation.
#
#   em-$$-lb-node: edgemesh-tproxy (file source, --lb-plugin first-backend,
#                  --lb-strategy first-backend), the client (python), client
#                  source addresses 10.245.100.1-8 on lo
#     p1 10.245.1.1 --- eth0 10.245.1.2  em-$$-lb-pod1  nginx :80 :9000 "pod1" (weight 1)
#     p2 10.245.2.1 --- eth0 10.245.2.2  em-$$-lb-pod2  nginx :80 :9000 "pod2" (weight 1)
#     p3 10.245.3.1 --- eth0 10.245.3.2  em-$$-lb-pod3  nginx :80 :9000 "pod3" (weight 2)
#
# Every Service has an L4 port (tcp-id, 9000: balanced per connection) and an
# HTTP port (http, 80: balanced per request on a keep-alive connection when
# the daemon forwards HTTP per request; otherwise that part reports SKIP).
# nginx answers its pod's name; on /slow pod1 waits 40 ms first.
#
# Per connection (L4): round-robin exact 2/2/4 per 8; random chi-square on
# the weights; least-conn and least-request spread held connections by
# weight; consistent-hash keeps each client address on one pod; ClientIP
# affinity likewise around round-robin; the first-backend plugin (chosen by
# configuration) sends everything to pod1; a stopped pod is ejected (clients
# never notice), stays ejected through a commit that rebuilds its Service
# even once it is back up (state carried by address), and comes back after
# the ejection interval (5 s here).
# Per request (HTTP, one keep-alive connection): the same distributions,
# least-request away from the slow pod, consistent-hash by header, a pod
# answering 503 ejected after two in a row.
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/lb-strategies.sh (root)
# Last line: `N passed, N failed` (skips counted on the line before);
# exit status non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_PLUGIN=${EM_PLUGIN:-$(dirname "$EM_BIN")/tests/em-lb-test-plugin.so}
[ "$(id -u)" = 0 ] || { echo "lb-strategies.sh: needs root"; exit 77; }
[ -x "$EM_BIN" ] || { echo "no daemon at $EM_BIN (build first)"; exit 1; }
[ -e "$EM_PLUGIN" ] || { echo "no plugin at $EM_PLUGIN (build first)"; exit 1; }
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so	# nginx-light depends on it
[ -e "$ECHO_MODULE" ] || { echo "SKIP: no $ECHO_MODULE (libnginx-mod-http-echo)"; echo "0 passed, 0 failed"; exit 77; }
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
NS_N="em-$TOPO_ID-lb-node"
NS_P=("" "em-$TOPO_ID-lb-pod1" "em-$TOPO_ID-lb-pod2" "em-$TOPO_ID-lb-pod3")
TOPO_NS="$NS_N ${NS_P[1]} ${NS_P[2]} ${NS_P[3]}"
topo_traps
topo_need root netns nginx python3 dig

nn() { ip netns exec "$NS_N" "$@"; }
skipped=0
skip() { skipped=$((skipped + 1)); echo "skip - $1: $2"; }

# ---- topology -------------------------------------------------------------------
for ns in $TOPO_NS; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
for i in 1 2 3; do
	veth "$NS_N" "p$i" "10.245.$i.1/24" "${NS_P[$i]}" eth0 "10.245.$i.2/24"
done
for c in 1 2 3 4 5 6 7 8; do ip -n "$NS_N" addr add "10.245.100.$c/32" dev lo; done
# connect() needs some route to the fake range before netfilter sees it.
ip -n "$NS_N" route add default via 10.245.1.2

# ---- three nginx pods --------------------------------------------------------------
start_nginx() { # N
	local i=$1 slow d="$TOPO_DIR/nginx$1"
	mkdir -p "$d"
	slow="return 200 \"pod$i\\n\";"
	[ "$i" = 1 ] && slow="echo_sleep 0.04; echo pod$i;"
	boom="return 200 \"pod$i\\n\";"
	[ "$i" = 3 ] && boom="return 503 \"pod$i\\n\";"
	cat > "$d/nginx.conf" <<NGINX
load_module $ECHO_MODULE;
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 512; }
http {
	access_log off;
	client_body_temp_path $d;
	proxy_temp_path $d;
	fastcgi_temp_path $d;
	uwsgi_temp_path $d;
	scgi_temp_path $d;
	keepalive_requests 100000;
	keepalive_timeout 120s;
	default_type text/plain;
	server {
		listen 10.245.$i.2:80;
		listen 10.245.$i.2:9000;
		location / { return 200 "pod$i\\n"; }
		location /slow { $slow }
		location /boom { $boom }
	}
}
NGINX
	ip netns exec "${NS_P[$i]}" nginx -c "$d/nginx.conf" -e "$d/error.log" &
	echo $! > "$TOPO_DIR/nginx$i.pid"
	wait_until 5 pod_listening "$i"
}
pod_listening() { ip netns exec "${NS_P[$1]}" ss -Hltn "sport = :9000" | grep -q .; }
stop_nginx() { # N
	kill "$(cat "$TOPO_DIR/nginx$1.pid")" 2>/dev/null
	wait_until 5 eval "! pod_listening $1"
	rm -f "$TOPO_DIR/nginx$1.pid"
}
for i in 1 2 3; do start_nginx "$i"; done

# ---- manifests ------------------------------------------------------------------------
mkdir -p "$TOPO_DIR/manifests"
{
	for i in 1 2 3; do
		w=1; [ "$i" = 3 ] && w=2
		cat <<POD
---
apiVersion: v1
kind: Pod
metadata:
  name: web-$i
  namespace: default
  labels: {app: web}
  annotations: {edgemesh.kubeedge.io/weight: "$w"}
spec:
  containers:
  - name: nginx
    ports: [{name: http, containerPort: 80}, {name: id, containerPort: 9000}]
status:
  phase: Running
  podIP: 10.245.$i.2
  hostIP: 10.245.$i.2
  conditions: [{type: Ready, status: "True"}]
POD
	done
	svc() { # NAME ANNOTATION|"" [extra spec lines]
		echo "---"
		echo "apiVersion: v1"
		echo "kind: Service"
		echo "metadata:"
		echo "  name: $1"
		echo "  namespace: default"
		[ -n "$2" ] && echo "  annotations: {edgemesh.kubeedge.io/lb-strategy: \"$2\"}"
		echo "spec:"
		echo "  selector: {app: web}"
		echo "  ports: [{name: http, port: 80, targetPort: 80}, {name: tcp-id, port: 9000, targetPort: 9000}]"
		[ $# -gt 2 ] && echo "$3"
		return 0
	}
	svc web-rr round-robin
	svc web-random random
	svc web-lc least-conn
	svc web-lr least-request
	svc web-ch consistent-hash
	svc web-chh "consistent-hash:header=X-User"
	svc web-aff round-robin "  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}"
	svc web-plugin ""
	svc web-eject "round-robin:eject=5s"
	svc web-5xx "round-robin:fails-5xx=2,eject=60s"
} > "$TOPO_DIR/manifests/web.yaml"

# ---- the client --------------------------------------------------------------------------
# lbclient.py MODE HOST PORT N [options]: prints one pod name per answer.
#   seq:  N connections one after the other, one request each (Connection: close)
#   hold: N connections opened and kept open, one keep-alive request each
#   keep: one connection, N requests
# --src IP binds the client address; --path P; --users K sends X-User: user-<i % K>;
# --pause S waits between seq connections; --any-status accepts non-200 answers.
cat > "$TOPO_DIR/lbclient.py" <<'PY'
import socket, sys, time
mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
args, opts, any_status = sys.argv[5:], {}, False
while args:
    if args[0] == "--any-status":
        any_status, args = True, args[1:]
    else:
        opts[args[0]], args = args[1], args[2:]
src, path, users = opts.get("--src"), opts.get("--path", "/"), int(opts.get("--users", "0"))
pause = float(opts.get("--pause", "0"))

def connect():
    s = socket.socket()
    s.settimeout(10)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    return s, s.makefile("rb")

def request(s, f, i, close):
    hdr = "GET %s HTTP/1.1\r\nHost: web\r\n" % path
    if users:
        hdr += "X-User: user-%d\r\n" % (i % users)
    if close:
        hdr += "Connection: close\r\n"
    s.sendall((hdr + "\r\n").encode())
    status = f.readline()
    if not status.startswith(b"HTTP/1.1 200") and not any_status:
        raise SystemExit("bad status %r" % status)
    length, chunked = None, False
    while True:
        line = f.readline().strip()
        if not line:
            break
        k, _, v = line.partition(b":")
        if k.lower() == b"content-length":
            length = int(v)
        if k.lower() == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    body = b""
    if chunked:
        while True:
            size = int(f.readline().strip().split(b";")[0], 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read(length)
    return body.decode().strip()

out = []
if mode == "seq":
    for i in range(n):
        s, f = connect()
        out.append(request(s, f, i, True))
        s.close()
        time.sleep(pause)
elif mode == "hold":
    held = []
    for i in range(n):
        s, f = connect()
        out.append(request(s, f, i, False))
        held.append(s)
    for s in held:
        s.close()
elif mode == "keep":
    s, f = connect()
    for i in range(n):
        out.append(request(s, f, i, i == n - 1))
    s.close()
print("\n".join(out))
PY

client() { nn python3 "$TOPO_DIR/lbclient.py" "$@"; }
# counts FILE: "n1 n2 n3" = answers from pod1, pod2, pod3
counts() { echo "$(grep -cx pod1 "$1") $(grep -cx pod2 "$1") $(grep -cx pod3 "$1")"; }

# chi2_ok "n1 n2 n3" P1 P2 P3: Pearson's statistic under 18.42 (2 degrees of
# freedom, p = 0.0001: a correct strategy fails once in 10,000 runs).
chi2_ok() {
	python3 - "$@" <<'PY'
import sys
obs = [int(x) for x in sys.argv[1].split()]
p = [float(x) for x in sys.argv[2:]]
n = sum(obs)
x = sum((o - n * q) ** 2 / (n * q) for o, q in zip(obs, p))
print("counts %s chi2 %.2f" % (obs, x))
sys.exit(0 if n > 0 and x < 18.42 else 1)
PY
}

fake_ip() { # SERVICE (a few tries: one query may be lost on a busy machine)
	local a t
	for t in 1 2 3 4 5; do
		a=$(nn dig +short +time=1 +tries=1 @10.245.1.2 "$1.default.svc.cluster.local" A |
			grep -E '^198\.18\.' | head -n1)
		[ -n "$a" ] && { echo "$a"; return 0; }
	done
	return 1
}

# ---- the daemon -----------------------------------------------------------------------------
mkdir -p "$TOPO_DIR/state"
# `ip netns exec` directly (it execs the daemon): $! must be the daemon's pid.
ip netns exec "$NS_N" "$EM_BIN" --source "file:$TOPO_DIR/manifests" --state-dir "$TOPO_DIR/state" \
	--node-name lb-node --log-level "${EM_LOG_LEVEL:-info}" \
	--lb-plugin "$EM_PLUGIN" --lb-strategy first-backend \
	>>"$TOPO_DIR/daemon.log" 2>&1 &
echo $! > "$TOPO_DIR/daemon.pid"
check "daemon answers DNS for the services" wait_until 10 sh -c "[ -n \"\$(ip netns exec $NS_N dig +short +time=1 +tries=1 @10.245.1.2 web-eject.default.svc.cluster.local A)\" ]"
declare -A IP
for s in web-rr web-random web-lc web-lr web-ch web-chh web-aff web-plugin web-eject web-5xx; do
	IP[$s]=$(fake_ip "$s")
	[ -n "${IP[$s]}" ] || { tail -n 30 "$TOPO_DIR/daemon.log"; topo_die "no fake IP for $s"; }
done
out=$TOPO_DIR/out

# ---- per connection (L4 port 9000) ------------------------------------------------------
l4_rr() {
	client seq "${IP[web-rr]}" 9000 8 > "$out" || return 1
	local c; c=$(counts "$out"); echo "counts: $c"; [ "$c" = "2 2 4" ]
}
check "L4 round-robin: smooth weighted, exactly 2/2/4 per 8 connections" l4_rr

l4_random() {
	client seq "${IP[web-random]}" 9000 300 > "$out" || return 1
	chi2_ok "$(counts "$out")" 0.25 0.25 0.5
}
check "L4 random: 300 connections follow the weights (chi-square)" l4_random

l4_held() { # SERVICE SLACK: 16 held connections spread 4/4/8 by weight
	client hold "${IP[$1]}" 9000 16 > "$out" || return 1
	local c a b d; c=$(counts "$out"); echo "counts: $c"
	read -r a b d <<<"$c"
	[ $((a - 4)) -le "$2" ] && [ $((4 - a)) -le "$2" ] && [ $((b - 4)) -le "$2" ] &&
		[ $((4 - b)) -le "$2" ] && [ $((d - 8)) -le "$2" ] && [ $((8 - d)) -le "$2" ]
}
check "L4 least-conn: 16 held connections spread 4/4/8 by weight" l4_held web-lc 0
check "L4 least-request: 16 held connections spread 4/4/8 (+-2) by weight" l4_held web-lr 2

# The pause lets the daemon finish a connection before the next: with
# back-to-back connections still open, bounded-load hashing may rightly
# spill a key to another pod.
sticky_per_client() { # SERVICE: 8 client addresses x 6 connections
	local c distinct=0 all=""
	for c in 1 2 3 4 5 6 7 8; do
		client seq "${IP[$1]}" 9000 6 --src "10.245.100.$c" --pause 0.05 > "$out" || return 1
		echo "client 10.245.100.$c: $(sort -u "$out" | tr '\n' ' ')"
		[ "$(sort -u "$out" | wc -l)" = 1 ] || return 1
		all="$all $(head -n1 "$out")"
	done
	distinct=$(tr ' ' '\n' <<<"$all" | grep . | sort -u | wc -l)
	echo "pods over the clients: $distinct"
	[ "$distinct" -ge 2 ]
}
check "L4 consistent-hash: each client address stays on one pod; clients spread" \
	sticky_per_client web-ch
check "L4 sessionAffinity ClientIP (round-robin): each client stays; clients spread" \
	sticky_per_client web-aff

l4_plugin() {
	client seq "${IP[web-plugin]}" 9000 10 > "$out" || return 1
	local c; c=$(counts "$out"); echo "counts: $c"; [ "$c" = "10 0 0" ]
}
check "L4 first-backend plugin (chosen by configuration) serves every connection from pod1" l4_plugin

# ---- ejection and re-admission (web-eject: round-robin, eject=5s) -------------------------
stop_nginx 3
eject_none_from_pod3() {
	client seq "${IP[web-eject]}" 9000 8 > "$out" || return 1
	local c; c=$(counts "$out"); echo "counts: $c"
	[ "$(grep -cx pod3 "$out")" = 0 ] && [ "$(wc -l < "$out")" = 8 ]
}
generation() { # the registry generation, from a SIGUSR1 stats line
	local pid; pid=$(cat "$TOPO_DIR/daemon.pid")
	kill -USR1 "$pid"; sleep 0.1
	grep 'registry: generation' "$TOPO_DIR/daemon.log" | tail -n1 | sed -E 's/.*generation ([0-9]+).*/\1/'
}
t_eject=$(date +%s%N)
check "pod3 stopped: every connection still served (retried), none from pod3" eject_none_from_pod3
# A commit that rebuilds web-eject (a new label: a new Service object, new
# snapshot port, new balancer): pod3's ejection must come along.
gen0=$(generation)
sed 's/^  name: web-eject$/  name: web-eject\n  labels: {rev: "2"}/' "$TOPO_DIR/manifests/web.yaml" \
	> "$TOPO_DIR/web.yaml.new" && mv "$TOPO_DIR/web.yaml.new" "$TOPO_DIR/manifests/web.yaml"
gen_moved() { local g; g=$(generation); echo "generation $gen0 -> $g"; [ "$g" -gt "$gen0" ]; }
check "the manifest change is committed (registry generation moves)" wait_until 3 gen_moved
start_nginx 3
if [ $(( ($(date +%s%N) - t_eject) / 1000000 )) -lt 4000 ]; then
	check "pod3 back, service rebuilt: still ejected (state carried), none from pod3" \
		eject_none_from_pod3
else
	skip "pod3 back, service rebuilt: still ejected" "the machine took over 4 s to get here"
fi
left=$(( 5300 - ($(date +%s%N) - t_eject) / 1000000 ))
[ "$left" -gt 0 ] && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
readmitted() {
	client seq "${IP[web-eject]}" 9000 8 > "$out" || return 1
	local c; c=$(counts "$out"); echo "counts: $c"; [ "$(grep -cx pod3 "$out")" -ge 2 ]
}
check "after the ejection interval pod3 is re-admitted (within 3 s more)" wait_until 3 readmitted

# ---- per request (HTTP port 80, one keep-alive connection) ------------------------------
if ! "$EM_BIN" --help 2>/dev/null | grep -q -- '--http-keepalive-timeout'; then
	why="this build forwards HTTP ports at L4 (no per-request forwarder yet)"
	for t in round-robin random least-conn least-request consistent-hash-header \
		 first-backend-plugin 5xx-ejection; do
		skip "HTTP per request: $t" "$why"
	done
else
	http_rr() {
		client keep "${IP[web-rr]}" 80 16 > "$out" || return 1
		local c; c=$(counts "$out"); echo "counts: $c"; [ "$c" = "4 4 8" ]
	}
	check "HTTP round-robin per request on one connection: exactly 4/4/8 per 16" http_rr
	http_dist() { # SERVICE
		client keep "${IP[$1]}" 80 300 > "$out" || return 1
		chi2_ok "$(counts "$out")" 0.25 0.25 0.5
	}
	check "HTTP random per request: 300 requests follow the weights" http_dist web-random
	check "HTTP least-conn per request (all idle: ties drawn by weight)" http_dist web-lc
	http_lr() {
		client keep "${IP[web-lr]}" 80 60 --path /slow > "$out" || return 1
		local c; c=$(counts "$out"); echo "counts: $c"
		[ "$(grep -cx pod1 "$out")" -le 6 ]
	}
	check "HTTP least-request per request: the slow pod (40 ms) gets at most 10 %" http_lr
	http_chh() {
		client keep "${IP[web-chh]}" 80 64 --users 8 > "$out" || return 1
		python3 - "$out" <<'PY'
import sys
pods = open(sys.argv[1]).read().split()
by_user = {}
for i, p in enumerate(pods):
    by_user.setdefault(i % 8, set()).add(p)
print({u: sorted(s) for u, s in by_user.items()})
sys.exit(0 if all(len(s) == 1 for s in by_user.values())
         and len(set().union(*by_user.values())) >= 2 else 1)
PY
	}
	check "HTTP consistent-hash:header=X-User: each user on one pod, users spread" http_chh
	http_plugin() {
		client keep "${IP[web-plugin]}" 80 10 > "$out" || return 1
		local c; c=$(counts "$out"); echo "counts: $c"; [ "$c" = "10 0 0" ]
	}
	check "HTTP first-backend plugin serves every request from pod1" http_plugin
	http_5xx() { # pod3 answers 503 on /boom: two in a row eject it (fails-5xx=2)
		client keep "${IP[web-5xx]}" 80 24 --path /boom --any-status > "$out" || return 1
		local c; c=$(counts "$out"); echo "counts: $c"
		[ "$(grep -cx pod3 "$out")" = 2 ] && [ "$(tail -n 12 "$out" | grep -cx pod3)" = 0 ]
	}
	check "HTTP 5xx: a pod answering 503 is ejected after fails-5xx=2 in a row" http_5xx
fi

stop_pid lb "$(cat "$TOPO_DIR/daemon.pid")"
check_log_errors "$TOPO_DIR/daemon.log"
lb_line=$(grep 'lb: service ports with state' "$TOPO_DIR/daemon.log" | tail -n1)
echo "# ${lb_line#<6>}"
check "the daemon's last counters show the ejection and nothing left in flight" \
	sh -c "echo '$lb_line' | grep -E 'ejections [1-9][0-9]*, in flight 0,'"
[ "$failed" = 0 ] || { echo "# daemon log:"; tail -n 40 "$TOPO_DIR/daemon.log"; }
[ "$skipped" = 0 ] || echo "# $skipped skipped"
topo_result
