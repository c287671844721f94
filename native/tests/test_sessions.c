/* test_sessions.c: a property test of the routers' data plane (router/core: sessions over a
 * router link, resume after a cut, the window, the spool, the timers) on an injected clock.
 *
 * Two data planes run in this one thread, turned by hand (dp_turn without waiting) on a clock
 * the test advances (dp.clock): A, the router of the client (the opener), and B, the router of
 * the listener (the answerer). Their link passes through the test, a socketpair to each, which
 * forwards random amounts in random pieces, holds bytes while the clock moves (the link then
 * dies of silence), flips a byte (a MAC failure) or cuts it; the test also plays the control
 * plane: it dials the listener for B, attaches the client's connection once OPENED, and opens a
 * new link after a random delay (sometimes longer than the outage limit). Every program is a
 * real loopback TCP connection that writes a seeded pseudo-random stream in random pieces,
 * shuts its write side, and reads at its own random rate (a slow reader fills the window, a
 * writer during an outage fills memory and then the spool); now and then one resets its
 * connection midway. A quarter of the connections are local relays of B instead (router/core/
 * relay.c: both programs in B's subnet), held to the same property.
 *
 * Property, per session: every byte a program reads is the next byte its peer wrote (no loss,
 * duplicate, reorder or corruption); a program that reads EOF has all of its peer's bytes; a
 * program that sees a reset (ECONNRESET) has a router that reported the session reset with a
 * reason (EV_END); both routers report it clean only if both streams arrived whole; and once the
 * faults stop, every session ends within a bounded number of steps (a timer that never fires,
 * a window that never reopens, a lost byte: "stuck").
 *
 *   test_sessions [--seed N] [--iterations N] [--verbose]
 * Iteration i runs on seed N + i; a failure prints the seed and the command that repeats it.
 * Ends with "N passed, N failed" (one check per iteration, and that the faults happened). */
#include "router/core/dp.h"
#include "common/bytes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PEER_B 7            /* B's id as A's route knows it */
#define MAXS 4              /* sessions per iteration */
#define LBUF (256 * 1024)   /* bytes the test holds per link direction */
#define FAULT_STEPS 1200    /* steps with faults, then ... */
#define HEAL_STEPS 6000     /* ... at most these without, until every session ended */
#define LOGS 24             /* the data planes' last log lines, shown on a failure */

/* ---- the seeded generator, and the streams' bytes ------------------------------------------ */

static uint64_t rng;

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t n) { return n ? (rng = mix(rng)) % n : 0; }
static int chance(int percent) { return rnd(1000) < (uint64_t)(percent * 10); }

/* Byte `pos` of the stream `key`: one mix per 8 bytes. */
static void stream_fill(uint64_t key, uint64_t pos, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pos + i;
        out[i] = (uint8_t)(mix(key ^ (p >> 3) * 0x2545f4914f6cdd1dull) >> ((p & 7) * 8));
    }
}

/* ---- the clock ---------------------------------------------------------------------------- */

static int64_t now_ms;
static int64_t test_clock(void) { return now_ms; }

/* ---- one iteration's world ------------------------------------------------------------------ */

typedef struct {
    int fd;                   /* the test's end of a program's TCP connection (-1: none, closed) */
    uint64_t key, total, wrote;
    int shut;                 /* write side shut after the whole stream */
    uint64_t got;             /* bytes of the peer's stream read */
    int eof, reset, done;     /* done: closed by the test (complete, reset, or never opened) */
    int aborted;              /* the program reset its connection (SO_LINGER 0) midway */
    int skip;                 /* the server: ticket bytes still to read */
    int eager;                /* percent: how often it reads when it may */
} end_t;

typedef struct {
    int used;
    int relay;                /* a local relay of B (both programs in B's subnet), not a session */
    uint32_t ida, idb;        /* A's id (ours), B's (from EV_OPEN_REQ; a relay: ours, both) */
    uint8_t sid[16];
    int lfd;                  /* the listener: the client connects to it, then B dials it */
    int afd;                  /* the client connection's router side, until attached */
    int refused;              /* never opened: the client's end is closed unchecked */
    int known;                /* B has its listener (CMD_LISTENER): no EV_OPEN_REQ, EV_OPEN_DIALED */
    end_t c, s;               /* the client (A's program), the server (B's) */
    int enda, endb, clean_a, clean_b;
    char why_a[160], why_b[160];
    uint64_t spooled;
} tsess;

typedef struct {
    int ma, mb;               /* the test's ends towards A and B (-1: cut) */
    uint32_t id;
    uint8_t buf[2][LBUF];     /* 0: A to B, 1: B to A */
    size_t len[2];
    int hold;                 /* holding bytes (the link will die of silence) */
} tlink;

