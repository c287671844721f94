/* mut.c: libxufs.so's mutating wrappers. Under the mount the manager performs the
 * change (on A and in the cache) and the wrapper only relays its answer: mkdir, rmdir, unlink,
 * remove, rename*, link*, symlink*, chmod family, truncate, utime* family. chown succeeds only
 * as a no-op (owner/group the caller's own, or -1). A rename or link between the mount and
 * elsewhere is EXDEV. fd-based changes on files open for writing act on the cache file (the
 * write-back carries them). Also the mkstemp/mkdtemp family, whose glibc internals bypass open. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/fdtrack.h"
#include "xufs/core/mutate.h"
#include "xufs/core/xreal.h"
#include "common/log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <stdint.h>
#include <utime.h>

/* The process's umask, without changing it (from /proc, else by setting it back). */
static mode_t cur_umask(void)
{
    int u = xm_umask_of("/proc/self/status");
    if (u >= 0) return (mode_t)u;
    mode_t m = umask(022);
    umask(m);
    return m;
}

static int req_mode(const char *op, const xpath *p, mode_t mode)
{
    char m[16];
    snprintf(m, sizeof m, "%o", (unsigned)mode & 07777);
    return xufs_req(op, p->rel, m, NULL);
}

/* ---- directories, removal ---- */

static int mkdir_common(int dirfd, const char *path, mode_t mode)
{
    xpath p;
    if (!xufs_classify(dirfd, path, &p)) return RCALL(mkdirat, -1, dirfd, xp_real(0, &p, path), mode);
    return xm_mkdir(&p, mode & ~cur_umask());
}

XUFS_API int mkdir(const char *path, mode_t mode)
{
    return mkdir_common(AT_FDCWD, path, mode);
}

XUFS_API int mkdirat(int dirfd, const char *path, mode_t mode)
{
    return mkdir_common(dirfd, path, mode);
}

static int remove_common(int dirfd, const char *path, int flags, int any)
{
    xpath p;
    if (!xufs_classify(dirfd, path, &p)) {
        if (any) return RCALL(remove, -1, xp_real(0, &p, path));
        return RCALL(unlinkat, -1, dirfd, xp_real(0, &p, path), flags);
    }
    int dir = flags & AT_REMOVEDIR;
    if (any) { /* remove(): a directory or not? */
        struct stat st;
        if (xp_lookup_cls(&p, 0) < 0 || RCALL(lstat, -1, p.buf, &st) < 0) return -1;
        dir = S_ISDIR(st.st_mode);
    }
    return xm_remove(&p, dir);
}

XUFS_API int rmdir(const char *path)
{
    return remove_common(AT_FDCWD, path, AT_REMOVEDIR, 0);
}

XUFS_API int unlink(const char *path)
{
    return remove_common(AT_FDCWD, path, 0, 0);
}

XUFS_API int unlinkat(int dirfd, const char *path, int flags)
{
    return remove_common(dirfd, path, flags, 0);
}

XUFS_API int remove(const char *path)
{
    return remove_common(AT_FDCWD, path, 0, 1);
}

/* ---- two-path operations ---- */

/* Classifies both paths into a new pair (*ab, freed with release2): 2 both XUFS, 0 neither
 * (*ab NULL unless a path climbs out of the mount: see xp_real), -1 mixed (EXDEV) or out of
 * memory. */
static int classify2(int d1, const char *p1, int d2, const char *p2, xpath **ab)
{
    *ab = NULL;
    if (!xufs_on()) return 0;
    xpath *a = malloc(2 * sizeof *a);
    if (!a) {
        errno = ENOMEM;
        return -1;
    }
    int x = xufs_classify(d1, p1, &a[0]), y = xufs_classify(d2, p2, &a[1]);
    if (!x && !y && !a[0].outside && !a[1].outside) {
        free(a);
        return 0;
    }
    *ab = a;
    if (!x && !y) return 0; /* kept for xp_real */
    if (x != y) {
        errno = EXDEV;
        return -1;
    }
    return 2;
}

