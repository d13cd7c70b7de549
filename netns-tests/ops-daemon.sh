#!/usr/bin/env bash
# ops-daemon.sh — the daemon as a service: --check-config and option
# errors, sd_notify readiness and watchdog pings (a fake NOTIFY_SOCKET),
# the status socket, the metrics endpoint checked against known traffic,
# and SIGHUP reloads (a source added, invalid and restart-only changes
# refused) while a connection stays open and DNS keeps answering.
#
# On the walkthrough topology (lib/topology.sh); only edge-node-a runs a
# daemon, the clients are host processes of edge-node-a:
#
#   edge-node-a 10.77.0.1 ------------------- 10.77.0.2 edge-node-b
#   edgemesh-tproxy --config $TOPO_DIR/em.conf          10.244.2.1
#   notify listener (python, AF_UNIX datagrams)           |  (veth)
#   10.53.0.1                                          pod-b 10.244.2.2
#     |  (veth)                                        nginx :80, echo :9000
#   dns 10.53.0.2: dnsmasq
#
# Usage: EM_BIN=build/edgemesh-tproxy bash netns-tests/ops-daemon.sh   (root)
# Last line: `N passed, N failed`; exit status non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=${EM_MANIFESTS:-$here/../contrib/manifests/nginx.yaml}
# shellcheck source-path=SCRIPTDIR source=lib/topology.sh
. "$here/lib/topology.sh"
topo_traps
topo_need root netns dnsmasq nginx python3 dig curl

topo_up

CONF=$TOPO_DIR/em.conf
SOCK=$TOPO_DIR/run/control.sock
NOTIFY=$TOPO_DIR/notify.sock
NLOG=$TOPO_DIR/notify.log
DLOG=$TOPO_DIR/daemon-a.log
METRICS=127.0.0.1:9482

write_conf() { # extra lines on stdin
	{
		echo "source = file:$TOPO_DIR/manifests"
		echo "state-dir = $TOPO_DIR/state-a"
		echo "control-socket = $SOCK"
		echo "metrics-listen = $METRICS"
		echo "node-name = edge-node-a"
		cat
	} > "$CONF.tmp" && mv "$CONF.tmp" "$CONF"
}

# ---- 1. option errors and --check-config (no root needed, no namespace) --------
out=$("$EM_BIN" --config /dev/null --fake-ipv4-range=bogus 2>&1); rc=$?
check "--fake-ipv4-range=bogus: exit 2, names option, value and form" \
	sh -c "[ $rc = 2 ] && echo '$out' | grep -q -- '--fake-ipv4-range: \"bogus\" is not an IPv4 CIDR'"
out=$("$EM_BIN" --config /dev/null --queues=0 2>&1); rc=$?
check "--queues=0: exit 2 with the allowed range" \
	sh -c "[ $rc = 2 ] && echo '$out' | grep -q -- '--queues: \"0\" is not a number from 1 to 64'"
echo | write_conf
check "--check-config on a good configuration: exit 0, counts the objects" \
	sh -c "'$EM_BIN' --config '$CONF' --check-config | grep -q '2 object(s)'"
mkdir -p "$TOPO_DIR/bad"
printf 'kind: Service\nmetadata: {name: x\n' > "$TOPO_DIR/bad/broken.yaml"
out=$("$EM_BIN" --config "$CONF" --source "file:$TOPO_DIR/bad" --check-config 2>&1); rc=$?
check "--check-config on a broken manifest: exit 2, file:line:column" \
	sh -c "[ $rc = 2 ] && printf '%s' \"\$1\" | grep -q 'broken.yaml:[0-9]*:[0-9]*:'" _ "$out"
printf 'queues = 0\n' > "$TOPO_DIR/bad.conf"
out=$("$EM_BIN" --config "$TOPO_DIR/bad.conf" --check-config 2>&1); rc=$?
check "--check-config on a bad config file: exit 2, file:line and option" \
	sh -c "[ $rc = 2 ] && printf '%s' \"\$1\" | grep -q 'bad.conf:1: --queues'" _ "$out"

