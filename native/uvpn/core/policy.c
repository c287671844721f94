/* policy.c: the overlay's per-call decisions and overlay work (see policy.h). Moved out of
 * uvpn/wrap/socket.c so the seccomp supervisor makes exactly the same decisions as libuvpn.so. */
#include "uvpn/core/policy.h"
#include "common/bytes.h"
#include "uvpn/core/config.h"
#include "common/log.h"
#include "common/netio.h"
#include "uvpn/core/engine.h"
#include "uvpn/core/overlay.h"
#include "common/real.h"
#include "uvpn/core/udp.h"
#include "common/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ANY_WAIT_MS 20         /* wildcard listener: a connection from the router's address
                                  without bytes by then is a real client */
#define UNLISTEN_MS 1000

int pol_sockopt_int(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    return real.getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0 ? v : -1;
}

void pol_unlisten(const vinfo *v)
{
    if (v->kind == VS_UDP) {
        pol_udp_unregister(v);
        return;
    }
    if (!v->registered || v->owner != getpid()) return; /* forked children never unregister */
    uint8_t body[14];
    put32(body, v->lip);
    put16(body + 4, v->lport);
    memcpy(body + 6, v->lid, 8);
    eng_forget(UVPN_T_LISTEN, v->lip, v->lport);
    char why[256] = "", a[24];
    size_t n;
    int st = ov_control(UVPN_T_UNLISTEN, body, sizeof body, NULL, 0, &n, UNLISTEN_MS, why, sizeof why);
    if (st) dbg("unlisten %s: %s", fmt_addr(v->lip, v->lport, a), why);
    else dbg("unlisten %s: done", fmt_addr(v->lip, v->lport, a));
}

int pol_backlog(int has, const vinfo *st, int backlog)
{
    return has && st->kind == VS_BOUND_VIRTUAL && backlog < POL_MIN_BACKLOG ? POL_MIN_BACKLOG : backlog;
}

void pol_release(const vinfo *v)
{
    if (v->kind == VS_CONNECTING) eng_conn_release(v->conn);
    else pol_unlisten(v);
}

/* Connects fd to sa before the deadline without changing O_NONBLOCK (the socket is blocking):
 * a temporary SO_SNDTIMEO bounds the kernel's wait. Returns 0 or -errno (-ETIMEDOUT). */
static int connect_deadline(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    struct timeval old;
    socklen_t ol = sizeof old;
    int restore = 0;
    if (real.getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &old, &ol) == 0) {
        int64_t left = deadline - mono_ms();
        if (left < 1) left = 1;
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        restore = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
    }
    int r = real.connect(fd, sa, len);
    int e = errno;
    if (restore) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &old, sizeof old);
    if (r == 0) return 0;
    if (e == EINPROGRESS || e == EAGAIN) return -ETIMEDOUT; /* SO_SNDTIMEO ran out */
    if (e != EINTR) return -e;
    /* EINTR: the kernel keeps connecting; wait for it. */
    int w = wait_fd(fd, POLLOUT, deadline);
    if (w <= 0) return w == 0 ? -ETIMEDOUT : w;
    int err = 0;
    socklen_t el = sizeof err;
    real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    return -err;
}

/* The deadline of a blocking connect: the socket's SO_SNDTIMEO when set, else UVPN_CONNECT_TIMEOUT. */
static int64_t blocking_deadline(int fd)
{
    struct timeval tv = {0, 0};
    socklen_t l = sizeof tv;
    int64_t ms = cfg()->timeout_ms;
    if (real.getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l) == 0 && (tv.tv_sec || tv.tv_usec))
        ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    return mono_ms() + (ms > 0 ? ms : 1);
}

/* Connects the blocking socket fd to the answer's real address before the deadline and writes
 * its ticket (DATA to the home router, DIRECT to the listener). 0 or -errno, the reason in why. */
static int join_blocking(int fd, int family, const uvpn_connect *c, const uvpn_answer *a, int64_t deadline,
                         char *why, size_t why_len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(family, a->real_ip, a->real_port, &ss);
    const char *to = a->kind == UVPN_TK_DIRECT ? "the listener's real port" : "home router's data port";
    int r = connect_deadline(fd, (struct sockaddr *)&ss, sl, deadline);
    if (r) {
        snprintf(why, why_len, "%s: %s", to, strerror(-r));
        return r;
    }
    uint8_t t[UVPN_TICKET_LEN];
    if (eng_ticket(c, a, pol_real_port(fd), t, why, why_len)) return -EACCES;
    r = send_all(fd, t, sizeof t, deadline);
    if (r) snprintf(why, why_len, "writing the ticket to %s: %s", to, strerror(-r));
    return r ? -EPIPE : 0;
}

