/*
 * watch: see watch.h. A watch is one `wref`, linked into the list of its key (doubly,
 * so that dropping a client unlinks each of its watches in O(1)) and into the list of
 * its client (singly: a client's watches are only ever walked or dropped together).
 */
#include "watch.h"

#include "kv_assert.h"

#include <mimalloc.h>
#include <string.h>

#define WATCH_BUCKETS_MIN 16 /* initial buckets of each map (a power of two) */

struct wref;

/*
 * The first member of a watched key and of a client: both maps chain these, keyed by
 * the key's hash or the client's id.
 */
struct wnode {
    struct wnode *next; /* bucket chain */
    uint64_t h;
};

/* A chained hash map of wnodes that doubles when its load passes 1. */
struct wmap {
    struct wnode **b;
    size_t mask, n;
};

struct wkey {
    struct wnode node; /* node.h: the key's hash */
    struct wref *refs; /* the watches of this key */
    size_t nrefs;
    uint32_t db;
    uint32_t klen;
    char key[];
};

/* A client with watches here, or a dirty one (whose watches are gone: as in Redis, a
 * client that can no longer succeed stops watching, so later writes skip it). */
struct wcli {
    struct wnode node; /* node.h: the client's id */
    struct wref *refs; /* the watches of this client */
    size_t count;
    bool dirty;
};

struct wref {
    struct wref *key_next;
    struct wref **key_pprev; /* the pointer that points at this watch in its key's list */
    struct wref *cli_next;
    struct wkey *k;
    struct wcli *cli;
    int64_t expire_ms; /* the key's expiry at WATCH; 0: none or absent */
};

struct watch_reg {
    mi_heap_t *heap;
    struct wmap keys;
    struct wmap clients;
    size_t nwatching; /* clients with at least one watch */
};

static inline size_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static void map_init(mi_heap_t *heap, struct wmap *m)
{
    m->b = mi_heap_calloc(heap, WATCH_BUCKETS_MIN, sizeof *m->b);
    KV_ASSERT(m->b != NULL);
    m->mask = WATCH_BUCKETS_MIN - 1;
    m->n = 0;
}

static struct wnode **map_head(const struct wmap *m, uint64_t h)
{
    return &m->b[mix(h) & m->mask];
}

/* After inserting a node: doubles the buckets once the load passes 1. */
static void map_added(mi_heap_t *heap, struct wmap *m)
{
    if (++m->n <= m->mask + 1) {
        return;
    }
    size_t n = (m->mask + 1) * 2;
    struct wnode **nb = mi_heap_calloc(heap, n, sizeof *nb);
    KV_ASSERT(nb != NULL);
    for (size_t b = 0; b <= m->mask; b++) {
        for (struct wnode *e = m->b[b], *next; e != NULL; e = next) {
            next = e->next;
            size_t i = mix(e->h) & (n - 1);
            e->next = nb[i];
            nb[i] = e;
        }
    }
    mi_free(m->b);
    m->b = nb;
    m->mask = n - 1;
}

struct watch_reg *watch_create(struct mi_heap_s *heap)
{
    struct watch_reg *w = mi_heap_zalloc(heap, sizeof *w);
    KV_ASSERT(w != NULL);
    w->heap = heap;
    map_init(heap, &w->keys);
    map_init(heap, &w->clients);
    return w;
}

void watch_destroy(struct watch_reg *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t b = 0; b <= w->clients.mask; b++) {
        while (w->clients.b[b] != NULL) {
            watch_drop(w, w->clients.b[b]->h);
        }
    }
    KV_ASSERT(w->keys.n == 0 && w->clients.n == 0);
    mi_free(w->keys.b);
    mi_free(w->clients.b);
    mi_free(w);
}

size_t watch_key_count(const struct watch_reg *w)
{
    return w != NULL ? w->keys.n : 0;
}

size_t watch_client_count(const struct watch_reg *w)
{
    return w != NULL ? w->nwatching : 0;
}

