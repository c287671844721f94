#!/usr/bin/env python3
"""Generates tests/vectors/wire.txt: UVPN version-2 frames, link keys (HKDF-SHA256), tickets and
datagrams computed independently of the C and TypeScript codecs (Python's hmac and hashlib), so
both can be checked byte for byte against them; and the routers' session frames (AES-256-GCM),
with AES and GHASH written out below from FIPS 197 and SP 800-38D (the S-box computed from the
field, not copied), checked by the C data plane (native/tests/test_router.c)."""
import hashlib
import hmac
import struct


# ---- AES-256 (FIPS 197) and GCM (SP 800-38D), written out ----------------------------------

def _gmul(a: int, b: int) -> int:
    """Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1."""
    p = 0
    while b:
        if b & 1:
            p ^= a
        a = ((a << 1) ^ 0x1B) & 0xFF if a & 0x80 else a << 1
        b >>= 1
    return p


def _sbox() -> list:
    box = []
    for x in range(256):
        inv = next((y for y in range(1, 256) if _gmul(x, y) == 1), 0) if x else 0
        s = inv
        for k in range(1, 5):
            s ^= ((inv << k) | (inv >> (8 - k))) & 0xFF
        box.append(s ^ 0x63)
    return box


SBOX = _sbox()


def aes256_expand(key: bytes) -> list:
    w = [list(key[4 * i:4 * i + 4]) for i in range(8)]
    rcon = 1
    for i in range(8, 60):
        t = list(w[i - 1])
        if i % 8 == 0:
            t = [SBOX[t[1]] ^ rcon, SBOX[t[2]], SBOX[t[3]], SBOX[t[0]]]
            rcon = _gmul(rcon, 2)
        elif i % 8 == 4:
            t = [SBOX[b] for b in t]
        w.append([a ^ b for a, b in zip(w[i - 8], t)])
    return [sum(w[4 * r:4 * r + 4], []) for r in range(15)]


def aes256_block(rk: list, block: bytes) -> bytes:
    s = [b ^ k for b, k in zip(block, rk[0])]
    for r in range(1, 15):
        s = [SBOX[b] for b in s]
        s = [s[4 * ((c + j) % 4) + j] for c in range(4) for j in range(4)]  # ShiftRows
        if r < 14:
            m = []
            for c in range(4):
                a = s[4 * c:4 * c + 4]
                m += [_gmul(a[0], 2) ^ _gmul(a[1], 3) ^ a[2] ^ a[3], a[0] ^ _gmul(a[1], 2) ^ _gmul(a[2], 3) ^ a[3],
                      a[0] ^ a[1] ^ _gmul(a[2], 2) ^ _gmul(a[3], 3), _gmul(a[0], 3) ^ a[1] ^ a[2] ^ _gmul(a[3], 2)]
            s = m
        s = [b ^ k for b, k in zip(s, rk[r])]
    return bytes(s)


def _gf128(x: int, y: int) -> int:
    """GCM's multiplication of two blocks read as big-endian integers (bit 0 = the leftmost)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ (0xE1 << 120) if v & 1 else v >> 1
    return z


def ghash(h: bytes, data: bytes) -> int:
    hi, y = int.from_bytes(h, "big"), 0
    for i in range(0, len(data), 16):
        y = _gf128(y ^ int.from_bytes(data[i:i + 16].ljust(16, b"\0"), "big"), hi)
    return y


def aes256_gcm(key: bytes, iv: bytes, aad: bytes, pt: bytes) -> tuple:
    """Returns (ciphertext, tag) for a 96-bit IV."""
    rk = aes256_expand(key)
    h = aes256_block(rk, bytes(16))
    ct = b""
    for i in range(0, len(pt), 16):
        ks = aes256_block(rk, iv + struct.pack(">I", 2 + i // 16))
        ct += bytes(a ^ b for a, b in zip(pt[i:i + 16], ks))
    pad = lambda b: b + bytes(-len(b) % 16)
    s = ghash(h, pad(aad) + pad(ct) + struct.pack(">QQ", len(aad) * 8, len(ct) * 8))
    tag = bytes(a ^ b for a, b in zip(s.to_bytes(16, "big"), aes256_block(rk, iv + b"\0\0\0\1")))
    return ct, tag

KEY = bytes(range(32))
MAGIC = b"UVPN"
VERSION = 2


def hkdf(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    """RFC 5869 with SHA-256, written out from hmac."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:n]


