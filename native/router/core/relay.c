/* relay.c: local relays of the data plane (see dp.h): a virtual connection inside one router's
 * subnet joins the client's data connection (side a) to the listener's (side b, dialed here
 * with its RELAYED ticket), copying both ways with the data plane's scratch buffer and keeping
 * only what a program did not take; half-close is passed on (EOF on one side becomes
 * shutdown(SHUT_WR) on the other), an error on either resets both. Also the dial of a
 * listener shared with the sessions' answerer side: a non-blocking connect and the ticket. */
#include "router/core/dp.h"
#include "common/bytes.h"
#include "common/netio.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUDGET (1024 * 1024)

/* ---- dialing a listener -------------------------------------------------------------------- */

int dial_start(dp *d, appsock *a, const char *host, uint16_t port, int kind, void *obj)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_text(host, port, &ss);
    if (!len) return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    a->fd = fd;
    a->h.kind = kind;
    a->h.obj = obj;
    a->rd_ready = a->wr_ready = a->rd_eof = a->wr_shut = 0;
    int r = dp_watch(d, fd, &a->h);
    if (r != 0) {
        close(fd);
        a->fd = -1;
        return r;
    }
    return 0;
}

int dial_finish(appsock *a)
{
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) return errno;
    if (err) return err;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(a->fd, (struct sockaddr *)&ss, &sl) != 0) return errno == ENOTCONN ? EINPROGRESS : errno;
    return 0;
}

int write_ticket(dp *d, const uvpn_connect *c, const uint8_t lid[UVPN_LID_LEN], int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
    int port = sa_port((struct sockaddr *)&ss, sl);
    uvpn_ticket t;
    memset(&t, 0, sizeof t);
    t.kind = UVPN_TK_RELAYED;
    t.src_ip = c->src_ip;
    t.src_port = c->src_port;
    t.dst_ip = c->dst_ip;
    t.dst_port = c->dst_port;
    memcpy(t.lid, lid, UVPN_LID_LEN);
    t.bound_port = (uint16_t)(port < 0 ? 0 : port);
    t.issued = now_real_ms();
    if (random_bytes(t.tid, sizeof t.tid) != 0) return -1;
    uint8_t b[UVPN_TICKET_LEN];
    uvpn_ticket_pack(d->cfg.key, &t, b);
    ssize_t w = send(fd, b, sizeof b, MSG_NOSIGNAL);
    if (w != (ssize_t)sizeof b) {
        errno = w < 0 ? errno : EIO;
        return -1;
    }
    return 0;
}

/* ---- local relays ------------------------------------------------------------------------ */

static void relay_ready_event(dp *d, relay *r, int status, int err)
{
    uint8_t ev[9];
    put32(ev, r->o.id);
    ev[4] = (uint8_t)status;
    put32(ev + 5, (uint32_t)err);
    dp_event(d, EV_RELAY_READY, ev, sizeof ev);
}

static void dialed(dp *d, relay *r, int err);

void relay_dial(dp *d, const uint8_t *p, size_t n)
{
    if (n < 28) return;
    relay *r = calloc(1, sizeof *r);
    if (!r) return;
    r->o.id = get32(p);
    r->o.kind = K_RELAY;
    r->a.fd = r->b.fd = -1;
    memcpy(r->lid, p + 6, UVPN_LID_LEN);
    uvpn_connect_unpack(p + 14, UVPN_CONNECT_BODY_LEN, &r->c);
    bq_init(&r->ab, &d->mem, 0);
    bq_init(&r->ba, &d->mem, 0);
    if (map_put(&d->conns, r->o.id, r) != 0) {
        free(r);
        return;
    }
    char host[256];
    size_t hl = n - 28 < sizeof host - 1 ? n - 28 : sizeof host - 1;
    memcpy(host, p + 28, hl);
    host[hl] = 0;
    r->dialing = 1;
    int e = dial_start(d, &r->b, host, get16(p + 4), H_DIAL, r);
    if (e < 0) {
        relay_ready_event(d, r, UVPN_ST_ECONNREFUSED, -e);
        obj_bury(d, &r->o);
        return;
    }
    r->timer_at = d->now + d->cfg.dial_ms;
    dl_push(&d->rdialing, &r->timer);
    int err = dial_finish(&r->b); /* on loopback it is often connected already: no epoll turn */
    if (err != EINPROGRESS) dialed(d, r, err);
}

static void dialed(dp *d, relay *r, int err)
{
    dl_del(&r->timer);
    r->dialing = 0;
    if (err == 0 && write_ticket(d, &r->c, r->lid, r->b.fd) != 0) err = errno ? errno : EIO;
    if (err) {
        relay_ready_event(d, r, err == ETIMEDOUT ? UVPN_ST_ETIMEDOUT : UVPN_ST_ECONNREFUSED, err);
        if (r->b.fd >= 0) close(r->b.fd);
        r->b.fd = -1;
        obj_bury(d, &r->o);
        return;
    }
    r->b.h.kind = H_RELAY_B;
    r->b.rd_ready = r->b.wr_ready = 1;
    dp_stat(&d->n.relays_total, 1);
    dp_stat(&d->n.relays_live, 1);
    relay_ready_event(d, r, UVPN_ST_OK, 0);
}