# ---- 2. start under a fake service manager -------------------------------------
# The listener records every notification; at READY=1 it looks at once
# whether the ruleset, the listener and the DNS queue exist.
na python3 -c '
import socket, subprocess, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1); seen = False
while True:
    for line in s.recv(4096).decode().split("\n"):
        out.write("%.3f %s\n" % (time.time(), line))
        if line == "READY=1" and not seen:
            seen = True
            table = subprocess.run(["nft", "list", "table", "inet", "edgemesh"], capture_output=True).returncode == 0
            lst = b"15001" in subprocess.run(["ss", "-Hltn", "sport = :15001"], capture_output=True).stdout
            q = open("/proc/net/netfilter/nfnetlink_queue").read().strip() != ""
            out.write("AT-READY table=%s listener=%s queue=%s\n" % (table, lst, q))
' "$NOTIFY" "$NLOG" &
echo $! > "$TOPO_DIR/notify.pid"
wait_until 5 test -S "$NOTIFY"

start_ops_daemon() {
	mkdir -p "$TOPO_DIR/state-a"
	# Not through na(): $! must be the daemon itself, not a subshell.
	ip netns exec "$NS_A" env NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC=600000 \
		"$EM_BIN" --config "$CONF" >>"$DLOG" 2>&1 &
	echo $! > "$TOPO_DIR/daemon-a.pid"
}
start_ops_daemon
wait_until 10 grep -q 'AT-READY' "$NLOG"
check "READY=1 only once ruleset, listener and DNS queue are up" \
	grep -q 'AT-READY table=True listener=True queue=True' "$NLOG"
check "STATUS= names services, backends and sources" \
	wait_until 5 grep -q 'STATUS=1 services, 2 backends; 1/1 sources up' "$NLOG"
sleep 1.5
pings=$(grep -c 'WATCHDOG=1' "$NLOG")
check "watchdog pings while the threads are idle (got $pings in ~1.5 s at 300 ms)" \
	test "$pings" -ge 3

# ---- 3. status ---------------------------------------------------------------
check "status --json lists the service, its ports, backends and the source" \
	sh -c "'$EM_BIN' status --json --control-socket='$SOCK' | python3 -c '
