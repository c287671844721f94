/* frame.c: router-link frames (see frame.h and docs/PROTOCOL.md, "Sessions between routers"). */
#include "router/core/frame.h"
#include "common/bytes.h"

#include <string.h>

uint64_t sf_get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

void sf_put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

int sf_is_session(int type)
{
    return (type >= SF_T_DATA && type <= SF_T_RST) || type == SF_T_CLOSE;
}

void sf_head_pack(uint8_t out[SF_HEAD_LEN], const sf_head *h)
{
    memcpy(out, UVPN_MAGIC, UVPN_MAGIC_LEN);
    out[4] = UVPN_VERSION;
    out[5] = h->type;
    put16(out + 6, h->len);
    sf_put64(out + 8, h->seq);
    put32(out + 16, h->num);
    sf_put64(out + 20, h->ack);
    put32(out + 28, h->window);
}

/* Body lengths a session frame type allows: [min, max]. */
static void session_len(int type, size_t *min, size_t *max)
{
    *min = *max = 0;
    if (type == SF_T_DATA) *min = 1, *max = SF_MAX_DATA;
    else if (type == SF_T_RST) *min = *max = 1;
}

int sf_next(const uint8_t *buf, size_t n, sf_frame *f)
{
    if (n < 8) {
        /* Judge what there is already, so garbage ends the link without waiting for more. */
        size_t k = n < UVPN_MAGIC_LEN ? n : UVPN_MAGIC_LEN;
        if (memcmp(buf, UVPN_MAGIC, k) != 0) return UVPN_E_MAGIC;
        if (n > 4 && buf[4] != UVPN_VERSION) return UVPN_E_VERSION;
        return UVPN_E_SHORT;
    }
    if (memcmp(buf, UVPN_MAGIC, UVPN_MAGIC_LEN) != 0) return UVPN_E_MAGIC;
    if (buf[4] != UVPN_VERSION) return UVPN_E_VERSION;
    int type = buf[5];
    size_t len = get16(buf + 6);
    memset(f, 0, sizeof *f);
    if (sf_is_session(type)) {
        size_t min, max;
        session_len(type, &min, &max);
        if (len < min || len > max) return UVPN_E_LENGTH;
        f->session = 1;
        f->len = SF_HEAD_LEN + len + SF_TAG_LEN;
        if (n < SF_HEAD_LEN) return UVPN_E_SHORT;
        f->sh.type = (uint8_t)type;
        f->sh.len = (uint16_t)len;
        f->sh.seq = sf_get64(buf + 8);
        f->sh.num = get32(buf + 16);
        f->sh.ack = sf_get64(buf + 20);
        f->sh.window = get32(buf + 28);
        return n < f->len ? UVPN_E_SHORT : UVPN_OK;
    }
    size_t max = uvpn_max_body(type, 1);
    if (max == 0) return UVPN_E_TYPE;
    if (len > max) return UVPN_E_LENGTH;
    f->len = uvpn_frame_len(len);
    if (n < UVPN_HEAD_LEN) return UVPN_E_SHORT;
    int r = uvpn_decode_head(buf, n, 1, &f->lh);
    if (r) return r;
    return n < f->len ? UVPN_E_SHORT : UVPN_OK;
}

void sf_seal(const uvpn_gcm *k, uint64_t counter, uint8_t *frame, size_t len, int enc)
{
    uint8_t *body = frame + SF_HEAD_LEN;
    uvpn_gcm_seal_frame(k, counter, frame, body, body, len, enc, body + len);
}

int sf_open(const uvpn_gcm *k, uint64_t counter, uint8_t *frame, size_t len, int enc)
{
    uint8_t *body = frame + SF_HEAD_LEN;
    return uvpn_gcm_open_frame(k, counter, frame, body, len, enc, body + len) == 0 ? UVPN_OK : UVPN_E_MAC;
}

