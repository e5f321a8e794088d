/*
 * kv_config: parsing and storing settings. See kv_config.h for the model.
 *
 * Error reasons follow Redis 7's CONFIG SET texts so that the server can wrap them as
 * "ERR CONFIG SET failed (possibly related to argument '<name>') - <reason>".
 */
#include "kv_config.h"

#include "kv_assert.h"
#include "kv_buf.h"
#include "kv_error.h"
#include "kv_num.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KV_CONF_LINE_MAX 4096 /* longest line of a config file */

const struct kv_conf_item *kv_conf_find(const struct kv_conf_item *items, size_t n,
                                        const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(items[i].name, name) == 0) {
            return &items[i];
        }
    }
    return NULL;
}

static int parse_int(const char *s, int64_t *out)
{
    return kv_parse_i64(s, strlen(s), out) ? 0 : KV_EINVAL;
}

int kv_conf_parse_bytes(const char *s, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t mul;
    } units[] = {{"kb", 1024},
                 {"k", 1000},
                 {"mb", 1024 * 1024},
                 {"m", 1000 * 1000},
                 {"gb", 1LL << 30},
                 {"g", 1000LL * 1000 * 1000},
                 {"b", 1}};
    char digits[32];
    size_t len = strlen(s);
    size_t d = 0;
    while (d < len && (isdigit((unsigned char)s[d]) || (d == 0 && s[d] == '-'))) {
        d++;
    }
    if (d == 0 || d >= sizeof digits) {
        return KV_EINVAL;
    }
    memcpy(digits, s, d);
    digits[d] = '\0';
    int64_t v;
    if (parse_int(digits, &v) != 0) {
        return KV_EINVAL;
    }
    int64_t mul = 1;
    if (d < len) {
        mul = 0;
        for (size_t i = 0; i < KV_ARRAY_LEN(units); i++) {
            if (strcasecmp(s + d, units[i].suffix) == 0) {
                mul = units[i].mul;
                break;
            }
        }
        if (mul == 0) {
            return KV_EINVAL;
        }
    }
    if (v != 0 && (v > INT64_MAX / mul || v < INT64_MIN / mul)) {
        return KV_EINVAL;
    }
    *out = v * mul;
    return 0;
}

/* Text settings changed at run time (CONFIG SET) are read by other threads (CONFIG GET):
 * each copy in or out holds this. */
static pthread_mutex_t str_mu = PTHREAD_MUTEX_INITIALIZER;

static int set_string(const struct kv_conf_item *item, const char *value, char *err, size_t errlen)
{
    KV_ASSERT(item->str != NULL && item->str_cap > 0);
    size_t len = strlen(value);
    if (len >= item->str_cap) {
        snprintf(err, errlen, "argument is longer than %zu bytes", item->str_cap - 1);
        return KV_EINVAL;
    }
    pthread_mutex_lock(&str_mu);
    memcpy(item->str, value, len + 1);
    pthread_mutex_unlock(&str_mu);
    return 0;
}

static int set_number(const struct kv_conf_item *item, const char *value, char *err, size_t errlen)
{
    int64_t v = 0;
    switch (item->type) {
    case KV_CONF_INT:
        if (parse_int(value, &v) != 0) {
            snprintf(err, errlen, "argument couldn't be parsed into an integer");
            return KV_EINVAL;
        }
        break;
    case KV_CONF_BYTES:
        if (kv_conf_parse_bytes(value, &v) != 0) {
            snprintf(err, errlen, "argument must be a memory value");
            return KV_EINVAL;
        }
        break;
    case KV_CONF_BOOL:
        if (strcasecmp(value, "yes") == 0) {
            v = 1;
        } else if (strcasecmp(value, "no") == 0) {
            v = 0;
        } else {
            snprintf(err, errlen, "argument must be 'yes' or 'no'");
            return KV_EINVAL;
        }
        break;
    case KV_CONF_ENUM: {
        KV_ASSERT(item->choices != NULL);
        v = -1;
        for (int64_t i = 0; item->choices[i] != NULL; i++) {
            if (strcasecmp(value, item->choices[i]) == 0) {
                v = i;
            }
        }
        if (v < 0) {
            size_t off = (size_t)snprintf(err, errlen, "argument(s) must be one of the following:");
            for (int i = 0; item->choices[i] != NULL && off < errlen; i++) {
                off += (size_t)snprintf(err + off, errlen - off, "%s %s", i ? "," : "",
                                        item->choices[i]);
            }
            return KV_EINVAL;
        }
        break;
    }
    case KV_CONF_CUSTOM:
        KV_ASSERT(item->parse != NULL && item->format != NULL);
        v = item->parse(value, err, errlen);
        if (v < 0) {
            return KV_EINVAL;
        }
        break;
    default:
        KV_ASSERT(0);
    }
    if ((item->type == KV_CONF_INT || item->type == KV_CONF_BYTES) &&
        (v < item->min || v > item->max)) {
        snprintf(err, errlen, "argument must be between %" PRId64 " and %" PRId64 " inclusive",
                 item->min, item->max);
        return KV_EINVAL;
    }
    atomic_store_explicit(item->num, v, memory_order_relaxed);
    return 0;
}

