#!/usr/bin/env python3
"""http-raw-client.py — scripted raw-socket HTTP/1.1 client for the L7
forwarder's end-to-end tests. Standard library only; talks to one
address (the service's fake IP:port, captured by the forwarder) and checks
what comes back. Prints "ok - ..." / "FAIL - ..." lines and exits 1 if
anything failed. Pairs with tools/http-backend.py (mode log).

  http-raw-client.py --to ADDR:PORT [--host NAME] [--timeout S] COMMAND [ARGS]

Commands:
  get PATH [--expect STATUS] [--within S]
        one request; checks the status (e.g. 503 with no backend, 504 from a
        hanging backend within S seconds, 502 when all refuse)
  pipeline [-n N]
        N requests (GET /echo and POST /echo with bodies, each with X-Seq)
        written in ONE send; the N responses must come back in order
  keepalive [-n N] [--backends a,b,c]
        N GET /who on one connection; every named backend must answer
  chunked-upload [--size BYTES]
        POST /sha256 with a chunked body (random chunk sizes, extensions,
        a trailer); the backend's sha256 must match
  continue [--size BYTES]
        PUT /sha256 with Expect: 100-continue: waits for "100 Continue"
        before sending the body; final 200 with the right sha256
  upload --size BYTES
        POST /sha256 with Content-Length (large), sha256 checked
  download --size BYTES [--chunked | --close]
        GET /bytes/N; the received body's sha256 must match X-Sha256 and
        the length must match (chunked and close-delimited variants)
  die [--size BYTES]
        GET /bytes/N from a backend that dies mid-response (mode die): the
        client connection must be closed before a complete body (never a
        truncated body presented as complete)
  websocket [--messages N]
        Upgrade to WebSocket on /ws; text, binary and a 70 000-byte message
        echoed; a close handshake
  smuggle --vectors FILE [--backend-log FILE]
        every case of the vectors file (tests/proxy/http-smuggling.vectors);
        then the backend log must hold no target containing "smuggled" and
        every control case
"""
import argparse
import base64
import hashlib
import json
import os
import random
import socket
import sys
import time

BLOCK = hashlib.sha256(b"edgemesh").digest() * 2048  # same pattern as http-backend.py

failures = 0


def report(ok, what, detail=""):
    global failures
    if ok:
        print(f"ok - {what}")
    else:
        failures += 1
        print(f"FAIL - {what}" + (f": {detail}" if detail else ""))
    sys.stdout.flush()
    return ok


def payload(n, off=0):
    out = bytearray()
    while n > 0:
        i = off % len(BLOCK)
        take = min(n, len(BLOCK) - i)
        out += BLOCK[i:i + take]
        n -= take
        off += take
    return bytes(out)


class Resp:
    def __init__(self):
        self.status = None
        self.reason = ""
        self.headers = []
        self.body = b""
        self.sha = hashlib.sha256()
        self.length = 0
        self.complete = False

    def h(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Client:
    def __init__(self, addr, timeout):
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, b):
        self.s.sendall(b)

    def fill(self):
        d = self.s.recv(1 << 18)
        if not d:
            self.eof = True
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact_into(self, n, r, keep):
        while n > 0:
            if not self.buf:
                self.fill()
            d = self.buf[:n]
            self.buf = self.buf[len(d):]
            r.sha.update(d)
            r.length += len(d)
            if keep:
                r.body += d
            n -= len(d)

    def response(self, method="GET", keep=True):
        """Read one response (interim 1xx returned as is). Raises EOFError or
        socket.timeout when it does not complete; r.complete tells."""
        r = Resp()
        st = self.line().decode("latin-1")
        parts = st.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"bad status line {st!r}")
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        while True:
            ln = self.line()
            if not ln:
                break
            k, _, v = ln.decode("latin-1").partition(":")
            r.headers.append((k.strip(), v.strip()))
        if r.status < 200 or r.status in (204, 304) or method == "HEAD":
            r.complete = True
            return r
        te, cl = r.h("transfer-encoding"), r.h("content-length")
        if te and te.lower().endswith("chunked"):
            while True:
                n = int(self.line().split(b";")[0], 16)
                if n == 0:
                    while self.line():
                        pass
                    break
                self.exact_into(n, r, keep)
                if self.line() != b"":
                    raise ValueError("chunk data not followed by CRLF")
        elif cl is not None:
            self.exact_into(int(cl), r, keep)
        else:
            try:
                while True:
                    self.exact_into(1 << 18, r, keep)
            except EOFError:
                pass
        r.complete = True
        return r

    def closed(self, wait=2.0):
        """True if the peer closes (EOF or reset) within wait seconds."""
        self.s.settimeout(wait)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except ConnectionResetError:
            return True
        except (socket.timeout, OSError):
            return False

    def close(self):
        self.s.close()