#define MAX_LINKS 4096        /* link ids per iteration the test remembers */

typedef struct {
    uint64_t seed;
    dp a, b;
    tsess s[MAXS];
    int nsess, open_at[MAXS];
    tlink L;
    uint32_t next_link;
    uint8_t corrupted[MAX_LINKS]; /* link ids whose bytes the test flipped */
    int64_t relink_at;        /* when the control plane opens the next link (-1: one is up) */
    char spool_dir[64];
    char logs[LOGS][200];
    int nlog;
    char fail[512];
    /* what happened */
    int cuts, corrupts, silences, clean, resets, aborts, relays;
    int known;                /* sessions whose listener B knew (CMD_LISTENER): B answered the OPEN itself */
    int faults;               /* in the steps with faults (programs may abort) */
} world;

static int verbose;
static uint64_t current_seed;

/* A data plane that loops inside a turn never returns to the test's bounded steps. */
static void hung(int sig)
{
    (void)sig;
    char msg[160];
    int n = snprintf(msg, sizeof msg, "FAIL the iteration of seed %" PRIu64 " hung inside the data plane (60 s)\n0 passed, 1 failed\n",
                     current_seed);
    ssize_t k = write(1, msg, (size_t)n);
    (void)k;
    _exit(1);
}
static uint8_t iobuf[256 * 1024], expbuf[256 * 1024];

static void failf(world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(world *w, const char *fmt, ...)
{
    if (w->fail[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->fail, sizeof w->fail, fmt, ap);
    va_end(ap);
}

static void post(dp *d, int type, const uint8_t *body, size_t n)
{
    uint8_t p[256];
    p[0] = (uint8_t)type;
    memcpy(p + 1, body, n);
    if (dp_post(d, p, n + 1) != 0) abort();
}

/* ---- the link through the test --------------------------------------------------------------- */

static void cut(world *w)
{
    tlink *L = &w->L;
    if (L->ma < 0) return;
    close(L->ma);
    close(L->mb);
    L->ma = L->mb = -1;
    L->len[0] = L->len[1] = 0;
    L->hold = 0;
    w->cuts++;
    int64_t delay = chance(70) ? (int64_t)rnd(300) : chance(85) ? 300 + (int64_t)rnd(4000) : 8000 + (int64_t)rnd(6000);
    w->relink_at = now_ms + delay;
}

static void add_link(world *w)
{
    int pa[2], pb[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pa) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pb) != 0) {
        perror("socketpair");
        exit(2);
    }
    tlink *L = &w->L;
    L->ma = pa[0];
    L->mb = pb[0];
    L->id = ++w->next_link;
    L->len[0] = L->len[1] = 0;
    L->hold = 0;
    uint8_t kab[32], kba[32], c[92];
    stream_fill(rnd(UINT64_MAX), 0, kab, 32);
    stream_fill(rnd(UINT64_MAX), 0, kba, 32);
    memset(c, 0, sizeof c);
    put32(c, (uint32_t)pa[1]);
    put32(c + 4, L->id);
    put32(c + 8, PEER_B);
    memcpy(c + 12, kab, 32);
    memcpy(c + 44, kba, 32);
    post(&w->a, CMD_LINK_ADD, c, sizeof c);
    put32(c, (uint32_t)pb[1]);
    put32(c + 8, 0);
    memcpy(c + 12, kba, 32);
    memcpy(c + 44, kab, 32);
    post(&w->b, CMD_LINK_ADD, c, sizeof c);
    w->relink_at = -1;
}

/* Moves up to max bytes in direction dir (read from one side, written to the other); a side
 * that closed (its router ended the link) cuts it. */
static void forward(world *w, int dir, size_t max)
{
    tlink *L = &w->L;
    if (L->ma < 0) return;
    int src = dir ? L->mb : L->ma, dst = dir ? L->ma : L->mb;
    size_t room = LBUF - L->len[dir];
    if (room > max) room = max;
    if (room) {
        ssize_t r = read(src, L->buf[dir] + L->len[dir], room);
        if (r > 0) L->len[dir] += (size_t)r;
        else if (r == 0 || errno != EAGAIN) {
            cut(w);
            return;
        }
    }
    if (L->hold || !L->len[dir]) return;
    ssize_t k = send(dst, L->buf[dir], L->len[dir] < max ? L->len[dir] : max, MSG_NOSIGNAL);
    if (k > 0) {
        memmove(L->buf[dir], L->buf[dir] + k, L->len[dir] - (size_t)k);
        L->len[dir] -= (size_t)k;
    } else if (k < 0 && errno != EAGAIN) {
        cut(w);
    }
}

