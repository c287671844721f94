/* preload_net.c: the LD_PRELOAD wrappers of libuvpn.so (connect, bind, listen, accept, accept4,
 * getsockname, getpeername, close, dup, dup2, dup3, fcntl, fcntl64, sendto, sendmsg, sendmmsg).
 * Owns the decisions "is this call about a virtual address?" and the per-fd state transitions;
 * protocol work is in overlay.c, configuration in config.c, state in fdtable.c.
 *
 * Rules: anything not about a virtual address goes straight to the real function with errno
 * untouched; a successful call leaves errno as the program had it; every failure inside the
 * overlay becomes -1 with a meaningful errno and, with UVPN_DEBUG, one "uvpn: " line. */
#include "config.h"
#include "fdtable.h"
#include "log.h"
#include "netio.h"
#include "overlay.h"
#include "real.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define ACCEPT_FRAME_MS 5000   /* time a relayed connection gets to deliver its CONNECT */
#define PEEK_MS 500            /* "bound any": wait for the magic from the router's address */
#define UNLISTEN_MS 1000

/* Set while this thread runs overlay code: anything it triggers (e.g. an NSS module connecting
 * during name resolution) passes straight through, so the wrappers never recurse. */
static __thread __attribute__((tls_model("initial-exec"))) int inside;

#define NEED(fn)                   \
    do {                           \
        real_init();               \
        if (!real.fn) {            \
            errno = ENOSYS;        \
            return -1;             \
        }                          \
    } while (0)

static int sockopt_int(int fd, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    return getsockopt(fd, SOL_SOCKET, opt, &v, &l) == 0 ? v : -1;
}

static int is_virtual(uint32_t ip)
{
    inside = 1;
    int v = cfg_is_virtual(ip);
    inside = 0;
    return v;
}

/* Best-effort UNLISTEN for a listener state whose last fd just went away. */
static void release_state(const vinfo *v)
{
    if (!v->registered || v->owner != getpid()) return; /* forked children never unregister */
    uint8_t body[6] = {(uint8_t)(v->lip >> 24), (uint8_t)(v->lip >> 16), (uint8_t)(v->lip >> 8),
                       (uint8_t)v->lip, (uint8_t)(v->lport >> 8), (uint8_t)v->lport};
    char why[256] = "", a[24];
    size_t n;
    inside = 1;
    int st = ov_control(UVPN_T_UNLISTEN, body, sizeof body, NULL, 0, &n, UNLISTEN_MS, why, sizeof why);
    inside = 0;
    if (st) dbg("unlisten %s: %s", fmt_addr(v->lip, v->lport, a), why);
    else dbg("unlisten %s: done", fmt_addr(v->lip, v->lport, a));
}

/* ---- connect ---------------------------------------------------------------------------- */

static int fail(int e)
{
    errno = e;
    return -1;
}

static int virtual_connect(int fd, int family, uint32_t ip, uint16_t port, int saved)
{
    char d[24], why[256] = "";
    fmt_addr(ip, port, d);
    int type = sockopt_int(fd, SO_TYPE);
    int domain = sockopt_int(fd, SO_DOMAIN);
    if (type < 0 || domain < 0) return -1; /* EBADF / ENOTSOCK from getsockopt */
    if (domain != family) return fail(EAFNOSUPPORT);
    if (type != SOCK_STREAM) {
        dbg("connect %s: %s over the overlay is not supported (ENETUNREACH)", d,
            type == SOCK_DGRAM ? "UDP" : "this socket type");
        return fail(ENETUNREACH);
    }
    vinfo st;
    int has = fdt_get(fd, &st);
    if (has && st.kind == VS_CONNECTED) return fail(EISCONN);
    const struct cfg *c = cfg();
    if (!c->have_src || !c->have_proxy) {
        dbg("connect %s: %s not set (ENETUNREACH)", d,
            !c->have_src ? "UVPN_SRC_ADDR" : "UVPN_HOME_PROXY/UVPN_HOME_PROXY_PORT");
        return fail(ENETUNREACH);
    }
    uint16_t sport = 0;
    inside = 1;
    int r = ov_connect(fd, family, c->src, has ? st.lport : 0, ip, port, &sport, why, sizeof why);
    inside = 0;
    if (r) {
        dbg("connect %s: %s (%s)", d, why, errno_name(-r));
        return fail(-r);
    }
    vinfo n = {.kind = VS_CONNECTED, .family = family, .lip = c->src, .lport = sport,
               .pip = ip, .pport = port};
    if (fdt_set(fd, &n)) dbg("connect %s: connected, but fd %d cannot be tracked", d, fd);
    else dbg("connect %s: connected through the home router (local port %u)", d, sport);
    errno = saved;
    return 0;
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(connect);
    uint32_t ip;
    uint16_t port;
    if (inside || !sa_get_v4(addr, len, &ip, &port)) {
        int r = real.connect(fd, addr, len);
        /* AF_UNSPEC dissolves a connection: forget any overlay peer. */
        if (r == 0 && addr && len >= (socklen_t)sizeof(sa_family_t) && addr->sa_family == AF_UNSPEC &&
            fdt_maybe(fd)) {
            int e = errno;
            vinfo st, rel;
            if (fdt_get(fd, &st) && st.kind == VS_CONNECTED && fdt_clear(fd, &rel)) release_state(&rel);
            errno = e;
        }
        return r;
    }
    int saved = errno;
    if (!is_virtual(ip)) {
        errno = saved;
        return real.connect(fd, addr, len);
    }
    return virtual_connect(fd, addr->sa_family, ip, port, saved);
}

