#!/usr/bin/env bash
# dns-daemon.sh — the DNS rewriter of the real daemon (not the fixed-catalog
# driver of dns-queue.sh), end to end on the walkthrough topology with the
# services of contrib/manifests/nginx.yaml (nginx-svc.default: http-0/12345,
# tcp-echo/23456). IPv6 is added here on top of lib/topology.sh:
#
#   pod-a 10.244.1.2, fd44:1::2                                   pod-b 10.244.2.2
#     |  (veth)                                                   nginx :80, echo :9000
#   10.244.1.1, fd44:1::1                                           |  (veth)
#   edge-node-a  10.77.0.1 ---------------------- 10.77.0.2  edge-node-b
#   edgemesh-tproxy          (veth, IPv4 only)                 (no daemon here)
#   10.53.0.1, fd53::1                                         10.244.2.1
#     |  (veth)
#   dns 10.53.0.2, fd53::2: dnsmasq --no-resolv (one per address), knows
#                           only www.example.test = 10.1.2.3
#
# Resolvers queried: "beyond the node" = dnsmasq (10.53.0.2, fd53::2); "the
# node's own address" = 10.53.0.1/fd53::1 for host clients and the pod's
# gateway 10.244.1.1/fd44:1::1 for pod-a (nothing listens there: only the
# daemon can answer). dnsmasq with --no-resolv answers names it does not know
# REFUSED without the aa flag; the daemon's own answers carry aa, so the two
# are told apart by the header.
#
# Phases:
#   0. no daemon: raw answers of dnsmasq captured (the byte-for-byte baseline)
#   1. daemon with --fake-ipv6-range and --dns-ttl 7, unknown names passed:
#      every record type, header bits, case, EDNS variants, from host and pod,
#      IPv4 and IPv6 transport, both resolver placements; curl over the fake
#      IPv6 and IPv4 addresses; pass-through bytes unchanged
#   2. daemon without an IPv6 range, --dns-unknown=nxdomain,
#      --dns-short-names=yes, default TTL
#   3. daemon killed with SIGKILL (its rules stay): pass-through names still
#      resolve (queue bypass), byte for byte as without a daemon
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/dns-daemon.sh   (root)
# Last line: `N passed, N failed`; exit status non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl

FAKE6_RANGE=fd9e:6d65:7368::/64
SVC=$EM_FQDN


# A daemon that does not answer makes every later query time out: stop there.
give_up_unless_ready() {
	wait_until 0 daemon_ready && return 0
	echo "# the daemon does not answer; its log:"; tail -n 30 "$TOPO_DIR/daemon-a.log"
	topo_die "the daemon does not answer: the later checks cannot run"
}

# ---- IPv6 on top of the topology ---------------------------------------------
topo_ipv6() {
	ip -n "$NS_A" addr add fd53::1/64 dev dns0 nodad
	ip -n "$NS_DNS" addr add fd53::2/64 dev eth0 nodad
	ip -n "$NS_A" addr add fd44:1::1/64 dev pa0 nodad
	ip -n "$NS_PA" addr add fd44:1::2/64 dev eth0 nodad
	ip -n "$NS_PA" -6 route add default via fd44:1::1
	ip -n "$NS_DNS" -6 route add default via fd53::1
	na sysctl -qw net.ipv6.conf.all.forwarding=1
	nb sysctl -qw net.ipv6.conf.all.forwarding=1
	# topology.sh's dnsmasq listens on 10.53.0.2 only (--bind-interfaces
	# binds the listed addresses): a second one serves fd53::2.
	ndns dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$TOPO_DIR/hosts" \
		--listen-address=fd53::2 --bind-interfaces --user=root --group=root \
		--pid-file= --log-facility="$TOPO_DIR/dnsmasq6.log" &
	echo $! > "$TOPO_DIR/dnsmasq6.pid"
	wait_until 5 sh -c "ip netns exec $NS_DNS ss -Hlun 'sport = :53' | grep -q 'fd53::2'"
}

