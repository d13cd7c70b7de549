#!/usr/bin/python3
"""UDP echo for netns-tests/svc-*.sh: answers each datagram with
"<name>:<datagram>" from the address it was sent to."""
import socket
import sys

addr, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(name.encode() + b":" + data, peer)
