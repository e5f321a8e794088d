/*
 * track: see track.h.
 *
 * Records. What one shard tells another about invalidations is a byte string of
 * records, each a struct rec followed by its keys, each key as
 *
 *   u64 modifier (the client that changed it, 0: none) | u32 length | bytes
 *
 * kinds:  KEYS    default mode: keys a client read changed        -> the client's shard
 *         BCAST   a prefix's keys changed this turn              -> the client's shard
 *         NULL    FLUSHALL / FLUSHDB (no keys)                   -> the client's shard
 *         REDIR   the same, for a REDIRECT client                -> that client's shard
 *         BROKEN  the REDIRECT client is gone                    -> back to the client
 * NOLOOP is applied where the client is (its flags may have changed meanwhile), from
 * each key's modifier.
 *
 * REDIRECT. The key's shard makes REDIR records itself, from the routes registry (a
 * CLIENT TRACKING ... REDIRECT puts its route there before it replies), so that one hop
 * carries them: two tracking clients on different shards redirecting to one connection
 * get their invalidations there in the order of the changes (through their own shards
 * they could cross). NOLOOP is then applied at the key's shard, from the route. A shard
 * without a route for a client (none, or the mode differs) sends to the client's shard,
 * which decides by the client's state.
 */
#include "track.h"

#include "cmd.h"
#include "conn.h"
#include "kv_assert.h"
#include "kv_buf.h"
#include "kvd_settings.h"
#include "pubsub.h"
#include "reply.h"
#include "resp_parse.h"
#include "route.h"
#include "trktab.h"

#include <mimalloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define TRK_ON      (1u << 0)
#define TRK_BCAST   (1u << 1)
#define TRK_OPTIN   (1u << 2)
#define TRK_OPTOUT  (1u << 3)
#define TRK_CACHING (1u << 4) /* CLIENT CACHING yes (OPTIN) / no (OPTOUT) for the next command */
#define TRK_NOLOOP  (1u << 5)
#define TRK_BROKEN  (1u << 6) /* the REDIRECT client was found gone */

#define TRK_ID_BITS      56   /* a reader packs (shard << 56 | client id) */
#define TRK_PREFIXES_MAX 1024 /* PREFIX options of one CLIENT TRACKING */

struct prefix {
    char *p;
    size_t n;
};

struct track_conn {
    uint32_t flags;
    uint64_t redir;        /* REDIRECT client id, 0 for none */
    uint32_t redir_shard;  /* its shard (when redir != 0) */
    struct prefix *prefix; /* BCAST prefixes, in the order given */
    size_t nprefix;
};

enum rec_kind { REC_KEYS = 1, REC_BCAST, REC_NULL, REC_REDIR, REC_REDIR_NULL, REC_BROKEN };

struct rec {
    uint8_t kind;
    uint8_t pad[3];
    uint32_t nkeys;
    uint64_t client;    /* the connection it is for */
    uint64_t aux;       /* REDIR: the tracking client; BROKEN: the redirect id it names */
    uint32_t aux_shard; /* REDIR: the tracking client's shard */
    uint32_t pad2;
};
_Static_assert(sizeof(struct rec) == 32, "records are packed by hand");

/* A key changed this turn, for BCAST matching (bytes in track_shard.bk_bytes). */
struct bkey {
    size_t off;
    uint32_t len;
    bool dead; /* a later change of the same key replaces it */
    uint64_t h;
    uint64_t modifier;
};

/* One BCAST registration: a client's prefix. */
struct reg {
    struct prefix pre;
    uint64_t id;
    uint32_t shard;
};

/* A REDIRECT client's route: the key's shard sends its invalidations straight to the
 * REDIRECT client's shard (one hop, so that every invalidation one key's shard makes for
 * one REDIRECT client arrives in the order of the changes, whichever tracking clients
 * they are for). Kept sorted by id. */
struct route {
    uint64_t id;     /* the tracking client */
    uint64_t target; /* its REDIRECT client */
    uint32_t shard;  /* the tracking client's shard */
    uint32_t target_shard;
    uint32_t flags; /* the tracking client's TRK_BCAST | TRK_NOLOOP */
    uint32_t pad;
};

struct track_shard {
    struct trktab *tab;
    struct kv_buf *out; /* records per destination shard; out[own id]: for this shard's clients */
    struct kv_buf spare;
    struct bkey *bk;
    size_t nbk, cap_bk;
    struct kv_buf bk_bytes;
    uint64_t gen; /* the registry generation of regs */
    struct reg *regs;
    size_t nregs;
    char *regs_bytes;
    struct kv_buf push;  /* a push being encoded */
    uint64_t routes_gen; /* the registry generation of routes */
    struct route *routes;
    size_t nroutes;
    _Atomic uint64_t limit_applied; /* the last track_limit_gen applied (read by others) */
};

_Atomic uint32_t track_bcast_regs;

/* Bumped by each CONFIG SET of tracking-table-max-keys (track_limit_changed). */
_Atomic uint64_t track_limit_gen;

/* The server-wide registry: BCAST prefixes and REDIRECT routes, each with the
 * generation the shards compare their copies with. */
static struct {
    pthread_mutex_t mu;
    struct reg *v;
    size_t n, cap;
    _Atomic uint64_t gen;
    struct route *routes;
    size_t nroutes, cap_routes;
    _Atomic uint64_t routes_gen;
    _Atomic uint32_t nroutes_pub; /* nroutes, read without the lock */
} registry = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- buffers ------------------------------------------------------------------------ */

static void buf_printf(struct kv_buf *b, const char *fmt, unsigned long long v)
{
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    KV_ASSERT(n > 0 && (size_t)n < sizeof tmp);
    kv_buf_put(b, tmp, (size_t)n);
}

