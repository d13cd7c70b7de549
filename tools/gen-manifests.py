#!/usr/bin/python3
"""Generate Kubernetes manifests for registry scale tests.

gen-manifests.py OUTDIR [--services N] [--pods M] [--namespaces K] [--format json|yaml]
                       [--per-file F]

Writes OUTDIR/services-NNN.<ext> and OUTDIR/pods-NNN.<ext>, each a List of
at most F objects, kubectl-style. Service i lives in namespace ns-(i % K),
selects app=svc-i and has two ports (http-web 80 -> named targetPort web,
tcp 9000 -> 9000); pods are spread round-robin over the services, every 10th
pod maps a hostPort, every 25th is not ready.
"""
import argparse
import json
import os


def service(i, k):
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc-%d" % i, "namespace": "ns-%d" % (i % k),
                     "resourceVersion": str(1000 + i)},
        "spec": {
            "clusterIP": "10.%d.%d.%d" % (96 + i // 65536, (i // 256) % 256, i % 256),
            "selector": {"app": "svc-%d" % i, "tier": "backend"},
            "ports": [
                {"name": "http-web", "port": 80, "protocol": "TCP", "targetPort": "web"},
                {"name": "tcp", "port": 9000, "protocol": "TCP", "targetPort": 9000},
            ],
            "sessionAffinity": "None", "type": "ClusterIP",
        },
    }


def pod(j, n_svc, k):
    s = j % n_svc
    port = {"name": "web", "containerPort": 8080, "protocol": "TCP"}
    if j % 10 == 0:
        port["hostPort"] = 30000 + (j % 2000)
    ready = "False" if j % 25 == 0 else "True"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "svc-%d-pod-%d" % (s, j), "namespace": "ns-%d" % (s % k),
                     "labels": {"app": "svc-%d" % s, "tier": "backend",
                                "pod-template-hash": "abc%d" % (j % 7)}},
        "spec": {"nodeName": "edge-node-%d" % (j % 50),
                 "containers": [{"name": "app", "image": "nginx",
                                 "ports": [port, {"containerPort": 9000, "protocol": "TCP"}]}]},
        "status": {"phase": "Running",
                   "hostIP": "192.168.%d.%d" % ((j // 250) % 250, j % 250 + 1),
                   "podIP": "10.%d.%d.%d" % (128 + j // 65536, (j // 256) % 256, j % 256),
                   "conditions": [{"type": "Ready", "status": ready}]},
    }


def to_yaml(v, indent=0):
    """Tiny YAML emitter (block style) so that no PyYAML is needed."""
    pad = "  " * indent
    out = []
    if isinstance(v, dict):
        for key, val in v.items():
            if isinstance(val, (dict, list)) and val:
                out.append("%s%s:" % (pad, key))
                out.append(to_yaml(val, indent + 1))
            else:
                out.append("%s%s: %s" % (pad, key, scalar(val)))
    else:
        for item in v:
            if isinstance(item, dict):
                body = to_yaml(item, indent + 1).split("\n")
                out.append("%s- %s" % (pad, body[0].lstrip()))
                out.extend(body[1:])
            else:
                out.append("%s- %s" % (pad, scalar(item)))
    return "\n".join(out)


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    return json.dumps(v)  # quoted: "80", "True" stay strings


def write(path, items, fmt):
    doc = {"apiVersion": "v1", "kind": "List", "items": items}
    with open(path, "w") as f:
        if fmt == "json":
            json.dump(doc, f, indent=1)
        else:
            f.write(to_yaml(doc) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--pods", type=int, default=50000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--format", choices=["json", "yaml"], default="json")
    ap.add_argument("--per-file", type=int, default=5000)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    ext = a.format
    n = 0
    for start in range(0, a.services, a.per_file):
        items = [service(i, a.namespaces) for i in range(start, min(a.services, start + a.per_file))]
        write(os.path.join(a.outdir, "services-%03d.%s" % (n, ext)), items, a.format)
        n += 1
    n = 0
    for start in range(0, a.pods, a.per_file):
        items = [pod(j, a.services, a.namespaces) for j in range(start, min(a.pods, start + a.per_file))]
        write(os.path.join(a.outdir, "pods-%03d.%s" % (n, ext)), items, a.format)
        n += 1


if __name__ == "__main__":
    main()
