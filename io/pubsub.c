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

/* What a subscription is to: a channel, a pattern, or a shard channel (SSUBSCRIBE:
 * its own namespace, which patterns do not match, as in Redis). */
enum ps_kind { PS_CHAN, PS_PAT, PS_SHARD, PS_KINDS };

static const char *const kind_sub[PS_KINDS] = {"subscribe", "psubscribe", "ssubscribe"};
static const char *const kind_unsub[PS_KINDS] = {"unsubscribe", "punsubscribe", "sunsubscribe"};

struct pubsub_conn {
    struct name *v[PS_KINDS]; /* in subscription order */
    size_t n[PS_KINDS], cap[PS_KINDS];
};

size_t pubsub_channels(const struct pubsub_conn *p)
{
    return p != NULL ? p->n[PS_CHAN] : 0;
}

size_t pubsub_patterns(const struct pubsub_conn *p)
{
    return p != NULL ? p->n[PS_PAT] : 0;
}

size_t pubsub_shard_channels(const struct pubsub_conn *p)
{
    return p != NULL ? p->n[PS_SHARD] : 0;
}

bool pubsub_all(const struct pubsub_conn *p,
                bool (*fn)(void *arg, const char *ch, size_t n, bool pattern), void *arg)
{
    for (int k = 0; p != NULL && k < PS_KINDS; k++) {
        for (size_t i = 0; i < p->n[k]; i++) {
            if (!fn(arg, p->v[k][i].p, p->v[k][i].n, k == PS_PAT)) {
                return false;
            }
        }
    }
    return true;
}

