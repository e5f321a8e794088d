/*
 * cmd_keys: keyspace commands on keys a shard owns (DEL, EXISTS, expiry, TYPE,
 * RENAME), with Redis 7's replies and error texts. Commands over the whole keyspace
 * (SCAN, KEYS, DBSIZE, FLUSHALL) are in cmd_server.c.
 *
 * Multi-key handlers here (DEL, UNLINK, EXISTS, TOUCH) may be given any subset of the
 * original keys: they set x->sum and reply an integer, and the caller adds the parts.
 */
#include "cmd.h"

#include "evict.h"
#include "notify.h"
#include "kv_assert.h"
#include "kv_config.h"
#include "kvd_settings.h"
#include "kv_error.h"
#include "kv_limits.h"
#include "kv_num.h"
#include "rdbstr.h"
#include "resp_parse.h"
#include "server.h"
#include "tbl.h"

#include <mimalloc.h>
#include <stdio.h>
#include <string.h>

void cmd_del(struct cmd_ctx *x)
{
    int64_t n = 0;
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *k = &x->argv[i];
        uint64_t h = cmd_key_hash(k);
        struct tbl *t = cmd_tbl_peek(x, h);
        if (t != NULL && tbl_del(t, k->ptr, k->len, h, x->now_ms, NULL) == 0) {
            cmd_log_key(x, k, h);
            cmd_notify(x, NOTIFY_GENERIC, "del", k);
            n++;
        }
    }
    x->sum = n;
    reply_int(x->out, n);
}

/* EXISTS, and TOUCH: the same count, but a use of each key (its access clock moves). */
static void count_keys(struct cmd_ctx *x, bool touch)
{
    int64_t n = 0;
    for (size_t i = 1; i < x->argc; i++) {
        uint64_t h = cmd_key_hash(&x->argv[i]);
        n += (touch ? cmd_lookup_read(x, &x->argv[i], h)
                    : cmd_lookup_read_notouch(x, &x->argv[i], h)) != NULL;
    }
    x->sum = n;
    reply_int(x->out, n);
}

void cmd_exists(struct cmd_ctx *x)
{
    count_keys(x, false);
}

void cmd_touch(struct cmd_ctx *x)
{
    count_keys(x, true);
}

/* ---- expiry ------------------------------------------------------------------ */

enum expire_cond {
    EXP_NX = 1 << 0,
    EXP_XX = 1 << 1,
    EXP_GT = 1 << 2,
    EXP_LT = 1 << 3,
};

