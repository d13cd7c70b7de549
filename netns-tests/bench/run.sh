#!/usr/bin/env bash
# run.sh — every benchmark of issue 8 in one topology and one run:
# edgemesh-tproxy next to its peers (direct, HAProxy, nginx, dnsmasq, a no-op
# NFQUEUE program), rounds interleaved, medians, a table of ratios with the
# issue's targets, raw figures in JSON. Numbers are reported, never asserted.
#
#   em-$$-bench-cli 10.90.1.2 ---- 10.90.1.1 em-$$-bench-node ---- 10.90.2.2 em-$$-bench-pod1
#   wrk, dnsperf,                  edgemesh-tproxy (file source)     nginx :80 (/1k, /64m)
#   em-bench-load                  HAProxy :80 http, :81 tcp,         upload sink :8080
#                                    :8080 http (upload)       ---- 10.90.3.2 em-$$-bench-pod2
#                                  nginx proxy :82, :8082               (the same)
#                                  splice-floor :83, :8083 (pod1)
#                                  nfq-noop (queue 7, udp 5354) ---- 10.90.9.2 em-$$-bench-dns
#                                                                     dnsmasq :5353 (peer),
#                                                                     dnsmasq :5354 (behind nfq-noop)
#   socat UDP relay :7100 in the node; UDP echo :7000 in both pods.
#
# Service default/bench (pods pod1, pod2): port 80 `http` (the daemon's HTTP
# path: the per-request forwarder once it is merged, L4 before), port 81
# `tcp` (L4), port 8080 `http-upload` (to the sinks), port 7000 `udp` (the
# UDP forwarder, issue 15). 100 more services svc-N.bench give the DNS case
# its names. nginx runs with master_process off: one process, whose pid is
# the one whose CPU time counts. splice-floor (tests/bench/splice-floor.c)
# is the simplest splicing relay, a peer of the transfer cases only: what a
# relay can reach on this topology at all.
#
# Fairness: HAProxy and nginx run on the daemon's CPU with as many threads
# as the daemon has workers (one). Every throughput case also records how
# busy the proxy process was (percent of one CPU), and how busy the load
# side's CPU and the proxies' CPU were (every process on them, other
# tenants too). When the load side's CPU is saturated and the proxies' is
# not, req/s is the load generator's speed, the same for every proxy: the
# report says so, and its CPU/req and "req per proxy CPU-second" rows
# compare the proxies then.
#
# Usage: bash netns-tests/bench/run.sh          (root; from contrib/quickstart.sh bench)
# Env:   EM_BIN (default build/edgemesh-tproxy), EM_BUILD (build),
#        BENCH_SHORT=1   one round, short runs, fewer connections: only checks
#                        that every case produces a figure (CI: bench-short)
#        BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_IDLE_CONNS (8000), BENCH_XFERS (4 per round),
#        BENCH_PIN=0     no CPU pinning; BENCH_LOAD_CPU (0), BENCH_PROXY_CPU (1)
#        BENCH_CASES     the cases to run, space-separated (default all): keepalive
#                        keepalive_bound l4 new_conn download upload dns udp fixed_rate idle registry
#        BENCH_DAEMON_ARGS  extra daemon flags (e.g. --dns-in-place=yes)
#        BENCH_PROXY_QUOTA  CPU share (percent of one CPU, default 25) each proxy
#                        gets in the proxy-bound keep-alive case (keepalive_bound:
#                        a cgroup with a CPU quota, made for the run and removed);
#                        BENCH_CGROUP=0 leaves that case out
#        BENCH_JSON      where the raw figures go (default /tmp/em-bench-<date>.json)
#        BENCH_TRACE     strace | perf | threads: trace the proxy during one case
#                        (BENCH_TRACE_CASE, default keepalive_bound, or download/upload; see trace_start)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
EM_BUILD=${EM_BUILD:-$top/build}
EM_BIN=${EM_BIN:-$EM_BUILD/edgemesh-tproxy}
LOAD=$EM_BUILD/tests/em-bench-load
NOOP=$EM_BUILD/tests/nfq-noop
FLOOR=$EM_BUILD/tests/splice-floor
for b in "$EM_BIN" "$LOAD" "$NOOP" "$FLOOR"; do
	[ -x "$b" ] || { echo "missing $b: build first (ninja -C $EM_BUILD)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root"; exit 77; }
for t in wrk dnsperf haproxy nginx dnsmasq iptables socat python3; do
	command -v "$t" >/dev/null || { echo "missing $t (bash contrib/quickstart.sh deps)"; exit 1; }
done

# Every process here may open as many files as the hard limit allows (the
# daemon and HAProxy hold two sockets per idle connection).
FDMAX=$(ulimit -Hn)
[ "$FDMAX" = unlimited ] && FDMAX=1048576
ulimit -n "$FDMAX"
NGX_CONN=$(( FDMAX - 500 < 20000 ? FDMAX - 500 : 20000 ))

SHORT=${BENCH_SHORT:-0}
if [ "$SHORT" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-1} SECS=${BENCH_SECONDS:-2} IDLE=${BENCH_IDLE_CONNS:-400}
	XFERS=1 REG_SVC=1000 REG_PODS=5000
else
	ROUNDS=${BENCH_ROUNDS:-3} SECS=${BENCH_SECONDS:-8} IDLE=${BENCH_IDLE_CONNS:-8000}
	XFERS=4 REG_SVC=10000 REG_PODS=50000
