/*
 * Unit tests of resp_out: every reply type in RESP2 and RESP3 byte for byte, doubles
 * formatted as Redis 7.0 does, bulks spanning blocks, iovec export with short sends
 * (seeded; KV_TEST_SEED=<n> replays), the per-client limit and pool exhaustion (both
 * all-or-nothing and sticky), and blocks going back to the pool.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "kv_error.h"
#include "resp_alloc.h"
#include "resp_out.h"

static struct resp_pool *pool;

static void setup_small(void)
{
    cr_assert_eq(resp_pool_create(&pool, &resp_alloc_libc, 64, 64 * 1024, 0), 0);
}

static void teardown(void)
{
    resp_pool_destroy(pool);
    pool = NULL;
}

/* Takes everything queued (via the iovec) into a malloc'd string; consumes it. */
static char *drain(struct resp_out *o, size_t *len)
{
    size_t n = resp_out_queued_bytes(o);
    char *s = malloc(n + 1);
    size_t k = 0;
    struct iovec iov[8];
    while (resp_out_queued_bytes(o) > 0) {
        int cnt = resp_out_iov(o, iov, 8);
        cr_assert_gt(cnt, 0);
        size_t sent = 0;
        for (int i = 0; i < cnt; i++) {
            memcpy(s + k, iov[i].iov_base, iov[i].iov_len);
            k += iov[i].iov_len;
            sent += iov[i].iov_len;
        }
        resp_out_consume(o, sent);
    }
    cr_assert_eq(k, n);
    s[k] = '\0';
    *len = k;
    return s;
}

#define EXPECT_OUT(o, want)                                                                        \
    do {                                                                                           \
        size_t len_;                                                                               \
        char *got_ = drain((o), &len_);                                                            \
        cr_assert_eq(len_, sizeof(want) - 1, "got %zu bytes: %s", len_, got_);                     \
        cr_assert(memcmp(got_, (want), len_) == 0, "got %s want %s", got_, (want));                \
        free(got_);                                                                                \
    } while (0)

static void encode_all(struct resp_out *o)
{
    cr_assert_eq(resp_out_simple(o, "OK", 2), 0);
    cr_assert_eq(resp_out_error_reply(o, "ERR bad\r\nthing", 14), 0);
    cr_assert_eq(resp_out_int(o, -42), 0);
    cr_assert_eq(resp_out_int(o, INT64_MIN), 0);
    cr_assert_eq(resp_out_bulk(o, "a\r\nb", 4), 0);
    cr_assert_eq(resp_out_bulk(o, "", 0), 0);
    cr_assert_eq(resp_out_null(o), 0);
    cr_assert_eq(resp_out_null_array(o), 0);
    cr_assert_eq(resp_out_array(o, 2), 0);
    cr_assert_eq(resp_out_map(o, 2), 0);
    cr_assert_eq(resp_out_set(o, 3), 0);
    cr_assert_eq(resp_out_push(o, 1), 0);
    cr_assert_eq(resp_out_double(o, 1.5), 0);
    cr_assert_eq(resp_out_bool(o, true), 0);
    cr_assert_eq(resp_out_bool(o, false), 0);
    cr_assert_eq(resp_out_bignum(o, "12345678901234567890", 20), 0);
    cr_assert_eq(resp_out_verbatim(o, "txt", "hi", 2), 0);
    cr_assert_eq(resp_out_raw(o, "+PONG\r\n", 7), 0);
}

Test(resp_out, every_type_resp2, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    encode_all(&o);
    EXPECT_OUT(&o, "+OK\r\n"
                   "-ERR bad  thing\r\n"
                   ":-42\r\n"
                   ":-9223372036854775808\r\n"
                   "$4\r\na\r\nb\r\n"
                   "$0\r\n\r\n"
                   "$-1\r\n"
                   "*-1\r\n"
                   "*2\r\n"
                   "*4\r\n"
                   "*3\r\n"
                   "*1\r\n"
                   "$3\r\n1.5\r\n"
                   ":1\r\n"
                   ":0\r\n"
                   "$20\r\n12345678901234567890\r\n"
                   "$2\r\nhi\r\n"
                   "+PONG\r\n");
    resp_out_deinit(&o);
}

