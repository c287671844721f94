/* engine.c: the overlay client's engine thread and its link to the home router (see engine.h).
 *
 * One mutex guards everything here; the engine thread holds it except inside epoll_wait, and
 * callers from the program's threads take it briefly (a blocking call waits on the condition
 * variable, which releases it). The link: non-blocking TCP to the home router with keepalive,
 * HELLO (role client, UVPN_HOLDER's token) and CHALLENGE, then frames MACed with the link's
 * direction keys, seq counting from 1. Its descriptor is inherited across fork and exec (not
 * close-on-exec), so a daemon child keeps the parent's registrations alive; the child never
 * touches it and opens its own link when it needs one. The engine's descriptors sit at high
 * numbers, away from the fds programs manage themselves. */
#include "uvpn/core/engine.h"
#include "common/bytes.h"
#include "common/env.h"
#include "common/log.h"
#include "common/netio.h"
#include "common/real.h"
#include "uvpn/core/config.h"
#include "uvpn/core/park.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINK_CONNECT_MS 5000   /* TCP connect + handshake of the link */
#define RETRY_FIRST_MS 500
#define RETRY_MAX_MS 10000
#define INBUF (UVPN_MAX_BODY + 128)
#define EV_WAKE 0xffffffffu
#define EV_LINK 0xfffffffeu
#define MAX_KEEP 1024
#define JOIN_WAIT_MS 100
#define MAX_INHERITED 8        /* ancestors' links a process keeps open for them */       /* a program's call waits this long at most for a joining socket */

enum { L_DOWN, L_CONNECTING, L_HELLO, L_UP };
enum { C_QUEUED, C_SENT, C_ANSWERED, C_JOINING, C_DONE, C_FAILED, C_REPORTED };

typedef struct econn {
    uint32_t id;
    int dup;             /* the program's socket (non-blocking connects), -1 once let go */
    int family, blocking, phase, err, in_epoll;
    int parked;          /* dup waits parked (eng_park), its TCP_DEFER_ACCEPT before in saved_defer */
    int saved_defer;
    int direct;          /* joining: the answer was a brokered, direct one */
    int fell_back;       /* its direct attempt failed: waiting for the relay's answer */
    int64_t deadline, direct_until;
    uvpn_connect req;
    uvpn_answer ans;
    struct econn *next;
} econn;

typedef struct ereq {
    uint32_t id;
    int type, sent, done, status;
    uint8_t body[UVPN_MAX_REQ_BODY];
    size_t len;
    uint8_t *data;
    size_t cap, dlen;
    int64_t deadline;
    char why[160];
    struct ereq *next;
} ereq;

typedef struct {
    int type;
    uint8_t body[UVPN_LISTEN_LEN];
    size_t len;
} keep;

/* Direct paths the home router brokered lately, by virtual destination: a connect to the same
 * listener within ENG_DIRECT_CACHE_MS mints its own DIRECT ticket instead of asking again. */
#define DIRECT_CACHE 64
typedef struct {
    uint32_t dip;
    uint16_t dport;
    uint32_t real_ip;
    uint16_t real_port;
    uint8_t lid[UVPN_LID_LEN];
    int64_t until;
    int64_t ok_at;               /* when a connection last went direct on it (0: never) */
    int spared;                  /* a failure since then was relayed without DIRECT_FAILED */
} brokered;

/* What the home router said of UDP to one virtual endpoint (eng_udp_path). */
#define UDP_PATHS 64
typedef struct {
    uint32_t dip;
    uint16_t dport;
    uint32_t reqid;              /* the question in flight (0: none) */
    int direct;                  /* the answer: direct, at real_ip:real_port */
    uint32_t real_ip;
    uint16_t real_port;
    int64_t asked, until;        /* when asked; the answer holds until */
} udp_path;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int running;                 /* the thread exists (in this process) */
    int ep, wake;
    int link, state;
    int64_t retry_at, retry_ms, link_deadline;
    uint8_t up[UVPN_KEY_LEN], down[UVPN_KEY_LEN], nc[UVPN_NONCE_LEN];
    uint64_t send_seq, recv_seq;
    uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_len, out_cap;
    uint32_t next_id;
    uint32_t info_id;
    econn *conns;
    ereq *reqs;
    keep keeps[MAX_KEEP];
    int n_keep;
    int refuser[4];
    uint32_t refuser_ip[4];
    uint16_t refuser_port[4];
    int fd_base;
    int wanted;                  /* eng_start: keep a link up even without other work */
    int inherited[MAX_INHERITED]; /* links of ancestors (fork, exec): kept open, never used */
    int n_inherited;
    uvpn_paths paths;            /* direct connections that ended, not reported yet */
    udp_path udp[UDP_PATHS];
    brokered direct[DIRECT_CACHE];
    int64_t paths_due;           /* when to report them (0: nothing to report) */
} E = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .ep = -1, .wake = -1,
       .link = -1, .state = L_DOWN, .retry_ms = RETRY_FIRST_MS, .next_id = 1, .refuser = {-1, -1, -1, -1}};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once(void);

/* ---- descriptors ----------------------------------------------------------------------------- */

/* Moves fd to a high number (cloexec or not); returns the new fd (the old one is closed). */
static int high_fd(int fd, int cloexec)
{
    if (!E.fd_base) {
        struct rlimit rl;
        long lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : 1024;
        if (lim > 4096) lim = 4096;
        E.fd_base = lim > 256 ? (int)lim - 64 : 3;
    }
    int n = real.fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, E.fd_base);
    if (n < 0) return fd; /* no room up there: keep it where it is */
    real.close(fd);
    return n;
}

static int pending_count; /* non-blocking connects not DONE or FAILED yet (atomic) */

int eng_pending(void) { return __atomic_load_n(&pending_count, __ATOMIC_RELAXED); }

/* A non-blocking connect leaves the pending states (lock held). */
static void unpend(econn *c)
{
    if (!c->blocking && c->phase < C_DONE && c->phase != C_ANSWERED) __atomic_fetch_sub(&pending_count, 1, __ATOMIC_RELAXED);
}

int eng_owns_fd(int fd)
{
    if (fd < 0) return 0;
    int owned = fd == __atomic_load_n(&E.link, __ATOMIC_RELAXED) ||
                fd == __atomic_load_n(&E.ep, __ATOMIC_RELAXED) ||
                fd == __atomic_load_n(&E.wake, __ATOMIC_RELAXED);
    for (int i = 0; i < 4 && !owned; i++) owned = fd == __atomic_load_n(&E.refuser[i], __ATOMIC_RELAXED);
    owned = owned || park_owns(fd);
    int n = __atomic_load_n(&E.n_inherited, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n && !owned; i++) owned = fd == E.inherited[i];
    return owned;
}

