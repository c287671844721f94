/* stream.c: the supervisor's answers to socket set-up calls (calls.h):
 *   connect   to a virtual address: on a pidfd_getfd duplicate of the program's own socket, with
 *             the same code as libuvpn.so (policy.c, engine.c): a non-blocking one answers
 *             EINPROGRESS (in a worker, after at most PARK_MS for the router's answer; in the
 *             loop when a listener brokered lately needs none) and the engine finishes it
 *             outside the program; a blocking one waits in a worker. A UDP socket connecting to port 53 of a real address goes to
 *             the DNS stub instead (dnsstub.c). Anything else continues in the kernel untouched.
 *   getsockopt(SO_ERROR) of a socket whose overlay connect failed: the overlay's errno, once.
 *   bind      to a virtual address or the wildcard: done here on the duplicate, state recorded
 *             (a UDP one, which registers with the home router, in a worker thread).
 *   listen    on such a socket: real listen on the duplicate, then LISTEN at the home router.
 *   accept(4) on such a socket: accepted here (in a worker thread; in the loop for a non-blocking
 *             virtual-only listener), ticket verified, the new socket installed into the program
 *             with SECCOMP_IOCTL_NOTIF_ADDFD.
 *   getsockname/getpeername: virtual addresses written into the program's memory. */
#include "supervisor/calls.h"
#include "supervisor/job.h"
#include "supervisor/dnsstub.h"
#include "supervisor/filter.h"
#include "supervisor/sockstate.h"
#include "supervisor/target.h"
#include "uvpn/core/config.h"
#include "uvpn/core/policy.h"
#include "common/log.h"
#include "common/netio.h"
#include "common/real.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- connect ----------------------------------------------------------------------------- */

/* A blocking connect to a listener brokered lately whose handshake was still under way in the
 * loop (pol_connect_now): finished here, in a worker. */
static void resume_work(job *j)
{
    vinfo n;
    ino_t ino = inode_of(j->dup);
    int r = pol_connect_resume(j->dup, j->ss.ss_family, &j->pend, &n);
    if (r == 0) ss_set(ino, &n);
    job_drop_dup(j);
    tg_reply(j->nfd, j->req.id, 0, -r);
}

/* connect of the program's socket (the duplicate j->dup) to the virtual destination j->ss: the
 * answer to the stopped call, given here (in a worker; with now_only in the loop, where a
 * blocking connect still under way goes on in a worker, resume_work). A non-blocking TCP socket
 * gets EINPROGRESS after at most pol_park_ms (the engine finishes the connect outside the
 * program); a blocking one waits for the whole connect. */
static int virtual_connect(job *j, int now_only)
{
    const struct seccomp_notif *q = &j->req;
    uint32_t ip;
    uint16_t port;
    sa_get_v4((const struct sockaddr *)&j->ss, j->sl, &ip, &port);
    ino_t ino = inode_of(j->dup);
    vinfo st, n;
    int has = ss_get(ino, &st) && st.kind != VS_DNS; /* a resolver's socket may connect anew */
    int r = now_only ? pol_connect_now(j->dup, j->ss.ss_family, ip, port, has, &st, &n, &j->pend)
                     : pol_connect(j->dup, j->ss.ss_family, ip, port, has, &st, &n);
    if (r == POL_WOULD_WAIT) return 0;
    if (r == POL_STARTED) {
        job *w = new_job(j->nfd, q, j->dup);
        if (!w) {
            tg_reply(j->nfd, q->id, 0, ENOMEM);
            return 1;
        }
        j->dup = -1; /* the worker's now */
        w->ss = j->ss;
        w->sl = j->sl;
        w->pend = j->pend;
        start_worker(w, resume_work);
        return 1;
    }
    if (r == 0 || r == -EINPROGRESS || (r == -EISCONN && has && st.kind == VS_CONNECTING)) ss_set(ino, &n);
    job_drop_dup(j);
    tg_reply(j->nfd, q->id, 0, -r);
    return 1;
}

static void connect_work(job *j)
{
    const struct seccomp_notif *q = &j->req;
    int fd = tg_getfd((pid_t)q->pid, (int)q->data.args[0]);
    if (fd < 0) {
        tg_reply(j->nfd, q->id, 0, fd == -EBADF ? EBADF : -fd);
        return;
    }
    j->dup = fd;
    virtual_connect(j, 0);
}

/* A connect to a listener brokered lately needs no answer from the router (the engine mints its
 * ticket): done here, in the loop, without a worker's hand-over (a blocking one too, when its
 * handshake completes at once, as on loopback). 1 when answered or handed on; 0: the worker's
 * (nothing done). */