/* The paths to hand the real call when classify2 returned 0. */
static void real_pair(const xpath *ab, const char **p1, const char **p2)
{
    if (!ab) return;
    *p1 = xp_real(0, &ab[0], *p1);
    *p2 = xp_real(0, &ab[1], *p2);
}

/* Frees a pair from classify2 and returns r, errno preserved. */
static int release2(xpath *ab, int r)
{
    int e = errno;
    free(ab);
    errno = e;
    return r;
}

static int rename_common(int d1, const char *from, int d2, const char *to, unsigned flags)
{
    xpath *a;
    int r = classify2(d1, from, d2, to, &a);
    if (r == 0) {
        real_pair(a, &from, &to);
        r = flags ? RCALL(renameat2, -1, d1, from, d2, to, flags) : RCALL(renameat, -1, d1, from, d2, to);
        return release2(a, r);
    }
    if (r > 0) r = xm_rename(a, a + 1, flags);
    return release2(a, r);
}

XUFS_API int rename(const char *from, const char *to)
{
    return rename_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

XUFS_API int renameat(int d1, const char *from, int d2, const char *to)
{
    return rename_common(d1, from, d2, to, 0);
}

XUFS_API int renameat2(int d1, const char *from, int d2, const char *to, unsigned flags)
{
    return rename_common(d1, from, d2, to, flags);
}

static int link_common(int d1, const char *from, int d2, const char *to, int flags)
{
    xpath *a;
    int r = classify2(d1, from, d2, to, &a);
    if (r == 0) {
        real_pair(a, &from, &to);
        return release2(a, RCALL(linkat, -1, d1, from, d2, to, flags));
    }
    if (r > 0) r = xufs_req("LINK", a->rel, a[1].rel, NULL);
    return release2(a, r);
}

XUFS_API int link(const char *from, const char *to)
{
    return link_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

XUFS_API int linkat(int d1, const char *from, int d2, const char *to, int flags)
{
    return link_common(d1, from, d2, to, flags);
}

static int symlink_common(const char *target, int dirfd, const char *path)
{
    xpath p;
    if (!xufs_classify(dirfd, path, &p)) return RCALL(symlinkat, -1, target, dirfd, xp_real(0, &p, path));
    if (!target || !*target) {
        errno = ENOENT;
        return -1;
    }
    return xufs_req("SYMLINK", target, p.rel, NULL);
}

XUFS_API int symlink(const char *target, const char *path)
{
    return symlink_common(target, AT_FDCWD, path);
}

XUFS_API int symlinkat(const char *target, int dirfd, const char *path)
{
    return symlink_common(target, dirfd, path);
}

/* Special files cannot live in the export. */
static int mknod_common(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    xpath p;
    if (!xufs_classify(dirfd, path, &p)) return RCALL(mknodat, -1, dirfd, xp_real(0, &p, path), mode, dev);
    errno = EPERM;
    return -1;
}

XUFS_API int mknod(const char *path, mode_t mode, dev_t dev)
{
    return mknod_common(AT_FDCWD, path, mode, dev);
}

XUFS_API int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
{
    return mknod_common(dirfd, path, mode, dev);
}

XUFS_API int mkfifo(const char *path, mode_t mode)
{
    return mknod_common(AT_FDCWD, path, S_IFIFO | (mode & 07777), 0);
}

XUFS_API int mkfifoat(int dirfd, const char *path, mode_t mode)
{
    return mknod_common(dirfd, path, S_IFIFO | (mode & 07777), 0);
}

/* ---- mode, owner, size ---- */

static int chmod_common(int dirfd, const char *path, mode_t mode, int flags, int kind)
{
    xpath p;
    if (!xufs_classify(dirfd, path, &p)) {
        if (kind == 1) return RCALL(lchmod, -1, xp_real(0, &p, path), mode);
        return RCALL(fchmodat, -1, dirfd, xp_real(0, &p, path), mode, flags);
    }
    if (xfd_find_rel(p.rel) >= 0) return RCALL(chmod, -1, p.buf, mode); /* carried by write-back */
    return req_mode("CHMOD", &p, mode);
}

XUFS_API int chmod(const char *path, mode_t mode)
{
    return chmod_common(AT_FDCWD, path, mode, 0, 0);
}

XUFS_API int lchmod(const char *path, mode_t mode)
{
    return chmod_common(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW, 1);
}

XUFS_API int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    return chmod_common(dirfd, path, mode, flags, 0);
}

XUFS_API int fchmod(int fd, mode_t mode)
{
    xpath p;
    if (!xufs_on() || xfd_is_tracked(fd) || !xufs_classify_fd(fd, &p)) return RCALL(fchmod, -1, fd, mode);
    return req_mode("CHMOD", &p, mode);
}

static int own_ok(uid_t u, gid_t g)
{
    if (u != (uid_t)-1 && u != geteuid() && u != getuid()) return 0;
    if (g == (gid_t)-1 || g == getegid() || g == getgid()) return 1;
    gid_t gs[256];
    int n = getgroups(256, gs);
    for (int i = 0; i < n; i++)
        if (gs[i] == g) return 1;
    return 0;
}

/* chown under the mount: nothing to change on A; refuse what a non-root user could not do. */
static int chown_xufs(xpath *p, int follow, uid_t u, gid_t g)
{
    struct stat st;
    if (p && (xp_lookup_cls(p, follow) < 0 ||
              (follow ? RCALL(stat, -1, p->buf, &st) : RCALL(lstat, -1, p->buf, &st)) < 0))
        return -1;
    if (!own_ok(u, g)) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

static int chown_common(int dirfd, const char *path, uid_t u, gid_t g, int flags, int kind)
{
    xpath p;
    if (!xufs_classify(dirfd, path, &p)) {
        if (kind == 1) return RCALL(chown, -1, xp_real(0, &p, path), u, g);
        if (kind == 2) return RCALL(lchown, -1, xp_real(0, &p, path), u, g);
        return RCALL(fchownat, -1, dirfd, xp_real(0, &p, path), u, g, flags);
    }
    return chown_xufs(&p, !(flags & AT_SYMLINK_NOFOLLOW), u, g);
}

XUFS_API int chown(const char *path, uid_t u, gid_t g)
{
    return chown_common(AT_FDCWD, path, u, g, 0, 1);
}

XUFS_API int lchown(const char *path, uid_t u, gid_t g)
{
    return chown_common(AT_FDCWD, path, u, g, AT_SYMLINK_NOFOLLOW, 2);
}

XUFS_API int fchownat(int dirfd, const char *path, uid_t u, gid_t g, int flags)
{
    return chown_common(dirfd, path, u, g, flags, 0);
}

XUFS_API int fchown(int fd, uid_t u, gid_t g)
{
    xpath p;
    if (!xufs_on() || !xufs_classify_fd(fd, &p)) return RCALL(fchown, -1, fd, u, g);
    return chown_xufs(NULL, 0, u, g);
}

static int truncate_common(const char *path, off_t len, int is64)
{
    xpath p;
    if (!xufs_classify(AT_FDCWD, path, &p))
        return is64 ? RCALL(truncate64, -1, xp_real(0, &p, path), len) : RCALL(truncate, -1, xp_real(0, &p, path), len);
    if (len < 0) {
        errno = EINVAL;
        return -1;
    }
    if (xfd_find_rel(p.rel) >= 0) return RCALL(truncate64, -1, p.buf, len); /* open for writing */
    char l[24];
    snprintf(l, sizeof l, "%lld", (long long)len);
    return xufs_req("TRUNCATE", p.rel, l, NULL);
}

XUFS_API int truncate(const char *path, off_t len)
{
    return truncate_common(path, len, 0);
}

XUFS_API int truncate64(const char *path, off64_t len)
{
    return truncate_common(path, len, 1);
}

/* ---- times ---- */

static void ns_str(char *out, size_t n, const struct timespec *t)
{
    long long v;
    if (!t || t->tv_nsec == UTIME_NOW) v = -1;
    else if (t->tv_nsec == UTIME_OMIT) v = -2;
    else v = (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
    snprintf(out, n, "%lld", v);
}

static int utimens_xufs(const xpath *p, const struct timespec *ts)
{
    char a[32], m[32];
    ns_str(a, sizeof a, ts ? &ts[0] : NULL);
    ns_str(m, sizeof m, ts ? &ts[1] : NULL);
    return xufs_req("UTIMENS", p->rel, a, m);
}

static int tv_to_ts(const struct timeval *tv, struct timespec *ts)
{
    if (!tv) return 0;
    for (int i = 0; i < 2; i++) {
        if (tv[i].tv_usec < 0 || tv[i].tv_usec >= 1000000) {
            errno = EINVAL;
            return -1;
        }
        ts[i].tv_sec = tv[i].tv_sec;
        ts[i].tv_nsec = tv[i].tv_usec * 1000;
    }
    return 1;
}

/* times through an fd: tracked files change in the cache (and are re-sent after CLOSED) */
static int futimens_common(int fd, const struct timespec *ts)
{
    xpath p;
    if (!xufs_on()) return RCALL(futimens, -1, fd, ts);
    if (xfd_is_tracked(fd)) {
        int r = RCALL(futimens, -1, fd, ts);
        if (r == 0) xfd_set_times(fd, ts);
        return r;
    }
    if (!xufs_classify_fd(fd, &p)) return RCALL(futimens, -1, fd, ts);
    return utimens_xufs(&p, ts);
}

XUFS_API int futimens(int fd, const struct timespec ts[2])
{
    return futimens_common(fd, ts);
}

XUFS_API int utimensat(int dirfd, const char *path, const struct timespec ts[2], int flags)
{
    xpath p;
    if (!xufs_on()) return RCALL(utimensat, -1, dirfd, path, ts, flags);
    __asm__("" : "+r"(path)); /* declared nonnull, but the kernel takes NULL: dirfd itself */
    if ((uintptr_t)path == 0 || (!*path && (flags & AT_EMPTY_PATH))) return futimens_common(dirfd, ts);
    if (!xufs_classify(dirfd, path, &p)) return RCALL(utimensat, -1, dirfd, xp_real(0, &p, path), ts, flags);
    int fd = xfd_find_rel(p.rel);
    if (fd >= 0) return futimens_common(fd, ts); /* open for writing here: re-sent after CLOSED */
    return utimens_xufs(&p, ts);
}

XUFS_API int futimes(int fd, const struct timeval tv[2])
{
    struct timespec ts[2];
    int r = tv_to_ts(tv, ts);
    if (r < 0) return -1;
    return futimens_common(fd, r ? ts : NULL);
}

static int utimes_common(int dirfd, const char *path, const struct timeval *tv, int flags)
{
    struct timespec ts[2];
    int r = tv_to_ts(tv, ts);
    if (r < 0) return -1;
    return utimensat(dirfd, path, r ? ts : NULL, flags);
}

XUFS_API int utimes(const char *path, const struct timeval tv[2])
{
    return utimes_common(AT_FDCWD, path, tv, 0);
}

XUFS_API int lutimes(const char *path, const struct timeval tv[2])
{
    return utimes_common(AT_FDCWD, path, tv, AT_SYMLINK_NOFOLLOW);
}

XUFS_API int futimesat(int dirfd, const char *path, const struct timeval tv[2])
{
    return utimes_common(dirfd, path, tv, 0); /* a NULL path means dirfd itself */
}

XUFS_API int utime(const char *path, const struct utimbuf *b)
{
    if (!b) return utimensat(AT_FDCWD, path, NULL, 0);
    struct timespec ts[2] = { { b->actime, 0 }, { b->modtime, 0 } };
    return utimensat(AT_FDCWD, path, ts, 0);
}

/* ---- temporary files and directories ---- */

/* Checks tmpl ends in XXXXXX + suffixlen bytes and that the cache path ends the same way. */
static int tmpl_ok(const char *tmpl, const xpath *p, int suffixlen, size_t *tl, size_t *cl)
{
    *tl = strlen(tmpl);
    *cl = strlen(p->buf);
    if (suffixlen < 0 || *tl < (size_t)suffixlen + 6 || *cl < (size_t)suffixlen + 6 ||
        memcmp(tmpl + *tl - suffixlen - 6, "XXXXXX", 6) != 0 ||
        memcmp(p->buf + *cl - suffixlen - 6, tmpl + *tl - suffixlen - 6, (size_t)suffixlen + 6)) {
        errno = EINVAL;
        return 0;
    }
    return 1;
}

static int mkostemps_common(char *tmpl, int suffixlen, int flags)
{
    xpath p;
    size_t tl, cl;
    if (!xufs_classify(AT_FDCWD, tmpl, &p)) return RCALL(mkostemps, -1, tmpl, suffixlen, flags);
    if (!tmpl_ok(tmpl, &p, suffixlen, &tl, &cl)) return -1;
    if (xufs_lookup(p.rel) < 0 && errno != ENOENT) return -1;
    int fd = RCALL(mkostemps, -1, p.buf, suffixlen, flags);
    if (fd >= 0) {
        memcpy(tmpl + tl - suffixlen - 6, p.buf + cl - suffixlen - 6, 6);
        if (xufs_openw(p.rel, 1) < 0) { /* the manager must know it is open, or it is not ours */
            int e = errno;
            RCALL(unlink, -1, p.buf);
            RCALL(close, -1, fd);
            errno = e;
            return -1;
        }
        xfd_track(fd, p.rel);
    }
    return fd;
}

XUFS_API int mkstemp(char *t) { return mkostemps_common(t, 0, 0); }
XUFS_API int mkstemp64(char *t) { return mkostemps_common(t, 0, 0); }
XUFS_API int mkostemp(char *t, int f) { return mkostemps_common(t, 0, f); }
XUFS_API int mkostemp64(char *t, int f) { return mkostemps_common(t, 0, f); }
XUFS_API int mkstemps(char *t, int s) { return mkostemps_common(t, s, 0); }
XUFS_API int mkstemps64(char *t, int s) { return mkostemps_common(t, s, 0); }
XUFS_API int mkostemps(char *t, int s, int f) { return mkostemps_common(t, s, f); }
XUFS_API int mkostemps64(char *t, int s, int f) { return mkostemps_common(t, s, f); }

XUFS_API char *mkdtemp(char *tmpl)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    xpath p;
    size_t tl, cl;
    if (!xufs_classify(AT_FDCWD, tmpl, &p)) return RCALL(mkdtemp, NULL, tmpl);
    if (!tmpl_ok(tmpl, &p, 0, &tl, &cl)) return NULL;
    if (xufs_lookup(p.rel) < 0 && errno != ENOENT) return NULL;
    for (int tries = 0; tries < 100; tries++) {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            for (int i = 0; i < 6; i++) rnd[i] = (unsigned char)(now.tv_nsec >> (i * 5)) + (unsigned char)tries;
        }
        for (int i = 0; i < 6; i++) p.buf[cl - 6 + i] = chars[rnd[i] % (sizeof chars - 1)];
        if (req_mode("MKDIR", &p, 0700) == 0) {
            memcpy(tmpl + tl - 6, p.buf + cl - 6, 6);
            return tmpl;
        }
        if (errno != EEXIST) return NULL;
    }
    errno = EEXIST;
    return NULL;
}