/* Keeps fd, an ancestor's link, open for good (lock held or single-threaded). */
static void keep_inherited(int fd)
{
    for (int i = 0; i < E.n_inherited; i++)
        if (E.inherited[i] == fd) return;
    if (E.n_inherited == MAX_INHERITED) return; /* beyond that, closable */
    E.inherited[E.n_inherited] = fd;
    __atomic_store_n(&E.n_inherited, E.n_inherited + 1, __ATOMIC_RELEASE);
}

void eng_adopt_link(int fd)
{
    if (fd >= 0) keep_inherited(fd);
}

int eng_links(int *fds, int max)
{
    int n = 0, link = __atomic_load_n(&E.link, __ATOMIC_RELAXED);
    if (link >= 0 && n < max) fds[n++] = link;
    int k = __atomic_load_n(&E.n_inherited, __ATOMIC_ACQUIRE);
    for (int i = 0; i < k && n < max; i++) fds[n++] = E.inherited[i];
    return n;
}

/* The socket's real local port (0 when unknown). */
static uint16_t local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    uint32_t ip;
    uint16_t port = 0;
    if (real.getsockname(fd, (struct sockaddr *)&ss, &l) == 0 && !sa_get_v4((struct sockaddr *)&ss, l, &ip, &port) &&
        ss.ss_family == AF_INET6)
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return port;
}

static void wake_engine(void)
{
    uint64_t one = 1;
    if (E.wake >= 0 && real.write(E.wake, &one, sizeof one) < 0) { /* full: it is awake anyway */ }
}

/* ---- output ---------------------------------------------------------------------------------- */

