/* dgram.c: the supervisor's answers to datagram calls (calls.h), UDP over the overlay (udp.c):
 *   sendto, sendmsg   to a virtual address, or on a connected overlay UDP socket: encapsulated
 *             and sent to the home router (a first send, which registers the socket with the
 *             router, in a worker thread); raw sockets to a virtual address: ENETUNREACH.
 *   recvfrom, recvmsg on a registered overlay UDP socket: verified, decapsulated, written into
 *             the program's buffers with the virtual source (blocking ones in a worker thread).
 *             On a socket redirected to the DNS stub, the nameserver is reported as the source. */
#include "supervisor/calls.h"
#include "supervisor/job.h"
#include "supervisor/dnsstub.h"
#include "supervisor/filter.h"
#include "supervisor/sockstate.h"
#include "supervisor/target.h"
#include "uvpn/core/config.h"
#include "uvpn/core/policy.h"
#include "uvpn/core/udp.h"
#include "common/log.h"
#include "common/netio.h"
#include "common/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- datagrams: UDP over the overlay (udp.c) ---------------------------------------------- */

#define PM_IOV_MAX 1024 /* UIO_MAXIOV */

/* A stopped sendto/recvfrom/sendmsg/recvmsg, in terms of the program's memory. */
typedef struct pmsg {
    int fd, flags;
    uint64_t name;          /* the address buffer (0: none) */
    uint64_t namelen;       /* send: its length; recv: where the program's socklen_t is */
    uint64_t msg;           /* recvmsg: the program's struct msghdr (msg_flags, msg_controllen) */
    size_t iovcnt, total;
    struct iovec iov[];     /* iov_base: addresses in the program */
} pmsg;

/* Reads the arguments of the call into a new pmsg. NULL with *err on failure. */
static pmsg *pm_read(const struct seccomp_notif *q, int *err)
{
    int nr = FILTER_NR(q->data.nr), is_msg = nr == SYS_sendmsg || nr == SYS_recvmsg;
    struct msghdr mh;
    if (is_msg && (*err = -tg_read((pid_t)q->pid, q->data.args[1], &mh, sizeof mh))) return NULL;
    size_t cnt = is_msg ? mh.msg_iovlen : 1;
    if (cnt > PM_IOV_MAX) {
        *err = EMSGSIZE;
        return NULL;
    }
    pmsg *pm = calloc(1, sizeof *pm + (cnt ? cnt : 1) * sizeof(struct iovec));
    if (!pm) {
        *err = ENOMEM;
        return NULL;
    }
    pm->fd = (int)q->data.args[0];
    pm->iovcnt = cnt;
    if (is_msg) {
        pm->flags = (int)q->data.args[2];
        pm->name = (uint64_t)(uintptr_t)mh.msg_name;
        pm->namelen = nr == SYS_sendmsg ? mh.msg_namelen : q->data.args[1] + offsetof(struct msghdr, msg_namelen);
        pm->msg = q->data.args[1];
        if (cnt && (*err = -tg_read((pid_t)q->pid, (uint64_t)(uintptr_t)mh.msg_iov, pm->iov, cnt * sizeof(struct iovec)))) {
            free(pm);
            return NULL;
        }
    } else {
        pm->flags = (int)q->data.args[3];
        pm->name = q->data.args[4];
        pm->namelen = q->data.args[5];
        pm->iov[0].iov_base = (void *)(uintptr_t)q->data.args[1];
        pm->iov[0].iov_len = (size_t)q->data.args[2];
    }
    for (size_t i = 0; i < cnt; i++) pm->total += pm->iov[i].iov_len;
    return pm;
}

#define NEEDS_WORKER 1
/* The kinds of socket state whose address-less sendto/recvfrom the supervisor answers. */
#define NAMELESS_KINDS ((1 << VS_UDP) | (1 << VS_CONNECTING))

/* Answers the stopped send q. may_wait 0 (the notification loop): returns NEEDS_WORKER, having
 * done nothing, when the answer needs the home router (a UDP registration, which waits for its
 * answer: with the router unreachable up to the link's deadline), so the loop never waits;
 * else answers and returns 0. */