static void buf_bulk(struct kv_buf *b, const char *p, size_t n)
{
    buf_printf(b, "$%llu\r\n", n);
    kv_buf_put(b, p, n);
    kv_buf_put(b, "\r\n", 2);
}

/* ---- records -------------------------------------------------------------------------- */

static struct kv_buf *dest(struct shard *sh, uint32_t to)
{
    KV_ASSERT(to < sh->srv->nthreads);
    if (to == sh->id) {
        sh->track_local++;
    }
    sh->track_pending = true;
    return &sh->track->out[to];
}

static void rec_put(struct kv_buf *b, uint8_t kind, uint64_t client, uint64_t aux,
                    uint32_t aux_shard, uint32_t nkeys)
{
    struct rec r = {
        .kind = kind, .nkeys = nkeys, .client = client, .aux = aux, .aux_shard = aux_shard};
    kv_buf_put(b, &r, sizeof r);
}

static void rec_key(struct kv_buf *b, uint64_t modifier, const char *k, size_t n)
{
    KV_ASSERT(n <= UINT32_MAX);
    uint32_t len = (uint32_t)n;
    kv_buf_put(b, &modifier, sizeof modifier);
    kv_buf_put(b, &len, sizeof len);
    kv_buf_put(b, k, n);
}

/* A key of a record: the next one at *off. */
struct rkey {
    uint64_t modifier;
    const char *p;
    uint32_t len;
};

static struct rkey rec_next_key(const char *p, size_t *off)
{
    struct rkey k;
    memcpy(&k.modifier, p + *off, 8);
    memcpy(&k.len, p + *off + 8, 4);
    k.p = p + *off + 12;
    *off += 12 + k.len;
    return k;
}

/* Whether key k of a record goes to a client (NOLOOP: not the keys it changed itself). */
static bool key_passes(struct rkey k, uint64_t noloop_id)
{
    return noloop_id == 0 || k.modifier != noloop_id;
}

/* ---- setup ---------------------------------------------------------------------------- */

int track_shard_setup(struct shard *sh)
{
    struct track_shard *ts = calloc(1, sizeof *ts);
    if (ts == NULL) {
        return -1;
    }
    ts->out = calloc(sh->srv->nthreads, sizeof *ts->out);
    if (ts->out == NULL) {
        free(ts);
        return -1;
    }
    sh->track = ts;
    sh->track_keys = 0;
    sh->track_local = 0;
    return 0;
}

void track_shard_teardown(struct shard *sh)
{
    struct track_shard *ts = sh->track;
    if (ts == NULL) {
        return;
    }
    trktab_destroy(ts->tab);
    for (uint32_t i = 0; i < sh->srv->nthreads; i++) {
        kv_buf_free(&ts->out[i]);
    }
    free(ts->out);
    kv_buf_free(&ts->spare);
    kv_buf_free(&ts->bk_bytes);
    kv_buf_free(&ts->push);
    free(ts->bk);
    free(ts->regs);
    free(ts->regs_bytes);
    free(ts->routes);
    free(ts);
    sh->track = NULL;
}

/* ---- REDIRECT routes ------------------------------------------------------------------------- */

/* A change of the routes, for the shards' copies (registry.mu held). */
static void routes_publish(void)
{
    atomic_fetch_add_explicit(&registry.routes_gen, 1, memory_order_release);
    atomic_store_explicit(&registry.nroutes_pub, (uint32_t)registry.nroutes, memory_order_relaxed);
}

/* Sets (or replaces) the route of tracking client id. */
static void routes_set(const struct route *r)
{
    pthread_mutex_lock(&registry.mu);
    size_t i = 0;
    while (i < registry.nroutes && registry.routes[i].id < r->id) {
        i++;
    }
    if (i == registry.nroutes || registry.routes[i].id != r->id) {
        if (registry.nroutes == registry.cap_routes) {
            registry.cap_routes = registry.cap_routes ? registry.cap_routes * 2 : 16;
            registry.routes =
                realloc(registry.routes, registry.cap_routes * sizeof *registry.routes);
            KV_ASSERT(registry.routes != NULL);
        }
        memmove(&registry.routes[i + 1], &registry.routes[i],
                (registry.nroutes - i) * sizeof *registry.routes);
        registry.nroutes++;
    }
    registry.routes[i] = *r;
    routes_publish();
    pthread_mutex_unlock(&registry.mu);
}

static void routes_drop(uint64_t id)
{
    pthread_mutex_lock(&registry.mu);
    for (size_t i = 0; i < registry.nroutes; i++) {
        if (registry.routes[i].id == id) {
            memmove(&registry.routes[i], &registry.routes[i + 1],
                    (registry.nroutes - i - 1) * sizeof *registry.routes);
            registry.nroutes--;
            routes_publish();
            break;
        }
    }
    pthread_mutex_unlock(&registry.mu);
}

static int route_cmp(const void *key, const void *elem)
{
    uint64_t id = *(const uint64_t *)key;
    const struct route *r = elem;
    return (id > r->id) - (id < r->id);
}

/* The route of tracking client id when its invalidations of this mode (BCAST or not) go
 * straight to its REDIRECT client, else NULL: they go to the client's shard, which
 * decides by the client's state then. The shard's copy of the routes is renewed when the
 * registry's generation moved: a CLIENT TRACKING that replied is seen by every change
 * made after it. */
static const struct route *route_of(struct shard *sh, uint64_t id, bool bcast)
{
    if (atomic_load_explicit(&registry.nroutes_pub, memory_order_relaxed) == 0) {
        return NULL;
    }
    struct track_shard *ts = sh->track;
    uint64_t gen = atomic_load_explicit(&registry.routes_gen, memory_order_acquire);
    if (gen != ts->routes_gen) {
        pthread_mutex_lock(&registry.mu);
        free(ts->routes);
        ts->routes = malloc((registry.nroutes ? registry.nroutes : 1) * sizeof *ts->routes);
        KV_ASSERT(ts->routes != NULL);
        memcpy(ts->routes, registry.routes, registry.nroutes * sizeof *ts->routes);
        ts->nroutes = registry.nroutes;
        ts->routes_gen = atomic_load_explicit(&registry.routes_gen, memory_order_relaxed);
        pthread_mutex_unlock(&registry.mu);
    }
    const struct route *r = bsearch(&id, ts->routes, ts->nroutes, sizeof *r, route_cmp);
    if (r == NULL || ((r->flags & TRK_BCAST) != 0) != bcast) {
        return NULL;
    }
    return r;
}

