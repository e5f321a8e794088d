/*
 * cmd: the command table, sorted once at start-up and searched by binary search on
 * the lower-cased name (no allocation), plus small argument helpers shared by the
 * handlers.
 */
#include "cmd.h"

#include "kv_assert.h"
#include "resp_parse.h"
#include "server.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define CMD_NAME_MAX 32 /* longer names are unknown commands */

#define KEY1  1, 1, 1
#define NOKEY 0, 0, 0
#define RO    (CMD_READONLY | CMD_FAST)
#define WR    (CMD_WRITE | CMD_FAST)

static struct cmd_desc table[] = {
    /* strings */
    {"get", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_get, "readonly fast"},
    {"set", -3, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_set, "write denyoom"},
    {"setnx", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_setnx, "write denyoom fast"},
    {"setex", 4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_setex, "write denyoom"},
    {"psetex", 4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_psetex, "write denyoom"},
    {"getset", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_getset, "write denyoom fast"},
    {"getdel", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_getdel, "write fast"},
    {"getex", -2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_getex, "write fast"},
    {"mget", -2, RO, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_ARRAY, cmd_mget, "readonly fast"},
    {"mset", -3, CMD_WRITE, 1, -1, 2, CMD_EXEC_MULTI, CMD_MERGE_OK, cmd_mset, "write denyoom"},
    {"msetnx", -3, CMD_WRITE, 1, -1, 2, CMD_EXEC_SAME, 0, cmd_msetnx, "write denyoom"},
    {"incr", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_incr, "write denyoom fast"},
    {"decr", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_decr, "write denyoom fast"},
    {"incrby", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_incrby, "write denyoom fast"},
    {"decrby", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_decrby, "write denyoom fast"},
    {"incrbyfloat", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_incrbyfloat, "write denyoom fast"},
    {"append", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_append, "write denyoom fast"},
    {"strlen", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_strlen, "readonly fast"},
    {"getrange", 4, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_getrange, "readonly"},
    {"substr", 4, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_substr, "readonly"},
    {"setrange", 4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_setrange, "write denyoom"},
    /* keyspace */
    {"del", -2, CMD_WRITE, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_del, "write"},
    {"unlink", -2, WR, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_del, "write fast"},
    {"exists", -2, RO, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_exists, "readonly fast"},
    {"touch", -2, RO, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_touch, "readonly fast"},
    {"expire", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_expire, "write fast"},
    {"pexpire", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_pexpire, "write fast"},
    {"expireat", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_expireat, "write fast"},
    {"pexpireat", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_pexpireat, "write fast"},
    {"ttl", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_ttl, "readonly fast"},
    {"pttl", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_pttl, "readonly fast"},
    {"expiretime", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_expiretime, "readonly fast"},
    {"pexpiretime", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_pexpiretime, "readonly fast"},
    {"persist", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_persist, "write fast"},
    {"type", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_type, "readonly fast"},
    {"rename", 3, CMD_WRITE, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_rename, "write"},
    {"renamenx", 3, WR, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_renamenx, "write fast"},
    {"dbsize", 1, RO, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SUM, cmd_dbsize, "readonly fast"},
    {"keys", 2, CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_CONCAT, cmd_keys, "readonly"},
    {"randomkey", 1, CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_FIRST, cmd_randomkey, "readonly"},
    {"flushall", -1, CMD_WRITE, NOKEY, CMD_EXEC_ALL, CMD_MERGE_OK, cmd_flushall, "write"},
    {"flushdb", -1, CMD_WRITE, NOKEY, CMD_EXEC_ALL, CMD_MERGE_OK, cmd_flushall, "write"},
    {"scan", -2, CMD_READONLY, NOKEY, CMD_EXEC_SCAN, 0, cmd_scan, "readonly"},
    /* connection and server */
    {"ping", -1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_ping, "fast"},
    {"echo", 2, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_echo, "fast"},
    {"quit", -1, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_quit, "noauth fast"},
    {"select", 2, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_select, "loading stale fast"},
    {"auth", -2, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_auth, "noauth fast"},
    {"hello", -1, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_hello, "noauth fast"},
    {"client", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_client, "loading stale"},
    {"command", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_command, "loading stale"},
    {"info", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_info, "loading stale"},
    {"config", -2, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_config, "admin loading stale"},
    {"time", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_time, "loading stale fast"},
    {"shutdown", -1, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_shutdown, "admin loading stale"},
    {"slowlog", -2, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_slowlog, "admin loading stale"},
    {"debug", -2, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_debug, "admin"},
    {"lastsave", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_lastsave, "loading stale fast"},
    {"reset", 1, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_reset, "noauth fast"},
    {"wait", 3, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_wait, ""},
    {"client|list", -2, CMD_HIDDEN, NOKEY, CMD_EXEC_ALL, CMD_MERGE_BULKCAT, cmd_client_list_part,
     ""},
    {"client|kill", -3, CMD_HIDDEN, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SUM, cmd_client_kill_part, ""},
    {"client|kill-old", 3, CMD_HIDDEN, NOKEY, CMD_EXEC_ALL, CMD_MERGE_KILL, cmd_client_kill_part,
     ""},
    {"lcs", -3, CMD_READONLY, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_lcs_unsupported, "readonly"},
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct cmd_desc *)a)->name, ((const struct cmd_desc *)b)->name);
}

