/*
 * latency: Redis's latency monitor (LATENCY LATEST / HISTORY / RESET / DOCTOR / GRAPH) and
 * per-command latency histograms (LATENCY HISTOGRAM).
 *
 * Monitor. With latency-monitor-threshold > 0 (milliseconds; 0, the default, turns it
 * off, as in Redis), an event that took at least that long is recorded under its name:
 * "command" (a command not flagged fast) and "fast-command". Each event keeps its last
 * LATENCY_SAMPLES samples, at most one per second (the largest of that second), and its
 * all-time maximum. One store for the server behind a mutex: only events over the
 * threshold reach it.
 *
 * Histograms. Every executed command counts in its statistics row's histogram on the
 * client's shard (one relaxed add; struct shard_stats.cmd_hist): buckets of powers of two
 * reported as Redis's HdrHistogram reports them (upper bounds 1, 2, 4, 8, 16, 33, 66, 132
 * ... microseconds), cumulative, only where the count grows.
 */
#ifndef KVD_LATENCY_H
#define KVD_LATENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LATENCY_SAMPLES    160 /* samples kept per event (Redis's LATENCY_TS_LEN) */
#define LATENCY_EVENTS_MAX 16  /* distinct event names */
#define LATENCY_BUCKETS    40  /* histogram buckets: up to 2^39 us (~6 days) */

struct cmd_ctx;

/* Records `ms` for `event` (a string literal) if it reaches the threshold. Any thread. */
void latency_add(const char *event, uint64_t ms);

/* The histogram bucket of a duration in microseconds. */
static inline unsigned latency_bucket(uint64_t us)
{
    /* bucket k holds values (in ns) up to HdrHistogram's highest equivalent of 2^(10+k)
     * ns with 2 significant digits: 2^(10+k) + 2^(3+k) - 1 */
    uint64_t ns = us * 1000;
    if (ns <= 1031) {
        return 0;
    }
    unsigned k = 64u - (unsigned)__builtin_clzll((ns - 1) >> 10); /* 2^(10+k) >= ns */
    if (ns <= (UINT64_C(1) << (9 + k)) + (UINT64_C(1) << (2 + k)) - 1) {
        k--; /* within bucket k-1's highest equivalent value */
    }
    return k < LATENCY_BUCKETS ? k : LATENCY_BUCKETS - 1;
}

/*
 * latency-tracking-info-percentiles: Redis's list ("50 99 99.9": at most
 * LATENCY_PERCENTILES_MAX values in [0, 100]); the setting holds how many there are.
 */
#define LATENCY_PERCENTILES_MAX 16
int64_t latency_percentiles_parse(const char *value, char *err, size_t errlen);
size_t latency_percentiles_format(int64_t n, char *buf, size_t cap);

/* INFO latencystats: the line of a command whose histogram h holds `total` durations,
 * with the setting's percentiles of them ("p50=1.031,p99=4.127,p99.9=8.255": the upper
 * bound of the bucket that holds each, in microseconds). */
struct kv_text;
void latency_info_line(struct kv_text *t, const char *name, uint64_t total,
                       const uint64_t h[LATENCY_BUCKETS]);

/* LATENCY <subcommand> ... (the client's shard). */
void cmd_latency(struct cmd_ctx *x);

#endif
