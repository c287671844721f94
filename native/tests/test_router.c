/* test_router.c: the routers' data-plane codecs against tests/vectors/wire.txt (argv[1]), made
 * independently by scripts/gen_wire_vectors.py: AES-256-GCM (every implementation this CPU has,
 * and the portable one), the session keys, session frames (seal equals, open verifies and
 * decrypts, every flipped byte and a wrong counter refused), and how sf_next cuts and classifies
 * each frame of a router link; and local checks of the bodies' pack/unpack, the byte queue, the
 * hash map and the spool. */
#include "router/core/bufq.h"
#include "router/core/frame.h"
#include "router/core/gcm.h"
#include "router/core/map.h"
#include "router/core/spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/vectors.h"

static int passed, failed;

static void check(int ok, const char *name, const char *what)
{
    if (ok) passed++;
    else failed++;
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, what);
}

static uint8_t netkey[32], o2a[32], a2o[32];

static void gcm_vector(char *line)
{
    static char k[80], iv[40], aad[4096], pt[8192], ct[8192], tag[40];
    static uint8_t K[32], IV[12], A[2048], P[4096], C[4096], T[16], out[4096], t2[16];
    if (sscanf(line, "gcm %79s %39s %4095s %8191s %8191s %39s", k, iv, aad, pt, ct, tag) != 6) {
        check(0, "gcm", "unparsable line");
        return;
    }
    long kl = unhex(k, K, 32), il = unhex(iv, IV, 12), al = unhex(aad, A, sizeof A), pl = unhex(pt, P, sizeof P);
    long cl = unhex(ct, C, sizeof C), tl = unhex(tag, T, 16);
    if (kl != 32 || il != 12 || al < 0 || pl < 0 || cl != pl || tl != 16) {
        check(0, "gcm", "bad fields");
        return;
    }
    for (int cap = UVPN_GCM_TOP; cap >= 0; cap--) {
        uvpn_gcm_cap(cap);
        char name[64];
        snprintf(name, sizeof name, "gcm %s %ld bytes", uvpn_gcm_impl(), pl);
        uvpn_gcm g;
        uvpn_gcm_init(&g, K);
        uvpn_gcm_seal(&g, IV, A, (size_t)al, P, out, (size_t)pl, t2);
        check(memcmp(out, C, (size_t)pl) == 0 && memcmp(t2, T, 16) == 0, name, "seal equals ciphertext and tag");
        check(uvpn_gcm_open(&g, IV, A, (size_t)al, C, out, (size_t)pl, T) == 0 && memcmp(out, P, (size_t)pl) == 0, name,
              "open verifies and decrypts");
        T[pl % 16] ^= 1;
        check(uvpn_gcm_open(&g, IV, A, (size_t)al, C, out, (size_t)pl, T) == -1, name, "a flipped tag bit is refused");
        T[pl % 16] ^= 1;
    }
    uvpn_gcm_cap(UVPN_GCM_TOP);
}

static void session_vector(char *line)
{
    char a[40], b[40], c[40], d[80], e[80];
    uint8_t no[16], na[16], sid[16], x[32], y[32];
    if (sscanf(line, "session %39s %39s %39s %79s %79s", a, b, c, d, e) != 5 || unhex(a, no, 16) != 16 ||
        unhex(b, na, 16) != 16 || unhex(c, sid, 16) != 16 || unhex(d, o2a, 32) != 32 || unhex(e, a2o, 32) != 32) {
        check(0, "session", "unparsable line");
        return;
    }
    sf_session_keys(netkey, no, na, sid, x, y);
    check(memcmp(x, o2a, 32) == 0 && memcmp(y, a2o, 32) == 0, "session keys", "HKDF of both nonces and the session id");
}

