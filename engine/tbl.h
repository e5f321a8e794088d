/*
 * tbl: the partition hash table.
 *
 * One table holds the keys of one partition. It is touched by exactly one thread,
 * the shard thread that owns the partition (the creating thread, or the one that called
 * tbl_owner_adopt(); debug builds assert it): no locks, no atomics. Every function
 * below that takes a `struct tbl *` may only run on that owning thread (the
 * tbl_entry_* accessors and tbl_hash() are pure and may run anywhere).
 *
 * Keys and values are binary-safe byte strings up to KV_KEY_BYTES_MAX and
 * KV_VALUE_BYTES_MAX. Each key lives in one allocation (header + key + value) taken
 * from the mimalloc heap handed to tbl_create(); the table never calls malloc.
 *
 * Hashes. The caller computes h = tbl_hash(key) once per request and passes it to
 * every call: h decides the partition (and the side of a split). The table never
 * rehashes a key on the hot path, with one exception: a key that holds a {hash tag}
 * is placed inside the table by the hash of the whole key, so that thousands of keys
 * sharing a tag do not pile onto one slot. Growth, shrink and splits recompute hashes
 * of the entries they move.
 *
 * Time. The table never reads a clock. `now_ms` is the caller's wall clock in
 * milliseconds; an entry whose expiry time `expire_ms` (absolute, 0 = none) satisfies
 * expire_ms <= now_ms is expired: every call treats it as absent and the lookup that
 * meets it removes it (lazy expiry). tbl_expire_step() removes the others.
 *
 * Bounded work. No call does unbounded rehash work:
 *  - a write (tbl_put, tbl_modify, tbl_expire_set, tbl_del and the lazy removal in
 *    tbl_get) does at most one segment split (KV_TBL_SEG_SLOTS slots visited, at most
 *    KV_TBL_SEG_SLOTS keys hashed and moved) or one segment merge (at most
 *    KV_TBL_SEG_SLOTS / 4 keys moved; during a split, one more in src after a pull),
 *    plus at most one directory resize, which copies 2^depth pointers (depth = log2 of
 *    the directory; 2^14 pointers = 128 KiB at 10M keys). A second segment split in one
 *    call needs 1000 keys whose 64-bit hashes share their top bits: it does not happen
 *    with XXH3 short of a hash collision attack.
 *  - tbl_scan() visits one segment; on the dst of a split, it first moves the entries of
 *    at most one src segment into dst (with the few dst segment splits that causes).
 *  - tbl_expire_step() and tbl_split_step() visit at most their slot budget rounded up
 *    to whole segments, plus one merge per visited segment.
 *
 * Stack. A write that splits a segment uses ~9 KiB of stack (the segment's slots).
 *
 * Pointers. A `const struct tbl_entry *` returned by tbl_get() or passed to a scan
 * callback stays valid until the next call that may modify the same table (or its
 * split peer). An entry handed out through an `old` parameter belongs to the caller,
 * who frees it with tbl_entry_free() when done.
 */
#ifndef KV_TBL_H
#define KV_TBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mi_heap_s;
struct tbl;
struct tbl_entry;

/* Value types (at most 2: one bit of the entry header). Only strings exist now; the
 * type is stored so that TYPE can answer. */
enum tbl_type {
    TBL_TYPE_STRING = 0,
};

/* Flags of tbl_put() (and TBL_XX for tbl_modify()). */
enum tbl_put_flag {
    TBL_NX = 1u << 0,      /* only if the key is absent: else KV_EEXIST */
    TBL_XX = 1u << 1,      /* only if the key is present: else KV_ENOTFOUND */
    TBL_KEEPTTL = 1u << 2, /* keep the old expiry time instead of args->expire_ms */
    /* tbl_modify(): mark the value edited in place (tbl_entry_raw), or, without the flag,
     * clear the mark; TBL_RAW_NEW marks a value tbl_modify() creates too. tbl_put():
     * mark the new value (a moved or copied one that was marked) */
    TBL_RAW = 1u << 3,
    TBL_RAW_NEW = 1u << 4,
    TBL_FREQ = 1u << 5, /* tbl_put(): args->freq is the key's LFU counter */
    /* tbl_put(): the key's access bits (tbl_entry_lru) are args->access (a moved key keeps
     * its own), or with TBL_NEW_ACCESS a new key's even over an existing one (a restored
     * or copied value is a new object in Redis); else a use of the key replaced */
    TBL_ACCESS = 1u << 6,
    TBL_NEW_ACCESS = 1u << 7,
};

