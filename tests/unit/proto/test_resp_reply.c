/*
 * Unit tests of proto/resp_reply: every RESP2/RESP3 reply type, nesting, attributes,
 * the tree form, bad input and limits, and the split property: a stream of replies
 * fed in pieces cut at any byte yields the same events as the stream in one piece.
 * The feeder copies the pending bytes into a fresh allocation on every arrival, as a
 * client compacting its buffer would, so a view kept across calls would be caught by
 * ASan. Randomized tests take their seed from KV_TEST_SEED and print it on failure.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "resp_reply.h"

/* ---- a re-encoder: events back to RESP text -------------------------------------- */

struct enc {
    char *buf;
    size_t len, cap;
    int ends;
};

static void enc_put(struct enc *e, const char *s, size_t n)
{
    if (e->len + n + 1 > e->cap) {
        e->cap = (e->len + n + 1) * 2;
        e->buf = realloc(e->buf, e->cap);
        cr_assert_not_null(e->buf);
    }
    memcpy(e->buf + e->len, s, n);
    e->len += n;
    e->buf[e->len] = '\0';
}

static void enc_fmt(struct enc *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void enc_fmt(struct enc *e, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && (size_t)n < sizeof(tmp));
    enc_put(e, tmp, (size_t)n);
}

/* Re-encode one event. Nulls come out as RESP3 `_`, which the generators use. */
static void enc_on_value(void *ctx, const struct resp_reply_value *v)
{
    struct enc *e = ctx;
    static const char prefix[] = " +-:$_,#(!=*%~>|";
    char c = prefix[v->type];
    switch (v->type) {
    case RESP_REPLY_STRING:
    case RESP_REPLY_ERROR:
    case RESP_REPLY_DOUBLE:
    case RESP_REPLY_BIGNUM:
        enc_put(e, &c, 1);
        enc_put(e, v->str, v->len);
        enc_put(e, "\r\n", 2);
        break;
    case RESP_REPLY_INTEGER:
        enc_fmt(e, ":%" PRId64 "\r\n", v->integer);
        break;
    case RESP_REPLY_NULL:
        enc_put(e, "_\r\n", 3);
        break;
    case RESP_REPLY_BOOLEAN:
        enc_put(e, v->integer ? "#t\r\n" : "#f\r\n", 4);
        break;
    case RESP_REPLY_BULK:
    case RESP_REPLY_BULK_ERROR:
        enc_fmt(e, "%c%zu\r\n", c, v->len);
        enc_put(e, v->str, v->len);
        enc_put(e, "\r\n", 2);
        break;
    case RESP_REPLY_VERBATIM:
        enc_fmt(e, "=%zu\r\n%s:", v->len + 4, v->fmt);
        enc_put(e, v->str, v->len);
        enc_put(e, "\r\n", 2);
        break;
    default:
        enc_fmt(e, "%c%" PRId64 "\r\n", c, v->count);
        break;
    }
}

static void enc_on_end(void *ctx, enum resp_reply_type type, uint32_t depth)
{
    struct enc *e = ctx;
    e->ends++;
}

static const struct resp_reply_callbacks enc_cb = {enc_on_value, enc_on_end};

/*
 * Feed in[0..n) cut at the offsets cuts[0..ncuts) (increasing), re-encoding every event
 * into *out. Returns the number of complete replies, or the first error code.
 */
static int feed(const char *in, size_t n, const size_t *cuts, size_t ncuts, struct enc *out)
{
    struct resp_reply_parser p;
    resp_reply_parser_init(&p, &enc_cb, out);
    char *pend = NULL;
    size_t plen = 0, at = 0;
    int replies = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t to = c < ncuts ? cuts[c] : n;
        char *fresh = malloc(plen + (to - at) + 1);
        cr_assert_not_null(fresh);
        if (plen > 0) {
            memcpy(fresh, pend, plen);
        }
        memcpy(fresh + plen, in + at, to - at);
        free(pend);
        pend = fresh;
        plen += to - at;
        at = to;
        for (;;) {
            size_t used = 0;
            int rc = resp_reply_parse(&p, pend, plen, &used);
            if (rc == KV_EAGAIN) {
                break;
            }
            if (rc != 0) {
                free(pend);
                return rc;
            }
            cr_assert(used > 0 && used <= plen);
            replies++;
            char *rest = malloc(plen - used + 1);
            memcpy(rest, pend + used, plen - used);
            free(pend);
            pend = rest;
            plen -= used;
        }
    }
    free(pend);
    return replies;
}

