/* preload_net.c: the LD_PRELOAD wrappers of libuvpn.so (connect, bind, listen, accept, accept4,
 * getsockname, getpeername, close, dup, dup2, dup3, fcntl, fcntl64, and for UDP over the overlay
 * sendto, sendmsg, sendmmsg, send, write, recvfrom, recvmsg, recvmmsg, recv, read).
 * Owns the decisions "is this call about a virtual address?" and the per-fd state transitions;
 * protocol work is in overlay.c, configuration in config.c, state in fdtable.c.
 *
 * Rules: anything not about a virtual address goes straight to the real function with errno
 * untouched; a successful call leaves errno as the program had it; every failure inside the
 * overlay becomes -1 with a meaningful errno and, with UVPN_DEBUG, one "uvpn: " line. */
#include "config.h"
#include "fdlife.h"
#include "fdtable.h"
#include "log.h"
#include "netio.h"
#include "overlay.h"
#include "policy.h"
#include "real.h"
#include "udp.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Set while this thread runs overlay code: anything it triggers (e.g. an NSS module connecting
 * during name resolution) passes straight through, so the wrappers never recurse. Shared with
 * the name wrappers of resolve.c (hidden: not exported from libuvpn.so). */
__thread __attribute__((tls_model("initial-exec"))) int inside;

#define NEED(fn)                   \
    do {                           \
        real_init();               \
        if (!real.fn) {            \
            errno = ENOSYS;        \
            return -1;             \
        }                          \
    } while (0)

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
    inside = 1;
    pol_unlisten(v);
    inside = 0;
}

/* ---- connect ---------------------------------------------------------------------------- */

static int fail(int e)
{
    errno = e;
    return -1;
}

static int virtual_connect(int fd, int family, uint32_t ip, uint16_t port, int saved)
{
    vinfo st, n;
    int has = fdt_get(fd, &st);
    inside = 1;
    int r = pol_connect(fd, family, ip, port, has, &st, &n);
    inside = 0;
    if (r) return fail(-r);
    if (fdt_set(fd, &n)) dbg("connect: connected, but fd %d cannot be tracked", fd);
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
            int has = fdt_get(fd, &st);
            if (has && st.kind == VS_CONNECTED && fdt_clear(fd, &rel)) release_state(&rel);
            else if (has && st.kind == VS_UDP && st.pport) st.pip = 0, st.pport = 0, fdt_set(fd, &st);
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

EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    NEED(bind);
    if (inside) return real.bind(fd, addr, len);
    int saved = errno;
    vinfo n;
    inside = 1;
    int r = pol_bind(fd, addr, len, &n);
    inside = 0;
    if (r < 0) return fail(-r);
    if (r == 0) {
        errno = saved;
        return real.bind(fd, addr, len);
    }
    if (fdt_set(fd, &n)) {
        /* A wildcard bind simply stays a native socket; a virtual one cannot work untracked. */
        if (n.kind == VS_BOUND_VIRTUAL) {
            dbg("bind: cannot track fd %d (%s)", fd, errno_name(errno));
            return -1;
        }
    }
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
    if (!fdt_get(fd, &st)) {
        errno = saved;
        return 0;
    }
    inside = 1;
    int p = pol_listen(&st);
    inside = 0;
    if (p < 0) return fail(-p);
    if (p > 0) fdt_set(fd, &st);
    errno = saved;
    return 0;
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
    /* Each round waits for a new connection (as accept does); failed relays are dropped. */
    for (;;) {
        struct sockaddr_storage peer, vpeer;
        socklen_t pl = sizeof peer, vl = 0;
        int nfd = four ? real.accept4(fd, (struct sockaddr *)&peer, &pl, flags)
                       : real.accept(fd, (struct sockaddr *)&peer, &pl);
        if (nfd < 0) return -1;
        vinfo n;
        inside = 1;
        int r = pol_accepted(&st, nfd, (struct sockaddr *)&peer, pl, &n, &vpeer, &vl);
        inside = 0;
        if (r == 0) {
            vinfo rel;
            if (fdt_clear(nfd, &rel)) release_state(&rel); /* stale state of a reused fd */
            sa_copy_out(&peer, pl, addr, addrlen);
            errno = saved;
            return nfd;
        }
        if (r > 0) {
            if (fdt_set_new(nfd, &n) == 0) {
                sa_copy_out(&vpeer, vl, addr, addrlen);
                errno = saved;
                return nfd;
            }
            dbg("accept: dropped relayed connection: cannot track fd %d", nfd);
        }
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
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!pol_name(&st, peer, &ss, &sl)) return 0;
    if (!addr || !addrlen) {
        errno = EFAULT;
        return -1;
    }
    sa_copy_out(&ss, sl, addr, addrlen);
    return 1;
}

