/*
 * users.c: ACL users (see users.h). The registry is an array of slots under one mutex,
 * each holding the current object of one user and a tag that changes when the slot is
 * reused; objects are never changed once published. The rule language, the replies and
 * the error texts are Redis 7.0's; the "commands" description is Redis 7.2's (the rules
 * as given, later ones replacing earlier ones for the same command or category), where
 * 7.0 rebuilds it from the bitmap by a heuristic.
 */
#include "users.h"

#include "cmd.h"
#include "cmd_docs.h"
#include "kv_assert.h"
#include "kv_buf.h"
#include "kv_file.h"
#include "kv_config.h"
#include "kv_glob.h"
#include "kv_log.h"
#include "kv_sha256.h"
#include "kvd_settings.h"
#include "reply.h"
#include "resp_parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define ROWS_MAX     512 /* command rows a bitmap covers (cmd_stat_rows() is below) */
#define ROW_WORDS    (ROWS_MAX / 64)
#define LOG_GROUP_MS 60000 /* a refusal like a logged one within this joins its entry */

#define PERM_R 1u
#define PERM_W 2u

const char *const users_categories[] = {
    "keyspace", "read",   "write",       "set",       "sortedset",  "list",        "hash",
    "string",   "bitmap", "hyperloglog", "geo",       "stream",     "pubsub",      "admin",
    "fast",     "slow",   "blocking",    "dangerous", "connection", "transaction", "scripting",
};
const size_t users_ncategories = sizeof users_categories / sizeof users_categories[0];

/* Errors of a rule, as Redis's errno values name them. */
enum rule_err {
    RULE_OK = 0,
    RULE_ENOENT,  /* unknown command or category */
    RULE_EINVAL,  /* syntax */
    RULE_EEXIST,  /* key pattern after allkeys */
    RULE_EISDIR,  /* channel pattern after allchannels */
    RULE_ENODEV,  /* removing a password the user does not have */
    RULE_EBADMSG, /* bad password hash */
    RULE_ECHILD,  /* first argument of a subcommand */
};

static const char *rule_err_text(enum rule_err e)
{
    switch (e) {
    case RULE_ENOENT:
        return "Unknown command or category name in ACL";
    case RULE_EEXIST:
        return "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and "
               "does not have any effect. Try 'resetkeys' to start with an empty list of "
               "patterns";
    case RULE_EISDIR:
        return "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid "
               "and does not have any effect. Try 'resetchannels' to start with an empty list "
               "of channels";
    case RULE_ENODEV:
        return "The password you are trying to remove from the user does not exist";
    case RULE_EBADMSG:
        return "The password hash must be exactly 64 characters and contain only lowercase "
               "hexadecimal characters";
    case RULE_ECHILD:
        return "Allowing first-arg of a subcommand is not supported";
    default:
        return "Syntax error";
    }
}

/* ---- small strings ----------------------------------------------------------------- */

struct str {
    char *p; /* NUL-terminated copy */
    size_t len;
};

static void *xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    KV_ASSERT(p != NULL);
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    KV_ASSERT(p != NULL);
    return p;
}

static char *xdup(const char *s, size_t n)
{
    char *p = xalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- users and selectors ------------------------------------------------------------ */

struct keypat {
    struct str s;
    unsigned flags; /* keys: PERM_R | PERM_W; channels: 0 */
};

/* A selector's key patterns, or its channel patterns: in the order given, each once. */
struct patlist {
    struct keypat *v;
    uint32_t n;
};

static void pl_clear(struct patlist *l)
{
    for (uint32_t i = 0; i < l->n; i++) {
        free(l->v[i].s.p);
    }
    l->n = 0;
}

static void pl_copy(struct patlist *dst, const struct patlist *src)
{
    dst->v = xalloc(src->n * sizeof *dst->v);
    dst->n = src->n;
    for (uint32_t i = 0; i < src->n; i++) {
        dst->v[i].s.p = xdup(src->v[i].s.p, src->v[i].s.len);
        dst->v[i].s.len = src->v[i].s.len;
        dst->v[i].flags = src->v[i].flags;
    }
}

/* Adds a pattern, or its flags to the same pattern given before (as Redis). */
static void pl_add(struct patlist *l, const char *p, size_t n, unsigned flags)
{
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->v[i].s.len == n && memcmp(l->v[i].s.p, p, n) == 0) {
            l->v[i].flags |= flags;
            return;
        }
    }
    l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = (struct keypat){.s = {xdup(p, n), n}, .flags = flags};
}

struct firstarg {
    uint16_t row;
    struct str arg;
};

struct sel {
    uint64_t cmds[ROW_WORDS]; /* allowed rows */
    bool future;              /* +@all: described as starting from +@all */
    bool allkeys, allchannels;
    struct patlist keys, chans;
    struct firstarg *fa;
    uint32_t nfa;
    char *rules; /* the command rules in order ("+@read -keys"), NUL-terminated */
};

enum { SANITIZE_NONE, SANITIZE_YES, SANITIZE_SKIP };

struct user {
    _Atomic uint32_t refs;
    uint32_t handle;
    char *name;
    size_t name_len;
    bool on, nopass;
    uint8_t sanitize;
    char (*pass)[KV_SHA256_HEX]; /* hex SHA-256 of each password */
    uint32_t npass;
    struct sel *sels; /* [0]: the root selector */
    uint32_t nsels;
    bool unrestricted;
};

/* Per command row: its ACL categories (bit i: users_categories[i]), its container's row
 * (itself if none), and whether it is a container. */
static uint32_t row_cats[ROWS_MAX];
static uint16_t row_parent[ROWS_MAX];
static bool row_container[ROWS_MAX];
static bool row_hidden[ROWS_MAX];
static size_t nrows;

static bool bit_get(const uint64_t *w, size_t row)
{
    return (w[row / 64] >> (row % 64)) & 1u;
}

static void bit_set(uint64_t *w, size_t row, bool v)
{
    if (v) {
        w[row / 64] |= 1ull << (row % 64);
    } else {
        w[row / 64] &= ~(1ull << (row % 64));
    }
}