static int feed_whole(const char *in, struct enc *out)
{
    return feed(in, strlen(in), NULL, 0, out);
}

/* ---- one reply at a time: each type ------------------------------------------------ */

static struct resp_reply_node nodes[256];

/* Parse exactly one complete reply `s` with the tree form; assert it used all of s. */
static struct resp_reply_tree *tree_of(const char *s)
{
    static struct resp_reply_tree t;
    resp_reply_tree_init(&t, nodes, KV_ARRAY_LEN(nodes));
    size_t used = 0;
    int rc = resp_reply_tree_parse(&t, s, strlen(s), &used);
    cr_assert_eq(rc, 0, "rc %d (%s) for %s", rc, kv_strerror(rc), s);
    cr_assert_eq(used, strlen(s));
    return &t;
}

static void assert_str(const struct resp_reply_node *nd, int type, const char *text)
{
    cr_assert_eq(nd->type, type, "type %s", resp_reply_type_name(nd->type));
    cr_assert_eq(nd->len, strlen(text));
    cr_assert(memcmp(nd->str, text, nd->len) == 0);
}

Test(resp_reply, simple_types)
{
    assert_str(&tree_of("+OK\r\n")->nodes[0], RESP_REPLY_STRING, "OK");
    assert_str(&tree_of("+\r\n")->nodes[0], RESP_REPLY_STRING, "");
    assert_str(&tree_of("-ERR unknown command\r\n")->nodes[0], RESP_REPLY_ERROR,
               "ERR unknown command");
    cr_assert_eq(tree_of(":1234\r\n")->nodes[0].integer, 1234);
    cr_assert_eq(tree_of(":-9223372036854775808\r\n")->nodes[0].integer, INT64_MIN);
    cr_assert_eq(tree_of(":9223372036854775807\r\n")->nodes[0].integer, INT64_MAX);
    cr_assert_eq(tree_of(":+7\r\n")->nodes[0].integer, 7);
    cr_assert_eq(tree_of("_\r\n")->nodes[0].type, RESP_REPLY_NULL);
    cr_assert_eq(tree_of("$-1\r\n")->nodes[0].type, RESP_REPLY_NULL);
    cr_assert_eq(tree_of("*-1\r\n")->nodes[0].type, RESP_REPLY_NULL);
    cr_assert_eq(tree_of("#t\r\n")->nodes[0].integer, 1);
    cr_assert_eq(tree_of("#f\r\n")->nodes[0].integer, 0);
    cr_assert_float_eq(tree_of(",3.25\r\n")->nodes[0].dbl, 3.25, 1e-12);
    cr_assert_float_eq(tree_of(",-1e10\r\n")->nodes[0].dbl, -1e10, 1e-3);
    cr_assert(tree_of(",inf\r\n")->nodes[0].dbl > 1e308);
    cr_assert(tree_of(",-inf\r\n")->nodes[0].dbl < -1e308);
    double nan = tree_of(",nan\r\n")->nodes[0].dbl;
    cr_assert(nan != nan);
    assert_str(&tree_of("(3492890328409238509324850943850943825024385\r\n")->nodes[0],
               RESP_REPLY_BIGNUM, "3492890328409238509324850943850943825024385");
}

Test(resp_reply, bulk_types)
{
    assert_str(&tree_of("$5\r\nhello\r\n")->nodes[0], RESP_REPLY_BULK, "hello");
    assert_str(&tree_of("$0\r\n\r\n")->nodes[0], RESP_REPLY_BULK, "");
    /* binary safe: CR, LF and NUL inside the payload */
    struct resp_reply_tree *t = tree_of("$6\r\na\r\nb\rc\r\n");
    cr_assert_eq(t->nodes[0].len, 6);
    cr_assert(memcmp(t->nodes[0].str, "a\r\nb\rc", 6) == 0);
    assert_str(&tree_of("!21\r\nSYNTAX invalid syntax\r\n")->nodes[0], RESP_REPLY_BULK_ERROR,
               "SYNTAX invalid syntax");
    t = tree_of("=15\r\ntxt:Some string\r\n");
    assert_str(&t->nodes[0], RESP_REPLY_VERBATIM, "Some string");
    cr_assert_str_eq(t->nodes[0].fmt, "txt");
}

Test(resp_reply, views_point_into_the_input)
{
    const char *s = "*2\r\n$3\r\nfoo\r\n+bar\r\n";
    struct resp_reply_tree *t = tree_of(s);
    cr_assert_eq(t->nodes[1].str, s + 8);
    cr_assert_eq(t->nodes[2].str, s + 14);
}

