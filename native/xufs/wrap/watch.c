/* watch.c: libxufs.so's inotify_add_watch. A watch on a path under the mount watches its cache
 * file or directory: a directory is listed first, and a file is fetched and announced with WATCH,
 * so the cache manager puts A's later changes into the same cache file (tail -f sees IN_MODIFY
 * and reads on) instead of replacing it with a placeholder. */
#include "xufs/core/prepare.h"
#include "xufs/core/client.h"
#include "xufs/core/xreal.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <sys/stat.h>

XUFS_API int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
    xpath p;
    int follow = (mask & IN_DONT_FOLLOW) == 0;
    int r = xp_lookup(AT_FDCWD, path, follow, &p);
    if (r < 0) return -1;
    if (r > 0) {
        struct stat st;
        int got = follow ? RCALL(stat, -1, p.buf, &st) : RCALL(lstat, -1, p.buf, &st);
        if (got == 0 && S_ISDIR(st.st_mode) && xufs_list(p.rel) < 0) return -1;
        if (got == 0 && S_ISREG(st.st_mode) && xufs_req("WATCH", p.rel, NULL, NULL) < 0) return -1;
    }
    return RCALL(inotify_add_watch, -1, fd, xp_real(r, &p, path), mask);
}
