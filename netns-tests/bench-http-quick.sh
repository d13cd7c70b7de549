#!/usr/bin/env bash
# bench-http-quick.sh — indicative numbers to steer the HTTP forwarder (the
# full side-by-side benchmark is another script): 1 KiB GETs with wrk -t2
# -c50 through the daemon, through HAProxy 2.6 (mode http, http-reuse
# always) and direct to a backend, ROUNDS times interleaved; prints
# requests/s, p99 and the proxy's CPU time per request (utime+stime from
# /proc: steadier than requests/s on shared CPUs). Then, with IDLE=N, opens
# N keep-alive connections through the daemon (one request each; BURST=1
# sends all requests before reading any answer) and prints the daemon's RSS,
# the machine's Slab (client sockets included, other tenants too) and fds
# per connection (beyond 4096, pass EM_OPTS="--max-connections-per-client
# 20000": the clients share one address). DOWNLOAD=1 adds 64 MiB downloads, daemon against direct.
#
#   em-$$-node: edgemesh-tproxy (10.96.0.10:80 captured), haproxy
#               10.244.1.1:8888, wrk, the idle client
#     |- n1 10.244.1.1 ---- 10.244.1.2 em-$$-p1: nginx :80 (/1k)
#     |- n2 10.244.2.1 ---- 10.244.2.2 em-$$-p2: nginx :80 (/1k)
#
# Usage: EM_BIN=build/edgemesh-tproxy [WORKERS=1] [DUR=5] [ROUNDS=3]
#        [EM_OPTS="daemon flags"] [IDLE=4000 [BURST=1]] [DOWNLOAD=1] [PERF=1]
#        [STRACE=1 [STRACE_WRK="-HConnection: close"]] netns-tests/bench-http-quick.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
DUR=${DUR:-5}
. "$here/lib/topology.sh"
NS_N="em-$TOPO_ID-node"; NS_P1="em-$TOPO_ID-p1"; NS_P2="em-$TOPO_ID-p2"
TOPO_NS="$NS_N $NS_P1 $NS_P2"
topo_traps
D=$TOPO_DIR
nn() { ip netns exec "$NS_N" "$@"; }
np() { local i=$1; shift; ip netns exec "em-$TOPO_ID-p$i" "$@"; }
for ns in $TOPO_NS; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
for i in 1 2; do
	veth "$NS_N" "n$i" "10.244.$i.1/24" "em-$TOPO_ID-p$i" eth0 "10.244.$i.2/24"
	ip -n "em-$TOPO_ID-p$i" route add default via "10.244.$i.1"
	dir=$D/nginx-$i; mkdir -p "$dir/html"; head -c 1024 /dev/urandom > "$dir/html/1k"
	[ -n "${DOWNLOAD:-}" ] && head -c $((64 << 20)) /dev/zero > "$dir/html/64m"
	cat > "$dir/nginx.conf" <<NGINX
daemon off;
user root root;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 100000;
	client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
	server { listen 10.244.$i.2:80; root $dir/html; } }
NGINX
	np $i nginx -c "$dir/nginx.conf" -e "$dir/error.log" & echo $! > "$D/nginx-$i.pid"
done
ip -n "$NS_N" route add 10.96.0.0/16 via 10.244.1.2
mkdir -p $D/manifests $D/state
cat > $D/manifests/m.yaml <<YAML
apiVersion: v1
kind: Pod
metadata: { name: p1, namespace: default, labels: { app: web } }
spec: { nodeName: node }
status: { phase: Running, podIP: 10.244.1.2, hostIP: 10.244.1.1, conditions: [ { type: Ready, status: "True" } ] }
---
apiVersion: v1
kind: Pod
metadata: { name: p2, namespace: default, labels: { app: web } }
spec: { nodeName: node }
status: { phase: Running, podIP: 10.244.2.2, hostIP: 10.244.1.1, conditions: [ { type: Ready, status: "True" } ] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [ { name: http, port: 80, protocol: TCP, targetPort: 80 } ] }
YAML
cat > $D/haproxy.cfg <<HA
global
	nbthread ${WORKERS:-1}
	maxconn 8000
defaults
	mode http
	timeout connect 3s
	timeout client 60s
	timeout server 60s
	http-reuse always
frontend f
	bind 10.244.1.1:8888
	default_backend b
backend b
	balance roundrobin
	server s1 10.244.1.2:80
	server s2 10.244.2.2:80
HA
ip netns exec "$NS_N" "$EM_BIN" --source "file:$D/manifests" --state-dir "$D/state" --node-name node \
	--capture-cidr 10.96.0.0/16 --dns-host no --dns-pods no --workers ${WORKERS:-1} --log-level warn ${EM_OPTS:-} >>"$D/daemon-n.log" 2>&1 &