struct tbl_put_args {
    const void *val; /* value bytes (may be NULL when val_len == 0) */
    size_t val_len;
    int64_t expire_ms; /* absolute expiry time, 0 = none */
    unsigned flags;    /* TBL_NX | TBL_XX | TBL_KEEPTTL */
    uint8_t type;      /* enum tbl_type */
    uint32_t idle_s;   /* LRU: the key's access time is this long ago (0: now) */
    uint8_t freq;      /* LFU, with TBL_FREQ: the key's counter (RESTORE ... FREQ) */
    uint32_t access;   /* with TBL_ACCESS: the key's access bits */
};

/* Result of tbl_modify(): a writable value of the requested length. */
struct tbl_mod {
    char *val;      /* val_len writable bytes; valid until the next modifying call */
    size_t old_len; /* length before the call (0 when created) */
    bool created;   /* the key did not exist (or had expired) and was created */
};

struct tbl_stats {
    size_t entries;
    size_t key_bytes;      /* sum of key lengths */
    size_t val_bytes;      /* sum of value lengths */
    size_t mem_bytes;      /* allocator usable sizes of entries + segments + directory + tbl */
    size_t slot_bytes;     /* the slot arrays alone (part of mem_bytes) */
    size_t segments;       /* number of segments */
    size_t expiring;       /* entries with an expiry time (expired ones not yet removed too) */
    int64_t expire_avg_ms; /* the mean of their expiry times (absolute, ms); 0 if none */
    unsigned dir_depth;    /* the directory has 2^dir_depth pointers */
};

/* Scan callback: called once per live entry. It must not modify the table. */
typedef void tbl_scan_fn(void *ctx, const struct tbl_entry *e);

/*
 * The 64-bit hash of a key, agreed on by every layer: XXH3_64bits of the key, or, if
 * the key holds a '{' followed later by a '}' with at least one byte between them,
 * of the bytes between the first '{' and the next '}' (the Redis hash-tag rule).
 */
uint64_t tbl_hash(const void *key, size_t len);

/* tbl_hash, and the key's placement in a table (tbl_place) from the same scan. */
uint64_t tbl_hash_place(const void *key, size_t len, uint64_t *ph);

/*
 * Create an empty table whose memory comes from `heap` (the owning thread's heap;
 * borrowed, must outlive the table). Returns NULL when out of memory.
 */
struct tbl *tbl_create(struct mi_heap_s *heap);

/* Free the table and every entry in it. Owning thread only; not during a split. */
void tbl_destroy(struct tbl *t);

/*
 * Free the table in bounded steps (a lazy FLUSHALL): each call frees at most
 * `max_segs` segments with their entries (a segment holds at most 1023), and the table
 * itself with the last one; returns true when the table is gone. Once begun, the table
 * takes only tbl_destroy_step, tbl_destroy (frees the rest) and tbl_stats (whose
 * `entries` counts the entries not yet freed; its other fields are stale).
 */
bool tbl_destroy_step(struct tbl *t, size_t max_segs);

/*
 * Look a key up. Returns its entry, or NULL if absent or expired (an expired entry is
 * removed). The entry is borrowed (see "Pointers" above) and marked referenced (see
 * tbl_sample()). Owning thread only.
 */
const struct tbl_entry *tbl_get(struct tbl *t, const void *key, size_t key_len, uint64_t h,
                                int64_t now_ms);

/* The entry of key as it is, expired or not, without marking it referenced or removing
 * it: no side effect (the WAL's record of a change just made). */
