/*
 * Unit tests of engine/hll: Redis's byte format (a value Redis 7.0 made, the estimate it
 * gave), sparse and dense alike (hll_selftest), promotion, merge, corruption, accuracy.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hll.h"

#define CAP hll_cap(HLL_SPARSE_BYTES_MAX)

static uint8_t *fresh(size_t *len)
{
    uint8_t *v = malloc(CAP);
    cr_assert_not_null(v);
    *len = hll_init(v);
    return v;
}

static void add_n(uint8_t *v, size_t *len, const char *prefix, int n, size_t sparse_max)
{
    for (int i = 0; i < n; i++) {
        char e[32];
        int k = snprintf(e, sizeof e, "%s%d", prefix, i);
        cr_assert_geq(hll_add(v, len, CAP, e, (size_t)k, sparse_max), 0);
    }
}

/* PFADD h a b c d e f g in redis-server 7.0.15: these bytes, PFCOUNT 7. */
Test(hll, bytes_and_estimate_of_redis)
{
    static const uint8_t redis[] = "HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80"
                                   "Fm\x80V\x0c\x80"
                                   "D<\x84"
                                   "8\x80P\xb1\x84I\x8c\x80"
                                   "Bm\x80"
                                   "BZ";
    size_t len;
    uint8_t *v = fresh(&len);
    cr_assert_eq(len, HLL_EMPTY_BYTES);
    const char *els[] = {"a", "b", "c", "d", "e", "f", "g"};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(hll_add(v, &len, CAP, els[i], 1, 3000), 1);
    }
    cr_assert_eq(hll_add(v, &len, CAP, "a", 1, 3000), 0, "already counted");
    cr_assert_eq(len, sizeof redis - 1);
    cr_assert_arr_eq(v, redis, len);
    bool bad = false;
    cr_assert_eq(hll_count(v, len, &bad), 7);
    cr_assert(!bad);
    uint64_t card;
    cr_assert(!hll_cached(v, &card), "stale after an add");
    hll_cache_set(v, 7);
    cr_assert(hll_cached(v, &card) && card == 7);
    free(v);
}

/* PFADD d 1..5000 in redis-server 7.0.15: PFCOUNT 4985 (dense by then). */
Test(hll, dense_estimate_of_redis)
{
    size_t len;
    uint8_t *v = fresh(&len);
    for (int i = 1; i <= 5000; i++) {
        char e[16];
        int k = snprintf(e, sizeof e, "%d", i);
        cr_assert_geq(hll_add(v, &len, CAP, e, (size_t)k, 3000), 0);
    }
    cr_assert(hll_is_dense(v));
    cr_assert_eq(len, HLL_DENSE_BYTES);
    bool bad = false;
    cr_assert_eq(hll_count(v, len, &bad), 4985);
    free(v);
}

Test(hll, selftest_passes)
{
    uint8_t *scratch = malloc(HLL_SELFTEST_SCRATCH);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        const char *fail = hll_selftest(scratch, seed * 7919);
        cr_assert_null(fail, "%s", fail ? fail : "");
    }
    free(scratch);
}

Test(hll, sparse_turns_dense_past_its_limit_with_the_same_registers)
{
    size_t alen, blen;
    uint8_t *a = fresh(&alen), *b = fresh(&blen);
    add_n(a, &alen, "x", 300, 200);
    add_n(b, &blen, "x", 300, HLL_SPARSE_BYTES_MAX);
    cr_assert(hll_is_dense(a), "past 200 bytes");
    cr_assert(!hll_is_dense(b));
    cr_assert_leq(blen, HLL_SPARSE_BYTES_MAX);
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        cr_assert_eq(hll_register(a, alen, i), hll_register(b, blen, i), "register %u", i);
    }
    cr_assert_eq(hll_to_dense(b, &blen, CAP), 0);
    cr_assert_arr_eq(a + HLL_HDR_BYTES, b + HLL_HDR_BYTES, HLL_DENSE_BYTES - HLL_HDR_BYTES);
    free(a);
    free(b);
}

Test(hll, merge_is_the_union)
{
    size_t alen, blen, ulen;
    uint8_t *a = fresh(&alen), *b = fresh(&blen), *u = fresh(&ulen);
    add_n(a, &alen, "a", 2000, 3000);
    add_n(b, &blen, "b", 700, 3000);
    add_n(u, &ulen, "a", 2000, 3000);
    add_n(u, &ulen, "b", 700, 3000);
    uint8_t regs[HLL_REGISTERS] = {0};
    cr_assert_eq(hll_merge(regs, a, alen), 0);
    cr_assert_eq(hll_merge(regs, b, blen), 0);
    bool bad = false;
    cr_assert_eq(hll_count_regs(regs), hll_count(u, ulen, &bad));
    free(a);
    free(b);
    free(u);
}

