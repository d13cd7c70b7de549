# shellcheck shell=bash
# topology.sh — the library every netns-tests script sources: namespace
# naming (em-$$-<role>, listed in TOPO_NS), the EXIT trap that removes
# them (topo_traps, topo_cleanup), the wait helper (wait_until), the
# counted check (check) and the result line (`N passed, N failed`, the
# last line of every script). A script with a topology of its own sets
# TOPO_NS to its namespaces right after sourcing; processes it starts
# write their pid to $TOPO_DIR/<name>.pid; every file goes under $TOPO_DIR.
#
# It also builds the seed walkthrough (topo_up), used by walkthrough.sh,
# demo.sh and most daemon scenarios:
#
#   pod-a 10.244.1.2                                              pod-b 10.244.2.2
#     |  (veth)                                                   nginx :80, echo :9000
#   10.244.1.1                                                      |  (veth)
#   edge-node-a  10.77.0.1 ---------------------- 10.77.0.2  edge-node-b
#   edgemesh-tproxy          (veth, the "node network")        edgemesh-tproxy
#   10.53.0.1                                                  10.244.2.1
#     |  (veth)
#   dns 10.53.0.2: dnsmasq, the real resolver of both nodes and of pod-a
#
# Pod subnets are routed between the nodes as a CNI would. Every namespace,
# process and file is created here under names carrying $$ and removed by
# topo_cleanup (installed as an EXIT trap by the caller).

: "${EM_BIN:?EM_BIN must point at the edgemesh-tproxy binary}"
TOPO_ID=$$
NS_A="em-$TOPO_ID-edge-node-a"
NS_B="em-$TOPO_ID-edge-node-b"
NS_PA="em-$TOPO_ID-pod-a"
NS_PB="em-$TOPO_ID-pod-b"
NS_DNS="em-$TOPO_ID-dns"
TOPO_NS="$NS_A $NS_B $NS_PA $NS_PB $NS_DNS"
TOPO_DIR=$(mktemp -d "/tmp/edgemesh-netns.$TOPO_ID.XXXXXX")
EM_FQDN=nginx-svc.default.svc.cluster.local

