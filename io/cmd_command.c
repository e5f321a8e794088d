/*
 * cmd_command: COMMAND and its subcommands (COUNT, LIST, INFO, DOCS, GETKEYS,
 * GETKEYSANDFLAGS, HELP), the command table as clients see it, in Redis 7.0's reply
 * shapes.
 *
 * Two sources: cmd.c's table says what kvd does (names, arity, key positions: the
 * values a row's elements 1, 2, 4-6 take), cmd_docs.c holds Redis's metadata for the
 * same commands (flags, ACL categories, tips, key specifications, subcommands and the
 * documentation). A command without a cmd_docs entry still gets a row, built from
 * cmd.c alone (no categories, no key specifications), so adding a command never breaks
 * COMMAND; tools/gen_cmd_docs.py adds its entry.
 *
 * GETKEYS computes keys from the key specifications as Redis's getKeysUsingKeySpecs does
 * (SET's GET-dependent flags as its setGetKeys does), in two passes over the arguments
 * (count, then reply) so nothing is allocated. Any shard thread; reads const data only.
 */
#include "cmd.h"

#include "cmd_docs.h"
#include "kv_assert.h"
#include "kv_glob.h"
#include "reply.h"
#include "resp_parse.h"

#include <string.h>
#include <strings.h>

#define CMD_WORD_MAX 64 /* longest status word of a metadata word list (flags are ~15 bytes) */

/* What a row shows: kvd's own values for a top-level command, the table's for a
 * subcommand (which cmd.c has no row for). */
struct command_ref {
    const char *name;
    int arity, first_key, last_key, key_step;
    const char *flags;
    const struct cmd_docs *m; /* NULL: a command without metadata */
};

static bool has_keys(const struct cmd_docs *m);

static struct command_ref ref_of_desc(const struct cmd_desc *d)
{
    const struct cmd_docs *m = cmd_docs_find(d->name);
    /* a table generated before cmd.c changed the command (run tools/gen_cmd_docs.py); the
     * key positions are cmd.c's but where Redis's are channels (SPUBLISH, SSUBSCRIBE,
     * SUNSUBSCRIBE: "not_key" specs), which kvd does not route by */
    KV_DASSERT(m == NULL || (m->arity == d->arity &&
                             ((m->first_key == d->first_key && m->last_key == d->last_key &&
                               m->key_step == d->key_step) ||
                              (d->first_key == 0 && !has_keys(m)))));
    return (struct command_ref){d->name,
                                d->arity,
                                m != NULL ? m->first_key : d->first_key,
                                m != NULL ? m->last_key : d->last_key,
                                m != NULL ? m->key_step : d->key_step,
                                m != NULL ? m->flags : d->flag_names,
                                m};
}

static struct command_ref ref_of_docs(const struct cmd_docs *m)
{
    return (struct command_ref){m->name,  m->arity, m->first_key, m->last_key, m->key_step,
                                m->flags, m};
}

/* ---- word lists ------------------------------------------------------------------- */

static size_t words_count(const char *s)
{
    size_t n = 0;
    if (s == NULL) {
        return 0;
    }
    for (const char *p = s; *p != '\0'; p++) {
        n += *p != ' ' && (p == s || p[-1] == ' ');
    }
    return n;
}

/* A word list as a set of status strings (bulk strings if `bulk`). */
static void reply_words(struct resp_out *o, const char *s, bool bulk)
{
    reply_set(o, words_count(s));
    while (s != NULL && *s != '\0') {
        size_t n = strcspn(s, " ");
        if (n > 0) {
            if (bulk) {
                reply_bulk(o, s, n);
            } else {
                char w[CMD_WORD_MAX];
                KV_ASSERT(n < sizeof w);
                memcpy(w, s, n);
                w[n] = '\0';
                reply_simple(o, w);
            }
        }
        s += n + (s[n] == ' ');
    }
}

static bool words_has(const char *s, const char *word, size_t len, bool nocase)
{
    while (s != NULL && *s != '\0') {
        size_t n = strcspn(s, " ");
        if (n == len && (nocase ? strncasecmp(s, word, len) : strncmp(s, word, len)) == 0) {
            return true;
        }
        s += n + (s[n] == ' ');
    }
    return false;
}

