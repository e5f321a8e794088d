/*
 * Unit tests of resp_parse: Redis 7's request syntax and quirks, every limit with its
 * exact error text, inline quoting, the result's independence from how the input is
 * cut (every single cut, and seeded random multi-way cuts: KV_TEST_SEED=<n> replays),
 * zero-copy views, memory growth bounded by what arrived, and allocation failure.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_error.h"
#include "kv_limits.h"
#include "resp_alloc.h"
#include "resp_parse.h"
#include "resp_parse_collect.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t test_seed(void)
{
    const char *s = getenv("KV_TEST_SEED");
    return s != NULL ? strtoull(s, NULL, 0) : 0x5eed5eedull;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a;
    size_t y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* k random distinct cut positions in (0, n), sorted; returns how many. */
static size_t random_cuts(size_t *cuts, size_t k, size_t n)
{
    if (n < 2) {
        return 0;
    }
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        cuts[m++] = 1 + rng_next() % (n - 1);
    }
    qsort(cuts, m, sizeof *cuts, cmp_size);
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u == 0 || cuts[u - 1] != cuts[i]) {
            cuts[u++] = cuts[i];
        }
    }
    return u;
}

/* Same commands and same outcome as the unsplit parse? */
static void check_same(const struct collect *ref, const struct collect *c, const char *what,
                       uint64_t seed)
{
    cr_assert_eq(c->bad_views, 0, "%s: view outside buffer and arena (seed %llu)", what,
                 (unsigned long long)seed);
    cr_assert_eq(c->rc, ref->rc, "%s: rc %d vs %d (seed %llu)", what, c->rc, ref->rc,
                 (unsigned long long)seed);
    cr_assert_eq(c->len, ref->len, "%s: output differs (seed %llu)", what,
                 (unsigned long long)seed);
    cr_assert(memcmp(c->out, ref->out, c->len) == 0, "%s: output differs (seed %llu)", what,
              (unsigned long long)seed);
    cr_assert_str_eq(c->err_text, ref->err_text, "%s: error differs (seed %llu)", what,
                     (unsigned long long)seed);
}

/* Parses `in` whole, at every single cut (when short enough) and at `rounds` random
 * multi-way cuts; every way must give `ref`, which is returned for the caller. */
static void parse_all_ways(struct collect *ref, const void *in, size_t n,
                           const struct resp_parse_limits *lim, bool auth, int rounds)
{
    collect_run(ref, in, n, NULL, 0, lim, auth);
    cr_assert_eq(ref->bad_views, 0);
    if (n <= 4096) {
        for (size_t i = 1; i < n; i++) {
            struct collect c;
            collect_run(&c, in, n, &i, 1, lim, auth);
            char what[64];
            snprintf(what, sizeof what, "cut at %zu", i);
            check_same(ref, &c, what, 0);
            collect_free(&c);
        }
    }
    uint64_t seed = test_seed() ^ (uint64_t)n;
    rng_state = seed;
    size_t *cuts = malloc(sizeof(size_t) * 64);
    for (int r = 0; r < rounds; r++) {
        size_t k = 1 + rng_next() % 63;
        size_t m = random_cuts(cuts, k, n);
        struct collect c;
        collect_run(&c, in, n, cuts, m, lim, auth);
        check_same(ref, &c, "random cuts", seed);
        collect_free(&c);
    }
    free(cuts);
}

/* Expects `in` to give exactly `want` (serialized commands, wn bytes) and then `err`
 * ("" when the input is consumed without error), however it is cut. */
static void expect_bin(const char *in, size_t n, const char *want, size_t wn, const char *err,
                       bool auth)
{
    struct collect ref;
    parse_all_ways(&ref, in, n, NULL, auth, 50);
    cr_assert_eq(ref.len, wn, "input %.*s: got %s", (int)(n < 80 ? n : 80), in, ref.out);
    cr_assert(memcmp(ref.out, want, wn) == 0, "input %.*s: got %s", (int)(n < 80 ? n : 80), in,
              ref.out);
    cr_assert_str_eq(ref.err_text, err, "input %.*s", (int)(n < 80 ? n : 80), in);
    cr_assert_eq(ref.rc, err[0] ? KV_EPROTO : KV_EAGAIN);
    collect_free(&ref);
}

/* String literals only: their sizes count embedded NUL bytes. */
#define expect(in, want, err)        expect_bin(in, sizeof(in) - 1, want, sizeof(want) - 1, err, false)
#define expect_auth(in, want, err)   expect_bin(in, sizeof(in) - 1, want, sizeof(want) - 1, err, true)
#define expect_noauth(in, want, err) expect(in, want, err)

#define E_INV_MBULK  "ERR Protocol error: invalid multibulk length"
#define E_INV_BULK   "ERR Protocol error: invalid bulk length"
#define E_UNBALANCED "ERR Protocol error: unbalanced quotes in request"
#define E_BIG_INLINE "ERR Protocol error: too big inline request"
#define E_BIG_MBULK  "ERR Protocol error: too big mbulk count string"
#define E_BIG_BULK   "ERR Protocol error: too big bulk count string"
#define E_UNAUTH_MB  "ERR Protocol error: unauthenticated multibulk length"
#define E_UNAUTH_B   "ERR Protocol error: unauthenticated bulk length"

/* ---- multibulk ---------------------------------------------------------------------- */

