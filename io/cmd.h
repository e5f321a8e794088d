/*
 * cmd: the command table and the execution context handlers run in.
 *
 * Every command is one row of a table (cmd.c): name, arity, flags, key positions (as
 * Redis's COMMAND reports them) and how it is executed:
 *
 *   CMD_EXEC_KEY    touches one key (the first): runs on the shard owning that key's
 *                   partition, locally or forwarded there.
 *   CMD_EXEC_MULTI  touches several keys (MGET, MSET, DEL, EXISTS, UNLINK, TOUCH, WATCH): the
 *                   keys are grouped by owning shard, each shard runs the command on
 *                   its group, and the results are merged into one reply in key order.
 *   CMD_EXEC_SAME   several keys that must live on one shard thread (RENAME, MSETNX,
 *                   ...): refused with -CROSSSLOT otherwise, then run like KEY.
 *   CMD_EXEC_ALL    the whole keyspace (DBSIZE, KEYS, SCAN, FLUSHALL, RANDOMKEY): runs on
 *                   every shard, results merged.
 *   CMD_EXEC_CONN   connection or server state (PING, AUTH, CLIENT, INFO, CONFIG, ...):
 *                   runs on the connection's shard.
 *
 * Data handlers (KEY, MULTI, SAME) are pure functions of (tables, arguments, time) that
 * write one reply: they never block and never touch another shard's memory. Argument
 * views are valid only during the call.
 */
#ifndef KVD_CMD_H
#define KVD_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mimalloc.h>

#include "notify.h"
#include "reply.h"
#include "resp_parse.h"

struct conn;
struct resp_arg;
struct resp_out;
struct shard;
struct tbl;
struct tbl_entry;

enum cmd_exec {
    CMD_EXEC_KEY = 1,
    CMD_EXEC_MULTI,
    CMD_EXEC_SAME,
    CMD_EXEC_ALL, /* runs on every shard over all its partitions, results merged */
    CMD_EXEC_CONN,
    CMD_EXEC_SCRIPT, /* EVAL & co: on the shard of its declared keys, or as a cross-shard
                      * transaction (conn.c) */
};

enum cmd_flag {
    CMD_WRITE = 1u << 0,    /* may modify data */
    CMD_READONLY = 1u << 1, /* reads data */
    CMD_FAST = 1u << 2,     /* O(1) or O(log n) */
    CMD_NOAUTH = 1u << 3,   /* allowed before AUTH (AUTH, HELLO, QUIT) */
    CMD_ADMIN = 1u << 4,
    CMD_LOADING = 1u << 5,
    CMD_STALE = 1u << 6,
    CMD_NOSCRIPT = 1u << 7,
    CMD_HIDDEN = 1u << 8,      /* internal row: not found by name, not listed by COMMAND */
    CMD_SUBCMDS = 1u << 9,     /* a container: argv[1] names a subcommand (set by cmd_init) */
    CMD_NOSLOWLOG = 1u << 10,  /* never in the slowlog (EXEC: the commands it ran are) */
    CMD_NAMESUB = 1u << 11,    /* CLIENT LIST's cmd= names argv[1] too (set by cmd_init) */
    CMD_DENYOOM = 1u << 12,    /* may add memory: refused over maxmemory (set by cmd_init from
                                * the "denyoom" flag name) */
    CMD_ALLOW_BUSY = 1u << 13, /* runs while a script is past busy-reply-threshold (set by
                                * cmd_init from Redis's "allow_busy" flag) */
    CMD_SPECIAL = 1u << 14,    /* dispatch handles it apart (MULTI, EXEC, DISCARD, WATCH,
                                * UNWATCH; CLIENT, OBJECT, MEMORY, DEBUG may change rows):
                                * set by cmd_init, so that other commands skip those checks */
    CMD_DISABLED = 1u << 15,   /* renamed to "" by rename-command: not found by name, not
                                * listed by COMMAND (ACL rules still name it) */
};

