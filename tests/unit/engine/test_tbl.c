/*
 * Unit tests of engine/tbl: each operation and limit, SCAN across growth and shrink,
 * split by hash with interleaved operations, and a seeded randomized model test
 * (KV_SEED=<n> replays a seed, KV_OPS=<n> sets the number of operations).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <mimalloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "kv_limits.h"
#include "tbl.h"

static mi_heap_t *heap;

static void setup(void)
{
    heap = mi_heap_new();
    cr_assert(heap != NULL);
}

static void teardown(void)
{
    mi_heap_delete(heap);
}

TestSuite(tbl, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------------ */

static int put(struct tbl *t, const char *k, const char *v, int64_t exp, unsigned flags,
               int64_t now)
{
    struct tbl_put_args a = {.val = v, .val_len = strlen(v), .expire_ms = exp, .flags = flags};
    return tbl_put(t, k, strlen(k), tbl_hash(k, strlen(k)), &a, now, NULL);
}

static const struct tbl_entry *get(struct tbl *t, const char *k, int64_t now)
{
    return tbl_get(t, k, strlen(k), tbl_hash(k, strlen(k)), now);
}

static int del(struct tbl *t, const char *k, int64_t now)
{
    return tbl_del(t, k, strlen(k), tbl_hash(k, strlen(k)), now, NULL);
}

static bool val_is(const struct tbl_entry *e, const void *v, size_t n)
{
    size_t len;
    const void *p = tbl_entry_val(e, &len);
    return len == n && memcmp(p, v, n) == 0;
}

static size_t entry_mem(const struct tbl *t)
{
    struct tbl_stats st;
    tbl_stats(t, &st);
    return st.mem_bytes - st.slot_bytes;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : dflt;
}

/* ---- hashing ------------------------------------------------------------------------- */

Test(tbl, hash_tag_rule)
{
    cr_assert_eq(tbl_hash("{user1}.a", 9), XXH3_64bits("user1", 5));
    cr_assert_eq(tbl_hash("x{user1}y{z}", 12), XXH3_64bits("user1", 5));
    cr_assert_eq(tbl_hash("{}user", 6), XXH3_64bits("{}user", 6)); /* empty tag */
    cr_assert_eq(tbl_hash("ab{cd", 5), XXH3_64bits("ab{cd", 5));   /* no close */
    cr_assert_eq(tbl_hash("}{a}", 4), XXH3_64bits("a", 1));        /* } before { */
    cr_assert_eq(tbl_hash("{{a}}", 5), XXH3_64bits("{a", 2));      /* first { */
    cr_assert_eq(tbl_hash("a{}{b}", 6), XXH3_64bits("a{}{b}", 6)); /* next } only */
    cr_assert_eq(tbl_hash("plain", 5), XXH3_64bits("plain", 5));
    cr_assert_eq(tbl_hash(NULL, 0), XXH3_64bits("", 0));
}

/* The tag is found wherever its braces are, for every key length (the brace test reads
 * keys of 8 to 16 bytes as two overlapping words, shorter ones byte by byte). */
Test(tbl, hash_tag_at_every_position_and_length)
{
    char key[40];
    for (size_t len = 1; len <= sizeof key; len++) {
        memset(key, 'x', len);
        cr_assert_eq(tbl_hash(key, len), XXH3_64bits(key, len), "len %zu", len);
        uint64_t ph;
        cr_assert_eq(tbl_hash_place(key, len, &ph), XXH3_64bits(key, len));
        cr_assert_eq(ph, XXH3_64bits(key, len));
        for (size_t at = 0; at + 2 < len; at++) { /* "{y}" at `at` */
            memset(key, 'x', len);
            key[at] = '{';
            key[at + 1] = 'y';
            key[at + 2] = '}';
            cr_assert_eq(tbl_hash(key, len), XXH3_64bits("y", 1), "len %zu at %zu", len, at);
            cr_assert_eq(tbl_hash_place(key, len, &ph), XXH3_64bits("y", 1));
            cr_assert_eq(ph, XXH3_64bits(key, len)); /* (placement: the whole key) */
        }
    }
}

Test(tbl, hash_place_is_hash_and_place_of_one_scan)
{
    static const char *const keys[] = {
        "{user1}.a", "x{user1}y{z}", "{}user", "ab{cd", "}{a}", "{{a}}",
        "a{}{b}",    "plain",        "",       "{",     "}",    "{}"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t n = strlen(keys[i]);
        uint64_t ph = 0;
        uint64_t h = tbl_hash_place(keys[i], n, &ph);
        cr_assert_eq(h, tbl_hash(keys[i], n), "%s", keys[i]);
        cr_assert_eq(ph, tbl_place(keys[i], n, h), "%s", keys[i]);
        /* a key's placement is the hash of all its bytes, tag or not */
        cr_assert_eq(ph, XXH3_64bits(keys[i], n), "%s", keys[i]);
    }
}

/* ---- basic operations ---------------------------------------------------------------- */

Test(tbl, put_get_del_binary)
{
    struct tbl *t = tbl_create(heap);
    cr_assert(t != NULL);
    const char k[] = {'a', 0, 'b'};
    const char v[] = {0, 1, 0, 2};
    struct tbl_put_args a = {.val = v, .val_len = sizeof(v)};
    uint64_t h = tbl_hash(k, sizeof(k));
    cr_assert_eq(tbl_put(t, k, sizeof(k), h, &a, 0, NULL), 0);
    cr_assert_null(tbl_get(t, "a", 1, tbl_hash("a", 1), 0)); /* prefix is another key */
    const struct tbl_entry *e = tbl_get(t, k, sizeof(k), h, 0);
    cr_assert(e != NULL && val_is(e, v, sizeof(v)));
    size_t kl;
    const void *kp = tbl_entry_key(e, &kl);
    cr_assert(kl == sizeof(k) && memcmp(kp, k, kl) == 0);
    cr_assert_eq(tbl_entry_type(e), TBL_TYPE_STRING);
    cr_assert_eq(tbl_entry_expire_ms(e), 0);
    /* empty key, empty value */
    struct tbl_put_args empty = {.val = NULL, .val_len = 0};
    cr_assert_eq(tbl_put(t, "", 0, tbl_hash("", 0), &empty, 0, NULL), 0);
    e = tbl_get(t, "", 0, tbl_hash("", 0), 0);
    cr_assert(e != NULL && val_is(e, "", 0));
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 2);
    cr_assert_eq(st.key_bytes, 3);
    cr_assert_eq(st.val_bytes, 4);
    cr_assert_eq(tbl_del(t, k, sizeof(k), h, 0, NULL), 0);
    cr_assert_eq(tbl_del(t, k, sizeof(k), h, 0, NULL), KV_ENOTFOUND);
    cr_assert_null(tbl_get(t, k, sizeof(k), h, 0));
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 1);
    tbl_check(t);
    tbl_destroy(t);
}

Test(tbl, nx_xx_old_keepttl)
{
    struct tbl *t = tbl_create(heap);
    cr_assert_eq(put(t, "k", "v1", 0, TBL_XX, 0), KV_ENOTFOUND);
    cr_assert_null(get(t, "k", 0));
    cr_assert_eq(put(t, "k", "v1", 0, TBL_NX, 0), 0);
    cr_assert_eq(put(t, "k", "v2", 0, TBL_NX, 0), KV_EEXIST);
    cr_assert(val_is(get(t, "k", 0), "v1", 2));
    struct tbl_put_args a = {.val = "v3", .val_len = 2, .expire_ms = 500, .flags = TBL_XX};
    struct tbl_entry *old = (struct tbl_entry *)1;
    cr_assert_eq(tbl_put(t, "k", 1, tbl_hash("k", 1), &a, 0, &old), 0);
    cr_assert(old != NULL && val_is(old, "v1", 2)); /* handed over, not copied */
    tbl_entry_free(old);
    cr_assert_eq(tbl_entry_expire_ms(get(t, "k", 0)), 500);
    /* KEEPTTL keeps 500; a plain SET drops it */
    a = (struct tbl_put_args){.val = "v4", .val_len = 2, .flags = TBL_KEEPTTL};
    cr_assert_eq(tbl_put(t, "k", 1, tbl_hash("k", 1), &a, 0, &old), 0);
    cr_assert(val_is(old, "v3", 2));
    tbl_entry_free(old);
    cr_assert_eq(tbl_entry_expire_ms(get(t, "k", 0)), 500);
    cr_assert_eq(put(t, "k", "v5", 0, 0, 0), 0);
    cr_assert_eq(tbl_entry_expire_ms(get(t, "k", 0)), 0);
    /* put on a new key hands out NULL; a failed put too */
    cr_assert_eq(tbl_put(t, "n", 1, tbl_hash("n", 1), &a, 0, &old), 0);
    cr_assert_null(old);
    a.flags = TBL_NX;
    cr_assert_eq(tbl_put(t, "n", 1, tbl_hash("n", 1), &a, 0, &old), KV_EEXIST);
    cr_assert_null(old);
    /* del hands the entry over */
    cr_assert_eq(tbl_del(t, "n", 1, tbl_hash("n", 1), 0, &old), 0);
    cr_assert(old != NULL && val_is(old, "v4", 2));
    tbl_entry_free(old);
    tbl_check(t);
    tbl_destroy(t);
}

