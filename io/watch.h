/*
 * watch: the keys WATCHed on one shard, for the check-and-set of MULTI/EXEC.
 *
 * A shard keeps the watches on the keys of its partitions, made by clients of any
 * shard (all of one client's watches are in one partition, so on one shard), each
 * client known by its id. A change of a watched key (every write that changes data
 * calls watch_touch, see cmd_log_*) marks every client watching it dirty; EXEC of a
 * dirty client runs nothing and replies a null array. As in Redis, a key that expires
 * between WATCH and EXEC fails the EXEC too: the expiry seen at WATCH is kept and
 * compared with the clock at EXEC (a key already expired at WATCH counts as absent).
 *
 * Owned by one shard thread; memory from that thread's heap. Two chained hash maps
 * (watched key -> its watchers, client -> its watches) that double when their load
 * passes 1: a doubling rehashes the map in one step, proportional to the keys watched
 * on this shard. There is no limit beyond client memory, as in Redis.
 */
#ifndef KVD_WATCH_H
#define KVD_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mi_heap_s;
struct watch_reg;

struct watch_reg *watch_create(struct mi_heap_s *heap);
void watch_destroy(struct watch_reg *w);

/* Distinct keys watched and clients watching (0 for a NULL registry). */
size_t watch_key_count(const struct watch_reg *w);
size_t watch_client_count(const struct watch_reg *w);

/* `client` watches `key` (hash `h`) of database `db`, whose expiry now is `expire_ms`
 * (0: none, or the key is absent). Watching a key twice is one watch, the first one's
 * expiry kept. A key is (database, name): the same name in two databases is two keys. */
void watch_add(struct watch_reg *w, uint64_t client, uint32_t db, const char *key, size_t klen,
               uint64_t h, int64_t expire_ms);

/* `key` of `db` changed: every client watching it becomes dirty. Cheap when nothing is
 * watched. */
void watch_touch(struct watch_reg *w, uint32_t db, const char *key, size_t klen, uint64_t h);

/* Touches every watched key for which `pred` says true (FLUSHALL, FLUSHDB, SWAPDB: the
 * keys that exist in the databases concerned). */
typedef bool watch_pred(void *arg, uint32_t db, const char *key, size_t klen, uint64_t h);
void watch_touch_if(struct watch_reg *w, watch_pred *pred, void *arg);

/* True if EXEC of `client` may run: not dirty, and no key it watched with an expiry has
 * reached it by `now_ms`. A client that watches nothing here is clean. */
bool watch_clean(const struct watch_reg *w, uint64_t client, int64_t now_ms);

/* Forgets every watch of `client` (EXEC, DISCARD, UNWATCH, RESET, close). */
void watch_drop(struct watch_reg *w, uint64_t client);

/* Walks the structure and asserts its invariants (tests). */
void watch_check(const struct watch_reg *w);

#endif