/* ---- the table -------------------------------------------------------------------------- */

static void publish(struct shard *sh)
{
    struct trktab *t = sh->track->tab;
    sh->track_keys = t != NULL ? trktab_keys(t) : 0;
    STAT_SET(sh->stats.tracking_keys, sh->track_keys);
    STAT_SET(sh->stats.tracking_items, t != NULL ? trktab_items(t) : 0);
}

struct take_ctx {
    struct shard *sh;
    uint64_t modifier;
};

static void on_reader(void *arg, const char *key, size_t klen, uint64_t who)
{
    struct take_ctx *tc = arg;
    uint32_t shard = (uint32_t)(who >> TRK_ID_BITS);
    uint64_t id = who & ((UINT64_C(1) << TRK_ID_BITS) - 1);
    const struct route *r = route_of(tc->sh, id, false);
    if (r != NULL) {
        if (!(r->flags & TRK_NOLOOP) || tc->modifier != id) {
            struct kv_buf *b = dest(tc->sh, r->target_shard);
            rec_put(b, REC_REDIR, r->target, id, r->shard, 1);
            rec_key(b, tc->modifier, key, klen);
        }
        return;
    }
    struct kv_buf *b = dest(tc->sh, shard);
    rec_put(b, REC_KEYS, id, 0, 0, 1);
    rec_key(b, tc->modifier, key, klen);
}

/* Holds the shard's table to tracking-table-max-keys (0: no limit), invalidating the
 * keys it takes out. The limit is on the node's total, as Redis's on its one table: a
 * shard keeps its fair part (the limit / threads) in any case, and more while the
 * others (their published counts) leave room. A shard over its fair part evicts at most
 * down to it, so shards evicting at once, each with a stale view of the others, never
 * take the node below the limit; one that keeps a few too many corrects at its next
 * turn. A table within its fair part costs no look at the others. */
static void apply_limit(struct shard *sh)
{
    struct trktab *t = sh->track->tab;
    int64_t max = KV_CONF_GET(kvd_settings.tracking_table_max_keys);
    uint64_t n = sh->srv->nthreads;
    uint64_t fair = max > 0 ? (uint64_t)max / n + (sh->id < (uint64_t)max % n ? 1 : 0) : 0;
    if (t == NULL || max <= 0 || trktab_keys(t) <= fair) {
        return;
    }
    uint64_t others = 0;
    for (uint32_t i = 0; i < n; i++) {
        others += i != sh->id ? STAT_GET(sh->srv->shards[i].stats.tracking_keys) : 0;
    }
    uint64_t room = others >= (uint64_t)max ? 0 : (uint64_t)max - others;
    size_t share = (size_t)(room > fair ? room : fair);
    struct take_ctx tc = {.sh = sh, .modifier = 0};
    while (trktab_keys(t) > share && trktab_take_any(t, on_reader, &tc)) {
    }
}

void track_remember(struct shard *sh, uint32_t client_shard, uint64_t id, const struct cmd_desc *d,
                    size_t argc, const struct resp_arg *argv)
{
    KV_ASSERT(id < (UINT64_C(1) << TRK_ID_BITS) && client_shard < sh->srv->nthreads);
    if (d->first_key <= 0 || (size_t)d->first_key >= argc) {
        return;
    }
    struct track_shard *ts = sh->track;
    if (ts->tab == NULL) {
        ts->tab = trktab_create(sh->heap);
        KV_ASSERT(ts->tab != NULL);
    }
    uint64_t who = ((uint64_t)client_shard << TRK_ID_BITS) | id;
    size_t last = d->last_key < 0 ? argc - 1 : (size_t)d->last_key;
    size_t step = d->key_step > 0 ? (size_t)d->key_step : 1;
    for (size_t i = (size_t)d->first_key; i <= last && i < argc; i += step) {
        trktab_add(ts->tab, argv[i].ptr, argv[i].len, who);
    }
    apply_limit(sh);
    publish(sh);
}

void track_remember_local(struct shard *sh, uint32_t client_shard, uint64_t id,
                          const struct resp_arg *keys, size_t n)
{
    struct track_shard *ts = sh->track;
    for (size_t i = 0; i < n; i++) {
        if (route_lookup(sh->srv->route, cmd_key_hash(&keys[i]))->thread != sh->id) {
            continue;
        }
        if (ts->tab == NULL) {
            ts->tab = trktab_create(sh->heap);
            KV_ASSERT(ts->tab != NULL);
        }
        trktab_add(ts->tab, keys[i].ptr, keys[i].len, ((uint64_t)client_shard << TRK_ID_BITS) | id);
    }
    apply_limit(sh);
    publish(sh);
}

void track__changed(struct shard *sh, const char *key, size_t klen, uint64_t modifier)
{
    struct track_shard *ts = sh->track;
    if (ts->tab != NULL && trktab_keys(ts->tab) > 0) {
        struct take_ctx tc = {.sh = sh, .modifier = modifier};
        if (trktab_take(ts->tab, key, klen, on_reader, &tc) > 0) {
            publish(sh);
        }
    }
    if (atomic_load_explicit(&track_bcast_regs, memory_order_relaxed) > 0) {
        if (ts->nbk == ts->cap_bk) {
            ts->cap_bk = ts->cap_bk ? ts->cap_bk * 2 : 64;
            ts->bk = realloc(ts->bk, ts->cap_bk * sizeof *ts->bk);
            KV_ASSERT(ts->bk != NULL);
        }
        sh->track_pending = true; /* (matched at the turn's end: track_turn) */
        ts->bk[ts->nbk++] = (struct bkey){.off = ts->bk_bytes.len,
                                          .len = (uint32_t)klen,
                                          .h = XXH3_64bits(key, klen),
                                          .modifier = modifier};
        kv_buf_put(&ts->bk_bytes, key, klen);
    }
}

