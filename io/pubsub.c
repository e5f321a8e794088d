/*
 * pubsub: see pubsub.h.
 */
#include "pubsub.h"

#include "cmd.h"
#include "conn.h"
#include "kv_assert.h"
#include "kv_glob.h"
#include "reply.h"
#include "resp_parse.h"
#include "server.h"

#include <mimalloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define PS_BUCKETS_MIN 16

/* ---- names: a channel or pattern, owned ------------------------------------------- */

struct name {
    char *p;
    size_t n;
};

static bool name_eq(const struct name *a, const char *p, size_t n)
{
    return a->n == n && memcmp(a->p, p, n) == 0;
}

static struct name name_dup(const char *p, size_t n)
{
    struct name s = {.p = malloc(n ? n : 1), .n = n};
    KV_ASSERT(s.p != NULL);
    memcpy(s.p, p, n);
    return s;
}

/* ---- a connection's subscriptions (its shard's thread only) ---------------------- */

struct pubsub_conn {
    struct name *chans, *pats; /* in subscription order */
    size_t nchans, npats, cap_chans, cap_pats;
};

size_t pubsub_channels(const struct pubsub_conn *p)
{
    return p != NULL ? p->nchans : 0;
}

size_t pubsub_patterns(const struct pubsub_conn *p)
{
    return p != NULL ? p->npats : 0;
}

static ssize_t find(const struct name *v, size_t n, const char *p, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (name_eq(&v[i], p, len)) {
            return (ssize_t)i;
        }
    }
    return -1;
}

static void push_name(struct name **v, size_t *n, size_t *cap, struct name s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *v = realloc(*v, *cap * sizeof **v);
        KV_ASSERT(*v != NULL);
    }
    (*v)[(*n)++] = s;
}

/* ---- the shard's map: channel -> its subscribed connections here ----------------- */

struct chan {
    struct chan *next;
    uint64_t h;
    struct name name;
    struct conn **subs;
    size_t n, cap;
};

struct pat {
    struct name name;
    struct conn *c;
};

struct pubsub_local {
    struct chan **b;
    size_t mask, nchans;
    struct pat *pats;
    size_t npats, cap_pats;
};

static struct pubsub_local *local_of(struct shard *sh)
{
    if (sh->pubsub == NULL) {
        struct pubsub_local *l = calloc(1, sizeof *l);
        KV_ASSERT(l != NULL);
        l->b = calloc(PS_BUCKETS_MIN, sizeof *l->b);
        KV_ASSERT(l->b != NULL);
        l->mask = PS_BUCKETS_MIN - 1;
        sh->pubsub = l;
    }
    return sh->pubsub;
}

