/* test_wire.c: checks the C frame codec against tests/vectors/wire.txt (argv[1]): byte-exact
 * encoding, decoding, MAC rejection of a flipped byte, and rejection of truncated, wrong-magic
 * and oversized heads, HKDF and the link keys, tickets, datagrams. Also a few local checks (CONNECT body and
 * answer, status map, key parse, the seen-set of ticket ids). */
#include "common/wire.h"
#include "common/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include "tests/vectors.h"

static int passed, failed;

static void check(int ok, const char *name, const char *what)
{
    if (ok) passed++; else failed++;
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, what);
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

/* A "frame NAME MK TYPE SEQ REQID BODY FRAME" line: encode equals, decode verifies, tampering
 * and truncation fail. mk is the key the frame is MACed with; auth: decoded as authenticated. */
static void vector(const uint8_t mk[32], int auth, const char *name, int type, unsigned long long seq,
                   unsigned long reqid, const char *body_hex, const char *frame_hex)
{
    static uint8_t body[UVPN_MAX_BODY], want[UVPN_MAX_BODY + 64], got[UVPN_MAX_BODY + 64];
    long bl = strcmp(body_hex, "-") == 0 ? 0 : unhex(body_hex, body, sizeof body);
    long fl = unhex(frame_hex, want, sizeof want);
    if (bl < 0 || fl < 0) {
        check(0, name, "vector line parses");
        return;
    }
    long n = uvpn_encode(got, sizeof got, mk, type, seq, (uint32_t)reqid, body, (size_t)bl);
    check(n == fl && memcmp(got, want, (size_t)fl) == 0, name, "encode equals frame_hex");

    uvpn_head h;
    const uint8_t *b = NULL;
    int r = uvpn_decode_frame(mk, want, (size_t)fl, auth, &h, &b);
    check(r == UVPN_OK && h.type == type && h.len == bl && h.seq == seq && h.reqid == reqid &&
              (bl == 0 || memcmp(b, body, (size_t)bl) == 0),
          name, "decode fields");

    /* Flip one byte in each region: head (seq), body (if any), mac. */
    const long flips[3] = {10, bl > 0 ? 32 : -1, fl - 1};
    for (int k = 0; k < 3; k++) {
        long i = flips[k];
        if (i < 0) continue;
        static uint8_t cp[UVPN_MAX_BODY + 64];
        memcpy(cp, want, (size_t)fl);
        cp[i] ^= 0x01;
        r = uvpn_decode_frame(mk, cp, (size_t)fl, auth, &h, NULL);
        char what[64];
        snprintf(what, sizeof what, "flipped byte %ld rejected (MAC)", i);
        check(r == UVPN_E_MAC, name, what);
    }
    uint8_t wrongkey[32];
    memcpy(wrongkey, mk, 32);
    wrongkey[0] ^= 0x80;
    check(uvpn_decode_frame(wrongkey, want, (size_t)fl, auth, &h, NULL) == UVPN_E_MAC, name,
          "wrong key rejected");
    check(uvpn_decode_head(want, 31, auth, &h) == UVPN_E_SHORT, name, "truncated head rejected");
    check(uvpn_decode_frame(mk, want, (size_t)fl - 1, auth, &h, NULL) == UVPN_E_SHORT, name,
          "truncated frame rejected");
    static uint8_t cp[UVPN_MAX_BODY + 64];
    memcpy(cp, want, (size_t)fl);
    cp[0] = 'X';
    check(uvpn_decode_head(cp, (size_t)fl, auth, &h) == UVPN_E_MAGIC, name, "wrong magic rejected");
    memcpy(cp, want, (size_t)fl);
    cp[4] = 1;
    check(uvpn_decode_head(cp, (size_t)fl, auth, &h) == UVPN_E_VERSION, name, "version 1 rejected");
    memcpy(cp, want, (size_t)fl);
    cp[31] = 1;
    check(uvpn_decode_head(cp, (size_t)fl, auth, &h) == UVPN_E_RESERVED, name, "reserved byte rejected");
    memcpy(cp, want, (size_t)fl);
    cp[5] = 0;
    check(uvpn_decode_head(cp, (size_t)fl, auth, &h) == UVPN_E_TYPE, name, "unknown type rejected");
    memcpy(cp, want, (size_t)fl);
    if (auth) {
        cp[6] = type == UVPN_T_REPLY ? 0xff : 0x04;
        cp[7] = type == UVPN_T_REPLY ? 0xff : 0x01; /* L = 1025 > 1024 for requests */
        check(uvpn_decode_head(cp, (size_t)fl, auth, &h) == (type == UVPN_T_REPLY ? UVPN_OK : UVPN_E_LENGTH),
              name, "length limit after authentication");
    } else {
        cp[6] = 0;
        cp[7] = 65; /* before authentication: at most 64 */
        check(uvpn_decode_head(cp, (size_t)fl, auth, &h) == UVPN_E_LENGTH, name,
              "pre-authentication length limit");
    }
}

