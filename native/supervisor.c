/* supervisor.c: libmyrt.so's seccomp supervisor, the UVPN overlay for programs LD_PRELOAD
 * cannot reach (statically linked ones). myrt_run() starts a program under the seccomp filter
 * of filter.c and answers its stopped socket set-up calls until it exits:
 *
 *   connect   to a virtual address: the overlay handshake on a pidfd_getfd duplicate of the
 *             program's own socket (policy.c/overlay.c, as in libuvpn.so); the call returns its
 *             result. Anything else continues in the kernel untouched.
 *   bind      to a virtual address or the wildcard: done here on the duplicate, state recorded.
 *   listen    on such a socket: real listen on the duplicate, then LISTEN at the home router.
 *   accept(4) on such a socket: accepted here (in a worker thread), CONNECT frame verified, the
 *             new socket installed into the program with SECCOMP_IOCTL_NOTIF_ADDFD.
 *   getsockname/getpeername: virtual addresses written into the program's memory.
 *   sendto, sendmsg   to a virtual address, or on a connected overlay UDP socket: encapsulated
 *             and sent to the home router (udp.c); raw sockets to a virtual address: ENETUNREACH.
 *   recvfrom, recvmsg on a registered overlay UDP socket: verified, decapsulated, written into
 *             the program's buffers with the virtual source (blocking ones in a worker thread).
 *   connect   of a UDP socket to port 53 of a real address: connected to the DNS stub instead
 *             (dnsstub.c: overlay names answered, other queries relayed to that nameserver);
 *             getpeername, recvfrom and recvmsg still report the nameserver.
 *
 * Overlay state is keyed by socket inode (sockstate.c). Calls that may wait on the network
 * (connect, listen, accept) run in worker threads so the notification loop never blocks.
 * Exported: myrt_run, myrt_abi. */
#include "config.h"
#include "dnsstub.h"
#include "env.h"
#include "filter.h"
#include "log.h"
#include "netio.h"
#include "policy.h"
#include "sockdiag.h"
#include "sockstate.h"
#include "udp.h"
#include "wire.h"
#include "spawn.h"
#include "target.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define MYRT_ABI 1
#define ACCEPT_POLL_MS 250   /* a blocking accept re-checks that its caller still waits */
#define DRAIN_MS 2000        /* at exit, time given to workers still running */
#define SWEEP_MS 3000        /* how often the states of closed sockets are swept out */

extern char **environ;

static atomic_int workers;

typedef struct job {
    void (*work)(struct job *); /* what the worker thread does */
    int nfd;
    struct seccomp_notif req;
    int dup;                 /* the program's socket (accept, listen) */
    ino_t ino;
    vinfo st;
    struct sockaddr_storage ss; /* connect: destination */
    socklen_t sl;
    struct pmsg *pm;         /* recvfrom, recvmsg: the program's buffers (freed with the job) */
} job;

static ino_t inode_of(int fd)
{
    struct stat sb;
    return fstat(fd, &sb) == 0 ? sb.st_ino : 0;
}

/* Reads the sockaddr argument (addr, len) of the stopped call. 0, or -errno. */
static int read_addr(const struct seccomp_notif *q, uint64_t addr, uint64_t len,
                     struct sockaddr_storage *ss, socklen_t *sl)
{
    if (!addr || len < sizeof(sa_family_t) || len > sizeof *ss) return -EINVAL;
    memset(ss, 0, sizeof *ss);
    int r = tg_read((pid_t)q->pid, addr, ss, (size_t)len);
    if (r) return r;
    *sl = (socklen_t)len;
    return 0;
}

/* The worker thread: runs j->work, then releases the job. */
static void *run_job(void *arg)
{
    job *j = arg;
    j->work(j);
    if (j->dup >= 0) close(j->dup);
    free(j->pm);
    free(j);
    atomic_fetch_sub(&workers, 1);
    return NULL;
}

/* Hands j to a detached worker thread running work. On failure answers EAGAIN. */
static void start_worker(job *j, void (*work)(job *))
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
    j->work = work;
    atomic_fetch_add(&workers, 1);
    if (pthread_create(&t, &at, run_job, j)) {
        atomic_fetch_sub(&workers, 1);
        tg_reply(j->nfd, j->req.id, 0, EAGAIN);
        if (j->dup >= 0) close(j->dup);
        free(j->pm);
        free(j);
    }
    pthread_attr_destroy(&at);
}

