/*
 * kvb_hist: a log-linear latency histogram (the HdrHistogram layout with 7 bits of
 * sub-bucket precision).
 *
 * Values below 128 get a bucket each. A larger value v with highest set bit e falls
 * in one of 128 equal buckets that split [2^e, 2^(e+1)), each 2^(e-7) wide, so a
 * bucket is at most 1/128 of its lower bound wide; quantiles report the bucket's
 * midpoint, within 0.4% of every value in it. Recording is a few shifts and one add:
 * no branches on the value's size beyond the first, no allocation; 59 KiB per
 * histogram, owned by one worker thread and merged by the main thread after join.
 */
#include "kvb.h"

#include <string.h>

#include "kv_assert.h"

void kvb_hist_reset(struct kvb_hist *h)
{
    KV_ASSERT(h != NULL);
    memset(h, 0, sizeof(*h));
}

uint32_t kvb_hist_index(uint64_t v)
{
    if (v < KVB_HIST_SUB) {
        return (uint32_t)v;
    }
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v); /* >= KVB_HIST_SUB_BITS */
    uint32_t shift = e - KVB_HIST_SUB_BITS;
    uint32_t sub = (uint32_t)(v >> shift) - KVB_HIST_SUB; /* 0..127 */
    uint32_t idx = KVB_HIST_SUB + shift * KVB_HIST_SUB + sub;
    KV_DASSERT(idx < KVB_HIST_BUCKETS);
    return idx;
}

uint64_t kvb_hist_bucket_low(uint32_t idx)
{
    KV_ASSERT(idx < KVB_HIST_BUCKETS);
    if (idx < KVB_HIST_SUB) {
        return idx;
    }
    uint32_t shift = (idx - KVB_HIST_SUB) / KVB_HIST_SUB;
    uint64_t sub = (idx - KVB_HIST_SUB) % KVB_HIST_SUB;
    return (KVB_HIST_SUB + sub) << shift;
}

uint64_t kvb_hist_bucket_high(uint32_t idx)
{
    KV_ASSERT(idx < KVB_HIST_BUCKETS);
    if (idx < KVB_HIST_SUB) {
        return idx;
    }
    uint32_t shift = (idx - KVB_HIST_SUB) / KVB_HIST_SUB;
    return kvb_hist_bucket_low(idx) + ((uint64_t)1 << shift) - 1;
}

void kvb_hist_record(struct kvb_hist *h, uint64_t v)
{
    h->buckets[kvb_hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max) {
        h->max = v;
    }
}

void kvb_hist_merge(struct kvb_hist *into, const struct kvb_hist *from)
{
    KV_ASSERT(into != NULL && from != NULL);
    for (uint32_t i = 0; i < KVB_HIST_BUCKETS; i++) {
        into->buckets[i] += from->buckets[i];
    }
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max) {
        into->max = from->max;
    }
}

uint64_t kvb_hist_quantile(const struct kvb_hist *h, double q)
{
    KV_ASSERT(q > 0.0 && q <= 1.0);
    if (h->count == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return h->max;
    }
    /* the rank-th smallest value, 1-based, rounding up as HdrHistogram does */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank == 0) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (uint32_t i = 0; i < KVB_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t mid =
                kvb_hist_bucket_low(i) + (kvb_hist_bucket_high(i) - kvb_hist_bucket_low(i)) / 2;
            return mid < h->max ? mid : h->max;
        }
    }
    return h->max; /* unreachable when count matches the buckets */
}
