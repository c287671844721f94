/* xreal.h: the real libc functions behind libxufs.so's wrappers, found lazily with
 * dlsym(RTLD_NEXT): libxufs.so's real-libc table, one slot per name (common/real.h serves the
 * common/ code linked into it). XREAL(name) yields a pointer of name's own type (NULL if libc
 * lacks it); each use site caches its pointer with atomic loads/stores, so it is thread-safe and needs no
 * initialisation order. All internal file work of libxufs.so goes through these, never through
 * its own wrappers. In libmyrt.so (the supervisor's XUFS mode, which shares xufs/core) the same
 * slots hold libc's own functions instead (xreal_libc.c), never a preloaded library's. RCALL(name, fail, args...) calls the real function, or sets ENOSYS and yields
 * fail when it is missing. Also declares the glibc-internal names wrapped (legacy __xstat family,
 * fortify __*_chk / __open_2 variants) that current headers no longer declare. */
#ifndef XUFS_REAL_H
#define XUFS_REAL_H

#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* The real function name, preserving errno: dlsym(RTLD_NEXT) in libxufs.so and
 * libxufs_audit.so (xreal.c), libc's own in libmyrt.so (xreal_libc.c). */
void *xufs_dlsym(const char *name);

#define XREAL(name) ({                                                  \
    static void *xreal_slot_;                                           \
    void *xreal_f_ = __atomic_load_n(&xreal_slot_, __ATOMIC_ACQUIRE);   \
    if (!xreal_f_) {                                                    \
        xreal_f_ = xufs_dlsym(#name);                                   \
        __atomic_store_n(&xreal_slot_, xreal_f_, __ATOMIC_RELEASE);     \
    }                                                                   \
    (__typeof__(&name))xreal_f_; })

#define RCALL(name, fail, ...) ({                                       \
    __typeof__(&name) rcall_f_ = XREAL(name);                           \
    rcall_f_ ? rcall_f_(__VA_ARGS__) : (errno = ENOSYS, (fail)); })

/* Exported wrappers. */
#define XUFS_API __attribute__((visibility("default")))

/* glibc names not (or no longer) declared by the headers. */
int __xstat(int ver, const char *path, struct stat *buf);
int __xstat64(int ver, const char *path, struct stat64 *buf);
int __lxstat(int ver, const char *path, struct stat *buf);
int __lxstat64(int ver, const char *path, struct stat64 *buf);
int __fxstat(int ver, int fd, struct stat *buf);
int __fxstat64(int ver, int fd, struct stat64 *buf);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *buf, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *buf, int flags);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
ssize_t __readlink_chk(const char *path, char *buf, size_t len, size_t buflen);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);
char *__getcwd_chk(char *buf, size_t size, size_t buflen);
void __chk_fail(void) __attribute__((noreturn));

#endif
