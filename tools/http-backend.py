#!/usr/bin/env python3
"""http-backend.py — a small HTTP/1.1 test backend for the L7 forwarder's
end-to-end tests (netns-tests/proxy-http*.sh). Standard library only.

It logs EVERY request it parses, one JSON line per request, to --log, and
its parser is deliberately naive and lenient (bare LF accepted, first
Content-Length wins, Transfer-Encoding chunked read loosely): if a smuggled
second request ever reaches it, it shows up in the log. The smuggling check
looks for targets containing "smuggled".

Modes (--mode):
  log    (default) answer the endpoints below
  die    answer every request with a head announcing 1 MiB and only half
         of it, then reset the connection (a backend dying mid-response)
  hang   read requests, never answer (the forwarder must send 504)
  close  accept and close at once, before reading (a failed backend)

Endpoints (mode log):
  GET  /who             body: the backend's --name (and a newline)
  *    /echo            body: the request body; X-Seq echoed
  *    /sha256          body: hex sha256 of the request body (upload check)
  GET  /bytes/N         N deterministic bytes; X-Sha256 header;
                        ?chunked=1 chunked, ?close=1 HTTP/1.0 close-delimited
  GET  /raw?b=B64       write the url-safe base64 bytes verbatim, then close
                        (response-side smuggling vectors)
  GET  /slow?ms=N       answer after N ms
  GET  /ws              (Upgrade: websocket) WebSocket echo
  anything else         200 "ok <method> <target>\\n"
Every response carries X-Backend: <name>. Expect: 100-continue is honoured
(100 Continue before the body is read) unless the target has no100=1.

Usage: http-backend.py --listen 10.0.0.2:8080 --name b1 --log /tmp/b1.log
       [--mode log|die|hang|close] [--pidfile F]
Ready when the port listens (the script prints "ready" on stdout too).
"""
import argparse
import base64
import hashlib
import itertools
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

BLOCK = hashlib.sha256(b"edgemesh").digest() * 2048  # 64 KiB pattern
_sha_cache = {}
_log_lock = threading.Lock()


def payload(n, off=0):
    """Deterministic bytes [off, off+n) of the pattern stream."""
    out = bytearray()
    while n > 0:
        i = off % len(BLOCK)
        take = min(n, len(BLOCK) - i)
        out += BLOCK[i:i + take]
        n -= take
        off += take
    return bytes(out)


def payload_sha(n):
    if n not in _sha_cache:
        h = hashlib.sha256()
        off = 0
        while off < n:
            k = min(1 << 20, n - off)
            h.update(payload(k, off))
            off += k
        _sha_cache[n] = h.hexdigest()
    return _sha_cache[n]