static job *new_job(int nfd, const struct seccomp_notif *q, int dup)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->nfd = nfd;
    j->req = *q;
    j->dup = dup;
    return j;
}

/* ---- connect ----------------------------------------------------------------------------- */

static void connect_work(job *j)
{
    const struct seccomp_notif *q = &j->req;
    int fd = tg_getfd((pid_t)q->pid, (int)q->data.args[0]);
    if (fd < 0) {
        tg_reply(j->nfd, q->id, 0, fd == -EBADF ? EBADF : -fd);
        return;
    }
    j->dup = fd;
    uint32_t ip;
    uint16_t port;
    sa_get_v4((struct sockaddr *)&j->ss, j->sl, &ip, &port);
    ino_t ino = inode_of(fd);
    vinfo st, n;
    int has = ss_get(ino, &st) && st.kind != VS_DNS; /* a resolver's socket may connect anew */
    int r = pol_connect(fd, j->ss.ss_family, ip, port, has, &st, &n);
    if (r == 0) ss_set(ino, &n);
    tg_reply(j->nfd, q->id, 0, -r);
}

/* A connect to port 53 of a real address: a UDP socket goes to the DNS stub instead (done here,
 * a UDP connect does not wait). 1 when answered, 0 to let the kernel do the call. */
static int dns_connect(int nfd, const struct seccomp_notif *q, const struct sockaddr_storage *ss,
                       socklen_t sl)
{
    if (!cfg()->have_proxy) return 0;
    int fd = tg_getfd((pid_t)q->pid, (int)q->data.args[0]);
    if (fd < 0) return 0;
    uint16_t lport = 0;
    int r = pol_sockopt_int(fd, SO_TYPE) == SOCK_DGRAM && pol_sockopt_int(fd, SO_DOMAIN) == ss->ss_family
                ? dns_redirect(fd, (const struct sockaddr *)ss, sl, &lport)
                : -EPROTOTYPE;
    if (r == 0) {
        vinfo v = {.kind = VS_DNS, .family = ss->ss_family, .lport = lport};
        ss_set(inode_of(fd), &v);
        dbg("dns: queries from port %u go to the stub", lport);
        tg_reply(nfd, q->id, 0, 0);
    } else if (r != -EPROTOTYPE) {
        dbg("dns: cannot redirect to the stub: %s", strerror(-r));
    }
    close(fd);
    return r == 0;
}

static void on_connect(int nfd, const struct seccomp_notif *q)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    uint32_t ip;
    uint16_t port;
    if (read_addr(q, q->data.args[1], q->data.args[2], &ss, &sl) || !tg_valid(nfd, q->id)) {
        tg_continue(nfd, q->id); /* unreadable or gone: the kernel's business */
        return;
    }
    int v4 = sa_get_v4((struct sockaddr *)&ss, sl, &ip, &port);
    if (!(v4 && cfg_is_virtual(ip))) {
        if (sa_port((struct sockaddr *)&ss, sl) != DNS_PORT || !dns_connect(nfd, q, &ss, sl)) tg_continue(nfd, q->id);
        return;
    }
    job *j = new_job(nfd, q, -1);
    if (!j) {
        tg_reply(nfd, q->id, 0, ENOMEM);
        return;
    }
    j->ss = ss;
    j->sl = sl;
    start_worker(j, connect_work);
}

/* ---- bind / listen ----------------------------------------------------------------------- */

static void on_bind(int nfd, const struct seccomp_notif *q)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (read_addr(q, q->data.args[1], q->data.args[2], &ss, &sl) || !tg_valid(nfd, q->id)) {
        tg_continue(nfd, q->id);
        return;
    }
    int fd = tg_getfd((pid_t)q->pid, (int)q->data.args[0]);
    if (fd < 0) {
        tg_continue(nfd, q->id);
        return;
    }
    vinfo n;
    int r = pol_bind(fd, (struct sockaddr *)&ss, sl, &n);
    if (r == 1 && ss_set(inode_of(fd), &n)) r = -ENOMEM;
    close(fd);
    if (r == 0) tg_continue(nfd, q->id);
    else tg_reply(nfd, q->id, 0, r < 0 ? -r : 0);
}

