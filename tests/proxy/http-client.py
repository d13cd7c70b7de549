#!/usr/bin/env python3
"""http-client.py CMD ADDR PORT [ARGS] — raw-socket HTTP/1.1 client checks.

keepalive N        N GETs of / on one connection; prints each body's first word
pipeline           three POSTs in one write; prints "<name> <bytes>" per answer, in order
websocket          Upgrade handshake, then 64 KiB echoed through the tunnel; prints "ok"
raw FILE           send FILE's bytes, read until close; prints what came back
addpod N CMD...    N/2 GETs, run CMD, N/2 GETs on the same connection; prints names
"""
import base64, os, socket, subprocess, sys


def connect(addr, port):
    s = socket.create_connection((addr, port), timeout=10)
    return s, s.makefile("rb")


def response(f):
    while True:
        status = f.readline()
        if not status:
            raise SystemExit("connection closed before a response")
        code = int(status.split()[1])
        cl = 0
        while True:
            h = f.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode("latin1").partition(":")
            if k.strip().lower() == "content-length":
                cl = int(v)
        if code != 100:
            return code, f.read(cl)


def get(s, f, path="/"):
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    return response(f)


cmd, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if cmd == "keepalive":
    s, f = connect(addr, port)
    for _ in range(int(sys.argv[4])):
        code, body = get(s, f)
        print(code, body.split()[0].decode() if body else "-")
elif cmd == "addpod":
    n = int(sys.argv[4])
    s, f = connect(addr, port)
    for _ in range(n // 2):
        print(get(s, f)[1].split()[0].decode())
    subprocess.run(sys.argv[5:], check=True)
    for _ in range(n // 2):
        print(get(s, f)[1].split()[0].decode())
elif cmd == "pipeline":
    s, f = connect(addr, port)
    req = b""
    for n in (3, 1000, 70000):
        req += b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % n + b"a" * n
    s.sendall(req)
    for _ in range(3):
        code, body = response(f)
        w = body.split()
        print(code, w[0].decode(), w[1].decode())
elif cmd == "websocket":
    s, f = connect(addr, port)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    status = f.readline()
    assert status.split()[1] == b"101", status
    while f.readline() not in (b"\r\n", b""):
        pass
    data = os.urandom(65536)
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        d = f.read1(65536)
        if not d:
            break
        got += d
    print("ok" if got == data else "mismatch %d" % len(got))
elif cmd == "raw":
    s, f = connect(addr, port)
    s.sendall(open(sys.argv[4], "rb").read())
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except OSError:
        pass
    sys.stdout.write(out.decode("latin1"))
