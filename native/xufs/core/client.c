/* client.c: the cache manager client of libxufs.so (see client.h): requests on the
 * process's persistent connection (or, while another thread uses it, on one of their own).
 * Replies are read with a bounded buffer and parsed strictly: exactly "OK", or "ERR " and an errno name that
 * log.c knows; anything else is EIO. A receive timeout keeps a wedged manager from hanging
 * the program forever. */
#include "xufs/core/client.h"
#include "common/forksafe.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"
#include "common/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define REPLY_MAX 64
#define TIMEOUT_S 300

static int valid_field(const char *s)
{
    return s && !strpbrk(s, "\t\n");
}

static int parse_reply(const char *r)
{
    if (strcmp(r, "OK") == 0) return 0;
    if (strncmp(r, "ERR E", 5) != 0) return EIO;
    for (const char *s = r + 5; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))) return EIO;
    int e = errno_from_name(r + 4);
    return e ? e : EIO;
}

/* A connection to the manager, with the send and receive timeouts; -1 (errno set) on failure. */
static int dial(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strncpy(sa.sun_path, xufs_sock(), sizeof sa.sun_path - 1);
    struct timeval tv = { .tv_sec = TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    do rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int e = errno;
        RCALL(close, -1, fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Sends the whole request; 0, or -1 when the connection failed. */
static int send_all(int fd, struct iovec *iov, int n)
{
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
    while (mh.msg_iovlen > 0) {
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        while (mh.msg_iovlen > 0 && (size_t)w >= mh.msg_iov->iov_len) {
            w -= (ssize_t)mh.msg_iov->iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen > 0) {
            mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + w;
            mh.msg_iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Reads one reply line: its errno (0 for OK), EIO when the connection failed or the line is not
 * a reply. */
static int recv_reply(int fd)
{
    char reply[REPLY_MAX + 1];
    size_t got = 0;
    for (;;) {
        if (got == REPLY_MAX) return EIO;
        ssize_t r = recv(fd, reply + got, REPLY_MAX - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return EIO;
        char *nl = memchr(reply + got, '\n', (size_t)r);
        got += (size_t)r;
        if (nl) {
            if (nl != reply + got - 1) return EIO; /* one request, one line: nothing after it */
            *nl = '\0';
            return parse_reply(reply);
        }
    }
}

/* ---- the process's persistent connection: one request at a time on it; a thread that finds
 * it busy makes a connection of its own for its request, so no request waits behind another
 * thread's long FETCH. The descriptor sits high (>= CONN_FD_MIN) and is checked (its inode)
 * before each use: a program that closed it, or put another file at its number, gets a new
 * one and keeps its file. A forked child closes its copy and dials its own. ---- */

#define CONN_FD_MIN 64
static int conn_fd = -1;
static ino_t conn_ino;
static int conn_busy;
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static void conn_child(void)
{
    if (conn_fd >= 0) RCALL(close, -1, conn_fd);
    conn_fd = -1;
    __atomic_store_n(&conn_busy, 0, __ATOMIC_RELEASE);
}

static void conn_init(void)
{
    pthread_atfork(NULL, NULL, conn_child);
}

/* The persistent connection, still ours and open, or a new one; -1 when the manager is unreachable. */
static int conn_get(int *fresh)
{
    struct stat st;
    *fresh = 0;
    if (conn_fd >= 0 && (RCALL(fstat, -1, conn_fd, &st) != 0 || st.st_ino != conn_ino || !S_ISSOCK(st.st_mode)))
        conn_fd = -1; /* not ours any more: the program's now */
    if (conn_fd >= 0) return conn_fd;
    int fd = dial();
    if (fd < 0) return -1;
    int high = RCALL(fcntl, -1, fd, F_DUPFD_CLOEXEC, CONN_FD_MIN);
    if (high >= 0) {
        RCALL(close, -1, fd);
        fd = high;
    }
    if (RCALL(fstat, -1, fd, &st) != 0) {
        RCALL(close, -1, fd);
        return -1;
    }
    conn_fd = fd;
    conn_ino = st.st_ino;
    *fresh = 1;
    return fd;
}

static void conn_drop(void)
{
    RCALL(close, -1, conn_fd);
    conn_fd = -1;
}

/* One request on the persistent connection (a send on a connection the manager closed meanwhile
 * is retried once on a new one); the reply's errno, or EIO. */
static int conn_request(struct iovec *iov, int n)
{
    struct iovec copy[8];
    memcpy(copy, iov, sizeof(struct iovec) * (size_t)n);
    int fresh;
    int fd = conn_get(&fresh);
    if (fd < 0) return EIO;
    if (send_all(fd, iov, n) != 0) {
        conn_drop();
        if (fresh || (fd = conn_get(&fresh)) < 0 || send_all(fd, copy, n) != 0) {
            if (conn_fd >= 0) conn_drop();
            return EIO;
        }
    }
    int err = recv_reply(fd);
    if (err == EIO) conn_drop();
    return err;
}

/* Requests refused on this thread (xufs_refuse_requests), and whether one was. */
static __thread int refusing, refused;

void xufs_refuse_requests(int on)
{
    refusing = on;
    refused = 0;
}

int xufs_refused(void)
{
    return refused;
}

int xufs_req(const char *op, const char *a1, const char *a2, const char *a3)
{
    const char *args[3] = { a1, a2, a3 };
    struct iovec iov[8];
    int n = 0;
    iov[n++] = (struct iovec){ (void *)op, strlen(op) };
    for (int i = 0; i < 3 && args[i]; i++) {
        if (!valid_field(args[i])) {
            errno = EINVAL;
            return -1;
        }
        iov[n++] = (struct iovec){ (void *)"\t", 1 };
        iov[n++] = (struct iovec){ (void *)args[i], strlen(args[i]) };
    }
    iov[n++] = (struct iovec){ (void *)"\n", 1 };

    if (refusing) { /* the supervisor's loop thread: this call goes to a worker (xufs.c) */
        refused = 1;
        errno = EWOULDBLOCK;
        return -1;
    }
    int err;
    pthread_once(&conn_once, conn_init);
    if (__atomic_exchange_n(&conn_busy, 1, __ATOMIC_ACQUIRE) == 0) {
        err = conn_request(iov, n);
        __atomic_store_n(&conn_busy, 0, __ATOMIC_RELEASE);
    } else {
        int fd = dial();
        if (fd < 0) {
            err = EIO;
        } else {
            err = send_all(fd, iov, n) == 0 ? recv_reply(fd) : EIO;
            RCALL(close, -1, fd);
        }
    }
    dbg("%s %s%s%s -> %s", op, a1 ? a1 : "", a2 ? " " : "", a2 ? a2 : "",
        err ? errno_name(err) : "OK");
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

/* ---- directories known to be listed (open addressing, cleared when half full) ---- */

#define SLOTS 8192
typedef struct {
    char *path;
    int tree; /* the whole subtree is listed */
} slot;
static slot table[SLOTS];
static int used;
FORKSAFE_MUTEX(lock, lock_set)

static unsigned hash(const char *s, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Slot of the n-byte path s, or the empty slot where it belongs (lock held). */
static slot *find(const char *s, size_t n)
{
    unsigned i = hash(s, n) & (SLOTS - 1);
    while (table[i].path) {
        if (strlen(table[i].path) == n && memcmp(table[i].path, s, n) == 0) return &table[i];
        i = (i + 1) & (SLOTS - 1);
    }
    return &table[i];
}

static void clear_locked(void)
{
    for (int i = 0; i < SLOTS; i++) {
        free(table[i].path);
        table[i].path = NULL;
    }
    used = 0;
}

/* Is the directory d (n bytes) listed: itself, or an ancestor with the whole tree? */
static int is_listed(const char *d, size_t n)
{
    int yes = 0;
    lock_set();
    slot *s = find(d, n);
    if (s->path) yes = 1;
    while (!yes && n > 0) {
        if (n == 1 && d[0] == '.') break;
        while (n > 0 && d[n - 1] != '/') n--;
        if (n == 0) s = find(".", 1);
        else s = find(d, --n);
        if (s->path && s->tree) yes = 1;
        if (n == 0) break;
    }
    pthread_mutex_unlock(&lock);
    return yes;
}

static void add_one(const char *d, size_t n, int tree)
{
    slot *s = find(d, n);
    if (s->path) {
        if (tree) s->tree = 1;
        return;
    }
    if (used >= SLOTS / 2) {
        clear_locked();
        s = find(d, n);
    }
    s->path = strndup(d, n);
    if (s->path) {
        s->tree = tree;
        used++;
    }
}

/* Marks d (and, as they must be, its ancestors) listed. */
static void mark_listed(const char *d, int tree)
{
    size_t n = strlen(d);
    lock_set();
    add_one(d, n, tree);
    if (!(n == 1 && d[0] == '.')) {
        while (n > 0) {
            while (n > 0 && d[n - 1] != '/') n--;
            if (n == 0) break;
            add_one(d, --n, 0);
        }
        add_one(".", 1, 0);
    }
    pthread_mutex_unlock(&lock);
}

void xufs_mark_listed(const char *rel)
{
    mark_listed(rel, 0);
}

void xufs_forget(void)
{
    lock_set();
    clear_locked();
    pthread_mutex_unlock(&lock);
}

int xufs_lookup(const char *rel)
{
    if (strcmp(rel, ".") == 0) return 0;
    char dir[PATH_MAX];
    xufs_rel_dirname(rel, dir);
    if (is_listed(dir, strlen(dir))) return 0;
    if (xufs_req("LOOKUP", rel, NULL, NULL) < 0) {
        if (errno == ENOENT) {
            char p[PATH_MAX];
            struct stat st;
            int n = snprintf(p, sizeof p, "%s/%s", xufs_cache_root(), dir);
            if (n > 0 && (size_t)n < sizeof p && RCALL(lstat, -1, p, &st) == 0 && S_ISDIR(st.st_mode))
                mark_listed(dir, 0);
            errno = ENOENT;
        }
        return -1;
    }
    mark_listed(dir, 0);
    return 0;
}

int xufs_is_listed(const char *rel)
{
    return is_listed(rel, strlen(rel));
}

int xufs_list(const char *rel)
{
    if (is_listed(rel, strlen(rel))) return 0;
    if (xufs_req("LIST", rel, NULL, NULL) < 0) return -1;
    mark_listed(rel, 0);
    return 0;
}

int xufs_fetch(const char *rel)
{
    if (xufs_req("FETCH", rel, NULL, NULL) < 0) return -1;
    char dir[PATH_MAX];
    xufs_rel_dirname(rel, dir);
    mark_listed(dir, 0);
    return 0;
}

/* The process OPENW names (0: this one). The supervisor sets it per stopped call, on the thread
 * that serves the call (its loop or a worker): one per thread. */
static __thread pid_t opener;

void xufs_open_for(pid_t pid)
{
    opener = pid;
}

int xufs_openw(const char *rel, int trunc)
{
    char pid[16];
    pid_t who = opener;
    snprintf(pid, sizeof pid, "%d", (int)(who ? who : getpid()));
    if (xufs_req("OPENW", rel, pid, trunc ? "t" : NULL) < 0) return -1;
    char dir[PATH_MAX];
    xufs_rel_dirname(rel, dir);
    mark_listed(dir, 0);
    return 0;
}

int xufs_tree(const char *rel)
{
    if (xufs_req("TREE", rel, NULL, NULL) < 0) return -1;
    mark_listed(rel, 1);
    return 0;
}
