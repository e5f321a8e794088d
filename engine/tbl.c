/*
 * tbl.c: the partition hash table, an extendible-hashing directory of small
 * open-addressing segments (after Dragonfly's dashtable), one table per partition.
 *
 * Why this shape. A single linear-probing array must rehash everything when it grows;
 * Redis spreads that over requests with two arrays and a rehash index, but then SCAN
 * needs reverse-binary cursors and a hash split must walk both arrays. Here the table is
 * a directory of 2^depth pointers to segments of 1023 slots; the segment of a key is
 * chosen by the TOP `depth` bits of its placement hash. A full segment splits in two
 * (one more bit), moving about half of at most 1023 entries: growth is incremental by
 * construction, and only a directory doubling (2^depth pointers) is ever copied.
 * Segments cover contiguous, aligned ranges of the hash space, so a SCAN cursor is just
 * a hash position and a split by hash walks the segments in hash order.
 *
 * Placement hash. Normally the hash h passed in by the caller (tbl_hash(key)). For a
 * key holding a '{', it is XXH3 of the whole key (h is then possibly the hash of the
 * tag only, shared by many keys). Either way it equals XXH3_64bits(key), which is what
 * splits and merges recompute; the caller's h only routes between split halves.
 *
 * Slot (8 bytes; 0 = empty):
 *
 *    63   62        48 47                                    0
 *   +---+-------------+--------------------------------------+
 *   | X |  tag (15)   |  entry pointer (48 bits, user space) |
 *   +---+-------------+--------------------------------------+
 *   X   = the entry has an expiry time (active expiry reads only these entries)
 *   tag = placement hash bits 0..14; bits 0..9 are the home slot, so probing rarely
 *         dereferences a non-matching entry and backward-shift delete never does.
 *
 * Segment: {count, depth} + 1023 slots = 8192 bytes (a mimalloc size class, no
 * rounding). Linear probing with wrap-around, backward-shift deletion (no tombstones),
 * split above 13/16 full, merge with its buddy when both together hold <= 1/4.
 *
 * Entry (one allocation; a varint-like fixed width chosen when the block is allocated):
 *
 *   [flags:1][lru:3][expire_ms:8, only if flags.X][klen:1|2|4][vlen:1|2|4][key][value...cap]
 *   flags = type (bit 0) | W (bit 1) | R (bit 2) | X (bit 3) | klen width code (4-5)
 *           | vlen width code (6-7)
 *   W = the value was edited in place (tbl_modify with TBL_RAW), cleared by a rewrite.
 *   R = referenced: set when the key is read or written after it was made (not when it
 *       is made: a burst of keys written once does not push out the keys in use), cleared
 *       by an eviction sample (tbl_sample). One bit of access history instead of Redis's
 *       24-bit clock: CLOCK's second chance, the approximation of LRU of page caches.
 *
 * lru = the time of the last access, in seconds modulo 2^24 (Redis's LRU clock): set when
 *       the key is made, read (tbl_get: not tbl_peek / tbl_find) or written; OBJECT
 *       IDLETIME is the time since (tbl_entry_idle_s). In LFU mode (tbl_access_config)
 *       the same bits are Redis's LFU form instead: minutes of the last access (16 bits)
 *       and a logarithmic access counter (8 bits), see "LFU" below.
 *
 * The vlen width is chosen for the block's capacity, so an in-place append never moves
 * the value. A 16-byte key with a 32-byte value takes 3 header bytes: 51 bytes, a 64-byte
 * block with Debian's mimalloc (its small size classes are 16 bytes apart).
 *
 * Invariants (checked by tbl_check): every entry sits in the segment that owns the top
 * bits of its placement hash, reachable from its home slot without crossing an empty
 * slot, once; a segment is never full; a segment of depth d appears in exactly 2^(gd-d)
 * aligned directory slots; the counters equal the sums over entries. During a split,
 * src holds no entry with h >= m below split_pos, and dst holds only h >= m.
 *
 * Allocation failure never leaves a half-done change: entries are allocated before the
 * table is touched, a segment split that cannot allocate is skipped while the segment
 * still has room, and a key dst cannot take during a split stays (and is served) in src.
 * Debug builds can inject failures (tbl_debug_alloc_fail) to test this.
 *
 * Thread: everything here runs on the thread that owns the table; nothing is shared. The
 * owner is the creating thread (or the one that called tbl_owner_adopt); debug builds
 * assert it on every entry point.
 */
#include "tbl.h"

#include <mimalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <xxhash.h>

#include "kv_bytes.h"
#include "kv_assert.h"
#include "kv_error.h"
#include "kv_limits.h"

#define SEG_N          (KV_TBL_SEG_SLOTS - 1u) /* slots per segment (header takes one) */
#define SEG_HOME_MASK  (KV_TBL_SEG_SLOTS - 1u)
#define SEG_SPLIT_FILL (SEG_N * 13u / 16u) /* split before exceeding this many entries */
#define SEG_MERGE_FILL (SEG_N / 4u)        /* merge buddies holding this many together */
#define SEG_NONE       ((size_t)-1)
#define SEG_PREFETCH   12 /* entries in flight while a split rehashes */

#define SLOT_PTR_MASK  ((UINT64_C(1) << 48) - 1)
#define SLOT_TAG_SHIFT 48
#define SLOT_TAG_MASK  UINT64_C(0x7fff)
#define SLOT_X         (UINT64_C(1) << 63)

#define ENT_TYPE_MASK 0x01u
#define ENT_RAW       0x02u /* edited in place (TBL_RAW) */
#define ENT_REF       0x04u /* read or written since an eviction sample last cleared it */
#define ENT_X         0x08u
#define ENT_HDR       4u /* flags and the 3-byte access clock */

_Static_assert((KV_TBL_SEG_SLOTS & (KV_TBL_SEG_SLOTS - 1)) == 0, "segment slots: power of 2");
_Static_assert(KV_TBL_SEG_SLOTS <= 1024, "the home slot must fit the 15-bit tag with 5 spare");
_Static_assert(KV_TBL_DIR_DEPTH_MAX < 48, "directory index must fit size_t shifts");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "entry header is little-endian");

struct seg {
    uint32_t count; /* occupied slots, < SEG_N */
    uint32_t depth; /* local depth: the segment owns one (64 - depth)-bit hash range */
    uint64_t slot[SEG_N];
};
_Static_assert(sizeof(struct seg) == KV_TBL_SEG_SLOTS * 8, "a segment is one size class");

struct tbl_entry {
    uint8_t flags; /* the rest of the layout is described atop this file */
};

struct tbl {
    mi_heap_t *heap;
    struct seg **dir;
    unsigned gdepth;
    size_t nseg;
    size_t seg_at_depth[KV_TBL_DIR_DEPTH_MAX + 1];
    /* counters */
    size_t entries;
    size_t key_bytes;
    size_t val_bytes;
    size_t ent_mem_bytes;
    size_t expiring;              /* entries with an expiry time */
    unsigned __int128 expire_sum; /* sum of their expiry times (ms) */
    /* split by hash: set on both sides while in progress */
    struct tbl *split_dst;      /* on src */
    struct tbl *split_src;      /* on dst */
    uint64_t split_m;           /* on src: keys with h >= m go to dst */
    uint64_t split_pos;         /* on src: placement positions < pos are done */
    size_t drop_di;             /* tbl_destroy_step: directory entries below this are freed */
    tbl_expired_fn *on_expired; /* tbl_on_expired */
    void *on_expired_ctx;
    uint32_t on_expired_tag;
    uint64_t hand_pos; /* tbl_sample's clock hand: a segment's hash position ... */
    size_t hand_slot;  /* ... and the slot in it where the next TBL_SAMPLE_HAND looks */
    pthread_t owner;   /* the only thread that may call; checked in debug builds */
};

__attribute__((unused)) static inline bool tbl__owned(const struct tbl *t)
{
    return pthread_equal(t->owner, pthread_self()) != 0;
}

/* ---- allocation (with fault injection in debug builds) ---------------------------- */

#ifndef NDEBUG
static _Thread_local long tbl__fail_after = -1; /* allocations left before failing */
static _Thread_local bool tbl__fail_sticky;

void tbl_debug_alloc_fail(long after, bool sticky)
{
    KV_ASSERT(after >= -1);
    tbl__fail_after = after;
    tbl__fail_sticky = sticky;
}
#endif

static void *tbl__alloc(mi_heap_t *heap, size_t size, bool zero)
{
    KV_ASSERT(heap != NULL && size > 0);
#ifndef NDEBUG
    if (tbl__fail_after >= 0) {
        if (tbl__fail_after == 0) {
            tbl__fail_after = tbl__fail_sticky ? 0 : -1;
            return NULL;
        }
        tbl__fail_after--;
    }
#endif
    return zero ? mi_heap_zalloc(heap, size) : mi_heap_malloc(heap, size);
}

