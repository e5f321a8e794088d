/*
 * kv_tsc: a cheap monotonic nanosecond clock for measuring durations.
 *
 * Where the kernel itself keeps CLOCK_MONOTONIC on the TSC (clocksource "tsc": the
 * counter is invariant and synchronized), a read is one unserialized rdtsc scaled by a
 * factor measured against CLOCK_MONOTONIC; elsewhere it is CLOCK_MONOTONIC. The vDSO's
 * clock_gettime orders its rdtsc after every earlier load (it waits for outstanding
 * cache misses) and costs 2-3x as much: a command timed at both ends pays twice.
 *
 * One struct kv_tsc per thread, touched by that thread only. The scale is measured
 * between kv_tsc_init and the first kv_tsc_calibrate at least KV_TSC_WINDOW_NS later
 * (CLOCK_MONOTONIC until then), and re-anchored at each later kv_tsc_calibrate (call
 * it about once a second: the scale's error stays far below a microsecond between
 * calls). Reads never go backwards across a calibration.
 */
#ifndef KV_TSC_H
#define KV_TSC_H

#include <stdbool.h>
#include <stdint.h>

#include "kv_clock.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define KV_TSC_WINDOW_NS 50000000ull /* the shortest span the scale is measured over */

struct kv_tsc {
    bool on;       /* scaled TSC (else CLOCK_MONOTONIC) */
    uint64_t tsc0; /* anchor: TSC and its time in ns */
    uint64_t ns0;
    uint64_t mult;  /* ns per TSC tick, << 32 */
    uint64_t t_tsc; /* the start of the scale's measurement */
    uint64_t t_ns;
};

/* Whether the kernel's CLOCK_MONOTONIC runs on the TSC (read once per process; kv_tsc
 * then uses it too). */
bool kv_tsc_usable(void);

/* Starts the clock (CLOCK_MONOTONIC until the first calibration). `allow` false keeps it
 * on CLOCK_MONOTONIC for good. */
void kv_tsc_init(struct kv_tsc *c, bool allow);

/* Measures the scale (once KV_TSC_WINDOW_NS have passed since kv_tsc_init) and re-anchors
 * the clock on CLOCK_MONOTONIC. */
void kv_tsc_calibrate(struct kv_tsc *c);

/* The time of TSC value `tsc` on the scaled clock (c->on). */
static inline uint64_t kv_tsc_at(const struct kv_tsc *c, uint64_t tsc)
{
    return c->ns0 + (uint64_t)(((unsigned __int128)(tsc - c->tsc0) * c->mult) >> 32);
}

static inline uint64_t kv_tsc_ns(const struct kv_tsc *c)
{
#if defined(__x86_64__)
    if (c->on) {
        return kv_tsc_at(c, __rdtsc());
    }
#endif
    return kv_clock_mono_ns();
}

#endif
