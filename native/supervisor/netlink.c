/* netlink.c: rtnetlink interface dumps of supervised programs (calls.h). Go's net.Interfaces
 * and net.InterfaceAddrs, busybox ip and glibc's getifaddrs in static programs send
 * RTM_GETLINK/RTM_GETADDR requests with sendto or sendmsg, which the filter already stops; the
 * request is answered from the overlay's view (uvpn/core/ifaces.h) instead of the kernel, and
 * the answer waits in the shared queue until the program's next recvfrom or recvmsg on that
 * socket, written into its buffers here. With UVPN_REAL_IFACES=1 the request also goes to the
 * kernel, whose dump follows ours. The filter stops socket(AF_NETLINK, ...) only to learn that
 * address-less sends (iproute2's) may be requests. A request sent with write (busybox ip) and a
 * reply read with read are the kernel's (documented). */
#include "supervisor/calls.h"
#include "supervisor/filter.h"
#include "supervisor/job.h"
#include "supervisor/target.h"
#include "uvpn/core/ifaces.h"

#include <errno.h>
#include <stdatomic.h>
#include <linux/netlink.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define NL_REQ_MAX 4096
#define NL_ANSWER_MAX 8192
#define NL_IOV_MAX 64

/* The call's message: address, iovecs (at most NL_IOV_MAX) and flags, from sendto/recvfrom
 * arguments or the program's struct msghdr. 0 or -errno. */
typedef struct {
    uint64_t name, namelen; /* recv: namelen is where the program's socklen_t is */
    uint64_t msg;           /* recvmsg: the program's struct msghdr */
    size_t n, total;
    int flags;
    struct iovec iov[NL_IOV_MAX];
} call_msg;

static int read_msg(const struct seccomp_notif *q, call_msg *m)
{
    int nr = FILTER_NR(q->data.nr), send = nr == SYS_sendto || nr == SYS_sendmsg;
    memset(m, 0, offsetof(call_msg, iov));
    if (nr == SYS_sendto || nr == SYS_recvfrom) {
        m->iov[0].iov_base = (void *)(uintptr_t)q->data.args[1];
        m->iov[0].iov_len = (size_t)q->data.args[2];
        m->n = 1;
        m->flags = (int)q->data.args[3];
        m->name = q->data.args[4];
        m->namelen = q->data.args[5];
    } else {
        struct msghdr mh;
        int e = tg_read((pid_t)q->pid, q->data.args[1], &mh, sizeof mh);
        if (e) return e;
        if (mh.msg_iovlen > NL_IOV_MAX) return -EMSGSIZE;
        m->n = mh.msg_iovlen;
        if (m->n && (e = tg_read((pid_t)q->pid, (uint64_t)(uintptr_t)mh.msg_iov, m->iov, m->n * sizeof(struct iovec))))
            return e;
        m->flags = (int)q->data.args[2];
        m->name = (uint64_t)(uintptr_t)mh.msg_name;
        m->namelen = send ? mh.msg_namelen : q->data.args[1] + offsetof(struct msghdr, msg_namelen);
        m->msg = q->data.args[1];
    }
    for (size_t i = 0; i < m->n; i++) m->total += m->iov[i].iov_len;
    return 0;
}

static int is_rtnetlink(int fd)
{
    return pol_sockopt_int(fd, SO_DOMAIN) == AF_NETLINK && pol_sockopt_int(fd, SO_PROTOCOL) == NETLINK_ROUTE;
}

/* The socket's port id (autobound first when it has none yet, as its first send would). */
static uint32_t port_of(int fd)
{
    struct sockaddr_nl a = {.nl_family = AF_NETLINK};
    socklen_t l = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &l) == 0 && a.nl_pid) return a.nl_pid;
    struct sockaddr_nl any = {.nl_family = AF_NETLINK};
    bind(fd, (struct sockaddr *)&any, sizeof any);
    l = sizeof a;
    return getsockname(fd, (struct sockaddr *)&a, &l) == 0 ? a.nl_pid : 0;
}

static atomic_int netlink_seen; /* a supervised program created an AF_NETLINK socket */

