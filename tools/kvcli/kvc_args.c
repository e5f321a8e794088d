/*
 * kvc_args: redis-cli's argument splitting and the RESP request encoder.
 *
 * The splitter is a transcription of redis-cli's rules (see kvc_args.h), written as a
 * small state machine over the line: outside quotes, in "double", in 'single'. It first
 * collects every argument's bytes into one buffer and only then points argv at them,
 * because the buffer may move while it grows. Invariants after a successful split:
 * argc <= KVC_ARGS_MAX; argv[i][lens[i]] == '\0'. Single-threaded.
 */
#include "kvc_args.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"

void kvc_args_init(struct kvc_args *a)
{
    KV_ASSERT(a != NULL);
    memset(a, 0, sizeof(*a));
    kvc_buf_init(&a->bytes, (size_t)KVC_ARGS_BYTES_MAX);
}

void kvc_args_deinit(struct kvc_args *a)
{
    KV_ASSERT(a != NULL);
    free(a->argv);
    free(a->lens);
    free(a->offs);
    kvc_buf_deinit(&a->bytes);
    memset(a, 0, sizeof(*a));
}

/* Makes room for one more argument's bookkeeping. */
static int args_grow(struct kvc_args *a)
{
    if (a->argc < a->cap) {
        return 0;
    }
    if (a->argc >= KVC_ARGS_MAX) {
        return KV_ELIMIT;
    }
    int cap = a->cap > 0 ? a->cap * 2 : 16;
    if (cap > KVC_ARGS_MAX) {
        cap = KVC_ARGS_MAX;
    }
    char **argv = realloc(a->argv, (size_t)cap * sizeof(*argv));
    size_t *lens = realloc(a->lens, (size_t)cap * sizeof(*lens));
    size_t *offs = realloc(a->offs, (size_t)cap * sizeof(*offs));
    if (argv != NULL) {
        a->argv = argv;
    }
    if (lens != NULL) {
        a->lens = lens;
    }
    if (offs != NULL) {
        a->offs = offs;
    }
    if (argv == NULL || lens == NULL || offs == NULL) {
        fputs("kvcli: out of memory\n", stderr); /* kvc_buf.h: the tool's policy */
        exit(1);
    }
    a->cap = cap;
    return 0;
}

/* Starts an argument at the end of the byte buffer. */
static int args_open(struct kvc_args *a)
{
    int rc = args_grow(a);
    if (rc != 0) {
        return rc;
    }
    a->offs[a->argc] = a->bytes.len;
    return 0;
}

/* Ends the argument opened last: NUL-terminate it and count it. */
static int args_close(struct kvc_args *a)
{
    size_t off = a->offs[a->argc];
    a->lens[a->argc] = a->bytes.len - off;
    int rc = kvc_buf_append(&a->bytes, "", 1);
    if (rc == 0) {
        a->argc++;
    }
    return rc;
}

