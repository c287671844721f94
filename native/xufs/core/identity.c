/* identity.c: reading the cache manager's record of A's identity of a cache file (see
 * identity.h), on the real-libc table, through the process's cache of records read lately. */
#include "xufs/core/identity.h"
#include "common/forksafe.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#define RECORD_SIZE 64
static const char MAGIC[8] = "XUFSID1";

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- the process's cache of records ----
 * Reading a record is a getxattr; the cache keeps the records read lately, by inode, with the
 * ctime, mtime and size the file's stat showed. An entry counts only while a stat shows all of
 * them again: whatever changes the file or its record (the manager recording it anew or
 * distrusting it after A's change, a fill, B writing it, another file renamed over it) gives it
 * a new ctime, provided the ctime entered was older than the coarse real-time clock read just
 * before the record was: the kernel stamps a change from that clock or a finer one, so a change
 * after the read cannot show the old ctime. A ctime in whole milliseconds (a file system with
 * coarse timestamps) must be two seconds older. A record read by path is entered only when it
 * names the stat's inode (a rename between the stat and the read cannot file it under another
 * inode); "no record" only when read through a descriptor. (A real-time clock set back can defeat
 * this until the file changes again.) */

#define SETS 2048 /* by inode, two entries each: 4096 files */
#define WAYS 2

typedef struct {
    xid_key k; /* k.ok 0: empty */
    int have;  /* a well-formed record, in r */
    unsigned char r[RECORD_SIZE];
} cached;

static struct {
    cached e[WAYS];
    unsigned next; /* the entry to replace */
} sets[SETS];
FORKSAFE_MUTEX(lock, lock_cache)

static unsigned set_of(const xid_key *k)
{
    uint64_t h = (k->ino ^ (k->dev << 32)) * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> 53); /* the top 11 bits: SETS */
}

static int same_file(const xid_key *a, const xid_key *b)
{
    return a->ok && a->ino == b->ino && a->dev == b->dev;
}

static int same_key(const xid_key *a, const xid_key *b)
{
    return same_file(a, b) && a->size == b->size && a->ctime_ns == b->ctime_ns && a->mtime_ns == b->mtime_ns;
}

/* The cached record of k: 1 with *have (and r) set, or 0 when not cached. */
static int cached_record(const xid_key *k, int *have, unsigned char r[RECORD_SIZE])
{
    if (!k->ok) return 0;
    int hit = 0;
    lock_cache();
    cached *e = sets[set_of(k)].e;
    for (int i = 0; i < WAYS && !hit; i++)
        if ((hit = same_key(&e[i].k, k)) && (*have = e[i].have)) memcpy(r, e[i].r, RECORD_SIZE);
    pthread_mutex_unlock(&lock);
    return hit;
}

/* Enters what was read of k's file, when its ctime is old enough against now (see above). */
static void enter(const xid_key *k, int have, const unsigned char r[RECORD_SIZE], const struct timespec *now)
{
    int64_t c = k->ctime_ns;
    if (c % 1000000 == 0) c += 2000000000;
    if (!k->ok || c >= XID_NS(*now)) return;
    lock_cache();
    unsigned s = set_of(k), i = 0;
    while (i < WAYS && !same_file(&sets[s].e[i].k, k)) i++; /* the file's older entry, else the next */
    if (i == WAYS) i = sets[s].next++ % WAYS;
    cached *e = &sets[s].e[i];
    e->k = *k;
    e->have = have;
    if (have) memcpy(e->r, r, RECORD_SIZE);
    pthread_mutex_unlock(&lock);
}

/* Reads the record into r (from the cache, or the file's attribute) and checks it against B's
 * stat k; 1 when it matches. */