Test(hll, corrupt_and_foreign_values_are_found)
{
    size_t len;
    uint8_t *v = fresh(&len);
    cr_assert(hll_valid(v, len));
    cr_assert(!hll_valid((const uint8_t *)"hello", 5));
    cr_assert(!hll_valid(v, HLL_HDR_BYTES - 1));
    v[4] = 0; /* says dense, is not that long */
    cr_assert(!hll_valid(v, len));
    v[4] = 2;
    cr_assert(!hll_valid(v, len));
    v[4] = 1;
    v[16] = 0x7f; /* XZERO of 16129: the list ends short */
    v[17] = 0x00;
    bool bad = false;
    hll_count(v, len, &bad);
    cr_assert(bad);
    uint8_t regs[HLL_REGISTERS] = {0};
    cr_assert_eq(hll_merge(regs, v, len), -1);
    cr_assert_eq(hll_to_dense(v, &len, CAP), -1);
    /* an add past the end of a short list: corrupt (or a register it covers: fine) */
    int rc = 0;
    for (int i = 0; i < 200 && rc >= 0; i++) {
        char e[16];
        int k = snprintf(e, sizeof e, "k%d", i);
        rc = hll_add(v, &len, CAP, e, (size_t)k, 3000);
    }
    cr_assert_eq(rc, -1);
    free(v);
}

Test(hll, estimate_within_two_percent)
{
    size_t len;
    uint8_t *v = fresh(&len);
    int n = 0;
    for (int target = 10; target <= 200000; target *= 10) {
        for (; n < target; n++) {
            char e[16];
            int k = snprintf(e, sizeof e, "e%d", n);
            cr_assert_geq(hll_add(v, &len, CAP, e, (size_t)k, 3000), 0);
        }
        bool bad = false;
        double est = (double)hll_count(v, len, &bad);
        cr_assert_leq(est > n ? est - n : n - est, n * 0.02 + 1, "%d elements: %.0f", n, est);
    }
    free(v);
}

/* Redis's "Fuzzing dense/sparse encoding": values with random bytes changed, added to,
 * counted, merged and made dense must never crash or go out of bounds (ASan runs this in
 * CI); they may be found corrupt or not. */
Test(hll, fuzzed_values_never_break_the_functions)
{
    uint64_t s = 88172645463325252ull;
    uint8_t *v = malloc(CAP), regs[HLL_REGISTERS];
    for (int round = 0; round < 300; round++) {
        size_t len = hll_init(v);
        add_n(v, &len, "f", round % 2 ? 30 : 3000, 3000);
        int changes = 1 + (int)(s % 8);
        for (int c = 0; c < changes; c++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            size_t at = HLL_HDR_BYTES + s % (len - HLL_HDR_BYTES);
            v[at] = (uint8_t)(s >> 32);
        }
        if (s % 5 == 0 && !hll_is_dense(v)) { /* a tail appended, as SETRANGE past the end */
            memcpy(v + len, "hello", 5);
            len += 5;
        }
        cr_assert(hll_valid(v, len));
        bool bad = false;
        (void)hll_count(v, len, &bad);
        memset(regs, 0, sizeof regs);
        (void)hll_merge(regs, v, len);
        for (int i = 0; i < 50; i++) {
            char e[16];
            int k = snprintf(e, sizeof e, "g%d", i);
            if (hll_add(v, &len, CAP, e, (size_t)k, 3000) < 0) {
                break;
            }
            cr_assert_leq(len, CAP);
        }
        size_t cap = CAP;
        (void)hll_to_dense(v, &len, cap);
        for (uint32_t r = 0; r < HLL_REGISTERS; r += 97) {
            (void)hll_register(v, len, r);
        }
    }
    free(v);
}

/* PFMERGE of forged dense registers (values up to 63) into a sparse destination. */
Test(hll, merge_of_registers_up_to_63)
{
    size_t len;
    uint8_t *v = fresh(&len);
    for (uint32_t i = 0; i < HLL_REGISTERS; i += 1000) {
        cr_assert_eq(hll_set(v, &len, CAP, i, (uint8_t)(1 + i % 63), 3000), 1);
    }
    cr_assert(hll_is_dense(v), "a register over 32 made it dense");
    for (uint32_t i = 0; i < HLL_REGISTERS; i += 1000) {
        cr_assert_eq(hll_register(v, len, i), 1 + i % 63);
    }
    free(v);
}
