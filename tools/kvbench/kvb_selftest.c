/*
 * kvb_selftest: `kvbench --self-test`, checks of the parts whose errors would not show
 * in a benchmark's output: the histogram's error bound and the key distributions.
 *
 * - Histogram: every value from 0 to 2^40 sampled log-uniformly lands in a bucket
 *   whose reported midpoint is within 1% of it; quantiles of 200,000 random latencies
 *   are within 1% of the exact order statistics; merge adds up.
 * - Zipf: over 1,000 keys with theta 0.99, the hottest key's share is 1/zeta(n, theta)
 *   and the first ranks are in decreasing order; uniform draws cover the key space
 *   evenly; sequential draws wrap.
 *
 * Seeded (--seed); prints what failed and the seed. Main thread only.
 */
#include "kvb.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "kvbench self-test: " __VA_ARGS__);                                    \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double rel_err(uint64_t got, uint64_t want)
{
    if (want == 0) {
        return got == 0 ? 0.0 : 1.0;
    }
    return fabs((double)got - (double)want) / (double)want;
}

static void hist_checks(struct kvb_rng *r)
{
    static struct kvb_hist h, h2;
    for (int i = 0; i < 100000; i++) {
        uint64_t v = (uint64_t)exp2(kvb_rng_unit(r) * 40.0);
        uint32_t idx = kvb_hist_index(v);
        CHECK(kvb_hist_bucket_low(idx) <= v && v <= kvb_hist_bucket_high(idx),
              "value %" PRIu64 " outside its bucket %u", v, idx);
        kvb_hist_reset(&h);
        kvb_hist_record(&h, v);
        kvb_hist_record(&h, v + 1000000000000ull); /* so max does not clamp the median */
        CHECK(rel_err(kvb_hist_quantile(&h, 0.5), v) <= 0.01, "p50 of %" PRIu64 " is %" PRIu64, v,
              kvb_hist_quantile(&h, 0.5));
    }

    enum { N = 200000 };
    uint64_t *vals = malloc(N * sizeof(*vals));
    if (vals == NULL) {
        failures++;
        return;
    }
    kvb_hist_reset(&h);
    kvb_hist_reset(&h2);
    for (int i = 0; i < N; i++) {
        /* latency-like: 20 us body, a long tail up to ~100 ms */
        double u = kvb_rng_unit(r);
        vals[i] = (uint64_t)(20000.0 / pow(1.0 - u * 0.9999, 0.8));
        kvb_hist_record(i % 2 ? &h : &h2, vals[i]);
    }
    kvb_hist_merge(&h, &h2);
    qsort(vals, N, sizeof(*vals), cmp_u64);
    CHECK(h.count == N, "merged count %" PRIu64, h.count);
    CHECK(h.max == vals[N - 1], "max %" PRIu64 " != %" PRIu64, h.max, vals[N - 1]);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    uint64_t prev = 0;
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t exact = vals[(size_t)ceil(qs[i] * N) - 1];
        uint64_t got = kvb_hist_quantile(&h, qs[i]);
        CHECK(rel_err(got, exact) <= 0.01, "q%g: %" PRIu64 " vs exact %" PRIu64, qs[i], got, exact);
        CHECK(got >= prev, "quantiles out of order at q%g", qs[i]);
        prev = got;
    }
    free(vals);
}

static void dist_checks(struct kvb_rng *r)
{
    enum { KEYS = 1000, DRAWS = 400000 };
    static uint32_t counts[KEYS];
    struct kvb_config cfg = {.keyspace = KEYS, .theta = 0.99, .dist = KVB_DIST_ZIPF};
    kvb_zipf_setup(&cfg);
    uint64_t seq = 0;
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < DRAWS; i++) {
        uint64_t k = kvb_key_next(&cfg, r, &seq);
        CHECK(k < KEYS, "zipf key %" PRIu64 " out of range", k);
        counts[k < KEYS ? k : 0]++;
    }
    double want0 = (double)DRAWS / cfg.zipf_zetan;
    CHECK(fabs(counts[0] - want0) < 0.05 * want0, "zipf rank 0: %u draws, expected %.0f", counts[0],
          want0);
    for (int i = 1; i < 5; i++) {
        CHECK(counts[i] < counts[i - 1], "zipf ranks %d and %d not decreasing (%u, %u)", i - 1, i,
              counts[i - 1], counts[i]);
    }

    cfg.dist = KVB_DIST_UNIFORM;
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < DRAWS; i++) {
        uint64_t k = kvb_key_next(&cfg, r, &seq);
        CHECK(k < KEYS, "uniform key %" PRIu64 " out of range", k);
        counts[k < KEYS ? k : 0]++;
    }
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < KEYS; i++) {
        lo = counts[i] < lo ? counts[i] : lo;
        hi = counts[i] > hi ? counts[i] : hi;
    }
    /* 400 expected per key; +-25% is more than 5 standard deviations */
    CHECK(lo > 300 && hi < 500, "uniform counts range %u..%u", lo, hi);

    cfg.dist = KVB_DIST_SEQ;
    seq = KEYS - 2;
    CHECK(kvb_key_next(&cfg, r, &seq) == KEYS - 2, "seq");
    CHECK(kvb_key_next(&cfg, r, &seq) == KEYS - 1, "seq");
    CHECK(kvb_key_next(&cfg, r, &seq) == 0, "seq does not wrap");
}

int kvb_selftest(uint64_t seed)
{
    struct kvb_rng r;
    kvb_rng_seed(&r, seed);
    failures = 0;
    hist_checks(&r);
    dist_checks(&r);
    if (failures != 0) {
        fprintf(stderr, "kvbench self-test: %d failures (seed %" PRIu64 ")\n", failures, seed);
        return 1;
    }
    printf("kvbench self-test: ok (seed %" PRIu64 ")\n", seed);
    return 0;
}
