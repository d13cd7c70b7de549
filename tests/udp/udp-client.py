#!/usr/bin/python3
"""UDP client for netns-tests/svc-*.sh.

udp-client.py HOST PORT SOCKETS ROUNDS [HOLD_FILE]
Opens SOCKETS unconnected sockets (each its own source port, i.e. its own
flow), sends ROUNDS datagrams from each, one at a time, and prints one line
per reply: "<socket index> <reply source addr>:<port> <reply>", or
"<socket index> timeout". With HOLD_FILE, after the rounds it waits for the
file to appear and then sends one more round from the same sockets (flows
that must survive, or move, across a change made meanwhile). With CONNECT=1
in the environment the sockets are connected, so that an ICMP port
unreachable shows as "refused" (unconnected sockets never see it)."""
import os
import socket
import sys
import time

host, port, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hold = sys.argv[5] if len(sys.argv) > 5 else None
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
socks = []
for i in range(n):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    if os.environ.get("CONNECT") == "1":
        s.connect((host, port))
    socks.append(s)


def round_(tag):
    for i, s in enumerate(socks):
        try:
            s.sendto(("%s-%d" % (tag, i)).encode(), (host, port))
            data, peer = s.recvfrom(65536)
            print("%d %s:%d %s" % (i, peer[0], peer[1], data.decode()), flush=True)
        except (socket.timeout, ConnectionRefusedError) as e:
            print("%d %s" % (i, "timeout" if isinstance(e, socket.timeout) else "refused"),
                  flush=True)


for r in range(rounds):
    round_("r%d" % r)
if hold:
    deadline = time.time() + 30
    while not os.path.exists(hold) and time.time() < deadline:
        time.sleep(0.05)
    round_("after")
