/* link.c: router links of the data plane (see dp.h): a link is a TCP connection to a peer
 * router, authenticated by the control plane's handshake and handed over here with its two
 * direction keys and sequence counters. Input: read until the socket is drained, frames cut
 * from the buffer (sf_next), link frames checked with HMAC-SHA256 and their sequence number,
 * session frames with their session's AES-GCM key and frame counter (decrypted in place), then
 * dispatched; DATA payloads stay in the input buffer and go to their programs with one writev
 * per session per read (sess_deliver: before the buffer moves, and before any other frame, so
 * the order of a session's events holds); short reads end an edge (edge-triggered epoll); anything
 * that fails ends the link (its sessions wait to be resumed), never a session. Output: a queue
 * of frames written with writev, payloads pointing into the sessions' replay buffers (no copy),
 * filled from the sessions that have something to send, round robin, one frame each per round,
 * while less than OUT_HIGH is queued. Keepalive: a PING every keepalive period, whose PONG
 * gives the round-trip time and confirms that the peer has read everything sent before it (which
 * retires TIME_WAIT entries); nothing received for dead_ms ends the link. */
#include "router/core/dp.h"
#include "common/bytes.h"
#include "common/netio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_CAP (1024 * 1024)
#define OUT_HIGH (1024 * 1024)
#define IOV_BATCH 256
#define FLUSH_BUDGET (8 * 1024 * 1024)

/* ---- output queue ---------------------------------------------------------------------- */

static qframe *q_push(outq *o)
{
    if (o->count == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 64;
        qframe *q = malloc(cap * sizeof *q);
        if (!q) return NULL;
        for (uint32_t i = 0; i < o->count; i++) q[i] = o->q[(o->head + i) % o->cap];
        free(o->q);
        o->q = q;
        o->cap = cap;
        o->head = 0;
    }
    qframe *f = &o->q[(o->head + o->count) % o->cap];
    o->count++;
    f->hlen = f->tlen = 0;
    f->pay = NULL;
    f->pay_len = 0;
    f->own = NULL;
    f->ct_own = 0;
    f->s = NULL;
    return f;
}

/* A ciphertext buffer of SF_MAX_DATA bytes: a spare, or a fresh one (NULL: no memory). */
static uint8_t *ct_take(outq *o)
{
    o->ct_used = 1;
    return o->nct ? o->ct[--o->nct] : malloc(SF_MAX_DATA);
}

/* Frees what a frame owns (a ciphertext buffer goes back to the spares while there is room). */
static void own_release(outq *o, qframe *f)
{
    if (f->ct_own && o->nct < CT_SPARES) o->ct[o->nct++] = f->own;
    else free(f->own);
    f->own = NULL;
    f->ct_own = 0;
}

/* The spare ciphertext buffers are freed. */
static void ct_trim(outq *o)
{
    while (o->nct) free(o->ct[--o->nct]);
}

static size_t qf_len(const qframe *f) { return (size_t)f->hlen + f->pay_len + f->tlen; }

static void q_pop(outq *o)
{
    qframe *f = &o->q[o->head];
    o->bytes -= qf_len(f);
    own_release(o, f);
    o->head = (o->head + 1) % o->cap;
    o->count--;
}

static void q_free(outq *o)
{
    while (o->count) q_pop(o);
    ct_trim(o);
    free(o->q);
    memset(o, 0, sizeof *o);
}

void link_mark_dirty(dp *d, rlink *l)
{
    if (!l->dead && !dl_linked(&l->dirty)) dl_push(&d->dirty, &l->dirty);
}

void link_ready(rlink *l, sess *s)
{
    if (!dl_linked(&s->rdy)) dl_push(&l->ready, &s->rdy);
}

int link_send_ctl(rlink *l, int type, uint32_t reqid, const uint8_t *body, size_t n)
{
    if (l->dead) return -1;
    size_t len = uvpn_frame_len(n);
    uint8_t *buf = malloc(len);
    qframe *f = buf ? q_push(&l->out) : NULL;
    if (!f) {
        free(buf);
        return -1;
    }
    uvpn_encode(buf, len, l->ksend, type, l->sseq++, reqid, body, n);
    f->own = buf;
    f->pay = buf;
    f->pay_len = (uint32_t)len;
    l->out.bytes += len;
    return 0;
}