/* ---- entries -------------------------------------------------------------------- */

struct ent_view {
    size_t klen, vlen;
    size_t off_vlen, off_key, off_val;
    unsigned vcode;
};

static inline size_t width_max(unsigned code)
{
    return code == 0 ? 0xffu : code == 1 ? 0xffffu : 0xffffffffu;
}

static inline unsigned width_code(size_t n)
{
    return n <= 0xffu ? 0 : n <= 0xffffu ? 1 : 2;
}

/* A length of 1, 2 or 4 bytes (width_code), little-endian. A fixed-size copy per width:
 * a copy of a variable size compiles to a general loop (~25 instructions per read). */
static inline size_t load_le(const uint8_t *p, unsigned code)
{
    KV_DASSERT(code <= 2);
    if (code == 0) {
        return p[0];
    }
    if (code == 1) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void store_le(uint8_t *p, unsigned code, size_t n)
{
    KV_ASSERT(n <= width_max(code));
    if (code == 0) {
        p[0] = (uint8_t)n;
    } else if (code == 1) {
        uint16_t v = (uint16_t)n;
        memcpy(p, &v, 2);
    } else {
        uint32_t v = (uint32_t)n;
        memcpy(p, &v, 4);
    }
}

/* Redis's LRU clock: seconds, modulo 2^24. */
static inline uint32_t lru_clock(int64_t now_ms)
{
    return (uint32_t)((uint64_t)(now_ms / 1000) & 0xffffffu);
}

static inline uint32_t ent_lru(const uint8_t *p)
{
    return (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16;
}

static inline void ent_set_lru(uint8_t *p, uint32_t c)
{
    p[1] = (uint8_t)c;
    p[2] = (uint8_t)(c >> 8);
    p[3] = (uint8_t)(c >> 16);
}

/*
 * LFU (tbl_access_config): the same 24 bits hold Redis's LFU form instead, the minutes of
 * the last access (16 bits) and a logarithmic counter (8 bits, LFU_INIT_VAL when made):
 * an access first takes one off the counter per `decay` minutes since the last one, then
 * adds one with probability 1 / ((counter - LFU_INIT_VAL) * log_factor + 1). The counter
 * is what OBJECT FREQ reports and what the LFU policies evict by.
 */
#define LFU_INIT_VAL 5

static _Atomic int tbl__lfu;                 /* the entries' 24 bits are LFU, not LRU */
static _Atomic uint32_t tbl__lfu_log_factor; /* lfu-log-factor */
static _Atomic uint32_t tbl__lfu_decay_min;  /* lfu-decay-time (0: no decay) */

void tbl_access_config(bool lfu, uint32_t log_factor, uint32_t decay_min)
{
    atomic_store_explicit(&tbl__lfu_log_factor, log_factor, memory_order_relaxed);
    atomic_store_explicit(&tbl__lfu_decay_min, decay_min, memory_order_relaxed);
    atomic_store_explicit(&tbl__lfu, lfu ? 1 : 0, memory_order_relaxed);
}

static inline bool lfu_on(void)
{
    return atomic_load_explicit(&tbl__lfu, memory_order_relaxed) != 0;
}

static inline uint32_t lfu_minutes(int64_t now_ms)
{
    return (uint32_t)((uint64_t)(now_ms / 60000) & 0xffffu);
}

/* The counter after its decay since the last access (Redis's LFUDecrAndReturn). */
static uint32_t lfu_decayed(uint32_t v, int64_t now_ms)
{
    uint32_t ldt = v >> 8, counter = v & 0xffu, now = lfu_minutes(now_ms);
    uint32_t elapsed = now >= ldt ? now - ldt : 0xffffu - ldt + now;
    uint32_t decay = atomic_load_explicit(&tbl__lfu_decay_min, memory_order_relaxed);
    uint32_t periods = decay == 1 ? elapsed : decay ? elapsed / decay : 0; /* (1: the default) */
    return periods > counter ? 0 : counter - periods;
}

static uint32_t lfu_rand32(void)
{
    static _Thread_local uint64_t s;
    if (s == 0) {
        s = (uint64_t)(uintptr_t)&s | 1; /* a per-thread seed; quality is not the point */
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (uint32_t)(s >> 32);
}

/* Redis's LFULogIncr. */
static uint32_t lfu_incr(uint32_t counter)
{
    if (counter == 255) {
        return 255;
    }
    uint64_t base = counter > LFU_INIT_VAL ? counter - LFU_INIT_VAL : 0;
    uint64_t denom = base * atomic_load_explicit(&tbl__lfu_log_factor, memory_order_relaxed) + 1;
    /* r < 1 / denom for r uniform in [0, 1), without a division: rand * denom < 2^32 */
    return (uint64_t)lfu_rand32() * denom < (UINT64_C(1) << 32) ? counter + 1 : counter;
}

/* The 24 bits of a key made now. */
static inline uint32_t access_new(int64_t now_ms)
{
    return lfu_on() ? lfu_minutes(now_ms) << 8 | LFU_INIT_VAL : lru_clock(now_ms);
}

/* The 24 bits after an access of a key whose bits were `cur`. */
static inline uint32_t access_touch(uint32_t cur, int64_t now_ms)
{
    if (!lfu_on()) {
        return lru_clock(now_ms);
    }
    return lfu_minutes(now_ms) << 8 | lfu_incr(lfu_decayed(cur, now_ms));
}

/* An access: the bits are stored only when they moved (a read keeps its line clean). */
static inline void ent_touch(uint8_t *p, int64_t now_ms)
{
    uint32_t c = access_touch(ent_lru(p), now_ms);
    if (ent_lru(p) != c) {
        ent_set_lru(p, c);
    }
}

static inline void ent_view(const uint8_t *p, struct ent_view *v)
{
    unsigned f = p[0];
    size_t off_klen = ENT_HDR + ((f & ENT_X) ? 8 : 0);
    unsigned kcode = (f >> 4) & 3u;
    v->vcode = (f >> 6) & 3u;
    v->klen = load_le(p + off_klen, kcode);
    v->off_vlen = off_klen + ((size_t)1 << kcode);
    v->vlen = load_le(p + v->off_vlen, v->vcode);
    v->off_key = v->off_vlen + ((size_t)1 << v->vcode);
    v->off_val = v->off_key + v->klen;
}

static inline int64_t ent_expire(const uint8_t *p)
{
    int64_t x = 0;
    if (p[0] & ENT_X) {
        memcpy(&x, p + ENT_HDR, 8);
    }
    return x;
}

static inline bool ent_expired(const uint8_t *p, int64_t now_ms)
{
    return (p[0] & ENT_X) && ent_expire(p) <= now_ms;
}

static inline bool ent_key_eq(const uint8_t *p, const void *key, size_t klen)
{
    unsigned f = p[0];
    size_t off = ENT_HDR + ((f & ENT_X) ? 8 : 0);
    unsigned kcode = (f >> 4) & 3u;
    if (load_le(p + off, kcode) != klen) {
        return false;
    }
    off += ((size_t)1 << kcode) + ((size_t)1 << ((f >> 6) & 3u));
    return kv_bytes_eq(p + off, key, klen);
}

/* Usable value capacity of an entry's block. */
static size_t ent_cap(const uint8_t *p, const struct ent_view *v)
{
    size_t usable = mi_usable_size(p);
    KV_ASSERT(usable >= v->off_val + v->vlen);
    size_t cap = usable - v->off_val;
    if (cap > width_max(v->vcode)) {
        cap = width_max(v->vcode);
    }
    return cap < KV_VALUE_BYTES_MAX ? cap : KV_VALUE_BYTES_MAX;
}

/* Allocate an entry with room for `cap` value bytes; the value is left unwritten. */
static uint8_t *ent_alloc(mi_heap_t *heap, uint8_t type, int64_t expire_ms, const void *key,
                          size_t klen, size_t vlen, size_t cap)
{
    KV_ASSERT(klen <= KV_KEY_BYTES_MAX && vlen <= cap && cap <= KV_VALUE_BYTES_MAX);
    KV_ASSERT(type <= ENT_TYPE_MASK && expire_ms >= 0);
    unsigned kcode = width_code(klen), vcode = width_code(cap);
    size_t off_klen = ENT_HDR + (expire_ms ? 8 : 0);
    size_t off_vlen = off_klen + ((size_t)1 << kcode);
    size_t off_key = off_vlen + ((size_t)1 << vcode);
    uint8_t *p = tbl__alloc(heap, off_key + klen + cap, false);
    if (p == NULL) {
        return NULL;
    }
    KV_ASSERT(((uintptr_t)p & ~SLOT_PTR_MASK) == 0);
    p[0] = (uint8_t)(type | (expire_ms ? ENT_X : 0) | (kcode << 4) | (vcode << 6));
    ent_set_lru(p, 0); /* (the caller sets it) */
    if (expire_ms) {
        memcpy(p + ENT_HDR, &expire_ms, 8);
    }
    store_le(p + off_klen, kcode, klen);
    store_le(p + off_vlen, vcode, vlen);
    if (klen) {
        memcpy(p + off_key, key, klen);
    }
    return p;
}

/* A copy of `p` with another expiry time and value capacity (value content kept). */
static uint8_t *ent_clone(mi_heap_t *heap, const uint8_t *p, int64_t expire_ms, size_t cap)
{
    struct ent_view v;
    ent_view(p, &v);
    KV_ASSERT(cap >= v.vlen);
    uint8_t *np =
        ent_alloc(heap, p[0] & ENT_TYPE_MASK, expire_ms, p + v.off_key, v.klen, v.vlen, cap);
    if (np != NULL) {
        np[0] |= p[0] & ENT_RAW;
        ent_set_lru(np, ent_lru(p));
        struct ent_view nv;
        ent_view(np, &nv);
        KV_ASSERT(nv.klen == v.klen && nv.vlen == v.vlen);
        if (v.vlen) {
            memcpy(np + nv.off_val, p + v.off_val, v.vlen);
        }
    }
    return np;
}

static inline uint64_t ent_place_hash(const uint8_t *p)
{
    struct ent_view v;
    ent_view(p, &v);
    return XXH3_64bits(p + v.off_key, v.klen);
}

/* ---- slots and segments ----------------------------------------------------------- */

static inline uint8_t *slot_ent(uint64_t s)
{
    return (uint8_t *)(uintptr_t)(s & SLOT_PTR_MASK);
}

static inline size_t home_of_bits(uint64_t bits)
{
    size_t h = (size_t)(bits & SEG_HOME_MASK);
    return h == SEG_N ? 0 : h; /* the last home folds onto slot 0 */
}

static inline size_t slot_home(uint64_t s)
{
    return home_of_bits(s >> SLOT_TAG_SHIFT);
}

static inline uint64_t slot_make(const uint8_t *p, uint64_t ph)
{
    return (uint64_t)(uintptr_t)p | ((ph & SLOT_TAG_MASK) << SLOT_TAG_SHIFT) |
           ((p[0] & ENT_X) ? SLOT_X : 0);
}

static inline size_t seg_next(size_t i)
{
    return i + 1 == SEG_N ? 0 : i + 1;
}

/* Distance from slot a forward (with wrap) to slot b. */
static inline size_t seg_dist(size_t a, size_t b)
{
    return b >= a ? b - a : b + SEG_N - a;
}

static inline size_t dir_idx(const struct tbl *t, uint64_t ph)
{
    return t->gdepth ? (size_t)(ph >> (64 - t->gdepth)) : 0;
}

/* The hash range [lo, hi) of the depth-d segment holding position pos; hi 0 = 2^64. */
static inline uint64_t range_lo(uint64_t pos, unsigned d)
{
    return d ? pos & ~(UINT64_MAX >> d) : 0;
}

static inline uint64_t range_hi(uint64_t pos, unsigned d)
{
    return d ? range_lo(pos, d) + (UINT64_C(1) << (64 - d)) : 0;
}

static inline bool in_range(uint64_t x, uint64_t lo, uint64_t hi)
{
    return x >= lo && (hi == 0 || x < hi);
}

static inline uint64_t end_min(uint64_t a, uint64_t b)
{
    if (a == 0) {
        return b;
    }
    if (b == 0) {
        return a;
    }
    return a < b ? a : b;
}

static void seg_insert(struct seg *s, uint64_t v)
{
    KV_ASSERT(v != 0 && s->count + 1 < SEG_N);
    size_t i = slot_home(v);
    while (s->slot[i] != 0) {
        i = seg_next(i);
    }
    s->slot[i] = v;
    s->count++;
}

/* Remove slot i by backward shift: later entries of the run move towards home. */
static void seg_remove_at(struct seg *s, size_t i)
{
    KV_ASSERT(i < SEG_N && s->slot[i] != 0);
    KV_ASSERT(s->count > 0);
    size_t j = i;
    for (;;) {
        j = seg_next(j);
        uint64_t v = s->slot[j];
        if (v == 0) {
            break;
        }
        if (seg_dist(slot_home(v), j) >= seg_dist(i, j)) {
            s->slot[i] = v;
            i = j;
        }
    }
    s->slot[i] = 0;
    s->count--;
}

static struct seg *seg_new(struct tbl *t, unsigned depth)
{
    KV_ASSERT(t != NULL && depth <= KV_TBL_DIR_DEPTH_MAX);
    struct seg *s = tbl__alloc(t->heap, sizeof(struct seg), true);
    if (s != NULL) {
        s->depth = depth;
        t->nseg++;
        t->seg_at_depth[depth]++;
    }
    return s;
}

/* Find the slot of a key, or SEG_NONE. *di_out gets the directory index. */
static size_t tbl__find(const struct tbl *t, const void *key, size_t klen, uint64_t ph,
                        size_t *di_out)
{
    size_t di = dir_idx(t, ph);
    const struct seg *s = t->dir[di];
    uint64_t tag = ph & SLOT_TAG_MASK;
    size_t i = home_of_bits(ph);
    *di_out = di;
    for (;;) {
        uint64_t v = s->slot[i];
        if (v == 0) {
            return SEG_NONE;
        }
        if (((v >> SLOT_TAG_SHIFT) & SLOT_TAG_MASK) == tag && ent_key_eq(slot_ent(v), key, klen)) {
            return i;
        }
        i = seg_next(i);
    }
}

/* ---- counters --------------------------------------------------------------------- */

static void tbl__account(struct tbl *t, const uint8_t *p, int sign)
{
    struct ent_view v;
    ent_view(p, &v);
    size_t mem = mi_usable_size(p);
    unsigned x = (p[0] & ENT_X) != 0;
    uint64_t xms = (uint64_t)ent_expire(p);
    if (sign > 0) {
        t->entries++;
        t->key_bytes += v.klen;
        t->val_bytes += v.vlen;
        t->ent_mem_bytes += mem;
        t->expiring += x;
        t->expire_sum += xms;
    } else {
        KV_ASSERT(t->entries > 0 && t->key_bytes >= v.klen && t->val_bytes >= v.vlen);
        KV_ASSERT(t->ent_mem_bytes >= mem && t->expiring >= x && t->expire_sum >= xms);
        t->entries--;
        t->key_bytes -= v.klen;
        t->val_bytes -= v.vlen;
        t->ent_mem_bytes -= mem;
        t->expiring -= x;
        t->expire_sum -= xms;
    }
}

/* An entry's expiry time changes in place (both old and new are set). */
static void tbl__account_expire(struct tbl *t, uint8_t *p, int64_t expire_ms)
{
    KV_ASSERT((p[0] & ENT_X) && expire_ms > 0);
    KV_ASSERT(t->expire_sum >= (uint64_t)ent_expire(p));
    t->expire_sum = t->expire_sum - (uint64_t)ent_expire(p) + (uint64_t)expire_ms;
    memcpy(p + ENT_HDR, &expire_ms, 8);
}

/* ---- directory and segment split / merge ------------------------------------------ */

static int tbl__dir_double(struct tbl *t)
{
    KV_ASSERT(t->gdepth < KV_TBL_DIR_DEPTH_MAX);
    size_t n = (size_t)1 << t->gdepth;
    struct seg **nd = tbl__alloc(t->heap, 2 * n * sizeof(*nd), false);
    if (nd == NULL) {
        return KV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        nd[2 * i] = nd[2 * i + 1] = t->dir[i];
    }
    mi_free(t->dir);
    t->dir = nd;
    t->gdepth++;
    KV_ASSERT(t->seg_at_depth[t->gdepth] == 0);
    return 0;
}

/* Halve the directory when no segment uses its last bit (best effort). */
static void tbl__dir_maybe_halve(struct tbl *t)
{
    if (t->gdepth == 0 || t->seg_at_depth[t->gdepth] != 0) {
        return;
    }
    size_t n = (size_t)1 << (t->gdepth - 1);
    KV_ASSERT(t->nseg <= n);
    struct seg **nd = tbl__alloc(t->heap, n * sizeof(*nd), false);
    if (nd == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        KV_DASSERT(t->dir[2 * i] == t->dir[2 * i + 1]);
        nd[i] = t->dir[2 * i];
    }
    mi_free(t->dir);
    t->dir = nd;
    t->gdepth--;
}

/*
 * Split the segment at directory index di in two. The entries' hashes are recomputed,
 * which needs each entry's key: the slots are copied aside and the entries prefetched
 * SEG_PREFETCH ahead so that their cache misses overlap; then both halves are rebuilt
 * by plain insertion (any insertion order yields valid probe runs). Stack: ~9 KiB.
 */
/*
 * Segment s is about to split or merge: if tbl_sample's hand is in it, the hand moves to
 * the end of s's range. Entries keep their slots across a split or merge but change
 * segments, so a hand left inside would meet again the entries it passed (and cleared)
 * in the other half: a key in use could go at that second meeting. Skipping the rest of
 * s only leaves its entries for the next round of the hand.
 */
static void tbl__hand_leave(struct tbl *t, const struct seg *s)
{
    if (t->dir[dir_idx(t, t->hand_pos)] == s) {
        t->hand_pos = range_hi(t->hand_pos, s->depth);
        t->hand_slot = 0;
    }
}

static int tbl__seg_split(struct tbl *t, size_t di)
{
    struct seg *a = t->dir[di];
    unsigned d = a->depth;
    tbl__hand_leave(t, a);
    KV_ASSERT(d <= t->gdepth && a->count > 0);
    if (d == t->gdepth) {
        if (d >= KV_TBL_DIR_DEPTH_MAX) {
            return KV_ELIMIT;
        }
        int rc = tbl__dir_double(t);
        if (rc != 0) {
            return rc;
        }
        di *= 2;
    }
    struct seg *b = seg_new(t, d + 1);
    if (b == NULL) {
        return KV_ENOMEM;
    }
    uint64_t moved[SEG_N];
    uint8_t up[SEG_N];
    size_t n = 0;
    for (size_t i = 0; i < SEG_N; i++) {
        if (a->slot[i] != 0) {
            moved[n++] = a->slot[i];
        }
    }
    KV_ASSERT(n == a->count);
    uint64_t bit = UINT64_C(1) << (63 - d);
    for (size_t j = 0; j < n; j++) {
        if (j + SEG_PREFETCH < n) {
            __builtin_prefetch(slot_ent(moved[j + SEG_PREFETCH]));
        }
        up[j] = (ent_place_hash(slot_ent(moved[j])) & bit) != 0;
    }
    memset(a->slot, 0, sizeof(a->slot));
    a->count = 0;
    for (size_t j = 0; j < n; j++) {
        seg_insert(up[j] ? b : a, moved[j]);
    }
    t->seg_at_depth[d]--;
    t->seg_at_depth[d + 1]++;
    a->depth = d + 1;
    size_t span = (size_t)1 << (t->gdepth - d);
    size_t start = di & ~(span - 1);
    for (size_t k = start + span / 2; k < start + span; k++) {
        KV_ASSERT(t->dir[k] == a);
        t->dir[k] = b;
    }
    return 0;
}

/* Merge the segment at directory index di with its buddy if both are nearly empty. */
static void tbl__seg_maybe_merge(struct tbl *t, size_t di)
{
    struct seg *a = t->dir[di];
    unsigned d = a->depth;
    if (d == 0 || a->count > SEG_MERGE_FILL) {
        return;
    }
    size_t span = (size_t)1 << (t->gdepth - d);
    size_t start = di & ~(span - 1);
    size_t buddy = start ^ span;
    struct seg *b = t->dir[buddy];
    KV_ASSERT(b != a && buddy < ((size_t)1 << t->gdepth));
    if (b->depth != d || a->count + b->count > SEG_MERGE_FILL) {
        return;
    }
    struct seg *lo = start < buddy ? a : b;
    struct seg *hi = start < buddy ? b : a;
    tbl__hand_leave(t, lo);
    tbl__hand_leave(t, hi);
    for (size_t i = 0; i < SEG_N; i++) {
        if (hi->slot[i] != 0) {
            seg_insert(lo, hi->slot[i]);
        }
    }
    size_t first = start < buddy ? start : buddy;
    for (size_t k = first; k < first + 2 * span; k++) {
        t->dir[k] = lo;
    }
    lo->depth = d - 1;
    t->seg_at_depth[d] -= 2;
    t->seg_at_depth[d - 1]++;
    t->nseg--;
    KV_ASSERT(lo->count <= SEG_MERGE_FILL && t->nseg >= 1);
    mi_free(hi);
    tbl__dir_maybe_halve(t);
}

/*
 * Insert slot value v (placement hash ph; the key is known absent), splitting the
 * target segment first when it is at its fill limit. If the split cannot allocate, the
 * entry still goes in while the segment has room: only a full segment fails.
 */
static int tbl__link(struct tbl *t, uint64_t ph, uint64_t v)
{
    KV_ASSERT(v != 0 && (v & SLOT_PTR_MASK) != 0);
    KV_ASSERT(((v >> SLOT_TAG_SHIFT) & SLOT_TAG_MASK) == (ph & SLOT_TAG_MASK));
    size_t di = dir_idx(t, ph);
    struct seg *s = t->dir[di];
    while (s->count >= SEG_SPLIT_FILL) {
        int rc = tbl__seg_split(t, di);
        if (rc != 0) {
            if (s->count + 2 < SEG_N) {
                break;
            }
            return rc;
        }
        di = dir_idx(t, ph);
        s = t->dir[di];
    }
    seg_insert(s, v);
    tbl__account(t, slot_ent(v), +1);
    return 0;
}

/* Remove slot i of the segment at di (no merge): returns the entry, now unlinked. */
static uint8_t *tbl__unlink(struct tbl *t, size_t di, size_t i)
{
    struct seg *s = t->dir[di];
    KV_ASSERT(i < SEG_N && s->slot[i] != 0);
    uint8_t *p = slot_ent(s->slot[i]);
    KV_ASSERT(p != NULL);
    seg_remove_at(s, i);
    tbl__account(t, p, -1);
    return p;
}

/* ---- split routing ---------------------------------------------------------------- */

/* Move the entry at slot i of src's segment di into dst. */
static int tbl__move(struct tbl *src, struct tbl *dst, size_t di, size_t i, uint64_t ph)
{
    KV_ASSERT(src->split_dst == dst && dst->split_src == src);
    uint64_t v = src->dir[di]->slot[i];
    KV_ASSERT(v != 0 && src->dir[dir_idx(src, ph)] == src->dir[di]);
    int rc = tbl__link(dst, ph, v);
    if (rc != 0) {
        return rc;
    }
    seg_remove_at(src->dir[di], i);
    tbl__account(src, slot_ent(v), -1);
    return 0;
}

/*
 * Pick the table that serves hash h during a split, and make dst authoritative: a key
 * of dst's side not yet moved is pulled from src first. If dst cannot grow to take it,
 * the key is served where it is, in src (its position is at or beyond split_pos, so the
 * walk still moves it later and every split invariant holds).
 */
static void tbl__route(struct tbl **tp, const void *key, size_t klen, uint64_t h, uint64_t ph)
{
    struct tbl *t = *tp;
    struct tbl *src = t->split_dst ? t : t->split_src;
    if (KV_LIKELY(src == NULL)) {
        return;
    }
    KV_ASSERT(src->split_dst != NULL && src->split_dst->split_src == src);
    if (h < src->split_m) {
        *tp = src;
        return;
    }
    struct tbl *dst = src->split_dst;
    KV_ASSERT(dst != src);
    *tp = dst;
    if (ph < src->split_pos) {
        return; /* the walk has passed this position: the key is in dst or nowhere */
    }
    size_t di;
    size_t i = tbl__find(src, key, klen, ph, &di);
    if (i == SEG_NONE) {
        return;
    }
    if (tbl__move(src, dst, di, i, ph) != 0) {
        *tp = src;
        return;
    }
    tbl__seg_maybe_merge(src, di);
}

/* Whether the 8 bytes of v hold byte c (exact: the classic zero-byte test on v ^ c...). */
static inline bool word_has(uint64_t v, uint8_t c)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t x = v ^ (ones * c);
    return ((x - ones) & ~x & (ones << 7)) != 0;
}

/* Whether a key holds '{' (it may have a hash tag): up to 16 bytes by two word tests
 * (memchr is a call of ~25 instructions, and every request's key is tested twice). */
static inline bool has_brace(const void *key, size_t len)
{
    const uint8_t *p = key;
    if (len >= 8 && len <= 16) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + len - 8, 8);
        return word_has(a, '{') || word_has(b, '{');
    }
    if (len < 8) {
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '{') {
                return true;
            }
        }
        return false;
    }
    return memchr(key, '{', len) != NULL;
}

