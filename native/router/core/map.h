/* map.h: an open-addressing hash map from 64-bit keys to pointers (linear probing, deletion
 * by backward shift), for the data plane's tables: handles by id, sessions by id on a link and
 * by session id. Grows at 50 % load; never shrinks below its first size. */
#ifndef UVPN_ROUTER_MAP_H
#define UVPN_ROUTER_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys;
    void **vals;     /* NULL: empty slot */
    size_t cap, count;
} u64map;

void map_init(u64map *m);
void map_free(u64map *m);
void *map_get(const u64map *m, uint64_t key);
/* Inserts or replaces; 0 or -1 (no memory). val must not be NULL. */
int map_put(u64map *m, uint64_t key, void *val);
/* Removes key; returns its value or NULL. */
void *map_del(u64map *m, uint64_t key);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->vals && m->vals[i]) ... */

#endif
