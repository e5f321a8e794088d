/*
 * cmd_hll: PFADD, PFCOUNT, PFMERGE and PFDEBUG over HyperLogLog string values
 * (engine/hll.h: Redis's format, so the replies and the bytes are Redis's).
 *
 * PFADD runs on its key's shard. PFCOUNT and PFMERGE are SAME commands: on the one
 * shard owning all their keys they run here; across shards conn.c reads the values
 * from their shards and calls cmd_pf_gather / cmd_pfmerge_result, then writes
 * PFMERGE's destination on its own shard. A dense value is changed in place (its
 * length never changes); a sparse one, which may grow or turn dense, in a copy sized by
 * hll_cap() from the shard's heap, then written back with tbl_modify (expiry kept, as
 * Redis changes the string in place).
 */
#include <string.h>

#include "cmd.h"
#include "hll.h"
#include "kvd_settings.h"
#include "reply.h"
#include "server.h"
#include "tbl.h"

#define E_NOT_HLL "WRONGTYPE Key is not a valid HyperLogLog string value."
#define E_CORRUPT "INVALIDOBJ Corrupted HLL object detected"
#define E_OOM     "OOM command not allowed when used memory > 'maxmemory'."

static size_t sparse_max(void)
{
    return (size_t)KV_CONF_GET(kvd_settings.hll_sparse_max_bytes);
}

/* A working copy of a value (or a new empty HLL when v is NULL), with room to change. */
static uint8_t *work_copy(mi_heap_t *heap, const uint8_t *v, size_t len, size_t *wlen)
{
    size_t n = v != NULL ? len : HLL_EMPTY_BYTES;
    uint8_t *w = mi_heap_malloc(heap, hll_cap(n));
    if (w == NULL) {
        return NULL;
    }
    if (v != NULL) {
        memcpy(w, v, len);
    } else {
        hll_init(w);
    }
    *wlen = n;
    return w;
}

/* Writes bytes w (len) as key's value, its expiry kept (made when missing), notified
 * as `event` (NULL: not); false after replying OOM. */
static bool write_back(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, const uint8_t *w,
                       size_t len, const char *event)
{
    struct tbl_mod m;
    if (tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, len, TBL_RAW | TBL_RAW_NEW,
                   &m) != 0) {
        reply_error(x->out, E_OOM);
        return false;
    }
    memcpy(m.val, w, len);
    cmd_log_key(x, key, h);
    if (event != NULL) { /* (PFDEBUG's change of encoding: none, as in Redis) */
        cmd_notify_mod(x, &m, event, key);
    }
    return true;
}

/* The value of entry e if it is a HyperLogLog; NULL after replying the error if not. */
static const uint8_t *hll_of(struct cmd_ctx *x, const struct tbl_entry *e, size_t *len)
{
    const uint8_t *v = (const uint8_t *)tbl_entry_val(e, len);
    if (!hll_valid(v, *len)) {
        reply_error(x->out, E_NOT_HLL);
        return NULL;
    }
    return v;
}

/* PFADD to a dense value: in place (it never changes length), no working copy. */
static void pfadd_dense(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, size_t len)
{
    struct tbl_mod m;
    if (tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, len, TBL_RAW | TBL_XX, &m) !=
        0) {
        reply_error(x->out, E_OOM);
        return;
    }
    uint8_t *v = (uint8_t *)m.val;
    bool updated = false;
    for (size_t i = 2; i < x->argc; i++) {
        updated |= hll_add(v, &len, len, x->argv[i].ptr, x->argv[i].len, sparse_max()) == 1;
    }
    if (updated) {
        hll_cache_invalidate(v);
        cmd_log_key(x, key, h);
        cmd_notify_mod(x, &m, "pfadd", key);
    }
    reply_int(x->out, updated ? 1 : 0);
}

