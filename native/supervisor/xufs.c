/* xufs.c: the supervisor's XUFS mode (`uvpn_supervise --xufs`, see xufs.h): static programs
 * in an XUFS session, which libxufs.so cannot reach, see the export under the mount as
 * dynamic ones do. The filter stops the path system calls; each is classified the way
 * libxufs.so classifies its callers' paths (xufs/core/path.c, against the target's cwd or dirfd,
 * which the supervisor opens from /proc or takes with pidfd_getfd) and prepared with the same
 * manager requests (xufs/core/prepare.c: LOOKUP, LIST, FETCH, OPENW). A call on a path outside
 * the mount and the cache continues untouched; one under them is performed here on the cache
 * path: an open's descriptor is installed into the target (SECCOMP_IOCTL_NOTIF_ADDFD), stat and
 * readlink results are written into its memory, mkdir, unlink and rename are the manager's
 * (xufs/core/mutate.c); execve, execveat, chdir and O_PATH opens continue once the file is
 * fetched or the directory listed, an absolute path under the mount rewritten in the target's
 * memory to the supervisor's short link to the cache (redirect, below). Writes reach A as
 * libxufs.so's do: OPENW names the target's pid (the manager watches it and journals the file
 * when it ends), and close() of the last descriptor of the process on that file sends CLOSED
 * before the close runs.
 *
 * A call is first served inline on the loop's thread with manager requests refused
 * (xufs_refuse_requests): one outside the mount, or on a cached and trusted file in a listed
 * directory, needs none and is answered there. One that does need a request (LOOKUP, LIST,
 * FETCH, OPENW, CLOSED, a mutation) leaves no trace and goes to a worker thread (job.c), which
 * serves it again from the start, so a long fetch for one process never holds up the others'
 * calls. The manager client makes a connection of its own for a request while another thread
 * uses the persistent one, and the manager serves connections concurrently. */
#include "supervisor/xufs.h"
#include "supervisor/filter.h"
#include "supervisor/job.h"
#include "supervisor/target.h"
#include "xufs/core/client.h"
#include "xufs/core/identity.h"
#include "xufs/core/mutate.h"
#include "xufs/core/path.h"
#include "xufs/core/prepare.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

int xs_mode;

static const uint32_t CALLS[] = {
    SYS_openat, SYS_openat2, SYS_newfstatat, SYS_statx, SYS_faccessat, SYS_faccessat2,
    SYS_readlinkat, SYS_execve, SYS_execveat, SYS_chdir, SYS_mkdirat, SYS_unlinkat,
    SYS_renameat, SYS_renameat2, SYS_close, SYS_getcwd,
#ifdef SYS_open /* the legacy calls of x86_64 (static busybox uses some) */
    SYS_open, SYS_creat, SYS_stat, SYS_lstat, SYS_access, SYS_readlink, SYS_mkdir, SYS_rmdir,
    SYS_unlink, SYS_rename,
#endif
};

void xs_enable(void)
{
    xs_mode = 1;
    filter_calls = CALLS;
    filter_n_calls = sizeof CALLS / sizeof CALLS[0];
}

/* ---- the short link to the cache --------------------------------------------------------- */

/* A private directory (0700) holding one symlink, "c", to the cache root: SHORT
 * ("/tmp/.xNNNNNN/c", 15 bytes) names the cache root in fewer bytes than any plausible mount path,
 * so an absolute path under the mount that the kernel itself must resolve (execve, execveat,
 * chdir, an O_PATH open, which the supervisor cannot perform for the program) is rewritten in
 * place to SHORT/rel (redirect). */
static char short_dir[16], short_link[24];
static size_t short_len; /* 0: none (then those calls meet the empty mount point, as before) */

void xs_start(void)
{
    size_t rn;
    const char *root = xufs_cache_resolved(&rn);
    char d[] = "/tmp/.xXXXXXX";
    if (!rn || !mkdtemp(d)) return dbg("no short link to the cache (%s): absolute execve and chdir under the mount fail", errno_name(errno));
    snprintf(short_link, sizeof short_link, "%s/c", d);
    if (symlink(root, short_link) < 0) {
        dbg("no short link to the cache (%s): %s", errno_name(errno), short_link);
        rmdir(d);
        return;
    }
    memcpy(short_dir, d, sizeof d);
    short_len = strlen(short_link);
}