void on_socket(int nfd, const struct seccomp_notif *q)
{
    atomic_store(&netlink_seen, 1);
    tg_continue(nfd, q->id);
}

int nl_on_send(int nfd, const struct seccomp_notif *q)
{
    pid_t pid = (pid_t)q->pid;
    /* An address-less sendto (glibc's send(), TCP data mostly) is looked at only once a
     * netlink socket exists (iproute2 sends its requests that way). */
    if (FILTER_NR(q->data.nr) == SYS_sendto && !q->data.args[4] && !atomic_load(&netlink_seen)) return 0;
    call_msg m;
    sa_family_t fam = AF_NETLINK;
    if (read_msg(q, &m) || !m.n || (m.name && tg_read(pid, m.name, &fam, sizeof fam)) || fam != AF_NETLINK)
        return 0;
    /* The header first (most sendmsg calls are TCP data), then the whole request. */
    uint8_t req[NL_REQ_MAX];
    uint64_t at = (uint64_t)(uintptr_t)m.iov[0].iov_base;
    size_t len = m.iov[0].iov_len < sizeof req ? m.iov[0].iov_len : sizeof req;
    struct nlmsghdr h;
    if (len < sizeof h || tg_read(pid, at, &h, sizeof h) || !ifv_nl_is_request(&h, len))
        return 0;
    len = h.nlmsg_len;
    if (tg_read(pid, at, req, len) || !ifv_nl_is_request(req, len)) return 0;
    ifv_view v;
    int fd = tg_getfd(pid, (int)q->data.args[0]);
    if (fd < 0) return 0;
    uint8_t out[NL_ANSWER_MAX];
    size_t olen = 0;
    int to_kernel = 0, ours = is_rtnetlink(fd) && ifv_get(&v) &&
                             ifv_nl_answer(&v, req, len, port_of(fd), out, sizeof out, &olen, &to_kernel);
    int e = ours ? ifv_nlq_put((uint64_t)inode_of(fd), out, olen) : 0;
    close(fd);
    if (!ours) return 0;
    if (e) tg_reply(nfd, q->id, -1, -e);
    else if (to_kernel) tg_continue(nfd, q->id);
    else tg_reply(nfd, q->id, (int64_t)m.total, 0);
    return 1;
}

int nl_on_recv(int nfd, const struct seccomp_notif *q)
{
    if (ifv_nlq_pending() == 0) return 0;
    pid_t pid = (pid_t)q->pid;
    int fd = tg_getfd(pid, (int)q->data.args[0]);
    if (fd < 0) return 0;
    uint64_t ino = (uint64_t)inode_of(fd);
    close(fd);
    call_msg m;
    if (read_msg(q, &m)) return 0;
    uint8_t buf[NL_ANSWER_MAX];
    size_t full = 0;
    long n = ifv_nlq_take(ino, buf, m.total < sizeof buf ? m.total : sizeof buf, m.flags & MSG_PEEK, &full);
    if (n < 0) return 0;
    int w = 0;
    for (size_t i = 0, off = 0; i < m.n && off < (size_t)n && !w; i++) {
        size_t k = m.iov[i].iov_len < (size_t)n - off ? m.iov[i].iov_len : (size_t)n - off;
        w = tg_write(pid, (uint64_t)(uintptr_t)m.iov[i].iov_base, buf + off, k);
        off += k;
    }
    struct sockaddr_nl from = {.nl_family = AF_NETLINK}; /* from the kernel */
    if (!w && m.name) w = tg_put_sockaddr(pid, m.name, m.namelen, &from, sizeof from);
    if (!w && m.msg) {
        size_t zero = 0;
        int fl = (size_t)n < full ? MSG_TRUNC : 0;
        w = tg_write(pid, m.msg + offsetof(struct msghdr, msg_controllen), &zero, sizeof zero);
        if (!w) w = tg_write(pid, m.msg + offsetof(struct msghdr, msg_flags), &fl, sizeof fl);
    }
    int64_t r = (m.flags & MSG_TRUNC) ? (int64_t)full : n;
    if (tg_valid(nfd, q->id)) tg_reply(nfd, q->id, w ? -1 : r, w ? -w : 0);
    return 1;
}