Test(resp_reply, nested_aggregates_as_a_tree)
{
    /* [1, [ "a", {k: v} ], (empty set), >push] */
    const char *s = "*4\r\n:1\r\n*2\r\n$1\r\na\r\n%1\r\n+k\r\n+v\r\n~0\r\n>1\r\n+p\r\n";
    struct resp_reply_tree *t = tree_of(s);
    cr_assert_eq(t->n, 10);
    struct resp_reply_node *n = t->nodes;
    cr_assert_eq(n[0].type, RESP_REPLY_ARRAY);
    cr_assert_eq(n[0].kids, 4);
    cr_assert_eq(n[0].count, 4);
    cr_assert_eq(n[0].next, 10);
    cr_assert_eq(n[1].integer, 1);
    cr_assert_eq(n[1].next, 2);
    cr_assert_eq(n[2].type, RESP_REPLY_ARRAY);
    cr_assert_eq(n[2].kids, 2);
    cr_assert_eq(n[2].next, 7);
    assert_str(&n[3], RESP_REPLY_BULK, "a");
    cr_assert_eq(n[4].type, RESP_REPLY_MAP);
    cr_assert_eq(n[4].count, 1);
    cr_assert_eq(n[4].kids, 2);
    cr_assert_eq(n[4].next, 7);
    assert_str(&n[5], RESP_REPLY_STRING, "k");
    assert_str(&n[6], RESP_REPLY_STRING, "v");
    cr_assert_eq(n[7].type, RESP_REPLY_SET);
    cr_assert_eq(n[7].kids, 0);
    cr_assert_eq(n[7].next, 8);
    cr_assert_eq(n[8].type, RESP_REPLY_PUSH);
    cr_assert_eq(n[8].next, 10);
    assert_str(&n[9], RESP_REPLY_STRING, "p");
    cr_assert_eq(resp_reply_tree_root(t), 0);
}

Test(resp_reply, attributes_annotate_the_next_element)
{
    /* top level: |1 key-popularity -> the reply is the array after it */
    const char *s = "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2\r\n:3\r\n";
    struct resp_reply_tree *t = tree_of(s);
    uint32_t root = resp_reply_tree_root(t);
    cr_assert_eq(t->nodes[0].type, RESP_REPLY_ATTRIBUTE);
    cr_assert_eq(t->nodes[0].next, 5);
    cr_assert_eq(root, 5);
    cr_assert_eq(t->nodes[root].type, RESP_REPLY_ARRAY);
    cr_assert_eq(t->nodes[root].kids, 2);
    /* nested: an attribute does not count as an element of its parent */
    struct enc e = {0};
    cr_assert_eq(feed_whole("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n+next\r\n", &e), 2);
    cr_assert_str_eq(e.buf, "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n+next\r\n");
    cr_assert_eq(e.ends, 2);
    free(e.buf);
    /* an empty attribute before a scalar */
    e = (struct enc){0};
    cr_assert_eq(feed_whole("|0\r\n+x\r\n", &e), 1);
    free(e.buf);
}

Test(resp_reply, pipelined_replies_report_their_sizes)
{
    struct resp_reply_parser p;
    resp_reply_parser_init(&p, NULL, NULL);
    const char *s = "+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n:2\r\n$-1\r\n+PART";
    size_t len = strlen(s), at = 0, used = 0;
    size_t expect[] = {5, 9, 12, 5};
    for (size_t i = 0; i < KV_ARRAY_LEN(expect); i++) {
        cr_assert_eq(resp_reply_parse(&p, s + at, len - at, &used), 0);
        cr_assert_eq(used, expect[i]);
        at += used;
    }
    cr_assert_eq(resp_reply_parse(&p, s + at, len - at, &used), KV_EAGAIN);
}

/* ---- bad input and limits ----------------------------------------------------------- */

static int parse_one(const char *s)
{
    struct resp_reply_parser p;
    resp_reply_parser_init(&p, NULL, NULL);
    size_t used;
    return resp_reply_parse(&p, s, strlen(s), &used);
}