/* "ticket NAME KIND SRC DST LID BOUND ISSUED TID TICKET": pack equals, unpack, tampering fails. */
static int parse_ep(const char *s, uint32_t *ip, uint16_t *port);
static void ticket_vector(const uint8_t key[32], const char *line)
{
    char name[64], src[32], dst[32], lid[32], tid[64], want_hex[2 * UVPN_TICKET_LEN + 8];
    unsigned kind, bound;
    unsigned long long issued;
    uvpn_ticket t, got;
    uint8_t want[UVPN_TICKET_LEN], out[UVPN_TICKET_LEN];
    if (sscanf(line, "ticket %63s %u %31s %31s %31s %u %llu %63s %183s", name, &kind, src, dst, lid,
               &bound, &issued, tid, want_hex) != 9 ||
        parse_ep(src, &t.src_ip, &t.src_port) || parse_ep(dst, &t.dst_ip, &t.dst_port) ||
        unhex(lid, t.lid, 8) != 8 || unhex(tid, t.tid, 16) != 16 ||
        unhex(want_hex, want, sizeof want) != UVPN_TICKET_LEN) {
        check(0, "ticket", "unparsable line");
        return;
    }
    t.kind = (uint8_t)kind;
    t.bound_port = (uint16_t)bound;
    t.issued = issued;
    uvpn_ticket_pack(key, &t, out);
    check(memcmp(out, want, UVPN_TICKET_LEN) == 0, name, "pack equals ticket_hex");
    check(uvpn_ticket_unpack(key, want, UVPN_TICKET_LEN, &got) == 0 && got.kind == t.kind &&
              got.src_ip == t.src_ip && got.src_port == t.src_port && got.dst_ip == t.dst_ip &&
              got.dst_port == t.dst_port && memcmp(got.lid, t.lid, 8) == 0 &&
              got.bound_port == t.bound_port && got.issued == t.issued && memcmp(got.tid, t.tid, 16) == 0,
          name, "unpack fields");
    int rejected = 1;
    for (int i = 0; i < UVPN_TICKET_LEN; i++) {
        want[i] ^= 0x04;
        rejected &= uvpn_ticket_unpack(key, want, UVPN_TICKET_LEN, &got) != 0;
        want[i] ^= 0x04;
    }
    check(rejected, name, "every flipped byte rejected");
    check(uvpn_ticket_unpack(key, want, UVPN_TICKET_LEN - 1, &got) == UVPN_E_SHORT, name, "short ticket rejected");
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
    uvpn_connect c = {6, 0, 0x64400001, 0, 0x64410007, 8080}, d;
    uint8_t b[16], want[16];
    uvpn_connect_pack(&c, b);
    unhex("0600644000010000644100071f90", want, 16);
    check(memcmp(b, want, 14) == 0, "connect_body", "pack matches vector body");
    check(uvpn_connect_unpack(b, 14, &d) == 0 && d.proto == 6 && d.src_port == 0 &&
              d.src_ip == 0x64400001 && d.dst_ip == 0x64410007 && d.dst_port == 8080,
          "connect_body", "unpack round trip");
    check(uvpn_connect_unpack(b, 13, &d) == UVPN_E_BODY, "connect_body", "short body rejected");
    uint8_t ad[41];
    uvpn_answer a;
    unhex("017f0000021b599c4000000000000000000000018bcfe5687ba0a1a2a3a4a5a6a7a8a9aaabacadaeaf", ad, 41);
    check(uvpn_answer_unpack(ad, 41, &a) == 0 && a.kind == 1 && a.real_ip == 0x7f000002 &&
              a.real_port == 7001 && a.src_port == 40000 && a.issued == 1700000000123ULL && a.tid[0] == 0xa0,
          "connect_answer", "unpack matches the reply_connect vector");
    check(uvpn_answer_unpack(ad, 40, &a) == UVPN_E_BODY, "connect_answer", "short answer rejected");

    /* the direct path: a PATHS body as in the "paths" vector, and its limits */
    uvpn_paths p = {3, 123456789ULL, 9876543210ULL}, q;
    uint8_t pb[UVPN_PATHS_LEN], pw[UVPN_PATHS_LEN];
    uvpn_paths_pack(&p, pb);
    unhex("0000000300000000075bcd15000000024cb016ea", pw, UVPN_PATHS_LEN);
    check(memcmp(pb, pw, UVPN_PATHS_LEN) == 0, "paths_body", "pack matches the paths vector body");
    check(uvpn_paths_unpack(pb, UVPN_PATHS_LEN, &q) == 0 && q.conns == 3 && q.sent == p.sent && q.received == p.received,
          "paths_body", "unpack round trip");
    check(uvpn_paths_unpack(pb, UVPN_PATHS_LEN - 1, &q) == UVPN_E_BODY, "paths_body", "short body rejected");
    pb[4] = 0x00, pb[5] = 0x20; /* 2^53 */
    memset(pb + 6, 0, 6);
    check(uvpn_paths_unpack(pb, UVPN_PATHS_LEN, &q) == UVPN_E_BODY, "paths_body", "a count of 2^53 rejected");

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

    static const int errs[] = {0, ECONNREFUSED, ENETUNREACH, ETIMEDOUT, EHOSTUNREACH, EACCES,
                               EADDRINUSE, EINVAL, EADDRNOTAVAIL, ENOENT, EPERM, EBUSY};
    int ok = 1;
    for (int s = 0; s < 12; s++)
        ok &= uvpn_status_to_errno(s) == errs[s] && uvpn_errno_to_status(errs[s]) == s;
    check(ok && uvpn_status_to_errno(200) == EPROTO, "status", "status <-> errno table");

    uint8_t k[32];
    const char *txt = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \n";
    check(uvpn_key_parse(txt, strlen(txt), k) == 0 && memcmp(k, key, 32) == 0, "key",
          "64 hex + trailing white space");
    check(uvpn_key_parse(txt, 63, k) != 0, "key", "short key rejected");
    const char *bad = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fx";
    check(uvpn_key_parse(bad, strlen(bad), k) != 0, "key", "trailing garbage rejected");

    static uvpn_seen seen = UVPN_SEEN_INIT;
    uint8_t t1[16] = {1}, t2[16] = {2}, tn[16];
    uint64_t now = 1700000000000ULL;
    check(uvpn_seen_check(&seen, t1, now, now) == 0, "seen", "fresh ticket accepted");
    check(uvpn_seen_check(&seen, t1, now, now + 1000) == UVPN_R_REPLAY, "seen", "reused ticket rejected");
    check(uvpn_seen_check(&seen, t2, now - 301000, now) == UVPN_R_TIME, "seen", "old issue time rejected");
    check(uvpn_seen_check(&seen, t2, now + 301000, now) == UVPN_R_TIME, "seen", "future issue time rejected");
    /* Far more tickets than the set keeps: none refused, and the low-water mark rises past the first. */
    int all = 1;
    for (uint32_t i = 0; i < 3 * UVPN_SEEN_KEEP; i++) {
        memset(tn, 0, sizeof tn);
        tn[0] = 0xee;
        tn[4] = (uint8_t)(i >> 24), tn[5] = (uint8_t)(i >> 16), tn[6] = (uint8_t)(i >> 8), tn[7] = (uint8_t)i;
        tn[8] = (uint8_t)(i * 2654435761u >> 24);
        all &= uvpn_seen_check(&seen, tn, now + 1 + i / 100, now + 1 + i / 100) == 0;
    }
    check(all, "seen", "196,608 fresh tickets in a row all accepted (no cap)");
    check(uvpn_seen_check(&seen, t2, now, now + 2000) == UVPN_R_OLD, "seen",
          "a ticket issued before the low-water mark is refused");
    check(uvpn_seen_check(&seen, t1, now + 1, now + 2000) == UVPN_R_OLD, "seen",
          "a forgotten ticket still cannot come back");
}

