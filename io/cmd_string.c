/*
 * cmd_string: the string commands (GET, SET and its options, counters, ranges), with
 * Redis 7's replies and error texts.
 *
 * Each handler runs on the shard that owns its key's partition, with the table and
 * the clock from the context; it reads or changes that one table and writes exactly
 * one reply. Values are stored as bytes; counters parse and format them on each call,
 * as Redis does for non-shared integers.
 */
#include "cmd.h"

#include "kv_assert.h"
#include "kv_num.h"
#include "kv_error.h"
#include "kv_limits.h"
#include "kvd_settings.h"
#include "resp_parse.h"
#include "server.h"
#include "tbl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LONG_STR_SIZE 21 /* digits of INT64_MIN plus the sign */

static void reply_entry(struct cmd_ctx *x, const struct tbl_entry *e)
{
    if (e == NULL) {
        reply_null(x->out);
        return;
    }
    size_t n;
    const void *v = tbl_entry_val(e, &n);
    reply_bulk(x->out, v, n);
}

static bool too_long(struct cmd_ctx *x, uint64_t total)
{
    if (total > (uint64_t)KV_CONF_GET(kvd_settings.proto_max_bulk_len)) {
        reply_error(x->out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return true;
    }
    return false;
}

void cmd_get(struct cmd_ctx *x)
{
    reply_entry(x, cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1])));
}

/* ---- SET and friends --------------------------------------------------------- */

enum set_opt {
    SET_NX = 1 << 0,
    SET_XX = 1 << 1,
    SET_GET = 1 << 2,
    SET_KEEPTTL = 1 << 3,
    SET_EX = 1 << 4,
    SET_PX = 1 << 5,
    SET_EXAT = 1 << 6,
    SET_PXAT = 1 << 7,
    SET_PERSIST = 1 << 8, /* GETEX only */
};
#define SET_ANY_EXPIRE (SET_EX | SET_PX | SET_EXAT | SET_PXAT)

/*
 * Converts an expire argument to an absolute time in ms, Redis's rules: the number
 * must be a positive integer and must not overflow. Returns false after replying.
 */
static bool expire_abs_ms(struct cmd_ctx *x, const struct resp_arg *a, unsigned unit_opt,
                          const char *cmdname, int64_t *out)
{
    int64_t v;
    if (!cmd_parse_i64(a, &v)) {
        reply_err_not_int(x->out);
        return false;
    }
    bool seconds = unit_opt & (SET_EX | SET_EXAT);
    if (v <= 0 || (seconds && v > INT64_MAX / 1000)) {
        reply_error(x->out, "ERR invalid expire time in '%s' command", cmdname);
        return false;
    }
    if (seconds) {
        v *= 1000;
    }
    if (unit_opt & (SET_EX | SET_PX)) {
        if (v > INT64_MAX - x->now_ms) {
            reply_error(x->out, "ERR invalid expire time in '%s' command", cmdname);
            return false;
        }
        v += x->now_ms;
    }
    *out = v;
    return true;
}

/*
 * Parses SET / GETEX options from argv[first..]. `allowed` masks what the command
 * accepts. Returns false after replying a syntax error.
 */
static bool parse_set_opts(struct cmd_ctx *x, size_t first, unsigned allowed, unsigned *opts,
                           size_t *expire_arg)
{
    static const struct {
        const char *word;
        unsigned opt;
        unsigned conflicts;
    } words[] = {
        {"nx", SET_NX, SET_XX},
        {"xx", SET_XX, SET_NX},
        {"get", SET_GET, 0},
        {"keepttl", SET_KEEPTTL, SET_ANY_EXPIRE | SET_PERSIST},
        {"persist", SET_PERSIST, SET_ANY_EXPIRE | SET_KEEPTTL},
        {"ex", SET_EX, SET_ANY_EXPIRE | SET_KEEPTTL | SET_PERSIST},
        {"px", SET_PX, SET_ANY_EXPIRE | SET_KEEPTTL | SET_PERSIST},
        {"exat", SET_EXAT, SET_ANY_EXPIRE | SET_KEEPTTL | SET_PERSIST},
        {"pxat", SET_PXAT, SET_ANY_EXPIRE | SET_KEEPTTL | SET_PERSIST},
    };
    *opts = 0;
    *expire_arg = 0;
    for (size_t i = first; i < x->argc; i++) {
        size_t w = 0;
        while (w < KV_ARRAY_LEN(words) && !cmd_arg_is(&x->argv[i], words[w].word)) {
            w++;
        }
        if (w == KV_ARRAY_LEN(words) || !(allowed & words[w].opt) ||
            (*opts & words[w].conflicts & ~words[w].opt)) {
            reply_err_syntax(x->out);
            return false;
        }
        *opts |= words[w].opt;
        if (words[w].opt & SET_ANY_EXPIRE) {
            if (i + 1 >= x->argc) {
                reply_err_syntax(x->out);
                return false;
            }
            *expire_arg = ++i;
        }
    }
    return true;
}