Test(resp_reply, rejects_malformed_input)
{
    const char *bad[] = {
        "?x\r\n",
        "OK\r\n",
        ":12a\r\n",
        ":\r\n",
        ":-\r\n",
        ":99999999999999999999\r\n",
        ":9223372036854775808\r\n",
        "$3\r\nabcd\r\n",
        "$3\r\nabc\n\r\n",
        "$-2\r\n",
        "$x\r\n",
        "*-2\r\n",
        "%-1\r\n",
        "+a\rb\r\n",
        "_x\r\n",
        "#x\r\n",
        "#tt\r\n",
        ",\r\n",
        ",1.5x\r\n",
        "(12a\r\n",
        "(\r\n",
        "=3\r\ntxt\r\n",
        "=5\r\ntxt-x\r\n",
        "$?\r\n",
        "\r\n",
    };
    for (size_t i = 0; i < KV_ARRAY_LEN(bad); i++) {
        cr_expect_eq(parse_one(bad[i]), KV_EPROTO, "input %zu: %s", i, bad[i]);
    }
}

Test(resp_reply, incomplete_input_asks_for_more)
{
    const char *partial[] = {"",
                             "+",
                             "+OK",
                             "+OK\r",
                             "$5\r\nhel",
                             "$5\r\nhello",
                             "$5\r\nhello\r",
                             "*2\r\n:1\r\n",
                             "%1\r\n+k\r\n",
                             "|1\r\n+a\r\n+b\r\n"};
    for (size_t i = 0; i < KV_ARRAY_LEN(partial); i++) {
        cr_expect_eq(parse_one(partial[i]), KV_EAGAIN, "input %zu", i);
    }
}

Test(resp_reply, limits)
{
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "$%lld\r\n", (long long)KV_RESP_REPLY_BULK_MAX + 1);
    cr_assert_eq(parse_one(hdr), KV_ELIMIT);
    snprintf(hdr, sizeof(hdr), "*%lld\r\n", (long long)KV_RESP_REPLY_COUNT_MAX + 1);
    cr_assert_eq(parse_one(hdr), KV_ELIMIT);

    /* nesting: DEPTH_MAX levels are fine, one more is not */
    static char deep[8 * (KV_RESP_REPLY_DEPTH_MAX + 2)];
    size_t n = 0;
    for (int i = 0; i < KV_RESP_REPLY_DEPTH_MAX; i++) {
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "*1\r\n");
    }
    snprintf(deep + n, sizeof(deep) - n, ":1\r\n");
    cr_assert_eq(parse_one(deep), 0);
    snprintf(deep + n, sizeof(deep) - n, "*1\r\n:1\r\n");
    cr_assert_eq(parse_one(deep), KV_ELIMIT);

    /* a line without CRLF longer than the line limit */
    size_t big = KV_RESP_REPLY_LINE_MAX + 8;
    char *line = malloc(big + 4);
    line[0] = '+';
    memset(line + 1, 'x', big);
    line[big + 1] = '\0';
    cr_assert_eq(parse_one(line), KV_ELIMIT);
    memcpy(line + KV_RESP_REPLY_LINE_MAX + 1, "\r\n", 3); /* exactly at the limit: fine */
    cr_assert_eq(parse_one(line), 0);
    free(line);
}

Test(resp_reply, tree_overflow_skips_the_reply)
{
    struct resp_reply_node small[3];
    struct resp_reply_tree t;
    resp_reply_tree_init(&t, small, 3);
    const char *s = "*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n*1\r\n:5\r\n";
    size_t used = 0;
    cr_assert_eq(resp_reply_tree_parse(&t, s, strlen(s), &used), KV_ELIMIT);
    cr_assert_eq(used, 20);
    cr_assert_eq(resp_reply_tree_parse(&t, s + used, strlen(s) - used, &used), 0);
    cr_assert_eq(t.n, 2);
    cr_assert_eq(t.nodes[1].integer, 5);
}

/* ---- the split property ------------------------------------------------------------- */

/* Every reply type, RESP2 and RESP3, nested, written as the re-encoder writes them. */
static const char corpus[] = "+OK\r\n"
                             "-ERR wrong number of arguments for 'get' command\r\n"
                             ":0\r\n"
                             ":-42\r\n"
                             "$12\r\nhello\r\nworld\r\n"
                             "$0\r\n\r\n"
                             "_\r\n"
                             ",3.141592653589793\r\n"
                             ",-inf\r\n"
                             "#t\r\n"
                             "(-123456789012345678901234567890\r\n"
                             "!10\r\nERR broken\r\n"
                             "=8\r\nmkd:# hi\r\n"
                             "*0\r\n"
                             "*3\r\n$1\r\na\r\n*2\r\n:1\r\n_\r\n%1\r\n+k\r\n~2\r\n#f\r\n:7\r\n"
                             "%2\r\n$4\r\nname\r\n$5\r\nredis\r\n$5\r\nmodes\r\n*0\r\n"
                             ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nmsg\r\n"
                             "|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n"
                             "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n";
