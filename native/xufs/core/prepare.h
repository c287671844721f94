/* prepare.h: helpers shared by libxufs.so's wrapper files (xufs/wrap/): preparing an XUFS
 * path for a lookup-type call or an open, following symlinks inside the export. Each returns 1
 * when the path is an XUFS path (ready: call the real function on p->buf), 0 when it is not
 * (call the real function on the caller's path untouched), -1 with errno on failure. */
#ifndef XUFS_PREPARE_H
#define XUFS_PREPARE_H

#include "xufs/core/path.h"

/* LOOKUP (and, with follow, the symlink targets inside the export). */
int xp_lookup(int dirfd, const char *path, int follow, xpath *p);
/* As xp_lookup for an already classified path. */
int xp_lookup_cls(xpath *p, int follow);
/* Prepares an open with these flags: LIST for a directory, FETCH for a file read or updated,
 * nothing for a new file. *track is set when the fd must be tracked as written. With follow a
 * final symlink is resolved and p becomes its target. */
int xp_open(int dirfd, const char *path, int flags, xpath *p, int *track);
/* As xp_open for an already classified XUFS path. */
int xp_open_cls(xpath *p, int flags, int *track);
/* open(2)-style flags for an fopen mode string. */
int xp_fopen_flags(const char *mode);

#endif
