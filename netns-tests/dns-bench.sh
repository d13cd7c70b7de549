#!/bin/bash
# dns-bench.sh — queries/s of the DNS rewriter against dnsmasq answering the
# same 100 names from a hosts file, in the same topology, with dnsperf -c 8.
#
#   em-dnsb-pod-$$            em-dnsb-node-$$                    em-dnsb-up-$$
#   (dnsperf)                 (em-dns-driver, NFQUEUE in         (dnsmasq, hosts file
#                              mangle PREROUTING, forwarding)      with the 100 names)
#   p0 10.11.1.2/24 -------- n0 10.11.1.1/24
#                            n1 10.11.2.1/24 ------------------- u0 10.11.2.2/24
#
# Runs: (1) dnsmasq: no queue rule, dnsperf -> dnsmasq at 10.11.2.2 through
# the node; (2) the queue rule and the driver, same queries to the same
# address, answered at the node in prerouting through the raw socket (the
# default); (3) queries to the node's own address 10.11.1.1; (4) as (2) with
# in-place answers (-I). Prints the rates and the ratios to dnsmasq.
#
# Usage: netns-tests/dns-bench.sh [build-dir] [seconds]   (root)
# Env: DNS_DRIVER=path overrides <build-dir>/tests/em-dns-driver; QUEUES=n
# runs the driver with n queues (--queue-balance over them).
set -u
build=${1:-build}
secs=${2:-10}
driver=${DNS_DRIVER:-$build/tests/em-dns-driver}
queues=${QUEUES:-1}
[ -x "$driver" ] || { echo "no driver at $driver"; exit 1; }
driver=$(realpath "$driver")
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

pod=em-dnsb-pod-$$ node=em-dnsb-node-$$ up=em-dnsb-up-$$
tmp=$(mktemp -d /tmp/em-dnsb.XXXXXX)
Q=$(( 1000 + $$ % 20000 ))
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "$pod" "$node" "$up"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
P() { ip netns exec "$pod" "$@"; }
N() { ip netns exec "$node" "$@"; }
U() { ip netns exec "$up" "$@"; }
wait_for() {
	for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
	return 1
}

for n in "$pod" "$node" "$up"; do ip netns add "$n"; ip netns exec "$n" ip link set lo up; done
N ip link add n0 type veth peer name p0 netns "$pod"
N ip link add n1 type veth peer name u0 netns "$up"
N ip addr add 10.11.1.1/24 dev n0
N ip addr add 10.11.2.1/24 dev n1
N ip link set n0 up
N ip link set n1 up
N sysctl -qw net.ipv4.ip_forward=1
P ip addr add 10.11.1.2/24 dev p0
P ip link set p0 up
P ip route add default via 10.11.1.1
U ip addr add 10.11.2.2/24 dev u0
U ip link set u0 up
U ip route add default via 10.11.2.1

: > "$tmp/hosts"
: > "$tmp/queries"
for i in $(seq 0 99); do
	echo "198.18.1.$i svc-$i.bench.svc.cluster.local" >> "$tmp/hosts"
	echo "svc-$i.bench.svc.cluster.local A" >> "$tmp/queries"
done
ip netns exec "$up" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts \
	--addn-hosts="$tmp/hosts" --listen-address=10.11.2.2 --bind-interfaces \
	--pid-file="$tmp/dnsmasq.pid" --user=root --log-facility=/dev/null --cache-size=1000 &
pids+=($!)
wait_for U sh -c "ss -uln | grep -q '10.11.2.2:53'" || { echo "dnsmasq did not start"; exit 1; }

perf() {	# server -> queries/s
	P dnsperf -c 8 -l "$secs" -d "$tmp/queries" -s "$1" > "$tmp/perf.out" 2>&1
	local qps lost
	qps=$(awk '/Queries per second/ {print $4}' "$tmp/perf.out")
	lost=$(awk '/Queries lost/ {print $3}' "$tmp/perf.out")
	echo "${qps:-0} lost=${lost:-?}"
}

r_dnsmasq=$(perf 10.11.2.2)
echo "dnsmasq (hosts file, forwarded through the node): $r_dnsmasq q/s"

if [ "$queues" -gt 1 ]; then
	target="--queue-balance $Q:$((Q + queues - 1))"
else
	target="--queue-num $Q"
fi
N iptables -t mangle -A PREROUTING -p udp --dport 53 -j NFQUEUE $target --queue-bypass
run_driver() {	# extra flags
	rm -f "$tmp/ready"
	ip netns exec "$node" "$driver" -q $Q -n "$queues" -r "$tmp/ready" "$@" 2>"$tmp/driver.err" &
	driver_pid=$!
	pids+=($driver_pid)
	wait_for test -e "$tmp/ready" || { echo "driver did not start"; cat "$tmp/driver.err"; exit 1; }
}
stop_driver() {
	kill -INT "$driver_pid"; wait "$driver_pid" 2>/dev/null
	echo "  $(tail -1 "$tmp/driver.err")"
}

run_driver
r_rewriter=$(perf 10.11.2.2)
echo "rewriter, raw-socket answers (default), resolver beyond the node, $queues queue(s): $r_rewriter q/s"
r_raw=$(perf 10.11.1.1)
echo "rewriter, raw-socket answers, resolver = node address: $r_raw q/s"
stop_driver
run_driver -I
r_inplace=$(perf 10.11.2.2)
echo "rewriter, in-place answers (-I), resolver beyond the node: $r_inplace q/s"
stop_driver

awk -v a="${r_rewriter%% *}" -v b="${r_raw%% *}" -v c="${r_inplace%% *}" -v d="${r_dnsmasq%% *}" 'BEGIN {
	if (d > 0) printf "ratio to dnsmasq: rewriter %.2f, node-address %.2f, in-place %.2f\n", a / d, b / d, c / d }'