/* How a MULTI command's per-shard results merge. */
enum cmd_merge {
    CMD_MERGE_NONE = 0,
    CMD_MERGE_SUM,     /* integer replies add up (DEL, EXISTS, UNLINK, TOUCH) */
    CMD_MERGE_OK,      /* every part replies +OK (MSET) */
    CMD_MERGE_ARRAY,   /* one element per key, in key order (MGET) */
    CMD_MERGE_CONCAT,  /* arrays concatenated (KEYS) */
    CMD_MERGE_RANDOM,  /* a key of one part, picked by the parts' key counts (RANDOMKEY) */
    CMD_MERGE_BULKCAT, /* bulk strings concatenated (CLIENT LIST) */
    CMD_MERGE_KILL,    /* +OK if the sum is positive, else "No such client" */
    CMD_MERGE_RAW,     /* the parts' bytes as they are (a cross-shard EXEC: its array, and
                        * the empty replies of the shards whose WAL it waits for) */
    CMD_MERGE_DIGEST,  /* DEBUG DIGEST: the shards' per-database sums, mixed as Redis's */
    CMD_MERGE_XOR,     /* DEBUG DIGEST-VALUE: the shards' digests of each key, xored */
    CMD_MERGE_SCAN,    /* SCAN: the keys of the partitions every shard covered, in map
                        * order, and the cursor where the first shard stopped */
};

struct cmd_ctx;
typedef void cmd_fn(struct cmd_ctx *x);

struct cmd_desc {
    const char *name; /* lower case */
    int arity;        /* > 0: exactly; < 0: at least -arity (argv[0] counts) */
    uint32_t flags;
    int first_key; /* 0: no keys */
    int last_key;  /* -1: the last argument */
    int key_step;
    enum cmd_exec exec;
    enum cmd_merge merge;
    cmd_fn *fn;
    const char *flag_names; /* for COMMAND INFO, e.g. "write denyoom" */
    /* CMD_EXEC_ALL: checks the arguments on the client's shard before the fan-out,
     * replying the error and returning false if they are bad (NULL: no check). */
    bool (*check)(struct cmd_ctx *x);
};

/* The context of one execution. */
struct cmd_ctx {
    size_t argc;
    const struct resp_arg *argv;
    const struct cmd_desc *desc;
    struct shard *sh;      /* the executing shard */
    struct conn *conn;     /* CMD_EXEC_CONN only; NULL for data handlers */
    struct resp_out *out;  /* where the reply goes */
    int64_t now_ms;        /* the wall clock for expiry, read once per batch */
    bool rejected;         /* set by a handler that refused the call as Redis does before
                            * execution (a subcommand's arity): counted as rejected */
    uint64_t inner_errors; /* EXEC, scripts: error replies of the commands they ran (not
                            * their own) */
    int64_t sum;           /* MULTI with CMD_MERGE_SUM: the part's integer result */
    uint64_t caller_id;    /* id of the client that sent the command (on any shard) */
    uint32_t user;         /* that client's ACL user (users.h handle): scripts check their
                            * calls against it */
    uint32_t db;           /* the client's selected database */
    uint32_t track;        /* CLIENT TRACKING: 1 + the client's shard when the keys its
                            * reads touch are remembered (track.h), 0 if not */
};

/* Sorts the table; call once at start-up before any lookup. */
void cmd_init(void);

/* Whether command d (argv: its arguments, for a container's subcommand) runs while a
 * script is past busy-reply-threshold, as in Redis (SCRIPT KILL, SHUTDOWN, MULTI, ...). */
bool cmd_allows_busy(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv);

/* The row for the name a client calls a command by (case-insensitive; rename-command's
 * new name where the command was renamed), or NULL. */
const struct cmd_desc *cmd_lookup(const char *name, size_t len);

/* The row for a command's own name whatever rename-command did (ACL rules, internal
 * uses), case-insensitive; NULL for internal rows and unknown names. */