Test(tbl, overwrite_in_place)
{
    struct tbl *t = tbl_create(heap);
    cr_assert_eq(put(t, "k", "0123456789abcdefghij", 0, 0, 0), 0);
    const struct tbl_entry *e0 = get(t, "k", 0);
    cr_assert_eq(put(t, "k", "abcdefghij0123456789", 0, 0, 0), 0); /* same size: same block */
    cr_assert_eq(get(t, "k", 0), e0);
    cr_assert(val_is(e0, "abcdefghij0123456789", 20));
    cr_assert_eq(put(t, "k", "xyz", 0, 0, 0), 0); /* a smaller block would do: new one */
    cr_assert_neq(get(t, "k", 0), e0);
    cr_assert(val_is(get(t, "k", 0), "xyz", 3));
    tbl_check(t);
    /* a value under half the block's room whose new entry would take a block of the
     * same size class anyway: in place (the allocator rounds both up alike) */
    struct tbl_stats st0;
    tbl_stats(t, &st0);
    const struct tbl_entry *e3 = get(t, "k", 0);
    size_t room = mi_usable_size(e3);
    int in_place = 0;
    for (size_t n = 2; n > 0; n--) { /* "xy" (here: the same size class), then "x" */
        const struct tbl_entry *was = get(t, "k", 0);
        size_t before = mi_usable_size(was);
        struct tbl_put_args f = {.val = "xy", .val_len = n}; /* a fresh entry, same layout */
        cr_assert_eq(tbl_put(t, "j", 1, tbl_hash("j", 1), &f, 0, NULL), 0);
        size_t fresh = mi_usable_size(get(t, "j", 0));
        cr_assert_eq(tbl_put(t, "k", 1, tbl_hash("k", 1), &f, 0, NULL), 0);
        cr_assert_eq(mi_usable_size(get(t, "k", 0)), fresh, "never bigger than a new one");
        cr_assert_eq(get(t, "k", 0) == was, before == fresh, "in place exactly when as big");
        in_place += get(t, "k", 0) == was;
        cr_assert(val_is(get(t, "k", 0), "xy", n));
        cr_assert_eq(tbl_del(t, "j", 1, tbl_hash("j", 1), 0, NULL), 0);
    }
    cr_assert_geq(in_place, 1, "the same-class case was met (%zu-byte blocks)", room);
    cr_assert_eq(put(t, "k", "xyz", 0, 0, 0), 0);
    cr_assert(val_is(get(t, "k", 0), "xyz", 3));
    struct tbl_stats st1;
    tbl_stats(t, &st1);
    cr_assert_eq(st1.mem_bytes, st0.mem_bytes);
    cr_assert_eq(st1.val_bytes, st0.val_bytes);
    tbl_check(t);
    cr_assert_eq(put(t, "k", "xywxywxyw", 50, 0, 0), 0); /* expiry field added: new layout */
    cr_assert_eq(tbl_entry_expire_ms(get(t, "k", 0)), 50);
    const struct tbl_entry *e1 = get(t, "k", 0);
    cr_assert_eq(put(t, "k", "xyvxyvxyv", 60, 0, 0), 0); /* same layout again: in place */
    cr_assert_eq(get(t, "k", 0), e1);
    cr_assert_eq(tbl_entry_expire_ms(e1), 60);
    /* the value may come from the entry itself */
    size_t len;
    const char *v = tbl_entry_val(e1, &len);
    struct tbl_put_args a = {.val = v + 1, .val_len = 8, .expire_ms = 60};
    cr_assert_eq(tbl_put(t, "k", 1, tbl_hash("k", 1), &a, 0, NULL), 0);
    cr_assert(val_is(get(t, "k", 0), "yvxyvxyv", 8));
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.val_bytes, 8);
    cr_assert(tbl_get(t, "k", 1, tbl_hash("k", 1), 60) == NULL);
    tbl_check(t);
    tbl_destroy(t);
}

Test(tbl, type_byte)
{
    struct tbl *t = tbl_create(heap);
    struct tbl_put_args a = {.val = "x", .val_len = 1, .type = 1};
    cr_assert_eq(tbl_put(t, "k", 1, tbl_hash("k", 1), &a, 0, NULL), 0);
    cr_assert_eq(tbl_entry_type(get(t, "k", 0)), 1); /* one bit: 0..1 */
    cr_assert(!tbl_entry_raw(get(t, "k", 0)));
    tbl_destroy(t);
}

/* The edited-in-place mark: set by tbl_modify with TBL_RAW (TBL_RAW_NEW for a value it
 * creates), cleared by a tbl_modify without it and by any tbl_put (in place or not),
 * kept when the value moves to a bigger block or gets an expiry time; never the type. */
Test(tbl, raw_mark)
{
    struct tbl *t = tbl_create(heap);
    uint64_t h = tbl_hash("k", 1), h2 = tbl_hash("n", 1);
    struct tbl_mod m;
    cr_assert_eq(tbl_modify(t, "k", 1, h, 0, 3, TBL_RAW, &m), 0); /* created: not marked */
    cr_assert(m.created && !tbl_entry_raw(get(t, "k", 0)));
    cr_assert_eq(tbl_modify(t, "k", 1, h, 0, 4, TBL_RAW, &m), 0);
    cr_assert(tbl_entry_raw(get(t, "k", 0)));
    cr_assert_eq(tbl_entry_type(get(t, "k", 0)), TBL_TYPE_STRING);
    cr_assert_eq(tbl_modify(t, "k", 1, h, 0, 4000, TBL_RAW, &m), 0); /* a bigger block */
    cr_assert(tbl_entry_raw(get(t, "k", 0)));
    cr_assert_eq(tbl_expire_set(t, "k", 1, h, 0, 1000000), 0);
    cr_assert(tbl_entry_raw(get(t, "k", 0)));
    cr_assert_eq(tbl_modify(t, "k", 1, h, 0, 4000, 0, &m), 0); /* INCR-like: cleared */
    cr_assert(!tbl_entry_raw(get(t, "k", 0)));
    cr_assert_eq(tbl_modify(t, "k", 1, h, 0, 4000, TBL_RAW, &m), 0);
    struct tbl_put_args a = {.val = m.val, .val_len = 3000, .expire_ms = 1000000};
    cr_assert_eq(tbl_put(t, "k", 1, h, &a, 0, NULL), 0); /* in place: cleared */
    cr_assert(!tbl_entry_raw(get(t, "k", 0)));
    cr_assert_eq(tbl_modify(t, "n", 1, h2, 0, 2, TBL_RAW | TBL_RAW_NEW, &m), 0);
    cr_assert(m.created && tbl_entry_raw(get(t, "n", 0)));
    struct tbl_put_args b = {.val = "v", .val_len = 1};
    cr_assert_eq(tbl_put(t, "n", 1, h2, &b, 0, NULL), 0);
    cr_assert(!tbl_entry_raw(get(t, "n", 0)));
    b.flags = TBL_RAW; /* a marked value moved (RENAME): marked, in place or not */
    cr_assert_eq(tbl_put(t, "n", 1, h2, &b, 0, NULL), 0);
    cr_assert(tbl_entry_raw(get(t, "n", 0)));
    cr_assert_eq(tbl_put(t, "k", 1, h, &b, 0, NULL), 0);
    cr_assert(tbl_entry_raw(get(t, "k", 0)));
    tbl_check(t);
    tbl_destroy(t);
}

/* ---- ownership ----------------------------------------------------------------------- */

static void *adopt_and_use(void *arg)
{
    struct tbl *t = arg;
    tbl_owner_adopt(t);
    if (put(t, "moved", "yes", 0, 0, 0) != 0 || get(t, "k", 0) == NULL) {
        return NULL;
    }
    return t;
}

Test(tbl, owner_adopt_hands_over)
{
    struct tbl *t = tbl_create(heap);
    cr_assert_eq(put(t, "k", "v", 0, 0, 0), 0);
    pthread_t th;
    void *res = NULL;
    cr_assert_eq(pthread_create(&th, NULL, adopt_and_use, t), 0);
    cr_assert_eq(pthread_join(th, &res), 0); /* the join orders memory */
    cr_assert_eq(res, t);
    tbl_owner_adopt(t); /* and back */
    cr_assert(val_is(get(t, "moved", 0), "yes", 3));
    tbl_destroy(t);
}

#ifndef NDEBUG
static void *use_without_adopt(void *arg)
{
    (void)get(arg, "k", 0);
    return NULL;
}

Test(tbl, other_thread_asserts, .signal = SIGABRT)
{
    struct tbl *t = tbl_create(heap);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, use_without_adopt, t), 0);
    pthread_join(th, NULL);
    cr_assert_fail("a call from a thread that does not own the table must abort (debug builds)");
}
#endif

/* ---- expiry -------------------------------------------------------------------------- */

Test(tbl, lazy_expiry)
{
    struct tbl *t = tbl_create(heap);
    cr_assert_eq(put(t, "a", "1", 100, 0, 0), 0);
    cr_assert_eq(put(t, "b", "2", 100, 0, 0), 0);
    cr_assert_eq(put(t, "c", "3", 100, 0, 0), 0);
    cr_assert(get(t, "a", 99) != NULL);
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 3);
    cr_assert_null(get(t, "a", 100)); /* expire_ms <= now: expired, and removed */
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 2);
    cr_assert_eq(put(t, "b", "new", 0, TBL_NX, 100), 0); /* expired counts as absent */
    cr_assert(val_is(get(t, "b", 100), "new", 3));
    cr_assert_eq(put(t, "c", "x", 0, TBL_XX, 100), KV_ENOTFOUND);
    cr_assert_eq(del(t, "c", 100), KV_ENOTFOUND);
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 1);
    tbl_check(t);
    tbl_destroy(t);
}

Test(tbl, expire_set_and_persist)
{
    struct tbl *t = tbl_create(heap);
    uint64_t h = tbl_hash("key", 3);
    cr_assert_eq(tbl_expire_set(t, "key", 3, h, 0, 10), KV_ENOTFOUND);
    cr_assert_eq(put(t, "key", "value", 0, 0, 0), 0);
    size_t mem0 = entry_mem(t);
    cr_assert_eq(tbl_expire_set(t, "key", 3, h, 0, 1000), 0);
    cr_assert_eq(tbl_entry_expire_ms(get(t, "key", 0)), 1000);
    cr_assert(val_is(get(t, "key", 0), "value", 5));
    cr_assert_eq(tbl_expire_set(t, "key", 3, h, 0, 2000), 0); /* in place */
    cr_assert_eq(tbl_entry_expire_ms(get(t, "key", 0)), 2000);
    cr_assert_eq(tbl_expire_set(t, "key", 3, h, 0, 0), 0); /* PERSIST */
    cr_assert_eq(tbl_entry_expire_ms(get(t, "key", 0)), 0);
    cr_assert(val_is(get(t, "key", 0), "value", 5));
    cr_assert_eq(entry_mem(t), mem0);
    cr_assert_eq(tbl_expire_set(t, "key", 3, h, 0, 5), 0); /* at now >= 5: gone */
    cr_assert_null(get(t, "key", 5));
    tbl_check(t);
    tbl_destroy(t);
}

static void expiry_counts(const struct tbl *t, size_t n, int64_t avg)
{
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.expiring, n, "expiring %zu, want %zu", st.expiring, n);
    cr_assert_eq(st.expire_avg_ms, avg, "expire_avg_ms %lld, want %lld",
                 (long long)st.expire_avg_ms, (long long)avg);
}

