/* wire.c: the UVPN wire codec (see wire.h and docs/PROTOCOL.md). Owns frame layout, MAC, link
 * key derivation, CONNECT bodies and answers, tickets and the seen-set, status/errno table, key
 * file parsing and datagram layout. */
#include "common/wire.h"
#include "common/bytes.h"
#include "common/real.h"
#include "common/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>


static int known_type(int type)
{
    return (type >= UVPN_T_HELLO && type <= UVPN_T_PATHS) || type == UVPN_T_PING || type == UVPN_T_PONG ||
           type == UVPN_T_OPEN || type == UVPN_T_OPENED || (type >= UVPN_T_RESUME && type <= UVPN_T_MUX);
}

size_t uvpn_max_body(int type, int authenticated)
{
    if (!known_type(type)) return 0;
    if (!authenticated) return UVPN_MAX_PREAUTH_BODY;
    return type == UVPN_T_REPLY ? UVPN_MAX_BODY : UVPN_MAX_REQ_BODY;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

/* Constant-time compare of n bytes: 0 when equal. */
static int ct_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) diff |= (uint8_t)(a[i] ^ b[i]);
    return diff != 0;
}

long uvpn_encode(uint8_t *out, size_t cap, const uint8_t mk[UVPN_KEY_LEN], int type, uint64_t seq,
                 uint32_t reqid, const uint8_t *body, size_t body_len)
{
    if (!known_type(type)) return UVPN_E_TYPE;
    if (body_len > UVPN_MAX_BODY) return UVPN_E_LENGTH;
    size_t n = uvpn_frame_len(body_len);
    if (cap < n) return UVPN_E_SPACE;
    if (body_len) memmove(out + UVPN_HEAD_LEN, body, body_len); /* body may already be in place */
    memcpy(out, UVPN_MAGIC, UVPN_MAGIC_LEN);
    out[4] = UVPN_VERSION;
    out[5] = (uint8_t)type;
    put16(out + 6, (uint16_t)body_len);
    put64(out + 8, seq);
    put32(out + 16, reqid);
    memset(out + 20, 0, 12);
    hmac_sha256(mk, UVPN_KEY_LEN, out, UVPN_HEAD_LEN + body_len, out + UVPN_HEAD_LEN + body_len);
    return (long)n;
}

int uvpn_decode_head(const uint8_t *buf, size_t n, int authenticated, uvpn_head *h)
{
    if (n < UVPN_HEAD_LEN) return UVPN_E_SHORT;
    if (memcmp(buf, UVPN_MAGIC, UVPN_MAGIC_LEN) != 0) return UVPN_E_MAGIC;
    if (buf[4] != UVPN_VERSION) return UVPN_E_VERSION;
    size_t max = uvpn_max_body(buf[5], authenticated);
    if (max == 0) return UVPN_E_TYPE;
    for (int i = 20; i < UVPN_HEAD_LEN; i++)
        if (buf[i]) return UVPN_E_RESERVED;
    uint16_t len = get16(buf + 6);
    if (len > max) return UVPN_E_LENGTH;
    h->type = buf[5];
    h->len = len;
    h->seq = get64(buf + 8);
    if (h->seq > UVPN_MAX_U53) return UVPN_E_RANGE;
    h->reqid = get32(buf + 16);
    return UVPN_OK;
}

int uvpn_decode_frame(const uint8_t mk[UVPN_KEY_LEN], const uint8_t *buf, size_t n, int authenticated,
                      uvpn_head *h, const uint8_t **body)
{
    int r = uvpn_decode_head(buf, n, authenticated, h);
    if (r) return r;
    if (n != uvpn_frame_len(h->len)) return n < uvpn_frame_len(h->len) ? UVPN_E_SHORT : UVPN_E_LENGTH;
    uint8_t mac[UVPN_MAC_LEN];
    hmac_sha256(mk, UVPN_KEY_LEN, buf, UVPN_HEAD_LEN + h->len, mac);
    if (ct_diff(mac, buf + UVPN_HEAD_LEN + h->len, UVPN_MAC_LEN)) return UVPN_E_MAC;
    if (body) *body = buf + UVPN_HEAD_LEN;
    return UVPN_OK;
}