# ---- DNS helpers --------------------------------------------------------------
# dq RUN SERVER DIG-ARGS...: the full dig output
dq() { local run=$1 srv=$2; shift 2; $run dig +time=2 +tries=1 "@$srv" "$@" 2>&1; }

# dig_expect RUN SERVER "DIG ARGS" PATTERN...: every ERE pattern matches the
# dig output; a pattern starting with ! must not match.
dig_expect() {
	local run=$1 srv=$2 args=$3 out p; shift 3
	# shellcheck disable=SC2086 # args are words on purpose
	out=$(dq "$run" "$srv" $args)
	echo "$out"
	for p in "$@"; do
		if [ "${p#!}" != "$p" ]; then
			if grep -qE -- "${p#!}" <<<"$out"; then echo "# unexpected: ${p#!}"; return 1; fi
		elif ! grep -qE -- "$p" <<<"$out"; then
			echo "# missing: $p"; return 1
		fi
	done
}

# ans_re NAME TTL TYPE RDATA-ERE: an answer line
ans_re() { printf '^%s\\.[[:space:]]+%s[[:space:]]+IN[[:space:]]+%s[[:space:]]+%s' "${1//./\\.}" "$2" "$3" "$4"; }

# Raw client: a fixed query (fixed ID) for NAME/TYPE; prints the answer as
# hex, or "timeout". Compared whole: dnsmasq echoes the ID. MODE: edns (an
# OPT record), noedns, qd2 (the question twice), trunc (the query cut in the
# question's class), loop (the name ends in a compression pointer to itself).
# The daemon must pass the last three untouched even for a cluster name.
cat > "$TOPO_DIR/raw.py" <<'PY'
import socket, struct, sys
server, name, qtype, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
question = qname + b"\0" + struct.pack("!HH", qtype, 1)
if mode == "loop":
    question = qname + struct.pack("!H", 0xc00c) + struct.pack("!HH", qtype, 1)
q = struct.pack("!HHHHHH", 0x4d53, 0x0100, 2 if mode == "qd2" else 1, 0, 0,
                1 if mode == "edns" else 0) + question
if mode == "qd2":
    q += question
if mode == "edns":
    q += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
if mode == "trunc":
    q = q[:-1]
fam = socket.AF_INET6 if ":" in server else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(q, (server, 53))
try:
    print(s.recv(4096).hex())
except socket.timeout:
    print("timeout")
PY
raw() { "$1" /usr/bin/python3 "$TOPO_DIR/raw.py" "${@:2}"; }

# The pass-through cases: client, server, name, type, edns
PASS_CASES=()
for c in na npa; do
	for s in 10.53.0.2 fd53::2; do
		PASS_CASES+=("$c $s www.example.test 1 edns" "$c $s www.example.test 1 noedns"
			"$c $s nope.default.svc.cluster.local 1 edns"
			"$c $s $EM_FQDN 1 qd2" "$c $s $EM_FQDN 1 trunc" "$c $s $EM_FQDN 1 loop")
	done
done
capture_pass() { # FILE: one line per case
	local c
	for c in "${PASS_CASES[@]}"; do
		# shellcheck disable=SC2086
		echo "$c $(raw $c 2>&1)"
	done > "$1"
}
same_bytes() { # FILE-A FILE-B
	echo "baseline:"; cat "$1"; echo "now:"; cat "$2"
	# dnsmasq itself ignores the truncated query: that one times out in both.
	! grep -v ' trunc ' "$1" | grep -q -e Error -e timeout &&
		[ "$(wc -l < "$1")" = "${#PASS_CASES[@]}" ] && cmp -s "$1" "$2"
}

in_fake6() { /usr/bin/python3 -c '
import ipaddress, sys
sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else 1)' "$1" "$2"; }

one_line() { [ "$(printf '%s\n' "$1" | grep -c .)" = 1 ]; }