static int category_index(const char *name, size_t n)
{
    for (size_t i = 0; i < users_ncategories; i++) {
        if (strlen(users_categories[i]) == n && strncasecmp(users_categories[i], name, n) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static uint32_t cats_of(const char *acl)
{
    uint32_t m = 0;
    while (acl != NULL && *acl != '\0') {
        size_t n = strcspn(acl, " ");
        if (n > 1 && acl[0] == '@') {
            int c = category_index(acl + 1, n - 1);
            if (c >= 0) {
                m |= 1u << c;
            }
        }
        acl += n + (acl[n] == ' ');
    }
    return m;
}

static void rows_init(void)
{
    size_t ntable;
    const struct cmd_desc *table = cmd_table(&ntable);
    nrows = cmd_stat_rows();
    KV_ASSERT(nrows <= ROWS_MAX);
    for (size_t r = 0; r < nrows; r++) {
        const char *name = cmd_stat_name(r);
        const char *bar = strchr(name, '|');
        row_parent[r] = (uint16_t)r;
        if (r < ntable) {
            row_hidden[r] = (table[r].flags & CMD_HIDDEN) != 0;
            row_container[r] = (table[r].flags & CMD_SUBCMDS) != 0;
            const struct cmd_docs *m = row_hidden[r] ? NULL : cmd_docs_find(name);
            row_cats[r] = m != NULL ? cats_of(m->acl) : 0;
            continue;
        }
        KV_ASSERT(bar != NULL);
        const struct cmd_desc *p = cmd_find(name, (size_t)(bar - name));
        KV_ASSERT(p != NULL);
        row_parent[r] = (uint16_t)cmd_index(p);
        const struct cmd_docs *pm = cmd_docs_find(p->name);
        const struct cmd_docs *m =
            pm != NULL ? cmd_docs_find_sub(pm, bar + 1, strlen(bar + 1)) : NULL;
        row_cats[r] = m != NULL ? cats_of(m->acl) : 0;
    }
}

/* The row of "name" or "container|sub" (any case), or -1. */
static int row_of(const char *name, size_t n)
{
    const char *bar = memchr(name, '|', n);
    const struct cmd_desc *d = cmd_find(name, bar != NULL ? (size_t)(bar - name) : n);
    if (d == NULL) {
        return -1;
    }
    if (bar == NULL) {
        return (int)cmd_index(d);
    }
    if (!(d->flags & CMD_SUBCMDS)) {
        return -1;
    }
    struct resp_arg argv[2] = {{.ptr = name, .len = (size_t)(bar - name)},
                               {.ptr = bar + 1, .len = n - (size_t)(bar - name) - 1}};
    uint16_t row = cmd_stat_row(d, 2, argv);
    return row == CMD_ROW_NONE ? -1 : (int)row;
}

static void sel_free(struct sel *s)
{
    pl_clear(&s->keys);
    free(s->keys.v);
    pl_clear(&s->chans);
    free(s->chans.v);
    for (uint32_t i = 0; i < s->nfa; i++) {
        free(s->fa[i].arg.p);
    }
    free(s->fa);
    free(s->rules);
    memset(s, 0, sizeof *s);
}

static void sel_init(struct sel *s)
{
    memset(s, 0, sizeof *s);
    s->rules = xdup("", 0);
    s->allchannels = KV_CONF_GET(kvd_settings.acl_pubsub_default) == 0; /* acl-pubsub-default */
}

static void sel_copy(struct sel *dst, const struct sel *src)
{
    *dst = *src;
    pl_copy(&dst->keys, &src->keys);
    pl_copy(&dst->chans, &src->chans);
    dst->fa = xalloc(src->nfa * sizeof *dst->fa);
    for (uint32_t i = 0; i < src->nfa; i++) {
        dst->fa[i].row = src->fa[i].row;
        dst->fa[i].arg.p = xdup(src->fa[i].arg.p, src->fa[i].arg.len);
        dst->fa[i].arg.len = src->fa[i].arg.len;
    }
    dst->rules = xdup(src->rules, strlen(src->rules));
}

static void user_free(struct user *u)
{
    for (uint32_t i = 0; i < u->nsels; i++) {
        sel_free(&u->sels[i]);
    }
    free(u->sels);
    free(u->pass);
    free(u->name);
    free(u);
}

static void user_ref(struct user *u)
{
    atomic_fetch_add_explicit(&u->refs, 1, memory_order_relaxed);
}

static void user_unref(struct user *u)
{
    if (u != NULL && atomic_fetch_sub_explicit(&u->refs, 1, memory_order_acq_rel) == 1) {
        user_free(u);
    }
}

/* A new user as ACL SETUSER makes one: off, no passwords, no permissions. */
static struct user *user_new(const char *name, size_t n)
{
    struct user *u = xalloc(sizeof *u);
    memset(u, 0, sizeof *u);
    atomic_init(&u->refs, 1);
    u->name = xdup(name, n);
    u->name_len = n;
    u->sels = xalloc(sizeof *u->sels);
    u->nsels = 1;
    sel_init(&u->sels[0]);
    return u;
}

static struct user *user_copy(const struct user *src)
{
    struct user *u = xalloc(sizeof *u);
    *u = *src;
    atomic_init(&u->refs, 1);
    u->name = xdup(src->name, src->name_len);
    u->pass = xalloc(src->npass * sizeof *u->pass);
    if (src->npass > 0) {
        memcpy(u->pass, src->pass, src->npass * sizeof *u->pass);
    }
    u->sels = xalloc(src->nsels * sizeof *u->sels);
    for (uint32_t i = 0; i < src->nsels; i++) {
        sel_copy(&u->sels[i], &src->sels[i]);
    }
    return u;
}

static void user_finish(struct user *u)
{
    const struct sel *s = &u->sels[0];
    bool all = s->allkeys && s->allchannels;
    for (size_t r = 0; all && r < nrows; r++) {
        all = row_hidden[r] || bit_get(s->cmds, r);
    }
    u->unrestricted = all;
}

/* ---- the rule language ------------------------------------------------------------------ */

/* Drops "+rule"/"-rule" and, for a command, its "+rule|sub" entries; appends the new one
 * (Redis 7.2's ACLUpdateCommandRules). */
static void rules_update(struct sel *s, const char *rule, size_t n, bool allow)
{
    char *lower = xalloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        lower[i] = (char)((unsigned)(rule[i] - 'A') < 26u ? rule[i] + 32 : rule[i]);
    }
    struct kv_buf b = {0};
    for (const char *p = s->rules; *p != '\0';) {
        size_t len = strcspn(p, " ");
        const char *name = p + 1;
        size_t nlen = len - 1;
        bool same = nlen >= n && memcmp(name, lower, n) == 0 && (nlen == n || name[n] == '|');
        if (!same) {
            if (b.len > 0) {
                kv_buf_put(&b, " ", 1);
            }
            kv_buf_put(&b, p, len);
        }
        p += len + (p[len] == ' ');
    }
    if (b.len > 0) {
        kv_buf_put(&b, " ", 1);
    }
    kv_buf_put(&b, allow ? "+" : "-", 1);
    kv_buf_put(&b, lower, n);
    free(lower);
    free(s->rules);
    s->rules = kv_buf_cstr(&b);
}

/* A rule naming a command of Redis that kvd lacks: kept in the text, granting nothing. */
static enum rule_err redis_only_rule(struct sel *s, const char *name, size_t n, bool allow)
{
    rules_update(s, name, n, allow);
    return RULE_OK;
}

static void firstargs_drop(struct sel *s, size_t row)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nfa; i++) {
        if (s->fa[i].row == row) {
            free(s->fa[i].arg.p);
        } else {
            s->fa[k++] = s->fa[i];
        }
    }
    s->nfa = k;
}

/* A command row, and with a container all its subcommands' rows. */
static void perm_row(struct sel *s, size_t row, bool allow)
{
    bit_set(s->cmds, row, allow);
    firstargs_drop(s, row);
    if (row_container[row]) {
        for (size_t r = 0; r < nrows; r++) {
            if (row_parent[r] == row && r != row) {
                bit_set(s->cmds, r, allow);
            }
        }
    }
}

static bool has_space(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)p[i]) || p[i] == '\0') { /* Redis's ACLStringHasSpaces */
            return true;
        }
    }
    return false;
}

static enum rule_err sel_command_rule(struct sel *s, const char *op, size_t n)
{
    bool allow = op[0] == '+';
    const char *name = op + 1;
    size_t nlen = n - 1;
    if (nlen == 0) {
        return RULE_ENOENT; /* "+" alone: no such command, as Redis says */
    }
    if (name[0] == '@') {
        if (nlen == 4 && strncasecmp(name, "@all", 4) == 0) {
            memset(s->cmds, allow ? 0xff : 0, sizeof s->cmds);
            s->future = allow;
            for (uint32_t i = 0; i < s->nfa; i++) {
                free(s->fa[i].arg.p);
            }
            s->nfa = 0;
            s->rules[0] = '\0';
            return RULE_OK;
        }
        int c = category_index(name + 1, nlen - 1);
        if (c < 0) {
            return RULE_ENOENT;
        }
        for (size_t r = 0; r < nrows; r++) {
            if (row_cats[r] & (1u << c)) {
                bit_set(s->cmds, r, allow);
                firstargs_drop(s, r);
            }
        }
        rules_update(s, name, nlen, allow);
        return RULE_OK;
    }
    const char *bar = NULL;
    for (size_t i = nlen; i > 0; i--) { /* the last '|' */
        if (name[i - 1] == '|') {
            bar = name + i - 1;
            break;
        }
    }
    if (!allow || bar == NULL) {
        int row = row_of(name, nlen);
        size_t plen = bar != NULL ? (size_t)(bar - name) : nlen;
        if (row < 0 && nlen < 64 && memchr(name, '|', plen) == NULL && row_of(name, plen) < 0 &&
            cmd_docs_redis_has(name, plen)) {
            /* a command of Redis that kvd lacks (+hset, +cluster, -cluster|info): the rule
             * is kept and shown as Redis shows it; it grants nothing kvd could run */
            return redis_only_rule(s, name, nlen, allow);
        }
        if (row < 0 || row_hidden[row]) {
            return RULE_ENOENT;
        }
        perm_row(s, (size_t)row, allow);
        const char *full = cmd_stat_name((size_t)row);
        rules_update(s, full, strlen(full), allow);
        return RULE_OK;
    }
    /* +command|sub: a subcommand, or a first argument of a command without any */
    size_t plen = (size_t)(bar - name);
    int prow = row_of(name, plen);
    if (prow < 0 && cmd_docs_redis_has(name, plen) && memchr(name, '|', plen) == NULL &&
        nlen < 64) { /* of a Redis command kvd lacks (+cluster|info): kept, as above */
        return redis_only_rule(s, name, nlen, true);
    }
    if (prow < 0) {
        return RULE_ENOENT;
    }
    if (memchr(name, '|', plen) != NULL) {
        return RULE_ECHILD; /* "acl|cat|x": a first argument of a subcommand */
    }
    size_t slen = nlen - plen - 1;
    if (slen == 0) {
        return RULE_EINVAL;
    }
    if (row_container[prow]) {
        int row = row_of(name, nlen);
        if (row < 0) {
            return RULE_ENOENT;
        }
        perm_row(s, (size_t)row, true);
    } else {
        bool have = false;
        for (uint32_t i = 0; i < s->nfa && !have; i++) {
            have = s->fa[i].row == prow && s->fa[i].arg.len == slen &&
                   strncasecmp(s->fa[i].arg.p, bar + 1, slen) == 0;
        }
        if (!have) {
            s->fa = xrealloc(s->fa, (s->nfa + 1) * sizeof *s->fa);
            s->fa[s->nfa].row = (uint16_t)prow;
            s->fa[s->nfa].arg.p = xdup(bar + 1, slen);
            s->fa[s->nfa].arg.len = slen;
            s->nfa++;
        }
    }
    rules_update(s, name, nlen, true);
    return RULE_OK;
}