int kv_conf_set(const struct kv_conf_item *item, const char *value, bool at_runtime, char *err,
                size_t errlen)
{
    KV_ASSERT(item != NULL && value != NULL);
    if (at_runtime && !(item->flags & KV_CONF_RUNTIME)) {
        snprintf(err, errlen, "can't set immutable config");
        return KV_EINVAL;
    }
    if (item->type == KV_CONF_STRING) {
        return set_string(item, value, err, errlen);
    }
    KV_ASSERT(item->num != NULL);
    return set_number(item, value, err, errlen);
}

int kv_conf_defaults(const struct kv_conf_item *items, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        char why[160];
        if (kv_conf_set(&items[i], items[i].def, false, why, sizeof why) != 0) {
            snprintf(err, errlen, "default of '%s' is invalid: %s", items[i].name, why);
            return KV_EINVAL;
        }
    }
    return 0;
}

size_t kv_conf_format(const struct kv_conf_item *item, char *buf, size_t cap)
{
    KV_ASSERT(cap > 0);
    int n;
    if (item->type == KV_CONF_STRING) {
        pthread_mutex_lock(&str_mu);
        n = snprintf(buf, cap, "%s", item->str);
        pthread_mutex_unlock(&str_mu);
    } else {
        int64_t v = KV_CONF_GET(*item->num);
        if (item->type == KV_CONF_BOOL) {
            n = snprintf(buf, cap, "%s", v ? "yes" : "no");
        } else if (item->type == KV_CONF_ENUM) {
            n = snprintf(buf, cap, "%s", item->choices[v]);
        } else if (item->type == KV_CONF_CUSTOM) {
            return item->format(v, buf, cap);
        } else {
            n = snprintf(buf, cap, "%" PRId64, v);
        }
    }
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Splits a config line into at most two words, the second optionally "quoted" with
 * \" and \\ escapes or 'quoted' with \' (as redis.conf's logfile ''). Returns the number
 * of words, or -1 for a malformed line. */
static int split_line(char *line, char **name, char **value)
{
    char *p = line;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    *name = p;
    while (*p != '\0' && !isspace((unsigned char)*p)) {
        p++;
    }
    if (*p == '\0') {
        return 1;
    }
    *p++ = '\0';
    while (isspace((unsigned char)*p)) {
        p++;
    }
    char *end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1])) {
        *--end = '\0';
    }
    if (*p != '"' && *p != '\'') {
        *value = p;
        return 2;
    }
    /* "double" quotes take \" and \\; 'single' quotes take \' only (sdssplitargs) */
    char q = *p;
    char *w = p;
    for (char *r = p + 1; *r != '\0'; r++) {
        if (*r == '\\' && (r[1] == q || (q == '"' && r[1] == '\\'))) {
            *w++ = *++r;
        } else if (*r == q) {
            if (r[1] != '\0') {
                return -1;
            }
            *w = '\0';
            *value = p;
            return 2;
        } else {
            *w++ = *r;
        }
    }
    return -1; /* unbalanced quotes */
}

int kv_conf_load_file(const struct kv_conf_item *items, size_t n, const char *path, char *err,
                      size_t errlen)
{
    return kv_conf_load_file_ex(items, n, path, NULL, NULL, err, errlen);
}

static int load_file(const struct kv_conf_item *items, size_t n, const char *path,
                     kv_conf_other_fn *other, void *arg, bool *listed, int depth, char *err,
                     size_t errlen);