void cmd_pfadd(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    size_t len = 0;
    const uint8_t *v = NULL;
    if (e != NULL && (v = hll_of(x, e, &len)) == NULL) {
        return;
    }
    if (v != NULL && hll_is_dense(v)) {
        pfadd_dense(x, key, h, len);
        return;
    }
    size_t wlen;
    uint8_t *w = work_copy(x->sh->heap, v, len, &wlen);
    if (w == NULL) {
        reply_error(x->out, E_OOM);
        return;
    }
    bool updated = v == NULL;
    size_t cap = hll_cap(wlen);
    for (size_t i = 2; i < x->argc; i++) {
        int rc = hll_add(w, &wlen, cap, x->argv[i].ptr, x->argv[i].len, sparse_max());
        if (rc < 0) {
            reply_error(x->out, E_CORRUPT);
            mi_free(w);
            return;
        }
        updated |= rc == 1;
    }
    if (updated) {
        hll_cache_invalidate(w);
        if (!write_back(x, key, h, w, wlen, "pfadd")) {
            mi_free(w);
            return;
        }
    }
    mi_free(w);
    reply_int(x->out, updated ? 1 : 0);
}

bool cmd_pf_gather(struct resp_out *out, const struct cmd_bitop_src *src, size_t n, uint8_t *regs,
                   bool *dense)
{
    memset(regs, 0, HLL_REGISTERS);
    *dense = false;
    for (size_t i = 0; i < n; i++) {
        if (src[i].p == NULL) {
            continue; /* no key: an empty HLL */
        }
        if (!hll_valid(src[i].p, src[i].len)) {
            reply_error(out, E_NOT_HLL);
            return false;
        }
        *dense |= hll_is_dense(src[i].p);
        if (hll_merge(regs, src[i].p, src[i].len) != 0) {
            reply_error(out, E_CORRUPT);
            return false;
        }
    }
    return true;
}

uint8_t *cmd_pfmerge_result(mi_heap_t *heap, struct resp_out *out, const uint8_t *cur, size_t len,
                            const uint8_t *regs, bool dense, size_t *res_len)
{
    size_t wlen;
    uint8_t *w = work_copy(heap, cur, len, &wlen);
    if (w == NULL) {
        reply_error(out, E_OOM);
        return NULL;
    }
    size_t cap = hll_cap(wlen);
    if (dense && hll_to_dense(w, &wlen, cap) != 0) {
        reply_error(out, E_CORRUPT);
        mi_free(w);
        return NULL;
    }
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        if (regs[i] != 0 && hll_set(w, &wlen, cap, i, regs[i], sparse_max()) < 0) {
            reply_error(out, E_CORRUPT);
            mi_free(w);
            return NULL;
        }
    }
    hll_cache_invalidate(w);
    *res_len = wlen;
    return w;
}

/* The keys' values, read on this shard (NULL: no key). */
static struct cmd_bitop_src *local_values(struct cmd_ctx *x, size_t first)
{
    size_t n = x->argc - first;
    struct cmd_bitop_src *src = mi_heap_zalloc(x->sh->heap, n * sizeof *src);
    if (src == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct resp_arg *k = &x->argv[first + i];
        const struct tbl_entry *e = cmd_lookup_read(x, k, cmd_key_hash(k));
        src[i].p = e != NULL ? (const unsigned char *)tbl_entry_val(e, &src[i].len) : NULL;
    }
    return src;
}

/* PFCOUNT of one key: the cached estimate, or a new one stored in the value. */
static void pfcount_one(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_read(x, key, h);
    if (e == NULL) {
        reply_int(x->out, 0);
        return;
    }
    size_t len;
    const uint8_t *v = hll_of(x, e, &len);
    if (v == NULL) {
        return;
    }
    uint64_t card;
    if (hll_cached(v, &card)) {
        reply_int(x->out, (int64_t)card);
        return;
    }
    bool invalid = false;
    card = hll_count(v, len, &invalid);
    if (invalid) {
        reply_error(x->out, E_CORRUPT);
        return;
    }
    /* The estimate is kept in the value, as Redis keeps it (and logs the change). */
    struct tbl_mod m;
    if (tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, len, TBL_RAW | TBL_XX, &m) ==
        0) {
        hll_cache_set((uint8_t *)m.val, card);
        cmd_log_range(x, key, h, 8, 8);
    }
    reply_int(x->out, (int64_t)card);
}

/* The keys argv[1..] read on this shard and merged into regs (cmd_pf_gather); their
 * values (the caller's to mi_free), or NULL after replying the error. */
static struct cmd_bitop_src *local_gather(struct cmd_ctx *x, uint8_t *regs, bool *dense)
{
    struct cmd_bitop_src *src = local_values(x, 1);
    if (src == NULL) {
        reply_error(x->out, E_OOM);
        return NULL;
    }
    if (!cmd_pf_gather(x->out, src, x->argc - 1, regs, dense)) {
        mi_free(src);
        return NULL;
    }
    return src;
}

