/*
 * idmap: a map from a 64-bit id (never 0) to a pointer, open addressing with linear
 * probing and backward-shift deletion. kvd keeps one per shard from client id to the
 * shard's connection (CLIENT TRACKING delivers invalidations by id).
 *
 * Not thread-safe: the owner serializes access (conn.c: the shard thread writes under
 * the shard's id lock, other threads read under it).
 */
#ifndef KVD_IDMAP_H
#define KVD_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idmap_slot;

struct idmap {
    struct idmap_slot *slots; /* NULL until the first put */
    size_t mask;              /* capacity - 1 */
    size_t count;
};

/* Empty map (no memory yet); idmap_deinit frees what it took. */
void idmap_init(struct idmap *m);
void idmap_deinit(struct idmap *m);

/* Sets id -> v (replacing any). False if out of memory (the map is unchanged). */
bool idmap_put(struct idmap *m, uint64_t id, void *v);

/* The pointer of id, or NULL. */
void *idmap_get(const struct idmap *m, uint64_t id);

/* Removes id; false if it was absent. */
bool idmap_del(struct idmap *m, uint64_t id);

#endif
