/*
 * kv_bytes: equality of short byte strings (keys) without a call into the C library.
 *
 * Why: the key compares of the data path (a table entry's key against the request's,
 * the request's key against the one its turn prefetched) are 8 to 16 bytes for most keys.
 * glibc's memcmp for this CPU (its EVEX version) compares them with masked vector loads;
 * in `perf record -e cpu-clock:u` of kvd serving P1 GETs, 15% of the shard's user-space
 * samples sat on that load, and none on the same compare done as two overlapping 8-byte
 * words (docs/PERFORMANCE.md, 2026-11-27). Other lengths go to memcmp.
 */
#ifndef KV_BYTES_H
#define KV_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Whether the n bytes at a and at b are equal (n may be 0). */
static inline bool kv_bytes_eq(const void *a, const void *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        const unsigned char *x = a, *y = b;
        uint64_t x0, x1, y0, y1;
        memcpy(&x0, x, 8);
        memcpy(&y0, y, 8);
        memcpy(&x1, x + n - 8, 8);
        memcpy(&y1, y + n - 8, 8);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    return n == 0 || memcmp(a, b, n) == 0;
}

#endif
