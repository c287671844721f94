/* data.c: the router's data port (docs/PROTOCOL.md, "Connections"). A program whose CONNECT was
 * answered with a DATA ticket connects here and presents it: to the data plane, not to the
 * control plane. The control plane announces each ticket it issues (CMD_EXPECT, before its REPLY
 * carries the ticket out); this file accepts on its own listening socket, without blocking and
 * within bounds (connections without a checked ticket per source and in all, each with a
 * deadline), reads the 88-byte ticket and checks it as the control plane did: the MAC under the
 * network key, kind DATA, issued here to this host for this very CONNECT (issue time and both
 * addresses), bound to the connection's source port, used once, within its lifetime. A good one
 * attaches the connection to its session or local relay (dp_attach) and is reported
 * (EV_DATA_ATTACHED); a refusal is reported with its reason (EV_DATA_REFUSED: the control plane
 * counts it and logs it once per source and reason per interval) and the connection closed; a
 * ticket nobody presented in time ends its session or relay, if still there (EV_DATA_EXPIRED). Bytes the program
 * wrote after its ticket stay in the socket for the session. */
#include "router/core/dp.h"
#include "common/bytes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* A DATA ticket the control plane issued, waiting for its connection. */
typedef struct {
    uint32_t id;              /* the session or local relay */
    uint8_t tid[UVPN_NONCE_LEN];
    uint64_t issued;
    uvpn_connect c;
    addr16 host;              /* the client's host (port unused) */
    char host_text[64];
    int64_t at;
    dnode fifo;
} expect;

/* A connection to the data port whose ticket is not checked yet. */
typedef struct {
    int fd;
    uint8_t watched;          /* in the epoll set (its ticket did not come whole at once) */
    handler h;
    addr16 peer;
    uint64_t source;          /* its key in by_source */
    char peer_text[72];       /* "host:port" */
    uint8_t buf[UVPN_TICKET_LEN];
    uint8_t got;
    int64_t at;
    dnode fifo;
} preauth;

/* How long new connections wait after accept failed for want of descriptors or memory. */
#define ACCEPT_PAUSE_MS 100

static uint64_t tid_key(const uint8_t tid[UVPN_NONCE_LEN]) { return get32(tid) | (uint64_t)get32(tid + 4) << 32; }

/* The per-source key of an address: an IPv4 address itself, an IPv6 one hashed (FNV-1a, top bit
 * set; two sources sharing a hash share their limit). */
static uint64_t source_key(const addr16 *a)
{
    static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a->a, v4, 12) == 0) return get32(a->a + 12);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 16; i++) h = (h ^ a->a[i]) * 0x100000001b3ull;
    return h | 1ull << 63;
}

static void addr_text(const addr16 *a, char *out, size_t cap)
{
    static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char h[INET6_ADDRSTRLEN] = "?";
    if (memcmp(a->a, v4, 12) == 0) inet_ntop(AF_INET, a->a + 12, h, sizeof h);
    else inet_ntop(AF_INET6, a->a, h, sizeof h);
    snprintf(out, cap, "%s:%u", h, a->port);
}

int data_open(const char *host, uint16_t port, uint16_t *bound)
{
    struct sockaddr_storage ss;
    socklen_t sl = sockaddr_text(host, port, &ss);
    if (!sl) return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    addr16 a;
    addr16_sock(&ss, &a);
    *bound = a.port;
    return fd;
}

/* CMD_DATA_LISTEN: fd i32, per_source u32, total u32, handshake_ms u32, ticket_ms u32. */
void data_listen(dp *d, const uint8_t *p, size_t n)
{
    dp_data *x = &d->data;
    if (n < 20 || x->fd >= 0) {
        if (n >= 4) close((int)get32(p));
        return;
    }
    x->fd = (int)get32(p);
    x->per_source = get32(p + 4);
    x->total = get32(p + 8);
    x->handshake_ms = get32(p + 12);
    x->ticket_ms = get32(p + 16);
    x->h.kind = H_DATA_LISTEN;
    x->h.obj = d;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &x->h};
    if (epoll_ctl(d->ep, EPOLL_CTL_ADD, x->fd, &ev) != 0) dp_log(d, "data port: cannot watch its socket: %s", strerror(errno));
}

static void expect_free(dp *d, expect *e)
{
    if (map_get(&d->data.expects, tid_key(e->tid)) == e) map_del(&d->data.expects, tid_key(e->tid));
    dl_del(&e->fifo);
    free(e);
}

