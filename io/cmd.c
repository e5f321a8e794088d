/*
 * cmd: the command table, sorted once at start-up and found by name through a hash
 * index (no allocation), rename-command's renames, plus small argument helpers shared
 * by the handlers.
 */
#include "cmd.h"
#include "cmd_docs.h"

#include "kv_assert.h"
#include "kv_error.h"
#include "kv_num.h"
#include "monitor.h"
#include "latency.h"
#include "resp_parse.h"
#include "route.h"
#include "server.h"
#include "tbl.h"
#include "track.h"
#include "wal.h"
#include "watch.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD_NAME_MAX    32  /* the longest name in the table (asserted by cmd_init) */
#define CMD_INDEX_SLOTS 512 /* the by-name index: a power of two, at least twice the table */
/* A write of part of a value is logged as a RANGE record rather than the whole value
 * when that saves at least this many bytes (below it, the whole value is as cheap). */
#define CMD_LOG_RANGE_MIN_SAVING 256

#define KEY1  1, 1, 1
#define NOKEY 0, 0, 0
#define RO    (CMD_READONLY | CMD_FAST)
#define WR    (CMD_WRITE | CMD_FAST)

static struct cmd_desc table[] = {
    /* strings */
    {"get", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_get, "readonly fast", NULL},
    {"set", -3, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_set, "write denyoom", NULL},
    {"setnx", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_setnx, "write denyoom fast", NULL},
    {"setex", 4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_setex, "write denyoom", NULL},
    {"psetex", 4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_psetex, "write denyoom", NULL},
    {"getset", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_getset, "write denyoom fast", NULL},
    {"getdel", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_getdel, "write fast", NULL},
    {"getex", -2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_getex, "write fast", NULL},
    {"mget", -2, RO, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_ARRAY, cmd_mget, "readonly fast", NULL},
    {"mset", -3, CMD_WRITE, 1, -1, 2, CMD_EXEC_MULTI, CMD_MERGE_OK, cmd_mset, "write denyoom",
     NULL},
    {"msetnx", -3, CMD_WRITE, 1, -1, 2, CMD_EXEC_SAME, 0, cmd_msetnx, "write denyoom", NULL},
    {"incr", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_incr, "write denyoom fast", NULL},
    {"decr", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_decr, "write denyoom fast", NULL},
    {"incrby", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_incrby, "write denyoom fast", NULL},
    {"decrby", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_decrby, "write denyoom fast", NULL},
    {"incrbyfloat", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_incrbyfloat, "write denyoom fast", NULL},
    {"append", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_append, "write denyoom fast", NULL},
    {"strlen", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_strlen, "readonly fast", NULL},
    {"getrange", 4, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_getrange, "readonly", NULL},
    {"substr", 4, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_substr, "readonly", NULL},
    {"setrange", 4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_setrange, "write denyoom", NULL},
    /* keyspace */
    {"del", -2, CMD_WRITE, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_del, "write", NULL},
    {"unlink", -2, WR, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_del, "write fast", NULL},
    {"exists", -2, RO, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_exists, "readonly fast", NULL},
    {"touch", -2, RO, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_SUM, cmd_touch, "readonly fast", NULL},
    {"expire", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_expire, "write fast", NULL},
    {"pexpire", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_pexpire, "write fast", NULL},
    {"expireat", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_expireat, "write fast", NULL},
    {"pexpireat", -3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_pexpireat, "write fast", NULL},
    {"ttl", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_ttl, "readonly fast", NULL},
    {"pttl", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_pttl, "readonly fast", NULL},
    {"expiretime", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_expiretime, "readonly fast", NULL},
    {"pexpiretime", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_pexpiretime, "readonly fast", NULL},
    {"persist", 2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_persist, "write fast", NULL},
    {"type", 2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_type, "readonly fast", NULL},
    {"copy", -3, CMD_WRITE, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_copy, "write denyoom", NULL},
    {"rename", 3, CMD_WRITE, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_rename, "write", NULL},
    {"renamenx", 3, WR, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_renamenx, "write fast", NULL},
    {"dbsize", 1, RO, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SUM, cmd_dbsize, "readonly fast", NULL},
    {"keys", 2, CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_CONCAT, cmd_keys, "readonly", NULL},
    {"randomkey", 1, CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_RANDOM, cmd_randomkey, "readonly",
     NULL},
    {"flushall", -1, CMD_WRITE, NOKEY, CMD_EXEC_ALL, CMD_MERGE_OK, cmd_flushall, "write",
     cmd_flushall_check},
    {"flushdb", -1, CMD_WRITE, NOKEY, CMD_EXEC_ALL, CMD_MERGE_OK, cmd_flushdb, "write",
     cmd_flushall_check},
    {"swapdb", 3, WR, NOKEY, CMD_EXEC_ALL, CMD_MERGE_OK, cmd_swapdb, "write fast",
     cmd_swapdb_check},
    {"move", 3, WR, KEY1, CMD_EXEC_KEY, 0, cmd_move, "write fast", NULL},
    {"scan", -2, CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SCAN, cmd_scan, "readonly",
     cmd_scan_check},
    /* connection and server */
    {"ping", -1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_ping, "fast", NULL},
    {"echo", 2, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_echo, "fast", NULL},
    {"quit", -1, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_quit, "noauth fast", NULL},
    {"select", 2, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_select, "loading stale fast", NULL},
    {"auth", -2, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_auth, "noauth fast", NULL},
    {"hello", -1, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_hello, "noauth fast", NULL},
    {"client", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_client, "loading stale", NULL},
    {"command", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_command, "loading stale", NULL},
    {"info", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_info, "loading stale", NULL},
    {"config", -2, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_config, "admin loading stale", NULL},
    {"time", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_time, "loading stale fast", NULL},
    {"lolwut", -1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_lolwut, "readonly fast", NULL},
    {"role", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_role, "noscript loading stale fast", NULL},
    {"shutdown", -1, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_shutdown, "admin loading stale", NULL},
    {"slowlog", -2, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_slowlog, "admin loading stale", NULL},
    {"acl", -2, CMD_NOSCRIPT, NOKEY, CMD_EXEC_CONN, 0, cmd_acl, "noscript loading stale", NULL},
    {"latency", -2, CMD_ADMIN | CMD_NOSCRIPT, NOKEY, CMD_EXEC_CONN, 0, cmd_latency,
     "admin noscript loading stale", NULL},
    {"debug", -2, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_debug, "admin", NULL},
    {"lastsave", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_lastsave, "loading stale fast", NULL},
    {"save", 1, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_save, "admin noscript", NULL},
    {"bgsave", -1, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_bgsave, "admin noscript", NULL},
    {"bgrewriteaof", 1, CMD_ADMIN, NOKEY, CMD_EXEC_CONN, 0, cmd_bgrewriteaof, "admin noscript",
     NULL},
    {"reset", 1, CMD_NOAUTH | CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_reset, "noauth fast", NULL},
    {"cluster", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_cluster, "", NULL},
    {"readonly", 1, CMD_FAST | CMD_LOADING | CMD_STALE, NOKEY, CMD_EXEC_CONN, 0, cmd_cluster,
     "loading stale fast", NULL},
    {"readwrite", 1, CMD_FAST | CMD_LOADING | CMD_STALE, NOKEY, CMD_EXEC_CONN, 0, cmd_cluster,
     "loading stale fast", NULL},
    {"asking", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_cluster, "fast", NULL},
    {"wait", 3, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_wait, "", NULL},
    {"monitor", 1, CMD_ADMIN | CMD_NOSCRIPT | CMD_LOADING | CMD_STALE, NOKEY, CMD_EXEC_CONN, 0,
     cmd_monitor_conn, "admin noscript loading stale", NULL},
    {"client|list", -2, CMD_HIDDEN, NOKEY, CMD_EXEC_ALL, CMD_MERGE_BULKCAT, cmd_client_list_part,
     "", cmd_client_list_check},
    {"client|kill", -3, CMD_HIDDEN, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SUM, cmd_client_kill_part, "",
     cmd_client_kill_check},
    {"client|kill-old", 3, CMD_HIDDEN, NOKEY, CMD_EXEC_ALL, CMD_MERGE_KILL, cmd_client_kill_part,
     "", cmd_client_kill_check},
    {"object", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_object, "", NULL},
    {"object|key", 3, CMD_HIDDEN | CMD_READONLY, 2, 2, 1, CMD_EXEC_KEY, 0, cmd_object, "", NULL},
    {"memory", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_memory, "", NULL},
    {"memory|usage", -3, CMD_HIDDEN | CMD_READONLY, 2, 2, 1, CMD_EXEC_KEY, 0, cmd_memory, "", NULL},
    {"debug|object", 3, CMD_HIDDEN | CMD_READONLY, 2, 2, 1, CMD_EXEC_KEY, 0, cmd_debug_object, "",
     NULL},
    {"debug|digest", 2, CMD_HIDDEN | CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_DIGEST,
     cmd_debug_digest, "", NULL},
    {"debug|digest-value", -2, CMD_HIDDEN | CMD_READONLY, NOKEY, CMD_EXEC_ALL, CMD_MERGE_XOR,
     cmd_debug_digest_value, "", NULL},
    /* the parts of RENAME, RENAMENX, COPY, MSETNX, LCS and BITOP across shards (conn.c) */
    {"rename|get", 3, CMD_HIDDEN | CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_rename_get, "", NULL},
    {"rename|put", 7, CMD_HIDDEN | CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_rename_put, "", NULL},
    {"rename|del", 3, CMD_HIDDEN | CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_rename_del, "", NULL},
    /* publish / subscribe (pubsub.c): the connection's shard */
    {"subscribe", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_subscribe, "pubsub noscript loading stale",
     NULL},
    {"unsubscribe", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_unsubscribe,
     "pubsub noscript loading stale", NULL},
    {"psubscribe", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_psubscribe, "pubsub noscript loading stale",
     NULL},
    {"punsubscribe", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_punsubscribe,
     "pubsub noscript loading stale", NULL},
    {"publish", 3, CMD_FAST, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SUM, cmd_publish,
     "pubsub loading stale fast", NULL},
    {"ssubscribe", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_ssubscribe, "pubsub noscript loading stale",
     NULL},
    {"sunsubscribe", -1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_sunsubscribe,
     "pubsub noscript loading stale", NULL},
    {"spublish", 3, CMD_FAST, NOKEY, CMD_EXEC_ALL, CMD_MERGE_SUM, cmd_spublish,
     "pubsub loading stale fast", NULL},
    {"pubsub", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_pubsub, "", NULL},
    /* scripting (script.c) */
    {"eval", -3, 0, NOKEY, CMD_EXEC_SCRIPT, 0, cmd_eval, "noscript", NULL},
    {"evalsha", -3, 0, NOKEY, CMD_EXEC_SCRIPT, 0, cmd_eval, "noscript", NULL},
    {"eval_ro", -3, CMD_READONLY, NOKEY, CMD_EXEC_SCRIPT, 0, cmd_eval, "noscript readonly", NULL},
    {"evalsha_ro", -3, CMD_READONLY, NOKEY, CMD_EXEC_SCRIPT, 0, cmd_eval, "noscript readonly",
     NULL},
    {"script", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_script, "noscript", NULL},
    /* functions (func.c) */
    {"fcall", -3, 0, NOKEY, CMD_EXEC_SCRIPT, 0, cmd_fcall, "noscript", NULL},
    {"fcall_ro", -3, CMD_READONLY, NOKEY, CMD_EXEC_SCRIPT, 0, cmd_fcall, "noscript readonly", NULL},
    {"function", -2, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_function, "noscript", NULL},
    {"multi", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_multi, "", NULL},
    {"exec", 1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_exec, "", NULL},
    {"discard", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_discard, "", NULL},
    {"watch", -2, CMD_FAST, 1, -1, 1, CMD_EXEC_MULTI, CMD_MERGE_OK, cmd_watch, "", NULL},
    {"unwatch", 1, CMD_FAST, NOKEY, CMD_EXEC_CONN, 0, cmd_unwatch, "", NULL},
    /* SAME: it runs data commands on the shard owning all their keys */
    {"exec|run", -2, CMD_HIDDEN | CMD_WRITE | CMD_NOSLOWLOG, NOKEY, CMD_EXEC_SAME, 0, conn_txn_run,
     "", NULL},
    /* a cross-shard EXEC's wait for a parked shard's WAL: an empty reply, held there until
     * what the transaction wrote is durable */
    {"exec|sync", -1, CMD_HIDDEN | CMD_WRITE | CMD_NOSLOWLOG, NOKEY, CMD_EXEC_SAME, 0,
     conn_txn_sync, "", NULL},
    {"setbit", 4, WR, KEY1, CMD_EXEC_KEY, 0, cmd_setbit, "write denyoom", NULL},
    {"bitfield", -2, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_bitfield, "write denyoom", NULL},
    {"bitfield_ro", -2, RO, KEY1, CMD_EXEC_KEY, 0, cmd_bitfield_ro, "readonly fast", NULL},
    {"getbit", 3, RO, KEY1, CMD_EXEC_KEY, 0, cmd_getbit, "readonly fast", NULL},
    {"bitcount", -2, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_bitcount, "readonly", NULL},
    {"bitpos", -3, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_bitpos, "readonly", NULL},
    {"bitop", -4, CMD_WRITE, 2, -1, 1, CMD_EXEC_SAME, 0, cmd_bitop, "write denyoom", NULL},
    {"lcs", -3, CMD_READONLY, 1, 2, 1, CMD_EXEC_SAME, 0, cmd_lcs, "readonly", NULL},
    {"pfadd", -2, WR, KEY1, CMD_EXEC_KEY, 0, cmd_pfadd, "write denyoom fast", NULL},
    {"pfcount", -2, CMD_READONLY, 1, -1, 1, CMD_EXEC_SAME, 0, cmd_pfcount, "readonly may_replicate",
     NULL},
    {"pfmerge", -2, CMD_WRITE, 1, -1, 1, CMD_EXEC_SAME, 0, cmd_pfmerge, "write denyoom", NULL},
    {"pfdebug", 3, CMD_WRITE, 2, 2, 1, CMD_EXEC_KEY, 0, cmd_pfdebug, "write denyoom admin", NULL},
    {"pfselftest", 1, 0, NOKEY, CMD_EXEC_CONN, 0, cmd_pfselftest, "admin", NULL},
    {"dump", 2, CMD_READONLY, KEY1, CMD_EXEC_KEY, 0, cmd_dump, "readonly", NULL},
    {"restore", -4, CMD_WRITE, KEY1, CMD_EXEC_KEY, 0, cmd_restore, "write denyoom", NULL},
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct cmd_desc *)a)->name, ((const struct cmd_desc *)b)->name);
}

