/*
 * fuzz_resp: the RESP request parser (resp_parse) under arbitrary input.
 *
 * Input layout: byte 0 selects the settings (bit 0: pre-AUTH limits; bit 1: tiny limits,
 * so that the fuzzer reaches every limit with short inputs), byte 1 seeds the cuts; the
 * rest is the byte stream. Invariants checked, besides "no crash, no sanitizer report":
 *  - every argument view lies in the fed buffer or the parser's arena;
 *  - cutting the stream into pieces (random cuts, and every single byte apart for short
 *    inputs) yields exactly the commands, the outcome and the error of the unsplit parse
 *    (except that the query-buffer limit, which counts bytes held across cuts, may stop
 *    one of them earlier);
 *  - a failed parse carries a known error and the text Redis uses for it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "resp_parse_collect.h"

static void check_same(const struct collect *a, const struct collect *b)
{
    KV_ASSERT(b->bad_views == 0);
    if (a->err == RESP_PERR_QUERY_LIMIT || b->err == RESP_PERR_QUERY_LIMIT) {
        /* What the arena holds depends on the cuts (as Redis's query buffer depends on
         * its reads): one parse may stop there earlier, never differently. */
        const struct collect *s = a->len <= b->len ? a : b;
        const struct collect *l = a->len <= b->len ? b : a;
        KV_ASSERT(memcmp(s->out, l->out, s->len) == 0);
        KV_ASSERT(s->err == RESP_PERR_QUERY_LIMIT || s->len == l->len);
        return;
    }
    KV_ASSERT(a->rc == b->rc);
    KV_ASSERT(a->commands == b->commands);
    KV_ASSERT(a->len == b->len && memcmp(a->out, b->out, a->len) == 0);
    KV_ASSERT(a->err == b->err);
    KV_ASSERT(strcmp(a->err_text, b->err_text) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    bool auth = data[0] & 1;
    struct resp_parse_limits lim = resp_parse_limits_default();
    if (data[0] & 2) {
        lim.inline_bytes_max = 40;
        lim.bulk_bytes_max = 300;
        lim.mbulk_count_max = 20;
        lim.query_bytes_max = 200;
        lim.unauth_mbulk_count_max = 3;
        lim.unauth_bulk_bytes_max = 16;
    }
    uint32_t seed = data[1] * 2654435761u + (uint32_t)size;
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    struct collect ref;
    collect_run(&ref, in, n, NULL, 0, &lim, auth);
    KV_ASSERT(ref.bad_views == 0);
    KV_ASSERT(ref.rc == KV_EAGAIN || ref.rc == KV_EPROTO);
    KV_ASSERT((ref.rc == KV_EPROTO) == (ref.err != RESP_PERR_NONE));
    if (ref.rc == KV_EPROTO && ref.err != RESP_PERR_QUERY_LIMIT) {
        KV_ASSERT(strncmp(ref.err_text, "ERR Protocol error: ", 20) == 0);
    }

    size_t *cuts = malloc(sizeof(size_t) * (n + 1));
    KV_ASSERT(cuts != NULL);
    for (int round = 0; round < 4 && n >= 2; round++) {
        size_t m = 0;
        for (size_t i = 1; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 8 == 0) {
                cuts[m++] = i;
            }
        }
        struct collect c;
        collect_run(&c, in, n, cuts, m, &lim, auth);
        check_same(&ref, &c);
        collect_free(&c);
    }
    if (n >= 2 && n <= 512) {
        for (size_t i = 1; i < n; i++) {
            cuts[i - 1] = i;
        }
        struct collect c;
        collect_run(&c, in, n, cuts, n - 1, &lim, auth);
        check_same(&ref, &c);
        collect_free(&c);
    }
    free(cuts);
    collect_free(&ref);
    return 0;
}
