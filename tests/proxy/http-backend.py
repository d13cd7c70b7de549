#!/usr/bin/env python3
"""http-backend.py MODE NAME ADDR PORT LOG — small HTTP/1.1 test backend.

MODE: sum    answer every request with "NAME <body bytes> <sha256>" (reads
             Content-Length and chunked bodies, answers Expect: 100-continue,
             Upgrade: websocket -> 101 then echoes raw bytes)
      die    announce 1000000 bytes, send 1000, close
      silent read the request, never answer
Every request line goes to LOG, one per line: the proof of what it saw.
"""
import base64, hashlib, socket, sys, threading, time

mode, name, addr, port, logf = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
lock = threading.Lock()


def log(line):
    with lock, open(logf, "a") as f:
        f.write(line.rstrip("\r\n") + "\n")


def serve(c):
    f = c.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line:
                return
            log(line.decode("latin1"))
            hdrs = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin1").partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if mode == "silent":
                time.sleep(60)
                return
            if mode == "die":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
                return
            if hdrs.get("upgrade", "").lower() == "websocket":
                acc = base64.b64encode(hashlib.sha1(
                    (hdrs["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
                while True:
                    d = f.read1(65536)
                    if not d:
                        return
                    c.sendall(d)
            h = hashlib.sha256()
            n = 0
            if hdrs.get("expect", "").lower() == "100-continue":
                c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    sz = int(f.readline().split(b";")[0], 16)
                    if sz == 0:
                        while f.readline() not in (b"\r\n", b""):
                            pass
                        break
                    d = f.read(sz)
                    h.update(d)
                    n += len(d)
                    f.readline()
            else:
                rem = int(hdrs.get("content-length", "0"))
                while rem:
                    d = f.read(min(rem, 65536))
                    if not d:
                        return
                    h.update(d)
                    n += len(d)
                    rem -= len(d)
            body = ("%s %d %s\n" % (name, n, h.hexdigest())).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except (OSError, ValueError):
        pass
    finally:
        c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(128)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
