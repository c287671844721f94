/* test_wire.c: checks the C frame codec against tests/vectors/wire.txt (argv[1]): byte-exact
 * encoding, decoding, MAC rejection of a flipped byte, and rejection of truncated, wrong-magic
 * and oversized heads. Also a few local checks (CONNECT body, status map, key parse, replay). */
#include "common/wire.h"
#include "common/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

static int passed, failed;

static void check(int ok, const char *name, const char *what)
{
    if (ok) passed++; else failed++;
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, what);
}

/* Parses hex into out; returns byte count or -1. */
static long unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return (long)(n / 2);
}

static void sha_selftest(void)
{
    /* FIPS 180-4 example "abc" and RFC 4231 HMAC test case 2. */
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                    0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                    0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t d[32], want[32];
    sha256("abc", 3, d);
    check(memcmp(d, abc, 32) == 0, "sha256", "FIPS 180-4 'abc'");
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want, 32);
    hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
    check(memcmp(d, want, 32) == 0, "hmac_sha256", "RFC 4231 case 2");
    /* Long input crossing many blocks: one-shot vs. chunked updates must agree. */
    uint8_t big[1000], d2[32];
    for (int i = 0; i < 1000; i++) big[i] = (uint8_t)i;
    sha256(big, sizeof big, d);
    sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; i < 1000; i += 7) sha256_update(&c, big + i, i + 7 > 1000 ? 1000 - i : 7);
    sha256_final(&c, d2);
    check(memcmp(d, d2, 32) == 0, "sha256", "chunked == one-shot");
}

static void vector(const uint8_t key[32], const char *name, int type, const char *nonce_hex,
                   unsigned long long t, const char *body_hex, const char *frame_hex)
{
    uint8_t nonce[16], body[UVPN_MAX_BODY], want[UVPN_MAX_BODY + 64], got[UVPN_MAX_BODY + 64];
    long bl = strcmp(body_hex, "-") == 0 ? 0 : unhex(body_hex, body, sizeof body);
    long fl = unhex(frame_hex, want, sizeof want);
    if (unhex(nonce_hex, nonce, 16) != 16 || bl < 0 || fl < 0) {
        check(0, name, "vector line parses");
        return;
    }
    long n = uvpn_encode(got, sizeof got, key, type, nonce, t, body, (size_t)bl);
    check(n == fl && memcmp(got, want, (size_t)fl) == 0, name, "encode equals frame_hex");

    uvpn_head h;
    const uint8_t *b = NULL;
    int r = uvpn_decode_frame(key, want, (size_t)fl, &h, &b);
    check(r == UVPN_OK && h.type == type && h.len == bl && memcmp(h.nonce, nonce, 16) == 0 &&
              h.time_ms == t && (bl == 0 || memcmp(b, body, (size_t)bl) == 0),
          name, "decode fields");

    /* Flip one byte in each region: head (nonce), body (if any), mac. */
    const long flips[3] = {10, bl > 0 ? 32 : -1, fl - 1};
    for (int k = 0; k < 3; k++) {
        long i = flips[k];
        if (i < 0) continue;
        uint8_t cp[UVPN_MAX_BODY + 64];
        memcpy(cp, want, (size_t)fl);
        cp[i] ^= 0x01;
        r = uvpn_decode_frame(key, cp, (size_t)fl, &h, NULL);
        char what[64];
        snprintf(what, sizeof what, "flipped byte %ld rejected (MAC)", i);
        check(r == UVPN_E_MAC, name, what);
    }
    uint8_t wrongkey[32];
    memcpy(wrongkey, key, 32);
    wrongkey[0] ^= 0x80;
    check(uvpn_decode_frame(wrongkey, want, (size_t)fl, &h, NULL) == UVPN_E_MAC, name,
          "wrong key rejected");

    check(uvpn_decode_head(want, 31, &h) == UVPN_E_SHORT, name, "truncated head rejected");
    check(uvpn_decode_frame(key, want, (size_t)fl - 1, &h, NULL) == UVPN_E_SHORT, name,
          "truncated frame rejected");
    uint8_t cp[UVPN_MAX_BODY + 64];
    memcpy(cp, want, (size_t)fl);
    cp[0] = 'X';
    check(uvpn_decode_head(cp, (size_t)fl, &h) == UVPN_E_MAGIC, name, "wrong magic rejected");
    memcpy(cp, want, (size_t)fl);
    cp[4] = 2;
    check(uvpn_decode_head(cp, (size_t)fl, &h) == UVPN_E_VERSION, name, "wrong version rejected");
    memcpy(cp, want, (size_t)fl);
    if (type == UVPN_T_REPLY) { /* replies may be up to 65535: test an unknown type instead */
        cp[5] = 0;
        check(uvpn_decode_head(cp, (size_t)fl, &h) == UVPN_E_TYPE, name, "unknown type rejected");
    } else {
        cp[6] = 0x04; cp[7] = 0x01; /* L = 1025 > 1024 */
        check(uvpn_decode_head(cp, (size_t)fl, &h) == UVPN_E_LENGTH, name,
              "oversized length rejected");
    }
}

