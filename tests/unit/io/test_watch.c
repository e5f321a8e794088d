/*
 * Unit tests of io/watch: the WATCH registry of one shard. Each operation on its own,
 * then a seeded random model test (the seed is printed on failure; KV_TEST_SEED
 * replays one) against a plain array model, with the structure's invariants walked as
 * it grows and shrinks.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watch.h"

static uint64_t hash_of(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    }
    return h;
}

#define ADD_DB(w, c, db, k, exp) watch_add(w, c, db, k, strlen(k), hash_of(k, strlen(k)), exp)
#define TOUCH_DB(w, db, k)       watch_touch(w, db, k, strlen(k), hash_of(k, strlen(k)))
#define ADD(w, c, k, exp)        ADD_DB(w, c, 0, k, exp)
#define TOUCH(w, k)              TOUCH_DB(w, 0, k)

Test(watch, clean_until_a_watched_key_changes)
{
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    cr_assert(watch_clean(w, 1, 0), "a client that watches nothing is clean");
    ADD(w, 1, "a", 0);
    ADD(w, 1, "b", 0);
    ADD(w, 2, "b", 0);
    cr_assert_eq(watch_key_count(w), 2);
    cr_assert_eq(watch_client_count(w), 2);
    TOUCH(w, "zzz"); /* not watched */
    cr_assert(watch_clean(w, 1, 0) && watch_clean(w, 2, 0));
    TOUCH(w, "a");
    cr_assert(!watch_clean(w, 1, 0));
    cr_assert(watch_clean(w, 2, 0), "only the watchers of the key are dirty");
    cr_assert_eq(watch_key_count(w), 1, "a dirty client stops watching: only b is left");
    cr_assert_eq(watch_client_count(w), 1);
    ADD(w, 1, "c", 0); /* a dirty client's new watches are not kept */
    cr_assert_eq(watch_key_count(w), 1);
    TOUCH(w, "b");
    cr_assert(!watch_clean(w, 2, 0));
    cr_assert_eq(watch_key_count(w), 0);
    watch_check(w);
    watch_drop(w, 1);
    cr_assert(watch_clean(w, 1, 0), "dropped: clean again");
    watch_drop(w, 2);
    cr_assert_eq(watch_key_count(w), 0);
    cr_assert_eq(watch_client_count(w), 0);
    watch_check(w);
    watch_destroy(w);
    mi_heap_destroy(heap);
}

Test(watch, expiry_seen_at_watch_fails_once_reached)
{
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    ADD(w, 7, "k", 1000);
    cr_assert(watch_clean(w, 7, 999));
    cr_assert(!watch_clean(w, 7, 1000), "the key is gone at its expiry time");
    ADD(w, 8, "k", 0); /* no expiry (or absent) when watched */
    cr_assert(watch_clean(w, 8, 5000));
    ADD(w, 7, "k", 0); /* watched twice: the first expiry stays */
    cr_assert(!watch_clean(w, 7, 2000));
    cr_assert_eq(watch_key_count(w), 1);
    watch_check(w);
    watch_destroy(w);
    mi_heap_destroy(heap);
}

static bool starts_with_x(void *arg, uint32_t db, const char *key, size_t klen, uint64_t h)
{
    (void)h;
    ++*(int *)arg;
    return db == 0 && klen > 0 && key[0] == 'x';
}

Test(watch, a_key_is_its_database_and_name)
{
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    ADD_DB(w, 1, 0, "k", 0);
    ADD_DB(w, 2, 9, "k", 0);
    ADD_DB(w, 3, 9, "k", 0);
    cr_assert_eq(watch_key_count(w), 2, "k of db 0 and k of db 9 are two keys");
    TOUCH_DB(w, 1, "k"); /* nobody watches k in db 1 */
    cr_assert(watch_clean(w, 1, 0) && watch_clean(w, 2, 0) && watch_clean(w, 3, 0));
    TOUCH_DB(w, 9, "k");
    cr_assert(watch_clean(w, 1, 0), "db 0's k did not change");
    cr_assert(!watch_clean(w, 2, 0) && !watch_clean(w, 3, 0));
    TOUCH_DB(w, 0, "k");
    cr_assert(!watch_clean(w, 1, 0));
    cr_assert_eq(watch_key_count(w), 0);
    watch_check(w);
    watch_destroy(w);
    mi_heap_destroy(heap);
}

