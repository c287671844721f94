/* fastopen.c: the fast open of cached files (fastopen.h): openat2 with RESOLVE_NO_SYMLINKS of the
 * export-relative path from a descriptor of the cache root, then the checks through the new
 * descriptor.
 * The identity record's read is saved on later opens of an unchanged file by identity.c's cache
 * of records. */
#include "xufs/core/fastopen.h"
#include "common/forksafe.h"
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

/* A descriptor (O_PATH, close-on-exec, from 64 up) of the cache root, so the kernel walks only
 * the export-relative path (-1: none yet). The program may close it, or put another file at its
 * number, not knowing it is ours: the wrappers of close, close_range, closefrom, dup2, dup3 and
 * syscall() forget it first (xp_fast_closing), and it is opened again when next needed. A
 * directory or other non-regular file opened from it is kept only while it still is the cache
 * root's (an fstat more); a regular file needs its record of this session. (A close made with a
 * raw system call, outside libc, is not seen: a cache directory the program then opened at that
 * number would serve as the root.) */
static int root_fd = -1;
static int no_root; /* it could not be had: every open takes the full path */
static dev_t root_dev;
static ino_t root_ino;
FORKSAFE_MUTEX(lock, lock_root)

#define ROOT_FD_MIN 64

static int root(void)
{
    int fd = __atomic_load_n(&root_fd, __ATOMIC_ACQUIRE);
    if (fd >= 0) return fd;
    lock_root();
    if (root_fd < 0) {
        size_t rl;
        struct stat st;
        int o = RCALL(open, -1, xufs_cache_resolved(&rl), O_PATH | O_DIRECTORY | O_CLOEXEC);
        int high = o < 0 ? -1 : RCALL(fcntl, -1, o, F_DUPFD_CLOEXEC, ROOT_FD_MIN);
        if (o >= 0) RCALL(close, -1, o);
        if (high >= 0 && RCALL(fstat, -1, high, &st) == 0) {
            root_dev = st.st_dev;
            root_ino = st.st_ino;
            __atomic_store_n(&root_fd, high, __ATOMIC_RELEASE);
        } else {
            if (high >= 0) RCALL(close, -1, high);
            __atomic_store_n(&no_root, 1, __ATOMIC_RELAXED); /* e.g. fewer than 65 descriptors allowed */
        }
    }
    fd = root_fd;
    pthread_mutex_unlock(&lock);
    return fd;
}

void xp_fast_closing(unsigned lo, unsigned hi)
{
    int fd = __atomic_load_n(&root_fd, __ATOMIC_ACQUIRE);
    if (fd >= 0 && (unsigned)fd >= lo && (unsigned)fd <= hi) __atomic_store_n(&root_fd, -1, __ATOMIC_RELEASE);
}

/* Is fd (the root descriptor used) still the cache root's? */
static int root_still(int fd)
{
    struct stat st;
    return RCALL(fstat, -1, fd, &st) == 0 && st.st_dev == root_dev && st.st_ino == root_ino;
}

/* Is the open file (st its fstat) readable as it is, as the full preparation would find? */
static int usable(const xpath *p, int rfd, int fd, const struct stat *st)
{
    if (S_ISREG(st->st_mode)) return xid_fetched(NULL, fd, st);
    if (!root_still(rfd)) return 0;
    return S_ISDIR(st->st_mode) ? xufs_is_listed(p->rel) : 1; /* other types: nothing to fetch */
}

int xp_open_fast(const xpath *p, int flags)
{
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_PATH)) ||
        (flags & O_TMPFILE) == O_TMPFILE || p->outside || strcmp(p->rel, ".") == 0 ||
        __atomic_load_n(&no_openat2, __ATOMIC_RELAXED) || __atomic_load_n(&no_root, __ATOMIC_RELAXED))
        return -1;
    char dir[PATH_MAX];
    xufs_rel_dirname(p->rel, dir);
    if (!xufs_is_listed(dir)) return -1; /* a LOOKUP first: the full path */
    int e = errno, rfd = root();
    if (rfd < 0) {
        errno = e;
        return -1;
    }
    struct open_how how = {.flags = (uint64_t)(unsigned)flags, .resolve = RESOLVE_NO_SYMLINKS};
    int fd = (int)RCALL(syscall, -1, (long)SYS_openat2, (long)rfd, p->rel, &how, sizeof how);
    if (fd < 0) {
        if (errno == ENOSYS) __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
        errno = e;
        return -1;
    }
    struct stat st;
    if (RCALL(fstat, -1, fd, &st) == 0 && usable(p, rfd, fd, &st)) {
        errno = e;
        return fd;
    }
    RCALL(close, -1, fd);
    errno = e;
    return -1;
}