static int parse_ep(const char *s, uint32_t *ip, uint16_t *port)
{
    unsigned a, b, c, d, p;
    if (sscanf(s, "%u.%u.%u.%u:%u", &a, &b, &c, &d, &p) != 5) return -1;
    *ip = a << 24 | b << 16 | c << 8 | d;
    *port = (uint16_t)p;
    return 0;
}

/* A "dgram NAME SRC DST PAYLOAD DATAGRAM" line: seal equals, open verifies, tampering fails. */
static void dgram_vector(const uint8_t key[32], const char *line)
{
    char name[64], src[32], dst[32], pay[2 * 1024 + 8], want_hex[2 * 1100 + 8];
    uvpn_dgram d, got;
    uint8_t payload[1024], want[1100], head[UVPN_DGRAM_HEAD_LEN];
    if (sscanf(line, "dgram %63s %31s %31s %2055s %2207s", name, src, dst, pay, want_hex) != 5 ||
        parse_ep(src, &d.src_ip, &d.src_port) || parse_ep(dst, &d.dst_ip, &d.dst_port)) {
        check(0, "dgram", "unparsable line");
        return;
    }
    long pl = strcmp(pay, "-") == 0 ? 0 : unhex(pay, payload, sizeof payload);
    long wl = unhex(want_hex, want, sizeof want);
    struct iovec iov[2] = {{payload, (size_t)(pl / 2)}, {payload + pl / 2, (size_t)(pl - pl / 2)}};
    uvpn_dgram_seal(key, &d, iov, 2, head);
    check(pl >= 0 && wl == UVPN_DGRAM_HEAD_LEN + pl && memcmp(head, want, sizeof head) == 0 &&
              memcmp(want + UVPN_DGRAM_HEAD_LEN, payload, (size_t)pl) == 0,
          name, "seal equals datagram_hex");
    check(uvpn_dgram_open(key, want, (size_t)wl, &got) == UVPN_OK && got.src_ip == d.src_ip &&
              got.src_port == d.src_port && got.dst_ip == d.dst_ip && got.dst_port == d.dst_port,
          name, "open verifies and decodes");
    for (long i = 0; i < wl; i += 5) {
        want[i] ^= 0x20;
        int r = uvpn_dgram_open(key, want, (size_t)wl, &got);
        want[i] ^= 0x20;
        if (r == UVPN_OK) {
            check(0, name, "tampered byte accepted");
            return;
        }
    }
    check(uvpn_dgram_open(key, want, UVPN_DGRAM_HEAD_LEN - 1, &got) == UVPN_E_SHORT, name,
          "short datagram rejected");
}