Test(tbl, expiry_counters_follow_every_change)
{
    struct tbl *t = tbl_create(heap);
    uint64_t h = tbl_hash("a", 1);
    expiry_counts(t, 0, 0);
    cr_assert_eq(put(t, "a", "v", 1000, 0, 0), 0);
    cr_assert_eq(put(t, "b", "v", 3000, 0, 0), 0);
    cr_assert_eq(put(t, "c", "v", 0, 0, 0), 0);
    expiry_counts(t, 2, 2000);
    cr_assert_eq(put(t, "a", "w", 5000, 0, 0), 0); /* overwritten in place */
    expiry_counts(t, 2, 4000);
    cr_assert_eq(tbl_expire_set(t, "a", 1, h, 0, 7000), 0); /* in place */
    expiry_counts(t, 2, 5000);
    cr_assert_eq(tbl_expire_set(t, "c", 1, tbl_hash("c", 1), 0, 9000), 0); /* relaid out */
    expiry_counts(t, 3, 19000 / 3);
    cr_assert_eq(tbl_expire_set(t, "a", 1, h, 0, 0), 0); /* PERSIST */
    expiry_counts(t, 2, 6000);
    cr_assert_eq(put(t, "b", "a longer value than before, in a new block", 0, 0, 0), 0);
    expiry_counts(t, 1, 9000);
    cr_assert_eq(put(t, "d", "v", 100, 0, 0), 0);
    expiry_counts(t, 2, 4550);
    cr_assert_null(get(t, "d", 100)); /* expired: removed on access */
    expiry_counts(t, 1, 9000);
    cr_assert_eq(del(t, "c", 0), 0);
    expiry_counts(t, 0, 0);
    tbl_check(t);

    /* active expiry and a split keep them too */
    for (int i = 0; i < 5000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(put(t, k, "v", i % 2 ? 0 : 1000 + i % 4, 0, 0), 0);
    }
    expiry_counts(t, 2500, 1001);
    struct tbl *dst = tbl_create(heap);
    cr_assert_eq(tbl_split_begin(t, dst, UINT64_C(1) << 63), 0);
    int rc;
    while ((rc = tbl_split_step(t, 1024)) == 0) {
    }
    cr_assert_eq(rc, 1);
    struct tbl_stats a, b;
    tbl_stats(t, &a);
    tbl_stats(dst, &b);
    cr_assert_eq(a.expiring + b.expiring, 2500);
    cr_assert(a.expiring > 1000 && b.expiring > 1000);
    tbl_check(t);
    tbl_check(dst);
    size_t before = a.expiring, removed = 0;
    uint64_t cursor = 0;
    do {
        removed += tbl_expire_step(t, 1001, &cursor, 1024); /* the 1000s go */
    } while (cursor != 0);
    tbl_stats(t, &a);
    cr_assert(removed > 0 && removed + a.expiring == before, "%zu + %zu != %zu", removed,
              a.expiring, before);
    cr_assert_eq(a.expire_avg_ms, 1002);
    tbl_check(t);
    tbl_destroy(dst);
    tbl_destroy(t);
}

Test(tbl, no_expiry_costs_no_bytes)
{
    /* A 16-byte key with a 40-byte value: 6 header bytes (flags, access clock, lengths)
     * + 56 = 62 bytes; an expiry time adds 8 (70), which lands in the next size class. */
    struct tbl *t = tbl_create(heap);
    size_t base = entry_mem(t);
    const char *k = "0123456789abcdef", *v = "0123456789abcdef0123456789abcdef01234567";
    cr_assert(mi_good_size(62) < mi_good_size(70));
    cr_assert_eq(put(t, k, v, 0, 0, 0), 0);
    cr_assert_eq(entry_mem(t) - base, mi_good_size(62));
    cr_assert_eq(put(t, k, v, 9, 0, 0), 0);
    cr_assert_eq(entry_mem(t) - base, mi_good_size(70));
    cr_assert_eq(tbl_expire_set(t, k, 16, tbl_hash(k, 16), 0, 0), 0);
    cr_assert_eq(entry_mem(t) - base, mi_good_size(62));
    tbl_destroy(t);
}

Test(tbl, expire_step_bounded)
{
    struct tbl *t = tbl_create(heap);
    char k[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(put(t, k, "v", i % 2 ? 50 : 0, 0, 0), 0);
    }
    struct tbl_stats st;
    tbl_stats(t, &st);
    size_t segs = st.segments;
    cr_assert(segs > 8);
    uint64_t cursor = 0;
    size_t removed = tbl_expire_step(t, 49, &cursor, 1); /* nothing expired yet */
    cr_assert_eq(removed, 0);
    cr_assert_neq(cursor, 0);
    cursor = 0;
    size_t calls = 0, total = 0;
    do {
        total += tbl_expire_step(t, 50, &cursor, 1); /* one segment per call */
        calls++;
        cr_assert(calls <= segs + 1);
    } while (cursor != 0);
    cr_assert_eq(total, 10000);
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 10000);
    tbl_check(t);
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(get(t, k, 50) != NULL, i % 2 == 0);
    }
    tbl_destroy(t);
}

/* ---- eviction sampling ------------------------------------------------------------------ */

Test(tbl, sample_empty_and_expiring_only)
{
    struct tbl *t = tbl_create(heap);
    bool ref = true;
    cr_assert_null(tbl_sample(t, 12345, 0, &ref));
    cr_assert_eq(put(t, "plain", "v", 0, 0, 0), 0);
    cr_assert_null(tbl_sample(t, 1, TBL_SAMPLE_EXPIRING, NULL)); /* no entry with a TTL */
    for (uint64_t r = 0; r < 64; r++) {
        const struct tbl_entry *e = tbl_sample(t, r * 0x9e3779b97f4a7c15ull, 0, NULL);
        cr_assert_not_null(e); /* the only entry, from any position */
        size_t kl;
        cr_assert_eq(memcmp(tbl_entry_key(e, &kl), "plain", 5), 0);
    }
    cr_assert_eq(put(t, "ttl", "v", 1000, 0, 0), 0);
    for (uint64_t r = 0; r < 64; r++) {
        const struct tbl_entry *e =
            tbl_sample(t, r * 0x9e3779b97f4a7c15ull, TBL_SAMPLE_EXPIRING, NULL);
        cr_assert_not_null(e);
        cr_assert_eq(tbl_entry_expire_ms(e), 1000);
    }
    tbl_destroy(t);
}

Test(tbl, sample_reaches_every_segment)
{
    struct tbl *t = tbl_create(heap);
    char k[32];
    enum { N = 50000 };
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
    }
    /* Samples spread over the table: many distinct keys, from both halves of the hash
     * space (by placement hash). */
    uint64_t s = 88172645463325252ull;
    int low = 0, high = 0, found = 0;
    for (int i = 0; i < 2000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        const struct tbl_entry *e = tbl_sample(t, s, 0, NULL);
        cr_assert_not_null(e); /* a dense table always has one within a segment */
        size_t kl;
        const void *kp = tbl_entry_key(e, &kl);
        found++;
        if (XXH3_64bits(kp, kl) >> 63) {
            high++;
        } else {
            low++;
        }
    }
    cr_assert_eq(found, 2000);
    cr_assert(low > 800 && high > 800, "low %d high %d", low, high);
    tbl_destroy(t);
}

Test(tbl, sample_finds_a_partitions_keys)
{
    /* A partition's keys share the top bits of their hashes: most of the directory then
     * points at empty segments, which sampling must pass over. */
    struct tbl *t = tbl_create(heap);
    char k[32];
    int n = 0;
    for (int i = 0; n < 5000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        if (tbl_hash(k, strlen(k)) >> 61 == 5) {
            cr_assert_eq(put(t, k, "v", i % 7 == 0 ? 100 : 0, 0, 0), 0);
            n++;
        }
    }
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert(st.dir_depth >= 3 && st.segments > 2);
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < 5000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        const struct tbl_entry *e = tbl_sample(t, s, i % 2 ? TBL_SAMPLE_EXPIRING : 0, NULL);
        cr_assert_not_null(e, "sample %d found nothing", i);
        cr_assert(i % 2 == 0 || tbl_entry_expire_ms(e) == 100);
    }
    tbl_destroy(t);
}

Test(tbl, sample_hand_goes_round_every_entry)
{
    struct tbl *t = tbl_create(heap);
    char k[32];
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
    }
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) { /* N calls: one round, each entry once */
            const struct tbl_entry *e = tbl_sample(t, 0, TBL_SAMPLE_HAND, NULL);
            cr_assert_not_null(e);
            size_t kl;
            const char *kp = tbl_entry_key(e, &kl);
            int id = atoi(kp + 1);
            cr_assert_eq(seen[id], round, "key %d met twice in round %d", id, round);
            seen[id]++;
        }
    }
    /* CLOCK: with the bits cleared by the hand, the keys read once per round are never
     * found unreferenced, the others are at their second meeting. */
    for (int i = 0; i < N; i++) {
        tbl_sample(t, 0, TBL_SAMPLE_HAND | TBL_SAMPLE_CLEAR, NULL); /* a round clears all */
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i += 10) {
            snprintf(k, sizeof(k), "k%d", i);
            cr_assert_not_null(get(t, k, 0)); /* every tenth key is in use */
        }
        for (int i = 0; i < N; i++) {
            bool ref;
            const struct tbl_entry *e = tbl_sample(t, 0, TBL_SAMPLE_HAND | TBL_SAMPLE_CLEAR, &ref);
            size_t kl;
            int id = atoi(tbl_entry_key(e, &kl) + 1);
            cr_assert_eq(ref, id % 10 == 0, "key %d", id);
        }
    }
    tbl_destroy(t);
}

struct expired_log {
    int n;
    uint32_t tag;
    char keys[8][16];
};

static void on_expired_cb(void *ctx, uint32_t tag, const struct tbl_entry *e)
{
    struct expired_log *log = ctx;
    size_t kl;
    const char *k = tbl_entry_key(e, &kl);
    if (log->n < 8) {
        snprintf(log->keys[log->n], sizeof log->keys[0], "%.*s", (int)kl, k);
    }
    log->n++;
    log->tag = tag;
}