na()  { ip netns exec "$NS_A" "$@"; }
nb()  { ip netns exec "$NS_B" "$@"; }
npa() { ip netns exec "$NS_PA" "$@"; }
npb() { ip netns exec "$NS_PB" "$@"; }
ndns() { ip netns exec "$NS_DNS" "$@"; }

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# wait_until SECONDS CMD...: poll CMD every 50 ms until it succeeds.
wait_until() {
	local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
	until "$@" >/dev/null 2>&1; do
		[ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# listening RUN SS-FLAGS PORT: a socket is bound there (ss -H exits 0 on no match).
listening() { "$1" ss -H "$2" "sport = :$3" | grep -q .; }

topo_cleanup() {
	local pidfile ns
	set +e	# everything below is best effort: never stop half-way
	trap '' INT TERM HUP PIPE	# ... not even on a second signal or a closed stdout
	for pidfile in "$TOPO_DIR"/*.pid; do
		[ -e "$pidfile" ] || continue
		kill "$(cat "$pidfile")" 2>/dev/null
	done
	sleep 0.2
	for pidfile in "$TOPO_DIR"/*.pid; do
		[ -e "$pidfile" ] || continue
		kill -9 "$(cat "$pidfile")" 2>/dev/null
	done
	for ns in $TOPO_NS; do
		# Anything still running in the namespace goes with it.
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
		rm -rf "/etc/netns/$ns"
	done
	rmdir /etc/netns 2>/dev/null
	rm -rf "$TOPO_DIR"
	return 0
}

# check "what" CMD...: one counted result line; the command's output is
# shown only when it fails. Scripts end with topo_result.
passed=0 failed=0
check() {
	local what=$1; shift
	if "$@" >"$TOPO_DIR/check.out" 2>&1; then
		passed=$((passed + 1)); echo "ok - $what"
	else
		failed=$((failed + 1)); echo "FAIL - $what"; sed 's/^/    /' "$TOPO_DIR/check.out" | tail -n 25
	fi
}

# The result line, last of every script; the status says whether all passed.
topo_result() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}

# topo_die MESSAGE: the scenario cannot go on (a setup step failed): one
# failure, the result line, exit 1 (the EXIT trap cleans up).
topo_die() {
	echo "FAIL - $*"
	failed=$((failed + 1))
	topo_result
	exit 1
}

# The caller's traps: cleanup on every exit, and a signal (a closed stdout
# included) is an exit.
topo_traps() {
	trap topo_cleanup EXIT
	trap 'exit 1' INT TERM HUP PIPE
}

# resolv.conf seen by `ip netns exec` in one namespace (bind-mounted by iproute2).
set_resolver() {
	mkdir -p "/etc/netns/$1"
	printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$2" > "/etc/netns/$1/resolv.conf"
}

veth() { # veth NS1 IF1 ADDR1 NS2 IF2 ADDR2
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
	ip -n "$1" addr add "$3" dev "$2"
	ip -n "$4" addr add "$6" dev "$5"
	ip -n "$1" link set "$2" up
	ip -n "$4" link set "$5" up
}

topo_network() {
	local ns
	for ns in $TOPO_NS; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		# No duplicate address detection: addresses (and their local
		# routes) exist as soon as a link is up, so before/after
		# snapshots of the routing tables are stable.
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
			net.ipv6.conf.default.accept_dad=0
	done
	veth "$NS_A" ab0 10.77.0.1/24 "$NS_B" ba0 10.77.0.2/24
	veth "$NS_A" pa0 10.244.1.1/24 "$NS_PA" eth0 10.244.1.2/24
	veth "$NS_B" pb0 10.244.2.1/24 "$NS_PB" eth0 10.244.2.2/24
	veth "$NS_A" dns0 10.53.0.1/24 "$NS_DNS" eth0 10.53.0.2/24
	ip -n "$NS_A" route add 10.244.2.0/24 via 10.77.0.2
	ip -n "$NS_B" route add 10.244.1.0/24 via 10.77.0.1
	ip -n "$NS_B" route add 10.53.0.0/24 via 10.77.0.1
	ip -n "$NS_PA" route add default via 10.244.1.1
	ip -n "$NS_PB" route add default via 10.244.2.1
	ip -n "$NS_DNS" route add default via 10.53.0.1
	na sysctl -qw net.ipv4.ip_forward=1
	nb sysctl -qw net.ipv4.ip_forward=1
	set_resolver "$NS_A" 10.53.0.2
	set_resolver "$NS_B" 10.53.0.2
	set_resolver "$NS_PA" 10.53.0.2
}

topo_dnsmasq() {
	printf '10.1.2.3 www.example.test\n' > "$TOPO_DIR/hosts"
	ndns dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$TOPO_DIR/hosts" \
		--listen-address=10.53.0.2 --bind-interfaces --user=root --group=root \
		--pid-file= --log-facility="$TOPO_DIR/dnsmasq.log" &
	echo $! > "$TOPO_DIR/dnsmasq.pid"
	wait_until 5 listening ndns -lun 53
}

topo_nginx() {
	mkdir -p "$TOPO_DIR/nginx"
	cat > "$TOPO_DIR/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $TOPO_DIR/nginx/nginx.pid;
error_log $TOPO_DIR/nginx/error.log;
events { worker_connections 256; }
http {
	access_log $TOPO_DIR/nginx/access.log;
	client_body_temp_path $TOPO_DIR/nginx;
	proxy_temp_path $TOPO_DIR/nginx;
	fastcgi_temp_path $TOPO_DIR/nginx;
	uwsgi_temp_path $TOPO_DIR/nginx;
	scgi_temp_path $TOPO_DIR/nginx;
	server {
		listen 10.244.2.2:80;
		root /usr/share/nginx/html;
	}
}
NGINX
	npb nginx -c "$TOPO_DIR/nginx/nginx.conf" -e "$TOPO_DIR/nginx/error.log" &
	echo $! > "$TOPO_DIR/nginx.pid"
	wait_until 5 listening npb -ltn 80
}

# A line-echo server for the L4 port of the service.
topo_echo() {
	npb /usr/bin/python3 -c '
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.244.2.2", 9000)); s.listen(64)
def serve(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d: break
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' &
	echo $! > "$TOPO_DIR/echo.pid"
	wait_until 5 listening npb -ltn 9000
}

topo_manifests() {
	mkdir -p "$TOPO_DIR/manifests"
	sed -e 's/@POD_IP@/10.244.2.2/' -e 's/@HOST_IP@/10.77.0.2/' -e 's/@NODE@/edge-node-b/' \
		"$EM_MANIFESTS" > "$TOPO_DIR/manifests/nginx.yaml"
}

# start_daemon NODE(a|b) [extra flags]: runs edgemesh-tproxy in the node's namespace.
start_daemon() {
	local node=$1 ns; shift
	[ "$node" = a ] && ns=$NS_A || ns=$NS_B
	mkdir -p "$TOPO_DIR/state-$node"
	ip netns exec "$ns" "$EM_BIN" --source "file:$TOPO_DIR/manifests" \
		--state-dir "$TOPO_DIR/state-$node" --node-name "edge-node-$node" \
		--client-iface "p${node}0" \
		--log-level "${EM_LOG_LEVEL:-info}" "$@" >>"$TOPO_DIR/daemon-$node.log" 2>&1 &
	echo $! > "$TOPO_DIR/daemon-$node.pid"
}

daemon_pid() { cat "$TOPO_DIR/daemon-$1.pid"; }

# stop_pid NAME PID [SIGNAL]: stop a daemon this shell started and wait for it.
# With TERM (the default) two counted checks: it exits within 10 s (else it
# is killed), and with status 0. Other signals (KILL) only wait.
stop_pid() {
	local name=$1 pid=$2 sig=${3:-TERM} rc=0
	kill -"$sig" "$pid" 2>/dev/null
	if ! wait_until 10 sh -c "! kill -0 $pid"; then
		kill -9 "$pid" 2>/dev/null
		[ "$sig" = TERM ] && check "daemon $name exits within 10 s of SIGTERM" false
	fi
	wait "$pid" 2>/dev/null || rc=$?
	[ "$sig" = TERM ] && check "daemon $name exited with status 0 on SIGTERM (got $rc)" test "$rc" = 0
	rm -f "$TOPO_DIR/daemon-$name.pid"
}

# stop_daemon NODE [SIGNAL]: stop_pid for a daemon started by start_daemon.
stop_daemon() { stop_pid "$1" "$(daemon_pid "$1")" "${2:-TERM}"; }

# check_log_errors LOGFILE [ALLOWED-ERE]: a counted check that the daemon
# logged no error-level line (<3>) other than ones matching ALLOWED-ERE
# (errors the script provoked on purpose).
check_log_errors() {
	local log=$1 allowed=${2:-}
	check "no unexpected error lines in ${log##*/}" sh -c '
		lines=$(grep "^<3>" "$1" | { if [ -n "$2" ]; then grep -Ev "$2"; else cat; fi; })
		[ -z "$lines" ] || { printf "%s\n" "$lines" | head -n 10; exit 1; }' _ "$log" "$allowed"
}

# Ready: the node answers a cluster name (the daemon has its rules and snapshot).
daemon_answers() { # NODE
	local run; [ "$1" = a ] && run=na || run=nb
	$run dig +short +time=1 +tries=1 @10.53.0.2 "$EM_FQDN" A | grep -q '^198\.18\.'
}

topo_up() {
	topo_network
	topo_dnsmasq
	topo_nginx
	topo_echo
	topo_manifests
}

# topo_need WHAT...: the script is skipped (exit 77, which meson counts as
# skipped: neither passed nor failed) unless every prerequisite is here:
# `root`, `netns` (network namespaces can be made: root and a kernel with
# them) or a command's name. Call it before creating anything.
topo_need() {
	local w why=
	for w; do
		case $w in
		root) [ "$(id -u)" = 0 ] || why="needs root" ;;
		netns) { [ "$(id -u)" = 0 ] && unshare --net true; } 2>/dev/null ||
			why="cannot make a network namespace (needs root and a kernel with them)" ;;
		*) command -v "$w" >/dev/null 2>&1 || why="no $w (contrib/quickstart.sh deps installs it)" ;;
		esac
		[ -z "$why" ] && continue
		rmdir "$TOPO_DIR" 2>/dev/null	# nothing made yet: no trap needed
		echo "SKIP: ${0##*/}: $why"
		echo "0 passed, 0 failed"
		exit 77
	done
}