static enum rule_err sel_rule(struct sel *s, const char *op, size_t n)
{
    if ((n == 7 && strncasecmp(op, "allkeys", 7) == 0) || (n == 2 && memcmp(op, "~*", 2) == 0)) {
        s->allkeys = true;
        pl_clear(&s->keys);
    } else if (n == 9 && strncasecmp(op, "resetkeys", 9) == 0) {
        s->allkeys = false;
        pl_clear(&s->keys);
    } else if ((n == 11 && strncasecmp(op, "allchannels", 11) == 0) ||
               (n == 2 && memcmp(op, "&*", 2) == 0)) {
        s->allchannels = true;
        pl_clear(&s->chans);
    } else if (n == 13 && strncasecmp(op, "resetchannels", 13) == 0) {
        s->allchannels = false;
        pl_clear(&s->chans);
    } else if ((n == 11 && strncasecmp(op, "allcommands", 11) == 0)) {
        return sel_command_rule(s, "+@all", 5);
    } else if ((n == 10 && strncasecmp(op, "nocommands", 10) == 0)) {
        return sel_command_rule(s, "-@all", 5);
    } else if (n > 0 && (op[0] == '~' || op[0] == '%')) {
        if (s->allkeys) {
            return RULE_EEXIST;
        }
        unsigned flags = 0;
        size_t off = 1;
        if (op[0] == '%') {
            for (; off < n; off++) {
                char c = (char)(op[off] & ~0x20);
                if (c == 'R' && !(flags & PERM_R)) {
                    flags |= PERM_R;
                } else if (c == 'W' && !(flags & PERM_W)) {
                    flags |= PERM_W;
                } else if (op[off] == '~') {
                    off++;
                    break;
                } else {
                    return RULE_EINVAL;
                }
            }
            if (flags == 0) {
                return RULE_EINVAL; /* ("%R" alone is an empty pattern, as in Redis 7.0) */
            }
        } else {
            flags = PERM_R | PERM_W;
        }
        if (has_space(op + off, n - off)) {
            return RULE_EINVAL;
        }
        if (flags == (PERM_R | PERM_W) && n - off == 1 && op[off] == '*') {
            return sel_rule(s, "allkeys", 7);
        }
        pl_add(&s->keys, op + off, n - off, flags);
    } else if (n > 0 && op[0] == '&') {
        if (s->allchannels) {
            return RULE_EISDIR;
        }
        if (has_space(op + 1, n - 1)) {
            return RULE_EINVAL;
        }
        pl_add(&s->chans, op + 1, n - 1, 0);
    } else if (n >= 1 && (op[0] == '+' || op[0] == '-')) {
        return sel_command_rule(s, op, n);
    } else {
        return RULE_EINVAL;
    }
    return RULE_OK;
}

static bool valid_hash(const char *p, size_t n)
{
    if (n != KV_SHA256_HEX - 1) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

static enum rule_err user_rule(struct user *u, const char *op, size_t n);

/* "(rule rule ...)": a new selector. */
static enum rule_err selector_rule(struct user *u, const char *op, size_t n)
{
    struct sel s;
    sel_init(&s);
    size_t i = 1;
    while (i < n - 1) {
        while (i < n - 1 && op[i] == ' ') {
            i++;
        }
        size_t start = i;
        while (i < n - 1 && op[i] != ' ') {
            i++;
        }
        if (i == start) {
            break;
        }
        enum rule_err e = sel_rule(&s, op + start, i - start);
        if (e != RULE_OK) {
            sel_free(&s);
            return e;
        }
    }
    u->sels = xrealloc(u->sels, (u->nsels + 1) * sizeof *u->sels);
    u->sels[u->nsels++] = s;
    return RULE_OK;
}

static enum rule_err user_rule(struct user *u, const char *op, size_t n)
{
    char hex[KV_SHA256_HEX];
    if (n == 0) {
        return RULE_OK; /* an empty rule does nothing, as in Redis */
    }
    if (n == 2 && strncasecmp(op, "on", 2) == 0) {
        u->on = true;
    } else if (n == 3 && strncasecmp(op, "off", 3) == 0) {
        u->on = false;
    } else if (n == 21 && strncasecmp(op, "skip-sanitize-payload", 21) == 0) {
        u->sanitize = SANITIZE_SKIP;
    } else if (n == 16 && strncasecmp(op, "sanitize-payload", 16) == 0) {
        u->sanitize = SANITIZE_YES;
    } else if (n == 6 && strncasecmp(op, "nopass", 6) == 0) {
        u->nopass = true;
        u->npass = 0;
    } else if (n == 9 && strncasecmp(op, "resetpass", 9) == 0) {
        u->nopass = false;
        u->npass = 0;
    } else if (n > 0 && (op[0] == '>' || op[0] == '#')) {
        if (op[0] == '>') {
            kv_sha256_hex(op + 1, n - 1, hex);
        } else if (!valid_hash(op + 1, n - 1)) {
            return RULE_EBADMSG;
        } else {
            memcpy(hex, op + 1, KV_SHA256_HEX - 1);
            hex[KV_SHA256_HEX - 1] = '\0';
        }
        bool have = false;
        for (uint32_t i = 0; i < u->npass && !have; i++) {
            have = strcmp(u->pass[i], hex) == 0;
        }
        if (!have) {
            u->pass = xrealloc(u->pass, (u->npass + 1) * sizeof *u->pass);
            memcpy(u->pass[u->npass++], hex, KV_SHA256_HEX);
        }
        u->nopass = false;
    } else if (n > 0 && (op[0] == '<' || op[0] == '!')) {
        if (op[0] == '<') {
            kv_sha256_hex(op + 1, n - 1, hex);
        } else if (!valid_hash(op + 1, n - 1)) {
            return RULE_EBADMSG;
        } else {
            memcpy(hex, op + 1, KV_SHA256_HEX - 1);
            hex[KV_SHA256_HEX - 1] = '\0';
        }
        uint32_t i = 0;
        while (i < u->npass && strcmp(u->pass[i], hex) != 0) {
            i++;
        }
        if (i == u->npass) {
            return RULE_ENODEV;
        }
        memmove(u->pass[i], u->pass[i + 1], (u->npass - i - 1) * sizeof *u->pass);
        u->npass--;
    } else if (n >= 2 && op[0] == '(' && op[n - 1] == ')') {
        return selector_rule(u, op, n);
    } else if (n == 14 && strncasecmp(op, "clearselectors", 14) == 0) {
        for (uint32_t i = 1; i < u->nsels; i++) {
            sel_free(&u->sels[i]);
        }
        u->nsels = 1;
    } else if (n == 5 && strncasecmp(op, "reset", 5) == 0) {
        user_rule(u, "resetpass", 9);
        sel_rule(&u->sels[0], "resetkeys", 9);
        sel_rule(&u->sels[0], "resetchannels", 13);
        if (KV_CONF_GET(kvd_settings.acl_pubsub_default) == 0) {
            sel_rule(&u->sels[0], "allchannels", 11);
        }
        user_rule(u, "off", 3);
        user_rule(u, "sanitize-payload", 16);
        user_rule(u, "clearselectors", 14);
        sel_rule(&u->sels[0], "-@all", 5);
    } else {
        return sel_rule(&u->sels[0], op, n);
    }
    return RULE_OK;
}

/* ---- descriptions -------------------------------------------------------------------- */

/* "~*" / "&*" for all, else the patterns: "%R~a ~b" (keys) or "&c &d" (channels). */
static void describe_pats(struct kv_buf *b, const struct patlist *l, bool all, bool chans)
{
    if (all) {
        kv_buf_put_str(b, chans ? "&*" : "~*");
        return;
    }
    for (uint32_t i = 0; i < l->n; i++) {
        unsigned f = l->v[i].flags;
        kv_buf_put_str(b, i > 0 ? " " : "");
        kv_buf_put_str(b, chans ? "&" : f == PERM_R ? "%R~" : f == PERM_W ? "%W~" : "~");
        kv_buf_put(b, l->v[i].s.p, l->v[i].s.len);
    }
}

static void describe_commands(struct kv_buf *b, const struct sel *s)
{
    kv_buf_put_str(b, s->future ? "+@all" : "-@all");
    if (s->rules[0] != '\0') {
        kv_buf_put_str(b, " ");
        kv_buf_put_str(b, s->rules);
    }
}

/* ACL LIST's form of a selector: "~k* resetchannels &c -@all +get". */
static void describe_sel(struct kv_buf *b, const struct sel *s)
{
    size_t before = b->len;
    describe_pats(b, &s->keys, s->allkeys, false);
    if (b->len > before) {
        kv_buf_put_str(b, " ");
    }
    if (!s->allchannels) {
        kv_buf_put_str(b, "resetchannels ");
    }
    before = b->len;
    describe_pats(b, &s->chans, s->allchannels, true);
    if (b->len > before) {
        kv_buf_put_str(b, " ");
    }
    describe_commands(b, s);
}

static void describe_user(struct kv_buf *b, const struct user *u)
{
    kv_buf_put_str(b, "user ");
    kv_buf_put(b, u->name, u->name_len);
    kv_buf_put_str(b, u->on ? " on" : " off");
    if (u->nopass) {
        kv_buf_put_str(b, " nopass");
    }
    if (u->sanitize == SANITIZE_SKIP) {
        kv_buf_put_str(b, " skip-sanitize-payload");
    } else if (u->sanitize == SANITIZE_YES) {
        kv_buf_put_str(b, " sanitize-payload");
    }
    for (uint32_t i = 0; i < u->npass; i++) {
        kv_buf_put_str(b, " #");
        kv_buf_put_str(b, u->pass[i]);
    }
    kv_buf_put_str(b, " ");
    describe_sel(b, &u->sels[0]);
    for (uint32_t i = 1; i < u->nsels; i++) {
        kv_buf_put_str(b, " (");
        describe_sel(b, &u->sels[i]);
        kv_buf_put_str(b, ")");
    }
}

/* ---- the registry ------------------------------------------------------------------- */

_Atomic uint64_t users_gen = 1;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct user **slots; /* NULL: free */
static uint16_t *tags;
static uint32_t nslots;
static char requirepass[KVD_PASS_MAX];
static char aclfile[4096];

/* The slots of the last JOURNAL changes, by generation: a view that is not too far
 * behind reads again only the slots that changed. */
#define JOURNAL 1024
static uint32_t journal[JOURNAL];

static void changed_locked(uint32_t slot)
{
    uint64_t gen = atomic_load_explicit(&users_gen, memory_order_relaxed) + 1;
    journal[gen % JOURNAL] = slot;
    atomic_store_explicit(&users_gen, gen, memory_order_release);
}

static uint32_t *free_slots; /* slots of deleted users, to reuse */
static uint32_t nfree;

/* The names' index: buckets of slot + 1 (0: none), chained through name_next. */
static uint32_t *name_head, *name_next;
static uint32_t nbuckets; /* a power of two, or 0 */

/* A user name's hash (FNV-1a), for the registry's index and the ACL file's loader. */
static uint64_t name_fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    }
    return h ^ (h >> 32);
}

