/* overlay.c: the UVPN client exchanges of libuvpn.so (see overlay.h). */
#include "uvpn/core/overlay.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "common/real.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#define REPLY_STACK_BODY 1024   /* CONNECT replies longer than this are refused */

static uvpn_replay replay = UVPN_REPLAY_INIT;

/* Connects fd to sa before the deadline without changing O_NONBLOCK: a non-blocking socket is
 * polled after EINPROGRESS; a blocking one gets a temporary SO_SNDTIMEO (Linux bounds a
 * blocking connect by it). Returns 0 or -errno (-ETIMEDOUT at the deadline). */
static int connect_deadline(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int fl = real.fcntl(fd, F_GETFL);
    struct timeval old;
    socklen_t ol = sizeof old;
    int restore = 0;
    if (fl >= 0 && !(fl & O_NONBLOCK) && getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &old, &ol) == 0) {
        int64_t left = deadline - mono_ms();
        if (left < 1) left = 1;
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        restore = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
    }
    int r = real.connect(fd, sa, len);
    int e = errno;
    if (restore) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &old, sizeof old);
    if (r == 0) return 0;
    /* EINTR on a blocking socket: the kernel keeps connecting; wait for it like EINPROGRESS. */
    if (e != EINPROGRESS && e != EAGAIN && e != EINTR) return -e;
    int w = wait_fd(fd, POLLOUT, deadline);
    if (w == 0) return -ETIMEDOUT;
    if (w < 0) return w;
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) return -errno;
    return err ? -err : 0;
}

static const char *router_str(uint32_t ip, char buf[24])
{
    return fmt_addr(ip, cfg()->proxy_port, buf);
}

/* Reads one REPLY frame answering nonce into buf (capacity for a body of max_body bytes).
 * Returns 0 with *body_len set, or -errno. */
static int read_reply(int fd, const uint8_t key[UVPN_KEY_LEN], const uint8_t nonce[UVPN_NONCE_LEN],
                      int64_t deadline, uint8_t *buf, size_t max_body, size_t *body_len,
                      char *why, size_t why_len)
{
    int r = recv_exact(fd, buf, UVPN_HEAD_LEN, deadline);
    if (r == NETIO_EOF || r == -ECONNRESET) {
        snprintf(why, why_len, "home router closed the connection without a reply (wrong key?)");
        return -EACCES;
    }
    if (r == -ETIMEDOUT) {
        snprintf(why, why_len, "no reply from home router within %d ms", cfg()->timeout_ms);
        return r;
    }
    if (r < 0) {
        snprintf(why, why_len, "reading reply: %s", strerror(-r));
        return r;
    }
    uvpn_head h;
    int d = uvpn_decode_head(buf, UVPN_HEAD_LEN, &h);
    if (d == 0 && (h.type != UVPN_T_REPLY || h.len < 1)) d = UVPN_E_TYPE;
    if (d == 0 && h.len > max_body) d = UVPN_E_LENGTH;
    if (d) {
        snprintf(why, why_len, "bad reply from home router: %s", uvpn_strerror(d));
        return -EPROTO;
    }
    r = recv_exact(fd, buf + UVPN_HEAD_LEN, (size_t)h.len + UVPN_MAC_LEN, deadline);
    if (r) {
        snprintf(why, why_len, "reading reply: %s",
                 r == NETIO_EOF ? "connection closed mid-frame" : strerror(-r));
        return r == NETIO_EOF ? -EPROTO : r;
    }
    d = uvpn_decode_frame(key, buf, uvpn_frame_len(h.len), &h, NULL);
    if (d == 0 && memcmp(h.nonce, nonce, UVPN_NONCE_LEN) != 0) {
        snprintf(why, why_len, "reply nonce does not match the request");
        return -EPROTO;
    }
    if (d) {
        snprintf(why, why_len, "bad reply from home router: %s", uvpn_strerror(d));
        return -EPROTO;
    }
    *body_len = h.len;
    return 0;
}

/* Encodes a request with a fresh nonce into out (>= 64 + len bytes). Returns length or -errno. */
static long make_request(uint8_t *out, size_t cap, const uint8_t key[UVPN_KEY_LEN], int type,
                         const uint8_t *body, size_t len, uint8_t nonce[UVPN_NONCE_LEN],
                         char *why, size_t why_len)
{
    int r = random_bytes(nonce, UVPN_NONCE_LEN);
    if (r) {
        snprintf(why, why_len, "getrandom: %s", strerror(-r));
        return r;
    }
    long n = uvpn_encode(out, cap, key, type, nonce, now_real_ms(), body, len);
    if (n < 0) {
        snprintf(why, why_len, "encoding request: %s", uvpn_strerror((int)n));
        return -EINVAL;
    }
    return n;
}