void track_flushed(struct shard *sh)
{
    struct track_shard *ts = sh->track;
    if (ts->tab != NULL) {
        trktab_clear(ts->tab);
        publish(sh);
    }
    for (struct conn *c = conn_first(sh); c != NULL; c = conn_next(c)) {
        const struct track_conn *t = *conn_track(c);
        if (t != NULL && (t->flags & TRK_ON)) {
            rec_put(dest(sh, sh->id), REC_NULL, conn_id(c), 0, 0, 0);
        }
    }
}

void track_cron(struct shard *sh)
{
    if (sh->track_keys > 0) {
        apply_limit(sh);
        publish(sh);
    }
}

/* ---- BCAST ------------------------------------------------------------------------------ */

/* Renews the shard's copy of the registry if it changed. */
static void regs_refresh(struct track_shard *ts)
{
    uint64_t gen = atomic_load_explicit(&registry.gen, memory_order_acquire);
    if (gen == ts->gen && ts->regs != NULL) {
        return;
    }
    pthread_mutex_lock(&registry.mu);
    size_t bytes = 0;
    for (size_t i = 0; i < registry.n; i++) {
        bytes += registry.v[i].pre.n;
    }
    free(ts->regs);
    free(ts->regs_bytes);
    ts->regs = malloc((registry.n ? registry.n : 1) * sizeof *ts->regs);
    ts->regs_bytes = malloc(bytes ? bytes : 1);
    KV_ASSERT(ts->regs != NULL && ts->regs_bytes != NULL);
    size_t off = 0;
    for (size_t i = 0; i < registry.n; i++) {
        ts->regs[i] = registry.v[i];
        ts->regs[i].pre.p = ts->regs_bytes + off;
        memcpy(ts->regs_bytes + off, registry.v[i].pre.p, registry.v[i].pre.n);
        off += registry.v[i].pre.n;
    }
    ts->nregs = registry.n;
    ts->gen = atomic_load_explicit(&registry.gen, memory_order_relaxed);
    pthread_mutex_unlock(&registry.mu);
}

/* A key changed twice in the turn is sent once, with its last modifier: the earlier
 * entries are marked dead (an open-addressing set of entry indexes, newest first). */
static void bkeys_dedupe(struct track_shard *ts)
{
    if (ts->nbk < 2) {
        return;
    }
    size_t cap = 16;
    while (cap < ts->nbk * 2) {
        cap *= 2;
    }
    uint32_t *set = calloc(cap, sizeof *set); /* index + 1, 0 = empty */
    KV_ASSERT(set != NULL);
    const char *kb = ts->bk_bytes.p;
    for (size_t i = ts->nbk; i-- > 0;) {
        struct bkey *k = &ts->bk[i];
        size_t s = (size_t)k->h & (cap - 1);
        for (; set[s] != 0; s = (s + 1) & (cap - 1)) {
            const struct bkey *o = &ts->bk[set[s] - 1];
            if (o->h == k->h && o->len == k->len && memcmp(kb + o->off, kb + k->off, k->len) == 0) {
                k->dead = true;
                break;
            }
        }
        if (!k->dead) {
            set[s] = (uint32_t)i + 1;
        }
    }
    free(set);
}

/* A key changed this turn (the last change of it) is under the registration's prefix. */
static bool bkey_matches(const struct track_shard *ts, const struct bkey *k, const struct reg *g)
{
    return !k->dead && k->len >= g->pre.n &&
           memcmp(ts->bk_bytes.p + k->off, g->pre.p, g->pre.n) == 0;
}

/* Appends the turn's keys under g's prefix that pass NOLOOP (noloop_id, 0: none) to b. */
static void bcast_keys(const struct track_shard *ts, struct kv_buf *b, const struct reg *g,
                       uint64_t noloop_id)
{
    for (size_t i = 0; i < ts->nbk; i++) {
        const struct bkey *k = &ts->bk[i];
        if (bkey_matches(ts, k, g) && (noloop_id == 0 || k->modifier != noloop_id)) {
            rec_key(b, k->modifier, ts->bk_bytes.p + k->off, k->len);
        }
    }
}

/* The turn's changed keys against every BCAST prefix: one record per (prefix, client). */
static void bcast_flush(struct shard *sh)
{
    struct track_shard *ts = sh->track;
    if (ts->nbk == 0) {
        return;
    }
    bkeys_dedupe(ts);
    regs_refresh(ts);
    for (size_t r = 0; r < ts->nregs; r++) {
        const struct reg *g = &ts->regs[r];
        uint32_t n = 0;
        for (size_t i = 0; i < ts->nbk; i++) {
            n += bkey_matches(ts, &ts->bk[i], g);
        }
        if (n == 0) {
            continue;
        }
        const struct route *rt = route_of(sh, g->id, true);
        if (rt == NULL) {
            struct kv_buf *b = dest(sh, g->shard);
            rec_put(b, REC_BCAST, g->id, 0, 0, n);
            bcast_keys(ts, b, g, 0);
            continue;
        }
        uint64_t noloop_id = (rt->flags & TRK_NOLOOP) ? g->id : 0;
        uint32_t npass = 0;
        for (size_t i = 0; i < ts->nbk; i++) {
            const struct bkey *k = &ts->bk[i];
            npass += bkey_matches(ts, k, g) && (noloop_id == 0 || k->modifier != noloop_id);
        }
        if (npass > 0) {
            struct kv_buf *b = dest(sh, rt->target_shard);
            rec_put(b, REC_REDIR, rt->target, g->id, rt->shard, npass);
            bcast_keys(ts, b, g, noloop_id);
        }
    }
    ts->nbk = 0;
    ts->bk_bytes.len = 0;
}