/* getsockname/getpeername: the virtual name when the fd has one, else the real call. */
static int name_call(int fd, struct sockaddr *addr, socklen_t *addrlen, int peer,
                     int (*real_fn)(int, struct sockaddr *, socklen_t *))
{
    int saved = errno;
    int r = virtual_name(fd, addr, addrlen, peer);
    if (r) return r < 0 ? -1 : (errno = saved, 0);
    errno = saved;
    return real_fn(fd, addr, addrlen);
}

EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    NEED(getsockname);
    return name_call(fd, addr, addrlen, 0, real.getsockname);
}

EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    NEED(getpeername);
    return name_call(fd, addr, addrlen, 1, real.getpeername);
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
int in_vfork_child(void) /* also used by fdlife.c */
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

/* ---- datagrams: UDP over the overlay (udp.c) --------------------------------------------- */

/* 1 (errno = ENETUNREACH) if sending to addr would put a packet toward a virtual address
 * through a socket the overlay cannot carry (raw sockets, ...). */
static int blocked_dest(int fd, const void *addr, socklen_t len, int flags, const char *op)
{
    if (inside || !addr) return 0;
    int saved = errno;
    inside = 1;
    int b = pol_send_blocked(fd, addr, len, flags, op);
    inside = 0;
    errno = b ? ENETUNREACH : saved;
    return b;
}

/* sendmsg through the overlay when msg is about it: 1 with *ret the call's result, else 0
 * (make the real call). */
static int udp_send(int fd, const struct msghdr *msg, int flags, ssize_t *ret)
{
    if (inside || !msg) return 0;
    vinfo st;
    int has = fdt_maybe(fd) && fdt_get(fd, &st);
    if (!msg->msg_name && !(has && st.kind == VS_UDP)) return 0;
    int saved = errno, changed;
    inside = 1;
    ssize_t r = pol_udp_send(fd, has, &st, &changed, msg, flags);
    inside = 0;
    if (r == POL_UDP_NATIVE) {
        errno = saved;
        return 0;
    }
    if (changed && fdt_set(fd, &st)) dbg("send: cannot track fd %d", fd);
    *ret = r < 0 ? (errno = (int)-r, -1) : (errno = saved, r);
    return 1;
}