Test(resp_out, every_type_resp3, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    resp_out_set_proto(&o, 3);
    encode_all(&o);
    EXPECT_OUT(&o, "+OK\r\n"
                   "-ERR bad  thing\r\n"
                   ":-42\r\n"
                   ":-9223372036854775808\r\n"
                   "$4\r\na\r\nb\r\n"
                   "$0\r\n\r\n"
                   "_\r\n"
                   "_\r\n"
                   "*2\r\n"
                   "%2\r\n"
                   "~3\r\n"
                   ">1\r\n"
                   ",1.5\r\n"
                   "#t\r\n"
                   "#f\r\n"
                   "(12345678901234567890\r\n"
                   "=6\r\ntxt:hi\r\n"
                   "+PONG\r\n");
    resp_out_deinit(&o);
}

Test(resp_out, simple_string_is_sanitized, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    cr_assert_eq(resp_out_simple(&o, "a\rb\nc", 5), 0);
    EXPECT_OUT(&o, "+a b c\r\n");
    /* Across blocks (64 bytes each here) too. */
    char text[200];
    for (size_t i = 0; i < sizeof text; i++) {
        text[i] = i % 10 == 3 ? '\r' : i % 10 == 7 ? '\n' : 'x';
    }
    cr_assert_eq(resp_out_error_reply(&o, text, sizeof text), 0);
    size_t len;
    char *got = drain(&o, &len);
    cr_assert_eq(len, sizeof text + 3);
    cr_assert_eq(got[0], '-');
    for (size_t i = 0; i < sizeof text; i++) {
        cr_assert_eq(got[1 + i], text[i] == 'x' ? 'x' : ' ', "byte %zu", i);
    }
    cr_assert(memcmp(got + 1 + sizeof text, "\r\n", 2) == 0);
    free(got);
    resp_out_deinit(&o);
}

Test(resp_out, doubles_like_redis, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    resp_out_double(&o, 0.1);
    resp_out_double(&o, -0.0);
    resp_out_double(&o, 1e300);
    resp_out_double(&o, INFINITY);
    resp_out_double(&o, -INFINITY);
    resp_out_double(&o, NAN);
    resp_out_double(&o, -NAN);
    resp_out_double(&o, 3.0);
    EXPECT_OUT(&o, "$19\r\n0.10000000000000001\r\n"
                   "$2\r\n-0\r\n"
                   "$23\r\n1.0000000000000001e+300\r\n"
                   "$3\r\ninf\r\n"
                   "$4\r\n-inf\r\n"
                   "$3\r\nnan\r\n"
                   "$3\r\nnan\r\n"
                   "$1\r\n3\r\n");
    resp_out_set_proto(&o, 3);
    resp_out_double(&o, 0.1);
    resp_out_double(&o, INFINITY);
    resp_out_double(&o, -INFINITY);
    resp_out_double(&o, -NAN);
    resp_out_double(&o, -2.5e-7);
    EXPECT_OUT(&o, ",0.10000000000000001\r\n,inf\r\n,-inf\r\n,nan\r\n,-2.4999999999999999e-07\r\n");
    resp_out_deinit(&o);
}

Test(resp_out, big_bulk_spans_blocks, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    size_t n = 1000;
    char *v = malloc(n);
    for (size_t i = 0; i < n; i++) {
        v[i] = (char)(i * 7);
    }
    cr_assert_eq(resp_out_int(&o, 7), 0);
    cr_assert_eq(resp_out_bulk(&o, v, n), 0);
    cr_assert_eq(resp_out_queued_bytes(&o), 4 + 7 + n + 2);
    cr_assert_geq(resp_pool_blocks_borrowed(pool), (4 + 7 + n + 2) / 64);
    struct iovec iov[64];
    int cnt = resp_out_iov(&o, iov, 64);
    cr_assert_eq(cnt, (int)((4 + 7 + n + 2 + 63) / 64));
    size_t len;
    char *got = drain(&o, &len);
    cr_assert(memcmp(got, ":7\r\n$1000\r\n", 11) == 0);
    cr_assert(memcmp(got + 11, v, n) == 0);
    cr_assert(memcmp(got + 11 + n, "\r\n", 2) == 0);
    cr_assert_eq(resp_pool_blocks_borrowed(pool), 0, "sent blocks go back");
    free(got);
    free(v);
    resp_out_deinit(&o);
}