Test(resp_parse, multibulk_basic)
{
    expect("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", "2 3:GET 3:key \n", "");
    expect("*1\r\n$0\r\n\r\n", "1 0: \n", "");
    expect("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\0\r\n", "3 3:SET 1:k 5:a\r\nb\0 \n", "");
    expect("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", "1 4:PING \n1 4:PING \n", "");
}

Test(resp_parse, multibulk_incomplete_waits)
{
    expect("*2\r\n$3\r\nGET\r\n$3\r\nke", "", "");
    expect("*2\r\n$3\r\nGET\r\n$3\r\nkey\r", "", "");
    expect("*1\r\n$4\r\nPING\r\n*1\r", "1 4:PING \n", "");
    expect("*1\r\n$4", "", "");
}

Test(resp_parse, redis_quirks)
{
    /* The two bytes after a bulk are skipped unread. */
    expect("*1\r\n$3\r\nfooXY*1\r\n$4\r\nPING\r\n", "1 3:foo \n1 4:PING \n", "");
    /* A header line ends at '\r'; the next byte is skipped whatever it is. */
    expect("*1\rX$4\r\nPING\r\n", "1 4:PING \n", "");
    expect("*1\r$4\r\nPING\r\n", "", "ERR Protocol error: expected '$', got '4'");
    /* Counts <= 0 are consumed and ignored. */
    expect("*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n", "1 4:PING \n", "");
    expect("*-9223372036854775808\r\n", "", "");
    /* '\n' alone does not end a header line: the line runs on to the next '\r'. */
    expect("*1\n$4\r\nPING\r\n", "", E_INV_MBULK);
}

Test(resp_parse, multibulk_count_errors)
{
    expect("*+1\r\n", "", E_INV_MBULK);
    expect("*01\r\n", "", E_INV_MBULK);
    expect("*-0\r\n", "", E_INV_MBULK);
    expect("*\r\n", "", E_INV_MBULK);
    expect("*1x\r\n", "", E_INV_MBULK);
    expect("* 1\r\n", "", E_INV_MBULK);
    expect("*2147483648\r\n", "", E_INV_MBULK);
    expect("*99999999999999999999\r\n", "", E_INV_MBULK);
    expect("*-9223372036854775809\r\n", "", E_INV_MBULK);
    /* INT_MAX itself is accepted: the parser waits for the arguments. */
    expect("*2147483647\r\n$1\r\na\r\n", "", "");
}

Test(resp_parse, bulk_header_errors)
{
    expect("*1\r\nx4\r\nPING\r\n", "", "ERR Protocol error: expected '$', got 'x'");
    expect("*2\r\n$1\r\na\r\n*1\r\n", "", "ERR Protocol error: expected '$', got '*'");
    /* An empty line's first byte is its '\r'; Redis prints it as a space. */
    expect("*1\r\n\r\n", "", "ERR Protocol error: expected '$', got ' '");
    expect("*1\r\n\n\r\n", "", "ERR Protocol error: expected '$', got ' '");
    expect("*1\r\n\xff\r\n", "", "ERR Protocol error: expected '$', got '\xff'");
    expect("*1\r\n$-1\r\n", "", E_INV_BULK);
    expect("*1\r\n$-0\r\n", "", E_INV_BULK);
    expect("*1\r\n$\r\n", "", E_INV_BULK);
    expect("*1\r\n$01\r\n", "", E_INV_BULK);
    expect("*1\r\n$1a\r\n", "", E_INV_BULK);
    expect("*1\r\n$536870913\r\n", "", E_INV_BULK);
    /* proto-max-bulk-len itself is accepted (and not allocated up front). */
    expect("*1\r\n$536870912\r\nabc", "", "");
}

Test(resp_parse, header_line_too_long)
{
    size_t n = 70000;
    char *in = malloc(n + 32);
    /* "*" and 65535 more bytes without '\r' are allowed; one more is too big. */
    in[0] = '*';
    memset(in + 1, '1', n - 1);
    struct collect c;
    collect_run(&c, in, 65536, NULL, 0, NULL, false);
    cr_assert_eq(c.rc, KV_EAGAIN, "65536 bytes are still allowed");
    collect_free(&c);
    size_t cut = 30000;
    collect_run(&c, in, 65537, &cut, 1, NULL, false);
    cr_assert_str_eq(c.err_text, E_BIG_MBULK);
    collect_free(&c);
    /* A '\r' as the 65537th byte ends the line in time (then the number is invalid). */
    in[65536] = '\r';
    in[65537] = '\n';
    collect_run(&c, in, 65538, NULL, 0, NULL, false);
    cr_assert_str_eq(c.err_text, E_INV_MBULK);
    collect_free(&c);
    /* The same for a bulk's "$N" line. */
    memcpy(in, "*1\r\n$", 5);
    memset(in + 5, '1', n - 5);
    collect_run(&c, in, 4 + 65536, NULL, 0, NULL, false);
    cr_assert_eq(c.rc, KV_EAGAIN);
    collect_free(&c);
    collect_run(&c, in, 4 + 65537, NULL, 0, NULL, false);
    cr_assert_str_eq(c.err_text, E_BIG_BULK);
    collect_free(&c);
    free(in);
}