import json, sys
d = json.load(sys.stdin)
s = [x for x in d[\"services\"] if x[\"name\"] == \"nginx-svc\"][0]
assert s[\"fake_ipv4\"].startswith(\"198.18.\"), s
ports = {p[\"port\"]: p for p in s[\"ports\"]}
assert ports[12345][\"app\"] == \"http\" and ports[23456][\"app\"] == \"l4\", ports
assert ports[12345][\"strategy\"] == \"round-robin\", ports
assert ports[12345][\"backends\"][0][\"ip\"] == \"10.244.2.2\" and ports[12345][\"backends\"][0][\"port\"] == 80
assert d[\"sources\"][0][\"state\"] == \"loaded\" and d[\"sources\"][0][\"syncs\"] >= 1, d[\"sources\"]
'"
check "status (text) prints the service with fake IP and backend health" \
	sh -c "'$EM_BIN' status --control-socket='$SOCK' | grep -A3 'default/nginx-svc  fake 198.18.' | grep -q '10.244.2.2:80 unused'"
check "status without a daemon: exit 1 and a reason" \
	sh -c "'$EM_BIN' status --control-socket='$TOPO_DIR/none.sock' 2>&1; [ \$? = 1 ]"
check "control socket is mode 0600 in a 0700 directory" \
	sh -c "[ \$(stat -c %a '$SOCK') = 600 ] && [ \$(stat -c %a '$TOPO_DIR/run') = 700 ]"

# ---- 4. metrics after known traffic -------------------------------------------
FAKE=$(na dig +short +time=1 +tries=1 @10.53.0.2 "$EM_FQDN" A)
for _ in 1 2 3; do na dig +short +time=1 +tries=1 @10.53.0.2 "$EM_FQDN" A >/dev/null; done
for _ in 1 2 3 4 5; do na curl -s -o /dev/null --max-time 3 "http://$FAKE:12345/"; done
for i in 1 2 3; do
	na python3 -c 'import socket,sys; c=socket.create_connection((sys.argv[1],23456),3); c.sendall(b"x"*1000); n=0
while n<1000: n+=len(c.recv(4096))
c.close()' "$FAKE"
done
na curl -s --max-time 3 "http://$METRICS/metrics" > "$TOPO_DIR/metrics.txt"
metric() { grep -F "edgemesh_tproxy_$1 " "$TOPO_DIR/metrics.txt" | grep -v '^#' | awk '{print $NF}'; }
check "dns_queries_total{outcome=answered} = 4 (4 queries for the service)" \
	test "$(metric 'dns_queries_total{outcome="answered"}')" = 4
check "service_requests_total for port 12345 = 5 curls" \
	test "$(metric 'service_requests_total{service="default/nginx-svc",port="12345"}')" = 5
check "service_requests_total for port 23456 = 3 connections" \
	test "$(metric 'service_requests_total{service="default/nginx-svc",port="23456"}')" = 3
check "backend_picks_total of 10.244.2.2:9000 = 3" \
	test "$(metric 'backend_picks_total{service="default/nginx-svc",port="23456",backend="10.244.2.2:9000"}')" = 3
check "connections_accepted_total = 8" test "$(metric connections_accepted_total)" = 8
check "forwarded_bytes_total upstream >= 3000 (3 x 1000 echo bytes + 5 requests)" \
	test "$(metric 'forwarded_bytes_total{direction="upstream"}')" -ge 3000
check "services gauge = 1, build_info present, source_up = 1" sh -c "
	grep -qx 'edgemesh_tproxy_services 1' '$TOPO_DIR/metrics.txt' &&
	grep -q '^edgemesh_tproxy_build_info{version=\"' '$TOPO_DIR/metrics.txt' &&
	grep -q '^edgemesh_tproxy_source_up{source=\"file:$TOPO_DIR/manifests\",type=\"file\"} 1' '$TOPO_DIR/metrics.txt'"
check "every family has HELP and TYPE once, names are edgemesh_tproxy_*" python3 -c '
import re, sys
helps, types, names = {}, {}, set()
for line in open(sys.argv[1]):
    if line.startswith("# HELP "): n = line.split()[2]; helps[n] = helps.get(n, 0) + 1
    elif line.startswith("# TYPE "):
        n, t = line.split()[2:4]; types[n] = types.get(n, 0) + 1
        assert t in ("counter", "gauge"), line
        assert (t == "counter") == n.endswith("_total"), line
    elif line.strip():
        m = re.match(r"([a-z_]+)(\{[^}]*\})? [0-9.e+-]+$", line.strip()); assert m, line
        names.add(m.group(1))
assert all(v == 1 for v in helps.values()) and all(v == 1 for v in types.values())
assert names <= set(types), names - set(types)
assert all(n.startswith("edgemesh_tproxy_") for n in names)
' "$TOPO_DIR/metrics.txt"
check "metrics: other paths are 404" sh -c "ip netns exec $NS_A curl -s -o /dev/null -w '%{http_code}' http://$METRICS/ | grep -qx 404"

# ---- 4b. DNS queries by type ----------------------------------------------------
# The 4 A queries above, then known queries of each type between two
# scrapes: dns_questions_total{qtype,outcome} must have risen by exactly
# these, every other pair by 0. Unknown names in the domain are passed
# (dns-unknown = pass); dnsmasq (--no-resolv) refuses them.
check "dns_questions_total{qtype=A,outcome=answered} = 4 (the 4 A queries)" \
	test "$(metric 'dns_questions_total{qtype="A",outcome="answered"}')" = 4
ask() { # TYPE NAME [COUNT]
	for _ in $(seq "${3:-1}"); do na dig +short +time=1 +tries=1 @10.53.0.2 "$2" "$1" >/dev/null; done
}
ask A "$EM_FQDN" 3
ask AAAA "$EM_FQDN" 2
ask SRV "_http-0._tcp.$EM_FQDN"
ask TXT "$EM_FQDN"
ask MX "$EM_FQDN" 2
ask A "nosuch.default.svc.cluster.local"
ask AAAA "example.org"
na curl -s --max-time 3 "http://$METRICS/metrics" > "$TOPO_DIR/metrics-qtype.txt"
check "dns_questions_total rose by exactly the queries sent, per type and outcome" python3 -c '
import re, sys
def load(path):
    out = {}
    for line in open(path):
        m = re.match(r"edgemesh_tproxy_dns_questions_total\{qtype=\"(\w+)\",outcome=\"(\w+)\"\} (\d+)$", line.strip())
        if m: out[m.group(1), m.group(2)] = int(m.group(3))
    return out
before, after = load(sys.argv[1]), load(sys.argv[2])
assert len(before) == 80 and set(before) == set(after), (len(before), set(before) ^ set(after))
want = {("A", "answered"): 3, ("AAAA", "answered"): 2, ("SRV", "answered"): 1, ("TXT", "answered"): 1,
        ("other", "answered"): 2, ("A", "unknown"): 1, ("AAAA", "outside"): 1}
got = {k: after[k] - before[k] for k in after if after[k] != before[k]}
assert got == want, "got %s, want %s" % (sorted(got.items()), sorted(want.items()))
' "$TOPO_DIR/metrics.txt" "$TOPO_DIR/metrics-qtype.txt"
check "dns_queries_total{outcome=answered} rose by the 9 answered queries" \
	test "$(grep -F 'edgemesh_tproxy_dns_queries_total{outcome="answered"} ' "$TOPO_DIR/metrics-qtype.txt" | awk '{print $NF}')" = 13

# ---- 5. SIGHUP reload ----------------------------------------------------------
# A connection open across every reload, and DNS asked in a loop meanwhile.
ip netns exec "$NS_A" python3 -c '
import socket, sys, time
c = socket.create_connection((sys.argv[1], 23456), 3); c.settimeout(3)
ok = open(sys.argv[2], "w", buffering=1)
i = 0
while True:
    c.sendall(b"ping%d\n" % i); d = c.recv(100)
    ok.write("%d %s %.3f\n" % (i, d == b"ping%d\n" % i, time.time())); time.sleep(0.05); i += 1
' "$FAKE" "$TOPO_DIR/longconn.log" &
echo $! > "$TOPO_DIR/longconn.pid"
( while :; do na dig +short +time=1 +tries=1 @10.53.0.2 "$EM_FQDN" A | grep -q '^198\.18\.' \
	&& echo ok || echo FAIL; sleep 0.1; done ) > "$TOPO_DIR/digloop.log" 2>&1 &
echo $! > "$TOPO_DIR/digloop.pid"

# Both must be going before the first reload.
wait_until 10 sh -c "[ \$(wc -l < '$TOPO_DIR/longconn.log') -ge 5 ] && grep -q ok '$TOPO_DIR/digloop.log'"
conn_lines_before=$(wc -l < "$TOPO_DIR/longconn.log")
mkdir -p "$TOPO_DIR/more"
cat > "$TOPO_DIR/more/extra.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: extra-svc, namespace: default}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 8080, targetPort: 80}]
YAML
echo "source = file:$TOPO_DIR/more" | write_conf
kill -HUP "$(daemon_pid a)"
check "reload adds the new source's service" \
	wait_until 5 sh -c "'$EM_BIN' status --json --control-socket='$SOCK' | grep -q extra-svc"
check "READY=1 again after RELOADING=1" \
	wait_until 3 sh -c "grep -A5 RELOADING=1 '$NLOG' | grep -q READY=1"

printf 'queues = 0\n' | write_conf
kill -HUP "$(daemon_pid a)"
check "invalid config refused, reason logged" \
	wait_until 3 sh -c "grep -q 'queues: \"0\" is not a number' '$DLOG' && grep -q 'reload refused' '$DLOG'"
printf 'tproxy-port = 15002\n' | write_conf
kill -HUP "$(daemon_pid a)"
check "restart-only change refused naming the option" \
	wait_until 3 grep -q 'reload refused: --tproxy-port changed' "$DLOG"
check "refused reloads keep the running configuration (extra-svc still served)" \
	sh -c "'$EM_BIN' status --json --control-socket='$SOCK' | grep -q extra-svc"
echo | write_conf
kill -HUP "$(daemon_pid a)"
check "a source dropped by a reload takes its objects away" \
	wait_until 5 sh -c "'$EM_BIN' status --json --control-socket='$SOCK' > '$TOPO_DIR/st.json' &&
		grep -q nginx-svc '$TOPO_DIR/st.json' && ! grep -q extra-svc '$TOPO_DIR/st.json'"
na curl -s "http://$METRICS/metrics" > "$TOPO_DIR/metrics2.txt"
check "reloads_total counts 2 ok and 2 refused" sh -c "
	grep -q 'reloads_total{result=\"ok\"} 2' '$TOPO_DIR/metrics2.txt' &&
	grep -q 'reloads_total{result=\"refused\"} 2' '$TOPO_DIR/metrics2.txt'"
sleep 0.5
kill "$(cat "$TOPO_DIR/digloop.pid")" 2>/dev/null
# Wait for the event (20 round trips in all) rather than assume how long the
# reloads above took: on a quiet machine they are over in under a second.
wait_until 10 sh -c "[ \$(grep -c True '$TOPO_DIR/longconn.log') -ge 20 ]"
check "the open connection echoed through every reload and still does" \
	sh -c "[ $conn_lines_before -ge 5 ] && kill -0 \$(cat '$TOPO_DIR/longconn.pid') && [ \$(grep -c True '$TOPO_DIR/longconn.log') -ge 20 ] &&
	       ! grep -q False '$TOPO_DIR/longconn.log' && n=\$(wc -l < '$TOPO_DIR/longconn.log') && sleep 0.3 &&
	       [ \$(wc -l < '$TOPO_DIR/longconn.log') -gt \$n ]"
check "DNS answered throughout the reloads" \
	sh -c "[ \$(grep -c ok '$TOPO_DIR/digloop.log') -ge 5 ] && ! grep -q FAIL '$TOPO_DIR/digloop.log'"
kill "$(cat "$TOPO_DIR/longconn.pid")" 2>/dev/null
wait "$(cat "$TOPO_DIR/longconn.pid")" 2>/dev/null

stop_daemon a
check "STOPPING=1 sent, control socket and the directory it made removed" \
	sh -c "grep -q STOPPING=1 '$NLOG' && [ ! -e '$SOCK' ] && [ ! -e '$TOPO_DIR/run' ]"

# ---- 6. metrics can be turned off ------------------------------------------------
printf 'metrics-listen = \n' > "$TOPO_DIR/nometrics.conf"
sed '/metrics-listen/d' "$CONF" >> "$TOPO_DIR/nometrics.conf"
ip netns exec "$NS_A" "$EM_BIN" --config "$TOPO_DIR/nometrics.conf" >>"$DLOG" 2>&1 &
echo $! > "$TOPO_DIR/daemon-a.pid"
wait_until 10 daemon_answers a
check "--metrics-listen= (empty): nothing listens on 9482" sh -c "! ip netns exec $NS_A ss -Hltn 'sport = :9482' | grep -q ."
stop_daemon a

# The refused reloads above log their reason at error level, on purpose.
check_log_errors "$DLOG" 'reload refused|is not a number'
[ "$failed" = 0 ] || { echo "# daemon log:"; tail -n 20 "$DLOG" | sed 's/^/#   /'; }
topo_result