Test(tbl, expiry_hook_sees_lazy_and_active_expiry)
{
    struct tbl *t = tbl_create(heap);
    struct expired_log log = {0};
    tbl_on_expired(t, on_expired_cb, &log, 7);
    cr_assert_eq(put(t, "lazy", "v", 100, 0, 0), 0);
    cr_assert_eq(put(t, "active", "v", 100, 0, 0), 0);
    cr_assert_eq(put(t, "stays", "v", 0, 0, 0), 0);
    cr_assert_not_null(get(t, "lazy", 99));
    cr_assert_eq(log.n, 0);
    cr_assert_null(get(t, "lazy", 100)); /* the lookup removes it: one call */
    cr_assert_eq(log.n, 1);
    cr_assert_str_eq(log.keys[0], "lazy");
    cr_assert_eq(log.tag, 7);
    uint64_t cursor = 0;
    cr_assert_eq(tbl_expire_step(t, 100, &cursor, 1 << 20), 1);
    cr_assert_eq(log.n, 2);
    cr_assert_str_eq(log.keys[1], "active");
    cr_assert_eq(del(t, "stays", 100), 0); /* a delete is no expiry */
    cr_assert_eq(log.n, 2);
    tbl_check(t);
    tbl_destroy(t);
}

Test(tbl, find_and_peek_have_no_side_effects)
{
    struct tbl *t = tbl_create(heap);
    cr_assert_eq(put(t, "k", "v", 50, 0, 0), 0);
    const struct tbl_entry *e = tbl_find(t, "k", 1, tbl_hash("k", 1));
    cr_assert_not_null(e);
    cr_assert(!tbl_entry_referenced(e));
    cr_assert_not_null(tbl_peek(t, "k", 1, tbl_hash("k", 1), 10));
    cr_assert(!tbl_entry_referenced(tbl_find(t, "k", 1, tbl_hash("k", 1))));
    /* expired: find still returns it and leaves it, peek removes it */
    cr_assert_not_null(tbl_find(t, "k", 1, tbl_hash("k", 1)));
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 1);
    cr_assert_null(tbl_peek(t, "k", 1, tbl_hash("k", 1), 50));
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 0);
    cr_assert_null(tbl_find(t, "missing", 7, tbl_hash("missing", 7)));
    tbl_destroy(t);
}

Test(tbl, sample_referenced_bit_is_a_second_chance)
{
    struct tbl *t = tbl_create(heap);
    cr_assert_eq(put(t, "a", "v", 0, 0, 0), 0);
    bool ref = true;
    const struct tbl_entry *e = tbl_sample(t, 7, 0, &ref);
    cr_assert(!ref && !tbl_entry_referenced(e)); /* a new entry is not used yet */
    cr_assert_not_null(get(t, "a", 0));
    e = tbl_sample(t, 7, TBL_SAMPLE_CLEAR, &ref);
    cr_assert(ref && !tbl_entry_referenced(e)); /* reported, then cleared */
    tbl_sample(t, 7, 0, &ref);
    cr_assert(!ref);
    cr_assert_not_null(get(t, "a", 0)); /* a read marks it again */
    tbl_sample(t, 7, TBL_SAMPLE_CLEAR, &ref);
    cr_assert(ref);
    cr_assert_eq(put(t, "a", "w", 0, 0, 0), 0); /* so does a write in place */
    tbl_sample(t, 7, TBL_SAMPLE_CLEAR, &ref);
    cr_assert(ref);
    cr_assert_eq(put(t, "a", "a much longer value than the block holds", 0, 0, 0), 0);
    tbl_sample(t, 7, TBL_SAMPLE_CLEAR, &ref); /* and a write into a new block */
    cr_assert(ref);
    struct tbl_mod m0;
    cr_assert_eq(tbl_modify(t, "a", 1, tbl_hash("a", 1), 0, 4000, 0, &m0), 0); /* grown */
    tbl_sample(t, 7, TBL_SAMPLE_CLEAR, &ref);
    cr_assert(ref);
    struct tbl_mod m;
    cr_assert_eq(tbl_modify(t, "a", 1, tbl_hash("a", 1), 0, 2, 0, &m), 0); /* and a modify */
    tbl_sample(t, 7, 0, &ref);
    cr_assert(ref);
    cr_assert_eq(tbl_entry_type(get(t, "a", 0)), TBL_TYPE_STRING); /* the bit is not the type */
    tbl_check(t);
    tbl_destroy(t);
}

/* ---- in-place modification ------------------------------------------------------------ */

Test(tbl, modify_append_setrange_incr)
{
    struct tbl *t = tbl_create(heap);
    uint64_t h = tbl_hash("s", 1);
    struct tbl_mod m;
    cr_assert_eq(tbl_modify(t, "s", 1, h, 0, 3, TBL_XX, &m), KV_ENOTFOUND);
    cr_assert_eq(tbl_modify(t, "s", 1, h, 0, 3, 0, &m), 0);
    cr_assert(m.created && m.old_len == 0);
    cr_assert(memcmp(m.val, "\0\0\0", 3) == 0);
    memcpy(m.val, "abc", 3);
    /* SETRANGE past the end zero-fills */
    cr_assert_eq(tbl_modify(t, "s", 1, h, 0, 8, 0, &m), 0);
    cr_assert(!m.created && m.old_len == 3);
    cr_assert(memcmp(m.val, "abc\0\0\0\0\0", 8) == 0);
    memcpy(m.val + 5, "xyz", 3);
    cr_assert(val_is(get(t, "s", 0), "abc\0\0xyz", 8));
    /* INCR-like shrink keeps the prefix */
    cr_assert_eq(tbl_modify(t, "s", 1, h, 0, 2, 0, &m), 0);
    cr_assert(val_is(get(t, "s", 0), "ab", 2));
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.val_bytes, 2);
    /* TTL is kept */
    cr_assert_eq(tbl_expire_set(t, "s", 1, h, 0, 777), 0);
    cr_assert_eq(tbl_modify(t, "s", 1, h, 0, 300, 0, &m), 0);
    cr_assert_eq(tbl_entry_expire_ms(get(t, "s", 0)), 777);
    tbl_check(t);
    tbl_destroy(t);
}

Test(tbl, append_is_amortized)
{
    /* 200000 one-byte appends must move the value only O(log n) times. */
    struct tbl *t = tbl_create(heap);
    uint64_t h = tbl_hash("log", 3);
    struct tbl_mod m;
    char *last = NULL;
    size_t moves = 0;
    for (size_t n = 1; n <= 200000; n++) {
        cr_assert_eq(tbl_modify(t, "log", 3, h, 0, n, 0, &m), 0);
        cr_assert_eq(m.old_len, n - 1);
        m.val[n - 1] = (char)('a' + n % 26);
        moves += m.val != last;
        last = m.val;
    }
    cr_assert(moves < 40, "moves=%zu", moves);
    size_t len;
    const char *v = tbl_entry_val(get(t, "log", 0), &len);
    cr_assert_eq(len, 200000);
    for (size_t n = 1; n <= 200000; n++) {
        cr_assert_eq(v[n - 1], (char)('a' + n % 26));
    }
    tbl_check(t);
    tbl_destroy(t);
}

/* ---- limits ---------------------------------------------------------------------------- */

Test(tbl, limits)
{
    struct tbl *t = tbl_create(heap);
    char k[8] = "key";
    struct tbl_put_args a = {.val = "v", .val_len = 1};
    /* The lengths are checked before any byte is read. */
    cr_assert_eq(tbl_put(t, k, (size_t)KV_KEY_BYTES_MAX + 1, 0, &a, 0, NULL), KV_ELIMIT);
    a.val_len = (size_t)KV_VALUE_BYTES_MAX + 1;
    cr_assert_eq(tbl_put(t, k, 3, tbl_hash(k, 3), &a, 0, NULL), KV_ELIMIT);
    struct tbl_mod m;
    cr_assert_eq(tbl_modify(t, k, 3, tbl_hash(k, 3), 0, (size_t)KV_VALUE_BYTES_MAX + 1, 0, &m),
                 KV_ELIMIT);
    cr_assert_eq(tbl_modify(t, k, (size_t)KV_KEY_BYTES_MAX + 1, 0, 0, 1, 0, &m), KV_ELIMIT);
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 0);
    /* Every header width: keys and values of 1-, 2- and 4-byte lengths round-trip. */
    size_t lens[] = {0, 255, 256, 65535, 65536, 300000};
    char *big = malloc(300000);
    for (size_t i = 0; i < 300000; i++) {
        big[i] = (char)(i * 7);
    }
    for (size_t i = 0; i < KV_ARRAY_LEN(lens); i++) {
        for (size_t j = 0; j < KV_ARRAY_LEN(lens); j++) {
            size_t kl = lens[i] ? lens[i] : 1, vl = lens[j];
            a = (struct tbl_put_args){.val = big, .val_len = vl, .expire_ms = (i + j) % 2};
            uint64_t h = tbl_hash(big, kl);
            cr_assert_eq(tbl_put(t, big, kl, h, &a, 0, NULL), 0);
            const struct tbl_entry *e = tbl_get(t, big, kl, h, 0);
            cr_assert(e != NULL && val_is(e, big, vl));
            size_t gkl;
            cr_assert(memcmp(tbl_entry_key(e, &gkl), big, kl) == 0 && gkl == kl);
        }
    }
    tbl_check(t);
    free(big);
    tbl_destroy(t);
}

/* ---- growth, shrink, hash tags ------------------------------------------------------------ */

Test(tbl, grow_and_shrink)
{
    struct tbl *t = tbl_create(heap);
    char k[32];
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        cr_assert_eq(put(t, k, k, 0, 0, 0), 0);
    }
    tbl_check(t);
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, (size_t)n);
    size_t big_segs = st.segments;
    unsigned big_depth = st.dir_depth;
    cr_assert(big_segs >= 100 && big_depth >= 7, "segs=%zu depth=%u", big_segs, big_depth);
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        cr_assert(val_is(get(t, k, 0), k, strlen(k)));
    }
    for (int i = 0; i < n - 10; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        cr_assert_eq(del(t, k, 0), 0);
    }
    tbl_check(t);
    tbl_stats(t, &st);
    cr_assert_eq(st.entries, 10);
    cr_assert(st.segments < 8 && st.dir_depth < big_depth, "segs=%zu depth=%u", st.segments,
              st.dir_depth);
    tbl_destroy(t);
}

