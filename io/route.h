/*
 * route: the partition map of one node: which partition owns a key hash, and which
 * shard thread owns that partition.
 *
 * The 64-bit hash space is cut into contiguous ranges, sorted by their low bound; a
 * partition covers [lo, next lo) and the last one runs to 2^64 - 1 inclusive. A
 * lookup (twice per request: once to route it, once by its handler) reads an index by
 * the top ROUTE_INDEX_BITS of the hash, which bounds the parts that can hold it, then
 * binary-searches those: one load and no loop while partitions are wider than
 * 2^(64 - ROUTE_INDEX_BITS), O(log P) at worst; no allocation, no lock.
 *
 * A table is immutable once published. The cluster layer will replace it at run time
 * by publishing a new table (route_publish) that shard threads pick up at the top of
 * their loop turn (route_current); the old one is reclaimed only after every shard has
 * moved past it (not needed yet: today the map is built once at start-up).
 */
#ifndef ROUTE_H
#define ROUTE_H

#include <stdint.h>

struct route_part {
    uint64_t lo;     /* first hash of the range */
    uint32_t id;     /* partition id, unique in the cluster */
    uint16_t thread; /* owning shard thread */
    uint16_t slot;   /* index of the partition among its thread's partitions */
};

#define ROUTE_INDEX_BITS  8
#define ROUTE_INDEX_SLOTS (1u << ROUTE_INDEX_BITS)

struct route_table {
    uint64_t version; /* increases with every published change */
    uint32_t count;   /* number of partitions, >= 1 */
    uint32_t threads; /* number of shard threads the table assigns to */
    /* index[b]: the last part with lo <= b << (64 - ROUTE_INDEX_BITS) (route_index) */
    uint32_t index[ROUTE_INDEX_SLOTS];
    struct route_part parts[];
};

/*
 * Builds the start-up map: threads * parts_per_thread partitions of equal width,
 * partition i owned by thread i % threads. Returns a malloc'ed table (free() it), or
 * NULL if out of memory.
 */
struct route_table *route_create_uniform(uint32_t threads, uint32_t parts_per_thread);

/* Fills t->index from t->parts (sorted, parts[0].lo == 0): after building a table. */
void route_index(struct route_table *t);

/* The partition whose range holds `hash`. Never NULL for a valid table. */
static inline const struct route_part *route_lookup(const struct route_table *t, uint64_t hash)
{
    uint32_t b = (uint32_t)(hash >> (64 - ROUTE_INDEX_BITS));
    /* the answer is the last part with lo <= hash: not before index[b] (its lo is at
     * most b's bound <= hash), not after index[b + 1] (every later lo is above b + 1's
     * bound > hash) */
    uint32_t lo = t->index[b];
    uint32_t hi = b + 1 < ROUTE_INDEX_SLOTS ? t->index[b + 1] + 1 : t->count;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->parts[mid].lo <= hash) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return &t->parts[lo];
}

/* The exclusive upper bound of part i's range, or 0 for the last part (meaning 2^64). */
uint64_t route_part_hi(const struct route_table *t, uint32_t i);

#endif
