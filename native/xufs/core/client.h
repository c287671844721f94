/* client.h: requests to the XUFS cache manager (docs/XUFS.md, "Manager protocol") on the
 * process's persistent Unix-socket connection: one TAB-separated line out, "OK" or "ERR ENAME" back.
 * Also a process-local set of directories known to be listed, so repeated LOOKUPs in the same
 * directory cost no round trip. All functions return 0, or -1 with errno set (EIO when the
 * manager is unreachable or replies something malformed). Thread-safe. */
#ifndef XUFS_CLIENT_H
#define XUFS_CLIENT_H

#include <sys/types.h>

/* Sends "op\ta1[\ta2[\ta3]]\n" (NULL arguments end the list) and waits for the reply. */
int xufs_req(const char *op, const char *a1, const char *a2, const char *a3);

/* LOOKUP rel, skipped when rel's directory is known to be listed. An ENOENT answer whose parent
 * exists in the cache also proves the parent listed (the manager lists every ancestor first). */
int xufs_lookup(const char *rel);
/* Is directory rel known to be listed? */
int xufs_is_listed(const char *rel);
/* LIST rel, skipped when rel is known to be listed. */
int xufs_list(const char *rel);
/* FETCH rel. */
int xufs_fetch(const char *rel);
/* OPENW rel pid [t]: rel is being opened for writing by this process (trunc: with O_TRUNC or
 * new, nothing to fetch); the manager keeps A's changes from replacing it until it is closed. */
int xufs_openw(const char *rel, int trunc);
/* Makes xufs_openw on this thread name process pid instead of this one (0: this one again): the
 * seccomp supervisor announces the files the processes it serves open for writing. */
void xufs_open_for(pid_t pid);
/* While on, this thread's requests are not sent: each fails with EWOULDBLOCK and is remembered
 * (the supervisor's loop answers a stopped call inline only when it needs no request, else hands
 * it to a worker thread). Turning it on or off forgets an earlier refusal. */
void xufs_refuse_requests(int on);
/* Was a request refused since xufs_refuse_requests? */
int xufs_refused(void);
/* TREE rel: the whole subtree listed. */
int xufs_tree(const char *rel);
/* Records that directory rel is listed (e.g. just created by MKDIR). */
void xufs_mark_listed(const char *rel);
/* Forgets what is known to be listed (after a directory was removed or renamed). */
void xufs_forget(void);

#endif
