/* identity.c: reading the cache manager's record of A's identity of a cache file (see
 * identity.h), on the real-libc table. */
#include "xufs/core/identity.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define RECORD_SIZE 64
static const char MAGIC[8] = "XUFSID1";

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Reads the record into r and checks it against B's stat; 1 when it matches. */
static int read_record(const char *path, int fd, int follow, uint64_t ino, int64_t mtime_ns, uint64_t size,
                       unsigned char r[RECORD_SIZE + 1])
{
    int e = errno;
    ssize_t n = path == NULL ? RCALL(fgetxattr, -1, fd, XID_ATTR, r, RECORD_SIZE + 1)
                : follow ? RCALL(getxattr, -1, path, XID_ATTR, r, RECORD_SIZE + 1)
                         : RCALL(lgetxattr, -1, path, XID_ATTR, r, RECORD_SIZE + 1);
    errno = e;
    if (n != RECORD_SIZE || memcmp(r, MAGIC, sizeof MAGIC) != 0) return 0;
    return le64(r + 32) == ino && (int64_t)le64(r + 40) == mtime_ns && le64(r + 48) == size;
}

int xid_get(const char *path, int fd, int follow, uint64_t ino, int64_t mtime_ns, uint64_t size, xid_a *out)
{
    unsigned char r[RECORD_SIZE + 1];
    if (!read_record(path, fd, follow, ino, mtime_ns, size, r)) return 0;
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
    return mark != 0 &&
           read_record(path, fd, 0, (uint64_t)st->st_ino, (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                       (uint64_t)st->st_size, r) &&
           le64(r + 56) == mark;
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
    if (!xid_get(path, fd, follow, stx->stx_ino,
                 (int64_t)stx->stx_mtime.tv_sec * 1000000000 + stx->stx_mtime.tv_nsec, stx->stx_size, &a))
        return;
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