/* A blocking overlay connect answered with a (by the router or minted): the socket to the
 * router's data port and the DATA ticket, or, for a brokered direct connection, straight to the
 * listener with the DIRECT ticket; a direct attempt that fails or takes longer than
 * ENG_DIRECT_MS is abandoned for the relay (CONNECT again, flag DIRECT_FAILED). A connect
 * already under way to a's address (pol_connect_now) is waited for by join_blocking's
 * connect(), as the kernel does for a blocking socket. */
static int join_answer(int fd, int family, uvpn_connect *c, uvpn_answer a, int64_t deadline, char *why,
                       size_t why_len)
{
    int r;
    if (a.kind == UVPN_TK_DIRECT) {
        int64_t race = mono_ms() + ENG_DIRECT_MS;
        r = join_blocking(fd, family, c, &a, race < deadline ? race : deadline, why, why_len);
        if (r == 0) {
            c->flags = UVPN_CF_DIRECT;
            return 0;
        }
        char d[24];
        dbg("connect %s: direct attempt failed (%s): through the home router", fmt_addr(c->dst_ip, c->dst_port, d), why);
        eng_abandon(fd);
        c->flags = eng_direct_failed(c, -r);
        c->src_port = 0;
        r = eng_connect_wait(c, deadline, &a, why, why_len);
        if (r) return r;
        if (a.kind != UVPN_TK_DATA) {
            snprintf(why, why_len, "the home router brokered a direct path again");
            return -EPROTO;
        }
    }
    c->flags = 0;
    r = join_blocking(fd, family, c, &a, deadline, why, why_len);
    return r == 0 || r == -ETIMEDOUT || r == -EACCES ? r : -ENETUNREACH;
}

/* A blocking overlay connect in the caller's thread: CONNECT on the link, then join_answer. */
static int connect_blocking(int fd, int family, uvpn_connect *c, char *why, size_t why_len)
{
    int64_t deadline = blocking_deadline(fd);
    uvpn_answer a;
    int r = eng_connect_wait(c, deadline, &a, why, why_len);
    return r ? r : join_answer(fd, family, c, a, deadline, why, why_len);
}

/* The state of a socket that a blocking connect c connected (r 0), logged; or r logged. */
static int blocking_done(int r, int family, const uvpn_connect *c, const char *d, const char *why, vinfo *out)
{
    if (r) {
        dbg("connect %s: %s (%s)", d, why, errno_name(-r));
        return r;
    }
    vinfo n = {.kind = VS_CONNECTED, .family = family, .lip = c->src_ip, .lport = c->src_port,
               .pip = c->dst_ip, .pport = c->dst_port, .direct = c->flags == UVPN_CF_DIRECT,
               .owner = c->flags == UVPN_CF_DIRECT ? getpid() : 0};
    *out = n;
    if (n.direct) eng_direct_ok(c);
    dbg("connect %s: connected %s (virtual port %u)", d, n.direct ? "directly to the listener" : "through the home router",
        c->src_port);
    return 0;
}

