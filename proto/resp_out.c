/*
 * resp_out: the reply encoder, the per-client output chain and the per-thread block
 * pool (see resp_out.h for the contract).
 *
 * Why blocks: replies are written where they will be sent from, so a reply is copied
 * once (into its block) and never again; a chain of fixed-size blocks lets a large bulk
 * span several blocks without a large contiguous allocation, and lets sent blocks go
 * back to the pool one by one while the rest of the chain is still in flight.
 *
 *     head                                  wr == tail
 *     [ sent | queued .......... ] -> [ queued ...... | free ]
 *       ^head_off                                       ^used
 *
 * Each encoder computes its element's exact size, reserves it (checks the client's
 * limit and the pool, borrows every block it will need, links them after the tail),
 * then copies: so a call either writes its whole element or nothing, and the stream
 * never holds half a reply.
 *
 * Invariants: queued == bytes in the chain after head_off; every block before wr is
 * full or the head; blocks after wr are empty only while an encoder is writing; a
 * pool hands out at most blocks_max blocks.
 *
 * Thread: the pool and its clients' chains belong to one shard thread.
 */
#include "resp_out.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "kv_num.h"
#include "resp_alloc.h"

/* Longest header or scalar this encoder writes: a type byte, 20 digits and a sign,
 * or a %.17g double (at most 24 bytes), plus CRLF. */
#define RESP_OUT_SCALAR_MAX 48
#define RESP_OUT_BLOCK_MIN  64

struct resp_block {
    struct resp_block *next;
    size_t used;
    char data[];
};

struct resp_pool {
    struct resp_alloc alloc;
    size_t block_bytes; /* data bytes per block */
    size_t blocks_max;
    size_t blocks_allocated;
    size_t blocks_free;
    struct resp_block *free;
};

/* ---- pool ------------------------------------------------------------------------- */

static struct resp_block *pool_new_block(struct resp_pool *pool)
{
    struct resp_block *b =
        pool->alloc.alloc(pool->alloc.ctx, sizeof(struct resp_block) + pool->block_bytes);
    if (b != NULL) {
        pool->blocks_allocated++;
    }
    return b;
}

static void pool_return(struct resp_pool *pool, struct resp_block *b)
{
    b->next = pool->free;
    pool->free = b;
    pool->blocks_free++;
}

static struct resp_block *pool_borrow(struct resp_pool *pool)
{
    struct resp_block *b = pool->free;
    if (b != NULL) {
        pool->free = b->next;
        pool->blocks_free--;
    } else if (pool->blocks_allocated < pool->blocks_max) {
        b = pool_new_block(pool);
        if (b == NULL) {
            return NULL;
        }
    } else {
        return NULL;
    }
    b->next = NULL;
    b->used = 0;
    return b;
}

int resp_pool_create(struct resp_pool **out, const struct resp_alloc *a, size_t block_bytes,
                     size_t pool_bytes, size_t prealloc_bytes)
{
    KV_ASSERT(out != NULL && a != NULL);
    KV_ASSERT(block_bytes >= RESP_OUT_BLOCK_MIN);
    struct resp_pool *pool = a->alloc(a->ctx, sizeof *pool);
    if (pool == NULL) {
        return KV_ENOMEM;
    }
    memset(pool, 0, sizeof *pool);
    pool->alloc = *a;
    pool->block_bytes = block_bytes;
    pool->blocks_max = pool_bytes / block_bytes > 0 ? pool_bytes / block_bytes : 1;
    size_t pre = prealloc_bytes / block_bytes;
    if (pre > pool->blocks_max) {
        pre = pool->blocks_max;
    }
    for (size_t i = 0; i < pre; i++) {
        struct resp_block *b = pool_new_block(pool);
        if (b == NULL) {
            resp_pool_destroy(pool);
            return KV_ENOMEM;
        }
        pool_return(pool, b);
    }
    *out = pool;
    return 0;
}

void resp_pool_destroy(struct resp_pool *pool)
{
    if (pool == NULL) {
        return;
    }
    /* A borrowed block would be leaked (and later written): a caller bug. */
    KV_ASSERT(pool->blocks_free == pool->blocks_allocated);
    while (pool->free != NULL) {
        struct resp_block *b = pool->free;
        pool->free = b->next;
        pool->alloc.free(pool->alloc.ctx, b, sizeof(struct resp_block) + pool->block_bytes);
    }
    struct resp_alloc a = pool->alloc;
    a.free(a.ctx, pool, sizeof *pool);
}

