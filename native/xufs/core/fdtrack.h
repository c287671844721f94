/* fdtrack.h: files under the mount open for writing, by fd. One shared record per open file,
 * referenced by every fd dup'ed from it and by every writable shared mapping of it; when the
 * last reference goes (close, fclose, dup2 over it, munmap, or process exit) the manager gets
 * "CLOSED rel pid" — its OK means the content is journaled durably, so close() may return 0 —
 * followed by "UTIMENS" when the program set the times through the fd (so the write-back does
 * not leave A's mtime at "now"). msync(MS_SYNC) of a mapping sends its content at once. Records
 * follow renames and remember the file's identity, so an fd closed behind our back and reused is
 * detected. */
#ifndef XUFS_FD_H
#define XUFS_FD_H

#include <stddef.h>
#include <time.h>

/* Lock-free hint: 0 means fd is certainly not tracked. */
int xfd_maybe(int fd);
/* Starts tracking fd (just opened or created) as the file rel. A stale record is released. */
void xfd_track(int fd, const char *rel);
/* Is fd tracked (locked check)? */
int xfd_is_tracked(int fd);
/* An fd of this process tracked as the file rel (open for writing), or -1. */
int xfd_find_rel(const char *rel);
/* newfd now refers to oldfd's file (after a successful dup); newfd's old record is released. */
void xfd_share(int oldfd, int newfd);
/* fd is about to be closed: detaches its record; returns an opaque token to pass to
 * xfd_closed() after the real close (NULL when nothing has to be sent). */
void *xfd_detach(int fd);
/* Sends CLOSED (and UTIMENS) for a token of xfd_detach, and frees it: 0, or -1 with errno EIO
 * when the change could not be made durable (close() must then fail). */
int xfd_closed(void *token);
/* The file rel (or a directory above it) was renamed to: records follow. */
void xfd_renamed(const char *from, const char *to);
/* fd's file is mapped MAP_SHARED with PROT_WRITE at [addr, addr+len): it stays open until the
 * range is unmapped. */
void xfd_mapped(int fd, void *addr, size_t len);
/* [addr, addr+len) was unmapped: files whose last reference it was are closed (0, or -1 EIO). */
int xfd_unmapped(void *addr, size_t len);
/* A mapped range moved (mremap). */
void xfd_remapped(void *old, size_t oldlen, void *addr, size_t len);
/* msync(MS_SYNC) of [addr, addr+len): the files mapped there are sent now (0, or -1 EIO). */
int xfd_msynced(void *addr, size_t len);
/* Releases every record whose fd is no longer open (after fcloseall, close_range). */
void xfd_sweep(void);
/* Remembers times set through fd (NULL: now), re-sent after CLOSED. */
void xfd_set_times(int fd, const struct timespec *ts);
/* Tracks the writable fds under the cache inherited at exec (called once at load). */
void xfd_scan_inherited(void);
/* At exit: flushes stdio and sends CLOSED for what is still open (inherited fds only when the
 * file changed). */
void xfd_at_exit(void);

#endif