/* CMD_EXPECT: id u32, issued u64, tid[16], connect[14], host (text). */
void data_expect(dp *d, const uint8_t *p, size_t n)
{
    size_t hl = n > 42 ? n - 42 : 0;
    expect *e = hl && hl < sizeof ((expect *)0)->host_text ? calloc(1, sizeof *e) : NULL;
    if (!e) return;
    e->id = get32(p);
    e->issued = sf_get64(p + 4);
    memcpy(e->tid, p + 12, UVPN_NONCE_LEN);
    memcpy(e->host_text, p + 42, hl);
    if (uvpn_connect_unpack(p + 28, UVPN_CONNECT_BODY_LEN, &e->c) != 0 || addr16_text(e->host_text, 0, &e->host) != 0) {
        dp_log(d, "data port: bad ticket announcement for %u (host %s)", e->id, e->host_text);
        free(e);
        return;
    }
    e->at = d->now;
    /* Two live tickets whose random ids share their first 8 bytes: the older one is forgotten
     * (refused as unknown), never confused with the newer. */
    expect *old = map_get(&d->data.expects, tid_key(e->tid));
    if (old) expect_free(d, old);
    if (map_put(&d->data.expects, tid_key(e->tid), e) != 0) {
        free(e);
        return;
    }
    dl_push(&d->data.expect_fifo, &e->fifo);
}

/* The connection leaves the pre-authentication count (its descriptor is the caller's). */
static void preauth_free(dp *d, preauth *c)
{
    dp_data *x = &d->data;
    uintptr_t k = (uintptr_t)map_get(&x->by_source, c->source);
    if (k <= 1) map_del(&x->by_source, c->source);
    else map_put(&x->by_source, c->source, (void *)(k - 1));
    x->pending--;
    dl_del(&c->fifo);
    free(c);
}

static void refusal(dp *d, const char *peer, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* EV_DATA_REFUSED for peer ("host:port"). */
static void refusal(dp *d, const char *peer, const char *fmt, ...)
{
    uint8_t b[512];
    size_t pl = strnlen(peer, 255);
    b[0] = (uint8_t)pl;
    memcpy(b + 1, peer, pl);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf((char *)b + 1 + pl, sizeof b - 1 - pl, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof b - 1 - pl) n = (int)(sizeof b - 2 - pl);
    dp_event(d, EV_DATA_REFUSED, b, 1 + pl + (size_t)n);
}

static void refuse(dp *d, preauth *c, const char *why)
{
    refusal(d, c->peer_text, "%s", why);
    close(c->fd); /* (closing also takes it out of the epoll set) */
    preauth_free(d, c);
}

static expect *find(dp *d, const uint8_t tid[UVPN_NONCE_LEN])
{
    expect *e = map_get(&d->data.expects, tid_key(tid));
    return e && memcmp(e->tid, tid, UVPN_NONCE_LEN) == 0 ? e : NULL;
}

/* A whole ticket has come: checked, then the connection attached, or refused. */
static void check(dp *d, preauth *c)
{
    dp_trace("dp.ticket");
    uvpn_ticket t;
    char why[160];
    int r = uvpn_ticket_unpack(d->cfg.key, c->buf, sizeof c->buf, &t);
    expect *e = r == 0 ? find(d, t.tid) : NULL;
    if (!e && r == 0) { /* its CMD_EXPECT may be queued still: this turn's events came first */
        dp_commands(d);
        e = find(d, t.tid);
    }
    if (r != 0) snprintf(why, sizeof why, "bad DATA ticket: %s", uvpn_strerror(r));
    else if (t.kind != UVPN_TK_DATA) snprintf(why, sizeof why, "ticket of kind %u on the router's data port", t.kind);
    else if (!e) snprintf(why, sizeof why, "unknown, used or expired DATA ticket");
    else if (memcmp(e->host.a, c->peer.a, 16) != 0) snprintf(why, sizeof why, "DATA ticket issued to %s", e->host_text);
    else if (t.bound_port != c->peer.port) snprintf(why, sizeof why, "DATA ticket bound to port %u, not %u", t.bound_port, c->peer.port);
    else if (t.issued != e->issued || t.src_ip != e->c.src_ip || t.src_port != e->c.src_port || t.dst_ip != e->c.dst_ip ||
             t.dst_port != e->c.dst_port)
        snprintf(why, sizeof why, "DATA ticket does not match its CONNECT");
    else why[0] = 0;
    if (why[0]) {
        refuse(d, c, why);
        return;
    }
    uint32_t id = e->id;
    int fd = c->fd;
    expect_free(d, e);
    if (c->watched) dp_unwatch(d, fd);
    char peer[sizeof c->peer_text];
    memcpy(peer, c->peer_text, sizeof peer);
    preauth_free(d, c);
    if (dp_attach(d, id, fd) != 0) {
        refusal(d, peer, "DATA ticket of a connection that has ended");
        return;
    }
    uint8_t b[4];
    put32(b, id);
    dp_event(d, EV_DATA_ATTACHED, b, sizeof b);
}

/* Reads what there is of c's ticket (never past it: what follows is the session's), and goes on
 * once it is whole. 1: c waits for more; 0: c is gone (attached or refused). */
static int pull(dp *d, preauth *c)
{
    while (c->got < sizeof c->buf) {
        ssize_t k = recv(c->fd, c->buf + c->got, sizeof c->buf - c->got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (k <= 0) {
            char why[96];
            if (k < 0) snprintf(why, sizeof why, "reading its ticket: %s", strerror(errno));
            else snprintf(why, sizeof why, "closed before its ticket (%u of %u bytes)", c->got, UVPN_TICKET_LEN);
            refuse(d, c, why);
            return 0;
        }
        uint8_t before = c->got;
        c->got = (uint8_t)(c->got + k);
        if (before < UVPN_MAGIC_LEN && c->got >= UVPN_MAGIC_LEN && memcmp(c->buf, UVPN_TICKET_MAGIC, UVPN_MAGIC_LEN) != 0) {
            refuse(d, c, "bad magic: not a UVPN ticket");
            return 0;
        }
    }
    check(d, c);
    return 0;
}

void data_event(dp *d, void *conn) { pull(d, conn); }

/* One accepted connection: admitted within the limits, then its ticket read (on loopback it is
 * usually there already: no epoll registration then). */
static void admit(dp *d, int fd, const struct sockaddr_storage *ss)
{
    dp_data *x = &d->data;
    addr16 peer;
    char text[72];
    if (addr16_sock(ss, &peer) != 0) {
        close(fd);
        return;
    }
    addr_text(&peer, text, sizeof text);
    uint64_t source = source_key(&peer);
    uintptr_t k = (uintptr_t)map_get(&x->by_source, source);
    preauth *c = k < x->per_source && x->pending < x->total ? calloc(1, sizeof *c) : NULL;
    if (!c || map_put(&x->by_source, source, (void *)(k + 1)) != 0) {
        refusal(d, text, "too many unauthenticated connections (limits %u per source, %u in all)", x->per_source, x->total);
        free(c);
        close(fd);
        return;
    }
    x->pending++;
    c->fd = fd;
    c->peer = peer;
    c->source = source;
    memcpy(c->peer_text, text, sizeof text);
    c->at = d->now;
    c->h.kind = H_DATA;
    c->h.obj = c;
    dl_push(&x->preauth_fifo, &c->fifo);
    if (pull(d, c)) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = &c->h};
        if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) != 0) refuse(d, c, "cannot watch the connection");
        else c->watched = 1;
    }
}