/* Whether a command has keys (Redis's doesCommandHaveKeys): a key spec not flagged
 * "not_key" (SPUBLISH's and SSUBSCRIBE's channels are such). */
static bool has_keys(const struct cmd_docs *m)
{
    for (size_t i = 0; i < m->nspecs; i++) {
        if (!words_has(m->specs[i].flags, "not_key", 7, false)) {
            return true;
        }
    }
    return false;
}

/* True if the ACL category list `acl` ("@read @string") has category `cat` (given
 * without its '@', any case, as COMMAND LIST FILTERBY ACLCAT takes it). */
static bool acl_has(const char *acl, const struct resp_arg *cat)
{
    while (acl != NULL && *acl != '\0') {
        size_t n = strcspn(acl, " ");
        if (n == cat->len + 1 && acl[0] == '@' && strncasecmp(acl + 1, cat->ptr, cat->len) == 0) {
            return true;
        }
        acl += n + (acl[n] == ' ');
    }
    return false;
}

/* ---- COMMAND INFO rows -------------------------------------------------------------- */

static void reply_keyspec(struct resp_out *o, const struct cmd_docs_keyspec *ks)
{
    reply_map(o, ks->notes != NULL ? 4 : 3);
    if (ks->notes != NULL) {
        reply_bulk_str(o, "notes");
        reply_bulk_str(o, ks->notes);
    }
    reply_bulk_str(o, "flags");
    reply_words(o, ks->flags, false);
    reply_bulk_str(o, "begin_search");
    reply_map(o, 2);
    reply_bulk_str(o, "type");
    if (ks->keyword == NULL) {
        reply_bulk_str(o, "index");
        reply_bulk_str(o, "spec");
        reply_map(o, 1);
        reply_bulk_str(o, "index");
        reply_int(o, ks->begin);
    } else {
        reply_bulk_str(o, "keyword");
        reply_bulk_str(o, "spec");
        reply_map(o, 2);
        reply_bulk_str(o, "keyword");
        reply_bulk_str(o, ks->keyword);
        reply_bulk_str(o, "startfrom");
        reply_int(o, ks->begin);
    }
    static const char *const range[] = {"lastkey", "keystep", "limit"};
    static const char *const keynum[] = {"keynumidx", "firstkey", "keystep"};
    const char *const *names = ks->keynum ? keynum : range;
    reply_bulk_str(o, "find_keys");
    reply_map(o, 2);
    reply_bulk_str(o, "type");
    reply_bulk_str(o, ks->keynum ? "keynum" : "range");
    reply_bulk_str(o, "spec");
    reply_map(o, 3);
    for (size_t i = 0; i < 3; i++) {
        reply_bulk_str(o, names[i]);
        reply_int(o, ks->find[i]);
    }
}

/* One row of COMMAND / COMMAND INFO: Redis's ten elements. Empty lists are sets, as
 * Redis replies them; the subcommands are an array when there are some. */
static void reply_row(struct resp_out *o, const struct command_ref *r)
{
    const struct cmd_docs *m = r->m;
    reply_array(o, 10);
    reply_bulk_str(o, r->name);
    reply_int(o, r->arity);
    reply_words(o, r->flags, false);
    reply_int(o, r->first_key);
    reply_int(o, r->last_key);
    reply_int(o, r->key_step);
    reply_words(o, m != NULL ? m->acl : NULL, false);
    reply_words(o, m != NULL ? m->tips : NULL, true);
    reply_set(o, m != NULL ? m->nspecs : 0);
    for (size_t i = 0; m != NULL && i < m->nspecs; i++) {
        reply_keyspec(o, &m->specs[i]);
    }
    if (m == NULL || m->nsubs == 0) {
        reply_set(o, 0);
        return;
    }
    reply_array(o, m->nsubs);
    for (size_t i = 0; i < m->nsubs; i++) {
        struct command_ref sub = ref_of_docs(&m->subs[i]);
        reply_row(o, &sub);
    }
}

static size_t visible_count(const struct cmd_desc *t, size_t n)
{
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v += cmd_listed(&t[i]);
    }
    return v;
}

static void command_all(struct resp_out *o)
{
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    reply_array(o, visible_count(t, n));
    for (size_t i = 0; i < n; i++) {
        if (cmd_listed(&t[i])) {
            struct command_ref r = ref_of_desc(&t[i]);
            reply_row(o, &r);
        }
    }
}

