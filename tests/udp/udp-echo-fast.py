#!/usr/bin/python3
"""Plain UDP echo (no name prefix) for netns-tests/bench-udp.sh."""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, p = s.recvfrom(65536)
    s.sendto(d, p)
