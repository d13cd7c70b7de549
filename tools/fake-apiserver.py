#!/usr/bin/python3
"""fake-apiserver.py: a scriptable stand-in for the Kubernetes API server /
KubeEdge MetaServer, speaking its wire format for list and watch.

Serves (plain HTTP, HTTP/1.1, chunked watch streams):
  GET /api/v1/{services,pods,endpoints}
  GET /apis/discovery.k8s.io/v1/endpointslices
      ?limit=N&continue=TOKEN            typed list, items without "kind"
      ?watch=1&resourceVersion=RV&timeoutSeconds=N&allowWatchBookmarks=true
      &fieldSelector=spec.nodeName=X     (pods)

Objects are served as given: Endpoints and EndpointSlices may name (by
targetRef) pods the server does not list, as MetaServer on an edge node
does, which holds only that node's own pods (KubeEdge >= 1.8).

Control (JSON bodies, for tests):
  POST /_ctl/upsert   {"resource": "services", "objects": [...], "cut": false}
        every object gets the next resourceVersion; the events of one call go
        out in ONE chunk (or, with "cut", half of it and the connection drops)
  POST /_ctl/delete   {"resource": ..., "namespace": ..., "name": ..., "silent": false}
        silent: gone from the state without an event (a missed delete)
  POST /_ctl/bookmark {}              BOOKMARK to every watcher
  POST /_ctl/expire   {"event": true} compact history: older resourceVersions
        answer 410; with "event", open watches get an ERROR 410 Status and end
  POST /_ctl/set      {"watch_http_410": {"services": N}, "list_fail": N, "trickle_ms": MS,
                       "stall": bool, "disable": ["endpointslices"]}
  POST /_ctl/close-watches {}         drop every watch connection abruptly
  GET  /_ctl/requests                 ["GET /api/v1/services?limit=2", ...]
  GET  /_ctl/state                    {"rv": N, "watchers": N}

Usage: fake-apiserver.py [--port P] [--state FILE] [--rv-start N] [--tls-cert F --tls-key F]
Prints "PORT <n>" on stdout once listening (port 0 = ephemeral). With
--state, the objects survive a restart (kill + start again on the same port);
a restarted server has compacted its history (old resourceVersions -> 410)
unless its --rv-start is below them.
"""

import argparse
import base64
import json
import os
import select
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOURCES = {
    "/api/v1/services": ("services", "ServiceList", "Service", "v1"),
    "/api/v1/pods": ("pods", "PodList", "Pod", "v1"),
    "/api/v1/endpoints": ("endpoints", "EndpointsList", "Endpoints", "v1"),
    "/apis/discovery.k8s.io/v1/endpointslices":
        ("endpointslices", "EndpointSliceList", "EndpointSlice", "discovery.k8s.io/v1"),
}
KIND = {v[0]: (v[2], v[3]) for v in RESOURCES.values()}


class State:
    def __init__(self, rv_start, state_file):
        self.lock = threading.Condition()
        self.rv = rv_start
        self.min_rv = rv_start          # watches from below this get 410
        self.objects = {r: {} for r in KIND}
        self.history = []               # (rv, resource, type, obj)
        self.watchers = set()
        self.requests = []
        self.watch_http_410 = {}        # resource -> how many watches get HTTP 410
        self.list_fail = 0
        self.trickle_ms = 0
        self.stall = False
        self.disabled = set()
        self.state_file = state_file
        if state_file and os.path.exists(state_file):
            with open(state_file) as f:
                saved = json.load(f)
            for res, objs in saved.get("objects", {}).items():
                for o in objs:
                    m = o["metadata"]
                    self.objects[res][(m.get("namespace", ""), m["name"])] = o
            self.rv = max(self.rv, saved.get("rv", 0))
            self.min_rv = self.rv

    def save(self):
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"rv": self.rv, "objects":
                       {r: list(d.values()) for r, d in self.objects.items()}}, f)
        os.rename(tmp, self.state_file)

    def broadcast(self, resource, events, cut=False):
        """events: list of (type, obj). Caller holds the lock."""
        for w in list(self.watchers):
            if w.resource != resource:
                continue
            lines = [e for e in events if w.wants(e[1])]
            if lines:
                w.queue.append(("cut" if cut else "data", encode(lines)))
        self.lock.notify_all()