/* ---- bind / listen ---------------------------------------------------------------------- */

/* Real port of fd (0 on failure). */
static uint16_t real_port(int fd)
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

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(bind);
    uint32_t ip = 0;
    uint16_t port = 0;
    int v4 = !inside && sa_get_v4(addr, len, &ip, &port);
    int any6 = !inside && !v4 && addr && len >= (socklen_t)sizeof(struct sockaddr_in6) &&
               addr->sa_family == AF_INET6 &&
               IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr);
    if (!v4 && !any6) return real.bind(fd, addr, len);
    int saved = errno;
    int family = addr->sa_family;
    if (any6) port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
    int any = any6 || (family == AF_INET && ip == 0);
    if (sockopt_int(fd, SO_TYPE) != SOCK_STREAM || sockopt_int(fd, SO_DOMAIN) != family ||
        (any && !cfg()->have_src) || (!any && !is_virtual(ip))) {
        errno = saved;
        return real.bind(fd, addr, len);
    }
    char a[24];
    const struct cfg *c = cfg();
    if (any) {
        int r = real.bind(fd, addr, len);
        if (r) return r;
        uint16_t rp = real_port(fd);
        vinfo n = {.kind = VS_BOUND_ANY, .family = family, .lip = c->src, .lport = rp, .real_port = rp};
        fdt_set(fd, &n); /* if untrackable it simply stays a native socket */
        errno = saved;
        return 0;
    }
    fmt_addr(ip, port, a);
    if (!c->have_src || ip != c->src) {
        char s[16];
        dbg("bind %s: not this process's virtual address (%s) (EADDRNOTAVAIL)", a,
            c->have_src ? ip_str(c->src, s) : "UVPN_SRC_ADDR unset");
        return fail(EADDRNOTAVAIL);
    }
    /* Really bind to the wildcard address with an ephemeral port; the router relays to it. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    ss.ss_family = (sa_family_t)family; /* port 0, address INADDR_ANY / in6addr_any */
    int r = real.bind(fd, (struct sockaddr *)&ss, sl);
    if (r) {
        dbg("bind %s: real bind failed (%s)", a, errno_name(errno));
        return r;
    }
    uint16_t rp = real_port(fd);
    vinfo n = {.kind = VS_BOUND_VIRTUAL, .family = family, .lip = ip, .lport = port ? port : rp,
               .real_port = rp};
    if (fdt_set(fd, &n)) {
        dbg("bind %s: cannot track fd %d (%s)", a, fd, errno_name(errno));
        return -1;
    }
    dbg("bind %s: virtual, real port %u", fmt_addr(ip, n.lport, a), rp);
    errno = saved;
    return 0;
}

EXPORT int listen(int fd, int backlog)
{
    NEED(listen);
    int r = real.listen(fd, backlog);
    if (r || inside || !fdt_maybe(fd)) return r;
    int saved = errno;
    vinfo st;
    if (!fdt_get(fd, &st) || (st.kind != VS_BOUND_VIRTUAL && st.kind != VS_BOUND_ANY) ||
        st.registered) {
        errno = saved;
        return 0;
    }
    uint8_t body[8] = {(uint8_t)(st.lip >> 24), (uint8_t)(st.lip >> 16), (uint8_t)(st.lip >> 8),
                       (uint8_t)st.lip, (uint8_t)(st.lport >> 8), (uint8_t)st.lport,
                       (uint8_t)(st.real_port >> 8), (uint8_t)st.real_port};
    char why[256] = "", a[24];
    size_t n;
    fmt_addr(st.lip, st.lport, a);
    inside = 1;
    int status = ov_control(UVPN_T_LISTEN, body, sizeof body, NULL, 0, &n, cfg()->timeout_ms, why,
                            sizeof why);
    inside = 0;
    if (status == 0) {
        st.registered = 1;
        st.owner = getpid();
        fdt_set(fd, &st);
        dbg("listen %s: registered with the home router (real port %u)", a, st.real_port);
        errno = saved;
        return 0;
    }
    int e = status < 0 ? -status : uvpn_status_to_errno(status);
    if (st.kind == VS_BOUND_ANY) {
        dbg("listen %s: %s (%s); listening natively only", a, why, errno_name(e));
        errno = saved;
        return 0;
    }
    dbg("listen %s: %s (%s)", a, why, errno_name(e));
    return fail(e);
}

