/*
 * kv_text: printf into a fixed buffer, appending; text past the capacity is cut (the
 * buffer stays NUL-terminated). For the multi-line texts of INFO and LATENCY.
 */
#ifndef KV_TEXT_H
#define KV_TEXT_H

#include <stddef.h>

struct kv_text {
    char *p;    /* cap bytes, owned by the caller */
    size_t len; /* bytes written, below cap */
    size_t cap;
};

void kv_text_add(struct kv_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