static int read_record(const char *path, int fd, int follow, const xid_key *k, unsigned char r[RECORD_SIZE + 1])
{
    int have;
    if (!cached_record(k, &have, r)) {
        int e = errno;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME_COARSE, &now);
        ssize_t n = path == NULL ? RCALL(fgetxattr, -1, fd, XID_ATTR, r, RECORD_SIZE + 1)
                    : follow ? RCALL(getxattr, -1, path, XID_ATTR, r, RECORD_SIZE + 1)
                             : RCALL(lgetxattr, -1, path, XID_ATTR, r, RECORD_SIZE + 1);
        int err = n < 0 ? errno : 0;
        errno = e;
        have = n == RECORD_SIZE && memcmp(r, MAGIC, sizeof MAGIC) == 0;
        int sure = n >= 0 || err == ENODATA; /* "no record" for certain: none, or not ours */
        if (path == NULL ? sure : have && le64(r + 32) == k->ino) enter(k, have, r, &now);
    }
    return have && le64(r + 32) == k->ino && (int64_t)le64(r + 40) == k->mtime_ns && le64(r + 48) == k->size;
}

int xid_get(const char *path, int fd, int follow, const xid_key *k, xid_a *out)
{
    unsigned char r[RECORD_SIZE + 1];
    if (!read_record(path, fd, follow, k, r)) return 0;
    out->ino = le64(r + 8);
    out->mtime_ns = (int64_t)le64(r + 16);
    out->ctime_ns = (int64_t)le64(r + 24);
    return 1;
}

/* This session's mark (XUFS_MARK, 16 hex digits), 0 when unset or malformed (read once). */
static uint64_t session_mark(void)
{
    static uint64_t mark;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        const char *s = getenv("XUFS_MARK");
        uint64_t v = 0;
        int ok = s && strlen(s) == 16;
        for (int i = 0; ok && i < 16; i++) {
            char c = s[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) ok = 0;
            v = (v << 4) | (uint64_t)(d < 0 ? 0 : d);
        }
        __atomic_store_n(&mark, ok ? v : 0, __ATOMIC_RELAXED);
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&mark, __ATOMIC_RELAXED);
}

int xid_fetched(const char *path, int fd, const struct stat *st)
{
    unsigned char r[RECORD_SIZE + 1];
    uint64_t mark = session_mark();
    xid_key k = XID_KEY(st);
    return mark != 0 && read_record(path, fd, 0, &k, r) && le64(r + 56) == mark;
}

int xid_on_cache_fs(uint64_t dev)
{
    static uint64_t cache_dev; /* 0: not known yet */
    uint64_t d = __atomic_load_n(&cache_dev, __ATOMIC_RELAXED);
    if (d == 0) {
        struct stat st;
        int e = errno;
        if (RCALL(stat, -1, xufs_cache_root(), &st) != 0) { errno = e; return 0; }
        errno = e;
        d = (uint64_t)st.st_dev;
        __atomic_store_n(&cache_dev, d, __ATOMIC_RELAXED);
    }
    return d == dev;
}

void xid_apply_statx(const char *path, int fd, int follow, struct statx *stx)
{
    const unsigned need = STATX_INO | STATX_MTIME | STATX_SIZE;
    xid_a a;
    if ((stx->stx_mask & need) != need) return;
    xid_key k = {(uint64_t)makedev(stx->stx_dev_major, stx->stx_dev_minor), stx->stx_ino, stx->stx_size,
                 XID_NS(stx->stx_ctime), XID_NS(stx->stx_mtime), (stx->stx_mask & STATX_CTIME) != 0};
    if (!xid_get(path, fd, follow, &k, &a)) return;
    stx->stx_ino = a.ino;
    stx->stx_mtime.tv_sec = a.mtime_ns / 1000000000;
    stx->stx_mtime.tv_nsec = (uint32_t)(a.mtime_ns % 1000000000);
    if (stx->stx_mask & STATX_CTIME) {
        stx->stx_ctime.tv_sec = a.ctime_ns / 1000000000;
        stx->stx_ctime.tv_nsec = (uint32_t)(a.ctime_ns % 1000000000);
    }
}

long xid_hide(char *list, long n)
{
    long out = 0;
    for (long at = 0; at < n;) {
        size_t len = strnlen(list + at, (size_t)(n - at));
        size_t step = len + (at + (long)len < n);
        if (!(len == sizeof XID_ATTR - 1 && memcmp(list + at, XID_ATTR, len) == 0)) {
            memmove(list + out, list + at, step);
            out += (long)step;
        }
        at += (long)step;
    }
    return out;
}