static struct chan **chan_slot(struct pubsub_local *l, const char *p, size_t n, uint64_t h)
{
    struct chan **pp = &l->b[h & l->mask];
    while (*pp != NULL && !((*pp)->h == h && name_eq(&(*pp)->name, p, n))) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void local_grow(struct pubsub_local *l)
{
    if (l->nchans <= l->mask + 1) {
        return;
    }
    size_t nb = (l->mask + 1) * 2;
    struct chan **b = calloc(nb, sizeof *b);
    KV_ASSERT(b != NULL);
    for (size_t i = 0; i <= l->mask; i++) {
        for (struct chan *e = l->b[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    }
    free(l->b);
    l->b = b;
    l->mask = nb - 1;
}

static void local_sub(struct pubsub_local *l, struct conn *c, const char *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n);
    struct chan **pp = chan_slot(l, p, n, h);
    if (*pp == NULL) {
        struct chan *e = calloc(1, sizeof *e);
        KV_ASSERT(e != NULL);
        e->h = h;
        e->name = name_dup(p, n);
        *pp = e;
        l->nchans++;
        local_grow(l);
        pp = chan_slot(l, p, n, h);
    }
    struct chan *e = *pp;
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->subs = realloc(e->subs, e->cap * sizeof *e->subs);
        KV_ASSERT(e->subs != NULL);
    }
    e->subs[e->n++] = c;
}

static void local_unsub(struct pubsub_local *l, struct conn *c, const char *p, size_t n)
{
    struct chan **pp = chan_slot(l, p, n, XXH3_64bits(p, n));
    struct chan *e = *pp;
    KV_ASSERT(e != NULL);
    for (size_t i = 0; i < e->n; i++) {
        if (e->subs[i] == c) {
            memmove(&e->subs[i], &e->subs[i + 1], (e->n - i - 1) * sizeof e->subs[0]);
            e->n--;
            break;
        }
    }
    if (e->n == 0) {
        *pp = e->next;
        free(e->subs);
        free(e->name.p);
        free(e);
        l->nchans--;
    }
}

void pubsub_local_free(struct shard *sh)
{
    struct pubsub_local *l = sh->pubsub;
    if (l == NULL) {
        return;
    }
    KV_ASSERT(l->nchans == 0 && l->npats == 0); /* every connection dropped its own */
    free(l->b);
    free(l->pats);
    free(l);
    sh->pubsub = NULL;
}

/* ---- the server-wide counts ------------------------------------------------------ */

struct gentry {
    struct name name;
    uint64_t total;
    uint32_t *per; /* per shard */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gentry *g_chans, *g_pats; /* small vectors; channels also hashed below */
static size_t g_nchans, g_npats, g_cap_chans, g_cap_pats;
static uint32_t g_nthreads;

void pubsub_counts(size_t *channels, size_t *patterns)
{
    pthread_mutex_lock(&g_mu);
    *channels = g_nchans;
    *patterns = g_npats;
    pthread_mutex_unlock(&g_mu);
}

static struct gentry *g_find(struct gentry *v, size_t n, const char *p, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (name_eq(&v[i].name, p, len)) {
            return &v[i];
        }
    }
    return NULL;
}

/* Subscriptions that may receive keyspace notifications: to a channel starting with
 * "__key", or to any pattern. Read without the mutex by notify.c's fast check. */
static _Atomic int64_t g_notify_listeners;

bool pubsub_notify_listened(void)
{
    return atomic_load_explicit(&g_notify_listeners, memory_order_relaxed) > 0;
}

/* +1 / -1 subscription of shard `s` to channel or pattern p. Under g_mu. */
static void g_count(bool pattern, uint32_t s, const char *p, size_t n, int delta)
{
    if (pattern || (n >= 5 && memcmp(p, "__key", 5) == 0)) {
        atomic_fetch_add_explicit(&g_notify_listeners, delta, memory_order_relaxed);
    }
    struct gentry **v = pattern ? &g_pats : &g_chans;
    size_t *cnt = pattern ? &g_npats : &g_nchans;
    size_t *cap = pattern ? &g_cap_pats : &g_cap_chans;
    struct gentry *e = g_find(*v, *cnt, p, n);
    if (e == NULL) {
        KV_ASSERT(delta > 0);
        if (*cnt == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *v = realloc(*v, *cap * sizeof **v);
            KV_ASSERT(*v != NULL);
        }
        e = &(*v)[(*cnt)++];
        e->name = name_dup(p, n);
        e->total = 0;
        e->per = calloc(g_nthreads, sizeof e->per[0]);
        KV_ASSERT(e->per != NULL);
    }
    e->per[s] = (uint32_t)((int64_t)e->per[s] + delta);
    e->total = (uint64_t)((int64_t)e->total + delta);
    if (e->total == 0) {
        free(e->name.p);
        free(e->per);
        *e = (*v)[--*cnt];
    }
}

/* ---- writing to subscribers ------------------------------------------------------ */

static size_t put_bulk(char *dst, const char *p, size_t n)
{
    int k = sprintf(dst, "$%zu\r\n", n);
    memcpy(dst + k, p, n);
    memcpy(dst + k + n, "\r\n", 2);
    return (size_t)k + n + 2;
}

/* The frame of a message: ["message", channel, payload] or ["pmessage", pattern,
 * channel, payload], an array in RESP2 and a push in RESP3. */
static void push_message(struct conn *c, const struct name *pattern, const char *ch, size_t chn,
                         const char *msg, size_t mn)
{
    size_t cap = 64 + chn + mn + (pattern ? pattern->n : 0);
    char stack[512];
    char *buf = cap <= sizeof stack ? stack : malloc(cap);
    KV_ASSERT(buf != NULL);
    size_t off = (size_t)sprintf(buf, "%c%d\r\n", conn_resp(c) == 3 ? '>' : '*', pattern ? 4 : 3);
    if (pattern != NULL) {
        off += put_bulk(buf + off, "pmessage", 8);
        off += put_bulk(buf + off, pattern->p, pattern->n);
    } else {
        off += put_bulk(buf + off, "message", 7);
    }
    off += put_bulk(buf + off, ch, chn);
    off += put_bulk(buf + off, msg, mn);
    conn_push(c, buf, off);
    if (buf != stack) {
        free(buf);
    }
}

/* Delivers to this shard's subscribers of the channel and of matching patterns;
 * returns how many got it (conn_push never closes a connection, so the lists stay as
 * they are while this walks them). */
static int64_t deliver(struct shard *sh, const char *ch, size_t chn, const char *msg, size_t mn)
{
    struct pubsub_local *l = sh->pubsub;
    if (l == NULL) {
        return 0;
    }
    int64_t n = 0;
    struct chan *e = *chan_slot(l, ch, chn, XXH3_64bits(ch, chn));
    for (size_t i = 0; e != NULL && i < e->n; i++) {
        push_message(e->subs[i], NULL, ch, chn, msg, mn);
        n++;
    }
    for (size_t i = 0; i < l->npats; i++) {
        const struct pat *pt = &l->pats[i];
        if (kv_glob_match(pt->name.p, pt->name.n, ch, chn, false)) {
            push_message(pt->c, &pt->name, ch, chn, msg, mn);
            n++;
        }
    }
    return n;
}

void pubsub_on_message(struct shard *sh, const struct xmsg *m)
{
    const char *p = m->payload;
    uint32_t chn;
    memcpy(&chn, p, 4);
    deliver(sh, p + 4, chn, p + 4 + chn, m->payload_len - 4 - chn);
    conn_blob_free(m->payload);
}

/* ---- commands ---------------------------------------------------------------------- */

/* The confirmation of one (un)subscription: [kind, name or nil, subscriptions left]. */
static void reply_confirm(struct cmd_ctx *x, const char *kind, const struct resp_arg *name,
                          size_t count)
{
    char hdr[16];
    int k = snprintf(hdr, sizeof hdr, "%c3\r\n", conn_resp(x->conn) == 3 ? '>' : '*');
    reply_raw(x->out, hdr, (size_t)k);
    reply_bulk_str(x->out, kind);
    if (name != NULL) {
        reply_bulk(x->out, name->ptr, name->len);
    } else {
        reply_null(x->out);
    }
    reply_int(x->out, (int64_t)count);
}

static struct pubsub_conn *conn_ps(struct conn *c)
{
    struct pubsub_conn **pp = conn_pubsub(c);
    if (*pp == NULL) {
        *pp = calloc(1, sizeof **pp);
        KV_ASSERT(*pp != NULL);
    }
    return *pp;
}

static size_t subs_of(const struct pubsub_conn *p)
{
    return p->nchans + p->npats;
}

static void subscribe(struct cmd_ctx *x, bool pattern)
{
    KV_ASSERT(x->conn != NULL);
    struct pubsub_conn *ps = conn_ps(x->conn);
    struct pubsub_local *l = local_of(x->sh);
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        struct name **v = pattern ? &ps->pats : &ps->chans;
        size_t *n = pattern ? &ps->npats : &ps->nchans;
        if (find(*v, *n, a->ptr, a->len) < 0) {
            push_name(v, n, pattern ? &ps->cap_pats : &ps->cap_chans, name_dup(a->ptr, a->len));
            if (pattern) {
                if (l->npats == l->cap_pats) {
                    l->cap_pats = l->cap_pats ? l->cap_pats * 2 : 8;
                    l->pats = realloc(l->pats, l->cap_pats * sizeof *l->pats);
                    KV_ASSERT(l->pats != NULL);
                }
                l->pats[l->npats++] = (struct pat){.name = (*v)[*n - 1], .c = x->conn};
            } else {
                local_sub(l, x->conn, a->ptr, a->len);
            }
            pthread_mutex_lock(&g_mu);
            g_nthreads = x->sh->srv->nthreads;
            g_count(pattern, x->sh->id, a->ptr, a->len, 1);
            pthread_mutex_unlock(&g_mu);
        }
        reply_confirm(x, pattern ? "psubscribe" : "subscribe", a, subs_of(ps));
    }
}

