/*
 * Unit tests of io/route: the start-up map tiles the hash space, lookups find the
 * range holding a hash, and partitions spread over threads evenly.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "route.h"

Test(route, uniform_tiles_the_space)
{
    uint32_t shapes[][2] = {{1, 1}, {1, 4}, {2, 4}, {3, 5}, {7, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        struct route_table *t = route_create_uniform(shapes[s][0], shapes[s][1]);
        cr_assert_not_null(t);
        cr_assert_eq(t->count, shapes[s][0] * shapes[s][1]);
        cr_assert_eq(t->parts[0].lo, 0);
        uint32_t per_thread[8] = {0};
        for (uint32_t i = 0; i < t->count; i++) {
            if (i > 0) {
                cr_assert_gt(t->parts[i].lo, t->parts[i - 1].lo);
            }
            uint64_t hi = route_part_hi(t, i);
            cr_assert_eq(route_lookup(t, t->parts[i].lo), &t->parts[i]);
            cr_assert_eq(route_lookup(t, hi - 1), &t->parts[i], "last hash of part %u", i);
            per_thread[t->parts[i].thread]++;
            cr_assert_eq(t->parts[i].slot, i / t->threads);
        }
        for (uint32_t th = 0; th < t->threads; th++) {
            cr_assert_eq(per_thread[th], shapes[s][1]);
        }
        cr_assert_eq(route_lookup(t, UINT64_MAX), &t->parts[t->count - 1]);
        free(t);
    }
}

Test(route, random_hashes_land_in_their_range)
{
    struct route_table *t = route_create_uniform(3, 4);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const struct route_part *p = route_lookup(t, x);
        uint32_t idx = (uint32_t)(p - t->parts);
        uint64_t hi = route_part_hi(t, idx);
        cr_assert_geq(x, p->lo);
        cr_assert(hi == 0 || x < hi);
    }
    free(t);
}

/* The last part with lo <= hash, by a scan: what route_lookup must find. */
static const struct route_part *scan(const struct route_table *t, uint64_t hash)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->count; i++) {
        if (t->parts[i].lo <= hash) {
            k = i;
        }
    }
    return &t->parts[k];
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

Test(route, index_agrees_with_a_scan_for_uneven_ranges)
{
    /* parts narrower and wider than an index slot, several starting inside one slot,
     * bounds on and next to slot boundaries, and a table of more parts than slots */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 40; round++) {
        uint32_t count = round == 0 ? 1 : round < 20 ? 1 + (uint32_t)(xorshift(&x) % 40) : 300;
        struct route_table *t = malloc(sizeof *t + count * sizeof t->parts[0]);
        cr_assert_not_null(t);
        t->count = count;
        t->threads = 1;
        t->parts[0].lo = 0;
        for (uint32_t i = 1; i < count; i++) {
            uint64_t r = xorshift(&x);
            uint64_t step = (r & 3) == 0   ? 1 + (r >> 60)            /* tiny */
                            : (r & 3) == 1 ? (1ull << 56) - (r >> 62) /* a slot */
                            : (r & 3) == 2
                                ? (r >> 8) % (1ull << 50) + 1 /* in a slot */
                                : (r >> 8) % ((UINT64_MAX - t->parts[i - 1].lo) / count) + 1;
            if (t->parts[i - 1].lo > UINT64_MAX - step - count) {
                step = 1;
            }
            t->parts[i].lo = t->parts[i - 1].lo + step;
        }
        for (uint32_t i = 0; i < count; i++) {
            t->parts[i].id = i;
            t->parts[i].thread = 0;
            t->parts[i].slot = (uint16_t)i;
        }
        route_index(t);
        for (uint32_t i = 0; i < count; i++) {
            uint64_t lo = t->parts[i].lo;
            cr_assert_eq(route_lookup(t, lo), &t->parts[i], "round %d part %u", round, i);
            if (lo > 0) {
                cr_assert_eq(route_lookup(t, lo - 1), &t->parts[i - 1]);
            }
        }
        for (uint32_t b = 0; b < ROUTE_INDEX_SLOTS; b++) {
            uint64_t bound = (uint64_t)b << (64 - ROUTE_INDEX_BITS);
            cr_assert_eq(route_lookup(t, bound), scan(t, bound));
            cr_assert_eq(route_lookup(t, bound - 1), scan(t, bound - 1));
        }
        for (int k = 0; k < 20000; k++) {
            uint64_t h = xorshift(&x);
            cr_assert_eq(route_lookup(t, h), scan(t, h), "round %d hash %llu", round,
                         (unsigned long long)h);
        }
        cr_assert_eq(route_lookup(t, UINT64_MAX), &t->parts[count - 1]);
        free(t);
    }
}