/* ---- the programs ------------------------------------------------------------------------------ */

static void end_close(end_t *e)
{
    if (e->fd >= 0) close(e->fd);
    e->fd = -1;
    e->done = 1;
}

/* One program's turn: write a piece of its stream (or shut once all is written), read what came. */
static void program(world *w, tsess *t, end_t *e, end_t *peer, const char *name, size_t max)
{
    if (e->fd < 0 || e->done) return;
    if (w->faults && !e->eof && !e->reset && chance(1) && chance(20)) { /* the program resets its connection */
        struct linger lg = {1, 0};
        setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        end_close(e);
        e->aborted = 1;
        w->aborts++;
        return;
    }
    if (e->wrote < e->total && !e->reset) {
        size_t n = e->total - e->wrote;
        if (n > max) n = max;
        if (n > sizeof iobuf) n = sizeof iobuf;
        stream_fill(e->key, e->wrote, iobuf, n);
        ssize_t k = send(e->fd, iobuf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) e->wrote += (uint64_t)k;
        else if (k < 0 && errno != EAGAIN) e->reset = 1;
    }
    if (e->wrote == e->total && !e->shut && !e->reset) {
        shutdown(e->fd, SHUT_WR);
        e->shut = 1;
    }
    while (!e->eof && !e->reset && (int)rnd(100) < e->eager) {
        size_t n = max > sizeof iobuf ? sizeof iobuf : max;
        ssize_t r = recv(e->fd, iobuf, n, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == ECONNRESET) e->reset = 1;
            else if (errno != EAGAIN) failf(w, "session %u: the %s's read failed: %s", t->ida, name, strerror(errno));
            break;
        }
        if (r == 0) {
            if (e->skip > 0) { /* closed before its ticket: the answer was never opened */
                e->eof = 1;
                break;
            }
            if (e->got != peer->total || !peer->shut)
                failf(w, "session %u: the %s read EOF after %" PRIu64 " of %" PRIu64 " bytes (truncated)", t->ida, name,
                      e->got, peer->total);
            e->eof = 1;
            break;
        }
        size_t off = 0;
        if (e->skip > 0) {
            off = (size_t)r < (size_t)e->skip ? (size_t)r : (size_t)e->skip;
            e->skip -= (int)off;
        }
        size_t m = (size_t)r - off;
        if (e->got + m > peer->total) {
            failf(w, "session %u: the %s read %" PRIu64 " bytes of a %" PRIu64 "-byte stream (duplicated)", t->ida, name,
                  e->got + m, peer->total);
            break;
        }
        stream_fill(peer->key, e->got, expbuf, m);
        if (memcmp(iobuf + off, expbuf, m) != 0) {
            size_t i = 0;
            while (iobuf[off + i] == expbuf[i]) i++;
            failf(w, "session %u: the %s's byte %" PRIu64 " is 0x%02x, not 0x%02x (lost, reordered or corrupted)", t->ida,
                  name, e->got + i, iobuf[off + i], expbuf[i]);
            break;
        }
        e->got += m;
    }
    if ((e->eof && (e->shut || e->skip > 0)) || e->reset) end_close(e);
}

static int listen_local(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0) {
        perror("listen on 127.0.0.1");
        exit(2);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static uint16_t port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    return ntohs(a.sin_port);
}

static uint64_t stream_len(void)
{
    int k = (int)rnd(10);
    return k == 0 ? 0 : k < 3 ? rnd(2000) : k < 7 ? rnd(70000) : rnd(700000);
}

/* The client program connects (to the session's listener, standing in for the client's router
 * side), and A is asked to open the session. */