/* Removes subscription i of the connection (its name freed). */
static void unsub_at(struct shard *sh, struct conn *c, struct pubsub_conn *ps, bool pattern,
                     size_t i)
{
    struct pubsub_local *l = local_of(sh);
    struct name *v = pattern ? ps->pats : ps->chans;
    size_t *n = pattern ? &ps->npats : &ps->nchans;
    struct name s = v[i];
    memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof v[0]);
    (*n)--;
    if (pattern) {
        for (size_t k = 0; k < l->npats; k++) {
            if (l->pats[k].c == c && name_eq(&l->pats[k].name, s.p, s.n)) {
                memmove(&l->pats[k], &l->pats[k + 1], (l->npats - k - 1) * sizeof l->pats[0]);
                l->npats--;
                break;
            }
        }
    } else {
        local_unsub(l, c, s.p, s.n);
    }
    pthread_mutex_lock(&g_mu);
    g_count(pattern, sh->id, s.p, s.n, -1);
    pthread_mutex_unlock(&g_mu);
    free(s.p);
}

static void unsubscribe(struct cmd_ctx *x, bool pattern)
{
    KV_ASSERT(x->conn != NULL);
    struct pubsub_conn *ps = conn_ps(x->conn);
    const char *kind = pattern ? "punsubscribe" : "unsubscribe";
    if (x->argc == 1) { /* all of them, in subscription order */
        size_t *n = pattern ? &ps->npats : &ps->nchans;
        if (*n == 0) {
            reply_confirm(x, kind, NULL, subs_of(ps));
        }
        while (*n > 0) {
            struct name *v = pattern ? ps->pats : ps->chans;
            struct resp_arg a = {.ptr = v[0].p, .len = v[0].n};
            char *keep = malloc(a.len ? a.len : 1); /* the name outlives its removal */
            KV_ASSERT(keep != NULL);
            memcpy(keep, a.ptr, a.len);
            a.ptr = keep;
            unsub_at(x->sh, x->conn, ps, pattern, 0);
            reply_confirm(x, kind, &a, subs_of(ps));
            free(keep);
        }
        return;
    }
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        ssize_t at =
            find(pattern ? ps->pats : ps->chans, pattern ? ps->npats : ps->nchans, a->ptr, a->len);
        if (at >= 0) {
            unsub_at(x->sh, x->conn, ps, pattern, (size_t)at);
        }
        reply_confirm(x, kind, a, subs_of(ps));
    }
}