fi
XFERS=${BENCH_XFERS:-$XFERS}
CONNS=50
JSON=${BENCH_JSON:-/tmp/em-bench-$(date -u +%Y%m%dT%H%M%SZ).json}

# shellcheck source=../lib/topology.sh
. "$here/../lib/topology.sh"	# naming, traps, wait_until, veth, log
ID=$TOPO_ID
LOADAVG0=$(cut -d" " -f1-3 /proc/loadavg)
NS_CLI=em-$ID-bench-cli NS_NODE=em-$ID-bench-node NS_P1=em-$ID-bench-pod1
NS_P2=em-$ID-bench-pod2 NS_DNS=em-$ID-bench-dns
ALL_NS="$NS_CLI $NS_NODE $NS_P1 $NS_P2 $NS_DNS"
TOPO_NS=$ALL_NS
topo_traps
DIR=$TOPO_DIR
RAW=$DIR/raw.tsv
: > "$RAW"

# ---- CPU pinning ------------------------------------------------------------
ncpu=$(nproc)
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$ncpu" -ge 2 ]; then
	LOAD_CPU=${BENCH_LOAD_CPU:-0} PROXY_CPU=${BENCH_PROXY_CPU:-1}
	PIN_LOAD="taskset -c $LOAD_CPU" PIN_PROXY="taskset -c $PROXY_CPU"
	PINNING="load generators and backends on CPU $LOAD_CPU; proxies (edgemesh-tproxy, HAProxy, nginx proxy), dnsmasq and nfq-noop on CPU $PROXY_CPU"
else
	PIN_LOAD="" PIN_PROXY=""
	PINNING="none ($ncpu CPUs or BENCH_PIN=0)"