const struct cmd_desc *cmd_find(const char *name, size_t len);

/* The longest name rename-command may give a command. */
#define CMD_RENAME_MAX 128

/*
 * rename-command FROM TO, as Redis's config directive (at start-up, after cmd_init and
 * before any other thread runs): the command FROM (found by the name it has now) is
 * found as TO from then on and no longer as FROM; TO "" disables it. COMMAND, INFO
 * commandstats and CLIENT LIST keep showing its own name, as Redis does. Returns 0, or
 * KV_EINVAL with Redis's reason in err ("No such command in rename-command", "Target
 * command name already exists").
 */
int cmd_rename_command(const char *from, const char *to, char *err, size_t errlen);

/* Whether rename-command renamed or disabled some command. */
bool cmd_renamed(void);

/* Whether COMMAND lists the row (not internal, not disabled). */
static inline bool cmd_listed(const struct cmd_desc *d)
{
    return (d->flags & (CMD_HIDDEN | CMD_DISABLED)) == 0;
}

/* An internal (CMD_HIDDEN) row by its exact name, e.g. "client|list"; never NULL. */
const struct cmd_desc *cmd_lookup_hidden(const char *name);

/* The row's index in the table, below KVD_CMDS_MAX (per-command statistics). */
size_t cmd_index(const struct cmd_desc *d);

/*
 * Per-command statistics rows (INFO commandstats): one per visible command, and one per
 * subcommand of the containers (CLIENT, COMMAND, CONFIG, SLOWLOG) as Redis 7 has them
 * ("config|get"). cmd_stat_row() is the row a call counts in, CMD_ROW_NONE for an unknown
 * subcommand (Redis rejects it before it is a command); rows are below cmd_stat_rows(),
 * itself at most KVD_STAT_ROWS, and cmd_stat_name() names them.
 */
#define CMD_ROW_NONE ((uint16_t)0xffff)
uint16_t cmd_stat_row(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv);
size_t cmd_stat_rows(void);
bool cmd_stat_row_fast(uint16_t row); /* the row's command is flagged fast (subcommands: no) */
const char *cmd_stat_name(size_t row);

/* Every row, for COMMAND. */
const struct cmd_desc *cmd_table(size_t *count);

/* True if argc satisfies the command's arity. */
bool cmd_arity_ok(const struct cmd_desc *d, size_t argc);

/* For a container (CONFIG, CLIENT, ...) whose argv[1] is a subcommand kvd has: whether
 * argc satisfies that subcommand's arity (Redis 7's table); true otherwise. */
bool cmd_sub_arity_ok(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv);

/* False for a container (CONFIG, CLIENT, ...) whose argv[1] names no subcommand kvd
 * has (its statistics rows: Redis 7.0's, and CLIENT SETINFO / NO-TOUCH of 7.2): Redis's
 * lookup finds no command then ("unknown subcommand", before the arity, the password
 * and the ACL; "Unknown Redis command" in scripts). */
bool cmd_sub_known(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv);

/* The hash table holding key hash h in the selected database (x->db), on the executing
 * shard. Handlers that touch another database (MOVE, COPY ... DB) set x->db around the
 * calls that concern it, cmd_log_* included. */
struct tbl *cmd_tbl(struct cmd_ctx *x, uint64_t h);

/* The same for reading: NULL while the database has no table there (no key; a read
 * makes no table). cmd_lookup_read / cmd_lookup_write read through it. */
struct tbl *cmd_tbl_peek(struct cmd_ctx *x, uint64_t h);

/* The key hash of an argument (tbl_hash: Redis's {tag} rule). */
uint64_t cmd_key_hash(const struct resp_arg *key);

/* The dispatcher hashed the running command's key already (to route it): cmd_key_hash of
 * that same argument returns h without hashing again. NULL clears it, which the
 * dispatcher does as soon as the command returned (this thread only). It relies on an
 * argument's bytes never changing while its command runs (handlers never write argv),
 * and a command dispatched inside another clears it (the outer one then hashes). */