Test(tbl, many_keys_one_hash_tag)
{
    /* 20000 keys sharing one {tag} share h; they must not pile onto one segment. */
    struct tbl *t = tbl_create(heap);
    char k[48];
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "{user:42}:%d", i);
        cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
    }
    tbl_check(t);
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "{user:42}:%d", i);
        cr_assert(get(t, k, 0) != NULL);
        cr_assert_eq(tbl_hash(k, strlen(k)), tbl_hash("user:42", 7));
    }
    tbl_destroy(t);
}

/* ---- scan ----------------------------------------------------------------------------------- */

struct seen {
    uint8_t *bits;
    size_t n;
    size_t calls;
    size_t dups; /* keys passed twice */
};

static void seen_cb(void *ctx, const struct tbl_entry *e)
{
    struct seen *s = ctx;
    size_t len;
    const char *k = tbl_entry_key(e, &len);
    char buf[32];
    cr_assert(len < sizeof(buf));
    memcpy(buf, k, len);
    buf[len] = 0;
    size_t id = strtoul(buf + 2, NULL, 10);
    if (id < s->n) {
        s->dups += s->bits[id];
        s->bits[id] = 1;
    }
    s->calls++;
}

static void key_of(char *k, size_t cap, size_t id)
{
    snprintf(k, cap, "s:%zu", id);
}

Test(tbl, scan_during_growth_and_shrink)
{
    struct tbl *t = tbl_create(heap);
    const size_t keep = 5000, total = 120000;
    char k[32];
    for (size_t i = 0; i < keep; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
    }
    /* Growth: 23 new keys after every call, until the table is 120000 strong. */
    struct seen s = {.bits = calloc(total, 1), .n = total};
    uint64_t cur = 0;
    size_t next = keep, calls = 0;
    do {
        cur = tbl_scan(t, cur, 0, seen_cb, &s);
        for (int j = 0; j < 23 && next < total; j++, next++) {
            key_of(k, sizeof(k), next);
            cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
        }
        calls++;
    } while (cur != 0);
    for (size_t i = 0; i < keep; i++) {
        cr_assert(s.bits[i], "key %zu missed during growth", i);
    }
    cr_assert_eq(s.dups, 0, "no key twice in one iteration");
    while (next < total) {
        key_of(k, sizeof(k), next++);
        cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
    }
    tbl_check(t);
    /* Shrink: delete 300 of the other keys after every call (merges, halvings). */
    memset(s.bits, 0, total);
    cur = 0;
    size_t victim = keep;
    calls = 0;
    do {
        cur = tbl_scan(t, cur, 0, seen_cb, &s);
        for (int j = 0; j < 1000 && victim < total; j++, victim++) {
            key_of(k, sizeof(k), victim);
            cr_assert_eq(del(t, k, 0), 0);
        }
        calls++;
    } while (cur != 0);
    struct tbl_stats st;
    tbl_stats(t, &st);
    cr_assert(victim == total && st.entries == keep, "victim=%zu entries=%zu", victim, st.entries);
    for (size_t i = 0; i < keep; i++) {
        cr_assert(s.bits[i], "key %zu missed during shrink", i);
    }
    cr_assert_eq(s.dups, 0, "no key twice in one iteration, across merges");
    tbl_check(t);
    /* A quiet full scan returns each key exactly once. */
    memset(s.bits, 0, total);
    s.calls = 0;
    cur = 0;
    do {
        cur = tbl_scan(t, cur, 0, seen_cb, &s);
    } while (cur != 0);
    cr_assert_eq(s.calls, keep);
    /* Expired entries are skipped. */
    key_of(k, sizeof(k), 0);
    cr_assert_eq(tbl_expire_set(t, k, strlen(k), tbl_hash(k, strlen(k)), 0, 10), 0);
    s.calls = 0;
    do {
        cur = tbl_scan(t, cur, 10, seen_cb, &s);
    } while (cur != 0);
    cr_assert_eq(s.calls, keep - 1);
    free(s.bits);
    tbl_destroy(t);
}

/* ---- split by hash ----------------------------------------------------------------------------
 */

Test(tbl, split_interleaved)
{
    struct tbl *src = tbl_create(heap), *dst = tbl_create(heap);
    const size_t n = 60000;
    const uint64_t m = UINT64_C(0x9000000000000000);
    char k[32];
    for (size_t i = 0; i < n; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(put(src, k, k, 0, 0, 0), 0);
    }
    cr_assert_eq(tbl_split_begin(src, dst, m), 0);
    cr_assert_eq(tbl_split_begin(src, dst, m), KV_EINVAL);
    cr_assert(tbl_splitting(src) && tbl_splitting(dst));
    /* Interleave: every step, touch keys through either table. */
    uint64_t rs = 7;
    size_t steps = 0, deleted = 0;
    uint8_t *gone = calloc(n, 1);
    int rc;
    while ((rc = tbl_split_step(src, 200)) == 0) {
        steps++;
        for (int j = 0; j < 20; j++) {
            size_t id = rng_next(&rs) % n;
            struct tbl *via = rng_next(&rs) & 1 ? src : dst;
            key_of(k, sizeof(k), id);
            switch (rng_next(&rs) % 4) {
            case 0:
                cr_assert_eq(get(via, k, 0) != NULL, !gone[id]);
                break;
            case 1:
                cr_assert_eq(put(via, k, k, 0, 0, 0), 0);
                deleted -= gone[id];
                gone[id] = 0;
                break;
            case 2:
                cr_assert_eq(del(via, k, 0), gone[id] ? KV_ENOTFOUND : 0);
                deleted += !gone[id];
                gone[id] = 1;
                break;
            default:
                cr_assert_eq(put(via, k, "nx", 0, TBL_NX, 0), gone[id] ? 0 : KV_EEXIST);
                if (gone[id]) {
                    cr_assert_eq(put(via, k, k, 0, TBL_XX, 0), 0);
                    deleted--;
                    gone[id] = 0;
                }
                break;
            }
        }
        if (steps % 64 == 0) {
            tbl_check(src);
            tbl_check(dst);
        }
    }
    cr_assert_eq(rc, 1);
    cr_assert(!tbl_splitting(src) && !tbl_splitting(dst));
    cr_assert(steps > 10, "steps=%zu", steps);
    tbl_check(src);
    tbl_check(dst);
    struct tbl_stats a, b;
    tbl_stats(src, &a);
    tbl_stats(dst, &b);
    cr_assert_eq(a.entries + b.entries, n - deleted);
    for (size_t i = 0; i < n; i++) {
        key_of(k, sizeof(k), i);
        uint64_t h = tbl_hash(k, strlen(k));
        struct tbl *home = h < m ? src : dst, *other = h < m ? dst : src;
        cr_assert_eq(get(home, k, 0) != NULL, !gone[i], "key %zu", i);
        cr_assert_null(get(other, k, 0), "key %zu duplicated", i);
        if (!gone[i]) {
            cr_assert(val_is(get(home, k, 0), k, strlen(k)));
        }
    }
    free(gone);
    tbl_destroy(src);
    tbl_destroy(dst);
}

static void split_all(struct tbl *src)
{
    int rc;
    size_t steps = 0;
    while ((rc = tbl_split_step(src, 1)) == 0) {
        steps++;
        cr_assert(steps < 100000);
    }
    cr_assert_eq(rc, 1);
}

Test(tbl, split_edges)
{
    char k[32];
    struct tbl *src = tbl_create(heap), *dst = tbl_create(heap), *other = tbl_create(heap);
    /* an empty table splits in one walk */
    cr_assert_eq(tbl_split_begin(src, dst, UINT64_C(1) << 63), 0);
    split_all(src);
    /* dst must be empty */
    cr_assert_eq(put(other, "x", "1", 0, 0, 0), 0);
    cr_assert_eq(tbl_split_begin(src, other, 5), KV_EINVAL);
    cr_assert(!tbl_splitting(src) && !tbl_splitting(other));
    /* m = 0 moves everything, entries with an expiry time too (steps take no clock) */
    for (size_t i = 0; i < 5000; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(put(src, k, "v", i % 5 == 0 ? 100 : 0, 0, 0), 0);
    }
    cr_assert_eq(tbl_split_begin(src, dst, 0), 0);
    split_all(src);
    struct tbl_stats a, b;
    tbl_stats(src, &a);
    tbl_stats(dst, &b);
    cr_assert_eq(a.entries, 0);
    cr_assert_eq(b.entries, 5000); /* not expired yet at now = 0 */
    tbl_check(src);
    tbl_check(dst);
    /* m = UINT64_MAX moves (almost surely) nothing back; expiry still applies */
    cr_assert_eq(tbl_split_begin(dst, src, UINT64_MAX), 0);
    split_all(dst);
    tbl_stats(dst, &b);
    cr_assert_eq(b.entries, 5000);
    uint64_t cursor = 0;
    size_t removed = 0;
    do {
        removed += tbl_expire_step(dst, 100, &cursor, 4096);
    } while (cursor != 0);
    cr_assert_eq(removed, 1000);
    for (size_t i = 0; i < 5000; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(get(dst, k, 100) != NULL, i % 5 != 0);
    }
    tbl_check(dst);
    tbl_destroy(src);
    tbl_destroy(dst);
    tbl_destroy(other);
}

Test(tbl, split_scan_covers_pair)
{
    struct tbl *src = tbl_create(heap), *dst = tbl_create(heap);
    const size_t n = 30000;
    char k[32];
    for (size_t i = 0; i < n; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(put(src, k, "v", 0, 0, 0), 0);
    }
    cr_assert_eq(tbl_split_begin(src, dst, UINT64_C(1) << 62), 0);
    struct seen s = {.bits = calloc(n, 1), .n = n};
    uint64_t cs = 0, cd = 0;
    bool ds = false, dd = false;
    while (!ds || !dd) {
        if (!ds) {
            cs = tbl_scan(src, cs, 0, seen_cb, &s);
            ds = cs == 0;
        }
        if (!dd) {
            cd = tbl_scan(dst, cd, 0, seen_cb, &s);
            dd = cd == 0;
        }
        if (tbl_splitting(src)) {
            cr_assert_geq(tbl_split_step(src, 50), 0);
        }
        tbl_check(src);
        tbl_check(dst);
    }
    for (size_t i = 0; i < n; i++) {
        cr_assert(s.bits[i], "key %zu missed", i);
    }
    cr_assert_eq(s.calls, n, "each key once: %zu", s.calls);
    free(s.bits);
    while (tbl_splitting(src)) {
        tbl_split_step(src, 1000);
    }
    tbl_destroy(src);
    tbl_destroy(dst);
}

