/* bufq.c: chunked stream byte queues and their memory count (see bufq.h). */
#include "router/core/bufq.h"

#include <stdlib.h>
#include <string.h>

void bq_init(bufq *q, bq_mem *mem, uint64_t base)
{
    q->head = q->tail = NULL;
    q->base = q->end = base;
    q->held = 0;
    q->fresh_prev = NULL;
    q->fresh = 0;
    q->mem = mem;
}

static void chunk_free(bufq *q, bq_chunk *c)
{
    __atomic_sub_fetch(&q->mem->used, c->cap, __ATOMIC_RELAXED);
    q->held -= c->cap;
    q->mem->freed = 1;
    bq_mem *m = q->mem;
    if (c->cap == BUFQ_CHUNK && m->nspare < BQ_SPARE_MAX) m->spare[m->nspare++] = c;
    else if (c->cap == BQ_FRAME_CHUNK && m->nframe_spare < BQ_FRAME_SPARE_MAX) m->frame_spare[m->nframe_spare++] = c;
    else free(c);
}

void bq_mem_free(bq_mem *m)
{
    while (m->nspare > 0) free(m->spare[--m->nspare]);
    while (m->nframe_spare > 0) free(m->frame_spare[--m->nframe_spare]);
}

/* A chunk of capacity cap: a spare of that size, or a fresh one (NULL: no memory). */
static bq_chunk *chunk_new(bq_mem *m, size_t cap)
{
    if (cap == BUFQ_CHUNK && m->nspare > 0) return m->spare[--m->nspare];
    if (cap == BQ_FRAME_CHUNK && m->nframe_spare > 0) return m->frame_spare[--m->nframe_spare];
    return malloc(sizeof(bq_chunk) + cap);
}

uint8_t *bq_space(bufq *q, size_t want, size_t *room)
{
    bq_chunk *t = q->tail;
    q->fresh = 0;
    if (t && t->len < t->cap) {
        *room = t->cap - t->len;
        return t->data + t->len;
    }
    size_t cap = want < 1 ? 1 : want;
    cap = (cap + 4095) & ~(size_t)4095;
    if (cap > BUFQ_CHUNK) cap = BUFQ_CHUNK;
    bq_chunk *c = chunk_new(q->mem, cap);
    if (!c) return NULL;
    c->next = NULL;
    c->len = c->off = 0;
    c->cap = (uint32_t)cap;
    uint64_t used = __atomic_add_fetch(&q->mem->used, cap, __ATOMIC_RELAXED);
    q->held += cap;
    if (used > q->mem->peak) __atomic_store_n(&q->mem->peak, used, __ATOMIC_RELAXED);
    if (t) t->next = c;
    else q->head = c;
    q->tail = c;
    q->fresh_prev = t;
    q->fresh = 1;
    *room = cap;
    return c->data;
}

void bq_commit(bufq *q, size_t n)
{
    if (n == 0 && q->fresh) {
        bq_chunk *c = q->tail;
        q->tail = q->fresh_prev;
        if (q->tail) q->tail->next = NULL;
        else q->head = NULL;
        chunk_free(q, c);
    }
    q->fresh = 0;
    if (n == 0) return;
    q->tail->len += (uint32_t)n;
    q->end += n;
}

int bq_append(bufq *q, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t room;
        uint8_t *d = bq_space(q, n, &room);
        if (!d) return -1;
        size_t k = n < room ? n : room;
        memcpy(d, p, k);
        bq_commit(q, k);
        p += k;
        n -= k;
    }
    return 0;
}

void bq_trim(bufq *q, uint64_t to)
{
    if (to > q->end) to = q->end;
    while (q->base < to) {
        bq_chunk *c = q->head;
        uint64_t avail = c->len - c->off, k = to - q->base;
        if (k >= avail) {
            q->base += avail;
            q->head = c->next;
            if (!q->head) q->tail = NULL;
            chunk_free(q, c);
        } else {
            c->off += (uint32_t)k;
            q->base += k;
        }
    }
}

void bq_clear(bufq *q)
{
    while (q->head) {
        bq_chunk *c = q->head;
        q->head = c->next;
        chunk_free(q, c);
    }
    q->tail = NULL;
    q->base = q->end;
}

const uint8_t *bq_peek(const bufq *q, uint64_t at, size_t max, size_t *n)
{
    uint64_t pos = q->base;
    for (const bq_chunk *c = q->head; c; c = c->next) {
        uint64_t avail = c->len - c->off;
        if (at < pos + avail) {
            uint64_t skip = at - pos, k = avail - skip;
            *n = k < max ? (size_t)k : max;
            return c->data + c->off + skip;
        }
        pos += avail;
    }
    *n = 0;
    return NULL;
}

int bq_iov(const bufq *q, struct iovec *iov, int max)
{
    int k = 0;
    for (const bq_chunk *c = q->head; c && k < max; c = c->next) {
        if (c->len == c->off) continue;
        iov[k].iov_base = (void *)(c->data + c->off);
        iov[k].iov_len = c->len - c->off;
        k++;
    }
    return k;
}
