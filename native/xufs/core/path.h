/* path.h: libxufs.so's configuration (XUFS_MOUNT, XUFS_CACHE, XUFS_SOCK) and path
 * classification: is a path (relative to the cwd or a dirfd) inside the mount or the cache tree,
 * and if so, what is its export-relative path and its cache path. Also the reverse mapping
 * cache path -> mount path for everything that returns paths (getcwd, realpath, ...). */
#ifndef XUFS_PATH_H
#define XUFS_PATH_H

#include <limits.h>
#include <stddef.h>

typedef struct {
    char buf[PATH_MAX]; /* the cache path: XUFS_CACHE[/rel] */
    const char *rel;    /* export-relative path inside buf, or "." for the root */
    int direct;         /* the caller's path is relative to a cache directory (cwd or dirfd) and
                         * stays in the cache: the kernel resolves it there by itself, so
                         * results built from it (nftw, glob, fts) need no translation */
    int outside;        /* not an XUFS path, but relative to a cache directory and climbing out
                         * of the mount ("ls .." at its root): buf holds the absolute path as the
                         * user sees it, which the real call must get instead of the relative one */
} xpath;

/* The path to hand the real function after xufs_classify (or a helper using it) returned r >= 0. */
static inline const char *xp_real(int r, const xpath *p, const char *path)
{
    return r > 0 || p->outside ? p->buf : path;
}

/* Non-zero when XUFS_MOUNT, XUFS_CACHE and XUFS_SOCK are all set (read once). */
int xufs_on(void);
/* The mount's root as given (normalised; "" when off), and its length. */
const char *xufs_mount_root(size_t *len);
/* The cache tree's root ("" when off). */
const char *xufs_cache_root(void);
/* The cache tree's root as realpath resolved it at load (no symlinks on the way; the root as
 * given when realpath failed), and its length. */
const char *xufs_cache_resolved(size_t *len);
/* The manager socket path ("" when off). */
const char *xufs_sock(void);

/* Classifies path as seen from dirfd (AT_FDCWD: the cwd). Returns 1 and fills *out when it is
 * an XUFS path; 0 when it is not (or cannot be classified: pass it through, as xp_real says).
 * A NULL or empty path is never an XUFS path. Always sets out->outside. */
int xufs_classify(int dirfd, const char *path, xpath *out);
/* xufs_classify in two steps: the lexical one (the path made absolute and normalised, no system
 * call on an absolute path), then following the symlinks among the directories of an XUFS path
 * as the user sees them (1: still an XUFS path; 0: it leads outside, out->buf holds that path). */
int xufs_classify_lexical(int dirfd, const char *path, xpath *out);
int xufs_resolve_dirs(xpath *out);
/* Classifies the file that fd refers to (via /proc/self/fd). */
int xufs_classify_fd(int fd, xpath *out);

/* If the absolute path in buf lies in the cache tree, rewrites it in place to the mount path and
 * returns 1; 0 if it is not a cache path; -1 if the result would not fit in size (ERANGE). */
int xufs_to_mount(char *buf, size_t size);

/* Writes the parent of rel (export-relative, or ".") into out (size PATH_MAX). */
void xufs_rel_dirname(const char *rel, char *out);

#endif