/* A command by the name COMMAND INFO/DOCS take: "get", or "client|list" for a
 * subcommand kvd implements (any case). False if kvd has no such command. */
static bool lookup_full_name(const struct resp_arg *a, struct command_ref *out)
{
    const char *bar = memchr(a->ptr, '|', a->len);
    size_t base_len = bar != NULL ? (size_t)(bar - a->ptr) : a->len;
    const struct cmd_desc *d = cmd_lookup(a->ptr, base_len);
    if (d == NULL) {
        return false;
    }
    *out = ref_of_desc(d);
    if (bar == NULL) {
        return true;
    }
    const char *sub = bar + 1;
    size_t sub_len = a->len - base_len - 1;
    if (out->m == NULL || memchr(sub, '|', sub_len) != NULL) {
        return false;
    }
    const struct cmd_docs *s = cmd_docs_find_sub(out->m, sub, sub_len);
    if (s == NULL) {
        return false;
    }
    *out = ref_of_docs(s);
    return true;
}

static void command_info(struct cmd_ctx *x)
{
    if (x->argc == 2) {
        command_all(x->out);
        return;
    }
    reply_array(x->out, x->argc - 2);
    for (size_t i = 2; i < x->argc; i++) {
        struct command_ref r;
        if (lookup_full_name(&x->argv[i], &r)) {
            reply_row(x->out, &r);
        } else {
            reply_null(x->out);
        }
    }
}

/* ---- COMMAND DOCS ------------------------------------------------------------------- */

static void reply_str_field(struct resp_out *o, const char *name, const char *value)
{
    if (value != NULL) {
        reply_bulk_str(o, name);
        reply_bulk_str(o, value);
    }
}

static void reply_args(struct resp_out *o, const struct cmd_docs_arg *args, size_t n)
{
    reply_array(o, n);
    for (size_t i = 0; i < n; i++) {
        const struct cmd_docs_arg *a = &args[i];
        bool key = strcmp(a->type, "key") == 0;
        bool nested = strcmp(a->type, "oneof") == 0 || strcmp(a->type, "block") == 0;
        KV_ASSERT(nested == (a->nargs > 0));
        reply_map(o, 2 + key + (a->token != NULL) + (a->summary != NULL) + (a->since != NULL) +
                         (a->deprecated_since != NULL) + (a->flags != NULL) + nested);
        reply_str_field(o, "name", a->name);
        reply_str_field(o, "type", a->type);
        if (key) {
            reply_bulk_str(o, "key_spec_index");
            reply_int(o, a->key_spec_index);
        }
        reply_str_field(o, "token", a->token);
        reply_str_field(o, "summary", a->summary);
        reply_str_field(o, "since", a->since);
        reply_str_field(o, "deprecated_since", a->deprecated_since);
        if (a->flags != NULL) {
            reply_bulk_str(o, "flags");
            reply_words(o, a->flags, false);
        }
        if (nested) {
            reply_bulk_str(o, "arguments");
            reply_args(o, a->args, a->nargs);
        }
    }
}

/* The documentation map of one command, Redis's addReplyCommandDocs. */
static void reply_docs(struct resp_out *o, const struct cmd_docs *m)
{
    if (m == NULL) {
        reply_map(o, 0);
        return;
    }
    reply_map(o, (m->summary != NULL) + (m->since != NULL) + 1 + (m->complexity != NULL) +
                     (m->doc_flags != NULL) + (m->deprecated_since != NULL) +
                     (m->replaced_by != NULL) + (m->nhistory > 0) + (m->nargs > 0) +
                     (m->nsubs > 0));
    reply_str_field(o, "summary", m->summary);
    reply_str_field(o, "since", m->since);
    reply_str_field(o, "group", m->group);
    reply_str_field(o, "complexity", m->complexity);
    if (m->doc_flags != NULL) {
        reply_bulk_str(o, "doc_flags");
        reply_words(o, m->doc_flags, false);
    }
    reply_str_field(o, "deprecated_since", m->deprecated_since);
    reply_str_field(o, "replaced_by", m->replaced_by);
    if (m->nhistory > 0) {
        reply_bulk_str(o, "history");
        reply_set(o, m->nhistory);
        for (size_t i = 0; i < m->nhistory; i++) {
            reply_array(o, 2);
            reply_bulk_str(o, m->history[i].version);
            reply_bulk_str(o, m->history[i].text);
        }
    }
    if (m->nargs > 0) {
        reply_bulk_str(o, "arguments");
        reply_args(o, m->args, m->nargs);
    }
    if (m->nsubs > 0) {
        reply_bulk_str(o, "subcommands");
        reply_map(o, m->nsubs);
        for (size_t i = 0; i < m->nsubs; i++) {
            reply_bulk_str(o, m->subs[i].name);
            reply_docs(o, &m->subs[i]);
        }
    }
}

