/* supervisor.c: libmyrt.so's seccomp supervisor, the UVPN overlay for programs LD_PRELOAD
 * cannot reach (statically linked ones). The launcher (launch.c) starts a program under the
 * seccomp filter of filter.c (spawn.c); sv_loop runs the notification loop until no process
 * uses the filter any more (the program and everything it started): each stopped call is
 * dispatched to its answer in stream.c (connect, bind, listen, accept, getsockname,
 * getpeername), dgram.c (sendto, sendmsg, recvfrom, recvmsg; rtnetlink dumps first, netlink.c)
 * or ifreq.c (interface ioctls); calls that may wait on the
 * network run in worker threads (job.c), so the loop never blocks. Overlay state is keyed by
 * socket inode (sockstate.c); closed sockets are swept out with the kernel's socket
 * diagnostics (sockdiag.c). Exported: myrt_abi (and launch.c's myrt_main). */
#include "supervisor/calls.h"
#include "supervisor/launch.h"
#include "supervisor/job.h"
#include "supervisor/filter.h"
#include "supervisor/sockdiag.h"
#include "uvpn/core/engine.h"
#include "uvpn/core/paths.h"
#include "supervisor/sockstate.h"
#include "supervisor/spawn.h"
#include "supervisor/target.h"
#include "supervisor/xufs.h"
#include "uvpn/core/policy.h"
#include "common/env.h"
#include "common/log.h"
#include "common/netio.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define MYRT_ABI 2
#define DRAIN_MS 2000        /* at exit, time given to workers still running */
#define SWEEP_MS 3000        /* how often the states of closed sockets are swept out */
#define PARK_MS 20           /* a non-blocking connect waits this long at most for the answer */

/* Linux 6.6+ (headers may be older): the kernel then wakes the supervisor on the stopped
 * program's CPU and the program on the supervisor's when it is answered. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1UL
#endif

static void dispatch(int nfd, const struct seccomp_notif *q)
{
    if (xs_mode) return xs_dispatch(nfd, q); /* XUFS mode: path calls only (xufs.c) */
    job_count_call(FILTER_NR(q->data.nr));
    switch (FILTER_NR(q->data.nr)) {
    case SYS_connect: on_connect(nfd, q); break;
    case SYS_bind: on_bind(nfd, q); break;
    case SYS_listen: on_listen(nfd, q); break;
    case SYS_accept:
    case SYS_accept4: on_accept(nfd, q); break;
    case SYS_getsockname: on_name(nfd, q, 0); break;
    case SYS_getpeername: on_name(nfd, q, 1); break;
    case SYS_getsockopt: on_getsockopt(nfd, q); break;
    case SYS_sendto:
    case SYS_sendmsg: on_send(nfd, q); break;
    case SYS_recvfrom:
    case SYS_recvmsg: on_recv(nfd, q); break;
    case SYS_ioctl: on_ioctl(nfd, q); break;
    case SYS_socket: on_socket(nfd, q); break;
    default: tg_continue(nfd, q->id); break;
    }
}

/* ---- the run ----------------------------------------------------------------------------- */

static void unlisten(const vinfo *v)
{
    paths_forgotten(v);
    pol_release(v);
}

typedef struct {
    const ino_t *live;
    long n;
    int bound_listed;
} census;

static int socket_gone(ino_t ino, const vinfo *v, void *ctx)
{
    const census *c = ctx;
    /* A socket that is only bound is missing from the dumps of kernels before 6.5. */
    if (!c->bound_listed && v->kind != VS_CONNECTED && v->kind != VS_CONNECTING && v->kind != VS_DNS && !v->registered)
        return 0;
    return !sd_contains(c->live, c->n, ino);
}

void sv_sweep(void)
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

/* Reaps every child that has ended (the program, and orphans of the tree reparented to us, the
 * subreaper). Returns 1 when pid was among them, with *status. */