void cmd_key_hash_memo(const struct resp_arg *key, uint64_t h);

/* Looks a key up for reading (counts a keyspace hit or miss, as Redis's
 * lookupKeyRead) or for writing (counts nothing). NULL if absent or expired. */
const struct tbl_entry *cmd_lookup_read(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h);
const struct tbl_entry *cmd_lookup_write(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h);
/* A look that is no use of the key: no statistics, no keymiss event, no referenced bit
 * (MEMORY USAGE, DEBUG OBJECT, as Redis looks straight into its dictionary). */
/* cmd_lookup_read without it being a use of the key (its access clock stays): TTL, TYPE,
 * EXISTS, as Redis's LOOKUP_NOTOUCH. */
const struct tbl_entry *cmd_lookup_read_notouch(struct cmd_ctx *x, const struct resp_arg *key,
                                                uint64_t h);
const struct tbl_entry *cmd_lookup_peek(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h);

/*
 * Write-ahead logging of what a write command changed (physical records: the key's
 * resulting value and expiry, or its absence). Handlers call these after every change
 * they make, in the order they make them. Each also makes the key's WATCHers dirty and
 * counts one change, with or without a WAL.
 */
void cmd_log_key(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h);

/* Keyspace notification of `event` (class cls) for key in the command's database
 * (notify.h): one relaxed load unless notify-keyspace-events enables the class. */
#define cmd_notify(x, cls, event, key)                                                             \
    notify_key((x)->sh, (cls), (event), (x)->db, (key)->ptr, (key)->len)

/* "new" if the tbl_modify that gave m made the key, then `event` of class string. */
struct tbl_mod;
void cmd_notify_mod(struct cmd_ctx *x, const struct tbl_mod *m, const char *event,
                    const struct resp_arg *key);

/* Whether key is absent, asked before a write that may make it so that the "new" event
 * can follow; false without a lookup when "new" events are off. */
bool cmd_new_key(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h);
void cmd_log_expire(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, int64_t when_ms);
/* After a write of bytes [off, off + n) of an existing key's value (APPEND, SETRANGE):
 * logs those bytes alone (RANGE) when the value is much longer, else the whole value. */
void cmd_log_range(struct cmd_ctx *x, const struct resp_arg *key, uint64_t h, size_t off, size_t n);
void cmd_log_flush(struct shard *sh, uint32_t slot, uint32_t db);
void cmd_log_swapdb(struct shard *sh, uint32_t slot, uint32_t a, uint32_t b);
/* Corrects the change count where Redis counts otherwise than one per cmd_log_* call
 * (RENAME: two records, one change; BITFIELD: one record, a change per operation;
 * FLUSHALL: a change per key removed). */
void cmd_count_changes(struct shard *sh, int64_t delta);

/* Parses a database index as Redis does (an int, then within `databases`), replying
 * the error and returning false if it is not one: `msg` (e.g. "ERR invalid first DB
 * index") replaces the texts of a non-integer or out-of-int value when not NULL. */
bool cmd_parse_db(struct cmd_ctx *x, const struct resp_arg *a, const char *msg, uint32_t *db);

/* Parses a whole argument as a signed 64-bit decimal, Redis's string2ll rules. */
bool cmd_parse_i64(const struct resp_arg *a, int64_t *out);

/* Case-insensitive (ASCII) comparison of an argument with a NUL-terminated lower-case
 * word; inline, so that a literal word's length is known at compile time. */
static inline bool cmd_arg_is(const struct resp_arg *a, const char *word)
{
    size_t n = __builtin_strlen(word);
    if (a->len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a->ptr[i];
        if ((unsigned char)((unsigned)(c - 'A') < 26u ? c + ('a' - 'A') : c) !=
            (unsigned char)word[i]) {
            return false;
        }
    }
    return true;
}