def frame(mk: bytes, ftype: int, seq: int, reqid: int, body: bytes) -> bytes:
    head = MAGIC + struct.pack(">BBHQI", VERSION, ftype, len(body), seq, reqid) + bytes(12)
    data = head + body
    return data + hmac.new(mk, data, hashlib.sha256).digest()


def ip(s: str) -> bytes:
    return bytes(int(p) for p in s.split("."))


def dgram(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    head = b"UVPD" + bytes([VERSION, 0]) + ip(src) + struct.pack(">H", sport) + ip(dst) + struct.pack(">H", dport)
    return head + hmac.new(KEY, head + payload, hashlib.sha256).digest()[:16] + payload


def connect_body(proto, flags, src, sport, dst, dport):
    return struct.pack(">BB", proto, flags) + ip(src) + struct.pack(">H", sport) + ip(dst) + struct.pack(">H", dport)


def ticket(kind, src, sport, dst, dport, lid, bound, issued, tid):
    b = (b"UVPT" + bytes([VERSION, kind, 0, 0]) + ip(src) + struct.pack(">H", sport) + ip(dst)
         + struct.pack(">H", dport) + lid + struct.pack(">HH", bound, 0) + struct.pack(">Q", issued) + tid)
    return b + hmac.new(KEY, b, hashlib.sha256).digest()


NC = bytes(range(0x10, 0x20))
NR = bytes(range(0xE0, 0xF0))
K = hkdf(KEY, NC + NR, b"uvpn link v2", 64)
UP, DOWN = K[:32], K[32:]
HOLDER = bytes([0x48] * 16)
LID = bytes(range(0x30, 0x38))
SID = bytes(range(0xA0, 0xB0))
NO = bytes(range(0x40, 0x50))  # the opener's nonce in OPEN
NA = bytes(range(0x60, 0x70))  # the answerer's nonce in OPENED
KS = hkdf(KEY, NO + NA, b"uvpn session v2" + SID, 64)
O2A, A2O = KS[:32], KS[32:]


def sframe(key: bytes, counter: int, enc: bool, ftype: int, seq: int, num: int, ack: int, window: int, body: bytes) -> bytes:
    """A session frame: head (32) with the offset, session number, ack and window; body; GCM tag."""
    head = MAGIC + struct.pack(">BBHQIQI", VERSION, ftype, len(body), seq, num, ack, window)
    iv = bytes(4) + struct.pack(">Q", counter)
    if enc:
        ct, tag = aes256_gcm(key, iv, head, body)
        return head + ct + tag
    _, tag = aes256_gcm(key, iv, head + body, b"")
    return head + body + tag

# name, mk name, type, seq, reqid, body
cases = [
    ("hello", "key", 1, 0, 0, bytes([1, 0]) + NC + HOLDER),
    ("hello_router", "key", 1, 0, 0, bytes([2, 0]) + NC + bytes(16)),
    ("challenge", "key", 2, 0, 0, NR + NC),
    ("lease_named", "up", 4, 1, 7, bytes([1]) + struct.pack(">I", 0) + bytes([5]) + b"node1"),
    ("lease_anon", "up", 4, 1, 1, bytes([0]) + struct.pack(">I", 3600) + b"\x00"),
    ("reply_lease", "down", 3, 1, 7, b"\x00" + ip("100.64.0.3") + HOLDER),
    ("release", "up", 5, 2, 2, ip("100.64.0.9")),
    ("list", "up", 6, 3, 3, b""),
    ("listen", "up", 7, 4, 4, ip("100.65.0.2") + struct.pack(">HH", 8080, 45678) + LID),
    ("unlisten", "up", 8, 5, 5, ip("100.65.0.2") + struct.pack(">H", 8080) + LID),
    ("info", "up", 9, 6, 6, b""),
    ("status", "up", 10, 7, 8, b"\x00"),
    ("udpbind", "up", 11, 8, 9, ip("100.65.0.2") + struct.pack(">HH", 5353, 40001)),
    ("name_forward", "up", 12, 9, 10, bytes([0, 1, 5]) + b"node1"),
    ("name_reverse_local", "up", 12, 10, 11, bytes([1, 2]) + ip("100.65.0.7")),
    ("reply_name", "down", 3, 2, 10, b"\x00" + ip("100.65.0.7") + bytes([5]) + b"node1"),
    ("connect_tcp", "up", 13, 11, 0xFFFFFFFF, connect_body(6, 0, "100.64.0.1", 0, "100.65.0.7", 8080)),
    ("reply_connect", "down", 3, 3, 0xFFFFFFFF,
     b"\x00" + bytes([1]) + ip("127.0.0.2") + struct.pack(">HH", 7001, 40000) + bytes(8)
     + struct.pack(">Q", 1700000000123) + bytes(range(0xA0, 0xB0))),
    ("use", "up", 14, 12, 12, ip("100.64.0.1")),
    # the direct path (issue 17): CONNECT allowing it, a brokered answer, a listener that may be
    # reached directly, a fallback's CONNECT, and the report of direct connections that ended
    ("connect_direct", "up", 13, 13, 21, connect_body(6, 1, "100.64.0.1", 0, "100.64.0.9", 7100)),
    ("reply_connect_direct", "down", 3, 6, 21,
     b"\x00" + bytes([3]) + ip("198.18.1.12") + struct.pack(">HH", 41234, 40001) + LID
     + struct.pack(">Q", 1700000000789) + bytes(range(0xC0, 0xD0))),
    ("listen_direct", "up", 7, 14, 22, ip("100.64.0.9") + struct.pack(">HH", 7100, 41234) + LID + bytes([1])),
    ("connect_direct_failed", "up", 13, 15, 23, connect_body(6, 2, "100.64.0.1", 0, "100.64.0.9", 7100)),
    ("paths", "up", 15, 16, 24, struct.pack(">IQQ", 3, 123456789, 9876543210)),
    ("udpbind_direct", "up", 11, 17, 25, ip("100.64.0.9") + struct.pack(">HH", 7400, 40002) + bytes([1])),
    ("connect_udp_direct", "up", 13, 18, 26, connect_body(17, 1, "100.64.0.1", 40003, "100.64.0.9", 7400)),
    ("reply_refused", "down", 3, 4, 13, b"\x01"),
    ("reply_eperm", "down", 3, 5, 12, b"\x0a"),
    ("ping", "up", 16, 2, 14, b""),
    # router links (the opener is the client side of the link: it sends "up")
    ("mux", "up", 28, 1, 0, bytes([0]) + ip("100.64.0.0") + bytes([16])),
    ("open", "up", 20, 2, 1, SID + NO + connect_body(6, 0, "100.64.0.1", 40001, "100.65.0.7", 22) + bytes([0])
     + struct.pack(">I", 4 << 20)),
    ("opened", "down", 21, 1, 1, bytes([0]) + NA + bytes([0]) + struct.pack(">I", 4 << 20)),
    ("opened_refused", "down", 21, 2, 3, bytes([1]) + bytes(16) + bytes([0]) + struct.pack(">I", 0)),
    ("resume", "up", 26, 3, 4, SID + struct.pack(">Q", 123456789012) + NO + struct.pack(">I", 1 << 20)),
    ("resumed", "down", 27, 3, 4, bytes([0]) + struct.pack(">Q", 987654321) + NA + bytes([1]) + struct.pack(">I", 1 << 20)),
    ("resumed_ended", "down", 27, 4, 5, bytes([0]) + struct.pack(">Q", 4097) + NA + bytes([2]) + struct.pack(">I", 0)),
    ("ping_link", "up", 16, 4, 0, struct.pack(">Q", 7)),
    ("pong_link", "down", 17, 5, 0, struct.pack(">Q", 7)),
]
keys = {"key": KEY, "up": UP, "down": DOWN}

print("# UVPN wire test vectors (version 2): generated by scripts/gen_wire_vectors.py; do not edit.")
print("# key <hex>; hkdf ikm salt info len okm; link nc nr up down;")
print("# frame name mk(key|up|down) type seq reqid body_hex(- if empty) frame_hex;")
print("# ticket name kind src:port dst:port lid bound issued ticket_id ticket_hex;")
print("# dgram name src_ip:port dst_ip:port payload_hex(- if empty) datagram_hex;")
print("# gcm key iv aad pt ct tag (AES-256-GCM); session nonce_open nonce_answer sid opener_to_answerer answerer_to_opener;")
print("# sframe name key(o2a|a2o) counter enc type seq num ack window body_hex(- if empty) frame_hex")
print("key", KEY.hex())
# RFC 5869 test case 1, then the link derivation.
rfc_ikm, rfc_salt, rfc_info = bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA))
print("hkdf", rfc_ikm.hex(), rfc_salt.hex(), rfc_info.hex(), 42, hkdf(rfc_ikm, rfc_salt, rfc_info, 42).hex())
print("hkdf", KEY.hex(), (NC + NR).hex(), b"uvpn link v2".hex(), 64, K.hex())
print("link", NC.hex(), NR.hex(), UP.hex(), DOWN.hex())
for name, mk, ftype, seq, reqid, body in cases:
    print("frame", name, mk, ftype, seq, reqid, body.hex() or "-", frame(keys[mk], ftype, seq, reqid, body).hex())