/* pol_connect_now of a blocking socket (fl its file status flags): see policy.h. */
static int blocking_now(int fd, int family, int fl, uvpn_connect *c, pol_pending *p, const char *d, vinfo *out)
{
    if (!eng_mint_answer(c, &p->ans)) return POL_WOULD_WAIT;
    p->req = *c;
    struct sockaddr_storage ss;
    socklen_t sl = sa_make_v4(family, p->ans.real_ip, p->ans.real_port, &ss);
    real.fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int r = real.connect(fd, (struct sockaddr *)&ss, sl), e = errno;
    real.fcntl(fd, F_SETFL, fl);
    struct pollfd pf = {fd, POLLOUT, 0};
    /* Connected without a wait (loopback), and not failed: the ticket is written here (a fresh
     * connection's send buffer takes it whole). */
    if (r == 0 || (e == EINPROGRESS && real.poll(&pf, 1, 0) == 1 && pf.revents == POLLOUT)) {
        uint8_t t[UVPN_TICKET_LEN];
        char why[256] = "";
        if (eng_ticket(&p->req, &p->ans, pol_real_port(fd), t, why, sizeof why))
            return blocking_done(-EACCES, family, &p->req, d, why, out);
        if (real.send(fd, t, sizeof t, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof t) {
            p->req.flags = UVPN_CF_DIRECT;
            return blocking_done(0, family, &p->req, d, why, out);
        }
    }
    p->deadline = blocking_deadline(fd);
    return POL_STARTED; /* under way, or failed: pol_connect_resume sees which */
}

int pol_connect_resume(int fd, int family, pol_pending *p, vinfo *out)
{
    char d[24], why[256] = "";
    fmt_addr(p->req.dst_ip, p->req.dst_port, d);
    int r = join_answer(fd, family, &p->req, p->ans, p->deadline, why, sizeof why);
    return blocking_done(r, family, &p->req, d, why, out);
}

/* A non-blocking overlay connect: the socket is parked (eng_park: it shows no readiness, as a
 * connect in progress), and the engine takes a duplicate of it. -EINPROGRESS on success. */
int pol_park_ms;

static int connect_async(int fd, int family, const uvpn_connect *c, int now_only, char *why, size_t why_len)
{
    int defer = -1; /* >= 0 once parked here: its TCP_DEFER_ACCEPT before */
    socklen_t dl = sizeof defer;
    if (!pol_park_ms) {
        defer = 0;
        real.getsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, &dl);
        int r = eng_park(fd);
        if (r) {
            setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
            snprintf(why, why_len, "cannot park the socket: listen: %s", strerror(-r));
            return r;
        }
    }
    int dup = real.fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int64_t deadline = mono_ms() + cfg()->timeout_ms;
    uint32_t id = dup < 0 ? 0 : now_only ? eng_connect_minted(dup, family, c, defer, deadline)
                                         : eng_connect_async(dup, family, c, defer, deadline);
    /* now_only: a direct attempt that failed at once falls back to the relay; its answer is
     * not waited for (the socket waits parked). */
    if (id && pol_park_ms && eng_conn_wait_answer(id, mono_ms() + (now_only ? 0 : pol_park_ms)) == ENG_PENDING) {
        dbg("connect: no answer within %d ms: the socket waits parked", now_only ? 0 : pol_park_ms);
    }
    if (!id) {
        int e = errno;
        if (dup >= 0) real.close(dup);
        if (defer >= 0) {
            eng_abandon(fd);
            setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
        }
        if (now_only && e == EWOULDBLOCK) return POL_WOULD_WAIT;
        snprintf(why, why_len, "cannot hand the connect to the engine: %s", strerror(e));
        return -ENETUNREACH;
    }
    return (int)id;
}