static void registry_publish(void)
{
    atomic_fetch_add_explicit(&registry.gen, 1, memory_order_release);
    atomic_store_explicit(&track_bcast_regs, (uint32_t)registry.n, memory_order_relaxed);
}

static void registry_add(uint64_t id, uint32_t shard, const char *p, size_t n)
{
    pthread_mutex_lock(&registry.mu);
    for (size_t i = 0; i < registry.n; i++) {
        const struct reg *g = &registry.v[i];
        if (g->id == id && g->pre.n == n && memcmp(g->pre.p, p, n) == 0) {
            pthread_mutex_unlock(&registry.mu);
            return;
        }
    }
    if (registry.n == registry.cap) {
        registry.cap = registry.cap ? registry.cap * 2 : 16;
        registry.v = realloc(registry.v, registry.cap * sizeof *registry.v);
        KV_ASSERT(registry.v != NULL);
    }
    struct reg *g = &registry.v[registry.n++];
    g->pre.p = malloc(n ? n : 1);
    KV_ASSERT(g->pre.p != NULL);
    memcpy(g->pre.p, p, n);
    g->pre.n = n;
    g->id = id;
    g->shard = shard;
    registry_publish();
    pthread_mutex_unlock(&registry.mu);
}

static void registry_drop(uint64_t id)
{
    pthread_mutex_lock(&registry.mu);
    size_t k = 0;
    for (size_t i = 0; i < registry.n; i++) {
        if (registry.v[i].id == id) {
            free(registry.v[i].pre.p);
        } else {
            registry.v[k++] = registry.v[i];
        }
    }
    registry.n = k;
    registry_publish();
    pthread_mutex_unlock(&registry.mu);
}

uint64_t track_prefixes(void)
{
    pthread_mutex_lock(&registry.mu);
    uint64_t distinct = 0;
    for (size_t i = 0; i < registry.n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = registry.v[j].pre.n == registry.v[i].pre.n &&
                   memcmp(registry.v[j].pre.p, registry.v[i].pre.p, registry.v[i].pre.n) == 0;
        }
        distinct += !seen;
    }
    pthread_mutex_unlock(&registry.mu);
    return distinct;
}

/* ---- delivery ----------------------------------------------------------------------------- */

/* Writes the invalidation (keys of the record that pass, or a null) into target. */
static void emit(struct shard *sh, struct conn *target, bool null, const char *keys, uint32_t nkeys,
                 uint32_t npass, uint64_t noloop_id)
{
    struct kv_buf *b = &sh->track->push;
    b->len = 0;
    int resp = conn_resp(target);
    if (resp == 3) {
        static const char hdr[] = ">2\r\n$10\r\ninvalidate\r\n";
        kv_buf_put(b, hdr, sizeof hdr - 1);
    } else {
        struct pubsub_conn *ps = *conn_pubsub(target);
        if (!pubsub_subscribed(ps)) {
            return; /* RESP2 has no pushes: only a subscribed client can get it */
        }
        static const char hdr[] = "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n";
        kv_buf_put(b, hdr, sizeof hdr - 1);
    }
    if (null) {
        kv_buf_put(b, resp == 3 ? "_\r\n" : "$-1\r\n", resp == 3 ? 3 : 5);
    } else {
        buf_printf(b, "*%llu\r\n", npass);
        size_t off = 0;
        for (uint32_t i = 0; i < nkeys; i++) {
            struct rkey k = rec_next_key(keys, &off);
            if (key_passes(k, noloop_id)) {
                buf_bulk(b, k.p, k.len);
            }
        }
    }
    conn_push(target, b->p, b->len);
}

static void mark_broken(struct shard *sh, struct conn *c, struct track_conn *t)
{
    t->flags |= TRK_BROKEN;
    if (conn_resp(c) == 3) {
        struct kv_buf *b = &sh->track->push;
        b->len = 0;
        static const char hdr[] = ">2\r\n$21\r\ntracking-redir-broken\r\n";
        kv_buf_put(b, hdr, sizeof hdr - 1);
        buf_printf(b, ":%llu\r\n", (unsigned long long)t->redir);
        conn_push(c, b->p, b->len);
    }
}

/* A record for client c (tracking, on this shard): to it, or to its REDIRECT client. */
static void send_to(struct shard *sh, struct conn *c, struct track_conn *t, bool null,
                    const char *keys, uint32_t nkeys)
{
    uint64_t noloop_id = (t->flags & TRK_NOLOOP) ? conn_id(c) : 0;
    uint32_t npass = 0;
    size_t off = 0;
    for (uint32_t i = 0; i < nkeys; i++) {
        npass += key_passes(rec_next_key(keys, &off), noloop_id);
    }
    if (!null && npass == 0) {
        return;
    }
    if (t->redir == 0) {
        if (conn_resp(c) == 3) {
            emit(sh, c, null, keys, nkeys, npass, noloop_id);
        }
        return;
    }
    if (t->redir_shard == sh->id) {
        struct conn *target = conn_by_id(sh, t->redir);
        if (target == NULL || conn_closing(target)) { /* (QUIT answered: gone for Redis) */
            mark_broken(sh, c, t);
        } else {
            emit(sh, target, null, keys, nkeys, npass, noloop_id);
        }
        return;
    }
    struct kv_buf *b = dest(sh, t->redir_shard);
    rec_put(b, null ? REC_REDIR_NULL : REC_REDIR, t->redir, conn_id(c), sh->id, null ? 0 : npass);
    off = 0;
    for (uint32_t i = 0; i < nkeys; i++) {
        struct rkey k = rec_next_key(keys, &off);
        if (key_passes(k, noloop_id)) {
            rec_key(b, k.modifier, k.p, k.len);
        }
    }
}