static int connect_at_once(int nfd, const struct seccomp_notif *q, const struct sockaddr_storage *ss, socklen_t sl,
                           uint32_t ip, uint16_t port)
{
    if (!pol_connect_at_hand(ip, port)) return 0;
    job j = {.nfd = nfd, .req = *q, .dup = tg_getfd((pid_t)q->pid, (int)q->data.args[0]), .ss = *ss, .sl = sl};
    if (j.dup < 0) return 0;
    int done = virtual_connect(&j, 1);
    job_drop_dup(&j);
    return done;
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

void on_connect(int nfd, const struct seccomp_notif *q)
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
    if (connect_at_once(nfd, q, &ss, sl, ip, port)) return;
    /* In a worker: a blocking connect waits there; a non-blocking one at most PARK_MS. */
    job *j = new_job(nfd, q, -1);
    if (!j) {
        tg_reply(nfd, q->id, 0, ENOMEM);
        return;
    }
    j->ss = ss;
    j->sl = sl;
    start_worker(j, connect_work);
}

/* getsockopt(SO_ERROR) (the only getsockopt the filter stops): for a socket whose overlay
 * connect is in progress, the kernel's answer (0) stands; once it failed, the overlay's errno,
 * reported once. */
void on_getsockopt(int nfd, const struct seccomp_notif *q)
{
    ino_t ino;
    vinfo st;
    int fd = overlay_socket(q, 1 << VS_CONNECTING, &ino, &st);
    if (fd < 0) {
        tg_continue(nfd, q->id);
        return;
    }
    int r = pol_settle(&st, 1);
    if (r == 1) ss_set(ino, &st);
    if (r >= 0 || r == -ECONNABORTED || !tg_valid(nfd, q->id)) {
        if (r < 0) ss_del(ino);
        close(fd);
        tg_continue(nfd, q->id);
        return;
    }
    int e = 0;
    socklen_t el = sizeof e;
    real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el); /* clears the kernel's own error */
    close(fd);
    ss_del(ino);
    uint32_t len = 0;
    int w = tg_read((pid_t)q->pid, q->data.args[4], &len, sizeof len);
    e = -r;
    if (!w && len < sizeof e) w = -EINVAL;
    if (!w) w = tg_write((pid_t)q->pid, q->data.args[3], &e, sizeof e);
    len = sizeof e;
    if (!w) w = tg_write((pid_t)q->pid, q->data.args[4], &len, sizeof len);
    tg_reply(nfd, q->id, 0, w ? -w : 0);
}

/* ---- bind / listen ----------------------------------------------------------------------- */

/* bind of the program's socket (duplicate fd) to the address of q: done here when it is about
 * the overlay, else continued in the kernel. */
static void bind_answer(int nfd, const struct seccomp_notif *q, int fd, const struct sockaddr_storage *ss, socklen_t sl)
{
    vinfo n;
    int r = pol_bind(fd, (const struct sockaddr *)ss, sl, &n);
    if (r == 1 && ss_set(inode_of(fd), &n)) r = -ENOMEM;
    if (r == 0) tg_continue(nfd, q->id);
    else tg_reply(nfd, q->id, 0, r < 0 ? -r : 0);
}

static void bind_work(job *j) { bind_answer(j->nfd, &j->req, j->dup, &j->ss, j->sl); }

void on_bind(int nfd, const struct seccomp_notif *q)
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
    /* A UDP bind in the overlay registers with the home router, which may take a while: in a
     * worker, so the loop never waits (a TCP bind is local and answered here). */
    uint32_t ip = 1;
    uint16_t port;
    int overlay = sa_get_v4((struct sockaddr *)&ss, sl, &ip, &port) ? ip == 0 || cfg_is_virtual(ip)
                                                                    : ss.ss_family == AF_INET6;
    if (overlay && pol_sockopt_int(fd, SO_TYPE) == SOCK_DGRAM) {
        job *j = new_job(nfd, q, fd);
        if (j) {
            j->ss = ss;
            j->sl = sl;
            start_worker(j, bind_work);
            return;
        }
    }
    bind_answer(nfd, q, fd, &ss, sl);
    close(fd);
}

#define BOUND ((1 << VS_BOUND_VIRTUAL) | (1 << VS_BOUND_ANY))

