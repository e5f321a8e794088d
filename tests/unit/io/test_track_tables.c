/*
 * Unit tests of io/idmap (client id -> connection) and io/trktab (CLIENT TRACKING's key
 * -> readers table): each operation on its own, growth, and a seeded random model test
 * of each against plain arrays (the seed is printed; KV_TEST_SEED replays one).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "trktab.h"

static uint64_t seed_of(const char *what)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    const char *env = getenv("KV_TEST_SEED");
    if (env != NULL) {
        seed = strtoull(env, NULL, 0);
    }
    fprintf(stderr, "%s random model: KV_TEST_SEED=%" PRIu64 "\n", what, seed);
    return seed ? seed : 1;
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- idmap ---------------------------------------------------------------------- */

Test(idmap, put_get_del)
{
    struct idmap m;
    idmap_init(&m);
    cr_assert_null(idmap_get(&m, 1), "an empty map has nothing");
    cr_assert(!idmap_del(&m, 1));
    int a, b;
    cr_assert(idmap_put(&m, 7, &a));
    cr_assert(idmap_put(&m, 9, &b));
    cr_assert_eq(idmap_get(&m, 7), &a);
    cr_assert_eq(idmap_get(&m, 9), &b);
    cr_assert(idmap_put(&m, 7, &b), "a second put replaces");
    cr_assert_eq(idmap_get(&m, 7), &b);
    cr_assert_eq(m.count, 2);
    cr_assert(idmap_del(&m, 7));
    cr_assert_null(idmap_get(&m, 7));
    cr_assert_eq(idmap_get(&m, 9), &b);
    cr_assert_null(idmap_get(&m, 0), "0 is no id");
    idmap_deinit(&m);
}

Test(idmap, random_model)
{
    uint64_t seed = seed_of("idmap");
    uint64_t s = seed;
    enum { IDS = 3000 };
    static void *model[IDS];
    memset(model, 0, sizeof model);
    struct idmap m;
    idmap_init(&m);
    size_t count = 0;
    for (int op = 0; op < 400000; op++) {
        uint64_t id = 1 + next(&s) % IDS;
        void *v = (void *)(uintptr_t)(next(&s) | 1);
        switch (next(&s) % 3) {
        case 0:
            cr_assert(idmap_put(&m, id, v));
            count += model[id - 1] == NULL;
            model[id - 1] = v;
            break;
        case 1:
            cr_assert_eq(idmap_del(&m, id), model[id - 1] != NULL,
                         "op %d id %" PRIu64 " (KV_TEST_SEED=%" PRIu64 ")", op, id, seed);
            count -= model[id - 1] != NULL;
            model[id - 1] = NULL;
            break;
        default:
            cr_assert_eq(idmap_get(&m, id), model[id - 1],
                         "op %d id %" PRIu64 " (KV_TEST_SEED=%" PRIu64 ")", op, id, seed);
        }
        cr_assert_eq(m.count, count, "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
    }
    for (uint64_t id = 1; id <= IDS; id++) {
        cr_assert_eq(idmap_get(&m, id), model[id - 1]);
    }
    idmap_deinit(&m);
}

/* ---- trktab ------------------------------------------------------------------------ */

struct seen {
    char keys[64][32];
    uint64_t who[64];
    size_t n;
};

static void collect(void *arg, const char *key, size_t klen, uint64_t who)
{
    struct seen *s = arg;
    cr_assert_lt(s->n, 64);
    cr_assert_lt(klen, 32);
    memcpy(s->keys[s->n], key, klen);
    s->keys[s->n][klen] = '\0';
    s->who[s->n++] = who;
}

#define ADD(t, k, w) trktab_add(t, k, strlen(k), w)

Test(trktab, readers_taken_once_in_order)
{
    mi_heap_t *heap = mi_heap_new();
    struct trktab *t = trktab_create(heap);
    cr_assert(ADD(t, "a", 1));
    cr_assert(ADD(t, "a", 2));
    cr_assert(!ADD(t, "a", 1), "a reader is kept once per key");
    cr_assert(ADD(t, "a", 3), "a third reader grows the entry");
    cr_assert(ADD(t, "b", 1));
    cr_assert_eq(trktab_keys(t), 2);
    cr_assert_eq(trktab_items(t), 4);
    struct seen s = {0};
    cr_assert_eq(trktab_take(t, "a", 1, collect, &s), 3);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.who[0], 1);
    cr_assert_eq(s.who[1], 2);
    cr_assert_eq(s.who[2], 3);
    cr_assert_str_eq(s.keys[2], "a");
    cr_assert_eq(trktab_take(t, "a", 1, collect, &s), 0, "taken out: gone");
    cr_assert_eq(trktab_keys(t), 1);
    cr_assert_eq(trktab_items(t), 1);
    cr_assert_eq(trktab_take(t, "zz", 2, collect, &s), 0);
    trktab_clear(t);
    cr_assert_eq(trktab_keys(t), 0);
    cr_assert_eq(trktab_items(t), 0);
    cr_assert(!trktab_take_any(t, collect, &s), "nothing left");
    cr_assert(ADD(t, "b", 1), "usable after a clear");
    trktab_destroy(t);
    mi_heap_destroy(heap);
}