void link_queue_session(rlink *l, sess *s, const sf_head *h, const uint8_t *pay, size_t n)
{
    if (l->dead) return;
    qframe *f = q_push(&l->out);
    if (!f) return;
    sf_head_pack(f->hdr, h);
    uint64_t ctr = s->ctr_tx++;
    if (h->type == SF_T_DATA) {
        f->hlen = SF_HEAD_LEN;
        f->tlen = SF_TAG_LEN;
        f->pay_len = (uint32_t)n;
        if (s->enc) {
            uint8_t *ct = ct_take(&l->out); /* reused: no allocation per frame */
            if (!ct) { /* no memory: the frame is not queued (the session's counter moved on, so
                        * the peer will refuse what follows and the link resumes) */
                l->out.count--;
                return;
            }
            uvpn_gcm_seal_frame(s->ktx, ctr, f->hdr, pay, ct, n, 1, f->hdr + SF_HEAD_LEN);
            f->own = ct;
            f->ct_own = 1;
            f->pay = ct;
        } else {
            uvpn_gcm_seal_frame(s->ktx, ctr, f->hdr, pay, NULL, n, 0, f->hdr + SF_HEAD_LEN);
            f->pay = pay;
        }
    } else {
        if (n) memcpy(f->hdr + SF_HEAD_LEN, pay, n);
        sf_seal(s->ktx, ctr, f->hdr, n, s->enc);
        f->hlen = (uint16_t)(SF_HEAD_LEN + n + SF_TAG_LEN);
    }
    f->s = s;
    l->out.bytes += qf_len(f);
}

/* Makes a queued frame independent of its session's memory (its payload copied). */
static void own_payload(qframe *f)
{
    f->s = NULL;
    if (f->pay && !f->own) {
        uint8_t *copy = malloc(f->pay_len ? f->pay_len : 1);
        if (copy) memcpy(copy, f->pay, f->pay_len);
        f->own = copy;
        f->pay = copy;
    }
}

void link_keep(rlink *l, sess *s)
{
    outq *o = &l->out;
    for (uint32_t i = 0; i < o->count; i++) {
        qframe *f = &o->q[(o->head + i) % o->cap];
        if (f->s == s) own_payload(f);
    }
}

void link_cancel(rlink *l, sess *s)
{
    outq *o = &l->out;
    for (uint32_t i = 0; i < o->count; i++) {
        qframe *f = &o->q[(o->head + i) % o->cap];
        if (f->s != s) continue;
        if (i == 0 && o->off > 0) { /* partly written: it must complete, or the stream breaks */
            own_payload(f);
            continue;
        }
        f->s = NULL;
        o->bytes -= qf_len(f);
        own_release(o, f);
        f->pay = NULL;
        f->pay_len = 0;
        f->hlen = f->tlen = 0;
    }
}

/* ---- adding, killing, freeing --------------------------------------------------------------- */

rlink *link_add(dp *d, const uint8_t *p, size_t n, int fd)
{
    if (n < 92 || fd < 0) return NULL;
    rlink *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->in = malloc(IN_CAP);
    if (!l->in) {
        free(l);
        return NULL;
    }
    l->fd = fd;
    l->id = get32(p + 4);
    l->peer = get32(p + 8);
    memcpy(l->ksend, p + 12, UVPN_KEY_LEN);
    memcpy(l->krecv, p + 44, UVPN_KEY_LEN);
    l->sseq = sf_get64(p + 76);
    l->rseq = sf_get64(p + 84);
    l->h.kind = H_LINK;
    l->h.obj = l;
    l->next_num = 1;
    l->ping_next = 1;
    l->last_rx = l->last_tx = l->ping_at = d->now;
    l->srtt_us = 0;
    map_init(&l->sessions);
    dl_init(&l->ready);
    dl_init(&l->timewait);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (dp_watch(d, fd, &l->h) != 0) {
        free(l->in);
        free(l);
        return NULL;
    }
    dl_push(&d->links, &l->node);
    dp_stat(&d->n.links_up, 1);
    l->rd_ready = l->wr_ready = 1;
    if (l->peer) sess_link_up(d, l);
    link_io(d, l, 0); /* bytes that came with the handover (pipelined frames) */
    return l;
}