static int send_answer(int nfd, const struct seccomp_notif *q, int may_wait)
{
    int err = 0;
    pmsg *pm = pm_read(q, &err);
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    uint32_t ip;
    uint16_t port;
    int fd = -1, has = 0, changed = 0, named = pm && pm->name;
    uint8_t *buf = NULL;
    vinfo st;
    ino_t ino = 0;
    ssize_t r = POL_UDP_NATIVE;
    if (!pm && err != EFAULT) { /* EFAULT: the kernel reports it itself */
        r = -err;
        goto out;
    }
    if (!pm || (named && (read_addr(q, pm->name, pm->namelen, &ss, &sl) ||
                          !sa_get_v4((struct sockaddr *)&ss, sl, &ip, &port) || !cfg_is_virtual(ip))))
        goto out; /* unreadable or not about the overlay: the kernel's business */
    if ((fd = tg_getfd((pid_t)q->pid, pm->fd)) < 0) goto out;
    ino = inode_of(fd);
    has = ss_get(ino, &st);
    if (has && st.kind == VS_CONNECTING) {
        int g = conn_gate(ino, &st);
        if (g) r = g > 0 ? -EAGAIN : g; /* a connecting socket: EAGAIN; a failed one: its error */
        goto out;
    }
    if (!named && !(has && st.kind == VS_UDP)) goto out;
    if (!may_wait && !(has && st.kind == VS_UDP && st.registered) && pol_sockopt_int(fd, SO_TYPE) == SOCK_DGRAM) {
        close(fd);
        free(pm);
        return NEEDS_WORKER;
    }
    /* The payload, gathered (a datagram too large for the tunnel is refused before any read). */
    struct iovec one = {NULL, pm->total};
    if (pm->total <= UVPN_DGRAM_MAX_PAYLOAD) {
        if (!(buf = malloc(pm->total ? pm->total : 1))) {
            r = -ENOMEM;
            goto out;
        }
        one.iov_base = buf;
        for (size_t i = 0, off = 0; i < pm->iovcnt; off += pm->iov[i].iov_len, i++)
            if (pm->iov[i].iov_len &&
                (err = tg_read((pid_t)q->pid, (uint64_t)(uintptr_t)pm->iov[i].iov_base, buf + off, pm->iov[i].iov_len))) {
                r = err;
                goto out;
            }
    }
    struct msghdr m = {named ? &ss : NULL, sl, &one, 1, NULL, 0, 0};
    r = pol_udp_send(fd, has, &st, &changed, &m, pm->flags);
    if (changed) ss_set(ino, &st);
    if (r == POL_UDP_NATIVE && named && pol_send_blocked(fd, (struct sockaddr *)&ss, sl, pm->flags, "sendto"))
        r = -ENETUNREACH;
out:
    if (fd >= 0) close(fd);
    free(buf);
    free(pm);
    if (r == POL_UDP_NATIVE) tg_continue(nfd, q->id);
    else if (tg_valid(nfd, q->id)) tg_reply(nfd, q->id, r < 0 ? -1 : r, r < 0 ? (int)-r : 0);
    return 0;
}

static void send_work(job *j) { send_answer(j->nfd, &j->req, 1); }

void on_send(int nfd, const struct seccomp_notif *q)
{
    if (nl_on_send(nfd, q)) return; /* an rtnetlink interface dump (netlink.c) */
    /* Most sends carry no address (send() on a TCP socket): nothing to do while no socket is
     * an overlay UDP one or a connecting one (whose sends wait for its ticket). */
    if (FILTER_NR(q->data.nr) == SYS_sendto && !q->data.args[4] && ss_count_kinds(NAMELESS_KINDS) == 0) {
        tg_continue(nfd, q->id);
        return;
    }
    if (send_answer(nfd, q, 0) != NEEDS_WORKER) return;
    job *j = new_job(nfd, q, -1);
    if (j) start_worker(j, send_work);
    else tg_reply(nfd, q->id, 0, ENOMEM);
}