/* The program's socket args[0] and its state, when it has overlay state of one of the kinds
 * in mask (bit per vkind). Returns the duplicate (caller closes) or -1. */
static int overlay_socket(const struct seccomp_notif *q, int mask, ino_t *ino, vinfo *st)
{
    if (ss_count() == 0) return -1;
    int fd = tg_getfd((pid_t)q->pid, (int)q->data.args[0]);
    if (fd < 0) return -1;
    *ino = inode_of(fd);
    if (ss_get(*ino, st) && (mask & (1 << st->kind))) return fd;
    close(fd);
    return -1;
}

#define BOUND ((1 << VS_BOUND_VIRTUAL) | (1 << VS_BOUND_ANY))

static void listen_work(job *j)
{
    if (listen(j->dup, (int)j->req.data.args[1])) {
        tg_reply(j->nfd, j->req.id, 0, errno);
        return;
    }
    int r = pol_listen(&j->st);
    if (r > 0) ss_set(j->ino, &j->st);
    tg_reply(j->nfd, j->req.id, 0, r < 0 ? -r : 0);
}

static void accept_work(job *j);

/* listen and accept: work for a worker when args[0] is a bound overlay socket, else continue. */
static void on_bound_socket(int nfd, const struct seccomp_notif *q, void (*work)(job *))
{
    ino_t ino;
    vinfo st;
    int fd = overlay_socket(q, BOUND, &ino, &st);
    if (fd < 0) {
        tg_continue(nfd, q->id);
        return;
    }
    job *j = new_job(nfd, q, fd);
    if (!j) {
        close(fd);
        tg_reply(nfd, q->id, 0, ENOMEM);
        return;
    }
    j->ino = ino;
    j->st = st;
    start_worker(j, work);
}

/* ---- accept ------------------------------------------------------------------------------ */

/* Waits until the listener is readable while the caller still waits. 1 ready, 0 gone. */
static int wait_acceptable(job *j)
{
    for (;;) {
        if (!tg_valid(j->nfd, j->req.id)) return 0;
        struct pollfd p = {j->dup, POLLIN, 0};
        int r = poll(&p, 1, ACCEPT_POLL_MS);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 1; /* let accept report it */
    }
}

static void accept_work(job *j)
{
    const struct seccomp_notif *q = &j->req;
    int four = FILTER_NR(q->data.nr) == SYS_accept4;
    int flags = four ? (int)q->data.args[3] : 0;
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
        tg_reply(j->nfd, q->id, 0, EINVAL);
        return;
    }
    int fl = fcntl(j->dup, F_GETFL);
    int nonblocking = fl >= 0 && (fl & O_NONBLOCK);
    for (;;) {
        if (!nonblocking && !wait_acceptable(j)) return;
        struct sockaddr_storage peer, vpeer;
        socklen_t pl = sizeof peer, vl = 0;
        int c = accept4(j->dup, (struct sockaddr *)&peer, &pl, (flags & SOCK_NONBLOCK) | SOCK_CLOEXEC);
        if (c < 0) {
            if (!nonblocking && (errno == EAGAIN || errno == EINTR)) continue; /* raced */
            tg_reply(j->nfd, q->id, 0, errno);
            return;
        }
        vinfo n;
        int r = pol_accepted(&j->st, c, (struct sockaddr *)&peer, pl, &n, &vpeer, &vl);
        if (r < 0) {
            close(c);
            if (nonblocking) {
                tg_reply(j->nfd, q->id, 0, EAGAIN);
                return;
            }
            continue;
        }
        if (r > 0) ss_set(inode_of(c), &n);
        int w = tg_valid(j->nfd, q->id)
                    ? tg_put_sockaddr((pid_t)q->pid, q->data.args[1], q->data.args[2],
                                      r > 0 ? (void *)&vpeer : (void *)&peer, r > 0 ? vl : pl)
                    : -ESRCH;
        if (w == 0) {
            int got = tg_addfd_reply(j->nfd, q->id, c, flags & SOCK_CLOEXEC);
            if (got < 0) dbg("accept: cannot install the connection into pid %u: %s", q->pid, strerror(-got));
        } else if (w != -ESRCH) {
            tg_reply(j->nfd, q->id, 0, -w);
        }
        close(c);
        return;
    }
}

/* ---- names, datagrams -------------------------------------------------------------------- */

