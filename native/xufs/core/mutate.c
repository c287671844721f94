/* mutate.c: directory, removal and rename requests to the cache manager (see mutate.h). */
#include "xufs/core/mutate.h"
#include "xufs/core/client.h"
#include "xufs/core/fdtrack.h"
#include "xufs/core/prepare.h"
#include "xufs/core/xreal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int xm_umask_of(const char *status_path)
{
    int fd = RCALL(open, -1, status_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char b[2048];
    ssize_t n = RCALL(read, -1, fd, b, sizeof b - 1);
    RCALL(close, -1, fd);
    if (n <= 0) return -1;
    b[n] = '\0';
    const char *u = strstr(b, "\nUmask:");
    return u ? (int)(strtoul(u + 7, NULL, 8) & 0777) : -1;
}

int xm_mkdir(const xpath *p, mode_t mode)
{
    /* In a directory this process saw listed, the skeleton is A's and B's view: a name already
     * there needs no round trip (os.makedirs tries every ancestor). */
    char parent[PATH_MAX];
    struct stat st;
    xufs_rel_dirname(p->rel, parent);
    if (xufs_is_listed(parent) && RCALL(lstat, -1, p->buf, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    char m[16];
    snprintf(m, sizeof m, "%o", (unsigned)mode & 07777);
    int r = xufs_req("MKDIR", p->rel, m, NULL);
    if (r == 0) xufs_mark_listed(p->rel); /* new and empty */
    return r;
}

int xm_remove(const xpath *p, int dir)
{
    int r = xufs_req(dir ? "RMDIR" : "UNLINK", p->rel, NULL, NULL);
    if (r == 0 && dir) xufs_forget();
    return r;
}

int xm_rename(xpath *a, xpath *b, unsigned flags)
{
    if (flags & ~(unsigned)RENAME_NOREPLACE) {
        errno = EINVAL;
        return -1;
    }
    if (flags & RENAME_NOREPLACE) {
        struct stat st;
        if (xp_lookup_cls(b, 0) < 0 && errno != ENOENT) return -1;
        if (RCALL(lstat, -1, b->buf, &st) == 0) {
            errno = EEXIST;
            return -1;
        }
    }
    int r = xufs_req("RENAME", a->rel, b->rel, NULL);
    if (r == 0) {
        xufs_forget();
        xfd_renamed(a->rel, b->rel); /* files open for writing keep their (new) name */
    }
    return r;
}