static void listen_work(job *j)
{
    if (listen(j->dup, pol_backlog(1, &j->st, (int)j->req.data.args[1]))) {
        int e = errno;
        job_drop_dup(j);
        tg_reply(j->nfd, j->req.id, 0, e);
        return;
    }
    /* A program that closes its listener and listens anew on the same port (iperf3 between
     * tests) would find the old socket's registration still held at the home router until the
     * next sweep: EADDRINUSE, and a wildcard listener then stays unregistered while the router
     * still relays to its real port, tickets and all, into the program's stream. Closed
     * listeners are unregistered first. */
    if (!j->st.registered) sv_sweep();
    int r = pol_listen(j->dup, &j->st);
    if (r > 0) ss_set(j->ino, &j->st);
    job_drop_dup(j);
    tg_reply(j->nfd, j->req.id, 0, r < 0 ? -r : 0);
}

static int accept_answer(job *j, int may_wait, int fl);

/* An accept that waits for nothing, answered in the notification loop (a worker's hand-over cost
 * two thread switches per accept, also for the EAGAIN that ends an event loop's accept round): on
 * a virtual-only listener, whose connections reach the queue only with their first bytes
 * (TCP_DEFER_ACCEPT, policy.c) and whose tickets are read without waiting; a non-blocking one,
 * or a blocking one with a connection queued. 1 when answered (fd closed), else 0. */
static int accept_at_once(int nfd, const struct seccomp_notif *q, int fd, ino_t ino, const vinfo *st)
{
    if (FILTER_NR(q->data.nr) != SYS_accept && FILTER_NR(q->data.nr) != SYS_accept4) return 0;
    int fl = fcntl(fd, F_GETFL);
    struct pollfd p = {fd, POLLIN, 0};
    if (st->kind != VS_BOUND_VIRTUAL || fl < 0 || (!(fl & O_NONBLOCK) && poll(&p, 1, 0) != 1)) return 0;
    job j = {.nfd = nfd, .req = *q, .dup = fd, .ino = ino, .st = *st};
    int done = accept_answer(&j, 0, fl);
    if (done) job_drop_dup(&j);
    return done;
}

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
    if (accept_at_once(nfd, q, fd, ino, &st)) return;
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

/* Accepts on the listener j->dup (file status flags fl, -1: not read yet) and answers the
 * stopped accept j: 1. may_wait 0 (the loop): a blocking listener is accepted on without waiting
 * (non-blocking for the accept4 call only: the program's thread is stopped in its own), and when
 * no connection is queued after all, returns 0 with nothing answered (a worker's, then). */
static int accept_answer(job *j, int may_wait, int fl)
{
    const struct seccomp_notif *q = &j->req;
    int four = FILTER_NR(q->data.nr) == SYS_accept4;
    int flags = four ? (int)q->data.args[3] : 0;
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
        tg_reply(j->nfd, q->id, 0, EINVAL);
        return 1;
    }
    if (fl < 0) fl = fcntl(j->dup, F_GETFL);
    int nonblocking = fl >= 0 && (fl & O_NONBLOCK), held = !may_wait && !nonblocking;
    for (;;) {
        if (!nonblocking && may_wait && !wait_readable(j)) return 1;
        struct sockaddr_storage peer, vpeer;
        socklen_t pl = sizeof peer, vl = 0;
        if (held) fcntl(j->dup, F_SETFL, fl | O_NONBLOCK);
        int c = accept4(j->dup, (struct sockaddr *)&peer, &pl, (flags & SOCK_NONBLOCK) | SOCK_CLOEXEC), e = errno;
        if (held) fcntl(j->dup, F_SETFL, fl);
        if (c < 0) {
            if (held && (e == EAGAIN || e == EWOULDBLOCK)) return 0; /* none queued after all */
            if (!nonblocking && (e == EAGAIN || e == EINTR)) continue; /* raced */
            job_drop_dup(j);
            tg_reply(j->nfd, q->id, 0, e);
            return 1;
        }
        vinfo n;
        int r = pol_accepted(&j->st, c, (struct sockaddr *)&peer, pl, &n, &vpeer, &vl);
        if (r < 0) {
            close(c); /* not the router's: closed at once; go on with the next (EAGAIN when none) */
            continue;
        }
        if (r > 0) ss_set(inode_of(c), &n);
        job_drop_dup(j); /* the listener: the program may close it as soon as accept returns */
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
        return 1;
    }
}

static void accept_work(job *j) { accept_answer(j, 1, -1); }

/* ---- names ------------------------------------------------------------------------------- */

void on_name(int nfd, const struct seccomp_notif *q, int peer)
{
    ino_t ino;
    vinfo st;
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd = overlay_socket(q, -1, &ino, &st), known = 0;
    if (fd >= 0) conn_gate(ino, &st); /* a connect that just got through shows its virtual names */
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

void on_listen(int nfd, const struct seccomp_notif *q)
{
    on_bound_socket(nfd, q, listen_work);
}

void on_accept(int nfd, const struct seccomp_notif *q)
{
    on_bound_socket(nfd, q, accept_work);
}