void cmd_pfcount(struct cmd_ctx *x)
{
    if (x->argc == 2) {
        pfcount_one(x);
        return;
    }
    uint8_t regs[HLL_REGISTERS];
    bool dense;
    struct cmd_bitop_src *src = local_gather(x, regs, &dense);
    if (src != NULL) {
        reply_int(x->out, (int64_t)hll_count_regs(regs));
        mi_free(src);
    }
}

void cmd_pfmerge(struct cmd_ctx *x)
{
    uint8_t regs[HLL_REGISTERS];
    bool dense;
    struct cmd_bitop_src *src = local_gather(x, regs, &dense); /* (the destination is a source) */
    if (src == NULL) {
        return;
    }
    size_t len;
    uint8_t *w = cmd_pfmerge_result(x->sh->heap, x->out, src[0].p, src[0].len, regs, dense, &len);
    mi_free(src);
    if (w == NULL) {
        return;
    }
    const struct resp_arg *key = &x->argv[1];
    if (write_back(x, key, cmd_key_hash(key), w, len, "pfadd")) {
        reply_ok(x->out);
    }
    mi_free(w);
}

/* PFDEBUG GETREG|DECODE|ENCODING|TODENSE key, as Redis's: GETREG and TODENSE make a
 * sparse value dense (a change, logged). */
void cmd_pfdebug(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1], *key = &x->argv[2];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    if (e == NULL) {
        reply_error(x->out, "ERR The specified key does not exist");
        return;
    }
    size_t len;
    const uint8_t *v = hll_of(x, e, &len);
    if (v == NULL) {
        return;
    }
    bool getreg = cmd_arg_is(sub, "getreg"), todense = cmd_arg_is(sub, "todense");
    if (getreg || todense) {
        uint8_t *w = NULL; /* the value made dense, written back */
        if (!hll_is_dense(v)) {
            size_t wlen;
            w = work_copy(x->sh->heap, v, len, &wlen);
            if (w == NULL || hll_to_dense(w, &wlen, hll_cap(wlen)) != 0) {
                reply_error(x->out, w == NULL ? E_OOM : E_CORRUPT);
                mi_free(w);
                return;
            }
            if (!write_back(x, key, h, w, wlen, NULL)) {
                mi_free(w);
                return;
            }
            v = w;
            len = wlen;
        }
        if (todense) {
            reply_int(x->out, w != NULL ? 1 : 0);
        } else {
            reply_array(x->out, HLL_REGISTERS);
            for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
                reply_int(x->out, hll_register(v, len, i));
            }
        }
        mi_free(w);
    } else if (cmd_arg_is(sub, "encoding")) {
        reply_simple(x->out, hll_is_dense(v) ? "dense" : "sparse");
    } else if (cmd_arg_is(sub, "decode")) {
        if (hll_is_dense(v)) {
            reply_error(x->out, "ERR HLL encoding is not sparse");
            return;
        }
        size_t cap = (len - HLL_HDR_BYTES) * 8 + 1; /* (hll_decode's bound) */
        char *text = mi_heap_malloc(x->sh->heap, cap);
        if (text == NULL) {
            reply_error(x->out, E_OOM);
            return;
        }
        reply_bulk(x->out, text, hll_decode(v, len, text, cap));
        mi_free(text);
    } else {
        reply_error(x->out, "ERR Unknown PFDEBUG subcommand '%.*s'", (int)sub->len, sub->ptr);
    }
}

/* PFSELFTEST: the register layout and the sparse list against plain arrays, as Redis's
 * self test checks its own (random registers; random elements added to a sparse and a
 * dense value alike, which must then hold the same registers and estimate). */
void cmd_pfselftest(struct cmd_ctx *x)
{
    uint8_t *scratch = mi_heap_malloc(x->sh->heap, HLL_SELFTEST_SCRATCH);
    if (scratch == NULL) {
        reply_error(x->out, E_OOM);
        return;
    }
    const char *fail = hll_selftest(scratch, (uint64_t)x->now_ms);
    mi_free(scratch);
    if (fail != NULL) {
        reply_error(x->out, "TESTFAILED %s", fail);
        return;
    }
    reply_ok(x->out);
}
