/* mutate.h: the changes under the mount that the cache manager performs (MKDIR, RMDIR/UNLINK,
 * RENAME) on already classified paths, shared by libxufs.so's wrappers (xufs/wrap/mut.c) and the
 * seccomp supervisor's XUFS mode (supervisor/xufs.c). Each returns 0, or -1 with errno. */
#ifndef XUFS_MUTATE_H
#define XUFS_MUTATE_H

#include "xufs/core/path.h"

#include <sys/types.h>

/* The umask in the "Umask:" line of a /proc/PID/status file; -1 when it cannot be read. */
int xm_umask_of(const char *status_path);
/* MKDIR p with mode (the umask already applied); EEXIST without a round trip when the parent is
 * known to be listed and the name is there. */
int xm_mkdir(const xpath *p, mode_t mode);
/* RMDIR (dir) or UNLINK p. */
int xm_remove(const xpath *p, int dir);
/* RENAME a to b; flags 0 or RENAME_NOREPLACE (others: EINVAL). */
int xm_rename(xpath *a, xpath *b, unsigned flags);

#endif