static void open_session(world *w, int i)
{
    tsess *t = &w->s[i];
    memset(t, 0, sizeof *t);
    t->used = 1;
    t->ida = (uint32_t)i + 1;
    t->lfd = listen_local();
    t->c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port_of(t->lfd)), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (t->c.fd < 0 || connect(t->c.fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect to 127.0.0.1");
        exit(2);
    }
    t->afd = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (t->afd < 0) {
        perror("accept");
        exit(2);
    }
    fcntl(t->c.fd, F_SETFL, O_NONBLOCK);
    t->s.fd = -1;
    t->c.key = rnd(UINT64_MAX);
    t->s.key = rnd(UINT64_MAX);
    t->c.total = stream_len();
    t->s.total = stream_len();
    t->c.eager = chance(20) ? 3 : 60 + (int)rnd(40);
    t->s.eager = chance(20) ? 3 : 60 + (int)rnd(40);
    stream_fill(rnd(UINT64_MAX), 0, t->sid, 16);
    uvpn_connect cn = {.proto = 6, .src_ip = 0x64400001, .src_port = 40000, .dst_ip = 0x64400002, .dst_port = (uint16_t)(80 + i)};
    if (chance(25)) { /* a local relay: B dials the listener, then joins it to the client */
        t->relay = 1;
        t->ida = t->idb = 0x1000u + (uint32_t)i;
        w->relays++;
        uint8_t r[28 + 9];
        put32(r, t->ida);
        put16(r + 4, port_of(t->lfd));
        memset(r + 6, 0, 8);
        uvpn_connect_pack(&cn, r + 14);
        memcpy(r + 28, "127.0.0.1", 9);
        post(&w->b, CMD_RELAY_DIAL, r, sizeof r);
        return;
    }
    uint8_t l[16 + 9];
    put32(l, cn.dst_ip);
    put16(l + 4, cn.dst_port);
    put16(l + 6, port_of(t->lfd));
    memset(l + 8, 0, 8);
    memcpy(l + 16, "127.0.0.1", 9);
    t->known = chance(50); /* B knows the listener: it answers the OPEN without asking us */
    post(&w->b, CMD_LISTENER, l, t->known ? sizeof l : 16);
    w->known += t->known;
    uint8_t c[39];
    memset(c, 0, sizeof c);
    put32(c, t->ida);
    put32(c + 4, PEER_B);
    memcpy(c + 8, t->sid, 16);
    uvpn_connect_pack(&cn, c + 24);
    c[38] = (uint8_t)chance(50);
    post(&w->a, CMD_OPEN, c, sizeof c);
}

/* The session never opened: the client's connection goes without checks. */
static void refuse(tsess *t)
{
    t->refused = 1;
    if (t->afd >= 0) close(t->afd);
    t->afd = -1;
    end_close(&t->c);
}

/* ---- the control plane: the data planes' events ----------------------------------------------- */

/* Hands the client connection's router side to d (CMD_ATTACH, for a session or a relay): d's now. */
static void attach(dp *d, tsess *t)
{
    if (t->afd < 0) return;
    uint8_t c[8];
    put32(c, t->ida); /* (a relay's id is the same on both sides) */
    put32(c + 4, (uint32_t)t->afd);
    t->afd = -1;
    post(d, CMD_ATTACH, c, sizeof c);
}

static tsess *by_id(world *w, uint32_t id, int side)
{
    for (int i = 0; i < w->nsess; i++)
        if (w->s[i].used && (side ? w->s[i].idb : w->s[i].ida) == id) return &w->s[i];
    return NULL;
}