int main(int argc, char **argv)
{
    FILE *f = open_vectors(argc, argv);
    if (!f) return 2;
    sha_selftest();
    static char line[2 * (UVPN_MAX_BODY + 64) * 2 + 512];
    uint8_t key[32];
    int have_key = 0, vectors = 0;
    uint8_t up[32], down[32];
    int have_link = 0;
    while (fgets(line, sizeof line, f)) {
        static char name[64], mk[16], body[2 * UVPN_MAX_BODY + 8], frame[2 * (UVPN_MAX_BODY + 64) + 8];
        char a[160], b[160], c[160], d[160];
        int type, n;
        unsigned long long seq;
        unsigned long reqid;
        if (line[0] == '#' || line[0] == '\n') continue;
        /* The routers' session frames and AES-GCM: checked by test_router. */
        if (strncmp(line, "gcm ", 4) == 0 || strncmp(line, "session ", 8) == 0 || strncmp(line, "sframe ", 7) == 0) continue;
        if (sscanf(line, "key %64s", frame) == 1) {
            have_key = unhex(frame, key, 32) == 32;
            check(have_key, "key", "vector key line");
            continue;
        }
        if (have_key && strncmp(line, "dgram ", 6) == 0) {
            dgram_vector(key, line);
            continue;
        }
        if (have_key && strncmp(line, "ticket ", 7) == 0) {
            ticket_vector(key, line);
            continue;
        }
        if (sscanf(line, "hkdf %159s %159s %159s %d %159s", a, b, c, &n, d) == 5) {
            uint8_t ikm[80], salt[80], info[80], okm[80], want[80];
            long il = unhex(a, ikm, sizeof ikm), sl = unhex(b, salt, sizeof salt), fl = unhex(c, info, sizeof info);
            long wl = unhex(d, want, sizeof want);
            int ok = il >= 0 && sl >= 0 && fl >= 0 && wl == n && n <= 80;
            if (ok) uvpn_hkdf(ikm, (size_t)il, salt, (size_t)sl, info, (size_t)fl, okm, (size_t)n);
            check(ok && memcmp(okm, want, (size_t)n) == 0, "hkdf", "okm equals the vector (RFC 5869 case 1, link)");
            continue;
        }
        if (have_key && sscanf(line, "link %159s %159s %159s %159s", a, b, c, d) == 4) {
            uint8_t nc[16], nr[16], u[32], w[32];
            have_link = unhex(a, nc, 16) == 16 && unhex(b, nr, 16) == 16 && unhex(c, up, 32) == 32 &&
                        unhex(d, down, 32) == 32;
            if (have_link) uvpn_link_keys(key, nc, nr, u, w);
            check(have_link && memcmp(u, up, 32) == 0 && memcmp(w, down, 32) == 0, "link", "direction keys");
            continue;
        }
        if (!have_key || !have_link ||
            sscanf(line, "frame %63s %15s %d %llu %lu %2055s %2183s", name, mk, &type, &seq, &reqid, body, frame) != 7) {
            check(0, "vectors", "unparsable line");
            continue;
        }
        int pre = strcmp(mk, "key") == 0;
        vector(pre ? key : strcmp(mk, "up") == 0 ? up : down, !pre, name, type, seq, reqid, body, frame);
        vectors++;
    }
    fclose(f);
    check(vectors > 0, "vectors", "file has vectors");
    if (have_key) local_checks(key);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