fi

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- proxy-bound placement ---------------------------------------------------
# On two CPUs the load side (wrk, both nginx pods and the veth work they
# cause) saturates its CPU before either proxy does, so keep-alive req/s
# shows the load generator's rate for every proxy. keepalive_bound gives the
# proxy under test (edgemesh-tproxy or HAProxy, one at a time, the same
# share for both) a CPU quota through a cgroup of its own, so that its CPU
# is the limit. The group is made for this run and removed on exit; the
# host's other groups and settings are not touched.
CG_PARENT= CG= CG_V=
cg_setup() {
	[ "${BENCH_CGROUP:-1}" = 1 ] || return 1
	if [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] && [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
		CG_PARENT=/sys/fs/cgroup/cpu CG_V=1
	elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
		CG_PARENT=/sys/fs/cgroup CG_V=2
	else
		return 1
	fi
	CG=$CG_PARENT/em-bench-$ID
	mkdir "$CG" 2>/dev/null || { CG=; return 1; }
	local quota=$(( ${BENCH_PROXY_QUOTA:-25} * 1000 ))
	if [ $CG_V = 1 ]; then
		echo 100000 > "$CG/cpu.cfs_period_us" && echo "$quota" > "$CG/cpu.cfs_quota_us"
	else
		echo "$quota 100000" > "$CG/cpu.max"
	fi || { rmdir "$CG"; CG=; return 1; }
}
cg_cleanup() {
	[ -n "$CG" ] && [ -d "$CG" ] || return 0
	local p
	for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" > "$CG_PARENT/cgroup.procs"; done 2>/dev/null
	rmdir "$CG" 2>/dev/null
}
trap 'cg_cleanup; topo_cleanup' EXIT
# bound_case PEER ROUND: the keep-alive case with the peer's proxy (every
# thread) in the limited group for its duration.
bound_case() {
	local pid; pid=$(pid_of "${PROC[$1]}")
	echo "$pid" > "$CG/cgroup.procs" || { log "keepalive_bound/$1: cannot move pid $pid into $CG"; return 0; }
	wrk_case keepalive_bound "$1" "$2"
	echo "$pid" > "$CG_PARENT/cgroup.procs"
}
if cg_setup; then
	BOUND="each proxy limited to ${BENCH_PROXY_QUOTA:-25}% of one CPU (cgroup v$CG_V cpu quota)"
else
	BOUND="unavailable (no writable cgroup cpu controller, or BENCH_CGROUP=0)"
fi

# bg NAME NS [PIN] CMD...: a background program whose pid is $DIR/NAME.pid
bg() {
	local name=$1 ns=$2; shift 2
	ip netns exec "$ns" "$@" >"$DIR/$name.out" 2>"$DIR/$name.err" &
	echo $! > "$DIR/$name.pid"
}
pid_of() { cat "$DIR/$1.pid"; }

# ---- topology ---------------------------------------------------------------
for ns in $ALL_NS; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	# our namespaces only: many short connections in the conn/s case
	in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 \
		net.core.somaxconn=4096
done
veth "$NS_NODE" n0 10.90.1.1/24 "$NS_CLI" c0 10.90.1.2/24
veth "$NS_NODE" n1 10.90.2.1/24 "$NS_P1" eth0 10.90.2.2/24
veth "$NS_NODE" n2 10.90.3.1/24 "$NS_P2" eth0 10.90.3.2/24
veth "$NS_NODE" n9 10.90.9.1/24 "$NS_DNS" eth0 10.90.9.2/24
for ns in $NS_CLI $NS_P1 $NS_P2 $NS_DNS; do
	gw=$(ip -n "$ns" -4 addr show | awk '/inet 10\.90/ { split($2, a, "."); print a[1] "." a[2] "." a[3] ".1" }')
	ip -n "$ns" route add default via "$gw"
done
in_ns "$NS_NODE" sysctl -qw net.ipv4.ip_forward=1

# ---- backends: nginx (1 KiB, 64 MiB) and the upload sink in both pods --------
mkdir -p "$DIR/www"
head -c 1024 /dev/zero | tr '\0' 'a' > "$DIR/www/1k"
head -c $((64 << 20)) /dev/zero > "$DIR/www/64m"
nginx_conf() { # NAME BODY
	mkdir -p "$DIR/$1"
	cat > "$DIR/$1/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $((NGX_CONN + 500));
pid $DIR/$1/nginx.pid;
error_log $DIR/$1/error.log warn;
events { worker_connections $NGX_CONN; }
http {
	access_log off;
	client_body_temp_path $DIR/$1;
	proxy_temp_path $DIR/$1;
	fastcgi_temp_path $DIR/$1;
	uwsgi_temp_path $DIR/$1;
	scgi_temp_path $DIR/$1;
	keepalive_requests 100000000;
	keepalive_timeout 600s;
	sendfile on;
	tcp_nopush on;
$2
}
NGINX
}
for p in 1 2; do
	nginx_conf "nginx-pod$p" "	server { listen 10.90.$((p + 1)).2:80 backlog=4096; root $DIR/www; }"
	bg "nginx-pod$p" "em-$ID-bench-pod$p" $PIN_LOAD nginx -c "$DIR/nginx-pod$p/nginx.conf" -e "$DIR/nginx-pod$p/error.log"
	bg "sink-pod$p" "em-$ID-bench-pod$p" $PIN_LOAD "$LOAD" sink "10.90.$((p + 1)).2" 8080
	bg "udp-echo-pod$p" "em-$ID-bench-pod$p" $PIN_LOAD python3 "$top/tests/udp/udp-echo-fast.py" "10.90.$((p + 1)).2" 7000
done

# ---- manifests and the daemon -------------------------------------------------
mkdir -p "$DIR/manifests" "$DIR/state"
{
	for p in 1 2; do cat <<POD
---
apiVersion: v1
kind: Pod
metadata: { name: bench-$p, namespace: default, labels: { app: bench } }
spec: { nodeName: bench-node }
status:
  phase: Running
  podIP: 10.90.$((p + 1)).2
  hostIP: 10.90.1.1
  conditions: [ { type: Ready, status: "True" } ]
POD
	done
	cat <<SVC
---
apiVersion: v1
kind: Service
metadata: { name: bench, namespace: default }
spec:
  clusterIP: None
  selector: { app: bench }
  ports:
    - { name: http, port: 80, protocol: TCP, targetPort: 80 }
    - { name: tcp, port: 81, protocol: TCP, targetPort: 80 }
    - { name: http-upload, port: 8080, protocol: TCP, targetPort: 8080 }
    - { name: udp, port: 7000, protocol: UDP, targetPort: 7000 }
SVC
	for i in $(seq 0 99); do cat <<SVC
---
apiVersion: v1
kind: Service
metadata: { name: svc-$i, namespace: bench }
spec: { clusterIP: None, selector: { app: bench }, ports: [ { name: http, port: 80, targetPort: 80 } ] }
SVC
	done
} > "$DIR/manifests/bench.yaml"

# --client-iface any: the client's veth has no CNI-like name; every client
# here is one address, so its per-client limit must cover the idle case.
bg daemon "$NS_NODE" $PIN_PROXY "$EM_BIN" --source "file:$DIR/manifests" --state-dir "$DIR/state" \
	--node-name bench-node --workers 1 --queues 1 --queue-num 0 --log-level warn \
	--idle-timeout 600 --client-iface any --max-connections-per-client $((IDLE + 1000)) \
	${BENCH_DAEMON_ARGS:-}
FQDN=bench.default.svc.cluster.local
fake_ip() { in_ns "$NS_CLI" dig +short +time=1 +tries=1 @10.90.9.2 "$FQDN" A | grep -E '^198\.18\.' | head -n1; }
wait_until 15 sh -c "ip netns exec $NS_CLI dig +short +time=1 +tries=1 @10.90.9.2 $FQDN A | grep -q '^198\.18\.'" \
	|| { echo "the daemon did not answer DNS"; cat "$DIR/daemon.err"; exit 1; }
FAKE=$(fake_ip)
log "edgemesh-tproxy up, $FQDN -> $FAKE"

# ---- peers in the node: HAProxy (http + tcp), nginx reverse proxy ------------
# HAProxy refuses to start when 2 x maxconn + its pipes exceed the fd limit.
HAP_MAXCONN=$(( (FDMAX - 500) * 4 / 9 ))
[ "$HAP_MAXCONN" -gt $((IDLE + 200)) ] && HAP_MAXCONN=$((IDLE + 200))
cat > "$DIR/haproxy.cfg" <<HAP
global
	maxconn $HAP_MAXCONN
	maxpipes $((HAP_MAXCONN / 8))
	nbthread 1
	log stderr format raw local0 emerg
defaults
	mode http
	timeout connect 3s
	timeout client 600s
	timeout server 600s
	timeout http-keep-alive 600s
	option splice-request
	option splice-response
	balance roundrobin
frontend http_in
	bind 10.90.1.1:80 backlog 4096
	default_backend nginx_pods
backend nginx_pods
	http-reuse always
	server pod1 10.90.2.2:80
	server pod2 10.90.3.2:80
frontend upload_in
	bind 10.90.1.1:8080
	default_backend sinks
backend sinks
	http-reuse always
	server pod1 10.90.2.2:8080
	server pod2 10.90.3.2:8080
frontend tcp_in
	mode tcp
	bind 10.90.1.1:81 backlog 4096
	default_backend nginx_tcp
backend nginx_tcp
	mode tcp
	server pod1 10.90.2.2:80
	server pod2 10.90.3.2:80
HAP
bg haproxy "$NS_NODE" $PIN_PROXY haproxy -db -f "$DIR/haproxy.cfg"
nginx_conf nginx-proxy "
	upstream pods { server 10.90.2.2:80; server 10.90.3.2:80; keepalive 64; }
	upstream sinks { server 10.90.2.2:8080; server 10.90.3.2:8080; keepalive 64; }
	proxy_http_version 1.1;
	proxy_set_header Connection \"\";
	proxy_buffering off;
	proxy_request_buffering off;
	proxy_max_temp_file_size 0;
	client_max_body_size 0;
	server { listen 10.90.1.1:82 backlog=4096; location / { proxy_pass http://pods; } }
	server { listen 10.90.1.1:8082; location / { proxy_pass http://sinks; } }"
bg socat "$NS_NODE" $PIN_PROXY socat UDP-RECVFROM:7100,bind=10.90.1.1,fork UDP-SENDTO:10.90.2.2:7000
bg nginx-proxy "$NS_NODE" $PIN_PROXY nginx -c "$DIR/nginx-proxy/nginx.conf" -e "$DIR/nginx-proxy/error.log"
# The transfer floor: a blocking splice relay, a thread per direction, one
# pod (tests/bench/splice-floor.c). Downloads on :83, uploads on :8083.
bg splice-floor "$NS_NODE" $PIN_PROXY "$FLOOR" "$DIR/floor.ready" \
	10.90.1.1 83 10.90.2.2 80 10.90.1.1 8083 10.90.2.2 8080

# ---- DNS peers: dnsmasq on 5353, and dnsmasq on 5354 behind the no-op queue ---
: > "$DIR/hosts"; : > "$DIR/queries"
for i in $(seq 0 99); do
	echo "198.18.200.$i svc-$i.bench.svc.cluster.local" >> "$DIR/hosts"
	echo "svc-$i.bench.svc.cluster.local A" >> "$DIR/queries"
done
for port in 5353 5354; do
	bg "dnsmasq-$port" "$NS_DNS" $PIN_PROXY dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts \
		--addn-hosts="$DIR/hosts" --listen-address=10.90.9.2 --bind-interfaces --port=$port \
		--pid-file= --user=root --group=root --log-facility=/dev/null --cache-size=1000
done
# The floor: every UDP query to port 5354 passes through queue 7 and nfq-noop.
in_ns "$NS_NODE" iptables -t mangle -A PREROUTING -p udp --dport 5354 -j NFQUEUE --queue-num 7 --queue-bypass
bg nfq-noop "$NS_NODE" $PIN_PROXY "$NOOP" 7 "$DIR/noop.ready"

listening() { in_ns "$1" ss -Hln "sport = :$2" | grep -q .; }
for chk in "$NS_P1 80" "$NS_P2 80" "$NS_P1 8080" "$NS_P2 8080" "$NS_NODE 80" "$NS_NODE 81" \
	"$NS_NODE 82" "$NS_NODE 8082" "$NS_NODE 83" "$NS_NODE 8083" "$NS_DNS 5353" "$NS_DNS 5354" "$NS_P1 7000" "$NS_P2 7000" "$NS_NODE 7100"; do
	wait_until 10 listening $chk || { echo "nothing listens on $chk"; tail -n 5 "$DIR"/*.err; exit 1; }
done
wait_until 5 test -e "$DIR/noop.ready" || { echo "nfq-noop did not start"; cat "$DIR/nfq-noop.err"; exit 1; }

log "topology up; pinning: $PINNING"

# ---- measuring helpers ---------------------------------------------------------
# Peers of the TCP cases: name -> address:port of the 1 KiB/64 MiB server, of the
# upload sink, and the process whose CPU time counts.
declare -A ADDR UPADDR PROC
ADDR[direct]=10.90.2.2:80;          UPADDR[direct]=10.90.2.2:8080;  PROC[direct]=
ADDR[edgemesh-http]=$FAKE:80;       UPADDR[edgemesh-http]=$FAKE:8080; PROC[edgemesh-http]=daemon
ADDR[edgemesh-l4]=$FAKE:81;                                           PROC[edgemesh-l4]=daemon
ADDR[haproxy-http]=10.90.1.1:80;    UPADDR[haproxy-http]=10.90.1.1:8080; PROC[haproxy-http]=haproxy
ADDR[haproxy-tcp]=10.90.1.1:81;                                       PROC[haproxy-tcp]=haproxy
ADDR[nginx]=10.90.1.1:82;           UPADDR[nginx]=10.90.1.1:8082;   PROC[nginx]=nginx-proxy
ADDR[splice-floor]=10.90.1.1:83;    UPADDR[splice-floor]=10.90.1.1:8083; PROC[splice-floor]=splice-floor

# CPU ticks (user + system, every thread) of a process named by its pid file.
ticks() { [ -n "$1" ] && awk '{ print $14 + $15 }' "/proc/$(pid_of "$1")/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$RAW"; }   # case peer round metric value
# wrk's latency "1.23ms" / "456.00us" / "1.01s" -> microseconds
to_us() { awk '{ v = $1; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
	m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : (u == "m") ? 60000000 : 1;
	printf "%.0f\n", v * m }'; }

# "busy total" jiffies of CPU N (the whole machine for N empty; steal time
# counts as busy), and the busy percent between two such samples: every
# process on that CPU counts (other tenants' too).
cpu_stat() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat; }
busy_pct() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
	if (y[2] > x[2]) printf "%.0f", (y[1] - x[1]) * 100 / (y[2] - x[2]) }'; }
# cpu_rec CASE PEER ROUND PROC T0 T1 NS0 NS1 LOAD0 LOAD1 PCPU0 PCPU1: how
# busy the proxy process (percent of one CPU), the load side's CPU and the
# proxies' CPU were. Throughput shows a proxy's speed only when its CPU,
# not the load side's, is the limit.
cpu_rec() {
	local c=$1 peer=$2 r=$3 proc=$4
	[ -n "$proc" ] && rec "$c" "$peer" "$r" proxy_cpu_pct \
		"$(awk -v d=$(($6 - $5)) -v hz="$HZ" -v ns=$(($8 - $7)) 'BEGIN { printf "%.0f", d / hz * 1e11 / ns }')"
	rec "$c" "$peer" "$r" load_cpu_pct "$(busy_pct "$9" "${10}")"
	rec "$c" "$peer" "$r" proxy_side_cpu_pct "$(busy_pct "${11}" "${12}")"
}

# cpu_log CASE PEER ROUND: the CPU figures just recorded, for the log line
cpu_log() { awk -F'\t' -v c="$1" -v p="$2" -v r="$3" '$1 == c && $2 == p && $3 == r && $4 ~ /^(cpu_us_per_req|cpu_s_per_GiB|.*cpu_pct)$/ {
	printf "%s%s=%s%s", n++ ? " " : "(", $4, $5, $4 ~ /pct$/ ? "%" : "" } END { if (n) printf ")" }' "$RAW"; }

# wrk_case CASE PEER ROUND [wrk args...]: requests/s, p50/p99, CPU per request,
# and how busy the proxy and the load side were: req/s shows the proxy's
# speed only when the proxy's CPU, not the load side's, is the limit.
# BENCH_TRACE=strace|perf|threads with BENCH_TRACE_CASE (default
# keepalive_bound): during that case, from 1 s in for SECS-2 s, the proxy
# process is traced (strace -c -f, perf record -g, or its threads' CPU
# ticks); the output goes to $BENCH_TRACE_DIR (/tmp) as
# em-bench-trace-CASE-PEER-ROUND.*. Traced rounds measure the tracer too.
TRACE_PID=
trace_start() {
	local c=$1 peer=$2 r=$3 proc=$4 pid out s
	[ -n "${BENCH_TRACE:-}" ] && [ "$c" = "${BENCH_TRACE_CASE:-keepalive_bound}" ] && [ -n "$proc" ] || return 0
	pid=$(pid_of "$proc") s=$(( SECS > 3 ? SECS - 2 : 1 ))
	out=${BENCH_TRACE_DIR:-/tmp}/em-bench-trace-$c-$peer-$r
	case $BENCH_TRACE in
	strace) (sleep 1; timeout "$s" strace -c -f -p "$pid" -o "$out.strace" >/dev/null 2>&1) & ;;
	perf) (sleep 1; perf record -g -p "$pid" -o "$out.perf" -- sleep "$s" >/dev/null 2>&1) & ;;
	threads) (sleep 1; cat /proc/"$pid"/task/*/stat > "$out.t0"
		grep -H ctxt /proc/"$pid"/task/*/status > "$out.c0"; sleep "$s"
		cat /proc/"$pid"/task/*/stat > "$out.t1"
		grep -H ctxt /proc/"$pid"/task/*/status > "$out.c1") & ;;
	esac
	TRACE_PID=$!
}
trace_wait() { [ -z "$TRACE_PID" ] || wait "$TRACE_PID"; TRACE_PID=; }

wrk_case() {
	local c=$1 peer=$2 r=$3; shift 3
	local proc=${PROC[$peer]} t0 t1 out rps reqs l0 l1 s0 s1 p0 p1
	t0=$(ticks "$proc") s0=$(date +%s%N) l0=$(cpu_stat "${LOAD_CPU:-}") p0=$(cpu_stat "${PROXY_CPU:-}")
	trace_start "$c" "$peer" "$r" "$proc"
	out=$(ip netns exec "$NS_CLI" $PIN_LOAD wrk -t2 -c$CONNS -d"${SECS}s" --latency "$@" "http://${ADDR[$peer]}/1k" 2>&1)
	trace_wait
	t1=$(ticks "$proc") s1=$(date +%s%N) l1=$(cpu_stat "${LOAD_CPU:-}") p1=$(cpu_stat "${PROXY_CPU:-}")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
	reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
	if [ -z "$rps" ] || grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
		log "$c/$peer: $(grep -E 'errors|Non-2xx' <<<"$out" | tr -s ' ' | head -n2)"
	fi
	[ -n "$rps" ] || return 0
	rec "$c" "$peer" "$r" rps "$rps"
	rec "$c" "$peer" "$r" p50_us "$(awk '$1 == "50%" { print $2 }' <<<"$out" | to_us)"
	rec "$c" "$peer" "$r" p99_us "$(awk '$1 == "99%" { print $2 }' <<<"$out" | to_us)"
	[ -n "$proc" ] && [ "${reqs:-0}" -gt 0 ] &&
		rec "$c" "$peer" "$r" cpu_us_per_req "$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
	cpu_rec "$c" "$peer" "$r" "$proc" "$t0" "$t1" "$s0" "$s1" "$l0" "$l1" "$p0" "$p1"
	log "$c/$peer round $r: $rps req/s $(cpu_log "$c" "$peer" "$r")"
}

# rate_case PEER ROUND RATE: fixed-rate load, latency from the due time
rate_case() {
	local peer=$1 r=$2 rate=$3 out
	out=$(ip netns exec "$NS_CLI" $PIN_LOAD "$LOAD" rate "${ADDR[$peer]%:*}" "${ADDR[$peer]#*:}" /1k $CONNS "$rate" "$SECS")
	[ -n "$out" ] || return 0
	local v
	for m in rps p50_us p99_us p999_us errors; do
		v=$(tr ' ' '\n' <<<"$out" | sed -n "s/^$m=//p")
		rec fixed_rate "$peer" "$r" "$m" "$v"
	done
	log "fixed_rate/$peer round $r at $rate req/s: $out"
}

# xfer_case CASE(download|upload) PEER ROUND: XFERS transfers of 64 MiB
xfer_case() {
	local c=$1 peer=$2 r=$3 proc=${PROC[$2]} addr t0 t1 i out bytes=0 secs=0 s0 s1 l0 l1 p0 p1
	[ "$c" = upload ] && addr=${UPADDR[$peer]} || addr=${ADDR[$peer]}
	t0=$(ticks "$proc") s0=$(date +%s%N) l0=$(cpu_stat "${LOAD_CPU:-}") p0=$(cpu_stat "${PROXY_CPU:-}")
	trace_start "$c" "$peer" "$r" "$proc"
	for i in $(seq "$XFERS"); do
		if [ "$c" = upload ]; then
			out=$(ip netns exec "$NS_CLI" $PIN_LOAD "$LOAD" put "${addr%:*}" "${addr#*:}" /upload $((64 << 20)))
		else
			out=$(ip netns exec "$NS_CLI" $PIN_LOAD "$LOAD" get "${addr%:*}" "${addr#*:}" /64m)
		fi
		[ -n "$out" ] || { log "$c/$peer: transfer failed"; return 0; }
		bytes=$((bytes + $(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$out")))
		secs=$(awk -v a="$secs" -v b="$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")" 'BEGIN { print a + b }')
	done
	trace_wait
	t1=$(ticks "$proc") s1=$(date +%s%N) l1=$(cpu_stat "${LOAD_CPU:-}") p1=$(cpu_stat "${PROXY_CPU:-}")
	cpu_rec "$c" "$peer" "$r" "$proc" "$t0" "$t1" "$s0" "$s1" "$l0" "$l1" "$p0" "$p1"
	rec "$c" "$peer" "$r" MBps "$(awk -v b=$bytes -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')"
	[ -n "$proc" ] && rec "$c" "$peer" "$r" cpu_s_per_GiB \
		"$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v b=$bytes 'BEGIN { printf "%.3f", d / hz / (b / 2^30) }')"
	log "$c/$peer round $r: $(awk -v b=$bytes -v s="$secs" 'BEGIN { printf "%.0f", b / s / 1e6 }') MB/s $(cpu_log "$c" "$peer" "$r")"
}

# dns_case PEER ROUND: dnsperf, 8 clients, the fixed 100-name query file
dns_case() {
	local peer=$1 r=$2 port proc out qps lost t0 t1 done_q
	case $peer in
	edgemesh) port=53 proc=daemon ;;
	dnsmasq) port=5353 proc=dnsmasq-5353 ;;
	noop-queue) port=5354 proc=nfq-noop ;;
	esac
	t0=$(ticks "$proc")
	out=$(ip netns exec "$NS_CLI" $PIN_LOAD dnsperf -c 8 -l "$SECS" -d "$DIR/queries" -s 10.90.9.2 -p $port 2>&1)
	t1=$(ticks "$proc")
	qps=$(awk '/Queries per second/ { print $4 }' <<<"$out")
	lost=$(awk '/Queries lost/ { print $3 }' <<<"$out")
	done_q=$(awk '/Queries completed/ { print $3 }' <<<"$out")
	[ -n "$qps" ] || { log "dns/$peer: dnsperf failed: $(tail -n 3 <<<"$out")"; return 0; }
	rec dns "$peer" "$r" qps "$qps"
	rec dns "$peer" "$r" lost "${lost:-0}"
	[ "${done_q:-0}" -gt 0 ] && rec dns "$peer" "$r" cpu_us_per_query \
		"$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$done_q" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
	log "dns/$peer round $r: $qps q/s, lost $lost"
}

# ---- UDP request/response (issue 15) ------------------------------------------
# tests/udp/udp-rr.py (8 flows, one 64-byte request outstanding each) against
# the UDP echo in both pods: direct to pod1, through the daemon's UDP
# forwarder (the fake IP, port 7000 `udp`), through socat relaying on the node.
udp_case() {
	local r=$1 peer addr proc out t0 t1
	for peer in $(rot "$r" direct edgemesh-udp socat); do
		case $peer in
		direct) addr="10.90.2.2 7000" proc= ;;
		edgemesh-udp) addr="$FAKE 7000" proc=daemon ;;
		socat) addr="10.90.1.1 7100" proc= ;;
		esac
		t0=$(ticks "$proc")
		out=$(ip netns exec "$NS_CLI" $PIN_LOAD python3 "$top/tests/udp/udp-rr.py" $addr 8 "$SECS")
		t1=$(ticks "$proc")
		[ -n "$out" ] || { log "udp/$peer: no figure"; continue; }
		rec udp "$peer" "$r" rps "${out%% *}"
		rec udp "$peer" "$r" lost "${out##* }"
		[ -n "$proc" ] && rec udp "$peer" "$r" cpu_us_per_req \
			"$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="${out%% *}" -v s="$SECS" 'BEGIN { if (n > 0) printf "%.2f", d / hz * 1e6 / (n * s) }')"
		log "udp/$peer round $r: $out (replies/s, lost)"
	done
}

# meminfo Slab (KiB) + TCP socket buffer pages (sockstat "mem", KiB)
kmem_kb() {
	local slab tcp
	slab=$(awk '/^Slab:/ { print $2 }' /proc/meminfo)
	tcp=$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) * 4 }' /proc/net/sockstat)
	echo $((slab + ${tcp:-0}))
}
rss_kb() { [ -n "$1" ] && awk '/^VmRSS/ { print $2 }' "/proc/$(pid_of "$1")/status" || echo 0; }
fds() { [ -n "$1" ] && ls "/proc/$(pid_of "$1")/fd" | wc -l || echo 0; }
estab() { in_ns "$NS_CLI" ss -Htn state established | wc -l; }

# idle_case PEER ROUND: IDLE keep-alive connections, one GET each, then idle.
# At most 4,000 per client process (the fd limit is 20,000 per process).
idle_case() {
	local peer=$1 r=$2 proc=${PROC[$1]} per=$(( FDMAX - 100 < 4000 ? FDMAX - 100 : 4000 )) n=0 k=0 rss0 fd0 km0 rss1 fd1 km1 got i addr
	wait_until 30 test "$(estab)" -lt 10
	sleep 0.5
	rss0=$(rss_kb "$proc") fd0=$(fds "$proc") km0=$(kmem_kb)
	while [ $n -lt "$IDLE" ]; do
		local m=$(( IDLE - n < per ? IDLE - n : per ))
		addr=${ADDR[$peer]}
		# direct: spread over both backends as the proxies do
		[ "$peer" = direct ] && [ $((k % 2)) = 1 ] && addr=10.90.3.2:80
		bg "idle-$k" "$NS_CLI" "$LOAD" idle "${addr%:*}" "${addr#*:}" /1k $m
		n=$((n + m)) k=$((k + 1))
	done
	got=0
	for i in $(seq 0 $((k - 1))); do
		wait_until 120 grep -q '^ready' "$DIR/idle-$i.out"
		got=$((got + $(awk '/^ready/ { print $2 }' "$DIR/idle-$i.out")))
	done
	sleep 1
	rss1=$(rss_kb "$proc") fd1=$(fds "$proc") km1=$(kmem_kb)
	for i in $(seq 0 $((k - 1))); do kill "$(pid_of "idle-$i")" 2>/dev/null; wait "$(pid_of "idle-$i")" 2>/dev/null; rm -f "$DIR/idle-$i.pid"; done
	# Fewer than asked: the per-connection figures are over those held.
	rec idle "$peer" "$r" held "$got"
	if [ "$got" != "$IDLE" ]; then
		log "idle/$peer: only $got of $IDLE connections held ($(sort "$DIR"/idle-*.err | uniq -c | head -n 3 | tr -s ' \n' ' '))"
		[ "$got" -gt 0 ] || return 0
	fi
	rm -f "$DIR"/idle-*.out "$DIR"/idle-*.err
	rec idle "$peer" "$r" kernel_B_per_conn_total "$(( (km1 - km0) * 1024 / got ))"
	if [ -n "$proc" ]; then
		rec idle "$peer" "$r" user_B_per_conn "$(( (rss1 - rss0) * 1024 / got ))"
		rec idle "$peer" "$r" fds_per_conn "$(awk -v a="$fd0" -v b="$fd1" -v n="$got" 'BEGIN { printf "%.3f", (b - a) / n }')"
	fi
	log "idle/$peer round $r: $got conns, RSS +$((rss1 - rss0)) KiB, fds +$((fd1 - fd0)), kernel +$((km1 - km0)) KiB"
}

# ---- the rounds ---------------------------------------------------------------------
HTTP_PEERS="direct edgemesh-http haproxy-http nginx"
XFER_PEERS="$HTTP_PEERS splice-floor"
# Rotate the order each round so no peer always runs first.
rot() { local r=$1; shift; local a=("$@") n=$#; local i; for i in $(seq 0 $((n - 1))); do echo "${a[$(( (i + r) % n ))]}"; done; }

CASES=${BENCH_CASES:-keepalive keepalive_bound l4 new_conn download upload dns udp fixed_rate idle registry}
want() { [[ " $CASES " == *" $1 "* ]]; }

# A short warm-up: connections established, caches hot.
for peer in $HTTP_PEERS; do
	ip netns exec "$NS_CLI" wrk -t1 -c4 -d1s "http://${ADDR[$peer]}/1k" >/dev/null 2>&1
done

for r in $(seq "$ROUNDS"); do
	log "== round $r of $ROUNDS"
	want keepalive && for peer in $(rot "$r" $HTTP_PEERS); do wrk_case keepalive_1k "$peer" "$r"; done
	want keepalive_bound && [ -n "$CG" ] && for peer in $(rot "$r" edgemesh-http haproxy-http); do
		bound_case "$peer" "$r"
	done
	want l4 && for peer in $(rot "$r" edgemesh-l4 haproxy-tcp); do wrk_case keepalive_1k_l4 "$peer" "$r"; done
	want new_conn && for peer in $(rot "$r" direct edgemesh-http haproxy-http); do
		wrk_case new_conn "$peer" "$r" -H "Connection: close"
	done
	want download && for peer in $(rot "$r" $XFER_PEERS); do xfer_case download "$peer" "$r"; done
	want upload && for peer in $(rot "$r" $XFER_PEERS); do xfer_case upload "$peer" "$r"; done
	want dns && for peer in $(rot "$r" edgemesh dnsmasq noop-queue); do dns_case "$peer" "$r"; done
	want udp && udp_case "$r"
done

# Fixed rate: half of HAProxy's peak rate, measured again (SECS/2 of the
# keep-alive case) just before each fixed-rate round, so that a machine
# whose speed drifts (shared CPUs) is not driven past saturation.
want fixed_rate && for r in $(seq "$ROUNDS"); do
	RATE=$(ip netns exec "$NS_CLI" $PIN_LOAD wrk -t2 -c$CONNS -d"$(( (SECS + 1) / 2 ))s" "http://${ADDR[haproxy-http]}/1k" 2>&1 |
		awk '/^Requests\/sec:/ { printf "%.0f", $2 / 2 }')
	[ -n "$RATE" ] && [ "$RATE" -gt 0 ] || { log "fixed_rate: no HAProxy peak rate to halve"; continue; }
	rec fixed_rate haproxy-http "$r" half_peak_rps "$RATE"
	for peer in $(rot "$r" $HTTP_PEERS); do rate_case "$peer" "$r" "$RATE"; done
done

want idle && for r in $(seq "$ROUNDS"); do
	for peer in $(rot "$r" direct edgemesh-http haproxy-http); do idle_case "$peer" "$r"; done
done

# ---- registry scale (no peer; not interleaved) -------------------------------------
want registry && log "registry: $REG_SVC services, $REG_PODS pods"
if ! want registry; then
	:
elif out=$(sh "$top/netns-tests/bench-registry.sh" "$EM_BUILD" "$REG_SVC" "$REG_PODS" 2>&1); then
	json=$(awk '/^== json/ { on = 1 } /^== yaml/ { on = 0 } on' <<<"$out")
	rec registry edgemesh 1 load_ms "$(sed -n 's/^load: \([0-9]*\) ms.*/\1/p' <<<"$json" | head -n1)"
	rec registry edgemesh 1 rss_MiB "$(sed -n 's/^rss: [0-9]* KiB before, \([0-9]*\) KiB after load.*/\1/p' <<<"$json" | head -n1 | awk '{ printf "%.1f", $1 / 1024 }')"
	rec registry edgemesh 1 rss_peak_MiB "$(sed -n 's/^rss: .*after load, peak \([0-9]*\) KiB.*/\1/p' <<<"$json" | head -n1 | awk '{ printf "%.1f", $1 / 1024 }')"
	rec registry edgemesh 1 change_ms "$(sed -n 's/^one Service changed via sink.*mean \([0-9.]*\) ms.*/\1/p' <<<"$json" | head -n1)"
	rec registry edgemesh 1 file_change_ms "$(sed -n 's/^one Service added as a file: visible after \([0-9]*\) ms.*/\1/p' <<<"$json" | head -n1)"
else
	log "registry bench failed: $(tail -n 3 <<<"$out")"
fi

# ---- report -----------------------------------------------------------------------
errs=$(grep -c '^<3>' "$DIR/daemon.err" 2>/dev/null)
[ "${errs:-0}" -gt 0 ] && log "the daemon logged $errs errors, first: $(grep -m1 '^<3>' "$DIR/daemon.err")"
python3 "$here/report.py" "$RAW" "$JSON" \
	--meta "date=$(date -u +%FT%TZ)" "loadavg_at_end=$(cut -d" " -f1-3 /proc/loadavg)" "loadavg_at_start=$LOADAVG0" "kernel=$(uname -r)" "cpus=$ncpu" \
	"cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
	"pinning=$PINNING" "proxy_bound=$BOUND" "rounds=$ROUNDS" "seconds=$SECS" "connections=$CONNS" \
	"idle_connections=$IDLE" "fixed_rate=half of HAProxy peak, measured before each round" "transfers_per_round=$XFERS" \
	"registry=$REG_SVC services, $REG_PODS pods" \
	"haproxy=$(haproxy -v | head -n1 | awk '{ print $3 }')" "nginx=$(nginx -v 2>&1 | sed 's/.*\///')" \
	"dnsmasq=$(dnsmasq -v | head -n1 | awk '{ print $3 }')" \
	"edgemesh=$(git -C "$top" describe --always --dirty 2>/dev/null)" \
	${BENCH_CHECK:+--check}