static inline uint64_t tbl__place(const void *key, size_t klen, uint64_t h)
{
    KV_DASSERT(h == tbl_hash(key, klen));
    if (KV_LIKELY(!has_brace(key, klen))) {
        return h;
    }
    return XXH3_64bits(key, klen);
}

/* Where a looked-up key is: table, directory index, slot, placement hash. */
struct loc {
    struct tbl *t;
    size_t di;
    size_t i; /* SEG_NONE if absent */
    uint64_t ph;
};

/* Route, find, and drop the key if expired. */
/* An expired entry is about to go: tell the owner (tbl_on_expired). */
static inline void tbl__expired(const struct tbl *t, const uint8_t *p)
{
    if (t->on_expired != NULL) {
        t->on_expired(t->on_expired_ctx, t->on_expired_tag, (const struct tbl_entry *)p);
    }
}

static void tbl__lookup(struct tbl *t, const void *key, size_t klen, uint64_t h, int64_t now_ms,
                        struct loc *l)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL && (key != NULL || klen == 0));
    l->ph = tbl__place(key, klen, h);
    l->t = t;
    tbl__route(&l->t, key, klen, h, l->ph);
    l->i = tbl__find(l->t, key, klen, l->ph, &l->di);
    KV_ASSERT(l->i == SEG_NONE || l->i < SEG_N);
    if (l->i != SEG_NONE) {
        uint64_t v = l->t->dir[l->di]->slot[l->i];
        if (KV_UNLIKELY(v & SLOT_X) && ent_expired(slot_ent(v), now_ms)) {
            tbl__expired(l->t, slot_ent(v));
            mi_free(tbl__unlink(l->t, l->di, l->i));
            tbl__seg_maybe_merge(l->t, l->di);
            l->i = SEG_NONE;
        }
    }
}

