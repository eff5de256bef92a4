#!/usr/bin/env python3
"""Writes the seed corpora of control/fuzz (committed; run again only to
change them): python3 control/fuzz/seeds/make.py

Each target's seeds are small, valid inputs of its format, so the fuzzer
starts from the inside of every parser: real manifests and configuration
files of this repository, journals and snapshots as causeway writes them,
TLS ClientHellos from Python's ssl module (OpenSSL), and TCP, UDP and ICMP
flows framed for the pipeline target."""

import binascii
import glob
import json
import os
import ssl
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")


def out(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- selector ---------------------------------------------------------
for i, s in enumerate([
    "all()",
    "global()",
    "role == 'server'",
    "role == 'server' && app in {'web', 'api'}",
    "has(role) || !has(island)",
    "app not in {'a','b'} && tier != \"db\"",
    "(a == 'x' || b == 'y') && !(c == 'z')",
    "projectcalico.org/namespace == 'lab' && k starts with 'pre'",
    "k ends with 'suf' || k contains 'mid'",
]):
    out("selector", f"s{i}", s)

# --- manifests --------------------------------------------------------
for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*", "*"))):
    name = os.path.basename(path)
    if name.endswith(".md"):
        continue
    text = open(path, "rb").read()
    # The first byte picks the format: 0 YAML, 1 JSON.
    out("manifest", os.path.basename(os.path.dirname(path)) + "-" + name,
        (b"\x01" if name.endswith(".json") else b"\x00") + text)
out("manifest", "k8s-networkpolicy.yaml", b"\x00" + b"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: lab}
spec:
  podSelector: {matchLabels: {role: server}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 10.1.0.0/16, except: [10.1.9.0/24]}}, {namespaceSelector: {matchLabels: {team: a}}}]
    ports: [{protocol: TCP, port: 80, endPort: 90}]
  egress: [{to: [{podSelector: {}}]}]
""")
out("manifest", "tiers-sets.yaml", b"\x00" + b"""apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: bad, labels: {feed: bad}}
spec: {nets: [192.0.2.0/24, '2001:db8::/32']}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.block}
spec:
  tier: security
  order: 10
  selector: all()
  doNotTrack: true
  applyOnForward: true
  ingress: [{action: Deny, source: {selector: feed == 'bad'}}, {action: Pass}]
  egress: [{action: Log}, {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}, notProtocol: TCP}]