void xs_finish(void)
{
    if (!short_len) return;
    short_len = 0;
    unlink(short_link);
    rmdir(short_dir);
}

/* A path under SHORT (AT_EXECFN of a program started by redirect, a script's interpreter given
 * its path) made a cache path again in buf, so that it is classified as one. */
static void unshort(char *buf, size_t cap)
{
    size_t n = strlen(buf);
    if (!short_len || strncmp(buf, short_link, short_len) || (buf[short_len] != '/' && buf[short_len])) return;
    const char *root = xufs_cache_root();
    size_t rn = strlen(root);
    if (rn + n - short_len >= cap) return;
    memmove(buf + rn, buf + short_len, n - short_len + 1);
    memcpy(buf, root, rn);
}

/* ---- stopped calls ----------------------------------------------------------------------- */

/* A stopped call on one path, classified and prepared. */
typedef struct {
    int nfd;
    const struct seccomp_notif *q;
    pid_t pid;           /* the calling thread (memory, cwd) */
    pid_t proc;          /* its process (OPENW, the table of writers); 0 until needed */
    char path[PATH_MAX]; /* as the program gave it */
    xpath p;
    int inl;             /* served inline on the loop's thread: manager requests are refused */
    int deferred;        /* one was: a worker serves the call (xs_dispatch) */
} call;

/* What prepare returns when it needed a manager request inline (never an errno). */
#define DEFER (-100000)

/* Before a manager request that cannot be refused later (a mutation, CLOSED): 1 when the call
 * is inline and must go to a worker instead (the caller returns), 0 when it goes on here. */
static int need_worker(call *c)
{
    if (c->inl) c->deferred = 1;
    return c->inl;
}


/* ---- files the served processes have open for writing ------------------------------------ */

#define WRITERS 256

typedef struct {
    pid_t pid;
    int fd;
    char *rel;
} writer;

static writer writers[WRITERS];
static pthread_mutex_t writers_lock = PTHREAD_MUTEX_INITIALIZER; /* the loop and workers */

/* Forgets the entries of processes that have ended (their files the manager journals itself). */
static void prune(void)
{
    for (int i = 0; i < WRITERS; i++)
        if (writers[i].rel && kill(writers[i].pid, 0) < 0 && errno == ESRCH) {
            free(writers[i].rel);
            writers[i].rel = NULL;
        }
}

static void track(pid_t pid, int fd, const char *rel)
{
    pthread_mutex_lock(&writers_lock);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < WRITERS; i++)
            if (!writers[i].rel || (writers[i].pid == pid && writers[i].fd == fd)) {
                free(writers[i].rel);
                writers[i] = (writer){pid, fd, strdup(rel)};
                pthread_mutex_unlock(&writers_lock);
                return;
            }
        prune();
    }
    pthread_mutex_unlock(&writers_lock);
    dbg("more than %d files open for writing: %s is sent when pid %d ends", WRITERS, rel, (int)pid);
}

/* Does another descriptor of pid than fd refer to the file (dev, ino)? */
static int held_elsewhere(pid_t pid, int fd, dev_t dev, ino_t ino)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return 1; /* cannot tell: the manager sends it when pid ends */
    int fdd = dirfd(d), held = 0;
    struct dirent *e;
    while (!held && (e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || atoi(e->d_name) == fd) continue;
        held = fstatat(fdd, e->d_name, &st, 0) == 0 && st.st_dev == dev && st.st_ino == ino;
    }
    closedir(d);
    return held;
}

/* close(fd) by pid: CLOSED for a file opened for writing here, once no other descriptor of the
 * process holds it (a shell's redirection dup2s it first: then it is sent when pid ends). */
