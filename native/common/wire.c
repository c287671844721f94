/* wire.c: the UVPN frame codec (see wire.h and docs/PROTOCOL.md). Owns frame layout, MAC,
 * CONNECT body layout, status/errno table, key file parsing and the replay cache. */
#include "common/wire.h"
#include "common/bytes.h"
#include "common/real.h"
#include "common/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>


size_t uvpn_max_body(int type)
{
    if (type == UVPN_T_REPLY) return UVPN_MAX_BODY;
    if (type >= UVPN_T_CONNECT && type <= UVPN_T_LAST) return UVPN_MAX_REQ_BODY;
    return 0;
}

static void mac_of(const uint8_t key[UVPN_KEY_LEN], const uint8_t *data, size_t n, uint8_t out[32])
{
    hmac_sha256(key, UVPN_KEY_LEN, data, n, out);
}

long uvpn_encode(uint8_t *out, size_t cap, const uint8_t key[UVPN_KEY_LEN], int type,
                 const uint8_t nonce[UVPN_NONCE_LEN], uint64_t time_ms, const uint8_t *body,
                 size_t body_len)
{
    if (uvpn_max_body(type) == 0) return UVPN_E_TYPE;
    if (body_len > uvpn_max_body(type)) return UVPN_E_LENGTH;
    size_t n = uvpn_frame_len(body_len);
    if (cap < n) return UVPN_E_SPACE;
    memcpy(out, UVPN_MAGIC, UVPN_MAGIC_LEN);
    out[4] = UVPN_VERSION;
    out[5] = (uint8_t)type;
    put16(out + 6, (uint16_t)body_len);
    memcpy(out + 8, nonce, UVPN_NONCE_LEN);
    put32(out + 24, (uint32_t)(time_ms >> 32));
    put32(out + 28, (uint32_t)time_ms);
    if (body_len) memmove(out + UVPN_HEAD_LEN, body, body_len); /* body may already be in place */
    mac_of(key, out, UVPN_HEAD_LEN + body_len, out + UVPN_HEAD_LEN + body_len);
    return (long)n;
}

int uvpn_decode_head(const uint8_t *buf, size_t n, uvpn_head *h)
{
    if (n < UVPN_HEAD_LEN) return UVPN_E_SHORT;
    if (memcmp(buf, UVPN_MAGIC, UVPN_MAGIC_LEN) != 0) return UVPN_E_MAGIC;
    if (buf[4] != UVPN_VERSION) return UVPN_E_VERSION;
    size_t max = uvpn_max_body(buf[5]);
    if (max == 0) return UVPN_E_TYPE;
    uint16_t len = get16(buf + 6);
    if (len > max) return UVPN_E_LENGTH;
    h->type = buf[5];
    h->len = len;
    memcpy(h->nonce, buf + 8, UVPN_NONCE_LEN);
    h->time_ms = (uint64_t)get32(buf + 24) << 32 | get32(buf + 28);
    return UVPN_OK;
}

int uvpn_decode_frame(const uint8_t key[UVPN_KEY_LEN], const uint8_t *buf, size_t n,
                      uvpn_head *h, const uint8_t **body)
{
    int r = uvpn_decode_head(buf, n, h);
    if (r) return r;
    if (n != uvpn_frame_len(h->len)) return n < uvpn_frame_len(h->len) ? UVPN_E_SHORT : UVPN_E_LENGTH;
    uint8_t mac[UVPN_MAC_LEN];
    mac_of(key, buf, UVPN_HEAD_LEN + h->len, mac);
    /* Constant-time compare: accumulate differences, branch once. */
    const uint8_t *got = buf + UVPN_HEAD_LEN + h->len;
    volatile uint8_t diff = 0;
    for (int i = 0; i < UVPN_MAC_LEN; i++) diff |= (uint8_t)(mac[i] ^ got[i]);
    if (diff != 0) return UVPN_E_MAC;
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
    case UVPN_R_TIME: return "frame time outside the 300 s window";
    case UVPN_R_REPLAY: return "replayed nonce";
    case UVPN_R_FULL: return "replay cache full";
    default: return "unknown error";
    }
}

void uvpn_connect_pack(const uvpn_connect *c, uint8_t out[UVPN_CONNECT_BODY_LEN])
{
    out[0] = c->proto;
    out[1] = c->flags;
    put16(out + 2, c->src_port);
    put32(out + 4, c->src_ip);
    put32(out + 8, c->dst_ip);
    put16(out + 12, c->dst_port);
    put16(out + 14, 0);
}

int uvpn_connect_unpack(const uint8_t *body, size_t len, uvpn_connect *c)
{
    if (len != UVPN_CONNECT_BODY_LEN) return UVPN_E_BODY;
    c->proto = body[0];
    c->flags = body[1];
    c->src_port = get16(body + 2);
    c->src_ip = get32(body + 4);
    c->dst_ip = get32(body + 8);
    c->dst_port = get16(body + 12);
    return UVPN_OK;
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
static const int st_errno[] = {0, ECONNREFUSED, ENETUNREACH, ETIMEDOUT, EHOSTUNREACH,
                               EACCES, EADDRINUSE, EINVAL, EADDRNOTAVAIL, ENOENT};

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

int uvpn_replay_check(uvpn_replay *rc, const uint8_t nonce[UVPN_NONCE_LEN], uint64_t frame_time_ms,
                      uint64_t now_ms)
{
    uint64_t d = frame_time_ms > now_ms ? frame_time_ms - now_ms : now_ms - frame_time_ms;
    if (d > UVPN_TIME_WINDOW_MS) return UVPN_R_TIME;
    int r = 0;
    pthread_mutex_lock(&rc->lock);
    /* Entries are in arrival order, so expired ones are at the front. */
    while (rc->count && rc->e[rc->head].expires_ms <= now_ms) {
        rc->head = (rc->head + 1) % UVPN_REPLAY_CAP;
        rc->count--;
    }
    for (size_t i = 0; i < rc->count; i++) {
        if (memcmp(rc->e[(rc->head + i) % UVPN_REPLAY_CAP].nonce, nonce, UVPN_NONCE_LEN) == 0) {
            r = UVPN_R_REPLAY;
            goto out;
        }
    }
    if (rc->count == UVPN_REPLAY_CAP) {
        r = UVPN_R_FULL;
        goto out;
    }
    uvpn_replay_entry *e = &rc->e[(rc->head + rc->count) % UVPN_REPLAY_CAP];
    memcpy(e->nonce, nonce, UVPN_NONCE_LEN);
    /* Keep expiry monotonic in ring order even if the wall clock steps back. */
    uint64_t exp = now_ms + UVPN_REPLAY_KEEP_MS;
    if (rc->count) {
        uint64_t last = rc->e[(rc->head + rc->count - 1) % UVPN_REPLAY_CAP].expires_ms;
        if (exp < last) exp = last;
    }
    e->expires_ms = exp;
    rc->count++;
out:
    pthread_mutex_unlock(&rc->lock);
    return r;
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