const char *uvpn_strerror(int err)
{
    switch (err) {
    case UVPN_OK: return "ok";
    case UVPN_E_SHORT: return "truncated frame";
    case UVPN_E_MAGIC: return "bad magic";
    case UVPN_E_VERSION: return "unsupported version";
    case UVPN_E_TYPE: return "unknown frame type";
    case UVPN_E_LENGTH: return "body length over limit";
    case UVPN_E_MAC: return "MAC mismatch (wrong key?)";
    case UVPN_E_BODY: return "malformed body";
    case UVPN_E_SPACE: return "buffer too small";
    case UVPN_E_RESERVED: return "reserved bytes not zero";
    case UVPN_E_RANGE: return "count or time of 2^53 or more";
    case UVPN_E_SEQ: return "frame out of sequence";
    case UVPN_R_TIME: return "ticket issued outside the 300 s window";
    case UVPN_R_REPLAY: return "ticket already used";
    case UVPN_R_OLD: return "ticket older than the seen-set's low-water mark";
    default: return "unknown error";
    }
}

void uvpn_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
               const uint8_t *info, size_t info_len, uint8_t *okm, size_t n)
{
    uint8_t prk[SHA256_DIGEST_LEN], t[SHA256_DIGEST_LEN];
    hmac_sha256(salt, salt_len, ikm, ikm_len, prk);
    size_t tl = 0;
    for (uint8_t i = 1; n > 0; i++) {
        hmac_sha256_ctx c;
        uint8_t ctr = i;
        hmac_sha256_init(&c, prk, sizeof prk);
        hmac_sha256_update(&c, t, tl);
        hmac_sha256_update(&c, info, info_len);
        hmac_sha256_update(&c, &ctr, 1);
        hmac_sha256_final(&c, t);
        tl = sizeof t;
        size_t k = n < tl ? n : tl;
        memcpy(okm, t, k);
        okm += k;
        n -= k;
    }
    memset(prk, 0, sizeof prk);
}

void uvpn_link_keys(const uint8_t key[UVPN_KEY_LEN], const uint8_t nc[UVPN_NONCE_LEN],
                    const uint8_t nr[UVPN_NONCE_LEN], uint8_t up[UVPN_KEY_LEN], uint8_t down[UVPN_KEY_LEN])
{
    static const char info[] = "uvpn link v2";
    uint8_t salt[2 * UVPN_NONCE_LEN], k[2 * UVPN_KEY_LEN];
    memcpy(salt, nc, UVPN_NONCE_LEN);
    memcpy(salt + UVPN_NONCE_LEN, nr, UVPN_NONCE_LEN);
    uvpn_hkdf(key, UVPN_KEY_LEN, salt, sizeof salt, (const uint8_t *)info, sizeof info - 1, k, sizeof k);
    memcpy(up, k, UVPN_KEY_LEN);
    memcpy(down, k + UVPN_KEY_LEN, UVPN_KEY_LEN);
    memset(k, 0, sizeof k);
}

void uvpn_connect_pack(const uvpn_connect *c, uint8_t out[UVPN_CONNECT_BODY_LEN])
{
    out[0] = c->proto;
    out[1] = c->flags;
    put32(out + 2, c->src_ip);
    put16(out + 6, c->src_port);
    put32(out + 8, c->dst_ip);
    put16(out + 12, c->dst_port);
}

int uvpn_connect_unpack(const uint8_t *body, size_t len, uvpn_connect *c)
{
    if (len != UVPN_CONNECT_BODY_LEN) return UVPN_E_BODY;
    c->proto = body[0];
    c->flags = body[1];
    c->src_ip = get32(body + 2);
    c->src_port = get16(body + 6);
    c->dst_ip = get32(body + 8);
    c->dst_port = get16(body + 12);
    return UVPN_OK;
}