/* Points argv at the collected bytes (after the last growth of the buffer). */
static void args_finish(struct kvc_args *a)
{
    for (int i = 0; i < a->argc; i++) {
        a->argv[i] = a->bytes.data + a->offs[i];
        KV_ASSERT(a->argv[i][a->lens[i]] == '\0');
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* A closing quote at p must be followed by whitespace or the end of the line. */
static int quote_closes_ok(const char *p)
{
    return p[1] == '\0' || isspace((unsigned char)p[1]);
}

/*
 * Reads one argument starting at *pp (not at a blank, not at the end) into the byte
 * buffer; leaves *pp just past it. Returns 0, KV_EINVAL or KV_ELIMIT.
 */
static int split_one(struct kvc_args *a, const char **pp)
{
    const char *p = *pp;
    enum { PLAIN, DQUOTE, SQUOTE } st = PLAIN;
    int rc = 0;
    for (int done = 0; !done && rc == 0; p += *p != '\0') {
        char c = *p;
        if (st == DQUOTE) {
            if (c == '\\' && p[1] == 'x' && hex_value(p[2]) >= 0 && hex_value(p[3]) >= 0) {
                char byte = (char)(hex_value(p[2]) * 16 + hex_value(p[3]));
                rc = kvc_buf_append(&a->bytes, &byte, 1);
                p += 3;
            } else if (c == '\\' && p[1] != '\0') {
                p++;
                char e = *p == 'n'   ? '\n'
                         : *p == 'r' ? '\r'
                         : *p == 't' ? '\t'
                         : *p == 'b' ? '\b'
                         : *p == 'a' ? '\a'
                                     : *p;
                rc = kvc_buf_append(&a->bytes, &e, 1);
            } else if (c == '"') {
                if (!quote_closes_ok(p)) {
                    return KV_EINVAL;
                }
                done = 1;
            } else if (c == '\0') {
                return KV_EINVAL;
            } else {
                rc = kvc_buf_append(&a->bytes, p, 1);
            }
        } else if (st == SQUOTE) {
            if (c == '\\' && p[1] == '\'') {
                p++;
                rc = kvc_buf_append(&a->bytes, "'", 1);
            } else if (c == '\'') {
                if (!quote_closes_ok(p)) {
                    return KV_EINVAL;
                }
                done = 1;
            } else if (c == '\0') {
                return KV_EINVAL;
            } else {
                rc = kvc_buf_append(&a->bytes, p, 1);
            }
        } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\0') {
            done = 1;
        } else if (c == '"') {
            st = DQUOTE;
        } else if (c == '\'') {
            st = SQUOTE;
        } else {
            rc = kvc_buf_append(&a->bytes, p, 1);
        }
    }
    *pp = p;
    return rc;
}

int kvc_args_split(struct kvc_args *a, const char *line)
{
    KV_ASSERT(a != NULL && line != NULL);
    a->argc = 0;
    kvc_buf_clear(&a->bytes);
    const char *p = line;
    for (;;) {
        while (*p != '\0' && isspace((unsigned char)*p)) {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        int rc = args_open(a);
        if (rc == 0) {
            rc = split_one(a, &p);
        }
        if (rc == 0) {
            rc = args_close(a);
        }
        if (rc != 0) {
            a->argc = 0;
            return rc;
        }
    }
    args_finish(a);
    return 0;
}

int kvc_args_set(struct kvc_args *a, int n, char *const *argv)
{
    KV_ASSERT(a != NULL && n >= 0);
    a->argc = 0;
    kvc_buf_clear(&a->bytes);
    for (int i = 0; i < n; i++) {
        int rc = args_open(a);
        if (rc == 0) {
            rc = kvc_buf_puts(&a->bytes, argv[i]);
        }
        if (rc == 0) {
            rc = args_close(a);
        }
        if (rc != 0) {
            a->argc = 0;
            return rc;
        }
    }
    args_finish(a);
    return 0;
}

int kvc_args_push(struct kvc_args *a, const void *p, size_t len)
{
    KV_ASSERT(a != NULL && (p != NULL || len == 0));
    int rc = args_open(a);
    if (rc == 0) {
        rc = kvc_buf_append(&a->bytes, p, len);
    }
    if (rc == 0) {
        rc = args_close(a);
    }
    args_finish(a);
    return rc;
}

int kvc_args_encode(const struct kvc_args *a, int first, struct kvc_buf *out)
{
    KV_ASSERT(a != NULL && out != NULL);
    KV_ASSERT(first >= 0 && first < a->argc);
    int rc = kvc_buf_printf(out, "*%d\r\n", a->argc - first);
    for (int i = first; i < a->argc && rc == 0; i++) {
        rc = kvc_buf_printf(out, "$%zu\r\n", a->lens[i]);
        if (rc == 0) {
            rc = kvc_buf_append(out, a->argv[i], a->lens[i]);
        }
        if (rc == 0) {
            rc = kvc_buf_append(out, "\r\n", 2);
        }
    }
    return rc;
}