static uint32_t name_bucket(const char *p, size_t n)
{
    return (uint32_t)name_fnv(p, n) & (nbuckets - 1);
}

static void index_add(uint32_t slot)
{
    if ((nslots + 1) * 2 > nbuckets) { /* grow, and index every user again */
        nbuckets = nbuckets ? nbuckets * 2 : 64;
        free(name_head);
        name_head = xalloc(nbuckets * sizeof *name_head);
        memset(name_head, 0, nbuckets * sizeof *name_head);
        for (uint32_t i = 0; i < nslots; i++) {
            if (slots[i] != NULL && i != slot) {
                uint32_t b = name_bucket(slots[i]->name, slots[i]->name_len);
                name_next[i] = name_head[b];
                name_head[b] = i + 1;
            }
        }
    }
    uint32_t b = name_bucket(slots[slot]->name, slots[slot]->name_len);
    name_next[slot] = name_head[b];
    name_head[b] = slot + 1;
}

static void index_del(uint32_t slot)
{
    uint32_t *at = &name_head[name_bucket(slots[slot]->name, slots[slot]->name_len)];
    while (*at != slot + 1) {
        KV_ASSERT(*at != 0);
        at = &name_next[*at - 1];
    }
    *at = name_next[slot];
}

static uint32_t handle_of(uint32_t slot)
{
    return slot << 16 | tags[slot];
}

/* The slot holding the user named so, or -1 (mu held). */
static int find_locked(const char *name, size_t n)
{
    for (uint32_t at = nbuckets ? name_head[name_bucket(name, n)] : 0; at != 0;
         at = name_next[at - 1]) {
        const struct user *u = slots[at - 1];
        if (u->name_len == n && memcmp(u->name, name, n) == 0) {
            return (int)at - 1;
        }
    }
    return -1;
}

/* Puts u (a reference given) into a slot: the named user's, or a free one. -1 if full. */
static int publish_locked(struct user *u)
{
    user_finish(u);
    int at = find_locked(u->name, u->name_len);
    if (at < 0) {
        if (nfree > 0) {
            at = (int)free_slots[--nfree];
        }
        if (at < 0) {
            if (nslots >= USERS_SLOTS_MAX) {
                user_unref(u);
                return -1;
            }
            slots = xrealloc(slots, (nslots + 1) * sizeof *slots);
            tags = xrealloc(tags, (nslots + 1) * sizeof *tags);
            name_next = xrealloc(name_next, (nslots + 1) * sizeof *name_next);
            slots[nslots] = NULL;
            tags[nslots] = 0;
            name_next[nslots] = 0;
            at = (int)nslots++;
        } else {
            tags[at]++; /* a new user in a reused slot: old handles name nobody */
        }
        u->handle = handle_of((uint32_t)at);
        slots[at] = u;
        index_add((uint32_t)at);
        changed_locked((uint32_t)at);
        return at;
    }
    u->handle = handle_of((uint32_t)at);
    user_unref(slots[at]);
    slots[at] = u;
    changed_locked((uint32_t)at);
    return at;
}

static void drop_locked(uint32_t slot)
{
    index_del(slot);
    user_unref(slots[slot]);
    slots[slot] = NULL;
    free_slots = xrealloc(free_slots, (nfree + 1) * sizeof *free_slots);
    free_slots[nfree++] = slot;
    changed_locked(slot);
}

static struct user *default_user(void)
{
    struct user *u = user_new("default", 7);
    user_rule(u, "on", 2);
    user_rule(u, "nopass", 6);
    sel_rule(&u->sels[0], "~*", 2);
    sel_rule(&u->sels[0], "&*", 2);
    sel_rule(&u->sels[0], "+@all", 5);
    return u;
}

static void set_requirepass_locked(const char *pass)
{
    snprintf(requirepass, sizeof requirepass, "%s", pass);
    struct user *u = user_copy(slots[0]);
    user_rule(u, "resetpass", 9);
    if (pass[0] == '\0') {
        user_rule(u, "nopass", 6);
    } else {
        char op[KVD_PASS_MAX + 1];
        int n = snprintf(op, sizeof op, ">%s", pass);
        user_rule(u, op, (size_t)n);
    }
    publish_locked(u);
}

/* The view's reference for one slot, as the registry has it now (mu held). */
static void view_take(struct users_view *w, uint32_t slot)
{
    struct user *u = slot < nslots ? slots[slot] : NULL;
    if (w->v[slot] != u) {
        if (u != NULL) {
            user_ref(u);
        }
        user_unref(w->v[slot]);
        w->v[slot] = u;
    }
}

void users_view_refresh(struct users_view *w)
{
    uint64_t gen = users_generation();
    if (w->gen == gen) {
        return;
    }
    pthread_mutex_lock(&mu);
    if (w->n < nslots) {
        w->v = xrealloc(w->v, nslots * sizeof *w->v);
        memset(w->v + w->n, 0, (nslots - w->n) * sizeof *w->v);
        w->n = nslots;
    }
    uint64_t now = atomic_load_explicit(&users_gen, memory_order_relaxed); /* (exact: mu) */
    if (w->gen != 0 && now - w->gen <= JOURNAL) {
        for (uint64_t g = w->gen + 1; g <= now; g++) {
            view_take(w, journal[g % JOURNAL]);
        }
    } else {
        for (uint32_t i = 0; i < w->n; i++) {
            view_take(w, i);
        }
    }
    w->gen = now;
    pthread_mutex_unlock(&mu);
}

void users_view_free(struct users_view *w)
{
    for (uint32_t i = 0; i < w->n; i++) {
        user_unref(w->v[i]);
    }
    free(w->v);
    memset(w, 0, sizeof *w);
}

const struct user *users_view_get(const struct users_view *w, uint32_t handle)
{
    uint32_t slot = handle >> 16;
    if (slot >= w->n || w->v[slot] == NULL || w->v[slot]->handle != handle) {
        return NULL;
    }
    return w->v[slot];
}

const char *user_name(const struct user *u)
{
    return u->name;
}

bool user_unrestricted(const struct user *u)
{
    return u->unrestricted;
}

bool user_open(const struct user *u)
{
    return u->on && u->nopass;
}

bool users_default_open(void)
{
    pthread_mutex_lock(&mu);
    bool open = user_open(slots[0]);
    pthread_mutex_unlock(&mu);
    return open;
}

bool users_default_nopass(void)
{
    pthread_mutex_lock(&mu);
    bool nopass = slots[0]->nopass;
    pthread_mutex_unlock(&mu);
    return nopass;
}

bool users_exists(const char *name, size_t n)
{
    pthread_mutex_lock(&mu);
    bool found = find_locked(name, n) >= 0;
    pthread_mutex_unlock(&mu);
    return found;
}

/* Equal in a time that depends on the length only. */
static bool hex_eq(const char *a, const char *b)
{
    unsigned char diff = 0;
    for (size_t i = 0; i < KV_SHA256_HEX - 1; i++) {
        diff |= (unsigned char)(a[i] ^ b[i]);
    }
    return diff == 0;
}