Test(resp_out, short_sends, .init = setup_small, .fini = teardown)
{
    const char *s = getenv("KV_TEST_SEED");
    unsigned seed = s != NULL ? (unsigned)strtoul(s, NULL, 0) : 12345u;
    srand(seed);
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    /* Expected stream, built alongside. */
    size_t cap = 1 << 20;
    char *want = malloc(cap);
    size_t wn = 0;
    char *got = malloc(cap);
    size_t gn = 0;
    for (int round = 0; round < 2000; round++) {
        int k = rand() % 3;
        char tmp[300];
        if (k == 0) {
            int64_t v = (int64_t)rand() - RAND_MAX / 2;
            resp_out_int(&o, v);
            wn += (size_t)snprintf(want + wn, cap - wn, ":%lld\r\n", (long long)v);
        } else if (k == 1) {
            size_t len = (size_t)(rand() % 200);
            memset(tmp, 'a' + round % 26, len);
            resp_out_bulk(&o, tmp, len);
            wn += (size_t)snprintf(want + wn, cap - wn, "$%zu\r\n", len);
            memcpy(want + wn, tmp, len);
            wn += len;
            memcpy(want + wn, "\r\n", 2);
            wn += 2;
        } else {
            /* a short send: take a random prefix of what the iovec offers */
            struct iovec iov[4];
            int cnt = resp_out_iov(&o, iov, 4);
            size_t avail = 0;
            for (int i = 0; i < cnt; i++) {
                avail += iov[i].iov_len;
            }
            size_t take = avail > 0 ? (size_t)rand() % (avail + 1) : 0;
            size_t left = take;
            for (int i = 0; i < cnt && left > 0; i++) {
                size_t t = iov[i].iov_len < left ? iov[i].iov_len : left;
                memcpy(got + gn, iov[i].iov_base, t);
                gn += t;
                left -= t;
            }
            resp_out_consume(&o, take);
        }
        cr_assert_eq(resp_out_queued_bytes(&o), wn - gn, "seed %u round %d", seed, round);
    }
    size_t rest;
    char *tail = drain(&o, &rest);
    memcpy(got + gn, tail, rest);
    gn += rest;
    free(tail);
    cr_assert_eq(gn, wn, "seed %u", seed);
    cr_assert(memcmp(got, want, wn) == 0, "stream differs (seed %u)", seed);
    cr_assert_eq(resp_pool_blocks_borrowed(pool), 0);
    free(want);
    free(got);
    resp_out_deinit(&o);
}

Test(resp_out, client_limit_is_all_or_nothing_and_sticky, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 100);
    cr_assert_eq(resp_out_bulk(&o, "0123456789", 10), 0); /* 17 bytes */
    char big[90] = {0};
    cr_assert_eq(resp_out_bulk(&o, big, sizeof big), KV_ELIMIT);
    cr_assert_eq(resp_out_queued_bytes(&o), 17, "nothing of the refused reply");
    cr_assert_eq(resp_out_int(&o, 1), KV_ELIMIT, "sticky");
    cr_assert_eq(resp_out_error(&o), KV_ELIMIT);
    EXPECT_OUT(&o, "$10\r\n0123456789\r\n");
    resp_out_deinit(&o);
    /* Exactly the limit fits. */
    resp_out_init(&o, pool, 17);
    cr_assert_eq(resp_out_bulk(&o, "0123456789", 10), 0);
    cr_assert_eq(resp_out_raw(&o, "", 0), 0);
    cr_assert_eq(resp_out_raw(&o, "x", 1), KV_ELIMIT);
    resp_out_deinit(&o);
}

