/* open.c: libxufs.so's load/exit hooks and the wrappers of the open family (open*, creat*,
 * __open*_2, fopen*, freopen*, openat2 through syscall()) and of fd lifetime (close, dup*, fcntl F_DUPFD*, fclose,
 * fcloseall, close_range, closefrom; through syscall() too, for the fast open's descriptor) that
 * drive the CLOSED write-back: close() and fclose() fail with EIO
 * when the manager could not make the change durable. Paths are prepared by
 * xufs/core/prepare.c. */
#include "xufs/core/prepare.h"
#include "common/fcntl_arg.h"
#include "xufs/core/client.h"
#include "xufs/core/fastopen.h"
#include "xufs/core/fdtrack.h"
#include "xufs/core/xreal.h"
#include "common/log.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((constructor)) static void xufs_load(void)
{
    if (xufs_on()) xfd_scan_inherited();
}

__attribute__((destructor)) static void xufs_unload(void)
{
    if (xufs_on()) xfd_at_exit();
}

/* ---- open family ---- */

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    if (!xufs_on()) return RCALL(openat64, -1, dirfd, path, flags, mode);
    xpath p;
    int track = 0, r = xufs_classify_lexical(dirfd, path, &p);
    if (r) {
        int fast = xp_open_fast(&p, flags);
        if (fast >= 0) return fast;
        if ((r = xufs_resolve_dirs(&p)) && (r = xp_open_cls(&p, flags, &track)) < 0) return -1;
    }
    int fd = RCALL(openat64, -1, dirfd, xp_real(r, &p, path), flags, mode);
    if (fd >= 0 && r && track) xfd_track(fd, p.rel);
    return fd;
}

/* openat2(2), which glibc has no wrapper for: programs call it through syscall(). A path the
 * kernel resolves inside the cache by itself (relative to a cache directory) keeps its
 * RESOLVE_* meaning; an absolute one under the mount is opened at its cache path. */
static long openat2_common(int dirfd, const char *path, struct open_how *how, size_t size)
{
    if (!path || !how || size < sizeof(struct open_how))
        return RCALL(syscall, -1, (long)SYS_openat2, (long)dirfd, path, how, size);
    xpath p;
    int track;
    int r = xp_open(dirfd, path, (int)how->flags, &p, &track);
    if (r < 0) return -1;
    const char *use = r > 0 && p.direct ? path : xp_real(r, &p, path);
    long fd = RCALL(syscall, -1, (long)SYS_openat2, (long)dirfd, use, how, size);
    if (fd >= 0 && r && track) xfd_track((int)fd, p.rel);
    return fd;
}

/* syscall(): openat2 made through it is the wrappers' too; everything else goes to libc's
 * syscall() with the six arguments it would read. (execveat through syscall() is left alone:
 * the supervisor's launcher execs that way, and must not ask the manager.) syscall() cannot know
 * how many arguments its caller passed, so it reads six, as libc's own does: on x86-64 the
 * sixth comes from the caller's stack even when the caller passed fewer (mapped memory, its
 * value unused by the kernel then). ASan rightly calls that read out of bounds (found by
 * tests/xufs/static_local_test.ts in the sanitizer pass: the launcher's pidfd_open), so this
 * one function is not instrumented. */
