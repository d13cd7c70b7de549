#!/bin/bash
# dns-capture.sh — capture real DNS queries from dig, getent (glibc),
# nslookup and a musl-style hand-made query as whole IP packets, into
# tests/data/dns/<tool>-<case>.hex (one line of hex per file).
#
#   ns em-dns-cap-$$:  lo 127.0.0.1, ::1
#     capture.py: AF_PACKET on lo (records every UDP packet to port 53) and a
#                 UDP responder on 127.0.0.1:53 / [::1]:53 that says NXDOMAIN
#                 so every tool finishes at once.
#
# Packets on lo carry a partial UDP checksum (CHECKSUM_PARTIAL); the script
# writes the full checksum, as NFQUEUE delivers it without the GSO flag.
# Usage: tools/dns-capture.sh [outdir]   (root; touches only its namespace)
set -e
out=${1:-$(dirname "$0")/../tests/data/dns}
out=$(realpath "$out")
ns=em-dns-cap-$$
tmp=$(mktemp -d)
cleanup() {
	[ -n "$cap_pid" ] && kill "$cap_pid" 2>/dev/null; wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "/etc/netns/$ns" "$tmp"
}
trap cleanup EXIT
ip netns add "$ns"
n() { ip netns exec "$ns" "$@"; }
n ip link set lo up
mkdir -p "/etc/netns/$ns"
cat > "/etc/netns/$ns/resolv.conf" <<RC
nameserver 127.0.0.1
search default.svc.cluster.local svc.cluster.local cluster.local
options ndots:5 attempts:1 timeout:1
RC

cat > "$tmp/capture.py" <<'PY'
import socket, struct, sys, os, select
out = sys.argv[1]
tag = [ 'none' ]
pk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
pk.bind(('lo', 0))
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u4.bind(('127.0.0.1', 53))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(('::1', 53))
ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ctl.bind(('127.0.0.1', 5999))
count = {}
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s
def fix(ip):
    ip = bytearray(ip)
    if ip[0] >> 4 == 4:
        hl = (ip[0] & 15) * 4; pseudo = ip[12:20] + bytes([0, 17]) + ip[hl+4:hl+6]
    else:
        hl = 40; pseudo = ip[8:40] + struct.pack('!IxxxB', len(ip) - 40, 17)
    ip[hl+6:hl+8] = b'\0\0'
    c = (~csum(bytes(pseudo) + bytes(ip[hl:]))) & 0xffff
    ip[hl+6:hl+8] = struct.pack('!H', c or 0xffff)
    return bytes(ip)
while True:
    r, _, _ = select.select([pk, u4, u6, ctl], [], [])
    for s in r:
        if s is ctl:
            msg = s.recv(100).decode()
            if msg == 'quit': sys.exit(0)
            tag[0] = msg
        elif s is pk:
            data, addr = s.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING: continue
            ip = data[14:]
            v = ip[0] >> 4
            if v == 4 and ip[9] == 17: hl = (ip[0] & 15) * 4
            elif v == 6 and ip[6] == 17: hl = 40
            else: continue
            if struct.unpack('!H', ip[hl+2:hl+4])[0] != 53: continue
            n = count.get(tag[0], 0) + 1; count[tag[0]] = n
            with open(os.path.join(out, '%s-%d.hex' % (tag[0], n)), 'w') as f:
                f.write(fix(ip).hex() + '\n')
        else:
            q, a = s.recvfrom(4096)
            if len(q) < 12: continue
            # NXDOMAIN, question echoed, no OPT
            end = 12
            while end < len(q) and q[end]: end += q[end] + 1
            resp = q[:2] + bytes([0x81, 0x83]) + b'\0\1\0\0\0\0\0\0' + q[12:end + 5]
            s.sendto(resp, a)
PY
n /usr/bin/python3 "$tmp/capture.py" "$out" & cap_pid=$!
for i in $(seq 50); do n ss -uln | grep -q ':5999' && break; sleep 0.1; done
tag() { n /usr/bin/python3 -c "import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'$1',('127.0.0.1',5999))"; sleep 0.2; }
N=nginx-svc.default.svc.cluster.local
tag dig-a;          n dig +tries=1 +time=1 @127.0.0.1 A $N >/dev/null || true
tag dig-aaaa;       n dig +tries=1 +time=1 @127.0.0.1 AAAA $N >/dev/null || true
tag dig-noedns;     n dig +tries=1 +time=1 +noedns @127.0.0.1 A $N >/dev/null || true
tag dig-nocookie;   n dig +tries=1 +time=1 +nocookie @127.0.0.1 A $N >/dev/null || true
tag dig-upper;      n dig +tries=1 +time=1 @127.0.0.1 A NGINX-SVC.Default.SVC.cluster.LOCAL. >/dev/null || true
tag dig-srv;        n dig +tries=1 +time=1 @127.0.0.1 SRV _http-0._tcp.$N >/dev/null || true
tag dig-ptr;        n dig +tries=1 +time=1 @127.0.0.1 -x 198.18.0.10 >/dev/null || true
tag dig-ptr6;       n dig +tries=1 +time=1 @127.0.0.1 -x fd00:e3::a >/dev/null || true
tag dig-mx;         n dig +tries=1 +time=1 @127.0.0.1 MX $N >/dev/null || true
tag dig-outside;    n dig +tries=1 +time=1 @127.0.0.1 A example.org >/dev/null || true
tag dig6-a;         n dig +tries=1 +time=1 @::1 A $N >/dev/null || true
tag dig6-aaaa-noedns; n dig +tries=1 +time=1 +noedns @::1 AAAA $N >/dev/null || true
tag getent;         n getent ahosts nginx-svc.default >/dev/null || true
tag nslookup;       n nslookup -timeout=1 -retry=0 $N 127.0.0.1 >/dev/null || true
tag quit
wait "$cap_pid" || true; cap_pid=
# musl-style: musl sends A and AAAA back to back, no EDNS, RD, id from the
# clock; built by hand as a packet from 127.0.0.1:40000.
/usr/bin/python3 - "$out" <<'PY'
import struct, sys, os
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s
def qname(n): return b''.join(bytes([len(l)]) + l.encode() for l in n.split('.')) + b'\0'
for i, t in enumerate((1, 28)):
    dns = struct.pack('!HHHHHH', 0x3a71 + i, 0x0100, 1, 0, 0, 0) + qname('nginx-svc.default.svc.cluster.local') + struct.pack('!HH', t, 1)
    udp = struct.pack('!HHHH', 40000, 53, 8 + len(dns), 0) + dns
    src, dst = bytes([127,0,0,1]), bytes([127,0,0,1])
    c = (~csum(src + dst + bytes([0, 17]) + struct.pack('!H', len(udp)) + udp)) & 0xffff
    udp = udp[:6] + struct.pack('!H', c or 0xffff) + udp[8:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0x1234, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack('!H', (~csum(ip)) & 0xffff) + ip[12:]
    open(os.path.join(sys.argv[1], 'musl-%d.hex' % (i + 1)), 'w').write((ip + udp).hex() + '\n')
PY
ls "$out"