static struct wnode **key_slot(const struct watch_reg *w, uint32_t db, const char *key, size_t klen,
                               uint64_t h)
{
    struct wnode **pp = map_head(&w->keys, h);
    for (; *pp != NULL; pp = &(*pp)->next) {
        const struct wkey *k = (const struct wkey *)*pp;
        if (k->node.h == h && k->db == db && k->klen == klen && memcmp(k->key, key, klen) == 0) {
            break;
        }
    }
    return pp;
}

static struct wnode **cli_slot(const struct watch_reg *w, uint64_t id)
{
    struct wnode **pp = map_head(&w->clients, id);
    while (*pp != NULL && (*pp)->h != id) {
        pp = &(*pp)->next;
    }
    return pp;
}

void watch_add(struct watch_reg *w, uint64_t client, uint32_t db, const char *key, size_t klen,
               uint64_t h, int64_t expire_ms)
{
    KV_ASSERT(w != NULL && (key != NULL || klen == 0) && klen <= UINT32_MAX);
    struct wnode **cp = cli_slot(w, client);
    struct wcli *c = (struct wcli *)*cp;
    if (c == NULL) {
        c = mi_heap_zalloc(w->heap, sizeof *c);
        KV_ASSERT(c != NULL);
        c->node.h = client;
        *cp = &c->node;
        map_added(w->heap, &w->clients);
    } else if (c->dirty) {
        return; /* its EXEC fails anyway (Redis: no point in watching) */
    }
    struct wnode **kp = key_slot(w, db, key, klen, h);
    struct wkey *k = (struct wkey *)*kp;
    if (k == NULL) {
        k = mi_heap_malloc(w->heap, sizeof *k + klen);
        KV_ASSERT(k != NULL);
        *k = (struct wkey){.node = {.h = h}, .db = db, .klen = (uint32_t)klen};
        if (klen > 0) {
            memcpy(k->key, key, klen);
        }
        *kp = &k->node;
        map_added(w->heap, &w->keys);
    } else if (k->nrefs <= c->count) { /* already watched by this client? */
        for (struct wref *r = k->refs; r != NULL; r = r->key_next) {
            if (r->cli == c) {
                return;
            }
        }
    } else {
        for (struct wref *r = c->refs; r != NULL; r = r->cli_next) {
            if (r->k == k) {
                return;
            }
        }
    }
    struct wref *r = mi_heap_malloc(w->heap, sizeof *r);
    KV_ASSERT(r != NULL);
    *r = (struct wref){.k = k, .cli = c, .expire_ms = expire_ms};
    r->key_next = k->refs;
    r->key_pprev = &k->refs;
    if (k->refs != NULL) {
        k->refs->key_pprev = &r->key_next;
    }
    k->refs = r;
    k->nrefs++;
    r->cli_next = c->refs;
    c->refs = r;
    w->nwatching += c->count == 0;
    c->count++;
}

/* Frees every watch of c (and the keys nobody watches any more); c stays. */
static void unwatch_all(struct watch_reg *w, struct wcli *c)
{
    for (struct wref *r = c->refs, *next; r != NULL; r = next) {
        next = r->cli_next;
        *r->key_pprev = r->key_next;
        if (r->key_next != NULL) {
            r->key_next->key_pprev = r->key_pprev;
        }
        struct wkey *k = r->k;
        KV_ASSERT(k->nrefs > 0);
        if (--k->nrefs == 0) {
            KV_ASSERT(k->refs == NULL);
            struct wnode **kp = key_slot(w, k->db, k->key, k->klen, k->node.h);
            KV_ASSERT(*kp == &k->node);
            *kp = k->node.next;
            w->keys.n--;
            mi_free(k);
        }
        mi_free(r);
    }
    w->nwatching -= c->count > 0;
    c->refs = NULL;
    c->count = 0;
}

