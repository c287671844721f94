/* fastopen.h: opening a cached file for reading in one system call more than a direct open (an
 * fstat; the identity record's getxattr too at the first open of a file in the process). The
 * kernel resolves the path from the cache root with RESOLVE_NO_SYMLINKS (so no directory on the way, and not
 * the file, is a symlink: no lstat of each directory is needed to follow them as the user sees
 * them), and the open file is checked through its descriptor: a regular file trusted in this
 * session (its identity record carries the session's mark), or a directory listed in this
 * process. Whatever does not pass is closed again and left to the full preparation (prepare.c),
 * which then opens it as before. */
#ifndef XUFS_FASTOPEN_H
#define XUFS_FASTOPEN_H

#include "xufs/core/path.h"

/* Opens the XUFS path p (classified, not outside) with these open(2) flags when the fast path
 * applies: the descriptor, or -1 when it does not (errno unchanged: take the full path). */
int xp_open_fast(const xpath *p, int flags);

/* The program is closing (or putting another file at) the descriptors lo..hi: if the cache
 * root's descriptor the fast path keeps is among them, it is forgotten (and opened again when
 * next needed). */
void xp_fast_closing(unsigned lo, unsigned hi);

#endif