size_t resp_pool_blocks_borrowed(const struct resp_pool *pool)
{
    return pool->blocks_allocated - pool->blocks_free;
}

size_t resp_pool_blocks_allocated(const struct resp_pool *pool)
{
    return pool->blocks_allocated;
}

size_t resp_pool_block_bytes(const struct resp_pool *pool)
{
    return pool->block_bytes;
}

/* ---- chain ------------------------------------------------------------------------ */

void resp_out_init(struct resp_out *o, struct resp_pool *pool, size_t limit_bytes)
{
    KV_ASSERT(o != NULL && pool != NULL);
    memset(o, 0, sizeof *o);
    o->pool = pool;
    o->limit = limit_bytes;
    o->proto = 2;
}

void resp_out_deinit(struct resp_out *o)
{
    KV_ASSERT(o != NULL);
    while (o->head != NULL) {
        struct resp_block *b = o->head;
        o->head = b->next;
        pool_return(o->pool, b);
    }
    o->tail = o->wr = NULL;
    o->queued = 0;
    o->head_off = 0;
}

void resp_out_set_proto(struct resp_out *o, int proto)
{
    KV_ASSERT(proto == 2 || proto == 3);
    o->proto = proto;
}

int resp_out_proto(const struct resp_out *o)
{
    return o->proto;
}

void resp_out_set_limit(struct resp_out *o, size_t limit_bytes)
{
    KV_ASSERT(limit_bytes > 0);
    o->limit = limit_bytes;
}

size_t resp_out_queued_bytes(const struct resp_out *o)
{
    return o->queued;
}

int resp_out_error(const struct resp_out *o)
{
    return o->err;
}

static void chain_link(struct resp_out *o, struct resp_block *b)
{
    if (o->tail == NULL) {
        o->head = o->tail = o->wr = b;
        o->head_off = 0;
    } else {
        o->tail->next = b;
        o->tail = b;
    }
}

/* Makes room for exactly n more bytes, or fails with nothing changed (sticky). */
static int reserve(struct resp_out *o, size_t n)
{
    if (o->err != 0) {
        return o->err;
    }
    if (n > o->limit - o->queued || o->queued > o->limit) {
        o->err = KV_ELIMIT;
        return o->err;
    }
    size_t bb = o->pool->block_bytes;
    size_t room = o->wr != NULL ? bb - o->wr->used : 0;
    if (n <= room) {
        return 0;
    }
    size_t blocks = (n - room + bb - 1) / bb;
    struct resp_pool *pool = o->pool;
    if (blocks > pool->blocks_free + (pool->blocks_max - pool->blocks_allocated)) {
        o->err = KV_ENOMEM;
        return o->err;
    }
    struct resp_block *old_tail = o->tail;
    for (size_t i = 0; i < blocks; i++) {
        struct resp_block *b = pool_borrow(pool);
        if (b == NULL) {
            /* The underlying allocator failed: undo the links made above. */
            struct resp_block *x = old_tail != NULL ? old_tail->next : o->head;
            while (x != NULL) {
                struct resp_block *next = x->next;
                pool_return(pool, x);
                x = next;
            }
            if (old_tail != NULL) {
                old_tail->next = NULL;
            } else {
                o->head = o->wr = NULL;
            }
            o->tail = old_tail;
            o->err = KV_ENOMEM;
            return o->err;
        }
        chain_link(o, b);
    }
    if (o->wr->used == bb) {
        o->wr = o->wr->next;
    }
    return 0;
}

/* Copies n reserved bytes; with `clean`, '\r' and '\n' become spaces. */
static void put(struct resp_out *o, const void *src, size_t n, bool clean)
{
    const char *s = src;
    size_t bb = o->pool->block_bytes;
    while (n > 0) {
        struct resp_block *b = o->wr;
        KV_ASSERT(b != NULL);
        size_t k = bb - b->used;
        if (k > n) {
            k = n;
        }
        char *d = b->data + b->used;
        memcpy(d, s, k);
        if (clean) {
            for (size_t i = 0; i < k; i++) {
                if (d[i] == '\r' || d[i] == '\n') {
                    d[i] = ' ';
                }
            }
        }
        b->used += k;
        o->queued += k;
        s += k;
        n -= k;
        if (b->used == bb && b->next != NULL) {
            o->wr = b->next;
        }
    }
}