def req(method, path, host, headers=(), body=None, extra=b""):
    hs = [f"{method} {path} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers]
    if body is not None:
        hs.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(hs) + "\r\n\r\n").encode() + (body or b"") + extra


# ---- commands -----------------------------------------------------------

def cmd_get(a):
    t0 = time.monotonic()
    c = Client(a.to, a.timeout)
    c.send(req("GET", a.path, a.host))
    try:
        r = c.response()
        got = r.status
    except (EOFError, socket.timeout, ValueError, ConnectionResetError) as e:
        got, r = f"no response ({type(e).__name__})", None
    dt = time.monotonic() - t0
    if a.expect:
        report(got == a.expect, f"GET {a.path} -> {a.expect}", f"got {got}")
    else:
        report(got is not None and isinstance(got, int) and got < 400, f"GET {a.path}", f"got {got}")
    if a.within:
        report(dt <= a.within, f"GET {a.path} answered within {a.within}s", f"took {dt:.2f}s")
    if r and a.expect and a.expect >= 500:
        report(r.h("content-type") == "text/plain" and len(r.body) > 0,
               f"generated {r.status} has a short text body", f"{r.headers} {r.body[:60]!r}")


def cmd_pipeline(a):
    c = Client(a.to, a.timeout)
    wire, want = b"", []
    for i in range(a.n):
        if i % 3 == 1:
            body = f"body-{i}-".encode() * (i + 1)
            wire += req("POST", "/echo", a.host, [("X-Seq", i)], body)
            want.append(body)
        else:
            wire += req("GET", f"/echo?i={i}", a.host, [("X-Seq", i)])
            want.append(b"")
    c.send(wire)
    ok, why = True, ""
    for i in range(a.n):
        try:
            r = c.response()
        except Exception as e:  # noqa: BLE001 — report any failure mode
            ok, why = False, f"response {i}: {type(e).__name__} {e}"
            break
        if r.status != 200 or r.h("x-seq") != str(i) or r.body != want[i]:
            ok, why = False, f"response {i}: status {r.status} seq {r.h('x-seq')} body {r.body[:40]!r}"
            break
    report(ok, f"{a.n} pipelined requests answered in order", why)


def cmd_keepalive(a):
    c = Client(a.to, a.timeout)
    seen = {}
    for i in range(a.n):
        c.send(req("GET", "/who", a.host))
        try:
            r = c.response()
        except Exception as e:  # noqa: BLE001
            report(False, f"{a.n} requests on one connection", f"request {i}: {e}")
            return
        name = r.body.decode(errors="replace").strip()
        seen[name] = seen.get(name, 0) + 1
    print(f"# backends seen: {json.dumps(seen, sort_keys=True)}")
    report(sum(seen.values()) == a.n, f"{a.n} requests on one keep-alive connection")
    if a.backends:
        missing = [b for b in a.backends.split(",") if b not in seen]
        report(not missing, f"every backend answered ({a.backends})", f"missing {missing}")


def chunked_body(data, rnd):
    out, i = bytearray(), 0
    while i < len(data):
        n = min(len(data) - i, rnd.choice([1, 7, 100, 4096, 65536, 300000]))
        ext = b";e=1" if rnd.random() < 0.3 else b""
        out += b"%X" % n + ext + b"\r\n" + data[i:i + n] + b"\r\n"
        i += n
    return bytes(out) + b"0\r\nX-Trailer: t\r\n\r\n"