static void events(world *w, int side)
{
    dp *d = side ? &w->b : &w->a;
    static uint8_t buf[1 << 16];
    size_t n;
    while ((n = dp_take_events(d, buf, sizeof buf)) > 0) {
        for (size_t off = 0; off + 5 <= n;) {
            size_t len = get32(buf + off);
            int type = buf[off + 4];
            const uint8_t *p = buf + off + 5;
            size_t pl = len - 1;
            off += 4 + len;
            tsess *t = pl >= 4 ? by_id(w, get32(p), side) : NULL;
            switch (type) {
            case EV_LOG:
                snprintf(w->logs[w->nlog++ % LOGS], sizeof w->logs[0], "%c %.*s", side ? 'B' : 'A', (int)pl, (const char *)p);
                if (verbose) printf("  [%" PRId64 "] %c %.*s\n", now_ms, side ? 'B' : 'A', (int)pl, (const char *)p);
                break;
            case EV_OPEN_REQ: {
                for (int i = 0; i < w->nsess; i++)
                    if (w->s[i].used && memcmp(w->s[i].sid, p + 8, 16) == 0) t = &w->s[i];
                if (!t) {
                    failf(w, "B was asked to open a session nobody opened");
                    break;
                }
                t->idb = get32(p);
                if (t->known) failf(w, "session %u: B asked for a listener it knew", t->ida);
                uint8_t c[6 + 8 + 9];
                put32(c, t->idb);
                if (chance(3)) { /* the listener is gone */
                    c[4] = UVPN_ST_ECONNREFUSED;
                    post(&w->b, CMD_ANSWER_REFUSE, c, 5);
                    break;
                }
                put16(c + 4, port_of(t->lfd));
                memset(c + 6, 0, 8);
                memcpy(c + 14, "127.0.0.1", 9);
                post(&w->b, CMD_ANSWER_DIAL, c, sizeof c);
                break;
            }
            case EV_OPEN_DIALED: {
                t = NULL;
                for (int i = 0; i < w->nsess; i++)
                    if (w->s[i].used && memcmp(w->s[i].sid, p + 8, 16) == 0) t = &w->s[i];
                if (!t || !t->known || pl < 41 || get16(p + 39) != port_of(t->lfd)) {
                    failf(w, "B dialed a listener it was not given for session %u", t ? t->ida : 0);
                    break;
                }
                t->idb = get32(p);
                break;
            }
            case EV_OPENED:
                if (!t || pl < 6) break;
                if (p[4] == UVPN_ST_OK) attach(&w->a, t);
                else refuse(t);
                break;
            case EV_END:
                if (!t || pl < 43) break;
                if (side ? t->endb : t->enda) failf(w, "session %u: two EV_END from %c", t->ida, side ? 'B' : 'A');
                if (side) {
                    t->endb = 1;
                    t->clean_b = p[4];
                    snprintf(t->why_b, sizeof t->why_b, "%.*s", (int)(pl - 43), (const char *)p + 43);
                } else {
                    t->enda = 1;
                    t->clean_a = p[4];
                    snprintf(t->why_a, sizeof t->why_a, "%.*s", (int)(pl - 43), (const char *)p + 43);
                    if (t->afd >= 0) refuse(t); /* ended before it was attached */
                }
                t->spooled += sf_get64(p + 35);
                if (!p[4] && pl == 43) failf(w, "session %u: %c reset it without a reason", t->ida, side ? 'B' : 'A');
                break;
            case EV_RELAY_READY:
                if (!t || pl < 5) break;
                if (p[4] == UVPN_ST_OK) {
                    attach(&w->b, t);
                } else { /* no EV_RELAY_END follows a failed dial */
                    refuse(t);
                    t->enda = t->endb = 1;
                    snprintf(t->why_b, sizeof t->why_b, "dial failed: status %d", p[4]);
                }
                break;
            case EV_RELAY_END:
                if (!t || pl < 21) break;
                if (t->endb) failf(w, "relay %u: two EV_RELAY_END", t->ida);
                t->enda = t->endb = 1;
                t->clean_a = t->clean_b = !p[4];
                snprintf(t->why_b, sizeof t->why_b, "%.*s", (int)(pl - 21), (const char *)p + 21);
                if (!t->clean_b) snprintf(t->why_a, sizeof t->why_a, "%s", t->why_b);
                if (p[4] && pl == 21) failf(w, "relay %u: reset without a reason", t->ida);
                if (!p[4] && (sf_get64(p + 5) != t->c.total || sf_get64(p + 13) != t->s.total))
                    failf(w, "relay %u ended cleanly after %" PRIu64 " and %" PRIu64 " bytes, not %" PRIu64 " and %" PRIu64,
                          t->ida, sf_get64(p + 5), sf_get64(p + 13), t->c.total, t->s.total);
                break;
            case EV_LINK_DOWN: {
                if (pl < 20) break;
                uint32_t id = get32(p);
                /* Between two correct data planes a link ends only because the test cut it,
                 * silenced it or flipped one of its bytes: never for a broken rule. */
                const char *why = (const char *)p + 20;
                int wl = (int)(pl - 20);
                int expected = (wl >= 25 && memcmp(why, "closed by the peer router", 25) == 0) ||
                               (wl >= 21 && memcmp(why, "nothing received for ", 21) == 0) ||
                               (wl >= 11 && memcmp(why, "read failed", 11) == 0) ||
                               (wl >= 12 && memcmp(why, "write failed", 12) == 0) ||
                               (wl >= 9 && memcmp(why, "test over", 9) == 0);
                if (!expected && (id >= MAX_LINKS || !w->corrupted[id]))
                    failf(w, "%c ended link %u, whose bytes nobody changed: %.*s", side ? 'B' : 'A', id, wl, why);
                if (id == w->L.id) cut(w);
                break;
            }
            default:
                break;
            }
        }
    }
}

/* ---- one iteration ------------------------------------------------------------------------------ */

