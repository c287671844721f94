/* identity.h: A's identity of a cache file — the inode number, mtime and ctime the file has on
 * host A — which the cache manager records in the file's "user.xufs.id" extended attribute
 * together with the cache file's own inode, mtime and size at that moment. The stat wrappers
 * report A's values while the cache file still matches the record (B has not changed it), so
 * tools that remember stat data (git's index, make, rsync, editors) agree on both sides.
 *
 * The record (64 bytes, little-endian; written by xufs/cache/identity.ts):
 *   0  "XUFSID1\0"   8  A's inode    16 A's mtime (ns)   24 A's ctime (ns)
 *   32 B's inode     40 B's mtime (ns)                   48 size
 *   56 the session's mark (XUFS_MARK) when the content is cached and trusted in this session,
 *      else 0: an open for reading then needs no FETCH round trip.
 */
#ifndef XUFS_IDENTITY_H
#define XUFS_IDENTITY_H

#include <stdint.h>
#include <sys/stat.h>

/* The attribute's name; programs never see it (listxattr and getxattr hide it). */
#define XID_ATTR "user.xufs.id"

/* A's identity of one file. */
typedef struct {
    uint64_t ino;
    int64_t mtime_ns, ctime_ns;
} xid_a;

/* What a stat showed of a file: the key of the process's cache of identity records (see
 * identity.c). ok is 0 when the stat lacked a field (a statx without STATX_CTIME): not cached. */
typedef struct {
    uint64_t dev, ino, size;
    int64_t ctime_ns, mtime_ns;
    int ok;
} xid_key;

#define XID_NS(ts) ((int64_t)(ts).tv_sec * 1000000000 + (ts).tv_nsec)
/* The key of a struct stat or stat64. */
#define XID_KEY(st) ((xid_key){(uint64_t)(st)->st_dev, (uint64_t)(st)->st_ino, (uint64_t)(st)->st_size, \
                               XID_NS((st)->st_ctim), XID_NS((st)->st_mtim), 1})

/* Reads the record of the cache file at path (following a final symlink when follow), or of fd
 * when path is NULL, and returns 1 with A's identity in *out when it matches what B's stat just
 * reported (k: inode, mtime, size): B has not changed the file since it was recorded. 0 otherwise. */
int xid_get(const char *path, int fd, int follow, const xid_key *k, xid_a *out);

/* Is the regular cache file at path (not a symlink; st its lstat), or open as fd when path is
 * NULL (st its fstat), cached and trusted in this session, so a read needs no FETCH? */
int xid_fetched(const char *path, int fd, const struct stat *st);

/* Is fd on the file system that holds the cache (a cheap test before xid_get on an fd)? */
int xid_on_cache_fs(uint64_t dev);

/* Overwrites the inode number and the times of a struct stat / stat64 with A's identity when the
 * record of the cache file matches (path: the cache path; NULL: use fd). */
#define XID_APPLY_STAT(path, fd, follow, st) do {                                           \
    xid_a a_;                                                                               \
    xid_key k_ = XID_KEY(st);                                                               \
    if (xid_get((path), (fd), (follow), &k_, &a_)) {                                        \
        (st)->st_ino = a_.ino;                                                              \
        (st)->st_mtim.tv_sec = a_.mtime_ns / 1000000000;                                    \
        (st)->st_mtim.tv_nsec = a_.mtime_ns % 1000000000;                                   \
        (st)->st_ctim.tv_sec = a_.ctime_ns / 1000000000;                                    \
        (st)->st_ctim.tv_nsec = a_.ctime_ns % 1000000000;                                   \
    }                                                                                       \
} while (0)

/* The same for a struct statx (only the fields it was asked for and has). */
void xid_apply_statx(const char *path, int fd, int follow, struct statx *stx);

/* Removes XID_ATTR from a listxattr result of n bytes in list (NUL-separated names); the new n. */
long xid_hide(char *list, long n);

#endif