daemon_ready() { # the daemon answers on edge-node-a (A over v4 and v6 transport)
	na dig +short +time=1 +tries=1 @10.53.0.2 "$SVC" A | grep -q '^198\.18\.' &&
		na dig +short +time=1 +tries=1 @fd53::2 "$SVC" A | grep -q '^198\.18\.'
}

curl_page() { # RUN [curl flags]: the nginx page through the service name
	local run=$1; shift
	$run curl -sS --max-time 5 -w '%{remote_ip}\n' "$@" "http://$SVC:12345/" > "$TOPO_DIR/curl.out" 2>&1
	tail -n 3 "$TOPO_DIR/curl.out"
	grep -q 'Welcome to nginx!' "$TOPO_DIR/curl.out"
}
curl_fake6() { # RUN: curl -6 reaches nginx over an address of the fake IPv6 range
	curl_page "$1" -6 || return 1
	in_fake6 "$(tail -n 1 "$TOPO_DIR/curl.out")" "$FAKE6_RANGE"
}

# ---- phase 0: no daemon ---------------------------------------------------------
topo_up
topo_ipv6
check "dnsmasq answers over IPv4 and IPv6 from host and pod (no daemon)" sh -c "
	for c in $NS_A $NS_PA; do for s in 10.53.0.2 fd53::2; do
		ip netns exec \$c dig +short +time=2 +tries=1 @\$s www.example.test | grep -qx 10.1.2.3 || exit 1
	done; done"
capture_pass "$TOPO_DIR/pass-nodaemon"
check "dnsmasq (--no-resolv) answers an unknown cluster name REFUSED without aa" \
	dig_expect na 10.53.0.2 "A nope.default.svc.cluster.local" 'status: REFUSED' '!flags: [^;]*aa'

# ---- phase 1: IPv6 range, TTL 7, unknown names passed ------------------------------
start_daemon a --fake-ipv6-range "$FAKE6_RANGE" --dns-ttl 7
check "daemon answers over IPv4 and IPv6 transport" wait_until 10 daemon_ready
give_up_unless_ready
FAKE4=$(na dig +short +time=2 +tries=1 @10.53.0.2 "$SVC" A)
FAKE6=$(na dig +short +time=2 +tries=1 @10.53.0.2 "$SVC" AAAA)
echo "# fake addresses: $FAKE4 $FAKE6"
check "one fake IPv4 address in 198.18.0.0/16" sh -c "echo '$FAKE4' | grep -Eqx '198\.18\.[0-9]+\.[0-9]+'"
check "one fake IPv6 address in $FAKE6_RANGE" sh -c "[ \$(echo '$FAKE6' | grep -c .) = 1 ]"
check "... inside the range" in_fake6 "$FAKE6" "$FAKE6_RANGE"

HDR='flags: qr aa rd ra;'
A4=$(ans_re "$SVC" 7 A "${FAKE4//./\\.}\$")
A6=$(ans_re "$SVC" 7 AAAA "$FAKE6\$")
SRV=$(ans_re "_http-0._tcp.$SVC" 7 SRV "0 100 12345 ${SVC//./\\.}\\.\$")
SRV2=$(ans_re "_tcp-echo._tcp.$SVC" 7 SRV "0 100 23456 ${SVC//./\\.}\\.\$")
REV4=$(printf '%s\n' "$FAKE4" | awk -F. '{print $4"."$3"."$2"."$1".in-addr.arpa"}')
REV6=$(/usr/bin/python3 -c 'import ipaddress, sys; print(ipaddress.ip_address(sys.argv[1]).reverse_pointer)' "$FAKE6")
PTR4=$(ans_re "$REV4" 7 PTR "${SVC//./\\.}\\.\$")
PTR6=$(ans_re "$REV6" 7 PTR "${SVC//./\\.}\\.\$")
# Negative answers: the SOA's TTL and its MINIMUM field are the TTL too (RFC 2308).
soa_re() { printf '^cluster\\.local\\.[[:space:]]+%s[[:space:]]+IN[[:space:]]+SOA[[:space:]].*[[:space:]]%s$' "$1" "$1"; }
NODATA=('status: NOERROR' 'ANSWER: 0, AUTHORITY: 1' "$HDR" "$(soa_re 7)")
Q_CASE='^;NGINX-svc\.Default\.svc\.cluster\.local\.[[:space:]]+IN[[:space:]]+A$'
A4_CASE=$(ans_re "NGINX-svc.Default.svc.cluster.local" 7 A "${FAKE4//./\\.}\$")

