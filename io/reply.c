/*
 * reply: see reply.h. Every function appends one element through resp_out; results
 * are ignored here on purpose (the error is sticky in the resp_out and checked by the
 * connection after each command).
 */
#include "reply.h"

#include "kv_assert.h"
#include "resp_out.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define REPLY_ERROR_MAX 1024 /* longest formatted error text; longer ones are cut */
#define REPLY_CODE_SCAN 32   /* Redis looks for the code's end in the first 32 bytes */

const char *const reply_err_codes[REPLY_ERR_CODES] = {
    "BUSY",    "BUSYKEY",    "CROSSSLOT",  "ERR",       "EXECABORT", "INVALIDOBJ",
    "MISCONF", "NOAUTH",     "NOPERM",     "NOPROTO",   "NOSCRIPT",  "NOTBUSY",
    "OOM",     "TESTFAILED", "UNKILLABLE", "WRONGPASS", "WRONGTYPE",
};

static _Thread_local struct reply_errstats *bound;

void reply_errstats_bind(struct reply_errstats *s)
{
    bound = s;
}

uint64_t reply_errors(void)
{
    return bound != NULL ? atomic_load_explicit(&bound->total, memory_order_relaxed) +
                               atomic_load_explicit(&bound->uncounted, memory_order_relaxed)
                         : 0;
}

static void bump(_Atomic uint64_t *v)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void count_error(const char *text, size_t n, bool any_code)
{
    if (bound == NULL) {
        return;
    }
    bump(&bound->total);
    const char *sp = memchr(text, ' ', n < REPLY_CODE_SCAN ? n : REPLY_CODE_SCAN);
    size_t len = sp != NULL ? (size_t)(sp - text) : 3;
    const char *code = sp != NULL ? text : "ERR";
    for (size_t i = 0; i < REPLY_ERR_CODES; i++) {
        if (strlen(reply_err_codes[i]) == len && memcmp(reply_err_codes[i], code, len) == 0) {
            bump(&bound->by_code[i]);
            return;
        }
    }
    KV_DASSERT(any_code || !"an error code missing from reply_err_codes");
    uint32_t used = atomic_load_explicit(&bound->others, memory_order_relaxed);
    for (uint32_t i = 0; i < used; i++) {
        struct reply_other_code *o = &bound->other[i];
        if (strlen(o->name) == len && memcmp(o->name, code, len) == 0) {
            bump(&o->count);
            return;
        }
    }
    if (used < REPLY_OTHER_CODES && len <= REPLY_OTHER_CODE_MAX &&
        memchr(code, '\0', len) == NULL) {
        struct reply_other_code *o = &bound->other[used];
        memcpy(o->name, code, len);
        o->name[len] = '\0';
        atomic_store_explicit(&o->count, 1, memory_order_relaxed);
        atomic_store_explicit(&bound->others, used + 1, memory_order_release);
    }
}

void reply_count_error(const char *text, size_t n)
{
    count_error(text, n, false);
}

void reply_error_text(struct resp_out *r, const char *text, size_t n)
{
    count_error(text, n, true);
    (void)resp_out_error_reply(r, text, n);
}

void reply_error_seen(struct resp_out *r, const char *text, size_t n)
{
    if (bound != NULL) {
        bump(&bound->uncounted);
    }
    (void)resp_out_error_reply(r, text, n);
}

void reply_simple(struct resp_out *r, const char *s)
{
    (void)resp_out_simple(r, s, strlen(s));
}

void reply_ok(struct resp_out *r)
{
    (void)resp_out_raw(r, "+OK\r\n", 5);
}

void reply_error(struct resp_out *r, const char *fmt, ...)
{
    char buf[REPLY_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n >= sizeof buf) {
        n = sizeof buf - 1;
    }
    reply_count_error(buf, (size_t)n);
    (void)resp_out_error_reply(r, buf, (size_t)n);
}

void reply_lines(struct resp_out *r, const char *const *lines, size_t n)
{
    reply_array(r, n);
    for (size_t i = 0; i < n; i++) {
        reply_simple(r, lines[i]);
    }
}

void reply_int(struct resp_out *r, int64_t v)
{
    (void)resp_out_int(r, v);
}

void reply_bulk(struct resp_out *r, const void *p, size_t n)
{
    (void)resp_out_bulk(r, p, n);
}

void reply_bulk_str(struct resp_out *r, const char *s)
{
    (void)resp_out_bulk(r, s, strlen(s));
}

void reply_bulk_i64(struct resp_out *r, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    (void)resp_out_bulk(r, buf, (size_t)n);
}

void reply_null(struct resp_out *r)
{
    (void)resp_out_null(r);
}

void reply_null_array(struct resp_out *r)
{
    (void)resp_out_null_array(r);
}

void reply_array(struct resp_out *r, size_t n)
{
    (void)resp_out_array(r, n);
}

void reply_map(struct resp_out *r, size_t n)
{
    (void)resp_out_map(r, n);
}

void reply_set(struct resp_out *r, size_t n)
{
    (void)resp_out_set(r, n);
}

void reply_double(struct resp_out *r, double d)
{
    (void)resp_out_double(r, d);
}

void reply_verbatim(struct resp_out *r, const char *p, size_t n)
{
    (void)resp_out_verbatim(r, "txt", p, n);
}

void reply_raw(struct resp_out *r, const void *p, size_t n)
{
    (void)resp_out_raw(r, p, n);
}

void reply_err_syntax(struct resp_out *r)
{
    reply_error(r, "ERR syntax error");
}

void reply_err_not_int(struct resp_out *r)
{
    reply_error(r, "ERR value is not an integer or out of range");
}

void reply_err_arity(struct resp_out *r, const char *cmd)
{
    reply_error(r, "ERR wrong number of arguments for '%s' command", cmd);
}
