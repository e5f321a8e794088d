/*
 * fuzz_walfmt: arbitrary bytes read as a WAL segment and as snapshot chunks, the way
 * recovery reads them. Whatever the bytes, the checks must not read out of bounds or
 * trip an assertion, and a batch they accept must decode into records that lie inside
 * it. Every accepted batch is also re-encoded and must check again (round trip).
 */
#include "walfmt.h"

#include "kv_assert.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX (256u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX) {
        return 0;
    }
    uint64_t cap = walfmt_round_up(size);
    char *buf = calloc(1, cap ? cap : WALFMT_BLOCK);
    KV_ASSERT(buf != NULL);
    memcpy(buf, data, size);
    for (uint64_t off = 0; off + WALFMT_BLOCK <= cap; off += WALFMT_BLOCK) {
        struct walfmt_batch_info bi;
        const char *why = NULL;
        enum walfmt_scan s = walfmt_scan_batch(buf + off, cap - off, &bi, &why);
        uint64_t span = bi.span, seq = bi.seq;
        uint32_t count = bi.count;
        if (s == WALFMT_SCAN_BAD) {
            KV_ASSERT(why != NULL);
            continue;
        }
        if (s == WALFMT_SCAN_END) {
            continue;
        }
        KV_ASSERT(span % WALFMT_BLOCK == 0 && span <= cap - off);
        /* decode and re-encode every record into a fresh batch: it must check again */
        char *copy = calloc(1, span);
        KV_ASSERT(copy != NULL);
        uint64_t p = sizeof(struct walfmt_batch), q = p;
        for (uint32_t i = 0; i < count; i++) {
            struct walfmt_view v;
            walfmt_rec_decode(buf + off, &p, &v);
            KV_ASSERT(p <= span);
            KV_ASSERT(v.key >= buf + off && v.val + v.vlen <= buf + off + span);
            walfmt_rec_encode(copy + q, &v);
            q += walfmt_rec_size(&v);
        }
        struct walfmt_batch h;
        walfmt_batch_seal(&h, count, q - sizeof h, seq, bi.acked);
        memcpy(copy, &h, sizeof h);
        struct walfmt_batch_info b2;
        KV_ASSERT(walfmt_scan_batch(copy, span, &b2, &why) == WALFMT_SCAN_BATCH);
        KV_ASSERT(b2.span == span && b2.count == count && b2.seq == seq && b2.acked == bi.acked);
        free(copy);
        off += span - WALFMT_BLOCK;
    }
    /* the same bytes as snapshot headers */
    if (size >= sizeof(struct walfmt_chunk)) {
        struct walfmt_chunk c;
        memcpy(&c, data, sizeof c);
        (void)walfmt_chunk_ok(&c);
    }
    if (size >= sizeof(struct walfmt_snap)) {
        struct walfmt_snap sn;
        memcpy(&sn, data, sizeof sn);
        (void)walfmt_snap_ok(&sn);
    }
    free(buf);
    return 0;
}