def cmd_chunked_upload(a):
    data = payload(a.size, 12345)
    c = Client(a.to, a.timeout)
    c.send(f"POST /sha256 HTTP/1.1\r\nHost: {a.host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    c.send(chunked_body(data, random.Random(a.size)))
    r = c.response()
    report(r.status == 200 and r.body.strip().decode() == hashlib.sha256(data).hexdigest(),
           f"chunked upload of {a.size} bytes, sha256 matches", f"{r.status} {r.body[:70]!r}")


def cmd_continue(a):
    data = payload(a.size, 777)
    c = Client(a.to, a.timeout)
    c.send(f"PUT /sha256 HTTP/1.1\r\nHost: {a.host}\r\nExpect: 100-continue\r\n"
           f"Content-Length: {len(data)}\r\n\r\n".encode())
    r = c.response()
    report(r.status == 100, "100 Continue before the body", f"got {r.status}")
    c.send(data)
    r = c.response()
    report(r.status == 200 and r.body.strip().decode() == hashlib.sha256(data).hexdigest(),
           f"body after 100-continue ({a.size} bytes), sha256 matches", f"{r.status} {r.body[:70]!r}")


def cmd_upload(a):
    c = Client(a.to, a.timeout)
    c.send(f"POST /sha256 HTTP/1.1\r\nHost: {a.host}\r\nContent-Length: {a.size}\r\n\r\n".encode())
    h, off = hashlib.sha256(), 0
    while off < a.size:
        d = payload(min(1 << 20, a.size - off), off)
        h.update(d)
        c.send(d)
        off += len(d)
    r = c.response()
    report(r.status == 200 and r.body.strip().decode() == h.hexdigest(),
           f"upload of {a.size} bytes, sha256 matches", f"{r.status} {r.body[:70]!r}")


def cmd_download(a):
    q = "?chunked=1" if a.chunked else "?close=1" if a.close else ""
    c = Client(a.to, a.timeout)
    t0 = time.monotonic()
    c.send(req("GET", f"/bytes/{a.size}{q}", a.host))
    r = c.response(keep=False)
    dt = time.monotonic() - t0
    kind = "chunked" if a.chunked else "close-delimited" if a.close else "Content-Length"
    report(r.status == 200 and r.length == a.size and r.sha.hexdigest() == r.h("x-sha256"),
           f"{kind} download of {a.size} bytes, sha256 matches",
           f"status {r.status} got {r.length} sha {r.sha.hexdigest()[:16]} want {str(r.h('x-sha256'))[:16]}")
    print(f"# {a.size / max(dt, 1e-6) / 1e6:.1f} MB/s")


def cmd_die(a):
    c = Client(a.to, a.timeout)
    c.send(req("GET", f"/bytes/{a.size}", a.host))
    try:
        r = c.response(keep=False)
        report(False, "backend died mid-response: client connection closed, body incomplete",
               f"a complete response arrived: {r.status}, {r.length} bytes")
    except (EOFError, ConnectionResetError):
        report(True, "backend died mid-response: client connection closed, body incomplete")
    except socket.timeout:
        report(False, "backend died mid-response: client connection closed, body incomplete",
               "timed out, connection left open")
    except ValueError as e:
        report(False, "backend died mid-response", f"garbage: {e}")


def ws_frame(op, data, rnd):
    mask = bytes(rnd.randrange(256) for _ in range(4))
    n = len(data)
    hdr = bytes([0x80 | op])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        hdr += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def ws_read(c):
    while len(c.buf) < 2:
        c.fill()
    b0, b1 = c.buf[0], c.buf[1]
    n, i = b1 & 0x7F, 2
    if n == 126:
        while len(c.buf) < 4:
            c.fill()
        n, i = int.from_bytes(c.buf[2:4], "big"), 4
    elif n == 127:
        while len(c.buf) < 10:
            c.fill()
        n, i = int.from_bytes(c.buf[2:10], "big"), 10
    while len(c.buf) < i + n:
        c.fill()
    d = c.buf[i:i + n]
    c.buf = c.buf[i + n:]
    return b0 & 0x0F, d


def cmd_websocket(a):
    rnd = random.Random(1)
    key = base64.b64encode(os.urandom(16)).decode()
    c = Client(a.to, a.timeout)
    c.send(f"GET /ws HTTP/1.1\r\nHost: {a.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    r = c.response()
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                         .encode()).digest()).decode()
    if not report(r.status == 101 and r.h("sec-websocket-accept") == want,
                  "WebSocket handshake (101, accept key)", f"{r.status} {r.headers}"):
        return
    msgs = [(1, f"hello {i}".encode()) for i in range(a.messages)]
    msgs += [(2, bytes(range(256)) * 3), (2, payload(70000, 5))]
    ok = True
    for op, data in msgs:
        c.send(ws_frame(op, data, rnd))
        gop, gd = ws_read(c)
        if gop != op or gd != data:
            ok = False
            break
    report(ok, f"WebSocket echo of {len(msgs)} messages (text, binary, 70000 bytes)")
    c.send(ws_frame(8, b"\x03\xe8", rnd))
    gop, _ = ws_read(c)
    report(gop == 8 and c.closed(), "WebSocket close handshake, then the tunnel closes")