Test(resp_parse, nul_in_header_line_never_ends)
{
    /* Redis looks for '\r' with strchr(): a NUL hides the line's end, and the request
     * fails only once more than 64 KiB have arrived. */
    expect("*1\r\n$\0"
           "4\r\nPING\r\n",
           "", "");
    size_t n = 4 + 65537;
    char *in = calloc(1, n);
    memcpy(in, "*1\r\n$\0\r\n", 8);
    struct collect c;
    collect_run(&c, in, n - 1, NULL, 0, NULL, false);
    cr_assert_eq(c.rc, KV_EAGAIN);
    collect_free(&c);
    collect_run(&c, in, n, NULL, 0, NULL, false);
    cr_assert_str_eq(c.err_text, E_BIG_BULK);
    collect_free(&c);
    free(in);
}

/* ---- inline ------------------------------------------------------------------------- */

Test(resp_parse, inline_basic)
{
    expect("PING\r\n", "1 4:PING \n", "");
    expect("PING\n", "1 4:PING \n", "");
    expect("SET  k\tv \r\n", "3 3:SET 1:k 1:v \n", "");
    expect("\r\n\n   \r\nPING\r\n", "1 4:PING \n", "");
    expect("a\rb\r\n", "2 1:a 1:b \n", "");
    expect("PING", "", "");
    expect("$3\r\n", "1 2:$3 \n", "");
    /* '\v' and '\f' are blanks between tokens but not inside a plain one. */
    expect("\vECHO\va\r\n", "1 6:ECHO\va \n", "");
    expect("GET k\r\n*1\r\n$4\r\nPING\r\n", "2 3:GET 1:k \n1 4:PING \n", "");
}

Test(resp_parse, inline_quotes)
{
    expect("ECHO \"a b\"\r\n", "2 4:ECHO 3:a b \n", "");
    expect("ECHO \"\"\r\n", "2 4:ECHO 0: \n", "");
    expect("ECHO \"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\r\n", "2 4:ECHO 8:\n\r\t\b\a\\\"q \n", "");
    expect("ECHO \"\\x41\\x7a\\xZZ\\x4\"\r\n", "2 4:ECHO 7:AzxZZx4 \n", "");
    expect("ECHO \"\\x00\"\r\n", "2 4:ECHO 1:\0 \n", "");
    expect("ECHO 'a\\'b\\n'\r\n", "2 4:ECHO 5:a'b\\n \n", "");
    expect("ECHO 'say \"hi\"'\r\n", "2 4:ECHO 8:say \"hi\" \n", "");
    expect("ab\"cd\"\r\n", "1 4:abcd \n", "");
    expect("ab'c d' e\r\n", "2 5:abc d 1:e \n", "");
    expect("ECHO \"x\"\v\r\n", "2 4:ECHO 1:x \n", "");
    expect("SET \"k\" 'v'\n", "3 3:SET 1:k 1:v \n", "");
    expect("ECHO \"a\"b\r\n", "", E_UNBALANCED);
    expect("ECHO 'a'b\r\n", "", E_UNBALANCED);
    expect("ECHO \"abc\r\n", "", E_UNBALANCED);
    expect("ECHO 'abc\r\n", "", E_UNBALANCED);
    expect("ECHO \"abc\\\"\r\n", "", E_UNBALANCED);
    expect("ECHO \"abc\\\r\n", "", E_UNBALANCED);
    /* Commands before the bad line still come out. */
    expect("PING\r\nECHO \"\r\nPING\r\n", "1 4:PING \n", E_UNBALANCED);
}

Test(resp_parse, inline_too_big)
{
    size_t max = KV_RESP_INLINE_BYTES_MAX;
    char *in = malloc(max + 16);
    memset(in, 'a', max + 16);
    /* 65536 bytes and then '\n': accepted. */
    in[max] = '\n';
    struct collect c;
    size_t cuts[2] = {100, 40000};
    collect_run(&c, in, max + 1, cuts, 2, NULL, false);
    cr_assert_eq(c.rc, KV_EAGAIN);
    cr_assert_eq(c.commands, 1);
    collect_free(&c);
    /* 65537 bytes without '\n': too big, even if the '\n' comes next. */
    in[max] = 'a';
    in[max + 1] = '\n';
    collect_run(&c, in, max + 2, NULL, 0, NULL, false);
    cr_assert_str_eq(c.err_text, E_BIG_INLINE);
    collect_free(&c);
    collect_run(&c, in, max + 2, cuts, 2, NULL, false);
    cr_assert_str_eq(c.err_text, E_BIG_INLINE);
    collect_free(&c);
    /* With a NUL the line never ends: it fails once more than 64 KiB arrived. */
    memset(in, 'a', max + 16);
    memcpy(in, "GET a\0b\r\n", 9);
    collect_run(&c, in, max, NULL, 0, NULL, false);
    cr_assert_eq(c.rc, KV_EAGAIN);
    cr_assert_eq(c.commands, 0);
    collect_free(&c);
    collect_run(&c, in, max + 1, cuts, 2, NULL, false);
    cr_assert_str_eq(c.err_text, E_BIG_INLINE);
    collect_free(&c);
    free(in);
}

/* ---- pre-AUTH limits ------------------------------------------------------------------ */

Test(resp_parse, unauthenticated_limits)
{
    expect_auth("*10\r\n", "", "");
    expect_auth("*11\r\n", "", E_UNAUTH_MB);
    expect_noauth("*11\r\n", "", "");
    expect_auth("*2147483648\r\n", "", E_INV_MBULK);
    expect_auth("*-1\r\n*1\r\n$4\r\nPING\r\n", "1 4:PING \n", "");
    expect_auth("*1\r\n$16384\r\n", "", "");
    expect_auth("*1\r\n$16385\r\n", "", E_UNAUTH_B);
    expect_auth("*1\r\n$536870913\r\n", "", E_INV_BULK);
    expect_noauth("*1\r\n$16385\r\n", "", "");
}

