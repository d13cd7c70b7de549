#!/usr/bin/python3
"""make-edgecore-db.py: write Kubernetes objects into a database shaped like
KubeEdge MetaManager's edgecore.db, for tests and demos of the edgecore-db
source.

Usage: make-edgecore-db.py DB [--v2] [--podlist] [--delete KIND/NS/NAME]... [FILE|-]...

FILE holds JSON: one object, an array of objects, or a List with "items".
Tables are created when missing, with edgecore's shapes:
  meta    (key varchar(256) primary key, type varchar(32), value text)
          key "<ns>/<type>/<name>", type service|endpoints|pod|endpointslice
  meta_v2 (key, group_version_resource, namespace, name, resource_version, value)
          key "/<group>/<version>/<resource>/<ns>/<name>"  (with --v2)
--podlist also writes "<ns>/podlist/<service>" rows (a JSON array of the pods
the service selects), as MetaManager does. Values are stored as MetaManager
stores them: without "kind"/"apiVersion" in meta, as given in meta_v2.
Everything happens in one write transaction.
"""

import json
import sqlite3
import sys

TYPES = {  # kind -> (meta type, group, version, resource)
    "Service": ("service", "core", "v1", "services"),
    "Endpoints": ("endpoints", "core", "v1", "endpoints"),
    "Pod": ("pod", "core", "v1", "pods"),
    "EndpointSlice": ("endpointslice", "discovery.k8s.io", "v1", "endpointslices"),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key varchar(256) NOT NULL PRIMARY KEY,
    type varchar(32) NOT NULL DEFAULT '', value text NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS meta_v2 (key varchar(256) NOT NULL PRIMARY KEY,
    group_version_resource varchar(256), namespace varchar(256), name varchar(256),
    resource_version integer, value text);
"""


def load(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    doc = json.loads(text)
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return doc["items"]
    return doc if isinstance(doc, list) else [doc]


def selects(svc, pod):
    sel = svc.get("spec", {}).get("selector") or {}
    labels = pod.get("metadata", {}).get("labels") or {}
    return sel and pod.get("metadata", {}).get("namespace", "default") == \
        svc["metadata"].get("namespace", "default") and \
        all(labels.get(k) == v for k, v in sel.items())


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__, end="")
        return 0 if len(argv) >= 2 else 2
    db, v2, podlist, deletes, files = argv[1], False, False, [], []
    args = iter(argv[2:])
    for a in args:
        if a == "--v2":
            v2 = True
        elif a == "--podlist":
            podlist = True
        elif a == "--delete":
            deletes.append(next(args))
        else:
            files.append(a)
    objs = [o for f in files for o in load(f)]
    con = sqlite3.connect(db, timeout=5)
    con.executescript(SCHEMA)
    with con:
        rv = con.execute("SELECT coalesce(max(resource_version), 0) FROM meta_v2").fetchone()[0]
        for o in objs:
            kind = o.get("kind")
            if kind not in TYPES:
                sys.exit("%s: object of kind %r: expected one of %s" % (db, kind, ", ".join(TYPES)))
            t, group, ver, res = TYPES[kind]
            m = o.setdefault("metadata", {})
            ns, name = m.setdefault("namespace", "default"), m["name"]
            rv += 1
            m["resourceVersion"] = str(rv)
            bare = {k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
                        ("%s/%s/%s" % (ns, t, name), t, json.dumps(bare)))
            if v2:
                gvr = "%s/%s, Resource=%s" % ("" if group == "core" else group, ver, res)
                con.execute("INSERT OR REPLACE INTO meta_v2 VALUES (?, ?, ?, ?, ?, ?)",
                            ("/%s/%s/%s/%s/%s" % (group, ver, res, ns, name), gvr, ns, name, rv,
                             json.dumps(o)))
        for d in deletes:
            kind, ns, name = d.split("/")
            t, group, ver, res = TYPES[kind]
            con.execute("DELETE FROM meta WHERE key = ?", ("%s/%s/%s" % (ns, t, name),))
            con.execute("DELETE FROM meta WHERE key = ?", ("%s/podlist/%s" % (ns, name),))
            con.execute("DELETE FROM meta_v2 WHERE key = ?",
                        ("/%s/%s/%s/%s/%s" % (group, ver, res, ns, name),))
        if podlist:
            pods = [json.loads(v) for (v,) in con.execute("SELECT value FROM meta WHERE type = 'pod'")]
            for (key, v) in con.execute("SELECT key, value FROM meta WHERE type = 'service'").fetchall():
                svc = json.loads(v)
                ns, _, name = key.split("/")
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, 'podlist', ?)",
                            ("%s/podlist/%s" % (ns, name),
                             json.dumps([p for p in pods if selects(svc, p)])))
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