/* ---- public: hashing, lifecycle --------------------------------------------------- */

uint64_t tbl_hash_place(const void *key, size_t len, uint64_t *ph)
{
    KV_ASSERT(key != NULL || len == 0);
    if (KV_LIKELY(!has_brace(key, len))) {
        *ph = XXH3_64bits(key, len); /* no tag: the placement is the hash */
        return *ph;
    }
    *ph = XXH3_64bits(key, len);
    return tbl_hash(key, len);
}

uint64_t tbl_hash(const void *key, size_t len)
{
    KV_ASSERT(key != NULL || len == 0);
    const char *k = key;
    const char *open = has_brace(key, len) ? memchr(k, '{', len) : NULL;
    if (open != NULL) {
        size_t rest = len - (size_t)(open - k) - 1;
        const char *close = rest ? memchr(open + 1, '}', rest) : NULL;
        if (close != NULL && close > open + 1) {
            return XXH3_64bits(open + 1, (size_t)(close - open - 1));
        }
    }
    return XXH3_64bits(key, len);
}

struct tbl *tbl_create(struct mi_heap_s *heap)
{
    KV_ASSERT(heap != NULL);
    struct tbl *t = tbl__alloc(heap, sizeof(*t), true);
    if (t == NULL) {
        return NULL;
    }
    t->heap = heap;
    t->owner = pthread_self();
    t->dir = tbl__alloc(heap, sizeof(*t->dir), false);
    if (t->dir == NULL) {
        mi_free(t);
        return NULL;
    }
    t->dir[0] = seg_new(t, 0);
    if (t->dir[0] == NULL) {
        mi_free(t->dir);
        mi_free(t);
        return NULL;
    }
    KV_ASSERT(t->nseg == 1 && t->gdepth == 0);
    return t;
}