/* The shared tail of SET, SETNX, SETEX, PSETEX, GETSET: store and reply. */
static void set_generic(struct cmd_ctx *x, const struct resp_arg *key, const struct resp_arg *val,
                        unsigned opts, int64_t expire_ms, int reply_kind)
{
    uint64_t h = cmd_key_hash(key);
    struct tbl_put_args pa = {
        .val = val->ptr,
        .val_len = val->len,
        .expire_ms = expire_ms,
        .flags = ((opts & SET_NX) ? TBL_NX : 0) | ((opts & SET_XX) ? TBL_XX : 0) |
                 ((opts & SET_KEEPTTL) ? TBL_KEEPTTL : 0),
        .type = TBL_TYPE_STRING,
    };
    struct tbl_entry *old = NULL;
    bool created = cmd_new_key(x, key, h);
    int rc = tbl_put(cmd_tbl(x, h), key->ptr, key->len, h, &pa, x->now_ms,
                     (opts & SET_GET) ? &old : NULL);
    if (rc == KV_ENOMEM) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    if (rc == KV_ELIMIT) {
        reply_error(x->out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return;
    }
    KV_ASSERT(rc == 0 || rc == KV_EEXIST || rc == KV_ENOTFOUND);
    if (rc == 0) {
        cmd_log_key(x, key, h);
        if ((opts & SET_GET) && old == NULL) {
            cmd_notify(x, NOTIFY_KEY_MISS, "keymiss", key); /* Redis's GET part comes first */
        }
        if (created) {
            cmd_notify(x, NOTIFY_NEW, "new", key);
        }
        cmd_notify(x, NOTIFY_STRING, "set", key);
        if (expire_ms != 0) {
            cmd_notify(x, NOTIFY_GENERIC, "expire", key);
        }
    }
    if (opts & SET_GET) {
        /* SET ... GET replies the old value whether or not the condition held. */
        if (rc != 0) {
            reply_entry(x, cmd_lookup_read(x, key, h));
        } else {
            reply_entry(x, old);
        }
        if (old != NULL) {
            tbl_entry_free(old);
        }
        return;
    }
    if (reply_kind == 1) { /* SETNX: 1 or 0 */
        reply_int(x->out, rc == 0);
    } else if (rc == 0) {
        reply_ok(x->out);
    } else {
        reply_null(x->out);
    }
}

void cmd_set(struct cmd_ctx *x)
{
    unsigned opts;
    size_t ea;
    unsigned allowed = SET_NX | SET_XX | SET_GET | SET_KEEPTTL | SET_ANY_EXPIRE;
    if (!parse_set_opts(x, 3, allowed, &opts, &ea)) {
        return;
    }
    int64_t when = 0;
    if (ea != 0 && !expire_abs_ms(x, &x->argv[ea], opts & SET_ANY_EXPIRE, "set", &when)) {
        return;
    }
    set_generic(x, &x->argv[1], &x->argv[2], opts, when, 0);
}

void cmd_setnx(struct cmd_ctx *x)
{
    set_generic(x, &x->argv[1], &x->argv[2], SET_NX, 0, 1);
}

static void setex_generic(struct cmd_ctx *x, unsigned unit, const char *name)
{
    int64_t when;
    if (!expire_abs_ms(x, &x->argv[2], unit, name, &when)) {
        return;
    }
    set_generic(x, &x->argv[1], &x->argv[3], 0, when, 0);
}

void cmd_setex(struct cmd_ctx *x)
{
    setex_generic(x, SET_EX, "setex");
}

void cmd_psetex(struct cmd_ctx *x)
{
    setex_generic(x, SET_PX, "psetex");
}

void cmd_getset(struct cmd_ctx *x)
{
    set_generic(x, &x->argv[1], &x->argv[2], SET_GET, 0, 0);
}

void cmd_getdel(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    struct tbl_entry *old = NULL;
    if (tbl_del(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, &old) != 0) {
        STAT_ADD(x->sh->stats.keyspace_misses, 1);
        cmd_notify(x, NOTIFY_KEY_MISS, "keymiss", key);
        reply_null(x->out);
        return;
    }
    STAT_ADD(x->sh->stats.keyspace_hits, 1);
    cmd_log_key(x, key, h);
    cmd_notify(x, NOTIFY_GENERIC, "del", key);
    reply_entry(x, old);
    tbl_entry_free(old);
}

void cmd_getex(struct cmd_ctx *x)
{
    unsigned opts;
    size_t ea;
    if (!parse_set_opts(x, 2, SET_ANY_EXPIRE | SET_PERSIST, &opts, &ea)) {
        return;
    }
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_read(x, key, h);
    if (e == NULL) {
        reply_null(x->out); /* Redis answers a missing key before checking the time */
        return;
    }
    int64_t when = 0;
    if (ea != 0 && !expire_abs_ms(x, &x->argv[ea], opts & SET_ANY_EXPIRE, "getex", &when)) {
        return;
    }
    reply_entry(x, e);
    /* PERSIST of a key without a TTL changes nothing: no WAL record, no WATCH touch */
    if (ea != 0 || ((opts & SET_PERSIST) && tbl_entry_expire_ms(e) != 0)) {
        if (when != 0 && when <= x->now_ms) { /* a time already past: deleted, as Redis */
            tbl_del(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, NULL);
            cmd_log_key(x, key, h);
            cmd_notify(x, NOTIFY_GENERIC, "del", key);
            return;
        }
        tbl_expire_set(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, when);
        cmd_log_expire(x, key, h, when);
        cmd_notify(x, NOTIFY_GENERIC, when == 0 ? "persist" : "expire", key);
    }
}

/* ---- multi-key: MGET, MSET, MSETNX -------------------------------------------- */

void cmd_mget(struct cmd_ctx *x)
{
    reply_array(x->out, x->argc - 1);
    for (size_t i = 1; i < x->argc; i++) {
        reply_entry(x, cmd_lookup_read(x, &x->argv[i], cmd_key_hash(&x->argv[i])));
    }
}

void cmd_mset(struct cmd_ctx *x)
{
    if (x->argc % 2 == 0) {
        reply_err_arity(x->out, x->desc->name);
        return;
    }
    for (size_t i = 1; i + 1 < x->argc; i += 2) {
        const struct resp_arg *key = &x->argv[i];
        uint64_t h = cmd_key_hash(key);
        struct tbl_put_args pa = {.val = x->argv[i + 1].ptr, .val_len = x->argv[i + 1].len};
        bool created = cmd_new_key(x, key, h);
        int rc = tbl_put(cmd_tbl(x, h), key->ptr, key->len, h, &pa, x->now_ms, NULL);
        if (rc != 0) {
            reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
            return;
        }
        cmd_log_key(x, key, h);
        if (created) {
            cmd_notify(x, NOTIFY_NEW, "new", key);
        }
        cmd_notify(x, NOTIFY_STRING, "set", key);
    }
    reply_ok(x->out);
}

void cmd_msetnx(struct cmd_ctx *x)
{
    if (x->argc % 2 == 0) {
        reply_err_arity(x->out, x->desc->name);
        return;
    }
    for (size_t i = 1; i + 1 < x->argc; i += 2) {
        if (cmd_lookup_write(x, &x->argv[i], cmd_key_hash(&x->argv[i])) != NULL) {
            reply_int(x->out, 0);
            return;
        }
    }
    for (size_t i = 1; i + 1 < x->argc; i += 2) {
        const struct resp_arg *key = &x->argv[i];
        uint64_t h = cmd_key_hash(key);
        struct tbl_put_args pa = {.val = x->argv[i + 1].ptr, .val_len = x->argv[i + 1].len};
        tbl_put(cmd_tbl(x, h), key->ptr, key->len, h, &pa, x->now_ms, NULL);
        cmd_log_key(x, key, h);
        cmd_notify(x, NOTIFY_NEW, "new", key); /* every key was absent */
        cmd_notify(x, NOTIFY_STRING, "set", key);
    }
    reply_int(x->out, 1);
}

/* ---- counters ---------------------------------------------------------------- */

/* Parses a stored value as Redis's string2ll does; false if it is not an integer. */
static bool value_i64(const struct tbl_entry *e, int64_t *out)
{
    size_t n;
    const char *v = tbl_entry_val(e, &n);
    struct resp_arg a = {v, n};
    return cmd_parse_i64(&a, out);
}

static void store_i64(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, int64_t v)
{
    char buf[KV_I64_CHARS_MAX];
    size_t n = kv_fmt_i64(buf, v);
    struct tbl_mod m;
    int rc = tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, n, 0, &m);
    if (rc != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    memcpy(m.val, buf, n);
    cmd_log_key(x, key, h);
    if (m.created) {
        cmd_notify(x, NOTIFY_NEW, "new", key);
    }
    cmd_notify(x, NOTIFY_STRING, "incrby", key);
    reply_int(x->out, v);
}

static void incr_generic(struct cmd_ctx *x, int64_t by)
{
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    int64_t cur = 0;
    if (e != NULL && !value_i64(e, &cur)) {
        reply_err_not_int(x->out);
        return;
    }
    if ((by < 0 && cur < 0 && by < INT64_MIN - cur) ||
        (by > 0 && cur > 0 && by > INT64_MAX - cur)) {
        reply_error(x->out, "ERR increment or decrement would overflow");
        return;
    }
    store_i64(x, key, h, cur + by);
}

void cmd_incr(struct cmd_ctx *x)
{
    incr_generic(x, 1);
}

void cmd_decr(struct cmd_ctx *x)
{
    incr_generic(x, -1);
}

void cmd_incrby(struct cmd_ctx *x)
{
    int64_t by;
    if (!cmd_parse_i64(&x->argv[2], &by)) {
        reply_err_not_int(x->out);
        return;
    }
    incr_generic(x, by);
}

void cmd_decrby(struct cmd_ctx *x)
{
    int64_t by;
    if (!cmd_parse_i64(&x->argv[2], &by)) {
        reply_err_not_int(x->out);
        return;
    }
    if (by == INT64_MIN) {
        reply_error(x->out, "ERR decrement would overflow");
        return;
    }
    incr_generic(x, -by);
}

/* Redis's string2ld: the whole text is a finite long double, no spaces, not NaN. */
static bool parse_ld(const char *p, size_t n, long double *out)
{
    char buf[5 * 1024 + 1];
    if (n == 0 || n >= sizeof buf) {
        return false;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (isspace((unsigned char)buf[0])) {
        return false;
    }
    char *end;
    errno = 0;
    long double v = strtold(buf, &end);
    /* The whole argument must be the number: a NUL inside it ends strtold early. */
    if (*end != '\0' || (size_t)(end - buf) != n || errno == ERANGE || isnan(v)) {
        return false;
    }
    *out = v;
    return true;
}

/* Redis's ld2string(LD_STR_HUMAN): %.17Lf with trailing zeros (and the dot) cut. */
static int format_ld(char *buf, size_t cap, long double v)
{
    int n = snprintf(buf, cap, "%.17Lf", v);
    if (n <= 0 || (size_t)n >= cap) {
        return -1;
    }
    if (strchr(buf, '.') != NULL) {
        while (n > 0 && buf[n - 1] == '0') {
            n--;
        }
        if (n > 0 && buf[n - 1] == '.') {
            n--;
        }
    }
    if (n == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        n = 1;
    }
    buf[n] = '\0';
    return n;
}

void cmd_incrbyfloat(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    long double by;
    if (!parse_ld(x->argv[2].ptr, x->argv[2].len, &by)) {
        reply_error(x->out, "ERR value is not a valid float");
        return;
    }
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    long double cur = 0;
    if (e != NULL) {
        size_t n;
        const char *v = tbl_entry_val(e, &n);
        if (!parse_ld(v, n, &cur)) {
            reply_error(x->out, "ERR value is not a valid float");
            return;
        }
    }
    long double r = cur + by;
    if (isnan(r) || isinf(r)) {
        reply_error(x->out, "ERR increment would produce NaN or Infinity");
        return;
    }
    char buf[5 * 1024];
    int n = format_ld(buf, sizeof buf, r);
    if (n < 0) {
        reply_error(x->out, "ERR increment would produce NaN or Infinity");
        return;
    }
    struct tbl_mod m;
    if (tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, (size_t)n, 0, &m) != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    memcpy(m.val, buf, (size_t)n);
    cmd_log_key(x, key, h);
    cmd_notify_mod(x, &m, "incrbyfloat", key);
    reply_bulk(x->out, buf, (size_t)n);
}

/* ---- APPEND, STRLEN, GETRANGE, SETRANGE ---------------------------------------- */

/* The length of a key's value (0 if missing), looked up for a write. */
static size_t value_len_for_write(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    size_t len = 0;
    if (e != NULL) {
        tbl_entry_val(e, &len);
    }
    return len;
}

void cmd_append(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    const struct resp_arg *add = &x->argv[2];
    uint64_t h = cmd_key_hash(key);
    size_t cur = value_len_for_write(x, key, h);
    if (too_long(x, (uint64_t)cur + add->len)) {
        return;
    }
    struct tbl_mod m;
    /* (an existing value edited in place is "raw" for OBJECT ENCODING, as in Redis) */
    int rc =
        tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, cur + add->len, TBL_RAW, &m);
    if (rc != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    KV_ASSERT(m.old_len == cur);
    memcpy(m.val + cur, add->ptr, add->len);
    cmd_log_range(x, key, h, cur, add->len);
    cmd_notify_mod(x, &m, "append", key);
    reply_int(x->out, (int64_t)(cur + add->len));
}

void cmd_strlen(struct cmd_ctx *x)
{
    const struct tbl_entry *e = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    size_t n = 0;
    if (e != NULL) {
        tbl_entry_val(e, &n);
    }
    reply_int(x->out, (int64_t)n);
}

void cmd_getrange(struct cmd_ctx *x)
{
    int64_t start, end;
    if (!cmd_parse_i64(&x->argv[2], &start) || !cmd_parse_i64(&x->argv[3], &end)) {
        reply_err_not_int(x->out);
        return;
    }
    const struct tbl_entry *e = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    size_t len = 0;
    const char *v = e ? tbl_entry_val(e, &len) : "";
    int64_t n = (int64_t)len;
    if (start < 0 && end < 0 && start > end) {
        reply_bulk(x->out, "", 0);
        return;
    }
    if (start < 0) {
        start = n + start;
    }
    if (end < 0) {
        end = n + end;
    }
    if (start < 0) {
        start = 0;
    }
    if (end < 0) {
        end = 0;
    }
    if (end >= n) {
        end = n - 1;
    }
    if (start > end || n == 0) {
        reply_bulk(x->out, "", 0);
        return;
    }
    reply_bulk(x->out, v + start, (size_t)(end - start + 1));
}

void cmd_substr(struct cmd_ctx *x)
{
    cmd_getrange(x);
}

void cmd_setrange(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    const struct resp_arg *val = &x->argv[3];
    int64_t off;
    if (!cmd_parse_i64(&x->argv[2], &off)) {
        reply_err_not_int(x->out);
        return;
    }
    if (off < 0) {
        reply_error(x->out, "ERR offset is out of range");
        return;
    }
    uint64_t h = cmd_key_hash(key);
    size_t cur = value_len_for_write(x, key, h);
    if (val->len == 0) {
        reply_int(x->out, (int64_t)cur); /* nothing to write; a missing key stays missing */
        return;
    }
    if (too_long(x, (uint64_t)off + val->len)) {
        return;
    }
    size_t need = (size_t)off + val->len;
    size_t len = need > cur ? need : cur;
    struct tbl_mod m;
    if (tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, len, TBL_RAW | TBL_RAW_NEW,
                   &m) != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    memcpy(m.val + off, val->ptr, val->len);
    cmd_log_range(x, key, h, off, val->len);
    cmd_notify_mod(x, &m, "setrange", key);
    reply_int(x->out, (int64_t)len);
}

/* ---- bits: SETBIT, GETBIT, BITCOUNT, BITPOS ------------------------------------------ */

/* Bit i of a string: bit 0 is the most significant bit of byte 0, as in Redis. */
static unsigned bit_at(const unsigned char *p, uint64_t i)
{
    return (p[i >> 3] >> (7 - (i & 7))) & 1u;
}

/* A bit offset argument: a non-negative integer whose byte is below proto-max-bulk-len. */
static bool bit_offset(struct cmd_ctx *x, const struct resp_arg *a, uint64_t *out)
{
    int64_t off;
    if (!cmd_parse_i64(a, &off) || off < 0 ||
        (off >> 3) >= KV_CONF_GET(kvd_settings.proto_max_bulk_len)) {
        reply_error(x->out, "ERR bit offset is not an integer or out of range");
        return false;
    }
    *out = (uint64_t)off;
    return true;
}

void cmd_setbit(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    uint64_t off;
    int64_t on;
    if (!bit_offset(x, &x->argv[2], &off)) {
        return;
    }
    if (!cmd_parse_i64(&x->argv[3], &on) || (on & ~1) != 0) {
        reply_error(x->out, "ERR bit is not an integer or out of range");
        return;
    }
    uint64_t h = cmd_key_hash(key);
    size_t cur = value_len_for_write(x, key, h);
    size_t byte = (size_t)(off >> 3);
    size_t len = byte + 1 > cur ? byte + 1 : cur;
    struct tbl_mod m;
    if (tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, len, TBL_RAW | TBL_RAW_NEW,
                   &m) != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    unsigned char *p = (unsigned char *)m.val;
    unsigned old = bit_at(p, off);
    unsigned mask = 1u << (7 - (off & 7));
    p[byte] = (unsigned char)(on ? (p[byte] | mask) : (p[byte] & ~mask));
    if (len > cur || old != (unsigned)on) { /* as Redis: no change, no WAL record or touch */
        cmd_log_range(x, key, h, byte, 1);
        cmd_notify_mod(x, &m, "setbit", key);
    }
    reply_int(x->out, old);
}

void cmd_getbit(struct cmd_ctx *x)
{
    uint64_t off;
    if (!bit_offset(x, &x->argv[2], &off)) {
        return;
    }
    const struct tbl_entry *e = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    size_t len = 0;
    const unsigned char *p = e != NULL ? tbl_entry_val(e, &len) : NULL;
    reply_int(x->out, (off >> 3) < len ? bit_at(p, off) : 0);
}

/*
 * The bit range [*lo, *hi] of a string of `len` bytes that a start/end pair selects,
 * as BITCOUNT and BITPOS read them: byte or bit indexes, negative ones from the end,
 * clamped to the string. False if the range is empty.
 */
static bool bit_range(int64_t start, int64_t end, bool isbit, size_t len, uint64_t *lo,
                      uint64_t *hi)
{
    int64_t total = isbit ? (int64_t)len * 8 : (int64_t)len;
    if (start < 0) {
        start = total + start;
    }
    if (end < 0) {
        end = total + end;
    }
    start = start < 0 ? 0 : start;
    end = end < 0 ? 0 : end;
    end = end >= total ? total - 1 : end;
    if (start > end) {
        return false;
    }
    *lo = isbit ? (uint64_t)start : (uint64_t)start * 8;
    *hi = isbit ? (uint64_t)end : (uint64_t)end * 8 + 7;
    return true;
}

/* BYTE or BIT (the unit of a range); false (after replying) if neither. */
static bool bit_unit(struct cmd_ctx *x, const struct resp_arg *a, bool *isbit)
{
    if (cmd_arg_is(a, "bit") || cmd_arg_is(a, "byte")) {
        *isbit = cmd_arg_is(a, "bit");
        return true;
    }
    reply_err_syntax(x->out);
    return false;
}

static uint64_t count_bits(const unsigned char *p, uint64_t lo, uint64_t hi)
{
    uint64_t n = 0, i = lo;
    for (; i <= hi && (i & 7) != 0; i++) {
        n += bit_at(p, i);
    }
    for (; i + 64 <= hi + 1; i += 64) {
        uint64_t w;
        memcpy(&w, p + (i >> 3), 8);
        n += (uint64_t)__builtin_popcountll(w);
    }
    for (; i + 8 <= hi + 1; i += 8) {
        n += (uint64_t)__builtin_popcount(p[i >> 3]);
    }
    for (; i <= hi; i++) {
        n += bit_at(p, i);
    }
    return n;
}

void cmd_bitcount(struct cmd_ctx *x)
{
    /* Redis 7.0 looks the key up first: a missing key is 0 whatever the arguments */
    const struct tbl_entry *e = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    if (e == NULL) {
        reply_int(x->out, 0);
        return;
    }
    int64_t start = 0, end = -1;
    bool isbit = false, ranged = x->argc >= 4;
    if (x->argc == 3 || x->argc > 5) {
        reply_err_syntax(x->out);
        return;
    }
    if (ranged && (!cmd_parse_i64(&x->argv[2], &start) || !cmd_parse_i64(&x->argv[3], &end))) {
        reply_err_not_int(x->out);
        return;
    }
    if (ranged && start < 0 && end < 0 && start > end) { /* before the unit, as Redis 7.0 */
        reply_int(x->out, 0);
        return;
    }
    if (x->argc == 5 && !bit_unit(x, &x->argv[4], &isbit)) {
        return;
    }
    size_t len;
    const unsigned char *p = tbl_entry_val(e, &len);
    uint64_t lo, hi;
    if (!bit_range(start, end, isbit, len, &lo, &hi)) {
        reply_int(x->out, 0);
        return;
    }
    reply_int(x->out, (int64_t)count_bits(p, lo, hi));
}

void cmd_bitpos(struct cmd_ctx *x)
{
    int64_t bit;
    if (!cmd_parse_i64(&x->argv[2], &bit)) {
        reply_err_not_int(x->out);
        return;
    }
    if (bit != 0 && bit != 1) {
        reply_error(x->out, "ERR The bit argument must be 1 or 0.");
        return;
    }
    const struct tbl_entry *e = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    if (e == NULL) { /* an endless run of zeros */
        reply_int(x->out, bit ? -1 : 0);
        return;
    }
    size_t len;
    const unsigned char *p = tbl_entry_val(e, &len);
    int64_t start = 0, end = -1;
    bool isbit = false, end_given = x->argc >= 5;
    if (x->argc > 6) {
        reply_err_syntax(x->out);
        return;
    }
    if (x->argc >= 4 && !cmd_parse_i64(&x->argv[3], &start)) {
        reply_err_not_int(x->out);
        return;
    }
    if (x->argc == 6 && !bit_unit(x, &x->argv[5], &isbit)) {
        return;
    }
    if (end_given && !cmd_parse_i64(&x->argv[4], &end)) {
        reply_err_not_int(x->out);
        return;
    }
    uint64_t lo, hi;
    if (!bit_range(start, end, isbit, len, &lo, &hi)) {
        reply_int(x->out, -1);
        return;
    }
    unsigned char skip = bit ? 0x00 : 0xff; /* whole bytes that cannot hold the bit */
    uint64_t i = lo;
    while (i <= hi) {
        if ((i & 7) == 0 && i + 7 <= hi && p[i >> 3] == skip) {
            i += 8;
        } else if (bit_at(p, i) == (unsigned)bit) {
            reply_int(x->out, (int64_t)i);
            return;
        } else {
            i++;
        }
    }
    /* Not found. Looking for a 0 with no end given: the string reads as padded with
     * zeros, so the first bit after it. */
    reply_int(x->out, bit == 0 && !end_given ? (int64_t)hi + 1 : -1);
}

/*
 * BITOP AND|OR|XOR|NOT dest key [key ...]: every key on this shard (checked by the
 * caller). Missing keys read as empty strings, shorter ones as padded with zeros; the
 * result is as long as the longest source, and an empty result deletes dest (Redis).
 */
int cmd_bitop_kind(struct cmd_ctx *x)
{
    const struct resp_arg *op = &x->argv[1];
    int kind = cmd_arg_is(op, "and")   ? 0
               : cmd_arg_is(op, "or")  ? 1
               : cmd_arg_is(op, "xor") ? 2
               : cmd_arg_is(op, "not") ? 3
                                       : -1;
    if (kind < 0) {
        reply_err_syntax(x->out);
    } else if (kind == 3 && x->argc != 4) {
        reply_error(x->out, "ERR BITOP NOT must be called with a single source key.");
        kind = -1;
    }
    return kind;
}

unsigned char *cmd_bitop_apply(mi_heap_t *heap, int kind, const struct cmd_bitop_src *src,
                               size_t nsrc, size_t *len)
{
    size_t max = 0;
    for (size_t i = 0; i < nsrc; i++) {
        max = src[i].len > max ? src[i].len : max;
    }
    *len = max;
    unsigned char *out = max > 0 ? mi_heap_malloc(heap, max) : NULL;
    for (size_t j = 0; out != NULL && j < max; j++) {
        unsigned char b = j < src[0].len ? src[0].p[j] : 0;
        if (kind == 3) {
            b = (unsigned char)~b;
        }
        for (size_t i = 1; i < nsrc; i++) {
            unsigned char v = j < src[i].len ? src[i].p[j] : 0;
            b = kind == 0   ? (unsigned char)(b & v)
                : kind == 1 ? (unsigned char)(b | v)
                            : (unsigned char)(b ^ v);
        }
        out[j] = b;
    }
    return out;
}

void cmd_bitop(struct cmd_ctx *x)
{
    int kind = cmd_bitop_kind(x);
    if (kind < 0) {
        return;
    }
    size_t nsrc = x->argc - 3;
    struct cmd_bitop_src *src = mi_heap_malloc(x->sh->heap, nsrc * sizeof *src);
    if (src == NULL) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    for (size_t i = 0; i < nsrc; i++) {
        const struct resp_arg *k = &x->argv[3 + i];
        const struct tbl_entry *e = cmd_lookup_read(x, k, cmd_key_hash(k));
        src[i].len = 0;
        src[i].p = e != NULL ? tbl_entry_val(e, &src[i].len) : NULL;
    }
    size_t max;
    unsigned char *out = cmd_bitop_apply(x->sh->heap, kind, src, nsrc, &max);
    mi_free(src);
    const struct resp_arg *dest = &x->argv[2];
    uint64_t h = cmd_key_hash(dest);
    if (max == 0 || out == NULL) {
        if (max > 0) {
            reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
            return;
        }
        if (tbl_del(cmd_tbl(x, h), dest->ptr, dest->len, h, x->now_ms, NULL) == 0) {
            cmd_log_key(x, dest, h);
            cmd_notify(x, NOTIFY_GENERIC, "del", dest);
        }
        reply_int(x->out, 0);
        return;
    }
    struct tbl_put_args pa = {.val = out, .val_len = max, .flags = TBL_RAW}; /* ("raw", Redis's) */
    bool created = cmd_new_key(x, dest, h);
    int rc = tbl_put(cmd_tbl(x, h), dest->ptr, dest->len, h, &pa, x->now_ms, NULL);
    mi_free(out);
    if (rc != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    cmd_log_key(x, dest, h);
    if (created) {
        cmd_notify(x, NOTIFY_NEW, "new", dest);
    }
    cmd_notify(x, NOTIFY_STRING, "set", dest);
    reply_int(x->out, (int64_t)max);
}

/* ---- BITFIELD, BITFIELD_RO ------------------------------------------------------------ */

/*
 * Integers of 1 to 64 bits (unsigned: up to 63) at any bit offset of a string, most
 * significant bit first, as Redis's BITFIELD reads and writes them; INCRBY and SET
 * overflow as the last OVERFLOW before them says: WRAP (default), SAT or FAIL (the
 * operation is skipped and replies a null).
 */
enum bf_op { BF_GET, BF_SET, BF_INCRBY };
enum bf_overflow { BF_WRAP, BF_SAT, BF_FAIL };

struct bf_step {
    uint64_t offset;
    int64_t arg;
    uint8_t op, overflow, bits;
    bool sign;
};

#define BF_STEPS_STACK 16 /* operations parsed without an allocation */

static uint64_t bf_get_u(const unsigned char *p, uint64_t offset, unsigned bits)
{
    uint64_t v = 0;
    for (unsigned j = 0; j < bits; j++, offset++) {
        v = (v << 1) | bit_at(p, offset);
    }
    return v;
}

static int64_t bf_get_i(const unsigned char *p, uint64_t offset, unsigned bits)
{
    uint64_t v = bf_get_u(p, offset, bits);
    if (bits < 64 && (v & (UINT64_C(1) << (bits - 1)))) {
        v |= UINT64_MAX << bits; /* sign extension */
    }
    return (int64_t)v;
}

static void bf_set(unsigned char *p, uint64_t offset, unsigned bits, uint64_t v)
{
    for (unsigned j = 0; j < bits; j++, offset++) {
        unsigned bit = (unsigned)(v >> (bits - 1 - j)) & 1u;
        unsigned char mask = (unsigned char)(1u << (7 - (offset & 7)));
        p[offset >> 3] = (unsigned char)(bit ? (p[offset >> 3] | mask) : (p[offset >> 3] & ~mask));
    }
}

/* value + incr for an unsigned field: true on overflow, *out = what is stored
 * (WRAP: the low bits; SAT: the limit; FAIL: unused). */
static bool bf_add_u(uint64_t value, int64_t incr, unsigned bits, unsigned ow, uint64_t *out)
{
    uint64_t max = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
    uint64_t sum = value + (uint64_t)incr;
    bool up = value > max || (incr > 0 && (uint64_t)incr > max - value);
    bool down = !up && incr < 0 && (uint64_t)0 - (uint64_t)incr > value;
    if (!up && !down) {
        *out = sum;
        return false;
    }
    *out = ow == BF_WRAP ? sum & max : up ? max : 0;
    return true;
}

/* The same for a signed field. */
static bool bf_add_i(int64_t value, int64_t incr, unsigned bits, unsigned ow, int64_t *out)
{
    int64_t max = bits == 64 ? INT64_MAX : (int64_t)((UINT64_C(1) << (bits - 1)) - 1);
    int64_t min = -max - 1;
    /* The last term is Redis 7.0's too: its `(uint64_t)max - value` wraps for values at
     * or below INT64_MIN + max, which it then counts as overflowing upwards (SET i8 with
     * -2^63 saturates to 127 there); kept so that SAT stores what Redis stores. */
    bool up = value > max || (incr > 0 && value > max - incr) ||
              (bits < 64 && incr > (int64_t)((uint64_t)max - (uint64_t)value));
    bool down = !up && (value < min || (incr < 0 && value < min - incr));
    uint64_t sum = (uint64_t)value + (uint64_t)incr;
    if (!up && !down) {
        *out = (int64_t)sum;
        return false;
    }
    if (ow == BF_WRAP) {
        if (bits < 64) {
            uint64_t high = UINT64_MAX << bits;
            sum = (sum & (UINT64_C(1) << (bits - 1))) ? sum | high : sum & ~high;
        }
        *out = (int64_t)sum;
    } else {
        *out = up ? max : min;
    }
    return true;
}

/* "i1".."i64", "u1".."u63" */
static bool bf_type(struct cmd_ctx *x, const struct resp_arg *a, bool *sign, unsigned *bits)
{
    int64_t n;
    bool ok = a->len >= 2 && (a->ptr[0] == 'i' || a->ptr[0] == 'u') &&
              kv_parse_i64(a->ptr + 1, a->len - 1, &n) && n >= 1 &&
              n <= (a->ptr[0] == 'i' ? 64 : 63);
    if (!ok) {
        reply_error(x->out, "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 "
                            "is not supported but i64 is.");
        return false;
    }
    *sign = a->ptr[0] == 'i';
    *bits = (unsigned)n;
    return true;
}

/* A bit offset, or "#n": the n-th field of this width. Below proto-max-bulk-len bytes.
 * "#n" multiplies modulo 2^64 as Redis's does (#2^62 of i8 is offset 0 there too). */
static bool bf_offset(struct cmd_ctx *x, const struct resp_arg *a, unsigned bits, uint64_t *out)
{
    bool field = a->len > 0 && a->ptr[0] == '#';
    int64_t n;
    bool ok = kv_parse_i64(a->ptr + field, a->len - field, &n);
    if (ok && field) {
        n = (int64_t)((uint64_t)n * bits);
    }
    if (!ok || n < 0 || (n >> 3) >= KV_CONF_GET(kvd_settings.proto_max_bulk_len)) {
        reply_error(x->out, "ERR bit offset is not an integer or out of range");
        return false;
    }
    *out = (uint64_t)n;
    return true;
}

static void bitfield_generic(struct cmd_ctx *x, bool ro)
{
    const struct resp_arg *key = &x->argv[1];
    struct bf_step stack[BF_STEPS_STACK];
    struct bf_step *steps = stack;
    size_t n = 0, cap = BF_STEPS_STACK;
    unsigned overflow = BF_WRAP;
    bool writes = false;
    uint64_t top = 0; /* the highest bit written, + 1 */
    for (size_t j = 2; j < x->argc; j++) {
        size_t rem = x->argc - j - 1;
        const struct resp_arg *a = &x->argv[j];
        unsigned op;
        if (cmd_arg_is(a, "get") && rem >= 2) {
            op = BF_GET;
        } else if (cmd_arg_is(a, "set") && rem >= 3) {
            op = BF_SET;
        } else if (cmd_arg_is(a, "incrby") && rem >= 3) {
            op = BF_INCRBY;
        } else if (cmd_arg_is(a, "overflow") && rem >= 1) {
            const struct resp_arg *w = &x->argv[++j];
            if (cmd_arg_is(w, "wrap")) {
                overflow = BF_WRAP;
            } else if (cmd_arg_is(w, "sat")) {
                overflow = BF_SAT;
            } else if (cmd_arg_is(w, "fail")) {
                overflow = BF_FAIL;
            } else {
                reply_error(x->out, "ERR Invalid OVERFLOW type specified");
                goto out;
            }
            continue;
        } else {
            reply_err_syntax(x->out);
            goto out;
        }
        struct bf_step s = {.op = (uint8_t)op, .overflow = (uint8_t)overflow};
        unsigned bits;
        if (!bf_type(x, &x->argv[j + 1], &s.sign, &bits) ||
            !bf_offset(x, &x->argv[j + 2], bits, &s.offset)) {
            goto out;
        }
        s.bits = (uint8_t)bits;
        if (op != BF_GET) {
            writes = true;
            if (s.offset + bits > top) {
                top = s.offset + bits;
            }
            if (!cmd_parse_i64(&x->argv[j + 3], &s.arg)) {
                reply_err_not_int(x->out);
                goto out;
            }
        }
        if (n == cap) {
            cap *= 2;
            struct bf_step *more = mi_heap_malloc(x->sh->heap, cap * sizeof *more);
            KV_ASSERT(more != NULL);
            memcpy(more, steps, n * sizeof *more);
            if (steps != stack) {
                mi_free(steps);
            }
            steps = more;
        }
        steps[n++] = s;
        j += op == BF_GET ? 2 : 3;
    }
    uint64_t h = cmd_key_hash(key);
    unsigned char *val = NULL;
    size_t len = 0, cur = 0, done = 0;
    bool created = false;
    if (!writes) {
        const struct tbl_entry *e = cmd_lookup_read(x, key, h);
        if (e != NULL) {
            val = (unsigned char *)(uintptr_t)tbl_entry_val(e, &len);
        }
    } else if (ro) {
        reply_error(x->out, "ERR BITFIELD_RO only supports the GET subcommand");
        goto out;
    } else {
        cur = value_len_for_write(x, key, h);
        size_t need = (size_t)((top + 7) >> 3);
        len = need > cur ? need : cur;
        struct tbl_mod m;
        int rc = tbl_modify(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, len,
                            TBL_RAW | TBL_RAW_NEW, &m);
        if (rc == KV_ELIMIT) { /* a field past the last byte a value may have */
            reply_error(x->out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
            goto out;
        }
        if (rc != 0) {
            reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
            goto out;
        }
        val = (unsigned char *)m.val;
        created = m.created;
    }
    reply_array(x->out, n);
    uint64_t lo = UINT64_MAX, hi = 0; /* the bits changed */
    uint64_t changes = 0;             /* as Redis counts them: writes that changed or grew */
    for (size_t i = 0; i < n; i++) {
        const struct bf_step *s = &steps[i];
        if (s->op == BF_GET) {
            unsigned char buf[9] = {0}; /* the field's bytes, zero past the value's end */
            uint64_t byte = s->offset >> 3;
            for (uint64_t k = 0; k < 9 && byte + k < len; k++) {
                buf[k] = val[byte + k];
            }
            uint64_t off = s->offset & 7;
            if (s->sign) {
                reply_int(x->out, bf_get_i(buf, off, s->bits));
            } else {
                reply_int(x->out, (int64_t)bf_get_u(buf, off, s->bits));
            }
            continue;
        }
        uint64_t old, stored;
        int64_t reply;
        bool over;
        if (s->sign) {
            int64_t o = bf_get_i(val, s->offset, s->bits), v;
            over = s->op == BF_INCRBY ? bf_add_i(o, s->arg, s->bits, s->overflow, &v)
                                      : bf_add_i(s->arg, 0, s->bits, s->overflow, &v);
            old = (uint64_t)o;
            stored = (uint64_t)v;
            reply = s->op == BF_INCRBY ? v : o;
        } else {
            uint64_t o = bf_get_u(val, s->offset, s->bits), v;
            over = s->op == BF_INCRBY ? bf_add_u(o, s->arg, s->bits, s->overflow, &v)
                                      : bf_add_u((uint64_t)s->arg, 0, s->bits, s->overflow, &v);
            old = o;
            stored = v;
            reply = s->op == BF_INCRBY ? (int64_t)v : (int64_t)o;
        }
        if (over && s->overflow == BF_FAIL) {
            reply_null(x->out);
            continue;
        }
        done++; /* a SET or INCRBY that was carried out, as Redis counts its changes */
        reply_int(x->out, reply);
        uint64_t mask = s->bits == 64 ? UINT64_MAX : (UINT64_C(1) << s->bits) - 1;
        bf_set(val, s->offset, s->bits, stored & mask);
        changes += len > cur || ((old ^ stored) & mask) != 0;
        if (((old ^ stored) & mask) != 0) {
            lo = s->offset < lo ? s->offset : lo;
            hi = s->offset + s->bits > hi ? s->offset + s->bits : hi;
        }
    }
    if (writes && (len > cur || lo < hi)) {
        /* as Redis, a changed or grown value is a write; the record covers what changed
         * (from the old end when it grew) */
        uint64_t first = lo < hi ? lo >> 3 : cur, last = lo < hi ? (hi + 7) >> 3 : cur;
        if (len > cur) {
            first = first < cur ? first : cur;
            last = len;
        }
        cmd_log_range(x, key, h, (size_t)first, (size_t)(last - first));
        cmd_count_changes(x->sh, (int64_t)changes - 1); /* one per changing operation */
    }
    if (created) {
        cmd_notify(x, NOTIFY_NEW, "new", key); /* made even if every operation failed */
    }
    if (done > 0 && (len > cur || lo < hi)) { /* as Redis: an operation carried out that
                                               * grew or changed the value */
        cmd_notify(x, NOTIFY_STRING, "setbit", key);
    }
out:
    if (steps != stack) {
        mi_free(steps);
    }
}

void cmd_bitfield(struct cmd_ctx *x)
{
    bitfield_generic(x, false);
}

void cmd_bitfield_ro(struct cmd_ctx *x)
{
    bitfield_generic(x, true);
}

/* ---- LCS ---------------------------------------------------------------------------- */

/* One run of matching bytes: a[a0..a1] == b[b0..b1] (inclusive, as LCS IDX replies). */
struct lcs_range {
    uint32_t a0, a1, b0, b1;
};

struct lcs_opts {
    bool len, idx, withmatchlen;
    int64_t minmatchlen;
};

static bool lcs_parse(struct cmd_ctx *x, struct lcs_opts *o)
{
    *o = (struct lcs_opts){0};
    for (size_t i = 3; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (cmd_arg_is(a, "idx")) {
            o->idx = true;
        } else if (cmd_arg_is(a, "len")) {
            o->len = true;
        } else if (cmd_arg_is(a, "withmatchlen")) {
            o->withmatchlen = true;
        } else if (cmd_arg_is(a, "minmatchlen") && i + 1 < x->argc) {
            if (!cmd_parse_i64(&x->argv[++i], &o->minmatchlen)) {
                reply_err_not_int(x->out);
                return false;
            }
            o->minmatchlen = o->minmatchlen < 0 ? 0 : o->minmatchlen;
        } else {
            reply_err_syntax(x->out);
            return false;
        }
    }
    if (o->idx && o->len) {
        reply_error(x->out, "ERR If you want both the length and indexes, please just use IDX.");
        return false;
    }
    return true;
}

/*
 * LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest common
 * subsequence of two strings (missing keys read as ""), by the textbook dynamic program:
 * a table of (alen + 1) x (blen + 1) lengths, which may take at most proto-max-bulk-len
 * bytes (Redis's limit), then one walk back from the end that yields the subsequence
 * and its runs of contiguous matches, last run first (as Redis lists them). O(alen x
 * blen) time on the shard: like Redis, meant for short strings.
 */
bool cmd_lcs_check(struct cmd_ctx *x)
{
    struct lcs_opts o;
    return lcs_parse(x, &o);
}

void cmd_lcs(struct cmd_ctx *x)
{
    struct lcs_opts o;
    if (!lcs_parse(x, &o)) {
        return;
    }
    const struct tbl_entry *ea = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    const struct tbl_entry *eb = cmd_lookup_read(x, &x->argv[2], cmd_key_hash(&x->argv[2]));
    size_t alen = 0, blen = 0;
    const char *a = ea != NULL ? tbl_entry_val(ea, &alen) : "";
    const char *b = eb != NULL ? tbl_entry_val(eb, &blen) : "";
    cmd_lcs_values(x, a, alen, b, blen);
}

void cmd_lcs_values(struct cmd_ctx *x, const char *a, size_t alen, const char *b, size_t blen)
{
    struct lcs_opts o;
    bool parsed = lcs_parse(x, &o);
    KV_ASSERT(parsed); /* (checked before the keys were read) */
    if (alen >= UINT32_MAX - 1 || blen >= UINT32_MAX - 1) {
        reply_error(x->out, "ERR String too long for LCS");
        return;
    }
    uint64_t cells = (uint64_t)(alen + 1) * (blen + 1);
    if (cells * sizeof(uint32_t) > (uint64_t)KV_CONF_GET(kvd_settings.proto_max_bulk_len)) {
        reply_error(x->out,
                    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
        return;
    }
    uint32_t *t = mi_heap_malloc(x->sh->heap, cells * sizeof(uint32_t));
    if (t == NULL) {
        reply_error(x->out, "ERR Insufficient memory, failed allocating transient memory for LCS");
        return;
    }
#define LCS_AT(i, j) t[(size_t)(i) * (blen + 1) + (size_t)(j)]
    for (size_t i = 0; i <= alen; i++) {
        for (size_t j = 0; j <= blen; j++) {
            if (i == 0 || j == 0) {
                LCS_AT(i, j) = 0;
            } else if (a[i - 1] == b[j - 1]) {
                LCS_AT(i, j) = LCS_AT(i - 1, j - 1) + 1;
            } else {
                uint32_t up = LCS_AT(i - 1, j), left = LCS_AT(i, j - 1);
                LCS_AT(i, j) = up > left ? up : left;
            }
        }
    }
    uint32_t n = LCS_AT(alen, blen);
    if (o.len) {
        mi_free(t);
        reply_int(x->out, n);
        return;
    }
    /* Walk back: the subsequence (written from its end) and its runs. */
    char *seq = mi_heap_malloc(x->sh->heap, (size_t)n + 1);
    struct lcs_range *runs = mi_heap_malloc(x->sh->heap, ((size_t)n + 1) * sizeof *runs);
    if (seq == NULL || runs == NULL) {
        mi_free(seq);
        mi_free(runs);
        mi_free(t);
        reply_error(x->out, "ERR Insufficient memory, failed allocating transient memory for LCS");
        return;
    }
    size_t nruns = 0, k = n, i = alen, j = blen;
    bool open = false;
    struct lcs_range cur = {0};
    while (i > 0 && j > 0) {
        bool close = false;
        if (a[i - 1] == b[j - 1]) {
            seq[--k] = a[i - 1];
            if (!open) {
                cur = (struct lcs_range){(uint32_t)(i - 1), (uint32_t)(i - 1), (uint32_t)(j - 1),
                                         (uint32_t)(j - 1)};
                open = true;
            } else {
                KV_ASSERT(cur.a0 == i && cur.b0 == j); /* a run only breaks at a mismatch */
                cur.a0--;
                cur.b0--;
            }
            close = cur.a0 == 0 || cur.b0 == 0;
            i--;
            j--;
        } else {
            if (LCS_AT(i - 1, j) > LCS_AT(i, j - 1)) {
                i--;
            } else {
                j--;
            }
            close = open;
        }
        if (close) {
            uint32_t len = cur.a1 - cur.a0 + 1;
            if (o.minmatchlen == 0 || len >= (uint64_t)o.minmatchlen) {
                runs[nruns++] = cur;
            }
            open = false;
        }
    }
#undef LCS_AT
    KV_ASSERT(k == 0 && nruns <= n);
    if (!o.idx) {
        reply_bulk(x->out, seq, n);
    } else {
        reply_map(x->out, 2);
        reply_bulk_str(x->out, "matches");
        reply_array(x->out, nruns);
        for (size_t r = 0; r < nruns; r++) {
            reply_array(x->out, o.withmatchlen ? 3 : 2);
            reply_array(x->out, 2);
            reply_int(x->out, runs[r].a0);
            reply_int(x->out, runs[r].a1);
            reply_array(x->out, 2);
            reply_int(x->out, runs[r].b0);
            reply_int(x->out, runs[r].b1);
            if (o.withmatchlen) {
                reply_int(x->out, runs[r].a1 - runs[r].a0 + 1);
            }
        }
        reply_bulk_str(x->out, "len");
        reply_int(x->out, n);
    }
    mi_free(runs);
    mi_free(seq);
    mi_free(t);
}
