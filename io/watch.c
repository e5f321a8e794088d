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

struct wkey {
    struct wkey *next; /* bucket chain */
    uint64_t h;
    struct wref *refs; /* the watches of this key */
    size_t nrefs;
    uint32_t klen;
    char key[];
};

/* A client with watches here, or a dirty one (whose watches are gone: as in Redis, a
 * client that can no longer succeed stops watching, so later writes skip it). */
struct wcli {
    struct wcli *next; /* bucket chain */
    uint64_t id;
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
    struct wkey **kb; /* key buckets */
    size_t kmask, nkeys;
    struct wcli **cb; /* client buckets */
    size_t cmask, nclients;
    size_t nwatching; /* clients with at least one watch */
};

static inline size_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

struct watch_reg *watch_create(struct mi_heap_s *heap)
{
    struct watch_reg *w = mi_heap_zalloc(heap, sizeof *w);
    KV_ASSERT(w != NULL);
    w->heap = heap;
    w->kb = mi_heap_calloc(heap, WATCH_BUCKETS_MIN, sizeof *w->kb);
    w->cb = mi_heap_calloc(heap, WATCH_BUCKETS_MIN, sizeof *w->cb);
    KV_ASSERT(w->kb != NULL && w->cb != NULL);
    w->kmask = w->cmask = WATCH_BUCKETS_MIN - 1;
    return w;
}

void watch_destroy(struct watch_reg *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t b = 0; b <= w->cmask; b++) {
        while (w->cb[b] != NULL) {
            watch_drop(w, w->cb[b]->id);
        }
    }
    KV_ASSERT(w->nkeys == 0 && w->nclients == 0);
    mi_free(w->kb);
    mi_free(w->cb);
    mi_free(w);
}

size_t watch_key_count(const struct watch_reg *w)
{
    return w != NULL ? w->nkeys : 0;
}

size_t watch_client_count(const struct watch_reg *w)
{
    return w != NULL ? w->nwatching : 0;
}

static struct wkey **key_slot(struct watch_reg *w, const char *key, size_t klen, uint64_t h)
{
    struct wkey **pp = &w->kb[mix(h) & w->kmask];
    while (*pp != NULL &&
           ((*pp)->h != h || (*pp)->klen != klen || memcmp((*pp)->key, key, klen) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

static struct wcli **cli_slot(const struct watch_reg *w, uint64_t id)
{
    struct wcli **pp = &w->cb[mix(id) & w->cmask];
    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void grow_keys(struct watch_reg *w)
{
    size_t n = (w->kmask + 1) * 2;
    struct wkey **nb = mi_heap_calloc(w->heap, n, sizeof *nb);
    KV_ASSERT(nb != NULL);
    for (size_t b = 0; b <= w->kmask; b++) {
        for (struct wkey *k = w->kb[b], *next; k != NULL; k = next) {
            next = k->next;
            size_t i = mix(k->h) & (n - 1);
            k->next = nb[i];
            nb[i] = k;
        }
    }
    mi_free(w->kb);
    w->kb = nb;
    w->kmask = n - 1;
}

static void grow_clients(struct watch_reg *w)
{
    size_t n = (w->cmask + 1) * 2;
    struct wcli **nb = mi_heap_calloc(w->heap, n, sizeof *nb);
    KV_ASSERT(nb != NULL);
    for (size_t b = 0; b <= w->cmask; b++) {
        for (struct wcli *c = w->cb[b], *next; c != NULL; c = next) {
            next = c->next;
            size_t i = mix(c->id) & (n - 1);
            c->next = nb[i];
            nb[i] = c;
        }
    }
    mi_free(w->cb);
    w->cb = nb;
    w->cmask = n - 1;
}

void watch_add(struct watch_reg *w, uint64_t client, const char *key, size_t klen, uint64_t h,
               int64_t expire_ms)
{
    KV_ASSERT(w != NULL && (key != NULL || klen == 0) && klen <= UINT32_MAX);
    struct wcli **cp = cli_slot(w, client);
    struct wcli *c = *cp;
    if (c == NULL) {
        c = mi_heap_zalloc(w->heap, sizeof *c);
        KV_ASSERT(c != NULL);
        c->id = client;
        *cp = c;
        if (++w->nclients > w->cmask + 1) {
            grow_clients(w);
        }
    } else if (c->dirty) {
        return; /* its EXEC fails anyway (Redis: no point in watching) */
    }
    struct wkey **kp = key_slot(w, key, klen, h);
    struct wkey *k = *kp;
    if (k == NULL) {
        k = mi_heap_malloc(w->heap, sizeof *k + klen);
        KV_ASSERT(k != NULL);
        *k = (struct wkey){.h = h, .klen = (uint32_t)klen};
        if (klen > 0) {
            memcpy(k->key, key, klen);
        }
        *kp = k;
        if (++w->nkeys > w->kmask + 1) {
            grow_keys(w);
        }
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
            struct wkey **kp = key_slot(w, k->key, k->klen, k->h);
            KV_ASSERT(*kp == k);
            *kp = k->next;
            w->nkeys--;
            mi_free(k);
        }
        mi_free(r);
    }
    w->nwatching -= c->count > 0;
    c->refs = NULL;
    c->count = 0;
}

void watch_touch(struct watch_reg *w, const char *key, size_t klen, uint64_t h)
{
    if (w == NULL || w->nkeys == 0) {
        return;
    }
    struct wkey *k = *key_slot(w, key, klen, h);
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
    if (w == NULL || w->nkeys == 0) {
        return;
    }
    for (size_t b = 0; b <= w->kmask; b++) {
        for (struct wkey *k = w->kb[b]; k != NULL; k = k->next) {
            if (pred(arg, k->key, k->klen, k->h)) {
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
    if (w == NULL || w->nclients == 0) {
        return true;
    }
    const struct wcli *c = *cli_slot(w, client);
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
    if (w == NULL || w->nclients == 0) {
        return;
    }
    struct wcli **cp = cli_slot(w, client);
    struct wcli *c = *cp;
    if (c == NULL) {
        return;
    }
    *cp = c->next;
    w->nclients--;
    unwatch_all(w, c);
    mi_free(c);
}

void watch_check(const struct watch_reg *w)
{
    KV_ASSERT(w != NULL);
    size_t keys = 0, clients = 0, refs_by_key = 0, refs_by_cli = 0, watching = 0;
    for (size_t b = 0; b <= w->kmask; b++) {
        for (const struct wkey *k = w->kb[b]; k != NULL; k = k->next) {
            KV_ASSERT((mix(k->h) & w->kmask) == b);
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
    for (size_t b = 0; b <= w->cmask; b++) {
        for (const struct wcli *c = w->cb[b]; c != NULL; c = c->next) {
            KV_ASSERT((mix(c->id) & w->cmask) == b);
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
    KV_ASSERT(keys == w->nkeys && clients == w->nclients && refs_by_key == refs_by_cli);
    KV_ASSERT(watching == w->nwatching);
}
