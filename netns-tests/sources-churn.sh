#!/usr/bin/env bash
# sources-churn.sh — a service added, changed (new backend) and deleted while
# clients are running, through the kube source (tools/fake-apiserver.py as
# the API server / MetaServer), through the edgecore-db source (a database
# written by tools/make-edgecore-db.py) and through the file source (a
# manifest directory written the way editors and config management write:
# temporary file + rename over, and in-place truncate + write). Clients must
# see no error while the service exists, including while the kube server is
# down and restarts, while the database is locked by a writer and while a
# manifest is broken (invalid YAML: the last good objects keep serving).
#
#   edge-node-a 10.77.0.1 ------------------ 10.77.0.2 edge-node-b
#   edgemesh-tproxy --source kube:... | edgecore-db:... | file:DIR
#   fake-apiserver on 127.0.0.1        pod-b 10.244.2.2 nginx :80 (backend 1)
#   clients: curl loops (host)               10.244.2.3 http.server :80 (backend 2)
#     |
#   dns 10.53.0.2 (dnsmasq)
# (netns-tests/lib/topology.sh, namespaces renamed em-sources-$$-*)
#
# Usage: EM_BIN=build/edgemesh-tproxy netns-tests/sources-churn.sh [kube|edgecore-db|file]...
# (no argument: all three)
# Prints `N passed, N failed` last; exits non-zero on failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tools=$here/../tools
EM_BIN=${EM_BIN:-$here/../build/edgemesh-tproxy}
EM_MANIFESTS=/dev/null
. "$here/lib/topology.sh"
NS_A="em-sources-$$-node-a"
NS_B="em-sources-$$-node-b"
NS_PA="em-sources-$$-pod-a"
NS_PB="em-sources-$$-pod-b"
NS_DNS="em-sources-$$-dns"
TOPO_NS="$NS_A $NS_B $NS_PA $NS_PB $NS_DNS"
topo_traps
topo_need root netns nft dnsmasq nginx python3 dig curl

URL="http://$EM_FQDN:12345/"
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- objects ----
pod_json() { # NAME IP
	cat <<EOF
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$1","namespace":"default","labels":{"app":"nginx"}},
 "spec":{"nodeName":"edge-node-b","containers":[{"name":"web","ports":[{"name":"http","containerPort":80}]}]},
 "status":{"phase":"Running","podIP":"$2","hostIP":"10.77.0.2","conditions":[{"type":"Ready","status":"True"}]}}
EOF
}
svc_json() {
	cat <<'EOF'
{"apiVersion":"v1","kind":"Service","metadata":{"name":"nginx-svc","namespace":"default"},
 "spec":{"clusterIP":"None","selector":{"app":"nginx"},"ports":[{"name":"http-0","port":12345,"protocol":"TCP","targetPort":80}]}}
EOF
}

# ---- the kube source: a fake API server inside edge-node-a ----
api_start() { # [PORT]
	rm -f "$TOPO_DIR/api.out"
	# not through the na function: $! must be the server itself, not a subshell
	ip netns exec "$NS_A" /usr/bin/python3 "$tools/fake-apiserver.py" --port "${1:-0}" --state "$TOPO_DIR/api.json" \
		--rv-start "${2:-100}" > "$TOPO_DIR/api.out" 2>"$TOPO_DIR/api.err" &
	echo $! > "$TOPO_DIR/api.pid"
	wait_until 5 grep -q PORT "$TOPO_DIR/api.out"
	API_PORT=$(awk '/PORT/ {print $2}' "$TOPO_DIR/api.out")
}
api_stop() { kill -9 "$(cat "$TOPO_DIR/api.pid")"; wait "$(cat "$TOPO_DIR/api.pid")" 2>/dev/null; rm -f "$TOPO_DIR/api.pid"; }
api() { # VERB JSON
	na curl -sS --fail -X POST --data-binary "$2" "http://127.0.0.1:$API_PORT/_ctl/$1" >/dev/null
}
kube_init() { api_start; api upsert "{\"resource\":\"pods\",\"objects\":[$(pod_json nginx-0 10.244.2.2)]}"; SOURCE="kube:http://127.0.0.1:$API_PORT"; }
kube_add_service() { api upsert "{\"resource\":\"services\",\"objects\":[$(svc_json)]}"; }
kube_change_backend() {
	api upsert "{\"resource\":\"pods\",\"objects\":[$(pod_json nginx-1 10.244.2.3)]}" &&
	api delete '{"resource":"pods","namespace":"default","name":"nginx-0"}'
}
kube_disturb() { # the server dies and comes back on the same port (history compacted: 410, relist)
	api_stop; sleep 1.5; api_start "$API_PORT" 100000
}
kube_delete_service() { api delete '{"resource":"services","namespace":"default","name":"nginx-svc"}'; }