void tbl_destroy(struct tbl *t)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    if (t == NULL) {
        return;
    }
    while (!tbl_destroy_step(t, SIZE_MAX)) {
    }
}

bool tbl_destroy_step(struct tbl *t, size_t max_segs)
{
    KV_DASSERT(tbl__owned(t));
    KV_ASSERT(t != NULL && max_segs > 0);
    KV_ASSERT(t->split_dst == NULL && t->split_src == NULL);
    size_t n = (size_t)1 << t->gdepth;
    for (size_t k = 0; k < max_segs && t->drop_di < n; k++) {
        struct seg *s = t->dir[t->drop_di];
        size_t freed = 0;
        for (size_t i = 0; i < SEG_N; i++) {
            if (s->slot[i] != 0) {
                mi_free(slot_ent(s->slot[i]));
                freed++;
            }
        }
        KV_ASSERT(freed == s->count && freed <= t->entries && t->nseg > 0);
        t->entries -= freed;
        t->nseg--;
        t->drop_di += (size_t)1 << (t->gdepth - s->depth);
        mi_free(s);
    }
    if (t->drop_di < n) {
        return false;
    }
    KV_ASSERT(t->nseg == 0 && t->entries == 0);
    mi_free(t->dir);
    mi_free(t);
    return true;
}

/* ---- public: key operations ------------------------------------------------------- */

const struct tbl_entry *tbl_get(struct tbl *t, const void *key, size_t key_len, uint64_t h,
                                int64_t now_ms)
{
    struct loc l;
    KV_ASSERT(key_len <= KV_KEY_BYTES_MAX);
    tbl__lookup(t, key, key_len, h, now_ms, &l);
    if (l.i == SEG_NONE) {
        return NULL;
    }
    uint8_t *p = slot_ent(l.t->dir[l.di]->slot[l.i]);
    KV_DASSERT(ent_key_eq(p, key, key_len));
    if (!(p[0] & ENT_REF)) { /* a store only on the first access since the last sample */
        p[0] |= ENT_REF;
    }
    ent_touch(p, now_ms);
    return (const struct tbl_entry *)p;
}

const struct tbl_entry *tbl_find(struct tbl *t, const void *key, size_t key_len, uint64_t h)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL && key_len <= KV_KEY_BYTES_MAX);
    struct loc l;
    l.ph = tbl__place(key, key_len, h);
    l.t = t;
    tbl__route(&l.t, key, key_len, h, l.ph);
    l.i = tbl__find(l.t, key, key_len, l.ph, &l.di);
    return l.i == SEG_NONE ? NULL : (const struct tbl_entry *)slot_ent(l.t->dir[l.di]->slot[l.i]);
}

const struct tbl_entry *tbl_peek(struct tbl *t, const void *key, size_t key_len, uint64_t h,
                                 int64_t now_ms)
{
    struct loc l;
    KV_ASSERT(key_len <= KV_KEY_BYTES_MAX);
    tbl__lookup(t, key, key_len, h, now_ms, &l);
    return l.i == SEG_NONE ? NULL : (const struct tbl_entry *)slot_ent(l.t->dir[l.di]->slot[l.i]);
}

/*
 * SET over an existing key, in place: possible when the caller does not take the old
 * entry, the header keeps its layout (type, expiry present or not) and the new value
 * fits the block without leaving it more than half empty. Saves a free and a malloc.
 */
static bool tbl__overwrite(struct tbl *t, uint8_t *p, const struct tbl_put_args *args,
                           int64_t expire_ms, uint32_t lru)
{
    KV_ASSERT(t != NULL && p != NULL);
    if ((p[0] & ENT_TYPE_MASK) != args->type || (ent_expire(p) != 0) != (expire_ms != 0)) {
        return false;
    }
    struct ent_view v;
    ent_view(p, &v);
    size_t cap = ent_cap(p, &v);
    if (args->val_len > cap) {
        return false;
    }
    if (args->val_len < cap / 2) {
        /* much smaller: kept only if a new entry for it would take a block of the same
         * size anyway (a small value within its allocator size class), else it shrinks */
        size_t need =
            v.off_vlen + ((size_t)1 << width_code(args->val_len)) + v.klen + args->val_len;
        if (mi_good_size(need) < mi_usable_size(p)) {
            return false;
        }
    }
    /* a new value: marked only if the caller says it is an edited one (RENAME, COPY) */
    p[0] = (uint8_t)((p[0] & ~ENT_RAW) | ((args->flags & TBL_RAW) ? ENT_RAW : 0));
    if (expire_ms != 0) {
        tbl__account_expire(t, p, expire_ms);
    }
    p[0] |= ENT_REF;
    ent_set_lru(p, lru);
    if (args->val_len) {
        memmove(p + v.off_val, args->val, args->val_len); /* val may alias the old value */
    }
    store_le(p + v.off_vlen, v.vcode, args->val_len);
    t->val_bytes = t->val_bytes - v.vlen + args->val_len;
    KV_ASSERT(ent_expire(p) == expire_ms);
    return true;
}