/* "include PATH": the file, or every file a pattern (* ? [) matches, in glob order (none
 * is no error for a pattern, as Redis's include of an empty conf.d). */
static int load_include(const struct kv_conf_item *items, size_t n, const char *pattern,
                        kv_conf_other_fn *other, void *arg, bool *listed, int depth, char *err,
                        size_t errlen)
{
    if (depth >= KV_CONF_INCLUDE_DEPTH_MAX) {
        snprintf(err, errlen, "%s: includes nested deeper than %d (a loop?)", pattern,
                 KV_CONF_INCLUDE_DEPTH_MAX);
        return KV_EINVAL;
    }
    if (strpbrk(pattern, "*?[") == NULL) {
        return load_file(items, n, pattern, other, arg, listed, depth + 1, err, errlen);
    }
    glob_t g;
    int rc = 0;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) {
            rc = load_file(items, n, g.gl_pathv[i], other, arg, listed, depth + 1, err, errlen);
        }
        globfree(&g);
    }
    return rc;
}

int kv_conf_load_file_ex(const struct kv_conf_item *items, size_t n, const char *path,
                         kv_conf_other_fn *other, void *arg, char *err, size_t errlen)
{
    bool *listed = calloc(n ? n : 1, sizeof *listed); /* KV_CONF_LIST items set by the files */
    if (listed == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return KV_EINVAL;
    }
    int rc = load_file(items, n, path, other, arg, listed, 0, err, errlen);
    free(listed);
    return rc;
}

static int load_file(const struct kv_conf_item *items, size_t n, const char *path,
                     kv_conf_other_fn *other, void *arg, bool *listed, int depth, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    /* lines of any length (CONFIG REWRITE writes a user's rules on one line, as Redis) */
    char *line = NULL, *raw = NULL;
    size_t cap = 0, raw_cap = 0;
    int lineno = 0;
    int rc = 0;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)got + 1 > raw_cap) {
            char *r = realloc(raw, (size_t)got + 1);
            if (r == NULL) {
                snprintf(err, errlen, "%s:%d: out of memory", path, lineno);
                rc = KV_EINVAL;
                break;
            }
            raw = r;
            raw_cap = (size_t)got + 1;
        }
        memcpy(raw, line, (size_t)got + 1);
        raw[strcspn(raw, "\r\n")] = '\0';
        char *name = NULL;
        char *value = NULL;
        int words = split_line(line, &name, &value);
        if (words == 0) {
            continue;
        }
        const struct kv_conf_item *item = kv_conf_find(items, n, name);
        char why[512]; /* (a user directive's reason quotes the rule) */
        if (item == NULL && words == 2 && strcasecmp(name, "include") == 0) {
            rc = load_include(items, n, value, other, arg, listed, depth, err, errlen);
        } else if (item == NULL && other != NULL) {
            rc = other(arg, raw, lineno, why, sizeof why);
            if (rc != 0) {
                snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            }
        } else if (words != 2 || item == NULL) {
            snprintf(err, errlen, "%s:%d: bad directive or wrong number of arguments", path,
                     lineno);
            rc = KV_EINVAL;
        } else if ((item->flags & KV_CONF_LIST) && item->type == KV_CONF_STRING &&
                   listed[item - items] && value[0] != '\0' && item->str[0] != '\0') {
            size_t have = strlen(item->str), add = strlen(value);
            if (have + 1 + add >= item->str_cap) {
                snprintf(err, errlen, "%s:%d: '%s': too long", path, lineno, item->name);
                rc = KV_EINVAL;
            } else {
                item->str[have] = ' ';
                memcpy(item->str + have + 1, value, add + 1);
            }
        } else if (kv_conf_set(item, value, false, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%d: '%s': %s", path, lineno, item->name, why);
            rc = KV_EINVAL;
        } else {
            listed[item - items] = true;
        }
    }
    free(line);
    free(raw);
    fclose(f);
    return rc;
}

#define KV_CONF_SIGNATURE "# Generated by CONFIG REWRITE"