/* pol_connect, and with pend pol_connect_now. */
static int connect_to(int fd, int family, uint32_t ip, uint16_t port, int has, const vinfo *prev, vinfo *out,
                      pol_pending *pend)
{
    int now_only = pend != NULL;
    char d[24], why[256] = "";
    fmt_addr(ip, port, d);
    int type = pol_sockopt_int(fd, SO_TYPE);
    int domain = pol_sockopt_int(fd, SO_DOMAIN);
    if (type < 0 || domain < 0) return -errno; /* EBADF / ENOTSOCK from getsockopt */
    if (domain != family) return -EAFNOSUPPORT;
    int fl = real.fcntl(fd, F_GETFL);
    int nonblocking = fl >= 0 && (fl & O_NONBLOCK);
    /* A UDP connect may register with the router, a pending one may wait for its move, a
     * blocking one waits for all of it. */
    if (now_only && (type != SOCK_STREAM || (has && prev->kind == VS_CONNECTING)))
        return POL_WOULD_WAIT;
    if (type == SOCK_DGRAM) return pol_udp_connect(fd, ip, port, has, prev, out);
    if (type != SOCK_STREAM) {
        dbg("connect %s: this socket type over the overlay is not supported (ENETUNREACH)", d);
        return -ENETUNREACH;
    }
    if (has && prev->kind == VS_CONNECTED) return -EISCONN;
    if (has && prev->kind == VS_CONNECTING) {
        vinfo st = *prev;
        int r = pol_settle(&st, 0);
        if (r == 0) return -EALREADY;
        if (r == 1) {
            *out = st;
            return -EISCONN;
        }
        pol_release(prev); /* it failed: this connect starts afresh */
        has = 0;
    }
    const struct cfg *c = cfg();
    if (!c->have_src || !c->have_proxy) {
        dbg("connect %s: %s not set (ENETUNREACH)", d,
            !c->have_src ? "UVPN_SRC_ADDR" : "UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT");
        return -ENETUNREACH;
    }
    uvpn_connect req = {UVPN_PROTO_TCP, c->direct_never ? 0 : UVPN_CF_DIRECT, c->src, 0, ip, port};
    if (has && (prev->kind == VS_BOUND_VIRTUAL || prev->kind == VS_BOUND_ANY)) req.src_port = prev->lport;
    if (nonblocking) {
        int id = connect_async(fd, family, &req, now_only, why, sizeof why);
        if (id == POL_WOULD_WAIT && now_only) return POL_WOULD_WAIT;
        if (id < 0) {
            dbg("connect %s: %s (%s)", d, why, errno_name(-id));
            return id;
        }
        vinfo n = {.kind = VS_CONNECTING, .family = family, .lip = c->src, .pip = ip, .pport = port,
                   .conn = (uint32_t)id};
        /* Under the supervisor, a connect the engine finished within the call (a minted ticket,
         * loopback) is kept as connected at once: the program's next calls on it need no look
         * at the engine. EINPROGRESS all the same, as the kernel's own connect says. */
        if (pol_park_ms && eng_conn_done(n.conn)) pol_settle(&n, 0);
        *out = n;
        dbg("connect %s: in progress (non-blocking)", d);
        return -EINPROGRESS;
    }
    if (now_only) return blocking_now(fd, family, fl, &req, pend, d, out);
    int r = connect_blocking(fd, family, &req, why, sizeof why);
    return blocking_done(r, family, &req, d, why, out);
}

int pol_connect(int fd, int family, uint32_t ip, uint16_t port, int has, const vinfo *prev, vinfo *out)
{
    return connect_to(fd, family, ip, port, has, prev, out, NULL);
}

int pol_connect_now(int fd, int family, uint32_t ip, uint16_t port, int has, const vinfo *prev, vinfo *out,
                    pol_pending *pend)
{
    return connect_to(fd, family, ip, port, has, prev, out, pend);
}

int pol_connect_at_hand(uint32_t ip, uint16_t port)
{
    const struct cfg *c = cfg();
    uvpn_connect req = {UVPN_PROTO_TCP, UVPN_CF_DIRECT, c->src, 0, ip, port};
    return c->have_src && c->have_proxy && !c->direct_never && eng_mintable(&req);
}

int pol_settle(vinfo *st, int consume)
{
    if (st->kind != VS_CONNECTING) return 1;
    uvpn_connect c;
    int err = 0;
    switch (eng_conn_state(st->conn, consume, &c, &err)) {
    case ENG_PENDING: return 0;
    case ENG_DONE: {
        vinfo n = {.kind = VS_CONNECTED, .family = st->family, .lip = c.src_ip, .lport = c.src_port,
                   .pip = st->pip, .pport = st->pport, .direct = c.flags == UVPN_CF_DIRECT,
                   .owner = c.flags == UVPN_CF_DIRECT ? getpid() : 0};
        eng_conn_release(st->conn);
        *st = n;
        return 1;
    }
    case ENG_FAILED: return -err;
    default: return -ECONNABORTED; /* already reported: the socket is an ordinary failed one */
    }
}

uint16_t pol_real_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    uint32_t ip;
    uint16_t port = 0;
    if (real.getsockname(fd, (struct sockaddr *)&ss, &l) == 0) {
        if (ss.ss_family == AF_INET6 && l >= (socklen_t)sizeof(struct sockaddr_in6))
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        else if (sa_get_v4((struct sockaddr *)&ss, l, &ip, &port) == 0)
            port = 0;
    }
    return port;
}

/* Binds fd virtual-only: really to the wildcard address at an ephemeral port (the router relays
 * to it), as ip:port for the overlay. wild: WILD_NONE for a bind to ip itself, else how a
 * wildcard bind became this (UVPN_BIND_ANY=virtual). 1 with *out, or -errno. */