void link_kill(dp *d, rlink *l, const char *why)
{
    if (l->dead) return;
    l->dead = 1;
    snprintf(l->why, sizeof l->why, "%s", why);
    dp_unwatch(d, l->fd);
    close(l->fd);
    l->fd = -1;
    dl_del(&l->dirty);
    dp_stat(&d->n.links_up, -1);
    dp_stat(&d->n.link_losses, 1);
    /* TIME_WAIT entries on it stay (a RESUME may come on another link) until their deadline. */
    while (!dl_empty(&l->timewait)) {
        timewait *t = DL_ENTRY(l->timewait.next, timewait, on_link);
        dl_del(&t->on_link);
        t->lk = NULL;
    }
    uint64_t unacked = 0;
    uint32_t count = 0;
    size_t k = 0;
    sess **all = l->sessions.count ? malloc(l->sessions.count * sizeof *all) : NULL;
    for (size_t i = 0; all && i < l->sessions.cap; i++)
        if (l->sessions.vals[i]) all[k++] = l->sessions.vals[i];
    for (size_t i = 0; i < k; i++) {
        unacked += all[i]->snd_read - (all[i]->peer_ack < all[i]->snd_read ? all[i]->peer_ack : all[i]->snd_read);
        count++;
    }
    q_free(&l->out);
    for (size_t i = 0; i < k; i++) sess_detach(d, all[i], 1);
    free(all);
    uint8_t ev[4 + 4 + 4 + 8 + 160];
    put32(ev, l->id);
    put32(ev + 4, l->peer);
    put32(ev + 8, count);
    sf_put64(ev + 12, unacked);
    size_t wl = strlen(l->why);
    memcpy(ev + 20, l->why, wl);
    dp_event(d, EV_LINK_DOWN, ev, 20 + wl);
}

void link_free(dp *d, rlink *l)
{
    (void)d;
    dl_del(&l->node);
    q_free(&l->out);
    map_free(&l->sessions);
    free(l->in);
    free(l);
}

rlink *link_for_peer(dp *d, uint32_t peer)
{
    rlink *best = NULL;
    for (dnode *n = d->links.next; n != &d->links; n = n->next) {
        rlink *l = DL_ENTRY(n, rlink, node);
        if (l->dead || l->peer != peer) continue;
        if (!best || l->nsessions < best->nsessions) best = l;
    }
    return best;
}

uint32_t links_of_peer(dp *d, uint32_t peer)
{
    uint32_t k = 0;
    for (dnode *n = d->links.next; n != &d->links; n = n->next) {
        rlink *l = DL_ENTRY(n, rlink, node);
        if (!l->dead && l->peer == peer) k++;
    }
    return k;
}

/* ---- TIME_WAIT ---------------------------------------------------------------------------- */

static void send_ping(dp *d, rlink *l)
{
    uint8_t body[SF_PING_LEN];
    l->ping_token = l->ping_next++;
    sf_put64(body, l->ping_token);
    l->ping_at = d->now;
    if (!l->out.ct_used) ct_trim(&l->out); /* a keepalive period without encrypting: idle is free */
    l->out.ct_used = 0;
    link_send_ctl(l, UVPN_T_PING, 0, body, sizeof body);
    link_mark_dirty(d, l);
}

void timewait_add(dp *d, rlink *l, sess *s)
{
    timewait *t = calloc(1, sizeof *t);
    if (!t) return;
    memcpy(t->sid, s->sid, UVPN_NONCE_LEN);
    t->recv = s->rcv_nxt;
    t->enc = s->enc;
    t->at = d->now;
    t->lk = l;
    t->token = l->ping_next; /* the next PING: sent after the CLOSE, so its PONG follows it */
    dl_push(&l->timewait, &t->on_link);
    dl_push(&d->timewaits, &t->fifo);
    uint64_t key;
    memcpy(&key, t->sid, 8);
    map_put(&d->tw_by_sid, key, t);
    if (!l->ping_token) send_ping(d, l);
}

void timewait_free(dp *d, timewait *t)
{
    uint64_t key;
    memcpy(&key, t->sid, 8);
    if (map_get(&d->tw_by_sid, key) == t) map_del(&d->tw_by_sid, key);
    dl_del(&t->on_link);
    dl_del(&t->fifo);
    free(t);
}

static void on_pong(dp *d, rlink *l, const uint8_t *body, size_t n)
{
    if (n != SF_PING_LEN) return;
    uint64_t token = sf_get64(body);
    if (token != l->ping_token) return;
    l->ping_token = 0;
    uint32_t rtt = (uint32_t)((d->now - l->ping_at) * 1000);
    if (rtt < 100) rtt = 100; /* below the clock's resolution: 0.1 ms */
    l->srtt_us = l->srtt_us ? (l->srtt_us * 7 + rtt) / 8 : rtt;
    for (dnode *x = l->timewait.next; x != &l->timewait;) {
        timewait *t = DL_ENTRY(x, timewait, on_link);
        x = x->next;
        if (t->token <= token) timewait_free(d, t);
    }
    if (!dl_empty(&l->timewait)) send_ping(d, l);
}