_Static_assert(KV_ARRAY_LEN(table) <= KVD_CMDS_MAX, "KVD_CMDS_MAX is too small");

_Static_assert(KV_ARRAY_LEN(table) * 2 <= CMD_INDEX_SLOTS, "CMD_INDEX_SLOTS is too small");

/*
 * The by-name index: open addressing over the visible rows, keyed by an FNV-1a hash of
 * the lower-cased name, so that a request's command is found with one hash and one
 * comparison (a binary search costs ~8 string comparisons per request). Slot value:
 * row index + 1, 0 = empty. Built by cmd_init and again at each rename-command (both
 * before the threads start), read-only afterwards.
 */
static uint16_t by_hash[CMD_INDEX_SLOTS];
static uint8_t name_len[KV_ARRAY_LEN(table)]; /* strlen of each row's name */

/* The name each visible row is found by: its own, or the one rename-command gave it
 * (lower-cased, owned here). ext_len 0: renamed to "" (the row is disabled). */
static const char *ext_name[KV_ARRAY_LEN(table)];
static uint8_t ext_len[KV_ARRAY_LEN(table)];
static uint64_t ext_packed[KV_ARRAY_LEN(table)]; /* name_pack of names of <= 8 bytes */
static size_t ext_max = CMD_NAME_MAX;            /* the longest ext_name */
static bool renamed;                             /* some row was renamed or disabled */

