/* meta.c: libxufs.so's lookup-type wrappers (stat family incl. statx and the legacy
 * __xstat names, access family, readlink, statfs/statvfs, pathconf, xattrs, chdir) — LOOKUP, then
 * the real call on the cache path — and the wrappers that return paths (getcwd, __getcwd_chk,
 * get_current_dir_name, realpath, __realpath_chk, canonicalize_file_name), which show mount paths,
 * never cache paths. Each wrapper translates once and calls the real function directly, so a
 * new name and its legacy alias never translate twice. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/identity.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Runs the real name(...) with XP(path) standing for the cache path of an XUFS path. */
#define LOOKUP_CALL(follow, dirfd, path, name, fail, ...) ({                       \
    xpath p_;                                                                      \
    int r_ = xp_lookup((dirfd), (path), (follow), &p_);                            \
    r_ < 0 ? (fail) : RCALL(name, fail, __VA_ARGS__); })
#define XP(path) xp_real(r_, &p_, (path))

/* "" (with AT_EMPTY_PATH: the call is about dirfd itself); path may be NULL for statx. */
static int empty_path(const char *path)
{
    return path != NULL && path[0] == '\0';
}

/* LOOKUP_CALL for the stat family: a directory under the mount not listed yet is listed before
 * its attributes are returned, so listing it later (opendir) does not change the mtime/ctime the
 * program saw (tar: "file changed as we read it"; git's untracked cache). A file B has not
 * changed shows A's inode number and times (identity.h). KIND is STAT or STATX: the type of st. */
#define STAT_CALL(follow, dirfd, path, name, KIND, st, ...) ({                     \
    xpath p_;                                                                      \
    int r_ = xp_lookup((dirfd), (path), (follow), &p_);                            \
    int ret_ = r_ < 0 ? -1 : RCALL(name, -1, __VA_ARGS__);                         \
    if (r_ > 0 && ret_ == 0 && ISDIR_##KIND(st) && !xufs_is_listed(p_.rel)) {      \
        int e_ = errno;                                                            \
        if (xufs_list(p_.rel) == 0) ret_ = RCALL(name, -1, __VA_ARGS__);           \
        else errno = e_;                                                           \
    }                                                                              \
    if (ret_ == 0 && r_ > 0) XID_APPLY_##KIND(p_.buf, -1, (follow), (st));         \
    else if (ret_ == 0 && r_ == 0 && (dirfd) >= 0 && empty_path(path))           \
        XID_APPLY_FD_##KIND((dirfd), (st));                                        \
    ret_; })
#define ISDIR_STAT(st) S_ISDIR((st)->st_mode)
#define ISDIR_STATX(stx) (((stx)->stx_mask & STATX_TYPE) && S_ISDIR((stx)->stx_mode))
#define XID_APPLY_STATX(path, fd, follow, stx) xid_apply_statx((path), (fd), (follow), (stx))
/* An fstat-type call (fd, or "" with AT_EMPTY_PATH) on a file of the cache's file system. */
#define XID_APPLY_FD_STAT(fd, st) do {                                                 \
    if (xufs_on() && xid_on_cache_fs((uint64_t)(st)->st_dev)) XID_APPLY_STAT(NULL, (fd), 1, (st)); \
} while (0)
#define XID_APPLY_FD_STATX(fd, stx) do {                                               \
    if (xufs_on() && xid_on_cache_fs(makedev((stx)->stx_dev_major, (stx)->stx_dev_minor))) \
        xid_apply_statx(NULL, (fd), 1, (stx));                                     \
} while (0)
#define NOFOLLOW(flags) (((flags) & AT_SYMLINK_NOFOLLOW) != 0)

XUFS_API int stat(const char *path, struct stat *st)
{
    return STAT_CALL(1, AT_FDCWD, path, stat, STAT, st, XP(path), st);
}

XUFS_API int stat64(const char *path, struct stat64 *st)
{
    return STAT_CALL(1, AT_FDCWD, path, stat64, STAT, st, XP(path), st);
}

XUFS_API int lstat(const char *path, struct stat *st)
{
    return STAT_CALL(0, AT_FDCWD, path, lstat, STAT, st, XP(path), st);
}

XUFS_API int lstat64(const char *path, struct stat64 *st)
{
    return STAT_CALL(0, AT_FDCWD, path, lstat64, STAT, st, XP(path), st);
}

XUFS_API int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    return STAT_CALL(!NOFOLLOW(flags), dirfd, path, fstatat, STAT, st, dirfd, XP(path), st, flags);
}

XUFS_API int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    return STAT_CALL(!NOFOLLOW(flags), dirfd, path, fstatat64, STAT, st, dirfd, XP(path), st, flags);
}

XUFS_API int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *stx)
{
    return STAT_CALL(!NOFOLLOW(flags), dirfd, path, statx, STATX, stx, dirfd, XP(path), flags, mask, stx);
}