int resp_out_iov(const struct resp_out *o, struct iovec *iov, int iov_max)
{
    KV_ASSERT(iov_max >= 0);
    int n = 0;
    size_t off = o->head_off;
    for (struct resp_block *b = o->head; b != NULL && n < iov_max; b = b->next) {
        if (b->used > off) {
            iov[n].iov_base = b->data + off;
            iov[n].iov_len = b->used - off;
            n++;
        }
        off = 0;
    }
    return n;
}

void resp_out_consume(struct resp_out *o, size_t n)
{
    KV_ASSERT(n <= o->queued);
    o->queued -= n;
    for (;;) {
        struct resp_block *b = o->head;
        if (b == NULL) {
            KV_ASSERT(n == 0);
            return;
        }
        size_t avail = b->used - o->head_off;
        if (n < avail) {
            o->head_off += n;
            return;
        }
        /* Wholly sent: back to the pool. Only the newest block can have room left. */
        KV_ASSERT(b != o->wr || b == o->tail);
        n -= avail;
        o->head = b->next;
        o->head_off = 0;
        if (b == o->tail) {
            o->tail = o->wr = NULL;
        }
        pool_return(o->pool, b);
    }
}

/* ---- encoders --------------------------------------------------------------------- */

/* "<type><n>\r\n" into dst; returns its length. */
static size_t fmt_header(char *dst, char type, int64_t n)
{
    size_t k = 0;
    dst[k++] = type;
    if (n < 0) {
        dst[k++] = '-';
        k += kv_fmt_u64(dst + k, (uint64_t)0 - (uint64_t)n);
    } else {
        k += kv_fmt_u64(dst + k, (uint64_t)n);
    }
    dst[k++] = '\r';
    dst[k++] = '\n';
    return k;
}

/* hdr, then body (optionally cleaned), then trail, into room reserve() has made. */
static int emit_reserved(struct resp_out *o, const char *hdr, size_t hlen, const void *body,
                         size_t blen, bool clean, const char *trail, size_t tlen)
{
    size_t total = hlen + blen + tlen;
    struct resp_block *b = o->wr;
    if (b != NULL && o->pool->block_bytes - b->used >= total) {
        /* The common case: the element fits in the block being written. */
        char *d = b->data + b->used;
        if (hlen > 0) {
            memcpy(d, hdr, hlen);
        }
        if (blen > 0) {
            memcpy(d + hlen, body, blen);
        }
        for (size_t i = 0; clean && i < blen; i++) {
            if (d[hlen + i] == '\r' || d[hlen + i] == '\n') {
                d[hlen + i] = ' ';
            }
        }
        if (tlen > 0) {
            memcpy(d + hlen + blen, trail, tlen);
        }
        b->used += total;
        o->queued += total;
        return 0;
    }
    put(o, hdr, hlen, false); /* (across blocks: reserve linked what it takes) */
    put(o, body, blen, clean);
    put(o, trail, tlen, false);
    return 0;
}

/* hdr, then body (optionally cleaned), then trail: all or nothing. */
static int emit(struct resp_out *o, const char *hdr, size_t hlen, const void *body, size_t blen,
                bool clean, const char *trail, size_t tlen)
{
    int rc = reserve(o, hlen + blen + tlen);
    return rc != 0 ? rc : emit_reserved(o, hdr, hlen, body, blen, clean, trail, tlen);
}

static int emit_header(struct resp_out *o, char type, int64_t n)
{
    char h[RESP_OUT_SCALAR_MAX];
    size_t k = fmt_header(h, type, n);
    return emit(o, h, k, NULL, 0, false, NULL, 0);
}

int resp_out_simple(struct resp_out *o, const char *text, size_t len)
{
    return emit(o, "+", 1, text, len, true, "\r\n", 2);
}

int resp_out_error_reply(struct resp_out *o, const char *text, size_t len)
{
    return emit(o, "-", 1, text, len, true, "\r\n", 2);
}

int resp_out_int(struct resp_out *o, int64_t n)
{
    return emit_header(o, ':', n);
}

/* Bulk replies up to this length take resp_out_bulk's direct path. */
#define SMALL_BULK_MAX 9999u