static inline uint8_t lower(uint8_t c)
{
    return (uint8_t)((unsigned)(c - 'A') < 26u ? c + ('a' - 'A') : c);
}

/* A name of 1 to 8 bytes, lower-cased, as one word (byte i in bits 8i..8i+7): two
 * overlapping loads, then the ASCII capitals of all bytes at once. */
static inline uint64_t name_pack(const char *name, size_t len)
{
    KV_DASSERT(len >= 1 && len <= 8);
    const uint8_t *p = (const uint8_t *)name;
    uint64_t v;
    if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + len - 4, 4);
        v = (uint64_t)a | (uint64_t)b << (8 * (len - 4));
    } else {
        v = (uint64_t)p[0] | (uint64_t)p[len / 2] << (8 * (len / 2)) |
            (uint64_t)p[len - 1] << (8 * (len - 1));
    }
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t low7 = v & (ones * 0x7f);
    uint64_t ge_a = low7 + ones * (0x80 - 'A'); /* top bit: byte >= 'A' */
    uint64_t gt_z = low7 + ones * (0x7f - 'Z'); /* top bit: byte > 'Z' */
    uint64_t upper = (ge_a ^ gt_z) & ~v & (ones * 0x80);
    return v | upper >> 2; /* 0x80 >> 2: the 0x20 bit */
}