/* Queues bytes on the link and writes what the socket takes now. 0 or -1 (out of memory). */
static int link_write(const uint8_t *p, size_t n)
{
    if (E.out_len + n > E.out_cap) {
        size_t cap = E.out_cap ? E.out_cap : 4096;
        while (cap < E.out_len + n) cap *= 2;
        uint8_t *o = realloc(E.out, cap);
        if (!o) return -1;
        E.out = o;
        E.out_cap = cap;
    }
    if (n) memcpy(E.out + E.out_len, p, n);
    E.out_len += n;
    size_t off = 0;
    while (off < E.out_len) {
        ssize_t w = real.send(E.link, E.out + off, E.out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        break; /* EAGAIN: EPOLLOUT will flush; errors: the reader sees them */
    }
    memmove(E.out, E.out + off, E.out_len - off);
    E.out_len -= off;
    struct epoll_event ev = {EPOLLIN | (E.out_len ? EPOLLOUT : 0), {.u32 = EV_LINK}};
    real.epoll_ctl(E.ep, EPOLL_CTL_MOD, E.link, &ev);
    return 0;
}

/* Sends one frame under the link's up key. */
static int send_frame(int type, uint32_t reqid, const uint8_t *body, size_t len)
{
    uint8_t buf[UVPN_MAX_REQ_BODY + 64];
    long n = uvpn_encode(buf, sizeof buf, E.up, type, E.send_seq, reqid, body, len);
    if (n < 0) return -1;
    E.send_seq++;
    return link_write(buf, (size_t)n);
}

/* ---- connects ---------------------------------------------------------------------------------- */

static econn *find_conn(uint32_t id)
{
    for (econn *c = E.conns; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

static void unlink_conn(econn *c)
{
    for (econn **p = &E.conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            return;
        }
}

static void let_go(econn *c)
{
    if (c->dup < 0) return;
    if (c->in_epoll) real.epoll_ctl(E.ep, EPOLL_CTL_DEL, c->dup, NULL);
    c->in_epoll = 0;
    real.close(c->dup);
    c->dup = -1;
}

/* A refusing local port at the address ip (host order; 0 for the wildcard, which uses
 * 127.0.0.1): a bound socket that never listens, so a connect to it is reset. Port 0 if none. */
static uint16_t refuser_for(uint32_t ip)
{
    if (ip == 0) ip = 0x7f000001;
    for (int i = 0; i < 4; i++)
        if (E.refuser[i] >= 0 && E.refuser_ip[i] == ip) return E.refuser_port[i];
    for (int i = 0; i < 4; i++) {
        if (E.refuser[i] >= 0) continue;
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage ss;
        socklen_t sl = sa_make_v4(AF_INET, ip, 0, &ss);
        if (s < 0 || real.bind(s, (struct sockaddr *)&ss, sl)) {
            if (s >= 0) real.close(s);
            return 0;
        }
        s = high_fd(s, 1);
        sl = sizeof ss;
        uint32_t got;
        uint16_t port = 0;
        if (real.getsockname(s, (struct sockaddr *)&ss, &sl) == 0) sa_get_v4((struct sockaddr *)&ss, sl, &got, &port);
        E.refuser_ip[i] = ip;
        E.refuser_port[i] = port;
        __atomic_store_n(&E.refuser[i], s, __ATOMIC_RELAXED);
        return port;
    }
    return 0;
}

/* The connect failed with err: a non-blocking one's socket is connected to a refusing local
 * port, so the kernel reports POLLERR and the program asks SO_ERROR (answered with err). */
static void fail_conn(econn *c, int err)
{
    if (c->phase >= C_DONE) return;
    unpend(c);
    c->phase = C_FAILED;
    c->err = err;
    char d[24];
    dbg("connect %s: %s (%s)", fmt_addr(c->req.dst_ip, c->req.dst_port, d), strerror(err), errno_name(err));
    if (!c->blocking && c->dup >= 0) {
        struct sockaddr_storage me, to;
        socklen_t ml = sizeof me;
        uint32_t ip = 0;
        uint16_t port;
        eng_abandon(c->dup); /* out of the holding port (or the listening state) */
        if (real.getsockname(c->dup, (struct sockaddr *)&me, &ml) == 0) sa_get_v4((struct sockaddr *)&me, ml, &ip, &port);
        uint16_t rp = refuser_for(ip);
        socklen_t tl = sa_make_v4(c->family, ip ? ip : 0x7f000001, rp, &to);
        if (!rp || (real.connect(c->dup, (struct sockaddr *)&to, tl) && errno != EINPROGRESS))
            dbg("connect %s: cannot make the socket report the failure: %s", d, strerror(errno));
        let_go(c);
    }
    pthread_cond_broadcast(&E.cond);
}

int eng_ticket(const uvpn_connect *c, const uvpn_answer *a, uint16_t bound_port, uint8_t out[UVPN_TICKET_LEN],
               char *why, size_t why_len)
{
    uint8_t key[UVPN_KEY_LEN];
    if (cfg_key(key, why, why_len)) return -1;
    uvpn_ticket tk = {a->kind == UVPN_TK_DIRECT ? UVPN_TK_DIRECT : UVPN_TK_DATA, c->src_ip, c->dst_ip, a->src_port,
                      c->dst_port, {0}, bound_port, a->issued, {0}};
    if (a->kind == UVPN_TK_DIRECT) memcpy(tk.lid, a->lid, sizeof tk.lid);
    memcpy(tk.tid, a->tid, sizeof tk.tid);
    uvpn_ticket_pack(key, &tk, out);
    memset(key, 0, sizeof key);
    return 0;
}

static void send_connect(econn *x);

/* The cache entry for dip:dport, or NULL (lock held). */
static brokered *cached(uint32_t dip, uint16_t dport)
{
    for (int i = 0; i < DIRECT_CACHE; i++)
        if (E.direct[i].dip == dip && E.direct[i].dport == dport) return &E.direct[i];
    return NULL;
}

/* Remembers the brokered answer a for dip:dport (lock held). */
static void remember(uint32_t dip, uint16_t dport, const uvpn_answer *a)
{
    brokered *b = cached(dip, dport);
    for (int i = 0; i < DIRECT_CACHE && !b; i++)
        if (E.direct[i].until < mono_ms()) b = &E.direct[i];
    if (!b) b = &E.direct[a->tid[0] % DIRECT_CACHE];
    brokered n = {dip, dport, a->real_ip, a->real_port, {0}, mono_ms() + ENG_DIRECT_CACHE_MS, 0, 0};
    if (b->dip == dip && b->dport == dport) n.ok_at = b->ok_at, n.spared = b->spared; /* the same path */
    memcpy(n.lid, a->lid, sizeof n.lid);
    *b = n;
}

/* The entry of the listener brokered lately that connect c may go direct to, while it holds;
 * NULL otherwise (lock held). */
static brokered *mintable(const uvpn_connect *c)
{
    brokered *b = (c->flags & UVPN_CF_DIRECT) ? cached(c->dst_ip, c->dst_port) : NULL;
    return b && b->until >= mono_ms() ? b : NULL;
}

/* A connect allowed to go direct to a listener brokered lately gets its answer here, at once:
 * the listener's address and registration from the cache, a fresh ticket id and issue time of
 * its own (the listener checks them as any: MAC, registration, bound port, time, once). 1 when
 * *a was filled (lock held). */
static int mint(const uvpn_connect *c, uvpn_answer *a)
{
    brokered *b = mintable(c);
    if (!b) return 0;
    uint16_t port = 0;
    random_bytes(&port, sizeof port);
    uvpn_answer n = {UVPN_TK_DIRECT, b->real_ip, b->real_port, c->src_port ? c->src_port : (uint16_t)(32768 + port % 28232),
                     {0}, now_real_ms(), {0}};
    memcpy(n.lid, b->lid, sizeof n.lid);
    random_bytes(n.tid, sizeof n.tid);
    *a = n;
    return 1;
}

/* What a direct attempt's failure asks of the router next: err ECONNREFUSED means the path
 * works and the listener is gone: an ordinary relayed connect (which reports the refusal), the
 * path not held; anything else: relayed, saying the path failed. The cache forgets it. */
static uint8_t after_direct(const uvpn_connect *c, int err)
{
    brokered *b = cached(c->dst_ip, c->dst_port);
    if (err != ECONNREFUSED && b && !b->spared && b->ok_at && mono_ms() - b->ok_at <= ENG_DIRECT_CACHE_MS) {
        b->spared = 1; /* it worked a moment ago: relayed once, the path kept (engine.h) */
        return 0;
    }
    if (b) b->until = 0;
    return err == ECONNREFUSED ? 0 : UVPN_CF_DIRECT_FAILED;
}

/* Connect c went direct (lock held). */
static void direct_ok(const uvpn_connect *c)
{
    brokered *b = cached(c->dst_ip, c->dst_port);
    if (b) b->ok_at = mono_ms(), b->spared = 0;
}

void eng_direct_ok(const uvpn_connect *c)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    direct_ok(c);
    pthread_mutex_unlock(&E.lock);
}

uint8_t eng_direct_failed(const uvpn_connect *c, int err)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    uint8_t f = after_direct(c, err);
    pthread_mutex_unlock(&E.lock);
    return f;
}

/* Parks c's socket (eng_park), its TCP_DEFER_ACCEPT saved first when it was not parked yet
 * (lock held). 0 or -errno. */
static int park_conn(econn *c)
{
    if (!c->parked) {
        socklen_t dl = sizeof c->saved_defer;
        c->saved_defer = 0;
        real.getsockopt(c->dup, IPPROTO_TCP, TCP_DEFER_ACCEPT, &c->saved_defer, &dl);
    }
    int r = eng_park(c->dup);
    if (r == 0) c->parked = 1;
    return r;
}

/* The direct attempt of c failed (why): the socket is parked again (listening: no readiness)
 * and the connect asks the router for the relay, saying the direct path failed. */
static void fall_back(econn *c, int err, const char *why)
{
    char d[24];
    dbg("connect %s: direct attempt failed (%s): through the home router", fmt_addr(c->req.dst_ip, c->req.dst_port, d), why);
    if (c->in_epoll) real.epoll_ctl(E.ep, EPOLL_CTL_DEL, c->dup, NULL);
    c->in_epoll = 0;
    c->direct = 0;
    eng_abandon(c->dup);
    if (park_conn(c)) {
        fail_conn(c, ENETUNREACH);
        return;
    }
    c->req.flags = after_direct(&c->req, err);
    c->fell_back = 1;
    c->phase = C_QUEUED;
    send_connect(c);
}

/* A joining connect whose socket may now be connected (to the router, or directly to the
 * listener): writes the ticket. */
static void settle(econn *c)
{
    if (c->phase != C_JOINING || c->dup < 0) return;
    struct pollfd p = {c->dup, POLLOUT, 0};
    if (real.poll(&p, 1, 0) <= 0) return;
    int e = 0;
    socklen_t el = sizeof e;
    real.getsockopt(c->dup, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e) {
        if (c->direct) fall_back(c, e, strerror(e));
        else fail_conn(c, ENETUNREACH);
        return;
    }
    uint8_t t[UVPN_TICKET_LEN];
    char why[160];
    if (eng_ticket(&c->req, &c->ans, local_port(c->dup), t, why, sizeof why)) {
        fail_conn(c, EACCES);
        return;
    }
    ssize_t w = real.send(c->dup, t, sizeof t, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w != (ssize_t)sizeof t) {
        if (c->direct) fall_back(c, EPIPE, "the ticket could not be written");
        else fail_conn(c, ENETUNREACH);
        return;
    }
    unpend(c);
    c->phase = C_DONE;
    c->req.src_port = c->ans.src_port;
    c->req.flags = c->direct ? UVPN_CF_DIRECT : 0;
    if (c->direct) direct_ok(&c->req);
    char d[24];
    dbg("connect %s: connected %s (virtual port %u)", fmt_addr(c->req.dst_ip, c->req.dst_port, d),
        c->direct ? "directly to the listener" : "through the home router", c->ans.src_port);
    let_go(c);
    pthread_cond_broadcast(&E.cond);
}

static void take_answer(econn *c);

/* The answer to a CONNECT. */
static void answered(econn *c, int status, const uint8_t *data, size_t len)
{
    if (c->phase != C_SENT) return;
    if (status) {
        fail_conn(c, uvpn_status_to_errno(status));
        return;
    }
    if (uvpn_answer_unpack(data, len, &c->ans) ||
        (c->ans.kind != UVPN_TK_DATA && !(c->ans.kind == UVPN_TK_DIRECT && (c->req.flags & UVPN_CF_DIRECT)))) {
        fail_conn(c, EPROTO);
        return;
    }
    if (c->ans.kind == UVPN_TK_DIRECT) remember(c->req.dst_ip, c->req.dst_port, &c->ans);
    take_answer(c);
}

/* Goes on with the answer in c->ans (the router's, or minted from the cache). */
static void take_answer(econn *c)
{
    if (c->blocking) {
        c->phase = C_ANSWERED;
        pthread_cond_broadcast(&E.cond);
        return;
    }
    pthread_cond_broadcast(&E.cond); /* a caller waiting in eng_conn_wait_answer */
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(c->family, c->ans.real_ip, c->ans.real_port, &ss);
    if (c->parked) { /* out of the holding port (or the listening state), same socket */
        setsockopt(c->dup, IPPROTO_TCP, TCP_DEFER_ACCEPT, &c->saved_defer, sizeof c->saved_defer);
        eng_abandon(c->dup);
        c->parked = 0;
    }
    c->phase = C_JOINING;
    c->direct = c->ans.kind == UVPN_TK_DIRECT;
    c->direct_until = mono_ms() + ENG_DIRECT_MS;
    if (real.connect(c->dup, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
        if (c->direct) fall_back(c, errno, strerror(errno));
        else fail_conn(c, ENETUNREACH);
        return;
    }
    settle(c); /* connected at once (loopback): the ticket is written now, no epoll needed */
    if (c->phase != C_JOINING || c->dup < 0) return;
    struct epoll_event ev = {EPOLLOUT, {.u32 = c->id}}; /* level-triggered: ready meanwhile is seen */
    c->in_epoll = real.epoll_ctl(E.ep, EPOLL_CTL_ADD, c->dup, &ev) == 0;
}

/* Sends the CONNECT of x now when the link is up, else wakes the engine to bring it up (the
 * CONNECT goes out with the queued work). Lock held. */
static void send_connect(econn *x)
{
    if (E.state != L_UP) {
        wake_engine();
        return;
    }
    uint8_t b[UVPN_CONNECT_BODY_LEN];
    uvpn_connect_pack(&x->req, b);
    x->phase = C_SENT;
    send_frame(UVPN_T_CONNECT, x->id, b, sizeof b);
}

/* ---- the link ---------------------------------------------------------------------------------- */

static void fail_all(int err, const char *why, int sent_only)
{
    for (ereq *r = E.reqs; r; r = r->next) {
        if (r->done || (sent_only && !r->sent)) continue;
        r->done = 1;
        r->status = -err;
        snprintf(r->why, sizeof r->why, "%s", why);
    }
    for (econn *c = E.conns; c; c = c->next)
        if ((c->phase == C_SENT || (!sent_only && c->phase == C_QUEUED))) fail_conn(c, err);
    pthread_cond_broadcast(&E.cond);
}

static void link_down(int err, const char *why)
{
    if (E.link >= 0) {
        real.epoll_ctl(E.ep, EPOLL_CTL_DEL, E.link, NULL);
        real.close(E.link);
        __atomic_store_n(&E.link, -1, __ATOMIC_RELAXED);
    }
    int was_up = E.state == L_UP;
    E.state = L_DOWN;
    E.out_len = E.in_len = 0;
    dbg("link to the home router: %s", why);
    /* Work sent on the lost link cannot be answered; work not sent yet fails only when the
     * link could not be made at all. */
    fail_all(err, why, was_up);
    E.retry_at = mono_ms() + E.retry_ms;
    E.retry_ms = E.retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : E.retry_ms * 2;
}

static void link_start(void)
{
    uint32_t ip;
    char why[160];
    uint8_t key[UVPN_KEY_LEN];
    if (cfg_key(key, why, sizeof why)) {
        E.retry_at = mono_ms() + RETRY_MAX_MS;
        fail_all(EACCES, why, 0);
        return;
    }
    memset(key, 0, sizeof key);
    if (cfg_router_ips(&ip, 1) <= 0) {
        link_down(ENETUNREACH, "cannot resolve the home router");
        return;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s < 0) {
        link_down(ENETUNREACH, "socket() failed");
        return;
    }
    s = high_fd(s, 0);
    int one = 1, idle = 10, intvl = 5, cnt = 3;
    setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(AF_INET, ip, cfg()->proxy_port, &ss);
    __atomic_store_n(&E.link, s, __ATOMIC_RELAXED);
    E.state = L_CONNECTING;
    E.link_deadline = mono_ms() + LINK_CONNECT_MS;
    struct epoll_event ev = {EPOLLOUT | EPOLLIN, {.u32 = EV_LINK}};
    real.epoll_ctl(E.ep, EPOLL_CTL_ADD, s, &ev);
    if (real.connect(s, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) link_down(ENETUNREACH, strerror(errno));
}

/* The TCP connect finished: send HELLO. */
static void link_connected(void)
{
    int e = 0;
    socklen_t el = sizeof e;
    real.getsockopt(E.link, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e) {
        link_down(ENETUNREACH, strerror(e));
        return;
    }
    uint8_t key[UVPN_KEY_LEN], body[UVPN_HELLO_LEN], buf[UVPN_HELLO_LEN + 64];
    char why[160];
    cfg_key(key, why, sizeof why);
    random_bytes(E.nc, sizeof E.nc);
    body[0] = UVPN_ROLE_CLIENT;
    body[1] = 0;
    memcpy(body + 2, E.nc, UVPN_NONCE_LEN);
    memcpy(body + 18, cfg()->holder, UVPN_TOKEN_LEN);
    long n = uvpn_encode(buf, sizeof buf, key, UVPN_T_HELLO, 0, 0, body, sizeof body);
    memset(key, 0, sizeof key);
    E.state = L_HELLO;
    link_write(buf, (size_t)n);
}

static void send_queued(void)
{
    for (ereq *r = E.reqs; r; r = r->next)
        if (!r->sent && !r->done) {
            r->sent = 1;
            send_frame(r->type, r->id, r->body, r->len);
        }
    for (econn *c = E.conns; c; c = c->next)
        if (c->phase == C_QUEUED) send_connect(c);
}

/* Reports the direct connections that ended (lock held, link up): a PATHS request whose answer
 * nobody waits for. */
static void send_paths(void)
{
    if (!E.paths.conns || E.state != L_UP) return;
    uint8_t b[UVPN_PATHS_LEN];
    uvpn_paths_pack(&E.paths, b);
    send_frame(UVPN_T_PATHS, E.next_id++, b, sizeof b);
    memset(&E.paths, 0, sizeof E.paths);
    E.paths_due = 0;
}

/* CHALLENGE verified: the link is up. Declares the source address, registers again what was
 * registered, asks INFO (also the first frame the router must see within its deadline). */
static void link_up(const uint8_t nr[UVPN_NONCE_LEN])
{
    uint8_t key[UVPN_KEY_LEN];
    char why[160];
    cfg_key(key, why, sizeof why);
    uvpn_link_keys(key, E.nc, nr, E.up, E.down);
    memset(key, 0, sizeof key);
    E.state = L_UP;
    E.send_seq = E.recv_seq = 1;
    E.retry_ms = RETRY_FIRST_MS;
    E.info_id = E.next_id++;
    send_frame(UVPN_T_INFO, E.info_id, NULL, 0);
    if (cfg()->have_src) {
        uint8_t b[4];
        put32(b, cfg()->src);
        send_frame(UVPN_T_USE, E.next_id++, b, 4);
    }
    for (int i = 0; i < E.n_keep; i++) send_frame(E.keeps[i].type, E.next_id++, E.keeps[i].body, E.keeps[i].len);
    dbg("link to the home router is up (%d registration(s) renewed)", E.n_keep);
    send_queued();
}

static void on_info(const uint8_t *d, size_t len)
{
    cidr nets[CFG_MAX_NETS];
    size_t n = len / 5;
    if (n > CFG_MAX_NETS) n = CFG_MAX_NETS;
    for (size_t i = 0; i < n; i++) {
        int prefix = d[5 * i + 4] > 32 ? 32 : d[5 * i + 4];
        nets[i].mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
        nets[i].net = get32(d + 5 * i) & nets[i].mask;
    }
    cfg_learn(nets, (int)n);
}

static void on_frame(const uvpn_head *h, const uint8_t *body)
{
    if (h->type != UVPN_T_REPLY || h->len < 1) return; /* PONG or future frames */
    int status = body[0];
    if (h->reqid == E.info_id) {
        if (status == 0) on_info(body + 1, h->len - 1u);
        return;
    }
    for (ereq *r = E.reqs; r; r = r->next) {
        if (r->id != h->reqid || r->done) continue;
        r->done = 1;
        r->status = status;
        r->dlen = h->len - 1u < r->cap ? h->len - 1u : r->cap;
        if (r->data) memcpy(r->data, body + 1, r->dlen);
        if (status) snprintf(r->why, sizeof r->why, "home router answered %s", errno_name(uvpn_status_to_errno(status)));
        pthread_cond_broadcast(&E.cond);
        return;
    }
    for (int i = 0; i < UDP_PATHS; i++) {
        udp_path *u = &E.udp[i];
        if (!u->reqid || u->reqid != h->reqid) continue;
        uvpn_answer a;
        u->reqid = 0;
        u->direct = status == 0 && uvpn_answer_unpack(body + 1, h->len - 1u, &a) == 0 && a.kind == UVPN_TK_DIRECT;
        if (u->direct) u->real_ip = a.real_ip, u->real_port = a.real_port;
        u->until = mono_ms() + ENG_UDP_PATH_MS;
        return;
    }
    econn *c = find_conn(h->reqid);
    if (c) answered(c, status, body + 1, h->len - 1u);
    else if (status) dbg("home router refused a registration: %s", errno_name(uvpn_status_to_errno(status)));
}

static void link_readable(void)
{
    for (;;) {
        ssize_t n = real.recv(E.link, E.in + E.in_len, INBUF - E.in_len, MSG_DONTWAIT);
        if (n == 0) {
            link_down(E.state == L_HELLO ? EACCES : ENETUNREACH,
                      E.state == L_HELLO ? "the home router closed the link during the handshake (wrong key?)"
                                         : "the home router closed the link");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) link_down(ENETUNREACH, strerror(errno));
            break;
        }
        E.in_len += (size_t)n;
        size_t off = 0;
        while (E.in_len - off >= UVPN_HEAD_LEN) {
            uvpn_head h;
            int authed = E.state == L_UP;
            int r = uvpn_decode_head(E.in + off, E.in_len - off, authed, &h);
            if (r) {
                link_down(EPROTO, uvpn_strerror(r));
                return;
            }
            size_t fl = uvpn_frame_len(h.len);
            if (E.in_len - off < fl) break;
            const uint8_t *body;
            uint8_t key[UVPN_KEY_LEN];
            char why[160];
            const uint8_t *mk = E.down;
            if (!authed) {
                cfg_key(key, why, sizeof why);
                mk = key;
            }
            r = uvpn_decode_frame(mk, E.in + off, fl, authed, &h, &body);
            memset(key, 0, sizeof key);
            if (r == 0 && h.seq != (authed ? E.recv_seq : 0)) r = UVPN_E_SEQ;
            if (r) {
                link_down(r == UVPN_E_MAC ? EACCES : EPROTO, uvpn_strerror(r));
                return;
            }
            off += fl;
            if (!authed) {
                if (h.type != UVPN_T_CHALLENGE || h.len != UVPN_CHALLENGE_LEN || memcmp(body + 16, E.nc, 16)) {
                    link_down(EPROTO, "bad CHALLENGE");
                    return;
                }
                link_up(body);
                continue;
            }
            E.recv_seq++;
            on_frame(&h, body);
        }
        memmove(E.in, E.in + off, E.in_len - off);
        E.in_len -= off;
    }
}

static int has_work(void)
{
    for (ereq *r = E.reqs; r; r = r->next)
        if (!r->done) return 1;
    for (econn *c = E.conns; c; c = c->next)
        if (c->phase == C_QUEUED) return 1;
    return E.n_keep > 0 || E.wanted;
}

/* Deadlines: requests and connects that ran out of time; the link's own connect. Returns the
 * time until the next one, ms (-1: none). */
static int run_timers(void)
{
    int64_t now = mono_ms(), next = -1;
#define NEXT(t) (next = next < 0 || (t) < next ? (t) : next)
    for (ereq *r = E.reqs; r; r = r->next) {
        if (r->done) continue;
        if (now >= r->deadline) {
            r->done = 1;
            r->status = -ETIMEDOUT;
            snprintf(r->why, sizeof r->why, "no answer from the home router in time");
            pthread_cond_broadcast(&E.cond);
        } else NEXT(r->deadline);
    }
    for (econn *c = E.conns; c; c = c->next) {
        if (c->phase >= C_DONE || c->phase == C_ANSWERED) continue;
        if (now >= c->deadline) fail_conn(c, ETIMEDOUT);
        else NEXT(c->deadline);
        if (c->phase == C_JOINING && c->direct) {
            settle(c);
            if (c->phase == C_JOINING && c->direct && now >= c->direct_until) fall_back(c, ETIMEDOUT, "no answer in time");
            else if (c->phase == C_JOINING && c->direct) NEXT(c->direct_until);
        }
    }
    if (E.state != L_DOWN && E.state != L_UP) {
        if (now >= E.link_deadline) link_down(ETIMEDOUT, "no answer from the home router");
        else NEXT(E.link_deadline);
    }
    if (E.paths_due && E.state == L_UP) {
        if (now >= E.paths_due) send_paths();
        else NEXT(E.paths_due);
    }
    if (E.state == L_DOWN && has_work()) {
        if (now >= E.retry_at) link_start();
        else NEXT(E.retry_at);
    }
#undef NEXT
    return next < 0 ? -1 : (int)(next - now > 0 ? next - now : 0);
}

/* A short time slice for the engine thread (Linux 6.12's custom slices for ordinary tasks, no
 * privilege needed): its virtual deadline is then earlier than that of a thread it wakes, so the
 * poller woken by the move of a pending socket out of its parking does not preempt it
 * between its two connects (the instant in which the socket looks closed). Ignored where the
 * kernel has no such thing. */
static void short_slice(void)
{
    struct {
        uint32_t size, policy;
        uint64_t flags;
        int32_t nice;
        uint32_t priority;
        uint64_t runtime, deadline, period;
        uint32_t util_min, util_max;
    } attr = {sizeof attr, 0 /* SCHED_OTHER */, 0, 0, 0, 100 * 1000 /* ns */, 0, 0, 0, 0};
    syscall(SYS_sched_setattr, 0, &attr, 0);
}

static void *engine_main(void *arg)
{
    (void)arg;
    short_slice();
    struct epoll_event evs[64];
    pthread_mutex_lock(&E.lock);
    for (;;) {
        int timeout = run_timers();
        if (E.state == L_UP) send_queued();
        pthread_mutex_unlock(&E.lock);
        int n = real.epoll_wait(E.ep, evs, 64, timeout);
        pthread_mutex_lock(&E.lock);
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == EV_WAKE) {
                uint64_t v;
                if (real.read(E.wake, &v, sizeof v) < 0) { /* spurious */ }
            } else if (id == EV_LINK) {
                if (E.link < 0) continue;
                if (E.state == L_CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) link_connected();
                else if (evs[i].events & EPOLLOUT) link_write(NULL, 0);
                if (E.link >= 0 && E.state != L_CONNECTING && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                    link_readable();
            } else {
                econn *c = find_conn(id);
                if (c) settle(c);
            }
        }
    }
    return NULL;
}

static void child_after_fork(void)
{
    /* No engine thread here: forget its state. The link stays open, unused (it keeps the
     * parent's registrations alive); the other descriptors are the parent's to manage. */
    pthread_condattr_t ca;
    pthread_mutex_init(&E.lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&E.cond, &ca);
    E.running = 0;
    if (E.ep >= 0) real.close(E.ep);
    if (E.wake >= 0) real.close(E.wake);
    E.ep = E.wake = -1;
    /* The parent's link stays open here for good, even when the child closes every descriptor
     * (a daemon): it keeps the registrations this child inherited alive. */
    if (E.link >= 0) keep_inherited(E.link);
    __atomic_store_n(&E.link, -1, __ATOMIC_RELAXED);
    E.state = L_DOWN;
    E.in_len = E.out_len = 0;
    for (econn *c = E.conns, *n; c; c = n) {
        n = c->next;
        if (c->dup >= 0) real.close(c->dup);
        free(c);
    }
    E.conns = NULL;
    __atomic_store_n(&pending_count, 0, __ATOMIC_RELAXED);
    E.reqs = NULL; /* owned by the parent's waiting threads, which do not exist here */
    E.n_keep = 0;
    E.wanted = 0;
}

static void fork_prepare(void) { pthread_mutex_lock(&E.lock); }
static void fork_parent(void) { pthread_mutex_unlock(&E.lock); }

static void init_once(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&E.cond, &ca);
    pthread_atfork(fork_prepare, fork_parent, child_after_fork);
}

