/* filter.c: the BPF program and its installation (see filter.h). */
#include "supervisor/filter.h"
#include "uvpn/core/ifaces.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define MY_ARCH AUDIT_ARCH_X86_64
#define X32_BIT 0x40000000u /* x32 ABI syscalls: same numbers with this bit, notified too */
#elif defined(__aarch64__)
#define MY_ARCH AUDIT_ARCH_AARCH64
#define X32_BIT 0u
#else
#error "seccomp supervisor: unsupported architecture"
#endif

#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define JEQ(k, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i) + (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 4))
#define ARG_HI(i) (offsetof(struct seccomp_data, args) + 8 * (i) + (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 4 : 0))

#define PROG_MAX 64

/* The program, built at run time (no allocation: callable after fork): every "stop" jump goes
 * to the last instruction (USER_NOTIF), every fall-through to the one before it (ALLOW). */
typedef struct {
    struct sock_filter ins[PROG_MAX];
    unsigned n, stops[PROG_MAX], n_stops;
} prog_t;

static void emit(prog_t *p, struct sock_filter f) { p->ins[p->n++] = f; }

/* if A == k, stop (jump patched by finish) */
static void stop_if(prog_t *p, uint32_t k)
{
    p->stops[p->n_stops++] = p->n;
    emit(p, (struct sock_filter)JEQ(k, 0, 0));
}

static void finish(prog_t *p)
{
    emit(p, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
    emit(p, (struct sock_filter)RET(SECCOMP_RET_USER_NOTIF));
    for (unsigned i = 0; i < p->n_stops; i++) p->ins[p->stops[i]].jt = (uint8_t)(p->n - 1 - (p->stops[i] + 1));
}

/* The arch check and the loaded syscall number (x32 bit cleared), the start of every program. */
static void prologue(prog_t *p)
{
    emit(p, (struct sock_filter)LD(offsetof(struct seccomp_data, arch)));
    emit(p, (struct sock_filter)JEQ(MY_ARCH, 1, 0));
    emit(p, (struct sock_filter)RET(SECCOMP_RET_ERRNO | ENOSYS));
    emit(p, (struct sock_filter)LD(offsetof(struct seccomp_data, nr)));
    emit(p, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_BIT));
}

static int install(prog_t *p);

int filter_install_calls(const uint32_t *calls, unsigned n)
{
    prog_t p = {.n = 0};
    if (n > PROG_MAX - 8) return -E2BIG;
    prologue(&p);
    for (unsigned i = 0; i < n; i++) {
        if (calls[i] != SYS_execveat) {
            stop_if(&p, calls[i]);
            continue;
        }
        /* execveat: stopped unless the upper half of its dirfd is FILTER_EXEC_MAGIC (the
         * spawning child's own exec, which nobody could answer yet; the kernel reads an int) */
        emit(&p, (struct sock_filter)JEQ(SYS_execveat, 0, 4)); /* else over the next four */
        emit(&p, (struct sock_filter)LD(ARG_HI(0)));
        emit(&p, (struct sock_filter)JEQ(FILTER_EXEC_MAGIC, 0, 1));
        emit(&p, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
        emit(&p, (struct sock_filter)RET(SECCOMP_RET_USER_NOTIF));
    }
    finish(&p);
    return install(&p);
}

int filter_install(void)
{
    static const uint32_t stopped[] = {
        SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4, SYS_getsockname,
        SYS_getpeername,
        SYS_sendto, SYS_recvfrom, SYS_sendmsg, SYS_recvmsg, /* UDP over the overlay, netlink */
    };
    if (filter_calls) return filter_install_calls(filter_calls, filter_n_calls);
    prog_t p = {.n = 0};
    prologue(&p);
    for (unsigned i = 0; i < sizeof stopped / sizeof stopped[0]; i++) stop_if(&p, stopped[i]);
    /* socket: only AF_NETLINK (then address-less sends may be rtnetlink requests, netlink.c) */
    emit(&p, (struct sock_filter)JEQ(SYS_socket, 0, 2)); /* else over the next two */
    emit(&p, (struct sock_filter)LD(ARG_LO(0)));
    stop_if(&p, AF_NETLINK);
    emit(&p, (struct sock_filter)LD(offsetof(struct seccomp_data, nr)));
    emit(&p, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_BIT));
    /* getsockopt: only (fd, SOL_SOCKET, SO_ERROR, ...): the gate before a moved socket's ticket
     * is written, and a failed overlay connect's errno (stream.c) */
    emit(&p, (struct sock_filter)JEQ(SYS_getsockopt, 0, 4)); /* else over the next four */
    emit(&p, (struct sock_filter)LD(ARG_LO(1)));
    emit(&p, (struct sock_filter)JEQ(SOL_SOCKET, 0, 2));
    emit(&p, (struct sock_filter)LD(ARG_LO(2)));
    stop_if(&p, SO_ERROR);
    emit(&p, (struct sock_filter)LD(offsetof(struct seccomp_data, nr)));
    emit(&p, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_BIT));
    /* ioctl: only the interface requests (uvpn/core/ifaces.h), compared on the low 32 bits of
     * the command, which is all the kernel reads. */
    unsigned not_ioctl = p.n;
    emit(&p, (struct sock_filter)JEQ(SYS_ioctl, 0, 0)); /* jf patched: to ALLOW */
    emit(&p, (struct sock_filter)LD(ARG_LO(1)));
    for (int i = 0; i < ifv_n_ioctls; i++) stop_if(&p, ifv_ioctls[i]);
    finish(&p);
    p.ins[not_ioctl].jf = (uint8_t)(p.n - 2 - (not_ioctl + 1));
    return install(&p);
}

const uint32_t *filter_calls;
unsigned filter_n_calls;

/* Installs program p (see filter_install). */
static int install(prog_t *p)
{
    struct sock_fprog fp = {(unsigned short)p->n, p->ins};
    if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -errno;
    /* WAIT_KILLABLE_RECV (5.19): once the supervisor has a call, only a fatal signal interrupts
     * it, so a signal (Go's SIGURG preemption) never restarts a half-done connect.
     * SPEC_ALLOW (4.17): this filter interposes, it does not sandbox, so it must not switch on
     * the speculative-store-bypass mitigation that kernels booted with spec_store_bypass_disable=
     * seccomp (the default where the CPU supports SSBD) force on every seccomp task. */
    static const unsigned long flags[] = {
        SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        SECCOMP_FILTER_FLAG_NEW_LISTENER,
    };
    long fd = -1;
    for (unsigned i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags[i], &fp);
        if (fd >= 0 || errno != EINVAL) break;
    }
    return fd < 0 ? -errno : (int)fd;
}