_Static_assert(KV_ARRAY_LEN(table) <= KVD_CMDS_MAX, "KVD_CMDS_MAX is too small");

void cmd_init(void)
{
    qsort(table, KV_ARRAY_LEN(table), sizeof table[0], by_name);
    for (size_t i = 1; i < KV_ARRAY_LEN(table); i++) {
        KV_ASSERT(strcmp(table[i - 1].name, table[i].name) < 0);
    }
}

const struct cmd_desc *cmd_lookup(const char *name, size_t len)
{
    char low[CMD_NAME_MAX + 1];
    if (len == 0 || len > CMD_NAME_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        low[i] = (char)tolower((unsigned char)name[i]);
    }
    low[len] = '\0';
    size_t lo = 0;
    size_t hi = KV_ARRAY_LEN(table);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(low, table[mid].name);
        if (c == 0) {
            return (table[mid].flags & CMD_HIDDEN) ? NULL : &table[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

const struct cmd_desc *cmd_lookup_hidden(const char *name)
{
    for (size_t i = 0; i < KV_ARRAY_LEN(table); i++) {
        if (strcmp(table[i].name, name) == 0) {
            KV_ASSERT(table[i].flags & CMD_HIDDEN);
            return &table[i];
        }
    }
    KV_ASSERT(0 && "no such internal command");
    return NULL;
}

size_t cmd_index(const struct cmd_desc *d)
{
    size_t i = (size_t)(d - table);
    KV_DASSERT(i < KV_ARRAY_LEN(table));
    return i;
}

const struct cmd_desc *cmd_table(size_t *count)
{
    *count = KV_ARRAY_LEN(table);
    return table;
}

bool cmd_arity_ok(const struct cmd_desc *d, size_t argc)
{
    if (d->arity > 0) {
        return argc == (size_t)d->arity;
    }
    return argc >= (size_t)-d->arity;
}

struct tbl *cmd_tbl(struct cmd_ctx *x, uint64_t h)
{
    return shard_table(x->sh, h);
}

bool cmd_parse_i64(const struct resp_arg *a, int64_t *out)
{
    /* Redis's string2ll: optional '-', digits, no leading zeros (but "0"), no spaces,
     * no '+', at most 20 characters, within int64. */
    const char *p = a->ptr;
    size_t n = a->len;
    if (n == 0 || n > 20) {
        return false;
    }
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return true;
    }
    size_t i = 0;
    bool neg = false;
    if (p[0] == '-') {
        neg = true;
        i = 1;
        if (n == 1) {
            return false;
        }
    }
    if (p[i] < '1' || p[i] > '9') {
        return false;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) {
            return false;
        }
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) {
            return false;
        }
        *out = (int64_t)v;
    }
    return true;
}

bool cmd_arg_is(const struct resp_arg *a, const char *word)
{
    size_t n = strlen(word);
    if (a->len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)a->ptr[i]) != word[i]) {
            return false;
        }
    }
    return true;
}
