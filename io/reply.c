/*
 * reply: see reply.h. Every function appends one element through resp_out; results
 * are ignored here on purpose (the error is sticky in the resp_out and checked by the
 * connection after each command).
 */
#include "reply.h"

#include "resp_out.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define REPLY_ERROR_MAX 1024 /* longest formatted error text; longer ones are cut */

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
    (void)resp_out_error_reply(r, buf, (size_t)n);
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