XUFS_API int __xstat(int ver, const char *path, struct stat *st)
{
    return STAT_CALL(1, AT_FDCWD, path, __xstat, STAT, st, ver, XP(path), st);
}

XUFS_API int __xstat64(int ver, const char *path, struct stat64 *st)
{
    return STAT_CALL(1, AT_FDCWD, path, __xstat64, STAT, st, ver, XP(path), st);
}

XUFS_API int __lxstat(int ver, const char *path, struct stat *st)
{
    return STAT_CALL(0, AT_FDCWD, path, __lxstat, STAT, st, ver, XP(path), st);
}

XUFS_API int __lxstat64(int ver, const char *path, struct stat64 *st)
{
    return STAT_CALL(0, AT_FDCWD, path, __lxstat64, STAT, st, ver, XP(path), st);
}

XUFS_API int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
    return STAT_CALL(!NOFOLLOW(flags), dirfd, path, __fxstatat, STAT, st, ver, dirfd, XP(path), st,
                       flags);
}

XUFS_API int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
    return STAT_CALL(!NOFOLLOW(flags), dirfd, path, __fxstatat64, STAT, st, ver, dirfd, XP(path),
                       st, flags);
}

/* The fstat family: a descriptor of a cache file B has not changed shows A's identity too, so
 * stat and fstat of one file agree (tar compares them). */
#define FSTAT_CALL(fd, st, name, ...) ({                                            \
    int ret_ = RCALL(name, -1, __VA_ARGS__);                                       \
    if (ret_ == 0) XID_APPLY_FD_STAT((fd), (st));                                  \
    ret_; })

XUFS_API int fstat(int fd, struct stat *st)
{
    return FSTAT_CALL(fd, st, fstat, fd, st);
}

XUFS_API int fstat64(int fd, struct stat64 *st)
{
    return FSTAT_CALL(fd, st, fstat64, fd, st);
}

XUFS_API int __fxstat(int ver, int fd, struct stat *st)
{
    return FSTAT_CALL(fd, st, __fxstat, ver, fd, st);
}

XUFS_API int __fxstat64(int ver, int fd, struct stat64 *st)
{
    return FSTAT_CALL(fd, st, __fxstat64, ver, fd, st);
}

XUFS_API int access(const char *path, int mode)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, access, -1, XP(path), mode);
}

XUFS_API int faccessat(int dirfd, const char *path, int mode, int flags)
{
    return LOOKUP_CALL(!NOFOLLOW(flags), dirfd, path, faccessat, -1, dirfd, XP(path), mode, flags);
}

XUFS_API int euidaccess(const char *path, int mode)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, euidaccess, -1, XP(path), mode);
}

XUFS_API int eaccess(const char *path, int mode)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, eaccess, -1, XP(path), mode);
}

XUFS_API ssize_t readlink(const char *path, char *buf, size_t len)
{
    return LOOKUP_CALL(0, AT_FDCWD, path, readlink, -1, XP(path), buf, len);
}

XUFS_API ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
    return LOOKUP_CALL(0, dirfd, path, readlinkat, -1, dirfd, XP(path), buf, len);
}

XUFS_API ssize_t __readlink_chk(const char *path, char *buf, size_t len, size_t buflen)
{
    if (len > buflen) __chk_fail();
    return LOOKUP_CALL(0, AT_FDCWD, path, readlink, -1, XP(path), buf, len);
}

XUFS_API int statfs(const char *path, struct statfs *b)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, statfs, -1, XP(path), b);
}

XUFS_API int statfs64(const char *path, struct statfs64 *b)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, statfs64, -1, XP(path), b);
}

XUFS_API int statvfs(const char *path, struct statvfs *b)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, statvfs, -1, XP(path), b);
}

XUFS_API int statvfs64(const char *path, struct statvfs64 *b)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, statvfs64, -1, XP(path), b);
}

XUFS_API long pathconf(const char *path, int name)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, pathconf, -1, XP(path), name);
}

/* XID_ATTR is the cache manager's, not the file's: reads under the mount never show it. */
#define XATTR_GET(follow, path, name, getter, v, n) ({                              \
    xpath p_;                                                                      \
    int r_ = xp_lookup(AT_FDCWD, (path), (follow), &p_);                           \
    r_ < 0 ? -1 : r_ > 0 && (name) && strcmp((name), XID_ATTR) == 0 ? (errno = ENODATA, -1) \
                : RCALL(getter, -1, XP(path), (name), (v), (n)); })
#define XATTR_LIST(follow, path, lister, list, n) ({                               \
    xpath p_;                                                                      \
    int r_ = xp_lookup(AT_FDCWD, (path), (follow), &p_);                           \
    ssize_t got_ = r_ < 0 ? -1 : RCALL(lister, -1, XP(path), (list), (n));         \
    r_ > 0 && got_ > 0 && (list) && (n) > 0 ? (ssize_t)xid_hide((list), got_) : got_; })

