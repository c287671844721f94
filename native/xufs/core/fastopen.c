/* fastopen.c: the fast open of cached files (fastopen.h): openat2 with RESOLVE_NO_SYMLINKS on the
 * cache path as realpath gave the cache root at load, then the checks through the descriptor.
 * The identity record's read is saved on later opens of an unchanged file by identity.c's cache
 * of records. */
#include "xufs/core/fastopen.h"
#include "xufs/core/client.h"
#include "xufs/core/identity.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int no_openat2; /* the kernel has none: every open takes the full path */

/* Is the open file (st its fstat) readable as it is, as the full preparation would find? */
static int usable(const xpath *p, int fd, const struct stat *st)
{
    if (S_ISDIR(st->st_mode)) return xufs_is_listed(p->rel);
    if (!S_ISREG(st->st_mode)) return 1; /* nothing to fetch */
    return xid_fetched(NULL, fd, st);
}

int xp_open_fast(const xpath *p, int flags)
{
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_PATH)) ||
        (flags & O_TMPFILE) == O_TMPFILE || p->outside || strcmp(p->rel, ".") == 0 ||
        __atomic_load_n(&no_openat2, __ATOMIC_RELAXED))
        return -1;
    char dir[PATH_MAX], path[PATH_MAX];
    xufs_rel_dirname(p->rel, dir);
    if (!xufs_is_listed(dir)) return -1; /* a LOOKUP first: the full path */
    size_t rl;
    const char *root = xufs_cache_resolved(&rl), *rel = p->rel;
    size_t n = strlen(rel);
    if (rl + 1 + n + 1 > sizeof path) return -1;
    memcpy(path, root, rl);
    path[rl] = '/';
    memcpy(path + rl + 1, rel, n + 1);
    int e = errno;
    struct open_how how = {.flags = (uint64_t)(unsigned)flags, .resolve = RESOLVE_NO_SYMLINKS};
    int fd = (int)RCALL(syscall, -1, (long)SYS_openat2, (long)AT_FDCWD, path, &how, sizeof how);
    if (fd < 0) {
        if (errno == ENOSYS) __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
        errno = e;
        return -1;
    }
    struct stat st;
    if (RCALL(fstat, -1, fd, &st) == 0 && usable(p, fd, &st)) {
        errno = e;
        return fd;
    }
    RCALL(close, -1, fd);
    errno = e;
    return -1;
}
