/* filter.c: the BPF program and its installation (see filter.h). */
#include "supervisor/filter.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
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

int filter_install(void)
{
    struct sock_filter prog[] = {
        /* 0 */ LD(offsetof(struct seccomp_data, arch)),
        /* 1 */ JEQ(MY_ARCH, 1, 0),
        /* 2 */ RET(SECCOMP_RET_ERRNO | ENOSYS),
        /* 3 */ LD(offsetof(struct seccomp_data, nr)),
        /* 4 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_BIT),
        /* 5 */ JEQ(SYS_connect, 16, 0),
        /* 6 */ JEQ(SYS_bind, 15, 0),
        /* 7 */ JEQ(SYS_listen, 14, 0),
        /* 8 */ JEQ(SYS_accept, 13, 0),
        /* 9 */ JEQ(SYS_accept4, 12, 0),
        /* 10 */ JEQ(SYS_getsockname, 11, 0),
        /* 11 */ JEQ(SYS_getpeername, 10, 0),
        /* 12 */ JEQ(SYS_sendto, 9, 0),   /* UDP over the overlay: the datagram calls */
        /* 13 */ JEQ(SYS_recvfrom, 8, 0),
        /* 14 */ JEQ(SYS_sendmsg, 7, 0),
        /* 15 */ JEQ(SYS_recvmsg, 6, 0),
        /* 16 */ JEQ(SYS_getsockopt, 0, 4), /* only getsockopt(fd, SOL_SOCKET, SO_ERROR, ...) */
        /* 17 */ LD(ARG_LO(1)),
        /* 18 */ JEQ(SOL_SOCKET, 0, 2),
        /* 19 */ LD(ARG_LO(2)),
        /* 20 */ JEQ(SO_ERROR, 1, 0),
        /* 21 */ RET(SECCOMP_RET_ALLOW),
        /* 22 */ RET(SECCOMP_RET_USER_NOTIF),
    };
    struct sock_fprog fp = {sizeof prog / sizeof prog[0], prog};
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