Test(resp_parse, auth_lifts_limits_for_the_next_request)
{
    struct resp_parser *p;
    cr_assert_eq(resp_parser_create(&p, &resp_alloc_libc, NULL), 0);
    resp_parser_set_auth_required(p, true);
    const char in[] = "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*11\r\n";
    resp_parser_feed(p, in, sizeof in - 1);
    struct resp_cmd cmd;
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argc, 2);
    resp_parser_set_auth_required(p, false);
    cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
    resp_parser_destroy(p);
}

/* ---- splits, views, memory ------------------------------------------------------------ */

Test(resp_parse, every_split_of_a_mixed_stream)
{
    static const char in[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n"
                             "PING\r\n"
                             "*0\r\n"
                             "ECHO \"a\\x41 'b'\" 'c\\'d'\r\n"
                             "\r\n"
                             "*2\r\n$3\r\nGET\r\n$0\r\n\r\n"
                             "*1\r\n$3\r\nfooXY"
                             "*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n";
    struct collect ref;
    parse_all_ways(&ref, in, sizeof in - 1, NULL, false, 2000);
    cr_assert_str_eq(ref.out, "3 3:SET 3:key 10:0123456789 \n"
                              "1 4:PING \n"
                              "3 4:ECHO 6:aA 'b' 3:c'd \n"
                              "2 3:GET 0: \n"
                              "1 3:foo \n"
                              "4 1:a 1:b 1:c 1:d \n");
    cr_assert_eq(ref.rc, KV_EAGAIN);
    collect_free(&ref);
}

Test(resp_parse, every_split_of_errors)
{
    static const char *const ins[] = {
        "*1\r\n$4\r\nPING\r\n*1\r\n$-1\r\n",
        "*1\r\n$4\r\nPING\r\nECHO 'x\r\n",
        "GET a\r\n*2\r\n$3\r\nGET\r\n:1\r\n",
        "*1\r\n$2\r\nab\r\n*x\r\n",
    };
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
        struct collect ref;
        parse_all_ways(&ref, ins[i], strlen(ins[i]), NULL, false, 500);
        cr_assert_eq(ref.rc, KV_EPROTO, "%s", ins[i]);
        cr_assert_eq(ref.commands, 1, "%s", ins[i]);
        collect_free(&ref);
    }
}

Test(resp_parse, views_point_into_the_buffer)
{
    struct resp_parser *p;
    cr_assert_eq(resp_parser_create(&p, &resp_alloc_libc, NULL), 0);
    static const char in[] = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\nGET plain\r\n";
    resp_parser_feed(p, in, sizeof in - 1);
    struct resp_cmd cmd;
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argv[0].ptr, in + 8);
    cr_assert_eq(cmd.argv[1].ptr, in + 17);
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argv[1].ptr, in + 26);
    cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
    resp_parser_destroy(p);
}

Test(resp_parse, straddling_request_copies_only_the_earlier_part)
{
    struct resp_parser *p;
    cr_assert_eq(resp_parser_create(&p, &resp_alloc_libc, NULL), 0);
    char a[] = "*3\r\n$3\r\nSET\r\n$3\r\nk";
    char b[] = "ey\r\n$5\r\nvalue\r\n";
    struct resp_cmd cmd;
    resp_parser_feed(p, a, sizeof a - 1);
    cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
    memset(a, '#', sizeof a); /* the first buffer is recycled */
    resp_parser_feed(p, b, sizeof b - 1);
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argc, 3);
    cr_assert(memcmp(cmd.argv[0].ptr, "SET", 3) == 0);
    cr_assert(resp_parser_arena_contains(p, cmd.argv[0].ptr, 3));
    cr_assert(memcmp(cmd.argv[1].ptr, "key", 3) == 0);
    cr_assert(resp_parser_arena_contains(p, cmd.argv[1].ptr, 3));
    cr_assert_eq(cmd.argv[2].ptr, b + 8, "a bulk wholly in the new buffer is not copied");
    resp_parser_destroy(p);
}

/* Counts the bytes an allocator holds, and can be told to fail. */
struct counting {
    size_t live;
    size_t peak;
    size_t biggest;
    long fail_after; /* allocations left before failing; < 0: never */
};

static void *count_alloc(void *ctx, size_t n)
{
    struct counting *c = ctx;
    if (c->fail_after == 0) {
        return NULL;
    }
    if (c->fail_after > 0) {
        c->fail_after--;
    }
    c->live += n;
    c->peak = c->live > c->peak ? c->live : c->peak;
    c->biggest = n > c->biggest ? n : c->biggest;
    return malloc(n);
}

static void *count_resize(void *ctx, void *p, size_t old, size_t n)
{
    struct counting *c = ctx;
    if (c->fail_after == 0) {
        return NULL;
    }
    void *q = realloc(p, n);
    c->live = c->live - old + n;
    c->peak = c->live > c->peak ? c->live : c->peak;
    c->biggest = n > c->biggest ? n : c->biggest;
    return q;
}

static void count_free(void *ctx, void *p, size_t n)
{
    struct counting *c = ctx;
    if (p != NULL) {
        c->live -= n;
    }
    free(p);
}

