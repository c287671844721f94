/* sockstate.c: inode -> overlay state, a chained hash table under one mutex (sockstate.h). */
#include "supervisor/sockstate.h"
#include "common/netio.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NBUCKETS 4096

typedef struct entry {
    struct entry *next;
    ino_t ino;
    int64_t born;   /* mono_ms when the entry was created */
    vinfo v;
} entry;

static entry *buckets[NBUCKETS];
static atomic_long count;
#define KINDS 16 /* above every vkind */
static atomic_long by_kind[KINDS]; /* entries per vinfo kind */

static void kind_add(int kind, long n)
{
    if (kind >= 0 && kind < KINDS) atomic_fetch_add(&by_kind[kind], n);
}

long ss_count_kinds(int mask)
{
    long n = 0;
    for (int k = 0; k < KINDS; k++)
        if ((unsigned)mask & (1u << k)) n += atomic_load(&by_kind[k]);
    return n;
}
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static entry **slot(ino_t ino) { return &buckets[(unsigned long)ino * 2654435761u % NBUCKETS]; }

int ss_get(ino_t ino, vinfo *out)
{
    if (atomic_load(&count) == 0) return 0;
    pthread_mutex_lock(&lock);
    entry *e = *slot(ino);
    while (e && e->ino != ino) e = e->next;
    if (e) *out = e->v;
    pthread_mutex_unlock(&lock);
    return e != NULL;
}

int ss_set(ino_t ino, const vinfo *v)
{
    pthread_mutex_lock(&lock);
    entry **s = slot(ino), *e = *s;
    while (e && e->ino != ino) e = e->next;
    if (!e) {
        e = malloc(sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&lock);
            return -ENOMEM;
        }
        e->ino = ino;
        e->born = mono_ms();
        e->next = *s;
        *s = e;
        atomic_fetch_add(&count, 1);
    } else {
        kind_add(e->v.kind, -1);
    }
    e->v = *v;
    kind_add(v->kind, 1);
    pthread_mutex_unlock(&lock);
    return 0;
}

long ss_count(void) { return atomic_load(&count); }

void ss_del(ino_t ino)
{
    pthread_mutex_lock(&lock);
    for (entry **p = slot(ino); *p; p = &(*p)->next) {
        if ((*p)->ino != ino) continue;
        entry *e = *p;
        *p = e->next;
        kind_add(e->v.kind, -1);
        free(e);
        atomic_fetch_sub(&count, 1);
        break;
    }
    pthread_mutex_unlock(&lock);
}

long ss_sweep(int64_t before, int (*dead)(ino_t, const vinfo *, void *), void *ctx,
              void (*gone)(const vinfo *))
{
    entry *out = NULL;
    long n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < NBUCKETS; i++) {
        for (entry **p = &buckets[i]; *p;) {
            entry *e = *p;
            if (e->born < before && dead(e->ino, &e->v, ctx)) {
                *p = e->next;
                kind_add(e->v.kind, -1);
                e->next = out;
                out = e;
                n++;
            } else {
                p = &e->next;
            }
        }
    }
    atomic_fetch_sub(&count, n);
    pthread_mutex_unlock(&lock);
    while (out) {
        entry *e = out;
        out = e->next;
        gone(&e->v);
        free(e);
    }
    return n;
}

void ss_drain(void (*fn)(const vinfo *))
{
    entry *all = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < NBUCKETS; i++) {
        while (buckets[i]) {
            entry *e = buckets[i];
            buckets[i] = e->next;
            kind_add(e->v.kind, -1);
            e->next = all;
            all = e;
        }
    }
    atomic_store(&count, 0);
    pthread_mutex_unlock(&lock);
    while (all) {
        entry *e = all;
        all = e->next;
        fn(&e->v);
        free(e);
    }
}