int uvpn_answer_unpack(const uint8_t *d, size_t len, uvpn_answer *a)
{
    if (len != UVPN_CONNECT_ANSWER_LEN) return UVPN_E_BODY;
    a->kind = d[0];
    a->real_ip = get32(d + 1);
    a->real_port = get16(d + 5);
    a->src_port = get16(d + 7);
    memcpy(a->lid, d + 9, UVPN_LID_LEN);
    a->issued = get64(d + 17);
    if (a->issued > UVPN_MAX_U53) return UVPN_E_BODY;
    memcpy(a->tid, d + 25, UVPN_NONCE_LEN);
    return UVPN_OK;
}

void uvpn_paths_pack(const uvpn_paths *p, uint8_t out[UVPN_PATHS_LEN])
{
    put32(out, p->conns);
    put64(out + 4, p->sent);
    put64(out + 12, p->received);
}

int uvpn_paths_unpack(const uint8_t *body, size_t len, uvpn_paths *p)
{
    if (len != UVPN_PATHS_LEN) return UVPN_E_BODY;
    p->conns = get32(body);
    p->sent = get64(body + 4);
    p->received = get64(body + 12);
    return p->sent > UVPN_MAX_U53 || p->received > UVPN_MAX_U53 ? UVPN_E_BODY : UVPN_OK;
}

void uvpn_ticket_pack(const uint8_t key[UVPN_KEY_LEN], const uvpn_ticket *t, uint8_t out[UVPN_TICKET_LEN])
{
    memcpy(out, UVPN_TICKET_MAGIC, UVPN_MAGIC_LEN);
    out[4] = UVPN_VERSION;
    out[5] = t->kind;
    out[6] = out[7] = 0;
    put32(out + 8, t->src_ip);
    put16(out + 12, t->src_port);
    put32(out + 14, t->dst_ip);
    put16(out + 18, t->dst_port);
    memcpy(out + 20, t->lid, UVPN_LID_LEN);
    put16(out + 28, t->bound_port);
    out[30] = out[31] = 0;
    put64(out + 32, t->issued);
    memcpy(out + 40, t->tid, UVPN_NONCE_LEN);
    hmac_sha256(key, UVPN_KEY_LEN, out, 56, out + 56);
}

int uvpn_ticket_unpack(const uint8_t key[UVPN_KEY_LEN], const uint8_t *b, size_t n, uvpn_ticket *t)
{
    if (n != UVPN_TICKET_LEN) return n < UVPN_TICKET_LEN ? UVPN_E_SHORT : UVPN_E_LENGTH;
    if (memcmp(b, UVPN_TICKET_MAGIC, UVPN_MAGIC_LEN) != 0) return UVPN_E_MAGIC;
    if (b[4] != UVPN_VERSION) return UVPN_E_VERSION;
    if (b[6] || b[7] || b[30] || b[31]) return UVPN_E_RESERVED;
    uint8_t mac[UVPN_MAC_LEN];
    hmac_sha256(key, UVPN_KEY_LEN, b, 56, mac);
    if (ct_diff(mac, b + 56, UVPN_MAC_LEN)) return UVPN_E_MAC;
    t->kind = b[5];
    t->src_ip = get32(b + 8);
    t->src_port = get16(b + 12);
    t->dst_ip = get32(b + 14);
    t->dst_port = get16(b + 18);
    memcpy(t->lid, b + 20, UVPN_LID_LEN);
    t->bound_port = get16(b + 28);
    t->issued = get64(b + 32);
    if (t->issued > UVPN_MAX_U53) return UVPN_E_RANGE;
    memcpy(t->tid, b + 40, UVPN_NONCE_LEN);
    return UVPN_OK;
}

static uint32_t seen_hash(const uint8_t tid[UVPN_NONCE_LEN])
{
    uint32_t h = 2166136261u; /* FNV-1a: ids are random, but do not rely on it */
    for (int i = 0; i < UVPN_NONCE_LEN; i++) h = (h ^ tid[i]) * 16777619u;
    return h % UVPN_SEEN_BUCKETS;
}

