/*
 * evict.c: maxmemory and the eviction policies (see evict.h for the model).
 *
 * Measuring. used = this shard's tables counted now + the other shards' published
 * figures (one turn old at most). Over the limit by `excess`, this shard sheds
 * excess * own / used bytes (rounded up): with every shard doing the same, the excess goes
 * once, not once per shard, even when all of them see it at the same moment (a lowered
 * maxmemory). The bytes an eviction frees are the entry's allocation (tbl_entry_mem);
 * segments that merge as a table empties free more, which the next measure sees.
 *
 * Choosing. Tables are picked at random among this shard's (partition, database) pairs
 * that hold candidates, then a key within the table by tbl_sample: at random (-random,
 * and the samples of -ttl and -lfu), or by the table's clock hand (-lru): the hand clears
 * the referenced bits it passes and stops at the first key whose bit was clear, so a key
 * used at least once per round of the hand stays.
 */
#include "evict.h"

#include "cmd.h"
#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_config.h"
#include "kvd_settings.h"
#include "resp_parse.h"
#include "server.h"
#include "tbl.h"

#include <stddef.h>

const char *const evict_policy_names[] = {
    "volatile-lru", "volatile-lfu",   "volatile-random", "volatile-ttl", "allkeys-lru",
    "allkeys-lfu",  "allkeys-random", "noeviction",      NULL,
};

#define TABLE_PICKS 8 /* random tries at a table with candidates before a walk over all */