static inline uint32_t pack_hash(uint64_t packed, size_t len)
{
    return (uint32_t)(((packed ^ len) * 0x9E3779B97F4A7C15ull) >> 40);
}

/* The index slot a name hashes to: a multiplicative hash of its packed form when it is
 * at most 8 bytes long (most commands: GET, SET, MGET, ...), else FNV-1a. */
static inline uint32_t name_hash(const char *name, size_t len)
{
    if (len <= 8) {
        return pack_hash(name_pack(name, len), len);
    }
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ lower((uint8_t)name[i])) * 16777619u;
    }
    return h;
}

/* (Re)builds the by-name index from ext_name: every visible row not disabled. */
static void index_build(void)
{
    memset(by_hash, 0, sizeof by_hash);
    for (size_t i = 0; i < KV_ARRAY_LEN(table); i++) {
        if ((table[i].flags & (CMD_HIDDEN | CMD_DISABLED)) != 0) {
            continue;
        }
        size_t len = ext_len[i];
        KV_ASSERT(len > 0);
        ext_packed[i] = len <= 8 ? name_pack(ext_name[i], len) : 0;
        size_t s = name_hash(ext_name[i], len) & (CMD_INDEX_SLOTS - 1);
        while (by_hash[s] != 0) {
            s = (s + 1) & (CMD_INDEX_SLOTS - 1);
        }
        by_hash[s] = (uint16_t)(i + 1);
    }
}

void cmd_init(void)
{
    static const char *const containers[] = {"acl",    "client",   "cluster", "command",
                                             "config", "function", "latency", "memory",
                                             "object", "pubsub",   "script",  "slowlog"};
    qsort(table, KV_ARRAY_LEN(table), sizeof table[0], by_name);
    ext_max = CMD_NAME_MAX;
    renamed = false;
    for (size_t i = 0; i < KV_ARRAY_LEN(table); i++) {
        KV_ASSERT(i == 0 || strcmp(table[i - 1].name, table[i].name) < 0);
        size_t len = strlen(table[i].name);
        KV_ASSERT(len > 0 && len <= CMD_NAME_MAX);
        name_len[i] = (uint8_t)len;
        table[i].flags &= ~(uint32_t)CMD_DISABLED;
        ext_name[i] = table[i].name;
        ext_len[i] = (uint8_t)len;
        for (size_t k = 0; k < KV_ARRAY_LEN(containers); k++) {
            if (strcmp(table[i].name, containers[k]) == 0) {
                table[i].flags |= CMD_SUBCMDS;
            }
        }
        if (table[i].flag_names != NULL && strstr(table[i].flag_names, "denyoom") != NULL) {
            table[i].flags |= CMD_DENYOOM;
        }
        const struct cmd_docs *doc = cmd_docs_find(table[i].name); /* (Redis's flags) */
        if (doc != NULL && doc->flags != NULL && strstr(doc->flags, "noscript") != NULL) {
            table[i].flags |= CMD_NOSCRIPT;
        }
        if (doc != NULL && doc->flags != NULL && strstr(doc->flags, "allow_busy") != NULL) {
            table[i].flags |= CMD_ALLOW_BUSY;
        }
        cmd_fn *fn = table[i].fn;
        if (fn == cmd_multi || fn == cmd_exec || fn == cmd_discard || fn == cmd_watch ||
            fn == cmd_unwatch || fn == cmd_client || fn == cmd_object || fn == cmd_memory ||
            fn == cmd_debug) {
            table[i].flags |= CMD_SPECIAL;
        }
    }
    index_build();
}