# answers CLIENT-LABEL RUN SERVER [pass]: the record matrix against one resolver;
# "pass" when dnsmasq is behind the address (pass-through names get answered).
answers() {
	local l="$1 @$3" run=$2 srv=$3 pass=${4:-}
	check "$l: A, TTL 7, header qr aa rd ra, OPT echoed" dig_expect "$run" "$srv" "A $SVC" \
		'status: NOERROR' "$HDR" 'ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1' 'EDNS: version: 0' "$A4"
	check "$l: A without EDNS: no OPT in the answer" dig_expect "$run" "$srv" "+noedns A $SVC" \
		"$HDR" 'ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0' "$A4" '!OPT PSEUDOSECTION'
	check "$l: A with a trailing dot" dig_expect "$run" "$srv" "A $SVC." "$HDR" "$A4"
	check "$l: AAAA in the fake IPv6 range" dig_expect "$run" "$srv" "AAAA $SVC" \
		"$HDR" 'ANSWER: 1,' "$A6"
	check "$l: AAAA without EDNS" dig_expect "$run" "$srv" "+noedns AAAA $SVC" "$HDR" "$A6"
	check "$l: SRV _http-0._tcp -> 12345 and the service FQDN" dig_expect "$run" "$srv" \
		"SRV _http-0._tcp.$SVC" "$HDR" 'ANSWER: 1,' "$SRV"
	check "$l: SRV _tcp-echo._tcp -> 23456" dig_expect "$run" "$srv" \
		"+noedns SRV _tcp-echo._tcp.$SVC" "$HDR" "$SRV2"
	check "$l: PTR of the fake IPv4 -> the FQDN" dig_expect "$run" "$srv" "-x $FAKE4" "$HDR" "$PTR4"
	check "$l: PTR of the fake IPv6 -> the FQDN" dig_expect "$run" "$srv" "-x $FAKE6" "$HDR" "$PTR6"
	# dig sends ANY over TCP unless told otherwise; the daemon sees UDP only.
	check "$l: ANY over UDP -> the A and AAAA records" dig_expect "$run" "$srv" "+notcp ANY $SVC" \
		"$HDR" 'ANSWER: 2,' "$A4" "$A6"
	check "$l: MX of the service -> NODATA with SOA" dig_expect "$run" "$srv" "MX $SVC" "${NODATA[@]}"
	check "$l: TXT without EDNS -> NODATA with SOA" dig_expect "$run" "$srv" "+noedns TXT $SVC" "${NODATA[@]}"
	check "$l: RD clear in the query -> clear in the answer" dig_expect "$run" "$srv" \
		"+norecurse A $SVC" 'flags: qr aa ra;' "$A4"
	check "$l: question echoed with its case" dig_expect "$run" "$srv" \
		"A NGINX-svc.Default.svc.cluster.local" "$HDR" "$Q_CASE" "$A4_CASE"
	check "$l: +dnssec +adflag: DO copied (RFC 3225), no ad flag" dig_expect "$run" "$srv" \
		"+dnssec +adflag A $SVC" "$HDR" "$A4" '!flags: [^;]*ad' 'EDNS: version: 0, flags: do;'
	check "$l: DNS cookie in the query" dig_expect "$run" "$srv" "+cookie A $SVC" \
		"$HDR" 'EDNS: version: 0' "$A4"
	check "$l: +nocookie +noedns +norecurse" dig_expect "$run" "$srv" \
		"+nocookie +noedns +norecurse A $SVC" 'flags: qr aa ra;' 'ADDITIONAL: 0' "$A4"
	[ "$pass" = pass ] || return 0
	check "$l: unknown cluster name passes to dnsmasq (REFUSED, no aa)" dig_expect "$run" "$srv" \
		"A nope.default.svc.cluster.local" 'status: REFUSED' '!flags: [^;]*aa' '!SOA'
	check "$l: short name not answered without --dns-short-names" dig_expect "$run" "$srv" \
		"A nginx-svc.default" 'status: REFUSED' '!flags: [^;]*aa' '!198\.18\.'
	check "$l: name outside the cluster answered by dnsmasq" dig_expect "$run" "$srv" \
		"A www.example.test" "$(ans_re www.example.test 0 A '10\.1\.2\.3$')"
}