static void sframe_vector(char *line)
{
    static char name[64], kn[8], body[16384], fr[16500];
    static uint8_t B[8192], F[8300], W[8300];
    unsigned counter, enc, type, num, window;
    unsigned long long seq, ack;
    if (sscanf(line, "sframe %63s %7s %u %u %u %llu %u %llu %u %16383s %16499s", name, kn, &counter, &enc, &type,
               &seq, &num, &ack, &window, body, fr) != 11) {
        check(0, "sframe", "unparsable line");
        return;
    }
    long bl = unhex(body, B, sizeof B), fl = unhex(fr, F, sizeof F);
    if (bl < 0 || fl != SF_HEAD_LEN + bl + SF_TAG_LEN) {
        check(0, name, "bad fields");
        return;
    }
    const uint8_t *key = strcmp(kn, "o2a") == 0 ? o2a : a2o;
    for (int cap = UVPN_GCM_TOP; cap >= 0; cap--) {
        uvpn_gcm_cap(cap);
        uvpn_gcm g;
        uvpn_gcm_init(&g, key);
        char label[128];
        snprintf(label, sizeof label, "sframe %s (%s)", name, uvpn_gcm_impl());
        sf_head h = {.type = (uint8_t)type, .len = (uint16_t)bl, .seq = seq, .num = num, .ack = ack, .window = window};
        sf_head_pack(W, &h);
        memcpy(W + SF_HEAD_LEN, B, (size_t)bl);
        sf_seal(&g, counter, W, (size_t)bl, (int)enc);
        check(memcmp(W, F, (size_t)fl) == 0, label, "seal equals frame_hex");
        sf_frame f;
        check(sf_next(F, (size_t)fl, &f) == UVPN_OK && f.session && f.len == (size_t)fl && f.sh.type == type &&
                  f.sh.seq == seq && f.sh.num == num && f.sh.ack == ack && f.sh.window == window && f.sh.len == bl,
              label, "sf_next cuts it and reads its head");
        check(sf_next(F, (size_t)fl - 1, &f) == UVPN_E_SHORT, label, "one byte short: read more");
        memcpy(W, F, (size_t)fl);
        check(sf_open(&g, counter, W, (size_t)bl, (int)enc) == UVPN_OK && memcmp(W + SF_HEAD_LEN, B, (size_t)bl) == 0,
              label, "open verifies (and decrypts)");
        memcpy(W, F, (size_t)fl);
        check(sf_open(&g, counter + 1, W, (size_t)bl, (int)enc) == UVPN_E_MAC, label, "the next counter is refused (no replay, no reorder)");
        int all = 1;
        for (long i = 0; i < fl; i += (fl > 200 ? 7 : 1)) {
            memcpy(W, F, (size_t)fl);
            W[i] ^= 0x10;
            all &= sf_open(&g, counter, W, (size_t)bl, (int)enc) == UVPN_E_MAC;
        }
        check(all, label, "every flipped byte refused");
    }
    uvpn_gcm_cap(UVPN_GCM_TOP);
}

/* A "frame" line (a link frame): sf_next takes it as a link frame of its length. */
static void link_frame_vector(char *line)
{
    static char name[64], mk[16], body[4096], fr[8192];
    static uint8_t F[4200];
    int type;
    unsigned long long seq;
    unsigned long reqid;
    if (sscanf(line, "frame %63s %15s %d %llu %lu %4095s %8191s", name, mk, &type, &seq, &reqid, body, fr) != 7) return;
    if (strcmp(mk, "key") == 0) return; /* HELLO, CHALLENGE: never on a router link after the handshake */
    long fl = unhex(fr, F, sizeof F);
    sf_frame f;
    char label[96];
    snprintf(label, sizeof label, "link frame %s", name);
    check(fl > 0 && sf_next(F, (size_t)fl, &f) == UVPN_OK && !f.session && f.len == (size_t)fl && f.lh.type == type,
          label, "sf_next takes it as a link frame");
}

static void bodies(void)
{
    sf_open_body o = {.flags = SF_F_ENCRYPT, .window = 12345}, o2;
    memset(o.sid, 1, 16);
    memset(o.nonce, 2, 16);
    o.c = (uvpn_connect){6, 0, 0x64400001, 4000, 0x64410007, 22};
    uint8_t b[64];
    sf_open_pack(&o, b);
    check(sf_open_unpack(b, SF_OPEN_LEN, &o2) == 0 && memcmp(&o2.sid, &o.sid, 16) == 0 && o2.window == 12345 &&
              o2.c.dst_ip == 0x64410007 && o2.flags == SF_F_ENCRYPT,
          "OPEN", "pack then unpack");
    b[46] = 0x80;
    check(sf_open_unpack(b, SF_OPEN_LEN, &o2) == UVPN_E_BODY, "OPEN", "unknown flag refused");
    check(sf_open_unpack(b, SF_OPEN_LEN - 1, &o2) == UVPN_E_BODY, "OPEN", "short body refused");
    sf_resumed_body r = {.status = 0, .recv = 99, .flags = SF_F_ENDED, .window = 7}, r2;
    sf_resumed_pack(&r, b);
    check(sf_resumed_unpack(b, SF_RESUMED_LEN, &r2) == 0 && r2.recv == 99 && r2.flags == SF_F_ENDED && r2.window == 7,
          "RESUMED", "pack then unpack");
    uint8_t junk[8] = {'U', 'V', 'P', 'X', 2, 22, 0, 0};
    sf_frame f;
    check(sf_next(junk, 3, &f) == UVPN_E_SHORT && sf_next(junk, 4, &f) == UVPN_E_MAGIC, "sf_next", "bad magic refused at once");
    uint8_t big[8] = {'U', 'V', 'P', 'N', 2, SF_T_ACK, 0, 1};
    check(sf_next(big, 8, &f) == UVPN_E_LENGTH, "sf_next", "an ACK with a body refused");
    uint8_t unknown[8] = {'U', 'V', 'P', 'N', 2, 99, 0, 0};
    check(sf_next(unknown, 8, &f) == UVPN_E_TYPE, "sf_next", "unknown type refused");
}