/* Whether argument i of the command is a secret that MONITOR and SLOWLOG show as
 * "(redacted)", as Redis 7.0: AUTH's arguments, HELLO's after AUTH, ACL SETUSER's user and
 * rules, CONFIG SET requirepass's value. */
bool cmd_arg_secret(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv, size_t i);

/* Calls fn for each key argument of a command (its index in argv, and its access flags
 * as Redis's key specifications give them, e.g. "RW access update"), as COMMAND GETKEYS
 * finds them; where the specs cannot follow the arguments, every key position with
 * read-write flags. */
typedef void cmd_key_fn(void *arg, size_t index, const char *flags);
void cmd_keys_each(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv,
                   cmd_key_fn *fn, void *arg);

/* A client's CLIENT LIST line, newline included (cmd_server.c); snprintf's result. */
struct conn_info;
int cmd_client_line(const struct conn_info *ci, char *buf, size_t cap);

/* Data handlers (cmd_string.c, cmd_keys.c). */
cmd_fn cmd_get, cmd_set, cmd_setnx, cmd_setex, cmd_psetex, cmd_getset, cmd_getdel, cmd_getex,
    cmd_mget, cmd_mset, cmd_msetnx, cmd_incr, cmd_decr, cmd_incrby, cmd_decrby, cmd_incrbyfloat,
    cmd_append, cmd_strlen, cmd_getrange, cmd_setrange, cmd_del, cmd_exists, cmd_expire,
    cmd_pexpire, cmd_expireat, cmd_pexpireat, cmd_ttl, cmd_pttl, cmd_persist, cmd_type, cmd_rename,
    cmd_renamenx, cmd_touch, cmd_expiretime, cmd_pexpiretime, cmd_substr, cmd_lcs, cmd_object,
    cmd_memory, cmd_dump, cmd_restore, cmd_role, cmd_setbit, cmd_getbit, cmd_bitcount, cmd_bitpos,
    cmd_bitop, cmd_bitfield, cmd_bitfield_ro, cmd_copy, cmd_move, cmd_debug_object, cmd_rename_get,
    cmd_rename_put, cmd_rename_del, cmd_multi, cmd_exec, cmd_discard, cmd_watch, cmd_unwatch,
    conn_txn_run, conn_txn_sync, cmd_eval, cmd_script, cmd_fcall, cmd_function, cmd_subscribe,
    cmd_unsubscribe, cmd_psubscribe, cmd_punsubscribe, cmd_publish, cmd_pubsub, cmd_ssubscribe,
    cmd_sunsubscribe, cmd_spublish, cmd_lolwut, cmd_cluster, cmd_pfadd, cmd_pfcount, cmd_pfmerge,
    cmd_pfdebug, cmd_pfselftest;

/* LCS's options: false after replying their error. Its reply for the values of its two
 * keys (options checked already). */
bool cmd_lcs_check(struct cmd_ctx *x);
void cmd_lcs_values(struct cmd_ctx *x, const char *a, size_t alen, const char *b, size_t blen);

/* BITOP's operation (0 AND, 1 OR, 2 XOR, 3 NOT), or -1 after replying its error; and
 * its result over the sources' values (NULL: empty, or no memory when *len > 0). */
struct cmd_bitop_src {
    const unsigned char *p;
    size_t len;
};
int cmd_bitop_kind(struct cmd_ctx *x);

unsigned char *cmd_bitop_apply(mi_heap_t *heap, int kind, const struct cmd_bitop_src *src,
                               size_t nsrc, size_t *len);

/* PFCOUNT's and PFMERGE's merge of the keys' values (src[i].p NULL: no key) into regs
 * (one byte per register, HLL_REGISTERS), *dense set if one was dense; false after
 * replying the error (not a HyperLogLog, corrupt). cmd_hll.c. */