/* The listening socket's interest in new connections (off while paused). */
static void listening(dp *d, int on)
{
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &d->data.h};
    epoll_ctl(d->ep, EPOLL_CTL_MOD, d->data.fd, &ev);
}

void data_accept(dp *d)
{
    dp_data *x = &d->data;
    for (int i = 0; i < 256; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(x->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            /* Out of descriptors or memory: the pending connection stays queued and the socket
             * readable, so the loop would spin; new connections wait ACCEPT_PAUSE_MS instead. */
            if (d->now - x->logged_at >= 60000) {
                dp_log(d, "data port: accept failed: %s; pausing new connections for %d ms (logged once a minute)",
                       strerror(errno), ACCEPT_PAUSE_MS);
                x->logged_at = d->now;
            }
            x->paused_until = d->now + ACCEPT_PAUSE_MS;
            listening(d, 0);
            return;
        }
        admit(d, fd, &ss);
    }
}

int64_t data_timers(dp *d)
{
    dp_data *x = &d->data;
    int64_t next = INT64_MAX;
    if (x->paused_until && x->paused_until <= d->now) {
        x->paused_until = 0;
        listening(d, 1);
    }
    if (x->paused_until) next = x->paused_until;
    while (!dl_empty(&x->preauth_fifo)) {
        preauth *c = DL_ENTRY(x->preauth_fifo.next, preauth, fifo);
        int64_t at = c->at + x->handshake_ms;
        if (at > d->now) {
            if (at < next) next = at;
            break;
        }
        char why[64];
        snprintf(why, sizeof why, "no ticket within %u ms", x->handshake_ms);
        refuse(d, c, why);
    }
    while (!dl_empty(&x->expect_fifo)) {
        expect *e = DL_ENTRY(x->expect_fifo.next, expect, fifo);
        int64_t at = e->at + x->ticket_ms;
        if (at > d->now) {
            if (at < next) next = at;
            break;
        }
        uint32_t id = e->id;
        expect_free(d, e);
        uint8_t b[4];
        put32(b, id);
        dp_event(d, EV_DATA_EXPIRED, b, sizeof b); /* (before the end it causes) */
        objhead *o = map_get(&d->conns, id);
        if (o && o->kind == K_SESS) sess_abort(d, (sess *)o, SF_RST_NOAPP, "no data connection");
        else if (o) relay_close(d, (relay *)o, 0, "no data connection");
    }
    return next;
}

void data_free(dp *d)
{
    dp_data *x = &d->data;
    while (!dl_empty(&x->preauth_fifo)) {
        preauth *c = DL_ENTRY(x->preauth_fifo.next, preauth, fifo);
        close(c->fd);
        preauth_free(d, c);
    }
    while (!dl_empty(&x->expect_fifo)) expect_free(d, DL_ENTRY(x->expect_fifo.next, expect, fifo));
    if (x->fd >= 0) close(x->fd);
    x->fd = -1;
    map_free(&x->by_source);
    map_free(&x->expects);
}
