/* session.c: the sessions of the data plane (see dp.h; docs/PROTOCOL.md, "Sessions between
 * routers"). A session carries one virtual TCP connection between its opener (the router of the
 * client, which dialed the link) and its answerer (the router of the listener).
 *
 * Streams. Each direction's stream has positions 0 .. N-1 for its bytes and N for its FIN. The
 * sender keeps every byte the receiver has not acknowledged (the replay buffer, memory), reads
 * from its program only while the receiver's window allows (ack + window advertised in every
 * session frame), and while the link is down keeps reading into memory up to the session window
 * and then into the spool. The receiver writes bytes to its program as they come; what the
 * program does not take waits in the receive buffer, which the window bounds. It advertises a
 * window of --session-window plus a bandwidth-delay allowance beyond what its program took, and
 * sends an ACK on its own only when that end moved by a quarter window, on a FIN and after a
 * resume: acknowledgements otherwise ride on the frames going the other way. No timer runs per
 * session.
 *
 * Ends. The answerer, once its FIN is acknowledged and the opener's FIN is received, sends
 * CLOSE and keeps a TIME_WAIT entry until a PONG shows the opener read it; the opener finishes on
 * CLOSE. Each then writes what its program has not taken yet and closes. A reset (RST) resets
 * both programs. Every session ends with exactly one EV_END event. */
#include "router/core/dp.h"
#include "common/bytes.h"
#include "common/netio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define APP_BUDGET (1024 * 1024)  /* bytes read from one program per turn */
#define POOL_MAX 4                /* links per peer */

static uint64_t sid_key(const uint8_t sid[UVPN_NONCE_LEN])
{
    uint64_t k;
    memcpy(&k, sid, 8);
    return k;
}

static const char *sid_hex(const sess *s, char out[13])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[2 * i] = hx[s->sid[i] >> 4];
        out[2 * i + 1] = hx[s->sid[i] & 15];
    }
    out[12] = 0;
    return out;
}

/* Bytes of our stream (without the FIN position). */
static uint64_t data_end(const sess *s) { return s->snd_read; }

static int fin_acked(const sess *s) { return s->app_eof && s->peer_ack == s->snd_read + 1; }

static uint64_t rcv_bytes(const sess *s) { return s->rcv_fin != NO_FIN ? s->rcv_fin : s->rcv_nxt; }