/* Starts the thread if needed (lock held). 0 or -errno. */
static int ensure_running(void)
{
    if (E.running) return 0;
    if (!E.in && !(E.in = malloc(INBUF))) return -ENOMEM;
    E.ep = epoll_create1(EPOLL_CLOEXEC);
    E.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (E.ep < 0 || E.wake < 0) return -errno;
    E.ep = high_fd(E.ep, 1);
    E.wake = high_fd(E.wake, 1);
    struct epoll_event ev = {EPOLLIN, {.u32 = EV_WAKE}};
    real.epoll_ctl(E.ep, EPOLL_CTL_ADD, E.wake, &ev);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
    /* The thread must not take the program's signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int r = pthread_create(&t, &at, engine_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (r) return -r;
    E.running = 1;
    E.retry_at = 0;
    return 0;
}

/* Takes the lock and starts the engine; -errno when it cannot run (lock not held then). */
static int engine_lock(void)
{
    pthread_once(&once, init_once);
    if (!cfg()->have_proxy) return -ENETUNREACH;
    pthread_mutex_lock(&E.lock);
    int r = ensure_running();
    if (r) {
        pthread_mutex_unlock(&E.lock);
        return r;
    }
    /* A new need after a failure: try again at once unless the last try was just now. */
    if (E.state == L_DOWN && E.retry_at > mono_ms() + RETRY_FIRST_MS) E.retry_at = mono_ms() + RETRY_FIRST_MS;
    return 0;
}

/* Waits once on the condition variable, until a broadcast or the deadline (lock held). */
static void wait_once(int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    if (left <= 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (left > 60000) left = 60000;
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&E.cond, &E.lock, &ts);
}

/* ---- the API ----------------------------------------------------------------------------------- */

int ov_control(int type, const uint8_t *body, size_t len, uint8_t *data, size_t cap,
               size_t *data_len, int timeout_ms, char *why, size_t why_len)
{
    *data_len = 0;
    if (len > UVPN_MAX_REQ_BODY) return -EINVAL;
    int r = engine_lock();
    if (r) {
        snprintf(why, why_len, r == -ENETUNREACH ? "no home router (UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT unset)"
                                                 : "cannot start the overlay engine");
        return r;
    }
    ereq *q = calloc(1, sizeof *q);
    if (!q) {
        pthread_mutex_unlock(&E.lock);
        return -ENOMEM;
    }
    q->id = E.next_id++;
    q->type = type;
    if (len) memcpy(q->body, body, len);
    q->len = len;
    q->data = data;
    q->cap = cap;
    q->deadline = mono_ms() + timeout_ms;
    q->next = E.reqs;
    E.reqs = q;
    if (E.state == L_UP) {
        q->sent = 1;
        send_frame(type, q->id, body, len);
    } else {
        wake_engine();
    }
    while (!q->done && mono_ms() < q->deadline) wait_once(q->deadline);
    if (!q->done) {
        q->status = -ETIMEDOUT;
        snprintf(q->why, sizeof q->why, "no answer from the home router within %d ms", timeout_ms);
    }
    for (ereq **p = &E.reqs; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            break;
        }
    pthread_mutex_unlock(&E.lock);
    r = q->status;
    *data_len = r >= 0 ? q->dlen : 0;
    snprintf(why, why_len, "%s", q->why);
    free(q);
    return r;
}

void eng_report_direct(uint64_t sent, uint64_t received)
{
    if (engine_lock()) return;
    E.paths.conns++;
    E.paths.sent = E.paths.sent + sent > UVPN_MAX_U53 ? UVPN_MAX_U53 : E.paths.sent + sent;
    E.paths.received = E.paths.received + received > UVPN_MAX_U53 ? UVPN_MAX_U53 : E.paths.received + received;
    if (!E.paths_due) {
        E.paths_due = mono_ms() + ENG_PATHS_MS;
        wake_engine();
    }
    pthread_mutex_unlock(&E.lock);
}

int eng_udp_path(uint32_t lip, uint16_t lport, uint32_t dip, uint16_t dport, uint32_t *real_ip, uint16_t *real_port)
{
    if (engine_lock()) return 0;
    int64_t now = mono_ms();
    udp_path *u = NULL, *oldest = &E.udp[0];
    for (int i = 0; i < UDP_PATHS && !u; i++) {
        if (E.udp[i].dip == dip && E.udp[i].dport == dport) u = &E.udp[i];
        else if (E.udp[i].until < oldest->until) oldest = &E.udp[i];
    }
    int direct = 0;
    if (u && now < u->until) {
        direct = u->direct;
        *real_ip = u->real_ip;
        *real_port = u->real_port;
    } else if (E.state == L_UP && (!u || !u->reqid || now - u->asked > ENG_UDP_PATH_MS)) {
        if (!u) {
            u = oldest;
            memset(u, 0, sizeof *u);
            u->dip = dip;
            u->dport = dport;
        }
        uvpn_connect c = {UVPN_PROTO_UDP, UVPN_CF_DIRECT, lip, lport, dip, dport};
        uint8_t b[UVPN_CONNECT_BODY_LEN];
        uvpn_connect_pack(&c, b);
        u->reqid = E.next_id++;
        u->asked = now;
        send_frame(UVPN_T_CONNECT, u->reqid, b, sizeof b);
    }
    pthread_mutex_unlock(&E.lock);
    return direct;
}

void eng_flush_paths(void)
{
    if (!E.running || pthread_mutex_trylock(&E.lock)) return;
    send_paths();
    pthread_mutex_unlock(&E.lock);
}

/* At exit: what is left to report goes now (the frame is written before the process ends). */
__attribute__((destructor)) static void paths_at_exit(void) { eng_flush_paths(); }

void eng_start(void)
{
    if (engine_lock()) return;
    E.wanted = 1;
    wake_engine();
    pthread_mutex_unlock(&E.lock);
}

void eng_keep(int type, const uint8_t *body, size_t len)
{
    if (len > sizeof E.keeps[0].body || engine_lock()) return;
    int i = 0;
    while (i < E.n_keep && !(E.keeps[i].type == type && memcmp(E.keeps[i].body, body, 6) == 0)) i++;
    if (i == E.n_keep && E.n_keep < MAX_KEEP) E.n_keep++;
    if (i < E.n_keep) {
        E.keeps[i].type = type;
        memcpy(E.keeps[i].body, body, len);
        E.keeps[i].len = len;
    }
    pthread_mutex_unlock(&E.lock);
}

void eng_forget(int type, uint32_t ip, uint16_t vport)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    uint8_t k[6];
    put32(k, ip);
    put16(k + 4, vport);
    for (int i = 0; i < E.n_keep; i++)
        if (E.keeps[i].type == type && memcmp(E.keeps[i].body, k, 6) == 0) {
            E.keeps[i] = E.keeps[--E.n_keep];
            break;
        }
    pthread_mutex_unlock(&E.lock);
}