/* ---- allocation failures ---- */

#ifndef NDEBUG
#define F_KEYS 20000u

struct fkey {
    bool present;
    uint8_t len;
    int64_t exp;
    char val[64];
};

static size_t f_name(char *k, size_t id)
{
    return id % 9 == 0 ? (size_t)sprintf(k, "{t%zu}:%zu", id % 37, id)
                       : (size_t)sprintf(k, "f:%zu", id);
}

static void f_verify(struct tbl *t, const struct fkey *fk, const char *k, size_t kl, uint64_t h,
                     uint64_t seed)
{
    const struct tbl_entry *e = tbl_get(t, k, kl, h, 0);
    cr_assert_eq(e != NULL, fk->present, "seed=%" PRIu64 " key %s", seed, k);
    if (e != NULL) {
        cr_assert(val_is(e, fk->val, fk->len), "seed=%" PRIu64 " key %s value", seed, k);
        cr_assert_eq(tbl_entry_expire_ms(e), fk->exp, "seed=%" PRIu64 " key %s exp", seed, k);
    }
}

/* One random operation on a key; the model is updated only when it succeeds. */
static int f_op(struct tbl *t, struct fkey *fk, const char *k, size_t kl, uint64_t h, uint64_t *rs)
{
    unsigned r = (unsigned)(rng_next(rs) % 4);
    if (r == 0) {
        char v[64];
        uint8_t vl = (uint8_t)(rng_next(rs) % 40);
        memset(v, 'a' + (int)(rng_next(rs) % 26), vl);
        int64_t exp = rng_next(rs) % 3 == 0 ? INT64_C(1) << 40 : 0;
        struct tbl_put_args a = {.val = v, .val_len = vl, .expire_ms = exp};
        int rc = tbl_put(t, k, kl, h, &a, 0, NULL);
        if (rc == 0) {
            *fk = (struct fkey){.present = true, .len = vl, .exp = exp};
            memcpy(fk->val, v, vl);
        }
        return rc;
    }
    if (r == 1) {
        size_t nl = fk->present ? fk->len + 1 + rng_next(rs) % 16 : rng_next(rs) % 8;
        nl = nl > sizeof(fk->val) ? 1 : nl;
        struct tbl_mod m;
        int rc = tbl_modify(t, k, kl, h, 0, nl, 0, &m);
        if (rc == 0) {
            size_t old = fk->present ? fk->len : 0;
            for (size_t i = old; i < nl; i++) {
                m.val[i] = fk->val[i] = (char)('A' + i % 26);
            }
            fk->exp = fk->present ? fk->exp : 0;
            fk->present = true;
            fk->len = (uint8_t)nl;
        }
        return rc;
    }
    if (r == 2) {
        int64_t exp = rng_next(rs) % 2 ? INT64_C(1) << 41 : 0;
        int rc = tbl_expire_set(t, k, kl, h, 0, exp);
        if (rc == 0) {
            fk->exp = exp;
        }
        return rc;
    }
    int rc = tbl_del(t, k, kl, h, 0, NULL);
    if (rc == 0) {
        fk->present = false;
    }
    return rc;
}

static void s_keys_cb(void *ctx, const struct tbl_entry *e)
{
    size_t len;
    const char *k = tbl_entry_key(e, &len);
    if (len > 2 && k[0] == 's' && k[1] == ':') {
        seen_cb(ctx, e);
    }
}

/* During a split, a key that dst cannot take (its segment is full and cannot split) is
 * served from src, where it still is: a lookup must not report it absent, nor a scan
 * miss it. */
Test(tbl, split_pull_without_memory_serves_from_src)
{
    struct tbl *src = tbl_create(heap), *dst = tbl_create(heap);
    const uint64_t m = UINT64_C(1) << 63;
    char k[32];
    for (size_t i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "s:%zu", i);
        cr_assert_eq(put(src, k, k, 0, 0, 0), 0);
    }
    cr_assert_eq(tbl_split_begin(src, dst, m), 0);
    /* Fill dst's only segment: each put's entry allocation succeeds, the segment split
     * (directory doubling) fails, so the segment fills past its target to 1021. */
    struct tbl_stats st;
    size_t i = 0;
    for (tbl_stats(dst, &st); st.entries < 1021; i++, tbl_stats(dst, &st)) {
        snprintf(k, sizeof(k), "d:%zu", i);
        if (tbl_hash(k, strlen(k)) >= m) {
            tbl_debug_alloc_fail(1, false);
            cr_assert_eq(put(dst, k, "d", 0, 0, 0), 0);
            tbl_debug_alloc_fail(-1, false);
        }
    }
    cr_assert_eq(st.segments, 1);
    /* A src key of dst's side, not moved yet: with allocations failing, get and del
     * through dst are served from src. */
    size_t id = 0;
    for (;; id++) {
        snprintf(k, sizeof(k), "s:%zu", id);
        if (tbl_hash(k, strlen(k)) >= m) {
            break;
        }
    }
    tbl_debug_alloc_fail(0, true);
    struct seen sn = {.bits = calloc(2000, 1), .n = 2000};
    uint64_t cur = 0;
    do {
        cur = tbl_scan(dst, cur, 0, s_keys_cb, &sn);
    } while (cur != 0);
    do {
        cur = tbl_scan(src, cur, 0, s_keys_cb, &sn);
    } while (cur != 0);
    for (size_t j = 0; j < 2000; j++) {
        cr_assert(sn.bits[j], "key s:%zu missed while dst could not grow", j);
    }
    cr_assert_eq(sn.calls, 2000);
    free(sn.bits);
    const struct tbl_entry *e = get(dst, k, 0);
    cr_assert(e != NULL && val_is(e, k, strlen(k)));
    cr_assert_eq(del(dst, k, 0), 0);
    cr_assert_null(get(dst, k, 0));
    tbl_debug_alloc_fail(-1, false);
    tbl_check(src);
    tbl_check(dst);
    while (tbl_split_step(src, 4096) == 0) {
    }
    for (size_t j = 0; j < 2000; j++) {
        snprintf(k, sizeof(k), "s:%zu", j);
        uint64_t h = tbl_hash(k, strlen(k));
        cr_assert_eq(get(h < m ? src : dst, k, 0) != NULL, j != id);
    }
    tbl_check(src);
    tbl_check(dst);
    tbl_destroy(src);
    tbl_destroy(dst);
}

/* Every failed allocation (entries, segments, directories; in operations, pulls and split
 * steps) leaves the tables as they were. Debug builds only: the hook is not in release. */
Test(tbl, alloc_failures_leave_table_intact, .timeout = 300)
{
    uint64_t seed = env_u64("KV_SEED", 0);
    seed = seed ? seed : (uint64_t)time(NULL);
    fprintf(stderr, "tbl alloc failures: KV_SEED=%" PRIu64 "\n", seed);
    uint64_t rs = seed;
    struct fkey *keys = calloc(F_KEYS, sizeof(*keys));
    struct tbl *src = tbl_create(heap), *dst = tbl_create(heap);
    const uint64_t m = UINT64_C(1) << 63;
    bool splitting = false, split_done = false;
    size_t failures = 0, split_failures = 0;
    for (size_t op = 0; op < 80000; op++) {
        size_t hot = op < 40000 ? F_KEYS : F_KEYS / 4; /* grow, then mostly shrink */
        bool plain_del = op >= 40000 && rng_next(&rs) % 2;
        size_t id = rng_next(&rs) % (plain_del ? F_KEYS : hot);
        char k[48];
        size_t kl = f_name(k, id);
        uint64_t h = tbl_hash(k, kl);
        struct tbl *t = !split_done || h < m ? src : dst;
        if (splitting && rng_next(&rs) % 2) {
            t = t == src ? dst : src; /* either side serves during a split */
        }
        struct fkey before = keys[id];
        tbl_debug_alloc_fail((long)(rng_next(&rs) % 4), rng_next(&rs) % 2);
        int rc = plain_del ? tbl_del(t, k, kl, h, 0, NULL) : f_op(t, &keys[id], k, kl, h, &rs);
        tbl_debug_alloc_fail(-1, false);
        if (plain_del && rc == 0) {
            keys[id].present = false;
        }
        if (rc == KV_ENOMEM) {
            failures++;
            cr_assert(memcmp(&before, &keys[id], sizeof(before)) == 0);
        } else {
            cr_assert(rc == 0 || rc == KV_ENOTFOUND, "seed=%" PRIu64 " rc %d", seed, rc);
        }
        f_verify(t, &keys[id], k, kl, h, seed);
        if (op == 30000) {
            cr_assert_eq(tbl_split_begin(src, dst, m), 0);
            splitting = true;
        }
        if (splitting && op % 64 == 0) {
            /* A failed segment split in dst is absorbed while the segment has room (it
             * fills past its target); the step reports KV_ENOMEM only when it is full. */
            tbl_debug_alloc_fail(0, rng_next(&rs) % 2);
            int step_rc = tbl_split_step(src, 1);
            tbl_debug_alloc_fail(-1, false);
            split_failures += step_rc == KV_ENOMEM;
            if (step_rc == 1) {
                splitting = false;
                split_done = true;
            }
        }
        if (op % 10000 == 0) {
            tbl_check(src);
            tbl_check(dst);
        }
    }
    while (splitting) {
        if (tbl_split_step(src, 100000) == 1) {
            splitting = false;
        }
    }
    tbl_check(src);
    tbl_check(dst);
    for (size_t id = 0; id < F_KEYS; id++) {
        char k[48];
        size_t kl = f_name(k, id);
        uint64_t h = tbl_hash(k, kl);
        f_verify(h < m ? src : dst, &keys[id], k, kl, h, seed);
    }
    fprintf(stderr, "tbl alloc failures: %zu operations and %zu split steps failed cleanly\n",
            failures, split_failures);
    cr_assert(failures > 1000, "failures %zu", failures);
    tbl_destroy(src);
    tbl_destroy(dst);
    free(keys);
}
#endif

/* ---- randomized model test
 * ----------------------------------------------------------------------- */