static void on_close(call *c)
{
    int fd = (int)c->q->data.args[0], found = 0;
    pid_t pid = 0;
    char *rel = NULL;
    pthread_mutex_lock(&writers_lock);
    for (int i = 0; i < WRITERS && !found; i++) {
        if (!writers[i].rel || writers[i].fd != fd) continue;
        if (!pid) {
            pid_t g = tg_tgid((pid_t)c->q->pid);
            pid = g > 0 ? g : (pid_t)c->q->pid;
        }
        if (writers[i].pid != pid) continue;
        found = 1;
        if (!c->inl) { /* a worker takes the entry */
            rel = writers[i].rel;
            writers[i].rel = NULL;
        }
    }
    pthread_mutex_unlock(&writers_lock);
    if (found && need_worker(c)) return;
    if (rel) {
        char link[64];
        struct stat st;
        snprintf(link, sizeof link, "/proc/%d/fd/%d", (int)pid, fd);
        if (stat(link, &st) == 0 && !held_elsewhere(pid, fd, st.st_dev, st.st_ino)) {
            char p[16];
            snprintf(p, sizeof p, "%d", (int)pid);
            if (xufs_req("CLOSED", rel, p, NULL) < 0)
                dbg("CLOSED %s failed (%s): the manager sends it when pid %d ends", rel, errno_name(errno), (int)pid);
        }
        free(rel);
    }
    tg_continue(c->nfd, c->q->id);
}

/* ---- the target's paths ------------------------------------------------------------------ */

/* The NUL-terminated string at addr in pid's memory, read a page at a time. 0 or -errno. */
static int read_path(pid_t pid, uint64_t addr, char *buf, size_t cap)
{
    if (!addr) return -EFAULT;
    for (size_t got = 0; got < cap;) {
        uint64_t a = addr + got;
        size_t chunk = 4096 - (size_t)(a & 4095);
        if (chunk > cap - got) chunk = cap - got;
        int r = tg_read(pid, a, buf + got, chunk);
        if (r < 0) return r;
        if (memchr(buf + got, 0, chunk)) return 0;
        got += chunk;
    }
    return -ENAMETOOLONG;
}


/* Could path (as the program gave it) be an XUFS path? An absolute one only under the mount or
 * the cache; a relative one whenever the base may be in the cache (classify tells). */
static int maybe_xufs(const char *path)
{
    if (path[0] != '/') return 1;
    size_t n[2];
    const char *roots[2] = {xufs_mount_root(&n[0]), xufs_cache_root()};
    n[1] = strlen(roots[1]);
    for (int i = 0; i < 2; i++)
        if (n[i] && strncmp(path, roots[i], n[i]) == 0 && (path[n[i]] == '/' || path[n[i]] == '\0')) return 1;
    return 0;
}

/* The directory path is relative to in the target, as a descriptor of ours (dirfd AT_FDCWD:
 * its cwd), or AT_FDCWD for an absolute path; -errno. */