/* Whether the current value of a setting is its default (value() of both). */
static bool is_default(const struct kv_conf_item *item, kv_conf_value_fn *value)
{
    char cur[KV_CONF_LINE_MAX], def[KV_CONF_LINE_MAX];
    value(item, cur, sizeof cur);
    if (item->type == KV_CONF_STRING) {
        return strcmp(cur, item->def) == 0;
    }
    struct kv_conf_item tmp = *item; /* the default, parsed and formatted as a value */
    _Atomic int64_t v = 0;
    tmp.num = &v;
    char why[160];
    if (set_number(&tmp, item->def, why, sizeof why) != 0) {
        return false;
    }
    kv_conf_format(&tmp, def, sizeof def);
    return strcmp(cur, def) == 0;
}

static void put_str(struct kv_buf *out, const char *s)
{
    kv_buf_put(out, s, strlen(s));
}

/* "name value\n", the value quoted when the loader would not read it back as is;
 * false for a value no line can hold (a line break). */
static bool put_setting(struct kv_buf *out, const struct kv_conf_item *item,
                        kv_conf_value_fn *value)
{
    char v[KV_CONF_LINE_MAX];
    size_t len = value(item, v, sizeof v);
    if (strcspn(v, "\r\n") < len) {
        return false;
    }
    bool quote = len == 0 || v[0] == '#' || v[0] == '"';
    for (size_t i = 0; i < len && !quote; i++) {
        quote = isspace((unsigned char)v[i]) || v[i] == '\\';
    }
    put_str(out, item->name);
    kv_buf_put(out, " ", 1);
    if (!quote) {
        kv_buf_put(out, v, len);
    } else {
        kv_buf_put(out, "\"", 1);
        for (size_t i = 0; i < len; i++) {
            if (v[i] == '"' || v[i] == '\\') {
                kv_buf_put(out, "\\", 1);
            }
            kv_buf_put(out, &v[i], 1);
        }
        kv_buf_put(out, "\"", 1);
    }
    kv_buf_put(out, "\n", 1);
    return true;
}

int kv_conf_rewrite_text(const struct kv_conf_item *items, size_t n, kv_conf_value_fn *value,
                         const char *old, const char *other, const char *other_lines,
                         struct kv_buf *out, char *err, size_t errlen)
{
    KV_ASSERT(n <= 256);
    bool done[256] = {false};
    bool other_done = false, signed_ = false;
    for (const char *l = old; *l != '\0';) {
        const char *end = strchr(l, '\n');
        size_t len = end != NULL ? (size_t)(end - l) : strlen(l);
        const char *next = end != NULL ? end + 1 : l + len;
        /* the line, and a copy split into words (any length: user lines are long) */
        struct kv_buf line = {0}, words = {0};
        kv_buf_put(&line, l, len);
        kv_buf_put(&line, "", 1);
        line.p[strcspn(line.p, "\r")] = '\0';
        kv_buf_put(&words, line.p, strlen(line.p) + 1);
        char *name = NULL, *val = NULL;
        int nw = split_line(words.p, &name, &val);
        const struct kv_conf_item *item = nw > 0 ? kv_conf_find(items, n, name) : NULL;
        bool signature = strcmp(line.p, KV_CONF_SIGNATURE) == 0;
        bool other_line = nw > 0 && other != NULL && other_lines != NULL && item == NULL &&
                          strcasecmp(name, other) == 0;
        kv_buf_free(&line);
        kv_buf_free(&words);
        if (item != NULL) {
            size_t i = (size_t)(item - items);
            if (!done[i]) {
                done[i] = true;
                if (!put_setting(out, item, value)) {
                    snprintf(err, errlen, "the value of '%s' holds a line break", item->name);
                    return KV_EINVAL;
                }
            }
        } else if (other_line) {
            if (!other_done) {
                other_done = true;
                put_str(out, other_lines);
            }
        } else {
            signed_ = signed_ || signature;
            kv_buf_put(out, l, (size_t)(next - l));
            if (end == NULL) {
                kv_buf_put(out, "\n", 1); /* the last line gets its newline */
            }
        }
        l = next;
    }
    bool signature_due = !signed_;
    for (size_t i = 0; i < n; i++) {
        if (!done[i] && !is_default(&items[i], value)) {
            if (signature_due) {
                put_str(out, KV_CONF_SIGNATURE "\n");
                signature_due = false;
            }
            if (!put_setting(out, &items[i], value)) {
                snprintf(err, errlen, "the value of '%s' holds a line break", items[i].name);
                return KV_EINVAL;
            }
        }
    }
    if (other_lines != NULL && !other_done && other_lines[0] != '\0') {
        if (signature_due) {
            put_str(out, KV_CONF_SIGNATURE "\n");
        }
        put_str(out, other_lines);
    }
    return 0;
}

