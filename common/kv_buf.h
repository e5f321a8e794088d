/*
 * kv_buf: a growable byte buffer on the C heap (records and lines built off the request
 * path: invalidation records, MONITOR lines, argument lines). The caller owns the struct; zero it
 * to start; kv_buf_free gives the memory back. Out of memory aborts.
 */
#ifndef KV_BUF_H
#define KV_BUF_H

#include <stddef.h>

struct kv_buf {
    char *p;
    size_t len, cap;
};

/* Appends n bytes (doubling the capacity as needed). */
void kv_buf_put(struct kv_buf *b, const void *p, size_t n);

/* Appends the C string s (without its NUL). */
void kv_buf_put_str(struct kv_buf *b, const char *s);

/* The bytes as a C string: a NUL written after them (an empty buffer gets one too), so
 * the result is never NULL; b->len does not count it. The caller may keep the pointer
 * (and free() it) in place of calling kv_buf_free. */
char *kv_buf_cstr(struct kv_buf *b);

/* Appends s[0..n) quoted as Redis's sdscatrepr writes it ("..." with \\ \" \n \r \t \a \b
 * and \xHH for other unprintable bytes): what kv_splitargs reads back as one argument. */
void kv_buf_put_repr(struct kv_buf *b, const char *s, size_t n);

/* Frees the bytes and zeroes the struct. */
void kv_buf_free(struct kv_buf *b);

#endif