const struct tbl_entry *tbl_find(struct tbl *t, const void *key, size_t key_len, uint64_t h);

/* tbl_get without marking the entry referenced (OBJECT FREQ looks without using). */
const struct tbl_entry *tbl_peek(struct tbl *t, const void *key, size_t key_len, uint64_t h,
                                 int64_t now_ms);

/*
 * Insert or replace a key. Returns 0, KV_EEXIST (TBL_NX and the key exists),
 * KV_ENOTFOUND (TBL_XX and it does not), KV_ELIMIT (a length over its limit, or the
 * key's segment is full at KV_TBL_DIR_DEPTH_MAX: ~1000 keys whose hashes share their top
 * 22 bits, which only crafted keys achieve) or KV_ENOMEM. On success, if `old` is not NULL it
 * receives the replaced entry (or NULL), now owned by the caller (free with tbl_entry_free()); if
 * `old` is NULL the replaced entry is freed. On failure *old is set to NULL. Owning thread only.
 */
int tbl_put(struct tbl *t, const void *key, size_t key_len, uint64_t h,
            const struct tbl_put_args *args, int64_t now_ms, struct tbl_entry **old);

/*
 * Delete a key. Returns 0 or KV_ENOTFOUND (absent or expired). If `old` is not NULL it
 * receives the removed entry, owned by the caller; else the entry is freed. Owning
 * thread only.
 */
int tbl_del(struct tbl *t, const void *key, size_t key_len, uint64_t h, int64_t now_ms,
            struct tbl_entry **old);

/*
 * Set a key's absolute expiry time (0 removes it, like PERSIST). A time <= now_ms
 * leaves the key expired: the next access removes it. Returns 0, KV_ENOTFOUND or
 * KV_ENOMEM. Owning thread only.
 */
int tbl_expire_set(struct tbl *t, const void *key, size_t key_len, uint64_t h, int64_t now_ms,
                   int64_t expire_ms);

/*
 * Make a key's value exactly `val_len` bytes long and return a writable pointer to it,
 * for in-place APPEND, SETRANGE, INCR. Bytes [0, min(old_len, val_len)) keep their
 * content, new bytes read as zero. A missing key is created as an empty string of type
 * TBL_TYPE_STRING without expiry, unless `flags` has TBL_XX (then KV_ENOTFOUND). The
 * expiry time is kept. When the value outgrows its block, the new capacity is at least
 * twice the old one, so repeated appends cost amortized O(1) per byte. `flags` may also
 * have TBL_RAW / TBL_RAW_NEW (the edited-in-place mark, see tbl_entry_raw). The access
 * clock is set to now; an LFU counter is left as it is (the caller's lookup of the key
 * counted the use). Returns 0, KV_ENOTFOUND, KV_ELIMIT or KV_ENOMEM. Owning thread only.
 */
int tbl_modify(struct tbl *t, const void *key, size_t key_len, uint64_t h, int64_t now_ms,
               size_t val_len, unsigned flags, struct tbl_mod *out);

/*
 * Active expiry: remove expired entries, visiting `slots_budget` slots (rounded up to
 * whole segments) from *cursor on. *cursor starts at 0 and comes back to 0 after a full
 * pass over the table. Returns the number of entries removed. Owning thread only.
 */
size_t tbl_expire_step(struct tbl *t, int64_t now_ms, uint64_t *cursor, size_t slots_budget);

/*
 * Cursor iteration (SCAN). Call with cursor 0 to start; it returns the next cursor, 0
 * when the iteration is over. Every key present in the table from the first call to the
 * last is passed to `fn` at least once, however the table grows or shrinks between
 * calls; each call visits one segment (at most KV_TBL_SEG_SLOTS slots).
 *
 * Cursor encoding: a position p in the 64-bit space of placement hashes (XXH3 of the
 * whole key). A call emits the entries whose placement hash lies in [p, q), where q is
 * the end of the segment that holds p, and returns q (0 once q reaches 2^64). Because
 * positions below the cursor are done and segments always cover hash ranges, splits and
 * merges of segments between calls cannot hide a key; and since the cursor only grows,
 * no key is passed to `fn` twice in one iteration.
 *
 * During a split, tbl_scan(src) emits only the keys with h < m, and tbl_scan(dst) first
 * moves the not-yet-moved keys of the range it visits from src: scanning both covers the
 * partition. Expired entries are skipped (not removed). Owning thread only.
 */