static void command_docs(struct cmd_ctx *x)
{
    if (x->argc == 2) {
        size_t n;
        const struct cmd_desc *t = cmd_table(&n);
        reply_map(x->out, visible_count(t, n));
        for (size_t i = 0; i < n; i++) {
            if (cmd_listed(&t[i])) {
                reply_bulk_str(x->out, t[i].name);
                reply_docs(x->out, cmd_docs_find(t[i].name));
            }
        }
        return;
    }
    /* Unknown names are skipped: count first, the map's length comes first. */
    size_t found = 0;
    for (size_t i = 2; i < x->argc; i++) {
        struct command_ref r;
        found += lookup_full_name(&x->argv[i], &r);
    }
    reply_map(x->out, found);
    for (size_t i = 2; i < x->argc; i++) {
        struct command_ref r;
        if (lookup_full_name(&x->argv[i], &r)) {
            reply_bulk_str(x->out, r.name);
            reply_docs(x->out, r.m);
        }
    }
}

/* ---- COMMAND LIST ------------------------------------------------------------------- */

enum list_filter { LIST_ALL, LIST_MODULE, LIST_ACLCAT, LIST_PATTERN };

static bool list_match(enum list_filter f, const struct resp_arg *arg, const char *name,
                       const struct cmd_docs *m)
{
    switch (f) {
    case LIST_ALL:
        return true;
    case LIST_MODULE:
        return false; /* kvd has no modules */
    case LIST_ACLCAT:
        return m != NULL && acl_has(m->acl, arg);
    case LIST_PATTERN:
        return kv_glob_match(arg->ptr, arg->len, name, strlen(name), true);
    }
    return false;
}

/* Names of the commands (and their subcommands) that pass the filter. Counts if `o` is
 * NULL, else replies each name. */
static size_t list_walk(struct resp_out *o, enum list_filter f, const struct resp_arg *arg)
{
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        if (!cmd_listed(&t[i])) {
            continue;
        }
        const struct cmd_docs *m = cmd_docs_find(t[i].name);
        if (list_match(f, arg, t[i].name, m)) {
            found++;
            if (o != NULL) {
                reply_bulk_str(o, t[i].name);
            }
        }
        /* and its subcommands, as "container|sub" (Redis 7.0 does, filtered or not) */
        for (size_t j = 0; m != NULL && j < m->nsubs; j++) {
            if (list_match(f, arg, m->subs[j].name, &m->subs[j])) {
                found++;
                if (o != NULL) {
                    reply_bulk_str(o, m->subs[j].name);
                }
            }
        }
    }
    return found;
}

/* COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern] */
static void command_list(struct cmd_ctx *x)
{
    enum list_filter f = LIST_ALL;
    const struct resp_arg *arg = NULL;
    if (x->argc != 2) {
        const struct resp_arg *type = &x->argv[3];
        if (x->argc != 5 || !cmd_arg_is(&x->argv[2], "filterby")) {
            reply_err_syntax(x->out);
            return;
        }
        if (cmd_arg_is(type, "module")) {
            f = LIST_MODULE;
        } else if (cmd_arg_is(type, "aclcat")) {
            f = LIST_ACLCAT;
        } else if (cmd_arg_is(type, "pattern")) {
            f = LIST_PATTERN;
        } else {
            reply_err_syntax(x->out);
            return;
        }
        arg = &x->argv[4];
    }
    size_t count = list_walk(NULL, f, arg);
    reply_array(x->out, count);
    size_t replied = list_walk(x->out, f, arg);
    KV_ASSERT(replied == count);
}