void pubsub_drop(struct shard *sh, struct conn *c)
{
    struct pubsub_conn **pp = conn_pubsub(c);
    struct pubsub_conn *ps = *pp;
    if (ps == NULL) {
        return;
    }
    while (ps->nchans > 0) {
        unsub_at(sh, c, ps, false, ps->nchans - 1);
    }
    while (ps->npats > 0) {
        unsub_at(sh, c, ps, true, ps->npats - 1);
    }
    free(ps->chans);
    free(ps->pats);
    free(ps);
    *pp = NULL;
}

void cmd_subscribe(struct cmd_ctx *x)
{
    subscribe(x, false);
}

void cmd_psubscribe(struct cmd_ctx *x)
{
    subscribe(x, true);
}

void cmd_unsubscribe(struct cmd_ctx *x)
{
    unsubscribe(x, false);
}

void cmd_punsubscribe(struct cmd_ctx *x)
{
    unsubscribe(x, true);
}

/*
 * PUBLISH channel message runs on every shard (a fan-out, CMD_MERGE_SUM): each delivers
 * to its own subscribers of the channel and of matching patterns (a connection matching
 * both counted twice, as in Redis) and replies how many; the client's reply is the sum
 * and leaves only when every shard has delivered, so a subscriber's replies to commands
 * it sends after that come after the message, as in Redis.
 */
