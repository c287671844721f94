/* socket.c: the LD_PRELOAD socket wrappers of libuvpn.so (connect, bind, listen, accept, accept4,
 * getsockname, getpeername, getsockopt, close, dup, dup2, dup3, fcntl, fcntl64; the datagram and
 * stream I/O calls are in dgram.c).
 * Owns the decisions "is this call about a virtual address?" and the per-fd state transitions;
 * protocol work is in overlay.c, configuration in config.c, state in fdtable.c.
 *
 * Rules: anything not about a virtual address goes straight to the real function with errno
 * untouched; a successful call leaves errno as the program had it; every failure inside the
 * overlay becomes -1 with a meaningful errno and, with UVPN_DEBUG, one "uvpn: " line. */
#include "uvpn/wrap/wrap.h"
#include "common/fcntl_arg.h"
#include "uvpn/core/config.h"
#include "uvpn/wrap/fdlife.h"
#include "uvpn/wrap/fdtable.h"
#include "common/log.h"
#include "common/netio.h"
#include "uvpn/core/engine.h"
#include "uvpn/core/paths.h"
#include "uvpn/core/policy.h"
#include "common/real.h"
#include "uvpn/core/udp.h"
#include "common/wire.h"

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

__thread __attribute__((tls_model("initial-exec"))) int inside;

int is_virtual(uint32_t ip)
{
    inside = 1;
    int v = cfg_is_virtual(ip);
    inside = 0;
    return v;
}

/* The last fd of a state went away: UNLISTEN a listener (best effort), drop a pending connect. */
static void release_state(const vinfo *v)
{
    inside = 1;
    pol_release(v);
    inside = 0;
}

int pending_gate(int fd, vinfo *st)
{
    if (st->kind != VS_CONNECTING) return 0;
    int saved = errno;
    inside = 1;
    int r = pol_settle(st, 0);
    inside = 0;
    errno = saved;
    if (r == 1) {
        if (fdt_set(fd, st)) dbg("connect: connected, but fd %d cannot be tracked", fd);
        return 0;
    }
    return r == 0 ? 1 : r == -ECONNABORTED ? 0 : r;
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
    if (r == -EINPROGRESS || (r == -EISCONN && has && st.kind == VS_CONNECTING)) {
        if (fdt_set(fd, &n)) dbg("connect: fd %d cannot be tracked", fd);
    }
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
    vinfo st;
    int has = !inside && fdt_maybe(fd) && fdt_get(fd, &st);
    int r = real.listen(fd, pol_backlog(has, &st, backlog));
    if (r || !has) return r;
    int saved = errno;
    inside = 1;
    int p = pol_listen(fd, &st);
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
    /* Each round takes the next connection (as accept does); bad ones are closed. */
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
        real.close(nfd); /* not the router's: closed at once; go on with the next (EAGAIN when none) */
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
    pending_gate(fd, &st); /* a connect that just got through shows its virtual names */
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
int in_vfork_child(void)
{
    pthread_once(&pid_once, pid_init);
    return getpid() != table_pid;
}

/* getsockopt(SO_ERROR) of a socket whose overlay connect is in progress answers like the kernel
 * for a connect in progress (0), and once it failed, the overlay's errno, once. */
EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    NEED(getsockopt);
    vinfo st;
    if (inside || level != SOL_SOCKET || name != SO_ERROR || !fdt_maybe(fd) || !fdt_get(fd, &st) ||
        st.kind != VS_CONNECTING)
        return real.getsockopt(fd, level, name, val, len);
    int saved = errno;
    inside = 1;
    int r = pol_settle(&st, 1);
    inside = 0;
    if (r == 1 && fdt_set(fd, &st)) dbg("connect: connected, but fd %d cannot be tracked", fd);
    errno = saved;
    int rr = real.getsockopt(fd, level, name, val, len); /* also clears the kernel's own error */
    if (r < 0) {
        vinfo rel;
        if (fdt_clear(fd, &rel)) release_state(&rel);
        if (rr == 0 && val && len && *len >= (socklen_t)sizeof(int) && r != -ECONNABORTED) *(int *)val = -r;
    }
    return rr;
}

EXPORT int close(int fd)
{
    NEED(close);
    if (eng_owns_fd(fd)) return fail(EBADF); /* the engine's own: not the program's to close */
    if (!fdt_maybe(fd) || in_vfork_child()) return real.close(fd); /* lock-free for ordinary fds */
    vinfo rel;
    int last = fdt_clear(fd, &rel);
    if (last) paths_closing(fd, &rel);
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
    void *arg = fcntl_takes_arg(cmd) ? va_arg(ap, void *) : NULL;
    va_end(ap);
    NEED(fcntl);
    return fcntl_common(real.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = fcntl_takes_arg(cmd) ? va_arg(ap, void *) : NULL;
    va_end(ap);
    NEED(fcntl64);
    return fcntl_common(real.fcntl64, fd, cmd, arg);
}
