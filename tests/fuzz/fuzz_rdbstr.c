/*
 * libFuzzer target: rdbstr_restore on arbitrary payloads. Besides ASan/UBSan finding no
 * fault: a payload it accepts yields a value within the limit, and the footer of the
 * input decides acceptance (with the checksum recomputed over the input, about half the
 * runs get past it). A value that was accepted dumps and restores to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "rdbstr.h"

#define MAX_LEN (1u << 20)

static void check(const uint8_t *p, size_t n)
{
    const uint8_t *val = NULL;
    size_t len = 0, need = 0;
    enum rdbstr_result r = rdbstr_restore(p, n, MAX_LEN, NULL, 0, &val, &len, &need);
    if (r != RDBSTR_OK) {
        return;
    }
    KV_ASSERT(need <= MAX_LEN || need == 0);
    uint8_t *buf = NULL;
    if (need > 0) {
        buf = malloc(need);
        KV_ASSERT(buf != NULL);
        r = rdbstr_restore(p, n, MAX_LEN, buf, need, &val, &len, &need);
    }
    if (r == RDBSTR_OK) {
        KV_ASSERT(len <= MAX_LEN);
        uint8_t *again = malloc(RDBSTR_DUMP_MAX(len));
        KV_ASSERT(again != NULL);
        size_t m = rdbstr_dump(val, len, again);
        const uint8_t *v2 = NULL;
        size_t len2 = 0, need2 = 0;
        uint8_t small[24];
        enum rdbstr_result r2 = rdbstr_restore(again, m, MAX_LEN, NULL, 0, &v2, &len2, &need2);
        KV_ASSERT(r2 == RDBSTR_OK && need2 <= sizeof small);
        if (need2 > 0) {
            r2 = rdbstr_restore(again, m, MAX_LEN, small, sizeof small, &v2, &len2, &need2);
        }
        KV_ASSERT(r2 == RDBSTR_OK && len2 == len && (len == 0 || memcmp(v2, val, len) == 0));
        free(again);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    if (size >= 10 && size <= (1u << 16)) { /* the same bytes with a valid footer */
        uint8_t *p = malloc(size);
        KV_ASSERT(p != NULL);
        memcpy(p, data, size);
        p[size - 10] = (uint8_t)(p[size - 10] % (RDBSTR_VERSION + 1));
        p[size - 9] = 0;
        uint64_t crc = rdbstr_crc64(0, p, size - 8);
        for (int k = 0; k < 8; k++) {
            p[size - 8 + k] = (uint8_t)(crc >> (8 * k));
        }
        check(p, size);
        free(p);
    }
    return 0;
}
