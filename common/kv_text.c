/*
 * kv_text.c: see kv_text.h.
 */
#include "kv_text.h"

#include <stdarg.h>
#include <stdio.h>

void kv_text_add(struct kv_text *t, const char *fmt, ...)
{
    if (t->len + 1 >= t->cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (k > 0) {
        t->len += (size_t)k < t->cap - t->len ? (size_t)k : t->cap - t->len - 1;
    }
}
