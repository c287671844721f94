/* map.c: 64-bit key hash map (see map.h). */
#include "router/core/map.h"

#include <stdlib.h>

static size_t slot(uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

void map_init(u64map *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->count = 0;
}

void map_free(u64map *m)
{
    free(m->keys);
    free(m->vals);
    map_init(m);
}

void *map_get(const u64map *m, uint64_t key)
{
    if (!m->cap) return NULL;
    for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->vals[i]) return NULL;
        if (m->keys[i] == key) return m->vals[i];
    }
}

static int grow(u64map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    uint64_t *keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->vals[i]) continue;
        size_t j = slot(m->keys[i], cap);
        while (vals[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int map_put(u64map *m, uint64_t key, void *val)
{
    if ((m->count + 1) * 2 > m->cap && grow(m) != 0) return -1;
    size_t i = slot(key, m->cap);
    while (m->vals[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (!m->vals[i]) m->count++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

void *map_del(u64map *m, uint64_t key)
{
    if (!m->cap) return NULL;
    size_t i = slot(key, m->cap);
    while (m->vals[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    void *v = m->vals[i];
    if (!v) return NULL;
    m->vals[i] = NULL;
    m->count--;
    /* Backward shift: move later members of the probe run into the hole when they belong there. */
    for (size_t j = (i + 1) & (m->cap - 1); m->vals[j]; j = (j + 1) & (m->cap - 1)) {
        size_t home = slot(m->keys[j], m->cap);
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (between) continue;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        m->vals[j] = NULL;
        i = j;
    }
    return v;
}
