#!/usr/bin/python3
"""bad-apiserver.py: an API server that misbehaves on purpose, for tests of
the kube source's error paths.

Modes:
  notjson   every list answers 200 with a text/plain body that is not JSON
  garbled   lists are valid (services: one Service "good-svc"; the rest
            empty); a watch on services sends one valid ADDED event for
            "late-svc", then a line of garbage, then stays open; watches on
            other resources stay open with nothing

Usage: bad-apiserver.py MODE [--port P]
Prints "PORT <n>" once listening on 127.0.0.1. GET /_ctl/requests lists the
requests seen (JSON array), as tools/fake-apiserver.py does.
"""

import argparse
import json
import os
import signal
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUESTS = []
LOCK = threading.Lock()


def service(name):
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": "5"},
            "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 8080}]}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self, code, ctype, data):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/_ctl/requests":
            with LOCK:
                self.body(200, "application/json", json.dumps(REQUESTS).encode())
            return
        with LOCK:
            REQUESTS.append("GET " + self.path)
        if MODE == "notjson":
            self.body(200, "text/plain", b"hello, this is not JSON\n")
            return
        kind = url.path.rsplit("/", 1)[-1]
        if q.get("watch") in ("1", "true"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if kind == "services":
                ev = {"type": "ADDED", "object": service("late-svc")}
                ev["object"]["metadata"]["resourceVersion"] = "6"
                self.chunk(json.dumps(ev).encode() + b"\n")
                self.chunk(b"{{{ garbage, not a watch event\n")
            # Stay open until the client goes away (or 30 s).
            for _ in range(300):
                time.sleep(0.1)
                try:
                    self.wfile.write(b"")
                except OSError:
                    return
            return
        items = [service("good-svc")] if kind == "services" else []
        self.body(200, "application/json", json.dumps(
            {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "5"},
             "items": items}).encode())


def main():
    global MODE
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["notjson", "garbled"])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    MODE = args.mode
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
