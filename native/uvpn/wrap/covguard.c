/* covguard.c: only in the coverage build (-DMYRT_COVERAGE, the sanitizer pass's native/build-asan-cov):
 * lets a program that sandboxes itself with seccomp keep running when our instrumented library
 * writes its gcov counters at exit. sshd's pre-authentication child installs a filter that kills
 * the process on mkdir(2); gcov's writer, finding its counter file unopenable there (open is
 * refused with EACCES), calls mkdir() for the file's directories and sshd then sees its child
 * die of SIGSYS and drops the login. So in that build libuvpn.so notes a successful
 * prctl(PR_SET_SECCOMP) and answers a later mkdir() with EACCES without making the call: the
 * counters of that sandboxed process are lost (it runs none of our code worth counting), every
 * other process writes its own. Neither function exists in the shipped library. */
#include "uvpn/wrap/wrap.h"

#ifdef MYRT_COVERAGE
#include <fcntl.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static int seccomp_on; /* a filter is installed in this process (kept across fork, as the filter is) */

EXPORT int prctl(int option, ...)
{
    va_list ap;
    unsigned long a[4];
    va_start(ap, option);
    for (int i = 0; i < 4; i++) a[i] = va_arg(ap, unsigned long);
    va_end(ap);
    NEED(syscall);
    long r = real.syscall(SYS_prctl, (long)option, a[0], a[1], a[2], a[3]);
    if (r == 0 && option == PR_SET_SECCOMP) seccomp_on = 1;
    return (int)r;
}

EXPORT int mkdir(const char *path, mode_t mode)
{
    if (seccomp_on) {
        errno = EACCES;
        return -1;
    }
    NEED(syscall);
    return (int)real.syscall(SYS_mkdirat, (long)AT_FDCWD, path, (long)mode);
}
#else
typedef int covguard_unused; /* the shipped build: nothing here */
#endif