bool users_auth(const char *name, size_t nlen, const char *pass, size_t plen, uint32_t *handle)
{
    char hex[KV_SHA256_HEX];
    kv_sha256_hex(pass, plen, hex);
    pthread_mutex_lock(&mu);
    int at = find_locked(name, nlen);
    bool ok = false;
    if (at >= 0 && slots[at]->on) {
        const struct user *u = slots[at];
        ok = u->nopass;
        for (uint32_t i = 0; i < u->npass; i++) {
            ok |= hex_eq(u->pass[i], hex);
        }
        *handle = u->handle;
    }
    pthread_mutex_unlock(&mu);
    return ok;
}

void users_set_requirepass(const char *pass)
{
    pthread_mutex_lock(&mu);
    set_requirepass_locked(pass);
    pthread_mutex_unlock(&mu);
}

void users_requirepass(char *buf, size_t cap)
{
    pthread_mutex_lock(&mu);
    snprintf(buf, cap, "%s", requirepass);
    pthread_mutex_unlock(&mu);
}

/* ---- checks -------------------------------------------------------------------------- */

static unsigned key_need(const char *flags)
{
    unsigned need = 0;
    while (flags != NULL && *flags != '\0') {
        size_t n = strcspn(flags, " ");
        if (n == 6 && memcmp(flags, "access", 6) == 0) {
            need |= PERM_R;
        } else if ((n == 6 && (memcmp(flags, "insert", 6) == 0 || memcmp(flags, "delete", 6) == 0 ||
                               memcmp(flags, "update", 6) == 0))) {
            need |= PERM_W;
        }
        flags += n + (flags[n] == ' ');
    }
    return need;
}

struct key_walk {
    const struct sel *s;
    const struct resp_arg *argv;
    size_t bad; /* the first refused key's index, 0 if none */
};

static void check_key(void *arg, size_t index, const char *flags)
{
    struct key_walk *kw = arg;
    if (kw->bad != 0) {
        return;
    }
    unsigned need = key_need(flags);
    const struct resp_arg *k = &kw->argv[index];
    for (uint32_t i = 0; i < kw->s->keys.n; i++) {
        const struct keypat *p = &kw->s->keys.v[i];
        if ((p->flags & need) == need && kv_glob_match(p->s.p, p->s.len, k->ptr, k->len, false)) {
            return;
        }
    }
    kw->bad = index;
}

static bool channel_ok(const struct sel *s, const struct resp_arg *ch, bool pattern);

bool user_may_hear(const struct user *u, const char *ch, size_t n, bool pattern)
{
    struct resp_arg a = {.ptr = ch, .len = n};
    for (uint32_t i = 0; i < u->nsels; i++) {
        if (u->sels[i].allchannels || channel_ok(&u->sels[i], &a, pattern)) {
            return true;
        }
    }
    return false;
}

static bool channel_ok(const struct sel *s, const struct resp_arg *ch, bool pattern)
{
    for (uint32_t i = 0; i < s->chans.n; i++) {
        const struct str *p = &s->chans.v[i].s;
        if (pattern ? (p->len == ch->len && memcmp(p->p, ch->ptr, ch->len) == 0)
                    : kv_glob_match(p->p, p->len, ch->ptr, ch->len, false)) {
            return true;
        }
    }
    return false;
}

static enum users_denied sel_check(const struct sel *s, size_t row, const struct cmd_desc *d,
                                   size_t argc, const struct resp_arg *argv, size_t *pos)
{
    *pos = 0;
    if (!bit_get(s->cmds, row)) {
        bool hit = false;
        for (uint32_t i = 0; i < s->nfa && !hit && argc >= 2; i++) {
            hit = s->fa[i].row == row && s->fa[i].arg.len == argv[1].len &&
                  strncasecmp(s->fa[i].arg.p, argv[1].ptr, argv[1].len) == 0;
        }
        if (!hit) {
            return USERS_DENIED_CMD;
        }
    }
    if (!s->allkeys) {
        struct key_walk kw = {s, argv, 0};
        cmd_keys_each(d, argc, argv, check_key, &kw);
        if (kw.bad != 0) {
            *pos = kw.bad;
            return USERS_DENIED_KEY;
        }
    }
    if (!s->allchannels) {
        const char *n = d->name;
        size_t first = 1, last = 0; /* none */
        bool pattern = false;
        if (strcmp(n, "publish") == 0 || strcmp(n, "spublish") == 0) {
            last = 1;
        } else if (strcmp(n, "subscribe") == 0 || strcmp(n, "ssubscribe") == 0) {
            last = argc - 1;
        } else if (strcmp(n, "psubscribe") == 0) {
            last = argc - 1;
            pattern = true;
        }
        for (size_t i = first; i <= last && i < argc; i++) {
            if (!channel_ok(s, &argv[i], pattern)) {
                *pos = i;
                return USERS_DENIED_CHANNEL;
            }
        }
    }
    return USERS_OK;
}

enum users_denied user_check(const struct user *u, const struct cmd_desc *d, size_t argc,
                             const struct resp_arg *argv, size_t *pos)
{
    *pos = 0;
    if (u->unrestricted || (d->flags & CMD_NOAUTH)) {
        return USERS_OK;
    }
    uint16_t row = cmd_stat_row(d, argc, argv);
    if (row == CMD_ROW_NONE) {
        return USERS_OK; /* an unknown subcommand: the command itself refuses it */
    }
    enum users_denied worst = USERS_DENIED_CMD;
    for (uint32_t i = 0; i < u->nsels; i++) {
        size_t p;
        enum users_denied r = sel_check(&u->sels[i], row, d, argc, argv, &p);
        if (r == USERS_OK) {
            *pos = 0;
            return USERS_OK;
        }
        if (r > worst || (r == worst && p > *pos)) {
            worst = r;
            *pos = p;
        }
    }
    return worst;
}

void users_denied_text(enum users_denied why, const struct cmd_desc *d, size_t argc,
                       const struct resp_arg *argv, size_t pos, bool dryrun, char *buf, size_t cap)
{
    char name[64];
    cmd_full_name(d, argc, argv, name, sizeof name);
    const struct resp_arg *a = &argv[pos];
    int alen = (int)(a->len > 128 ? 128 : a->len);
    switch (why) {
    case USERS_DENIED_KEY:
        if (dryrun) {
            snprintf(buf, cap, "This user has no permissions to access the '%.*s' key", alen,
                     a->ptr);
        } else {
            snprintf(buf, cap,
                     "this user has no permissions to access one of the keys used as arguments");
        }
        break;
    case USERS_DENIED_CHANNEL:
        if (dryrun) {
            snprintf(buf, cap, "This user has no permissions to access the '%.*s' channel", alen,
                     a->ptr);
        } else {
            snprintf(buf, cap,
                     "this user has no permissions to access one of the channels used "
                     "as arguments");
        }
        break;
    default:
        snprintf(buf, cap, "%s user has no permissions to run the '%s' command",
                 dryrun ? "This" : "this", name);
        break;
    }
}

/* ---- ACL LOG ------------------------------------------------------------------------- */

struct log_entry {
    int64_t count;
    enum users_denied why;
    enum users_ctx ctx;
    struct str object, user;
    int64_t ctime_ms;
    char *client_info;
};

static struct log_entry *logv; /* newest first */
static size_t nlog;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_entry_free(struct log_entry *e)
{
    free(e->object.p);
    free(e->user.p);
    free(e->client_info);
}

void users_log(enum users_denied why, enum users_ctx ctx, const char *object, size_t olen,
               const char *username, size_t ulen, const char *client_info)
{
    size_t max = (size_t)KV_CONF_GET(kvd_settings.acllog_max_len);
    int64_t now = now_ms();
    pthread_mutex_lock(&mu);
    size_t at = nlog;
    for (size_t i = 0; i < nlog && at == nlog; i++) {
        const struct log_entry *e = &logv[i];
        if (e->why == why && e->ctx == ctx && e->object.len == olen &&
            memcmp(e->object.p, object, olen) == 0 && e->user.len == ulen &&
            memcmp(e->user.p, username, ulen) == 0 && now - e->ctime_ms < LOG_GROUP_MS) {
            at = i;
        }
    }
    struct log_entry e;
    if (at < nlog) { /* the same refusal again: counted, and moved to the front */
        e = logv[at];
        e.count++;
        free(e.client_info);
        memmove(&logv[1], &logv[0], at * sizeof *logv);
    } else {
        e = (struct log_entry){.count = 1,
                               .why = why,
                               .ctx = ctx,
                               .object = {xdup(object, olen), olen},
                               .user = {xdup(username, ulen), ulen}};
        logv = xrealloc(logv, (nlog + 1) * sizeof *logv);
        memmove(&logv[1], &logv[0], nlog * sizeof *logv);
        nlog++;
    }
    e.ctime_ms = now;
    e.client_info = xdup(client_info, strlen(client_info));
    logv[0] = e;
    while (nlog > max) {
        log_entry_free(&logv[--nlog]);
    }
    pthread_mutex_unlock(&mu);
}