int ov_control(int type, const uint8_t *body, size_t len, uint8_t *data, size_t cap,
               size_t *data_len, int timeout_ms, char *why, size_t why_len)
{
    int64_t deadline = mono_ms() + timeout_ms;
    uint8_t key[UVPN_KEY_LEN], req[UVPN_MAX_REQ_BODY + 64], nonce[UVPN_NONCE_LEN];
    uint32_t ips[CFG_MAX_ROUTER_IPS];
    char rs[24];
    *data_len = 0;
    if (!cfg()->have_proxy) {
        snprintf(why, why_len, "no home router (UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT unset)");
        return -ENETUNREACH;
    }
    int n = cfg_router_ips(ips, CFG_MAX_ROUTER_IPS);
    if (n <= 0) {
        snprintf(why, why_len, "cannot resolve home router %s", cfg()->proxy_host);
        return -ENETUNREACH;
    }
    int r = cfg_key(key, why, why_len);
    if (r) return -EACCES;
    long flen = make_request(req, sizeof req, key, type, body, len, nonce, why, why_len);
    if (flen < 0) return (int)flen;

    int fd = -1;
    for (int i = 0; i < n; i++) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(why, why_len, "socket: %s", strerror(errno));
            return -errno;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sa_make_v4(AF_INET, ips[i], cfg()->proxy_port, &ss);
        r = connect_deadline(fd, (struct sockaddr *)&ss, sl, deadline);
        if (r == 0) break;
        snprintf(why, why_len, "home router %s: %s", router_str(ips[i], rs), strerror(-r));
        real.close(fd);
        fd = -1;
        if (r == -ETIMEDOUT) return r;
    }
    if (fd < 0) return -ENETUNREACH;

    uint8_t *buf = malloc(uvpn_frame_len(UVPN_MAX_BODY));
    if (!buf) {
        real.close(fd);
        snprintf(why, why_len, "out of memory");
        return -ENOMEM;
    }
    size_t blen = 0;
    r = send_all(fd, req, (size_t)flen, deadline);
    if (r) snprintf(why, why_len, "sending request: %s", strerror(-r));
    else r = read_reply(fd, key, nonce, deadline, buf, UVPN_MAX_BODY, &blen, why, why_len);
    real.close(fd);
    if (r == 0) {
        r = buf[UVPN_HEAD_LEN];
        *data_len = blen - 1 < cap ? blen - 1 : cap;
        if (data) memcpy(data, buf + UVPN_HEAD_LEN + 1, *data_len);
        if (r) snprintf(why, why_len, "home router answered status %d (%s)", r,
                        errno_name(uvpn_status_to_errno(r)));
    }
    free(buf);
    memset(key, 0, sizeof key);
    return r;
}