Test(trktab, binary_keys_and_take_any_empties_it)
{
    mi_heap_t *heap = mi_heap_new();
    struct trktab *t = trktab_create(heap);
    const char k1[] = {'x', '\0', 'y'}, k2[] = {'x', '\0', 'z'};
    cr_assert(trktab_add(t, k1, 3, 5));
    cr_assert(trktab_add(t, k2, 3, 5));
    cr_assert(trktab_add(t, "", 0, 6), "the empty key");
    cr_assert_eq(trktab_keys(t), 3);
    for (int i = 0; i < 1000; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%d", i);
        trktab_add(t, k, (size_t)n, (uint64_t)i);
    }
    cr_assert_eq(trktab_keys(t), 1003);
    size_t taken = 0;
    struct seen s;
    for (;;) {
        s.n = 0;
        if (!trktab_take_any(t, collect, &s)) {
            break;
        }
        cr_assert_eq(s.n, 1);
        taken++;
    }
    cr_assert_eq(taken, 1003);
    cr_assert_eq(trktab_items(t), 0);
    trktab_destroy(t);
    mi_heap_destroy(heap);
}

struct count_arg {
    size_t n;
    uint64_t mask; /* readers seen, as bits */
};

static void count_readers(void *arg, const char *key, size_t klen, uint64_t who)
{
    (void)key;
    (void)klen;
    struct count_arg *c = arg;
    c->n++;
    c->mask |= UINT64_C(1) << who;
}

Test(trktab, random_model)
{
    uint64_t seed = seed_of("trktab");
    uint64_t s = seed;
    enum { KEYS = 2000, READERS = 8 };
    static uint8_t model[KEYS]; /* readers of key i, as bits */
    memset(model, 0, sizeof model);
    mi_heap_t *heap = mi_heap_new();
    struct trktab *t = trktab_create(heap);
    for (int op = 0; op < 300000; op++) {
        uint32_t i = (uint32_t)(next(&s) % KEYS);
        char k[16];
        int n = snprintf(k, sizeof k, "key:%u", i);
        uint64_t who = next(&s) % READERS;
        if (next(&s) % 3 != 0) {
            bool fresh = !(model[i] >> who & 1);
            cr_assert_eq(trktab_add(t, k, (size_t)n, who), fresh,
                         "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
            model[i] |= (uint8_t)(1u << who);
        } else {
            struct count_arg c = {0};
            size_t got = trktab_take(t, k, (size_t)n, count_readers, &c);
            cr_assert_eq(got, (size_t)__builtin_popcount(model[i]),
                         "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
            cr_assert_eq(c.mask, model[i], "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
            model[i] = 0;
        }
        if (op % 1000 == 0) {
            size_t keys = 0, items = 0;
            for (int j = 0; j < KEYS; j++) {
                keys += model[j] != 0;
                items += (size_t)__builtin_popcount(model[j]);
            }
            cr_assert_eq(trktab_keys(t), keys, "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
            cr_assert_eq(trktab_items(t), items, "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
        }
    }
    trktab_destroy(t);
    mi_heap_destroy(heap);
}
