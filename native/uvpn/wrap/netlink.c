/* netlink.c: rtnetlink requests about interfaces, answered by libuvpn.so (netlink.h). The
 * request never reaches the kernel (unless UVPN_REAL_IFACES=1, where the kernel's dump follows
 * ours); the answer waits in the shared queue (uvpn/core/ifaces.h) for the socket's next
 * receive. Only the receive calls see it: a program that polls its netlink socket for the
 * reply waits for nothing (glibc, iproute2, libnl, Go and busybox receive blocking). */
#include "uvpn/wrap/netlink.h"
#include "uvpn/wrap/wrap.h"
#include "uvpn/core/ifaces.h"

#include <linux/netlink.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define NL_ANSWER_MAX 8192

/* The socket's netlink port id (autobound first when it has none yet, as the kernel does at
 * the first send). */
static uint32_t port_of(int fd)
{
    struct sockaddr_nl a;
    socklen_t l = sizeof a;
    memset(&a, 0, sizeof a);
    if (real.getsockname(fd, (struct sockaddr *)&a, &l) == 0 && a.nl_pid) return a.nl_pid;
    struct sockaddr_nl any = {.nl_family = AF_NETLINK};
    real.bind(fd, (struct sockaddr *)&any, sizeof any);
    l = sizeof a;
    return real.getsockname(fd, (struct sockaddr *)&a, &l) == 0 ? a.nl_pid : 0;
}

static int is_rtnetlink(int fd)
{
    int d = 0, p = -1;
    socklen_t l = sizeof d;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &d, &l) || d != AF_NETLINK) return 0;
    l = sizeof p;
    return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &p, &l) == 0 && p == NETLINK_ROUTE;
}

static uint64_t inode(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 ? (uint64_t)sb.st_ino : 0;
}

int nlw_send(int fd, const struct msghdr *m, int flags, ssize_t *ret)
{
    if (inside || !m || m->msg_iovlen < 1 || !m->msg_iov) return 0;
    const struct iovec *iov = &m->msg_iov[0];
    if (!ifv_nl_is_request(iov->iov_base, iov->iov_len)) return 0;
    if (m->msg_name && (m->msg_namelen < sizeof(sa_family_t) ||
                        ((const struct sockaddr *)m->msg_name)->sa_family != AF_NETLINK))
        return 0;
    int saved = errno;
    ifv_view v;
    inside = 1;
    int ours = is_rtnetlink(fd) && ifv_get(&v);
    uint8_t out[NL_ANSWER_MAX];
    size_t len = 0;
    int to_kernel = 0;
    uint32_t port = ours ? port_of(fd) : 0;
    ours = ours && ifv_nl_answer(&v, iov->iov_base, iov->iov_len, port, out, sizeof out, &len, &to_kernel);
    inside = 0;
    errno = saved;
    if (!ours) return 0;
    size_t total = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++) total += m->msg_iov[i].iov_len;
    if (to_kernel && (*ret = real.sendmsg(fd, m, flags)) < 0) return 1;
    int e = ifv_nlq_put(inode(fd), out, len);
    if (e) {
        *ret = -1;
        errno = -e;
        return 1;
    }
    errno = saved;
    *ret = (ssize_t)total;
    return 1;
}

int nlw_recv(int fd, struct msghdr *m, int flags, ssize_t *ret)
{
    if (inside || !m || ifv_nlq_pending() == 0) return 0;
    uint8_t buf[NL_ANSWER_MAX];
    size_t cap = 0, full = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++) cap += m->msg_iov[i].iov_len;
    long n = ifv_nlq_take(inode(fd), buf, cap < sizeof buf ? cap : sizeof buf, flags & MSG_PEEK, &full);
    if (n < 0) return 0;
    for (size_t i = 0, off = 0; i < m->msg_iovlen && off < (size_t)n; i++) {
        size_t k = m->msg_iov[i].iov_len < (size_t)n - off ? m->msg_iov[i].iov_len : (size_t)n - off;
        memcpy(m->msg_iov[i].iov_base, buf + off, k);
        off += k;
    }
    if (m->msg_name && m->msg_namelen >= sizeof(struct sockaddr_nl)) {
        struct sockaddr_nl k = {.nl_family = AF_NETLINK}; /* from the kernel */
        memcpy(m->msg_name, &k, sizeof k);
        m->msg_namelen = sizeof k;
    }
    m->msg_controllen = 0;
    m->msg_flags = (size_t)n < full ? MSG_TRUNC : 0;
    *ret = (flags & MSG_TRUNC) ? (ssize_t)full : n;
    return 1;
}