uint64_t tbl_scan(struct tbl *t, uint64_t cursor, int64_t now_ms, tbl_scan_fn *fn, void *ctx);

/*
 * Expiry hook: fn(ctx, tag, e) is called with each expired entry the table removes (by a
 * lookup or tbl_expire_step), just before it is freed; it must not touch the table.
 * NULL: none (the default). Owning thread only.
 */
typedef void tbl_expired_fn(void *ctx, uint32_t tag, const struct tbl_entry *e);
void tbl_on_expired(struct tbl *t, tbl_expired_fn *fn, void *ctx, uint32_t tag);

/* Flags of tbl_sample(). */
enum tbl_sample_flag {
    TBL_SAMPLE_EXPIRING = 1u << 0, /* only entries with an expiry time */
    TBL_SAMPLE_CLEAR = 1u << 1,    /* clear the entry's referenced bit (a second chance) */
    TBL_SAMPLE_HAND = 1u << 2,     /* the table's clock hand instead of r (see below) */
};
#define TBL_SAMPLE_SEGS 4 /* non-empty segments tbl_sample() reads at most */
/* random positions tbl_sample() draws at most while they fall in empty segments */
#define TBL_SAMPLE_REDRAWS 64

/*
 * Eviction sampling: a live entry of this table picked by the random number r (the
 * first one, possibly expired, at or after the position r names in this table's own
 * segments, going on into the next ones; with TBL_SAMPLE_EXPIRING only entries with an
 * expiry time), or NULL if none was met within TBL_SAMPLE_SEGS non-empty segments (a
 * position in an empty segment, such as those outside a partition's hash range, is drawn
 * again from r, up to TBL_SAMPLE_REDRAWS times, then empty ones are skipped). *referenced
 * (if not NULL) gets the entry's referenced bit: set when the key is read (tbl_get) or
 * written after it was made (a new key is unreferenced until its first use: scans of
 * keys written once do not push out the keys in use), and cleared by TBL_SAMPLE_CLEAR,
 * so that an entry sampled twice
 * without an access in between was not used meanwhile. Not uniform: entries after a run
 * of empty slots come up more often.
 *
 * With TBL_SAMPLE_HAND the table's clock hand replaces r: each call returns the next
 * entry after the one the previous call returned, going round the table (segments and
 * their slots in order; entries that moved meanwhile may be met twice or missed once).
 * With TBL_SAMPLE_CLEAR that is CLOCK, the one-bit approximation of LRU: an entry used
 * at least once per round of the hand is never found unreferenced. Random samples would
 * meet a used entry twice between two of its uses far more often. Owning thread only.
 */
const struct tbl_entry *tbl_sample(struct tbl *t, uint64_t r, unsigned flags, bool *referenced);

/*
 * Split by hash: move every entry with h >= m from `src` into `dst` (empty, created on
 * the same thread), in bounded steps. Returns 0 or KV_EINVAL (dst not empty, either
 * table already splitting). From this call until the split completes:
 *  - the pair behaves as one table: any call on either table with h < m is served by
 *    src and any call with h >= m by dst, whichever of the two the caller passed;
 *  - dst is authoritative for h >= m: before serving such a key it pulls it from src if
 *    the split has not moved it yet (then each key lives in exactly one table); if dst
 *    cannot grow to take it, the key is served in src, where it still is;
 *  - tbl_split_step() moves the rest; tbl_scan() behaves as described above.
 * Both tables: owning thread only.
 */
int tbl_split_begin(struct tbl *src, struct tbl *dst, uint64_t m);

/*
 * Advance a split, visiting `slots_budget` slots of src (rounded up to whole
 * segments). Returns 1 when the split is complete (the tables are independent again),
 * 0 when there is more to do, KV_ENOMEM when dst could not grow (retry later).
 * Owning thread only.
 */