int ov_connect(int fd, int family, uint32_t src_ip, uint16_t src_port, uint32_t dst_ip,
               uint16_t dst_port, uint16_t *used_src_port, char *why, size_t why_len)
{
    int64_t deadline = mono_ms() + cfg()->timeout_ms;
    uint8_t key[UVPN_KEY_LEN];
    uint32_t ips[CFG_MAX_ROUTER_IPS];
    char rs[24];
    int n = cfg_router_ips(ips, CFG_MAX_ROUTER_IPS);
    if (n <= 0) {
        snprintf(why, why_len, "cannot resolve home router %s", cfg()->proxy_host);
        return -ENETUNREACH;
    }
    if (cfg_key(key, why, why_len)) return -EACCES;

    /* A socket can only try once reliably, so only the first address is used here. */
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(family, ips[0], cfg()->proxy_port, &ss);
    int r = connect_deadline(fd, (struct sockaddr *)&ss, sl, deadline);
    if (r) {
        snprintf(why, why_len, "home router %s: %s", router_str(ips[0], rs), strerror(-r));
        if (r == -ETIMEDOUT || r == -EISCONN || r == -EALREADY || r == -EBADF || r == -ENOTSOCK)
            return r;
        return -ENETUNREACH;
    }
    if (src_port == 0) {
        struct sockaddr_storage me;
        socklen_t ml = sizeof me;
        uint32_t ip;
        if (real.getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
            sa_get_v4((struct sockaddr *)&me, ml, &ip, &src_port);
    }
    *used_src_port = src_port;

    uvpn_connect c = {UVPN_PROTO_TCP, 0, src_port, src_ip, dst_ip, dst_port};
    uint8_t body[UVPN_CONNECT_BODY_LEN], req[UVPN_CONNECT_BODY_LEN + 64], nonce[UVPN_NONCE_LEN];
    uvpn_connect_pack(&c, body);
    long flen = make_request(req, sizeof req, key, UVPN_T_CONNECT, body, sizeof body, nonce, why,
                             why_len);
    if (flen < 0) return (int)flen;
    r = send_all(fd, req, (size_t)flen, deadline);
    if (r) {
        snprintf(why, why_len, "sending CONNECT: %s", strerror(-r));
        return r == -EPIPE || r == -ECONNRESET ? -EACCES : r;
    }
    uint8_t buf[REPLY_STACK_BODY + 64];
    size_t blen = 0;
    r = read_reply(fd, key, nonce, deadline, buf, REPLY_STACK_BODY, &blen, why, why_len);
    memset(key, 0, sizeof key);
    if (r) return r;
    int st = buf[UVPN_HEAD_LEN];
    if (st) {
        static const char *const text[] = {"ok", "connection refused (nothing listens there)",
                                           "no route to subnet", "timed out in the overlay",
                                           "host unreachable (address not leased)",
                                           "access denied", "address in use", "invalid request",
                                           "address not available", "no such entry"};
        snprintf(why, why_len, "%s", st < (int)(sizeof text / sizeof text[0]) ? text[st]
                                                                              : "unknown status");
        return -uvpn_status_to_errno(st);
    }
    return 0;
}

int ov_read_connect(int fd, uint32_t want_ip, uint16_t want_port, int64_t deadline,
                    uvpn_connect *out, char *why, size_t why_len)
{
    uint8_t key[UVPN_KEY_LEN], buf[UVPN_CONNECT_BODY_LEN + 64];
    if (cfg_key(key, why, why_len)) return -EACCES;
    int r = recv_exact(fd, buf, UVPN_HEAD_LEN, deadline);
    if (r) {
        snprintf(why, why_len, "no CONNECT frame: %s",
                 r == NETIO_EOF ? "connection closed" : strerror(-r));
        return r == NETIO_EOF ? -ECONNRESET : r;
    }
    uvpn_head h;
    const uint8_t *body;
    int d = uvpn_decode_head(buf, UVPN_HEAD_LEN, &h);
    if (d == 0 && (h.type != UVPN_T_CONNECT || h.len != UVPN_CONNECT_BODY_LEN)) d = UVPN_E_TYPE;
    if (d) {
        snprintf(why, why_len, "bad CONNECT head: %s", uvpn_strerror(d));
        return -EPROTO;
    }
    r = recv_exact(fd, buf + UVPN_HEAD_LEN, UVPN_CONNECT_BODY_LEN + UVPN_MAC_LEN, deadline);
    if (r) {
        snprintf(why, why_len, "truncated CONNECT frame: %s",
                 r == NETIO_EOF ? "connection closed" : strerror(-r));
        return r == NETIO_EOF ? -ECONNRESET : r;
    }
    d = uvpn_decode_frame(key, buf, sizeof buf, &h, &body);
    memset(key, 0, sizeof key);
    if (d == 0) d = uvpn_connect_unpack(body, h.len, out);
    if (d == 0 && out->proto != UVPN_PROTO_TCP) d = UVPN_E_BODY;
    /* Only authenticated frames reach the replay cache, so forgeries cannot fill it. */
    if (d == 0) d = uvpn_replay_check(&replay, h.nonce, h.time_ms, now_real_ms());
    if (d) {
        snprintf(why, why_len, "CONNECT refused: %s", uvpn_strerror(d));
        return d == UVPN_E_MAC ? -EACCES : -EPROTO;
    }
    if (out->dst_ip != want_ip || out->dst_port != want_port) {
        char a[24], b[24];
        snprintf(why, why_len, "CONNECT for %s does not match this listener %s",
                 fmt_addr(out->dst_ip, out->dst_port, a), fmt_addr(want_ip, want_port, b));
        return -EPROTO;
    }
    return 0;
}

int ov_peek_magic(int fd, int64_t deadline)
{
    char b[UVPN_MAGIC_LEN];
    for (;;) {
        ssize_t n = real.recv(fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
        if (n == (ssize_t)sizeof b) return memcmp(b, UVPN_MAGIC, UVPN_MAGIC_LEN) == 0;
        if (n == 0) return 0;
        if (n > 0) {
            /* A prefix arrived: poll would return at once, so sleep briefly for the rest. */
            if (memcmp(b, UVPN_MAGIC, (size_t)n) != 0) return 0;
            if (mono_ms() >= deadline) return 0;
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return 0;
        if (wait_fd(fd, POLLIN, deadline) <= 0) return 0;
    }
}
