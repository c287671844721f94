/* bufq.h: a queue of stream bytes in chunks, addressed by stream offset, and the router-wide
 * count of the memory such queues hold (the sessions' replay and receive buffers, the local
 * relays' pending bytes: what --memory-limit bounds). A queue holds the contiguous offsets
 * [base, end); bytes are appended at end and dropped from base. Chunks are sized to what comes:
 * a small write costs a small chunk, a bulk stream 64 KiB chunks, so an idle session holds
 * nothing and a stalled one only what it must. Single-threaded (the data-plane thread). */
#ifndef UVPN_ROUTER_BUFQ_H
#define UVPN_ROUTER_BUFQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BUFQ_CHUNK (256 * 1024) /* largest chunk: one read from a program (socat -b 262144 reads as much) */
#define BQ_SPARE_MAX 32          /* full-size chunks kept for reuse (no malloc/free, no fresh pages
                                  * faulted in per chunk: a session's 4 MiB window is 16 of them, and an
                                  * ACK frees a quarter window at once); the data plane frees them when
                                  * it has been idle for a while (loop.c) */
#define BQ_FRAME_CHUNK (64 * 1024) /* the chunk a DATA payload (up to 65535 bytes) gets in a receive buffer */
#define BQ_FRAME_SPARE_MAX 16    /* such chunks kept for reuse: a program that takes less than arrives
                                  * costs no malloc/free (and no fresh pages faulted in) per frame */

typedef struct bq_chunk {
    struct bq_chunk *next;
    uint32_t len, cap;       /* bytes held from data[0], capacity */
    uint32_t off;            /* bytes of data[0..off) already dropped */
    uint8_t data[];
} bq_chunk;

/* Memory held by every queue of one data plane, in bytes of chunk capacity, and the full-size
 * and frame-size chunks freed lately, kept for the next allocation of their size (a bulk stream
 * then allocates nothing per chunk; they are not counted in `used`; at most BQ_SPARE_MAX and
 * BQ_FRAME_SPARE_MAX, freed by bq_mem_free: when the data plane is idle, and at its end). */
typedef struct bq_mem {
    uint64_t used, peak;
    struct bq_chunk *spare[BQ_SPARE_MAX];
    int nspare;
    struct bq_chunk *frame_spare[BQ_FRAME_SPARE_MAX];
    int nframe_spare;
    int freed;               /* set whenever a chunk is freed (the data plane wakes waiters) */
} bq_mem;

/* Frees the spare chunks. */
void bq_mem_free(bq_mem *m);

typedef struct {
    bq_chunk *head, *tail;
    uint64_t base, end;      /* stream offsets held: [base, end) */
    uint64_t held;           /* capacity of its chunks */
    bq_chunk *fresh_prev;    /* the tail before bq_space allocated a new one (see bq_commit) */
    int fresh;
    bq_mem *mem;
} bufq;

void bq_init(bufq *q, bq_mem *mem, uint64_t base);
static inline uint64_t bq_size(const bufq *q) { return q->end - q->base; }

/* Free space at the tail for an append of up to `want` bytes without copying: returns a pointer
 * and sets *room (>= 1), allocating a chunk when the tail has none (its size: want, rounded to
 * 4 KiB, at most BUFQ_CHUNK). NULL when memory is exhausted. Follow with bq_commit. */
uint8_t *bq_space(bufq *q, size_t want, size_t *room);
/* Records n bytes written into the space bq_space gave; with n == 0 a chunk bq_space had just
 * allocated is freed again (a read that found nothing leaves no memory behind). */
void bq_commit(bufq *q, size_t n);
/* Copies n bytes in (bq_space + memcpy + bq_commit in a loop). 0 or -1 (no memory). */
int bq_append(bufq *q, const uint8_t *p, size_t n);
/* Drops bytes before stream offset `to` (clamped to [base, end]); frees emptied chunks (an
 * emptied queue holds no memory). */
void bq_trim(bufq *q, uint64_t to);
/* Drops everything and frees every chunk (base and end are kept equal at end). */
void bq_clear(bufq *q);
/* Contiguous bytes from offset `at` (base <= at < end): pointer and *n (at most max). */
const uint8_t *bq_peek(const bufq *q, uint64_t at, size_t max, size_t *n);
/* Up to `max` iovecs covering bytes from base; returns the count. */
int bq_iov(const bufq *q, struct iovec *iov, int max);

#endif