/* ---- COMMAND GETKEYS / GETKEYSANDFLAGS ------------------------------------------------ */

/* Where one key specification finds its keys in argv: positions first, first + step, ...
 * up to last (Redis's getKeysUsingKeySpecs). False if the arguments do not fit it (its
 * invalid_spec). Every command kvd has begins its keys at an index and finds them by
 * range; tools/gen_cmd_docs.py refuses keyword and keynum specifications until this
 * function handles them. */
static bool keyspec_range(const struct cmd_docs_keyspec *ks, size_t argc, int *first, int *last,
                          int *step)
{
    KV_ASSERT(ks->keyword == NULL && !ks->keynum); /* keynum: keyspec_keynum */
    int n = (int)argc;
    int f = ks->begin;
    int l;
    if (ks->find[0] >= 0) {
        l = f + ks->find[0]; /* lastkey counts from the first key */
    } else if (ks->find[2] == 0) {
        l = n + ks->find[0]; /* from the end of the arguments */
    } else {
        l = f + ((n - f) / ks->find[2] + ks->find[0]); /* a 1/limit share of the rest */
    }
    if (l >= n || l < f || f >= n || ks->find[1] <= 0) {
        return false;
    }
    *first = f;
    *last = l;
    *step = ks->find[1];
    return true;
}

/* Where a keynum specification (EVAL's: a key count, then that many keys) finds its
 * keys. A count that is no integer, negative or beyond the arguments finds none, as
 * Redis's evalGetKeys does. */
static void keyspec_keynum(const struct cmd_docs_keyspec *ks, size_t argc,
                           const struct resp_arg *argv, int *first, int *last, int *step)
{
    KV_ASSERT(ks->keynum && ks->keyword == NULL);
    size_t at = (size_t)ks->begin + (size_t)ks->find[0];
    int64_t n;
    *first = ks->begin + ks->find[1];
    *step = ks->find[2] > 0 ? ks->find[2] : 1;
    *last = *first - 1; /* none */
    if (at < argc && cmd_parse_i64(&argv[at], &n) && n > 0 &&
        (uint64_t)*first + (uint64_t)(n - 1) * (uint64_t)*step < argc) {
        *last = *first + (int)(n - 1) * *step;
    }
}

/* SET's keys (Redis's setGetKeys): one, read and written if a GET option is given. */
static const char *set_key_flags(size_t argc, const struct resp_arg *argv)
{
    for (size_t i = 3; i < argc; i++) {
        if (cmd_arg_is(&argv[i], "get")) {
            return "RW access update";
        }
    }
    return "OW update";
}

/* BITFIELD's key flags, as Redis 7.0's bitfieldGetKeys finds them: read-only while the
 * arguments are complete GETs and OVERFLOWs, else a write. */
static const char *bitfield_key_flags(size_t argc, const struct resp_arg *argv)
{
    for (size_t j = 2; j < argc; j++) {
        size_t rem = argc - j - 1;
        if (cmd_arg_is(&argv[j], "get") && rem >= 2) {
            j += 2;
        } else if (cmd_arg_is(&argv[j], "overflow") && rem >= 1) {
            j += 1;
        } else {
            return "RW access update";
        }
    }
    return "RO access";
}

/* Where key spec ks finds its keys in argv (first to last by step). */
enum spec_span {
    SPAN_KEYS,
    SPAN_NONE, /* a "not_key" spec (SPUBLISH's channel) */
    SPAN_LOST, /* the arguments fit the spec not, or it is "incomplete" */
};

static enum spec_span spec_span(const struct cmd_docs_keyspec *ks, size_t argc,
                                const struct resp_arg *argv, int *first, int *last, int *step)
{
    *first = 0;
    *last = -1;
    *step = 1;
    if (words_has(ks->flags, "not_key", 7, false)) {
        return SPAN_NONE;
    }
    if (ks->keynum) {
        keyspec_keynum(ks, argc, argv, first, last, step);
        return SPAN_KEYS;
    }
    if (!keyspec_range(ks, argc, first, last, step) ||
        words_has(ks->flags, "incomplete", 10, false)) {
        return SPAN_LOST;
    }
    return SPAN_KEYS;
}

