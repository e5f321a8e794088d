/*
 * kvc_buf: growable byte buffer (see kvc_buf.h).
 *
 * Capacity doubles from KVC_BUF_BYTES_MIN, clamped to `max`, so appending n bytes one
 * at a time costs O(n) copies. Invariants: len <= cap <= max; data is NULL iff cap is 0.
 * Single-threaded (kvcli has one thread).
 */
#include "kvc_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"

/* First allocation: one typical reply or request fits, and doubling starts from here. */
#define KVC_BUF_BYTES_MIN 4096

void kvc_buf_init(struct kvc_buf *b, size_t max)
{
    KV_ASSERT(b != NULL && max > 0);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void kvc_buf_deinit(struct kvc_buf *b)
{
    KV_ASSERT(b != NULL);
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int kvc_buf_reserve(struct kvc_buf *b, size_t extra)
{
    KV_ASSERT(b != NULL && b->len <= b->cap && b->cap <= b->max);
    if (extra <= b->cap - b->len) {
        return 0;
    }
    if (extra > b->max - b->len) {
        return KV_ELIMIT;
    }
    size_t need = b->len + extra;
    size_t cap = b->cap > 0 ? b->cap : KVC_BUF_BYTES_MIN;
    while (cap < need) {
        cap = cap > b->max / 2 ? b->max : cap * 2;
    }
    if (cap > b->max) {
        cap = b->max;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        fputs("kvcli: out of memory\n", stderr);
        exit(1);
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int kvc_buf_append(struct kvc_buf *b, const void *p, size_t n)
{
    int rc = kvc_buf_reserve(b, n);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
    return 0;
}

int kvc_buf_puts(struct kvc_buf *b, const char *s)
{
    KV_ASSERT(s != NULL);
    return kvc_buf_append(b, s, strlen(s));
}

int kvc_buf_printf(struct kvc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    KV_ASSERT(n >= 0);
    /* vsnprintf writes a NUL after the text: reserve it, then do not count it. */
    int rc = kvc_buf_reserve(b, (size_t)n + 1);
    if (rc != 0) {
        return rc;
    }
    va_start(ap, fmt);
    int m = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    KV_ASSERT(m == n);
    b->len += (size_t)n;
    return 0;
}

void kvc_buf_consume(struct kvc_buf *b, size_t n)
{
    KV_ASSERT(b != NULL && n <= b->len);
    if (n == 0) {
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
