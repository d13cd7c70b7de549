#!/usr/bin/python3
"""A DNS server that answers every A query with ADDR, DELAY seconds late
(netns-tests/svc-kinds.sh: the daemon's lookup of an ExternalName target
times out, and the client's own query must then pass untouched)."""
import socket
import struct
import sys
import threading
import time

bind, addr, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((bind, 53))


def answer(q, peer):
    time.sleep(delay)
    p = 12
    while q[p]:
        p += q[p] + 1
    p += 5
    hdr = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    rr = struct.pack("!HHHIH", 0xc00c, 1, 1, 60, 4) + socket.inet_aton(addr)
    s.sendto(hdr + q[12:p] + rr, peer)


while True:
    q, peer = s.recvfrom(4096)
    threading.Thread(target=answer, args=(q, peer), daemon=True).start()