static void deliver_one(struct shard *sh, const struct rec *r, const char *keys)
{
    struct conn *c = conn_by_id(sh, r->client);
    bool redir = r->kind == REC_REDIR || r->kind == REC_REDIR_NULL;
    if (c == NULL || (redir && conn_closing(c))) {
        /* the redirect client is gone, or going: Redis frees a client as soon as its
         * QUIT reply is written, before another client's next command runs; here the
         * close may still wait for that send */
        if (redir) {
            rec_put(dest(sh, r->aux_shard), REC_BROKEN, r->aux, r->client, 0, 0);
        }
        return;
    }
    if (redir) {
        emit(sh, c, r->kind == REC_REDIR_NULL, keys, r->nkeys, r->nkeys, 0);
        return;
    }
    struct track_conn *t = *conn_track(c);
    if (t == NULL || !(t->flags & TRK_ON)) {
        return;
    }
    bool bcast = (t->flags & TRK_BCAST) != 0;
    switch (r->kind) {
    case REC_KEYS:
        if (!bcast) {
            send_to(sh, c, t, false, keys, r->nkeys);
        }
        break;
    case REC_BCAST:
        if (bcast) {
            send_to(sh, c, t, false, keys, r->nkeys);
        }
        break;
    case REC_NULL:
        send_to(sh, c, t, true, keys, 0);
        break;
    case REC_BROKEN:
        if (t->redir == r->aux) {
            mark_broken(sh, c, t);
        }
        break;
    default:
        KV_ASSERT(!"unknown tracking record");
    }
}

static void deliver_buf(struct shard *sh, const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        struct rec r;
        KV_ASSERT(len - off >= sizeof r);
        memcpy(&r, p + off, sizeof r);
        off += sizeof r;
        const char *keys = p + off;
        size_t koff = 0;
        for (uint32_t i = 0; i < r.nkeys; i++) {
            rec_next_key(keys, &koff);
        }
        KV_ASSERT(koff <= len - off);
        deliver_one(sh, &r, keys);
        off += koff;
    }
}

void track__deliver(struct shard *sh)
{
    struct track_shard *ts = sh->track;
    /* A delivery may make records for this shard again (BROKEN): until none is left. */
    while (sh->track_local > 0) {
        struct kv_buf own = ts->out[sh->id];
        ts->out[sh->id] = ts->spare;
        ts->out[sh->id].len = 0;
        sh->track_local = 0;
        deliver_buf(sh, own.p, own.len);
        ts->spare = own;
    }
}

void track__turn(struct shard *sh)
{
    struct track_shard *ts = sh->track;
    uint64_t limit_gen = atomic_load_explicit(&track_limit_gen, memory_order_acquire);
    bool limit_new = limit_gen != sh->track_limit_seen;
    if (KV_UNLIKELY(sh->track_keys > 0)) {
        /* the limit, once per turn (Redis applies it before every command): a smaller
         * tracking-table-max-keys takes effect before the next commands run here */
        apply_limit(sh);
        publish(sh);
    }
    bcast_flush(sh);
    track_deliver(sh);
    for (uint32_t to = 0; to < sh->srv->nthreads; to++) {
        struct kv_buf *b = &ts->out[to];
        if (to == sh->id || b->len == 0) {
            continue;
        }
        void *blob = conn_blob_alloc(sh, b->len);
        memcpy(blob, b->p, b->len);
        struct xmsg m = {
            .kind = XM_INVALIDATE, .src = (uint16_t)sh->id, .payload = blob, .payload_len = b->len};
        conn_send_xmsg(sh, NULL, to, &m);
        b->len = 0;
    }
    sh->track_pending = sh->track_local > 0 || ts->nbk > 0; /* (every other out[] was sent) */
    if (KV_UNLIKELY(limit_new)) {
        /* the records the new limit made are in the queues: a CONFIG SET waiting for
         * every shard may reply (its shard polls; wake it) */
        sh->track_limit_seen = limit_gen;
        atomic_store_explicit(&ts->limit_applied, limit_gen, memory_order_release);
        shard_wake_all(sh);
    }
}

uint64_t track_limit_changed(void)
{
    return atomic_fetch_add_explicit(&track_limit_gen, 1, memory_order_acq_rel) + 1;
}

bool track_limit_applied(const struct server *srv, uint64_t gen)
{
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        const struct track_shard *ts = srv->shards[i].track;
        if (atomic_load_explicit(&ts->limit_applied, memory_order_acquire) < gen) {
            return false;
        }
    }
    return true;
}

void track_on_message(struct shard *sh, const struct xmsg *m)
{
    deliver_buf(sh, m->payload, m->payload_len);
    conn_blob_free(m->payload);
    track_deliver(sh);
}

/* ---- connections ---------------------------------------------------------------------------- */

int32_t track_reads(const struct track_conn *t, uint32_t shard)
{
    uint32_t f = t->flags;
    if (!(f & TRK_ON) || (f & TRK_BCAST) || ((f & TRK_OPTIN) && !(f & TRK_CACHING)) ||
        ((f & TRK_OPTOUT) && (f & TRK_CACHING))) {
        return -1;
    }
    return (int32_t)shard;
}

void track_command_done(struct track_conn *t, bool client_cmd, bool in_multi)
{
    if (!client_cmd && !in_multi) {
        t->flags &= ~TRK_CACHING;
    }
}

static void prefixes_free(struct track_conn *t)
{
    for (size_t i = 0; i < t->nprefix; i++) {
        free(t->prefix[i].p);
    }
    free(t->prefix);
    t->prefix = NULL;
    t->nprefix = 0;
}