void watch_touch(struct watch_reg *w, uint32_t db, const char *key, size_t klen, uint64_t h)
{
    if (w == NULL || w->keys.n == 0) {
        return;
    }
    struct wkey *k = (struct wkey *)*key_slot(w, db, key, klen, h);
    if (k == NULL) {
        return;
    }
    /* Each watcher becomes dirty and stops watching (its watches on this key included);
     * the key is freed with its last watch. */
    for (;;) {
        struct wref *r = k->refs;
        KV_ASSERT(r != NULL);
        bool last = r->key_next == NULL;
        r->cli->dirty = true;
        unwatch_all(w, r->cli);
        if (last) {
            return; /* k is gone */
        }
    }
}

void watch_touch_if(struct watch_reg *w, watch_pred *pred, void *arg)
{
    if (w == NULL || w->keys.n == 0) {
        return;
    }
    for (size_t b = 0; b <= w->keys.mask; b++) {
        for (struct wnode *e = w->keys.b[b]; e != NULL; e = e->next) {
            struct wkey *k = (struct wkey *)e;
            if (pred(arg, k->db, k->key, k->klen, k->node.h)) {
                /* dirty only: their watches are freed at EXEC / UNWATCH / close, as
                 * freeing them here would change the maps being walked */
                for (struct wref *r = k->refs; r != NULL; r = r->key_next) {
                    r->cli->dirty = true;
                }
            }
        }
    }
}

bool watch_clean(const struct watch_reg *w, uint64_t client, int64_t now_ms)
{
    if (w == NULL || w->clients.n == 0) {
        return true;
    }
    const struct wcli *c = (const struct wcli *)*cli_slot(w, client);
    if (c == NULL) {
        return true;
    }
    if (c->dirty) {
        return false;
    }
    for (const struct wref *r = c->refs; r != NULL; r = r->cli_next) {
        if (r->expire_ms != 0 && r->expire_ms <= now_ms) {
            return false; /* expired since WATCH (tbl's rule: at its time, it is gone) */
        }
    }
    return true;
}

void watch_drop(struct watch_reg *w, uint64_t client)
{
    if (w == NULL || w->clients.n == 0) {
        return;
    }
    struct wnode **cp = cli_slot(w, client);
    struct wcli *c = (struct wcli *)*cp;
    if (c == NULL) {
        return;
    }
    *cp = c->node.next;
    w->clients.n--;
    unwatch_all(w, c);
    mi_free(c);
}

void watch_check(const struct watch_reg *w)
{
    KV_ASSERT(w != NULL);
    size_t keys = 0, clients = 0, refs_by_key = 0, refs_by_cli = 0, watching = 0;
    for (size_t b = 0; b <= w->keys.mask; b++) {
        for (const struct wnode *e = w->keys.b[b]; e != NULL; e = e->next) {
            const struct wkey *k = (const struct wkey *)e;
            KV_ASSERT((mix(e->h) & w->keys.mask) == b);
            KV_ASSERT(k->refs != NULL); /* a key without watchers is freed */
            struct wref *const *pprev = &k->refs;
            size_t n = 0;
            for (const struct wref *r = k->refs; r != NULL; r = r->key_next) {
                KV_ASSERT(r->k == k && (const void *)r->key_pprev == (const void *)pprev);
                pprev = &r->key_next;
                n++;
            }
            KV_ASSERT(n == k->nrefs);
            refs_by_key += n;
            keys++;
        }
    }
    for (size_t b = 0; b <= w->clients.mask; b++) {
        for (const struct wnode *e = w->clients.b[b]; e != NULL; e = e->next) {
            const struct wcli *c = (const struct wcli *)e;
            KV_ASSERT((mix(e->h) & w->clients.mask) == b);
            size_t n = 0;
            for (const struct wref *r = c->refs; r != NULL; r = r->cli_next) {
                KV_ASSERT(r->cli == c);
                n++;
            }
            KV_ASSERT(n == c->count && (n > 0 || c->dirty));
            refs_by_cli += n;
            clients++;
            watching += n > 0;
        }
    }
    KV_ASSERT(keys == w->keys.n && clients == w->clients.n && refs_by_key == refs_by_cli);
    KV_ASSERT(watching == w->nwatching);
}