/* A new connect (lock held). */
/* A new connect (lock held); saved_defer >= 0: dup was parked by the caller, its
 * TCP_DEFER_ACCEPT before. Answered at once when it can be minted, else its CONNECT sent. */
static econn *new_conn(int dup, int family, const uvpn_connect *c, int blocking, int64_t deadline, int saved_defer)
{
    econn *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->id = E.next_id++;
    if (E.next_id >= 0x7ffffff0u) E.next_id = 1; /* ids stay positive ints, apart from EV_* */
    x->dup = dup;
    x->family = family;
    x->blocking = blocking;
    x->deadline = deadline;
    x->req = *c;
    x->phase = C_QUEUED;
    x->parked = saved_defer >= 0;
    x->saved_defer = x->parked ? saved_defer : 0;
    if (!blocking) __atomic_fetch_add(&pending_count, 1, __ATOMIC_RELAXED);
    x->next = E.conns;
    E.conns = x;
    if (mint(c, &x->ans)) {
        x->phase = C_SENT;
        take_answer(x);
        /* Taken in the caller's thread: the engine's wait must learn this attempt's race timer
         * (direct_until), or a SYN nobody answers holds the connect until something else wakes it. */
        if (x->phase == C_JOINING) wake_engine();
    } else {
        send_connect(x);
    }
    return x;
}