void users_cmd_log(struct resp_out *o, int64_t count, bool reset)
{
    pthread_mutex_lock(&mu);
    if (reset) {
        for (size_t i = 0; i < nlog; i++) {
            log_entry_free(&logv[i]);
        }
        nlog = 0;
        pthread_mutex_unlock(&mu);
        reply_ok(o);
        return;
    }
    static const char *const reasons[] = {"", "command", "key", "auth", "channel"};
    static const char *const ctxs[] = {"toplevel", "multi", "lua"};
    size_t n = count < 0 || (uint64_t)count > nlog ? nlog : (size_t)count;
    int64_t now = now_ms();
    reply_array(o, n);
    for (size_t i = 0; i < n; i++) {
        const struct log_entry *e = &logv[i];
        reply_map(o, 7);
        reply_bulk_str(o, "count");
        reply_int(o, e->count);
        reply_bulk_str(o, "reason");
        reply_bulk_str(o, reasons[e->why]);
        reply_bulk_str(o, "context");
        reply_bulk_str(o, ctxs[e->ctx]);
        reply_bulk_str(o, "object");
        reply_bulk(o, e->object.p, e->object.len);
        reply_bulk_str(o, "username");
        reply_bulk(o, e->user.p, e->user.len);
        reply_bulk_str(o, "age-seconds");
        reply_double(o, (double)(now - e->ctime_ms) / 1000.0);
        reply_bulk_str(o, "client-info");
        reply_bulk_str(o, e->client_info);
    }
    pthread_mutex_unlock(&mu);
}

/* ---- ACL subcommands ------------------------------------------------------------------- */

/* Applies rules to a copy of the user (a new one if absent): all or nothing. */
static enum rule_err apply_rules(struct user *u, const struct resp_arg *ops, size_t nops,
                                 size_t *bad)
{
    for (size_t i = 0; i < nops; i++) {
        enum rule_err e = user_rule(u, ops[i].ptr, ops[i].len);
        if (e != RULE_OK) {
            *bad = i;
            return e;
        }
    }
    return RULE_OK;
}

/*
 * Redis's ACLMergeSelectorArguments: arguments from one starting with '(' to one ending
 * with ')' are one selector, joined by spaces. Returns the merged count, or -1 with the
 * index of an unmatched '(' in *bad. The merged texts live in *buf (freed by the caller).
 */
static long merge_selectors(const struct resp_arg *in, size_t n, struct resp_arg *out, char **buf,
                            size_t *bad)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += in[i].len + 1;
    }
    char *b = xalloc(total + 1);
    size_t used = 0, k = 0;
    size_t open_at = 0;
    bool open = false;
    for (size_t i = 0; i < n; i++) {
        const struct resp_arg *a = &in[i];
        if (a->len > 0 && a->ptr[0] == '(' && a->ptr[a->len - 1] != ')') {
            /* (a second one while open starts the selector again, as Redis's merge) */
            open = true;
            open_at = i;
            out[k].ptr = b + used;
            memcpy(b + used, a->ptr, a->len);
            used += a->len;
            continue;
        }
        if (open) {
            b[used++] = ' ';
            memcpy(b + used, a->ptr, a->len);
            used += a->len;
            if (a->len > 0 && a->ptr[a->len - 1] == ')') {
                open = false;
                out[k].len = (size_t)(b + used - out[k].ptr);
                k++;
            }
            continue;
        }
        out[k++] = *a;
    }
    *buf = b;
    if (open) {
        *bad = open_at;
        return -1;
    }
    return (long)k;
}

void users_cmd_setuser(struct resp_out *o, const struct resp_arg *argv, size_t argc)
{
    const struct resp_arg *name = &argv[2];
    if (has_space(name->ptr, name->len)) {
        reply_error(o, "ERR Usernames can't contain spaces or null characters");
        return;
    }
    size_t nops = argc - 3;
    struct resp_arg *ops = xalloc((nops + 1) * sizeof *ops);
    char *buf = NULL;
    size_t bad = 0;
    long k = merge_selectors(argv + 3, nops, ops, &buf, &bad);
    if (k < 0) {
        const struct resp_arg *a = &argv[3 + bad];
        reply_error(o, "ERR Unmatched parenthesis in acl selector starting at '%.*s'.",
                    (int)(a->len > 128 ? 128 : a->len), a->ptr);
        free(ops);
        free(buf);
        return;
    }
    pthread_mutex_lock(&mu);
    int at = find_locked(name->ptr, name->len);
    struct user *u = at >= 0 ? user_copy(slots[at]) : user_new(name->ptr, name->len);
    enum rule_err e = apply_rules(u, ops, (size_t)k, &bad);
    if (e != RULE_OK) {
        pthread_mutex_unlock(&mu);
        user_unref(u);
        reply_error(o, "ERR Error in ACL SETUSER modifier '%.*s': %s",
                    (int)(ops[bad].len > 128 ? 128 : ops[bad].len), ops[bad].ptr, rule_err_text(e));
    } else if (publish_locked(u) < 0) {
        pthread_mutex_unlock(&mu);
        reply_error(o, "ERR too many users (at most %u)", USERS_SLOTS_MAX);
    } else {
        pthread_mutex_unlock(&mu);
        reply_ok(o);
    }
    free(ops);
    free(buf);
}

static void reply_buf(struct resp_out *o, struct kv_buf *b)
{
    reply_bulk(o, b->len > 0 ? b->p : "", b->len);
    kv_buf_free(b);
}

static void reply_sel_parts(struct resp_out *o, const struct sel *s)
{
    struct kv_buf b = {0};
    reply_bulk_str(o, "commands");
    describe_commands(&b, s);
    reply_buf(o, &b);
    reply_bulk_str(o, "keys");
    describe_pats(&b, &s->keys, s->allkeys, false);
    reply_buf(o, &b);
    reply_bulk_str(o, "channels");
    describe_pats(&b, &s->chans, s->allchannels, true);
    reply_buf(o, &b);
}

void users_cmd_getuser(struct resp_out *o, const struct resp_arg *name)
{
    pthread_mutex_lock(&mu);
    int at = find_locked(name->ptr, name->len);
    if (at < 0) {
        pthread_mutex_unlock(&mu);
        reply_null(o);
        return;
    }
    const struct user *u = slots[at];
    reply_map(o, 6);
    reply_bulk_str(o, "flags");
    const char *flags[3];
    size_t nf = 0;
    flags[nf++] = u->on ? "on" : "off";
    if (u->nopass) {
        flags[nf++] = "nopass";
    }
    if (u->sanitize != SANITIZE_NONE) {
        flags[nf++] = u->sanitize == SANITIZE_SKIP ? "skip-sanitize-payload" : "sanitize-payload";
    }
    reply_set(o, nf);
    for (size_t i = 0; i < nf; i++) {
        reply_bulk_str(o, flags[i]);
    }
    reply_bulk_str(o, "passwords");
    reply_array(o, u->npass);
    for (uint32_t i = 0; i < u->npass; i++) {
        reply_bulk_str(o, u->pass[i]);
    }
    reply_sel_parts(o, &u->sels[0]);
    reply_bulk_str(o, "selectors");
    reply_array(o, u->nsels - 1);
    for (uint32_t i = 1; i < u->nsels; i++) {
        reply_map(o, 3);
        reply_sel_parts(o, &u->sels[i]);
    }
    pthread_mutex_unlock(&mu);
}

void users_cmd_deluser(struct resp_out *o, const struct resp_arg *argv, size_t argc)
{
    for (size_t i = 2; i < argc; i++) {
        if (argv[i].len == 7 && memcmp(argv[i].ptr, "default", 7) == 0) {
            reply_error(o, "ERR The 'default' user cannot be removed");
            return;
        }
    }
    int64_t n = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 2; i < argc; i++) {
        int at = find_locked(argv[i].ptr, argv[i].len);
        if (at >= 0) {
            drop_locked((uint32_t)at);
            n++;
        }
    }
    pthread_mutex_unlock(&mu);
    reply_int(o, n);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(slots[*(const uint32_t *)a]->name, slots[*(const uint32_t *)b]->name);
}

/* The slots in name order (mu held); the caller frees the array. */
static uint32_t *sorted_locked(uint32_t *count)
{
    uint32_t *v = xalloc(nslots * sizeof *v);
    uint32_t n = 0;
    for (uint32_t i = 0; i < nslots; i++) {
        if (slots[i] != NULL) {
            v[n++] = i;
        }
    }
    qsort(v, n, sizeof *v, by_name);
    *count = n;
    return v;
}

void users_cmd_users(struct resp_out *o)
{
    pthread_mutex_lock(&mu);
    uint32_t n;
    uint32_t *v = sorted_locked(&n);
    reply_array(o, n);
    for (uint32_t i = 0; i < n; i++) {
        reply_bulk(o, slots[v[i]]->name, slots[v[i]]->name_len);
    }
    pthread_mutex_unlock(&mu);
    free(v);
}