Test(watch, touch_if_touches_what_the_predicate_picks)
{
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    ADD(w, 1, "x1", 0);
    ADD(w, 2, "y1", 0);
    ADD(w, 3, "x2", 0);
    ADD(w, 3, "y2", 0);
    ADD_DB(w, 4, 5, "x1", 0);
    int calls = 0;
    watch_touch_if(w, starts_with_x, &calls);
    cr_assert_eq(calls, 5, "every watched key once");
    cr_assert(!watch_clean(w, 1, 0) && watch_clean(w, 2, 0) && !watch_clean(w, 3, 0));
    cr_assert(watch_clean(w, 4, 0), "the predicate is told the key's database");
    watch_destroy(w); /* with watches left: frees them */
    mi_heap_destroy(heap);
}

Test(watch, binary_and_empty_keys)
{
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'};
    watch_add(w, 1, 0, k1, 3, 42, 0); /* same hash, different bytes */
    watch_add(w, 2, 0, k2, 3, 42, 0);
    watch_add(w, 3, 0, "", 0, 43, 0);
    cr_assert_eq(watch_key_count(w), 3);
    watch_touch(w, 0, k2, 3, 42);
    cr_assert(watch_clean(w, 1, 0) && !watch_clean(w, 2, 0) && watch_clean(w, 3, 0));
    watch_touch(w, 0, "", 0, 43);
    cr_assert(!watch_clean(w, 3, 0));
    cr_assert(watch_key_count(NULL) == 0 && watch_clean(NULL, 1, 0));
    watch_touch(NULL, 0, "a", 1, 1); /* a shard that never had a watch */
    watch_drop(NULL, 1);
    watch_check(w);
    watch_destroy(w);
    mi_heap_destroy(heap);
}

/* ---- random model test ---- */

#define M_CLIENTS 24
#define M_KEYS    64

