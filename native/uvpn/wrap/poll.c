/* poll.c: libuvpn.so's wrappers of poll, ppoll, epoll_ctl, epoll_wait and epoll_pwait, which
 * hide one instant of a non-blocking overlay connect (docs/UVPN.md, "Non-blocking connects").
 * The engine moves a pending socket out of the holding port (a disconnect in SYN_SENT:
 * native/uvpn/core/park.c) or of the listening state, and connects it on, two calls in a row; a
 * poller woken in between sees POLLOUT|POLLHUP (from SYN_SENT also POLLERR: the disconnect's
 * ECONNRESET, which the engine reads at once) for a moment, as for a closed socket.
 * Such an event on a pending overlay socket is looked at again once the move is over (the
 * engine's lock, and a short wait for the join), and dropped while the socket is still only
 * connecting, or replaced by what the socket shows now. With no connect pending in the process
 * (one atomic load) every call goes straight to libc. epoll reports user data, not fds: epoll_ctl
 * remembers which fd each (epoll fd, data) registration is, in a fixed table (a lost entry only
 * means that event is passed on unfiltered). */
#include "uvpn/wrap/wrap.h"
#include "uvpn/wrap/fdtable.h"
#include "uvpn/core/engine.h"
#include "common/netio.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

#define FAIL_WAIT_MS 20

/* 1 when the HUP or ERR event on fd is the instant of the move and nothing else is there
 * now (drop it); else 0 with *now the events fd shows now (0: leave the event as it is). */
static int spurious(int fd, short *now)
{
    vinfo st;
    /* The gate waits for the move to finish (and briefly for the join): what the socket shows
     * after that is the truth, connected or still connecting. A failed connect is left alone. */
    if (!fdt_maybe(fd) || fdt_connected(fd) || !fdt_get(fd, &st) || st.kind != VS_CONNECTING) return 0;
    if (pending_gate(fd, &st) < 0) {
        /* Failed: the engine has connected it to a refusing port; the reset that makes it show
         * POLLERR, as a refused connect does, is a local round trip away. */
        struct pollfd p = {fd, POLLOUT, 0};
        for (int64_t end = mono_ms() + FAIL_WAIT_MS; real.poll(&p, 1, 1) >= 0 && !(p.revents & POLLERR) && mono_ms() < end;)
            p.revents = 0;
        *now = p.revents;
        return 0;
    }
    struct pollfd again = {fd, POLLIN | POLLOUT, 0};
    if (real.poll(&again, 1, 0) == 0) return 1;
    *now = again.revents;
    return 0;
}

/* Drops or corrects the spurious entries of a poll result; returns how many have events left. */
static int drop_spurious(struct pollfd *fds, nfds_t n, int r)
{
    int e = errno;
    for (nfds_t i = 0; i < n && r > 0; i++) {
        short ev = fds[i].revents, now = ev;
        if (!(ev & (POLLHUP | POLLERR))) continue;
        if (spurious(fds[i].fd, &now)) {
            fds[i].revents = 0;
            r--;
        } else {
            fds[i].revents = (short)(now & (fds[i].events | POLLERR | POLLHUP | POLLNVAL));
        }
    }
    errno = e;
    return r;
}

static int ms_left(int64_t deadline)
{
    if (deadline < 0) return -1;
    int64_t ms = deadline - mono_ms();
    return ms > 0 ? (int)ms : 0;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    NEED(poll);
    if (inside || !eng_pending()) return real.poll(fds, n, timeout);
    int64_t deadline = timeout < 0 ? -1 : mono_ms() + timeout;
    for (;;) {
        int r = real.poll(fds, n, timeout);
        if (r <= 0) return r;
        if ((r = drop_spurious(fds, n, r)) > 0) return r;
        if ((timeout = ms_left(deadline)) == 0) return 0;
    }
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
    NEED(ppoll);
    if (inside || !eng_pending()) return real.ppoll(fds, n, tmo, mask);
    int64_t deadline = tmo ? mono_ms() + tmo->tv_sec * 1000 + tmo->tv_nsec / 1000000 : -1;
    struct timespec t;
    for (;;) {
        int r = real.ppoll(fds, n, tmo, mask);
        if (r <= 0) return r;
        if ((r = drop_spurious(fds, n, r)) > 0) return r;
        if (deadline >= 0) {
            int ms = ms_left(deadline);
            if (ms == 0) return 0;
            t.tv_sec = ms / 1000;
            t.tv_nsec = (long)(ms % 1000) * 1000000;
            tmo = &t;
        }
    }
}

/* ---- epoll ------------------------------------------------------------------------------ */

#define REG_SLOTS 65536

typedef struct {
    int epfd, fd;
    uint64_t data;
} reg;

static reg regs[REG_SLOTS];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned slot_of(int epfd, uint64_t data)
{
    uint64_t h = (data ^ ((uint64_t)(unsigned)epfd << 32)) * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> 48) % REG_SLOTS;
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    NEED(epoll_ctl);
    int r = real.epoll_ctl(epfd, op, fd, ev);
    if (r || inside || !ev || op == EPOLL_CTL_DEL) return r;
    int e = errno;
    pthread_mutex_lock(&reg_lock);
    reg *s = &regs[slot_of(epfd, ev->data.u64)];
    s->epfd = epfd + 1; /* 0: empty */
    s->fd = fd;
    s->data = ev->data.u64;
    pthread_mutex_unlock(&reg_lock);
    errno = e;
    return r;
}

/* The fd registered in epfd with data, or -1. */
static int fd_of(int epfd, uint64_t data)
{
    pthread_mutex_lock(&reg_lock);
    reg *s = &regs[slot_of(epfd, data)];
    int fd = s->epfd == epfd + 1 && s->data == data ? s->fd : -1;
    pthread_mutex_unlock(&reg_lock);
    return fd;
}

/* Drops or corrects the spurious events of an epoll result; returns how many are left. */
static int drop_spurious_ep(int epfd, struct epoll_event *evs, int r)
{
    int e = errno, k = 0;
    for (int i = 0; i < r; i++) {
        uint32_t ev = evs[i].events;
        short now = 0;
        int fd = ev & (EPOLLHUP | EPOLLERR) ? fd_of(epfd, evs[i].data.u64) : -1;
        if (fd >= 0 && spurious(fd, &now)) continue;
        if (fd >= 0 && now) {
            uint32_t shown = (now & POLLIN ? EPOLLIN : 0) | (now & POLLOUT ? EPOLLOUT : 0) |
                             (now & POLLERR ? EPOLLERR : 0) | (now & POLLHUP ? EPOLLHUP : 0);
            evs[i].events = shown & (ev | EPOLLERR | EPOLLHUP);
        }
        evs[k++] = evs[i];
    }
    errno = e;
    return k;
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
    NEED(epoll_pwait);
    if (inside || !eng_pending()) return real.epoll_pwait(epfd, evs, max, timeout, mask);
    int64_t deadline = timeout < 0 ? -1 : mono_ms() + timeout;
    for (;;) {
        int r = real.epoll_pwait(epfd, evs, max, timeout, mask);
        if (r <= 0) return r;
        if ((r = drop_spurious_ep(epfd, evs, r)) > 0) return r;
        if ((timeout = ms_left(deadline)) == 0) return 0;
    }
}

EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
    NEED(epoll_wait);
    if (inside || !eng_pending()) return real.epoll_wait(epfd, evs, max, timeout);
    return epoll_pwait(epfd, evs, max, timeout, NULL);
}