XUFS_API ssize_t getxattr(const char *path, const char *name, void *v, size_t n)
{
    return XATTR_GET(1, path, name, getxattr, v, n);
}

XUFS_API ssize_t lgetxattr(const char *path, const char *name, void *v, size_t n)
{
    return XATTR_GET(0, path, name, lgetxattr, v, n);
}

XUFS_API ssize_t listxattr(const char *path, char *list, size_t n)
{
    return XATTR_LIST(1, path, listxattr, list, n);
}

XUFS_API ssize_t llistxattr(const char *path, char *list, size_t n)
{
    return XATTR_LIST(0, path, llistxattr, list, n);
}

/* Extended attributes cannot be written back: refused under the mount. */
#define NO_XATTR_WRITE(path, name, fail, ...) ({                                    \
    xpath p_;                                                                      \
    xufs_classify(AT_FDCWD, (path), &p_) ? (errno = ENOTSUP, (fail))               \
                                         : RCALL(name, fail, __VA_ARGS__); })

XUFS_API int setxattr(const char *path, const char *name, const void *v, size_t n, int fl)
{
    return NO_XATTR_WRITE(path, setxattr, -1, xp_real(0, &p_, path), name, v, n, fl);
}

XUFS_API int lsetxattr(const char *path, const char *name, const void *v, size_t n, int fl)
{
    return NO_XATTR_WRITE(path, lsetxattr, -1, xp_real(0, &p_, path), name, v, n, fl);
}

XUFS_API int removexattr(const char *path, const char *name)
{
    return NO_XATTR_WRITE(path, removexattr, -1, xp_real(0, &p_, path), name);
}

XUFS_API int lremovexattr(const char *path, const char *name)
{
    return NO_XATTR_WRITE(path, lremovexattr, -1, xp_real(0, &p_, path), name);
}

XUFS_API int chdir(const char *path)
{
    return LOOKUP_CALL(1, AT_FDCWD, path, chdir, -1, XP(path));
}

/* ---- paths returned to the program: mount paths ---- */

/* Copies the NUL-terminated s into buf (size) or a new buffer, getcwd-style. */
static char *give(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s) + 1;
    if (!buf) {
        buf = malloc(size > n ? size : n);
        if (!buf) return NULL;
    } else if (n > size) {
        errno = ERANGE;
        return NULL;
    }
    memcpy(buf, s, n);
    return buf;
}

XUFS_API char *getcwd(char *buf, size_t size)
{
    if (!xufs_on()) return RCALL(getcwd, NULL, buf, size);
    if (buf && size == 0) {
        errno = EINVAL;
        return NULL;
    }
    char tmp[PATH_MAX];
    if (!RCALL(getcwd, NULL, tmp, sizeof tmp)) {
        if (errno == ERANGE) return RCALL(getcwd, NULL, buf, size); /* longer than PATH_MAX */
        return NULL;
    }
    if (xufs_to_mount(tmp, sizeof tmp) < 0) return NULL;
    return give(tmp, buf, size);
}

XUFS_API char *__getcwd_chk(char *buf, size_t size, size_t buflen)
{
    if (size > buflen) __chk_fail();
    return getcwd(buf, size);
}

XUFS_API char *get_current_dir_name(void)
{
    if (!xufs_on()) return RCALL(get_current_dir_name, NULL);
    char tmp[PATH_MAX];
    if (!RCALL(getcwd, NULL, tmp, sizeof tmp)) return RCALL(get_current_dir_name, NULL);
    if (xufs_to_mount(tmp, sizeof tmp) == 0) return RCALL(get_current_dir_name, NULL);
    return strdup(tmp);
}

static char *realpath_common(const char *path, char *resolved)
{
    xpath p;
    int r = xp_lookup(AT_FDCWD, path, 1, &p);
    if (r < 0) return NULL;
    if (!r) return RCALL(realpath, NULL, xp_real(r, &p, path), resolved);
    char tmp[PATH_MAX];
    tmp[0] = '\0';
    if (!RCALL(realpath, NULL, p.buf, tmp)) {
        int e = errno; /* glibc leaves the failing prefix in the buffer: show a mount path */
        if (resolved && tmp[0] == '/' && xufs_to_mount(tmp, sizeof tmp) >= 0) strcpy(resolved, tmp);
        errno = e;
        return NULL;
    }
    if (xufs_to_mount(tmp, sizeof tmp) < 0) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return give(tmp, resolved, resolved ? PATH_MAX : 0);
}

XUFS_API char *realpath(const char *path, char *resolved)
{
    return realpath_common(path, resolved);
}

XUFS_API char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    if (resolvedlen < PATH_MAX) __chk_fail();
    return realpath_common(path, resolved);
}

XUFS_API char *canonicalize_file_name(const char *path)
{
    return realpath_common(path, NULL);
}