Test(resp_parse, declared_length_is_not_allocated)
{
    struct counting cnt = {.fail_after = -1};
    struct resp_alloc a = {count_alloc, count_resize, count_free, &cnt};
    struct resp_parser *p;
    cr_assert_eq(resp_parser_create(&p, &a, NULL), 0);
    char buf[16384];
    static const char hdr[] = "*2\r\n$536870912\r\n";
    memcpy(buf, hdr, sizeof hdr - 1);
    memset(buf + sizeof hdr - 1, 'v', sizeof buf - (sizeof hdr - 1));
    struct resp_cmd cmd;
    resp_parser_feed(p, buf, sizeof buf);
    cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
    cr_assert_lt(cnt.peak, 16384 + 4096 + 1024, "peak %zu", cnt.peak);
    /* 4 MiB more, in 16 KiB buffers: the arena tracks what arrived. */
    size_t received = sizeof buf - (sizeof hdr - 1);
    memset(buf, 'w', sizeof buf);
    for (int i = 0; i < 256; i++) {
        resp_parser_feed(p, buf, sizeof buf);
        cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
        received += sizeof buf;
        cr_assert_leq(cnt.live, received + received / 2 + 8192, "live %zu after %zu", cnt.live,
                      received);
    }
    resp_parser_destroy(p);
    cr_assert_eq(cnt.live, 0);
}

Test(resp_parse, big_bulk_across_buffers)
{
    size_t vlen = 1000003;
    size_t n = 32 + vlen + 64;
    char *in = malloc(n);
    int h = snprintf(in, n, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%zu\r\n", vlen);
    for (size_t i = 0; i < vlen; i++) {
        in[h + i] = (char)('a' + i % 26);
    }
    memcpy(in + h + vlen, "\r\n*1\r\n$4\r\nPING\r\n", 16);
    size_t total = (size_t)h + vlen + 16;
    size_t cuts[128];
    size_t m = 0;
    for (size_t at = 16384; at < total && m < 128; at += 16384) {
        cuts[m++] = at;
    }
    struct collect c;
    collect_run(&c, in, total, cuts, m, NULL, false);
    cr_assert_eq(c.rc, KV_EAGAIN);
    cr_assert_eq(c.commands, 2);
    cr_assert_eq(c.bad_views, 0);
    char head[64];
    int k = snprintf(head, sizeof head, "3 3:SET 1:k %zu:", vlen);
    cr_assert(memcmp(c.out, head, (size_t)k) == 0);
    cr_assert(memcmp(c.out + k, in + h, vlen) == 0);
    cr_assert_str_eq(c.out + k + vlen, " \n1 4:PING \n");
    cr_assert_lt(c.peak_memory, vlen + vlen / 2 + 65536, "peak %zu", c.peak_memory);
    collect_free(&c);
    free(in);
}

Test(resp_parse, large_pipeline_in_16k_buffers)
{
    size_t count = 100000;
    size_t cap = count * 64;
    char *in = malloc(cap);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (i % 3 == 2) {
            n += (size_t)snprintf(in + n, cap - n, "GET key:%012zu\r\n", i);
        } else {
            n += (size_t)snprintf(in + n, cap - n,
                                  "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012zu\r\n$%zu\r\n", i, i % 50);
            memset(in + n, 'x', i % 50);
            n += i % 50;
            memcpy(in + n, "\r\n", 2);
            n += 2;
        }
    }
    size_t ncuts = n / 16384;
    size_t *cuts = malloc(sizeof(size_t) * (ncuts + 1));
    for (size_t i = 0; i < ncuts; i++) {
        cuts[i] = (i + 1) * 16384;
    }
    struct collect ref;
    collect_run(&ref, in, n, NULL, 0, NULL, false);
    cr_assert_eq(ref.commands, count);
    struct collect c;
    collect_run(&c, in, n, cuts, ncuts, NULL, false);
    check_same(&ref, &c, "16 KiB buffers", 0);
    cr_assert_lt(c.peak_memory, 64 * 1024, "peak %zu", c.peak_memory);
    collect_free(&c);
    rng_state = test_seed();
    for (int r = 0; r < 20; r++) {
        size_t k = random_cuts(cuts, ncuts, n);
        collect_run(&c, in, n, cuts, k, NULL, false);
        check_same(&ref, &c, "random cuts", test_seed());
        collect_free(&c);
    }
    collect_free(&ref);
    free(cuts);
    free(in);
}

Test(resp_parse, query_buffer_limit)
{
    struct resp_parse_limits lim = resp_parse_limits_default();
    lim.query_bytes_max = 1000;
    char in[2100] = "*1\r\n$2000\r\n";
    memset(in + 11, 'x', sizeof in - 11);
    struct collect c;
    size_t cut_header = 6, cut_data = 500, cut_tail = 2012;
    collect_run(&c, in, 11 + 2002, NULL, 0, &lim, false);
    cr_assert_eq(c.rc, KV_EAGAIN, "one buffer: nothing held");
    cr_assert_eq(c.commands, 1);
    collect_free(&c);
    collect_run(&c, in, 11 + 2002, &cut_header, 1, &lim, false);
    cr_assert_eq(c.rc, KV_EAGAIN, "a cut header line holds nothing");
    cr_assert_eq(c.commands, 1);
    collect_free(&c);
    size_t cuts[] = {cut_data, cut_tail};
    for (size_t i = 0; i < 2; i++) {
        collect_run(&c, in, 11 + 2002, &cuts[i], 1, &lim, false);
        cr_assert_eq(c.rc, KV_EPROTO, "2000 bytes held across buffers");
        cr_assert_eq(c.err, RESP_PERR_QUERY_LIMIT);
        cr_assert_str_eq(c.err_text, "");
        collect_free(&c);
    }
    memcpy(in, "*1\r\n$0900\r\n", 11);
    memcpy(in, "*1\r\n$900\r\n", 10);
    collect_run(&c, in, 10 + 902, &cut_data, 1, &lim, false);
    cr_assert_eq(c.rc, KV_EAGAIN, "900 bytes held: within the limit");
    cr_assert_eq(c.commands, 1);
    collect_free(&c);
}