tickets = [
    ("ticket_data", 1, "100.64.0.1", 40000, "100.65.0.7", 8080, bytes(8), 51234, 1700000000123, bytes(range(0xA0, 0xB0))),
    ("ticket_relayed", 2, "100.64.0.1", 40000, "100.65.0.7", 8080, LID, 40999, 1700000000456, bytes([0x77] * 16)),
    ("ticket_direct", 3, "100.64.0.1", 40001, "100.64.0.9", 7100, LID, 51000, 1700000000789, bytes(range(0xC0, 0xD0))),
]
for name, kind, src, sport, dst, dport, lid, bound, issued, tid in tickets:
    print("ticket", name, kind, f"{src}:{sport}", f"{dst}:{dport}", lid.hex(), bound, issued, tid.hex(),
          ticket(kind, src, sport, dst, dport, lid, bound, issued, tid).hex())
dgrams = [
    ("dgram_hello", "100.64.0.1", 40000, "100.65.0.7", 5353, b"hello"),
    ("dgram_empty", "100.65.0.7", 5353, "100.64.0.1", 40000, b""),
    ("dgram_bytes", "100.64.0.200", 65535, "100.65.255.1", 1, bytes(range(256))),
]
for name, src, sport, dst, dport, payload in dgrams:
    print("dgram", name, f"{src}:{sport}", f"{dst}:{dport}", payload.hex() or "-",
          dgram(src, sport, dst, dport, payload).hex())