answers host na 10.53.0.2 pass
answers host na fd53::2 pass
answers host na 10.53.0.1
answers host na fd53::1
answers pod npa 10.53.0.2 pass
answers pod npa fd53::2 pass
answers pod npa 10.244.1.1
answers pod npa fd44:1::1
LL_A=$(ip -n "$NS_A" -6 addr show dev pa0 scope link | awk '/inet6/ {sub("/.*", "", $2); print $2}')
check "pod @$LL_A%eth0 (node's link-local address): AAAA" dig_expect npa "$LL_A%eth0" \
	"AAAA $SVC" "$HDR" "$A6"
check "host @127.0.0.1: A" dig_expect na 127.0.0.1 "A $SVC" "$HDR" "$A4"
check "host @::1: AAAA" dig_expect na ::1 "AAAA $SVC" "$HDR" "$A6"

capture_pass "$TOPO_DIR/pass-daemon"
check "pass-through answers byte for byte as without the daemon" \
	same_bytes "$TOPO_DIR/pass-nodaemon" "$TOPO_DIR/pass-daemon"

# The counters (SIGUSR1 logs them): the malformed queries above were counted
# as passes, qd2 as qdcount, trunc and loop as name.
dns_counters() { # print the daemon's `dns:` counter line, fresh
	local n; n=$(grep -c '^<6>dns:' "$TOPO_DIR/daemon-a.log")
	kill -USR1 "$(daemon_pid a)"
	wait_until 5 sh -c "[ \$(grep -c '^<6>dns:' '$TOPO_DIR/daemon-a.log') -gt $n ]" || return 1
	grep '^<6>dns:' "$TOPO_DIR/daemon-a.log" | tail -n 1
}
counter() { grep -o " $1=[0-9]*" <<<"$2" | cut -d= -f2; }
counted_passes() {
	local line; line=$(dns_counters) || return 1
	echo "$line"
	[ "$(counter qdcount "$line")" -ge 4 ] && [ "$(counter name "$line")" -ge 8 ] &&
		[ "$(counter raw_errors "$line")" = 0 ] && [ "$(counter answered "$line")" -gt 100 ]
}
check "daemon counted the malformed queries as passes, no raw send errors" counted_passes

check "curl -6 from edge-node-a over the fake IPv6 address" curl_fake6 na
check "curl -6 from pod-a over the fake IPv6 address" curl_fake6 npa
check "curl -4 from edge-node-a" curl_page na -4
check "curl -4 from pod-a" curl_page npa -4
check "curl (both families) from pod-a" curl_page npa

stop_daemon a
state=$TOPO_DIR/state-a/fake-ips
check "the state file holds both fake addresses of the service" \
	grep -qx "default/nginx-svc $FAKE4 $FAKE6" "$state"
# Addresses come from a hash of the name: only a saved address the hash would
# not give proves that the daemon reads the file.
seeded=198.18.77.77; [ "$FAKE4" = "$seeded" ] && seeded=198.18.77.78
printf 'default/nginx-svc %s\n' "$seeded" > "$state"
FAKE4=$seeded