int tbl_put(struct tbl *t, const void *key, size_t key_len, uint64_t h,
            const struct tbl_put_args *args, int64_t now_ms, struct tbl_entry **old)
{
    KV_ASSERT(args != NULL && (args->val != NULL || args->val_len == 0));
    KV_ASSERT(args->type <= ENT_TYPE_MASK && args->expire_ms >= 0);
    if (old != NULL) {
        *old = NULL;
    }
    if (key_len > KV_KEY_BYTES_MAX || args->val_len > KV_VALUE_BYTES_MAX) {
        return KV_ELIMIT;
    }
    struct loc l;
    tbl__lookup(t, key, key_len, h, now_ms, &l);
    bool found = l.i != SEG_NONE;
    if ((args->flags & TBL_NX) && found) {
        return KV_EEXIST;
    }
    if ((args->flags & TBL_XX) && !found) {
        return KV_ENOTFOUND;
    }
    uint8_t *op = found ? slot_ent(l.t->dir[l.di]->slot[l.i]) : NULL;
    int64_t expire_ms = args->expire_ms;
    if ((args->flags & TBL_KEEPTTL) && op != NULL) {
        expire_ms = ent_expire(op);
    }
    /* its access: a use of the key it replaces, or a new key's; RESTORE's IDLETIME (its
     * access time that long ago) or FREQ (its LFU counter), as Redis, each only in its
     * mode */
    uint32_t lru;
    if (args->flags & TBL_ACCESS) {
        lru = args->access & 0xffffffu;
    } else if (op != NULL && !(args->flags & TBL_NEW_ACCESS)) {
        lru = access_touch(ent_lru(op), now_ms);
    } else {
        lru = access_new(now_ms);
    }
    if (!lfu_on() && args->idle_s > 0) {
        lru = (lru_clock(now_ms) - args->idle_s) & 0xffffffu;
    } else if (lfu_on() && (args->flags & TBL_FREQ)) {
        lru = lfu_minutes(now_ms) << 8 | args->freq;
    }
    if (op != NULL && old == NULL && tbl__overwrite(l.t, op, args, expire_ms, lru)) {
        l.t->dir[l.di]->slot[l.i] = slot_make(op, l.ph); /* the expiry bit may change */
        return 0;
    }
    uint8_t *p =
        ent_alloc(l.t->heap, args->type, expire_ms, key, key_len, args->val_len, args->val_len);
    if (p == NULL) {
        return KV_ENOMEM;
    }
    p[0] |= (args->flags & TBL_RAW) ? ENT_RAW : 0;
    ent_set_lru(p, lru);
    if (args->val_len) {
        struct ent_view v;
        ent_view(p, &v);
        memcpy(p + v.off_val, args->val, args->val_len);
    }
    if (!found) {
        int rc = tbl__link(l.t, l.ph, slot_make(p, l.ph));
        if (rc != 0) {
            mi_free(p);
        }
        return rc;
    }
    p[0] |= ENT_REF; /* a new value for a key in the table: a use of the key */
    l.t->dir[l.di]->slot[l.i] = slot_make(p, l.ph);
    tbl__account(l.t, op, -1);
    tbl__account(l.t, p, +1);
    if (old != NULL) {
        *old = (struct tbl_entry *)op;
    } else {
        mi_free(op);
    }
    return 0;
}

int tbl_del(struct tbl *t, const void *key, size_t key_len, uint64_t h, int64_t now_ms,
            struct tbl_entry **old)
{
    if (old != NULL) {
        *old = NULL;
    }
    KV_ASSERT(t != NULL && key_len <= KV_KEY_BYTES_MAX);
    struct loc l;
    tbl__lookup(t, key, key_len, h, now_ms, &l);
    if (l.i == SEG_NONE) {
        return KV_ENOTFOUND;
    }
    uint8_t *p = tbl__unlink(l.t, l.di, l.i);
    KV_ASSERT(ent_key_eq(p, key, key_len));
    tbl__seg_maybe_merge(l.t, l.di);
    if (old != NULL) {
        *old = (struct tbl_entry *)p;
    } else {
        mi_free(p);
    }
    return 0;
}

int tbl_expire_set(struct tbl *t, const void *key, size_t key_len, uint64_t h, int64_t now_ms,
                   int64_t expire_ms)
{
    KV_ASSERT(expire_ms >= 0);
    struct loc l;
    tbl__lookup(t, key, key_len, h, now_ms, &l);
    if (l.i == SEG_NONE) {
        return KV_ENOTFOUND;
    }
    uint64_t *slot = &l.t->dir[l.di]->slot[l.i];
    uint8_t *p = slot_ent(*slot);
    if ((ent_expire(p) != 0) == (expire_ms != 0)) {
        if (expire_ms != 0) {
            tbl__account_expire(l.t, p, expire_ms); /* same layout: overwrite in place */
        }
        return 0;
    }
    /* Adding or dropping the 8-byte expiry field changes the layout: copy the entry. */
    struct ent_view v;
    ent_view(p, &v);
    uint8_t *np = ent_clone(l.t->heap, p, expire_ms, v.vlen);
    if (np == NULL) {
        return KV_ENOMEM;
    }
    *slot = slot_make(np, l.ph);
    tbl__account(l.t, p, -1);
    tbl__account(l.t, np, +1);
    mi_free(p);
    KV_ASSERT(ent_expire(np) == expire_ms);
    return 0;
}

static int tbl__modify_create(struct tbl *t, const void *key, size_t klen, uint64_t ph, size_t vlen,
                              bool raw, int64_t now_ms, struct tbl_mod *out)
{
    KV_ASSERT(out != NULL && vlen <= KV_VALUE_BYTES_MAX);
    uint8_t *p = ent_alloc(t->heap, TBL_TYPE_STRING, 0, key, klen, vlen, vlen);
    if (p == NULL) {
        return KV_ENOMEM;
    }
    p[0] |= raw ? ENT_RAW : 0;
    ent_set_lru(p, access_new(now_ms));
    struct ent_view v;
    ent_view(p, &v);
    KV_ASSERT(v.klen == klen && v.vlen == vlen);
    memset(p + v.off_val, 0, vlen);
    int rc = tbl__link(t, ph, slot_make(p, ph));
    if (rc != 0) {
        mi_free(p);
        return rc;
    }
    out->val = (char *)p + v.off_val;
    out->old_len = 0;
    out->created = true;
    return 0;
}

int tbl_modify(struct tbl *t, const void *key, size_t key_len, uint64_t h, int64_t now_ms,
               size_t val_len, unsigned flags, struct tbl_mod *out)
{
    KV_ASSERT(out != NULL);
    KV_ASSERT((flags & ~(unsigned)(TBL_XX | TBL_RAW | TBL_RAW_NEW)) == 0);
    if (key_len > KV_KEY_BYTES_MAX || val_len > KV_VALUE_BYTES_MAX) {
        return KV_ELIMIT;
    }
    struct loc l;
    tbl__lookup(t, key, key_len, h, now_ms, &l);
    if (l.i == SEG_NONE) {
        if (flags & TBL_XX) {
            return KV_ENOTFOUND;
        }
        return tbl__modify_create(l.t, key, key_len, l.ph, val_len, (flags & TBL_RAW_NEW) != 0,
                                  now_ms, out);
    }
    uint64_t *slot = &l.t->dir[l.di]->slot[l.i];
    uint8_t *p = slot_ent(*slot);
    struct ent_view v;
    ent_view(p, &v);
    size_t cap = ent_cap(p, &v);
    out->old_len = v.vlen;
    out->created = false;
    if (val_len > cap) {
        /* Grow geometrically so that repeated appends are amortized O(1) per byte. */
        size_t ncap = cap * 2 > val_len ? cap * 2 : val_len;
        ncap = ncap < KV_VALUE_BYTES_MAX ? ncap : KV_VALUE_BYTES_MAX;
        uint8_t *np = ent_clone(l.t->heap, p, ent_expire(p), ncap);
        if (np == NULL) {
            return KV_ENOMEM;
        }
        *slot = slot_make(np, l.ph);
        tbl__account(l.t, p, -1);
        tbl__account(l.t, np, +1);
        mi_free(p);
        p = np;
        ent_view(p, &v);
        KV_ASSERT(ent_cap(p, &v) >= val_len);
    }
    p[0] = (uint8_t)((p[0] & ~ENT_RAW) | ENT_REF | ((flags & TBL_RAW) ? ENT_RAW : 0));
    if (!lfu_on()) { /* (LFU: its callers' lookup counted the use, once, as Redis's) */
        ent_touch(p, now_ms);
    }
    if (val_len > v.vlen) {
        memset(p + v.off_val + v.vlen, 0, val_len - v.vlen);
    }
    store_le(p + v.off_vlen, v.vcode, val_len);
    l.t->val_bytes = l.t->val_bytes - v.vlen + val_len;
    out->val = (char *)p + v.off_val;
    return 0;
}

/* ---- public: walks (active expiry, scan, split) ------------------------------------ */

size_t tbl_expire_step(struct tbl *t, int64_t now_ms, uint64_t *cursor, size_t slots_budget)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL && cursor != NULL);
    size_t removed = 0, visited = 0;
    do {
        size_t di = dir_idx(t, *cursor);
        struct seg *s = t->dir[di];
        for (size_t i = 0; i < SEG_N;) {
            uint64_t v = s->slot[i];
            if ((v & SLOT_X) && ent_expired(slot_ent(v), now_ms)) {
                tbl__expired(t, slot_ent(v));
                mi_free(tbl__unlink(t, di, i)); /* a later entry may shift into i */
                removed++;
                continue;
            }
            i++;
        }
        visited += SEG_N;
        KV_ASSERT(s->count < SEG_N);
        uint64_t hi = range_hi(*cursor, s->depth);
        tbl__seg_maybe_merge(t, di);
        *cursor = hi;
    } while (*cursor != 0 && visited < slots_budget);
    return removed;
}