#define M_KEYS  60000u
#define M_PARTS 8u
#define M_VAL   40u

struct mkey {
    bool present;
    uint8_t vlen;
    int64_t exp;
    char val[M_VAL * 3];
};

struct part {
    struct tbl *t;
    uint64_t lo; /* partitions cover [lo, next lo) */
};

struct model {
    uint64_t seed;
    struct mkey *keys;
    struct part parts[M_PARTS];
    size_t nparts;
    struct tbl *split_src, *split_dst;
    int64_t now;
    /* scan in progress */
    bool scanning;
    size_t scan_part;
    uint64_t scan_cur;
    uint8_t *scan_seen, *scan_base;
    /* what the run exercised */
    size_t n_scans, n_splits, n_rebuilds, max_segments, max_entries;
};

static size_t mkey_name(char *k, size_t id)
{
    /* Every 7th key carries a hash tag shared by ~30 keys. */
    if (id % 7 == 0) {
        return (size_t)sprintf(k, "{g%zu}:%zu", id % 211, id);
    }
    return (size_t)sprintf(k, "m:%zu", id);
}

static bool mkey_live(const struct model *md, size_t id)
{
    const struct mkey *mk = &md->keys[id];
    return mk->present && (mk->exp == 0 || mk->exp > md->now);
}

/* The table a caller would pass: the partition's, or (during a split) either side. */
static struct tbl *m_route(struct model *md, uint64_t h, uint64_t *rs)
{
    size_t p = 0;
    for (size_t i = 1; i < md->nparts; i++) {
        if (md->parts[i].lo <= h) {
            p = i;
        }
    }
    struct tbl *t = md->parts[p].t;
    if (md->split_src != NULL && (t == md->split_src || t == md->split_dst)) {
        return rng_next(rs) & 1 ? md->split_src : md->split_dst;
    }
    return t;
}

static void m_scan_cb(void *ctx, const struct tbl_entry *e)
{
    struct model *md = ctx;
    size_t len;
    const char *k = tbl_entry_key(e, &len);
    char buf[48];
    cr_assert(len < sizeof(buf));
    memcpy(buf, k, len);
    buf[len] = 0;
    const char *colon = strchr(buf, ':');
    cr_assert(colon != NULL, "seed=%" PRIu64, md->seed);
    size_t id = strtoul(colon + 1, NULL, 10);
    cr_assert(id < M_KEYS);
    md->scan_seen[id] = 1;
}

static void m_scan_step(struct model *md)
{
    if (!md->scanning) {
        md->scanning = true;
        md->scan_part = 0;
        md->scan_cur = 0;
        for (size_t id = 0; id < M_KEYS; id++) {
            md->scan_base[id] = mkey_live(md, id);
            md->scan_seen[id] = 0;
        }
    }
    struct tbl *t = md->parts[md->scan_part].t;
    md->scan_cur = tbl_scan(t, md->scan_cur, md->now, m_scan_cb, md);
    if (md->scan_cur != 0) {
        return;
    }
    if (++md->scan_part < md->nparts) {
        return;
    }
    md->scanning = false;
    md->n_scans++;
    for (size_t id = 0; id < M_KEYS; id++) {
        if (md->scan_base[id] && mkey_live(md, id)) {
            cr_assert(md->scan_seen[id], "seed=%" PRIu64 ": scan missed key %zu", md->seed, id);
        }
    }
}

/* A key stops being "present throughout" the scan in progress. */
static void m_touch(struct model *md, size_t id)
{
    md->scan_base[id] = 0;
}

static void m_rebuild_cb(void *ctx, const struct tbl_entry *e)
{
    size_t kl, vl;
    const void *k = tbl_entry_key(e, &kl);
    const void *v = tbl_entry_val(e, &vl);
    struct tbl_put_args a = {.val = v, .val_len = vl, .expire_ms = tbl_entry_expire_ms(e)};
    cr_assert_eq(tbl_put(ctx, k, kl, tbl_hash(k, kl), &a, 0, NULL), 0);
}

/* At the partition limit, copy every live key into one new table and start over. */
static void m_rebuild(struct model *md)
{
    struct tbl *nt = tbl_create(heap);
    cr_assert(nt != NULL && md->split_src == NULL);
    for (size_t p = 0; p < md->nparts; p++) {
        uint64_t c = 0;
        do {
            c = tbl_scan(md->parts[p].t, c, md->now, m_rebuild_cb, nt);
        } while (c != 0);
        tbl_destroy(md->parts[p].t);
    }
    md->parts[0] = (struct part){.t = nt, .lo = 0};
    md->nparts = 1;
    md->scanning = false;
    md->n_rebuilds++;
}

static void m_split_start(struct model *md, uint64_t *rs)
{
    if (md->split_src != NULL) {
        return;
    }
    if (md->nparts == M_PARTS) {
        m_rebuild(md);
    }
    size_t p = rng_next(rs) % md->nparts;
    uint64_t lo = md->parts[p].lo;
    uint64_t hi = p + 1 < md->nparts ? md->parts[p + 1].lo : 0;
    uint64_t width = hi - lo; /* wraps correctly for the last partition */
    uint64_t m = lo + (width ? width / 2 : UINT64_C(1) << 63);
    struct tbl *dst = tbl_create(heap);
    cr_assert(dst != NULL);
    cr_assert_eq(tbl_split_begin(md->parts[p].t, dst, m), 0);
    memmove(&md->parts[p + 2], &md->parts[p + 1], (md->nparts - p - 1) * sizeof(struct part));
    md->parts[p + 1] = (struct part){.t = dst, .lo = m};
    md->nparts++;
    if (md->scanning && md->scan_part > p) {
        md->scan_part++;
    }
    md->split_src = md->parts[p].t;
    md->split_dst = dst;
}

static void m_check_entry(struct model *md, size_t id, const struct tbl_entry *e)
{
    struct mkey *mk = &md->keys[id];
    bool live = mkey_live(md, id);
    cr_assert_eq(e != NULL, live, "seed=%" PRIu64 " key %zu: table %d model %d", md->seed, id,
                 e != NULL, live);
    if (e != NULL) {
        cr_assert(val_is(e, mk->val, mk->vlen), "seed=%" PRIu64 " key %zu value", md->seed, id);
        cr_assert_eq(tbl_entry_expire_ms(e), mk->exp, "seed=%" PRIu64 " key %zu exp", md->seed, id);
    }
}

static void m_op(struct model *md, uint64_t *rs, size_t hot)
{
    char k[48];
    size_t id = rng_next(rs) % hot;
    size_t kl = mkey_name(k, id);
    uint64_t h = tbl_hash(k, kl);
    struct tbl *t = m_route(md, h, rs);
    struct mkey *mk = &md->keys[id];
    bool live = mkey_live(md, id);
    unsigned r = (unsigned)(rng_next(rs) % 100);
    if (r < 30) {
        if (r < 10) { /* a hint only: must not change what the get sees */
            tbl_prefetch(t, k, kl, h, false);
            tbl_prefetch(t, k, kl, h, true);
        }
        m_check_entry(md, id, tbl_get(t, k, kl, h, md->now));
    } else if (r < 60) {
        char v[M_VAL];
        uint8_t vl = (uint8_t)(rng_next(rs) % M_VAL);
        for (unsigned i = 0; i < vl; i++) {
            v[i] = (char)rng_next(rs);
        }
        unsigned flags = (unsigned)(rng_next(rs) % 8) & (rng_next(rs) % 2 ? 7u : 0u);
        if ((flags & TBL_NX) && (flags & TBL_XX)) {
            flags &= ~(unsigned)TBL_XX;
        }
        int64_t exp = rng_next(rs) % 3 == 0 ? md->now + 1 + (int64_t)(rng_next(rs) % 2000) : 0;
        struct tbl_put_args a = {.val = v, .val_len = vl, .expire_ms = exp, .flags = flags};
        struct tbl_entry *old = NULL;
        int rc = tbl_put(t, k, kl, h, &a, md->now, rng_next(rs) % 2 ? &old : NULL);
        int want = (flags & TBL_NX) && live    ? KV_EEXIST
                   : (flags & TBL_XX) && !live ? KV_ENOTFOUND
                                               : 0;
        cr_assert_eq(rc, want, "seed=%" PRIu64 " put key %zu rc %d", md->seed, id, rc);
        if (old != NULL) {
            cr_assert(live && val_is(old, mk->val, mk->vlen), "seed=%" PRIu64, md->seed);
            tbl_entry_free(old);
        }
        if (rc == 0) {
            if ((flags & TBL_KEEPTTL) && live) {
                exp = mk->exp;
            }
            mk->present = true;
            mk->vlen = vl;
            memcpy(mk->val, v, vl);
            mk->exp = exp;
            m_touch(md, id);
        }
    } else if (r < 75) {
        int rc = tbl_del(t, k, kl, h, md->now, NULL);
        cr_assert_eq(rc, live ? 0 : KV_ENOTFOUND, "seed=%" PRIu64 " del key %zu", md->seed, id);
        mk->present = false;
        m_touch(md, id);
    } else if (r < 85) {
        int64_t exp = rng_next(rs) % 4 == 0 ? 0 : md->now + (int64_t)(rng_next(rs) % 3000);
        int rc = tbl_expire_set(t, k, kl, h, md->now, exp);
        cr_assert_eq(rc, live ? 0 : KV_ENOTFOUND, "seed=%" PRIu64 " expire key %zu", md->seed, id);
        if (live) {
            mk->exp = exp;
        } else {
            mk->present = false;
        }
        m_touch(md, id);
    } else if (r < 95) {
        /* APPEND of 0..7 bytes, or a SETRANGE-like truncation to <= 3 bytes */
        size_t oldl = live ? mk->vlen : 0;
        size_t nl = rng_next(rs) % 4 ? oldl + rng_next(rs) % 8 : rng_next(rs) % 4;
        if (nl > sizeof(mk->val)) {
            nl = rng_next(rs) % 4;
        }
        struct tbl_mod mo;
        unsigned flags = rng_next(rs) % 4 == 0 ? TBL_XX : 0;
        int rc = tbl_modify(t, k, kl, h, md->now, nl, flags, &mo);
        if (!live && (flags & TBL_XX)) {
            cr_assert_eq(rc, KV_ENOTFOUND, "seed=%" PRIu64, md->seed);
            mk->present = false;
            return;
        }
        cr_assert_eq(rc, 0, "seed=%" PRIu64 " modify key %zu", md->seed, id);
        cr_assert_eq(mo.created, !live, "seed=%" PRIu64 " modify key %zu created", md->seed, id);
        cr_assert_eq(mo.old_len, oldl, "seed=%" PRIu64 " modify key %zu old_len", md->seed, id);
        if (!live) {
            mk->exp = 0;
        }
        for (size_t i = oldl; i < nl; i++) {
            cr_assert_eq(mo.val[i], 0, "seed=%" PRIu64 " zero fill", md->seed);
            mo.val[i] = (char)('A' + (i + id) % 26);
            mk->val[i] = mo.val[i];
        }
        mk->present = true;
        mk->vlen = (uint8_t)nl;
        m_touch(md, id);
    } else {
        m_check_entry(md, id, tbl_get(t, k, kl, h, md->now));
    }
}

