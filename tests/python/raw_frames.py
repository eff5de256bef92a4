#!/usr/bin/env python3
"""Hand-made frames for the lab tests: what a real client's kernel would never
send (a spoofed source address, a forged ICMP error), written with raw
AF_PACKET sockets and the standard library only (no scapy).

  raw_frames.py send IFACE DST_MAC SPEC...     one frame per SPEC, out of IFACE to DST_MAC
      udp,SRC,DST,TAG                          UDP 40000 -> 9 (IPv4 or IPv6), TAG as payload
      icmp,SRC,DST,QSRC,QDST,QSPORT,QDPORT,TAG ICMP destination (host) unreachable quoting
                                               a TCP segment QSRC:QSPORT -> QDST:QDPORT, then TAG
      tcp,SRC,SPORT,DST,DPORT,FLAGS,TAG        an IPv4 TCP segment with FLAGS (letters of SAFRPU,
                                               or "none") and TAG as payload
  raw_frames.py sniff IFACE SECONDS TAG...     prints "ready", then after SECONDS the JSON list
                                               of the TAGs seen in frames on IFACE
  raw_frames.py synflood IFACE DST_MAC NET DST DPORT COUNT SECONDS
                                               IPv4 SYNs to DST:DPORT from random addresses of
                                               NET (a.b.c.d/len) and random ports, at most COUNT
                                               of them and for at most SECONDS; prints how many
"""
import ipaddress, json, random, socket, struct, sys, time

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ip4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def ip6(src, dst, proto, payload):
    s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    return struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + s6 + d6 + payload

def udp(src, dst, data):
    v6 = ":" in src
    u = struct.pack("!HHHH", 40000, 9, 8 + len(data), 0) + data
    if v6:
        fam = socket.AF_INET6
        pseudo = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack("!IxxxB", len(u), 17)
        u = u[:6] + struct.pack("!H", csum(pseudo + u) or 0xffff) + u[8:]
        return 0x86dd, ip6(src, dst, 17, u)
    return 0x0800, ip4(src, dst, 17, u)

def icmp_error(src, dst, qsrc, qdst, qsport, qdport, tag):
    # Destination unreachable (host) quoting a TCP segment qsrc:qsport -> qdst:qdport.
    tcp = struct.pack("!HHIIBBHHH", int(qsport), int(qdport), 1, 0, 0x50, 0x10, 502, 0, 0)
    quoted = ip4(qsrc, qdst, 6, tcp + tag)
    msg = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
    msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    return 0x0800, ip4(src, dst, 1, msg)

TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}

def tcp(src, sport, dst, dport, flags, data):
    bits = 0 if flags == "none" else sum(TCP_FLAGS[f] for f in flags)
    seg = struct.pack("!HHIIBBHHH", int(sport), int(dport), 1000, 1 if bits & 0x10 else 0,
                      0x50, bits, 64240, 0, 0) + data
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!xBH", 6, len(seg))
    seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
    return 0x0800, ip4(src, dst, 6, seg)

def frame(kind, args):
    tag = args[-1].encode()
    if kind == "udp":
        return udp(args[0], args[1], tag)
    if kind == "tcp":
        return tcp(*args[:-1], tag)
    return icmp_error(*args[:-1], tag)

def send(iface, dst_mac, specs):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src_mac = s.getsockname()[4]
    for spec in specs:
        kind, *args = spec.split(",")
        ethertype, pkt = frame(kind, args)
        s.send(bytes.fromhex(dst_mac.replace(":", "")) + src_mac + struct.pack("!H", ethertype) + pkt)
        time.sleep(0.05)

def sniff(iface, seconds, tags):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((iface, 0))
    s.settimeout(0.1)
    print("ready", flush=True)
    seen, end = set(), time.time() + float(seconds)
    while time.time() < end:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        seen.update(t for t in tags if t.encode() in frame)
    print(json.dumps(sorted(seen)), flush=True)

def synflood(iface, dst_mac, net, dst, dport, count, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    head = bytes.fromhex(dst_mac.replace(":", "")) + s.getsockname()[4] + struct.pack("!H", 0x0800)
    net = ipaddress.ip_network(net)
    hosts = int(net.num_addresses)
    sent, end = 0, time.time() + float(seconds)
    while sent < int(count) and time.time() < end:
        src = str(net.network_address + random.randrange(1, hosts - 1))
        _, pkt = tcp(src, random.randrange(1024, 65536), dst, dport, "S", b"")
        try:
            s.send(head + pkt)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        sent += 1
    print(sent, flush=True)

if sys.argv[1] == "send":
    send(sys.argv[2], sys.argv[3], sys.argv[4:])
elif sys.argv[1] == "synflood":
    synflood(*sys.argv[2:9])
else:
    sniff(sys.argv[2], sys.argv[3], sys.argv[4:])
