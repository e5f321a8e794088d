/*
 * resp_parse_collect: drives a resp_parser over an input cut at given positions and
 * records what came out, for the unit tests, the fuzz target and resp_parse_tool.
 *
 * Each piece is copied into its own exactly-sized heap buffer, fed, parsed until
 * KV_EAGAIN, and freed right after (as the server recycles a receive buffer), so
 * that a view kept past its lifetime is a use-after-free under ASan. Commands are
 * serialized only after KV_EAGAIN, from the views themselves, which checks that they
 * stay valid until the next feed. Every view is checked to lie in the fed buffer or
 * the parser's arena.
 *
 * Serialized form, one line per command: "<argc>( <len>:<bytes>)*\n".
 */
#ifndef RESP_PARSE_COLLECT_H
#define RESP_PARSE_COLLECT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_error.h"
#include "resp_alloc.h"
#include "resp_parse.h"

struct collect {
    char *out; /* serialized commands (malloc'd, NUL-terminated) */
    size_t len;
    size_t cap;
    int rc;             /* KV_EAGAIN (all consumed), KV_EPROTO or KV_ENOMEM */
    enum resp_perr err; /* RESP_PERR_NONE unless rc == KV_EPROTO */
    char err_text[96];  /* the parser's error text */
    size_t commands;    /* commands returned */
    size_t bad_views;   /* views outside both the buffer and the arena */
    size_t peak_memory; /* most resp_parser_memory_bytes() seen */
};

static inline void collect_put(struct collect *c, const void *p, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (c->len + n + 1 > cap) {
            cap *= 2;
        }
        c->out = realloc(c->out, cap);
        if (c->out == NULL) {
            abort();
        }
        c->cap = cap;
    }
    memcpy(c->out + c->len, p, n);
    c->len += n;
    c->out[c->len] = '\0';
}

static inline void collect_num(struct collect *c, size_t v, char sep)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%zu%c", v, sep);
    collect_put(c, tmp, (size_t)k);
}

/* Views of the commands returned since the last feed. */
struct collect_views {
    struct resp_arg *args;
    size_t n;
    size_t cap;
    size_t *argcs;
    size_t ncmd;
    size_t cmdcap;
};

static inline void views_add(struct collect_views *v, const struct resp_cmd *cmd)
{
    if (v->ncmd == v->cmdcap) {
        v->cmdcap = v->cmdcap ? v->cmdcap * 2 : 16;
        v->argcs = realloc(v->argcs, v->cmdcap * sizeof *v->argcs);
    }
    v->argcs[v->ncmd++] = cmd->argc;
    for (size_t i = 0; i < cmd->argc; i++) {
        if (v->n == v->cap) {
            v->cap = v->cap ? v->cap * 2 : 64;
            v->args = realloc(v->args, v->cap * sizeof *v->args);
        }
        v->args[v->n++] = cmd->argv[i];
    }
    if (v->args == NULL || v->argcs == NULL) {
        abort();
    }
}

static inline void views_flush(struct collect *c, struct collect_views *v)
{
    size_t k = 0;
    for (size_t i = 0; i < v->ncmd; i++) {
        collect_num(c, v->argcs[i], ' ');
        for (size_t j = 0; j < v->argcs[i]; j++, k++) {
            collect_num(c, v->args[k].len, ':');
            collect_put(c, v->args[k].ptr, v->args[k].len);
            collect_put(c, " ", 1);
        }
        collect_put(c, "\n", 1);
    }
    v->n = 0;
    v->ncmd = 0;
}

/* Parses in[0..n) cut before each cuts[i] (strictly increasing, in (0, n)). */
static inline void collect_run(struct collect *c, const void *in, size_t n, const size_t *cuts,
                               size_t ncuts, const struct resp_parse_limits *lim,
                               bool auth_required)
{
    memset(c, 0, sizeof *c);
    collect_put(c, "", 0);
    struct resp_parser *p = NULL;
    if (resp_parser_create(&p, &resp_alloc_libc, lim) != 0) {
        abort();
    }
    resp_parser_set_auth_required(p, auth_required);
    struct collect_views v = {0};
    size_t start = 0;
    c->rc = KV_EAGAIN;
    for (size_t piece = 0; piece <= ncuts && c->rc == KV_EAGAIN; piece++) {
        size_t end = piece < ncuts ? cuts[piece] : n;
        size_t plen = end - start;
        char *buf = malloc(plen > 0 ? plen : 1);
        if (buf == NULL) {
            abort();
        }
        memcpy(buf, (const char *)in + start, plen);
        resp_parser_feed(p, buf, plen);
        struct resp_cmd cmd;
        int rc;
        while ((rc = resp_parser_next(p, &cmd)) == 0) {
            c->commands++;
            for (size_t i = 0; i < cmd.argc; i++) {
                const char *a = cmd.argv[i].ptr;
                int inbuf = a >= buf && a + cmd.argv[i].len <= buf + plen;
                if (!inbuf && cmd.argv[i].len > 0 &&
                    !resp_parser_arena_contains(p, a, cmd.argv[i].len)) {
                    c->bad_views++;
                }
            }
            views_add(&v, &cmd);
            size_t m = resp_parser_memory_bytes(p);
            c->peak_memory = m > c->peak_memory ? m : c->peak_memory;
        }
        size_t m = resp_parser_memory_bytes(p);
        c->peak_memory = m > c->peak_memory ? m : c->peak_memory;
        views_flush(c, &v);
        free(buf);
        c->rc = rc;
        start = end;
    }
    c->err = resp_parser_error(p);
    snprintf(c->err_text, sizeof c->err_text, "%s", resp_parser_error_text(p));
    resp_parser_destroy(p);
    free(v.args);
    free(v.argcs);
}

static inline void collect_free(struct collect *c)
{
    free(c->out);
    c->out = NULL;
}

#endif