void users_cmd_list(struct resp_out *o)
{
    pthread_mutex_lock(&mu);
    uint32_t n;
    uint32_t *v = sorted_locked(&n);
    reply_array(o, n);
    for (uint32_t i = 0; i < n; i++) {
        struct kv_buf b = {0};
        describe_user(&b, slots[v[i]]);
        reply_buf(o, &b);
    }
    pthread_mutex_unlock(&mu);
    free(v);
}

void users_cmd_dryrun(struct resp_out *o, const struct resp_arg *argv, size_t argc)
{
    const struct resp_arg *name = &argv[2];
    const struct cmd_desc *d = cmd_lookup(argv[3].ptr, argv[3].len);
    /* a container's subcommand is the command (Redis's lookupCommand) */
    const struct cmd_docs *sub = NULL;
    if (d != NULL && (d->flags & CMD_SUBCMDS) && argc >= 5) {
        const struct cmd_docs *m = cmd_docs_find(d->name);
        sub = m != NULL ? cmd_docs_find_sub(m, argv[4].ptr, argv[4].len) : NULL;
        if (sub == NULL) {
            d = NULL;
        }
    }
    pthread_mutex_lock(&mu);
    int at = find_locked(name->ptr, name->len);
    struct user *u = at >= 0 ? slots[at] : NULL;
    if (u != NULL) {
        user_ref(u);
    }
    pthread_mutex_unlock(&mu);
    if (u == NULL) {
        reply_error(o, "ERR User '%.*s' not found", (int)(name->len > 128 ? 128 : name->len),
                    name->ptr);
    } else if (d == NULL) {
        reply_error(o, "ERR Command '%.*s' not found", (int)(argv[3].len > 128 ? 128 : argv[3].len),
                    argv[3].ptr);
    } else if (sub != NULL && !cmd_sub_arity_ok(d, argc - 3, argv + 3)) {
        reply_error(o, "ERR wrong number of arguments for '%s' command", sub->name);
    } else if (!cmd_arity_ok(d, argc - 3)) {
        reply_error(o, "ERR wrong number of arguments for '%s' command", d->name);
    } else {
        size_t pos;
        enum users_denied why = user_check(u, d, argc - 3, argv + 3, &pos);
        if (why == USERS_OK) {
            reply_ok(o);
        } else {
            char text[256];
            users_denied_text(why, d, argc - 3, argv + 3, pos, true, text, sizeof text);
            reply_bulk_str(o, text);
        }
    }
    user_unref(u);
}

/* ---- the ACL file ---------------------------------------------------------------------- */

/* The names of the users read so far from a file: an open-addressing set of their
 * indexes (+ 1) in the list. */
struct seen {
    uint32_t *v;
    size_t cap, n;
};

static size_t seen_slot(const struct seen *t, struct user *const *nu, const char *p, size_t n)
{
    size_t i = (size_t)name_fnv(p, n) & (t->cap - 1);
    while (t->v[i] != 0) {
        const struct user *u = nu[t->v[i] - 1];
        if (u->name_len == n && memcmp(u->name, p, n) == 0) {
            break;
        }
        i = (i + 1) & (t->cap - 1);
    }
    return i;
}

static bool seen_has(const struct seen *t, struct user *const *nu, const char *p, size_t n)
{
    return t->cap > 0 && t->v[seen_slot(t, nu, p, n)] != 0;
}

static void seen_add(struct seen *t, struct user *const *nu, size_t idx)
{
    if ((t->n + 1) * 2 > t->cap) {
        struct seen g = {.cap = t->cap ? t->cap * 2 : 64, .n = t->n};
        g.v = xalloc(g.cap * sizeof *g.v);
        memset(g.v, 0, g.cap * sizeof *g.v);
        for (size_t i = 0; i < t->cap; i++) {
            if (t->v[i] != 0) {
                const struct user *u = nu[t->v[i] - 1];
                g.v[seen_slot(&g, nu, u->name, u->name_len)] = t->v[i];
            }
        }
        free(t->v);
        *t = g;
    }
    t->v[seen_slot(t, nu, nu[idx]->name, nu[idx]->name_len)] = (uint32_t)idx + 1;
    t->n++;
}

/* Reads the file and, if every line is good, replaces every user with its users (the
 * default user as shipped if it has none). 0, or -1 with Redis's report in err. */
/* Users read from lines, not yet in force. */
struct loader {
    struct user **nu;
    size_t nn;
    struct seen seen;
    struct kv_buf errs; /* Redis's report, one sentence per bad line */
};

/* One line of an ACL file ("user name rule ..."), `path` and `lineno` naming it. */
static void load_line(struct loader *L, const char *path, int lineno, char *line, size_t len)
{
    /* Redis 7.0's reading: the line trimmed of " \t\r\n", blank ones skipped, then
     * split at every single space (no quoting: what ACL SAVE writes reads back) */
    char *lb = line, *le = line + len;
    while (lb < le && memchr(" \t\r\n", *lb, 4) != NULL) {
        lb++;
    }
    while (le > lb && memchr(" \t\r\n", le[-1], 4) != NULL) {
        le--;
    }
    if (lb == le) {
        return;
    }
    struct resp_arg *argv = xalloc(((size_t)(le - lb) + 1) * sizeof *argv);
    size_t argc = 0;
    for (char *w = lb;;) {
        char *sp = memchr(w, ' ', (size_t)(le - w));
        char *end = sp != NULL ? sp : le;
        char *ob = w, *oe = end; /* each argument trimmed of "\t\r\n" */
        while (ob < oe && memchr("\t\r\n", *ob, 3) != NULL) {
            ob++;
        }
        while (oe > ob && memchr("\t\r\n", oe[-1], 3) != NULL) {
            oe--;
        }
        argv[argc].ptr = ob;
        argv[argc].len = (size_t)(oe - ob);
        argc++;
        if (sp == NULL) {
            break;
        }
        w = sp + 1;
    }
    char msg[600];
    msg[0] = '\0';
    if (argc < 2 || argv[0].len != 4 || memcmp(argv[0].ptr, "user", 4) != 0) {
        snprintf(msg, sizeof msg, "%s:%d should start with user keyword followed by the username. ",
                 path, lineno);
    } else if (has_space(argv[1].ptr, argv[1].len)) {
        snprintf(msg, sizeof msg, "%s:%d: username '%.*s' contains invalid characters. ", path,
                 lineno, (int)argv[1].len, argv[1].ptr);
    } else {
        if (seen_has(&L->seen, L->nu, argv[1].ptr, argv[1].len)) {
            snprintf(msg, sizeof msg, "WARNING: Duplicate user '%.*s' found on line %d. ",
                     (int)argv[1].len, argv[1].ptr, lineno);
        } else {
            struct resp_arg *ops = xalloc((argc + 1) * sizeof *ops);
            char *mbuf = NULL;
            size_t bad = 0;
            long k = merge_selectors(argv + 2, argc - 2, ops, &mbuf, &bad);
            struct user *u = user_new(argv[1].ptr, argv[1].len);
            enum rule_err e = k < 0 ? RULE_EINVAL : apply_rules(u, ops, (size_t)k, &bad);
            if (k < 0) {
                snprintf(msg, sizeof msg,
                         "%s:%d: Unmatched parenthesis in acl selector starting at '%.*s'. ", path,
                         lineno, (int)(argv[2 + bad].len > 128 ? 128 : argv[2 + bad].len),
                         argv[2 + bad].ptr);
                user_unref(u);
            } else if (e != RULE_OK) {
                snprintf(msg, sizeof msg, "%s:%d: Error in applying operation '%.*s': %s. ", path,
                         lineno, (int)(ops[bad].len > 128 ? 128 : ops[bad].len), ops[bad].ptr,
                         rule_err_text(e));
                user_unref(u);
            } else {
                L->nu = xrealloc(L->nu, (L->nn + 1) * sizeof *L->nu);
                L->nu[L->nn++] = u;
                seen_add(&L->seen, L->nu, L->nn - 1);
            }
            free(ops);
            free(mbuf);
        }
    }
    if (msg[0] != '\0') {
        kv_buf_put_str(&L->errs, msg);
    }
    free(argv);
}

/* If every line was good, every user is replaced by the lines' users (the default user
 * as shipped if they have none): 0. Else nothing changes: -1 with the report in err. */
static int load_apply_locked(struct loader *L, char *err, size_t errcap)
{
    free(L->seen.v);
    if (L->errs.len > 0) {
        snprintf(err, errcap,
                 "%sWARNING: ACL errors detected, no change to the previously active ACL rules "
                 "was performed",
                 kv_buf_cstr(&L->errs));
        kv_buf_free(&L->errs);
        for (size_t i = 0; i < L->nn; i++) {
            user_unref(L->nu[i]);
        }
        free(L->nu);
        return -1;
    }
    /* the new set: the default user keeps its slot (and its connections); every other
     * user is new (their connections are closed, as Redis frees the old users) */
    struct user *def = NULL;
    for (size_t i = 0; i < L->nn; i++) {
        if (L->nu[i]->name_len == 7 && memcmp(L->nu[i]->name, "default", 7) == 0) {
            def = L->nu[i];
        }
    }
    for (uint32_t i = 1; i < nslots; i++) {
        if (slots[i] != NULL) {
            drop_locked(i);
        }
    }
    publish_locked(def != NULL ? def : default_user());
    for (size_t i = 0; i < L->nn; i++) {
        if (L->nu[i] != def) {
            publish_locked(L->nu[i]);
        }
    }
    free(L->nu);
    return 0;
}