/* ---- accept ----------------------------------------------------------------------------- */

static int do_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags, int four)
{
    if (inside || !fdt_maybe(fd))
        return four ? real.accept4(fd, addr, addrlen, flags) : real.accept(fd, addr, addrlen);
    int saved = errno;
    vinfo st;
    if (!fdt_get(fd, &st) || (st.kind != VS_BOUND_VIRTUAL && st.kind != VS_BOUND_ANY)) {
        errno = saved;
        return four ? real.accept4(fd, addr, addrlen, flags) : real.accept(fd, addr, addrlen);
    }
    int fl = real.fcntl(fd, F_GETFL);
    int nonblocking = fl >= 0 && (fl & O_NONBLOCK);
    char la[24], pa[24], why[256];
    fmt_addr(st.lip, st.lport, la);
    /* Each round waits for a new connection (as accept does); failed relays are dropped. */
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        int nfd = four ? real.accept4(fd, (struct sockaddr *)&peer, &pl, flags)
                       : real.accept(fd, (struct sockaddr *)&peer, &pl);
        if (nfd < 0) return -1;
        uint32_t pip = 0;
        uint16_t pport = 0;
        int got = sa_get_v4((struct sockaddr *)&peer, pl, &pip, &pport);
        int relay = st.kind == VS_BOUND_VIRTUAL;
        if (!relay && st.registered && got) {
            inside = 1;
            relay = cfg_is_router_ip(pip) && ov_peek_magic(nfd, mono_ms() + PEEK_MS);
            inside = 0;
        }
        if (!relay) {
            vinfo rel;
            if (fdt_clear(nfd, &rel)) release_state(&rel); /* stale state of a reused fd */
            sa_copy_out(&peer, pl, addr, addrlen);
            errno = saved;
            return nfd;
        }
        uvpn_connect c;
        why[0] = 0;
        inside = 1;
        int r = ov_read_connect(nfd, st.lip, st.lport, mono_ms() + ACCEPT_FRAME_MS, &c, why, sizeof why);
        inside = 0;
        if (r == 0) {
            vinfo n = {.kind = VS_CONNECTED, .family = st.family, .lip = c.dst_ip,
                       .lport = c.dst_port, .pip = c.src_ip, .pport = c.src_port};
            if (fdt_set_new(nfd, &n) == 0) {
                struct sockaddr_storage ss;
                socklen_t sl = sa_make_v4(st.family, c.src_ip, c.src_port, &ss);
                sa_copy_out(&ss, sl, addr, addrlen);
                dbg("accept %s: relayed connection from %s", la, fmt_addr(c.src_ip, c.src_port, pa));
                errno = saved;
                return nfd;
            }
            snprintf(why, sizeof why, "cannot track fd %d", nfd);
        }
        dbg("accept %s: dropped connection from %s: %s", la,
            got ? fmt_addr(pip, pport, pa) : "?", why);
        real.close(nfd);
        if (nonblocking) return fail(EAGAIN);
    }
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    NEED(accept);
    return do_accept(fd, addr, addrlen, 0, 0);
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    NEED(accept4);
    return do_accept(fd, addr, addrlen, flags, 1);
}

/* ---- names ------------------------------------------------------------------------------ */

static int virtual_name(int fd, struct sockaddr *addr, socklen_t *addrlen, int peer)
{
    vinfo st;
    if (inside || !fdt_maybe(fd) || !fdt_get(fd, &st)) return 0;
    if (peer ? st.kind != VS_CONNECTED : st.kind == VS_BOUND_ANY) return 0;
    if (!addr || !addrlen) {
        errno = EFAULT;
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = peer ? sa_make_v4(st.family, st.pip, st.pport, &ss)
                        : sa_make_v4(st.family, st.lip, st.lport, &ss);
    sa_copy_out(&ss, sl, addr, addrlen);
    return 1;
}

EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    NEED(getsockname);
    int saved = errno;
    int r = virtual_name(fd, addr, addrlen, 0);
    if (r) return r < 0 ? -1 : (errno = saved, 0);
    errno = saved;
    return real.getsockname(fd, addr, addrlen);
}

EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    NEED(getpeername);
    int saved = errno;
    int r = virtual_name(fd, addr, addrlen, 1);
    if (r) return r < 0 ? -1 : (errno = saved, 0);
    errno = saved;
    return real.getpeername(fd, addr, addrlen);
}

/* ---- close / dup ------------------------------------------------------------------------ */

/* A vfork()ed child shares our memory until it execs: it must not change the parent's table
 * (e.g. when it closes fds before exec). vfork runs no atfork handlers, so compare pids. */
static pid_t table_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static void pid_child(void) { table_pid = getpid(); }
static void pid_init(void)
{
    table_pid = getpid();
    pthread_atfork(NULL, NULL, pid_child);
}
/* At load time, so the first call can never come from a vfork child. */
__attribute__((constructor)) static void uvpn_load(void) { pthread_once(&pid_once, pid_init); }
static int in_vfork_child(void)
{
    pthread_once(&pid_once, pid_init);
    return getpid() != table_pid;
}

EXPORT int close(int fd)
{
    NEED(close);
    if (!fdt_maybe(fd) || in_vfork_child()) return real.close(fd); /* lock-free for ordinary fds */
    vinfo rel;
    int last = fdt_clear(fd, &rel);
    int r = real.close(fd);
    int e = errno;
    if (last) release_state(&rel);
    errno = e;
    return r;
}

/* After a successful duplication of oldfd onto newfd. */
static void after_dup(int oldfd, int newfd)
{
    if (newfd < 0 || (!fdt_maybe(oldfd) && !fdt_maybe(newfd))) return;
    int e = errno;
    if (in_vfork_child()) {
        errno = e;
        return;
    }
    vinfo rel;
    if (fdt_share(oldfd, newfd, &rel)) release_state(&rel);
    errno = e;
}

EXPORT int dup(int fd)
{
    NEED(dup);
    int r = real.dup(fd);
    after_dup(fd, r);
    return r;
}

EXPORT int dup2(int oldfd, int newfd)
{
    NEED(dup2);
    int r = real.dup2(oldfd, newfd);
    if (r >= 0 && oldfd != newfd) after_dup(oldfd, r);
    return r;
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
    NEED(dup3);
    int r = real.dup3(oldfd, newfd, flags);
    if (r >= 0) after_dup(oldfd, r);
    return r;
}

/* The third argument is forwarded as a pointer-sized value: on x86_64 an int, a long and a
 * pointer travel in the same register, and libc's own fcntl reads it the same way. */
static int fcntl_common(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
    int r = fn(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) after_dup(fd, r);
    return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    NEED(fcntl);
    return fcntl_common(real.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    NEED(fcntl64);
    return fcntl_common(real.fcntl64, fd, cmd, arg);
}

/* ---- datagrams to virtual addresses: fail closed ----------------------------------------- */

/* 1 (errno = ENETUNREACH) if sending to addr would put a packet toward a virtual address. */
static int blocked_dest(int fd, const void *addr, socklen_t len, int flags, const char *op)
{
    uint32_t ip;
    uint16_t port;
    if (inside || !addr || !sa_get_v4(addr, len, &ip, &port)) return 0;
    int saved = errno;
    int v = is_virtual(ip);
    /* TCP ignores the address unless MSG_FASTOPEN turns the send into a connect. */
    if (v && sockopt_int(fd, SO_TYPE) == SOCK_STREAM && !(flags & MSG_FASTOPEN)) v = 0;
    if (!v) {
        errno = saved;
        return 0;
    }
    char a[24];
    dbg("%s %s: UDP over the overlay is not supported (ENETUNREACH)", op, fmt_addr(ip, port, a));
    errno = ENETUNREACH;
    return 1;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                      socklen_t len)
{
    NEED(sendto);
    if (blocked_dest(fd, addr, len, flags, "sendto")) return -1;
    return real.sendto(fd, buf, n, flags, addr, len);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    NEED(sendmsg);
    if (msg && blocked_dest(fd, msg->msg_name, msg->msg_namelen, flags, "sendmsg")) return -1;
    return real.sendmsg(fd, msg, flags);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    NEED(sendmmsg);
    for (unsigned int i = 0; vec && i < vlen && i < 1024; i++)
        if (blocked_dest(fd, vec[i].msg_hdr.msg_name, vec[i].msg_hdr.msg_namelen, flags, "sendmmsg"))
            return -1;
    return real.sendmmsg(fd, vec, vlen, flags);
}
