/* dgram.c: libuvpn.so's wrappers of the datagram calls, for UDP over the overlay (udp.c):
 * sendto, sendmsg, sendmmsg, send, write, writev, recvfrom, recvmsg, recvmmsg, recv, read, readv.
 * Calls on sockets without overlay state go straight to the real function; on a socket whose
 * overlay connect is in progress, stream I/O fails with EAGAIN (as on a connecting socket) until
 * the ticket is written; sendmsg and recvmsg also carry the overlay state of sockets passed with
 * SCM_RIGHTS (fdlife.c). rtnetlink requests about interfaces are answered by netlink.c before
 * anything else. The stream calls on an established overlay TCP connection (read, write, recv,
 * send, readv, writev, recvfrom, sendto without an address) take the fast path first: one
 * lock-free table lookup, then the real call (scripts/bench/uvpn_wrapcall.sh measures it). */
#include "uvpn/wrap/wrap.h"
#include "uvpn/wrap/fdlife.h"
#include "uvpn/wrap/fdtable.h"
#include "uvpn/wrap/netlink.h"
#include "uvpn/core/config.h"
#include "uvpn/core/ifaces.h"
#include "uvpn/core/policy.h"
#include "uvpn/core/udp.h"
#include "common/log.h"
#include "common/netio.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

/* The fast path: on an established overlay TCP connection (fdt_connected) the call needs
 * nothing of the overlay (no netlink answer, no UDP, no pending connect): straight to the real
 * function, without NEED's table check (the state exists only after a wrapper loaded the table). */
#define FAST(fn, fd, ...)                                           \
    do {                                                           \
        if (fdt_connected(fd) && real.fn) return real.fn(fd, __VA_ARGS__); \
    } while (0)

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

/* A stream call on a socket whose overlay connect may be in progress: 1 with *ret = -1 (EAGAIN
 * while in progress, the overlay's errno once failed), or 0 to make the real call. */
static int gated(int fd, vinfo *st, ssize_t *ret)
{
    int g = pending_gate(fd, st);
    if (!g) return 0;
    errno = g > 0 ? EAGAIN : -g;
    *ret = -1;
    return 1;
}

/* sendmsg through the overlay when msg is about it: 1 with *ret the call's result, else 0
 * (make the real call). */
static int udp_send(int fd, const struct msghdr *msg, int flags, ssize_t *ret)
{
    if (inside || !msg || fdt_connected(fd)) return 0;
    vinfo st;
    int has = fdt_maybe(fd) && fdt_get(fd, &st);
    if (has && st.kind == VS_CONNECTING) return gated(fd, &st, ret);
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
    if (inside || !fdt_maybe(fd) || fdt_connected(fd) || !fdt_get(fd, &st)) return 0;
    if (st.kind == VS_CONNECTING) return gated(fd, &st, ret);
    if (st.kind != VS_UDP || !st.registered) return 0;
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
    if (!addr) FAST(sendto, fd, buf, n, flags, addr, len);
    NEED(sendto);
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {(void *)addr, addr ? len : 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    if (nlw_send(fd, &m, flags, &r) || udp_send(fd, &m, flags, &r)) return r;
    if (blocked_dest(fd, addr, len, flags, "sendto")) return -1;
    return real.sendto(fd, buf, n, flags, addr, len);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    FAST(send, fd, buf, n, flags);
    NEED(send);
    if (!fdt_maybe(fd) && !ifv_nl_is_request(buf, n)) return real.send(fd, buf, n, flags);
    return sendto(fd, buf, n, flags, NULL, 0);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    FAST(write, fd, buf, n);
    NEED(write);
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {NULL, 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    if (fdt_maybe(fd) && udp_send(fd, &m, 0, &r)) return r;
    return real.write(fd, buf, n);
}

/* readv/writev: only the gate of a pending connect (they carry no UDP here). */
static ssize_t vector_io(ssize_t (*fn)(int, const struct iovec *, int), int fd, const struct iovec *iov, int n)
{
    vinfo st;
    ssize_t r;
    if (!inside && fdt_maybe(fd) && !fdt_connected(fd) && fdt_get(fd, &st) && st.kind == VS_CONNECTING && gated(fd, &st, &r)) return r;
    return fn(fd, iov, n);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
    FAST(writev, fd, iov, n);
    NEED(writev);
    return vector_io(real.writev, fd, iov, n);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
    FAST(readv, fd, iov, n);
    NEED(readv);
    return vector_io(real.readv, fd, iov, n);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    NEED(sendmsg);
    ssize_t r;
    if (nlw_send(fd, msg, flags, &r) || udp_send(fd, msg, flags, &r)) return r;
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
    FAST(recvfrom, fd, buf, n, flags, addr, alen);
    NEED(recvfrom);
    struct iovec v = {buf, n};
    struct msghdr m = {addr, addr && alen ? *alen : 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    if (!nlw_recv(fd, &m, flags, &r) && !udp_recv(fd, &m, flags, &r))
        return real.recvfrom(fd, buf, n, flags, addr, alen);
    if (r >= 0 && addr && alen) *alen = m.msg_namelen;
    return r;
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    FAST(recv, fd, buf, n, flags);
    NEED(recv);
    if (!fdt_maybe(fd) && !ifv_nlq_pending()) return real.recv(fd, buf, n, flags);
    return recvfrom(fd, buf, n, flags, NULL, NULL);
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    FAST(read, fd, buf, n);
    NEED(read);
    if (!fdt_maybe(fd) && !ifv_nlq_pending()) return real.read(fd, buf, n);
    struct iovec v = {buf, n};
    struct msghdr m = {NULL, 0, &v, 1, NULL, 0, 0};
    ssize_t r;
    return nlw_recv(fd, &m, 0, &r) || udp_recv(fd, &m, 0, &r) ? r : real.read(fd, buf, n);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    NEED(recvmsg);
    ssize_t r;
    if (nlw_recv(fd, msg, flags, &r) || (msg && udp_recv(fd, msg, flags, &r))) return r;
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