static int base_of(pid_t pid, int dirfd, const char *path)
{
    if (path[0] == '/') return AT_FDCWD;
    if (dirfd != AT_FDCWD) return tg_getfd(pid, dirfd);
    char cwd[64];
    snprintf(cwd, sizeof cwd, "/proc/%d/cwd", (int)pid);
    int fd = open(cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* How a call is prepared. */
enum { P_LOOKUP, P_FOLLOW, P_OPEN, P_CLASSIFY };

/* Reads and prepares the path at args[ai] relative to dirfd: 1 when the call must be performed
 * on c->p.buf (an XUFS path, or one relative to a cache directory that climbs out of it), 0 when
 * it continues untouched, -errno to fail it. flags: the open's, for P_OPEN; *wr set when the
 * file is announced open for writing. */
static int prepare(call *c, int dirfd, int ai, int how, int flags, int *wr)
{
    c->pid = (pid_t)c->q->pid;
    int r = read_path(c->pid, c->q->data.args[ai], c->path, sizeof c->path);
    if (r < 0) return r == -ENAMETOOLONG ? r : 0; /* a bad pointer: the kernel says EFAULT */
    unshort(c->path, sizeof c->path);
    if (!c->path[0] || !maybe_xufs(c->path)) return 0;
    int base = base_of(c->pid, dirfd, c->path);
    if (base < 0 && base != AT_FDCWD) return 0; /* let the kernel report the bad dirfd */
    int track = 0;
    if (how == P_OPEN) { /* OPENW names the process, which the manager watches with a pidfd */
        pid_t g = tg_tgid(c->pid);
        c->proc = g > 0 ? g : c->pid;
        xufs_open_for(c->proc);
    }
    switch (how) {
    case P_OPEN: r = xp_open(base, c->path, flags, &c->p, &track); break;
    case P_CLASSIFY: r = xufs_classify(base, c->path, &c->p); break;
    default: r = xp_lookup(base, c->path, how == P_FOLLOW, &c->p); break;
    }
    int e = errno;
    xufs_open_for(0);
    if (base >= 0) close(base);
    if (wr) *wr = track;
    if (xufs_refused()) return DEFER; /* inline, and a request was needed: see xs_dispatch */
    if (r < 0) return -(e ? e : EIO);
    return r > 0 || c->p.outside;
}

/* Answers with r (>= 0) or the errno of -1. */
static void answer(const call *c, long r)
{
    tg_reply(c->nfd, c->q->id, r < 0 ? -1 : r, r < 0 ? errno : 0);
}

/* Lets a call continue, or fails it, after a prepare that did not return 1
 * (DEFER: a worker will). */
static void pass(call *c, int r)
{
    if (r == DEFER) c->deferred = 1; /* answered by a worker */
    else if (r < 0) tg_reply(c->nfd, c->q->id, -1, -r);
    else tg_continue(c->nfd, c->q->id);
}

/* Makes the path at args[ai] (c->path, prepared into c->p) one the kernel resolves to c->p
 * itself, for a call the supervisor continues rather than performs (execve, execveat, chdir,
 * an O_PATH open): 1 when it is (a path relative to a cache directory that stays there, one
 * under the cache root, or an absolute one under the mount, rewritten), else 0. An absolute path
 * under the mount is rewritten in the target's memory to one of the same length: SHORT, slashes,
 * "/" and the export-relative path (or, when a symlink led outside the mount, slashes and that
 * outside path). Written through /proc/PID/mem, which also writes to read-only private mappings
 * (a string literal in .rodata). When the new path does not fit (a mount path shorter than
 * SHORT), nothing is written, said once in the debug log. Not a security boundary: the program is
 * the user's own, and the file was fetched first. docs/XUFS.md, "Static programs". */
static int redirect(call *c, int ai)
{
    static int said;
    size_t mn, len = strlen(c->path);
    const char *m = xufs_mount_root(&mn);
    int under_mount = c->path[0] == '/' && mn && strncmp(c->path, m, mn) == 0 && (c->path[mn] == '/' || !c->path[mn]);
    if (!under_mount) return !c->p.outside && (c->p.direct || c->path[0] == '/');
    const char *pre = c->p.outside ? "" : short_link, *rel = c->p.rel;
    char tail[PATH_MAX];
    if (c->p.outside) snprintf(tail, sizeof tail, "%s", c->p.buf);
    else if (strcmp(rel, ".") == 0) tail[0] = '\0'; /* the export's root itself */
    else snprintf(tail, sizeof tail, "/%s", rel);
    size_t pn = c->p.outside ? 0 : short_len, tn = strlen(tail);
    if ((!c->p.outside && !short_len) || pn + tn > len) {
        if (!said++) dbg("an absolute path under the mount is not redirected (longer than %s): %s", short_link, c->path);
        return 0;
    }
    char s[PATH_MAX];
    memcpy(s, pre, pn);
    memset(s + pn, '/', len - pn - tn);
    memcpy(s + len - tn, tail, tn);
    int r = tg_poke(c->pid, c->q->data.args[ai], s, len);
    if (r < 0) dbg("cannot rewrite the path of pid %d (%s): %s", (int)c->pid, errno_name(-r), c->path);
    return r == 0;
}

/* An O_PATH open, prepared: SECCOMP_IOCTL_NOTIF_ADDFD cannot install an O_PATH descriptor (the
 * kernel's fget refuses them), so the kernel opens the path itself (redirect); one it cannot be
 * made to resolve gets a directory opened for reading (never a file: that could read a
 * placeholder), EOPNOTSUPP otherwise. */
static void on_open_path(call *c, int ai, int flags)
{
    if (redirect(c, ai)) return tg_continue(c->nfd, c->q->id);
    int fd = open(c->p.buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (flags & O_NOFOLLOW));
    if (fd < 0) {
        if (errno == ENOTDIR || errno == ELOOP) errno = EOPNOTSUPP;
        return answer(c, -1);
    }
    int got = tg_addfd_reply(c->nfd, c->q->id, fd, (flags & O_CLOEXEC) != 0);
    close(fd);
    if (got < 0) tg_reply(c->nfd, c->q->id, -1, -got);
}

static void on_open(call *c, int dirfd, int ai, int flags, mode_t mode)
{
    /* O_PATH: prepared as a read (a file fetched, a directory listed), so that no descriptor
     * leads to a placeholder (a reopen through /proc/self/fd would read it) */
    int how = flags & O_PATH ? O_RDONLY | (flags & (O_DIRECTORY | O_NOFOLLOW)) : flags;
    int wr = 0, r = prepare(c, dirfd, ai, P_OPEN, how, &wr);
    if (r <= 0) return pass(c, r);
    if (flags & O_PATH) return on_open_path(c, ai, flags);
    if (flags & (O_CREAT | O_TMPFILE)) {
        char st[64];
        snprintf(st, sizeof st, "/proc/%d/status", (int)c->pid);
        int u = xm_umask_of(st);
        mode &= (mode_t) ~(u < 0 ? 022 : u);
    }
    int fd = open(c->p.buf, flags | O_CLOEXEC, mode);
    if (fd < 0) return answer(c, -1);
    int got = tg_addfd_reply(c->nfd, c->q->id, fd, (flags & O_CLOEXEC) != 0);
    close(fd);
    if (got < 0) tg_reply(c->nfd, c->q->id, -1, -got); /* never left unanswered (gone: ENOENT, harmless) */
    else if (wr && !c->p.outside) track(c->proc, got, c->p.rel);
}

static void on_openat2(call *c)
{
    struct open_how how;
    size_t size = (size_t)c->q->data.args[3];
    if (size < sizeof how || tg_read((pid_t)c->q->pid, c->q->data.args[2], &how, sizeof how) < 0)
        return tg_continue(c->nfd, c->q->id);
    /* RESOLVE_* restrict a walk that the cache path replaces: a program under the mount is
     * confined to the export by XUFS itself. */
    on_open(c, (int)c->q->data.args[0], 1, (int)how.flags, (mode_t)how.mode);
}

/* Writes len bytes of what the call produced to args[ai] and answers val. */
static void put(const call *c, int ai, const void *v, size_t len, long val)
{
    if (tg_write(c->pid, c->q->data.args[ai], v, len) < 0) return tg_reply(c->nfd, c->q->id, -1, EFAULT);
    tg_reply(c->nfd, c->q->id, val, 0);
}

static void on_stat(call *c, int dirfd, int ai, int bi, int flags)
{
    int follow = !(flags & AT_SYMLINK_NOFOLLOW), r = prepare(c, dirfd, ai, follow ? P_FOLLOW : P_LOOKUP, 0, NULL);
    if (r <= 0) return pass(c, r);
    struct stat st;
    if (fstatat(AT_FDCWD, c->p.buf, &st, flags & AT_SYMLINK_NOFOLLOW) < 0) return answer(c, -1);
    if (!c->p.outside && S_ISREG(st.st_mode)) XID_APPLY_STAT(c->p.buf, -1, 0, &st);
    put(c, bi, &st, sizeof st, 0);
}

static void on_statx(call *c)
{
    int flags = (int)c->q->data.args[2];
    int follow = !(flags & AT_SYMLINK_NOFOLLOW);
    int r = prepare(c, (int)c->q->data.args[0], 1, follow ? P_FOLLOW : P_LOOKUP, 0, NULL);
    if (r <= 0) return pass(c, r);
    struct statx stx;
    if (statx(AT_FDCWD, c->p.buf, flags & ~AT_EMPTY_PATH, (unsigned)c->q->data.args[3], &stx) < 0)
        return answer(c, -1);
    if (!c->p.outside && S_ISREG(stx.stx_mode)) xid_apply_statx(c->p.buf, -1, 0, &stx);
    put(c, 4, &stx, sizeof stx, 0);
}

static void on_access(call *c, int dirfd, int ai, int mode, int flags)
{
    int r = prepare(c, dirfd, ai, (flags & AT_SYMLINK_NOFOLLOW) ? P_LOOKUP : P_FOLLOW, 0, NULL);
    if (r <= 0) return pass(c, r);
    answer(c, faccessat(AT_FDCWD, c->p.buf, mode, flags & (AT_EACCESS | AT_SYMLINK_NOFOLLOW)));
}

static void on_readlink(call *c, int dirfd, int ai, int bi, size_t size)
{
    int r = prepare(c, dirfd, ai, P_LOOKUP, 0, NULL);
    if (r <= 0) return pass(c, r);
    char t[PATH_MAX];
    ssize_t n = readlink(c->p.buf, t, size < sizeof t ? size : sizeof t);
    if (n < 0) return answer(c, -1);
    put(c, bi, t, (size_t)n, (long)n);
}

/* exec and chdir: the kernel resolves the path itself (redirect), once the file is fetched (or
 * the directory listed); a path it cannot be made to resolve goes on as given. */
static void on_fetch_then_continue(call *c, int dirfd, int ai, int flags)
{
    int r = prepare(c, dirfd, ai, P_OPEN, flags, NULL);
    if (r > 0) redirect(c, ai);
    pass(c, r < 0 ? r : 0);
}

static void on_mkdir(call *c, int dirfd, int ai, mode_t mode)
{
    int r = prepare(c, dirfd, ai, P_CLASSIFY, 0, NULL);
    if (r <= 0 || c->p.outside) {
        if (r > 0) return answer(c, mkdir(c->p.buf, mode));
        return pass(c, r);
    }
    if (need_worker(c)) return;
    char st[64];
    snprintf(st, sizeof st, "/proc/%d/status", (int)c->pid);
    int u = xm_umask_of(st);
    answer(c, xm_mkdir(&c->p, mode & (mode_t) ~(u < 0 ? 022 : u)));
}

static void on_remove(call *c, int dirfd, int ai, int dir)
{
    int r = prepare(c, dirfd, ai, P_CLASSIFY, 0, NULL);
    if (r <= 0 || c->p.outside) {
        if (r > 0) return answer(c, dir ? rmdir(c->p.buf) : unlink(c->p.buf));
        return pass(c, r);
    }
    if (need_worker(c)) return;
    answer(c, xm_remove(&c->p, dir));
}

static void on_rename(call *c, int d1, int a1, int d2, int a2, unsigned flags)
{
    call *to = malloc(sizeof *to);
    if (!to) return tg_reply(c->nfd, c->q->id, -1, ENOMEM);
    *to = (call){.nfd = c->nfd, .q = c->q};
    int x = prepare(c, d1, a1, P_CLASSIFY, 0, NULL), y = prepare(to, d2, a2, P_CLASSIFY, 0, NULL);
    int xx = x > 0 && !c->p.outside, yx = y > 0 && !to->p.outside;
    if (x == DEFER || y == DEFER) pass(c, DEFER);
    else if (x < 0 || y < 0) pass(c, x < 0 ? x : y);
    else if (xx != yx) tg_reply(c->nfd, c->q->id, -1, EXDEV);
    else if (xx && !need_worker(c)) answer(c, xm_rename(&c->p, &to->p, flags));
    else if (xx) { /* a worker renames */ }
    else if (x > 0 || y > 0)
        answer(c, renameat2(AT_FDCWD, x > 0 ? c->p.buf : c->path, AT_FDCWD, y > 0 ? to->p.buf : to->path, flags));
    else tg_continue(c->nfd, c->q->id);
    free(to);
}

/* getcwd: a working directory in the cache shows as its mount path (as libxufs.so's getcwd
 * does for dynamic programs); any other the kernel answers. */
static void on_getcwd(call *c)
{
    char link[64], cwd[PATH_MAX];
    c->pid = (pid_t)c->q->pid;
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)c->pid);
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    if (n < 0) return tg_continue(c->nfd, c->q->id);
    cwd[n] = '\0';
    if (xufs_to_mount(cwd, sizeof cwd) <= 0) return tg_continue(c->nfd, c->q->id);
    size_t len = strlen(cwd) + 1; /* the system call counts the NUL */
    if (len > (size_t)c->q->data.args[1]) return tg_reply(c->nfd, c->q->id, -1, ERANGE);
    put(c, 0, cwd, len, (long)len);
}