class Conn:
    """Buffered reader over a socket, lenient line splitting (LF or CRLF)."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise EOFError
            self.fill()
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln[:-1] if ln.endswith(b"\r") else ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def exact_hash(self, n, h):
        """Read n bytes into hash h without keeping them (large uploads)."""
        while n > 0:
            if not self.buf:
                self.fill()
            d = self.buf[:n]
            self.buf = self.buf[len(d):]
            h.update(d)
            n -= len(d)


def read_request(c):
    """Returns (method, target, version, headers list) or None at EOF."""
    while True:
        try:
            ln = c.line()
        except EOFError:
            return None
        if ln.strip():
            break  # skip empty lines between requests
    parts = ln.decode("latin-1").split(" ")
    method, target, version = (parts + ["", "", ""])[:3]
    headers = []
    while True:
        ln = c.line()
        if not ln:
            break
        if ln[:1] in (b" ", b"\t") and headers:  # obs-fold, lenient
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + ln.decode("latin-1").strip())
            continue
        k, _, v = ln.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return method, target, version, headers


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def read_body(c, headers, h):
    """Read the body into hash h (lenient). Returns (length, chunked?, bytes kept <= 1 MiB)."""
    keep = bytearray()
    te = hget(headers, "transfer-encoding")
    if te and "chunked" in te.lower():
        total = 0
        while True:
            sz = c.line().split(b";")[0].strip()
            n = int(sz or b"0", 16)
            if n == 0:
                while c.line():  # trailers
                    pass
                return total, True, bytes(keep)
            d = c.exact(n)
            h.update(d)
            if len(keep) < 1 << 20:
                keep += d
            total += n
            c.line()
    cl = hget(headers, "content-length")
    n = int(cl) if cl and cl.strip().isdigit() else 0
    if n <= 1 << 20:
        d = c.exact(n)
        h.update(d)
        return n, False, d
    c.exact_hash(n, h)
    return n, False, b""


class Server:
    def __init__(self, args):
        self.a = args
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.conn_ids = itertools.count(1)

    def log(self, rec):
        if not self.logf:
            return
        with _log_lock:
            self.logf.write(json.dumps(rec, sort_keys=True) + "\n")
            self.logf.flush()

    def send(self, s, status, reason, body=b"", headers=(), version="HTTP/1.1", close=False):
        hs = [f"{version} {status} {reason}", f"X-Backend: {self.a.name}"]
        hs += [f"{k}: {v}" for k, v in headers]
        hs.append(f"Content-Length: {len(body)}")
        if close:
            hs.append("Connection: close")
        s.sendall(("\r\n".join(hs) + "\r\n\r\n").encode("latin-1") + body)

    def handle(self, s, peer):
        cid = next(self.conn_ids)
        c = Conn(s)
        if self.a.mode == "close":
            return
        seq = 0
        while True:
            req = read_request(c)
            if req is None:
                return
            method, target, version, headers = req
            seq += 1
            url = urllib.parse.urlsplit(target)
            q = urllib.parse.parse_qs(url.query)
            if hget(headers, "expect") and "100-continue" in hget(headers, "expect").lower() \
                    and "no100" not in q and self.a.mode == "log":
                s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            h = hashlib.sha256()
            blen, chunked, body = read_body(c, headers, h)
            self.log({"backend": self.a.name, "conn": cid, "seq": seq, "peer": peer[0],
                      "method": method, "target": target, "version": version,
                      "headers": headers, "body_len": blen, "chunked": chunked,
                      "body_sha256": h.hexdigest(), "t": time.time()})
            if self.a.mode == "hang":
                continue
            if self.a.mode == "die":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + payload(524288))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            conn = (hget(headers, "connection") or "").lower()
            close = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
            if not self.respond(s, c, method, url, q, headers, body, h, close):
                return
            if close:
                return

    def respond(self, s, c, method, url, q, headers, body, h, close):
        path = url.path
        xs = [("X-Seq", hget(headers, "x-seq"))] if hget(headers, "x-seq") else []
        if path == "/who":
            self.send(s, 200, "OK", (self.a.name + "\n").encode(), xs, close=close)
        elif path == "/echo":
            self.send(s, 200, "OK", body, xs, close=close)
        elif path == "/sha256":
            self.send(s, 200, "OK", (h.hexdigest() + "\n").encode(), xs, close=close)
        elif path.startswith("/bytes/"):
            n = int(path[7:])
            sha = payload_sha(n)
            if "close" in q:
                s.sendall(f"HTTP/1.0 200 OK\r\nX-Backend: {self.a.name}\r\nX-Sha256: {sha}\r\n\r\n"
                          .encode())
                self.stream(s, n, None)
                return False
            if "chunked" in q:
                s.sendall(f"HTTP/1.1 200 OK\r\nX-Backend: {self.a.name}\r\nX-Sha256: {sha}\r\n"
                          f"Transfer-Encoding: chunked\r\n\r\n".encode())
                self.stream(s, n, "chunked")
                s.sendall(b"0\r\n\r\n")
            else:
                s.sendall(f"HTTP/1.1 200 OK\r\nX-Backend: {self.a.name}\r\nX-Sha256: {sha}\r\n"
                          f"Content-Length: {n}\r\n\r\n".encode())
                self.stream(s, n, None)
        elif path == "/raw":
            s.sendall(base64.urlsafe_b64decode(q["b"][0] + "=="))
            return False
        elif path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
            self.send(s, 200, "OK", b"slow\n", xs, close=close)
        elif path == "/ws" and (hget(headers, "upgrade") or "").lower() == "websocket":
            self.websocket(s, c, headers)
            return False
        else:
            self.send(s, 200, "OK", f"ok {method} {url.path}\n".encode(), xs, close=close)
        return True

    def stream(self, s, n, mode):
        off = 0
        while off < n:
            k = min(1 << 18, n - off)
            d = payload(k, off)
            if mode == "chunked":
                s.sendall(b"%x\r\n" % k + d + b"\r\n")
            else:
                s.sendall(d)
            off += k

    def websocket(self, s, c, headers):
        key = hget(headers, "sec-websocket-key") or ""
        acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                            .encode()).digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\n").encode())
        while True:
            try:
                b0, b1 = c.exact(2)
            except EOFError:
                return
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = int.from_bytes(c.exact(2), "big")
            elif n == 127:
                n = int.from_bytes(c.exact(8), "big")
            mask = c.exact(4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(x ^ mask[i % 4] for i, x in enumerate(c.exact(n)))
            hdr = bytes([0x80 | op])
            if n < 126:
                hdr += bytes([n])
            elif n < 65536:
                hdr += bytes([126]) + n.to_bytes(2, "big")
            else:
                hdr += bytes([127]) + n.to_bytes(8, "big")
            s.sendall(hdr + data)  # echo, close frames included
            if op == 8:
                return

    def serve(self):
        host, _, port = self.a.listen.rpartition(":")
        host = host.strip("[]")
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, int(port)))
        ls.listen(512)
        if self.a.pidfile:
            with open(self.a.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        print("ready", flush=True)
        while True:
            s, peer = ls.accept()
            threading.Thread(target=self.run_one, args=(s, peer), daemon=True).start()

    def run_one(self, s, peer):
        try:
            s.settimeout(None if self.a.mode == "hang" else 60)
            self.handle(s, peer)
        except (OSError, EOFError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", required=True, help="addr:port ([v6]:port)")
    p.add_argument("--name", default=socket.gethostname())
    p.add_argument("--log", help="append one JSON line per request here")
    p.add_argument("--mode", choices=["log", "die", "hang", "close"], default="log")
    p.add_argument("--pidfile")
    Server(p.parse_args()).serve()


if __name__ == "__main__":
    sys.exit(main())