XUFS_API __attribute__((no_sanitize_address)) long syscall(long nr, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, nr);
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_openat2 && xufs_on()) return openat2_common((int)a[0], (const char *)a[1], (struct open_how *)a[2], (size_t)a[3]);
    if (nr == SYS_close || (nr == SYS_close_range && !(a[2] & CLOSE_RANGE_CLOEXEC)))
        xp_fast_closing((unsigned)a[0], nr == SYS_close ? (unsigned)a[0] : (unsigned)a[1]);
    if (nr == SYS_dup2 || nr == SYS_dup3) xp_fast_closing((unsigned)a[1], (unsigned)a[1]);
    return RCALL(syscall, -1, nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

#define NEEDS_MODE(f) (((f) & O_CREAT) || ((f) & O_TMPFILE) == O_TMPFILE)
#define GET_MODE(flags, last)                                                 \
    mode_t mode = 0;                                                          \
    if (NEEDS_MODE(flags)) {                                                  \
        va_list ap;                                                           \
        va_start(ap, last);                                                   \
        mode = (mode_t)va_arg(ap, int);                                       \
        va_end(ap);                                                           \
    }

XUFS_API int open(const char *path, int flags, ...)
{
    GET_MODE(flags, flags);
    return open_common(AT_FDCWD, path, flags, mode);
}

XUFS_API int open64(const char *path, int flags, ...)
{
    GET_MODE(flags, flags);
    return open_common(AT_FDCWD, path, flags, mode);
}

XUFS_API int openat(int dirfd, const char *path, int flags, ...)
{
    GET_MODE(flags, flags);
    return open_common(dirfd, path, flags, mode);
}

XUFS_API int openat64(int dirfd, const char *path, int flags, ...)
{
    GET_MODE(flags, flags);
    return open_common(dirfd, path, flags, mode);
}

XUFS_API int creat(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

XUFS_API int creat64(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

XUFS_API int __open_2(const char *path, int flags)
{
    if (NEEDS_MODE(flags)) __chk_fail();
    return open_common(AT_FDCWD, path, flags, 0);
}

XUFS_API int __open64_2(const char *path, int flags)
{
    if (NEEDS_MODE(flags)) __chk_fail();
    return open_common(AT_FDCWD, path, flags, 0);
}

XUFS_API int __openat_2(int dirfd, const char *path, int flags)
{
    if (NEEDS_MODE(flags)) __chk_fail();
    return open_common(dirfd, path, flags, 0);
}

XUFS_API int __openat64_2(int dirfd, const char *path, int flags)
{
    if (NEEDS_MODE(flags)) __chk_fail();
    return open_common(dirfd, path, flags, 0);
}

/* ---- stdio ---- */

static FILE *fopen_common(const char *path, const char *mode, int is64)
{
    xpath p;
    int track = 0, r = 0;
    p.outside = 0;
    if (xufs_on() && mode) {
        r = xp_open(AT_FDCWD, path, xp_fopen_flags(mode), &p, &track);
        if (r < 0) return NULL;
    }
    const char *use = xp_real(r, &p, path);
    FILE *f = is64 ? RCALL(fopen64, NULL, use, mode) : RCALL(fopen, NULL, use, mode);
    if (f && r && track) xfd_track(fileno(f), p.rel);
    return f;
}

XUFS_API FILE *fopen(const char *path, const char *mode)
{
    return fopen_common(path, mode, 0);
}

XUFS_API FILE *fopen64(const char *path, const char *mode)
{
    return fopen_common(path, mode, 1);
}

static FILE *freopen_common(const char *path, const char *mode, FILE *stream, int is64)
{
    if (!xufs_on() || !path || !mode || !stream)
        return is64 ? RCALL(freopen64, NULL, path, mode, stream)
                    : RCALL(freopen, NULL, path, mode, stream);
    xpath p;
    int track = 0;
    int r = xp_open(AT_FDCWD, path, xp_fopen_flags(mode), &p, &track);
    if (r < 0) return NULL;
    void *tok = xfd_detach(fileno(stream));
    const char *use = xp_real(r, &p, path);
    FILE *f = is64 ? RCALL(freopen64, NULL, use, mode, stream)
                   : RCALL(freopen, NULL, use, mode, stream);
    xfd_closed(tok);
    if (f && r && track) xfd_track(fileno(f), p.rel);
    return f;
}

XUFS_API FILE *freopen(const char *path, const char *mode, FILE *stream)
{
    return freopen_common(path, mode, stream, 0);
}

XUFS_API FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
    return freopen_common(path, mode, stream, 1);
}

/* The result of a close that released tok: a change that could not be made durable fails it. */
static int closed_result(int r, void *tok, int fail)
{
    if (xfd_closed(tok) < 0 && r != fail) {
        errno = EIO;
        return fail;
    }
    return r;
}

XUFS_API int fclose(FILE *f)
{
    void *tok = f ? xfd_detach(fileno(f)) : NULL;
    return closed_result(RCALL(fclose, EOF, f), tok, EOF);
}

XUFS_API int fcloseall(void)
{
    int r = RCALL(fcloseall, EOF);
    xfd_sweep();
    return r;
}

/* ---- fd lifetime ---- */

XUFS_API int close(int fd)
{
    xp_fast_closing((unsigned)fd, (unsigned)fd);
    void *tok = xfd_detach(fd);
    return closed_result(RCALL(close, -1, fd), tok, -1);
}

XUFS_API int close_range(unsigned first, unsigned last, int flags)
{
    if (!(flags & CLOSE_RANGE_CLOEXEC)) xp_fast_closing(first, last);
    int r = RCALL(close_range, -1, first, last, flags);
    if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) xfd_sweep();
    return r;
}

XUFS_API void closefrom(int lowfd)
{
    xp_fast_closing((unsigned)(lowfd < 0 ? 0 : lowfd), ~0u);
    void (*real)(int) = XREAL(closefrom);
    if (real) real(lowfd);
    xfd_sweep();
}

XUFS_API int dup(int fd)
{
    int r = RCALL(dup, -1, fd);
    if (r >= 0 && xfd_maybe(fd)) xfd_share(fd, r);
    return r;
}

XUFS_API int dup2(int fd, int fd2)
{
    if (fd != fd2) xp_fast_closing((unsigned)fd2, (unsigned)fd2);
    int r = RCALL(dup2, -1, fd, fd2);
    if (r >= 0 && fd != fd2 && (xfd_maybe(fd) || xfd_maybe(fd2))) xfd_share(fd, fd2);
    return r;
}

XUFS_API int dup3(int fd, int fd2, int flags)
{
    xp_fast_closing((unsigned)fd2, (unsigned)fd2);
    int r = RCALL(dup3, -1, fd, fd2, flags);
    if (r >= 0 && xfd_maybe(fd)) xfd_share(fd, fd2);
    return r;
}

static int fcntl_common(int is64, int fd, int cmd, void *arg)
{
    int r = is64 ? RCALL(fcntl64, -1, fd, cmd, arg) : RCALL(fcntl, -1, fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && xfd_maybe(fd)) xfd_share(fd, r);
    return r;
}

XUFS_API int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = fcntl_takes_arg(cmd) ? va_arg(ap, void *) : NULL;
    va_end(ap);
    return fcntl_common(0, fd, cmd, arg);
}

XUFS_API int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = fcntl_takes_arg(cmd) ? va_arg(ap, void *) : NULL;
    va_end(ap);
    return fcntl_common(1, fd, cmd, arg);
}