void sf_session_keys(const uint8_t key[UVPN_KEY_LEN], const uint8_t n_open[UVPN_NONCE_LEN],
                     const uint8_t n_ans[UVPN_NONCE_LEN], const uint8_t sid[UVPN_NONCE_LEN],
                     uint8_t o2a[UVPN_KEY_LEN], uint8_t a2o[UVPN_KEY_LEN])
{
    static const char label[] = "uvpn session v2";
    uint8_t salt[2 * UVPN_NONCE_LEN], info[sizeof label - 1 + UVPN_NONCE_LEN], k[2 * UVPN_KEY_LEN];
    memcpy(salt, n_open, UVPN_NONCE_LEN);
    memcpy(salt + UVPN_NONCE_LEN, n_ans, UVPN_NONCE_LEN);
    memcpy(info, label, sizeof label - 1);
    memcpy(info + sizeof label - 1, sid, UVPN_NONCE_LEN);
    uvpn_hkdf(key, UVPN_KEY_LEN, salt, sizeof salt, info, sizeof info, k, sizeof k);
    memcpy(o2a, k, UVPN_KEY_LEN);
    memcpy(a2o, k + UVPN_KEY_LEN, UVPN_KEY_LEN);
    memset(k, 0, sizeof k);
}

void sf_mux_pack(const sf_mux *m, uint8_t out[SF_MUX_LEN])
{
    out[0] = m->flags;
    put32(out + 1, m->net);
    out[5] = m->prefix;
}

int sf_mux_unpack(const uint8_t *b, size_t n, sf_mux *m)
{
    if (n != SF_MUX_LEN || b[0] != 0 || b[5] > 32) return UVPN_E_BODY;
    m->flags = b[0];
    m->net = get32(b + 1);
    m->prefix = b[5];
    return UVPN_OK;
}

void sf_open_pack(const sf_open_body *o, uint8_t out[SF_OPEN_LEN])
{
    memcpy(out, o->sid, 16);
    memcpy(out + 16, o->nonce, 16);
    uvpn_connect_pack(&o->c, out + 32);
    out[46] = o->flags;
    put32(out + 47, o->window);
}

int sf_open_unpack(const uint8_t *b, size_t n, sf_open_body *o)
{
    if (n != SF_OPEN_LEN || (b[46] & ~SF_F_ENCRYPT)) return UVPN_E_BODY;
    if (uvpn_connect_unpack(b + 32, UVPN_CONNECT_BODY_LEN, &o->c) != 0) return UVPN_E_BODY;
    memcpy(o->sid, b, 16);
    memcpy(o->nonce, b + 16, 16);
    o->flags = b[46];
    o->window = get32(b + 47);
    return UVPN_OK;
}

void sf_opened_pack(const sf_opened_body *o, uint8_t out[SF_OPENED_LEN])
{
    out[0] = o->status;
    memcpy(out + 1, o->nonce, 16);
    out[17] = o->flags;
    put32(out + 18, o->window);
}

int sf_opened_unpack(const uint8_t *b, size_t n, sf_opened_body *o)
{
    if (n != SF_OPENED_LEN || (b[17] & ~SF_F_ENCRYPT)) return UVPN_E_BODY;
    o->status = b[0];
    memcpy(o->nonce, b + 1, 16);
    o->flags = b[17];
    o->window = get32(b + 18);
    return UVPN_OK;
}

void sf_resume_pack(const sf_resume_body *r, uint8_t out[SF_RESUME_LEN])
{
    memcpy(out, r->sid, 16);
    sf_put64(out + 16, r->recv);
    memcpy(out + 24, r->nonce, 16);
    put32(out + 40, r->window);
}

int sf_resume_unpack(const uint8_t *b, size_t n, sf_resume_body *r)
{
    if (n != SF_RESUME_LEN) return UVPN_E_BODY;
    memcpy(r->sid, b, 16);
    r->recv = sf_get64(b + 16);
    memcpy(r->nonce, b + 24, 16);
    r->window = get32(b + 40);
    return UVPN_OK;
}

void sf_resumed_pack(const sf_resumed_body *r, uint8_t out[SF_RESUMED_LEN])
{
    out[0] = r->status;
    sf_put64(out + 1, r->recv);
    memcpy(out + 9, r->nonce, 16);
    out[25] = r->flags;
    put32(out + 26, r->window);
}

int sf_resumed_unpack(const uint8_t *b, size_t n, sf_resumed_body *r)
{
    if (n != SF_RESUMED_LEN || (b[25] & ~(SF_F_ENCRYPT | SF_F_ENDED))) return UVPN_E_BODY;
    r->status = b[0];
    r->recv = sf_get64(b + 1);
    memcpy(r->nonce, b + 9, 16);
    r->flags = b[25];
    r->window = get32(b + 26);
    return UVPN_OK;
}