# ---- the edgecore-db source ----
DB() { /usr/bin/python3 "$tools/make-edgecore-db.py" "$TOPO_DIR/edgecore.db" --v2 --podlist "$@"; }
edgecore_init() { pod_json nginx-0 10.244.2.2 | DB -; SOURCE="edgecore-db:$TOPO_DIR/edgecore.db"; }
edgecore_add_service() { svc_json | DB -; }
edgecore_change_backend() { pod_json nginx-1 10.244.2.3 | DB --delete Pod/default/nginx-0 -; }
edgecore_disturb() { # a writer commits, then holds the database locked for 2.5 s (busy timeout 1 s)
	/usr/bin/python3 -c 'import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("INSERT OR REPLACE INTO meta VALUES (\"default/configmap/x\", \"configmap\", \"{}\")")
c.execute("BEGIN EXCLUSIVE"); time.sleep(2.5); c.execute("COMMIT")' "$TOPO_DIR/edgecore.db"
}
edgecore_delete_service() { DB --delete Service/default/nginx-svc; }

# ---- clients ----
answers() { na dig +short +time=1 +tries=1 @10.53.0.2 "$EM_FQDN" A | grep -q '^198\.18\.'; }
daemon_alive() { kill -0 "$DAEMON_PID"; }
# Not answered by us, with positive evidence: the real resolver (dnsmasq,
# --no-resolv) answered REFUSED, without an address, and the daemon runs.
no_answer() {
	local out; out=$(na dig +time=1 +tries=1 @10.53.0.2 "$EM_FQDN" A) || return 1
	grep -q 'status: REFUSED' <<<"$out" && ! grep -q '198\.18\.' <<<"$out" && daemon_alive
}
body_has() { na curl -sS --max-time 2 "$URL" | grep -q "$1"; }
clients_start() { # 3 loops of curl, one line per request: ok / FAIL <when> <what curl said>
	for i in 1 2 3; do
		ip netns exec "$NS_A" sh -c "while [ ! -e $TOPO_DIR/clients.stop ]; do
			out=\$(curl -sS --max-time 3 -o /dev/null -w '%{http_code}' $URL 2>&1)
			if [ \"\$out\" = 200 ]; then echo ok; else echo \"FAIL \$(date +%T.%N | cut -c1-12) \$out\" | tr '\n' ' '; echo; fi
			sleep 0.05; done" > "$TOPO_DIR/client-$i.log" 2>&1 &
		echo $! > "$TOPO_DIR/client-$i.pid"
	done
}
clients_stop() {
	touch "$TOPO_DIR/clients.stop"
	for i in 1 2 3; do wait "$(cat "$TOPO_DIR/client-$i.pid")" 2>/dev/null; rm -f "$TOPO_DIR/client-$i.pid"; done
	rm -f "$TOPO_DIR/clients.stop"
}
clients_clean() {
	local ok fail
	ok=$(cat "$TOPO_DIR"/client-*.log | grep -c '^ok$')
	fail=$(cat "$TOPO_DIR"/client-*.log | grep -vc '^ok$')
	echo "requests: $ok ok, $fail failed"
	grep -h '^FAIL' "$TOPO_DIR"/client-*.log | head -n 5
	[ "$ok" -gt 20 ] && [ "$fail" = 0 ]
}

backend2_start() {
	ip -n "$NS_PB" addr add 10.244.2.3/24 dev eth0
	mkdir -p "$TOPO_DIR/b2" && echo "Welcome to nginx! backend-2" > "$TOPO_DIR/b2/index.html"
	ip netns exec "$NS_PB" /usr/bin/python3 -m http.server --bind 10.244.2.3 --directory "$TOPO_DIR/b2" 80 >/dev/null 2>&1 &
	echo $! > "$TOPO_DIR/b2.pid"
	# (not `ss -H`: it exits 0 with no match; http.server listens only
	# after a reverse lookup of its address, seconds in a namespace)
	wait_until 15 nb curl -sf --max-time 1 -o /dev/null http://10.244.2.3/ || { echo "backend 2 did not start"; exit 1; }
}

run_source() { # kube | edgecore
	local s=$1 t0 t1 pid
	"${s}_init"
	mkdir -p "$TOPO_DIR/state-$s"
	ip netns exec "$NS_A" "$EM_BIN" --source "$SOURCE" --state-dir "$TOPO_DIR/state-$s" --node-name edge-node-a \
		--poll-interval-ms 100 --log-level "${EM_LOG_LEVEL:-info}" >>"$TOPO_DIR/daemon-$s.log" 2>&1 &
	pid=$!; echo $pid > "$TOPO_DIR/daemon-$s.pid"; DAEMON_PID=$pid
	check "$s: daemon up, no service yet" wait_until 10 na nft list table inet edgemesh
	check "$s: unknown before it is added" no_answer
	t0=$(ms); "${s}_add_service"
	check "$s: service added -> answered" wait_until 10 answers
	t1=$(ms); echo "# $s: service added to answered in DNS: $((t1 - t0)) ms (checked every 50 ms; edgecore-db polls every 100 ms here)"
	check "$s: reaches backend 1" wait_until 5 body_has 'Welcome to nginx!'
	clients_start
	sleep 0.5
	"${s}_change_backend"
	check "$s: backend changed -> backend 2 serves" wait_until 10 body_has 'backend-2'
	"${s}_disturb"
	# Wait for the event (the daemon saw the disturbance), then assert.
	check "$s: the disturbance was seen and survived (logged)" \
		wait_until 10 grep -q 'keeping the last good data' "$TOPO_DIR/daemon-$s.log"
	check "$s: after the disturbance, still backend 2" body_has 'backend-2'
	clients_stop
	check "$s: no client error while the service existed" clients_clean
	echo "# $s: $(sed -n 's/^requests: //p' "$TOPO_DIR/check.out") (3 curl loops through add, backend change, disturbance)"
	# (reconnect backoff: up to 4 s after 1.5 s down)
	[ "$s" = kube ] && check "kube: relisted after 410 from the restarted server" \
		wait_until 10 grep -q 'expired (410), relisting' "$TOPO_DIR/daemon-$s.log"
	"${s}_delete_service"
	check "$s: service deleted -> no longer answered" wait_until 10 no_answer
	stop_pid "$s" "$pid"
	check_log_errors "$TOPO_DIR/daemon-$s.log"
	[ "$failed" = 0 ] || { echo "# daemon log ($s):"; tail -n 30 "$TOPO_DIR/daemon-$s.log"; }
	[ -n "${EM_KEEP_LOG:-}" ] && cp "$TOPO_DIR/daemon-$s.log" "$EM_KEEP_LOG.$s"
	[ -e "$TOPO_DIR/api.pid" ] && api_stop
	rm -f "$TOPO_DIR"/client-*.log
}

# ---- the file source: a manifest directory ----
# Two ways of writing a file, as editors and config management do:
# write_rename: a hidden temporary file in the same directory renamed over
# the target (ansible, puppet, `sed -i`, most editors' "atomic save"): the
# file changes inode in one step. write_inplace: the same inode truncated
# (O_TRUNC) and rewritten (`cat > f`, vim with backupcopy=yes): for a
# moment the file is empty, the source's debounce must not publish that.
write_rename() { # FILE < content
	local tmp; tmp="$(dirname "$1")/.$(basename "$1").tmp.$$"
	cat > "$tmp" && mv -f "$tmp" "$1"
}
write_inplace() { # FILE < content
	local ino; ino=$(stat -c %i "$1")
	cat > "$1" && [ "$(stat -c %i "$1")" = "$ino" ]
}
pod_yaml() { # NAME IP
	cat <<EOF2
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: default
  labels: {app: nginx}
spec:
  nodeName: edge-node-b
  containers:
    - name: web
      ports: [{name: http, containerPort: 80}]
status:
  phase: Running
  podIP: $2
  hostIP: 10.77.0.2
  conditions: [{type: Ready, status: "True"}]
EOF2
}
svc_yaml() { # [EXTRA_PORT]: a second service port, to see a reload that changes nothing else
	cat <<EOF2
apiVersion: v1
kind: Service
metadata:
  name: nginx-svc
  namespace: default
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
    - {name: http-0, port: 12345, protocol: TCP, targetPort: 80}
EOF2
	[ -z "${1:-}" ] || echo "    - {name: http-1, port: $1, protocol: TCP, targetPort: 80}"
}
# Invalid YAML whose error libyaml reports on line 5 ("mapping values are
# not allowed in this context"): the expected log is svc.yaml:5:COL: reason.
BROKEN_LINE=5
svc_yaml_broken() {
	cat <<'EOF2'
apiVersion: v1
kind: Service
metadata:
  name: nginx-svc
  namespace: default: oops
spec:
  selector: {app: nginx}
EOF2
}

# latency T0 SECONDS CMD...: polls CMD every 10 ms (each poll is a dig or a
# curl, ~5-15 ms itself) and prints the ms from T0 to its first success.
latency() {
	local t0=$1 deadline=$(( $(ms) + $2 * 1000 )); shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$(ms)" -lt "$deadline" ] || { echo "not within $(( deadline - t0 )) ms"; return 1; }
		sleep 0.01
	done
	echo "$(( $(ms) - t0 )) ms"
}
figure() { # LABEL: the latency just measured by check
	echo "# file: $1: $(tail -n 1 "$TOPO_DIR/check.out")"
}
backend1() { local b; b=$(na curl -sS --max-time 2 "$URL") && [[ $b == *'Welcome to nginx!'* && $b != *backend-2* ]]; }
backend2() { body_has 'backend-2'; }
# Six requests, each answered, each by backend 2: positive evidence that
# backend 1 is out (a failing curl proves nothing).
never_backend1() { local i; for i in 1 2 3 4 5 6; do backend2 || return 1; done; }
port2() { na curl -sS --max-time 2 -o /dev/null "http://$EM_FQDN:12346/"; }
# Refused, not timed out: the daemon resets connections to a port that is no
# service port (curl exit 7 or 56, depending on whether the reset beats the
# handshake's end), and the daemon still runs.
no_port2() {
	local rc=0
	na curl -sS --max-time 2 -o /dev/null "http://$EM_FQDN:12346/" || rc=$?
	echo "curl exit $rc"; { [ "$rc" = 7 ] || [ "$rc" = 56 ]; } && daemon_alive
}
broken_seen() { grep -c "svc.yaml:$BROKEN_LINE:" "$TOPO_DIR/daemon-file.log"; }
log_has() { grep -q "$1" "$TOPO_DIR/daemon-file.log"; }

slow_writer_probe() { # FILE (holding the service)
	local i miss=0 n=0 pid
	( exec > "$1"; sleep 0.5; svc_yaml ) & pid=$!
	for i in 1 2 3 4 5 6 7 8 9 10; do
		n=$((n + 1)); answers || miss=$((miss + 1)); sleep 0.05
	done
	wait "$pid"
	echo "# file: slow in-place writer (truncate, 0.5 s, write): $miss of $n DNS probes saw no answer" | tee "$TOPO_DIR/slow.out"
	wait_until 5 answers
}

run_file() {
	local dir=$TOPO_DIR/manifests t0 pid n
	mkdir -p "$dir" "$TOPO_DIR/state-file"
	pod_yaml nginx-0 10.244.2.2 | write_rename "$dir/pods.yaml"
	ip netns exec "$NS_A" "$EM_BIN" --source "file:$dir" --state-dir "$TOPO_DIR/state-file" --node-name edge-node-a \
		--log-level "${EM_LOG_LEVEL:-info}" >>"$TOPO_DIR/daemon-file.log" 2>&1 &
	pid=$!; echo $pid > "$TOPO_DIR/daemon-file.pid"; DAEMON_PID=$pid
	check "file: daemon up, no service yet" wait_until 10 na nft list table inet edgemesh
	check "file: unknown before it is added" no_answer

	t0=$(ms); svc_yaml | write_rename "$dir/svc.yaml"
	check "file: service added (temp + rename) -> answered" latency "$t0" 10 answers
	figure "svc.yaml renamed in -> DNS answer"
	check "file: reaches backend 1" wait_until 5 backend1
	clients_start
	sleep 0.3

	t0=$(ms); pod_yaml nginx-1 10.244.2.3 | write_inplace "$dir/pods.yaml"
	check "file: backend changed (in-place truncate + write) -> backend 2 serves" latency "$t0" 10 backend2
	figure "pods.yaml rewritten in place -> backend 2 in use"
	t0=$(ms); pod_yaml nginx-0 10.244.2.2 | write_rename "$dir/pods.yaml"
	check "file: backend changed (temp + rename) -> backend 1 serves" latency "$t0" 10 backend1
	figure "pods.yaml renamed over -> backend 1 in use"
	# Both pods for a moment (a rolling update), then only the new one.
	{ pod_yaml nginx-0 10.244.2.2; echo ---; pod_yaml nginx-1 10.244.2.3; } | write_inplace "$dir/pods.yaml"
	t0=$(ms); pod_yaml nginx-1 10.244.2.3 | write_inplace "$dir/pods.yaml"
	check "file: rolling update (two pods, then the new one only) -> backend 2 serves" latency "$t0" 10 backend2
	figure "pods.yaml rewritten in place -> backend 2 only"
	check "file: backend 1 no longer used (6 requests)" never_backend1

	# A broken manifest: the objects last read from it keep serving, the
	# log names the file and the line.
	svc_yaml_broken | write_inplace "$dir/svc.yaml"
	check "file: broken svc.yaml logged with file and line ($dir/svc.yaml:$BROKEN_LINE:...)" \
		wait_until 5 log_has "$dir/svc.yaml:$BROKEN_LINE:[0-9]*: "
	grep "svc.yaml:" "$TOPO_DIR/daemon-file.log" | tail -n 1 | sed 's/^/# file: daemon log: /'
	check "file: while svc.yaml is broken, still answered" answers
	check "file: while svc.yaml is broken, still backend 2" backend2
	# A broken file arriving by rename too; then the fixed file (with a second
	# port, so that the reload is visible) replaces it.
	n=$(broken_seen)
	svc_yaml_broken | write_rename "$dir/svc.yaml"
	check "file: broken svc.yaml (renamed in) -> parse error logged again" \
		wait_until 5 sh -c "[ \$(grep -c 'svc.yaml:$BROKEN_LINE:' '$TOPO_DIR/daemon-file.log') -gt $n ]"
	check "file: broken svc.yaml (renamed in) -> still served" backend2
	check "file: port 12346 not served before the fix" no_port2
	t0=$(ms); svc_yaml 12346 | write_rename "$dir/svc.yaml"
	check "file: fixed svc.yaml (temp + rename) loaded -> its new port serves" latency "$t0" 10 port2
	figure "svc.yaml fixed -> new port in use"
	sleep 0.3
	clients_stop
	check "file: no client error while the service existed" clients_clean
	echo "# file: $(sed -n 's/^requests: //p' "$TOPO_DIR/check.out") (3 curl loops through add, 4 backend changes, 2 broken manifests)"

	# A writer that truncates and then takes longer than the source's 100 ms
	# quiet period to write (`slow-command > DIR/svc.yaml`): the source holds
	# a file open for writing until its close, so the empty file is never
	# published and the service stays answered throughout.
	slow_writer_probe "$dir/svc.yaml"
	check "file: slow in-place writer (truncate, 0.5 s, write) -> answered throughout" \
		grep -q ' 0 of ' "$TOPO_DIR/slow.out"

	t0=$(ms); rm "$dir/svc.yaml"
	check "file: svc.yaml removed -> no longer answered" latency "$t0" 10 no_answer
	figure "svc.yaml removed -> no DNS answer"
	check "file: removal logged" log_has "svc.yaml: removed"
	stop_pid file "$pid"
	check_log_errors "$TOPO_DIR/daemon-file.log" "svc\.yaml:$BROKEN_LINE:"
	[ "$failed" = 0 ] || { echo "# daemon log (file):"; tail -n 30 "$TOPO_DIR/daemon-file.log"; }
	[ -n "${EM_KEEP_LOG:-}" ] && cp "$TOPO_DIR/daemon-file.log" "$EM_KEEP_LOG.file"
	rm -f "$TOPO_DIR"/client-*.log
}

topo_network
topo_dnsmasq
topo_nginx
backend2_start
for s in "${@:-kube edgecore file}"; do
	for one in $s; do
		case $one in
		kube) run_source kube ;;
		edgecore|edgecore-db) run_source edgecore ;;
		file) run_file ;;
		*) echo "unknown source $one (kube, edgecore-db, file)"; exit 2 ;;
		esac
	done
done
topo_result