static bool in_list(const char *const *list, const char *name, size_t len)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (strlen(list[i]) == len && strncasecmp(list[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

/* An argument as kv_splitargs reads it back: a plain word as it is (the ACL loader of
 * "user" lines splits at spaces and does not unquote), anything else quoted. */
static void put_arg_quoted(struct kv_buf *out, const char *a)
{
    bool plain = a[0] != '\0';
    for (const char *p = a; *p != '\0' && plain; p++) {
        unsigned char ch = (unsigned char)*p;
        plain = ch > ' ' && ch != '"' && ch != '\'' && ch != '\\' && ch != 0x7f;
    }
    if (plain) {
        put_str(out, a);
    } else {
        kv_buf_put_repr(out, a, strlen(a));
    }
}

int kv_conf_parse_args(const struct kv_conf_item *items, size_t n, int argc, char **argv, int first,
                       const char *const *skip, char *err, size_t errlen)
{
    return kv_conf_parse_args_ex(items, n, argc, argv, first, skip, NULL, NULL, err, errlen);
}

int kv_conf_parse_args_ex(const struct kv_conf_item *items, size_t n, int argc, char **argv,
                          int first, const char *const *skip, kv_conf_other_fn *other, void *arg,
                          char *err, size_t errlen)
{
    int rc = 0;
    struct kv_buf v = {0};
    for (int i = first; rc == 0 && i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, errlen, "unexpected argument '%s' (settings are --name value)", a);
            rc = KV_EINVAL;
            break;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        /* The value: after '=', or the next argument (whatever it is) and every argument
         * after it up to the next --flag, as redis-server joins them ("--save 900 1"). */
        int vfirst = i + 1, vend = i + 1;
        if (eq == NULL) {
            if (name_len == 4 && strncmp(name, "save", 4) == 0 &&
                (vfirst == argc || strncmp(argv[vfirst], "--", 2) == 0)) {
                vend = vfirst; /* "--save" alone or before a flag: save "" (as Redis) */
            } else if (vfirst >= argc) {
                snprintf(err, errlen, "--%s needs a value", name);
                rc = KV_EINVAL;
                break;
            } else {
                vend = vfirst + 1;
                while (vend < argc && strncmp(argv[vend], "--", 2) != 0) {
                    vend++;
                }
            }
            i = vend - 1;
        }
        if (in_list(skip, name, name_len)) {
            continue;
        }
        char key[128];
        if (name_len >= sizeof key) {
            snprintf(err, errlen, "unknown setting '--%.*s'", 64, name);
            rc = KV_EINVAL;
            break;
        }
        memcpy(key, name, name_len);
        key[name_len] = '\0';
        const struct kv_conf_item *item = kv_conf_find(items, n, key);
        v.len = 0;
        char why[512];
        if (item == NULL && other != NULL) {
            /* a directive (redis.conf's "user ...", "rename-command ..."): its line */
            put_str(&v, key);
            if (eq != NULL) {
                kv_buf_put(&v, " ", 1);
                put_arg_quoted(&v, eq + 1);
            }
            for (int k = vfirst; eq == NULL && k < vend; k++) {
                kv_buf_put(&v, " ", 1);
                put_arg_quoted(&v, argv[k]);
            }
            kv_buf_put(&v, "", 1);
            if (other(arg, v.p, 0, why, sizeof why) != 0) {
                snprintf(err, errlen, "--%s: %s", key, why);
                rc = KV_EINVAL;
            }
            continue;
        }
        if (item == NULL) {
            snprintf(err, errlen, "unknown setting '--%s' (see --help)", key);
            rc = KV_EINVAL;
            break;
        }
        if (eq != NULL) {
            put_str(&v, eq + 1);
        }
        for (int k = vfirst; eq == NULL && k < vend; k++) {
            if (k > vfirst) {
                kv_buf_put(&v, " ", 1);
            }
            put_str(&v, argv[k]);
        }
        kv_buf_put(&v, "", 1);
        if (kv_conf_set(item, v.p, false, why, sizeof why) != 0) {
            snprintf(err, errlen, "--%s: %s", key, why);
            rc = KV_EINVAL;
        }
    }
    kv_buf_free(&v);
    return rc;
}
