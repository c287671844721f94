/* spool.h: the disk spool of one session direction (docs/UVPN.md, "Surviving WAN outages"): the
 * application's bytes read while the link between the routers is down and the session's memory
 * is full, kept in a file of --spool-dir until they can be sent, oldest first. The file is
 * created at the first byte and removed as soon as it is empty again, so no spool file exists
 * while the link is up and the session has caught up. Blocking file I/O on the data-plane
 * thread (the file is written once and read once, mostly from the page cache). */
#ifndef UVPN_ROUTER_SPOOL_H
#define UVPN_ROUTER_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t used, peak;  /* bytes in every spool of the data plane */
    uint64_t total;       /* bytes that ever went to a spool */
} spool_acct;

typedef struct {
    int fd;               /* -1: no file */
    uint64_t rd, wr;      /* file offsets: bytes [rd, wr) are held */
    char path[4096];
    spool_acct *acct;
} spool;

void spool_init(spool *s, spool_acct *acct);
static inline uint64_t spool_size(const spool *s) { return s->wr - s->rd; }
/* Appends n bytes (creating the file in dir first): 0 or -errno. */
int spool_append(spool *s, const char *dir, const uint8_t *p, size_t n);
/* Reads up to max bytes from the oldest into out, drops them: the count, or -errno. */
long spool_take(spool *s, uint8_t *out, size_t max);
/* Removes the file. */
void spool_close(spool *s);

#endif