/* ---- input --------------------------------------------------------------------------------- */

static void link_frame(dp *d, rlink *l, const uint8_t *frame, size_t len)
{
    uvpn_head h;
    const uint8_t *body;
    int r = uvpn_decode_frame(l->krecv, frame, len, 1, &h, &body);
    if (r != UVPN_OK) {
        dp_stat(r == UVPN_E_MAC ? &d->n.refused_mac : &d->n.refused_frame, 1);
        link_kill(d, l, r == UVPN_E_MAC ? "a link frame failed its MAC" : uvpn_strerror(r));
        return;
    }
    if (h.seq != l->rseq) {
        dp_stat(&d->n.refused_seq, 1);
        link_kill(d, l, "a link frame out of sequence");
        return;
    }
    l->rseq++;
    int opener = l->peer != 0; /* we dialed this link: our sessions on it are ours */
    switch (h.type) {
    case UVPN_T_PING:
        link_send_ctl(l, UVPN_T_PONG, h.reqid, body, h.len);
        link_mark_dirty(d, l);
        break;
    case UVPN_T_PONG:
        on_pong(d, l, body, h.len);
        break;
    case UVPN_T_OPEN:
        if (opener) goto unexpected;
        sess_on_open(d, l, h.reqid, body, h.len);
        break;
    case UVPN_T_RESUME:
        if (opener) goto unexpected;
        sess_on_resume(d, l, h.reqid, body, h.len);
        break;
    case UVPN_T_OPENED:
        if (!opener) goto unexpected;
        sess_on_opened(d, l, h.reqid, body, h.len);
        break;
    case UVPN_T_RESUMED:
        if (!opener) goto unexpected;
        sess_on_resumed(d, l, h.reqid, body, h.len);
        break;
    default:
    unexpected:
        dp_stat(&d->n.refused_protocol, 1);
        link_kill(d, l, "an unexpected link frame");
    }
}

static void session_frame(dp *d, rlink *l, const sf_frame *f, uint8_t *frame)
{
    sess *s = map_get(&l->sessions, f->sh.num);
    if (!s) { /* a session that ended here: frames that crossed its end */
        dp_stat(&d->n.ignored_unknown, 1);
        return;
    }
    if (!s->krx || s->st != S_UP) {
        dp_stat(&d->n.refused_protocol, 1);
        link_kill(d, l, "a session frame before the session was opened or resumed");
        return;
    }
    if (sf_open(s->krx, s->ctr_rx, frame, f->sh.len, s->enc) != UVPN_OK) {
        dp_stat(&d->n.refused_mac, 1);
        char why[96];
        snprintf(why, sizeof why, "a session frame (type %d) failed its MAC", f->sh.type);
        link_kill(d, l, why);
        return;
    }
    s->ctr_rx++;
    if (sess_on_frame(d, l, s, &f->sh, frame) != 0) {
        dp_stat(&d->n.refused_protocol, 1);
        char why[96];
        snprintf(why, sizeof why, "a session frame (type %d) broke the session's rules", f->sh.type);
        link_kill(d, l, why);
    }
}

static void parse(dp *d, rlink *l)
{
    size_t off = 0;
    while (!l->dead) {
        sf_frame f;
        int r = sf_next(l->in + off, l->in_len - off, &f);
        if (r == UVPN_E_SHORT) break;
        if (r != UVPN_OK) {
            dp_stat(&d->n.refused_frame, 1);
            char why[96];
            snprintf(why, sizeof why, "a malformed frame: %s", uvpn_strerror(r));
            link_kill(d, l, why);
            return;
        }
        dp_stat(&d->n.frames_in, 1);
        if (l->npend && !(f.session && f.sh.type == SF_T_DATA)) sess_deliver(d, l); /* in stream order */
        if (f.session) session_frame(d, l, &f, l->in + off);
        else link_frame(d, l, l->in + off, f.len);
        off += f.len;
    }
    sess_deliver(d, l); /* before the buffer moves (and even if the link died: the bytes were received) */
    if (l->dead) return;
    if (off) {
        memmove(l->in, l->in + off, l->in_len - off);
        l->in_len -= off;
    }
}

/* A read or write on the link failed with errno: the link ends with the reason. */
static void io_failed(dp *d, rlink *l, const char *op)
{
    char why[96];
    snprintf(why, sizeof why, "%s failed: %s", op, strerror(errno));
    link_kill(d, l, why);
}