int uvpn_seen_check(uvpn_seen *s, const uint8_t tid[UVPN_NONCE_LEN], uint64_t issued, uint64_t now_ms)
{
    uint64_t d = issued > now_ms ? issued - now_ms : now_ms - issued;
    if (d > UVPN_TIME_WINDOW_MS) return UVPN_R_TIME;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    if (!s->e) {
        s->e = calloc(UVPN_SEEN_KEEP, sizeof *s->e);
        s->bucket = malloc(UVPN_SEEN_BUCKETS * sizeof *s->bucket);
        if (!s->e || !s->bucket) {
            free(s->e);
            free(s->bucket);
            s->e = NULL;
            s->bucket = NULL;
            pthread_mutex_unlock(&s->lock);
            return -ENOMEM;
        }
        for (int i = 0; i < UVPN_SEEN_BUCKETS; i++) s->bucket[i] = -1;
    }
    if (issued < s->low_water) {
        r = UVPN_R_OLD;
        goto out;
    }
    uint32_t h = seen_hash(tid);
    for (int32_t i = s->bucket[h]; i >= 0; i = s->e[i].next)
        if (memcmp(s->e[i].tid, tid, UVPN_NONCE_LEN) == 0) {
            r = UVPN_R_REPLAY;
            goto out;
        }
    uint32_t slot = (s->head + s->count) % UVPN_SEEN_KEEP;
    if (s->count == UVPN_SEEN_KEEP) {
        /* Forget the oldest: unlink it from its chain and raise the low-water mark. */
        uvpn_seen_entry *old = &s->e[s->head];
        for (int32_t *p = &s->bucket[seen_hash(old->tid)]; *p >= 0; p = &s->e[*p].next)
            if ((uint32_t)*p == s->head) {
                *p = old->next;
                break;
            }
        if (old->issued > s->low_water) s->low_water = old->issued;
        slot = s->head;
        s->head = (s->head + 1) % UVPN_SEEN_KEEP;
        s->count--;
    }
    uvpn_seen_entry *e = &s->e[slot];
    memcpy(e->tid, tid, UVPN_NONCE_LEN);
    e->issued = issued;
    e->used = 1;
    e->next = s->bucket[h];
    s->bucket[h] = (int32_t)slot;
    s->count++;
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

int uvpn_name_valid(const char *name, size_t n)
{
    if (n < 1 || n > UVPN_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-'))
            return 0;
    }
    return 1;
}

long uvpn_name_pack(uint8_t out[3 + UVPN_NAME_MAX], int flags, const char *name, size_t n,
                    uint32_t ip)
{
    out[0] = (uint8_t)flags;
    if (!name) {
        out[1] = UVPN_NAME_REVERSE;
        put32(out + 2, ip);
        return 6;
    }
    if (!uvpn_name_valid(name, n)) return UVPN_E_BODY;
    out[1] = UVPN_NAME_FORWARD;
    out[2] = (uint8_t)n;
    memcpy(out + 3, name, n);
    return (long)(3 + n);
}

int uvpn_name_answer(const uint8_t *data, size_t len, uint32_t *ip, char name[UVPN_NAME_MAX + 1])
{
    if (len < 5 || len != 5 + (size_t)data[4] || !uvpn_name_valid((const char *)data + 5, data[4]))
        return UVPN_E_BODY;
    *ip = get32(data);
    memcpy(name, data + 5, data[4]);
    name[data[4]] = 0;
    return UVPN_OK;
}

/* Index = status code. */
static const int st_errno[] = {0, ECONNREFUSED, ENETUNREACH, ETIMEDOUT, EHOSTUNREACH, EACCES,
                               EADDRINUSE, EINVAL, EADDRNOTAVAIL, ENOENT, EPERM, EBUSY};

int uvpn_status_to_errno(int status)
{
    if (status >= 0 && status < (int)(sizeof st_errno / sizeof st_errno[0])) return st_errno[status];
    return EPROTO;
}

int uvpn_errno_to_status(int err)
{
    for (int i = 0; i < (int)(sizeof st_errno / sizeof st_errno[0]); i++)
        if (st_errno[i] == err) return i;
    return UVPN_ST_ECONNREFUSED;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int uvpn_key_parse(const char *text, size_t len, uint8_t key[UVPN_KEY_LEN])
{
    if (len < 2 * UVPN_KEY_LEN) return -1;
    for (size_t i = 0; i < UVPN_KEY_LEN; i++) {
        int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    for (size_t i = 2 * UVPN_KEY_LEN; i < len; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f') return -1;
    }
    return 0;
}

int uvpn_key_load(const char *path, uint8_t key[UVPN_KEY_LEN], char *why, size_t why_len)
{
    char buf[512];
    int fd = real.open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(why, why_len, "cannot open key file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        real.close(fd);
        snprintf(why, why_len, "key file %s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        real.close(fd);
        snprintf(why, why_len, "key file %s has mode %04o: readable by group/others, refused "
                 "(chmod 600 it)", path, (unsigned)(st.st_mode & 07777));
        return -EACCES;
    }
    size_t n = 0;
    while (n < sizeof buf) {
        ssize_t r = real.read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    real.close(fd);
    int bad = n >= sizeof buf || uvpn_key_parse(buf, n, key) != 0;
    memset(buf, 0, sizeof buf);
    if (bad) {
        snprintf(why, why_len, "key file %s: expected 64 hex characters", path);
        return -EINVAL;
    }
    return 0;
}

/* ---- encapsulated datagrams --------------------------------------------------------------- */

static void dgram_mac(const uint8_t key[UVPN_KEY_LEN], const uint8_t head[18],
                      const struct iovec *iov, int iovcnt, uint8_t out[SHA256_DIGEST_LEN])
{
    hmac_sha256_ctx c;
    hmac_sha256_init(&c, key, UVPN_KEY_LEN);
    hmac_sha256_update(&c, head, 18);
    for (int i = 0; i < iovcnt; i++) hmac_sha256_update(&c, iov[i].iov_base, iov[i].iov_len);
    hmac_sha256_final(&c, out);
}

void uvpn_dgram_seal(const uint8_t key[UVPN_KEY_LEN], const uvpn_dgram *d, const struct iovec *iov,
                     int iovcnt, uint8_t head[UVPN_DGRAM_HEAD_LEN])
{
    uint8_t mac[SHA256_DIGEST_LEN];
    memcpy(head, UVPN_DGRAM_MAGIC, 4);
    head[4] = UVPN_VERSION;
    head[5] = 0;
    put32(head + 6, d->src_ip);
    put16(head + 10, d->src_port);
    put32(head + 12, d->dst_ip);
    put16(head + 16, d->dst_port);
    dgram_mac(key, head, iov, iovcnt, mac);
    memcpy(head + 18, mac, UVPN_DGRAM_MAC_LEN);
}

int uvpn_dgram_open(const uint8_t key[UVPN_KEY_LEN], const uint8_t *buf, size_t n, uvpn_dgram *d)
{
    if (n < UVPN_DGRAM_HEAD_LEN) return UVPN_E_SHORT;
    if (memcmp(buf, UVPN_DGRAM_MAGIC, 4) != 0) return UVPN_E_MAGIC;
    if (buf[4] != UVPN_VERSION) return UVPN_E_VERSION;
    struct iovec p = {(void *)(buf + UVPN_DGRAM_HEAD_LEN), n - UVPN_DGRAM_HEAD_LEN};
    uint8_t mac[SHA256_DIGEST_LEN], diff = 0;
    dgram_mac(key, buf, &p, 1, mac);
    for (int i = 0; i < UVPN_DGRAM_MAC_LEN; i++) diff |= (uint8_t)(mac[i] ^ buf[18 + i]);
    if (diff) return UVPN_E_MAC;
    d->src_ip = get32(buf + 6);
    d->src_port = get16(buf + 10);
    d->dst_ip = get32(buf + 12);
    d->dst_port = get16(buf + 16);
    return UVPN_OK;
}