static int bind_virtual(int fd, int family, uint32_t ip, uint16_t port, int wild, vinfo *out)
{
    char a[24];
    fmt_addr(ip, port, a);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    ss.ss_family = (sa_family_t)family; /* port 0, address INADDR_ANY / in6addr_any */
    if (real.bind(fd, (struct sockaddr *)&ss, sl)) {
        int e = errno;
        dbg("bind %s: real bind failed (%s)", a, errno_name(e));
        return -e;
    }
    uint16_t rp = pol_real_port(fd);
    vinfo n = {.kind = VS_BOUND_VIRTUAL, .family = family, .lip = ip, .lport = port ? port : rp,
               .real_port = rp, .wild = (uint8_t)wild};
    *out = n;
    dbg("bind %s: virtual%s, real port %u", fmt_addr(ip, n.lport, a),
        wild == WILD_V4 ? " only (UVPN_BIND_ANY=virtual)" : wild == WILD_V6ONLY ? " only, IPv6-only: unreachable" : "", rp);
    return 1;
}

int pol_bind(int fd, const struct sockaddr *addr, socklen_t len, vinfo *out)
{
    uint32_t ip = 0;
    uint16_t port = 0;
    int v4 = sa_get_v4(addr, len, &ip, &port);
    int any6 = !v4 && addr && len >= (socklen_t)sizeof(struct sockaddr_in6) &&
               addr->sa_family == AF_INET6 &&
               IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr);
    if (!v4 && !any6) return 0;
    int family = addr->sa_family;
    if (any6) port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    int any = any6 || (family == AF_INET && ip == 0);
    if (pol_sockopt_int(fd, SO_TYPE) == SOCK_DGRAM && pol_sockopt_int(fd, SO_DOMAIN) == family)
        return pol_udp_bind(fd, addr, len, ip, port, any, out);
    if (pol_sockopt_int(fd, SO_TYPE) != SOCK_STREAM || pol_sockopt_int(fd, SO_DOMAIN) != family ||
        (any && !cfg()->have_src) || (!any && !cfg_is_virtual(ip)))
        return 0;
    char a[24];
    const struct cfg *c = cfg();
    if (any && c->bind_any_virtual) {
        int v6only = 0;
        socklen_t ol = sizeof v6only;
        if (family == AF_INET6) real.getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &ol);
        return bind_virtual(fd, family, c->src, port, v6only ? WILD_V6ONLY : WILD_V4, out);
    }
    if (any) {
        if (real.bind(fd, addr, len)) return -errno;
        uint16_t rp = pol_real_port(fd);
        vinfo n = {.kind = VS_BOUND_ANY, .family = family, .lip = c->src, .lport = rp, .real_port = rp};
        *out = n;
        return 1;
    }
    fmt_addr(ip, port, a);
    if (!c->have_src || ip != c->src) {
        char s[16];
        dbg("bind %s: not this process's virtual address (%s) (EADDRNOTAVAIL)", a,
            c->have_src ? ip_str(c->src, s) : "UVPN_SRC_ADDR unset");
        return -EADDRNOTAVAIL;
    }
    return bind_virtual(fd, family, ip, port, WILD_NONE, out);
}

int pol_listen(int fd, vinfo *st)
{
    if ((st->kind != VS_BOUND_VIRTUAL && st->kind != VS_BOUND_ANY) || st->registered || st->wild == WILD_V6ONLY)
        return 0;
    uint8_t body[UVPN_LISTEN_LEN];
    put32(body, st->lip);
    put16(body + 4, st->lport);
    put16(body + 6, st->real_port);
    random_bytes(body + 8, 8);
    /* Only a virtual-only listener checks the ticket of every connection (a wildcard one looks
     * only at the router's): only it may be reached directly, unless UVPN_DIRECT=never. */
    body[16] = st->kind == VS_BOUND_VIRTUAL && !cfg()->direct_never ? UVPN_LF_DIRECT : 0;
    char why[256] = "", a[24];
    size_t n;
    fmt_addr(st->lip, st->lport, a);
    if (st->kind == VS_BOUND_VIRTUAL) {
        /* Strangers stay out of the accept queue until they send: then their first bytes are
         * checked at once. */
        int defer = 10;
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
    }
    int status = ov_control(UVPN_T_LISTEN, body, sizeof body, NULL, 0, &n, cfg()->timeout_ms, why,
                            sizeof why);
    if (status == 0) {
        st->registered = 1;
        st->owner = getpid();
        memcpy(st->lid, body + 8, 8);
        eng_keep(UVPN_T_LISTEN, body, sizeof body);
        dbg("listen %s: registered with the home router (real port %u)", a, st->real_port);
        return 1;
    }
    int e = status < 0 ? -status : uvpn_status_to_errno(status);
    if (st->kind == VS_BOUND_ANY) {
        dbg("listen %s: %s (%s); listening natively only", a, why, errno_name(e));
        return 0;
    }
    dbg("listen %s: %s (%s)", a, why, errno_name(e));
    return -e;
}

