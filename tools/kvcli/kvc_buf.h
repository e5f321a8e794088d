/*
 * kvc_buf: kvcli's growable byte buffer.
 *
 * kvcli holds three kinds of bytes whose size it cannot know in advance: the request it
 * encodes, the reply it receives and the text it prints. Each lives in a kvc_buf that
 * doubles on demand up to a cap the caller names. The cap is a limit, not a size: memory
 * follows what the command and its reply actually need.
 *
 * Growth failing for lack of memory ends the program ("kvcli: out of memory"), as
 * redis-cli does: a command-line client has nothing useful to do without memory, and
 * propagating the failure through every printer would only hide the logic. Growth past
 * the cap is an operating error and is returned (KV_ELIMIT). Single-threaded.
 */
#ifndef KVC_BUF_H
#define KVC_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct kvc_buf {
    char *data; /* owned; NULL until the first growth */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* cap may not grow past this */
};

/* An empty buffer that may grow to `max` bytes. Allocates nothing yet. */
void kvc_buf_init(struct kvc_buf *b, size_t max);

/* Frees the memory; the buffer is empty and usable again afterwards. */
void kvc_buf_deinit(struct kvc_buf *b);

/* Makes room for `extra` more bytes past len. Returns 0 or KV_ELIMIT (past max). */
int kvc_buf_reserve(struct kvc_buf *b, size_t extra);

/* Appends bytes. Returns 0 or KV_ELIMIT (nothing appended then). */
int kvc_buf_append(struct kvc_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string (without its NUL). Returns 0 or KV_ELIMIT. */
int kvc_buf_puts(struct kvc_buf *b, const char *s);

/* Appends printf-style text. Returns 0 or KV_ELIMIT. */
int kvc_buf_printf(struct kvc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Drops the first n bytes (n <= len), moving the rest to the front. */
void kvc_buf_consume(struct kvc_buf *b, size_t n);

/* Empties the buffer, keeping its memory. */
static inline void kvc_buf_clear(struct kvc_buf *b)
{
    b->len = 0;
}

#endif