echo $! > "$D/daemon-n.pid"
ip netns exec "$NS_N" haproxy -f $D/haproxy.cfg -db >/dev/null 2>&1 & echo $! > $D/haproxy.pid
wait_until 10 sh -c "ip netns exec $NS_N curl -sf -o /dev/null http://10.96.0.10/1k"
wait_until 10 sh -c "ip netns exec $NS_N curl -sf -o /dev/null http://10.244.1.1:8888/1k"
empid=$(cat $D/daemon-n.pid); hapid=$(cat $D/haproxy.pid)
cpu() { awk '{ print $14 + $15 }' /proc/$1/stat; }
for round in $(seq "${ROUNDS:-3}"); do
for t in em ha direct; do
	case $t in em) url=http://10.96.0.10/1k; pid=$empid;; ha) url=http://10.244.1.1:8888/1k; pid=$hapid;; direct) url=http://10.244.1.2/1k; pid=$empid;; esac
	c0=$(cpu $pid)
	out=$(nn wrk -t2 -c50 -d${DUR}s --latency $url)
	c1=$(cpu $pid)
	rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
	tot=$(echo "$out" | awk '/requests in/ { print $1 }')
	p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
	echo "$t rps=$rps p99=$p99 cpu_us_per_req=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$tot" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
done
done
if [ -n "${STRACE:-}" ]; then
	nn wrk -t2 -c50 -d6s ${STRACE_WRK:+"$STRACE_WRK"} http://10.96.0.10/1k > $D/wrk.out &
	wpid=$!
	sleep 1
	timeout 3 strace -c -f -p $empid -o "$D/strace.txt" >/dev/null 2>&1
	wait $wpid
	grep -E "requests in" "$D/wrk.out"; head -n 12 "$D/strace.txt"
fi
if [ -n "${PERF:-}" ]; then
	nn wrk -t2 -c50 -d10s http://10.96.0.10/1k >/dev/null & 
	perf record -g -p $empid -o "${PERF_OUT:-perf-http.data}" -- sleep 6 >/dev/null 2>&1
	wait $!
fi
if [ -n "${DOWNLOAD:-}" ]; then
	# 64 MiB downloads, through the daemon and direct, alternated.
	for round in 1 2 3; do
		for t in em direct; do
			case $t in em) url=http://10.96.0.10/64m;; direct) url=http://10.244.1.2/64m;; esac
			echo "download $t $(nn curl -s -o /dev/null -w '%{speed_download}' "$url" |
				awk '{ printf "%.0f MB/s", $1 / 1e6 }')"
		done
	done
fi
if [ -n "${IDLE:-}" ]; then
	# idle_run LABEL ADDR PID: N keep-alive connections to ADDR:80, one
	# request each; PID's RSS and fds and the machine's Slab before/after.
	idle_run() {
		local label=$1 addr=$2 pid=$3 r0 r1 s0 s1 f0 f1 cpid
		rss() { awk '/^VmRSS/ { print $2 }' /proc/$pid/status; }
		slab() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
		fds() { ls /proc/$pid/fd | wc -l; }
		r0=$(rss); s0=$(slab); f0=$(fds)
		rm -f $D/in $D/client.out; mkfifo $D/in
		nn python3 "$here/../tests/proxy/idle-clients.py" $addr 80 $IDLE ${BURST:-} < $D/in > $D/client.out &
		cpid=$!; exec 9>$D/in
		wait_until 300 grep -q open $D/client.out
		sleep 1
		r1=$(rss); s1=$(slab); f1=$(fds)
		echo "idle $label N=$IDLE${BURST:+ (burst)}: RSS ${r0} -> ${r1} kB, $(( (r1 - r0) * 1024 / IDLE )) B/conn;" \
			"Slab ${s0} -> ${s1} kB, $(( (s1 - s0) * 1024 / IDLE )) B/conn (both ends, whole machine);" \
			"fds ${f0} -> ${f1}, $(( (f1 - f0) * 1000 / IDLE ))/1000 per conn"
		exec 9>&-
		wait $cpid
	}
	idle_run daemon 10.96.0.10 $empid
	sleep 2
	# The same to nginx directly: Slab of a plain client+server pair.
	idle_run direct-to-nginx 10.244.1.2 "$(pgrep -P "$(cat $D/nginx-1/nginx.pid)" | head -n 1)"
fi
kill -USR1 $empid; sleep 0.5; grep 'forwarder http' $D/daemon-n.log | tail -n 1
