/* loop.c: the data plane's thread (see dp.h): the epoll loop, the command queue it drains and
 * the event queue it fills, timers (each link's keepalive and dead check; first-in-first-out
 * deadlines for dials, outages, sessions waiting for a link, TIME_WAIT entries and the data
 * port's tickets and unauthenticated connections (data.c): each list
 * has one fixed timeout, so its head is always the next to expire), and deferred frees: an
 * object that ends during a turn is freed after the turn, when no epoll event of the batch can
 * point at it any more. */
#include "router/core/dp.h"
#include "common/bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int64_t dp_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The data plane's clock: CLOCK_MONOTONIC, or the hook a test set (dp.clock). */
static int64_t clock_ms(dp *d) { return d->clock ? d->clock() : dp_mono_ms(); }

/* UVPN_TRACE_FILE's descriptor (router/trace.ts), opened by the first dp_init; -1: not tracing. */
static int trace_fd = -2;

static void trace_init(void)
{
    if (trace_fd != -2) return;
    const char *p = getenv("UVPN_TRACE_FILE");
    trace_fd = p ? open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
}

void dp_trace(const char *step)
{
    if (trace_fd < 0) return;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    char b[128];
    int n = snprintf(b, sizeof b, "%lld %d %s\n", (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000, (int)getpid(), step);
    if (write(trace_fd, b, (size_t)n) < 0) trace_fd = -1;
}

void dp_stat(uint64_t *c, int64_t by) { __atomic_fetch_add(c, (uint64_t)by, __ATOMIC_RELAXED); }

void dp_event(dp *d, int type, const uint8_t *p, size_t n)
{
    pthread_mutex_lock(&d->qlock);
    size_t need = d->ev_len + 5 + n;
    if (need > d->ev_cap) {
        size_t cap = d->ev_cap ? d->ev_cap : 65536;
        while (cap < need) cap *= 2;
        uint8_t *b = realloc(d->evs, cap);
        if (!b) { /* no memory for the event: the control plane misses it (logged by count) */
            pthread_mutex_unlock(&d->qlock);
            return;
        }
        d->evs = b;
        d->ev_cap = cap;
    }
    put32(d->evs + d->ev_len, (uint32_t)(n + 1));
    d->evs[d->ev_len + 4] = (uint8_t)type;
    if (n) memcpy(d->evs + d->ev_len + 5, p, n);
    d->ev_len = need;
    pthread_cond_signal(&d->qcond);
    pthread_mutex_unlock(&d->qlock);
}

void dp_log(dp *d, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    dp_event(d, EV_LOG, (const uint8_t *)buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

int dp_watch(dp *d, int fd, handler *h)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = h};
    return epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

void dp_unwatch(dp *d, int fd)
{
    if (fd >= 0) epoll_ctl(d->ep, EPOLL_CTL_DEL, fd, NULL);
}

void dp_work(dp *d, dnode *n)
{
    if (!dl_linked(n)) dl_push(&d->work, n);
}

void obj_bury(dp *d, objhead *o)
{
    if (o->dead) return;
    o->dead = 1;
    map_del(&d->conns, o->id);
    dl_del(&o->work);
    dl_push(&d->grave, &o->work);
}

/* ---- commands ---------------------------------------------------------------------------- */

static void *conn_get(dp *d, const uint8_t *p, int kind)
{
    objhead *o = map_get(&d->conns, get32(p));
    return o && o->kind == kind ? o : NULL;
}

static void close_fd(int fd)
{
    if (fd >= 0) close(fd);
}

/* A program's connection handed over for a session or relay that has already ended (reset
 * meanwhile) or never existed: the program must see a reset, never a clean EOF (a plain
 * close() would send FIN and pass for the end of the stream). */
static void reset_fd(int fd)
{
    appsock a = {.fd = fd};
    app_reset_close(&a);
}

int dp_attach(dp *d, uint32_t id, int fd)
{
    objhead *o = map_get(&d->conns, id);
    dp_trace("dp.attach");
    if (o && o->kind == K_SESS && ((sess *)o)->opener && ((sess *)o)->app.fd < 0) {
        sess_attach_app(d, (sess *)o, fd);
        return 0;
    }
    if (o && o->kind == K_RELAY && !((relay *)o)->dialing && ((relay *)o)->a.fd < 0) {
        relay_attach(d, (relay *)o, fd);
        return 0;
    }
    reset_fd(fd);
    return -1;
}

static void command(dp *d, int type, const uint8_t *p, size_t n)
{
    switch (type) {
    case CMD_LINK_ADD: {
        int fd = n >= 4 ? (int)get32(p) : -1;
        if (!link_add(d, p, n, fd)) close_fd(fd);
        break;
    }
    case CMD_OPEN:
        dp_trace("dp.open");
        sess_open(d, p, n);
        break;
    case CMD_ANSWER_DIAL: {
        sess *s = n >= 14 ? conn_get(d, p, K_SESS) : NULL;
        if (!s || s->st != S_DIALING || s->app.fd >= 0) break;
        char host[256];
        size_t hl = n - 14 < sizeof host - 1 ? n - 14 : sizeof host - 1;
        memcpy(host, p + 14, hl);
        host[hl] = 0;
        sess_dial(d, s, host, get16(p + 4), p + 6);
        break;
    }
    case CMD_ANSWER_REFUSE: {
        sess *s = n >= 5 ? conn_get(d, p, K_SESS) : NULL;
        if (s && s->st == S_DIALING) sess_refuse(d, s, p[4]);
        break;
    }
    case CMD_ATTACH:
        if (n >= 8) dp_attach(d, get32(p), (int)get32(p + 4));
        break;
    case CMD_RELAY_DIAL:
        relay_dial(d, p, n);
        break;
    case CMD_SNAPSHOT:
        if (n >= 4) sess_snapshot(d, get32(p));
        break;
    case CMD_LINK_FAIL:
        if (n >= 5) peer_link_failed(d, get32(p), p[4]);
        break;
    case CMD_LISTENER:
        listener_set(d, p, n);
        break;
    case CMD_DATA_LISTEN:
        data_listen(d, p, n);
        break;
    case CMD_EXPECT:
        data_expect(d, p, n);
        break;
    case CMD_SHUTDOWN:
        d->running = 0;
        break;
    default:
        break;
    }
}

void dp_commands(dp *d)
{
    uint64_t junk;
    while (read(d->wake, &junk, sizeof junk) > 0) {
    }
    pthread_mutex_lock(&d->qlock);
    uint8_t *buf = d->cmds;
    size_t len = d->cmd_len;
    d->cmds = NULL;
    d->cmd_len = d->cmd_cap = 0;
    pthread_mutex_unlock(&d->qlock);
    for (size_t off = 0; off + 4 <= len;) {
        size_t n = get32(buf + off);
        if (n < 1 || off + 4 + n > len) break;
        command(d, buf[off + 4], buf + off + 5, n - 1);
        off += 4 + n;
    }
    free(buf);
}

/* ---- timers -------------------------------------------------------------------------------- */

static int64_t fifo_timers(dp *d)
{
    int64_t next = data_timers(d);
    dnode *lists[] = {&d->dialing, &d->down, &d->waiting};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        while (!dl_empty(lists[i])) {
            sess *s = DL_ENTRY(lists[i]->next, sess, timer);
            if (s->timer_at > d->now) {
                if (s->timer_at < next) next = s->timer_at;
                break;
            }
            dl_del(&s->timer);
            sess_timer(d, s);
        }
    }
    while (!dl_empty(&d->rdialing)) {
        relay *r = DL_ENTRY(d->rdialing.next, relay, timer);
        if (r->timer_at > d->now) {
            if (r->timer_at < next) next = r->timer_at;
            break;
        }
        dl_del(&r->timer);
        relay_timer(d, r);
    }
    while (!dl_empty(&d->timewaits)) {
        timewait *t = DL_ENTRY(d->timewaits.next, timewait, fifo);
        int64_t at = t->at + d->cfg.outage_ms;
        if (at > d->now) {
            if (at < next) next = at;
            break;
        }
        timewait_free(d, t);
    }
    return next;
}

static int turn_timeout(dp *d)
{
    int64_t next = fifo_timers(d);
    for (dnode *n = d->links.next; n != &d->links;) {
        rlink *l = DL_ENTRY(n, rlink, node);
        n = n->next;
        if (!l->dead) link_timers(d, l, &next);
    }
    if (!dl_empty(&d->work) || !dl_empty(&d->dirty)) return 0;
    if (next == INT64_MAX) return -1;
    int64_t ms = next - clock_ms(d);
    return ms <= 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

/* ---- the turn -------------------------------------------------------------------------- */

static void run_work(dp *d)
{
    /* Objects re-added while we run (budget used up) wait for the next turn. */
    dnode batch;
    dl_init(&batch);
    if (dl_empty(&d->work)) return;
    batch.next = d->work.next;
    batch.prev = d->work.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    dl_init(&d->work);
    while (!dl_empty(&batch)) {
        objhead *o = DL_ENTRY(batch.next, objhead, work);
        dl_del(&o->work);
        if (o->dead) continue;
        if (o->kind == K_SESS) sess_app_io(d, (sess *)o);
        else relay_io(d, (relay *)o);
    }
}

static void flush_links(dp *d)
{
    while (!dl_empty(&d->dirty)) {
        rlink *l = DL_ENTRY(d->dirty.next, rlink, dirty);
        dl_del(&l->dirty);
        if (!l->dead) link_flush(d, l);
    }
}

static void bury(dp *d)
{
    while (!dl_empty(&d->grave)) {
        objhead *o = DL_ENTRY(d->grave.next, objhead, work);
        dl_del(&o->work);
        if (o->kind == K_SESS) sess_free(d, (sess *)o);
        else free(o);
    }
    for (dnode *n = d->links.next; n != &d->links;) {
        rlink *l = DL_ENTRY(n, rlink, node);
        n = n->next;
        if (l->dead) link_free(d, l);
    }
}

static void shutdown_all(dp *d)
{
    for (size_t i = 0; i < d->conns.cap; i++) {
        objhead *o = d->conns.vals ? d->conns.vals[i] : NULL;
        if (!o) continue;
        if (o->kind == K_SESS) sess_abort(d, (sess *)o, SF_RST_SHUTDOWN, "router shutting down");
        else relay_close(d, (relay *)o, 1, "router shutting down");
    }
    flush_links(d);
}

/* A wait of at least this long that saw no event frees the spare chunks (bufq.h). */
#define IDLE_TRIM_MS 100

void dp_turn(dp *d, int max_wait_ms)
{
    struct epoll_event evs[256];
    d->now = clock_ms(d);
    int timeout = turn_timeout(d);
    if (max_wait_ms >= 0 && (timeout < 0 || timeout > max_wait_ms)) timeout = max_wait_ms;
    if (timeout < 0) bq_mem_free(&d->mem); /* nothing to wait for: no spare chunks kept */
    int n = epoll_wait(d->ep, evs, 256, timeout);
    d->now = clock_ms(d);
    if (n == 0 && timeout >= IDLE_TRIM_MS) bq_mem_free(&d->mem); /* idle that long: idle is free */
    for (int i = 0; i < n; i++) {
        handler *h = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        switch (h->kind) {
        case H_WAKE:
            dp_trace("dp.commands");
            dp_commands(d);
            break;
        case H_LINK:
            link_io(d, h->obj, e);
            break;
        case H_APP:
            sess_app_event(d, h->obj, e);
            break;
        case H_RELAY_A:
        case H_RELAY_B:
            relay_event(d, h->obj, h->kind == H_RELAY_A ? 0 : 1, e);
            break;
        case H_DATA_LISTEN:
            data_accept(d);
            break;
        case H_DATA:
            data_event(d, h->obj);
            break;
        case H_DIAL: {
            objhead *o = h->obj;
            if (o->kind == K_SESS) {
                sess *s = h->obj;
                if (!o->dead && s->st == S_DIALING) {
                    int err = dial_finish(&s->app);
                    if (err != EINPROGRESS) sess_dialed(d, s, s->app.fd, err);
                }
            } else {
                relay_event(d, h->obj, 1, e);
            }
            break;
        }
        }
    }
    run_work(d);
    if (d->mem.freed) sess_memory_freed(d);
    flush_links(d);
    bury(d);
}

void dp_finish(dp *d)
{
    shutdown_all(d);
    bury(d);
    bq_mem_free(&d->mem);
    listeners_free(d);
    data_free(d);
}

static void *loop_main(void *arg)
{
    dp *d = arg;
    while (d->running) dp_turn(d, -1);
    dp_finish(d);
    pthread_mutex_lock(&d->qlock);
    d->stopped = 1;
    pthread_cond_broadcast(&d->qcond);
    pthread_mutex_unlock(&d->qlock);
    return NULL;
}

int dp_init(dp *d)
{
    map_init(&d->conns);
    map_init(&d->by_sid);
    map_init(&d->tw_by_sid);
    map_init(&d->listeners);
    map_init(&d->data.by_source);
    map_init(&d->data.expects);
    d->data.fd = -1;
    trace_init();
    dnode *lists[] = {&d->links, &d->dirty, &d->work, &d->dialing, &d->down, &d->waiting, &d->timewaits, &d->memwait, &d->rdialing, &d->grave,
                      &d->data.expect_fifo, &d->data.preauth_fifo};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) dl_init(lists[i]);
    d->next_answer_id = 1;
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    d->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->ep < 0 || d->wake < 0) return -errno;
    d->wake_h.kind = H_WAKE;
    d->wake_h.obj = d;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &d->wake_h};
    if (epoll_ctl(d->ep, EPOLL_CTL_ADD, d->wake, &ev) != 0) return -errno;
    d->scratch = malloc(BUFQ_CHUNK);
    if (!d->scratch) return -ENOMEM;
    d->running = 1;
    return 0;
}

