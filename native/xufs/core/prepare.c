/* prepare.c: preparing XUFS paths for the wrappers (prepare.h): LOOKUP/LIST/FETCH through the
 * manager client before the real call runs on the cache path, following symlinks inside the
 * export. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/identity.h"
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

/* If p is a symlink, follows it (and the symlinks its target leads to) as the user sees them: a
 * relative target from the mount path of the symlink's directory. Returns 1 with the final
 * target (looked up) in *out when it lies in the export; 2 when it leads outside (out->buf holds
 * the absolute path, out->outside set); 0 if p is not a symlink; -1 on a lookup failure. When
 * last is not NULL, *last gets the lstat of the path it ended on (p, or the target in *out) if
 * that lstat succeeded, so an open need not ask again, and *have says whether it did. */
static int follow_links(const xpath *p, xpath *out, struct stat *last, int *have)
{
    const xpath *cur = p;
    if (last) *have = 0;
    for (int hops = 0;; hops++) {
        struct stat st;
        if (RCALL(lstat, -1, cur->buf, &st) < 0) return cur != p;
        if (!S_ISLNK(st.st_mode)) {
            if (last) {
                *last = st;
                *have = 1;
            }
            return cur != p;
        }
        if (hops >= 40) {
            errno = ELOOP;
            return -1;
        }
        char t[PATH_MAX], from[PATH_MAX];
        ssize_t n = RCALL(readlink, -1, cur->buf, t, sizeof t - 1);
        if (n <= 0) return cur != p;
        t[n] = '\0';
        strcpy(from, cur->buf);
        if (xufs_to_mount(from, sizeof from) < 0) return cur != p;
        char *slash = strrchr(from, '/');
        size_t dl = (size_t)(slash - from);
        if (t[0] == '/') {
            memcpy(out->buf, t, (size_t)n + 1);
        } else {
            if (dl + 1 + (size_t)n + 1 > sizeof out->buf) return cur != p;
            memcpy(out->buf, from, dl);
            out->buf[dl] = '/';
            memcpy(out->buf + dl + 1, t, (size_t)n + 1);
        }
        if (!xufs_classify(AT_FDCWD, out->buf, out)) {
            out->outside = 1; /* classify left the absolute path as the user sees it in buf */
            return 2;
        }
        cur = out;
        if (xufs_lookup(out->rel) < 0) return errno == ENOENT ? 1 : -1;
    }
}

/* Makes p the target of its final symlink when following it (see follow_links): 1 still an XUFS
 * path, 0 it leads outside (p->buf holds the outside path), -1 on failure. st and have (NULL
 * when not wanted): the lstat of the final p, as follow_links gives it. */
static int follow(xpath *p, struct stat *st, int *have)
{
    xpath t;
    int r = follow_links(p, &t, st, have);
    if (r < 0) return -1;
    if (r == 2) {
        strcpy(p->buf, t.buf);
        p->outside = 1;
        return 0;
    }
    if (r == 1) xp_copy(p, &t);
    return 1;
}

int xp_lookup_cls(xpath *p, int follow_last)
{
    if (xufs_lookup(p->rel) < 0) return -1;
    return follow_last ? follow(p, NULL, NULL) : 1;
}

int xp_lookup(int dirfd, const char *path, int follow, xpath *p)
{
    if (!xufs_classify(dirfd, path, p)) return 0;
    size_t n = strlen(path);
    if (n > 1 && path[n - 1] == '/') follow = 1; /* "link/" names what link leads to */
    return xp_lookup_cls(p, follow);
}

int xp_open(int dirfd, const char *path, int flags, xpath *p, int *track)
{
    *track = 0;
    if (!xufs_classify(dirfd, path, p)) return 0;
    return xp_open_cls(p, flags, track);
}

int xp_open_cls(xpath *p, int flags, int *track)
{
    *track = 0;
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (xufs_lookup(p->rel) < 0 && (errno != ENOENT || !(flags & O_CREAT))) return -1;
    struct stat st;
    int have = 0; /* following the last component already looked at the file */
    if (!(flags & O_NOFOLLOW) && follow(p, &st, &have) <= 0) return p->outside ? 0 : -1;
    int wr = (flags & O_ACCMODE) != O_RDONLY;
    if (!have && RCALL(lstat, -1, p->buf, &st) < 0) {
        if (errno == ENOENT && (flags & O_CREAT)) {
            /* A new file: the manager knows it is open before it exists; CLOSED sends it. */
            if (xufs_openw(p->rel, 1) < 0) return -1;
            *track = 1;
            return 1;
        }
        return -1;
    }
    if (flags & O_PATH) return 1;
    if (S_ISDIR(st.st_mode)) return xufs_list(p->rel) < 0 ? -1 : 1;
    if ((flags & O_DIRECTORY) || !S_ISREG(st.st_mode)) return 1;
    if ((flags & O_CREAT) && (flags & O_EXCL)) return 1; /* the real open fails with EEXIST */
    if (!wr) return xid_fetched(p->buf, -1, &st) || xufs_fetch(p->rel) == 0 ? 1 : -1;
    /* Open for writing: fetched (unless truncated) and known open, so A's changes wait. */
    if (xufs_openw(p->rel, (flags & O_TRUNC) != 0) < 0) return -1;
    *track = 1;
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