void track_conn_drop(struct shard *sh, struct conn *c)
{
    struct track_conn **tp = conn_track(c);
    struct track_conn *t = *tp;
    if (t == NULL) {
        return;
    }
    if (t->flags & TRK_BCAST) {
        registry_drop(conn_id(c));
    }
    if (t->redir != 0) {
        routes_drop(conn_id(c));
    }
    if (t->flags & TRK_ON) {
        STAT_SUB(sh->stats.tracking_clients, 1);
    }
    prefixes_free(t);
    free(t);
    *tp = NULL;
}

size_t track_client_flags(const struct track_conn *t, char *buf)
{
    size_t n = 0;
    if (t != NULL && (t->flags & TRK_ON)) {
        buf[n++] = 't';
        if (t->flags & TRK_BROKEN) {
            buf[n++] = 'R';
        }
        if (t->flags & TRK_BCAST) {
            buf[n++] = 'B';
        }
    }
    return n;
}

int64_t track_client_redir(const struct track_conn *t)
{
    return t != NULL && (t->flags & TRK_ON) ? (int64_t)t->redir : -1;
}

/* ---- CLIENT TRACKING and friends ------------------------------------------------------------ */

/* One of two prefixes starts the other (Redis's stringCheckPrefix). */
static bool overlap(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    return memcmp(a, b, n) == 0;
}

/* Redis's checkPrefixCollisionsOrReply: new prefixes may overlap neither the client's
 * nor each other. */
static bool prefixes_ok(struct cmd_ctx *x, const struct track_conn *t,
                        const struct resp_arg *const *pre, size_t npre)
{
    for (size_t i = 0; i < npre; i++) {
        for (size_t k = 0; t != NULL && k < t->nprefix; k++) {
            if (overlap(t->prefix[k].p, t->prefix[k].n, pre[i]->ptr, pre[i]->len)) {
                reply_error(x->out,
                            "ERR Prefix '%.*s' overlaps with an existing prefix '%.*s'. Prefixes "
                            "for a single client must not overlap.",
                            (int)pre[i]->len, pre[i]->ptr, (int)t->prefix[k].n, t->prefix[k].p);
                return false;
            }
        }
        for (size_t j = i + 1; j < npre; j++) {
            if (overlap(pre[i]->ptr, pre[i]->len, pre[j]->ptr, pre[j]->len)) {
                reply_error(x->out,
                            "ERR Prefix '%.*s' overlaps with another provided prefix '%.*s'. "
                            "Prefixes for a single client must not overlap.",
                            (int)pre[i]->len, pre[i]->ptr, (int)pre[j]->len, pre[j]->ptr);
                return false;
            }
        }
    }
    return true;
}

static void prefix_add(struct track_conn *t, uint64_t id, uint32_t shard, const char *p, size_t n)
{
    for (size_t k = 0; k < t->nprefix; k++) {
        if (t->prefix[k].n == n && memcmp(t->prefix[k].p, p, n) == 0) {
            return; /* BCAST without PREFIX twice: "" once */
        }
    }
    t->prefix = realloc(t->prefix, (t->nprefix + 1) * sizeof *t->prefix);
    KV_ASSERT(t->prefix != NULL);
    struct prefix *e = &t->prefix[t->nprefix++];
    e->p = malloc(n ? n : 1);
    KV_ASSERT(e->p != NULL);
    memcpy(e->p, p, n);
    e->n = n;
    registry_add(id, shard, p, n);
}

void track_cmd_tracking(struct cmd_ctx *x)
{
    struct conn *c = x->conn;
    struct shard *sh = x->sh;
    int64_t redir = 0;
    uint32_t redir_shard = 0;
    uint32_t opts = 0;
    const struct resp_arg *pre[TRK_PREFIXES_MAX];
    size_t npre = 0;
    for (size_t j = 3; j < x->argc; j++) {
        const struct resp_arg *a = &x->argv[j];
        bool more = j + 1 < x->argc;
        if (cmd_arg_is(a, "redirect") && more) {
            j++;
            if (redir != 0) {
                reply_error(x->out, "ERR A client can only redirect to a single other client");
                return;
            }
            if (!cmd_parse_i64(&x->argv[j], &redir)) {
                reply_err_not_int(x->out);
                return;
            }
            if (redir <= 0 || !conn_id_shard(sh, (uint64_t)redir, &redir_shard)) {
                reply_error(x->out, "ERR The client ID you want redirect to does not exist");
                return;
            }
        } else if (cmd_arg_is(a, "bcast")) {
            opts |= TRK_BCAST;
        } else if (cmd_arg_is(a, "optin")) {
            opts |= TRK_OPTIN;
        } else if (cmd_arg_is(a, "optout")) {
            opts |= TRK_OPTOUT;
        } else if (cmd_arg_is(a, "noloop")) {
            opts |= TRK_NOLOOP;
        } else if (cmd_arg_is(a, "prefix") && more) {
            j++;
            if (npre == TRK_PREFIXES_MAX) {
                reply_error(x->out, "ERR too many prefixes (at most %d per call)",
                            TRK_PREFIXES_MAX);
                return;
            }
            pre[npre++] = &x->argv[j];
        } else {
            reply_err_syntax(x->out);
            return;
        }
    }
    struct track_conn **tp = conn_track(c);
    if (cmd_arg_is(&x->argv[2], "off")) {
        track_conn_drop(sh, c);
        reply_ok(x->out);
        return;
    }
    if (!cmd_arg_is(&x->argv[2], "on")) {
        reply_err_syntax(x->out);
        return;
    }
    struct track_conn *t = *tp;
    uint32_t cur = t != NULL ? t->flags : 0;
    if (!(opts & TRK_BCAST) && npre > 0) {
        reply_error(x->out, "ERR PREFIX option requires BCAST mode to be enabled");
        return;
    }
    if ((cur & TRK_ON) && ((cur ^ opts) & TRK_BCAST)) {
        reply_error(x->out, "ERR You can't switch BCAST mode on/off before disabling tracking for "
                            "this client, and then re-enabling it with a different mode.");
        return;
    }
    if ((opts & TRK_BCAST) && (opts & (TRK_OPTIN | TRK_OPTOUT))) {
        reply_error(x->out, "ERR OPTIN and OPTOUT are not compatible with BCAST");
        return;
    }
    if ((opts & TRK_OPTIN) && (opts & TRK_OPTOUT)) {
        reply_error(x->out, "ERR You can't specify both OPTIN mode and OPTOUT mode");
        return;
    }
    if (((opts & TRK_OPTIN) && (cur & TRK_OPTOUT)) || ((opts & TRK_OPTOUT) && (cur & TRK_OPTIN))) {
        reply_error(x->out, "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for "
                            "this client, and then re-enabling it with a different mode.");
        return;
    }
    if ((opts & TRK_BCAST) && !prefixes_ok(x, t, pre, npre)) {
        return;
    }
    if (t == NULL) {
        t = *tp = calloc(1, sizeof *t);
        KV_ASSERT(t != NULL);
    }
    if (!(t->flags & TRK_ON)) {
        STAT_ADD(sh->stats.tracking_clients, 1);
    }
    t->flags = TRK_ON | (t->flags & TRK_CACHING) | opts;
    if (redir != 0) {
        struct route r = {.id = conn_id(c),
                          .target = (uint64_t)redir,
                          .shard = sh->id,
                          .target_shard = redir_shard,
                          .flags = opts & (TRK_BCAST | TRK_NOLOOP)};
        routes_set(&r);
    } else if (t->redir != 0) {
        routes_drop(conn_id(c));
    }
    t->redir = (uint64_t)redir;
    t->redir_shard = redir_shard;
    if (opts & TRK_BCAST) {
        if (npre == 0) {
            prefix_add(t, conn_id(c), sh->id, "", 0);
        }
        for (size_t i = 0; i < npre; i++) {
            prefix_add(t, conn_id(c), sh->id, pre[i]->ptr, pre[i]->len);
        }
    }
    reply_ok(x->out);
}