int dp_start(dp *d)
{
    int r = pthread_create(&d->thread, NULL, loop_main, d);
    return r ? -r : 0;
}

int dp_post(dp *d, const uint8_t *p, size_t n)
{
    pthread_mutex_lock(&d->qlock);
    int was_empty = d->cmd_len == 0;
    size_t need = d->cmd_len + 4 + n;
    if (need > d->cmd_cap) {
        size_t cap = d->cmd_cap ? d->cmd_cap : 4096;
        while (cap < need) cap *= 2;
        uint8_t *b = realloc(d->cmds, cap);
        if (!b) {
            pthread_mutex_unlock(&d->qlock);
            return -ENOMEM;
        }
        d->cmds = b;
        d->cmd_cap = cap;
    }
    put32(d->cmds + d->cmd_len, (uint32_t)n);
    memcpy(d->cmds + d->cmd_len + 4, p, n);
    d->cmd_len = need;
    pthread_mutex_unlock(&d->qlock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(d->wake, &one, sizeof one);
        (void)w;
    }
    return 0;
}

size_t dp_take_events(dp *d, uint8_t *buf, size_t cap)
{
    pthread_mutex_lock(&d->qlock);
    size_t off = 0;
    while (off + 4 <= d->ev_len) {
        size_t rec = 4 + get32(d->evs + off);
        if (off + rec > cap) break;
        off += rec;
    }
    if (off) { /* (none yet: evs may still be NULL) */
        memcpy(buf, d->evs, off);
        memmove(d->evs, d->evs + off, d->ev_len - off);
        d->ev_len -= off;
    }
    pthread_mutex_unlock(&d->qlock);
    return off;
}
