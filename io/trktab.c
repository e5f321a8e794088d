/*
 * trktab: see trktab.h.
 *
 *   slots[]  ->  struct trk_ent: hash | klen | n | cap | who[cap] | key bytes
 *
 * An entry's readers are few (the clients that read the key since it last changed), so
 * a reader is found by a linear scan, and a new one reallocates the entry with room to
 * double. Deletion shifts later members of the probe run back (no tombstones).
 */
#include "trktab.h"

#include "kv_assert.h"

#include <mimalloc.h>
#include <string.h>
#include <xxhash.h>

#define TRK_CAP_MIN 64

struct trk_ent {
    uint64_t hash;
    uint32_t klen;
    uint32_t n, cap;
    uint64_t who[]; /* cap of them, then the key's bytes */
};

struct trktab {
    struct mi_heap_s *heap;
    struct trk_ent **slots;
    size_t mask;
    size_t count; /* keys */
    size_t items; /* readers over all keys */
    size_t hand;  /* trktab_take_any goes on from here */
};

static const char *ent_key(const struct trk_ent *e)
{
    return (const char *)(e->who + e->cap);
}

struct trktab *trktab_create(struct mi_heap_s *heap)
{
    struct trktab *t = mi_heap_zalloc(heap, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->heap = heap;
    t->slots = mi_heap_zalloc(heap, TRK_CAP_MIN * sizeof *t->slots);
    if (t->slots == NULL) {
        mi_free(t);
        return NULL;
    }
    t->mask = TRK_CAP_MIN - 1;
    return t;
}

void trktab_clear(struct trktab *t)
{
    for (size_t i = 0; i <= t->mask; i++) {
        mi_free(t->slots[i]);
        t->slots[i] = NULL;
    }
    t->count = t->items = 0;
    t->hand = 0;
}

void trktab_destroy(struct trktab *t)
{
    if (t != NULL) {
        trktab_clear(t);
        mi_free(t->slots);
        mi_free(t);
    }
}

size_t trktab_keys(const struct trktab *t)
{
    return t->count;
}

size_t trktab_items(const struct trktab *t)
{
    return t->items;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const struct trktab *t, const char *key, size_t klen, uint64_t h)
{
    size_t i = (size_t)h & t->mask;
    for (;;) {
        const struct trk_ent *e = t->slots[i];
        if (e == NULL || (e->hash == h && e->klen == klen && memcmp(ent_key(e), key, klen) == 0)) {
            return i;
        }
        i = (i + 1) & t->mask;
    }
}

static void grow(struct trktab *t)
{
    size_t cap = (t->mask + 1) * 2;
    struct trk_ent **s = mi_heap_zalloc(t->heap, cap * sizeof *s);
    KV_ASSERT(s != NULL);
    for (size_t i = 0; i <= t->mask; i++) {
        struct trk_ent *e = t->slots[i];
        if (e != NULL) {
            size_t j = (size_t)e->hash & (cap - 1);
            while (s[j] != NULL) {
                j = (j + 1) & (cap - 1);
            }
            s[j] = e;
        }
    }
    mi_free(t->slots);
    t->slots = s;
    t->mask = cap - 1;
    t->hand = 0;
}

bool trktab_add(struct trktab *t, const char *key, size_t klen, uint64_t who)
{
    KV_ASSERT(klen <= UINT32_MAX);
    if ((t->count + 1) * 4 > (t->mask + 1) * 3) {
        grow(t);
    }
    uint64_t h = XXH3_64bits(key, klen);
    size_t i = find(t, key, klen, h);
    struct trk_ent *e = t->slots[i];
    if (e == NULL) {
        e = mi_heap_malloc(t->heap, sizeof *e + 2 * sizeof e->who[0] + klen);
        KV_ASSERT(e != NULL);
        e->hash = h;
        e->klen = (uint32_t)klen;
        e->n = 0;
        e->cap = 2;
        memcpy((char *)(e->who + e->cap), key, klen);
        t->slots[i] = e;
        t->count++;
    }
    for (uint32_t k = 0; k < e->n; k++) {
        if (e->who[k] == who) {
            return false;
        }
    }
    if (e->n == e->cap) {
        uint32_t cap = e->cap * 2;
        struct trk_ent *g = mi_heap_malloc(t->heap, sizeof *g + cap * sizeof g->who[0] + klen);
        KV_ASSERT(g != NULL);
        memcpy(g, e, sizeof *e + e->n * sizeof e->who[0]);
        g->cap = cap;
        memcpy((char *)(g->who + cap), ent_key(e), klen);
        mi_free(e);
        t->slots[i] = e = g;
    }
    e->who[e->n++] = who;
    t->items++;
    return true;
}

/* Empties slot i, shifting the rest of its probe run back. */
static void remove_at(struct trktab *t, size_t i)
{
    for (size_t j = (i + 1) & t->mask; t->slots[j] != NULL; j = (j + 1) & t->mask) {
        size_t home = (size_t)t->slots[j]->hash & t->mask;
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = NULL;
}

static size_t take_at(struct trktab *t, size_t i, trktab_fn *fn, void *arg)
{
    struct trk_ent *e = t->slots[i];
    remove_at(t, i);
    KV_ASSERT(t->count > 0 && t->items >= e->n);
    t->count--;
    t->items -= e->n;
    size_t n = e->n;
    for (uint32_t k = 0; k < e->n; k++) {
        fn(arg, ent_key(e), e->klen, e->who[k]);
    }
    mi_free(e);
    return n;
}

size_t trktab_take(struct trktab *t, const char *key, size_t klen, trktab_fn *fn, void *arg)
{
    if (t->count == 0) {
        return 0;
    }
    size_t i = find(t, key, klen, XXH3_64bits(key, klen));
    return t->slots[i] != NULL ? take_at(t, i, fn, arg) : 0;
}

bool trktab_take_any(struct trktab *t, trktab_fn *fn, void *arg)
{
    if (t->count == 0) {
        return false;
    }
    size_t i = t->hand & t->mask;
    while (t->slots[i] == NULL) {
        i = (i + 1) & t->mask;
    }
    t->hand = i + 1; /* a shifted member may land behind the hand: it waits one round */
    take_at(t, i, fn, arg);
    return true;
}