Test(resp_parse, allocation_failure_is_reported)
{
    for (long fail = 0; fail < 8; fail++) {
        struct counting cnt = {.fail_after = fail};
        struct resp_alloc a = {count_alloc, count_resize, count_free, &cnt};
        struct resp_parser *p = NULL;
        int rc = resp_parser_create(&p, &a, NULL);
        if (rc != 0) {
            cr_assert_eq(rc, KV_ENOMEM);
            cr_assert_eq(cnt.live, 0);
            continue;
        }
        char in[40000];
        memset(in, 'a', sizeof in);
        memcpy(in, "*40\r\n", 5);
        size_t off = 5;
        for (int i = 0; i < 30; i++) {
            memcpy(in + off, "$3\r\nabc\r\n", 9);
            off += 9;
        }
        memcpy(in + off, "$30000\r\n", 8);
        struct resp_cmd cmd;
        int last = 0;
        for (size_t at = 0; at < sizeof in; at += 1000) {
            resp_parser_feed(p, in + at, 1000);
            last = resp_parser_next(p, &cmd);
            if (last != KV_EAGAIN) {
                break;
            }
        }
        cr_assert(last == KV_ENOMEM || last == KV_EAGAIN, "rc %d", last);
        if (last == KV_ENOMEM) {
            cr_assert_eq(resp_parser_next(p, &cmd), KV_ENOMEM, "sticky");
        }
        resp_parser_destroy(p);
        cr_assert_eq(cnt.live, 0, "leak with fail_after %ld", fail);
    }
}

static size_t alloc_calls;

static void *calls_alloc(void *ctx, size_t n)
{
    (void)ctx;
    alloc_calls++;
    return malloc(n);
}

static void *calls_resize(void *ctx, void *p, size_t old, size_t n)
{
    (void)ctx;
    (void)old;
    alloc_calls++;
    return realloc(p, n);
}

static void calls_free(void *ctx, void *p, size_t n)
{
    (void)ctx;
    (void)n;
    free(p);
}

Test(resp_parse, pipeline_across_buffers_allocates_nothing_once_warm)
{
    static const int value_lens[] = {16, 1024, 3000};
    for (size_t v = 0; v < sizeof value_lens / sizeof value_lens[0]; v++) {
        struct resp_alloc a = {calls_alloc, calls_resize, calls_free, NULL};
        struct resp_parser *p;
        cr_assert_eq(resp_parser_create(&p, &a, NULL), 0);
        size_t cap = 4u << 20, n = 0;
        char *in = malloc(cap);
        while (n + 4096 < cap) {
            n += (size_t)sprintf(in + n, "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012zu\r\n$%d\r\n", n,
                                 value_lens[v]);
            memset(in + n, 'v', (size_t)value_lens[v]);
            n += (size_t)value_lens[v];
            memcpy(in + n, "\r\n", 2);
            n += 2;
        }
        size_t warm = 0;
        struct resp_cmd cmd;
        for (size_t off = 0, i = 0; off < n; off += 16384, i++) {
            if (i == 8) {
                warm = alloc_calls;
            }
            resp_parser_feed(p, in + off, n - off < 16384 ? n - off : 16384);
            while (resp_parser_next(p, &cmd) == 0) {
            }
        }
        cr_assert_eq(alloc_calls, warm, "value %d: %zu allocations after warm-up", value_lens[v],
                     alloc_calls - warm);
        resp_parser_feed(p, "", 0); /* the last commands are done with */
        cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
        size_t before = resp_parser_memory_bytes(p);
        resp_parser_trim(p);
        cr_assert_lt(resp_parser_memory_bytes(p), before, "trim frees the spares");
        cr_assert_lt(resp_parser_memory_bytes(p), 4096, "an idle parser holds little");
        resp_parser_destroy(p);
        free(in);
    }
}

/* A bulk assembled from many receives: the parser's memory stays within 1.5x what
 * arrived plus one 4 KiB chunk (never the declared length), and the piece is resized
 * only a logarithmic number of times (1.5x: ~14 for 1 MiB from 4 KiB). */
