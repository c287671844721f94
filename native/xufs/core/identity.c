/* identity.c: reading the cache manager's record of A's identity of a cache file (see
 * identity.h), on the real-libc table. */
#include "xufs/core/identity.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/xattr.h>

#define RECORD_SIZE 56
static const char MAGIC[8] = "XUFSID1";

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int xid_get(const char *path, int fd, int follow, uint64_t ino, int64_t mtime_ns, uint64_t size, xid_a *out)
{
    unsigned char r[RECORD_SIZE + 1];
    int e = errno;
    ssize_t n = path == NULL ? RCALL(fgetxattr, -1, fd, XID_ATTR, r, sizeof r)
                : follow ? RCALL(getxattr, -1, path, XID_ATTR, r, sizeof r)
                         : RCALL(lgetxattr, -1, path, XID_ATTR, r, sizeof r);
    errno = e;
    if (n != RECORD_SIZE || memcmp(r, MAGIC, sizeof MAGIC) != 0) return 0;
    if (le64(r + 32) != ino || (int64_t)le64(r + 40) != mtime_ns || le64(r + 48) != size) return 0;
    out->ino = le64(r + 8);
    out->mtime_ns = (int64_t)le64(r + 16);
    out->ctime_ns = (int64_t)le64(r + 24);
    return 1;
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
