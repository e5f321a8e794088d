/*
 * trktab: the keys a shard's tracking clients have read (CLIENT TRACKING, default mode):
 * key -> the readers to tell when it changes. A reader is an opaque 64-bit word (track.c
 * packs the client's id and shard into it). Keys are binary; each key is one allocation
 * holding its readers and its bytes. Like Redis's tracking table, a key's readers are
 * taken out as a whole when it changes (one invalidation per read), and the table has
 * no database dimension (a key changed in any database invalidates it).
 *
 * Open addressing with linear probing over pointers to entries, load at most 3/4,
 * doubling (the table is bounded by tracking-table-max-keys; a doubling moves pointers
 * only). Memory from the mimalloc heap given at creation.
 *
 * Thread: the owning shard's only.
 */
#ifndef KVD_TRKTAB_H
#define KVD_TRKTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mi_heap_s;
struct trktab;

/* Gets every reader of a key taken out of the table. */
typedef void trktab_fn(void *arg, const char *key, size_t klen, uint64_t who);

/* An empty table on `heap` (NULL: out of memory); destroy frees it and its keys. */
struct trktab *trktab_create(struct mi_heap_s *heap);
void trktab_destroy(struct trktab *t);

/* Records that `who` read key: true if that is a new (key, reader) item. Aborts if out
 * of memory, as any allocation of a request. */
bool trktab_add(struct trktab *t, const char *key, size_t klen, uint64_t who);

/* Takes the key out, calling fn for each of its readers in the order they were added;
 * returns how many (0: not tracked). */
size_t trktab_take(struct trktab *t, const char *key, size_t klen, trktab_fn *fn, void *arg);

/* Takes out some key (the next one after a clock hand), as trktab_take; false if the
 * table is empty. For the tracking-table-max-keys limit. */
bool trktab_take_any(struct trktab *t, trktab_fn *fn, void *arg);

/* Forgets every key without telling anyone (FLUSHALL: every client is told at once). */
void trktab_clear(struct trktab *t);

size_t trktab_keys(const struct trktab *t);  /* keys tracked */
size_t trktab_items(const struct trktab *t); /* (key, reader) pairs */

#endif