static bool parse_expire_cond(struct cmd_ctx *x, unsigned *cond)
{
    *cond = 0;
    for (size_t i = 3; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (cmd_arg_is(a, "nx")) {
            *cond |= EXP_NX;
        } else if (cmd_arg_is(a, "xx")) {
            *cond |= EXP_XX;
        } else if (cmd_arg_is(a, "gt")) {
            *cond |= EXP_GT;
        } else if (cmd_arg_is(a, "lt")) {
            *cond |= EXP_LT;
        } else {
            reply_error(x->out, "ERR Unsupported option %.*s", (int)(a->len > 128 ? 128 : a->len),
                        a->ptr);
            return false;
        }
    }
    if ((*cond & EXP_NX) && (*cond & (EXP_XX | EXP_GT | EXP_LT))) {
        reply_error(x->out, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return false;
    }
    if ((*cond & EXP_GT) && (*cond & EXP_LT)) {
        reply_error(x->out, "ERR GT and LT options at the same time are not compatible");
        return false;
    }
    return true;
}

/*
 * EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT. `unit_ms` is 1000 for seconds; `relative`
 * adds the current time. A time in the past deletes the key (as Redis does on a
 * master), and still replies 1.
 */
static void expire_generic(struct cmd_ctx *x, int64_t unit_ms, bool relative)
{
    int64_t when;
    unsigned cond;
    if (!parse_expire_cond(x, &cond)) { /* Redis checks the options first */
        return;
    }
    if (!cmd_parse_i64(&x->argv[2], &when)) {
        reply_err_not_int(x->out);
        return;
    }
    /* Overflow checks, as Redis: the result must fit in ms since the epoch. */
    if (when > INT64_MAX / unit_ms || when < INT64_MIN / unit_ms) {
        reply_error(x->out, "ERR invalid expire time in '%s' command", x->desc->name);
        return;
    }
    when *= unit_ms;
    if (relative) {
        if ((when > 0 && x->now_ms > INT64_MAX - when) ||
            (when < 0 && x->now_ms < INT64_MIN - when)) {
            reply_error(x->out, "ERR invalid expire time in '%s' command", x->desc->name);
            return;
        }
        when += x->now_ms;
    }
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    struct tbl *t = cmd_tbl_peek(x, h);
    const struct tbl_entry *e = t != NULL ? tbl_get(t, key->ptr, key->len, h, x->now_ms) : NULL;
    if (e == NULL) {
        reply_int(x->out, 0);
        return;
    }
    int64_t cur = tbl_entry_expire_ms(e); /* 0 = none, which counts as infinite */
    if (((cond & EXP_NX) && cur != 0) || ((cond & EXP_XX) && cur == 0) ||
        ((cond & EXP_GT) && (cur == 0 || when <= cur)) ||
        ((cond & EXP_LT) && cur != 0 && when >= cur)) {
        reply_int(x->out, 0);
        return;
    }
    if (when <= x->now_ms) {
        tbl_del(t, key->ptr, key->len, h, x->now_ms, NULL);
        cmd_log_key(x, key, h);
        cmd_notify(x, NOTIFY_GENERIC, "del", key);
    } else {
        tbl_expire_set(t, key->ptr, key->len, h, x->now_ms, when);
        cmd_log_expire(x, key, h, when);
        cmd_notify(x, NOTIFY_GENERIC, "expire", key);
    }
    reply_int(x->out, 1);
}

void cmd_expire(struct cmd_ctx *x)
{
    expire_generic(x, 1000, true);
}

void cmd_pexpire(struct cmd_ctx *x)
{
    expire_generic(x, 1, true);
}

void cmd_expireat(struct cmd_ctx *x)
{
    expire_generic(x, 1000, false);
}

void cmd_pexpireat(struct cmd_ctx *x)
{
    expire_generic(x, 1, false);
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 no key, -1 no expiry. */
static void ttl_generic(struct cmd_ctx *x, bool ms, bool absolute)
{
    const struct tbl_entry *e = cmd_lookup_read_notouch(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    if (e == NULL) {
        reply_int(x->out, -2);
        return;
    }
    int64_t at = tbl_entry_expire_ms(e);
    if (at == 0) {
        reply_int(x->out, -1);
        return;
    }
    int64_t v = absolute ? at : at - x->now_ms;
    if (v < 0) {
        v = 0;
    }
    if (!ms) {
        v = (v + 500) / 1000;
    }
    reply_int(x->out, v);
}

void cmd_ttl(struct cmd_ctx *x)
{
    ttl_generic(x, false, false);
}

void cmd_pttl(struct cmd_ctx *x)
{
    ttl_generic(x, true, false);
}

void cmd_expiretime(struct cmd_ctx *x)
{
    ttl_generic(x, false, true);
}

void cmd_pexpiretime(struct cmd_ctx *x)
{
    ttl_generic(x, true, true);
}

void cmd_persist(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    if (e == NULL || tbl_entry_expire_ms(e) == 0) {
        reply_int(x->out, 0);
        return;
    }
    tbl_expire_set(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, 0);
    cmd_log_expire(x, key, h, 0);
    cmd_notify(x, NOTIFY_GENERIC, "persist", key);
    reply_int(x->out, 1);
}

void cmd_type(struct cmd_ctx *x)
{
    const struct tbl_entry *e = cmd_lookup_read_notouch(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    if (e == NULL) {
        reply_simple(x->out, "none");
        return;
    }
    KV_ASSERT(tbl_entry_type(e) == TBL_TYPE_STRING);
    reply_simple(x->out, "string");
}

/* ---- OBJECT ------------------------------------------------------------------------- */

#define OBJ_EMBSTR_MAX    44         /* Redis keeps strings up to 44 bytes "embstr" */
#define OBJ_SHARED_INTS   10000      /* Redis shares the integers 0..9999 */
#define OBJ_SHARED_REFCNT 2147483647 /* the refcount Redis reports for a shared object */
#define OBJ_INT_CHARS_MAX 20         /* longer strings are never "int" */

/*
 * OBJECT ENCODING / REFCOUNT / IDLETIME / FREQ key, and OBJECT HELP. kvd stores every
 * string the same way; ENCODING reports what Redis would choose for that content when
 * it stores a value (an integer in range: "int", up to 44 bytes: "embstr", else "raw"),
 * REFCOUNT what Redis reports for it (shared small integers), IDLETIME the seconds since
 * the key was last read or written (its access clock), FREQ under an LFU policy its
 * logarithmic access counter (Redis's, in the same bits: tbl_access_config).
 * The keyed forms run on the key's shard (row "object|key"), the others (HELP, errors)
 * on the client's.
 */
static const char *const object_keyed[] = {"encoding", "freq", "idletime", "refcount"};

/* What Redis would report as the value's encoding and reference count: "raw" once it
 * was edited in place (APPEND, SETRANGE, SETBIT, BITFIELD), else by its content. */
static const char *obj_encoding(const struct tbl_entry *e)
{
    if (tbl_entry_raw(e)) {
        return "raw";
    }
    size_t len;
    const char *v = tbl_entry_val(e, &len);
    int64_t n;
    bool is_int = len <= OBJ_INT_CHARS_MAX && kv_parse_i64(v, len, &n);
    return is_int ? "int" : len <= OBJ_EMBSTR_MAX ? "embstr" : "raw";
}

static int64_t obj_refcount(const struct tbl_entry *e)
{
    size_t len;
    const char *v = tbl_entry_val(e, &len);
    int64_t n;
    bool shared =
        len <= OBJ_INT_CHARS_MAX && kv_parse_i64(v, len, &n) && n >= 0 && n < OBJ_SHARED_INTS;
    return shared ? OBJ_SHARED_REFCNT : 1;
}

/*
 * DEBUG OBJECT key, on the key's shard (row "debug|object"): Redis's line. The address
 * is the entry's; serializedlength is the length of the value's RDB string encoding as
 * kvd's DUMP writes it (Redis's equals it except for compressible values over 20 bytes,
 * which Redis would LZF-compress); lru is the key's access clock (seconds, 24 bits, as
 * Redis's) and lru_seconds_idle the time since, as OBJECT IDLETIME.
 */
void cmd_debug_object(struct cmd_ctx *x)
{
    /* as Redis's, straight from the table: a key past its expiry time that no one removed
     * yet (DEBUG SET-ACTIVE-EXPIRE 0) is still shown */
    uint64_t h = cmd_key_hash(&x->argv[2]);
    struct tbl *t = cmd_tbl_peek(x, h);
    const struct tbl_entry *e = t != NULL ? tbl_find(t, x->argv[2].ptr, x->argv[2].len, h) : NULL;
    if (e == NULL) {
        reply_error(x->out, "ERR no such key");
        return;
    }
    size_t n;
    const void *v = tbl_entry_val(e, &n);
    uint8_t head[RDBSTR_HEAD_MAX];
    bool body;
    size_t hn = rdbstr_dump_head(v, n, head, &body);
    KV_ASSERT(hn >= 1); /* the type byte, not part of the serialized string */
    char line[256];
    snprintf(line, sizeof line,
             "Value at:%p refcount:%lld encoding:%s serializedlength:%zu lru:%lld "
             "lru_seconds_idle:%llu",
             (const void *)e, (long long)obj_refcount(e), obj_encoding(e), hn - 1 + (body ? n : 0),
             (long long)tbl_entry_lru(e), (unsigned long long)tbl_entry_idle_s(e, x->now_ms));
    reply_simple(x->out, line);
}

bool cmd_object_keyed(const struct resp_arg *sub)
{
    for (size_t k = 0; k < KV_ARRAY_LEN(object_keyed); k++) {
        if (cmd_arg_is(sub, object_keyed[k])) {
            return true;
        }
    }
    return false;
}

void cmd_object(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
        return;
    }
    bool keyed = cmd_object_keyed(sub);
    if (!keyed && !cmd_arg_is(sub, "help")) {
        cmd_reply_unknown_subcommand(x);
        return;
    }
    if (x->argc != (keyed ? 3u : 2u)) {
        cmd_reply_sub_arity(x);
        return;
    }
    KV_ASSERT(x->desc->flags & CMD_HIDDEN); /* dispatched to the key's shard */
    const struct resp_arg *key = &x->argv[2];
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_peek(x, key, h); /* not a use of the key */
    if (e != NULL) {
        STAT_ADD(x->sh->stats.keyspace_hits, 1);
    } else {
        STAT_ADD(x->sh->stats.keyspace_misses, 1);
    }
    if (e == NULL) {
        reply_null(x->out);
        return;
    }
    int64_t policy = KV_CONF_GET(kvd_settings.maxmemory_policy);
    bool lfu = policy == EVICT_ALLKEYS_LFU || policy == EVICT_VOLATILE_LFU;
    if (cmd_arg_is(sub, "encoding")) {
        reply_bulk_str(x->out, obj_encoding(e));
    } else if (cmd_arg_is(sub, "refcount")) {
        reply_int(x->out, obj_refcount(e));
    } else if (cmd_arg_is(sub, "idletime")) {
        if (lfu) {
            reply_error(x->out, "ERR An LFU maxmemory policy is selected, idle time not tracked. "
                                "Please note that when switching between policies at runtime LRU "
                                "and LFU data will take some time to adjust.");
        } else {
            reply_int(x->out, (int64_t)tbl_entry_idle_s(e, x->now_ms));
        }
    } else if (lfu) {
        reply_int(x->out, (int64_t)tbl_entry_freq(e, x->now_ms));
    } else {
        reply_error(x->out, "ERR An LFU maxmemory policy is not selected, access frequency not "
                            "tracked. Please note that when switching between policies at "
                            "runtime LRU and LFU data will take some time to adjust.");
    }
}

/* Puts a copy of entry e (value, expiry, type) as key k (hash h) of database db, logs
 * it, and returns to the caller's database. False after replying the error if it could
 * not (out of memory). */
static bool put_copy(struct cmd_ctx *x, const struct tbl_entry *e, const struct resp_arg *k,
                     uint64_t h, uint32_t db, bool moved)
{
    uint32_t back = x->db;
    x->db = db; /* the table, WATCH and WAL record of that database */
    size_t vlen;
    const void *v = tbl_entry_val(e, &vlen);
    /* (access bits: a moved key keeps its own, a copy is a new object, as in Redis) */
    struct tbl_put_args pa = {.val = v,
                              .val_len = vlen,
                              .expire_ms = tbl_entry_expire_ms(e),
                              .type = tbl_entry_type(e),
                              .flags = (tbl_entry_raw(e) ? TBL_RAW : 0) |
                                       (moved ? TBL_ACCESS : TBL_NEW_ACCESS),
                              .access = tbl_entry_lru(e)};
    bool ok = tbl_put(cmd_tbl(x, h), k->ptr, k->len, h, &pa, x->now_ms, NULL) == 0;
    if (ok) {
        cmd_log_key(x, k, h);
        cmd_notify(x, NOTIFY_NEW, "new", k); /* Redis adds the copy anew, replacing or not */
    } else {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
    }
    x->db = back;
    return ok;
}

/* COPY source destination [DB db] [REPLACE]; both keys are on this shard (checked by
 * the caller), the destination in the selected database or in `db`. */
void cmd_copy(struct cmd_ctx *x)
{
    const struct resp_arg *src = &x->argv[1];
    const struct resp_arg *dst = &x->argv[2];
    bool replace = false;
    uint32_t src_db = x->db, dst_db = x->db;
    for (size_t i = 3; i < x->argc; i++) {
        if (cmd_arg_is(&x->argv[i], "replace")) {
            replace = true;
        } else if (cmd_arg_is(&x->argv[i], "db") && i + 1 < x->argc) {
            if (!cmd_parse_db(x, &x->argv[++i], NULL, &dst_db)) {
                return;
            }
        } else {
            reply_err_syntax(x->out);
            return;
        }
    }
    if (src_db == dst_db && src->len == dst->len && memcmp(src->ptr, dst->ptr, src->len) == 0) {
        reply_error(x->out, "ERR source and destination objects are the same");
        return;
    }
    uint64_t hs = cmd_key_hash(src), hd = cmd_key_hash(dst);
    const struct tbl_entry *e = cmd_lookup_read(x, src, hs);
    if (e == NULL) {
        reply_int(x->out, 0);
        return;
    }
    x->db = dst_db; /* the destination's table and WATCH */
    bool taken = cmd_lookup_write(x, dst, hd) != NULL;
    x->db = src_db;
    if (taken && !replace) {
        reply_int(x->out, 0);
        return;
    }
    if (put_copy(x, e, dst, hd, dst_db, false)) {
        notify_key(x->sh, NOTIFY_GENERIC, "copy_to", dst_db, dst->ptr, dst->len);
        reply_int(x->out, 1);
    }
}

/*
 * MOVE key db: the key and its expiry into database `db` (same partition: the same
 * shard), unless it is absent here or present there. Logged as the destination's PUT,
 * then the source's DEL: both in one WAL batch, so a crash keeps both or neither.
 */
void cmd_move(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    uint32_t src_db = x->db, dst_db;
    if (!cmd_parse_db(x, &x->argv[2], NULL, &dst_db)) {
        return;
    }
    if (dst_db == src_db) {
        reply_error(x->out, "ERR source and destination objects are the same");
        return;
    }
    uint64_t h = cmd_key_hash(key);
    const struct tbl_entry *e = cmd_lookup_write(x, key, h);
    if (e == NULL) {
        reply_int(x->out, 0);
        return;
    }
    x->db = dst_db;
    bool taken = cmd_lookup_write(x, key, h) != NULL;
    x->db = src_db;
    if (taken) {
        reply_int(x->out, 0);
        return;
    }
    if (!put_copy(x, e, key, h, dst_db, true)) {
        return;
    }
    int rc = tbl_del(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, NULL);
    KV_ASSERT(rc == 0);
    cmd_log_key(x, key, h);
    cmd_count_changes(x->sh, -1); /* two records, one change (Redis: dirty++ once) */
    cmd_notify(x, NOTIFY_GENERIC, "move_from", key);
    notify_key(x->sh, NOTIFY_GENERIC, "move_to", dst_db, key->ptr, key->len);
    reply_int(x->out, 1);
}

/* ---- DUMP, RESTORE ------------------------------------------------------------------ */

/* DUMP key: the value in Redis 7.0's serialization (io/rdbstr), or nil; the bulk reply
 * is written in pieces around the value's own bytes (no copy of the value). */
void cmd_dump(struct cmd_ctx *x)
{
    const struct tbl_entry *e = cmd_lookup_read(x, &x->argv[1], cmd_key_hash(&x->argv[1]));
    if (e == NULL) {
        reply_null(x->out);
        return;
    }
    size_t n;
    const void *v = tbl_entry_val(e, &n);
    uint8_t head[RDBSTR_HEAD_MAX], tail[RDBSTR_TAIL];
    bool body;
    size_t hn = rdbstr_dump_head(v, n, head, &body);
    uint64_t crc = rdbstr_crc64(0, head, hn);
    if (body) {
        crc = rdbstr_crc64(crc, v, n);
    }
    rdbstr_dump_tail(crc, tail);
    char len[32];
    int k = snprintf(len, sizeof len, "$%zu\r\n", hn + (body ? n : 0) + RDBSTR_TAIL);
    reply_raw(x->out, len, (size_t)k);
    reply_raw(x->out, head, hn);
    if (body) {
        reply_raw(x->out, v, n);
    }
    reply_raw(x->out, tail, RDBSTR_TAIL);
    reply_raw(x->out, "\r\n", 2);
}

/*
 * RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], as Redis 7.0 checks
 * it (options, then BUSYKEY, then the TTL, then the payload). A payload of another
 * type (a list, a hash, ...) is refused: kvd stores strings only. IDLETIME sets the key's
 * access clock that long ago (under an LRU or no policy), FREQ its LFU counter (under an
 * LFU policy), as Redis's.
 */
void cmd_restore(struct cmd_ctx *x)
{
    const struct resp_arg *key = &x->argv[1];
    bool replace = false, absttl = false, idle = false, freq = false;
    int64_t idle_s = 0, freq_v = 0;
    for (size_t j = 4; j < x->argc; j++) {
        bool more = j + 1 < x->argc;
        int64_t v;
        if (cmd_arg_is(&x->argv[j], "replace")) {
            replace = true;
        } else if (cmd_arg_is(&x->argv[j], "absttl")) {
            absttl = true;
        } else if (cmd_arg_is(&x->argv[j], "idletime") && more && !freq) {
            if (!cmd_parse_i64(&x->argv[++j], &v)) {
                reply_err_not_int(x->out);
                return;
            }
            if (v < 0) {
                reply_error(x->out, "ERR Invalid IDLETIME value, must be >= 0");
                return;
            }
            idle = true;
            idle_s = v < 0xffffff ? v : 0xffffff; /* (the clock's range, as Redis caps it) */
        } else if (cmd_arg_is(&x->argv[j], "freq") && more && !idle) {
            if (!cmd_parse_i64(&x->argv[++j], &v)) {
                reply_err_not_int(x->out);
                return;
            }
            if (v < 0 || v > 255) {
                reply_error(x->out, "ERR Invalid FREQ value, must be >= 0 and <= 255");
                return;
            }
            freq = true;
            freq_v = v;
        } else {
            reply_err_syntax(x->out);
            return;
        }
    }
    uint64_t h = cmd_key_hash(key);
    bool exists = cmd_lookup_write(x, key, h) != NULL;
    if (exists && !replace) {
        reply_error(x->out, "BUSYKEY Target key name already exists.");
        return;
    }
    int64_t ttl;
    if (!cmd_parse_i64(&x->argv[2], &ttl)) {
        reply_err_not_int(x->out);
        return;
    }
    if (ttl < 0) {
        reply_error(x->out, "ERR Invalid TTL value, must be >= 0");
        return;
    }
    const uint8_t *p = (const uint8_t *)x->argv[3].ptr, *val = NULL;
    size_t n = x->argv[3].len, len = 0, need = 0;
    uint8_t *buf = NULL;
    enum rdbstr_result r = rdbstr_restore(p, n, KV_VALUE_BYTES_MAX, NULL, 0, &val, &len, &need);
    if (r == RDBSTR_OK && need > 0) {
        buf = mi_heap_malloc(x->sh->heap, need);
        KV_ASSERT(buf != NULL);
        r = rdbstr_restore(p, n, KV_VALUE_BYTES_MAX, buf, need, &val, &len, &need);
    }
    if (r == RDBSTR_BAD_FOOTER) {
        reply_error(x->out, "ERR DUMP payload version or checksum are wrong");
    } else if (r == RDBSTR_NOT_STRING) {
        reply_error(x->out, "ERR Bad data format (kvd restores strings only)");
    } else if (r != RDBSTR_OK) {
        reply_error(x->out, "ERR Bad data format");
    } else {
        int64_t when = ttl;
        bool over = ttl != 0 && !absttl && __builtin_add_overflow(x->now_ms, ttl, &when);
        if (ttl != 0 && (over || when <= x->now_ms)) { /* expired: only the old key goes */
            if (exists && tbl_del(cmd_tbl(x, h), key->ptr, key->len, h, x->now_ms, NULL) == 0) {
                cmd_log_key(x, key, h);
                cmd_notify(x, NOTIFY_GENERIC, "del", key);
            }
            reply_ok(x->out);
        } else {
            struct tbl_put_args pa = {.val = val,
                                      .val_len = len,
                                      .expire_ms = when,
                                      .type = TBL_TYPE_STRING,
                                      .flags = TBL_NEW_ACCESS | (freq ? TBL_FREQ : 0),
                                      .idle_s = (uint32_t)idle_s,
                                      .freq = (uint8_t)freq_v};
            if (tbl_put(cmd_tbl(x, h), key->ptr, key->len, h, &pa, x->now_ms, NULL) != 0) {
                reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
            } else {
                cmd_log_key(x, key, h);
                cmd_notify(x, NOTIFY_NEW, "new", key);
                cmd_notify(x, NOTIFY_GENERIC, "restore", key);
                reply_ok(x->out);
            }
        }
    }
    mi_free(buf);
}

/* RENAME and RENAMENX; both keys are on this shard (checked by the caller). */
static void rename_generic(struct cmd_ctx *x, bool nx)
{
    const struct resp_arg *src = &x->argv[1];
    const struct resp_arg *dst = &x->argv[2];
    uint64_t hs = cmd_key_hash(src);
    uint64_t hd = cmd_key_hash(dst);
    const struct tbl_entry *e = cmd_lookup_write(x, src, hs);
    if (e == NULL) {
        reply_error(x->out, "ERR no such key");
        return;
    }
    bool same = src->len == dst->len && memcmp(src->ptr, dst->ptr, src->len) == 0;
    if (nx && cmd_lookup_write(x, dst, hd) != NULL) {
        reply_int(x->out, 0);
        return;
    }
    if (same) {
        if (nx) {
            reply_int(x->out, 0);
        } else {
            reply_ok(x->out);
        }
        return;
    }
    struct tbl_entry *old = NULL;
    int rc = tbl_del(cmd_tbl(x, hs), src->ptr, src->len, hs, x->now_ms, &old);
    KV_ASSERT(rc == 0 && old != NULL);
    size_t vlen;
    const void *v = tbl_entry_val(old, &vlen);
    struct tbl_put_args pa = {.val = v,
                              .val_len = vlen,
                              .expire_ms = tbl_entry_expire_ms(old),
                              .type = tbl_entry_type(old),
                              .flags = (tbl_entry_raw(old) ? TBL_RAW : 0) | TBL_ACCESS,
                              .access = tbl_entry_lru(old)}; /* (the key moves, as in Redis) */
    rc = tbl_put(cmd_tbl(x, hd), dst->ptr, dst->len, hd, &pa, x->now_ms, NULL);
    tbl_entry_free(old);
    cmd_log_key(x, src, hs);
    if (rc != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    cmd_log_key(x, dst, hd);
    cmd_count_changes(x->sh, -1); /* one change, as Redis counts it */
    cmd_notify(x, NOTIFY_NEW, "new", dst);
    cmd_notify(x, NOTIFY_GENERIC, "rename_from", src);
    cmd_notify(x, NOTIFY_GENERIC, "rename_to", dst);
    if (nx) {
        reply_int(x->out, 1);
    } else {
        reply_ok(x->out);
    }
}

void cmd_rename(struct cmd_ctx *x)
{
    rename_generic(x, false);
}

void cmd_renamenx(struct cmd_ctx *x)
{
    rename_generic(x, true);
}

/*
 * RENAME, RENAMENX, COPY and MSETNX whose keys are on more than one shard run as a
 * cross-shard transaction (conn.c, "SAME commands across shards"): the client's shard
 * moves the value with these hidden rows, each run on the shard of the key it names.
 */

/* rename|get key r|w: the entry as [value, expire ms (0: none), raw 0|1, type], or
 * null; looked up as a read (COPY's source: keyspace hits and misses, keymiss) or as a
 * write (RENAME's keys, MSETNX's: an expired one goes). */
void cmd_rename_get(struct cmd_ctx *x)
{
    const struct resp_arg *k = &x->argv[1];
    uint64_t h = cmd_key_hash(k);
    const struct tbl_entry *e =
        cmd_arg_is(&x->argv[2], "r") ? cmd_lookup_read(x, k, h) : cmd_lookup_write(x, k, h);
    if (e == NULL) {
        reply_null(x->out);
        return;
    }
    size_t vlen;
    const void *v = tbl_entry_val(e, &vlen);
    reply_array(x->out, 4);
    reply_bulk(x->out, v, vlen);
    reply_int(x->out, tbl_entry_expire_ms(e));
    reply_int(x->out, tbl_entry_raw(e) ? 1 : 0);
    reply_int(x->out, tbl_entry_type(e));
}

static int64_t internal_int(const struct resp_arg *a)
{
    int64_t v = 0;
    bool ok = cmd_parse_i64(a, &v);
    KV_ASSERT(ok); /* made by conn.c, never by a client */
    return v;
}

/* rename|put key value expire-ms raw type event: the key made anew with that value
 * (replacing it), logged, and notified: "new" and the event (0: rename_to, 1: copy_to),
 * or, for BITOP's result (2) and PFMERGE's (3), "new" if it was no key, then "set" or
 * "pfadd". */
void cmd_rename_put(struct cmd_ctx *x)
{
    const struct resp_arg *k = &x->argv[1];
    uint64_t h = cmd_key_hash(k);
    int64_t event = internal_int(&x->argv[6]);
    bool created = event < 2 || cmd_new_key(x, k, h);
    struct tbl_put_args pa = {.val = x->argv[2].ptr,
                              .val_len = x->argv[2].len,
                              .expire_ms = internal_int(&x->argv[3]),
                              .type = (uint8_t)internal_int(&x->argv[5]),
                              .flags = internal_int(&x->argv[4]) ? TBL_RAW : 0};
    if (tbl_put(cmd_tbl(x, h), k->ptr, k->len, h, &pa, x->now_ms, NULL) != 0) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    }
    cmd_log_key(x, k, h);
    if (created) {
        cmd_notify(x, NOTIFY_NEW, "new", k);
    }
    if (event == 2 || event == 3) {
        cmd_notify(x, NOTIFY_STRING, event == 2 ? "set" : "pfadd", k);
    } else {
        cmd_notify(x, NOTIFY_GENERIC, event == 0 ? "rename_to" : "copy_to", k);
    }
    reply_ok(x->out);
}

/* rename|del key event: the key deleted, logged, and notified: RENAME's source (0:
 * rename_from; RENAME is one change, counted by the destination's log) or BITOP's empty
 * result (1: del). */
void cmd_rename_del(struct cmd_ctx *x)
{
    const struct resp_arg *k = &x->argv[1];
    uint64_t h = cmd_key_hash(k);
    if (tbl_del(cmd_tbl(x, h), k->ptr, k->len, h, x->now_ms, NULL) != 0) {
        reply_int(x->out, 0); /* no such key */
        return;
    }
    cmd_log_key(x, k, h);
    if (internal_int(&x->argv[2]) == 0) {
        cmd_count_changes(x->sh, -1);
        cmd_notify(x, NOTIFY_GENERIC, "rename_from", k);
    } else {
        cmd_notify(x, NOTIFY_GENERIC, "del", k);
    }
    reply_int(x->out, 1);
}