static void local_checks(const uint8_t key[32])
{
    uvpn_connect c = {6, 0, 40000, 0x64400001, 0x64410007, 8080}, d;
    uint8_t b[16], want[16];
    uvpn_connect_pack(&c, b);
    unhex("06009c4064400001644100071f900000", want, 16);
    check(memcmp(b, want, 16) == 0, "connect_body", "pack matches vector body");
    check(uvpn_connect_unpack(b, 16, &d) == 0 && d.proto == 6 && d.src_port == 40000 &&
              d.src_ip == 0x64400001 && d.dst_ip == 0x64410007 && d.dst_port == 8080,
          "connect_body", "unpack round trip");
    check(uvpn_connect_unpack(b, 15, &d) == UVPN_E_BODY, "connect_body", "short body rejected");

    uint8_t nb[3 + UVPN_NAME_MAX], nw[16];
    long nl = uvpn_name_pack(nb, 0, "node1", 5, 0);
    unhex("0001056e6f646531", nw, 16);
    check(nl == 8 && memcmp(nb, nw, 8) == 0, "name_body", "forward query matches vector body");
    nl = uvpn_name_pack(nb, UVPN_NAME_F_LOCAL, NULL, 0, 0x64410007);
    unhex("010264410007", nw, 16);
    check(nl == 6 && memcmp(nb, nw, 6) == 0, "name_body", "reverse query matches vector body");
    check(uvpn_name_pack(nb, 0, "a.b", 3, 0) == UVPN_E_BODY && uvpn_name_pack(nb, 0, "", 0, 0) ==
              UVPN_E_BODY, "name_body", "invalid names rejected");
    uint32_t nip = 0;
    char nm[UVPN_NAME_MAX + 1];
    unhex("64410007056e6f646531", nw, 16);
    check(uvpn_name_answer(nw, 10, &nip, nm) == 0 && nip == 0x64410007 && strcmp(nm, "node1") == 0,
          "name_body", "answer parses");
    check(uvpn_name_answer(nw, 9, &nip, nm) == UVPN_E_BODY, "name_body", "short answer rejected");

    static const int errs[] = {0, ECONNREFUSED, ENETUNREACH, ETIMEDOUT, EHOSTUNREACH,
                               EACCES, EADDRINUSE, EINVAL, EADDRNOTAVAIL, ENOENT};
    int ok = 1;
    for (int s = 0; s < 10; s++)
        ok &= uvpn_status_to_errno(s) == errs[s] && uvpn_errno_to_status(errs[s]) == s;
    check(ok && uvpn_status_to_errno(200) == EPROTO, "status", "status <-> errno table");

    uint8_t k[32];
    const char *txt = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \n";
    check(uvpn_key_parse(txt, strlen(txt), k) == 0 && memcmp(k, key, 32) == 0, "key",
          "64 hex + trailing white space");
    check(uvpn_key_parse(txt, 63, k) != 0, "key", "short key rejected");
    const char *bad = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fx";
    check(uvpn_key_parse(bad, strlen(bad), k) != 0, "key", "trailing garbage rejected");

    static uvpn_replay rc = UVPN_REPLAY_INIT;
    uint8_t n1[16] = {1}, n2[16] = {2};
    uint64_t now = 1700000000000ULL;
    check(uvpn_replay_check(&rc, n1, now, now) == 0, "replay", "fresh nonce accepted");
    check(uvpn_replay_check(&rc, n1, now, now + 1000) == UVPN_R_REPLAY, "replay", "replay rejected");
    check(uvpn_replay_check(&rc, n2, now - 301000, now) == UVPN_R_TIME, "replay", "old time rejected");
    check(uvpn_replay_check(&rc, n2, now + 301000, now) == UVPN_R_TIME, "replay", "future time rejected");
    check(uvpn_replay_check(&rc, n1, now + 601000, now + 601000) == 0, "replay",
          "nonce forgotten after 600 s");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/vectors/wire.txt\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    sha_selftest();
    static char line[2 * (UVPN_MAX_BODY + 64) * 2 + 512];
    uint8_t key[32];
    int have_key = 0, vectors = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64], nonce[64], t[32], body[2 * UVPN_MAX_BODY + 8], frame[2 * (UVPN_MAX_BODY + 64) + 8];
        int type;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "key %64s", frame) == 1) {
            have_key = unhex(frame, key, 32) == 32;
            check(have_key, "key", "vector key line");
            continue;
        }
        if (have_key && strncmp(line, "dgram ", 6) == 0) {
            dgram_vector(key, line);
            continue;
        }
        if (!have_key ||
            sscanf(line, "%63s %d %63s %31s %2055s %2183s", name, &type, nonce, t, body, frame) != 6) {
            check(0, "vectors", "unparsable line");
            continue;
        }
        vector(key, name, type, nonce, strtoull(t, NULL, 10), body, frame);
        vectors++;
    }
    fclose(f);
    check(vectors > 0, "vectors", "file has vectors");
    if (have_key) local_checks(key);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