#define CORPUS_REPLIES 19

Test(resp_reply, corpus_round_trips)
{
    struct enc e = {0};
    cr_assert_eq(feed_whole(corpus, &e), CORPUS_REPLIES);
    cr_assert_str_eq(e.buf, corpus);
    free(e.buf);
}

Test(resp_reply, every_byte_split)
{
    size_t n = sizeof(corpus) - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        struct enc e = {0};
        cr_assert_eq(feed(corpus, n, &cut, 1, &e), CORPUS_REPLIES, "cut at %zu", cut);
        cr_assert_str_eq(e.buf, corpus, "cut at %zu", cut);
        free(e.buf);
    }
    /* and one byte at a time */
    size_t *cuts = malloc(n * sizeof(*cuts));
    for (size_t i = 0; i < n; i++) {
        cuts[i] = i;
    }
    struct enc e = {0};
    cr_assert_eq(feed(corpus, n, cuts, n, &e), CORPUS_REPLIES);
    cr_assert_str_eq(e.buf, corpus);
    free(e.buf);
    free(cuts);
}

/* ---- randomized: generated replies, random cuts --------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void gen(struct enc *e, int depth)
{
    int kind = (int)(rng() % (depth < 4 ? 14 : 9));
    char text[40];
    size_t tl = rng() % sizeof(text);
    for (size_t i = 0; i < tl; i++) {
        text[i] = (char)(rng() % 256); /* binary for bulks; fixed up below for lines */
    }
    switch (kind) {
    case 0:
    case 1:
        for (size_t i = 0; i < tl; i++) {
            text[i] = (char)('a' + (unsigned char)text[i] % 26);
        }
        enc_put(e, kind == 0 ? "+" : "-", 1);
        enc_put(e, text, tl);
        enc_put(e, "\r\n", 2);
        break;
    case 2:
        enc_fmt(e, ":%" PRId64 "\r\n", (int64_t)rng());
        break;
    case 3:
    case 4:
        enc_fmt(e, "%c%zu\r\n", kind == 3 ? '$' : '!', tl);
        enc_put(e, text, tl);
        enc_put(e, "\r\n", 2);
        break;
    case 5:
        enc_put(e, "_\r\n", 3);
        break;
    case 6:
        enc_fmt(e, ",%" PRId64 ".5\r\n", (int64_t)(rng() % 100000));
        break;
    case 7:
        enc_put(e, rng() % 2 ? "#t\r\n" : "#f\r\n", 4);
        break;
    case 8:
        enc_fmt(e, "(%" PRIu64 "%" PRIu64 "\r\n", rng(), rng());
        break;
    default: {
        static const char agg[] = "*%~>|";
        char c = agg[kind - 9];
        uint64_t cnt = rng() % 4;
        enc_fmt(e, "%c%" PRIu64 "\r\n", c, cnt);
        uint64_t kids = (c == '%' || c == '|') ? cnt * 2 : cnt;
        for (uint64_t i = 0; i < kids; i++) {
            gen(e, depth + 1);
        }
        if (c == '|') {
            gen(e, depth + 1 < 4 ? depth + 1 : 4); /* the annotated element */
        }
        break;
    }
    }
}

Test(resp_reply, random_replies_random_cuts)
{
    const char *env = getenv("KV_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    for (int round = 0; round < 300; round++) {
        rng_state = (seed + (uint64_t)round) * 0x9E3779B97F4A7C15ull | 1;
        struct enc in = {0};
        int replies = 1 + (int)(rng() % 8);
        for (int r = 0; r < replies; r++) {
            gen(&in, 0);
        }
        size_t cuts[16];
        size_t ncuts = rng() % KV_ARRAY_LEN(cuts);
        for (size_t i = 0; i < ncuts; i++) {
            cuts[i] = rng() % (in.len + 1);
        }
        for (size_t i = 1; i < ncuts; i++) { /* insertion sort: cuts increase */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t tmp = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = tmp;
            }
        }
        struct enc out = {0};
        int got = feed(in.buf, in.len, cuts, ncuts, &out);
        cr_assert_eq(got, replies, "seed %" PRIu64 " round %d: rc %d", seed, round, got);
        cr_assert_eq(out.len, in.len, "seed %" PRIu64 " round %d", seed, round);
        cr_assert(memcmp(out.buf, in.buf, in.len) == 0, "seed %" PRIu64 " round %d", seed, round);
        free(in.buf);
        free(out.buf);
    }
}
