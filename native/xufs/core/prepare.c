/* prepare.c: preparing XUFS paths for the wrappers (prepare.h): LOOKUP/LIST/FETCH through the
 * manager client before the real call runs on the cache path, following symlinks inside the
 * export. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/xreal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void xp_copy(xpath *dst, const xpath *src)
{
    strcpy(dst->buf, src->buf);
    dst->rel = strcmp(src->rel, ".") == 0 ? "." : dst->buf + (src->rel - src->buf);
    dst->direct = src->direct;
}

/* If p is a symlink whose target lies in the export, fills *out with the (looked up) final
 * target and returns 1; 0 if p is not a symlink or leads outside; -1 on a lookup failure. */
static int follow_links(const xpath *p, xpath *out)
{
    const xpath *cur = p;
    int hops = 0;
    for (;;) {
        struct stat st;
        if (RCALL(lstat, -1, cur->buf, &st) < 0 || !S_ISLNK(st.st_mode)) return cur != p;
        if (++hops > 40) {
            errno = ELOOP;
            return -1;
        }
        char t[PATH_MAX];
        ssize_t n = RCALL(readlink, -1, cur->buf, t, sizeof t - 1);
        if (n <= 0) return cur != p;
        t[n] = '\0';
        if (t[0] != '/') {
            const char *slash = strrchr(cur->buf, '/');
            size_t dl = (size_t)(slash - cur->buf);
            if (dl + 1 + (size_t)n + 1 > sizeof out->buf) return cur != p;
            if (cur != out) memcpy(out->buf, cur->buf, dl);
            out->buf[dl] = '/';
            memcpy(out->buf + dl + 1, t, (size_t)n + 1);
        } else {
            memcpy(out->buf, t, (size_t)n + 1);
        }
        if (!xufs_classify(AT_FDCWD, out->buf, out)) return 0; /* leads outside */
        cur = out;
        if (xufs_lookup(out->rel) < 0) return errno == ENOENT ? 1 : -1;
    }
}

int xp_lookup_cls(xpath *p, int follow)
{
    if (xufs_lookup(p->rel) < 0) return -1;
    if (follow) {
        xpath t;
        if (follow_links(p, &t) < 0) return -1;
    }
    return 1;
}

int xp_lookup(int dirfd, const char *path, int follow, xpath *p)
{
    if (!xufs_classify(dirfd, path, p)) return 0;
    return xp_lookup_cls(p, follow);
}

int xp_open(int dirfd, const char *path, int flags, xpath *p, int *track)
{
    *track = 0;
    if (!xufs_classify(dirfd, path, p)) return 0;
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (xufs_lookup(p->rel) < 0 && (errno != ENOENT || !(flags & O_CREAT))) return -1;
    if (!(flags & O_NOFOLLOW)) {
        xpath t;
        int r = follow_links(p, &t);
        if (r < 0) return -1;
        if (r) xp_copy(p, &t);
    }
    struct stat st;
    if (RCALL(lstat, -1, p->buf, &st) < 0) {
        if (errno == ENOENT && (flags & O_CREAT)) {
            *track = 1; /* a new file: CLOSED creates it on A */
            return 1;
        }
        return -1;
    }
    if (flags & O_PATH) return 1;
    if (S_ISDIR(st.st_mode)) return xufs_list(p->rel) < 0 ? -1 : 1;
    if ((flags & O_DIRECTORY) || !S_ISREG(st.st_mode)) return 1;
    if ((flags & O_CREAT) && (flags & O_EXCL)) return 1; /* the real open fails with EEXIST */
    int wr = (flags & O_ACCMODE) != O_RDONLY;
    if (!(wr && (flags & O_TRUNC)) && xufs_fetch(p->rel) < 0) return -1;
    *track = wr;
    return 1;
}

int xp_fopen_flags(const char *mode)
{
    int f;
    switch (mode[0]) {
    case 'r': f = O_RDONLY; break;
    case 'w': f = O_WRONLY | O_CREAT | O_TRUNC; break;
    case 'a': f = O_WRONLY | O_CREAT | O_APPEND; break;
    default: return O_RDONLY;
    }
    for (const char *m = mode + 1; *m && *m != ','; m++) {
        if (*m == '+') f = (f & ~O_ACCMODE) | O_RDWR;
        else if (*m == 'x') f |= O_EXCL;
    }
    return f;
}
