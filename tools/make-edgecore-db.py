#!/usr/bin/python3
"""make-edgecore-db.py: write Kubernetes objects into a database shaped like
KubeEdge MetaManager's edgecore.db, for tests and demos of the edgecore-db
source.

Usage: make-edgecore-db.py DB [--v2] [--columns beego|gorm|upgraded] [--no-meta]
                          [--typed-meta] [--podlist] [--ignorable]
                          [--delete KIND/NS/NAME]... [FILE|-]...

FILE holds JSON: one object, an array of objects, or a List with "items"
(Service, Endpoints, Pod, EndpointSlice). Tables are created when missing,
with edgecore's shapes:
  meta    (key, type, value): key "<ns>/<type>/<name>",
          type service|endpoints|pod|endpointslice
  meta_v2 (key, <gvr>, namespace, name, <rv>, value), with --v2:
          key "/<group>/<version>/<resource>/<ns>/<name>" (group "core" for
          the core API), <gvr> = "<group>/<version>, Resource=<resource>"
          as gvr.String() writes it ("/v1, Resource=services" for core)
--columns  the meta_v2 column names: beego (KubeEdge < 1.23:
           groupversionresource, resourceversion), gorm (group_version_resource,
           resource_version; the default), upgraded (a beego table to which
           gorm's migration added its columns: rows are written through the
           gorm ones, rows already there keep the beego ones)
--no-meta  write objects to meta_v2 only (a node where only MetaServer
           clients watched them)
--typed-meta  keep kind/apiVersion in meta values (default: stripped, as
           MetaManager stored them up to KubeEdge 1.5)
--podlist  also write "<ns>/podlist/<service>" rows, a JSON array of the
           pods the service selects, or null when it selects none (KubeEdge
           up to 1.7)
--ignorable  also write every kind of row a reader must leave alone: secrets,
           configmaps, podstatus, podpatch, nodestatus rows, node task
           requests and upgrade specs (4- and 6-part meta_v2 keys), a
           non-resource path, a namespaced list row, a 6-part key under
           /core/v1/pods/, a Knative Service under the meta type "service",
           a podlist of null and one of []. The secrets' values hold the
           marker TOPSECRET.
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

META = """CREATE TABLE IF NOT EXISTS meta (key varchar(256) NOT NULL PRIMARY KEY,
    type varchar(32) NOT NULL DEFAULT '', value text NOT NULL DEFAULT '');"""
V2 = {
    "beego": """CREATE TABLE IF NOT EXISTS meta_v2 (key varchar(256) NOT NULL PRIMARY KEY,
        groupversionresource varchar(256) NOT NULL DEFAULT '',
        namespace varchar(256) NOT NULL DEFAULT '', name varchar(256) NOT NULL DEFAULT '',
        resourceversion integer unsigned NOT NULL DEFAULT 0, value text);""",
    "gorm": """CREATE TABLE IF NOT EXISTS meta_v2 (key text, group_version_resource text,
        namespace text, name text, resource_version integer, value text, PRIMARY KEY (key));""",
}


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


def gvr_string(group, ver, res):
    return "%s/%s, Resource=%s" % ("" if group == "core" else group, ver, res)


class DB:
    def __init__(self, path, columns):
        self.con = sqlite3.connect(path, timeout=5)
        self.con.executescript(META)
        cols = [r[1] for r in self.con.execute("PRAGMA table_info(meta_v2)")]
        if not cols:
            self.con.executescript(V2["beego" if columns in ("beego", "upgraded") else "gorm"])
            cols = [r[1] for r in self.con.execute("PRAGMA table_info(meta_v2)")]
        if columns == "upgraded" and "group_version_resource" not in cols:
            self.con.executescript("ALTER TABLE meta_v2 ADD COLUMN group_version_resource text;"
                                   "ALTER TABLE meta_v2 ADD COLUMN resource_version integer;")
            cols += ["group_version_resource", "resource_version"]
        gorm = "group_version_resource" in cols
        self.gvr_col = "group_version_resource" if gorm else "groupversionresource"
        self.rv_col = "resource_version" if gorm else "resourceversion"
        self.rv_cols = [c for c in ("resourceversion", "resource_version") if c in cols]

    def max_rv(self):
        return max([self.con.execute("SELECT coalesce(max(%s), 0) FROM meta_v2" % c).fetchone()[0]
                    for c in self.rv_cols] + [0])

    def meta(self, key, typ, value):
        self.con.execute("INSERT OR REPLACE INTO meta (key, type, value) VALUES (?, ?, ?)",
                         (key, typ, value))

    def v2(self, key, gvr, ns, name, rv, value):
        self.con.execute("INSERT OR REPLACE INTO meta_v2 (key, %s, namespace, name, %s, value) "
                         "VALUES (?, ?, ?, ?, ?, ?)" % (self.gvr_col, self.rv_col),
                         (key, gvr, ns, name, rv, value))


def ignorable(db):
    """Rows of every kind a reader must leave alone (see --ignorable)."""
    secret = json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": "db-pass", "namespace": "default"},
                         "data": {"password": "VE9QU0VDUkVU"}, "stringData": {"p": "TOPSECRET"}})
    for t in ("secret", "configmap", "podstatus", "podpatch", "nodestatus"):
        db.meta("default/%s/x-%s" % (t, t), t, secret if t == "secret" else
                json.dumps({"marker": "TOPSECRET", "type": t}))
    db.v2("/core/v1/secrets/default/db-pass", gvr_string("core", "v1", "secrets"),
          "default", "db-pass", 1, secret)
    db.v2("/core/v1/configmaps/default/cfg", gvr_string("core", "v1", "configmaps"),
          "default", "cfg", 1, json.dumps({"data": {"k": "TOPSECRET"}}))
    db.v2("/operations.kubeedge.io/v1alpha1/nodeupgradejobtaskrequests/task-1",
          gvr_string("operations.kubeedge.io", "v1alpha1", "nodeupgradejobtaskrequests"),
          "null", "task-1", 0, json.dumps({"taskID": "task-1", "marker": "TOPSECRET"}))
    db.v2("/operations.kubeedge.io/v1alpha2/nodeupgradejobspecs/job-1/nodes/edge-node-a",
          gvr_string("operations.kubeedge.io", "v1alpha2", "nodeupgradejobspecs"),
          "null", "job-1", 0, json.dumps({"version": "v1.20.0", "marker": "TOPSECRET"}))
    db.v2("/version", "", "null", "null", 0, json.dumps({"gitVersion": "v1.29.0"}))
    db.v2("/core/v1/pods/default", gvr_string("core", "v1", "pods"), "default", "null", 0, "[]")
    db.v2("/core/v1/pods/default/ghost/status", gvr_string("core", "v1", "pods"), "default",
          "ghost", 0, json.dumps({"metadata": {"name": "ghost", "namespace": "default"}}))
    knative = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
               "metadata": {"name": "kn-hello", "namespace": "default"},
               "spec": {"template": {"spec": {"containers": [{"image": "hello"}]}}}}
    db.meta("default/service/kn-hello", "service", json.dumps(knative))
    db.v2("/serving.knative.dev/v1/services/default/kn-hello",
          gvr_string("serving.knative.dev", "v1", "services"), "default", "kn-hello", 1,
          json.dumps(knative))
    db.meta("default/podlist/nobody-null", "podlist", "null")
    db.meta("default/podlist/nobody-empty", "podlist", "[]")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__, end="")
        return 0 if len(argv) >= 2 else 2
    path, v2, podlist, deletes, files = argv[1], False, False, [], []
    columns, no_meta, typed_meta, ign = "gorm", False, False, False
    args = iter(argv[2:])
    for a in args:
        if a == "--v2":
            v2 = True
        elif a == "--columns":
            columns = next(args)
            if columns not in ("beego", "gorm", "upgraded"):
                sys.exit("--columns: %r: expected beego, gorm or upgraded" % columns)
        elif a == "--no-meta":
            no_meta = True
        elif a == "--typed-meta":
            typed_meta = True
        elif a == "--podlist":
            podlist = True
        elif a == "--ignorable":
            ign = True
        elif a == "--delete":
            deletes.append(next(args))
        else:
            files.append(a)
    objs = [o for f in files for o in load(f)]
    db = DB(path, columns)
    con = db.con
    with con:
        rv = db.max_rv()
        for o in objs:
            kind = o.get("kind")
            if kind not in TYPES:
                sys.exit("%s: object of kind %r: expected one of %s" % (path, kind, ", ".join(TYPES)))
            t, group, ver, res = TYPES[kind]
            o.setdefault("apiVersion", "v1" if group == "core" else "%s/%s" % (group, ver))
            m = o.setdefault("metadata", {})
            ns, name = m.setdefault("namespace", "default"), m["name"]
            rv += 1
            m["resourceVersion"] = str(rv)
            if not no_meta:
                val = o if typed_meta else {k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                db.meta("%s/%s/%s" % (ns, t, name), t, json.dumps(val))
            if v2:
                db.v2("/%s/%s/%s/%s/%s" % (group, ver, res, ns, name), gvr_string(group, ver, res),
                      ns, name, rv, json.dumps(o))
        for d in deletes:
            kind, ns, name = d.split("/")
            t, group, ver, res = TYPES[kind]
            con.execute("DELETE FROM meta WHERE key = ?", ("%s/%s/%s" % (ns, t, name),))
            con.execute("DELETE FROM meta WHERE key = ?", ("%s/podlist/%s" % (ns, name),))
            con.execute("DELETE FROM meta_v2 WHERE key = ?",
                        ("/%s/%s/%s/%s/%s" % (group, ver, res, ns, name),))
        if podlist:
            by_label = {}   # (ns, key, value) -> pods: candidates for a selector
            for (v,) in con.execute("SELECT value FROM meta WHERE type = 'pod'"):
                p = json.loads(v)
                m = p.get("metadata", {})
                for k, lv in (m.get("labels") or {}).items():
                    by_label.setdefault((m.get("namespace", "default"), k, lv), []).append(p)
            for (key, v) in con.execute("SELECT key, value FROM meta WHERE type = 'service'").fetchall():
                svc = json.loads(v)
                if svc.get("apiVersion", "v1") != "v1":
                    continue
                ns, _, name = key.split("/")
                sel = svc.get("spec", {}).get("selector") or {}
                first = next(iter(sel.items()), None)
                cand = by_label.get((ns,) + first, []) if first else []
                sel = [p for p in cand if selects(svc, p)]
                db.meta("%s/podlist/%s" % (ns, name), "podlist", json.dumps(sel) if sel else "null")
        if ign:
            ignorable(db)
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