static void dp_setup(world *w, dp *d, int answerer)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->qlock, NULL);
    pthread_cond_init(&d->qcond, NULL);
    dp_config *c = &d->cfg;
    stream_fill(w->seed, 0, c->key, 32);
    static const uint32_t windows[] = {16384, 65536, 262144};
    c->window = windows[rnd(3)];
    c->memory_limit = chance(10) ? 512 * 1024 : 64u << 20;
    static const uint64_t spools[] = {32768, 262144, 4u << 20};
    c->spool_limit = spools[rnd(3)];
    c->spool_total = 8u << 20;
    c->dead_ms = 3000;
    c->keepalive_ms = 1000;
    c->dial_ms = 2000;
    c->outage_ms = 10000;
    c->bdp_max = 256 * 1024;
    c->encrypt = answerer && chance(30);
    snprintf(c->spool_dir, sizeof c->spool_dir, "%s", w->spool_dir);
    d->clock = test_clock;
    if (dp_init(d) != 0) {
        perror("dp_init");
        exit(2);
    }
}

static void dp_teardown(dp *d)
{
    for (dnode *n = d->links.next; n != &d->links; n = n->next) {
        rlink *l = DL_ENTRY(n, rlink, node);
        if (!l->dead) link_kill(d, l, "test over");
    }
    dp_finish(d);
    while (!dl_empty(&d->timewaits)) timewait_free(d, DL_ENTRY(d->timewaits.next, timewait, fifo));
    for (size_t i = 0; i < d->conns.cap && d->conns.vals; i++) /* sessions that never ended (a failure) */
        if (d->conns.vals[i] && ((objhead *)d->conns.vals[i])->kind == K_SESS) sess_free(d, d->conns.vals[i]);
    map_free(&d->conns);
    map_free(&d->by_sid);
    map_free(&d->tw_by_sid);
    free(d->evs);
    free(d->cmds);
    free(d->scratch);
    close(d->ep);
    close(d->wake);
    pthread_mutex_destroy(&d->qlock);
    pthread_cond_destroy(&d->qcond);
}

/* Whether session t is over everywhere: both routers reported its end (B only if it heard of
 * it) and the test closed both programs' connections. */
static int settled(world *w, tsess *t)
{
    if (t->s.fd < 0 && !t->s.done && t->lfd >= 0) { /* B's dial may still wait in the backlog */
        int fd = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            t->s.fd = fd;
            t->s.skip = UVPN_TICKET_LEN;
            return 0;
        }
    }
    (void)w;
    return t->enda && (!t->idb || t->endb) && t->c.done && (t->s.done || t->s.fd < 0);
}

/* The property, once every session ended. */
static void verdict(world *w, tsess *t)
{
    int reset_seen = (t->enda && !t->clean_a) || (t->endb && !t->clean_b);
    if (t->enda && t->clean_a && t->endb && t->clean_b && (t->c.aborted || t->s.aborted)) {
        w->clean++; /* everything arrived before a program reset its connection */
        return;
    }
    if (t->enda && t->clean_a && t->endb && t->clean_b) {
        if (!t->c.eof || !t->s.eof || t->c.reset || t->s.reset)
            failf(w, "session %u: both routers ended it cleanly, but the client %s and the server %s", t->ida,
                  t->c.eof ? "read all" : t->c.reset ? "saw a reset" : "never read EOF",
                  t->s.eof ? "read all" : t->s.reset ? "saw a reset" : "never read EOF");
        w->clean++;
        return;
    }
    if ((t->c.reset || t->s.reset) && !reset_seen)
        failf(w, "session %u: a program saw a reset that no router reported (A: %s, B: %s)", t->ida,
              t->enda ? t->why_a : "-", t->endb ? t->why_b : "-");
    if (t->endb && t->clean_b && !t->s.eof && t->s.fd >= 0)
        failf(w, "session %u: B ended it cleanly before the server read EOF", t->ida);
    w->resets++;
}

/* The sessions as the data plane holds them (router/core/dp.h's fields). */
static void dump_dp(dp *d, char side)
{
    for (size_t i = 0; i < d->conns.cap && d->conns.vals; i++) {
        sess *s = d->conns.vals[i];
        if (!s || s->o.kind != K_SESS) continue;
        printf("  %c %u: st %d, link %s; ours: read %" PRIu64 " (memory %zu, spool %" PRIu64 ") next %" PRIu64 " max %" PRIu64
               " acked %" PRIu64 " window end %" PRIu64 "%s%s; theirs: received %" PRIu64 " (buffered %zu) granted %" PRIu64
               "%s; program fd %d rd %d wr %d%s; spooled %" PRIu64 ", %" PRIu64 " reconnect(s)\n",
               side, s->o.id, s->st, s->lk ? "up" : "none", s->snd_read, bq_size(&s->snd), spool_size(&s->sp), s->snd_nxt,
               s->snd_max, s->peer_ack, s->peer_wend, s->app_eof ? " eof" : "", s->fin_out ? " fin-out" : "", s->rcv_nxt,
               bq_size(&s->rcv), s->adv_wend, s->rcv_fin != NO_FIN ? " fin-in" : "", s->app.fd, s->app.rd_ready,
               s->app.wr_ready, dl_linked(&s->mem) ? " memwait" : "", s->spooled, s->reconnects);
    }
}

