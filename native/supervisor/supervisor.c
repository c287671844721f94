/* supervisor.c: libmyrt.so's seccomp supervisor, the UVPN overlay for programs LD_PRELOAD
 * cannot reach (statically linked ones). myrt_run() starts a program under the seccomp filter
 * of filter.c (spawn.c) and runs the notification loop until it exits: each stopped call is
 * dispatched to its answer in stream.c (connect, bind, listen, accept, getsockname,
 * getpeername), dgram.c (sendto, sendmsg, recvfrom, recvmsg; rtnetlink dumps first, netlink.c)
 * or ifreq.c (interface ioctls); calls that may wait on the
 * network run in worker threads (job.c), so the loop never blocks. Overlay state is keyed by
 * socket inode (sockstate.c); closed sockets are swept out with the kernel's socket
 * diagnostics (sockdiag.c). Exported: myrt_run, myrt_abi. */
#include "supervisor/calls.h"
#include "supervisor/job.h"
#include "supervisor/filter.h"
#include "supervisor/sockdiag.h"
#include "supervisor/sockstate.h"
#include "supervisor/spawn.h"
#include "supervisor/target.h"
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
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define MYRT_ABI 1
#define DRAIN_MS 2000        /* at exit, time given to workers still running */
#define SWEEP_MS 3000        /* how often the states of closed sockets are swept out */
#define PARK_MS 20           /* a non-blocking connect waits this long at most for the answer */

extern char **environ;

static void dispatch(int nfd, const struct seccomp_notif *q)
{
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

static void unlisten(const vinfo *v) { pol_release(v); }

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
    pol_park_ms = PARK_MS;
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
    for (int64_t end = mono_ms() + DRAIN_MS; workers_running() > 0 && mono_ms() < end;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (workers_running() == 0) close(nfd); /* else leave it to workers still answering */
    if (status < 0) {
        snprintf(err, errlen, "Lost track of the supervised program: pid %d", (int)pid);
        return -1;
    }
    return status;
}

/* The ABI version of this library's exported table (ffi/libmyrt.ts checks it). */
EXPORT int myrt_abi(void) { return MYRT_ABI; }