/* Counts the keys (o == NULL) or replies them; -1 if the arguments fit no spec. */
static int64_t getkeys_walk(struct resp_out *o, bool with_flags,
                            const struct cmd_docs_keyspec *specs, size_t nspecs, size_t argc,
                            const struct resp_arg *argv)
{
    int64_t count = 0;
    for (size_t j = 0; j < nspecs; j++) {
        const struct cmd_docs_keyspec *ks = &specs[j];
        int first, last, step;
        if (spec_span(ks, argc, argv, &first, &last, &step) == SPAN_LOST) {
            return -1; /* (SPAN_NONE: first > last, nothing to walk) */
        }
        for (int i = first; i <= last; i += step) {
            count++;
            if (o == NULL) {
                continue;
            }
            if (with_flags) {
                reply_array(o, 2);
                reply_bulk(o, argv[i].ptr, argv[i].len);
                reply_words(o, ks->flags, false);
            } else {
                reply_bulk(o, argv[i].ptr, argv[i].len);
            }
        }
    }
    return count;
}

void cmd_keys_each(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv,
                   cmd_key_fn *fn, void *arg)
{
    struct command_ref r = ref_of_desc(d);
    if (argc >= 2 && r.m != NULL && r.m->nsubs > 0) {
        const struct cmd_docs *s = cmd_docs_find_sub(r.m, argv[1].ptr, argv[1].len);
        if (s == NULL) {
            return; /* an unknown subcommand has no keys (it fails anyway) */
        }
        r = ref_of_docs(s);
    }
    if (r.m != NULL && !has_keys(r.m)) {
        return;
    }
    const char *vflags = NULL; /* the flags that depend on the arguments */
    if (r.m != NULL && strcmp(r.name, "set") == 0) {
        vflags = set_key_flags(argc, argv);
    } else if (r.m != NULL && strcmp(r.name, "bitfield") == 0) {
        vflags = bitfield_key_flags(argc, argv);
    }
    bool walked = r.m != NULL;
    for (size_t j = 0; r.m != NULL && j < r.m->nspecs; j++) {
        const struct cmd_docs_keyspec *ks = &r.m->specs[j];
        int first, last, step;
        if (spec_span(ks, argc, argv, &first, &last, &step) == SPAN_LOST) {
            walked = false;
            break;
        }
        for (int i = first; i <= last; i += step) {
            fn(arg, (size_t)i, vflags != NULL ? vflags : ks->flags);
        }
    }
    if (!walked && r.first_key > 0) {
        /* no metadata, or arguments its specs cannot follow: every key position, read
         * and written */
        size_t last = r.last_key < 0 ? (size_t)((int64_t)argc + r.last_key) : (size_t)r.last_key;
        size_t step = r.key_step > 0 ? (size_t)r.key_step : 1;
        for (size_t i = (size_t)r.first_key; i <= last && i < argc; i += step) {
            fn(arg, i, "RW access update");
        }
    }
}