/* eng_connect_async and eng_connect_minted: minted_only refuses (EWOULDBLOCK, dup untouched)
 * a connect whose answer would have to come from the router. */
static uint32_t start_async(int dup, int family, const uvpn_connect *c, int saved_defer, int64_t deadline,
                            int minted_only)
{
    int r = engine_lock();
    if (r) {
        errno = -r;
        return 0;
    }
    if (minted_only && !mintable(c)) {
        pthread_mutex_unlock(&E.lock);
        errno = EWOULDBLOCK;
        return 0;
    }
    dup = high_fd(dup, 1);
    econn *x = new_conn(dup, family, c, 0, deadline, saved_defer);
    uint32_t id = x ? x->id : 0;
    pthread_mutex_unlock(&E.lock);
    if (!x) errno = ENOMEM;
    return id;
}

uint32_t eng_connect_async(int dup, int family, const uvpn_connect *c, int saved_defer, int64_t deadline)
{
    return start_async(dup, family, c, saved_defer, deadline, 0);
}

uint32_t eng_connect_minted(int dup, int family, const uvpn_connect *c, int saved_defer, int64_t deadline)
{
    return start_async(dup, family, c, saved_defer, deadline, 1);
}

int eng_mintable(const uvpn_connect *c)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    int r = mintable(c) != NULL;
    pthread_mutex_unlock(&E.lock);
    return r;
}