void cmd_publish(struct cmd_ctx *x)
{
    int64_t n = deliver(x->sh, x->argv[1].ptr, x->argv[1].len, x->argv[2].ptr, x->argv[2].len);
    x->sum = n;
    reply_int(x->out, n);
}

int64_t pubsub_publish_async(struct shard *sh, const char *ch, size_t chn, const char *msg,
                             size_t mn)
{
    struct server *srv = sh->srv;
    bool to[KVD_THREADS_MAX] = {false};
    uint64_t total = 0;
    pthread_mutex_lock(&g_mu);
    struct gentry *e = g_find(g_chans, g_nchans, ch, chn);
    for (uint32_t s = 0; e != NULL && s < srv->nthreads; s++) {
        to[s] |= e->per[s] > 0;
    }
    total += e != NULL ? e->total : 0;
    for (size_t i = 0; i < g_npats; i++) {
        struct gentry *p = &g_pats[i];
        if (kv_glob_match(p->name.p, p->name.n, ch, chn, false)) {
            total += p->total;
            for (uint32_t s = 0; s < srv->nthreads; s++) {
                to[s] |= p->per[s] > 0;
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
    for (uint32_t s = 0; s < srv->nthreads; s++) {
        if (!to[s]) {
            continue;
        }
        if (s == sh->id) {
            deliver(sh, ch, chn, msg, mn);
            continue;
        }
        size_t len = 4 + chn + mn;
        char *payload = conn_blob_alloc(sh, len);
        uint32_t n = (uint32_t)chn;
        memcpy(payload, &n, 4);
        memcpy(payload + 4, ch, chn);
        memcpy(payload + 4 + chn, msg, mn);
        struct xmsg m = {
            .kind = XM_PUBLISH, .src = (uint16_t)sh->id, .payload = payload, .payload_len = len};
        conn_send_xmsg(sh, NULL, s, &m);
    }
    return (int64_t)total;
}

/* PUBSUB CHANNELS [pattern] / NUMSUB [channel ...] / NUMPAT / HELP, from the registry. */
void cmd_pubsub(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "channels") && x->argc > 3) { /* Redis's own check, not the arity */
        reply_error(x->out,
                    "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try PUBSUB "
                    "HELP.",
                    (int)(sub->len > 128 ? 128 : sub->len), sub->ptr);
    } else if (cmd_arg_is(sub, "channels")) {
        pthread_mutex_lock(&g_mu);
        size_t n = 0;
        for (size_t i = 0; i < g_nchans; i++) {
            n += x->argc == 2 || kv_glob_match(x->argv[2].ptr, x->argv[2].len, g_chans[i].name.p,
                                               g_chans[i].name.n, false);
        }
        reply_array(x->out, n);
        for (size_t i = 0; i < g_nchans; i++) {
            if (x->argc == 2 || kv_glob_match(x->argv[2].ptr, x->argv[2].len, g_chans[i].name.p,
                                              g_chans[i].name.n, false)) {
                reply_bulk(x->out, g_chans[i].name.p, g_chans[i].name.n);
            }
        }
        pthread_mutex_unlock(&g_mu);
    } else if (cmd_arg_is(sub, "numsub")) {
        reply_array(x->out, (x->argc - 2) * 2);
        pthread_mutex_lock(&g_mu);
        for (size_t i = 2; i < x->argc; i++) {
            struct gentry *e = g_find(g_chans, g_nchans, x->argv[i].ptr, x->argv[i].len);
            reply_bulk(x->out, x->argv[i].ptr, x->argv[i].len);
            reply_int(x->out, e != NULL ? (int64_t)e->total : 0);
        }
        pthread_mutex_unlock(&g_mu);
    } else if (cmd_arg_is(sub, "numpat") && x->argc == 2) {
        pthread_mutex_lock(&g_mu);
        size_t n = g_npats;
        pthread_mutex_unlock(&g_mu);
        reply_int(x->out, (int64_t)n);
    } else if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "channels") || cmd_arg_is(sub, "numpat") ||
               cmd_arg_is(sub, "help")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}