static void dump(world *w)
{
    dump_dp(&w->a, 'A');
    dump_dp(&w->b, 'B');
    for (int i = 0; i < w->nsess; i++) {
        tsess *t = &w->s[i];
        if (!t->used) continue;
        printf("  session %u (B %u): client wrote %" PRIu64 "/%" PRIu64 "%s read %" PRIu64 "%s%s; server wrote %" PRIu64
               "/%" PRIu64 "%s read %" PRIu64 "%s%s; A %s%s, B %s%s\n",
               t->ida, t->idb, t->c.wrote, t->c.total, t->c.shut ? " shut," : ",", t->c.got, t->c.eof ? " eof" : "",
               t->c.reset ? " reset" : "", t->s.wrote, t->s.total, t->s.shut ? " shut," : ",", t->s.got,
               t->s.eof ? " eof" : "", t->s.reset ? " reset" : "", t->enda ? (t->clean_a ? "clean" : "reset: ") : "live",
               t->enda ? t->why_a : "", t->endb ? (t->clean_b ? "clean" : "reset: ") : "live", t->endb ? t->why_b : "");
    }
    int first = w->nlog > LOGS ? w->nlog - LOGS : 0;
    for (int i = first; i < w->nlog; i++) printf("  log: %s\n", w->logs[i % LOGS]);
}

static int iteration(world *w, uint64_t seed, uint64_t *resumes, uint64_t *spooled)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
    current_seed = seed;
    alarm(60);
    rng = seed;
    now_ms = 1000000;
    snprintf(w->spool_dir, sizeof w->spool_dir, "%s/myrt-sessions-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(w->spool_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    dp_setup(w, &w->a, 0);
    dp_setup(w, &w->b, 1);
    w->L.ma = w->L.mb = -1;
    w->relink_at = chance(80) ? now_ms : now_ms + (int64_t)rnd(3000);
    w->nsess = 1 + (int)rnd(MAXS);
    for (int i = 0; i < w->nsess; i++) w->open_at[i] = i == 0 ? 0 : (int)rnd(FAULT_STEPS / 2);
    int step, done = 0;
    for (step = 0; step < FAULT_STEPS + HEAL_STEPS && !w->fail[0]; step++) {
        int heal = step >= FAULT_STEPS;
        w->faults = !heal;
        for (int i = 0; i < w->nsess; i++)
            if (!w->s[i].used && w->open_at[i] <= step) open_session(w, i);
        if (w->L.ma < 0 && w->relink_at >= 0 && now_ms >= w->relink_at) add_link(w);
        if (w->L.ma < 0 && w->relink_at < 0) w->relink_at = now_ms;
        if (heal) {
            w->L.hold = 0;
            for (int k = 0; k < 4; k++) {
                forward(w, 0, LBUF);
                forward(w, 1, LBUF);
            }
            for (int i = 0; i < w->nsess; i++) {
                w->s[i].c.eager = w->s[i].s.eager = 100;
                program(w, &w->s[i], &w->s[i].c, &w->s[i].s, "client", 65536);
                program(w, &w->s[i], &w->s[i].s, &w->s[i].c, "server", 65536);
            }
            now_ms += w->L.ma < 0 ? 100 : 20;
        } else {
            for (int k = 1 + (int)rnd(4); k > 0; k--) {
                int what = (int)rnd(100);
                if (what < 40) {
                    size_t max = chance(20) ? 1 + rnd(60) : 1 + rnd(65536);
                    forward(w, (int)rnd(2), max);
                } else if (what < 75) {
                    tsess *t = &w->s[rnd((uint64_t)w->nsess)];
                    if (!t->used) continue;
                    size_t max = chance(30) ? 1 + rnd(100) : 1 + rnd(65536);
                    if (rnd(2)) program(w, t, &t->c, &t->s, "client", max);
                    else program(w, t, &t->s, &t->c, "server", max);
                } else if (what < 95) {
                    now_ms += chance(90) ? (int64_t)rnd(30) : chance(90) ? 100 + (int64_t)rnd(1500) : 2000 + (int64_t)rnd(3000);
                } else if (what < 97) {
                    if (w->L.ma >= 0 && chance(15)) cut(w);
                } else if (what < 98) {
                    if (w->L.ma >= 0 && chance(20)) {
                        int dir = (int)rnd(2);
                        if (w->L.len[dir]) {
                            w->L.buf[dir][rnd(w->L.len[dir])] ^= (uint8_t)(1 + rnd(255));
                            w->corrupts++;
                            if (w->L.id < MAX_LINKS) w->corrupted[w->L.id] = 1;
                        }
                    }
                } else if (chance(10)) {
                    w->L.hold = !w->L.hold;
                    if (w->L.hold) w->silences++;
                }
            }
        }
        /* B's dial reaches the listener */
        for (int i = 0; i < w->nsess; i++) {
            tsess *t = &w->s[i];
            if (t->used && t->idb && t->s.fd < 0 && !t->s.done && t->lfd >= 0) {
                int fd = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                    t->s.fd = fd;
                    t->s.skip = UVPN_TICKET_LEN;
                }
            }
        }
        dp_turn(&w->a, 0);
        events(w, 0);
        dp_turn(&w->b, 0);
        events(w, 1);
        if (heal && w->L.len[0] == 0 && w->L.len[1] == 0) {
            done = 1;
            for (int i = 0; i < w->nsess && done; i++) done = w->s[i].used && settled(w, &w->s[i]);
            if (done) break;
        }
    }
    if (!w->fail[0] && !done) failf(w, "sessions still open %d steps after the faults stopped (stuck)", HEAL_STEPS);
    if (!w->fail[0])
        for (int i = 0; i < w->nsess; i++) verdict(w, &w->s[i]);
    if (!w->fail[0] && (w->a.n.sessions_live || w->b.n.sessions_live)) /* --status's live count */
        failf(w, "every session ended, but A counts %" PRIu64 " live and B %" PRIu64, w->a.n.sessions_live, w->b.n.sessions_live);
    if (w->fail[0] || verbose > 1) dump(w);
    if (verbose || w->fail[0])
        printf("  seed %" PRIu64 ": %d session(s) and relay(s) (%d relays; %d clean, %d reset), %d cut(s), %d corrupted, %d silent, %d abort(s); %d steps, %" PRId64
               " ms\n",
               seed, w->nsess, w->relays, w->clean, w->resets, w->cuts, w->corrupts, w->silences, w->aborts, step, now_ms - 1000000);
    *resumes += w->a.n.resumes + w->b.n.resumes;
    for (int i = 0; i < w->nsess; i++) {
        *spooled += w->s[i].spooled;
        if (w->s[i].lfd >= 0) close(w->s[i].lfd);
        if (w->s[i].afd >= 0) close(w->s[i].afd);
        end_close(&w->s[i].c);
        end_close(&w->s[i].s);
    }
    if (w->L.ma >= 0) {
        close(w->L.ma);
        close(w->L.mb);
    }
    dp_teardown(&w->a);
    dp_teardown(&w->b);
    rmdir(w->spool_dir);
    return w->fail[0] ? -1 : 0;
}