static int load_file_locked(const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errcap, "Error loading ACLs, opening file '%s': %s", path, strerror(errno));
        return -1;
    }
    struct loader L = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        load_line(&L, path, lineno, line, (size_t)len);
    }
    free(line);
    fclose(f);
    return load_apply_locked(&L, err, errcap);
}

/* The user a config directive declares (argv[0] its name, then its rules, selectors
 * merged as Redis does), or NULL with the error and the argument it names (cut to
 * USERS_BAD_ARG_MAX bytes, NUL-terminated). Unknown
 * commands and categories fail it only if !skip_unknown (Redis checks them when it loads
 * the users, not when it reads the line). */
#define USERS_BAD_ARG_MAX 128 /* bytes of a bad rule a config error quotes */

static struct user *user_of_directive(const struct resp_arg *argv, size_t argc, bool skip_unknown,
                                      enum rule_err *e, char bad_arg[USERS_BAD_ARG_MAX + 1])
{
    KV_ASSERT(argc >= 1);
    size_t nrules = argc - 1;
    struct resp_arg *ops = xalloc((nrules + 1) * sizeof *ops);
    char *mbuf = NULL;
    size_t bad = 0;
    long k = merge_selectors(argv + 1, nrules, ops, &mbuf, &bad);
    *e = k < 0 ? RULE_EINVAL : RULE_OK;
    const struct resp_arg *arg = k < 0 ? &argv[1 + bad] : NULL;
    struct user *u = user_new(argv[0].ptr, argv[0].len);
    for (long i = 0; *e == RULE_OK && i < k; i++) { /* one at a time: unknown ones skipped */
        size_t b = 0;
        enum rule_err r = apply_rules(u, &ops[i], 1, &b);
        if (r != RULE_OK && !(r == RULE_ENOENT && skip_unknown)) {
            *e = r;
            arg = &ops[i];
        }
    }
    if (*e != RULE_OK) { /* (copied: a merged selector's text lives in mbuf) */
        snprintf(bad_arg, USERS_BAD_ARG_MAX + 1, "%.*s",
                 (int)(arg->len > USERS_BAD_ARG_MAX ? USERS_BAD_ARG_MAX : arg->len), arg->ptr);
        user_unref(u);
        u = NULL;
    }
    free(ops);
    free(mbuf);
    return u;
}

int users_conf_check(const struct resp_arg *argv, size_t argc, char *err, size_t errcap)
{
    KV_ASSERT(argc >= 1 && errcap > 0);
    rows_init(); /* (idempotent: users_init runs it again) */
    enum rule_err e;
    char arg[USERS_BAD_ARG_MAX + 1];
    struct user *u = user_of_directive(argv, argc, true, &e, arg);
    if (u == NULL) {
        snprintf(err, errcap, "Error in user declaration '%s': %s", arg, rule_err_text(e));
        return -1;
    }
    user_unref(u);
    return 0;
}

/* A config directive's user into L, or false with kvd's report of a bad config line in
 * err: "config: PATH:LINE: " or "--user: ", then Redis's text (its start-up loader's for
 * an unknown command or a name with spaces; users_conf_check refused the rest when the
 * directive was read). */
static bool load_conf_user(struct loader *L, const struct users_conf_line *line, const char *path,
                           char *err, size_t errcap)
{
    KV_ASSERT(errcap > 0);
    int w = line->lineno > 0 ? snprintf(err, errcap, "config: %s:%d: ", path, line->lineno)
                             : snprintf(err, errcap, "--user: ");
    size_t at = w > 0 && (size_t)w < errcap ? (size_t)w : errcap - 1; /* (the reason after) */
    const struct resp_arg *name = &line->argv[0];
    if (has_space(name->ptr, name->len)) {
        snprintf(err + at, errcap - at, "Spaces not allowed in ACL usernames");
        return false;
    }
    enum rule_err e;
    char arg[USERS_BAD_ARG_MAX + 1];
    struct user *u = user_of_directive(line->argv, line->argc, false, &e, arg);
    if (u == NULL) {
        KV_ASSERT(e == RULE_ENOENT); /* (any other error was refused when read) */
        snprintf(err + at, errcap - at, "Error loading ACL rule '%s' for the user named '%.*s': %s",
                 arg, (int)name->len, name->ptr, rule_err_text(e));
        return false;
    }
    KV_ASSERT(!seen_has(&L->seen, L->nu, name->ptr, name->len)); /* (refused when read) */
    L->nu = xrealloc(L->nu, (L->nn + 1) * sizeof *L->nu);
    L->nu[L->nn++] = u;
    seen_add(&L->seen, L->nu, L->nn - 1);
    return true;
}

int users_init(const char *pass, const char *file, const struct users_conf_line *conf, size_t nconf,
               const char *conf_path, char *err, size_t errcap)
{
    rows_init();
    pthread_mutex_lock(&mu);
    KV_ASSERT(nslots == 0);
    int at = publish_locked(default_user());
    KV_ASSERT(at == 0 && handle_of(0) == USERS_DEFAULT);
    set_requirepass_locked(pass);
    snprintf(aclfile, sizeof aclfile, "%s", file);
    int rc = 0;
    if (nconf > 0 && file[0] != '\0') {
        snprintf(err, errcap,
                 "Configuring Redis with users defined in redis.conf and at the same setting "
                 "an ACL file path is invalid. This setup is very likely to lead to "
                 "configuration errors and security holes, please define either an ACL file "
                 "or declare users directly in your redis.conf, but not both.");
        rc = -1;
    } else if (nconf > 0) {
        struct loader L = {0};
        for (size_t i = 0; i < nconf; i++) {
            KV_ASSERT(conf[i].argc >= 1);
            if (!load_conf_user(&L, &conf[i], conf_path, err, errcap)) {
                for (size_t j = 0; j < L.nn; j++) {
                    user_unref(L.nu[j]);
                }
                free(L.nu);
                free(L.seen.v);
                rc = -1;
                break;
            }
        }
        if (rc == 0) {
            rc = load_apply_locked(&L, err, errcap);
        }
    } else if (file[0] != '\0') {
        rc = load_file_locked(file, err, errcap);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

void users_cmd_load(struct resp_out *o)
{
    char err[4096];
    pthread_mutex_lock(&mu);
    int rc = aclfile[0] == '\0' ? 1 : load_file_locked(aclfile, err, sizeof err);
    pthread_mutex_unlock(&mu);
    if (rc == 1) {
        reply_error(o, "ERR This Redis instance is not configured to use an ACL file. You may "
                       "want to specify users via the ACL SETUSER command and then issue a "
                       "CONFIG REWRITE (assuming you have a Redis configuration file set) in "
                       "order to store users in the Redis configuration.");
    } else if (rc < 0) {
        reply_error(o, "ERR %s", err);
    } else {
        reply_ok(o);
    }
}

char *users_conf_lines(void)
{
    struct kv_buf b = {0};
    pthread_mutex_lock(&mu);
    bool none = aclfile[0] != '\0';
    uint32_t n = 0;
    uint32_t *v = none ? NULL : sorted_locked(&n);
    for (uint32_t i = 0; i < n; i++) {
        describe_user(&b, slots[v[i]]);
        kv_buf_put_str(&b, "\n");
    }
    free(v);
    pthread_mutex_unlock(&mu);
    if (none) {
        return NULL;
    }
    return kv_buf_cstr(&b); /* (no user: an empty string) */
}

void users_cmd_save(struct resp_out *o)
{
    pthread_mutex_lock(&mu);
    if (aclfile[0] == '\0') {
        pthread_mutex_unlock(&mu);
        users_cmd_load(o); /* the same refusal */
        return;
    }
    struct kv_buf b = {0};
    uint32_t n;
    uint32_t *v = sorted_locked(&n);
    for (uint32_t i = 0; i < n; i++) {
        describe_user(&b, slots[v[i]]);
        kv_buf_put_str(&b, "\n");
    }
    free(v);
    pthread_mutex_unlock(&mu);
    /* the file is written outside the registry's lock (AUTH and the shards' refreshes
     * do not wait for the disk), one SAVE at a time */
    static pthread_mutex_t save_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&save_mu);
    int e = kv_file_replace(aclfile, b.p, b.len);
    bool ok = e == 0;
    if (!ok) {
        kv_log_warning("ACL SAVE: cannot write %s: %s", aclfile, strerror(e));
    }
    pthread_mutex_unlock(&save_mu);
    free(b.p);
    if (ok) {
        reply_ok(o);
    } else {
        reply_error(o, "ERR There was an error trying to save the ACLs. Please check the server "
                       "logs for more information");
    }
}
