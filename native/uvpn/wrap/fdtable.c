/* fdtable.c: the fd -> overlay state table (see fdtable.h for the design). */
#include "uvpn/wrap/fdtable.h"
#include "common/forksafe.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

#define CHUNK_BITS 10
#define CHUNK (1 << CHUNK_BITS)
#define NCHUNKS 4096 /* fds below 4M can carry state */

typedef struct vstate {
    int refs;        /* fds pointing at this object */
    int connected;   /* v.kind == VS_CONNECTED, for fdt_connected (atomic) */
    dev_t dev;       /* identity of the socket */
    ino_t ino;
    vinfo v;
    struct vstate *next; /* on the spare list */
} vstate;

/* States no fd points at any more are kept for reuse, never freed, so that fdt_connected may
 * look at a slot's state without the lock (at worst at a state being reused: a hint). */
static vstate *spare;

/* chunks[i][j] is fd i*CHUNK+j. Chunks are allocated once and never freed; pointers are read
 * with atomic loads so fdt_maybe() needs no lock. */
static vstate **chunks[NCHUNKS];
FORKSAFE_MUTEX(lock, lock_table)

static vstate **chunk_of(int fd)
{
    if (fd < 0 || fd >= NCHUNKS * CHUNK) return NULL;
    return __atomic_load_n(&chunks[fd >> CHUNK_BITS], __ATOMIC_ACQUIRE);
}

/* Slot for fd, allocating its chunk (lock held). NULL if out of range or out of memory. */
static vstate **slot_alloc(int fd)
{
    vstate **c = chunk_of(fd);
    if (!c) {
        if (fd < 0 || fd >= NCHUNKS * CHUNK) return NULL;
        c = calloc(CHUNK, sizeof *c);
        if (!c) return NULL;
        __atomic_store_n(&chunks[fd >> CHUNK_BITS], c, __ATOMIC_RELEASE);
    }
    return &c[fd & (CHUNK - 1)];
}

static vstate *get_slot(int fd)
{
    vstate **c = chunk_of(fd);
    return c ? __atomic_load_n(&c[fd & (CHUNK - 1)], __ATOMIC_ACQUIRE) : NULL;
}

static void put_slot(int fd, vstate *s)
{
    vstate **c = chunk_of(fd);
    if (c) __atomic_store_n(&c[fd & (CHUNK - 1)], s, __ATOMIC_RELEASE);
}

/* Drops one reference (lock held); returns 1 and copies the state if it was the last. */
static int unref(vstate *s, vinfo *released)
{
    if (!s || --s->refs > 0) return 0;
    if (released) *released = s->v;
    __atomic_store_n(&s->connected, 0, __ATOMIC_RELAXED);
    s->next = spare;
    spare = s;
    return 1;
}

int fdt_maybe(int fd)
{
    return get_slot(fd) != NULL;
}

int fdt_connected(int fd)
{
    vstate *s = get_slot(fd);
    return s && __atomic_load_n(&s->connected, __ATOMIC_RELAXED);
}

/* Identity of fd's open file; 0 if fstat fails. errno preserved. */
static int ident(int fd, dev_t *dev, ino_t *ino)
{
    int e = errno;
    struct stat st;
    int ok = fstat(fd, &st) == 0;
    errno = e;
    if (ok) {
        *dev = st.st_dev;
        *ino = st.st_ino;
    }
    return ok;
}

int fdt_get(int fd, vinfo *out)
{
    if (!fdt_maybe(fd)) return 0;
    dev_t dev = 0;
    ino_t ino = 0;
    int ok = ident(fd, &dev, &ino);
    int found = 0;
    lock_table();
    vstate *s = get_slot(fd);
    if (s && ok && s->dev == dev && s->ino == ino) {
        *out = s->v;
        found = 1;
    } else if (s) { /* fd was closed behind our back and reused: forget the stale state */
        put_slot(fd, NULL);
        unref(s, NULL);
    }
    pthread_mutex_unlock(&lock);
    return found;
}

static int set_common(int fd, const vinfo *in, int fresh)
{
    int e = errno;
    dev_t dev = 0;
    ino_t ino = 0;
    if (!ident(fd, &dev, &ino)) {
        errno = EBADF;
        return -1;
    }
    lock_table();
    vstate *n = spare;
    if (n) spare = n->next;
    pthread_mutex_unlock(&lock);
    if (!n) n = malloc(sizeof *n); /* allocated outside the lock; kept spare if not needed */
    if (!n) {
        errno = ENOMEM;
        return -1;
    }
    n->refs = 1;
    n->dev = dev;
    n->ino = ino;
    n->v = *in;
    n->connected = in->kind == VS_CONNECTED;
    int r = 0;
    lock_table();
    vstate **slot = slot_alloc(fd);
    if (!slot) {
        r = -1;
        e = fd >= 0 ? ENOMEM : EBADF;
    } else if (!fresh && *slot && (*slot)->dev == dev && (*slot)->ino == ino) {
        (*slot)->v = *in; /* shared with dups: they see the change */
        __atomic_store_n(&(*slot)->connected, in->kind == VS_CONNECTED, __ATOMIC_RELAXED);
    } else {
        vstate *old = *slot;
        __atomic_store_n(slot, n, __ATOMIC_RELEASE);
        n = NULL;
        unref(old, NULL);
    }
    if (n) {
        n->next = spare;
        spare = n;
    }
    pthread_mutex_unlock(&lock);
    errno = e;
    return r;
}

int fdt_set(int fd, const vinfo *in) { return set_common(fd, in, 0); }
int fdt_set_new(int fd, const vinfo *in) { return set_common(fd, in, 1); }

int fdt_share(int oldfd, int newfd, vinfo *released)
{
    if (oldfd == newfd) return 0;
    if (!fdt_maybe(oldfd) && !fdt_maybe(newfd)) return 0;
    int r = 0;
    lock_table();
    vstate *s = get_slot(oldfd);
    vstate *prev = get_slot(newfd);
    if (s) {
        vstate **slot = slot_alloc(newfd);
        if (slot) {
            s->refs++;
            __atomic_store_n(slot, s, __ATOMIC_RELEASE);
        } else {
            put_slot(newfd, NULL); /* cannot track newfd: it will look like a plain socket */
        }
    } else {
        put_slot(newfd, NULL);
    }
    if (prev != s) r = unref(prev, released);
    else if (prev) unref(prev, NULL); /* newfd already pointed at s: undo the extra ref */
    pthread_mutex_unlock(&lock);
    return r;
}

int fdt_clear(int fd, vinfo *released)
{
    if (!fdt_maybe(fd)) return 0;
    lock_table();
    vstate *s = get_slot(fd);
    put_slot(fd, NULL);
    int r = unref(s, released);
    pthread_mutex_unlock(&lock);
    return r;
}

int fdt_each(int (*fn)(int fd, const vinfo *v, dev_t dev, ino_t ino, void *ctx), void *ctx)
{
    /* Lock-free: also called in a vfork child about to exec, which must not take the lock. */
    for (int i = 0; i < NCHUNKS; i++) {
        vstate **c = __atomic_load_n(&chunks[i], __ATOMIC_ACQUIRE);
        for (int j = 0; c && j < CHUNK; j++) {
            vstate *s = __atomic_load_n(&c[j], __ATOMIC_ACQUIRE);
            if (s && fn(i * CHUNK + j, &s->v, s->dev, s->ino, ctx)) return 1;
        }
    }
    return 0;
}
