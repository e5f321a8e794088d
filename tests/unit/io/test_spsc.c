/*
 * Unit tests of io/spsc: FIFO order, full and empty, wrap-around, peek. The two-thread
 * run is stress_spsc.c (a plain program, so that it also runs under TSan).
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "spsc.h"

struct msg {
    uint64_t seq;
    uint64_t check;
};

static struct spsc *make(uint32_t cap)
{
    struct spsc *q = aligned_alloc(SPSC_CACHE_LINE, spsc_size(cap, sizeof(struct msg)) + 64);
    cr_assert_not_null(q);
    spsc_init(q, cap, sizeof(struct msg));
    return q;
}

Test(spsc, fifo_full_empty)
{
    struct spsc *q = make(4);
    struct msg m;
    cr_assert(spsc_empty(q));
    cr_assert(!spsc_pop(q, &m));
    cr_assert_eq(spsc_free(q), 4);
    for (uint64_t i = 0; i < 4; i++) {
        cr_assert(spsc_push(q, &(struct msg){i, ~i}));
    }
    cr_assert(!spsc_push(q, &(struct msg){9, 9}), "push into a full queue must fail");
    cr_assert_eq(spsc_free(q), 0);
    for (uint64_t i = 0; i < 4; i++) {
        cr_assert(spsc_pop(q, &m));
        cr_assert_eq(m.seq, i);
        cr_assert_eq(m.check, ~i);
    }
    cr_assert(!spsc_pop(q, &m));
    cr_assert(spsc_empty(q));
    free(q);
}

Test(spsc, wraps_many_times)
{
    struct spsc *q = make(8);
    struct msg m;
    uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 10000; round++) {
        int n = round % 9;
        for (int i = 0; i < n && spsc_push(q, &(struct msg){next_in, ~next_in}); i++) {
            next_in++;
        }
        for (int i = 0; i < (round * 7) % 9 && spsc_pop(q, &m); i++) {
            cr_assert_eq(m.seq, next_out);
            next_out++;
        }
    }
    while (spsc_pop(q, &m)) {
        cr_assert_eq(m.seq, next_out++);
    }
    cr_assert_eq(next_in, next_out);
    free(q);
}

Test(spsc, peek_leaves_the_oldest_in)
{
    struct spsc *q = make(4);
    struct msg m;
    cr_assert(!spsc_peek(q, &m), "peek into an empty queue must fail");
    cr_assert(spsc_push(q, &(struct msg){1, ~UINT64_C(1)}));
    cr_assert(spsc_push(q, &(struct msg){2, ~UINT64_C(2)}));
    for (int i = 0; i < 3; i++) {
        cr_assert(spsc_peek(q, &m));
        cr_assert_eq(m.seq, 1);
    }
    cr_assert_eq(spsc_free(q), 2, "peek must not free a slot");
    cr_assert(spsc_pop(q, &m));
    cr_assert_eq(m.seq, 1);
    cr_assert(spsc_peek(q, &m));
    cr_assert_eq(m.seq, 2);
    cr_assert_eq(m.check, ~UINT64_C(2));
    cr_assert(spsc_pop(q, &m));
    cr_assert(!spsc_peek(q, &m));
    free(q);
}
