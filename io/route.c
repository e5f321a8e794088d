/*
 * route: see route.h. Equal-width ranges are computed as lo_i = floor(i * 2^64 / P)
 * with 128-bit arithmetic, so that the ranges tile the space exactly for any P.
 */
#include "route.h"

#include "kv_assert.h"

#include <stdlib.h>

struct route_table *route_create_uniform(uint32_t threads, uint32_t parts_per_thread)
{
    KV_ASSERT(threads >= 1 && threads <= UINT16_MAX);
    KV_ASSERT(parts_per_thread >= 1 && parts_per_thread <= UINT16_MAX);
    uint32_t count = threads * parts_per_thread;
    struct route_table *t = malloc(sizeof *t + (size_t)count * sizeof t->parts[0]);
    if (t == NULL) {
        return NULL;
    }
    t->version = 1;
    t->count = count;
    t->threads = threads;
    for (uint32_t i = 0; i < count; i++) {
        unsigned __int128 lo = ((unsigned __int128)i << 64) / count;
        t->parts[i].lo = (uint64_t)lo;
        t->parts[i].id = i;
        t->parts[i].thread = (uint16_t)(i % threads);
        t->parts[i].slot = (uint16_t)(i / threads);
    }
    KV_ASSERT(t->parts[0].lo == 0);
    route_index(t);
    return t;
}

void route_index(struct route_table *t)
{
    KV_ASSERT(t->count >= 1 && t->parts[0].lo == 0);
    uint32_t i = 0;
    for (uint32_t b = 0; b < ROUTE_INDEX_SLOTS; b++) {
        uint64_t bound = (uint64_t)b << (64 - ROUTE_INDEX_BITS);
        while (i + 1 < t->count && t->parts[i + 1].lo <= bound) {
            KV_ASSERT(t->parts[i + 1].lo > t->parts[i].lo);
            i++;
        }
        t->index[b] = i;
    }
}

uint64_t route_part_hi(const struct route_table *t, uint32_t i)
{
    KV_ASSERT(i < t->count);
    return i + 1 < t->count ? t->parts[i + 1].lo : 0;
}