bool pubsub_subscribed(const struct pubsub_conn *p)
{
    return p != NULL && p->n[PS_CHAN] + p->n[PS_PAT] + p->n[PS_SHARD] > 0;
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

/* ---- the shard's maps: channel -> its subscribed connections here ---------------- */

/* ---- maps of names: chained hash tables, by XXH3 of the name -------------------------- */

/* The head of what a map holds (a channel of a shard, an entry of the registry). */
struct node {
    struct node *next;
    uint64_t h;
    struct name name;
};

struct nmap {
    struct node **b; /* NULL until the first node */
    size_t mask, n;
};

/* The link holding node p, or the empty link ending its bucket (the map has buckets). */
static struct node **nmap_slot(struct nmap *m, const char *p, size_t n, uint64_t h)
{
    struct node **pp = &m->b[h & m->mask];
    while (*pp != NULL && !((*pp)->h == h && name_eq(&(*pp)->name, p, n))) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* The node named p (h: its hash), or NULL. */
static struct node *nmap_find(struct nmap *m, const char *p, size_t n, uint64_t h)
{
    return m->b != NULL ? *nmap_slot(m, p, n, h) : NULL;
}

/* Rehashes into nb buckets (a power of two). */
static void nmap_resize(struct nmap *m, size_t nb)
{
    struct node **b = calloc(nb, sizeof *b);
    KV_ASSERT(b != NULL);
    for (size_t i = 0; m->b != NULL && i <= m->mask; i++) {
        for (struct node *e = m->b[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->mask = nb - 1;
}

/* Links in a new node (its name and hash set); past one node per bucket the map doubles. */
static void nmap_add(struct nmap *m, struct node *e)
{
    if (m->b == NULL) {
        nmap_resize(m, PS_BUCKETS_MIN);
    }
    e->next = m->b[e->h & m->mask];
    m->b[e->h & m->mask] = e;
    if (++m->n > m->mask + 1) {
        nmap_resize(m, (m->mask + 1) * 2);
    }
}

/* Unlinks the node *pp (a link from nmap_slot); a map a quarter full halves. */
static void nmap_unlink(struct nmap *m, struct node **pp)
{
    *pp = (*pp)->next;
    if (--m->n < (m->mask + 1) / 4 && m->mask + 1 > PS_BUCKETS_MIN) {
        nmap_resize(m, (m->mask + 1) / 2);
    }
}

/* ---- the shard's maps: channel -> its subscribed connections here ---------------- */

struct chan {
    struct node node; /* first: a node is its chan */
    struct conn **subs;
    size_t n, cap;
};

struct pat {
    struct name name;
    struct conn *c;
};

struct pubsub_local {
    struct nmap maps[2]; /* channels, shard channels */
    struct pat *pats;
    size_t npats, cap_pats;
};

static struct pubsub_local *local_of(struct shard *sh)
{
    if (sh->pubsub == NULL) {
        sh->pubsub = calloc(1, sizeof *sh->pubsub);
        KV_ASSERT(sh->pubsub != NULL);
    }
    return sh->pubsub;
}

static struct nmap *map_of(struct pubsub_local *l, enum ps_kind kind)
{
    KV_ASSERT(kind != PS_PAT);
    return &l->maps[kind == PS_SHARD];
}

static void local_sub(struct nmap *m, struct conn *c, const char *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n);
    struct chan *e = (struct chan *)nmap_find(m, p, n, h);
    if (e == NULL) {
        e = calloc(1, sizeof *e);
        KV_ASSERT(e != NULL);
        e->node.h = h;
        e->node.name = name_dup(p, n);
        nmap_add(m, &e->node);
    }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->subs = realloc(e->subs, e->cap * sizeof *e->subs);
        KV_ASSERT(e->subs != NULL);
    }
    e->subs[e->n++] = c;
}

/* Whether connection c is subscribed to channel p here (a hash lookup, then the
 * channel's subscribers on this shard: no walk over all of c's subscriptions). */
static bool local_has(struct nmap *m, const struct conn *c, const char *p, size_t n)
{
    const struct chan *e = (const struct chan *)nmap_find(m, p, n, XXH3_64bits(p, n));
    for (size_t i = 0; e != NULL && i < e->n; i++) {
        if (e->subs[i] == c) {
            return true;
        }
    }
    return false;
}

static void local_unsub(struct nmap *m, struct conn *c, const char *p, size_t n)
{
    KV_ASSERT(m->b != NULL);
    struct node **pp = nmap_slot(m, p, n, XXH3_64bits(p, n));
    struct chan *e = (struct chan *)*pp;
    KV_ASSERT(e != NULL);
    for (size_t i = 0; i < e->n; i++) {
        if (e->subs[i] == c) {
            memmove(&e->subs[i], &e->subs[i + 1], (e->n - i - 1) * sizeof e->subs[0]);
            e->n--;
            break;
        }
    }
    if (e->n == 0) {
        nmap_unlink(m, pp);
        free(e->subs);
        free(e->node.name.p);
        free(e);
    }
}

void pubsub_local_free(struct shard *sh)
{
    struct pubsub_local *l = sh->pubsub;
    if (l == NULL) {
        return;
    }
    /* every connection dropped its own */
    KV_ASSERT(l->maps[0].n == 0 && l->maps[1].n == 0 && l->npats == 0);
    free(l->maps[0].b);
    free(l->maps[1].b);
    free(l->pats);
    free(l);
    sh->pubsub = NULL;
}

/* ---- the server-wide counts ------------------------------------------------------ */

/* One channel, pattern or shard channel with subscribers somewhere: how many, and how
 * many on each shard. Hashed by kind (a PUBLISH from a script or a notification looks
 * its channel up under the mutex: no scan of every channel). */
struct gentry {
    struct node node; /* first: a node is its gentry */
    uint64_t total;
    uint32_t *per; /* per shard */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct nmap g_maps[PS_KINDS];
static uint32_t g_nthreads;

void pubsub_counts(size_t *channels, size_t *patterns, size_t *shard_channels)
{
    pthread_mutex_lock(&g_mu);
    *channels = g_maps[PS_CHAN].n;
    *patterns = g_maps[PS_PAT].n;
    *shard_channels = g_maps[PS_SHARD].n;
    pthread_mutex_unlock(&g_mu);
}

static struct gentry *g_find(enum ps_kind kind, const char *p, size_t len)
{
    return (struct gentry *)nmap_find(&g_maps[kind], p, len, XXH3_64bits(p, len));
}

/* Subscriptions that may receive keyspace notifications: to a channel starting with
 * "__key", or to any pattern. Read without the mutex by notify.c's fast check. */
static _Atomic int64_t g_notify_listeners;

bool pubsub_notify_listened(void)
{
    return atomic_load_explicit(&g_notify_listeners, memory_order_relaxed) > 0;
}

/* +1 / -1 subscription of shard `s` to p (a channel, pattern or shard channel). Under
 * g_mu. */
static void g_count(enum ps_kind kind, uint32_t s, const char *p, size_t n, int delta)
{
    if (kind == PS_PAT || (kind == PS_CHAN && n >= 5 && memcmp(p, "__key", 5) == 0)) {
        atomic_fetch_add_explicit(&g_notify_listeners, delta, memory_order_relaxed);
    }
    struct nmap *m = &g_maps[kind];
    uint64_t h = XXH3_64bits(p, n);
    struct gentry *e = (struct gentry *)nmap_find(m, p, n, h);
    if (e == NULL) {
        KV_ASSERT(delta > 0);
        e = calloc(1, sizeof *e);
        KV_ASSERT(e != NULL);
        e->node.h = h;
        e->node.name = name_dup(p, n);
        e->per = calloc(g_nthreads, sizeof e->per[0]);
        KV_ASSERT(e->per != NULL);
        nmap_add(m, &e->node);
    }
    e->per[s] = (uint32_t)((int64_t)e->per[s] + delta);
    e->total = (uint64_t)((int64_t)e->total + delta);
    if (e->total == 0) {
        nmap_unlink(m, nmap_slot(m, p, n, h));
        free(e->node.name.p);
        free(e->per);
        free(e);
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

/* The frame of a message: ["message", channel, payload], ["smessage", shard channel,
 * payload] or ["pmessage", pattern, channel, payload], an array in RESP2 and a push in
 * RESP3. */
static void push_message(struct conn *c, const char *kind, const struct name *pattern,
                         const char *ch, size_t chn, const char *msg, size_t mn)
{
    size_t cap = 64 + chn + mn + (pattern ? pattern->n : 0);
    char stack[512];
    char *buf = cap <= sizeof stack ? stack : malloc(cap);
    KV_ASSERT(buf != NULL);
    size_t off = (size_t)sprintf(buf, "%c%d\r\n", conn_resp(c) == 3 ? '>' : '*', pattern ? 4 : 3);
    off += put_bulk(buf + off, kind, strlen(kind));
    if (pattern != NULL) {
        off += put_bulk(buf + off, pattern->p, pattern->n);
    }
    off += put_bulk(buf + off, ch, chn);
    off += put_bulk(buf + off, msg, mn);
    conn_push(c, buf, off);
    if (buf != stack) {
        free(buf);
    }
}

/* Delivers to this shard's subscribers of the channel and of matching patterns (or of
 * the shard channel); returns how many got it (conn_push never closes a connection, so
 * the lists stay as they are while this walks them). */
static int64_t deliver(struct shard *sh, bool shard_chan, const char *ch, size_t chn,
                       const char *msg, size_t mn)
{
    struct pubsub_local *l = sh->pubsub;
    if (l == NULL) {
        return 0;
    }
    int64_t n = 0;
    struct nmap *m = map_of(l, shard_chan ? PS_SHARD : PS_CHAN);
    struct chan *e = (struct chan *)nmap_find(m, ch, chn, XXH3_64bits(ch, chn));
    for (size_t i = 0; e != NULL && i < e->n; i++) {
        push_message(e->subs[i], shard_chan ? "smessage" : "message", NULL, ch, chn, msg, mn);
        n++;
    }
    for (size_t i = 0; !shard_chan && i < l->npats; i++) {
        const struct pat *pt = &l->pats[i];
        if (kv_glob_match(pt->name.p, pt->name.n, ch, chn, false)) {
            push_message(pt->c, "pmessage", &pt->name, ch, chn, msg, mn);
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
    deliver(sh, m->flags != 0, p + 4, chn, p + 4 + chn, m->payload_len - 4 - chn);
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

/* The count a confirmation carries: shard channels count apart, as in Redis. */
static size_t subs_of(const struct pubsub_conn *p, enum ps_kind kind)
{
    return kind == PS_SHARD ? p->n[PS_SHARD] : p->n[PS_CHAN] + p->n[PS_PAT];
}

static void subscribe(struct cmd_ctx *x, enum ps_kind kind)
{
    KV_ASSERT(x->conn != NULL);
    struct pubsub_conn *ps = conn_ps(x->conn);
    struct pubsub_local *l = local_of(x->sh);
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        bool have = kind == PS_PAT ? find(ps->v[kind], ps->n[kind], a->ptr, a->len) >= 0
                                   : local_has(map_of(l, kind), x->conn, a->ptr, a->len);
        if (!have) {
            push_name(&ps->v[kind], &ps->n[kind], &ps->cap[kind], name_dup(a->ptr, a->len));
            if (kind == PS_PAT) {
                if (l->npats == l->cap_pats) {
                    l->cap_pats = l->cap_pats ? l->cap_pats * 2 : 8;
                    l->pats = realloc(l->pats, l->cap_pats * sizeof *l->pats);
                    KV_ASSERT(l->pats != NULL);
                }
                l->pats[l->npats++] =
                    (struct pat){.name = ps->v[kind][ps->n[kind] - 1], .c = x->conn};
            } else {
                local_sub(map_of(l, kind), x->conn, a->ptr, a->len);
            }
            pthread_mutex_lock(&g_mu);
            g_nthreads = x->sh->srv->nthreads;
            g_count(kind, x->sh->id, a->ptr, a->len, 1);
            pthread_mutex_unlock(&g_mu);
        }
        reply_confirm(x, kind_sub[kind], a, subs_of(ps, kind));
    }
}

/* Removes subscription i of the connection (its name freed). */
/* Removes connection c's subscription s from the shard's map and the registry (not from
 * the connection's list, nor frees the name). */
static void unsub_name(struct shard *sh, struct conn *c, enum ps_kind kind, struct name s)
{
    struct pubsub_local *l = local_of(sh);
    if (kind == PS_PAT) {
        for (size_t k = 0; k < l->npats; k++) {
            if (l->pats[k].c == c && name_eq(&l->pats[k].name, s.p, s.n)) {
                memmove(&l->pats[k], &l->pats[k + 1], (l->npats - k - 1) * sizeof l->pats[0]);
                l->npats--;
                break;
            }
        }
    } else {
        local_unsub(map_of(l, kind), c, s.p, s.n);
    }
    pthread_mutex_lock(&g_mu);
    g_count(kind, sh->id, s.p, s.n, -1);
    pthread_mutex_unlock(&g_mu);
}

/* Removes subscription i of the connection (its name freed). */
static void unsub_at(struct shard *sh, struct conn *c, struct pubsub_conn *ps, enum ps_kind kind,
                     size_t i)
{
    struct name *v = ps->v[kind];
    struct name s = v[i];
    memmove(&v[i], &v[i + 1], (ps->n[kind] - i - 1) * sizeof v[0]);
    ps->n[kind]--;
    unsub_name(sh, c, kind, s);
    free(s.p);
}

static void unsubscribe(struct cmd_ctx *x, enum ps_kind kind)
{
    KV_ASSERT(x->conn != NULL);
    struct pubsub_conn *ps = conn_ps(x->conn);
    if (x->argc == 1) { /* all of them, in subscription order */
        if (ps->n[kind] == 0) {
            reply_confirm(x, kind_unsub[kind], NULL, subs_of(ps, kind));
        }
        /* front to back, the list cut once at the end (no shift per name) */
        size_t n = ps->n[kind];
        struct name *v = ps->v[kind];
        for (size_t i = 0; i < n; i++) {
            unsub_name(x->sh, x->conn, kind, v[i]);
            ps->n[kind]--; /* (the count the confirmation carries) */
            struct resp_arg a = {.ptr = v[i].p, .len = v[i].n};
            reply_confirm(x, kind_unsub[kind], &a, subs_of(ps, kind));
            free(v[i].p);
        }
        KV_ASSERT(ps->n[kind] == 0);
        return;
    }
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        ssize_t at = find(ps->v[kind], ps->n[kind], a->ptr, a->len);
        if (at >= 0) {
            unsub_at(x->sh, x->conn, ps, kind, (size_t)at);
        }
        reply_confirm(x, kind_unsub[kind], a, subs_of(ps, kind));
    }
}

void pubsub_drop(struct shard *sh, struct conn *c)
{
    struct pubsub_conn **pp = conn_pubsub(c);
    struct pubsub_conn *ps = *pp;
    if (ps == NULL) {
        return;
    }
    for (int k = 0; k < PS_KINDS; k++) {
        while (ps->n[k] > 0) {
            unsub_at(sh, c, ps, (enum ps_kind)k, ps->n[k] - 1);
        }
        free(ps->v[k]);
    }
    free(ps);
    *pp = NULL;
}

void cmd_subscribe(struct cmd_ctx *x)
{
    subscribe(x, PS_CHAN);
}

void cmd_psubscribe(struct cmd_ctx *x)
{
    subscribe(x, PS_PAT);
}

void cmd_ssubscribe(struct cmd_ctx *x)
{
    if (conn_in_multi(x->conn)) { /* queued in MULTI: Redis's reply when EXEC runs it */
        reply_error(x->out, "ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client");
        return;
    }
    subscribe(x, PS_SHARD);
}

void cmd_unsubscribe(struct cmd_ctx *x)
{
    unsubscribe(x, PS_CHAN);
}

void cmd_punsubscribe(struct cmd_ctx *x)
{
    unsubscribe(x, PS_PAT);
}

void cmd_sunsubscribe(struct cmd_ctx *x)
{
    unsubscribe(x, PS_SHARD);
}

/*
 * PUBLISH channel message runs on every shard (a fan-out, CMD_MERGE_SUM): each delivers
 * to its own subscribers of the channel and of matching patterns (a connection matching
 * both counted twice, as in Redis) and replies how many; the client's reply is the sum
 * and leaves only when every shard has delivered, so a subscriber's replies to commands
 * it sends after that come after the message, as in Redis. SPUBLISH does the same for
 * the shard channel's subscribers.
 */
void cmd_publish(struct cmd_ctx *x)
{
    int64_t n =
        deliver(x->sh, false, x->argv[1].ptr, x->argv[1].len, x->argv[2].ptr, x->argv[2].len);
    x->sum = n;
    reply_int(x->out, n);
}

void cmd_spublish(struct cmd_ctx *x)
{
    int64_t n =
        deliver(x->sh, true, x->argv[1].ptr, x->argv[1].len, x->argv[2].ptr, x->argv[2].len);
    x->sum = n;
    reply_int(x->out, n);
}

int64_t pubsub_publish_async(struct shard *sh, bool shard_chan, const char *ch, size_t chn,
                             const char *msg, size_t mn)
{
    struct server *srv = sh->srv;
    bool to[KVD_THREADS_MAX] = {false};
    uint64_t total = 0;
    pthread_mutex_lock(&g_mu);
    enum ps_kind kind = shard_chan ? PS_SHARD : PS_CHAN;
    struct gentry *e = g_find(kind, ch, chn);
    for (uint32_t s = 0; e != NULL && s < srv->nthreads; s++) {
        to[s] |= e->per[s] > 0;
    }
    total += e != NULL ? e->total : 0;
    const struct nmap *pm = &g_maps[PS_PAT];
    for (size_t i = 0; !shard_chan && pm->b != NULL && i <= pm->mask; i++) {
        for (const struct node *nd = pm->b[i]; nd != NULL; nd = nd->next) {
            const struct gentry *p = (const struct gentry *)nd;
            if (kv_glob_match(nd->name.p, nd->name.n, ch, chn, false)) {
                total += p->total;
                for (uint32_t s = 0; s < srv->nthreads; s++) {
                    to[s] |= p->per[s] > 0;
                }
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
    for (uint32_t s = 0; s < srv->nthreads; s++) {
        if (!to[s]) {
            continue;
        }
        if (s == sh->id) {
            deliver(sh, shard_chan, ch, chn, msg, mn);
            continue;
        }
        size_t len = 4 + chn + mn;
        char *payload = conn_blob_alloc(sh, len);
        uint32_t n = (uint32_t)chn;
        memcpy(payload, &n, 4);
        memcpy(payload + 4, ch, chn);
        memcpy(payload + 4 + chn, msg, mn);
        struct xmsg m = {.kind = XM_PUBLISH,
                         .src = (uint16_t)sh->id,
                         .payload = payload,
                         .payload_len = len,
                         .flags = shard_chan};
        conn_send_xmsg(sh, NULL, s, &m);
    }
    return (int64_t)total;
}

/* CHANNELS / SHARDCHANNELS [pattern]: the names of one kind matching the pattern. */
static bool names_match(struct cmd_ctx *x, const struct node *e)
{
    return x->argc == 2 ||
           kv_glob_match(x->argv[2].ptr, x->argv[2].len, e->name.p, e->name.n, false);
}

static void reply_names(struct cmd_ctx *x, enum ps_kind kind)
{
    pthread_mutex_lock(&g_mu);
    const struct nmap *m = &g_maps[kind];
    size_t n = 0;
    for (size_t i = 0; m->b != NULL && i <= m->mask; i++) {
        for (const struct node *e = m->b[i]; e != NULL; e = e->next) {
            n += names_match(x, e);
        }
    }
    reply_array(x->out, n);
    for (size_t i = 0; m->b != NULL && i <= m->mask; i++) {
        for (const struct node *e = m->b[i]; e != NULL; e = e->next) {
            if (names_match(x, e)) {
                reply_bulk(x->out, e->name.p, e->name.n);
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
}

/* NUMSUB / SHARDNUMSUB [name ...]: each name and its subscribers. */
static void reply_numsub(struct cmd_ctx *x, enum ps_kind kind)
{
    reply_array(x->out, (x->argc - 2) * 2);
    pthread_mutex_lock(&g_mu);
    for (size_t i = 2; i < x->argc; i++) {
        struct gentry *e = g_find(kind, x->argv[i].ptr, x->argv[i].len);
        reply_bulk(x->out, x->argv[i].ptr, x->argv[i].len);
        reply_int(x->out, e != NULL ? (int64_t)e->total : 0);
    }
    pthread_mutex_unlock(&g_mu);
}

/* PUBSUB CHANNELS [pattern] / NUMSUB [channel ...] / NUMPAT / SHARDCHANNELS [pattern] /
 * SHARDNUMSUB [channel ...] / HELP, from the registry. */
void cmd_pubsub(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    bool chans = cmd_arg_is(sub, "channels"), schans = cmd_arg_is(sub, "shardchannels");
    if ((chans || schans) && x->argc > 3) { /* Redis's own check, not the arity */
        reply_error(x->out,
                    "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try PUBSUB "
                    "HELP.",
                    (int)(sub->len > 128 ? 128 : sub->len), sub->ptr);
    } else if (chans || schans) {
        reply_names(x, chans ? PS_CHAN : PS_SHARD);
    } else if (cmd_arg_is(sub, "numsub")) {
        reply_numsub(x, PS_CHAN);
    } else if (cmd_arg_is(sub, "shardnumsub")) {
        reply_numsub(x, PS_SHARD);
    } else if (cmd_arg_is(sub, "numpat") && x->argc == 2) {
        pthread_mutex_lock(&g_mu);
        size_t n = g_maps[PS_PAT].n;
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
            "SHARDCHANNELS [<pattern>]",
            ("    Return the currently active shard level channels matching a <pattern> "
             "(default: '*')."),
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "numpat") || cmd_arg_is(sub, "help")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}
