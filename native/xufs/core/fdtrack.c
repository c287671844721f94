/* fdtrack.c: tracking of files open for writing under the mount (see fdtrack.h). The table is a
 * lazily grown array indexed by fd under one mutex; a global count of tracked fds gives a
 * lock-free fast path for close() of ordinary fds. Manager requests are sent without the lock
 * held. */
#include "xufs/core/fdtrack.h"
#include "common/forksafe.h"
#include "xufs/core/client.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"
#include "common/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wfile {
    int refs;
    dev_t dev;
    ino_t ino;
    pid_t pid;          /* process that opened it; others only inherited it */
    off_t size0;        /* size and mtime when tracking started (for inherited fds) */
    struct timespec mtime0;
    int have_times;
    struct timespec times[2];
    char rel[];
} wfile;

static wfile **tab;
static int cap;
static int count; /* tracked fds (atomic reads) */
FORKSAFE_MUTEX(lock, lock_tab)

static wfile **slot(int fd, int grow)
{
    if (fd < 0) return NULL;
    if (fd >= cap) {
        if (!grow || fd >= (1 << 22)) return NULL;
        int ncap = cap ? cap : 256;
        while (ncap <= fd) ncap *= 2;
        wfile **n = realloc(tab, (size_t)ncap * sizeof *n);
        if (!n) return NULL;
        memset(n + cap, 0, (size_t)(ncap - cap) * sizeof *n);
        tab = n;
        cap = ncap;
    }
    return &tab[fd];
}

/* Removes fd's reference (lock held); returns the record if it was the last one. */
static wfile *unref(int fd)
{
    wfile **s = slot(fd, 0);
    if (!s || !*s) return NULL;
    wfile *w = *s;
    *s = NULL;
    __atomic_sub_fetch(&count, 1, __ATOMIC_RELEASE);
    return --w->refs == 0 ? w : NULL;
}

int xfd_maybe(int fd)
{
    return fd >= 0 && __atomic_load_n(&count, __ATOMIC_ACQUIRE) > 0;
}

int xfd_is_tracked(int fd)
{
    if (!xfd_maybe(fd)) return 0;
    lock_tab();
    wfile **s = slot(fd, 0);
    int yes = s && *s;
    pthread_mutex_unlock(&lock);
    return yes;
}

int xfd_find_rel(const char *rel)
{
    if (!__atomic_load_n(&count, __ATOMIC_ACQUIRE)) return -1;
    int found = -1;
    lock_tab();
    for (int fd = 0; fd < cap && found < 0; fd++)
        if (tab[fd] && strcmp(tab[fd]->rel, rel) == 0) found = fd;
    pthread_mutex_unlock(&lock);
    return found;
}

static void track(int fd, const char *rel, int inherited)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return;
    size_t n = strlen(rel);
    wfile *w = calloc(1, sizeof *w + n + 1);
    if (!w) return;
    memcpy(w->rel, rel, n + 1);
    w->refs = 1;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->pid = inherited ? 0 : getpid();
    w->size0 = st.st_size;
    w->mtime0 = st.st_mtim;
    lock_tab();
    wfile *old = unref(fd), **s = slot(fd, 1);
    if (s) {
        *s = w;
        __atomic_add_fetch(&count, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
    if (!s) free(w);
    xfd_closed(old);
}

void xfd_track(int fd, const char *rel)
{
    track(fd, rel, 0);
}

void xfd_share(int oldfd, int newfd)
{
    if (oldfd == newfd) return;
    lock_tab();
    wfile *old = unref(newfd);
    wfile **so = slot(oldfd, 0);
    if (so && *so) {
        wfile **sn = slot(newfd, 1);
        if (sn) {
            *sn = *so;
            (*so)->refs++;
            __atomic_add_fetch(&count, 1, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&lock);
    xfd_closed(old);
}

void *xfd_detach(int fd)
{
    if (!xfd_maybe(fd)) return NULL;
    lock_tab();
    wfile *w = unref(fd);
    pthread_mutex_unlock(&lock);
    return w;
}

static long long ts_ns(const struct timespec *t)
{
    if (t->tv_nsec == UTIME_NOW) return -1;
    if (t->tv_nsec == UTIME_OMIT) return -2;
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

void xfd_closed(void *token)
{
    wfile *w = token;
    if (!w) return;
    int e = errno;
    if (xufs_req("CLOSED", w->rel, NULL, NULL) == 0 && w->have_times) {
        char a[32], m[32];
        snprintf(a, sizeof a, "%lld", ts_ns(&w->times[0]));
        snprintf(m, sizeof m, "%lld", ts_ns(&w->times[1]));
        xufs_req("UTIMENS", w->rel, a, m);
    }
    free(w);
    errno = e;
}

void xfd_set_times(int fd, const struct timespec *ts)
{
    if (!xfd_maybe(fd)) return;
    lock_tab();
    wfile **s = slot(fd, 0);
    if (s && *s) {
        (*s)->have_times = 1;
        if (ts) {
            (*s)->times[0] = ts[0];
            (*s)->times[1] = ts[1];
        } else {
            (*s)->times[0].tv_nsec = (*s)->times[1].tv_nsec = UTIME_NOW;
        }
    }
    pthread_mutex_unlock(&lock);
}

/* Is fd still open on the record's file? */
static int still_open(int fd, const wfile *w)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino;
}

/* Releases the records that match pred; sends what must be sent. */
static void sweep(int at_exit)
{
    if (!__atomic_load_n(&count, __ATOMIC_ACQUIRE)) return;
    pid_t me = getpid();
    for (;;) {
        wfile *w = NULL;
        int send = 0;
        lock_tab();
        for (int fd = 0; fd < cap && !w; fd++) {
            wfile *x = tab[fd];
            if (!x) continue;
            int open_now = still_open(fd, x);
            if (at_exit || !open_now) {
                w = unref(fd);
                if (!w) continue;
                send = 1;
                if (at_exit && x->pid != me) { /* inherited: only if the file changed */
                    struct stat st;
                    send = open_now && fstat(fd, &st) == 0 &&
                           (st.st_size != x->size0 || st.st_mtim.tv_sec != x->mtime0.tv_sec ||
                            st.st_mtim.tv_nsec != x->mtime0.tv_nsec);
                }
            }
        }
        pthread_mutex_unlock(&lock);
        if (!w) return;
        if (send) xfd_closed(w);
        else free(w);
    }
}

void xfd_sweep(void)
{
    sweep(0);
}

void xfd_at_exit(void)
{
    if (!__atomic_load_n(&count, __ATOMIC_ACQUIRE)) return;
    fflush(NULL);
    sweep(1);
}

void xfd_scan_inherited(void)
{
    if (!xufs_on()) return;
    DIR *(*od)(const char *) = XREAL(opendir);
    if (!od) return;
    DIR *d = od("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || fd == self || fd < 0 || fd > INT_MAX) continue;
        int fl = RCALL(fcntl, -1, (int)fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || (fl & O_PATH)) continue;
        xpath p;
        if (xufs_classify_fd((int)fd, &p)) {
            struct stat st;
            if (fstat((int)fd, &st) == 0 && S_ISREG(st.st_mode)) track((int)fd, p.rel, 1);
        }
    }
    closedir(d);
}