int pol_accepted(const vinfo *st, int nfd, const struct sockaddr *peer, socklen_t pl, vinfo *out,
                 struct sockaddr_storage *peer_out, socklen_t *peer_len)
{
    uint32_t pip = 0;
    uint16_t pport = 0;
    int got = sa_get_v4(peer, pl, &pip, &pport);
    if (!got && peer && pl >= (socklen_t)sizeof(struct sockaddr_in6) && peer->sa_family == AF_INET6)
        pport = ntohs(((const struct sockaddr_in6 *)peer)->sin6_port);
    int wait_ms = 0;
    if (st->kind != VS_BOUND_VIRTUAL) {
        if (!st->registered || !got || !cfg_is_router_ip(pip)) return 0;
        wait_ms = ANY_WAIT_MS;
    }
    char la[24], pa[24], why[256] = "";
    fmt_addr(st->lip, st->lport, la);
    uvpn_ticket t;
    int r = ov_accept_ticket(nfd, st->lip, st->lport, st->lid, pport, wait_ms, &t, why, sizeof why);
    if (r == 0 && st->kind != VS_BOUND_VIRTUAL) return 0; /* a real client of a wildcard listener */
    if (r <= 0) {
        if (r == 0) snprintf(why, sizeof why, "no ticket (not the router's)");
        dbg("accept %s: closed connection from %s: %s", la, got ? fmt_addr(pip, pport, pa) : "?", why);
        return r ? r : -EPROTO;
    }
    vinfo n = {.kind = VS_CONNECTED, .family = st->family, .lip = t.dst_ip, .lport = t.dst_port,
               .pip = t.src_ip, .pport = t.src_port};
    *out = n;
    *peer_len = sa_make_v4(st->family, t.src_ip, t.src_port, peer_out);
    dbg("accept %s: %s connection from %s", la, t.kind == UVPN_TK_DIRECT ? "direct" : "relayed",
        fmt_addr(t.src_ip, t.src_port, pa));
    return 1;
}

int pol_name(const vinfo *st, int peer, struct sockaddr_storage *ss, socklen_t *sl)
{
    int peer_known = st->kind == VS_CONNECTED || (st->kind == VS_UDP && st->pport);
    if (peer ? !peer_known : st->kind == VS_BOUND_ANY) return 0;
    if (!peer && st->wild && st->kind == VS_BOUND_VIRTUAL) { /* what the program bound: the wildcard */
        memset(ss, 0, sizeof *ss);
        if (st->family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons(st->lport);
            *sl = sizeof *s6;
        } else {
            *sl = sa_make_v4(AF_INET, 0, st->lport, ss);
        }
        return 1;
    }
    *sl = peer ? sa_make_v4(st->family, st->pip, st->pport, ss)
               : sa_make_v4(st->family, st->lip, st->lport, ss);
    return 1;
}

int pol_send_blocked(int fd, const struct sockaddr *addr, socklen_t len, int flags, const char *op)
{
    uint32_t ip;
    uint16_t port;
    if (!addr || !sa_get_v4(addr, len, &ip, &port)) return 0;
    int v = cfg_is_virtual(ip);
    /* TCP ignores the address unless MSG_FASTOPEN turns the send into a connect. */
    if (v && pol_sockopt_int(fd, SO_TYPE) == SOCK_STREAM && !(flags & MSG_FASTOPEN)) v = 0;
    if (!v) return 0;
    char a[24];
    dbg("%s %s: UDP over the overlay is not supported (ENETUNREACH)", op, fmt_addr(ip, port, a));
    return 1;
}