int eng_mint_answer(uvpn_connect *c, uvpn_answer *a)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    int r = mint(c, a);
    if (r) c->src_port = a->src_port;
    pthread_mutex_unlock(&E.lock);
    return r;
}

int eng_conn_state(uint32_t id, int consume, uvpn_connect *c, int *err)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    econn *x = find_conn(id);
    int st = ENG_UNKNOWN;
    /* The router answered and the socket is on its way to the data port (a LAN round trip), or
     * to the listener (a direct attempt, which may yet fall back to the relay): the caller waits
     * for it, briefly — up to JOIN_WAIT_MS, and for a direct attempt also through its race and
     * the relay's answer — so that what it reads next is the truth (unwrapped select may have
     * seen the socket look closed for an instant while it moved). */
    int64_t until = mono_ms() + JOIN_WAIT_MS;
    if (x && x->direct && x->direct_until + JOIN_WAIT_MS > until) until = x->direct_until + JOIN_WAIT_MS;
    for (int joined = 0; x && !joined && mono_ms() < until;) {
        if (x->fell_back && (x->phase == C_QUEUED || x->phase == C_SENT)) {
            wait_once(until);
        } else if (x->phase == C_JOINING && x->dup >= 0) {
            int d = real.fcntl(x->dup, F_DUPFD_CLOEXEC, 0);
            int64_t wait = (x->direct ? x->direct_until + 1 : until) - mono_ms();
            joined = !x->direct;
            pthread_mutex_unlock(&E.lock);
            if (d >= 0) {
                struct pollfd p = {d, POLLOUT, 0};
                real.poll(&p, 1, wait > 0 ? (int)wait : 0);
                real.close(d);
            }
            pthread_mutex_lock(&E.lock);
            if ((x = find_conn(id))) {
                settle(x);
                if (x->phase == C_JOINING && x->direct && mono_ms() >= x->direct_until) fall_back(x, ETIMEDOUT, "no answer in time");
            }
            continue;
        } else {
            break;
        }
        x = find_conn(id);
    }
    if (x) {
        settle(x);
        if (x->phase == C_DONE) {
            st = ENG_DONE;
            *c = x->req;
        } else if (x->phase == C_FAILED) {
            st = ENG_FAILED;
            *err = x->err;
            if (consume) x->phase = C_REPORTED;
        } else if (x->phase != C_REPORTED) {
            st = ENG_PENDING;
        }
    }
    pthread_mutex_unlock(&E.lock);
    return st;
}