/* One receive on the duplicate into the program's buffers. Bytes or -errno. */
static ssize_t recv_into(const job *j, int flags)
{
    const pmsg *pm = j->pm;
    pid_t pid = (pid_t)j->req.pid;
    size_t cap = pm->total < UVPN_DGRAM_MAX + 1 ? pm->total : UVPN_DGRAM_MAX + 1;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return -ENOMEM;
    struct sockaddr_storage from;
    struct iovec one = {buf, cap};
    struct msghdr m = {&from, sizeof from, &one, 1, NULL, 0, 0};
    ssize_t r;
    if (j->st.kind == VS_DNS) { /* a reply from the DNS stub, reported as from the nameserver */
        struct msghdr plain = {NULL, 0, &one, 1, NULL, 0, 0};
        r = dns_peer(j->dup, j->st.lport, &from, &m.msg_namelen) ? recvmsg(j->dup, &plain, flags)
                                                                 : (errno = ENOTCONN, -1);
        if (r < 0) r = -errno;
        m.msg_flags = plain.msg_flags;
    } else {
        r = pol_udp_recv(j->dup, &j->st, &m, flags);
    }
    int w = 0;
    if (r >= 0) {
        size_t got = (size_t)r < cap ? (size_t)r : cap;
        for (size_t i = 0, off = 0; i < pm->iovcnt && off < got && !w; i++) {
            size_t k = pm->iov[i].iov_len < got - off ? pm->iov[i].iov_len : got - off;
            w = tg_write(pid, (uint64_t)(uintptr_t)pm->iov[i].iov_base, buf + off, k);
            off += k;
        }
        if (!w && pm->name) w = tg_put_sockaddr(pid, pm->name, pm->namelen, &from, m.msg_namelen);
        if (!w && pm->msg) {
            size_t zero = 0;
            w = tg_write(pid, pm->msg + offsetof(struct msghdr, msg_controllen), &zero, sizeof zero);
            if (!w) w = tg_write(pid, pm->msg + offsetof(struct msghdr, msg_flags), &m.msg_flags, sizeof m.msg_flags);
        }
    }
    free(buf);
    return w ? w : r;
}

static void recv_work(job *j)
{
    for (;;) {
        if (!wait_readable(j)) return; /* the call went away */
        ssize_t r = recv_into(j, j->pm->flags | MSG_DONTWAIT);
        if (r == -EAGAIN || r == -EWOULDBLOCK) continue;
        tg_reply(j->nfd, j->req.id, r < 0 ? -1 : r, r < 0 ? (int)-r : 0);
        return;
    }
}

void on_recv(int nfd, const struct seccomp_notif *q)
{
    if (nl_on_recv(nfd, q)) return;
    /* recv() (no address asked for), on a TCP socket mostly: as for send. A socket redirected
     * to the DNS stub needs answering only when its receive asks for the source. */
    if (FILTER_NR(q->data.nr) == SYS_recvfrom && !q->data.args[4] && ss_count_kinds(NAMELESS_KINDS) == 0) {
        tg_continue(nfd, q->id);
        return;
    }
    ino_t ino;
    vinfo st;
    int fd = overlay_socket(q, (1 << VS_UDP) | (1 << VS_DNS) | (1 << VS_CONNECTING), &ino, &st), err = 0;
    if (fd >= 0 && st.kind == VS_UDP && !st.registered) close(fd), fd = -1;
    if (fd >= 0 && st.kind == VS_CONNECTING) {
        int g = conn_gate(ino, &st);
        close(fd);
        if (g) tg_reply(nfd, q->id, -1, g > 0 ? EAGAIN : -g);
        else tg_continue(nfd, q->id);
        return;
    }
    if (fd < 0) {
        tg_continue(nfd, q->id);
        return;
    }
    pmsg *pm = pm_read(q, &err);
    /* A resolver's socket redirected to the DNS stub: only a receive that asks for the sender's
     * address (a resolver may check that it is the nameserver) needs answering here. */
    struct sockaddr_storage ns;
    socklen_t nl;
    if (st.kind == VS_DNS && (!pm || !pm->name || !dns_peer(fd, st.lport, &ns, &nl))) {
        close(fd);
        free(pm);
        tg_continue(nfd, q->id);
        return;
    }
    job *j = pm ? new_job(nfd, q, fd) : NULL;
    if (!j) {
        close(fd);
        free(pm);
        tg_reply(nfd, q->id, 0, err ? err : ENOMEM);
        return;
    }
    j->ino = ino;
    j->st = st;
    j->pm = pm;
    int fl = fcntl(fd, F_GETFL);
    if ((fl >= 0 && (fl & O_NONBLOCK)) || (pm->flags & MSG_DONTWAIT)) {
        ssize_t r = recv_into(j, pm->flags | MSG_DONTWAIT); /* cannot block: answered here */
        tg_reply(nfd, q->id, r < 0 ? -1 : r, r < 0 ? (int)-r : 0);
        close(fd);
        free(pm);
        free(j);
        return;
    }
    start_worker(j, recv_work);
}