void track_cmd_caching(struct cmd_ctx *x)
{
    struct track_conn *t = *conn_track(x->conn);
    if (t == NULL || !(t->flags & TRK_ON)) {
        reply_error(x->out, "ERR CLIENT CACHING can be called only when the client is in tracking "
                            "mode with OPTIN or OPTOUT mode enabled");
        return;
    }
    if (cmd_arg_is(&x->argv[2], "yes")) {
        if (!(t->flags & TRK_OPTIN)) {
            reply_error(x->out, "ERR CLIENT CACHING YES is only valid when tracking is enabled in "
                                "OPTIN mode.");
            return;
        }
    } else if (cmd_arg_is(&x->argv[2], "no")) {
        if (!(t->flags & TRK_OPTOUT)) {
            reply_error(x->out, "ERR CLIENT CACHING NO is only valid when tracking is enabled in "
                                "OPTOUT mode.");
            return;
        }
    } else {
        reply_err_syntax(x->out);
        return;
    }
    t->flags |= TRK_CACHING;
    reply_ok(x->out);
}

void track_cmd_getredir(struct cmd_ctx *x)
{
    reply_int(x->out, track_client_redir(*conn_track(x->conn)));
}

static int prefix_cmp(const void *a, const void *b)
{
    const struct prefix *p = a, *q = b;
    size_t n = p->n < q->n ? p->n : q->n;
    int r = memcmp(p->p, q->p, n);
    return r != 0 ? r : (p->n > q->n) - (p->n < q->n);
}

void track_cmd_trackinginfo(struct cmd_ctx *x)
{
    const struct track_conn *t = *conn_track(x->conn);
    uint32_t f = t != NULL ? t->flags : 0;
    static const struct {
        uint32_t flag, needs;
        const char *name;
    } names[] = {
        {TRK_BCAST, 0, "bcast"},
        {TRK_OPTIN, 0, "optin"},
        {TRK_CACHING, TRK_OPTIN, "caching-yes"},
        {TRK_OPTOUT, 0, "optout"},
        {TRK_CACHING, TRK_OPTOUT, "caching-no"},
        {TRK_NOLOOP, 0, "noloop"},
        {TRK_BROKEN, 0, "broken_redirect"},
    };
    size_t nflags = 1;
    for (size_t i = 0; i < KV_ARRAY_LEN(names); i++) {
        nflags += (f & names[i].flag) && (names[i].needs == 0 || (f & names[i].needs));
    }
    reply_map(x->out, 3);
    reply_bulk_str(x->out, "flags");
    reply_set(x->out, nflags);
    reply_bulk_str(x->out, (f & TRK_ON) ? "on" : "off");
    for (size_t i = 0; i < KV_ARRAY_LEN(names); i++) {
        if ((f & names[i].flag) && (names[i].needs == 0 || (f & names[i].needs))) {
            reply_bulk_str(x->out, names[i].name);
        }
    }
    reply_bulk_str(x->out, "redirect");
    reply_int(x->out, track_client_redir(t));
    reply_bulk_str(x->out, "prefixes");
    size_t n = t != NULL ? t->nprefix : 0;
    reply_array(x->out, n);
    if (n > 0) { /* in byte order, as Redis's radix tree lists them */
        struct prefix *v = malloc(n * sizeof *v);
        KV_ASSERT(v != NULL);
        memcpy(v, t->prefix, n * sizeof *v);
        qsort(v, n, sizeof *v, prefix_cmp);
        for (size_t i = 0; i < n; i++) {
            reply_bulk(x->out, v[i].p, v[i].n);
        }
        free(v);
    }
}