""")

# --- configuration ----------------------------------------------------
def fill(t):
    return (t.replace("{{socket}}", "/run/causeway/causeway.sock")
             .replace("{{svc_netns}}", "/run/netns/demo-svc")
             .replace("{{pki}}", "/nonexistent/pki"))


default = open(os.path.join(ROOT, "cli", "lab", "default.yaml")).read()
terminator = open(os.path.join(ROOT, "cli", "lab", "terminator.yaml")).read()
out("config", "lab.yaml", fill(default))
out("config", "lab-terminator.yaml", fill(default) + fill(terminator))

# --- journal ----------------------------------------------------------
# The target splits its input at the first 0xff: snapshot, then journal;
# with none, the input is the journal over its own one-policy snapshot.
def policy(name, port):
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"selector": "all()", "ingress": [
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": [port]}}]}}


def compact(v):
    return json.dumps(v, separators=(",", ":")).encode()


def crc(b):
    return binascii.crc32(b) & 0xFFFFFFFF


def record(generation, put, delete):
    j = compact({"generation": generation, "put": put, "delete": delete})
    return b"c1 %d %08x " % (len(j), crc(j)) + j + b"\n"


def stored(g, name, port, owner="ctl"):
    return {"generation": g, "owner": owner, "source": "a.yaml", "manifest": policy(name, port)}


def snapshot(generation, resources, fmt=2):
    j = compact({"format": fmt, "generation": generation, "resources": resources})
    if fmt == 1:
        return j
    return b"causeway-state 2 %d %08x\n" % (len(j), crc(j)) + j + b"\n"


two = record(2, [stored(2, "more", 81)], []) + record(3, [], ["GlobalNetworkPolicy/allow-web"])
out("journal", "two-records", two)
out("journal", "torn-tail", two + record(4, [stored(4, "x", 82)], [])[:40])
out("journal", "snapshot-and-journal",
    snapshot(5, [stored(1, "a", 80), stored(5, "b", 443, "sync/x")]) + b"\xff" + record(6, [stored(6, "c", 22)], []))
out("journal", "format1-snapshot", snapshot(3, [stored(3, "old", 80)], fmt=1) + b"\xff")

# --- TLS engine -------------------------------------------------------
# Opcodes: 0 accept (arg: service), 1 client bytes, 2 upstream bytes
# (arg: connection, then a length byte and the bytes), 3 EOF/reset,
# 4 time passes, 5 refuse connects.
def client_hello(versions, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version, ctx.maximum_version = versions
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, outg, server_hostname="causeway.test")
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outg.read()


def feed(op, conn, data):
    b = b""
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        b += bytes([op, conn, len(chunk)]) + chunk
    return b


hello13 = client_hello((ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3))
hello12 = client_hello((ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2))
out("tls_engine", "mtls-client-hello", bytes([0, 0]) + feed(1, 0, hello13) + bytes([4, 10]))
out("tls_engine", "tls12-client-hello", bytes([0, 1]) + feed(1, 0, hello12) + bytes([3, 0]))
# Originate: the engine connects and sends its ClientHello; the upstream
# answers with a TLS alert, then garbage.
alert = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
out("tls_engine", "originate-alert", bytes([0, 2]) + feed(1, 0, b"GET / HTTP/1.0\r\n\r\n") + feed(2, 0, alert))
# PostgreSQL (service 3): an SSLRequest, then the ClientHello; direct TLS
# with ALPN postgresql; a plaintext StartupMessage.
ssl_request = bytes([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
out("tls_engine", "postgres-ssl-request", bytes([0, 3]) + feed(1, 0, ssl_request) + feed(1, 0, hello13) + bytes([4, 10]))
hello_pg = client_hello((ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3), ["postgresql"])
out("tls_engine", "postgres-direct-alpn", bytes([0, 3]) + feed(1, 0, hello_pg) + bytes([4, 10]))
startup = b"\x00\x03\x00\x00user\x00postgres\x00\x00"
out("tls_engine", "postgres-plaintext", bytes([0, 3]) + feed(1, 0, struct.pack("!I", len(startup) + 4) + startup))
# The SNI listener (service 4): causeway.test chooses sni-a.
out("tls_engine", "sni-client-hello", bytes([0, 4]) + feed(1, 0, hello13) + bytes([4, 10]))
out("tls_engine", "plaintext-to-tls", bytes([0, 0]) + feed(1, 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") + bytes([4, 255, 4, 255]))

# --- pipeline ---------------------------------------------------------
# Records: [port] [ms] [len hi] [len lo] frame; port 0xfe swaps the
# policy, 0xff sweeps expired flows.
MAC = {0: bytes([2, 0, 0, 0, 0, 0xa0]), 1: bytes([2, 0, 0, 0, 0, 0xb0])}
HOST = {0: bytes([2, 0, 0, 0, 0, 0x0a]), 1: bytes([2, 0, 0, 0, 0, 0x0b])}


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(src, dst):
    return bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))


def ipv4(src, dst, proto, payload):
    s, d = ip4(src, dst)
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0x4000, 64, proto, 0, s, d)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h, s + d + struct.pack("!BBH", 0, proto, len(payload))


def tcp(src, dst, sport, dport, flags, seq=1000, ack=0, data=b""):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + data
    h, pseudo = ipv4(src, dst, 6, seg)
    seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
    return h + seg


def udp(src, dst, sport, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    h, pseudo = ipv4(src, dst, 17, seg)
    seg = seg[:6] + struct.pack("!H", csum(pseudo + seg)) + seg[8:]
    return h + seg


def icmp(src, dst, typ, code, rest, data):
    m = struct.pack("!BBH", typ, code, 0) + rest + data
    m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
    h, _ = ipv4(src, dst, 1, m)
    return h + m


def frame(port, l3, ethertype=0x0800):
    return MAC[port] + HOST[port] + struct.pack("!H", ethertype) + l3


def rec(port, ms, f):
    return bytes([port, ms]) + struct.pack("!H", len(f)) + f


A, B = "10.1.0.2", "10.2.0.2"
SYN, ACK, SYNACK, FIN, RST, PSH = 0x02, 0x10, 0x12, 0x01, 0x04, 0x08
flow = (rec(0, 0, frame(0, tcp(A, B, 40000, 80, SYN)))
        + rec(1, 1, frame(1, tcp(B, A, 80, 40000, SYNACK, 5000, 1001)))
        + rec(0, 1, frame(0, tcp(A, B, 40000, 80, ACK, 1001, 5001)))
        + rec(0, 1, frame(0, tcp(A, B, 40000, 80, ACK | PSH, 1001, 5001, b"GET / HTTP/1.0\r\n\r\n")))
        + rec(1, 1, frame(1, tcp(B, A, 80, 40000, ACK | FIN, 5001, 1019)))
        + rec(0, 1, frame(0, tcp(A, B, 40000, 80, ACK | FIN, 1019, 5002))))
out("pipeline", "tcp-flow", flow)
out("pipeline", "tcp-flow-policy-swap", flow[:len(flow) // 2] + bytes([0xfe, 0, 0, 0]) + flow[len(flow) // 2:] + bytes([0xff, 255, 0, 0]))
quoted = tcp(A, B, 40001, 80, SYN)[:28]
out("pipeline", "udp-icmp",
    rec(0, 0, frame(0, udp(A, B, 5353, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")))
    + rec(1, 0, frame(1, udp(B, A, 53, 5353, b"\x12\x34\x81\x80")))
    + rec(0, 0, frame(0, icmp(A, B, 8, 0, b"\x00\x01\x00\x01", b"ping")))
    + rec(1, 0, frame(1, icmp(B, A, 0, 0, b"\x00\x01\x00\x01", b"ping")))
    + rec(0, 0, frame(0, tcp(A, B, 40001, 80, SYN)))
    + rec(1, 0, frame(1, icmp(B, A, 3, 3, b"\x00\x00\x00\x00", quoted)))
    + rec(0, 0, frame(0, tcp("10.1.0.200", B, 40002, 22, SYN)))
    + rec(1, 0, frame(1, tcp(A, B, 40003, 80, SYN))))
flood = b"".join(rec(0, 0, frame(0, tcp("10.1.0.%d" % (2 + i), B, 1000 + i, 80, SYN))) for i in range(12))
out("pipeline", "syn-flood", flood + rec(0, 200, frame(0, tcp(A, B, 40000, 80, ACK, 1001, 5001))))
# The captured frames of the dataplane's own seeds, from each port.
for path in sorted(glob.glob(os.path.join(ROOT, "dataplane", "fuzz", "seeds", "parse_frame", "*.bin")))[:8]:
    f = open(path, "rb").read()
    out("pipeline", "capture-" + os.path.basename(path), rec(0, 0, f) + rec(1, 3, f))