/* Serves the call c (its handler answers it, unless it defers it to a worker). */
static void serve(call *c)
{
    const struct seccomp_notif *q = c->q;
    const __u64 *a = q->data.args;
    int d0 = (int)a[0];
    switch (FILTER_NR(q->data.nr)) {
    case SYS_close: on_close(c); break;
    case SYS_getcwd: on_getcwd(c); break;
    case SYS_openat: on_open(c, d0, 1, (int)a[2], (mode_t)a[3]); break;
    case SYS_openat2: on_openat2(c); break;
    case SYS_newfstatat: on_stat(c, d0, 1, 2, (int)a[3]); break;
    case SYS_statx: on_statx(c); break;
    case SYS_faccessat: on_access(c, d0, 1, (int)a[2], 0); break;
    case SYS_faccessat2: on_access(c, d0, 1, (int)a[2], (int)a[3]); break;
    case SYS_readlinkat: on_readlink(c, d0, 1, 2, (size_t)a[3]); break;
    case SYS_execve: on_fetch_then_continue(c, AT_FDCWD, 0, O_RDONLY); break;
    case SYS_execveat: on_fetch_then_continue(c, d0, 1, O_RDONLY); break; /* "" + AT_EMPTY_PATH: an fd, as it is */
    case SYS_chdir: on_fetch_then_continue(c, AT_FDCWD, 0, O_RDONLY | O_DIRECTORY); break;
    case SYS_mkdirat: on_mkdir(c, d0, 1, (mode_t)a[2]); break;
    case SYS_unlinkat: on_remove(c, d0, 1, ((int)a[2] & AT_REMOVEDIR) != 0); break;
    case SYS_renameat: on_rename(c, d0, 1, (int)a[2], 3, 0); break;
    case SYS_renameat2: on_rename(c, d0, 1, (int)a[2], 3, (unsigned)a[4]); break;
#ifdef SYS_open
    case SYS_open: on_open(c, AT_FDCWD, 0, (int)a[1], (mode_t)a[2]); break;
    case SYS_creat: on_open(c, AT_FDCWD, 0, O_CREAT | O_WRONLY | O_TRUNC, (mode_t)a[1]); break;
    case SYS_stat: on_stat(c, AT_FDCWD, 0, 1, 0); break;
    case SYS_lstat: on_stat(c, AT_FDCWD, 0, 1, AT_SYMLINK_NOFOLLOW); break;
    case SYS_access: on_access(c, AT_FDCWD, 0, (int)a[1], 0); break;
    case SYS_readlink: on_readlink(c, AT_FDCWD, 0, 1, (size_t)a[2]); break;
    case SYS_mkdir: on_mkdir(c, AT_FDCWD, 0, (mode_t)a[1]); break;
    case SYS_rmdir: on_remove(c, AT_FDCWD, 0, 1); break;
    case SYS_unlink: on_remove(c, AT_FDCWD, 0, 0); break;
    case SYS_rename: on_rename(c, AT_FDCWD, 0, AT_FDCWD, 1, 0); break;
#endif
    default: tg_continue(c->nfd, q->id); break;
    }
}

/* A worker's call: served again from the start, unless its caller no longer waits (killed or
 * interrupted meanwhile: then nothing is left to answer). */
static void serve_job(job *j)
{
    if (!tg_valid(j->nfd, j->req.id)) return;
    call *c = malloc(sizeof *c);
    if (!c) return tg_reply(j->nfd, j->req.id, -1, ENOMEM);
    *c = (call){.nfd = j->nfd, .q = &j->req};
    serve(c);
    free(c);
}

void xs_dispatch(int nfd, const struct seccomp_notif *q)
{
    call *c = malloc(sizeof *c);
    if (!c) return tg_reply(nfd, q->id, -1, ENOMEM);
    *c = (call){.nfd = nfd, .q = q, .inl = 1};
    xufs_refuse_requests(1);
    serve(c);
    xufs_refuse_requests(0);
    int later = c->deferred;
    free(c);
    if (!later) return;
    job *j = new_job(nfd, q, -1);
    if (!j) return tg_reply(nfd, q->id, -1, ENOMEM);
    start_worker(j, serve_job);
}
