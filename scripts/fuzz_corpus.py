#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses (native/fuzz/) into tests/fuzz/corpus/NAME/:
frames and datagrams from the shared wire vectors (tests/vectors/wire.txt), the frames of a
router link that carries sessions (session frames and MUX, OPEN, ... link frames, alone and as
one stream) from the same vectors, DNS queries as
resolvers send them, key files, cache-manager replies and socket addresses. Files are named by
the SHA-1 of their content, as libFuzzer names its own, so running this again changes nothing.
Regression inputs (a crash found once) live in the same folders under names starting with
"regress-" and are never removed by this script.
Usage: scripts/fuzz_corpus.py"""
import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(name, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def wire():
    with open(os.path.join(ROOT, "tests", "vectors", "wire.txt")) as f:
        for line in f:
            p = line.split()
            if not p or p[0] not in ("frame", "ticket", "dgram"):
                continue
            raw = bytes.fromhex(p[-1])
            # bit 0: the harness fixes the MAC first; bit 1: judged as on an authenticated link
            for mode in range(4):
                put("wire", bytes([mode]) + raw)


def frame():
    """Router-link frames for fuzz/frame.c: mode byte (bit 0 seal/MAC, bit 1 encrypt, bits 2-3
    the GCM implementation), then one frame or all of them as one stream."""
    frames = []
    with open(os.path.join(ROOT, "tests", "vectors", "wire.txt")) as f:
        for line in f:
            p = line.split()
            if p and p[0] == "sframe":
                frames.append(bytes.fromhex(p[-1]))
            elif p and p[0] == "frame" and p[1] in ("mux", "open", "opened", "resume", "resumed", "ping", "pong"):
                frames.append(bytes.fromhex(p[-1]))
    for raw in frames:
        for mode in (0, 1, 3):
            put("frame", bytes([mode]) + raw)
    stream = b"".join(frames)
    for mode in range(12):
        put("frame", bytes([mode]) + stream)


def dns_query(qid, name, qtype, qclass=1, flags=0x0100):
    q = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 0)
    for label in name.split(".") if name else []:
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, qclass)


def dns():
    for i, (name, t) in enumerate([("alpha", 1), ("alpha.uvpn", 1), ("alpha", 28), ("beta.uvpn", 255),
                                   ("down", 1), ("unknown.uvpn", 1), ("example.org", 1),
                                   ("7.0.64.100.in-addr.arpa", 12), ("8.0.64.100.in-addr.arpa", 12),
                                   ("1.0.0.127.in-addr.arpa", 12), ("", 1)]):
        put("dns", dns_query(0x1000 + i, name, t))
    q = dns_query(0x2000, "alpha", 1)
    put("dns", q[:12] + b"\xc0\x0c" + q[-4:])   # a compression pointer in a question
    put("dns", dns_query(0x2001, "alpha", 1, flags=0x8180))  # a response, not a query
    put("dns", dns_query(0x2002, "x" * 63 + "." + "y" * 63, 1))


def simple():
    key = bytes(range(32)).hex()
    for text in (key, key + "\n", key.upper() + " \t\r\n", key[:63], key + "x"):
        put("key", text.encode())
    for r in (b"OK", b"ERR ENOENT", b"ERR EIO", b"ERR E", b"ERR ENOSUCHTHING", b"OK\n", b""):
        put("xufs_reply", r)
    v4 = struct.pack("<H", 16) + struct.pack("=H", 2) + struct.pack(">H", 8080) + bytes([100, 64, 0, 7]) + bytes(8)
    v6 = struct.pack("<H", 28) + struct.pack("=H", 10) + struct.pack(">H", 53) + bytes(4) + \
        bytes(10) + b"\xff\xff" + bytes([100, 65, 0, 1]) + bytes(4)
    for sa in (v4, v6, v4[:10], struct.pack("<H", 2) + struct.pack("=H", 1)):
        put("sockaddr", sa)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    wire()
    frame()
    dns()
    simple()