void relay_timer(dp *d, relay *r)
{
    if (r->dialing) dialed(d, r, ETIMEDOUT);
}

void app_adopted(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

void relay_attach(dp *d, relay *r, int fd)
{
    r->a.fd = fd;
    app_adopted(fd);
    r->a.h.kind = H_RELAY_A;
    r->a.h.obj = r;
    if (dp_watch(d, fd, &r->a.h) != 0) {
        close(fd);
        r->a.fd = -1;
        relay_close(d, r, 1, "cannot watch the data connection");
        return;
    }
    r->a.rd_ready = r->a.wr_ready = 1;
    dp_work(d, &r->o.work);
}

void relay_close(dp *d, relay *r, int reset, const char *why)
{
    if (r->o.dead) return;
    appsock *s[2] = {&r->a, &r->b};
    for (int i = 0; i < 2; i++) {
        if (s[i]->fd < 0) continue;
        dp_unwatch(d, s[i]->fd);
        if (reset) app_reset_close(s[i]);
        else close(s[i]->fd);
        s[i]->fd = -1;
    }
    bq_clear(&r->ab);
    bq_clear(&r->ba);
    dl_del(&r->timer);
    if (!r->dialing) {
        uint8_t ev[4 + 1 + 8 + 8 + 128];
        put32(ev, r->o.id);
        ev[4] = (uint8_t)reset;
        sf_put64(ev + 5, r->up);
        sf_put64(ev + 13, r->down);
        size_t wl = why ? strlen(why) : 0;
        if (wl > 127) wl = 127;
        if (wl) memcpy(ev + 21, why, wl);
        dp_event(d, EV_RELAY_END, ev, 21 + wl);
        dp_stat(&d->n.relays_live, -1);
        dp_stat(&d->n.local_up, (int64_t)r->up);
        dp_stat(&d->n.local_down, (int64_t)r->down);
    }
    obj_bury(d, &r->o);
}

void relay_event(dp *d, relay *r, int side, uint32_t events)
{
    if (r->o.dead) return;
    if (side == 1 && r->dialing) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = dial_finish(&r->b);
        if (err != EINPROGRESS) dialed(d, r, err);
        return;
    }
    appsock *a = side == 0 ? &r->a : &r->b;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) a->rd_ready = 1;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) a->wr_ready = 1;
    dp_work(d, &r->o.work);
}

/* One direction: from -> to, with q holding what `to` did not take. 0, or -errno on failure. */
static int pump(dp *d, appsock *from, appsock *to, bufq *q, uint64_t *count, int *more)
{
    while (to->wr_ready && bq_size(q) > 0) {
        struct iovec iov[16];
        int k = bq_iov(q, iov, 16);
        ssize_t w = writev(to->fd, iov, k);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                to->wr_ready = 0;
                break;
            }
            return -errno;
        }
        bq_trim(q, q->base + (uint64_t)w);
    }
    size_t budget = RELAY_BUDGET;
    while (bq_size(q) == 0 && from->rd_ready && !from->rd_eof && to->wr_ready && budget > 0) {
        ssize_t r = read(from->fd, d->scratch, BUFQ_CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                from->rd_ready = 0;
                break;
            }
            return -errno;
        }
        if (r == 0) {
            from->rd_eof = 1;
            break;
        }
        *count += (uint64_t)r;
        budget -= (size_t)r < budget ? (size_t)r : budget;
        ssize_t w = send(to->fd, d->scratch, (size_t)r, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) return -errno;
        if (w < 0) w = 0;
        if (w < r) {
            to->wr_ready = 0;
            if (bq_append(q, d->scratch + w, (size_t)(r - w)) != 0) return -ENOMEM;
        }
    }
    if (budget == 0) *more = 1;
    if (from->rd_eof && bq_size(q) == 0 && !to->wr_shut) {
        shutdown(to->fd, SHUT_WR);
        to->wr_shut = 1;
    }
    return 0;
}

void relay_io(dp *d, relay *r)
{
    if (r->a.fd < 0 || r->b.fd < 0) return;
    int more = 0;
    int e = pump(d, &r->a, &r->b, &r->ab, &r->up, &more);
    if (e == 0) e = pump(d, &r->b, &r->a, &r->ba, &r->down, &more);
    if (e != 0) {
        char why[96];
        snprintf(why, sizeof why, "%s", strerror(-e));
        relay_close(d, r, 1, why);
        return;
    }
    if (r->a.wr_shut && r->b.wr_shut) {
        relay_close(d, r, 0, NULL);
        return;
    }
    if (more) dp_work(d, &r->o.work);
}