int cmd_rename_command(const char *from, const char *to, char *err, size_t errlen)
{
    /* As Redis's: the command is found by the name it has now (so a renamed command can
     * be renamed again), its old name goes, and the new one is added unless it is "". */
    const struct cmd_desc *d = strchr(from, '|') == NULL ? cmd_lookup(from, strlen(from)) : NULL;
    if (d == NULL) {
        snprintf(err, errlen, "No such command in rename-command");
        return KV_EINVAL;
    }
    size_t tlen = strlen(to);
    if (tlen > CMD_RENAME_MAX) {
        snprintf(err, errlen, "rename-command: the new name is longer than %d bytes",
                 CMD_RENAME_MAX);
        return KV_EINVAL;
    }
    if (tlen > 0 && (cmd_lookup(to, tlen) != NULL || strchr(to, '|') != NULL)) {
        snprintf(err, errlen, "Target command name already exists");
        return KV_EINVAL;
    }
    size_t i = cmd_index(d);
    char *name = NULL;
    if (tlen > 0) {
        name = malloc(tlen + 1);
        if (name == NULL) {
            snprintf(err, errlen, "out of memory");
            return KV_ENOMEM;
        }
        for (size_t k = 0; k <= tlen; k++) {
            name[k] = (char)lower((uint8_t)to[k]);
        }
    }
    if (ext_name[i] != table[i].name) {
        free((char *)ext_name[i]);
    }
    ext_name[i] = name != NULL ? name : table[i].name;
    ext_len[i] = (uint8_t)tlen;
    if (tlen == 0) {
        table[i].flags |= CMD_DISABLED;
    }
    ext_max = tlen > ext_max ? tlen : ext_max;
    renamed = true;
    index_build();
    return 0;
}

bool cmd_renamed(void)
{
    return renamed;
}