static void on_name(int nfd, const struct seccomp_notif *q, int peer)
{
    ino_t ino;
    vinfo st;
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd = overlay_socket(q, -1, &ino, &st), known = 0;
    if (fd >= 0) {
        known = st.kind == VS_DNS ? peer && dns_peer(fd, st.lport, &ss, &sl) : pol_name(&st, peer, &ss, &sl);
        close(fd);
    }
    if (!known || !tg_valid(nfd, q->id)) {
        tg_continue(nfd, q->id);
        return;
    }
    if (!q->data.args[1]) {
        tg_reply(nfd, q->id, 0, EFAULT);
        return;
    }
    int r = tg_put_sockaddr((pid_t)q->pid, q->data.args[1], q->data.args[2], &ss, sl);
    tg_reply(nfd, q->id, 0, -r);
}

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

static void on_send(int nfd, const struct seccomp_notif *q)
{
    /* Most sends carry no address (send() on a TCP socket): nothing to do while no overlay
     * UDP socket can exist. */
    if (FILTER_NR(q->data.nr) == SYS_sendto && !q->data.args[4] && ss_count() == 0) {
        tg_continue(nfd, q->id);
        return;
    }
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
    if (!named && !(has && st.kind == VS_UDP)) goto out;
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
        if (!wait_acceptable(j)) return; /* the call went away */
        ssize_t r = recv_into(j, j->pm->flags | MSG_DONTWAIT);
        if (r == -EAGAIN || r == -EWOULDBLOCK) continue;
        tg_reply(j->nfd, j->req.id, r < 0 ? -1 : r, r < 0 ? (int)-r : 0);
        return;
    }
}