static void m_check_all(struct model *md)
{
    for (size_t p = 0; p < md->nparts; p++) {
        tbl_check(md->parts[p].t);
    }
    size_t entries = 0;
    for (size_t p = 0; p < md->nparts; p++) {
        struct tbl_stats st;
        tbl_stats(md->parts[p].t, &st);
        entries += st.entries;
        md->max_segments = st.segments > md->max_segments ? st.segments : md->max_segments;
    }
    md->max_entries = entries > md->max_entries ? entries : md->max_entries;
    size_t live = 0, stored = 0;
    for (size_t id = 0; id < M_KEYS; id++) {
        live += mkey_live(md, id);
        stored += md->keys[id].present;
    }
    /* Tables may still hold expired entries nobody touched, never fewer than live. */
    cr_assert(entries >= live && entries <= stored, "seed=%" PRIu64 " entries %zu live %zu",
              md->seed, entries, live);
}

Test(tbl, model_randomized, .timeout = 600)
{
    struct model md = {0};
    uint64_t seed = env_u64("KV_SEED", 0);
    if (seed == 0) {
        seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&md;
    }
    size_t ops = (size_t)env_u64("KV_OPS", 1200000);
    fprintf(stderr, "tbl model: KV_SEED=%" PRIu64 " KV_OPS=%zu\n", seed, ops);
    md.seed = seed;
    uint64_t rs = seed;
    md.keys = calloc(M_KEYS, sizeof(*md.keys));
    md.scan_seen = calloc(M_KEYS, 1);
    md.scan_base = calloc(M_KEYS, 1);
    md.parts[0] = (struct part){.t = tbl_create(heap), .lo = 0};
    md.nparts = 1;
    md.now = 1000;
    for (size_t op = 0; op < ops; op++) {
        /* Phases: the hot key range grows to M_KEYS and shrinks back, so the table
         * grows and shrinks (deletes dominate while the range shrinks). */
        size_t phase = (op / 100000) % 6;
        size_t hot = phase < 3 ? M_KEYS / 8 * (phase + 1) * 2 + 1000 : M_KEYS / 10;
        hot = hot > M_KEYS ? M_KEYS : hot;
        unsigned r = (unsigned)(rng_next(&rs) % 1000);
        if (r < 970) {
            if (phase >= 3 && rng_next(&rs) % 3 == 0) {
                /* shrink: delete from the whole key range */
                char k[48];
                size_t id = rng_next(&rs) % M_KEYS;
                size_t kl = mkey_name(k, id);
                uint64_t h = tbl_hash(k, kl);
                int rc = tbl_del(m_route(&md, h, &rs), k, kl, h, md.now, NULL);
                cr_assert_eq(rc, mkey_live(&md, id) ? 0 : KV_ENOTFOUND, "seed=%" PRIu64, seed);
                md.keys[id].present = false;
                m_touch(&md, id);
            } else {
                m_op(&md, &rs, hot);
            }
        } else if (r < 980) {
            md.now += (int64_t)(rng_next(&rs) % 50);
        } else if (r < 985) {
            uint64_t c = rng_next(&rs);
            size_t p = rng_next(&rs) % md.nparts;
            tbl_expire_step(md.parts[p].t, md.now, &c, rng_next(&rs) % 3000);
        } else if (r < 995) {
            m_scan_step(&md);
        } else if (md.split_src != NULL) {
            int rc = tbl_split_step(md.split_src, rng_next(&rs) % 4000);
            cr_assert_geq(rc, 0);
            if (rc == 1) {
                md.split_src = md.split_dst = NULL;
                md.n_splits++;
            }
        } else if (rng_next(&rs) % 20 == 0) {
            m_split_start(&md, &rs);
        }
        if (op % 50000 == 0) {
            m_check_all(&md);
        }
    }
    m_check_all(&md);
    fprintf(stderr,
            "tbl model: %zu scans, %zu splits, %zu rebuilds, max %zu entries, max %zu "
            "segments in one table\n",
            md.n_scans, md.n_splits, md.n_rebuilds, md.max_entries, md.max_segments);
    cr_assert(md.n_scans > 10 && md.n_splits > 10 && md.max_segments > 4);
    for (size_t id = 0; id < M_KEYS; id++) {
        char k[48];
        size_t kl = mkey_name(k, id);
        uint64_t h = tbl_hash(k, kl);
        m_check_entry(&md, id, tbl_get(m_route(&md, h, &rs), k, kl, h, md.now));
    }
    while (md.split_src != NULL) {
        if (tbl_split_step(md.split_src, 100000) == 1) {
            md.split_src = md.split_dst = NULL;
        }
    }
    for (size_t p = 0; p < md.nparts; p++) {
        tbl_destroy(md.parts[p].t);
    }
    free(md.keys);
    free(md.scan_seen);
    free(md.scan_base);
}

static bool count_block(const mi_heap_t *h, const mi_heap_area_t *area, void *block,
                        size_t block_size, void *arg)
{
    (void)h;
    (void)area;
    (void)block_size;
    if (block != NULL) {
        ++*(size_t *)arg;
    }
    return true;
}

Test(tbl, destroy_in_bounded_steps_frees_everything)
{
    mi_heap_t *own = mi_heap_new();
    struct tbl *t = tbl_create(own);
    const size_t total = 50000;
    char k[32];
    for (size_t i = 0; i < total; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(put(t, k, "value", i % 3 ? 0 : 99999, 0, 0), 0);
    }
    struct tbl_stats st;
    tbl_stats(t, &st);
    size_t segs = st.segments, left = st.entries, steps = 0;
    cr_assert_eq(left, total);
    while (!tbl_destroy_step(t, 1)) {
        tbl_stats(t, &st);
        cr_assert_lt(st.entries, left, "every step frees a segment's entries");
        cr_assert_geq(left - st.entries, 1);
        cr_assert_leq(left - st.entries, 1023, "at most one segment per step");
        left = st.entries;
        steps++;
    }
    cr_assert_eq(steps + 1, segs, "one segment per step, the table with the last");
    size_t live = 0;
    mi_heap_visit_blocks(own, true, count_block, &live);
    cr_assert_eq(live, 0, "%zu blocks left in the table's heap", live);
    /* tbl_destroy after some steps frees the rest */
    t = tbl_create(own);
    for (size_t i = 0; i < total; i++) {
        key_of(k, sizeof(k), i);
        cr_assert_eq(put(t, k, "v", 0, 0, 0), 0);
    }
    cr_assert(!tbl_destroy_step(t, 3));
    tbl_destroy(t);
    live = 0;
    mi_heap_visit_blocks(own, true, count_block, &live);
    cr_assert_eq(live, 0);
    mi_heap_delete(own);
}

Test(tbl, access_clock_follows_reads_and_writes_not_peeks)
{
    struct tbl *t = tbl_create(heap);
    uint64_t h = tbl_hash("k", 1);
    cr_assert_eq(put(t, "k", "v", 0, 0, 5000), 0); /* made at t = 5 s */
    cr_assert_eq(tbl_entry_lru(tbl_peek(t, "k", 1, h, 5000)), 5);
    cr_assert_eq(tbl_entry_idle_s(tbl_peek(t, "k", 1, h, 9000), 9000), 4); /* a peek: no use */
    cr_assert_eq(tbl_entry_idle_s(tbl_find(t, "k", 1, h), 9000), 4);
    cr_assert_eq(tbl_entry_idle_s(tbl_get(t, "k", 1, h, 9500), 9500), 0); /* a read */
    cr_assert_eq(tbl_entry_lru(tbl_find(t, "k", 1, h)), 9);
    struct tbl_mod m;
    cr_assert_eq(tbl_modify(t, "k", 1, h, 20000, 2, 0, &m), 0); /* a write */
    cr_assert_eq(tbl_entry_idle_s(tbl_find(t, "k", 1, h), 21000), 1);
    /* RESTORE ... IDLETIME: the access was idle_s ago; the clock wraps at 2^24 s */
    struct tbl_put_args a = {.val = "x", .val_len = 1, .idle_s = 100};
    cr_assert_eq(tbl_put(t, "r", 1, tbl_hash("r", 1), &a, 50000, NULL), 0);
    cr_assert_eq(tbl_entry_idle_s(tbl_find(t, "r", 1, tbl_hash("r", 1)), 50000), 100);
    cr_assert_eq(tbl_put(t, "w", 1, tbl_hash("w", 1), &a, 30000, NULL), 0); /* lru = 2^24 - 70 */
    cr_assert_eq(tbl_entry_lru(tbl_find(t, "w", 1, tbl_hash("w", 1))), 0x1000000u - 70);
    cr_assert_eq(tbl_entry_idle_s(tbl_find(t, "w", 1, tbl_hash("w", 1)), 30000), 100);
    /* a value that grows into a new block keeps the clock; an expiry change too */
    cr_assert_eq(tbl_modify(t, "r", 1, tbl_hash("r", 1), 50000, 5000, 0, &m), 0);
    cr_assert_eq(tbl_entry_idle_s(tbl_find(t, "r", 1, tbl_hash("r", 1)), 50000), 0);
    cr_assert_eq(tbl_expire_set(t, "w", 1, tbl_hash("w", 1), 30000, 99999), 0);
    cr_assert_eq(tbl_entry_idle_s(tbl_find(t, "w", 1, tbl_hash("w", 1)), 30000), 100);
    tbl_check(t);
    tbl_destroy(t);
}