static int reap(pid_t pid, int *status)
{
    int found = 0, st;
    for (;;) {
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w <= 0) return found;
        if (w == pid) *status = st, found = 1;
    }
}

void sv_init(char *const *envp)
{
    uvpn_env_use(envp);
    pol_park_ms = PARK_MS;
}

/* Asks the kernel for synchronous wake-ups on the notification fd: a stopped call then costs
 * no cross-CPU wake-up each way (the supervisor runs on the program's CPU while the program
 * waits for the answer). Older kernels refuse (EINVAL, ENOTTY): the loop works as before. */
static void sync_wake_up(int nfd)
{
    if (ioctl(nfd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0)
        dbg("supervisor: synchronous wake-ups on the notification fd");
    else
        dbg("supervisor: no synchronous wake-ups on the notification fd (%s)", errno_name(errno));
}

int sv_loop(int nfd, pid_t pid, int chld_fd, int front_pidfd, sv_exit_fn on_exit, void *ctx)
{
    sync_wake_up(nfd);
    struct seccomp_notif_sizes sizes;
    size_t qsize = sizeof(struct seccomp_notif);
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) == 0 && sizes.seccomp_notif > qsize)
        qsize = sizes.seccomp_notif;
    struct seccomp_notif *q = malloc(qsize);
    if (!q) return -ENOMEM;
    int status = 0, done = 0; /* done: the program itself has exited (reported) */
    int64_t next_sweep = mono_ms() + SWEEP_MS;
    for (;;) {
        struct pollfd p[3] = {{nfd, POLLIN, 0}, {chld_fd, POLLIN, 0}, {front_pidfd, POLLIN, 0}};
        int64_t now = mono_ms();
        if (ss_count() > 0 && now >= next_sweep) {
            sv_sweep();
            next_sweep = now + SWEEP_MS;
        }
        int wait = ss_count() > 0 ? (int)(next_sweep - now > 0 ? next_sweep - now : 0) : -1;
        int r = poll(p, front_pidfd >= 0 && !done ? 3 : 2, wait);
        if (r < 0 && errno != EINTR) break;
        if (p[0].revents & POLLIN) {
            memset(q, 0, qsize);
            if (ioctl(nfd, SECCOMP_IOCTL_NOTIF_RECV, q) == 0) dispatch(nfd, q);
            continue; /* serve pending calls before looking at exits */
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(chld_fd, &si, sizeof si) == (ssize_t)sizeof si) { /* drained */ }
        }
        if (!done && (p[2].revents & POLLIN)) {
            /* The front process was killed (SIGKILL): the program goes with it, as it would have
             * without us; whatever it started stays. */
            dbg("the front process is gone: killing pid %d", (int)pid);
            kill(pid, SIGKILL);
        }
        if (!done && reap(pid, &status)) {
            done = 1;
            struct pollfd h = {nfd, POLLIN, 0};
            int remaining = poll(&h, 1, 0) >= 0 && !(h.revents & POLLHUP);
            on_exit(ctx, status, remaining);
            if (!remaining) break;
            continue;
        }
        if (done) reap(pid, &status); /* orphans of the tree */
        /* POLLHUP: no process uses the filter any more (every supervised process is gone). */
        if ((p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN)) {
            if (!done) {
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR) { /* the program's end */ }
                on_exit(ctx, status, 0);
            }
            break;
        }
    }
    free(q);
    return 0;
}

void sv_finish(int nfd)
{
    if (!xs_mode) job_log_counts();
    ss_drain(unlisten);
    eng_flush_paths(); /* the supervisor ends with _exit: no destructor reports them */
    for (int64_t end = mono_ms() + DRAIN_MS; workers_running() > 0 && mono_ms() < end;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (workers_running() == 0) close(nfd); /* else leave it to workers still answering */
}

/* The ABI version of this library's exported table (ffi/libmyrt.ts checks it). */
EXPORT int myrt_abi(void) { return MYRT_ABI; }