int resp_out_bulk(struct resp_out *o, const void *data, size_t len)
{
    KV_ASSERT(data != NULL || len == 0);
    if (KV_UNLIKELY(len > SMALL_BULK_MAX)) {
        char h[RESP_OUT_SCALAR_MAX];
        size_t k = fmt_header(h, '$', (int64_t)len);
        return emit(o, h, k, data, len, false, "\r\n", 2);
    }
    /* The common reply (a GET's): "$<len>\r\n<data>\r\n" written in place, the length's
     * digits straight into the block, one copy of the data. */
    size_t digits = len < 10 ? 1 : len < 100 ? 2 : len < 1000 ? 3 : 4;
    size_t total = 1 + digits + 2 + len + 2;
    int rc = reserve(o, total);
    if (rc != 0) {
        return rc;
    }
    struct resp_block *b = o->wr;
    if (b == NULL || o->pool->block_bytes - b->used < total) {
        char h[RESP_OUT_SCALAR_MAX];
        size_t k = fmt_header(h, '$', (int64_t)len);
        return emit_reserved(o, h, k, data, len, false, "\r\n", 2);
    }
    char *d = b->data + b->used;
    d[0] = '$';
    size_t k = kv_fmt_u64(d + 1, len);
    KV_DASSERT(k == digits);
    d += 1 + k;
    d[0] = '\r';
    d[1] = '\n';
    if (len > 0) {
        memcpy(d + 2, data, len);
    }
    d[2 + len] = '\r';
    d[3 + len] = '\n';
    b->used += total;
    o->queued += total;
    return 0;
}

int resp_out_null(struct resp_out *o)
{
    return o->proto == 3 ? emit(o, "_\r\n", 3, NULL, 0, false, NULL, 0)
                         : emit(o, "$-1\r\n", 5, NULL, 0, false, NULL, 0);
}

int resp_out_null_array(struct resp_out *o)
{
    return o->proto == 3 ? emit(o, "_\r\n", 3, NULL, 0, false, NULL, 0)
                         : emit(o, "*-1\r\n", 5, NULL, 0, false, NULL, 0);
}

int resp_out_array(struct resp_out *o, size_t n)
{
    KV_ASSERT(n <= INT64_MAX);
    return emit_header(o, '*', (int64_t)n);
}

int resp_out_map(struct resp_out *o, size_t n)
{
    KV_ASSERT(n <= INT64_MAX / 2);
    return o->proto == 3 ? emit_header(o, '%', (int64_t)n) : emit_header(o, '*', (int64_t)n * 2);
}

int resp_out_set(struct resp_out *o, size_t n)
{
    KV_ASSERT(n <= INT64_MAX);
    return emit_header(o, o->proto == 3 ? '~' : '*', (int64_t)n);
}

int resp_out_push(struct resp_out *o, size_t n)
{
    KV_ASSERT(n <= INT64_MAX);
    return emit_header(o, o->proto == 3 ? '>' : '*', (int64_t)n);
}

int resp_out_double(struct resp_out *o, double d)
{
    char num[RESP_OUT_SCALAR_MAX];
    int len;
    if (isnan(d)) {
        len = snprintf(num, sizeof num, "nan");
    } else if (isinf(d)) {
        len = snprintf(num, sizeof num, "%s", d > 0 ? "inf" : "-inf");
    } else {
        len = snprintf(num, sizeof num, "%.17g", d);
    }
    KV_ASSERT(len > 0 && (size_t)len < sizeof num);
    if (o->proto == 3) {
        return emit(o, ",", 1, num, (size_t)len, false, "\r\n", 2);
    }
    return resp_out_bulk(o, num, (size_t)len);
}

int resp_out_bool(struct resp_out *o, bool b)
{
    if (o->proto == 3) {
        return emit(o, b ? "#t\r\n" : "#f\r\n", 4, NULL, 0, false, NULL, 0);
    }
    return emit(o, b ? ":1\r\n" : ":0\r\n", 4, NULL, 0, false, NULL, 0);
}

int resp_out_bignum(struct resp_out *o, const char *digits, size_t len)
{
    if (o->proto == 3) {
        return emit(o, "(", 1, digits, len, true, "\r\n", 2);
    }
    return resp_out_bulk(o, digits, len);
}

int resp_out_verbatim(struct resp_out *o, const char fmt[3], const void *text, size_t len)
{
    KV_ASSERT(fmt != NULL);
    if (o->proto != 3) {
        return resp_out_bulk(o, text, len);
    }
    char h[RESP_OUT_SCALAR_MAX];
    size_t k = fmt_header(h, '=', (int64_t)len + 4);
    memcpy(h + k, fmt, 3);
    h[k + 3] = ':';
    return emit(o, h, k + 4, text, len, false, "\r\n", 2);
}

int resp_out_raw(struct resp_out *o, const void *bytes, size_t len)
{
    return emit(o, NULL, 0, bytes, len, false, NULL, 0);
}