bool cmd_pf_gather(struct resp_out *out, const struct cmd_bitop_src *src, size_t n, uint8_t *regs,
                   bool *dense);
/* PFMERGE's new destination value: cur (NULL: no key) with regs set into it, dense if
 * `dense`; the shard heap's (mi_free), or NULL after replying the error. */
uint8_t *cmd_pfmerge_result(mi_heap_t *heap, struct resp_out *out, const uint8_t *cur, size_t len,
                            const uint8_t *regs, bool dense, size_t *res_len);

/* OBJECT's subcommands that take a key (they run on the key's shard). */
bool cmd_object_keyed(const struct resp_arg *sub);

/* Connection and server handlers (cmd_server.c). */
cmd_fn cmd_ping, cmd_echo, cmd_quit, cmd_select, cmd_auth, cmd_hello, cmd_client, cmd_command,
    cmd_info, cmd_config, cmd_time, cmd_shutdown, cmd_slowlog, cmd_debug, cmd_lastsave, cmd_reset,
    cmd_save, cmd_bgsave, cmd_bgrewriteaof, cmd_wait, cmd_acl;

/* Whole-keyspace parts (cmd_server.c): each runs over the executing shard's tables. */
cmd_fn cmd_dbsize, cmd_keys, cmd_randomkey, cmd_flushall, cmd_flushdb, cmd_swapdb, cmd_scan,
    cmd_client_list_part, cmd_client_kill_part;
bool cmd_flushall_check(struct cmd_ctx *x);
bool cmd_scan_check(struct cmd_ctx *x);

/* DEBUG DIGEST / DIGEST-VALUE: the parts (cmd_server.c) and their merge (the dataset's
 * digest, or each key's). */
void cmd_debug_digest(struct cmd_ctx *x);
void cmd_debug_digest_value(struct cmd_ctx *x);
void cmd_merge_digest(struct resp_out *o, bool dataset, const char *const *part, const size_t *len,
                      size_t nparts);
bool cmd_swapdb_check(struct cmd_ctx *x);
bool cmd_client_list_check(struct cmd_ctx *x);
bool cmd_client_kill_check(struct cmd_ctx *x);

/* The per-command duration histogram of statistics row `row`, summed over the shards
 * since the last CONFIG RESETSTAT (latency.h buckets); returns how many it holds. */
struct server;
uint64_t cmd_stats_hist(struct server *srv, size_t row, uint64_t *out);

/* INFO instantaneous_ops_per_sec & co: shard 0's timer samples the totals (every 100 ms
 * at most). */
void cmd_info_sample(struct server *srv, int64_t now_ms);

/* SCAN's cursor, parsed as Redis does (strtoul: optional sign, wraps negatives, rejects
 * leading space, trailing bytes and overflow). False if invalid. */
bool cmd_parse_cursor(const struct resp_arg *a, uint64_t *out);

/* The subcommand-qualified name a client last ran, e.g. "client|info" (CLIENT LIST). */
/* Errors of subcommand containers (CLIENT, CONFIG, ...), Redis's texts: an unknown
 * subcommand, and the wrong number of arguments for a known one ('client|id'). */
void cmd_reply_unknown_subcommand(struct cmd_ctx *x);
void cmd_reply_sub_arity(struct cmd_ctx *x);

/* The command's name as Redis names it ("get", "config|get") into buf (cap > 33); false,
 * with the container's name in buf, for a subcommand kvd does not have. */
bool cmd_full_name(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv, char *buf,
                   size_t cap);

/* Whether command d is one Redis flags may_replicate besides its writes: PUBLISH,
 * SPUBLISH and PFCOUNT, which may store its estimate in the value (held by CLIENT PAUSE
 * WRITE, refused in read-only scripts). */
static inline bool cmd_may_replicate(const struct cmd_desc *d)
{
    return d->fn == cmd_publish || d->fn == cmd_spublish || d->fn == cmd_pfcount;
}

#endif