static void link_read(dp *d, rlink *l)
{
    while (!l->dead && l->rd_ready) {
        size_t room = IN_CAP - l->in_len;
        ssize_t r = read(l->fd, l->in + l->in_len, room);
        if (r > 0) {
            l->in_len += (size_t)r;
            l->last_rx = d->now;
            /* Edge-triggered: a short read emptied the socket, and more bytes bring an event;
             * after a hang-up event, read on until EOF. */
            if ((size_t)r < room && !l->rd_hup) l->rd_ready = 0;
            parse(d, l);
            continue;
        }
        if (r == 0) {
            link_kill(d, l, "closed by the peer router");
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            l->rd_ready = 0;
            return;
        }
        io_failed(d, l, "read");
    }
}

void link_io(dp *d, rlink *l, uint32_t events)
{
    if (l->dead) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) l->rd_ready = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) l->rd_hup = 1;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        l->wr_ready = 1;
        link_mark_dirty(d, l);
    }
    link_read(d, l);
}

/* ---- output -------------------------------------------------------------------------------- */

static void fill(dp *d, rlink *l)
{
    while (l->out.bytes < OUT_HIGH && !dl_empty(&l->ready) && !l->dead) {
        sess *s = DL_ENTRY(l->ready.next, sess, rdy);
        dl_del(&s->rdy);
        sess_emit(d, l, s);
        if (!s->o.dead && s->lk == l && sess_has_output(d, s)) link_ready(l, s);
    }
}

static int build_iov(const outq *o, struct iovec *iov, int max)
{
    int k = 0;
    size_t skip = o->off;
    for (uint32_t i = 0; i < o->count && k + 3 <= max; i++) {
        const qframe *f = &o->q[(o->head + i) % o->cap];
        const uint8_t *part[3] = {f->hdr, f->pay, f->hdr + f->hlen};
        size_t plen[3] = {f->hlen, f->pay_len, f->tlen};
        for (int j = 0; j < 3; j++) {
            size_t n = plen[j];
            if (skip >= n) {
                skip -= n;
                continue;
            }
            iov[k].iov_base = (void *)(part[j] + skip);
            iov[k].iov_len = n - skip;
            skip = 0;
            k++;
        }
    }
    return k;
}

static void consume(outq *o, size_t w)
{
    while (w > 0 && o->count) {
        size_t left = qf_len(&o->q[o->head]) - o->off;
        if (w < left) {
            o->off += w;
            return;
        }
        w -= left;
        o->off = 0;
        q_pop(o);
    }
    while (o->count && qf_len(&o->q[o->head]) == 0) q_pop(o); /* cancelled frames */
}

void link_flush(dp *d, rlink *l)
{
    size_t budget = FLUSH_BUDGET;
    while (!l->dead && l->wr_ready && budget > 0) {
        fill(d, l);
        while (l->out.count && qf_len(&l->out.q[l->out.head]) == 0) q_pop(&l->out);
        if (!l->out.count) return;
        struct iovec iov[IOV_BATCH];
        int k = build_iov(&l->out, iov, IOV_BATCH);
        ssize_t w = writev(l->fd, iov, k);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                l->wr_ready = 0;
                return;
            }
            io_failed(d, l, "write");
            return;
        }
        l->last_tx = d->now;
        size_t total = 0;
        for (int i = 0; i < k; i++) total += iov[i].iov_len;
        if ((size_t)w < total) l->wr_ready = 0; /* the socket is full: EPOLLOUT comes when it drains */
        consume(&l->out, (size_t)w);
        budget = (size_t)w < budget ? budget - (size_t)w : 0;
    }
    if (!l->dead && l->wr_ready && (l->out.count || !dl_empty(&l->ready))) link_mark_dirty(d, l);
}

/* ---- timers ------------------------------------------------------------------------------- */

void link_timers(dp *d, rlink *l, int64_t *next)
{
    if (d->now - l->last_rx >= d->cfg.dead_ms) {
        char why[96];
        snprintf(why, sizeof why, "nothing received for %u ms", d->cfg.dead_ms);
        link_kill(d, l, why);
        return;
    }
    if (!l->ping_token && d->now - l->ping_at >= d->cfg.keepalive_ms) send_ping(d, l);
    int64_t dead_at = l->last_rx + d->cfg.dead_ms;
    if (dead_at < *next) *next = dead_at;
    if (!l->ping_token && l->ping_at + d->cfg.keepalive_ms < *next) *next = l->ping_at + d->cfg.keepalive_ms;
}

