#!/usr/bin/python3
"""UDP request/response rate for netns-tests/bench-udp.sh.

udp-rr.py HOST PORT FLOWS SECONDS: FLOWS sockets (one flow each), each with
one request outstanding at a time; prints "<replies/s> <lost>" at the end.
A request not answered within 200 ms counts as lost and is sent again."""
import select
import socket
import sys
import time

host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
for s in socks:
    s.setblocking(False)
payload = b"x" * 64
sent_at = {}
done = lost = 0
poller = select.epoll()
for s in socks:
    poller.register(s.fileno(), select.EPOLLIN)
    s.sendto(payload, (host, port))
    sent_at[s.fileno()] = time.monotonic()
by_fd = {s.fileno(): s for s in socks}
end = time.monotonic() + secs
while True:
    now = time.monotonic()
    if now >= end:
        break
    for fd, _ in poller.poll(0.05):
        s = by_fd[fd]
        try:
            while True:
                s.recvfrom(2048)
                done += 1
                s.sendto(payload, (host, port))
                sent_at[fd] = time.monotonic()
        except BlockingIOError:
            pass
    now = time.monotonic()
    for fd, t in list(sent_at.items()):
        if now - t > 0.2:
            lost += 1
            by_fd[fd].sendto(payload, (host, port))
            sent_at[fd] = now
print("%d %d" % (done / secs, lost))
