/*
 * resp_out: the RESP2/RESP3 reply encoder and the per-client output chain it writes.
 *
 * A shard thread owns one resp_pool: fixed-size blocks taken from a caller-provided
 * allocator on demand, up to a byte budget, and recycled forever after (no malloc per
 * reply once warm). Each client owns a resp_out: a chain of blocks borrowed from the
 * pool, holding the bytes queued for that client. The resp_out_* encoders append one
 * reply element each, in the client's protocol version (2 or 3, after HELLO); a type
 * RESP2 lacks is encoded the way Redis 7 encodes it for RESP2 clients.
 *
 * Sending: resp_out_iov() describes the queued bytes as an iovec array for sendmsg();
 * the bytes it points at stay untouched until resp_out_consume() is told they were
 * sent (appending new replies meanwhile is safe: it only writes past them). Short
 * sends are fine: consume what the completion reported and build the iovec again.
 *
 * Failure is all-or-nothing per call, then sticky: a call that would exceed the
 * client's output limit (KV_ELIMIT, Redis's client-output-buffer-limit) or find the
 * pool exhausted (KV_ENOMEM) writes nothing, and every later call returns the same
 * error, so that a reply is never cut in the middle of the stream. The server then
 * closes the client (Redis does the same on its output limits).
 *
 * Thread: a pool and every resp_out borrowing from it belong to one thread.
 */
#ifndef RESP_OUT_H
#define RESP_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iovec;
struct resp_alloc;
struct resp_pool;
struct resp_block;

/* The chain of one client. Embedded in the caller's connection; fields are private. */
struct resp_out {
    struct resp_pool *pool;
    struct resp_block *head; /* oldest block: its bytes from head_off on are unsent */
    struct resp_block *tail; /* newest block */
    struct resp_block *wr;   /* block the next byte goes to (tail but while writing) */
    size_t head_off;
    size_t queued; /* bytes queued and not consumed */
    size_t limit;  /* most bytes that may be queued */
    int proto;     /* 2 or 3 */
    int err;       /* 0, or the sticky KV_ELIMIT / KV_ENOMEM */
};

/* Creates a pool of blocks of `block_bytes` (>= 64) each, holding at most `pool_bytes`
 * (rounded down to whole blocks, at least one), taking `prealloc_bytes` of them now.
 * The allocator is copied; its ctx must outlive the pool. Returns 0 or KV_ENOMEM. */
int resp_pool_create(struct resp_pool **out, const struct resp_alloc *a, size_t block_bytes,
                     size_t pool_bytes, size_t prealloc_bytes);

/* Frees the pool and its blocks. Every resp_out borrowing from it must be deinit'ed. */
void resp_pool_destroy(struct resp_pool *pool);

/* Blocks handed out to clients now; blocks allocated in total. */
size_t resp_pool_blocks_borrowed(const struct resp_pool *pool);
size_t resp_pool_blocks_allocated(const struct resp_pool *pool);
size_t resp_pool_block_bytes(const struct resp_pool *pool);

/* Prepares `o` (caller's memory) to queue at most `limit_bytes` for one client, in
 * RESP2. Borrows nothing yet. */
void resp_out_init(struct resp_out *o, struct resp_pool *pool, size_t limit_bytes);

/* Returns every block to the pool; queued bytes are dropped. */
void resp_out_deinit(struct resp_out *o);

/* A new limit for what follows (a setting changed): bytes already queued stay, even
 * past it; the next element that would pass it is refused. */
void resp_out_set_limit(struct resp_out *o, size_t limit_bytes);

/* Protocol version of the replies that follow: 2 or 3 (HELLO). */
void resp_out_set_proto(struct resp_out *o, int proto);
int resp_out_proto(const struct resp_out *o);

/* Bytes queued and not yet consumed (to compare with an output limit, or to know
 * whether a send is needed). */
size_t resp_out_queued_bytes(const struct resp_out *o);

/* The sticky error: 0, KV_ELIMIT or KV_ENOMEM. */
int resp_out_error(const struct resp_out *o);

/* Fills iov[0..iov_max) with the queued bytes in order; returns how many entries were
 * used (0 when nothing is queued). The memory stays valid and unchanged until those
 * bytes are consumed. */
int resp_out_iov(const struct resp_out *o, struct iovec *iov, int iov_max);

/* The first `n` queued bytes were sent: blocks wholly sent go back to the pool. */
void resp_out_consume(struct resp_out *o, size_t n);

/* ---- encoders: each appends one element and returns 0, KV_ELIMIT or KV_ENOMEM. ---- */

/* +text (RESP2 and RESP3). '\r' and '\n' in text become spaces. */
int resp_out_simple(struct resp_out *o, const char *text, size_t len);
/* -text: text holds the code, e.g. "ERR unknown command". '\r', '\n' become spaces. */
int resp_out_error_reply(struct resp_out *o, const char *text, size_t len);
/* :n */
int resp_out_int(struct resp_out *o, int64_t n);
/* $len data (binary safe). */
int resp_out_bulk(struct resp_out *o, const void *data, size_t len);
/* Null: "$-1" in RESP2, "_" in RESP3. */
int resp_out_null(struct resp_out *o);
/* Null array: "*-1" in RESP2, "_" in RESP3. */
int resp_out_null_array(struct resp_out *o);
/* Aggregate headers; the caller then writes the elements. */
int resp_out_array(struct resp_out *o, size_t n);
/* n key-value pairs: "%n" in RESP3, a flat array of 2n in RESP2. */
int resp_out_map(struct resp_out *o, size_t n);
/* "~n" in RESP3, an array in RESP2. */
int resp_out_set(struct resp_out *o, size_t n);
/* ">n" in RESP3 (out-of-band push), an array in RESP2. */
int resp_out_push(struct resp_out *o, size_t n);
/* ",d" in RESP3, a bulk in RESP2, formatted like Redis 7.0: %.17g, "inf", "-inf",
 * "nan" (for any NaN). */
int resp_out_double(struct resp_out *o, double d);
/* "#t"/"#f" in RESP3, ":1"/":0" in RESP2. */
int resp_out_bool(struct resp_out *o, bool b);
/* "(digits" in RESP3, a bulk in RESP2. The caller passes a valid integer text. */
int resp_out_bignum(struct resp_out *o, const char *digits, size_t len);
/* "=len fmt:text" in RESP3 (fmt is 3 bytes, e.g. "txt"), a bulk of text in RESP2. */
int resp_out_verbatim(struct resp_out *o, const char fmt[3], const void *text, size_t len);
/* Bytes already encoded (e.g. a canned reply), copied as they are. */
int resp_out_raw(struct resp_out *o, const void *bytes, size_t len);

#endif