Test(resp_parse, big_bulk_memory_bounded_by_what_arrived)
{
    struct resp_alloc a = {calls_alloc, calls_resize, calls_free, NULL};
    struct resp_parser *p;
    cr_assert_eq(resp_parser_create(&p, &a, NULL), 0);
    const size_t total = 1u << 20, piece = 3000;
    static const char head[] = "*2\r\n$3\r\nSET\r\n$1048576\r\n";
    struct resp_cmd cmd;
    resp_parser_feed(p, head, sizeof head - 1);
    cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
    size_t base = resp_parser_memory_bytes(p);
    char *buf = malloc(piece + 2);
    size_t arrived = 0, calls0 = alloc_calls;
    while (arrived < total) {
        size_t n = total - arrived < piece ? total - arrived : piece;
        memset(buf, (int)('a' + arrived % 26), n);
        resp_parser_feed(p, buf, n);
        arrived += n;
        cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN);
        size_t held = resp_parser_memory_bytes(p) - base;
        cr_assert_leq(held, arrived + arrived / 2 + 4096 + 256, "%zu held after %zu arrived", held,
                      arrived);
    }
    memcpy(buf, "\r\n", 2);
    resp_parser_feed(p, buf, 2);
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argc, 2);
    cr_assert_eq(cmd.argv[1].len, total);
    cr_assert_eq(cmd.argv[1].ptr[0], 'a');
    cr_assert_eq(cmd.argv[1].ptr[total - 1], (char)('a' + (total - 1) / piece * piece % 26));
    cr_assert_leq(alloc_calls - calls0, 16, "%zu allocations for one 1 MiB bulk",
                  alloc_calls - calls0);
    resp_parser_destroy(p);
    free(buf);
}

/* resp_parser_unread / resp_parser_move: a caller keeping its input for long (CLIENT
 * PAUSE) copies what is unread, gives the buffer back, and parsing goes on in the copy:
 * between requests, and right after a feed in the middle of a straddling request. */
Test(resp_parse, unread_moves_to_a_copy)
{
    struct resp_parser *p;
    cr_assert_eq(resp_parser_create(&p, &resp_alloc_libc, NULL), 0);
    char buf[] = "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$2\r\nk";
    resp_parser_feed(p, buf, sizeof buf - 1);
    struct resp_cmd cmd;
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argc, 1);
    size_t len;
    const char *rest = resp_parser_unread(p, &len);
    cr_assert_eq(len, sizeof buf - 1 - 14);
    cr_assert(rest == buf + 14);
    char *copy = malloc(len);
    memcpy(copy, rest, len);
    memset(buf, 'x', sizeof buf - 1); /* the buffer is gone */
    resp_parser_move(p, copy);
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argc, 2);
    cr_assert(cmd.argv[1].len == 1 && cmd.argv[1].ptr[0] == 'k');
    cr_assert_eq(resp_parser_next(p, &cmd), KV_EAGAIN); /* "GET k" straddles */
    char more[] = "2\r\n";
    resp_parser_feed(p, more, 3);
    rest = resp_parser_unread(p, &len); /* nothing of it read yet: movable */
    cr_assert_eq(len, 3);
    char *copy2 = malloc(3);
    memcpy(copy2, rest, 3);
    memset(more, 'x', 3);
    resp_parser_move(p, copy2);
    cr_assert_eq(resp_parser_next(p, &cmd), 0);
    cr_assert_eq(cmd.argc, 2);
    cr_assert(cmd.argv[1].len == 2 && memcmp(cmd.argv[1].ptr, "k2", 2) == 0);
    cr_assert_null(resp_parser_unread(p, &len));
    cr_assert_eq(len, 0);
    resp_parser_destroy(p);
    free(copy);
    free(copy2);
}

/* Whole requests take the one-pass path; what it cannot take (a limit, a number it does
 * not read, a missing part) must end exactly as the byte-wise states end it: compared
 * whole and cut at every byte, under limits small enough to be reached. */
