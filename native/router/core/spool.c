/* spool.c: a session direction's disk spool (see spool.h). */
#include "router/core/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void spool_init(spool *s, spool_acct *acct)
{
    s->fd = -1;
    s->rd = s->wr = 0;
    s->path[0] = 0;
    s->acct = acct;
}

int spool_append(spool *s, const char *dir, const uint8_t *p, size_t n)
{
    if (s->fd < 0) {
        snprintf(s->path, sizeof s->path, "%s/uvpn-spool-XXXXXX", dir);
        s->fd = mkostemp(s->path, O_CLOEXEC);
        if (s->fd < 0) return -errno;
        s->rd = s->wr = 0;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(s->fd, p + done, n - done, (off_t)(s->wr + done));
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        done += (size_t)w;
    }
    s->wr += n;
    uint64_t used = __atomic_add_fetch(&s->acct->used, n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->acct->total, n, __ATOMIC_RELAXED);
    if (used > s->acct->peak) __atomic_store_n(&s->acct->peak, used, __ATOMIC_RELAXED);
    return 0;
}

long spool_take(spool *s, uint8_t *out, size_t max)
{
    uint64_t have = s->wr - s->rd;
    size_t n = have < max ? (size_t)have : max, got = 0;
    while (got < n) {
        ssize_t r = pread(s->fd, out + got, n - got, (off_t)(s->rd + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? -errno : -EIO;
        got += (size_t)r;
    }
    s->rd += n;
    __atomic_sub_fetch(&s->acct->used, n, __ATOMIC_RELAXED);
    if (s->rd == s->wr) spool_close(s);
    return (long)n;
}

void spool_close(spool *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        unlink(s->path);
    }
    __atomic_sub_fetch(&s->acct->used, s->wr - s->rd, __ATOMIC_RELAXED);
    s->fd = -1;
    s->rd = s->wr = 0;
}