void eng_abandon(int fd)
{
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    real.connect(fd, &unspec, sizeof unspec);
    int e;
    socklen_t el = sizeof e;
    real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el); /* the ECONNRESET of a disconnect in SYN_SENT */
}

static int move_high(int fd) { return high_fd(fd, 1); }

int eng_park(int fd)
{
    if (park_hold(fd, move_high) == 0) return 0;
    int on = 30;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &on, sizeof on);
    return real.listen(fd, 1) ? -errno : 0;
}

int eng_conn_wait_answer(uint32_t id, int64_t until)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    econn *x;
    while ((x = find_conn(id)) && (x->phase == C_QUEUED || x->phase == C_SENT) && mono_ms() < until) wait_once(until);
    int st = x && (x->phase == C_QUEUED || x->phase == C_SENT) ? ENG_PENDING : ENG_DONE;
    if (st == ENG_PENDING && x->dup >= 0 && !x->parked && park_conn(x)) fail_conn(x, ENETUNREACH);
    pthread_mutex_unlock(&E.lock);
    return st;
}

int eng_conn_done(uint32_t id)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    econn *x = find_conn(id);
    int done = x && x->phase == C_DONE;
    pthread_mutex_unlock(&E.lock);
    return done;
}

void eng_conn_release(uint32_t id)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&E.lock);
    econn *x = find_conn(id);
    if (x) {
        unpend(x);
        let_go(x);
        unlink_conn(x);
        free(x);
    }
    pthread_mutex_unlock(&E.lock);
}

int eng_connect_wait(uvpn_connect *c, int64_t deadline, uvpn_answer *a, char *why, size_t why_len)
{
    int r = engine_lock();
    if (r) {
        snprintf(why, why_len, "no home router (UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT unset)");
        return r;
    }
    econn *x = new_conn(-1, AF_INET, c, 1, deadline, -1);
    if (!x) {
        pthread_mutex_unlock(&E.lock);
        return -ENOMEM;
    }
    while (x->phase != C_ANSWERED && x->phase != C_FAILED && mono_ms() < deadline) wait_once(deadline);
    if (x->phase == C_ANSWERED) {
        *a = x->ans;
        c->src_port = x->ans.src_port;
        r = 0;
    } else {
        r = -(x->phase == C_FAILED ? x->err : ETIMEDOUT);
        snprintf(why, why_len, "%s", strerror(-r));
    }
    unlink_conn(x);
    free(x);
    pthread_mutex_unlock(&E.lock);
    return r;
}
