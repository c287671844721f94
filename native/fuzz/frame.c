/* fuzz/frame.c: the decoders of a router link that carries sessions (router/core/frame.c) on
 * untrusted bytes: sf_next over a whole input buffer as the data plane's parse loop walks it
 * (session frames and link frames one after the other), the session frames' AES-256-GCM tag,
 * and the link frames' bodies (MUX, OPEN, OPENED, RESUME, RESUMED). The first byte of the input
 * picks the path: bit 0, each session frame is first sealed under a fixed session key (so the
 * checks behind the tag are reached, as for a peer router's bytes) and each link frame gets a
 * valid HMAC; bit 1, session bodies are encrypted rather than only authenticated; bits 2-3 cap
 * the GCM implementation (portable, AES-NI, VAES), so that all of them meet the same bytes.
 * Checks: a frame never extends past the buffer; a decoded session head packs back to the same
 * 32 bytes; a sealed frame opens (and decrypts back to its bytes), one flipped bit or another
 * counter does not; a decoded body packs back to the same bytes. The tag is worked on for the
 * first session frame of an input only, up to CRYPTO_MAX bytes of body (fewer with the portable
 * implementation) (GCM itself is checked
 * against the vectors by native/tests/test_router.c; here it would only slow the parser's
 * fuzzing down). */
#include "fuzz/fuzz.h"
#include "common/sha256.h"
#include "common/wire.h"
#include "router/core/frame.h"
#include "router/core/gcm.h"

#include <stdlib.h>
#include <string.h>

#define CRYPTO_MAX 512
#define CRYPTO_MAX_PORTABLE 48 /* the portable AES is slow under ASan: a few blocks are enough */

static void check_bodies(int type, const uint8_t *body, size_t n)
{
    uint8_t again[64];
    int r = -1;
    switch (type) {
    case UVPN_T_MUX: {
        sf_mux m;
        if ((r = sf_mux_unpack(body, n, &m)) == UVPN_OK) sf_mux_pack(&m, again);
        break;
    }
    case UVPN_T_OPEN: {
        sf_open_body o;
        if ((r = sf_open_unpack(body, n, &o)) == UVPN_OK) sf_open_pack(&o, again);
        break;
    }
    case UVPN_T_OPENED: {
        sf_opened_body o;
        if ((r = sf_opened_unpack(body, n, &o)) == UVPN_OK) sf_opened_pack(&o, again);
        break;
    }
    case UVPN_T_RESUME: {
        sf_resume_body o;
        if ((r = sf_resume_unpack(body, n, &o)) == UVPN_OK) sf_resume_pack(&o, again);
        break;
    }
    case UVPN_T_RESUMED: {
        sf_resumed_body o;
        if ((r = sf_resumed_unpack(body, n, &o)) == UVPN_OK) sf_resumed_pack(&o, again);
        break;
    }
    default:
        return;
    }
    if (r == UVPN_OK && (n > sizeof again || memcmp(again, body, n) != 0)) abort(); /* unpack, pack: same bytes */
}

static void check_session(const uvpn_gcm *g, const sf_frame *f, uint8_t *frame, uint64_t counter, int fix, int enc)
{
    uint8_t head[SF_HEAD_LEN];
    sf_head_pack(head, &f->sh);
    if (memcmp(head, frame, SF_HEAD_LEN) != 0) abort(); /* decode, pack: the same head */
    size_t len = f->sh.len;
    if (f->len != SF_HEAD_LEN + len + SF_TAG_LEN) abort();
    if (counter > 0 || len > (uvpn_gcm_impl()[0] == 'p' ? CRYPTO_MAX_PORTABLE : CRYPTO_MAX)) return;
    if (!fix) {
        sf_open(g, counter, frame, len, enc); /* almost always a bad tag; must not crash */
        return;
    }
    uint8_t *plain = malloc(len ? len : 1);
    if (!plain) return;
    memcpy(plain, frame + SF_HEAD_LEN, len);
    sf_seal(g, counter, frame, len, enc);
    if (sf_open(g, counter + 1, frame, len, enc) == UVPN_OK) abort(); /* another counter: refused */
    frame[f->len - 1] ^= 0x80;
    if (sf_open(g, counter, frame, len, enc) == UVPN_OK) abort(); /* a flipped tag bit: refused */
    frame[f->len - 1] ^= 0x80;
    if (sf_open(g, counter, frame, len, enc) != UVPN_OK) abort(); /* sealed: opens */
    if (memcmp(plain, frame + SF_HEAD_LEN, len) != 0) abort();     /* and gives its body back */
    free(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int fix = data[0] & 1, enc = (data[0] >> 1) & 1, cap = (data[0] >> 2) & 3;
    static uvpn_gcm g[UVPN_GCM_TOP + 1];
    static int ready;
    if (!ready) {
        for (int c = 0; c <= UVPN_GCM_TOP; c++) {
            int old = uvpn_gcm_cap(c);
            uvpn_gcm_init(&g[c], FUZZ_KEY);
            uvpn_gcm_cap(old);
        }
        ready = 1;
    }
    if (cap > UVPN_GCM_TOP) cap = UVPN_GCM_TOP;
    int old = uvpn_gcm_cap(cap);
    size_t n = size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, n);
    size_t off = 0;
    uint64_t counter = 0;
    int macs = 0; /* valid HMACs written: a few per input (the MAC is fuzzed by fuzz/wire.c) */
    while (off < n) {
        sf_frame f;
        int r = sf_next(buf + off, n - off, &f);
        if (r != UVPN_OK) break; /* short: wait for more; any other error: the link ends */
        if (f.len == 0 || f.len > n - off) abort();
        uint8_t *frame = buf + off;
        if (f.session) {
            check_session(&g[cap], &f, frame, counter++, fix, enc);
        } else {
            int mac = fix && macs++ < 4;
            if (mac) hmac_sha256(FUZZ_KEY, sizeof FUZZ_KEY, frame, UVPN_HEAD_LEN + f.lh.len, frame + UVPN_HEAD_LEN + f.lh.len);
            uvpn_head h;
            const uint8_t *body = NULL;
            if (uvpn_decode_frame(FUZZ_KEY, frame, f.len, 1, &h, &body) == UVPN_OK) check_bodies(h.type, body, h.len);
            else if (mac) abort(); /* sf_next judged the head; with a valid MAC the frame decodes */
        }
        off += f.len;
    }
    uvpn_gcm_cap(old);
    free(buf);
    return 0;
}