struct model {
    bool watched[M_CLIENTS][M_KEYS];
    int64_t exp[M_CLIENTS][M_KEYS];
    bool dirty[M_CLIENTS];
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Model key k is name "key:<k / 4>" in database k % 4: names repeat across databases. */
static void key_name(int k, char *buf)
{
    snprintf(buf, 16, "key:%d", k / 4);
}

static bool model_clean(const struct model *m, int c, int64_t now)
{
    if (m->dirty[c]) {
        return false;
    }
    for (int k = 0; k < M_KEYS; k++) {
        if (m->watched[c][k] && m->exp[c][k] != 0 && m->exp[c][k] <= now) {
            return false;
        }
    }
    return true;
}

static void model_drop(struct model *m, int c)
{
    memset(m->watched[c], 0, sizeof m->watched[c]);
    m->dirty[c] = false;
}

Test(watch, random_against_a_model)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    const char *env = getenv("KV_TEST_SEED");
    if (env != NULL) {
        seed = strtoull(env, NULL, 0);
    }
    fprintf(stderr, "watch random model: KV_TEST_SEED=%" PRIu64 "\n", seed);
    uint64_t s = seed ? seed : 1;
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    struct model *m = calloc(1, sizeof *m);
    cr_assert_not_null(m);
    char name[16];
    for (int op = 0; op < 300000; op++) {
        int c = (int)(rnd(&s) % M_CLIENTS), k = (int)(rnd(&s) % M_KEYS);
        int64_t now = (int64_t)(op / 100);
        key_name(k, name);
        switch (rnd(&s) % 8) {
        case 0:
        case 1:
        case 2: {
            int64_t exp = rnd(&s) % 3 == 0 ? now + (int64_t)(rnd(&s) % 50) + 1 : 0;
            ADD_DB(w, (uint64_t)c, (uint32_t)(k % 4), name, exp);
            if (!m->watched[c][k] && !m->dirty[c]) { /* a dirty client watches no more */
                m->watched[c][k] = true;
                m->exp[c][k] = exp;
            }
            break;
        }
        case 3:
        case 4:
            TOUCH_DB(w, (uint32_t)(k % 4), name);
            for (int i = 0; i < M_CLIENTS; i++) {
                if (m->watched[i][k]) { /* dirty, and watching nothing any more */
                    m->dirty[i] = true;
                    memset(m->watched[i], 0, sizeof m->watched[i]);
                }
            }
            break;
        case 5:
            watch_drop(w, (uint64_t)c);
            model_drop(m, c);
            break;
        default:
            cr_assert_eq(watch_clean(w, (uint64_t)c, now), model_clean(m, c, now),
                         "op %d client %d (KV_TEST_SEED=%" PRIu64 ")", op, c, seed);
            break;
        }
        if (op % 1000 == 0) {
            watch_check(w);
            size_t keys = 0, clients = 0;
            for (int kk = 0; kk < M_KEYS; kk++) {
                bool any = false;
                for (int cc = 0; cc < M_CLIENTS; cc++) {
                    any |= m->watched[cc][kk];
                }
                keys += any;
            }
            for (int cc = 0; cc < M_CLIENTS; cc++) {
                bool any = false;
                for (int kk = 0; kk < M_KEYS; kk++) {
                    any |= m->watched[cc][kk];
                }
                clients += any;
            }
            cr_assert_eq(watch_key_count(w), keys, "op %d (KV_TEST_SEED=%" PRIu64 ")", op, seed);
            cr_assert_eq(watch_client_count(w), clients, "op %d (KV_TEST_SEED=%" PRIu64 ")", op,
                         seed);
        }
    }
    free(m);
    watch_destroy(w);
    mi_heap_destroy(heap);
}

Test(watch, grows_and_shrinks_with_many_keys_and_clients)
{
    mi_heap_t *heap = mi_heap_new();
    struct watch_reg *w = watch_create(heap);
    char name[32];
    for (uint64_t c = 0; c < 2000; c++) {
        for (int k = 0; k < 20; k++) {
            snprintf(name, sizeof name, "k%llu", (unsigned long long)(c * 7 + (uint64_t)k) % 5000);
            ADD(w, c, name, 0);
        }
    }
    watch_check(w);
    cr_assert_eq(watch_client_count(w), 2000);
    TOUCH(w, "k14");
    int n_touched = 0;
    for (uint64_t c = 0; c < 2000; c++) {
        bool touched = false;
        for (uint64_t k = 0; k < 20; k++) {
            touched |= (c * 7 + k) % 5000 == 14;
        }
        n_touched += touched;
        cr_assert_eq(watch_clean(w, c, 0), !touched, "client %llu", (unsigned long long)c);
    }
    cr_assert_geq(n_touched, 3);
    cr_assert_eq(watch_client_count(w), 2000 - (size_t)n_touched, "dirty clients stop watching");
    watch_check(w);
    size_t odd_watching = 0;
    for (uint64_t c = 1; c < 2000; c += 2) {
        odd_watching += watch_clean(w, c, 0);
    }
    for (uint64_t c = 0; c < 2000; c += 2) {
        watch_drop(w, c);
    }
    watch_check(w);
    cr_assert_eq(watch_client_count(w), odd_watching);
    for (uint64_t c = 1; c < 2000; c += 2) {
        watch_drop(w, c);
    }
    cr_assert_eq(watch_key_count(w), 0);
    watch_check(w);
    watch_destroy(w);
    mi_heap_destroy(heap);
}