static void queues(void)
{
    bq_mem mem = {0};
    bufq q;
    bq_init(&q, &mem, 1000);
    uint8_t data[200000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    check(bq_append(&q, data, 10) == 0 && bq_append(&q, data + 10, sizeof data - 10) == 0 && q.end == 1000 + sizeof data,
          "bufq", "appends");
    int ok = 1;
    for (uint64_t at = q.base; at < q.end;) {
        size_t n;
        const uint8_t *p = bq_peek(&q, at, 5000, &n);
        ok &= p && n > 0 && memcmp(p, data + (at - 1000), n) == 0;
        if (!p || !n) break;
        at += n;
    }
    check(ok, "bufq", "peek reads every byte back at its offset");
    bq_trim(&q, 1000 + 70000);
    size_t n;
    const uint8_t *p = bq_peek(&q, 1000 + 70000, 10, &n);
    check(p && memcmp(p, data + 70000, n) == 0 && q.base == 71000, "bufq", "trim inside a chunk");
    bq_trim(&q, q.end);
    check(bq_size(&q) == 0 && q.held == 0 && mem.used == 0 && mem.peak > 0, "bufq", "trimmed empty: no memory held");
    size_t room;
    bq_space(&q, 100, &room);
    bq_commit(&q, 0);
    check(mem.used == 0 && q.head == NULL, "bufq", "a read that found nothing leaves no chunk");
    uint8_t *big = bq_space(&q, BUFQ_CHUNK, &room);
    bq_commit(&q, room);
    bq_trim(&q, q.end);
    check(big && room == BUFQ_CHUNK && mem.used == 0 && mem.nspare == 1, "bufq", "a freed full-size chunk is kept as a spare, not counted");
    check(bq_space(&q, BUFQ_CHUNK, &room) == big && mem.nspare == 0 && mem.used == BUFQ_CHUNK, "bufq", "the spare is reused");
    bq_commit(&q, 0);
    uint8_t *frame = bq_space(&q, 65535, &room); /* a DATA payload into a receive buffer */
    bq_commit(&q, 65535);
    bq_trim(&q, q.end);
    check(frame && room == BQ_FRAME_CHUNK && mem.used == 0 && mem.nframe_spare == 1, "bufq",
          "a freed frame-size chunk is kept as a spare, not counted");
    uint8_t *small = bq_space(&q, 40000, &room);
    check(small && small != frame && room < BQ_FRAME_CHUNK && mem.nframe_spare == 1, "bufq",
          "a smaller chunk is not taken from the frame-size spares");
    bq_commit(&q, 0);
    check(bq_space(&q, 65535, &room) == frame && mem.nframe_spare == 0, "bufq", "the frame-size spare is reused");
    bq_commit(&q, 0);
    bq_mem_free(&mem);

    u64map m;
    map_init(&m);
    int mok = 1;
    for (uint64_t i = 1; i <= 5000; i++) mok &= map_put(&m, i * 977, (void *)(uintptr_t)i) == 0;
    for (uint64_t i = 1; i <= 5000; i += 2) mok &= map_del(&m, i * 977) == (void *)(uintptr_t)i;
    for (uint64_t i = 1; i <= 5000; i++) mok &= map_get(&m, i * 977) == (i % 2 ? NULL : (void *)(uintptr_t)i);
    check(mok && m.count == 2500, "map", "put, delete every other, get");
    map_free(&m);

    spool_acct acct = {0};
    spool s;
    spool_init(&s, &acct);
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    check(spool_append(&s, dir, data, 100000) == 0 && spool_append(&s, dir, data + 100000, 50000) == 0 &&
              spool_size(&s) == 150000 && acct.used == 150000,
          "spool", "appends go to a file");
    char path[4096];
    snprintf(path, sizeof path, "%s", s.path);
    check(access(path, F_OK) == 0, "spool", "the file exists while it holds bytes");
    static uint8_t back[150000];
    long a = spool_take(&s, back, 70000), b = spool_take(&s, back + 70000, 100000);
    check(a == 70000 && b == 80000 && memcmp(back, data, 150000) == 0, "spool", "bytes come back in order");
    check(spool_size(&s) == 0 && acct.used == 0 && access(path, F_OK) != 0 && acct.total == 150000, "spool",
          "emptied: the file is gone");
}

int main(int argc, char **argv)
{
    FILE *f = open_vectors(argc, argv);
    if (!f) return 2;
    printf("AES-GCM implementation: %s\n", uvpn_gcm_impl());
    static char line[40000];
    int sframes = 0, gcms = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char k[80];
        if (sscanf(line, "key %64s", k) == 1) unhex(k, netkey, 32);
        else if (strncmp(line, "gcm ", 4) == 0) gcm_vector(line), gcms++;
        else if (strncmp(line, "session ", 8) == 0) session_vector(line);
        else if (strncmp(line, "sframe ", 7) == 0) sframe_vector(line), sframes++;
        else if (strncmp(line, "frame ", 6) == 0) link_frame_vector(line);
    }
    fclose(f);
    check(gcms >= 4 && sframes >= 8, "vectors", "the file has the router vectors");
    bodies();
    queues();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
