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