/* recvmsg through the overlay when fd is a registered overlay UDP socket: 1 with *ret. */
static int udp_recv(int fd, struct msghdr *msg, int flags, ssize_t *ret)
{
    vinfo st;
    if (inside || !fdt_maybe(fd) || !fdt_get(fd, &st) || st.kind != VS_UDP || !st.registered) return 0;
    int saved = errno;
    inside = 1;
    ssize_t r = pol_udp_recv(fd, &st, msg, flags);
    inside = 0;
    *ret = r < 0 ? (errno = (int)-r, -1) : (errno = saved, r);
    return 1;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                      socklen_t len)
{
    NEED(sendto);
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {(void *)addr, addr ? len : 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    if (udp_send(fd, &m, flags, &r)) return r;
    if (blocked_dest(fd, addr, len, flags, "sendto")) return -1;
    return real.sendto(fd, buf, n, flags, addr, len);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    NEED(send);
    if (!fdt_maybe(fd)) return real.send(fd, buf, n, flags);
    return sendto(fd, buf, n, flags, NULL, 0);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    NEED(write);
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {NULL, 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    if (fdt_maybe(fd) && udp_send(fd, &m, 0, &r)) return r;
    return real.write(fd, buf, n);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    NEED(sendmsg);
    ssize_t r;
    if (udp_send(fd, msg, flags, &r)) return r;
    if (msg && blocked_dest(fd, msg->msg_name, msg->msg_namelen, flags, "sendmsg")) return -1;
    if (msg && msg->msg_controllen && !inside) fdl_scm(msg, 1);
    return real.sendmsg(fd, msg, flags);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    NEED(sendmmsg);
    vinfo st;
    int ours = fdt_maybe(fd) && fdt_get(fd, &st) && st.kind == VS_UDP;
    for (unsigned int i = 0; !ours && vec && i < vlen && i < 1024; i++) {
        uint32_t ip;
        uint16_t port;
        const struct msghdr *h = &vec[i].msg_hdr;
        if (!inside && h->msg_name && sa_get_v4(h->msg_name, h->msg_namelen, &ip, &port) && is_virtual(ip))
            ours = 1;
    }
    if (!ours || inside) return real.sendmmsg(fd, vec, vlen, flags);
    /* One datagram at a time, as the kernel does; stop at the first failure. */
    unsigned int i;
    for (i = 0; i < vlen && i < 1024; i++) {
        ssize_t r;
        if (!udp_send(fd, &vec[i].msg_hdr, flags, &r)) {
            if (blocked_dest(fd, vec[i].msg_hdr.msg_name, vec[i].msg_hdr.msg_namelen, flags, "sendmmsg")) r = -1;
            else r = real.sendmsg(fd, &vec[i].msg_hdr, flags);
        }
        if (r < 0) return i ? (int)i : -1;
        vec[i].msg_len = (unsigned int)r;
    }
    return (int)i;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    NEED(recvfrom);
    struct iovec v = {buf, n};
    struct msghdr m = {addr, addr && alen ? *alen : 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    if (!udp_recv(fd, &m, flags, &r)) return real.recvfrom(fd, buf, n, flags, addr, alen);
    if (r >= 0 && addr && alen) *alen = m.msg_namelen;
    return r;
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    NEED(recv);
    if (!fdt_maybe(fd)) return real.recv(fd, buf, n, flags);
    return recvfrom(fd, buf, n, flags, NULL, NULL);
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    NEED(read);
    if (!fdt_maybe(fd)) return real.read(fd, buf, n);
    struct iovec v = {buf, n};
    struct msghdr m = {NULL, 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    return udp_recv(fd, &m, 0, &r) ? r : real.read(fd, buf, n);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    NEED(recvmsg);
    ssize_t r;
    if (msg && udp_recv(fd, msg, flags, &r)) return r;
    r = real.recvmsg(fd, msg, flags);
    if (r >= 0 && msg && msg->msg_controllen && !inside) fdl_scm(msg, 0);
    return r;
}

EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *timeout)
{
    NEED(recvmmsg);
    ssize_t r;
    if (!vec || !vlen || !udp_recv(fd, &vec[0].msg_hdr, flags & ~MSG_WAITFORONE, &r))
        return real.recvmmsg(fd, vec, vlen, flags, timeout);
    if (r < 0) return -1;
    vec[0].msg_len = (unsigned int)r;
    /* The rest only while more are queued (the timeout is not applied: documented). */
    int saved = errno;
    unsigned int i = 1;
    for (; i < vlen && udp_recv(fd, &vec[i].msg_hdr, (flags & ~MSG_WAITFORONE) | MSG_DONTWAIT, &r) && r >= 0; i++)
        vec[i].msg_len = (unsigned int)r;
    errno = saved;
    return (int)i;
}