# ---- phase 2: no IPv6 range, NXDOMAIN for unknown names, short names ---------------
start_daemon a --dns-unknown=nxdomain --dns-short-names=yes
check "daemon restarted (nxdomain, short names, no IPv6 range)" wait_until 10 daemon_ready
give_up_unless_ready
A4D=$(ans_re "$SVC" 5 A "${FAKE4//./\\.}\$")
NODATA=('status: NOERROR' 'ANSWER: 0, AUTHORITY: 1' "$HDR" "$(soa_re 5)")
HDR_NX=('status: NXDOMAIN' 'ANSWER: 0, AUTHORITY: 1' "$HDR" "$(soa_re 5)")
phase2() { # LABEL RUN SERVER
	local l="$1 @$3" run=$2 srv=$3
	check "$l: AAAA without an IPv6 range -> NODATA with SOA" dig_expect "$run" "$srv" \
		"AAAA $SVC" "${NODATA[@]}"
	check "$l: AAAA without EDNS -> NODATA with SOA" dig_expect "$run" "$srv" \
		"+noedns AAAA $SVC" "${NODATA[@]}"
	check "$l: default TTL 5, the fake IPv4 from the state file" dig_expect "$run" "$srv" "A $SVC" "$HDR" "$A4D"
	check "$l: unknown cluster name -> NXDOMAIN with SOA from the daemon" dig_expect "$run" "$srv" \
		"A nope.default.svc.cluster.local" "${HDR_NX[@]}"
	check "$l: unknown service SRV -> NXDOMAIN" dig_expect "$run" "$srv" \
		"+noedns SRV _http._tcp.nope.default.svc.cluster.local" "${HDR_NX[@]}"
	check "$l: short name <svc>.<ns>" dig_expect "$run" "$srv" "A nginx-svc.default" \
		"$HDR" "$(ans_re nginx-svc.default 5 A "${FAKE4//./\\.}\$")"
	check "$l: short name <svc>.<ns>.svc" dig_expect "$run" "$srv" "A nginx-svc.default.svc" \
		"$HDR" "$(ans_re nginx-svc.default.svc 5 A "${FAKE4//./\\.}\$")"
	check "$l: name outside the cluster still answered by dnsmasq" dig_expect "$run" "$srv" \
		"A www.example.test" "$(ans_re www.example.test 0 A '10\.1\.2\.3$')"
}
phase2 host na 10.53.0.2
phase2 host na fd53::2
phase2 pod npa 10.53.0.2
phase2 pod npa fd53::2
check "pod @10.244.1.1 (node's own address): unknown name -> NXDOMAIN" dig_expect npa 10.244.1.1 \
	"A nope.default.svc.cluster.local" "${HDR_NX[@]}"
check "pod @fd44:1::1 (node's own address): AAAA -> NODATA" dig_expect npa fd44:1::1 \
	"AAAA $SVC" "${NODATA[@]}"

# ---- phase 3: daemon killed, its rules stay: fail-open -----------------------------
stop_daemon a KILL
check "SIGKILL leaves the queue rules in place" sh -c "ip netns exec $NS_A nft list chain inet edgemesh output_dns | grep -q queue"
for c in na npa; do
	for s in 10.53.0.2 fd53::2; do
		check "killed daemon: $c @$s resolves a pass-through name" dig_expect "$c" "$s" \
			"A www.example.test" "$(ans_re www.example.test 0 A '10\.1\.2\.3$')"
	done
done
check "killed daemon: a cluster name now reaches dnsmasq (REFUSED)" dig_expect na 10.53.0.2 \
	"A $SVC" 'status: REFUSED' '!flags: [^;]*aa'
capture_pass "$TOPO_DIR/pass-killed"
check "killed daemon: pass-through bytes as without the daemon" \
	same_bytes "$TOPO_DIR/pass-nodaemon" "$TOPO_DIR/pass-killed"

check_log_errors "$TOPO_DIR/daemon-a.log"
[ "$failed" = 0 ] || { echo "# daemon log:"; tail -n 30 "$TOPO_DIR/daemon-a.log"; }
topo_result