# AES-256-GCM: the specification's test case 16 (key, IV, AAD and plaintext from its appendix),
# and longer inputs that cross the fast paths' 8- and 16-block loops.
GCM_CASES = [
    (bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
     bytes.fromhex("cafebabefacedbaddecaf888"), bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
     bytes.fromhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")),
    (bytes(range(32)), bytes(range(12)), b"", b""),
    (bytes(range(1, 33)), bytes(range(2, 14)), bytes(range(40)), bytes((i * 7) & 0xFF for i in range(300))),
    (bytes(range(3, 35)), bytes(range(4, 16)), bytes(range(17)), bytes((i * 13) & 0xFF for i in range(1000))),
]
for key, iv, aad, pt in GCM_CASES:
    ct, tag = aes256_gcm(key, iv, aad, pt)
    print("gcm", key.hex(), iv.hex(), aad.hex() or "-", pt.hex() or "-", ct.hex() or "-", tag.hex())
print("session", NO.hex(), NA.hex(), SID.hex(), O2A.hex(), A2O.hex())
skeys = {"o2a": O2A, "a2o": A2O}
# name, key, counter, enc, type, seq, num, ack, window, body
SFRAMES = [
    ("data", "o2a", 0, False, 22, 0, 1, 0, 4 << 20, b"hello, world"),
    ("data_enc", "o2a", 1, True, 22, 12, 1, 0, 4 << 20, b"and more bytes"),
    ("data_long", "a2o", 2, False, 22, 1 << 33, 7, 26, 1 << 20, bytes((i * 31) & 0xFF for i in range(2000))),
    ("data_long_enc", "a2o", 3, True, 22, 4096, 7, 26, 1 << 20, bytes((i * 17) & 0xFF for i in range(4100))),
    ("ack", "a2o", 0, False, 23, 0, 1, 26, (4 << 20) + 26, b""),
    ("fin", "o2a", 5, False, 24, 4096, 1, 0, 4 << 20, b""),
    ("rst", "o2a", 6, True, 25, 100, 2, 5, 0, bytes([1])),
    ("close", "a2o", 9, False, 29, 4097, 1, 4097, 0, b""),
]
for name, k, counter, enc, ftype, seq, num, ack, window, body in SFRAMES:
    print("sframe", name, k, counter, int(enc), ftype, seq, num, ack, window, body.hex() or "-",
          sframe(skeys[k], counter, enc, ftype, seq, num, ack, window, body).hex())