def encode(events):
    return b"".join(json.dumps({"type": t, "object": o}, separators=(",", ":")).encode() + b"\n"
                    for t, o in events)


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Watcher:
    def __init__(self, resource, node):
        self.resource = resource
        self.node = node
        self.queue = []

    def wants(self, obj):
        return (self.node is None or obj.get("spec") is None
                or obj["spec"].get("nodeName") == self.node)


STATE = None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients dropping connections is what the tests do on purpose.
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    # ---- control ----
    def do_POST(self):
        st = STATE
        url = urllib.parse.urlsplit(self.path)
        req = self.body()
        verb = url.path[len("/_ctl/"):] if url.path.startswith("/_ctl/") else None
        with st.lock:
            if verb == "upsert":
                res = req["resource"]
                events = []
                for o in req["objects"]:
                    st.rv += 1
                    m = o.setdefault("metadata", {})
                    m["resourceVersion"] = str(st.rv)
                    key = (m.get("namespace", ""), m["name"])
                    t = "MODIFIED" if key in st.objects[res] else "ADDED"
                    st.objects[res][key] = o
                    st.history.append((st.rv, res, t, o))
                    events.append((t, o))
                st.broadcast(res, events, cut=req.get("cut", False))
            elif verb == "delete":
                res = req["resource"]
                key = (req.get("namespace", ""), req["name"])
                o = st.objects[res].pop(key, None)
                if o is not None and not req.get("silent"):
                    st.rv += 1
                    o = json.loads(json.dumps(o))
                    o["metadata"]["resourceVersion"] = str(st.rv)
                    st.history.append((st.rv, res, "DELETED", o))
                    st.broadcast(res, [("DELETED", o)])
            elif verb == "bookmark":
                st.rv += 1
                for res in KIND:
                    kind, api = KIND[res]
                    st.broadcast(res, [("BOOKMARK", {"kind": kind, "apiVersion": api,
                                                     "metadata": {"resourceVersion": str(st.rv)}})])
            elif verb == "expire":
                st.min_rv = st.rv
                st.history = []
                for w in st.watchers:
                    if req.get("event", True):
                        w.queue.append(("data", encode([("ERROR", status_obj(
                            410, "Expired", "too old resource version"))])))
                    w.queue.append(("end", b""))
                st.lock.notify_all()
            elif verb == "set":
                for k in ("watch_http_410", "list_fail", "trickle_ms", "stall"):
                    if k in req:
                        setattr(st, k, req[k])
                if "disable" in req:
                    st.disabled = set(req["disable"])
            elif verb == "close-watches":
                for w in st.watchers:
                    w.queue.append(("close", b""))
                st.lock.notify_all()
            else:
                self.send_json(404, status_obj(404, "NotFound", "no such control"))
                return
            st.save()
            self.send_json(200, {"rv": st.rv})

    # ---- API ----
    def do_GET(self):
        st = STATE
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/_ctl/requests":
            with st.lock:
                self.send_json(200, list(st.requests))
            return
        if url.path == "/_ctl/state":
            with st.lock:
                self.send_json(200, {"rv": st.rv, "watchers": len(st.watchers)})
            return
        with st.lock:
            auth = self.headers.get("Authorization")
            st.requests.append("GET " + self.path + (" [%s]" % auth if auth else ""))
        spec = RESOURCES.get(url.path)
        if spec is None or spec[0] in st.disabled:
            self.send_json(404, status_obj(404, "NotFound", "the server could not find the requested resource"))
            return
        node = None
        fs = q.get("fieldSelector", "")
        if fs.startswith("spec.nodeName="):
            node = fs[len("spec.nodeName="):]
        if q.get("watch") in ("1", "true"):
            self.watch(spec, q, node)
        else:
            self.list(spec, q, node)

    def list(self, spec, q, node):
        st = STATE
        res, list_kind = spec[0], spec[1]
        with st.lock:
            if st.list_fail > 0:
                st.list_fail -= 1
                self.send_json(500, status_obj(500, "InternalError", "scripted failure"))
                return
            w = Watcher(res, node)
            items = [o for k, o in sorted(st.objects[res].items()) if w.wants(o)]
            rv = st.rv
            start = 0
            if "continue" in q:
                try:
                    tok = json.loads(base64.b64decode(q["continue"]))
                    start, rv = tok["start"], tok["rv"]
                except Exception:
                    self.send_json(400, status_obj(400, "BadRequest", "bad continue token"))
                    return
                if rv < st.min_rv:
                    self.send_json(410, status_obj(410, "Expired", "continue token expired"))
                    return
        limit = int(q.get("limit", "0") or 0)
        meta = {"resourceVersion": str(rv)}
        page = items[start:]
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            meta["continue"] = base64.b64encode(json.dumps(
                {"start": start + limit, "rv": rv}).encode()).decode()
        items = []
        for o in page:
            o = dict(o)
            o.pop("kind", None)     # typed lists carry no per-item kind
            o.pop("apiVersion", None)
            items.append(o)
        self.send_json(200, {"kind": list_kind, "apiVersion": spec[3], "metadata": meta,
                             "items": items})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def client_gone(self):
        r, _, _ = select.select([self.connection], [], [], 0)
        if r:
            try:
                return self.connection.recv(1, 0x2) == b""     # MSG_PEEK
            except ValueError:      # TLS: no peeking; the next write tells
                return False
            except OSError:
                return True
        return False

    def watch(self, spec, q, node):
        st = STATE
        res = spec[0]
        try:
            rv = int(q.get("resourceVersion") or 0)
        except ValueError:
            rv = 0
        timeout = int(q.get("timeoutSeconds") or 300)
        with st.lock:
            if st.watch_http_410.get(res, 0) > 0:
                st.watch_http_410[res] -= 1
                self.send_json(410, status_obj(410, "Gone", "too old resource version"))
                return
            expired = rv and rv < st.min_rv
            w = Watcher(res, node)
            backlog = [] if expired else [(t, o) for (r, rs, t, o) in st.history
                                          if rs == res and r > rv and w.wants(o)]
            if not expired and not st.stall:
                st.watchers.add(w)
            stall = st.stall
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            if expired:
                self.chunk(encode([("ERROR", status_obj(410, "Expired",
                                                        "too old resource version: %d (%d)" % (rv, st.min_rv)))]))
                self.chunk(b"")
                return
            deadline = time.monotonic() + timeout
            if stall:
                while time.monotonic() < deadline and not self.client_gone():
                    time.sleep(0.05)
                self.close_connection = True
                return
            if backlog:
                self.send_events(encode(backlog))
            while True:
                with st.lock:
                    while not w.queue:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        st.lock.wait(min(left, 0.2))
                        if not w.queue and self.client_gone():
                            raise BrokenPipeError
                    item = w.queue.pop(0) if w.queue else ("end", b"")
                what, data = item
                if what == "data":
                    self.send_events(data)
                elif what == "cut":
                    half = data[: max(1, len(data) // 2)]
                    self.chunk(half)
                    self.close_connection = True
                    return
                elif what == "close":
                    self.close_connection = True
                    return
                else:
                    self.chunk(b"")
                    return
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with st.lock:
                st.watchers.discard(w)

    def send_events(self, data):
        ms = STATE.trickle_ms
        if not ms:
            self.chunk(data)
            return
        for i in range(0, len(data), 3):
            self.chunk(data[i:i + 3])
            time.sleep(ms / 1000.0)


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state")
    ap.add_argument("--rv-start", type=int, default=100)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    STATE = State(args.rv_start, args.state)
    srv = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