static uint64_t next_rand(void)
{
    static _Thread_local uint64_t s;
    if (s == 0) {
        s = kv_clock_mono_ns() | 1;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

struct measure {
    uint64_t max, own, used;
};

/* False when no limit is set or the memory is within it. This shard's figure is the one
 * it published last (publish_stats, once per loop turn that ran commands) less what it
 * evicted since; the others' are theirs. */
static bool measure(const struct shard *sh, struct measure *m)
{
    m->max = (uint64_t)KV_CONF_GET(kvd_settings.maxmemory);
    if (m->max == 0) {
        return false;
    }
    m->own = sh->mem_own > sh->mem_freed ? sh->mem_own - sh->mem_freed : 0;
    m->used = m->own;
    for (uint32_t i = 0; i < sh->srv->nthreads; i++) {
        if (i != sh->id) {
            m->used += STAT_GET(sh->srv->shards[i].stats.mem_bytes);
        }
    }
    return m->used > m->max;
}

static bool volatile_only(enum evict_policy p)
{
    return p <= EVICT_VOLATILE_TTL;
}

/* Candidates of table t under the policy. */
static size_t candidates(const struct tbl *t, enum evict_policy p)
{
    struct tbl_stats st;
    tbl_stats(t, &st);
    return volatile_only(p) ? st.expiring : st.entries;
}

struct pick {
    struct tbl *t;
    uint32_t db;
};

/*
 * A table of this shard holding candidates, or false if none does: of two picked at
 * random, the one with more. Picking one at random would take as many keys from a small
 * table as from a large one: sizes would drift apart until the small tables' keys, used
 * or not, went at every turn of their hands. The better of two pulls sizes together.
 */
static bool pick_table(struct shard *sh, enum evict_policy p, struct pick *out)
{
    size_t n = (size_t)sh->table_count * sh->ndb_used;
    size_t found = 0, best = 0;
    for (int k = 0; k < TABLE_PICKS && n > 0 && found < 2; k++) {
        size_t i = (size_t)(next_rand() % n);
        uint32_t db = sh->db_used[i / sh->table_count];
        struct tbl *t = shard_part_peek(sh, (uint32_t)(i % sh->table_count), db);
        size_t c = t != NULL ? candidates(t, p) : 0;
        if (c > 0 && c > best) {
            *out = (struct pick){t, db};
            best = c;
        }
        found += c > 0;
    }
    for (size_t i = 0; i < n && found == 0; i++) { /* few tables hold any: the largest */
        uint32_t db = sh->db_used[i / sh->table_count];
        struct tbl *t = shard_part_peek(sh, (uint32_t)(i % sh->table_count), db);
        size_t c = t != NULL ? candidates(t, p) : 0;
        if (c > best) {
            *out = (struct pick){t, db};
            best = c;
        }
    }
    return best > 0;
}

/* The key the policy evicts next (its table in *where), or NULL if there is none. */
static const struct tbl_entry *choose(struct shard *sh, enum evict_policy p, struct pick *where)
{
    unsigned samples = (unsigned)KV_CONF_GET(kvd_settings.maxmemory_samples);
    unsigned flags = volatile_only(p) ? TBL_SAMPLE_EXPIRING : 0;
    bool lru = p == EVICT_ALLKEYS_LRU || p == EVICT_VOLATILE_LRU;
    bool lfu = p == EVICT_ALLKEYS_LFU || p == EVICT_VOLATILE_LFU;
    bool random = p == EVICT_ALLKEYS_RANDOM || p == EVICT_VOLATILE_RANDOM;
    unsigned rounds = lru ? EVICT_HAND_STEPS : random ? 1 : samples;
    const struct tbl_entry *best = NULL;
    for (unsigned k = 0, tries = 0; k < rounds && tries < rounds + EVICT_SAMPLE_MISSES; tries++) {
        struct pick at;
        if (!pick_table(sh, p, &at)) {
            break;
        }
        bool ref = false;
        const struct tbl_entry *e = tbl_sample(
            at.t, next_rand(), flags | (lru ? TBL_SAMPLE_CLEAR | TBL_SAMPLE_HAND : 0), &ref);
        if (e == NULL && !lru) {
            /* keys with an expiry time too sparse for a random look at a few segments:
             * the table's hand goes on through it in order */
            e = tbl_sample(at.t, 0, flags | TBL_SAMPLE_HAND, &ref);
        }
        if (e == NULL) {
            continue;
        }
        k++;
        if (lru) {
            if (!ref) { /* not used since a sample last saw it */
                *where = at;
                return e;
            }
            if (best == NULL) { /* every one referenced so far: the first, now cleared */
                best = e;
                *where = at;
            }
        } else if (best == NULL ||
                   (p == EVICT_VOLATILE_TTL &&
                    tbl_entry_expire_ms(e) < tbl_entry_expire_ms(best)) ||
                   (lfu && tbl_entry_freq(e, sh->now_ms) < tbl_entry_freq(best, sh->now_ms))) {
            best = e;
            *where = at;
        }
    }
    return best;
}

void evict_access_apply(void)
{
    int64_t p = KV_CONF_GET(kvd_settings.maxmemory_policy);
    tbl_access_config(p == EVICT_ALLKEYS_LFU || p == EVICT_VOLATILE_LFU,
                      (uint32_t)KV_CONF_GET(kvd_settings.lfu_log_factor),
                      (uint32_t)KV_CONF_GET(kvd_settings.lfu_decay_time));
}

/* Deletes e from where->t as DEL would; returns the bytes its allocation held. */
static uint64_t evict_entry(struct shard *sh, const struct pick *where, const struct tbl_entry *e)
{
    uint64_t mem = tbl_entry_mem(e);
    size_t klen;
    const char *k = tbl_entry_key(e, &klen);
    uint64_t h = tbl_hash(k, klen);
    int64_t exp = tbl_entry_expire_ms(e);
    if (exp != 0 && exp <= sh->now_ms) {
        /* expired: the lookup removes it (no record: its expiry time is logged) */
        int rc = tbl_del(where->t, k, klen, h, sh->now_ms, NULL);
        KV_ASSERT(rc != 0); /* counted in expired_keys by the table's expiry hook */
        return mem;
    }
    struct tbl_entry *old = NULL;
    int rc = tbl_del(where->t, k, klen, h, sh->now_ms, &old);
    KV_ASSERT(rc == 0 && old == e);
    k = tbl_entry_key(old, &klen); /* the key lives in the entry, still ours */
    struct resp_arg key = {.ptr = k, .len = klen};
    struct cmd_ctx x = {.sh = sh, .now_ms = sh->now_ms, .db = where->db};
    cmd_log_key(&x, &key, h); /* WAL DEL record, WATCH, changes */
    cmd_notify(&x, NOTIFY_EVICTED, "evicted", &key);
    tbl_entry_free(old);
    STAT_ADD(sh->stats.evicted_keys, 1);
    return mem;
}

enum shed_result {
    SHED_DONE,    /* this shard's share is gone (or there was none) */
    SHED_BUDGET,  /* EVICT_KEYS_PER_CALL keys went, some share is left */
    SHED_NOTHING, /* no candidate left here */
};

static enum shed_result shed(struct shard *sh, struct measure *m, enum evict_policy p)
{
    uint64_t excess = m->used - m->max;
    uint64_t share = (uint64_t)(((unsigned __int128)excess * m->own + m->used - 1) / m->used);
    uint64_t freed = 0;
    for (int n = 0; freed < share; n++) {
        if (n == EVICT_KEYS_PER_CALL) {
            return SHED_BUDGET;
        }
        struct pick where = {NULL, 0};
        const struct tbl_entry *e = choose(sh, p, &where);
        if (e == NULL) {
            m->used -= freed < m->used ? freed : m->used;
            /* none met this time; there may still be some the looks did not reach */
            return pick_table(sh, p, &where) ? SHED_BUDGET : SHED_NOTHING;
        }
        uint64_t mem = evict_entry(sh, &where, e);
        freed += mem;
        sh->mem_freed += mem;
    }
    m->used -= freed < m->used ? freed : m->used;
    return SHED_DONE;
}

/* Whether this shard holds candidates under the policy, or another published some. */
static bool some_shard_holds_candidates(struct shard *sh, enum evict_policy p)
{
    struct pick any;
    if (pick_table(sh, p, &any)) {
        return true;
    }
    for (uint32_t i = 0; i < sh->srv->nthreads; i++) {
        const struct shard_stats *st = &sh->srv->shards[i].stats;
        uint64_t n = volatile_only(p) ? STAT_GET(st->keys_with_expiry) : STAT_GET(st->keys);
        if (i != sh->id && n > 0) {
            return true;
        }
    }
    return false;
}

bool evict_gate(struct shard *sh, bool denyoom)
{
    struct measure m;
    if (!measure(sh, &m) || server_paused(sh->srv, sh->now_ms) != SERVER_PAUSE_NONE) {
        return true; /* under CLIENT PAUSE nothing is evicted nor refused, as in Redis */
    }
    enum evict_policy p = (enum evict_policy)KV_CONF_GET(kvd_settings.maxmemory_policy);
    if (p == EVICT_NOEVICTION) {
        return !denyoom;
    }
    enum shed_result r = shed(sh, &m, p);
    if (!denyoom || m.used <= m.max || r == SHED_BUDGET) {
        return true; /* within the limit, or eviction goes on at the next call */
    }
    /* Still over: the rest is the other shards' share, or more of this one's. The
     * command runs if some shard can still shed it, as Redis runs it while it can evict. */
    return some_shard_holds_candidates(sh, p);
}

bool evict_refuses(struct shard *sh)
{
    struct measure m;
    if (!measure(sh, &m)) {
        return false;
    }
    enum evict_policy p = (enum evict_policy)KV_CONF_GET(kvd_settings.maxmemory_policy);
    return p == EVICT_NOEVICTION || !some_shard_holds_candidates(sh, p);
}

bool evict_step(struct shard *sh, uint64_t budget_ns)
{
    if (server_paused(sh->srv, sh->now_ms) != SERVER_PAUSE_NONE) {
        return false; /* the data stays as it is under CLIENT PAUSE */
    }
    struct measure m;
    enum evict_policy p = (enum evict_policy)KV_CONF_GET(kvd_settings.maxmemory_policy);
    if (p == EVICT_NOEVICTION || !measure(sh, &m)) {
        return false; /* (no clock read: this runs every loop turn) */
    }
    uint64_t freed = sh->mem_freed, t0 = kv_clock_mono_ns(), now = t0;
    while (shed(sh, &m, p) == SHED_BUDGET && (now = kv_clock_mono_ns()) - t0 < budget_ns &&
           measure(sh, &m)) {
    }
    if (sh->mem_freed == freed) {
        return false;
    }
    if (now == t0) {
        now = kv_clock_mono_ns();
    }
    latency_add("eviction-cycle", (now - t0) / 1000000); /* LATENCY, as Redis's event */
    return true;
}
