/* fdtrack.c: tracking of files open for writing under the mount (see fdtrack.h). The table is a
 * lazily grown array indexed by fd under one mutex; a global count of tracked fds gives a
 * lock-free fast path for close() of ordinary fds. Writable shared mappings of tracked files are
 * kept in a list of address ranges under the same mutex, each holding a reference to its file.
 * Manager requests are sent without the lock held. */
#include "xufs/core/fdtrack.h"
#include "common/forksafe.h"
#include "xufs/core/client.h"
#include "xufs/core/path.h"
#include "xufs/core/xreal.h"
#include "common/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wfile {
    int refs;           /* fds and mapped ranges referring to it */
    dev_t dev;
    ino_t ino;
    pid_t pid;          /* process that opened it; others only inherited it */
    off_t size0;        /* size and mtime when tracking started (for inherited fds) */
    struct timespec mtime0;
    int have_times;
    struct timespec times[2];
    char *rel;          /* follows renames (xfd_renamed) */
} wfile;

/* A writable shared mapping of a tracked file: [start, end). */
typedef struct xmap {
    uintptr_t start, end;
    wfile *w;
    struct xmap *next;
} xmap;

static wfile **tab;
static int cap;
static int count; /* tracked fds (atomic reads) */
static xmap *maps;
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

static void free_w(wfile *w)
{
    if (!w) return;
    free(w->rel);
    free(w);
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
    if (RCALL(fstat, -1, fd, &st) < 0) return;
    wfile *w = calloc(1, sizeof *w);
    if (!w || !(w->rel = strdup(rel))) {
        free(w);
        return;
    }
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
    if (!s) free_w(w);
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

/* CLOSED rel pid (and UTIMENS after it); 0, or -1 with errno EIO when the manager could not make
 * the change durable. A file already gone again is no failure. */
static int send_closed(const wfile *w)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (xufs_req("CLOSED", w->rel, pid, NULL) < 0) {
        if (errno == ENOENT) return 0;
        errno = EIO;
        return -1;
    }
    if (w->have_times) {
        char a[32], m[32];
        snprintf(a, sizeof a, "%lld", ts_ns(&w->times[0]));
        snprintf(m, sizeof m, "%lld", ts_ns(&w->times[1]));
        xufs_req("UTIMENS", w->rel, a, m);
    }
    return 0;
}