int tbl_split_step(struct tbl *src, size_t slots_budget);

/*
 * Prefetch hint for a batch of requests (e.g. one read of pipelined commands): a lookup
 * costs two dependent cache misses (slot, then entry). Call with entry=false for every
 * key of the batch (prefetches the key's slot line), then with entry=true (reads those
 * slots, prefetches the matching entry), then do the operations. No effect on the
 * table's content; ignores split routing (the hint may miss). Owning thread only.
 */
void tbl_prefetch(const struct tbl *t, const void *key, size_t key_len, uint64_t h, bool entry);

/* The key's placement in a table (what tbl_prefetch computes from its hash h), and the
 * same prefetches by placement, for a caller that prefetches one key more than once. */
uint64_t tbl_place(const void *key, size_t key_len, uint64_t h);
void tbl_prefetch_at(const struct tbl *t, uint64_t ph, bool entry);

/*
 * Make the calling thread the owner of `t`, after the table was handed over from its
 * previous owner through a queue that orders memory (the previous owner must not touch
 * it again). Not during a split. Debug builds assert ownership on every call.
 */
void tbl_owner_adopt(struct tbl *t);

/* True while `t` is either side of a split in progress. */
bool tbl_splitting(const struct tbl *t);

/* Counters of this table alone (not its split peer). Owning thread only. */
void tbl_stats(const struct tbl *t, struct tbl_stats *out);

/*
 * O(n) check of every invariant (slot tags, probe chains, directory, counters, split
 * state); aborts on the first violation. For tests and debugging only. Owning thread.
 */
void tbl_check(const struct tbl *t);

/*
 * Fault injection, debug builds only (not defined under NDEBUG): on the calling thread,
 * let `after` more table allocations succeed, then fail the next one (and every later
 * one if `sticky`). after = -1 turns it off. For tests of the KV_ENOMEM paths.
 */
void tbl_debug_alloc_fail(long after, bool sticky);

/* Free an entry handed out through an `old` parameter. Any thread. */
void tbl_entry_free(struct tbl_entry *e);

/* Entry accessors (pure). The returned pointers live as long as the entry. */
const void *tbl_entry_key(const struct tbl_entry *e, size_t *len);
const void *tbl_entry_val(const struct tbl_entry *e, size_t *len);
uint8_t tbl_entry_type(const struct tbl_entry *e);
/* Its last access (made, read with tbl_get, written): Redis's LRU clock (seconds modulo
 * 2^24), and the seconds since (OBJECT IDLETIME). */
uint32_t tbl_entry_lru(const struct tbl_entry *e);
uint64_t tbl_entry_idle_s(const struct tbl_entry *e, int64_t now_ms);
/* In LFU mode (tbl_access_config) the same bits are Redis's LFU counter and the minute of
 * the last access: the counter after its decay until now (OBJECT FREQ). */
uint32_t tbl_entry_freq(const struct tbl_entry *e, int64_t now_ms);

/* Whether the entries' access bits are LRU (Redis's clock) or LFU (Redis's counter), and
 * the LFU's lfu-log-factor and lfu-decay-time (minutes). Any thread (relaxed atomics);
 * entries keep their bits across a change, which reads them in the other form for a
 * while, as in Redis. */
void tbl_access_config(bool lfu, uint32_t log_factor, uint32_t decay_min);
bool tbl_entry_referenced(const struct tbl_entry *e); /* see tbl_sample() */
/* Whether the value was last changed by a tbl_modify() with TBL_RAW (an APPEND, SETRANGE,
 * SETBIT...: Redis then reports the "raw" encoding whatever the value); not kept across
 * a restart (Redis's reload neither). */
bool tbl_entry_raw(const struct tbl_entry *e);
int64_t tbl_entry_expire_ms(const struct tbl_entry *e); /* 0 = no expiry */
size_t tbl_entry_mem(const struct tbl_entry *e); /* bytes of its allocation, header included */

#endif
