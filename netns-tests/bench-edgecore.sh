#!/bin/sh
# bench-edgecore.sh — how long the edgecore-db source holds SQLite's read
# lock (issue 14: edgecore writes with a 5 s busy timeout in rollback-journal
# mode, so every read must stay far below; the target is < 100 ms) on a
# database of SERVICES services, as many Endpoints, and PODS pods, in both
# tables (meta_v2 with gorm's columns, meta with podlists), plus every kind
# of row that must be left alone and SECRETS secrets. Prints the lock time
# next to a peer measured in the same run (every row copied, as before the
# reads were selected in SQL). Figures only: nothing is asserted.
# No networking involved: no namespace needed.
#
# usage: netns-tests/bench-edgecore.sh [BUILD_DIR] [SERVICES] [PODS] [SECRETS]
# BENCH_DB=FILE keeps the generated database there (reused when present);
# RUNS=N reads per measurement (15); CHANGES=N updates of one pod (10), after
# which the rows the source read and the objects it delivered per change,
# and the time of its poll, are printed next to the rows and time of a full
# read (what each change cost before only changed rows were read and only
# their objects delivered). Also printed: the memory the source holds
# between reads next to the text of the selected rows (which it kept
# between reads before it kept only hashes).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
services=${2:-10000}
pods=${3:-50000}
secrets=${4:-2000}
work=$(mktemp -d /tmp/em-edgecore-bench-$$.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT INT TERM

bench=$build/tests/edgecore-bench
[ -x "$bench" ] || { echo "no $bench: build first (meson setup $build $src && ninja -C $build)" >&2; exit 1; }

db=${BENCH_DB:-$work/edgecore.db}
if [ ! -s "$db" ]; then
/usr/bin/python3 - "$services" "$pods" > "$work/objects.json" <<'PY'
import json, sys
S, P = int(sys.argv[1]), int(sys.argv[2])
out = []
for i in range(S):
    ns = "ns%d" % (i % 50)
    out.append({"kind": "Service", "metadata": {"name": "svc-%d" % i, "namespace": ns,
                "labels": {"app": "app-%d" % i}, "annotations": {"note": "x" * 200}},
                "spec": {"selector": {"app": "app-%d" % i}, "clusterIP": "10.96.%d.%d" % (i // 250, i % 250),
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}})
per = max(1, P // S)
for j in range(P):
    i = j % S
    ns = "ns%d" % (i % 50)
    out.append({"kind": "Pod", "metadata": {"name": "pod-%d" % j, "namespace": ns,
                "labels": {"app": "app-%d" % i, "pod-template-hash": "abcdef1234"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "rs-%d" % i, "uid": "u" * 36}]},
                "spec": {"nodeName": "edge-%d" % (j % 20), "containers": [{"name": "c", "image": "registry.example/app:1.2.3",
                         "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                         "env": [{"name": "E%d" % k, "value": "v" * 20} for k in range(8)]}]},
                "status": {"phase": "Running", "podIP": "10.%d.%d.%d" % (100 + j // 62500, (j // 250) % 250, j % 250),
                           "hostIP": "192.168.%d.%d" % (j % 20, 10), "conditions": [{"type": "Ready", "status": "True"}]}})
for i in range(S):
    ns = "ns%d" % (i % 50)
    addrs = [{"ip": "10.%d.%d.%d" % (100 + j // 62500, (j // 250) % 250, j % 250), "nodeName": "edge-%d" % (j % 20),
              "targetRef": {"kind": "Pod", "name": "pod-%d" % j, "namespace": ns}} for j in range(i, P, S)]
    out.append({"kind": "Endpoints", "metadata": {"name": "svc-%d" % i, "namespace": ns},
                "subsets": [{"addresses": addrs, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
json.dump(out, sys.stdout)
PY
/usr/bin/python3 "$src/tools/make-edgecore-db.py" "$db" --v2 --podlist --ignorable "$work/objects.json"
/usr/bin/python3 - "$db" "$secrets" <<'PY'
import json, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
with con:
    for i in range(int(sys.argv[2])):
        v = json.dumps({"kind": "Secret", "metadata": {"name": "s%d" % i, "namespace": "ns%d" % (i % 50)},
                        "data": {"tls.crt": "QUJD" * 1000}})
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, 'secret', ?)", ("ns%d/secret/s%d" % (i % 50, i), v))
        con.execute("INSERT OR REPLACE INTO meta_v2 (key, group_version_resource, namespace, name, resource_version, value) "
                    "VALUES (?, '/v1, Resource=secrets', ?, ?, 1, ?)",
                    ("/core/v1/secrets/ns%d/s%d" % (i % 50, i), "ns%d" % (i % 50), "s%d" % i, v))
PY
fi
echo "== $services services, $services Endpoints, $pods pods (meta_v2 + meta, podlists), $secrets secrets: $(du -h "$db" | cut -f1) database"
"$bench" "$db" "${RUNS:-15}" "${CHANGES:-10}"