const struct cmd_desc *cmd_find(const char *name, size_t len)
{
    /* the table is sorted by name: a binary search, case-insensitive */
    size_t lo = 0, hi = KV_ARRAY_LEN(table);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = table[mid].name;
        int c = 0;
        size_t k = 0;
        for (; k < len && m[k] != '\0'; k++) {
            c = (int)lower((uint8_t)name[k]) - (int)(uint8_t)m[k];
            if (c != 0) {
                break;
            }
        }
        if (c == 0) {
            c = k < len ? 1 : (m[k] != '\0' ? -1 : 0);
        }
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

bool cmd_allows_busy(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (d->flags & CMD_ALLOW_BUSY) {
        return true;
    }
    if (!(d->flags & CMD_SUBCMDS) || argc < 2) {
        return false;
    }
    const struct cmd_docs *doc = cmd_docs_find(d->name);
    const struct cmd_docs *sub =
        doc != NULL ? cmd_docs_find_sub(doc, argv[1].ptr, argv[1].len) : NULL;
    return sub != NULL && sub->flags != NULL && strstr(sub->flags, "allow_busy") != NULL;
}

const struct cmd_desc *cmd_lookup(const char *name, size_t len)
{
    if (len == 0 || len > ext_max) {
        return NULL;
    }
    if (len <= 8) { /* one word compared per candidate */
        uint64_t packed = name_pack(name, len);
        for (size_t s = pack_hash(packed, len) & (CMD_INDEX_SLOTS - 1);;
             s = (s + 1) & (CMD_INDEX_SLOTS - 1)) {
            uint16_t v = by_hash[s];
            if (v == 0) {
                return NULL;
            }
            if (ext_packed[v - 1] == packed && ext_len[v - 1] == len) {
                return &table[v - 1];
            }
        }
    }
    size_t s = name_hash(name, len) & (CMD_INDEX_SLOTS - 1);
    for (;;) {
        uint16_t v = by_hash[s];
        if (v == 0) {
            return NULL;
        }
        if (ext_len[v - 1] == len) {
            const char *e = ext_name[v - 1];
            size_t i = 0;
            while (i < len && lower((uint8_t)name[i]) == (uint8_t)e[i]) {
                i++;
            }
            if (i == len) {
                return &table[v - 1];
            }
        }
        s = (s + 1) & (CMD_INDEX_SLOTS - 1);
    }
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

/* The subcommands with a statistics row of their own, after the table's rows. */
static const char *const sub_rows[] = {
    "acl|cat",
    "acl|deluser",
    "acl|dryrun",
    "acl|genpass",
    "acl|getuser",
    "acl|help",
    "acl|list",
    "acl|load",
    "acl|log",
    "acl|save",
    "acl|setuser",
    "acl|users",
    "acl|whoami",
    "client|caching",
    "client|getname",
    "client|getredir",
    "client|help",
    "client|id",
    "client|info",
    "client|kill",
    "client|list",
    "client|no-evict",
    "client|pause",
    "client|unblock",
    "client|unpause",
    "client|no-touch",
    "client|reply",
    "client|setinfo",
    "client|setname",
    "client|tracking",
    "client|trackinginfo",
    "cluster|addslots",
    "cluster|addslotsrange",
    "cluster|bumpepoch",
    "cluster|count-failure-reports",
    "cluster|countkeysinslot",
    "cluster|delslots",
    "cluster|delslotsrange",
    "cluster|failover",
    "cluster|flushslots",
    "cluster|forget",
    "cluster|getkeysinslot",
    "cluster|help",
    "cluster|info",
    "cluster|keyslot",
    "cluster|links",
    "cluster|meet",
    "cluster|myid",
    "cluster|nodes",
    "cluster|replicas",
    "cluster|replicate",
    "cluster|reset",
    "cluster|saveconfig",
    "cluster|set-config-epoch",
    "cluster|setslot",
    "cluster|shards",
    "cluster|slaves",
    "cluster|slots",
    "command|count",
    "command|docs",
    "command|getkeys",
    "command|getkeysandflags",
    "command|help",
    "command|info",
    "command|list",
    "config|get",
    "config|help",
    "config|resetstat",
    "config|rewrite",
    "config|set",
    "function|delete",
    "function|dump",
    "function|flush",
    "function|help",
    "function|kill",
    "function|list",
    "function|load",
    "function|restore",
    "function|stats",
    "latency|doctor",
    "latency|graph",
    "latency|help",
    "latency|histogram",
    "latency|history",
    "latency|latest",
    "latency|reset",
    "memory|doctor",
    "memory|help",
    "memory|malloc-stats",
    "memory|purge",
    "memory|stats",
    "memory|usage",
    "object|encoding",
    "object|freq",
    "object|help",
    "object|idletime",
    "object|refcount",
    "pubsub|channels",
    "pubsub|help",
    "pubsub|numpat",
    "pubsub|numsub",
    "pubsub|shardchannels",
    "pubsub|shardnumsub",
    "script|debug",
    "script|exists",
    "script|flush",
    "script|help",
    "script|kill",
    "script|load",
    "slowlog|get",
    "slowlog|help",
    "slowlog|len",
    "slowlog|reset",
};

_Static_assert(KV_ARRAY_LEN(table) + KV_ARRAY_LEN(sub_rows) <= KVD_STAT_ROWS,
               "KVD_STAT_ROWS is too small");

static uint16_t sub_row(const char *full)
{
    for (size_t i = 0; i < KV_ARRAY_LEN(sub_rows); i++) {
        if (strcmp(sub_rows[i], full) == 0) {
            return (uint16_t)(KV_ARRAY_LEN(table) + i);
        }
    }
    return CMD_ROW_NONE;
}

uint16_t cmd_stat_row(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (KV_UNLIKELY(d->flags & CMD_HIDDEN)) {
        /* An internal row (client|list, object|key, exec|run, ...) counts as the command
         * the client sent, with the same arguments: the one named before its '|'. */
        const char *bar = strchr(d->name, '|');
        KV_ASSERT(bar != NULL);
        d = cmd_find(d->name, (size_t)(bar - d->name));
        KV_ASSERT(d != NULL);
    }
    if (KV_LIKELY(!(d->flags & CMD_SUBCMDS)) || argc < 2) {
        return (uint16_t)cmd_index(d);
    }
    char full[64];
    cmd_full_name(d, argc, argv, full, sizeof full);
    return sub_row(full);
}

bool cmd_stat_row_fast(uint16_t row)
{
    return row < KV_ARRAY_LEN(table) && (table[row].flags & CMD_FAST) != 0;
}

size_t cmd_stat_rows(void)
{
    return KV_ARRAY_LEN(table) + KV_ARRAY_LEN(sub_rows);
}

const char *cmd_stat_name(size_t row)
{
    KV_ASSERT(row < cmd_stat_rows());
    return row < KV_ARRAY_LEN(table) ? table[row].name : sub_rows[row - KV_ARRAY_LEN(table)];
}

bool cmd_sub_arity_ok(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (!(d->flags & CMD_SUBCMDS) || argc < 2) {
        return true;
    }
    const struct cmd_docs *m = cmd_docs_find(d->name);
    const struct cmd_docs *sub = m != NULL ? cmd_docs_find_sub(m, argv[1].ptr, argv[1].len) : NULL;
    if (sub == NULL) {
        return true;
    }
    return sub->arity > 0 ? argc == (size_t)sub->arity : argc >= (size_t)-sub->arity;
}

bool cmd_sub_known(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    return !(d->flags & CMD_SUBCMDS) || argc < 2 || cmd_stat_row(d, argc, argv) != CMD_ROW_NONE;
}

bool cmd_arg_secret(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv, size_t i)
{
    if (d->fn == cmd_auth) {
        return i >= 1;
    }
    if (d->fn == cmd_hello && i >= 3 && i < argc) { /* HELLO 3 AUTH user pass ... */
        return cmd_arg_is(&argv[i - 1], "auth") || (i >= 4 && cmd_arg_is(&argv[i - 2], "auth"));
    }
    if (d->fn == cmd_acl && argc >= 3 && cmd_arg_is(&argv[1], "setuser")) {
        return i >= 2;
    }
    if (d->fn == cmd_config && argc >= 4 && cmd_arg_is(&argv[1], "set") && i >= 3 &&
        (i - 3) % 2 == 0) {
        return cmd_arg_is(&argv[i - 1], "requirepass");
    }
    return false;
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
    return shard_table(x->sh, x->db, h);
}

struct tbl *cmd_tbl_peek(struct cmd_ctx *x, uint64_t h)
{
    return shard_table_peek(x->sh, x->db, h);
}

/* Appends one record of the key's partition, with the partition's next LSN. */
static void log_record(struct shard *sh, uint64_t h, struct walfmt_view *v)
{
    const struct route_part *p = route_lookup(sh->srv->route, h);
    KV_ASSERT(p->thread == sh->id);
    v->part = (uint32_t)(p - sh->srv->route->parts);
    v->lsn = ++sh->part_lsn[p->slot];
    wal_append(sh->wal, v);
}

/*
 * Every change of data goes through the cmd_log_* functions below (they write the
 * change to the WAL when there is one): they are also where a change makes the clients
 * WATCHing the key dirty, and where it is counted as one change (Redis's dirty count,
 * INFO rdb_changes_since_last_save without persistence).
 */
static void changed(struct shard *sh, uint32_t db, const struct resp_arg *key, uint64_t h,
                    uint64_t by)
{
    watch_touch(sh->watch, db, key->ptr, key->len, h);
    track_changed(sh, key->ptr, key->len, by); /* CLIENT TRACKING: by = the client, for NOLOOP */
    STAT_ADD(sh->stats.changes, 1);
}

/* The entry a change left, for its record: as it is (an expiry time already past is
 * logged as such), not counted as a use of the key (a key written once stays unused for
 * eviction) and not expired here (no "expired" event ahead of the change's own). */
static const struct tbl_entry *log_lookup(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    struct tbl *t = cmd_tbl_peek(x, h);
    return t != NULL ? tbl_find(t, key->ptr, key->len, h) : NULL;
}

void cmd_count_changes(struct shard *sh, int64_t delta)
{
    STAT_ADD(sh->stats.changes, (uint64_t)delta); /* modulo 2^64: a negative delta too */
}
void cmd_log_key(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    struct shard *sh = x->sh;
    changed(sh, x->db, key, h, x->caller_id);
    if (sh->wal == NULL) {
        return;
    }
    struct walfmt_view v = {.key = key->ptr, .klen = key->len, .type = WALFMT_DEL, .db = x->db};
    const struct tbl_entry *e = log_lookup(x, key, h);
    if (e != NULL) {
        v.type = WALFMT_PUT;
        v.val = tbl_entry_val(e, &v.vlen);
        v.expire_ms = tbl_entry_expire_ms(e);
    }
    log_record(sh, h, &v);
}

void cmd_log_range(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, size_t off, size_t n)
{
    struct shard *sh = x->sh;
    changed(sh, x->db, key, h, x->caller_id);
    if (sh->wal == NULL) {
        return;
    }
    const struct tbl_entry *e = log_lookup(x, key, h);
    KV_ASSERT(e != NULL);
    size_t len;
    const char *val = tbl_entry_val(e, &len);
    KV_ASSERT(off + n <= len);
    struct walfmt_view v = {.key = key->ptr,
                            .klen = key->len,
                            .db = x->db,
                            .type = WALFMT_PUT,
                            .val = val,
                            .vlen = len,
                            .expire_ms = tbl_entry_expire_ms(e)};
    if (n + CMD_LOG_RANGE_MIN_SAVING < len) { /* much shorter than the whole value */
        v.type = WALFMT_RANGE;
        v.val = val + off;
        v.vlen = n;
        v.range_off = off;
        v.range_len = len;
    }
    log_record(sh, h, &v);
}

void cmd_log_expire(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, int64_t when_ms)
{
    struct shard *sh = x->sh;
    changed(sh, x->db, key, h, x->caller_id);
    if (sh->wal == NULL) {
        return;
    }
    struct walfmt_view v = {.key = key->ptr,
                            .klen = key->len,
                            .db = x->db,
                            .type = WALFMT_EXPIRE,
                            .expire_ms = when_ms};
    log_record(sh, h, &v);
}

void cmd_log_swapdb(struct shard *sh, uint32_t slot, uint32_t a, uint32_t b)
{
    sh->part_swaps[slot]++;
    if (sh->wal == NULL) {
        return;
    }
    struct walfmt_view v = {
        .type = WALFMT_SWAPDB, .key = "", .part = sh->part_id[slot], .db = a, .db2 = b};
    v.lsn = ++sh->part_lsn[slot];
    wal_append(sh->wal, &v);
}

void cmd_log_flush(struct shard *sh, uint32_t slot, uint32_t db)
{
    if (sh->wal == NULL) {
        return;
    }
    struct walfmt_view v = {.type = WALFMT_FLUSH, .key = "", .part = sh->part_id[slot], .db = db};
    v.lsn = ++sh->part_lsn[slot];
    wal_append(sh->wal, &v);
}

void cmd_notify_mod(struct cmd_ctx *x, const struct tbl_mod *m, const char *event,
                    const struct resp_arg *key)
{
    if (m->created) {
        cmd_notify(x, NOTIFY_NEW, "new", key);
    }
    cmd_notify(x, NOTIFY_STRING, event, key);
}

bool cmd_new_key(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    return notify_wants(NOTIFY_NEW) && cmd_lookup_peek(x, key, h) == NULL; /* (no use) */
}

static _Thread_local struct {
    const char *ptr;
    size_t len; /* SIZE_MAX: none */
    uint64_t h;
} key_memo = {NULL, SIZE_MAX, 0};

void cmd_key_hash_memo(const struct resp_arg *key, uint64_t h)
{
    key_memo.ptr = key != NULL ? key->ptr : NULL;
    key_memo.len = key != NULL ? key->len : SIZE_MAX;
    key_memo.h = h;
    KV_DASSERT(key == NULL || h == tbl_hash(key->ptr, key->len));
}

uint64_t cmd_key_hash(const struct resp_arg *key)
{
    if (key->ptr == key_memo.ptr && key->len == key_memo.len) {
        return key_memo.h;
    }
    return tbl_hash(key->ptr, key->len);
}

static const struct tbl_entry *lookup(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h,
                                      bool touch);

static const struct tbl_entry *lookup_read(struct cmd_ctx *x, const struct resp_arg *key,
                                           uint64_t h, bool touch)
{
    const struct tbl_entry *e = lookup(x, key, h, touch);
    if (e != NULL) {
        STAT_ADD(x->sh->stats.keyspace_hits, 1);
    } else {
        STAT_ADD(x->sh->stats.keyspace_misses, 1);
        cmd_notify(x, NOTIFY_KEY_MISS, "keymiss", key);
    }
    return e;
}

const struct tbl_entry *cmd_lookup_read(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    return lookup_read(x, key, h, true);
}

const struct tbl_entry *cmd_lookup_read_notouch(struct cmd_ctx *x, const struct resp_arg *key,
                                                uint64_t h)
{
    return lookup_read(x, key, h, false);
}

const struct tbl_entry *cmd_lookup_peek(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    struct tbl *t = cmd_tbl_peek(x, h);
    return t != NULL ? tbl_peek(t, key->ptr, key->len, h, x->now_ms) : NULL;
}

const struct tbl_entry *cmd_lookup_write(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h)
{
    return lookup(x, key, h, true);
}

static const struct tbl_entry *lookup(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h,
                                      bool touch)
{
    struct tbl *t = cmd_tbl_peek(x, h);
    if (t == NULL) {
        return NULL;
    }
    if (KV_UNLIKELY(server_paused(x->sh->srv, x->now_ms) != SERVER_PAUSE_NONE)) {
        /* Under CLIENT PAUSE an expired key is absent but stays (Redis keeps the data as
         * it is until the pause ends; the first look after it deletes the key). */
        const struct tbl_entry *e = tbl_find(t, key->ptr, key->len, h);
        int64_t exp = e != NULL ? tbl_entry_expire_ms(e) : 0;
        return exp != 0 && exp <= x->now_ms ? NULL : e;
    }
    return touch ? tbl_get(t, key->ptr, key->len, h, x->now_ms)
                 : tbl_peek(t, key->ptr, key->len, h, x->now_ms);
}

bool cmd_parse_i64(const struct resp_arg *a, int64_t *out)
{
    return kv_parse_i64(a->ptr, a->len, out);
}

bool cmd_parse_db(struct cmd_ctx *x, const struct resp_arg *a, const char *msg, uint32_t *db)
{
    int64_t v;
    if (!cmd_parse_i64(a, &v)) {
        if (msg != NULL) {
            reply_error(x->out, "%s", msg);
        } else {
            reply_err_not_int(x->out);
        }
        return false;
    }
    if (v < INT32_MIN || v > INT32_MAX) {
        reply_error(x->out, "%s",
                    msg != NULL ? msg
                                : "ERR value is out of range, value must between -2147483648 "
                                  "and 2147483647");
        return false;
    }
    if (v < 0 || v >= (int64_t)x->sh->ndb) {
        reply_error(x->out, "ERR DB index is out of range");
        return false;
    }
    *db = (uint32_t)v;
    return true;
}

bool cmd_parse_cursor(const struct resp_arg *a, uint64_t *out)
{
    const char *p = a->ptr;
    size_t n = a->len;
    if (n > 0 && isspace((unsigned char)p[0])) {
        return false;
    }
    bool neg = n > 0 && p[0] == '-';
    size_t i = n > 0 && (p[0] == '+' || p[0] == '-') ? 1 : 0;
    uint64_t v = 0;
    if (i < n && !kv_parse_u64(p + i, n - i, &v)) {
        return false; /* not digits, or beyond 64 bits (strtoul's ERANGE) */
    }
    *out = neg ? (uint64_t)0 - v : v; /* "" and "+" read as 0, as strtoul does */
    return true;
}

bool cmd_full_name(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv, char *buf,
                   size_t cap)
{
    size_t n = name_len[cmd_index(d)];
    KV_ASSERT(cap > CMD_NAME_MAX + 1);
    memcpy(buf, d->name, n);
    buf[n] = '\0';
    if (!(d->flags & CMD_SUBCMDS) || argc < 2) {
        return true;
    }
    /* a container: "config|get" when the subcommand is one kvd has, else unknown */
    if (n + 1 + argv[1].len >= cap) {
        return false;
    }
    buf[n] = '|';
    for (size_t i = 0; i < argv[1].len; i++) {
        buf[n + 1 + i] = (char)tolower((unsigned char)argv[1].ptr[i]);
    }
    buf[n + 1 + argv[1].len] = '\0';
    if (sub_row(buf) != CMD_ROW_NONE) {
        return true;
    }
    buf[n] = '\0';
    return false;
}