Test(resp_parse, whole_request_path_agrees_at_limits)
{
    struct resp_parse_limits lim = resp_parse_limits_default();
    lim.inline_bytes_max = 3; /* "*NN" and "$NN" lines at most: 2 digits */
    lim.bulk_bytes_max = 20;
    lim.mbulk_count_max = 5;
    static const struct {
        const char *in;
        const char *want;
        const char *err;
    } cases[] = {
        {"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n", "2 3:GET 10:0123456789 \n", ""},
        {"*2\r\n$3\r\nGET\r\n$100\r\n", "", E_BIG_BULK},
        {"*10\r\n", "", E_INV_MBULK},
        {"*100\r\n", "", E_BIG_MBULK},
        {"*1\r\n$21\r\n", "", E_INV_BULK},
        {"*1\r\n$20\r\n01234567890123456789\r\n", "1 20:01234567890123456789 \n", ""},
        {"*1\r\n$03\r\nabc\r\n", "", E_INV_BULK},
        {"*1\r\n$3\rXabcYZ*1\r\n$1\r\nx\r\n", "1 3:abc \n1 1:x \n", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct collect ref;
        parse_all_ways(&ref, cases[i].in, strlen(cases[i].in), &lim, false, 50);
        cr_assert_str_eq(ref.out, cases[i].want, "case %zu", i);
        cr_assert_str_eq(ref.err_text, cases[i].err, "case %zu", i);
        collect_free(&ref);
    }
}

/* The one-pass path's own shortcuts: one- and two-digit numbers read without the digit
 * loop (also where the buffer ends right after their '\r'), longer numbers up to its 18
 * digits, header lines at the line limit, requests of more arguments than the argv
 * array holds yet, and a line limit too small for the path (it is then never taken).
 * Each must end exactly as the byte-wise states end it, whole and cut at every byte. */
Test(resp_parse, whole_request_path_shortcuts)
{
    struct resp_parse_limits dflt = resp_parse_limits_default();
    struct resp_parse_limits big = dflt; /* 18- and 19-digit numbers within the limits */
    big.bulk_bytes_max = INT64_MAX;
    big.mbulk_count_max = INT64_MAX;
    big.inline_bytes_max = 19;
    struct resp_parse_limits big20 = big;
    big20.inline_bytes_max = 20;
    struct resp_parse_limits tiny = dflt;
    tiny.inline_bytes_max = 18;
    static const char *const hex = "0123456789abcdef";
    static const struct {
        int lim; /* 0 dflt, 1 big, 2 big20, 3 tiny */
        const char *in;
        const char *want;
        const char *err;
    } cases[] = {
        {0, "*1\r\n$16\r\n0123456789abcdef\r\n", "1 16:0123456789abcdef \n", ""},
        {0, "*1\r\n$16\r", "", ""},
        {0, "*1\r\n$16\r\n0123456789abcdef\r", "", ""},
        {0, "*1\r\n$9\r\n012345678\r\n*1\r\n$1\r", "1 9:012345678 \n", ""},
        {0, "*1\r\n$10\rX0123456789YZ", "1 10:0123456789 \n", ""},
        {0, "*1\r\n$100\r\n", "", ""},
        {0, "*2\r\n$0\r\n\r\n$0\r\n\r\n", "2 0: 0: \n", ""},
        {0,
         "*12\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n$1\r\nf\r\n"
         "$1\r\ng\r\n$1\r\nh\r\n$1\r\ni\r\n$1\r\nj\r\n$1\r\nk\r\n$1\r\nl\r\n",
         "12 1:a 1:b 1:c 1:d 1:e 1:f 1:g 1:h 1:i 1:j 1:k 1:l \n", ""},
        {0, "*1\r\n$05\r\nhello\r\n", "", E_INV_BULK},
        {0, "*1\r\n$00\r\n\r\n", "", E_INV_BULK},
        {0, "*1\r\n$12x\r\n", "", E_INV_BULK},
        {0, "*1\r\n$12\n\r\n", "", E_INV_BULK},
        {0, "*03\r\n", "", E_INV_MBULK},
        {0, "*1\r\n*1\r\n", "", "ERR Protocol error: expected '$', got '*'"},
        {1, "*1\r\n$100000000000000000\r\nab", "", ""},
        {1, "*1\r\n$1000000000000000000\r\n", "", E_BIG_BULK},
        {1, "*100000000000000000\r\n$1\r\nx\r\n", "", ""},
        {1, "*1000000000000000000\r\n", "", E_BIG_MBULK},
        {2, "*1\r\n$1000000000000000000\r\nab", "", ""},
        {2, "*1\r\n$9999999999999999999\r\n", "", E_INV_BULK},
        {3, "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", "2 3:GET 3:key \n", ""},
        {3, "*1\r\n$0000000000000000\r\n", "", E_INV_BULK},
    };
    const struct resp_parse_limits *lims[] = {&dflt, &big, &big20, &tiny};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct collect ref;
        parse_all_ways(&ref, cases[i].in, strlen(cases[i].in), lims[cases[i].lim], false, 50);
        cr_assert_str_eq(ref.out, cases[i].want, "case %zu", i);
        cr_assert_str_eq(ref.err_text, cases[i].err, "case %zu", i);
        collect_free(&ref);
    }

    /* 40 arguments, twice: more than the argv array first holds, then as many again. */
    char in[1024], want[1024];
    size_t n = 0, w = 0;
    for (int r = 0; r < 2; r++) {
        n += (size_t)sprintf(in + n, "*40\r\n");
        w += (size_t)sprintf(want + w, "40");
        for (int k = 0; k < 40; k++) {
            n += (size_t)sprintf(in + n, "$1\r\n%c\r\n", hex[k % 16]);
            w += (size_t)sprintf(want + w, " 1:%c", hex[k % 16]);
        }
        w += (size_t)sprintf(want + w, " \n");
    }
    struct collect ref;
    parse_all_ways(&ref, in, n, NULL, false, 50);
    cr_assert_str_eq(ref.out, want);
    cr_assert_eq(ref.rc, KV_EAGAIN);
    collect_free(&ref);
}

/* resp_peek_second_arg: the key of a whole request at the buffer's start, for every
 * prefix of it (false until the key is whole), and false for other forms. */
Test(resp_parse, peek_second_arg)
{
    static const char req[] = "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000001234\r\n$3\r\nbar\r\n";
    size_t key_end = strlen("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000001234");
    struct resp_arg key;
    for (size_t len = 0; len <= sizeof req - 1; len++) {
        char *copy = malloc(len + 1); /* exactly len bytes readable (ASan) */
        memcpy(copy, req, len);
        bool got = resp_peek_second_arg(copy, len, &key);
        cr_assert_eq(got, len >= key_end, "len %zu", len);
        if (got) {
            cr_assert_eq(key.len, 16);
            cr_assert(key.ptr == copy + key_end - 16 &&
                      memcmp(key.ptr, "key:000000001234", 16) == 0);
        }
        free(copy);
    }
    cr_assert(resp_peek_second_arg("*2\r\n$3\r\nGET\r\n$0\r\n\r\n", 19, &key) && key.len == 0);
    cr_assert(resp_peek_second_arg("*2\r\n$3\r\nGET\r\n$123\r\n", 19, &key) == false);
    cr_assert(!resp_peek_second_arg("*1\r\n$4\r\nPING\r\n", 14, &key));
    cr_assert(!resp_peek_second_arg("GET k\r\n", 7, &key));                  /* inline */
    cr_assert(!resp_peek_second_arg("*2\r\n+GET\r\n$1\r\nk\r\n", 17, &key)); /* not a bulk */
    cr_assert(!resp_peek_second_arg("*2\r\n$-1\r\n$1\r\nk\r\n", 16, &key));
}