int xfd_closed(void *token)
{
    wfile *w = token;
    if (!w) return 0;
    int e = errno;
    int r = send_closed(w);
    free_w(w);
    if (r == 0) errno = e;
    return r;
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

/* Renames rel (lock held) if it is `from` or lies under it. */
static void rename_rel(wfile *w, const char *from, size_t fl, const char *to)
{
    if (strncmp(w->rel, from, fl) != 0 || (w->rel[fl] != '\0' && w->rel[fl] != '/')) return;
    size_t tl = strlen(to), rest = strlen(w->rel + fl);
    char *n = malloc(tl + rest + 1);
    if (!n) return;
    memcpy(n, to, tl);
    memcpy(n + tl, w->rel + fl, rest + 1);
    free(w->rel);
    w->rel = n;
}

void xfd_renamed(const char *from, const char *to)
{
    if (!__atomic_load_n(&count, __ATOMIC_ACQUIRE) && !__atomic_load_n(&maps, __ATOMIC_ACQUIRE)) return;
    size_t fl = strlen(from);
    lock_tab();
    /* Records are shared by fds and mappings; renaming one twice changes nothing (to never lies
     * under from). */
    for (int fd = 0; fd < cap; fd++)
        if (tab[fd]) rename_rel(tab[fd], from, fl, to);
    for (xmap *m = maps; m; m = m->next) rename_rel(m->w, from, fl, to);
    pthread_mutex_unlock(&lock);
}

/* ---- shared mappings ---- */

void xfd_mapped(int fd, void *addr, size_t len)
{
    if (!xfd_maybe(fd) || len == 0) return;
    xmap *m = malloc(sizeof *m);
    if (!m) return;
    lock_tab();
    wfile **s = slot(fd, 0);
    if (s && *s) {
        m->start = (uintptr_t)addr;
        m->end = m->start + len;
        m->w = *s;
        m->w->refs++;
        m->next = maps;
        __atomic_store_n(&maps, m, __ATOMIC_RELEASE);
        m = NULL;
    }
    pthread_mutex_unlock(&lock);
    free(m);
}

/* Takes [a, b) out of the mapped ranges (lock held); the records left without references are
 * returned through out (at most n), their count as the result. */
static int unmap_range(uintptr_t a, uintptr_t b, wfile **out, int n)
{
    int k = 0;
    for (xmap **pm = &maps; *pm;) {
        xmap *m = *pm;
        if (m->end <= a || m->start >= b) {
            pm = &m->next;
            continue;
        }
        if (m->start < a && m->end > b) { /* a hole in the middle: two ranges */
            xmap *tail = malloc(sizeof *tail);
            if (tail) {
                *tail = *m;
                tail->start = b;
                m->end = a;
                m->w->refs++;
                tail->next = m->next;
                m->next = tail;
            }
            return k;
        }
        if (m->start < a) m->end = a;
        else if (m->end > b) m->start = b;
        else {
            *pm = m->next;
            if (--m->w->refs == 0 && k < n) out[k++] = m->w;
            free(m);
            continue;
        }
        pm = &m->next;
    }
    return k;
}

int xfd_unmapped(void *addr, size_t len)
{
    if (!__atomic_load_n(&maps, __ATOMIC_ACQUIRE) || len == 0) return 0;
    wfile *done[16];
    lock_tab();
    int k = unmap_range((uintptr_t)addr, (uintptr_t)addr + len, done, 16);
    pthread_mutex_unlock(&lock);
    int r = 0;
    for (int i = 0; i < k; i++)
        if (xfd_closed(done[i]) < 0) r = -1;
    return r;
}

void xfd_remapped(void *old, size_t oldlen, void *addr, size_t len)
{
    if (!__atomic_load_n(&maps, __ATOMIC_ACQUIRE)) return;
    lock_tab();
    for (xmap *m = maps; m; m = m->next)
        if (m->start == (uintptr_t)old && m->end == (uintptr_t)old + oldlen) {
            m->start = (uintptr_t)addr;
            m->end = m->start + len;
            break;
        }
    pthread_mutex_unlock(&lock);
}

int xfd_msynced(void *addr, size_t len)
{
    if (!__atomic_load_n(&maps, __ATOMIC_ACQUIRE)) return 0;
    uintptr_t a = (uintptr_t)addr, b = a + len;
    char *rels[16];
    int k = 0;
    lock_tab();
    for (xmap *m = maps; m && k < 16; m = m->next)
        if (m->end > a && m->start < b && (rels[k] = strdup(m->w->rel))) k++;
    pthread_mutex_unlock(&lock);
    int r = 0;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (int i = 0; i < k; i++) {
        if (xufs_req("SYNCED", rels[i], pid, NULL) < 0 && errno != ENOENT) r = -1;
        free(rels[i]);
    }
    if (r < 0) errno = EIO;
    return r;
}

/* Is fd still open on the record's file? */
static int still_open(int fd, const wfile *w)
{
    struct stat st;
    return RCALL(fstat, -1, fd, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino;
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
                    send = open_now && RCALL(fstat, -1, fd, &st) == 0 &&
                           (st.st_size != x->size0 || st.st_mtim.tv_sec != x->mtime0.tv_sec ||
                            st.st_mtim.tv_nsec != x->mtime0.tv_nsec);
                }
            }
        }
        pthread_mutex_unlock(&lock);
        if (!w) return;
        if (send) xfd_closed(w);
        else free_w(w);
    }
}

void xfd_sweep(void)
{
    sweep(0);
}

void xfd_at_exit(void)
{
    if (!__atomic_load_n(&count, __ATOMIC_ACQUIRE) && !__atomic_load_n(&maps, __ATOMIC_ACQUIRE)) return;
    fflush(NULL);
    sweep(1);
    /* The mappings go with the process: their files are closed now. */
    for (;;) {
        wfile *done[16];
        lock_tab();
        int k = unmap_range(0, UINTPTR_MAX, done, 16);
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < k; i++) xfd_closed(done[i]);
        if (k < 16) break;
    }
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
            if (RCALL(fstat, -1, (int)fd, &st) == 0 && S_ISREG(st.st_mode)) {
                xufs_openw(p.rel, 1); /* this process holds it open for writing too */
                track((int)fd, p.rel, 1);
            }
        }
    }
    closedir(d);
}
