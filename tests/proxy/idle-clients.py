import socket, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (19000, 19000))
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
def readone(s):
    f = b""
    while b"\r\n\r\n" not in f:
        f += s.recv(4096)
    while len(f) < 1024 + f.index(b"\r\n\r\n") + 4:
        f += s.recv(4096)

burst = len(sys.argv) > 4
for i in range(n):
    s = socket.create_connection((addr, port))
    s.sendall(b"GET /1k HTTP/1.1\r\nHost: t\r\n\r\n")
    socks.append(s)
    if not burst:
        readone(s)
if burst:
    for s in socks:
        readone(s)
print("open", len(socks), flush=True)
sys.stdin.readline()
