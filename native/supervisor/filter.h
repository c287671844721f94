/* filter.h: the seccomp filter of a supervised program. It stops (SECCOMP_RET_USER_NOTIF) only
 * the calls the overlay needs: connect, bind, listen, accept, accept4, getsockname,
 * getpeername, and for UDP the datagram calls sendto, recvfrom, sendmsg, recvmsg (which glibc's
 * send and recv also use: TCP data through send/recv then pays a round trip to the supervisor;
 * read/write, which Go uses for TCP, do not; they also carry rtnetlink interface dumps), and
 * ioctl with one of the interface requests of uvpn/core/ifaces.h (SIOCGIFCONF, SIOCGIF*, ...).
 * Everything else runs untouched. Syscalls of a foreign ABI (i386 int 0x80)
 * fail with ENOSYS, so a 32-bit program cannot bypass the overlay. */
#ifndef MYRT_FILTER_H
#define MYRT_FILTER_H

#include <stdint.h>

/* Installs the filter on the calling thread (inherited by every later thread, fork, clone and
 * exec) with PR_SET_NO_NEW_PRIVS. Returns the notification listener fd, or -errno. Uses only
 * raw syscalls (async-signal-safe: callable in a child right after fork). */
int filter_install(void);

/* When set (before the program is spawned), filter_install stops exactly these calls instead
 * (the XUFS mode of supervisor/xufs.c: path system calls, no network ones). */
extern const uint32_t *filter_calls;
extern unsigned filter_n_calls;
/* A filter that stops the n syscalls in calls and allows everything else (foreign ABIs: ENOSYS).
 * As filter_install otherwise. An execveat among calls is stopped unless the upper 32 bits of
 * its dirfd argument are FILTER_EXEC_MAGIC, which the kernel ignores (dirfd is an int): the
 * exec of the spawned program itself (spawn.c), before any supervisor loop runs. */
#define FILTER_EXEC_MAGIC 0x4d595254u /* "MYRT" */
int filter_install_calls(const uint32_t *calls, unsigned n);

/* The syscall number of a notification with the x32 ABI bit cleared (x32 calls are stopped
 * too and have the same arguments for the calls we handle). */
#define FILTER_NR(nr) ((nr) & ~0x40000000)

#endif