def unescape(s):
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def load_vectors(path):
    cases = []
    for ln in open(path, encoding="latin-1"):
        ln = ln.rstrip("\n")
        if not ln or ln.startswith("#"):
            continue
        d, name, expect, raw = ln.split("\t", 3)
        cases.append((d, name, expect.split("|"), unescape(raw)))
    return cases


def run_vector(a, d, name, raw):
    """What the client sees: a status (str), 'close', or 'open' (neither)."""
    c = Client(a.to, a.timeout)
    if d == "resp":
        raw = req("GET", "/raw?b=" + base64.urlsafe_b64encode(raw).decode().rstrip("="), a.host,
                  [("Connection", "close")])
    try:
        c.send(raw)
        r = c.response()
        got = str(r.status)
        closed = c.closed() if r.status >= 400 else True
    except (EOFError, ConnectionResetError, ValueError):
        got, closed = "close", True
    except socket.timeout:
        got, closed = "open", False
    finally:
        c.close()
    return got, closed


def cmd_smuggle(a):
    cases = load_vectors(a.vectors)
    for d, name, expect, raw in cases:
        got, closed = run_vector(a, d, name, raw)
        report(got in expect, f"{d} {name}: {'|'.join(expect)}", f"got {got}")
        if got not in ("close", "open") and int(got) >= 400:
            report(closed, f"{d} {name}: connection closed after {got}")
    if a.backend_log:
        time.sleep(0.3)  # let the backend flush the last lines
        targets = []
        for ln in open(a.backend_log):
            try:
                targets.append(json.loads(ln)["target"])
            except (ValueError, KeyError):
                continue
        smuggled = [t for t in targets if "smuggled" in t]
        report(not smuggled, "the backend never saw a smuggled request", f"it saw {smuggled}")
        controls = [n for d, n, e, r in cases if n.startswith("control")]
        missing = [n for n in controls if f"/{n}" not in targets]
        report(not missing, "every control request reached the backend (the log works)",
               f"missing {missing}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--to", required=True, help="address:port to connect to ([v6]:port)")
    p.add_argument("--host", default="svc", help="Host header value")
    p.add_argument("--timeout", type=float, default=10.0)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("get")
    s.add_argument("path")
    s.add_argument("--expect", type=int)
    s.add_argument("--within", type=float)
    s = sub.add_parser("pipeline")
    s.add_argument("-n", type=int, default=20)
    s = sub.add_parser("keepalive")
    s.add_argument("-n", type=int, default=100)
    s.add_argument("--backends")
    s = sub.add_parser("chunked-upload")
    s.add_argument("--size", type=int, default=1 << 20)
    s = sub.add_parser("continue")
    s.add_argument("--size", type=int, default=100000)
    s = sub.add_parser("upload")
    s.add_argument("--size", type=int, default=64 << 20)
    s = sub.add_parser("download")
    s.add_argument("--size", type=int, default=64 << 20)
    s.add_argument("--chunked", action="store_true")
    s.add_argument("--close", action="store_true")
    s = sub.add_parser("die")
    s.add_argument("--size", type=int, default=1 << 20)
    s = sub.add_parser("websocket")
    s.add_argument("--messages", type=int, default=5)
    s = sub.add_parser("smuggle")
    s.add_argument("--vectors", required=True)
    s.add_argument("--backend-log")
    a = p.parse_args()
    try:
        globals()["cmd_" + a.cmd.replace("-", "_")](a)
    except (OSError, EOFError, ValueError) as e:
        report(False, a.cmd, f"{type(e).__name__}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