int main(int argc, char **argv)
{
    uint64_t seed = 0;
    int iterations = 150, have_seed = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
            have_seed = 1;
        } else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            iterations = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose++;
        } else {
            fprintf(stderr, "test_sessions: unknown argument: %s\n", argv[i]);
            return 2;
        }
    }
    if (!have_seed && getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)time(NULL);
    seed &= 0xffffffffffffull; /* short enough to type */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, hung);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("test_sessions: seed %" PRIu64 ", %d iteration(s)\n", seed, iterations);
    static world w;
    int passed = 0, failed = 0, clean = 0, resets = 0, cuts = 0, known = 0;
    uint64_t resumes = 0, spooled = 0;
    for (int i = 0; i < iterations; i++) {
        if (iteration(&w, seed + (uint64_t)i, &resumes, &spooled) == 0) {
            passed++;
        } else {
            failed++;
            printf("FAIL iteration %d: %s\n  repeat: test_sessions --seed %" PRIu64 " --iterations 1 --verbose\n", i, w.fail,
                   seed + (uint64_t)i);
        }
        clean += w.clean;
        resets += w.resets;
        cuts += w.cuts;
        known += w.known;
    }
    printf("test_sessions: %d session(s) ended clean, %d reset; %d link cut(s), %" PRIu64 " resume(s), %" PRIu64
           " byte(s) spooled\n",
           clean, resets, cuts, resumes, spooled);
    if (iterations >= 10) { /* the faults happened, and most sessions survived them */
        int ok = cuts > 0 && resumes > 0 && spooled > 0 && clean > resets && known > 0;
        printf("%s the faults were exercised: cuts, resumes and spooling happened, most sessions ended clean, "
               "%d answered by B alone\n",
               ok ? "PASS" : "FAIL", known);
        ok ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