static void command_getkeys(struct cmd_ctx *x, bool with_flags)
{
    KV_ASSERT(x->argc >= 4); /* COMMAND GETKEYS's arity (-4), checked by cmd_command */
    size_t argc = x->argc - 2;
    const struct resp_arg *argv = &x->argv[2];
    const struct cmd_desc *d = cmd_lookup(argv[0].ptr, argv[0].len);
    if (d == NULL) {
        reply_error(x->out, "ERR Invalid command specified");
        return;
    }
    struct command_ref r = ref_of_desc(d);
    if (argc >= 2 && r.m != NULL && r.m->nsubs > 0) {
        const struct cmd_docs *s = cmd_docs_find_sub(r.m, argv[1].ptr, argv[1].len);
        if (s == NULL) {
            reply_error(x->out, "ERR Invalid command specified");
            return;
        }
        r = ref_of_docs(s);
    }
    /* Without metadata, cmd.c's key positions as one range spec. */
    struct cmd_docs_keyspec legacy = {
        NULL,  "",
        NULL,  r.first_key,
        false, {r.last_key < 0 ? r.last_key : r.last_key - r.first_key, r.key_step, 0}};
    const struct cmd_docs_keyspec *specs = r.m != NULL ? r.m->specs : &legacy;
    size_t nspecs = r.m != NULL ? r.m->nspecs : (r.first_key > 0);
    if (nspecs == 0 || (r.m != NULL && !has_keys(r.m))) {
        reply_error(x->out, "ERR The command has no key arguments");
        return;
    }
    if ((r.arity > 0 && (size_t)r.arity != argc) || (r.arity < 0 && argc < (size_t)-r.arity)) {
        reply_error(x->out, "ERR Invalid number of arguments specified for command");
        return;
    }
    bool variable_flags = false;
    for (size_t i = 0; i < nspecs; i++) {
        variable_flags |= words_has(specs[i].flags, "variable_flags", 14, false);
    }
    if (variable_flags) {
        /* the flags depend on the arguments: SET's and BITFIELD's rules are known (as in
         * Redis, where only commands with a getkeys procedure declare variable flags) */
        bool set = strcmp(r.name, "set") == 0;
        if (!set && strcmp(r.name, "bitfield") != 0) {
            reply_error(x->out, "ERR Invalid arguments specified for command");
            return;
        }
        reply_array(x->out, 1);
        if (with_flags) {
            reply_array(x->out, 2);
            reply_bulk(x->out, argv[1].ptr, argv[1].len);
            reply_words(x->out, set ? set_key_flags(argc, argv) : bitfield_key_flags(argc, argv),
                        false);
        } else {
            reply_bulk(x->out, argv[1].ptr, argv[1].len);
        }
        return;
    }
    int64_t count = getkeys_walk(NULL, with_flags, specs, nspecs, argc, argv);
    bool keynum = false; /* EVAL & co: no keys is an empty answer, as Redis's evalGetKeys */
    for (size_t i = 0; i < nspecs; i++) {
        keynum |= specs[i].keynum;
    }
    if (count < 0 || (count == 0 && !keynum)) {
        reply_error(x->out, "ERR Invalid arguments specified for command");
        return;
    }
    reply_array(x->out, (size_t)count);
    int64_t replied = getkeys_walk(x->out, with_flags, specs, nspecs, argc, argv);
    KV_ASSERT(replied == count);
}

/* ---- COMMAND ------------------------------------------------------------------------ */

static void command_help(struct cmd_ctx *x)
{
    static const char *const lines[] = {
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)",
        "    Return details about all Redis commands.",
        "COUNT",
        "    Return the total number of commands in this Redis server.",
        "LIST",
        "    Return a list of all commands in this Redis server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple Redis commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "GETKEYS <full-command>",
        "    Return the keys from a full Redis command.",
        "GETKEYSANDFLAGS <full-command>",
        "    Return the keys and the access flags from a full Redis command.",
        "HELP",
        "    Prints this help.",
    };
    reply_lines(x->out, lines, KV_ARRAY_LEN(lines));
}

void cmd_command(struct cmd_ctx *x)
{
    if (x->argc == 1) {
        command_all(x->out);
        return;
    }
    const struct cmd_docs *self = cmd_docs_find("command");
    KV_ASSERT(self != NULL); /* the generated table always has COMMAND's subcommands */
    const struct cmd_docs *sub = cmd_docs_find_sub(self, x->argv[1].ptr, x->argv[1].len);
    if (sub == NULL) {
        cmd_reply_unknown_subcommand(x);
        return;
    }
    if ((sub->arity > 0 && x->argc != (size_t)sub->arity) ||
        (sub->arity < 0 && x->argc < (size_t)-sub->arity)) {
        cmd_reply_sub_arity(x);
        return;
    }
    const char *name = sub->name + strlen("command|");
    if (strcmp(name, "count") == 0) {
        size_t n;
        const struct cmd_desc *t = cmd_table(&n);
        reply_int(x->out, (int64_t)visible_count(t, n));
    } else if (strcmp(name, "info") == 0) {
        command_info(x);
    } else if (strcmp(name, "docs") == 0) {
        command_docs(x);
    } else if (strcmp(name, "list") == 0) {
        command_list(x);
    } else if (strcmp(name, "getkeys") == 0) {
        command_getkeys(x, false);
    } else if (strcmp(name, "getkeysandflags") == 0) {
        command_getkeys(x, true);
    } else {
        KV_ASSERT(strcmp(name, "help") == 0);
        command_help(x);
    }
}