static void on_recv(int nfd, const struct seccomp_notif *q)
{
    ino_t ino;
    vinfo st;
    int fd = overlay_socket(q, (1 << VS_UDP) | (1 << VS_DNS), &ino, &st), err = 0;
    if (fd >= 0 && st.kind == VS_UDP && !st.registered) close(fd), fd = -1;
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

static void dispatch(int nfd, const struct seccomp_notif *q)
{
    switch (FILTER_NR(q->data.nr)) {
    case SYS_connect: on_connect(nfd, q); break;
    case SYS_bind: on_bind(nfd, q); break;
    case SYS_listen: on_bound_socket(nfd, q, listen_work); break;
    case SYS_accept:
    case SYS_accept4: on_bound_socket(nfd, q, accept_work); break;
    case SYS_getsockname: on_name(nfd, q, 0); break;
    case SYS_getpeername: on_name(nfd, q, 1); break;
    case SYS_sendto:
    case SYS_sendmsg: on_send(nfd, q); break;
    case SYS_recvfrom:
    case SYS_recvmsg: on_recv(nfd, q); break;
    default: tg_continue(nfd, q->id); break;
    }
}

/* ---- the run ----------------------------------------------------------------------------- */

/* Splits a block of count NUL-terminated strings into a NULL-terminated array (pointing into
 * the block). */
static char **split(const char *block, uint32_t count)
{
    char **v = calloc((size_t)count + 1, sizeof *v);
    if (!v) return NULL;
    for (uint32_t i = 0; i < count; i++) {
        v[i] = (char *)block;
        block += strlen(block) + 1;
    }
    return v;
}

/* environ, minus the names set in over, plus over. */
static char **merge_env(char **over)
{
    size_t n = 0, m = 0;
    while (environ && environ[n]) n++;
    while (over[m]) m++;
    char **v = calloc(n + m + 1, sizeof *v);
    if (!v) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(over[j], environ[i], len) == 0 && over[j][len] == '=';
        if (!replaced) v[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++) v[k++] = over[j];
    return v;
}

static void unlisten(const vinfo *v) { pol_unlisten(v); }

typedef struct {
    const ino_t *live;
    long n;
    int bound_listed;
} census;

static int socket_gone(ino_t ino, const vinfo *v, void *ctx)
{
    const census *c = ctx;
    /* A socket that is only bound is missing from the dumps of kernels before 6.5. */
    if (!c->bound_listed && v->kind != VS_CONNECTED && v->kind != VS_DNS && !v->registered) return 0;
    return !sd_contains(c->live, c->n, ino);
}

/* Forgets closed sockets and unregisters the listeners among them. */
static void sweep(void)
{
    int64_t start = mono_ms();
    ino_t *live = NULL;
    long n = sd_inodes(&live);
    if (n < 0) {
        dbg("cannot list sockets (%s): states of closed sockets are kept", errno_name((int)-n));
        return;
    }
    census c = {live, n, sd_lists_bound()};
    long dropped = ss_sweep(start, socket_gone, &c, unlisten);
    if (dropped) dbg("forgot %ld closed socket(s)", dropped);
    free(live);
}

static int supervise(int nfd, pid_t pid)
{
    struct seccomp_notif_sizes sizes;
    size_t qsize = sizeof(struct seccomp_notif);
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0 && sizes.seccomp_notif > qsize)
        qsize = sizes.seccomp_notif;
    struct seccomp_notif *q = malloc(qsize);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int status = -1;
    int64_t next_sweep = mono_ms() + SWEEP_MS;
    for (;;) {
        struct pollfd p[2] = {{nfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int64_t now = mono_ms();
        if (ss_count() > 0 && now >= next_sweep) {
            sweep();
            next_sweep = now + SWEEP_MS;
        }
        int wait = ss_count() > 0 ? (int)(next_sweep - now > 0 ? next_sweep - now : 0) : -1;
        if (pidfd < 0) wait = 100;
        int r = poll(p, pidfd >= 0 ? 2 : 1, wait);
        if (r < 0 && errno != EINTR) break;
        if (q && (p[0].revents & POLLIN)) {
            memset(q, 0, qsize);
            if (ioctl(nfd, SECCOMP_IOCTL_NOTIF_RECV, q) == 0) dispatch(nfd, q);
            continue; /* serve pending calls before looking at the exit */
        }
        if (pidfd < 0 || (p[1].revents & POLLIN) || (p[0].revents & (POLLHUP | POLLERR))) {
            int st;
            pid_t w = waitpid(pid, &st, pidfd >= 0 ? 0 : WNOHANG);
            if (w == pid) {
                status = st;
                break;
            }
            if (w < 0 && errno != EINTR) break;
        }
    }
    free(q);
    if (pidfd >= 0) close(pidfd);
    return status;
}

/* Runs path (argv: argc strings in argv_block, each NUL-terminated) under the supervisor, with
 * the environment of this process overridden by env_block (envc "NAME=value" strings), which
 * is also what the overlay code reads (UVPN_SRC_ADDR, UVPN_HOME_PROXY, ...). Writes the child's
 * pid into *pid_out as soon as it exists (for signal forwarding). Returns the raw wait status
 * of the child, or -1 with a sentence in err and *code_out the exit code to use. Blocks until
 * the child exits: call it from a thread that may block (Deno: nonblocking FFI). One run per
 * process: the overlay configuration is read once. */
EXPORT int myrt_run(const char *path, const char *argv_block, uint32_t argc, const char *env_block,
                    uint32_t envc, int32_t *pid_out, int32_t *code_out, char *err, uint32_t errlen)
{
    static atomic_int ran;
    *code_out = 126;
    if (atomic_exchange(&ran, 1)) {
        snprintf(err, errlen, "The supervisor runs one program per process: %s", path);
        return -1;
    }
    char **argv = split(argv_block, argc), **over = split(env_block, envc);
    char **envp = over ? merge_env(over) : NULL;
    if (!argv || !envp) {
        snprintf(err, errlen, "Out of memory starting: %s", path);
        return -1;
    }
    uvpn_env_use(envp);
    int nfd = -1, code = 126;
    pid_t pid = sp_spawn(path, argv, envp, &nfd, &code, err, errlen);
    if (pid < 0) {
        *code_out = code;
        return -1;
    }
    *pid_out = pid;
    dbg("supervising pid %d (%s)", (int)pid, path);
    int status = supervise(nfd, pid);
    ss_drain(unlisten);
    for (int64_t end = mono_ms() + DRAIN_MS; atomic_load(&workers) > 0 && mono_ms() < end;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&workers) == 0) close(nfd); /* else leave it to workers still answering */
    if (status < 0) {
        snprintf(err, errlen, "Lost track of the supervised program: pid %d", (int)pid);
        return -1;
    }
    return status;
}

/* The ABI version of this library's exported table (ffi/libmyrt.ts checks it). */
EXPORT int myrt_abi(void) { return MYRT_ABI; }