/*
 * During a split, move from src the keys of dst's side with placement in [lo, hi).
 * Returns false if some could not move (dst could not grow): they are still in src.
 */
static bool tbl__scan_pull(struct tbl *dst, uint64_t lo, uint64_t hi)
{
    struct tbl *src = dst->split_src;
    KV_ASSERT(src != NULL && src->split_dst == dst);
    if (hi != 0 && hi <= src->split_pos) {
        return true; /* the split walk has passed the whole range */
    }
    bool all = true;
    size_t di = dir_idx(src, lo);
    struct seg *s = src->dir[di];
    KV_ASSERT(hi == 0 || hi <= range_hi(lo, s->depth) || range_hi(lo, s->depth) == 0);
    for (size_t i = 0; i < SEG_N;) {
        uint64_t v = s->slot[i];
        if (v != 0) {
            const uint8_t *p = slot_ent(v);
            struct ent_view ev;
            ent_view(p, &ev);
            uint64_t ph = XXH3_64bits(p + ev.off_key, ev.klen);
            if (in_range(ph, lo, hi) && tbl_hash(p + ev.off_key, ev.klen) >= src->split_m) {
                if (tbl__move(src, dst, di, i, ph) == 0) {
                    continue; /* a later entry may shift into i */
                }
                all = false;
            }
        }
        i++;
    }
    tbl__seg_maybe_merge(src, di);
    return all;
}

/* Emit the live entries of `s` with placement in [lo, hi) (and h >= m if m_min). */
static void tbl__scan_emit(const struct seg *s, uint64_t lo, uint64_t hi, bool filter_pos,
                           const uint64_t *m_max, const uint64_t *m_min, int64_t now_ms,
                           tbl_scan_fn *fn, void *ctx)
{
    KV_ASSERT(s != NULL && fn != NULL);
    KV_ASSERT(m_max == NULL || m_min == NULL);
    for (size_t i = 0; i < SEG_N; i++) {
        uint64_t v = s->slot[i];
        if (v == 0) {
            continue;
        }
        const uint8_t *p = slot_ent(v);
        if ((v & SLOT_X) && ent_expired(p, now_ms)) {
            continue;
        }
        if (filter_pos || m_max != NULL || m_min != NULL) {
            struct ent_view ev;
            ent_view(p, &ev);
            if (filter_pos && !in_range(XXH3_64bits(p + ev.off_key, ev.klen), lo, hi)) {
                continue;
            }
            uint64_t h = m_max || m_min ? tbl_hash(p + ev.off_key, ev.klen) : 0;
            if ((m_max != NULL && h >= *m_max) || (m_min != NULL && h < *m_min)) {
                continue;
            }
        }
        fn(ctx, (const struct tbl_entry *)p);
    }
}

uint64_t tbl_scan(struct tbl *t, uint64_t cursor, int64_t now_ms, tbl_scan_fn *fn, void *ctx)
{
    KV_ASSERT(t != NULL && fn != NULL);
    KV_DASSERT(tbl__owned(t));
    uint64_t end = 0;
    bool pulled_all = true;
    struct tbl *src = t->split_src;
    if (src != NULL) {
        /* dst of a split: the range visited is also bounded by src's segment. */
        end = range_hi(cursor, src->dir[dir_idx(src, cursor)]->depth);
        end = end_min(end, range_hi(cursor, t->dir[dir_idx(t, cursor)]->depth));
        pulled_all = tbl__scan_pull(t, cursor, end);
    }
    const struct seg *s = t->dir[dir_idx(t, cursor)]; /* after the pull: may have split */
    uint64_t lo = range_lo(cursor, s->depth), hi = range_hi(cursor, s->depth);
    end = src != NULL ? end_min(end, hi) : hi;
    KV_ASSERT(in_range(cursor, lo, hi));
    const uint64_t *m_max = t->split_dst != NULL ? &t->split_m : NULL; /* src: h < m only */
    tbl__scan_emit(s, cursor, end, cursor != lo || end != hi, m_max, NULL, now_ms, fn, ctx);
    if (!pulled_all) {
        /* Keys of this range that dst could not take are still in src: emit them there. */
        tbl__scan_emit(src->dir[dir_idx(src, cursor)], cursor, end, true, NULL, &src->split_m,
                       now_ms, fn, ctx);
    }
    return end;
}

const struct tbl_entry *tbl_sample(struct tbl *t, uint64_t r, unsigned flags, bool *referenced)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL &&
              (flags & ~(unsigned)(TBL_SAMPLE_EXPIRING | TBL_SAMPLE_CLEAR | TBL_SAMPLE_HAND)) == 0);
    bool expiring_only = (flags & TBL_SAMPLE_EXPIRING) != 0;
    if (t->entries == 0 || (expiring_only && t->expiring == 0)) {
        return NULL;
    }
    /* The top bits of r pick the segment, the low ones the first slot; or the hand goes
     * on from where it stopped, through the slots in order (it does not wrap inside a
     * segment). A partition's keys share the top bits of their hashes, so most of the
     * directory can point at empty segments: those are skipped (a look at their count)
     * and not counted. */
    bool hand = (flags & TBL_SAMPLE_HAND) != 0;
    uint64_t pos = hand ? t->hand_pos : r;
    size_t start = hand ? t->hand_slot : (size_t)(r % SEG_N);
    /* A random position: redrawn while it names an empty segment, so that the segments
     * after a long empty range (a partition's first one) are not met far more often than
     * the others. */
    for (unsigned k = 0; !hand && k < TBL_SAMPLE_REDRAWS && t->dir[dir_idx(t, pos)]->count == 0;
         k++) {
        r = r * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        pos = r ^ (r >> 29);
    }
    for (size_t k = 0, seen = 0; k < TBL_SAMPLE_SEGS && seen <= t->nseg; seen++) {
        const struct seg *s = t->dir[dir_idx(t, pos)];
        k += s->count > 0;
        size_t span = hand ? SEG_N - (start < SEG_N ? start : SEG_N) : SEG_N;
        for (size_t n = 0, i = start; s->count > 0 && n < span; n++, i = seg_next(i)) {
            uint64_t v = s->slot[i];
            if (v != 0 && (!expiring_only || (v & SLOT_X))) {
                uint8_t *p = slot_ent(v);
                if (hand) {
                    t->hand_pos = pos;
                    t->hand_slot = i + 1;
                }
                if (referenced != NULL) {
                    *referenced = (p[0] & ENT_REF) != 0;
                }
                if (flags & TBL_SAMPLE_CLEAR) {
                    p[0] &= (uint8_t)~ENT_REF;
                }
                return (const struct tbl_entry *)p;
            }
        }
        pos = range_hi(pos, s->depth); /* the next segment (0 after the last: wraps) */
        start = 0;
    }
    if (hand) {
        t->hand_pos = pos;
        t->hand_slot = 0;
    }
    return NULL;
}

int tbl_split_begin(struct tbl *src, struct tbl *dst, uint64_t m)
{
    KV_DASSERT(tbl__owned(src) && tbl__owned(dst));
    KV_ASSERT(src != NULL && dst != NULL && src != dst);
    if (dst->entries != 0 || tbl_splitting(src) || tbl_splitting(dst)) {
        return KV_EINVAL;
    }
    KV_ASSERT(src->heap != NULL && dst->heap != NULL);
    src->split_dst = dst;
    src->split_m = m;
    src->split_pos = 0;
    dst->split_src = src;
    return 0;
}

int tbl_split_step(struct tbl *src, size_t slots_budget)
{
    KV_DASSERT(src == NULL || tbl__owned(src));
    KV_ASSERT(src != NULL && src->split_dst != NULL);
    struct tbl *dst = src->split_dst;
    KV_ASSERT(dst->split_src == src);
    size_t visited = 0;
    do {
        uint64_t pos = src->split_pos;
        size_t di = dir_idx(src, pos);
        struct seg *s = src->dir[di];
        for (size_t i = 0; i < SEG_N;) {
            uint64_t v = s->slot[i];
            if (v != 0) {
                const uint8_t *p = slot_ent(v);
                struct ent_view ev;
                ent_view(p, &ev);
                const uint8_t *k = p + ev.off_key;
                uint64_t h = tbl_hash(k, ev.klen);
                if (h >= src->split_m) {
                    int rc = tbl__move(src, dst, di, i, tbl__place(k, ev.klen, h));
                    if (rc != 0) {
                        return rc; /* nothing lost: the walk resumes at this segment */
                    }
                    continue; /* a later entry may shift into i */
                }
            }
            i++;
        }
        visited += SEG_N;
        uint64_t hi = range_hi(pos, s->depth);
        tbl__seg_maybe_merge(src, di);
        src->split_pos = hi;
        if (hi == 0) {
            src->split_dst = NULL;
            dst->split_src = NULL;
            src->split_m = 0;
            return 1;
        }
    } while (visited < slots_budget);
    return 0;
}

