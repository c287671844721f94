/* fastopen.c: the fast open of cached files (fastopen.h) and the process's table of files found
 * trusted. The table saves the identity record's getxattr on later opens of the same file: an
 * entry holds a trusted file's inode with the ctime, mtime and size its fstat showed, and counts
 * only while a new fstat shows all of them again. Anything that changes the file or its record
 * (the manager distrusting it after a change on A, a fill, B writing it, a file renamed over it)
 * gives it a new ctime, provided the ctime entered was older than the clock when it was read:
 * a change after that gets a ctime at least that clock (the kernel stamps files from the coarse
 * real-time clock, or finer), so it cannot look like the entry. A ctime in whole milliseconds (a
 * file system with coarse timestamps) must be two seconds old. (A real-time clock set back can
 * defeat this; it then errs only until the file changes again.) */
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
#include <time.h>
#include <unistd.h>

#define SLOTS 1024 /* direct-mapped by inode */

typedef struct {
    dev_t dev;
    ino_t ino; /* 0: empty */
    struct timespec ctime, mtime;
    off_t size;
} trusted;

static trusted table[SLOTS];
static int no_openat2; /* the kernel has none: every open takes the full path */
FORKSAFE_MUTEX(lock, lock_table)

static trusted *slot_of(dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 32)) * 0x9e3779b97f4a7c15ull;
    return &table[h >> 54]; /* the top 10 bits: SLOTS */
}

static int same_ts(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Is the file of this fstat in the table, unchanged? */
static int known(const struct stat *st)
{
    lock_table();
    trusted *t = slot_of(st->st_dev, st->st_ino);
    int yes = t->ino == st->st_ino && t->dev == st->st_dev && t->size == st->st_size &&
              same_ts(&t->ctime, &st->st_ctim) && same_ts(&t->mtime, &st->st_mtim);
    pthread_mutex_unlock(&lock);
    return yes;
}

/* Enters a file just found trusted, when its ctime is old enough (see the header) against
 * now, the coarse clock read before its fstat. */
static void enter(const struct stat *st, const struct timespec *now)
{
    struct timespec c = st->st_ctim;
    if (c.tv_nsec % 1000000 == 0) c.tv_sec += 2;
    if (c.tv_sec > now->tv_sec || (c.tv_sec == now->tv_sec && c.tv_nsec >= now->tv_nsec)) return;
    lock_table();
    trusted *t = slot_of(st->st_dev, st->st_ino);
    *t = (trusted){st->st_dev, st->st_ino, st->st_ctim, st->st_mtim, st->st_size};
    pthread_mutex_unlock(&lock);
}

/* Is the open file (st its fstat, now the coarse clock before it) readable as it is? */
static int usable(const xpath *p, int fd, const struct stat *st, const struct timespec *now)
{
    if (S_ISDIR(st->st_mode)) return xufs_is_listed(p->rel);
    if (!S_ISREG(st->st_mode)) return 1; /* as the full path: nothing to fetch */
    if (known(st)) return 1;
    if (!xid_fetched(NULL, fd, st)) return 0;
    enter(st, now);
    return 1;
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
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    struct open_how how = {.flags = (uint64_t)(unsigned)flags, .resolve = RESOLVE_NO_SYMLINKS};
    int fd = (int)RCALL(syscall, -1, (long)SYS_openat2, (long)AT_FDCWD, path, &how, sizeof how);
    if (fd < 0) {
        if (errno == ENOSYS) __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
        errno = e;
        return -1;
    }
    struct stat st;
    if (RCALL(fstat, -1, fd, &st) == 0 && usable(p, fd, &st, &now)) {
        errno = e;
        return fd;
    }
    RCALL(close, -1, fd);
    errno = e;
    return -1;
}