sess *sess_new(dp *d, uint32_t id, int opener)
{
    sess *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o.id = id;
    s->o.kind = K_SESS;
    s->opener = (uint8_t)opener;
    s->app.fd = -1;
    s->app.h.kind = H_APP;
    s->app.h.obj = s;
    bq_init(&s->snd, &d->mem, 0);
    bq_init(&s->rcv, &d->mem, 0);
    spool_init(&s->sp, &d->spool);
    s->rcv_fin = NO_FIN;
    s->rate_t = d->now;
    if (map_put(&d->conns, id, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void sess_free(dp *d, sess *s)
{
    (void)d;
    bq_clear(&s->snd);
    bq_clear(&s->rcv);
    spool_close(&s->sp);
    free(s->ktx);
    free(s->krx);
    free(s);
}

static void set_keys(sess *s, const uint8_t tx[UVPN_KEY_LEN], const uint8_t rx[UVPN_KEY_LEN])
{
    if (!s->ktx) s->ktx = aligned_alloc(64, sizeof(uvpn_gcm));
    if (!s->krx) s->krx = aligned_alloc(64, sizeof(uvpn_gcm));
    if (s->ktx) uvpn_gcm_init(s->ktx, tx);
    if (s->krx) uvpn_gcm_init(s->krx, rx);
    s->ctr_tx = s->ctr_rx = 0;
}

static void drop_keys(sess *s)
{
    free(s->ktx);
    free(s->krx);
    s->ktx = s->krx = NULL;
}

/* Keys for this attachment: opener nonce, answerer nonce. */
static int derive(dp *d, sess *s, const uint8_t n_open[16], const uint8_t n_ans[16])
{
    uint8_t o2a[UVPN_KEY_LEN], a2o[UVPN_KEY_LEN];
    sf_session_keys(d->cfg.key, n_open, n_ans, s->sid, o2a, a2o);
    if (s->opener) set_keys(s, o2a, a2o);
    else set_keys(s, a2o, o2a);
    memset(o2a, 0, sizeof o2a);
    memset(a2o, 0, sizeof a2o);
    return s->ktx && s->krx ? 0 : -1;
}

static void attach(sess *s, rlink *l, uint32_t num)
{
    s->lk = l;
    s->num = num;
    map_put(&l->sessions, num, s);
    l->nsessions++;
}

static void want_send(dp *d, sess *s)
{
    if (s->lk && s->st == S_UP) {
        link_ready(s->lk, s);
        link_mark_dirty(d, s->lk);
    }
}

static void need_link_event(dp *d, uint32_t peer)
{
    uint8_t ev[4];
    put32(ev, peer);
    dp_event(d, EV_NEED_LINK, ev, 4);
}

/* ---- the window ------------------------------------------------------------------------- */

/* Each session may always have this much on its way beyond what its program took, whatever
 * the memory budget: no session starves while others hold the budget. */
#define GRANT_FLOOR (64 * 1024)

/* Keeps dp.granted (windows granted and not yet filled, all sessions) in step with the session's
 * advertised window end and received position; a shrinking grant may let waiters in. */
static void regrant(dp *d, sess *s)
{
    uint64_t g = s->rcv_fin == NO_FIN && s->adv_wend > s->rcv_nxt ? s->adv_wend - s->rcv_nxt : 0;
    if (g < s->granted) d->mem.freed = 1;
    d->granted = d->granted - s->granted + g;
    s->granted = g;
}

/* The end of the window we can grant now: what the program took plus the window and the
 * bandwidth-delay allowance; never less than what we granted before. Within --memory-limit:
 * held memory plus every window granted (what peers may still send) stays within the limit,
 * except GRANT_FLOOR per session; a session held back by it waits in dp.memwait. */
static uint64_t grant_end(dp *d, sess *s)
{
    uint64_t e = s->adv_wend > s->rcv_nxt ? s->adv_wend : s->rcv_nxt;
    if (s->rcv_fin != NO_FIN) return e;
    uint64_t want = s->rcv.base + d->cfg.window + s->bdp;
    if (want <= e) return e;
    uint64_t others = __atomic_load_n(&d->mem.used, __ATOMIC_RELAXED) + d->granted - s->granted;
    uint64_t cap = s->rcv_nxt + (d->cfg.memory_limit > others ? d->cfg.memory_limit - others : 0);
    if (cap < s->rcv.base + GRANT_FLOOR) cap = s->rcv.base + GRANT_FLOOR;
    if (want > cap) {
        want = cap;
        if (!dl_linked(&s->mem)) dl_push(&d->memwait, &s->mem);
    }
    return want > e ? want : e;
}

/* Measures the program's intake over about a round trip and sets the allowance to twice what
 * it takes per round trip (capped): the sender may then keep the path full beyond the window. */
static void measure(dp *d, sess *s)
{
    uint32_t rtt = s->lk ? s->lk->srtt_us : 0;
    int64_t span = d->now - s->rate_t;
    int64_t min_span = rtt / 1000 > 10 ? rtt / 1000 : 10;
    if (span < min_span) return;
    uint64_t took = s->rcv.base - s->rate_deliv;
    uint64_t bdp = span > 0 ? took * rtt / ((uint64_t)span * 1000) * 2 : 0;
    s->bdp = (uint32_t)(bdp > d->cfg.bdp_max ? d->cfg.bdp_max : bdp);
    s->rate_t = d->now;
    s->rate_deliv = s->rcv.base;
}

static int ack_due(dp *d, sess *s)
{
    if (s->ack_now) return 1;
    uint64_t quarter = (d->cfg.window + s->bdp) / 4, g = grant_end(d, s);
    if (g >= s->adv_wend + (quarter > 16384 ? quarter : 16384)) return 1;
    /* A grant held small by the memory budget: the peer has less than a quarter window left. */
    return g >= s->adv_wend + 16384 && s->adv_wend - s->rcv_nxt < quarter;
}

/* ---- frames out ----------------------------------------------------------------------- */

static void head_for(dp *d, sess *s, sf_head *h, int type, uint64_t seq, size_t len)
{
    uint64_t end = grant_end(d, s);
    h->type = (uint8_t)type;
    h->len = (uint16_t)len;
    h->seq = seq;
    h->num = s->num;
    h->ack = s->rcv_nxt;
    uint64_t w = end - s->rcv_nxt;
    h->window = (uint32_t)(w > 0xffffffffu ? 0xffffffffu : w);
    s->adv_ack = s->rcv_nxt;
    s->adv_wend = s->rcv_nxt + h->window;
    s->ack_now = 0;
    regrant(d, s);
}

/* Moves spooled bytes into memory (the replay buffer) so they can be sent: at most `max`. */
static int unspool(dp *d, sess *s, size_t max)
{
    size_t room;
    uint8_t *p = bq_space(&s->snd, max, &room);
    if (!p) return -1;
    long r = spool_take(&s->sp, p, room < max ? room : max);
    if (r < 0) {
        bq_commit(&s->snd, 0);
        dp_log(d, "spool file of session %02x%02x%02x failed: %s", s->sid[0], s->sid[1], s->sid[2], strerror((int)-r));
        return -1;
    }
    bq_commit(&s->snd, (size_t)r);
    /* The program's reads waited for the spool to empty (read_allowance): they go on now, or a
     * program that wrote all it had before the outage would never be read again. */
    if (spool_size(&s->sp) == 0 && s->app.fd >= 0 && s->app.rd_ready) dp_work(d, &s->o.work);
    return 0;
}

int sess_has_output(dp *d, sess *s)
{
    if (s->st != S_UP || !s->lk) return 0;
    if (s->reset_pending) return 1;
    uint64_t lim = s->peer_wend < s->snd_read ? s->peer_wend : s->snd_read;
    if (s->snd_nxt < lim) return 1;
    if (s->app_eof && !s->fin_out && s->snd_nxt == s->snd_read) return 1;
    return ack_due(d, s);
}

static void finish_reset_pending(dp *d, sess *s);
static void check_done(dp *d, sess *s);

void sess_emit(dp *d, rlink *l, sess *s)
{
    if (s->st != S_UP || s->lk != l) return;
    measure(d, s);
    sf_head h;
    if (s->reset_pending) {
        uint8_t why = s->rst_reason;
        head_for(d, s, &h, SF_T_RST, s->snd_nxt, 1);
        link_queue_session(l, s, &h, &why, 1);
        finish_reset_pending(d, s);
        return;
    }
    uint64_t lim = s->peer_wend < s->snd_read ? s->peer_wend : s->snd_read;
    if (s->snd_nxt < lim) {
        if (s->snd_nxt >= s->snd.end) { /* the next bytes are in the spool */
            size_t want = lim - s->snd_nxt > BUFQ_CHUNK ? BUFQ_CHUNK : (size_t)(lim - s->snd_nxt);
            if (unspool(d, s, want) != 0) return;
        }
        size_t n;
        size_t max = lim - s->snd_nxt > SF_MAX_DATA ? SF_MAX_DATA : (size_t)(lim - s->snd_nxt);
        const uint8_t *p = bq_peek(&s->snd, s->snd_nxt, max, &n);
        if (!p || !n) return;
        head_for(d, s, &h, SF_T_DATA, s->snd_nxt, n);
        link_queue_session(l, s, &h, p, n);
        s->snd_nxt += n;
        if (s->snd_nxt > s->snd_max) s->snd_max = s->snd_nxt;
        return;
    }
    if (s->app_eof && !s->fin_out && s->snd_nxt == s->snd_read) {
        head_for(d, s, &h, SF_T_FIN, s->snd_read, 0);
        link_queue_session(l, s, &h, NULL, 0);
        s->fin_out = 1;
        s->snd_nxt = s->snd_read + 1;
        if (s->snd_nxt > s->snd_max) s->snd_max = s->snd_nxt;
        return;
    }
    if (ack_due(d, s)) {
        head_for(d, s, &h, SF_T_ACK, s->snd_nxt, 0);
        link_queue_session(l, s, &h, NULL, 0);
    }
    check_done(d, s);
}

static void send_opened(dp *d, sess *s, int status)
{
    sf_opened_body b;
    memset(&b, 0, sizeof b);
    b.status = (uint8_t)status;
    if (status == UVPN_ST_OK) {
        memcpy(b.nonce, s->nonce, 16);
        b.flags = s->enc ? SF_F_ENCRYPT : 0;
        b.window = (uint32_t)(grant_end(d, s) - s->rcv_nxt);
        s->adv_wend = s->rcv_nxt + b.window;
        regrant(d, s);
    }
    uint8_t body[SF_OPENED_LEN];
    sf_opened_pack(&b, body);
    link_send_ctl(s->lk, UVPN_T_OPENED, s->num, body, sizeof body);
    link_mark_dirty(d, s->lk);
}

/* ---- the end of a session ----------------------------------------------------------------- */

static void end_event(dp *d, sess *s, int clean, const char *why)
{
    if (s->ended) return;
    s->ended = 1;
    uint8_t ev[4 + 1 + 1 + 1 + 8 + 8 + 4 + 8 + 8 + 256];
    put32(ev, s->o.id);
    ev[4] = (uint8_t)clean;
    ev[5] = s->opener;
    ev[6] = s->opened;
    sf_put64(ev + 7, data_end(s));
    sf_put64(ev + 15, rcv_bytes(s));
    put32(ev + 23, (uint32_t)s->reconnects);
    sf_put64(ev + 27, s->replayed);
    sf_put64(ev + 35, s->spooled);
    size_t wl = why ? strlen(why) : 0;
    if (wl > 255) wl = 255;
    if (wl) memcpy(ev + 43, why, wl);
    if (s->opened) { /* counted before the event, so the control plane sees them together */
        dp_stat(&d->n.sessions_live, -1);
        dp_stat(clean ? &d->n.sessions_clean : &d->n.sessions_reset, 1);
    }
    dp_trace("dp.end");
    dp_event(d, EV_END, ev, 43 + wl);
}

/* The session reached S_UP for the first time: from now on it counts. */
static void mark_opened(dp *d, sess *s)
{
    if (s->opened) return;
    s->opened = 1;
    dp_stat(&d->n.sessions_total, 1);
    dp_stat(&d->n.sessions_live, 1);
}

/* Leaves the link: link lost (down), or the session moves or ends (frames kept or dropped). */
static void leave_link(sess *s, int keep_frames)
{
    rlink *l = s->lk;
    if (!l) return;
    if (!l->dead) {
        if (keep_frames) link_keep(l, s);
        else link_cancel(l, s);
    }
    if (map_get(&l->sessions, s->num) == s) map_del(&l->sessions, s->num);
    l->nsessions--;
    dl_del(&s->rdy);
    s->lk = NULL;
    drop_keys(s);
}

static void bury(dp *d, sess *s)
{
    if (s->lk) leave_link(s, 1);
    d->granted -= s->granted;
    s->granted = 0;
    dl_del(&s->timer);
    dl_del(&s->mem);
    uint64_t k = sid_key(s->sid);
    if (map_get(&d->by_sid, k) == s) map_del(&d->by_sid, k);
    if (s->app.fd >= 0) {
        dp_unwatch(d, s->app.fd);
        close(s->app.fd);
        s->app.fd = -1;
    }
    obj_bury(d, &s->o);
}

void app_reset_close(appsock *a)
{
    if (a->fd < 0) return;
    struct linger lg = {1, 0};
    setsockopt(a->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(a->fd); /* closing also removes it from the epoll set */
    a->fd = -1;
}

/* Ends with a reset of our program: never a silent truncation. */
void sess_reset(dp *d, sess *s, const char *why)
{
    if (s->o.dead) return;
    char id[13];
    dp_log(d, "session %s: reset (%s) after %llu bytes sent, %llu received", sid_hex(s, id), why,
           (unsigned long long)data_end(s), (unsigned long long)rcv_bytes(s));
    app_reset_close(&s->app);
    end_event(d, s, 0, why);
    bury(d, s);
}

/* The session is over here: the peer must learn it (RST) when it can. */
void sess_abort(dp *d, sess *s, int reason, const char *why)
{
    if (s->o.dead) return;
    if (s->st == S_UP && s->lk) {
        s->reset_pending = 1;
        s->rst_reason = (uint8_t)reason;
        app_reset_close(&s->app);
        end_event(d, s, 0, why);
        char id[13];
        dp_log(d, "session %s: reset (%s) after %llu bytes sent, %llu received", sid_hex(s, id), why,
               (unsigned long long)data_end(s), (unsigned long long)rcv_bytes(s));
        want_send(d, s); /* the RST goes out, then the session is freed */
        map_del(&d->conns, s->o.id);
        s->o.id = 0;      /* the handle is no longer the control plane's */
        return;
    }
    if ((s->st == S_DOWN || s->st == S_RESUMING) && !s->reset_pending) {
        /* Keep it until a resume lets the RST through (or the outage limit passes). */
        char id[13];
        dp_log(d, "session %s: reset (%s) after %llu bytes sent, %llu received", sid_hex(s, id), why,
               (unsigned long long)data_end(s), (unsigned long long)rcv_bytes(s));
        app_reset_close(&s->app);
        end_event(d, s, 0, why);
        s->reset_pending = 1;
        s->rst_reason = (uint8_t)reason;
        map_del(&d->conns, s->o.id);
        s->o.id = 0;
        return;
    }
    if (s->st == S_OPENING && s->lk) {
        /* OPEN is out: the answerer will open; tell it with RST once OPENED comes. */
        s->reset_pending = 1;
        s->rst_reason = (uint8_t)reason;
        app_reset_close(&s->app);
        end_event(d, s, 0, why);
        map_del(&d->conns, s->o.id);
        s->o.id = 0;
        return;
    }
    sess_reset(d, s, why);
}

static void finish_reset_pending(dp *d, sess *s)
{
    /* Called once the RST is queued (or cannot be): the END event went out when the reset was
     * decided. */
    bury(d, s);
}

static void finish_clean(dp *d, sess *s)
{
    if (s->app.fd >= 0) {
        dp_unwatch(d, s->app.fd);
        close(s->app.fd);
        s->app.fd = -1;
    }
    end_event(d, s, 1, NULL);
    bury(d, s);
}

/* Checks whether the session's protocol part is over (CLOSE), and whether the local part (what
 * our program has not taken yet) is done. */
static void check_done(dp *d, sess *s)
{
    if (s->o.dead || s->reset_pending) return;
    if (s->st == S_UP && !s->opener && !s->close_out && fin_acked(s) && s->rcv_fin != NO_FIN && s->lk) {
        sf_head h;
        head_for(d, s, &h, SF_T_CLOSE, s->snd_nxt, 0);
        link_queue_session(s->lk, s, &h, NULL, 0);
        link_mark_dirty(d, s->lk);
        s->close_out = 1;
        timewait_add(d, s->lk, s);
        leave_link(s, 1);
        s->st = S_DRAIN;
    }
    if (s->st == S_DRAIN && bq_size(&s->rcv) == 0) {
        if (s->app.fd >= 0 && !s->app.wr_shut) {
            shutdown(s->app.fd, SHUT_WR);
            s->app.wr_shut = 1;
        }
        finish_clean(d, s);
    }
}

/* ---- the program's side ------------------------------------------------------------------ */

static void app_failed(dp *d, sess *s, const char *what, int err)
{
    char why[128];
    snprintf(why, sizeof why, "application connection failed: %s: %s", what, strerror(err));
    sess_abort(d, s, SF_RST_APP, why);
}

/* Writes what waits in the receive buffer; then the write side is shut once the FIN is in. */
static void app_write(dp *d, sess *s)
{
    while (s->app.wr_ready && bq_size(&s->rcv) > 0) {
        struct iovec iov[64];
        int k = bq_iov(&s->rcv, iov, 64);
        ssize_t w = writev(s->app.fd, iov, k);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                s->app.wr_ready = 0;
                break;
            }
            app_failed(d, s, "write", errno);
            return;
        }
        bq_trim(&s->rcv, s->rcv.base + (uint64_t)w);
        size_t total = 0;
        for (int i = 0; i < k; i++) total += iov[i].iov_len;
        if ((size_t)w < total) s->app.wr_ready = 0;
    }
    if (s->rcv_fin != NO_FIN && bq_size(&s->rcv) == 0 && !s->app.wr_shut && s->st != S_DRAIN) {
        shutdown(s->app.fd, SHUT_WR);
        s->app.wr_shut = 1;
    }
    if (ack_due(d, s)) want_send(d, s);
}

/* How many bytes we may read from our program now, and whether they go to the spool. */
static uint64_t read_allowance(dp *d, sess *s, int *to_spool)
{
    *to_spool = 0;
    if (s->app_eof || s->reset_pending) return 0;
    uint64_t mused = __atomic_load_n(&d->mem.used, __ATOMIC_RELAXED);
    uint64_t mroom = d->cfg.memory_limit > mused ? d->cfg.memory_limit - mused : 0; /* --memory-limit */
    if (s->st == S_UP) {
        if (spool_size(&s->sp) > 0) return 0;
        uint64_t w = s->peer_wend > s->snd_read ? s->peer_wend - s->snd_read : 0;
        return w < mroom ? w : mroom;
    }
    if (s->st != S_DOWN && s->st != S_RESUMING) return 0;
    if (spool_size(&s->sp) == 0 && mroom && bq_size(&s->snd) < d->cfg.window) {
        uint64_t w = d->cfg.window - bq_size(&s->snd);
        return w < mroom ? w : mroom;
    }
    uint64_t per = d->cfg.spool_limit > spool_size(&s->sp) ? d->cfg.spool_limit - spool_size(&s->sp) : 0;
    uint64_t used = __atomic_load_n(&d->spool.used, __ATOMIC_RELAXED);
    uint64_t all = d->cfg.spool_total > used ? d->cfg.spool_total - used : 0;
    *to_spool = 1;
    return per < all ? per : all;
}

static void app_read(dp *d, sess *s)
{
    size_t budget = APP_BUDGET;
    while (s->app.rd_ready && budget > 0 && !s->o.dead) {
        int to_spool;
        uint64_t allow = read_allowance(d, s, &to_spool);
        if (allow == 0) {
            if (__atomic_load_n(&d->mem.used, __ATOMIC_RELAXED) >= d->cfg.memory_limit && !dl_linked(&s->mem))
                dl_push(&d->memwait, &s->mem);
            if (to_spool && !s->spool_full) { /* backpressure, never a drop: the program's writes block */
                s->spool_full = 1;
                char id[13];
                dp_log(d, "session %s: spool limit reached (%s): reading from the application paused until the link returns",
                       sid_hex(s, id), spool_size(&s->sp) >= d->cfg.spool_limit ? "--spool-limit" : "--spool-limit-total");
            }
            return;
        }
        size_t want = allow > BUFQ_CHUNK ? BUFQ_CHUNK : (size_t)allow;
        size_t room;
        uint8_t *p;
        if (to_spool) {
            p = d->scratch;
            room = BUFQ_CHUNK;
        } else {
            p = bq_space(&s->snd, want, &room);
            if (!p) return;
        }
        size_t k = want < room ? want : room;
        ssize_t r = read(s->app.fd, p, k);
        /* Edge-triggered: a short read emptied the socket, and more bytes bring an event; after
         * a hang-up event, read on until EOF. */
        if (r > 0 && (size_t)r < k && !s->app.rd_hup) s->app.rd_ready = 0;
        if (r > 0 && to_spool) {
            int e = spool_append(&s->sp, d->cfg.spool_dir, p, (size_t)r);
            if (e != 0) { /* no disk: keep the bytes in memory, read no more until the link is back */
                dp_log(d, "cannot spool to %s: %s", d->cfg.spool_dir, strerror(-e));
                if (spool_size(&s->sp) == 0) bq_append(&s->snd, p, (size_t)r);
                else spool_append(&s->sp, d->cfg.spool_dir, p, (size_t)r);
            } else {
                s->spooled += (uint64_t)r;
            }
        } else if (!to_spool) {
            bq_commit(&s->snd, r > 0 ? (size_t)r : 0);
        }
        if (r > 0) {
            s->snd_read += (uint64_t)r;
            dp_stat(&d->n.sent, r);
            budget -= (size_t)r < budget ? (size_t)r : budget;
            want_send(d, s);
            continue;
        }
        if (r == 0) {
            s->app_eof = 1;
            s->app.rd_eof = 1;
            want_send(d, s);
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            s->app.rd_ready = 0;
            return;
        }
        app_failed(d, s, "read", errno);
        return;
    }
    if (s->app.rd_ready && !s->o.dead) dp_work(d, &s->o.work); /* budget used up: next turn */
}

void sess_app_io(dp *d, sess *s)
{
    if (s->app.fd < 0) return;
    if (s->app.wr_ready && bq_size(&s->rcv) > 0) app_write(d, s);
    if (s->o.dead) return;
    if (s->rcv_fin != NO_FIN && bq_size(&s->rcv) == 0) app_write(d, s);
    if (s->o.dead) return;
    if (s->app.rd_ready && !s->app_eof) app_read(d, s);
    if (!s->o.dead) check_done(d, s);
}

void sess_app_event(dp *d, sess *s, uint32_t events)
{
    if (s->o.dead || s->app.fd < 0) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->app.rd_ready = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s->app.rd_hup = 1;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) s->app.wr_ready = 1;
    dp_work(d, &s->o.work);
}

void sess_attach_app(dp *d, sess *s, int fd)
{
    s->app.fd = fd;
    app_adopted(fd);
    s->app.h.kind = H_APP;
    if (dp_watch(d, fd, &s->app.h) != 0) {
        s->app.fd = -1;
        close(fd);
        sess_abort(d, s, SF_RST_APP, "cannot watch the application connection");
        return;
    }
    s->app.rd_ready = s->app.wr_ready = 1;
    dp_work(d, &s->o.work);
}

void sess_memory_freed(dp *d)
{
    d->mem.freed = 0; /* those that still find no room join the list again, later */
    while (!dl_empty(&d->memwait)) {
        sess *s = DL_ENTRY(d->memwait.next, sess, mem);
        dl_del(&s->mem);
        if (!s->o.dead) {
            dp_work(d, &s->o.work);
            want_send(d, s); /* a window frozen by the limit may open */
        }
    }
}

/* ---- frames in ---------------------------------------------------------------------------- */

static int on_ack(dp *d, sess *s, const sf_head *h)
{
    if (h->ack < s->peer_ack || h->ack > s->snd_max) return -1;
    if (h->ack > s->peer_ack) {
        s->peer_ack = h->ack;
        bq_trim(&s->snd, h->ack < data_end(s) ? h->ack : data_end(s));
    }
    uint64_t wend = h->ack + h->window;
    if (wend > s->peer_wend) {
        s->peer_wend = wend;
        want_send(d, s);
        if (s->app.rd_ready) dp_work(d, &s->o.work);
    }
    return 0;
}

/* Parks a DATA payload (in the link's input buffer) for sess_deliver: 0, or -1 when the program
 * cannot take it now (the caller buffers it). */
static int park(dp *d, rlink *l, sess *s, const uint8_t *p, size_t n)
{
    if (l->npend == PEND_MAX) sess_deliver(d, l);
    if (s->app.fd < 0 || !s->app.wr_ready || bq_size(&s->rcv) > 0) return -1;
    if (!s->pend_n) s->pend_from = s->rcv_nxt;
    s->pend_n++;
    l->pend[l->npend++] = (pending){s, p, (uint32_t)n};
    return 0;
}

static int on_data(dp *d, rlink *l, sess *s, const sf_head *h, const uint8_t *p)
{
    if (s->rcv_fin != NO_FIN || h->seq != s->rcv_nxt || h->seq + h->len > s->adv_wend) return -1;
    size_t n = h->len;
    if (park(d, l, s, p, n) != 0 && bq_append(&s->rcv, p, n) != 0) return -1;
    s->rcv_nxt += n;
    regrant(d, s);
    dp_stat(&d->n.received, (int64_t)n);
    if (!s->pend_n && ack_due(d, s)) want_send(d, s);
    return 0;
}

/* One session's parked payloads: one writev; the rest into its receive buffer. */
static void deliver_one(dp *d, sess *s, struct iovec *iov, int k)
{
    s->pend_n = 0;
    if (s->o.dead || s->app.fd < 0) return; /* reset meanwhile: nothing to deliver to */
    size_t total = 0;
    for (int i = 0; i < k; i++) total += iov[i].iov_len;
    ssize_t w;
    do w = writev(s->app.fd, iov, k);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN) {
        int e = errno;
        s->rcv.base = s->rcv.end = s->rcv_nxt;
        app_failed(d, s, "write", e);
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    if (done < total) s->app.wr_ready = 0;
    s->rcv.base = s->rcv.end = s->pend_from + done; /* delivered straight from the link's buffer */
    for (int i = 0; i < k; i++) {
        size_t len = iov[i].iov_len, skip = done < len ? done : len;
        done -= skip;
        if (skip < len && bq_append(&s->rcv, (const uint8_t *)iov[i].iov_base + skip, len - skip) != 0) {
            sess_abort(d, s, SF_RST_LIMIT, "out of memory for received bytes");
            return;
        }
    }
    if (ack_due(d, s)) want_send(d, s);
}

void sess_deliver(dp *d, rlink *l)
{
    uint32_t n = l->npend;
    l->npend = 0;
    for (uint32_t i = 0; i < n; i++) {
        sess *s = l->pend[i].s;
        if (!s) continue;
        struct iovec iov[PEND_MAX];
        int k = 0;
        for (uint32_t j = i; j < n; j++) {
            if (l->pend[j].s != s) continue;
            iov[k].iov_base = (void *)l->pend[j].p;
            iov[k].iov_len = l->pend[j].n;
            k++;
            l->pend[j].s = NULL;
        }
        deliver_one(d, s, iov, k);
    }
}

int sess_on_frame(dp *d, rlink *l, sess *s, const sf_head *h, uint8_t *frame)
{
    if (on_ack(d, s, h) != 0) return -1;
    switch (h->type) {
    case SF_T_DATA:
        if (on_data(d, l, s, h, frame + SF_HEAD_LEN) != 0) return -1;
        break;
    case SF_T_ACK:
        break;
    case SF_T_FIN:
        if (s->rcv_fin != NO_FIN || h->seq != s->rcv_nxt) return -1;
        s->rcv_fin = h->seq;
        s->rcv_nxt = h->seq + 1;
        regrant(d, s);
        s->ack_now = 1;
        want_send(d, s);
        dp_work(d, &s->o.work);
        break;
    case SF_T_RST:
        sess_reset(d, s, "peer application reset the connection");
        return 0;
    case SF_T_CLOSE:
        if (!s->opener || !fin_acked(s) || s->rcv_fin == NO_FIN) return -1;
        leave_link(s, 1);
        s->st = S_DRAIN;
        dp_work(d, &s->o.work);
        break;
    }
    if (!s->o.dead) check_done(d, s);
    return 0;
}

/* ---- opening ------------------------------------------------------------------------------ */

static void send_open(dp *d, rlink *l, sess *s)
{
    attach(s, l, l->next_num++);
    random_bytes(s->nonce, 16);
    sf_open_body b;
    memcpy(b.sid, s->sid, 16);
    memcpy(b.nonce, s->nonce, 16);
    b.c = s->c;
    b.flags = s->enc ? SF_F_ENCRYPT : 0;
    s->adv_wend = grant_end(d, s);
    regrant(d, s);
    b.window = (uint32_t)s->adv_wend;
    uint8_t body[SF_OPEN_LEN];
    sf_open_pack(&b, body);
    link_send_ctl(l, UVPN_T_OPEN, s->num, body, sizeof body);
    link_mark_dirty(d, l);
}

/* Tells the control plane that the opening failed (EV_OPENED with the status, then EV_END). */
static void report_open_failed(dp *d, sess *s, int status, const char *why)
{
    uint8_t ev[6];
    put32(ev, s->o.id);
    ev[4] = (uint8_t)status;
    ev[5] = 0;
    dp_event(d, EV_OPENED, ev, sizeof ev);
    end_event(d, s, 0, why);
}

static void fail_open(dp *d, sess *s, int status, const char *why)
{
    report_open_failed(d, s, status, why);
    bury(d, s);
}

void sess_open(dp *d, const uint8_t *p, size_t n)
{
    if (n < 39) return;
    sess *s = sess_new(d, get32(p), 1);
    if (!s) return;
    s->peer = get32(p + 4);
    memcpy(s->sid, p + 8, 16);
    uvpn_connect_unpack(p + 24, UVPN_CONNECT_BODY_LEN, &s->c);
    s->enc = p[38] & 1;
    s->st = S_OPENING;
    map_put(&d->by_sid, sid_key(s->sid), s);
    rlink *l = link_for_peer(d, s->peer);
    s->timer_at = d->now + 2 * (int64_t)d->cfg.dial_ms;
    dl_push(&d->waiting, &s->timer);
    if (l) {
        send_open(d, l, s);
        if (links_of_peer(d, s->peer) < POOL_MAX && l->nsessions > 1) need_link_event(d, s->peer);
    } else {
        need_link_event(d, s->peer);
    }
}

void peer_link_failed(dp *d, uint32_t peer, int status)
{
    for (dnode *x = d->waiting.next; x != &d->waiting;) {
        sess *s = DL_ENTRY(x, sess, timer);
        x = x->next;
        if (s->peer == peer && !s->lk && s->st == S_OPENING) fail_open(d, s, status, "no link to the peer router");
    }
    for (dnode *x = d->down.next; x != &d->down; x = x->next) {
        sess *s = DL_ENTRY(x, sess, timer);
        if (s->opener && s->peer == peer && !s->lk) { /* sessions to resume: keep trying */
            need_link_event(d, peer);
            break;
        }
    }
}

void sess_on_open(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n)
{
    sf_open_body b;
    if (sf_open_unpack(body, n, &b) != UVPN_OK || num == 0 || map_get(&l->sessions, num)) {
        dp_stat(&d->n.refused_protocol, 1);
        link_kill(d, l, "a malformed OPEN");
        return;
    }
    if (map_get(&d->by_sid, sid_key(b.sid))) { /* a session id in use: cannot be ours to answer */
        sf_opened_body r = {.status = UVPN_ST_EINVAL};
        uint8_t out[SF_OPENED_LEN];
        sf_opened_pack(&r, out);
        link_send_ctl(l, UVPN_T_OPENED, num, out, sizeof out);
        link_mark_dirty(d, l);
        return;
    }
    sess *s = sess_new(d, 0x80000000u | (d->next_answer_id++ & 0x7fffffffu), 0);
    if (!s) return;
    memcpy(s->sid, b.sid, 16);
    s->c = b.c;
    s->enc = (b.flags & SF_F_ENCRYPT) || d->cfg.encrypt;
    s->st = S_DIALING;
    attach(s, l, num);
    random_bytes(s->nonce, 16);
    if (derive(d, s, b.nonce, s->nonce) != 0) {
        sess_refuse(d, s, UVPN_ST_EBUSY);
        return;
    }
    s->peer_wend = b.window;
    map_put(&d->by_sid, sid_key(s->sid), s);
    s->timer_at = d->now + d->cfg.dial_ms;
    dl_push(&d->dialing, &s->timer);
    uint8_t ev[4 + 4 + 16 + UVPN_CONNECT_BODY_LEN + 1 + 2 + sizeof ((dp_listener *)0)->host];
    put32(ev, s->o.id);
    put32(ev + 4, l->id);
    memcpy(ev + 8, s->sid, 16);
    uvpn_connect_pack(&s->c, ev + 24);
    ev[38] = s->enc;
    dp_trace("dp.open_rx");
    const dp_listener *to = s->c.proto == 6 ? listener_find(d, s->c.dst_ip, s->c.dst_port) : NULL;
    if (!to) { /* the control plane answers, or refuses with its reason */
        dp_event(d, EV_OPEN_REQ, ev, 39);
        return;
    }
    size_t hl = strlen(to->host);
    put16(ev + 39, to->real_port);
    memcpy(ev + 41, to->host, hl);
    dp_event(d, EV_OPEN_DIALED, ev, 41 + hl); /* first: a failed dial's events follow it */
    sess_dial(d, s, to->host, to->real_port, to->lid);
}

void sess_dial(dp *d, sess *s, const char *host, uint16_t port, const uint8_t lid[UVPN_LID_LEN])
{
    memcpy(s->lid, lid, UVPN_LID_LEN);
    dp_trace("dp.dial");
    int r = dial_start(d, &s->app, host, port, H_DIAL, s);
    if (r < 0) {
        sess_dialed(d, s, -1, -r);
        return;
    }
    int err = dial_finish(&s->app); /* on loopback it is often connected already: no epoll turn */
    if (err != EINPROGRESS) sess_dialed(d, s, s->app.fd, err);
}

void sess_refuse(dp *d, sess *s, int status)
{
    if (s->lk) send_opened(d, s, status);
    char why[64];
    snprintf(why, sizeof why, "refused: status %d", status);
    if (s->app.fd >= 0) {
        dp_unwatch(d, s->app.fd);
        close(s->app.fd);
        s->app.fd = -1;
    }
    end_event(d, s, 0, why);
    bury(d, s);
}

void sess_dialed(dp *d, sess *s, int fd, int err)
{
    dl_del(&s->timer);
    if (err == 0 && write_ticket(d, &s->c, s->lid, fd) != 0) err = errno ? errno : EIO;
    if (err) {
        uint8_t ev[9];
        int status = err == ETIMEDOUT ? UVPN_ST_ETIMEDOUT : UVPN_ST_ECONNREFUSED;
        put32(ev, s->o.id);
        ev[4] = (uint8_t)status;
        put32(ev + 5, (uint32_t)err);
        dp_event(d, EV_DIAL_FAIL, ev, sizeof ev);
        sess_refuse(d, s, status);
        return;
    }
    if (!s->lk) { /* the link went away while we dialed: the opener has given up; the listener
                   * has its ticket, so it must see a reset, not an empty connection */
        sess_reset(d, s, "link to the peer router lost while connecting");
        return;
    }
    s->app.h.kind = H_APP;
    s->app.rd_ready = s->app.wr_ready = 1;
    s->st = S_UP;
    mark_opened(d, s);
    dp_trace("dp.dialed");
    send_opened(d, s, UVPN_ST_OK);
    dp_work(d, &s->o.work);
}

void sess_on_opened(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n)
{
    sess *s = map_get(&l->sessions, num);
    sf_opened_body b;
    if (!s || s->st != S_OPENING || sf_opened_unpack(body, n, &b) != UVPN_OK ||
        (b.status == UVPN_ST_OK && s->enc && !(b.flags & SF_F_ENCRYPT))) { /* (a refusal has no flags) */
        dp_stat(&d->n.refused_protocol, 1);
        link_kill(d, l, "an unexpected or malformed OPENED");
        return;
    }
    dl_del(&s->timer);
    if (b.status != UVPN_ST_OK) {
        leave_link(s, 0);
        if (s->reset_pending) { /* aborted meanwhile: already reported */
            finish_reset_pending(d, s);
            return;
        }
        fail_open(d, s, b.status, "refused by the peer router");
        return;
    }
    s->enc = b.flags & SF_F_ENCRYPT;
    if (derive(d, s, s->nonce, b.nonce) != 0) {
        sess_abort(d, s, SF_RST_LIMIT, "out of memory");
        return;
    }
    s->peer_wend = b.window;
    s->st = S_UP;
    if (s->reset_pending) { /* ended here meanwhile (reported, never counted as opened): RST */
        want_send(d, s);
        return;
    }
    mark_opened(d, s);
    uint8_t ev[6];
    put32(ev, s->o.id);
    ev[4] = UVPN_ST_OK;
    ev[5] = s->enc;
    dp_trace("dp.opened_rx");
    dp_event(d, EV_OPENED, ev, sizeof ev);
    want_send(d, s); /* bytes of the answerer's program may already be on their way */
}

/* ---- link loss and resume ------------------------------------------------------------------ */

static void send_resume(dp *d, rlink *l, sess *s)
{
    attach(s, l, l->next_num++);
    random_bytes(s->nonce, 16);
    sf_resume_body b;
    memcpy(b.sid, s->sid, 16);
    b.recv = s->rcv_nxt;
    memcpy(b.nonce, s->nonce, 16);
    uint64_t e = grant_end(d, s);
    b.window = (uint32_t)(e - s->rcv_nxt);
    s->adv_wend = s->rcv_nxt + b.window;
    regrant(d, s);
    s->st = S_RESUMING;
    uint8_t body[SF_RESUME_LEN];
    sf_resume_pack(&b, body);
    link_send_ctl(l, UVPN_T_RESUME, s->num, body, sizeof body);
    link_mark_dirty(d, l);
}

void sess_detach(dp *d, sess *s, int down)
{
    (void)down;
    leave_link(s, 0);
    switch (s->st) {
    case S_OPENING:
        if (s->reset_pending) finish_reset_pending(d, s);
        else fail_open(d, s, UVPN_ST_ENETUNREACH, "link to the peer router lost while connecting");
        return;
    case S_DIALING:
        return; /* the dial finishes (or times out) and then finds no rlink */
    case S_UP:
    case S_RESUMING:
        if (s->st == S_UP) {
            s->st = S_DOWN;
            s->timer_at = d->now + d->cfg.outage_ms;
            dl_del(&s->timer);
            dl_push(&d->down, &s->timer);
        } else {
            s->st = S_DOWN;
        }
        s->fin_out = 0;
        if (s->app.fd >= 0 && s->app.rd_ready) dp_work(d, &s->o.work); /* reads go on, into memory or the spool */
        if (s->opener) {
            rlink *l = link_for_peer(d, s->peer);
            if (l) send_resume(d, l, s);
            else need_link_event(d, s->peer);
        }
        return;
    default:
        return;
    }
}

void sess_link_up(dp *d, rlink *l)
{
    for (dnode *x = d->waiting.next; x != &d->waiting;) {
        sess *s = DL_ENTRY(x, sess, timer);
        x = x->next;
        if (s->opener && s->peer == l->peer && !s->lk && s->st == S_OPENING) {
            send_open(d, l, s);
        }
    }
    for (dnode *x = d->down.next; x != &d->down;) {
        sess *s = DL_ENTRY(x, sess, timer);
        x = x->next;
        if (s->opener && s->peer == l->peer && !s->lk && s->st == S_DOWN) send_resume(d, l, s);
    }
}

/* Both sides after RESUME/RESUMED: the peer has `recv` positions of our stream. */
static int rewind_to(dp *d, sess *s, uint64_t recv, uint32_t window)
{
    if (recv < s->peer_ack || recv > s->snd_max) return -1;
    uint64_t sent = s->snd_nxt < data_end(s) ? s->snd_nxt : data_end(s);
    uint64_t replay = sent > recv ? sent - recv : 0;
    s->replayed += replay;
    dp_stat(&d->n.replayed, (int64_t)replay);
    dp_stat(&d->n.resumes, 1);
    s->peer_ack = recv;
    bq_trim(&s->snd, recv < data_end(s) ? recv : data_end(s));
    s->snd_nxt = recv;
    s->fin_out = recv > s->snd_read;
    if (recv + window > s->peer_wend) s->peer_wend = recv + window;
    s->reconnects++;
    s->spool_full = 0;
    s->ack_now = 1;
    dl_del(&s->timer);
    char id[13];
    dp_log(d, "session %s: link restored; replaying %llu byte(s)", sid_hex(s, id), (unsigned long long)replay);
    return 0;
}

void sess_on_resume(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n)
{
    sf_resume_body b;
    if (sf_resume_unpack(body, n, &b) != UVPN_OK || num == 0 || map_get(&l->sessions, num)) {
        dp_stat(&d->n.refused_protocol, 1);
        link_kill(d, l, "a malformed RESUME");
        return;
    }
    sf_resumed_body r;
    memset(&r, 0, sizeof r);
    uint8_t out[SF_RESUMED_LEN];
    sess *s = map_get(&d->by_sid, sid_key(b.sid));
    if (s && (s->opener || memcmp(s->sid, b.sid, 16) != 0)) s = NULL;
    if (!s || s->st == S_DRAIN || s->st == S_DIALING) {
        timewait *t = map_get(&d->tw_by_sid, sid_key(b.sid));
        if (t && memcmp(t->sid, b.sid, 16) == 0) {
            r.status = UVPN_ST_OK;
            r.recv = t->recv;
            r.flags = SF_F_ENDED | (t->enc ? SF_F_ENCRYPT : 0);
            random_bytes(r.nonce, 16);
            timewait_free(d, t);
        } else {
            r.status = UVPN_ST_ENOENT;
        }
        sf_resumed_pack(&r, out);
        link_send_ctl(l, UVPN_T_RESUMED, num, out, sizeof out);
        link_mark_dirty(d, l);
        return;
    }
    if (s->lk) leave_link(s, 0); /* the opener gave up on the old link before we noticed */
    if (s->st == S_UP) {
        s->st = S_DOWN;
        s->timer_at = d->now + d->cfg.outage_ms;
    }
    attach(s, l, num);
    random_bytes(s->nonce, 16);
    if (derive(d, s, b.nonce, s->nonce) != 0 || rewind_to(d, s, b.recv, b.window) != 0) {
        r.status = UVPN_ST_EINVAL;
        sf_resumed_pack(&r, out);
        link_send_ctl(l, UVPN_T_RESUMED, num, out, sizeof out);
        link_mark_dirty(d, l);
        sess_reset(d, s, "peer router resumed at a position we never sent");
        return;
    }
    r.status = UVPN_ST_OK;
    r.recv = s->rcv_nxt;
    memcpy(r.nonce, s->nonce, 16);
    r.flags = s->enc ? SF_F_ENCRYPT : 0;
    uint64_t e = grant_end(d, s);
    r.window = (uint32_t)(e - s->rcv_nxt);
    s->adv_wend = s->rcv_nxt + r.window;
    regrant(d, s);
    sf_resumed_pack(&r, out);
    link_send_ctl(l, UVPN_T_RESUMED, num, out, sizeof out);
    s->st = S_UP;
    want_send(d, s);
    dp_work(d, &s->o.work);
}

void sess_on_resumed(dp *d, rlink *l, uint32_t num, const uint8_t *body, size_t n)
{
    sess *s = map_get(&l->sessions, num);
    sf_resumed_body b;
    if (!s || s->st != S_RESUMING || sf_resumed_unpack(body, n, &b) != UVPN_OK) {
        dp_stat(&d->n.refused_protocol, 1);
        link_kill(d, l, "an unexpected or malformed RESUMED");
        return;
    }
    if (b.status != UVPN_ST_OK) {
        leave_link(s, 0);
        if (s->reset_pending) finish_reset_pending(d, s);
        else sess_reset(d, s, "peer router lost the session");
        return;
    }
    if (b.flags & SF_F_ENDED) {
        leave_link(s, 0);
        if (s->reset_pending) {
            finish_reset_pending(d, s);
            return;
        }
        if (!s->app_eof || b.recv != s->snd_read + 1 || s->rcv_fin == NO_FIN) {
            sess_reset(d, s, "peer finished the session without all our bytes");
            return;
        }
        s->peer_ack = b.recv;
        bq_trim(&s->snd, data_end(s));
        dl_del(&s->timer);
        s->st = S_DRAIN;
        dp_work(d, &s->o.work);
        return;
    }
    if (derive(d, s, s->nonce, b.nonce) != 0 || rewind_to(d, s, b.recv, b.window) != 0) {
        dp_stat(&d->n.refused_protocol, 1);
        sess_reset(d, s, "peer router resumed at a position we never sent");
        return;
    }
    s->st = S_UP;
    want_send(d, s);
    dp_work(d, &s->o.work);
}

void sess_timer(dp *d, sess *s)
{
    char why[96];
    switch (s->st) {
    case S_DOWN:
    case S_RESUMING:
        snprintf(why, sizeof why, "outage longer than %u s", d->cfg.outage_ms / 1000);
        if (s->st == S_RESUMING && s->lk && !s->lk->dead) {
            /* Our RESUME is out on a live link: the session ends here now (its program is reset,
             * the control plane told), but stays on the link until the RESUMED, which it answers
             * with RST, instead of the link ending as "unexpected RESUMED". */
            if (!s->reset_pending) sess_abort(d, s, SF_RST_LIMIT, why);
            return;
        }
        if (s->reset_pending) {
            leave_link(s, 0);
            finish_reset_pending(d, s);
            return;
        }
        sess_reset(d, s, why);
        return;
    case S_OPENING:
        if (s->lk && !s->lk->dead) {
            /* The OPEN is out on a live link: its OPENED will come (the answerer answers every
             * OPEN) or the link ends. The session stays on the link, ended for the control
             * plane, so that a late OPENED gets an RST instead of ending the link with every
             * other session on it as "unexpected". */
            if (!s->reset_pending) {
                report_open_failed(d, s, UVPN_ST_ETIMEDOUT, "no answer from the peer router");
                s->reset_pending = 1;
                s->rst_reason = SF_RST_LIMIT;
                map_del(&d->conns, s->o.id);
                s->o.id = 0;
            }
            return;
        }
        if (s->reset_pending) {
            leave_link(s, 0);
            finish_reset_pending(d, s);
            return;
        }
        fail_open(d, s, UVPN_ST_ETIMEDOUT, "no answer from the peer router");
        return;
    case S_DIALING:
        sess_dialed(d, s, s->app.fd, ETIMEDOUT);
        return;
    default:
        return;
    }
}

void sess_snapshot(dp *d, uint32_t token)
{
    size_t cap = 65536, len = 4;
    uint8_t *buf = malloc(cap);
    if (!buf) return;
    put32(buf, token);
    for (size_t i = 0; i < d->conns.cap && d->conns.vals; i++) {
        objhead *o = d->conns.vals[i];
        if (!o || o->kind != K_SESS) continue;
        sess *s = (sess *)o;
        const char *st = s->st == S_UP ? "up" : s->st == S_DOWN || s->st == S_RESUMING ? "down" : s->st == S_DRAIN ? "closing" : "opening";
        char id[13], line[256];
        int k = snprintf(line, sizeof line, "session %s %s %s sent=%llu received=%llu reconnects=%llu replayed=%llu spooled=%llu\n",
                         sid_hex(s, id), s->opener ? "initiator" : "responder", st, (unsigned long long)data_end(s),
                         (unsigned long long)rcv_bytes(s), (unsigned long long)s->reconnects,
                         (unsigned long long)s->replayed, (unsigned long long)s->spooled);
        if (k <= 0 || len + (size_t)k > cap) break;
        memcpy(buf + len, line, (size_t)k);
        len += (size_t)k;
    }
    dp_event(d, EV_SNAPSHOT, buf, len);
    free(buf);
}