void tbl_prefetch(const struct tbl *t, const void *key, size_t key_len, uint64_t h, bool entry)
{
    KV_ASSERT(key != NULL || key_len == 0);
    tbl_prefetch_at(t, tbl__place(key, key_len, h), entry);
}

uint64_t tbl_place(const void *key, size_t key_len, uint64_t h)
{
    KV_ASSERT(key != NULL || key_len == 0);
    return tbl__place(key, key_len, h);
}

void tbl_prefetch_at(const struct tbl *t, uint64_t ph, bool entry)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL);
    const struct seg *s = t->dir[dir_idx(t, ph)];
    size_t i = home_of_bits(ph);
    if (!entry) {
        __builtin_prefetch(&s->slot[i]);
        return;
    }
    uint64_t tag = ph & SLOT_TAG_MASK;
    for (uint64_t v; (v = s->slot[i]) != 0; i = seg_next(i)) {
        if (((v >> SLOT_TAG_SHIFT) & SLOT_TAG_MASK) == tag) {
            __builtin_prefetch(slot_ent(v));
            return;
        }
    }
}

void tbl_owner_adopt(struct tbl *t)
{
    KV_ASSERT(t != NULL && t->dir != NULL);
    KV_ASSERT(t->split_dst == NULL && t->split_src == NULL);
    t->owner = pthread_self();
}

bool tbl_splitting(const struct tbl *t)
{
    KV_ASSERT(t != NULL);
    return t->split_dst != NULL || t->split_src != NULL;
}

/* ---- public: stats, check, entries -------------------------------------------------- */

void tbl_stats(const struct tbl *t, struct tbl_stats *out)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL && out != NULL);
    out->entries = t->entries;
    out->key_bytes = t->key_bytes;
    out->val_bytes = t->val_bytes;
    out->segments = t->nseg;
    out->dir_depth = t->gdepth;
    out->slot_bytes = t->nseg * sizeof(struct seg);
    out->expiring = t->expiring;
    out->expire_avg_ms = t->expiring ? (int64_t)(t->expire_sum / t->expiring) : 0;
    out->mem_bytes =
        t->ent_mem_bytes + out->slot_bytes + mi_usable_size(t->dir) + mi_usable_size(t);
}

struct tbl__sums {
    size_t key_bytes, val_bytes, mem, entries, expiring;
    unsigned __int128 expire_sum;
};

static void tbl__check_seg(const struct tbl *t, const struct seg *s, struct tbl__sums *sums)
{
    KV_ASSERT(s->count < SEG_N && s->depth <= t->gdepth);
    size_t n = 0;
    for (size_t i = 0; i < SEG_N; i++) {
        uint64_t v = s->slot[i];
        if (v == 0) {
            continue;
        }
        n++;
        const uint8_t *p = slot_ent(v);
        struct ent_view ev;
        ent_view(p, &ev);
        const uint8_t *k = p + ev.off_key;
        uint64_t ph = XXH3_64bits(k, ev.klen);
        KV_ASSERT(((v >> SLOT_TAG_SHIFT) & SLOT_TAG_MASK) == (ph & SLOT_TAG_MASK));
        KV_ASSERT(!!(v & SLOT_X) == !!(p[0] & ENT_X));
        KV_ASSERT(ev.klen <= KV_KEY_BYTES_MAX && ev.vlen <= ent_cap(p, &ev));
        KV_ASSERT(t->dir[dir_idx(t, ph)] == s); /* the right segment for its hash */
        for (size_t j = slot_home(v); j != i; j = seg_next(j)) {
            KV_ASSERT(s->slot[j] != 0); /* reachable from home */
        }
        size_t fdi;
        KV_ASSERT(tbl__find(t, k, ev.klen, ph, &fdi) == i && t->dir[fdi] == s); /* once */
        uint64_t h = tbl_hash(k, ev.klen);
        if (t->split_dst != NULL && ph < t->split_pos) {
            KV_ASSERT(h < t->split_m);
        }
        if (t->split_src != NULL) {
            KV_ASSERT(h >= t->split_src->split_m);
        }
        sums->key_bytes += ev.klen;
        sums->val_bytes += ev.vlen;
        sums->mem += mi_usable_size(p);
        sums->expiring += (p[0] & ENT_X) != 0;
        sums->expire_sum += (uint64_t)ent_expire(p);
    }
    KV_ASSERT(n == s->count);
    sums->entries += n;
}

void tbl_check(const struct tbl *t)
{
    KV_DASSERT(t == NULL || tbl__owned(t));
    KV_ASSERT(t != NULL && t->dir != NULL && t->gdepth <= KV_TBL_DIR_DEPTH_MAX);
    KV_ASSERT(t->split_dst == NULL || t->split_dst->split_src == t);
    KV_ASSERT(t->split_src == NULL || t->split_src->split_dst == t);
    size_t n = (size_t)1 << t->gdepth, nseg = 0;
    size_t at_depth[KV_TBL_DIR_DEPTH_MAX + 1] = {0};
    struct tbl__sums sums = {0};
    for (size_t di = 0; di < n;) {
        const struct seg *s = t->dir[di];
        KV_ASSERT(s != NULL && s->depth <= t->gdepth);
        size_t span = (size_t)1 << (t->gdepth - s->depth);
        KV_ASSERT(di % span == 0);
        for (size_t k = di; k < di + span; k++) {
            KV_ASSERT(t->dir[k] == s);
        }
        if (di + span < n) {
            KV_ASSERT(t->dir[di + span] != s);
        }
        tbl__check_seg(t, s, &sums);
        at_depth[s->depth]++;
        nseg++;
        di += span;
    }
    KV_ASSERT(nseg == t->nseg);
    for (unsigned d = 0; d <= KV_TBL_DIR_DEPTH_MAX; d++) {
        KV_ASSERT(at_depth[d] == t->seg_at_depth[d]);
    }
    KV_ASSERT(sums.key_bytes == t->key_bytes && sums.val_bytes == t->val_bytes);
    KV_ASSERT(sums.mem == t->ent_mem_bytes && sums.entries == t->entries);
    KV_ASSERT(sums.expiring == t->expiring && sums.expire_sum == t->expire_sum);
}

void tbl_entry_free(struct tbl_entry *e)
{
    mi_free(e);
}

const void *tbl_entry_key(const struct tbl_entry *e, size_t *len)
{
    KV_ASSERT(e != NULL && len != NULL);
    struct ent_view v;
    ent_view((const uint8_t *)e, &v);
    *len = v.klen;
    return (const uint8_t *)e + v.off_key;
}

size_t tbl_entry_mem(const struct tbl_entry *e)
{
    KV_ASSERT(e != NULL);
    return mi_usable_size(e);
}

const void *tbl_entry_val(const struct tbl_entry *e, size_t *len)
{
    KV_ASSERT(e != NULL && len != NULL);
    struct ent_view v;
    ent_view((const uint8_t *)e, &v);
    *len = v.vlen;
    return (const uint8_t *)e + v.off_val;
}

uint32_t tbl_entry_lru(const struct tbl_entry *e)
{
    KV_ASSERT(e != NULL);
    return ent_lru((const uint8_t *)e);
}

uint32_t tbl_entry_freq(const struct tbl_entry *e, int64_t now_ms)
{
    KV_ASSERT(e != NULL);
    return lfu_decayed(ent_lru((const uint8_t *)e), now_ms);
}

uint64_t tbl_entry_idle_s(const struct tbl_entry *e, int64_t now_ms)
{
    KV_ASSERT(e != NULL);
    uint32_t now = lru_clock(now_ms), then = ent_lru((const uint8_t *)e);
    return now >= then ? now - then : now + (0x1000000u - then); /* as Redis's estimate */
}

uint8_t tbl_entry_type(const struct tbl_entry *e)
{
    KV_ASSERT(e != NULL);
    return e->flags & ENT_TYPE_MASK;
}

bool tbl_entry_raw(const struct tbl_entry *e)
{
    KV_ASSERT(e != NULL);
    return (e->flags & ENT_RAW) != 0;
}

void tbl_on_expired(struct tbl *t, tbl_expired_fn *fn, void *ctx, uint32_t tag)
{
    KV_ASSERT(t != NULL);
    t->on_expired = fn;
    t->on_expired_ctx = ctx;
    t->on_expired_tag = tag;
}

bool tbl_entry_referenced(const struct tbl_entry *e)
{
    return (e->flags & ENT_REF) != 0;
}

int64_t tbl_entry_expire_ms(const struct tbl_entry *e)
{
    KV_ASSERT(e != NULL);
    return ent_expire((const uint8_t *)e);
}