Test(resp_out, pool_exhaustion)
{
    /* Four 64-byte blocks in all. */
    cr_assert_eq(resp_pool_create(&pool, &resp_alloc_libc, 64, 256, 128), 0);
    cr_assert_eq(resp_pool_blocks_allocated(pool), 2);
    struct resp_out a, b;
    resp_out_init(&a, pool, 1 << 20);
    resp_out_init(&b, pool, 1 << 20);
    char v[200] = {0};
    cr_assert_eq(resp_out_bulk(&a, v, 150), 0); /* 157 bytes: 3 blocks */
    cr_assert_eq(resp_pool_blocks_borrowed(pool), 3);
    cr_assert_eq(resp_out_bulk(&b, v, 100), KV_ENOMEM); /* needs 2 */
    cr_assert_eq(resp_out_queued_bytes(&b), 0);
    cr_assert_eq(resp_pool_blocks_borrowed(pool), 3);
    cr_assert_eq(resp_out_int(&b, 1), KV_ENOMEM, "sticky");
    cr_assert_eq(resp_out_int(&a, 1), 0, "fits in a's last block");
    resp_out_deinit(&a);
    cr_assert_eq(resp_pool_blocks_borrowed(pool), 0);
    resp_out_deinit(&b);
    cr_assert_eq(resp_pool_blocks_allocated(pool), 3, "b never got a block");
    teardown();
}

Test(resp_out, idle_client_holds_no_block, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(resp_out_simple(&o, "OK", 2), 0);
        EXPECT_OUT(&o, "+OK\r\n");
        cr_assert_eq(resp_pool_blocks_borrowed(pool), 0);
    }
    cr_assert_eq(resp_pool_blocks_allocated(pool), 1, "one block, reused");
    resp_out_deinit(&o);
}

Test(resp_out, integers_at_every_digit_boundary, .init = setup_small, .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    char want[64];
    for (int neg = 0; neg < 2; neg++) {
        int64_t p10 = 1;
        for (int d = 0; d < 19; d++, p10 = d < 19 ? p10 * 10 : p10) {
            int64_t vals[] = {p10 - 1, p10, p10 + 1, p10 * 9 / 10 + 7};
            for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
                int64_t v = neg ? -vals[k] : vals[k];
                cr_assert_eq(resp_out_int(&o, v), 0);
                int n = snprintf(want, sizeof want, ":%lld\r\n", (long long)v);
                size_t len;
                char *got = drain(&o, &len);
                cr_assert_eq(len, (size_t)n);
                cr_assert(memcmp(got, want, len) == 0, "%lld gave %s", (long long)v, got);
                free(got);
            }
        }
    }
    cr_assert_eq(resp_out_int(&o, INT64_MAX), 0);
    EXPECT_OUT(&o, ":9223372036854775807\r\n");
    resp_out_deinit(&o);
}

/* Bulks of every length around the digit boundaries of the direct path (and past its
 * end, 9999 -> 10000), each after a lead of 0..70 bytes so that it starts at every
 * offset of a 64-byte block and often straddles blocks: byte for byte as "$%zu\r\n". */
Test(resp_out, bulks_at_every_length_boundary_and_block_offset, .init = setup_small,
     .fini = teardown)
{
    struct resp_out o;
    resp_out_init(&o, pool, 1 << 20);
    static char v[10050];
    for (size_t i = 0; i < sizeof v; i++) {
        v[i] = (char)('a' + i % 26);
    }
    static char want[10100];
    size_t lens[] = {0,   1,   5,    9,    10,   11,   50,    99,   100,
                     101, 999, 1000, 1001, 9998, 9999, 10000, 10001};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        for (size_t lead = 0; lead <= 70; lead++) {
            size_t n = lens[k];
            if (lead > 0) {
                cr_assert_eq(resp_out_simple(&o, v, lead - 1), 0); /* '+' ... "\r\n" */
            }
            cr_assert_eq(resp_out_bulk(&o, v, n), 0);
            int h = snprintf(want, sizeof want, "$%zu\r\n", n);
            memcpy(want + h, v, n);
            memcpy(want + (size_t)h + n, "\r\n", 2);
            size_t wlen = (size_t)h + n + 2;
            size_t len;
            char *got = drain(&o, &len);
            size_t skip = lead > 0 ? lead + 2 : 0; /* the lead: '+', lead - 1 bytes, CRLF */
            cr_assert_eq(len, skip + wlen, "len %zu lead %zu", n, lead);
            cr_assert(memcmp(got + skip, want, wlen) == 0, "len %zu lead %zu", n, lead);
            free(got);
            cr_assert_eq(resp_pool_blocks_borrowed(pool), 0);
        }
    }
    resp_out_deinit(&o);
}
