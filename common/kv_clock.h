/*
 * kv_clock: the two clocks the project reads.
 *
 * kv_clock_mono_ns() is CLOCK_MONOTONIC, for durations and timers. kv_clock_real_ms()
 * is CLOCK_REALTIME in milliseconds since the epoch, for key expiry (Redis expiry
 * times are wall-clock). Both are vDSO calls, not syscalls. Pure modules (engine/,
 * cluster/raft) never call these: time is passed in by the caller.
 */
#ifndef KV_CLOCK_H
#define KV_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t kv_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t kv_clock_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
