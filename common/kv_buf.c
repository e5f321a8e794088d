/*
 * kv_buf: see kv_buf.h.
 */
#include "kv_buf.h"

#include "kv_assert.h"

#include <ctype.h>
#include <stdio.h>
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

void kv_buf_put_str(struct kv_buf *b, const char *s)
{
    kv_buf_put(b, s, strlen(s));
}

char *kv_buf_cstr(struct kv_buf *b)
{
    kv_buf_put(b, "", 1); /* room for the NUL, and the NUL */
    b->len--;
    return b->p;
}

void kv_buf_put_repr(struct kv_buf *b, const char *s, size_t n)
{
    static const char from[] = "\\\"\n\r\t\a\b", to[] = "\\\"nrtab";
    kv_buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *e = ch != 0 ? strchr(from, ch) : NULL;
        char esc[8];
        if (e != NULL) {
            esc[0] = '\\';
            esc[1] = to[e - from];
            kv_buf_put(b, esc, 2);
        } else if (isprint(ch)) {
            kv_buf_put(b, &ch, 1);
        } else {
            snprintf(esc, sizeof esc, "\\x%02x", ch);
            kv_buf_put(b, esc, 4);
        }
    }
    kv_buf_put(b, "\"", 1);
}

void kv_buf_free(struct kv_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
