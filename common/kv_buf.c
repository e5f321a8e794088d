/*
 * kv_buf: see kv_buf.h.
 */
#include "kv_buf.h"

#include "kv_assert.h"

#include <stdlib.h>
#include <string.h>

void kv_buf_put(struct kv_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return; /* (nothing to copy: b->p may still be NULL) */
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }
        b->p = realloc(b->p, cap);
        KV_ASSERT(b->p != NULL);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void kv_buf_free(struct kv_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
