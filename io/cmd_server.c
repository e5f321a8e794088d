/*
 * cmd_server: connection and server commands (PING, AUTH, HELLO, CLIENT, INFO,
 * CONFIG, SLOWLOG, ...; COMMAND is in cmd_command.c) and the whole-keyspace parts (DBSIZE, KEYS,
 * SCAN, RANDOMKEY, FLUSHALL), with Redis 7's replies and error texts.
 *
 * Connection commands run on the connection's shard with x->conn set. Whole-keyspace
 * parts run on every shard (or, for SCAN, on the shard owning the cursor's partition)
 * over that shard's own tables, with x->conn NULL. INFO reads other shards' counters
 * only through their relaxed atomics (server.h).
 */
#include "aof.h"
#include "cmd.h"
#include "fdlimit.h"

#include "conn.h"
#include "devcache.h"
#include "evict.h"
#include "kv_assert.h"
#include "latency.h"
#include "kv_clock.h"
#include "kv_buf.h"
#include "kv_config.h"
#include "kv_file.h"
#include "kv_glob.h"
#include "kv_text.h"
#include "kv_log.h"
#include "kv_sha1.h"
#include "kvd_settings.h"
#include "obuf.h"
#include "pubsub.h"
#include "resp_out.h"
#include "resp_parse.h"
#include "route.h"
#include "func.h"
#include "script.h"
#include "server.h"
#include "shard.h"
#include "slowlog.h"
#include "snap.h"
#include "monitor.h"
#include "tbl.h"
#include "track.h"
#include "wal.h"
#include "watch.h"
#include "users.h"

#include <ctype.h>
#include <errno.h>
#include <mimalloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#define INFO_BYTES_MAX     (64 * 1024) /* INFO's text at most */
#define SCAN_COUNT_DEFAULT 10

static void stats_reset(struct server *srv);

static void upper(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < cap; i++) {
        out[i] = (char)toupper((unsigned char)in[i]);
    }
    out[i] = '\0';
}

void cmd_reply_unknown_subcommand(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    char name[32];
    upper(x->desc->name, name, sizeof name);
    reply_error(x->out, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                (int)(sub->len > 128 ? 128 : sub->len), sub->ptr, name);
}

/* "wrong number of arguments for 'client|id' command" for a known subcommand. */
void cmd_reply_sub_arity(struct cmd_ctx *x)
{
    x->rejected = true;
    char full[64];
    cmd_full_name(x->desc, x->argc, x->argv, full, sizeof full);
    reply_err_arity(x->out, full);
}

void cmd_ping(struct cmd_ctx *x)
{
    struct pubsub_conn **ps = x->conn != NULL ? conn_pubsub(x->conn) : NULL;
    if (x->argc > 2) {
        reply_err_arity(x->out, "ping");
    } else if (ps != NULL && pubsub_subscribed(*ps) &&
               conn_resp(x->conn) == 2) { /* subscribed (RESP2): ["pong", arg or ""] */
        reply_array(x->out, 2);
        reply_bulk_str(x->out, "pong");
        reply_bulk(x->out, x->argc == 2 ? x->argv[1].ptr : "", x->argc == 2 ? x->argv[1].len : 0);
    } else if (x->argc == 2) {
        reply_bulk(x->out, x->argv[1].ptr, x->argv[1].len);
    } else {
        reply_simple(x->out, "PONG");
    }
}

void cmd_echo(struct cmd_ctx *x)
{
    reply_bulk(x->out, x->argv[1].ptr, x->argv[1].len);
}

void cmd_quit(struct cmd_ctx *x)
{
    reply_ok(x->out);
    conn_close_after_reply(x->conn);
}

/* SELECT n: the connection's database from now on (also inside a transaction, where
 * x->conn is NULL when the transaction runs on another shard: the client's shard then
 * took the database from the queued SELECT, see txn_queue). */
void cmd_select(struct cmd_ctx *x)
{
    uint32_t db;
    if (!cmd_parse_db(x, &x->argv[1], NULL, &db)) {
        return;
    }
    x->db = db;
    if (x->conn != NULL) {
        conn_select(x->conn, db);
    }
    reply_ok(x->out);
}

void cmd_time(struct cmd_ctx *x)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    reply_array(x->out, 2);
    reply_bulk_i64(x->out, (int64_t)ts.tv_sec);
    reply_bulk_i64(x->out, (int64_t)(ts.tv_nsec / 1000));
}

/* LOLWUT [VERSION v [args]]: Redis's "Redis ver. <version>" line. Redis draws pictures
 * for versions 5 and 6 (kvd does not: the line only); their arguments are integers. */
void cmd_lolwut(struct cmd_ctx *x)
{
    /* Redis reads the version into an unsigned int, then 3 numbers for version 5 and 2
     * for version 6 (the rest ignored) */
    uint32_t v = 0;
    bool versioned = x->argc >= 3 && cmd_arg_is(&x->argv[1], "version");
    for (size_t i = 2; versioned && i < x->argc && i < 3 + (v == 5 ? 3u : v == 6 ? 2u : 0u); i++) {
        int64_t n;
        if (!cmd_parse_i64(&x->argv[i], &n)) {
            reply_err_not_int(x->out);
            return;
        }
        v = i == 2 ? (uint32_t)n : v;
    }
    static const char line[] = "Redis ver. " KVD_REDIS_VERSION "\n";
    reply_verbatim(x->out, line, sizeof line - 1);
}

/* ROLE: a master without replicas, at replication offset 0 (kvd replicates nothing yet),
 * as Redis answers it. */
void cmd_role(struct cmd_ctx *x)
{
    reply_array(x->out, 3);
    reply_bulk_str(x->out, "master");
    reply_int(x->out, 0);
    reply_array(x->out, 0);
}

/* CLUSTER (every subcommand), READONLY, READWRITE, ASKING: the node is not in a Redis
 * Cluster (cluster-enabled no), so each answers as Redis's does then. The generic checks
 * of a container (its subcommand known, its arity) come first, as in Redis. */
void cmd_cluster(struct cmd_ctx *x)
{
    reply_error(x->out, "ERR This instance has cluster support disabled");
}

/* The end of the last snapshot round every shard has completed (appendonly no: of the
 * last successful dump) in ms, or the start. */
static int64_t last_save_ms(const struct server *srv)
{
    if (!srv->persist) {
        return atomic_load(&srv->dump.last_ok_ms);
    }
    int64_t t = INT64_MAX;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        int64_t s = STAT_GET(snap_stats(srv->shards[i].snap)->last_ok_ms);
        t = s < t ? s : t;
    }
    int64_t dumped = atomic_load(&srv->dump.last_ok_ms); /* (the start, or the WAL's base) */
    return t == INT64_MAX || t < dumped ? dumped : t;
}

static bool any_snapshot_running(const struct server *srv)
{
    if (!srv->persist) {
        return dump_in_progress(srv);
    }
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        if (STAT_GET(snap_stats(srv->shards[i].snap)->running)) {
            return true;
        }
    }
    return false;
}

void cmd_lastsave(struct cmd_ctx *x)
{
    reply_int(x->out, last_save_ms(x->sh->srv) / 1000);
}

/* SAVE: every shard snapshots its partitions (in its loop, serving requests meanwhile);
 * the reply comes when all are done. With appendonly no, a dump (dump.h) of this
 * instant, as Redis's SAVE but without blocking the other clients. */
void cmd_save(struct cmd_ctx *x)
{
    struct server *srv = x->sh->srv;
    uint64_t target;
    if (!srv->persist) {
        target = dump_request(x->sh, true); /* after the running one, if any */
    } else {
        target = atomic_fetch_add(&srv->save_req, 1) + 1;
    }
    if (!conn_save_wait(x->conn, target, false)) {
        reply_error(x->out, "OOM command not allowed when used memory > 'maxmemory'.");
    }
}

/* BGREWRITEAOF: the WAL is compacted by a snapshot round (which deletes the segments it
 * covers), so it starts one, as BGSAVE SCHEDULE does. */
void cmd_bgrewriteaof(struct cmd_ctx *x)
{
    struct server *srv = x->sh->srv;
    bool running;
    if (!srv->persist) { /* Redis writes an AOF of the data then: here a dump */
        running = dump_bg_in_progress(srv);
        dump_request_bg(x->sh);
    } else {
        running = any_snapshot_running(srv);
        atomic_fetch_add(&srv->save_req, 1);
    }
    reply_simple(x->out, running ? "Background append only file rewriting scheduled"
                                 : "Background append only file rewriting started");
}

void cmd_bgsave(struct cmd_ctx *x)
{
    struct server *srv = x->sh->srv;
    bool schedule = x->argc == 2 && cmd_arg_is(&x->argv[1], "schedule");
    if (x->argc > 2 || (x->argc == 2 && !schedule)) {
        reply_err_syntax(x->out);
        return;
    }
    bool running = srv->persist ? any_snapshot_running(srv) : dump_bg_in_progress(srv);
    if (running && !schedule) {
        reply_error(x->out, "ERR Background save already in progress");
        return;
    }
    if (!srv->persist) {
        dump_request_bg(x->sh); /* after the running one, if any */
    } else {
        atomic_fetch_add(&srv->save_req, 1);
    }
    reply_simple(x->out, running ? "Background saving scheduled" : "Background saving started");
}

void cmd_wait(struct cmd_ctx *x)
{
    int64_t n, timeout;
    if (!cmd_parse_i64(&x->argv[1], &n) || !cmd_parse_i64(&x->argv[2], &timeout)) {
        reply_err_not_int(x->out);
        return;
    }
    if (timeout < 0) {
        reply_error(x->out, "ERR timeout is negative");
        return;
    }
    reply_int(x->out, 0); /* no replicas yet: none acknowledged */
}

void cmd_shutdown(struct cmd_ctx *x)
{
    bool nosave = false, save = false, abort_req = false, other = false, force = false;
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (cmd_arg_is(a, "nosave")) {
            nosave = true;
        } else if (cmd_arg_is(a, "save")) {
            save = true;
        } else if (cmd_arg_is(a, "abort")) {
            abort_req = true;
        } else if (cmd_arg_is(a, "now") || cmd_arg_is(a, "force")) {
            force |= cmd_arg_is(a, "force");
            other = true;
        } else {
            reply_err_syntax(x->out);
            return;
        }
    }
    if ((abort_req && (nosave || save || other)) || (nosave && save)) { /* Redis's illegal combos */
        reply_err_syntax(x->out);
        return;
    }
    if (abort_req) {
        reply_error(x->out, "ERR No shutdown in progress.");
        return;
    }
    const char *busy = script_busy_text(x->sh->srv);
    if (busy != NULL && !nosave) { /* as Redis: a script past its threshold needs NOSAVE */
        reply_error(x->out, "%s", busy);
        return;
    }
    kv_log_notice("SHUTDOWN requested by client id=%llu", (unsigned long long)conn_id(x->conn));
    if (aof_base_pending(x->sh->srv)) { /* as Redis: a WAL switched on has no base yet */
        if (!force) {
            kv_log_warning("Writing initial AOF, can't exit.");
            reply_error(x->out, "ERR Errors trying to SHUTDOWN. Check logs.");
            return;
        }
        kv_log_warning("Writing initial AOF. Exit anyway.");
    }
    if (!x->sh->srv->persist && !nosave && (save || dump_points_any())) {
        /* as Redis: a dump first; its end stops the server (or replies the failure) */
        if (!conn_save_wait(x->conn, dump_request(x->sh, true), true)) {
            reply_error(x->out, "ERR Errors trying to SHUTDOWN. Check logs.");
        }
        return;
    }
    atomic_store(&x->sh->srv->stopping, 1);
    conn_close_after_reply(x->conn); /* like Redis: no reply, the connection closes */
}

/* ---- AUTH and HELLO --------------------------------------------------------------- */

/* Checks [username] password: the connection is the user's if they match; else
 * -WRONGPASS and an ACL LOG entry, as Redis's ACLAuthenticateUser. */
static bool check_auth(struct cmd_ctx *x, const struct resp_arg *user, const struct resp_arg *pass)
{
    if (user == NULL && users_default_nopass()) {
        reply_error(x->out, "ERR AUTH <password> called without any password configured "
                            "for the default user. Are you sure your configuration is "
                            "correct?");
        return false;
    }
    const char *name = user != NULL ? user->ptr : "default";
    size_t nlen = user != NULL ? user->len : 7;
    uint32_t handle;
    if (!users_auth(name, nlen, pass->ptr, pass->len, &handle)) {
        struct conn_info ci;
        char info[1024];
        conn_info(x->conn, x->now_ms, &ci);
        int n = cmd_client_line(&ci, info, sizeof info);
        if (n > 0 && (size_t)n < sizeof info) {
            info[n - 1] = '\0'; /* without the newline */
        }
        /* (the command's name as the client wrote it; inside EXEC, context "multi", as
         * Redis) */
        users_log(USERS_DENIED_AUTH, ci.multi >= 0 ? USERS_CTX_MULTI : USERS_CTX_TOPLEVEL,
                  x->argv[0].ptr, x->argv[0].len, name, nlen, info);
        reply_error(x->out, "WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    }
    conn_set_user(x->conn, handle);
    conn_set_authed(x->conn, true);
    return true;
}

void cmd_auth(struct cmd_ctx *x)
{
    if (x->argc > 3) {
        reply_err_syntax(x->out);
        return;
    }
    const struct resp_arg *user = x->argc == 3 ? &x->argv[1] : NULL;
    if (check_auth(x, user, &x->argv[x->argc - 1])) {
        reply_ok(x->out);
    }
}

static bool valid_client_name(const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] < '!' || a->ptr[i] > '~') {
            return false;
        }
    }
    return true;
}

void cmd_hello(struct cmd_ctx *x)
{
    int64_t ver = conn_resp(x->conn);
    size_t i = 1;
    if (x->argc >= 2) {
        if (!cmd_parse_i64(&x->argv[1], &ver)) {
            reply_error(x->out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        i = 2;
        if (ver < 2 || ver > 3) {
            reply_error(x->out, "NOPROTO unsupported protocol version");
            return;
        }
    }
    const struct resp_arg *user = NULL, *pass = NULL, *name = NULL;
    for (; i < x->argc; i++) {
        size_t left = x->argc - i - 1;
        if (cmd_arg_is(&x->argv[i], "auth") && left >= 2) {
            user = &x->argv[i + 1];
            pass = &x->argv[i + 2];
            i += 2;
        } else if (cmd_arg_is(&x->argv[i], "setname") && left >= 1) {
            name = &x->argv[i + 1];
            i += 1;
        } else {
            reply_error(x->out, "ERR Syntax error in HELLO option '%.*s'",
                        (int)(x->argv[i].len > 128 ? 128 : x->argv[i].len), x->argv[i].ptr);
            return;
        }
    }
    if (pass != NULL && !check_auth(x, user, pass)) {
        return;
    }
    if (!conn_authed(x->conn)) {
        reply_error(x->out, "NOAUTH HELLO must be called with the client already "
                            "authenticated, otherwise the HELLO AUTH <user> <pass> option can "
                            "be used to authenticate the client and select the RESP protocol "
                            "version at the same time");
        return;
    }
    if (name != NULL) {
        if (!valid_client_name(name)) {
            reply_error(x->out, "ERR Client names cannot contain spaces, newlines or special "
                                "characters.");
            return;
        }
        conn_set_name(x->conn, name->ptr, name->len);
    }
    conn_set_resp(x->conn, (int)ver);
    resp_out_set_proto(x->out, (int)ver);
    reply_map(x->out, 7);
    reply_bulk_str(x->out, "server");
    reply_bulk_str(x->out, "redis");
    reply_bulk_str(x->out, "version");
    reply_bulk_str(x->out, KVD_REDIS_VERSION);
    reply_bulk_str(x->out, "proto");
    reply_int(x->out, ver);
    reply_bulk_str(x->out, "id");
    reply_int(x->out, (int64_t)conn_id(x->conn));
    reply_bulk_str(x->out, "mode");
    reply_bulk_str(x->out, "standalone");
    reply_bulk_str(x->out, "role");
    reply_bulk_str(x->out, "master");
    reply_bulk_str(x->out, "modules");
    reply_array(x->out, 0);
}

/*
 * WATCH key [key ...], split by owner like MGET: on each shard, the keys it owns are
 * watched by the calling client with the expiry they have now (the connection notes
 * the shard, and refused WATCH inside MULTI).
 */
void cmd_watch(struct cmd_ctx *x)
{
    struct shard *sh = x->sh;
    if (sh->watch == NULL) {
        sh->watch = watch_create(sh->heap);
    }
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *k = &x->argv[i];
        uint64_t h = cmd_key_hash(k);
        const struct tbl_entry *e = cmd_lookup_write(x, k, h);
        watch_add(sh->watch, x->caller_id, x->db, k->ptr, k->len, h,
                  e ? tbl_entry_expire_ms(e) : 0);
    }
    reply_ok(x->out);
}

/* UNWATCH: the connection dropped its watches (conn_unwatch) before this runs. */
void cmd_unwatch(struct cmd_ctx *x)
{
    reply_ok(x->out);
}

void cmd_reset(struct cmd_ctx *x)
{
    if (conn_reply_mode(x->conn) != CONN_REPLY_SKIP) { /* Redis clears OFF and SKIP_NEXT */
        conn_set_reply_mode(x->conn, CONN_REPLY_ON);
    }
    conn_txn_discard(x->conn);
    pubsub_drop(x->sh, x->conn);
    track_conn_drop(x->sh, x->conn);
    monitor_drop(x->sh, x->conn);
    conn_set_resp(x->conn, 2);
    resp_out_set_proto(x->out, 2);
    conn_select(x->conn, 0);
    conn_set_name(x->conn, "", 0);
    conn_set_user(x->conn, USERS_DEFAULT);
    conn_set_authed(x->conn, users_default_open());
    reply_simple(x->out, "RESET");
}

/* ---- CLIENT --------------------------------------------------------------------- */

int cmd_client_line(const struct conn_info *ci, char *buf, size_t cap)
{
    return snprintf(buf, cap,
                    "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=%s db=%u "
                    "sub=%zu psub=%zu ssub=%zu multi=%d qbuf=%zu qbuf-free=%zu argv-mem=%zu "
                    "multi-mem=0 rbs=%zu rbp=%zu obl=0 oll=0 omem=%zu tot-mem=%zu events=r "
                    "cmd=%s user=%s redir=%lld resp=%d\n",
                    (unsigned long long)ci->id, ci->addr, ci->laddr, ci->fd, ci->name,
                    (long long)ci->age_s, (long long)ci->idle_s, ci->flags, ci->db, ci->sub,
                    ci->psub, ci->ssub, ci->multi, ci->qbuf,
                    ci->rbs > ci->qbuf ? ci->rbs - ci->qbuf : 0, /* (the receive buffer's rest) */
                    ci->argv_mem, ci->rbs, ci->rbs, ci->omem, ci->tot_mem, ci->last_cmd, ci->user,
                    (long long)ci->redir, ci->resp);
}

/* CLIENT LIST / KILL TYPE. */
enum client_type { CLIENT_TYPE_ANY = 0, CLIENT_TYPE_NORMAL, CLIENT_TYPE_PUBSUB, CLIENT_TYPE_NONE };

/* Filters of CLIENT LIST and CLIENT KILL. */
struct client_filter {
    int64_t ids[64];
    size_t nids;
    bool has_id;
    const struct resp_arg *addr;
    const struct resp_arg *laddr;
    enum client_type type;       /* TYPE: master/replica/slave match none (kvd has no such) */
    const struct resp_arg *user; /* USER */
    bool skipme;
    int64_t maxage;
};

static bool parse_type(struct cmd_ctx *x, const struct resp_arg *a, enum client_type *type)
{
    if (cmd_arg_is(a, "normal")) {
        *type = CLIENT_TYPE_NORMAL;
    } else if (cmd_arg_is(a, "pubsub")) {
        *type = CLIENT_TYPE_PUBSUB;
    } else if (cmd_arg_is(a, "master") || cmd_arg_is(a, "replica") || cmd_arg_is(a, "slave")) {
        *type = CLIENT_TYPE_NONE;
    } else {
        reply_error(x->out, "ERR Unknown client type '%.*s'", (int)(a->len > 64 ? 64 : a->len),
                    a->ptr);
        return false;
    }
    return true;
}

/* CLIENT LIST [TYPE t] [ID id ...]. False after replying an error. */
static bool parse_list_filter(struct cmd_ctx *x, struct client_filter *f)
{
    memset(f, 0, sizeof *f);
    size_t i = 2;
    while (i < x->argc) {
        const struct resp_arg *a = &x->argv[i];
        if (cmd_arg_is(a, "type") && i + 1 < x->argc) {
            if (!parse_type(x, &x->argv[i + 1], &f->type)) {
                return false;
            }
            i += 2;
        } else if (cmd_arg_is(a, "id") && i + 1 < x->argc) {
            f->has_id = true;
            for (i++; i < x->argc; i++) {
                int64_t id;
                if (!cmd_parse_i64(&x->argv[i], &id) || id <= 0) {
                    reply_error(x->out, "ERR Invalid client ID");
                    return false;
                }
                if (f->nids < KV_ARRAY_LEN(f->ids)) {
                    f->ids[f->nids++] = id;
                }
            }
        } else {
            reply_err_syntax(x->out);
            return false;
        }
    }
    return true;
}

/* CLIENT KILL addr:port | [ID id] [ADDR a] [LADDR a] [TYPE t] [USER u] [SKIPME yes/no]
 * [MAXAGE s]. False after replying an error. */
static bool parse_kill_filter(struct cmd_ctx *x, struct client_filter *f)
{
    memset(f, 0, sizeof *f);
    if (x->argc == 3) { /* the old form: one address, the caller included */
        f->addr = &x->argv[2];
        return true;
    }
    f->skipme = true;
    for (size_t i = 2; i < x->argc; i += 2) {
        const struct resp_arg *a = &x->argv[i];
        if (i + 1 >= x->argc) {
            reply_err_syntax(x->out);
            return false;
        }
        const struct resp_arg *v = &x->argv[i + 1];
        if (cmd_arg_is(a, "id")) {
            int64_t id;
            if (!cmd_parse_i64(v, &id) || id <= 0) {
                reply_error(x->out, "ERR client-id should be greater than 0");
                return false;
            }
            f->has_id = true;
            f->ids[0] = id;
            f->nids = 1;
        } else if (cmd_arg_is(a, "addr")) {
            f->addr = v;
        } else if (cmd_arg_is(a, "laddr")) {
            f->laddr = v;
        } else if (cmd_arg_is(a, "type")) {
            if (!parse_type(x, v, &f->type)) {
                return false;
            }
        } else if (cmd_arg_is(a, "user")) {
            if (!users_exists(v->ptr, v->len)) {
                reply_error(x->out, "ERR No such user '%.*s'", (int)(v->len > 64 ? 64 : v->len),
                            v->ptr);
                return false;
            }
            f->user = v;
        } else if (cmd_arg_is(a, "skipme")) {
            if (cmd_arg_is(v, "yes")) {
                f->skipme = true;
            } else if (cmd_arg_is(v, "no")) {
                f->skipme = false;
            } else {
                reply_err_syntax(x->out);
                return false;
            }
        } else if (cmd_arg_is(a, "maxage")) {
            if (!cmd_parse_i64(v, &f->maxage) || f->maxage < 0) {
                reply_err_syntax(x->out);
                return false;
            }
        } else {
            reply_err_syntax(x->out);
            return false;
        }
    }
    return true;
}

static bool arg_eq_str(const struct resp_arg *a, const char *s)
{
    return a->len == strlen(s) && memcmp(a->ptr, s, a->len) == 0;
}

static bool filter_match(const struct client_filter *f, const struct conn_info *ci)
{
    /* Redis's types: a client subscribed to anything is "pubsub", else "normal" */
    bool pubsub = ci->sub + ci->psub + ci->ssub > 0;
    if (f->type == CLIENT_TYPE_NONE || (f->type == CLIENT_TYPE_NORMAL && pubsub) ||
        (f->type == CLIENT_TYPE_PUBSUB && !pubsub)) {
        return false;
    }
    if (f->has_id) {
        bool hit = false;
        for (size_t i = 0; i < f->nids; i++) {
            hit |= ci->id == (uint64_t)f->ids[i];
        }
        if (!hit) {
            return false;
        }
    }
    if (f->addr != NULL && !arg_eq_str(f->addr, ci->addr)) {
        return false;
    }
    if (f->laddr != NULL && !arg_eq_str(f->laddr, ci->laddr)) {
        return false;
    }
    if (f->user != NULL && !arg_eq_str(f->user, ci->user)) {
        return false;
    }
    if (f->maxage > 0 && ci->age_s < f->maxage) {
        return false;
    }
    return true;
}

bool cmd_client_list_check(struct cmd_ctx *x)
{
    struct client_filter f;
    return parse_list_filter(x, &f);
}

bool cmd_client_kill_check(struct cmd_ctx *x)
{
    struct client_filter f;
    return parse_kill_filter(x, &f);
}

static void client_list(struct cmd_ctx *x)
{
    /* This shard's clients; with several shards the command runs on each of them and the
     * parts are concatenated (CMD_MERGE_BULKCAT). */
    struct client_filter f;
    if (!parse_list_filter(x, &f)) {
        return;
    }
    size_t cap = 4096;
    size_t len = 0;
    char *buf = mi_heap_malloc(x->sh->heap, cap);
    KV_ASSERT(buf != NULL);
    for (struct conn *c = conn_first(x->sh); c != NULL; c = conn_next(c)) {
        struct conn_info ci;
        conn_info(c, x->now_ms, &ci);
        if (!filter_match(&f, &ci)) {
            continue;
        }
        if (ci.id == x->caller_id) {
            conn_info_running(&ci, x->argc, x->argv);
        }
        char line[1024];
        int n = cmd_client_line(&ci, line, sizeof line);
        if (n < 0) {
            continue;
        }
        if ((size_t)n >= sizeof line) {
            n = (int)sizeof line - 1;
            line[n - 1] = '\n';
        }
        if (len + (size_t)n > cap) {
            cap = (len + (size_t)n) * 2;
            buf = mi_heap_realloc(x->sh->heap, buf, cap);
            KV_ASSERT(buf != NULL);
        }
        memcpy(buf + len, line, (size_t)n);
        len += (size_t)n;
    }
    if (x->conn != NULL && conn_resp(x->conn) == 3) {
        reply_verbatim(x->out, buf, len);
    } else {
        reply_bulk(x->out, buf, len); /* fan-out parts are plain bulks, merged later */
    }
    mi_free(buf);
}

static void client_kill(struct cmd_ctx *x)
{
    struct client_filter f;
    if (!parse_kill_filter(x, &f)) {
        return;
    }
    int64_t killed = 0;
    for (struct conn *c = conn_first(x->sh), *next; c != NULL; c = next) {
        next = conn_next(c);
        struct conn_info ci;
        conn_info(c, x->now_ms, &ci);
        if (!filter_match(&f, &ci)) {
            continue;
        }
        if (ci.id == x->caller_id) {
            if (f.skipme) {
                continue;
            }
            conn_close_after_reply(c); /* the caller still gets its reply */
        } else {
            conn_kill(c);
        }
        killed++;
    }
    x->sum = killed;
    if (x->argc == 3) {
        if (killed == 0) {
            reply_error(x->out, "ERR No such client");
        } else {
            reply_ok(x->out);
        }
    } else {
        reply_int(x->out, killed);
    }
}

void cmd_client_list_part(struct cmd_ctx *x)
{
    client_list(x);
}

void cmd_client_kill_part(struct cmd_ctx *x)
{
    client_kill(x);
}

/* A CLIENT subcommand with more than `max` arguments: Redis's
 * addReplySubcommandSyntaxError text, and false. */
static bool client_args_max(struct cmd_ctx *x, size_t max)
{
    if (x->argc <= max) {
        return true;
    }
    reply_error(x->out,
                "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try CLIENT "
                "HELP.",
                (int)(x->argv[1].len > 128 ? 128 : x->argv[1].len), x->argv[1].ptr);
    return false;
}

/* CLIENT PAUSE timeout [WRITE|ALL]: Redis's checks and texts. */
static void client_pause(struct cmd_ctx *x)
{
    if (!client_args_max(x, 4)) {
        return;
    }
    int64_t ms;
    if (!cmd_parse_i64(&x->argv[2], &ms)) {
        reply_error(x->out, "ERR timeout is not an integer or out of range");
        return;
    }
    if (ms < 0) {
        reply_error(x->out, "ERR timeout is negative");
        return;
    }
    int type = SERVER_PAUSE_ALL;
    if (x->argc == 4) {
        if (cmd_arg_is(&x->argv[3], "write")) {
            type = SERVER_PAUSE_WRITE;
        } else if (!cmd_arg_is(&x->argv[3], "all")) {
            reply_error(x->out, "ERR CLIENT PAUSE mode must be WRITE or ALL");
            return;
        }
    }
    int64_t max = (INT64_C(1) << 61) - 1; /* what srv->pause can hold: ~73 million years */
    conn_pause(x->sh, ms > max - x->now_ms ? max : x->now_ms + ms, type);
    reply_ok(x->out);
}

/* CLIENT UNBLOCK id [TIMEOUT|ERROR]: kvd has no blocking commands (and a client held by
 * CLIENT PAUSE is not unblocked by it, as in Redis): 0 once the arguments are valid. */
static void client_unblock(struct cmd_ctx *x)
{
    if (!client_args_max(x, 4)) {
        return;
    }
    int64_t id;
    if (!cmd_parse_i64(&x->argv[2], &id)) {
        reply_err_not_int(x->out);
        return;
    }
    if (x->argc == 4 && !cmd_arg_is(&x->argv[3], "timeout") && !cmd_arg_is(&x->argv[3], "error")) {
        reply_error(x->out, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        return;
    }
    reply_int(x->out, 0);
}

void cmd_client(struct cmd_ctx *x)
{
    static const struct {
        const char *name;
        int arity; /* as Redis's subcommand arity, argv[0] included */
    } subs[] = {{"id", 2},       {"setname", 3},  {"getname", 2},      {"list", -2},
                {"info", 2},     {"kill", -3},    {"setinfo", 4},      {"no-evict", 3},
                {"no-touch", 3}, {"help", 2},     {"reply", 3},        {"tracking", -3},
                {"caching", 3},  {"getredir", 2}, {"trackinginfo", 2}, {"pause", -3},
                {"unpause", 2},  {"unblock", -3}};
    const struct resp_arg *sub = &x->argv[1];
    size_t k = 0;
    while (k < KV_ARRAY_LEN(subs) && !cmd_arg_is(sub, subs[k].name)) {
        k++;
    }
    if (k == KV_ARRAY_LEN(subs)) {
        cmd_reply_unknown_subcommand(x);
        return;
    }
    int ar = subs[k].arity;
    if ((ar > 0 && x->argc != (size_t)ar) || (ar < 0 && x->argc < (size_t)-ar)) {
        cmd_reply_sub_arity(x);
        return;
    }
    if (cmd_arg_is(sub, "reply")) {
        /* ON replies +OK; OFF and SKIP reply nothing (the output stays as it is) */
        if (cmd_arg_is(&x->argv[2], "on")) {
            conn_set_reply_mode(x->conn, CONN_REPLY_ON);
            reply_ok(x->out);
        } else if (cmd_arg_is(&x->argv[2], "off")) {
            conn_set_reply_mode(x->conn, CONN_REPLY_OFF);
        } else if (cmd_arg_is(&x->argv[2], "skip")) {
            if (conn_reply_mode(x->conn) != CONN_REPLY_OFF) {
                conn_set_reply_mode(x->conn, CONN_REPLY_SKIP_NEXT);
            }
        } else {
            reply_err_syntax(x->out);
        }
    } else if (cmd_arg_is(sub, "id")) {
        reply_int(x->out, (int64_t)conn_id(x->conn));
    } else if (cmd_arg_is(sub, "setname")) {
        if (!valid_client_name(&x->argv[2])) {
            reply_error(x->out, "ERR Client names cannot contain spaces, newlines or special "
                                "characters.");
            return;
        }
        conn_set_name(x->conn, x->argv[2].ptr, x->argv[2].len);
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "getname")) {
        const char *n = conn_name(x->conn);
        if (n[0] == '\0') {
            reply_null(x->out);
        } else {
            reply_bulk_str(x->out, n);
        }
    } else if (cmd_arg_is(sub, "list")) {
        client_list(x);
    } else if (cmd_arg_is(sub, "info")) {
        struct conn_info ci;
        conn_info(x->conn, x->now_ms, &ci);
        conn_info_running(&ci, x->argc, x->argv);
        char line[1024];
        int n = cmd_client_line(&ci, line, sizeof line);
        size_t len =
            (size_t)(n < 0 ? 0 : n) < sizeof line ? (size_t)(n < 0 ? 0 : n) : sizeof line - 1;
        if (conn_resp(x->conn) == 3) {
            reply_verbatim(x->out, line, len);
        } else {
            reply_bulk(x->out, line, len);
        }
    } else if (cmd_arg_is(sub, "kill")) {
        client_kill(x);
    } else if (cmd_arg_is(sub, "pause")) {
        client_pause(x);
    } else if (cmd_arg_is(sub, "unpause")) {
        conn_unpause(x->sh);
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "unblock")) {
        client_unblock(x);
    } else if (cmd_arg_is(sub, "tracking")) {
        track_cmd_tracking(x);
    } else if (cmd_arg_is(sub, "caching")) {
        track_cmd_caching(x);
    } else if (cmd_arg_is(sub, "getredir")) {
        track_cmd_getredir(x);
    } else if (cmd_arg_is(sub, "trackinginfo")) {
        track_cmd_trackinginfo(x);
    } else if (cmd_arg_is(sub, "setinfo")) {
        reply_ok(x->out); /* lib-name / lib-ver: accepted, not stored */
    } else if (cmd_arg_is(sub, "no-evict") || cmd_arg_is(sub, "no-touch")) {
        if (cmd_arg_is(&x->argv[2], "on") || cmd_arg_is(&x->argv[2], "off")) {
            reply_ok(x->out);
        } else {
            reply_err_syntax(x->out);
        }
    } else {
        reply_array(x->out, 1);
        reply_simple(x->out, "CLIENT <subcommand> [<arg> ...]. Subcommands: ID SETNAME GETNAME "
                             "LIST INFO KILL SETINFO NO-EVICT NO-TOUCH REPLY TRACKING CACHING "
                             "GETREDIR TRACKINGINFO PAUSE UNPAUSE UNBLOCK HELP");
    }
}

/* ---- CONFIG ----------------------------------------------------------------------- */

/* Read-only values clients and tools ask for (redis-benchmark, redis-cli, clients'
 * tests): Redis 7.0's, for parts kvd does not have (RDB save points, the encodings of
 * types kvd does not store). */
static const struct {
    const char *name;
    const char *value;
    bool hidden; /* Redis's hidden configs: named exactly, never by a pattern */
} config_compat[] = {
    {"replicaof", "", false},
    {"slaveof", "", false},
    {"key-load-delay", "0", true},
    {"rdb-key-save-delay", "0", true},
    {"loading-process-events-interval-bytes", "2097152", true},
};
_Static_assert(KV_ARRAY_LEN(config_compat) <= 16, "KVD_SETTINGS_MAX counts 16 of these");

/* requirepass is the default user's password: CONFIG SET changes the user (users.h),
 * not the start-up setting. */
static bool is_requirepass(const struct kv_conf_item *it)
{
    return strcmp(it->name, "requirepass") == 0;
}

/* Settings whose live values are kept by their module (any thread reads them there), the
 * setting holding the start-up text: save (the save points, dump.h) and
 * client-output-buffer-limit (obuf.h). CONFIG SET checks them with the other pairs and
 * applies them once every pair is set; GET and REWRITE show the live value. */
struct special {
    const char *name;
    int (*check)(const char *text, char *why, size_t why_len);
    int (*set)(const char *text, char *why, size_t why_len);
    size_t (*text)(char *buf, size_t cap);
    const char *bad; /* the reason for a value too long or holding a NUL */
};

_Static_assert(DUMP_POINTS_TEXT_MAX <= KVD_DIR_MAX && OBUF_TEXT_MAX <= KVD_DIR_MAX &&
                   KVD_PASS_MAX <= KVD_DIR_MAX,
               "CONFIG GET's buffer (KVD_DIR_MAX + 32) holds every setting's text");

static const struct special specials[] = {
    {"save", dump_points_check, dump_points_set, dump_points_text, "Invalid save parameters"},
    {"client-output-buffer-limit", obuf_check, obuf_set, obuf_text,
     "Wrong number of arguments in buffer limit configuration."},
};

static const struct special *special_of(const struct kv_conf_item *it)
{
    for (size_t i = 0; i < KV_ARRAY_LEN(specials); i++) {
        if (strcmp(it->name, specials[i].name) == 0) {
            return &specials[i];
        }
    }
    return NULL;
}

/* A setting's value as CONFIG GET shows it (requirepass: the default user's). */
static size_t config_value(const struct kv_conf_item *it, char *buf, size_t cap)
{
    if (is_requirepass(it)) {
        users_requirepass(buf, cap);
        return strlen(buf);
    }
    const struct special *sp = special_of(it);
    if (sp != NULL) {
        return sp->text(buf, cap);
    }
    return kv_conf_format(it, buf, cap);
}

static void config_get(struct cmd_ctx *x)
{
    size_t total = kvd_setting_count + KV_ARRAY_LEN(config_compat);
    bool hit[KVD_SETTINGS_MAX] = {false};
    KV_ASSERT(total <= KV_ARRAY_LEN(hit));
    size_t n = 0;
    for (size_t a = 2; a < x->argc; a++) {
        const struct resp_arg *pat = &x->argv[a];
        for (size_t i = 0; i < total; i++) {
            const char *name = i < kvd_setting_count ? kvd_setting_items[i].name
                                                     : config_compat[i - kvd_setting_count].name;
            bool hidden = i >= kvd_setting_count && config_compat[i - kvd_setting_count].hidden;
            if (!hit[i] &&
                (hidden ? pat->len == strlen(name) && strncasecmp(pat->ptr, name, pat->len) == 0
                        : kv_glob_match(pat->ptr, pat->len, name, strlen(name), true))) {
                hit[i] = true;
                n++;
            }
        }
    }
    reply_map(x->out, n);
    for (size_t i = 0; i < total; i++) {
        if (!hit[i]) {
            continue;
        }
        const char *name = i < kvd_setting_count ? kvd_setting_items[i].name
                                                 : config_compat[i - kvd_setting_count].name;
        /* Redis names a setting as it was asked for when the argument is no pattern. */
        const struct resp_arg *asked = NULL;
        for (size_t a = 2; a < x->argc && asked == NULL; a++) {
            const struct resp_arg *p = &x->argv[a];
            if (p->len == strlen(name) && strncasecmp(p->ptr, name, p->len) == 0) {
                asked = p;
            }
        }
        if (asked != NULL) {
            reply_bulk(x->out, asked->ptr, asked->len);
        } else {
            reply_bulk_str(x->out, name);
        }
        if (i < kvd_setting_count) {
            char buf[KVD_DIR_MAX + 32];
            reply_bulk(x->out, buf, config_value(&kvd_setting_items[i], buf, sizeof buf));
        } else {
            reply_bulk_str(x->out, config_compat[i - kvd_setting_count].value);
        }
    }
}

/*
 * CONFIG REWRITE, as Redis's: the file kvd was started with (--config) gets every
 * setting's current value in place of its line, the settings it lacks that differ from
 * their defaults at its end, and the current ACL users as its "user" lines (unless
 * they come from an aclfile); the rest of it is kept. Replaced durably (kv_file.h), one
 * rewrite at a time.
 */
static void config_rewrite(struct cmd_ctx *x)
{
    const char *path = kvd_conf_users.path;
    if (path[0] == '\0') {
        reply_error(x->out, "ERR The server is running without a config file");
        return;
    }
    static pthread_mutex_t rewrite_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&rewrite_mu);
    struct kv_buf old = {0}, text = {0};
    char err[256] = "";
    int e = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL && errno != ENOENT) {
        e = errno;
    }
    char chunk[4096];
    size_t got;
    while (f != NULL && (got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        kv_buf_put(&old, chunk, got);
    }
    if (f != NULL && ferror(f)) {
        e = EIO;
    }
    if (f != NULL) {
        fclose(f);
    }
    kv_buf_put(&old, "", 1); /* NUL-terminated (a NUL inside cuts it: not a config file) */
    char *users = users_conf_lines();
    if (e == 0 && kv_conf_rewrite_text(kvd_setting_items, kvd_setting_count, config_value, old.p,
                                       "user", users, &text, err, sizeof err) == 0) {
        e = kv_file_replace(path, text.p, text.len);
    } else if (e == 0) {
        e = -1;
    }
    free(users);
    kv_buf_free(&old);
    kv_buf_free(&text);
    pthread_mutex_unlock(&rewrite_mu);
    if (e == 0) {
        kv_log_notice("CONFIG REWRITE executed with success.");
        reply_ok(x->out);
    } else {
        const char *why = e > 0 ? strerror(e) : err;
        kv_log_warning("CONFIG REWRITE failed: %s", why);
        reply_error(x->out, "ERR Rewriting config file: %s", why);
    }
}

#define CONFIG_SET_PAIRS_MAX 32  /* settings changed by one CONFIG SET */
#define CONFIG_SET_OLD_MAX   512 /* an old value kept for a rollback (bind, save, ...) */

/* A KV_CONF_SAME setting given the value it has, as CONFIG GET shows it. */
static bool same_value(const struct kv_conf_item *it, const struct resp_arg *v)
{
    if (!(it->flags & KV_CONF_SAME)) {
        return false;
    }
    char cur[CONFIG_SET_OLD_MAX];
    kv_conf_format(it, cur, sizeof cur);
    return v->len == strlen(cur) && memcmp(v->ptr, cur, v->len) == 0;
}

/* A CONFIG SET that fails: the plain settings of pairs [0, set) back to their old
 * values (the others are applied only once every pair passed), and Redis's error naming
 * the argument of pair p. */
static void config_set_fail(struct cmd_ctx *x, const struct kv_conf_item *const *items,
                            char (*old)[CONFIG_SET_OLD_MAX], size_t set, size_t p, const char *why)
{
    for (size_t q = 0; q < set; q++) {
        char ignored[256];
        if (!is_requirepass(items[q]) && special_of(items[q]) == NULL) {
            kv_conf_set(items[q], old[q], true, ignored, sizeof ignored);
        }
    }
    const struct resp_arg *a = &x->argv[2 + 2 * p];
    reply_error(x->out, "ERR CONFIG SET failed (possibly related to argument '%.*s') - %s",
                (int)a->len, a->ptr, why);
}

/* Applies every pair or none: on a failure the pairs already applied get their old
 * values back. */
static void config_set(struct cmd_ctx *x)
{
    if (x->argc < 4) {
        cmd_reply_sub_arity(x);
        return;
    }
    if (x->argc % 2 != 0) {
        reply_err_syntax(x->out);
        return;
    }
    size_t npairs = (x->argc - 2) / 2;
    if (npairs > CONFIG_SET_PAIRS_MAX) {
        reply_error(x->out, "ERR CONFIG SET accepts at most %d parameters", CONFIG_SET_PAIRS_MAX);
        return;
    }
    const struct kv_conf_item *items[CONFIG_SET_PAIRS_MAX];
    for (size_t p = 0; p < npairs; p++) {
        const struct resp_arg *a = &x->argv[2 + 2 * p];
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(a->len < 63 ? a->len : 63), a->ptr);
        const struct kv_conf_item *it = kv_conf_find(kvd_setting_items, kvd_setting_count, name);
        if (it == NULL || a->len >= sizeof name || memchr(a->ptr, '\0', a->len) != NULL) {
            reply_error(x->out, "ERR Unknown option or number of arguments for CONFIG SET - '%s'",
                        name);
            return;
        }
        for (size_t q = 0; q < p; q++) {
            if (items[q] == it) {
                reply_error(x->out,
                            "ERR CONFIG SET failed (possibly related to argument '%s') - "
                            "duplicate parameter",
                            name);
                return;
            }
        }
        if (!(it->flags & KV_CONF_RUNTIME) && !is_requirepass(it) && special_of(it) == NULL &&
            !same_value(it, &x->argv[3 + 2 * p])) {
            reply_error(x->out,
                        "ERR CONFIG SET failed (possibly related to argument '%s') - can't set "
                        "immutable config",
                        name);
            return;
        }
        items[p] = it;
    }
    char old[CONFIG_SET_PAIRS_MAX][CONFIG_SET_OLD_MAX];
    for (size_t p = 0; p < npairs; p++) {
        kv_conf_format(items[p], old[p], sizeof old[p]);
    }
    for (size_t p = 0; p < npairs; p++) {
        const struct resp_arg *v = &x->argv[3 + 2 * p];
        char value[512], why[256];
        const char *fail = NULL;
        const struct special *sp = special_of(items[p]);
        if (sp != NULL) {
            if (v->len >= sizeof value || memchr(v->ptr, '\0', v->len) != NULL) {
                fail = sp->bad;
            } else {
                memcpy(value, v->ptr, v->len);
                value[v->len] = '\0';
                if (sp->check(value, why, sizeof why) != 0) {
                    fail = why;
                } else {
                    continue; /* set once every other pair is */
                }
            }
        } else if (is_requirepass(items[p])) {
            if (v->len >= KVD_PASS_MAX || memchr(v->ptr, '\0', v->len) != NULL) {
                fail = "argument too long";
            } else {
                continue; /* the default user's, once every other pair is set */
            }
        } else if (!(items[p]->flags & KV_CONF_RUNTIME)) {
            continue; /* KV_CONF_SAME with the value it has (checked above): nothing to do */
        } else if (v->len >= sizeof value) {
            fail = "argument too long";
        } else if (memchr(v->ptr, '\0', v->len) != NULL) {
            fail = "argument couldn't be parsed into an integer";
        } else {
            memcpy(value, v->ptr, v->len);
            value[v->len] = '\0';
            if (kv_conf_set(items[p], value, true, why, sizeof why) != 0) {
                fail = why;
            } else if (items[p]->num == &kvd_settings.appendonly &&
                       KV_CONF_GET(kvd_settings.appendonly) != 0 &&
                       access(kvd_settings.dir, W_OK | X_OK) != 0) {
                /* as Redis when it cannot open its AOF: the WAL could not be written */
                kv_log_warning("appendonly yes: dir=%s is not writable: %s", kvd_settings.dir,
                               strerror(errno));
                char ignored[256];
                kv_conf_set(items[p], old[p], true, ignored, sizeof ignored);
                fail = "Unable to turn on AOF. Check server logs.";
            } else if (items[p]->num == &kvd_settings.maxclients) {
                /* as Redis: the open-files limit is raised for it, or it is refused */
                int64_t want = KV_CONF_GET(kvd_settings.maxclients);
                struct fdlimit_result r = fdlimit_raise(want, x->sh->srv->nthreads);
                if (r.clients < want) {
                    snprintf(why, sizeof why,
                             "The operating system is not able to handle the specified number "
                             "of clients, try with %lld",
                             (long long)(r.clients > 0 ? r.clients : 0));
                    fail = why;
                    char ignored[256];
                    kv_conf_set(items[p], old[p], true, ignored, sizeof ignored);
                }
            }
        }
        if (fail != NULL) {
            config_set_fail(x, items, old, p, p, fail);
            return;
        }
    }
    /* port / bind (the first of them names a failure): listen there now, Redis's apply
     * step; if it cannot, every pair goes back to its old value */
    size_t lp = 0;
    while (lp < npairs && items[lp]->num != &kvd_settings.port &&
           items[lp]->str != kvd_settings.bind) {
        lp++;
    }
    if (lp < npairs) {
        char bind[KVD_BIND_MAX];
        kv_conf_format(kv_conf_find(kvd_setting_items, kvd_setting_count, "bind"), bind,
                       sizeof bind);
        int rc = shard_relisten(x->sh, bind, (int)KV_CONF_GET(kvd_settings.port),
                                (int)KV_CONF_GET(kvd_settings.tcp_backlog));
        if (rc < 0) {
            kv_log_warning("CONFIG SET bind/port: cannot listen on %s:%lld: %s", bind,
                           (long long)KV_CONF_GET(kvd_settings.port), strerror(-rc));
            config_set_fail(x, items, old, npairs, lp,
                            items[lp]->num == &kvd_settings.port
                                ? "Unable to listen on this port"
                                : "Failed to bind to specified addresses.");
            return;
        }
    }
    for (size_t p = 0; p < npairs; p++) {
        const struct special *sp = special_of(items[p]);
        if (sp != NULL) {
            const struct resp_arg *v = &x->argv[3 + 2 * p];
            char value[512], ignored[256];
            memcpy(value, v->ptr, v->len); /* checked above */
            value[v->len] = '\0';
            int rc = sp->set(value, ignored, sizeof ignored);
            KV_ASSERT(rc == 0); /* (checked above) */
        }
        if (is_requirepass(items[p])) {
            const struct resp_arg *v = &x->argv[3 + 2 * p];
            char pass[KVD_PASS_MAX];
            memcpy(pass, v->ptr, v->len);
            pass[v->len] = '\0';
            users_set_requirepass(pass);
        }
    }
    kv_log_level_set((enum kv_log_level)KV_CONF_GET(kvd_settings.loglevel));
    evict_access_apply();
    uint64_t track_gen = 0;
    bool wake = false;
    for (size_t p = 0; p < npairs; p++) {
        /* the shards act on these at their next turn: they switch appendonly (aof.h),
         * apply the tracking table's limit (track_turn) */
        if (items[p]->num == &kvd_settings.tracking_table_max_keys) {
            track_gen = track_limit_changed();
        }
        wake |= items[p]->num == &kvd_settings.appendonly || track_gen != 0;
    }
    if (wake) {
        shard_wake_all(x->sh);
    }
    /* Redis applies the limit before the next command: the reply waits until every shard
     * has (not inside a transaction: its reply is EXEC's) */
    if (track_gen != 0 && !x->sh->in_exec && conn_track_limit_wait(x->conn, track_gen)) {
        return;
    }
    reply_ok(x->out);
}

void cmd_config(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "get")) {
        if (x->argc < 3) {
            cmd_reply_sub_arity(x);
            return;
        }
        config_get(x);
    } else if (cmd_arg_is(sub, "set")) {
        config_set(x);
    } else if (cmd_arg_is(sub, "resetstat")) {
        if (x->argc != 2) {
            cmd_reply_sub_arity(x);
            return;
        }
        stats_reset(x->sh->srv);
        slowlog_reset();
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "rewrite") && x->argc == 2) {
        config_rewrite(x);
    } else if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "rewrite") || cmd_arg_is(sub, "help")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}

/* ---- SLOWLOG, DEBUG ----------------------------------------------------------------- */

void cmd_slowlog(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "get") && x->argc > 3) {
        reply_error(x->out,
                    "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try "
                    "SLOWLOG HELP.",
                    (int)(sub->len > 64 ? 64 : sub->len), sub->ptr);
    } else if ((cmd_arg_is(sub, "len") || cmd_arg_is(sub, "reset")) && x->argc != 2) {
        cmd_reply_sub_arity(x);
    } else if (cmd_arg_is(sub, "get")) {
        int64_t count = 10;
        if (x->argc == 3 && (!cmd_parse_i64(&x->argv[2], &count) || count < -1)) {
            reply_error(x->out, "ERR count should be greater than or equal to -1");
            return;
        }
        slowlog_reply_get(x->out, count);
    } else if (cmd_arg_is(sub, "len")) {
        reply_int(x->out, (int64_t)slowlog_len());
    } else if (cmd_arg_is(sub, "reset")) {
        slowlog_reset();
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "help")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}

/*
 * DEBUG RELOAD [MERGE|NOFLUSH|NOSAVE ...]: Redis saves its RDB, empties itself and loads
 * the file back, proving that what it persists is what it holds. kvd's memory is at all
 * times what recovery rebuilds from its snapshots and WAL (with appendonly no: from its
 * last dump), so RELOAD is a SAVE (nothing to do with NOSAVE) and the data goes on as it
 * is.
 */
static void debug_reload(struct cmd_ctx *x)
{
    bool nosave = false, noflush = false, merge = false;
    for (size_t i = 2; i < x->argc; i++) {
        if (cmd_arg_is(&x->argv[i], "nosave")) {
            nosave = true;
        } else if (cmd_arg_is(&x->argv[i], "noflush")) {
            noflush = true;
        } else if (cmd_arg_is(&x->argv[i], "merge")) {
            merge = true;
        } else {
            reply_error(x->out, "ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE "
                                "options.");
            return;
        }
    }
    size_t libraries = 0, functions = 0, bytes = 0;
    func_counts(&libraries, &functions, &bytes);
    if (noflush && !merge && libraries > 0) {
        /* Redis loads its file over the functions it holds: each library is there
         * already, and without MERGE that fails the load */
        reply_error(x->out, "ERR Error trying to load the RDB dump");
        return;
    }
    if (nosave) {
        reply_ok(x->out);
        return;
    }
    cmd_save(x);
}

/*
 * DEBUG DIGEST and DIGEST-VALUE key...: Redis 7.0's digests, byte for byte (debug.c):
 * a value's digest mixes its type (0, a string), its bytes and, if it has an expiry,
 * xors "!!expire!!"; a key's digest mixes its name first; the dataset's, per database
 * in order, mixes the database number then xors in SHA1 of every key's digest. XOR
 * does not care about order, so each shard sums its keys per database and the merge
 * (CMD_MERGE_DIGEST) sums the shards' and mixes the databases.
 */
static void xor_digest(uint8_t d[20], const void *p, size_t n)
{
    uint8_t h[20];
    kv_sha1(p, n, h);
    for (int j = 0; j < 20; j++) {
        d[j] ^= h[j];
    }
}

static void mix_digest(uint8_t d[20], const void *p, size_t n)
{
    xor_digest(d, p, n);
    uint8_t h[20];
    kv_sha1(d, 20, h);
    memcpy(d, h, 20);
}

static void value_digest(const struct tbl_entry *e, uint8_t d[20])
{
    uint8_t type[4] = {0, 0, 0, 0}; /* htonl(OBJ_STRING) */
    mix_digest(d, type, sizeof type);
    size_t n;
    const void *v = tbl_entry_val(e, &n);
    mix_digest(d, v, n);
    if (tbl_entry_expire_ms(e) != 0) {
        xor_digest(d, "!!expire!!", 10);
    }
}

static void reply_digest(struct resp_out *o, const uint8_t d[20])
{
    char hex[41];
    for (int j = 0; j < 20; j++) {
        snprintf(hex + 2 * j, 3, "%02x", d[j]);
    }
    reply_simple(o, hex);
}

struct digest_sum {
    uint8_t x[20];
    uint64_t keys;
};

static void digest_key(void *ctx, const struct tbl_entry *e)
{
    struct digest_sum *sum = ctx;
    uint8_t d[20] = {0};
    size_t klen;
    const char *k = tbl_entry_key(e, &klen);
    mix_digest(d, k, klen);
    value_digest(e, d);
    xor_digest(sum->x, d, 20);
    sum->keys++;
}

void cmd_debug_digest(struct cmd_ctx *x)
{
    struct shard *sh = x->sh;
    bool alone = sh->srv->nthreads == 1;
    uint8_t final[20] = {0};
    if (!alone) {
        reply_array(x->out, sh->ndb); /* per database: its sum, "" if it has no key here */
    }
    for (uint32_t db = 0; db < sh->ndb; db++) {
        struct digest_sum sum = {{0}, 0};
        for (uint32_t slot = 0; slot < sh->table_count; slot++) {
            struct tbl *t = shard_part_peek(sh, slot, db);
            for (uint64_t cur = 0; t != NULL;) {
                cur = tbl_scan(t, cur, x->now_ms, digest_key, &sum);
                if (cur == 0) {
                    break;
                }
            }
        }
        if (!alone) {
            reply_bulk(x->out, sum.x, sum.keys > 0 ? 20 : 0);
        } else if (sum.keys > 0) {
            uint8_t aux[4] = {(uint8_t)(db >> 24), (uint8_t)(db >> 16), (uint8_t)(db >> 8),
                              (uint8_t)db};
            mix_digest(final, aux, sizeof aux);
            for (int j = 0; j < 20; j++) {
                final[j] ^= sum.x[j];
            }
        }
    }
    if (alone) {
        reply_digest(x->out, final);
    }
}

void cmd_debug_digest_value(struct cmd_ctx *x)
{
    bool alone = x->sh->srv->nthreads == 1;
    reply_array(x->out, x->argc - 2);
    for (size_t i = 2; i < x->argc; i++) {
        uint8_t d[20] = {0};
        uint64_t h = tbl_hash(x->argv[i].ptr, x->argv[i].len);
        if (route_lookup(x->sh->srv->route, h)->thread == x->sh->id) {
            const struct tbl_entry *e = cmd_lookup_peek(x, &x->argv[i], h);
            if (e != NULL) {
                value_digest(e, d);
            }
        }
        if (alone) {
            reply_digest(x->out, d);
        } else {
            reply_bulk(x->out, d, 20); /* (every shard's: xored by the merge) */
        }
    }
}

void cmd_merge_digest(struct resp_out *o, bool dataset, const char *const *part, const size_t *len,
                      size_t nparts)
{
    /* every part is an array of 20-byte bulks ("" for a database with no key there) */
    long long n = -1;
    size_t off[KVD_THREADS_MAX] = {0};
    for (size_t t = 0; t < nparts; t++) {
        if (part[t] != NULL) { /* (an error part was replied by merge_parts) */
            const char *nl = memchr(part[t], '\n', len[t]);
            KV_ASSERT(nl != NULL);
            n = strtoll(part[t] + 1, NULL, 10);
            off[t] = (size_t)(nl - part[t]) + 1;
        }
    }
    KV_ASSERT(n >= 0);
    uint8_t final[20] = {0};
    if (!dataset) {
        reply_array(o, (size_t)n);
    }
    for (long long i = 0; i < n; i++) {
        uint8_t x[20] = {0};
        bool any = false;
        for (size_t t = 0; t < nparts; t++) {
            if (part[t] == NULL) {
                continue;
            }
            const char *b = part[t] + off[t];
            long long bl = strtoll(b + 1, NULL, 10);
            const char *body = memchr(b, '\n', len[t] - off[t]) + 1;
            for (long long j = 0; j < bl && j < 20; j++) {
                x[j] ^= (uint8_t)body[j];
            }
            any |= bl > 0;
            off[t] = (size_t)(body - part[t]) + (size_t)bl + 2;
        }
        if (!dataset) {
            reply_digest(o, x);
        } else if (any) {
            uint32_t db = (uint32_t)i;
            uint8_t aux[4] = {(uint8_t)(db >> 24), (uint8_t)(db >> 16), (uint8_t)(db >> 8),
                              (uint8_t)db};
            mix_digest(final, aux, sizeof aux);
            for (int j = 0; j < 20; j++) {
                final[j] ^= x[j];
            }
        }
    }
    if (dataset) {
        reply_digest(o, final);
    }
}

/* DEBUG PROTOCOL <type>: Redis 7.0's sample reply of each RESP type, for clients' tests
 * (and scripts' conversions, with DEBUG SET-DISABLE-DENY-SCRIPTS 1). */
static void debug_protocol(struct cmd_ctx *x)
{
    static const struct {
        const char *name, *resp2, *resp3;
    } t[] = {
        {"string", "$11\r\nHello World\r\n", NULL},
        {"integer", ":12345\r\n", NULL},
        {"double", "$5\r\n3.141\r\n", ",3.141\r\n"},
        {"bignum", "$37\r\n1234567999999999999999999999999999999\r\n",
         "(1234567999999999999999999999999999999\r\n"},
        {"null", "$-1\r\n", "_\r\n"},
        {"array", "*3\r\n:0\r\n:1\r\n:2\r\n", NULL},
        {"set", "*3\r\n:0\r\n:1\r\n:2\r\n", "~3\r\n:0\r\n:1\r\n:2\r\n"},
        {"map", "*6\r\n:0\r\n:0\r\n:1\r\n:1\r\n:2\r\n:0\r\n",
         "%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n"},
        {"attrib", "$39\r\nSome real reply following the attribute\r\n",
         "|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n"
         "$39\r\nSome real reply following the attribute\r\n"},
        {"push", NULL,
         ">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n"
         "$40\r\nSome real reply following the push reply\r\n"},
        {"verbatim", "$25\r\nThis is a verbatim\nstring\r\n",
         "=29\r\ntxt:This is a verbatim\nstring\r\n"},
        {"true", ":1\r\n", "#t\r\n"},
        {"false", ":0\r\n", "#f\r\n"},
    };
    bool resp3 = resp_out_proto(x->out) == 3;
    for (size_t i = 0; i < KV_ARRAY_LEN(t); i++) {
        if (!cmd_arg_is(&x->argv[2], t[i].name)) {
            continue;
        }
        const char *r = resp3 && t[i].resp3 != NULL ? t[i].resp3 : t[i].resp2;
        if (r == NULL) {
            reply_error(x->out, "ERR RESP2 is not supported by this command");
        } else {
            reply_raw(x->out, r, strlen(r));
        }
        return;
    }
    reply_error(x->out, "ERR Wrong protocol type name. Please use one of the following: "
                        "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|"
                        "true|false");
}

void cmd_debug(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DIGEST",
            "    Output a hex signature representing the current DB content.",
            "DIGEST-VALUE <key> [<key> ...]",
            "    Output a hex signature of the values of all the specified keys.",
            "ERROR <string>",
            "    Return a Redis protocol error with <string> as message. Useful for clients",
            "    unit tests to simulate Redis errors.",
            "OBJECT <key>",
            "    Show low level info about `key` and associated value.",
            "PROTOCOL <type>",
            "    Reply with a test value of the specified type. <type> can be: string,",
            "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
            "    true, false.",
            "RELOAD [option ...]",
            "    Save the data on disk (a snapshot round of every thread) and go on with it:",
            "    kvd's memory is what a restart would load. Options MERGE, NOFLUSH and",
            "    NOSAVE (no snapshot) are accepted.",
            "LOADAOF",
            "    The same as RELOAD.",
            "SET-DISABLE-DENY-SCRIPTS <0|1>",
            "    For testing only: 1 lets scripts run DEBUG (and the other commands Redis",
            "    denies scripts that kvd can run without a connection), 0 denies it again.",
            "PAUSE-CRON <0|1>",
            "    Stop periodic cron job processing.",
            "SET-ACTIVE-EXPIRE <0|1>",
            "    Setting it to 0 disables expiring keys in background when they are not",
            "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
            "    default.",
            "SLEEP <seconds>",
            "    Stop the server for <seconds>. Decimals allowed.",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "reload")) {
        debug_reload(x);
    } else if (cmd_arg_is(sub, "loadaof") && x->argc == 2) {
        cmd_save(x); /* as RELOAD: what the files hold is what memory holds */
    } else if (cmd_arg_is(sub, "digest") && x->argc == 2 && x->sh->srv->nthreads == 1) {
        cmd_debug_digest(x); /* (with more threads, a fan-out: row debug|digest) */
    } else if (cmd_arg_is(sub, "digest-value") && x->sh->srv->nthreads == 1) {
        cmd_debug_digest_value(x);
    } else if (cmd_arg_is(sub, "protocol") && x->argc == 3) {
        debug_protocol(x);
    } else if (cmd_arg_is(sub, "set-disable-deny-scripts") && x->argc == 3) {
        char buf[24]; /* as Redis: atoi's reading, any non-zero lets scripts run DEBUG */
        snprintf(buf, sizeof buf, "%.*s", (int)(x->argv[2].len < 23 ? x->argv[2].len : 23),
                 x->argv[2].ptr);
        script_set_deny_off(atoi(buf) != 0);
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "error") && x->argc == 3) {
        /* the argument as an error reply, line breaks made spaces, as Redis 7.0 writes it
         * (raw: no "ERR", not counted in errorstats) */
        const struct resp_arg *a = &x->argv[2];
        char *e = mi_heap_malloc(x->sh->heap, a->len + 3);
        KV_ASSERT(e != NULL);
        e[0] = '-';
        for (size_t i = 0; i < a->len; i++) {
            e[1 + i] = a->ptr[i] == '\r' || a->ptr[i] == '\n' ? ' ' : a->ptr[i];
        }
        memcpy(e + 1 + a->len, "\r\n", 2);
        reply_raw(x->out, e, a->len + 3);
        mi_free(e);
    } else if (cmd_arg_is(sub, "sleep") && x->argc == 3) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)(x->argv[2].len < 31 ? x->argv[2].len : 31),
                 x->argv[2].ptr);
        double s = strtod(buf, NULL);
        if (s > 0) {
            usleep((useconds_t)(s * 1e6)); /* blocks this shard, as Redis blocks itself */
        }
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "set-active-expire") && x->argc == 3) {
        /* as Redis: 0 stops the active expiry cycle (keys expire when touched), else on;
         * the number is read as atoi reads it ("x" is 0) */
        char buf[24];
        snprintf(buf, sizeof buf, "%.*s", (int)(x->argv[2].len < 23 ? x->argv[2].len : 23),
                 x->argv[2].ptr);
        atomic_store(&x->sh->srv->active_expire_off, atoi(buf) == 0);
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "pause-cron") && x->argc == 3) {
        /* as Redis: 1 stops every shard's timer work (cron: active expiry, eviction off
         * the command path, the tracking table's limit, timeouts, save points), 0 resumes */
        char buf[24];
        snprintf(buf, sizeof buf, "%.*s", (int)(x->argv[2].len < 23 ? x->argv[2].len : 23),
                 x->argv[2].ptr);
        atomic_store(&x->sh->srv->cron_paused, atoi(buf) != 0);
        reply_ok(x->out);
    } else {
        /* DEBUG is no container in Redis: its own syntax error (OBJECT with a key went to
         * the key's shard, so here it has the wrong argument count) */
        reply_error(x->out,
                    "ERR unknown subcommand or wrong number of arguments for '%.*s'. Try DEBUG "
                    "HELP.",
                    (int)(sub->len > 128 ? 128 : sub->len), sub->ptr);
    }
}

/* ---- MEMORY ----------------------------------------------------------------------- */

static long long current_rss_bytes(void);

/* MEMORY USAGE key [SAMPLES count], on the key's shard (row "memory|usage"): the bytes
 * of the key's entry (one allocation: header, key, value) and of its table slot. */
static void memory_usage(struct cmd_ctx *x)
{
    for (size_t j = 3; j < x->argc; j++) {
        int64_t samples;
        if (!cmd_arg_is(&x->argv[j], "samples") || j + 1 >= x->argc) {
            reply_err_syntax(x->out);
            return;
        }
        if (!cmd_parse_i64(&x->argv[++j], &samples)) {
            reply_err_not_int(x->out);
            return;
        }
        if (samples < 0) {
            reply_err_syntax(x->out);
            return;
        }
    }
    const struct tbl_entry *e = cmd_lookup_peek(x, &x->argv[2], cmd_key_hash(&x->argv[2]));
    if (e == NULL) {
        reply_null(x->out);
        return;
    }
    reply_int(x->out, (int64_t)(tbl_entry_mem(e) + sizeof(uint64_t)));
}

/* MEMORY STATS: Redis's fields that have a meaning in kvd (the tables' memory as
 * allocated, the keys' and values' own bytes as the dataset, the process RSS). */
static void memory_stats(struct cmd_ctx *x)
{
    struct server *srv = x->sh->srv;
    uint64_t used = 0, data = 0, keys = 0;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        used += STAT_GET(srv->shards[i].stats.mem_bytes);
        data += STAT_GET(srv->shards[i].stats.data_bytes);
        keys += STAT_GET(srv->shards[i].stats.keys);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long rss = current_rss_bytes(), peak = (long long)ru.ru_maxrss * 1024;
    int64_t clients = atomic_load(&srv->clients);
    double pct_data = used ? 100.0 * (double)data / (double)used : 0.0;
    double pct_peak = peak > 0 ? 100.0 * (double)rss / (double)peak : 0.0;
    double frag = used ? (double)rss / (double)used : 0.0;
    const struct {
        const char *name;
        bool dbl; /* a double (the percentages, the ratio), else an integer */
        int64_t i;
        double d;
    } fields[] = {
        {"peak.allocated", false, peak, 0},
        {"total.allocated", false, (int64_t)used, 0},
        {"startup.allocated", false, 0, 0},
        {"replication.backlog", false, 0, 0},
        {"clients.slaves", false, 0, 0},
        {"clients.normal", false, clients, 0},
        {"aof.buffer", false, 0, 0},
        {"lua.caches", false, 0, 0},
        {"functions.caches", false, 0, 0},
        {"overhead.total", false, (int64_t)(used > data ? used - data : 0), 0},
        {"keys.count", false, (int64_t)keys, 0},
        {"keys.bytes-per-key", false, keys ? (int64_t)(used / keys) : 0, 0},
        {"dataset.bytes", false, (int64_t)data, 0},
        {"dataset.percentage", true, 0, pct_data},
        {"peak.percentage", true, 0, pct_peak},
        {"fragmentation", true, 0, frag},
        {"fragmentation.bytes", false, rss - (long long)used, 0},
    };
    reply_map(x->out, KV_ARRAY_LEN(fields));
    for (size_t i = 0; i < KV_ARRAY_LEN(fields); i++) {
        reply_bulk_str(x->out, fields[i].name);
        if (fields[i].dbl) {
            reply_double(x->out, fields[i].d);
        } else {
            reply_int(x->out, fields[i].i);
        }
    }
}

/*
 * MEMORY DOCTOR / MALLOC-STATS / PURGE / STATS / USAGE / HELP. PURGE returns this
 * shard's free pages to the system (each shard's heap is its own); MALLOC-STATS says
 * what Redis says for an allocator without a report; DOCTOR answers as Redis's does
 * when it finds nothing.
 */
void cmd_memory(struct cmd_ctx *x)
{
    const struct resp_arg *sub = &x->argv[1];
    if (x->desc->flags & CMD_HIDDEN) {
        memory_usage(x);
    } else if (cmd_arg_is(sub, "help") && x->argc == 2) {
        static const char *const help[] = {
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Prints this help.",
        };
        reply_lines(x->out, help, KV_ARRAY_LEN(help));
    } else if (cmd_arg_is(sub, "stats") && x->argc == 2) {
        memory_stats(x);
    } else if (cmd_arg_is(sub, "malloc-stats") && x->argc == 2) {
        reply_bulk_str(x->out, "Stats not supported for the current allocator");
    } else if (cmd_arg_is(sub, "purge") && x->argc == 2) {
        mi_heap_collect(x->sh->heap, true);
        reply_ok(x->out);
    } else if (cmd_arg_is(sub, "doctor") && x->argc == 2) {
        uint64_t used = 0;
        for (uint32_t i = 0; i < x->sh->srv->nthreads; i++) {
            used += STAT_GET(x->sh->srv->shards[i].stats.mem_bytes);
        }
        reply_bulk_str(x->out,
                       used < 5 * 1024 * 1024
                           ? "Hi Sam, this instance is empty or is using very little memory, my "
                             "issues detector can't be used in these conditions. Please, leave "
                             "for your mission on Earth and fill it with some data. The new Sam "
                             "and I will be back to our programming as soon as I finished "
                             "rebooting."
                           : "Hi Sam, I can't find any memory issue in your instance. I can only "
                             "account for what occurs on this base.");
    } else if (cmd_arg_is(sub, "usage") || cmd_arg_is(sub, "stats") ||
               cmd_arg_is(sub, "malloc-stats") || cmd_arg_is(sub, "purge") ||
               cmd_arg_is(sub, "doctor")) {
        cmd_reply_sub_arity(x);
    } else {
        cmd_reply_unknown_subcommand(x);
    }
}

/* ---- INFO ------------------------------------------------------------------------- */

/* Each non-empty database's keys, keys with a TTL and their mean remaining TTL (ms;
 * Redis samples it, kvd knows it: the tables keep the count and the sum of expiry
 * times), from what every shard publishes. */
static void info_keyspace(struct kv_text *b, struct server *srv, int64_t now_ms)
{
    kv_text_add(b, "# Keyspace\r\n");
    uint32_t ndb = srv->shards[0].ndb;
    for (uint32_t db = 0; db < ndb; db++) {
        uint64_t keys = 0, expiring = 0;
        unsigned __int128 expire_sum = 0;
        for (uint32_t t = 0; t < srv->nthreads; t++) {
            const struct shard_db_stats *st = &srv->shards[t].db_stats[db];
            uint64_t n = STAT_GET(st->expires);
            keys += STAT_GET(st->keys);
            expiring += n;
            expire_sum += (unsigned __int128)STAT_GET(st->expire_avg_ms) * n;
        }
        if (keys == 0) {
            continue;
        }
        int64_t avg_ttl = 0;
        if (expiring > 0) {
            int64_t avg_at = (int64_t)(expire_sum / expiring);
            avg_ttl = avg_at > now_ms ? avg_at - now_ms : 0;
        }
        kv_text_add(b, "db%u:keys=%llu,expires=%llu,avg_ttl=%lld\r\n", db, (unsigned long long)keys,
                    (unsigned long long)expiring, (long long)avg_ttl);
    }
}

/* INFO persistence: Redis's fields (the snapshot rounds stand for RDB saves, the WAL
 * for the AOF), then kvd's own. */

static void info_persistence(struct kv_text *b, struct server *srv, int64_t now_ms)
{
    uint64_t appended = 0, durable = 0, batches = 0, bytes = 0, syncs = 0, segs = 0;
    uint64_t changes = 0, rounds = 0, failed = 0, snap_keys = 0, rec_keys = 0;
    uint64_t write_us = 0, write_us_max = 0;
    int64_t last_round = -1, started = 0, rec_ms = 0;
    bool running = false, last_ok = true, write_ok = true, refusing = false;
    int device = DEVCACHE_UNKNOWN;
    bool persist = atomic_load(&srv->persist); /* (switched at run time: aof.h) */
    for (uint32_t i = 0; persist && i < srv->nthreads; i++) {
        struct shard *sh = &srv->shards[i];
        struct wal_stats *w = &sh->wal_stats;
        struct snap_stats *s = snap_stats(sh->snap);
        appended += STAT_GET(w->appended);
        durable += STAT_GET(w->durable);
        changes += STAT_GET(w->appended) - STAT_GET(w->appended_at_snap);
        batches += STAT_GET(w->batches);
        bytes += STAT_GET(w->bytes);
        syncs += STAT_GET(w->syncs);
        write_us += STAT_GET(w->write_us);
        write_us_max =
            STAT_GET(w->write_us_max) > write_us_max ? STAT_GET(w->write_us_max) : write_us_max;
        segs += STAT_GET(w->segments);
        write_ok &= STAT_GET(w->last_write_ok) != 0;
        refusing |= STAT_GET(w->refusing) != 0;
        device = STAT_GET(w->device_cache); /* (alike on every shard: one dir) */
        rounds += STAT_GET(s->rounds_ok);
        failed += STAT_GET(s->rounds_failed);
        snap_keys += STAT_GET(s->keys);
        last_ok &= STAT_GET(s->last_ok) != 0;
        if (STAT_GET(s->running)) {
            running = true;
            int64_t st = STAT_GET(s->started_ms);
            started = started == 0 || st < started ? st : started;
        }
        int64_t lr = STAT_GET(s->last_round_ms);
        last_round = STAT_GET(s->rounds_ok) > 0 && lr / 1000 > last_round ? lr / 1000 : last_round;
        rec_keys += sh->recovered_keys;
        rec_ms = sh->recovered_ms > rec_ms ? sh->recovered_ms : rec_ms;
    }
    if (!persist) { /* the dumps (dump.h) */
        const struct dump_state *d = &srv->dump;
        changes = dump_changes_since(srv);
        running = dump_in_progress(srv);
        started = atomic_load(&d->pid) != 0 ? atomic_load(&d->started_ms) : now_ms;
        last_ok = atomic_load(&d->last_ok) != 0;
        last_round = atomic_load(&d->last_secs);
        rounds = atomic_load(&d->saves);
        for (uint32_t i = 0; i < srv->nthreads; i++) {
            rec_keys += srv->shards[i].recovered_keys;
            int64_t ms = srv->shards[i].recovered_ms;
            rec_ms = ms > rec_ms ? ms : rec_ms;
        }
    }
    int fsync_mode = (int)KV_CONF_GET(kvd_settings.appendfsync);
    char sync_method[16] = ""; /* (the setting: fixed while kvd runs) */
    if (persist) {
        kv_conf_format(kv_conf_find(kvd_setting_items, kvd_setting_count, "wal-sync-method"),
                       sync_method, sizeof sync_method);
    }
    kv_text_add(
        b,
        "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:%llu\r\n"
        "rdb_bgsave_in_progress:%d\r\nrdb_last_save_time:%lld\r\n"
        "rdb_last_bgsave_status:%s\r\nrdb_last_bgsave_time_sec:%lld\r\n"
        "rdb_current_bgsave_time_sec:%lld\r\nrdb_saves:%llu\r\n"
        "rdb_last_cow_size:0\r\nrdb_last_load_keys_expired:0\r\n"
        "rdb_last_load_keys_loaded:%llu\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\n"
        "current_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\n"
        "current_save_keys_total:0\r\nmodule_fork_in_progress:0\r\n"
        "module_fork_last_cow_size:0\r\n"
        "aof_enabled:%d\r\naof_rewrite_in_progress:%d\r\naof_rewrite_scheduled:%d\r\n"
        "aof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\n"
        "aof_last_write_status:%s\r\naof_last_bgrewrite_status:ok\r\naof_rewrites:0\r\n"
        "aof_rewrites_consecutive_failures:0\r\naof_last_cow_size:0\r\n"
        "appendfsync:%s\r\nwal_sync_method:%s\r\nwal_device_cache:%s\r\n"
        "wal_records_appended:%llu\r\nwal_records_durable:%llu\r\n"
        "wal_batches:%llu\r\nwal_batch_records_avg:%.2f\r\nwal_write_usec_avg:%.1f\r\n"
        "wal_write_usec_max:%llu\r\nwal_bytes_written:%llu\r\nwal_syncs:%llu\r\n"
        "wal_segments:%llu\r\n"
        "wal_refusing_writes:%d\r\nsnapshot_rounds_failed:%llu\r\nsnapshot_last_keys:%llu\r\n"
        "recovered_keys:%llu\r\nrecovery_time_ms:%lld\r\n\r\n",
        (unsigned long long)changes, running ? 1 : 0, (long long)(last_save_ms(srv) / 1000),
        last_ok ? "ok" : "err", (long long)last_round,
        (long long)(running ? (now_ms - started) / 1000 : -1), (unsigned long long)rounds,
        (unsigned long long)rec_keys, KV_CONF_GET(kvd_settings.appendonly) != 0 ? 1 : 0,
        aof_rewrite_in_progress(srv) ? 1 : 0, aof_rewrite_scheduled(srv) ? 1 : 0,
        write_ok ? "ok" : "err", wal_fsync_name(fsync_mode), sync_method,
        !persist ? "" : devcache_name((enum devcache_kind)device), (unsigned long long)appended,
        (unsigned long long)durable, (unsigned long long)batches,
        batches ? (double)durable / (double)batches : 0.0,
        batches ? (double)write_us / (double)batches : 0.0, (unsigned long long)write_us_max,
        (unsigned long long)bytes, (unsigned long long)syncs, (unsigned long long)segs,
        refusing ? 1 : 0, (unsigned long long)failed, (unsigned long long)snap_keys,
        (unsigned long long)rec_keys, (long long)rec_ms);
}

static bool want(size_t argc, const struct resp_arg *argv, const char *section, bool dflt)
{
    if (argc < 2) {
        return dflt;
    }
    for (size_t i = 1; i < argc; i++) {
        if (cmd_arg_is(&argv[i], section) || cmd_arg_is(&argv[i], "all") ||
            cmd_arg_is(&argv[i], "everything") || (dflt && cmd_arg_is(&argv[i], "default"))) {
            return true;
        }
    }
    return false;
}

#define SUM(field)                                                                                 \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (uint32_t t_ = 0; t_ < srv->nthreads; t_++) {                                          \
            s_ += STAT_GET(srv->shards[t_].stats.field);                                           \
        }                                                                                          \
        s_;                                                                                        \
    })

/* Redis's bytesToHuman: "0B", "1023B", "1.00K", "100.00M", ... */
static void bytes_to_human(char *buf, size_t cap, long long n)
{
    static const char units[] = "KMGTPE";
    if (n < 1024) {
        snprintf(buf, cap, "%lldB", n);
        return;
    }
    double d = (double)n / 1024.0;
    size_t u = 0;
    while (d >= 1024.0 && u + 1 < sizeof units - 1) {
        d /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.2f%c", d, units[u]);
}

/* The resident set size now (getrusage only gives the peak). */
static long long current_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%lld %lld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

/* CONFIG RESETSTAT: shards own their counters, so a reset records the current sums as
 * a baseline that INFO subtracts (relaxed atomics: concurrent resets are harmless). */
static struct shard_stats stat_base;

#define SUMB(field)  (SUM(field) - STAT_GET(stat_base.field))
#define RESET(field) STAT_SET(stat_base.field, SUM(field))

static void stats_reset(struct server *srv)
{
    RESET(commands);
    RESET(forwarded);
    RESET(connections);
    RESET(rejected);
    RESET(obuf_closed);
    RESET(net_in_bytes);
    RESET(net_out_bytes);
    RESET(keyspace_hits);
    RESET(keyspace_misses);
    RESET(expired_keys);
    RESET(evicted_keys);
    RESET(wakeups_sent);
    RESET(queue_full_pauses);
    RESET(recv_nobufs);
    for (size_t i = 0; i < KVD_STAT_ROWS; i++) {
        RESET(cmd_calls[i]);
        RESET(cmd_usec[i]);
        RESET(cmd_failed[i]);
        RESET(cmd_rejected[i]);
        for (size_t b = 0; b < LATENCY_BUCKETS; b++) {
            RESET(cmd_hist[i][b]);
        }
    }
    RESET(errs.total);
    for (size_t i = 0; i < REPLY_ERR_CODES; i++) {
        RESET(errs.by_code[i]);
    }
    for (uint32_t t = 0; t < srv->nthreads; t++) { /* the other codes: a mark per slot */
        struct reply_errstats *e = &srv->shards[t].stats.errs;
        uint32_t used = atomic_load_explicit(&e->others, memory_order_acquire);
        for (uint32_t i = 0; i < used; i++) {
            STAT_SET(e->other[i].base, STAT_GET(e->other[i].count));
        }
    }
}

/* errorstat_<code>:count=N lines, in code order: kvd's own codes (reply_err_codes) and
 * the others the threads met (scripts' error replies), summed over the threads. */
static void info_errorstats(struct kv_text *b, struct server *srv)
{
    struct line {
        const char *name;
        uint64_t n;
    } lines[REPLY_ERR_CODES + REPLY_OTHER_CODES * 4];
    size_t n = 0;
    for (size_t i = 0; i < REPLY_ERR_CODES; i++) {
        lines[n++] = (struct line){reply_err_codes[i], SUMB(errs.by_code[i])};
    }
    for (uint32_t t = 0; t < srv->nthreads; t++) {
        struct reply_errstats *e = &srv->shards[t].stats.errs;
        uint32_t used = atomic_load_explicit(&e->others, memory_order_acquire);
        for (uint32_t i = 0; i < used; i++) {
            const struct reply_other_code *o = &e->other[i];
            uint64_t c = STAT_GET(o->count) - STAT_GET(o->base);
            size_t k = 0;
            while (k < n && strcmp(lines[k].name, o->name) != 0) {
                k++;
            }
            if (k < n) {
                lines[k].n += c;
            } else if (n < KV_ARRAY_LEN(lines)) {
                lines[n++] = (struct line){o->name, c};
            }
        }
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort by name */
        struct line l = lines[i];
        size_t k = i;
        while (k > 0 && strcmp(lines[k - 1].name, l.name) > 0) {
            lines[k] = lines[k - 1];
            k--;
        }
        lines[k] = l;
    }
    for (size_t i = 0; i < n; i++) {
        if (lines[i].n > 0) {
            kv_text_add(b, "errorstat_%s:count=%llu\r\n", lines[i].name,
                        (unsigned long long)lines[i].n);
        }
    }
}

uint64_t cmd_stats_hist(struct server *srv, size_t row, uint64_t *out)
{
    KV_ASSERT(row < KVD_STAT_ROWS);
    uint64_t total = 0;
    for (size_t b = 0; b < LATENCY_BUCKETS; b++) {
        out[b] = SUMB(cmd_hist[row][b]);
        total += out[b];
    }
    return total;
}

/* INFO instantaneous_*: shard 0's timer samples the totals every 100 ms into a ring of
 * Redis's 16 samples (one writer; INFO on any shard reads them, relaxed). */
#define INST_SAMPLES 16
static struct {
    _Atomic uint64_t ops[INST_SAMPLES], in[INST_SAMPLES], out[INST_SAMPLES]; /* per second */
    int64_t last_ms;
    uint64_t last_ops, last_in, last_out;
    uint32_t next;
} inst;

void cmd_info_sample(struct server *srv, int64_t now_ms)
{
    if (inst.last_ms != 0 && now_ms - inst.last_ms < 100) {
        return;
    }
    uint64_t ops = SUM(commands), in = SUM(net_in_bytes), out = SUM(net_out_bytes);
    if (inst.last_ms != 0) {
        uint64_t dt = (uint64_t)(now_ms - inst.last_ms);
        STAT_SET(inst.ops[inst.next], (ops - inst.last_ops) * 1000 / dt);
        STAT_SET(inst.in[inst.next], (in - inst.last_in) * 1000 / dt);
        STAT_SET(inst.out[inst.next], (out - inst.last_out) * 1000 / dt);
        inst.next = (inst.next + 1) % INST_SAMPLES;
    }
    inst.last_ms = now_ms;
    inst.last_ops = ops;
    inst.last_in = in;
    inst.last_out = out;
}

static uint64_t inst_mean(_Atomic uint64_t *v)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < INST_SAMPLES; i++) {
        sum += STAT_GET(v[i]);
    }
    return sum / INST_SAMPLES;
}

/* The process's run id (and the replication id, from another seed): 40 hex digits, the
 * same for the process's life. */
static void info_id(struct server *srv, const char *what, char out[KV_SHA1_HEX])
{
    char seed[128];
    int n = snprintf(seed, sizeof seed, "%s %d %lld %p", what, (int)getpid(),
                     (long long)srv->start_ms, (void *)srv);
    kv_sha1_hex(seed, (size_t)n, out);
}

void cmd_info(struct cmd_ctx *x)
{
    struct server *srv = x->sh->srv;
    struct kv_text b = {.cap = INFO_BYTES_MAX};
    b.p = mi_heap_malloc(x->sh->heap, b.cap);
    KV_ASSERT(b.p != NULL);
    b.p[0] = '\0';
    int64_t now = x->now_ms;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int64_t now_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    char run_id[KV_SHA1_HEX], replid[KV_SHA1_HEX];
    info_id(srv, "run", run_id);
    info_id(srv, "replication", replid);
    if (want(x->argc, x->argv, "server", true)) {
        kv_text_add(&b,
                    "# Server\r\nredis_version:" KVD_REDIS_VERSION
                    "\r\nkvd_version:%s\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n"
                    "redis_build_id:0\r\nredis_mode:standalone\r\n"
                    "os:Linux\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\n"
                    "multiplexing_api:io_uring\r\natomicvar_api:c11-builtin\r\n"
                    "gcc_version:%d.%d.%d\r\nprocess_id:%d\r\nprocess_supervised:%s\r\n"
                    "run_id:%s\r\ntcp_port:%d\r\nserver_time_usec:%lld\r\n"
                    "uptime_in_seconds:%lld\r\nuptime_in_days:%lld\r\n"
                    "hz:%lld\r\nconfigured_hz:%lld\r\nlru_clock:%lld\r\n"
                    "executable:%s\r\nconfig_file:%s\r\nio_threads_active:0\r\n"
                    "shard_threads:%u\r\npartitions:%u\r\n\r\n",
                    KV_VERSION, __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__, (int)getpid(),
                    kvd_supervised, run_id, srv->port, (long long)now_us,
                    (long long)((now - srv->start_ms) / 1000),
                    (long long)((now - srv->start_ms) / 86400000),
                    (long long)KV_CONF_GET(kvd_settings.hz),
                    (long long)KV_CONF_GET(kvd_settings.hz), (long long)((now / 1000) & 0xffffff),
                    kvd_executable, kvd_conf_users.abs_path, srv->nthreads, srv->route->count);
    }
    if (want(x->argc, x->argv, "clients", true)) {
        kv_text_add(
            &b,
            "# Clients\r\nconnected_clients:%lld\r\ncluster_connections:0\r\nmaxclients:%lld\r\n"
            "client_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\n"
            "blocked_clients:%llu\r\ntracking_clients:%llu\r\nclients_in_timeout_table:0\r\n"
            "watching_clients:%llu\r\ntotal_watched_keys:%llu\r\n\r\n",
            (long long)atomic_load(&srv->clients), (long long)KV_CONF_GET(kvd_settings.maxclients),
            (unsigned long long)SUM(blocked_clients), (unsigned long long)SUM(tracking_clients),
            (unsigned long long)SUM(watching_clients), (unsigned long long)SUM(watched_keys));
    }
    if (want(x->argc, x->argv, "memory", true)) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        uint64_t used = SUM(mem_bytes);
        long long rss = current_rss_bytes();
        long long max = (long long)KV_CONF_GET(kvd_settings.maxmemory);
        long long peak = (long long)ru.ru_maxrss * 1024;
        long long sys = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
        char max_human[32], rss_human[32], peak_human[32], sys_human[32];
        bytes_to_human(max_human, sizeof max_human, max);
        bytes_to_human(rss_human, sizeof rss_human, rss);
        bytes_to_human(peak_human, sizeof peak_human, peak);
        bytes_to_human(sys_human, sizeof sys_human, sys);
        size_t nlibs, nfns, fn_bytes, script_bytes;
        func_counts(&nlibs, &nfns, &fn_bytes);
        size_t nscripts = script_count(&script_bytes);
        uint64_t vm_eval = SUM(lua_eval_bytes), vm_fn = SUM(lua_fn_bytes);
        char lua_human[32], vm_human[32], scripts_human[32];
        bytes_to_human(lua_human, sizeof lua_human, (long long)vm_eval);
        bytes_to_human(vm_human, sizeof vm_human, (long long)(vm_eval + vm_fn));
        bytes_to_human(scripts_human, sizeof scripts_human, (long long)(script_bytes + fn_bytes));
        /* (kvd's used_memory is its tables: the peak is the process's, from getrusage) */
        kv_text_add(&b,
                    "# Memory\r\nused_memory:%llu\r\nused_memory_human:%.2fM\r\n"
                    "used_memory_rss:%lld\r\nused_memory_rss_human:%s\r\nused_memory_peak:%lld\r\n"
                    "used_memory_peak_human:%s\r\ntotal_system_memory:%lld\r\n"
                    "total_system_memory_human:%s\r\n",
                    (unsigned long long)used, (double)used / (1024.0 * 1024.0), rss, rss_human,
                    peak, peak_human, sys, sys_human);
        /* the Lua interpreters (summed over the shards) and the scripts and libraries */
        kv_text_add(&b,
                    "used_memory_lua:%llu\r\nused_memory_vm_eval:%llu\r\n"
                    "used_memory_lua_human:%s\r\nused_memory_scripts_eval:%zu\r\n"
                    "number_of_cached_scripts:%zu\r\nnumber_of_functions:%zu\r\n"
                    "number_of_libraries:%zu\r\nused_memory_vm_functions:%llu\r\n"
                    "used_memory_vm_total:%llu\r\nused_memory_vm_total_human:%s\r\n"
                    "used_memory_functions:%zu\r\nused_memory_scripts:%zu\r\n"
                    "used_memory_scripts_human:%s\r\n",
                    (unsigned long long)vm_eval, (unsigned long long)vm_eval, lua_human,
                    script_bytes, nscripts, nfns, nlibs, (unsigned long long)vm_fn,
                    (unsigned long long)(vm_eval + vm_fn), vm_human, fn_bytes,
                    script_bytes + fn_bytes, scripts_human);
        /* Redis's breakdown, as far as kvd has its parts: the dataset is the keys' and
         * values' bytes, the overhead the rest of the tables; no replication, AOF
         * buffer, cluster links or defragmentation (0) */
        uint64_t data = SUM(data_bytes);
        uint64_t dataset = data < used ? data : used;
        kv_text_add(&b,
                    "used_memory_overhead:%llu\r\nused_memory_startup:0\r\n"
                    "used_memory_dataset:%llu\r\nused_memory_dataset_perc:%.2f%%\r\n"
                    "used_memory_peak_perc:%.2f%%\r\nallocator_allocated:%llu\r\n"
                    "allocator_active:%llu\r\nallocator_resident:%lld\r\n"
                    "allocator_frag_ratio:1.00\r\nallocator_frag_bytes:0\r\n"
                    "allocator_rss_ratio:1.00\r\nallocator_rss_bytes:0\r\n"
                    "rss_overhead_ratio:1.00\r\nrss_overhead_bytes:0\r\n"
                    "mem_fragmentation_bytes:%lld\r\nmem_not_counted_for_evict:0\r\n"
                    "mem_replication_backlog:0\r\nmem_total_replication_buffers:0\r\n"
                    "mem_clients_slaves:0\r\nmem_clients_normal:0\r\nmem_cluster_links:0\r\n"
                    "mem_aof_buffer:0\r\n",
                    (unsigned long long)(used - dataset), (unsigned long long)dataset,
                    used > 0 ? 100.0 * (double)dataset / (double)used : 0.0,
                    peak > 0 ? 100.0 * (double)used / (double)peak : 0.0, (unsigned long long)used,
                    (unsigned long long)used, rss, rss - (long long)used);
        kv_text_add(&b,
                    "maxmemory:%lld\r\nmaxmemory_human:%s\r\nmaxmemory_policy:%s\r\n"
                    "mem_fragmentation_ratio:%.2f\r\nmem_allocator:mimalloc\r\n"
                    "active_defrag_running:0\r\nlazyfree_pending_objects:%llu\r\n"
                    "lazyfreed_objects:0\r\n\r\n",
                    max, max_human, evict_policy_names[KV_CONF_GET(kvd_settings.maxmemory_policy)],
                    used > 0 ? (double)rss / (double)used : 0.0,
                    (unsigned long long)SUM(lazyfree_pending));
    }
    if (want(x->argc, x->argv, "persistence", true)) {
        info_persistence(&b, srv, x->sh->now_ms);
    }
    if (want(x->argc, x->argv, "stats", true)) {
        size_t nchans, npats, nschans;
        pubsub_counts(&nchans, &npats, &nschans);
        kv_text_add(
            &b,
            "# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
            "total_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
            "rejected_connections:%llu\r\nexpired_keys:%llu\r\nevicted_keys:%llu\r\n"
            "keyspace_hits:%llu\r\nkeyspace_misses:%llu\r\ncommands_forwarded:%llu\r\n"
            "shard_wakeups_sent:%llu\r\nshard_queue_full_pauses:%llu\r\n"
            "recv_buffer_exhaustions:%llu\r\ncross_shard_transactions:%llu\r\n"
            "total_error_replies:%llu\r\ninstantaneous_ops_per_sec:%llu\r\n"
            "instantaneous_input_kbps:%.2f\r\ninstantaneous_output_kbps:%.2f\r\n"
            "pubsub_channels:%zu\r\npubsub_patterns:%zu\r\npubsubshard_channels:%zu\r\n"
            "tracking_total_keys:%llu\r\n"
            "tracking_total_items:%llu\r\ntracking_total_prefixes:%llu\r\n"
            "client_output_buffer_limit_disconnections:%llu\r\n"
            /* what kvd has no part of (forks, replication, defragmentation, ...): 0 */
            "instantaneous_input_repl_kbps:0.00\r\ninstantaneous_output_repl_kbps:0.00\r\n"
            "total_net_repl_input_bytes:0\r\ntotal_net_repl_output_bytes:0\r\n"
            "sync_full:0\r\nsync_partial_ok:0\r\nsync_partial_err:0\r\n"
            "expired_stale_perc:0.00\r\nexpired_time_cap_reached_count:0\r\n"
            "expire_cycle_cpu_milliseconds:0\r\nevicted_clients:0\r\n"
            "total_eviction_exceeded_time:0\r\ncurrent_eviction_exceeded_time:0\r\n"
            "latest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\n"
            "slave_expires_tracked_keys:0\r\nactive_defrag_hits:0\r\nactive_defrag_misses:0\r\n"
            "active_defrag_key_hits:0\r\nactive_defrag_key_misses:0\r\n"
            "total_active_defrag_time:0\r\ncurrent_active_defrag_time:0\r\n"
            "unexpected_error_replies:0\r\ndump_payload_sanitizations:0\r\n"
            "total_reads_processed:%llu\r\ntotal_writes_processed:%llu\r\n"
            "io_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\n"
            "reply_buffer_shrinks:0\r\nreply_buffer_expands:0\r\n\r\n",
            (unsigned long long)SUMB(connections), (unsigned long long)SUMB(commands),
            (unsigned long long)SUMB(net_in_bytes), (unsigned long long)SUMB(net_out_bytes),
            (unsigned long long)SUMB(rejected), (unsigned long long)SUMB(expired_keys),
            (unsigned long long)SUMB(evicted_keys), (unsigned long long)SUMB(keyspace_hits),
            (unsigned long long)SUMB(keyspace_misses), (unsigned long long)SUMB(forwarded),
            (unsigned long long)SUMB(wakeups_sent), (unsigned long long)SUMB(queue_full_pauses),
            (unsigned long long)SUMB(recv_nobufs), (unsigned long long)SUMB(txn_cross),
            (unsigned long long)SUMB(errs.total), (unsigned long long)inst_mean(inst.ops),
            (double)inst_mean(inst.in) / 1024.0, (double)inst_mean(inst.out) / 1024.0, nchans,
            npats, nschans, (unsigned long long)SUM(tracking_keys),
            (unsigned long long)SUM(tracking_items), (unsigned long long)track_prefixes(),
            (unsigned long long)SUMB(obuf_closed), (unsigned long long)SUMB(commands),
            (unsigned long long)SUMB(commands));
    }
    if (want(x->argc, x->argv, "replication", true)) {
        kv_text_add(&b,
                    "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
                    "master_failover_state:no-failover\r\nmaster_replid:%s\r\n"
                    "master_replid2:0000000000000000000000000000000000000000\r\n"
                    "master_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n"
                    "repl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:0\r\n"
                    "repl_backlog_histlen:0\r\n\r\n",
                    replid);
    }
    if (want(x->argc, x->argv, "cluster", true)) { /* (kvd's cluster is its own) */
        kv_text_add(&b, "# Cluster\r\ncluster_enabled:0\r\n\r\n");
    }
    if (want(x->argc, x->argv, "cpu", true)) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        struct rusage th; /* (the thread answering: Redis's main thread) */
        getrusage(RUSAGE_THREAD, &th);
        kv_text_add(&b,
                    "# CPU\r\nused_cpu_sys:%ld.%06ld\r\nused_cpu_user:%ld.%06ld\r\n"
                    "used_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n"
                    "used_cpu_sys_main_thread:%ld.%06ld\r\nused_cpu_user_main_thread:%ld.%06ld"
                    "\r\n\r\n",
                    (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, (long)ru.ru_utime.tv_sec,
                    (long)ru.ru_utime.tv_usec, (long)th.ru_stime.tv_sec, (long)th.ru_stime.tv_usec,
                    (long)th.ru_utime.tv_sec, (long)th.ru_utime.tv_usec);
    }
    if (want(x->argc, x->argv, "commandstats", false)) {
        kv_text_add(&b, "# Commandstats\r\n");
        for (size_t i = 0; i < cmd_stat_rows(); i++) {
            uint64_t calls = SUMB(cmd_calls[i]);
            uint64_t usec = SUMB(cmd_usec[i]);
            uint64_t rejected = SUMB(cmd_rejected[i]);
            uint64_t failed = SUMB(cmd_failed[i]);
            if (calls > 0 || rejected > 0 || failed > 0) {
                kv_text_add(
                    &b,
                    "cmdstat_%s:calls=%llu,usec=%llu,usec_per_call=%.2f,rejected_calls=%llu,"
                    "failed_calls=%llu\r\n",
                    cmd_stat_name(i), (unsigned long long)calls, (unsigned long long)usec,
                    calls ? (double)usec / (double)calls : 0.0, (unsigned long long)rejected,
                    (unsigned long long)failed);
            }
        }
        kv_text_add(&b, "\r\n");
    }
    if (want(x->argc, x->argv, "errorstats", true)) {
        kv_text_add(&b, "# Errorstats\r\n");
        info_errorstats(&b, srv);
        kv_text_add(&b, "\r\n");
    }
    if (want(x->argc, x->argv, "latencystats", false)) {
        kv_text_add(&b, "# Latencystats\r\n");
        for (size_t i = 0; i < cmd_stat_rows(); i++) {
            uint64_t h[LATENCY_BUCKETS];
            uint64_t total = cmd_stats_hist(srv, i, h);
            if (total > 0) {
                latency_info_line(&b, cmd_stat_name(i), total, h);
            }
        }
        kv_text_add(&b, "\r\n");
    }
    if (want(x->argc, x->argv, "keyspace", true)) {
        info_keyspace(&b, srv, x->sh->now_ms);
    }
    /* Redis ends the text without the final blank line. */
    while (b.len >= 4 && b.p[b.len - 1] == '\n' && b.p[b.len - 3] == '\n') {
        b.len -= 2;
    }
    if (conn_resp(x->conn) == 3) {
        reply_verbatim(x->out, b.p, b.len);
    } else {
        reply_bulk(x->out, b.p, b.len);
    }
    mi_free(b.p);
}

/* ---- whole keyspace ----------------------------------------------------------------- */

/* Keys of the selected database in this shard's partition `slot`. */
static uint64_t part_keys(const struct cmd_ctx *x, uint32_t slot)
{
    const struct tbl *t = shard_part_peek(x->sh, slot, x->db);
    if (t == NULL) {
        return 0;
    }
    struct tbl_stats st;
    tbl_stats(t, &st);
    return st.entries;
}

void cmd_dbsize(struct cmd_ctx *x)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < x->sh->table_count; i++) {
        n += part_keys(x, i);
    }
    x->sum = (int64_t)n;
    reply_int(x->out, (int64_t)n);
}

struct key_list {
    struct shard *sh;
    const struct resp_arg *pattern; /* NULL: all */
    int64_t now_ms;
    const struct tbl_entry **v;
    size_t n, cap;
};

static void collect(void *ctx, const struct tbl_entry *e)
{
    struct key_list *l = ctx;
    size_t klen;
    const char *k = tbl_entry_key(e, &klen);
    if (l->pattern != NULL && !(l->pattern->len == 1 && l->pattern->ptr[0] == '*') &&
        !kv_glob_match(l->pattern->ptr, l->pattern->len, k, klen, false)) {
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = mi_heap_realloc(l->sh->heap, l->v, l->cap * sizeof l->v[0]);
        KV_ASSERT(l->v != NULL);
    }
    l->v[l->n++] = e;
}

static void reply_keys(struct cmd_ctx *x, struct key_list *l)
{
    reply_array(x->out, l->n);
    for (size_t i = 0; i < l->n; i++) {
        size_t klen;
        const char *k = tbl_entry_key(l->v[i], &klen);
        reply_bulk(x->out, k, klen);
    }
    mi_free(l->v);
}

void cmd_keys(struct cmd_ctx *x)
{
    struct key_list l = {.sh = x->sh, .pattern = &x->argv[1], .now_ms = x->now_ms};
    for (uint32_t i = 0; i < x->sh->table_count; i++) {
        struct tbl *t = shard_part_peek(x->sh, i, x->db);
        uint64_t cur = 0;
        while (t != NULL) {
            cur = tbl_scan(t, cur, x->now_ms, collect, &l);
            if (cur == 0) {
                break;
            }
        }
    }
    reply_keys(x, &l);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t v = *s;
    v ^= v << 13;
    v ^= v >> 7;
    v ^= v << 17;
    return *s = v;
}

/*
 * RANDOMKEY, one shard's part: a partition picked with a chance proportional to its
 * keys, a random position in its table, and a random key of the segment found there
 * (another partition if that one's keys are all expired). The merge (CMD_MERGE_RANDOM)
 * picks among the shards' keys in proportion to their key counts, so every shard's keys
 * are as likely as Redis's; the part is [key count, key or null], or the key alone when
 * this is the only shard.
 */
void cmd_randomkey(struct cmd_ctx *x)
{
    static _Thread_local uint64_t seed;
    if (seed == 0) {
        seed = kv_clock_mono_ns() | 1;
    }
    uint32_t n = x->sh->table_count;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        total += part_keys(x, i);
    }
    const char *key = NULL;
    size_t klen = 0;
    struct key_list l = {.sh = x->sh, .now_ms = x->now_ms};
    uint64_t r = total > 0 ? xorshift(&seed) % total : 0;
    uint32_t first = 0;
    for (uint64_t acc = 0; first < n && total > 0; first++) {
        acc += part_keys(x, first);
        if (r < acc) {
            break;
        }
    }
    for (uint32_t tries = 0; total > 0 && tries < n && key == NULL; tries++) {
        struct tbl *t = shard_part_peek(x->sh, (first + tries) % n, x->db);
        if (t == NULL) {
            continue;
        }
        uint64_t start = xorshift(&seed);
        uint64_t cur = start;
        /* From a random position to the end, then from the start: at most two passes
         * that find nothing, each bounded by the table's segments. */
        do {
            cur = tbl_scan(t, cur, x->now_ms, collect, &l);
        } while (l.n == 0 && cur != 0);
        for (cur = 0; l.n == 0;) {
            cur = tbl_scan(t, cur, x->now_ms, collect, &l);
            if (cur == 0 || cur > start) {
                break;
            }
        }
        if (l.n > 0) {
            key = tbl_entry_key(l.v[xorshift(&seed) % l.n], &klen);
        }
    }
    if (x->sh->srv->nthreads > 1) {
        reply_array(x->out, 2);
        reply_int(x->out, (int64_t)total);
    }
    if (key != NULL) {
        reply_bulk(x->out, key, klen);
    } else {
        reply_null(x->out);
    }
    mi_free(l.v);
}

bool cmd_flushall_check(struct cmd_ctx *x)
{
    if (x->argc > 2 ||
        (x->argc == 2 && !cmd_arg_is(&x->argv[1], "sync") && !cmd_arg_is(&x->argv[1], "async"))) {
        reply_err_syntax(x->out);
        return false;
    }
    return true;
}

/* True if key (db, key) exists on this shard now (NULL tables are empty). */
static bool key_there(struct shard *sh, uint32_t db, const char *key, size_t klen, uint64_t h,
                      int64_t now_ms)
{
    const struct route_part *p = route_lookup(sh->srv->route, h);
    KV_ASSERT(p->thread == sh->id);
    struct tbl *t = shard_part_peek(sh, p->slot, db);
    return t != NULL && tbl_get(t, key, klen, h, now_ms) != NULL;
}

/* The databases a flush or swap concerns, for the WATCH predicates below. */
struct db_pair {
    struct cmd_ctx *x;
    uint32_t a, b; /* FLUSHALL: a = UINT32_MAX (every database) */
};

/* A watched key that exists when FLUSHALL / FLUSHDB empties its database changed (as in
 * Redis: a missing key, or one already expired, did not). */
static bool key_flushed(void *arg, uint32_t db, const char *key, size_t klen, uint64_t h)
{
    const struct db_pair *f = arg;
    return (f->a == UINT32_MAX || db == f->a) &&
           key_there(f->x->sh, db, key, klen, h, f->x->now_ms);
}

/* Empties database `db` of every partition of this shard (the tables are made again at
 * their next use). ASYNC: the old tables are freed a few segments per loop turn
 * (shard_drop_table), so that emptying millions of keys stalls no request; SYNC frees
 * them now. */
static void flush_db(struct cmd_ctx *x, uint32_t db, bool async)
{
    for (uint32_t i = 0; i < x->sh->table_count; i++) {
        struct tbl *t = shard_part_swap(x->sh, i, db, NULL);
        if (t == NULL) {
            continue; /* never used here: nothing to flush, nothing to log */
        }
        struct tbl_stats st;
        tbl_stats(t, &st);
        cmd_count_changes(x->sh, (int64_t)st.entries); /* Redis: a change per key removed */
        if (async) {
            shard_drop_table(x->sh, t);
        } else {
            tbl_destroy(t);
        }
        cmd_log_flush(x->sh, i, db);
    }
}

void cmd_flushall(struct cmd_ctx *x)
{
    if (!cmd_flushall_check(x)) {
        return;
    }
    struct db_pair f = {.x = x, .a = UINT32_MAX};
    watch_touch_if(x->sh->watch, key_flushed, &f);
    bool async = x->argc == 2 && cmd_arg_is(&x->argv[1], "async");
    for (uint32_t db = 0; db < x->sh->ndb; db++) {
        flush_db(x, db, async);
    }
    track_flushed(x->sh);
    if (!x->sh->srv->persist && dump_points_any()) {
        /* as Redis with save points: the emptied data set is saved, so that a restart
         * does not bring back what the last dump held. Each shard asks once its part is
         * done: a dump another shard starts earlier is followed by this one's. */
        dump_request(x->sh, false);
    }
    reply_ok(x->out);
}

void cmd_flushdb(struct cmd_ctx *x)
{
    if (!cmd_flushall_check(x)) {
        return;
    }
    struct db_pair f = {.x = x, .a = x->db};
    watch_touch_if(x->sh->watch, key_flushed, &f);
    flush_db(x, x->db, x->argc == 2 && cmd_arg_is(&x->argv[1], "async"));
    track_flushed(x->sh);
    reply_ok(x->out);
}

/* SWAPDB's arguments, checked on the client's shard before the fan-out: both parsed as
 * ints first, then both ranges (Redis's order). */
static bool swapdb_args(struct cmd_ctx *x, uint32_t *a, uint32_t *b)
{
    int64_t v[2];
    static const char *const msg[2] = {"ERR invalid first DB index", "ERR invalid second DB index"};
    for (int i = 0; i < 2; i++) {
        if (!cmd_parse_i64(&x->argv[1 + i], &v[i]) || v[i] < INT32_MIN || v[i] > INT32_MAX) {
            reply_error(x->out, "%s", msg[i]);
            return false;
        }
    }
    if (v[0] < 0 || v[0] >= (int64_t)x->sh->ndb || v[1] < 0 || v[1] >= (int64_t)x->sh->ndb) {
        reply_error(x->out, "ERR DB index is out of range");
        return false;
    }
    *a = (uint32_t)v[0];
    *b = (uint32_t)v[1];
    return true;
}

bool cmd_swapdb_check(struct cmd_ctx *x)
{
    uint32_t a, b;
    return swapdb_args(x, &a, &b);
}

/* A watched key of either database that exists in either changed (Redis 7.0's
 * touchAllWatchedKeysInDb, both ways). */
static bool key_swapped(void *arg, uint32_t db, const char *key, size_t klen, uint64_t h)
{
    const struct db_pair *f = arg;
    return (db == f->a || db == f->b) && (key_there(f->x->sh, f->a, key, klen, h, f->x->now_ms) ||
                                          key_there(f->x->sh, f->b, key, klen, h, f->x->now_ms));
}

/*
 * SWAPDB a b, on every shard: each swaps the two databases' tables in each of its
 * partitions and logs it per partition (WALFMT_SWAPDB). The shards swap one after the
 * other, not at one instant: a client of another shard may, for the few microseconds in
 * between, find some keys swapped and others not.
 */
void cmd_swapdb(struct cmd_ctx *x)
{
    uint32_t a, b;
    if (!swapdb_args(x, &a, &b)) {
        return;
    }
    if (a != b) {
        struct db_pair f = {.x = x, .a = a, .b = b};
        watch_touch_if(x->sh->watch, key_swapped, &f);
        for (uint32_t i = 0; i < x->sh->table_count; i++) {
            struct tbl *ta = shard_part_swap(x->sh, i, a, NULL);
            struct tbl *tb = shard_part_swap(x->sh, i, b, ta);
            shard_part_swap(x->sh, i, a, tb);
            if (ta != NULL || tb != NULL) {
                cmd_log_swapdb(x->sh, i, a, b);
            }
        }
    }
    if (x->sh->id == 0) {
        cmd_count_changes(x->sh, 1); /* one change for the whole node, as Redis's dirty++ */
    }
    reply_ok(x->out);
}

/* SCAN's arguments: false after replying the error (Redis's texts and order). */
static bool scan_args(struct cmd_ctx *x, uint64_t *cur, const struct resp_arg **pattern,
                      int64_t *count, bool *type_none)
{
    if (!cmd_parse_cursor(&x->argv[1], cur)) {
        reply_error(x->out, "ERR invalid cursor");
        return false;
    }
    *pattern = NULL;
    *count = SCAN_COUNT_DEFAULT;
    *type_none = false;
    for (size_t i = 2; i < x->argc; i += 2) {
        if (i + 1 >= x->argc) {
            reply_err_syntax(x->out);
            return false;
        }
        if (cmd_arg_is(&x->argv[i], "match")) {
            *pattern = &x->argv[i + 1];
        } else if (cmd_arg_is(&x->argv[i], "count")) {
            if (!cmd_parse_i64(&x->argv[i + 1], count)) {
                reply_err_not_int(x->out);
                return false;
            }
            if (*count < 1) {
                reply_err_syntax(x->out);
                return false;
            }
        } else if (cmd_arg_is(&x->argv[i], "type")) {
            *type_none = !cmd_arg_is(&x->argv[i + 1], "string");
        } else {
            reply_err_syntax(x->out);
            return false;
        }
    }
    return true;
}

bool cmd_scan_check(struct cmd_ctx *x)
{
    uint64_t cur;
    const struct resp_arg *pattern;
    int64_t count;
    bool type_none;
    return scan_args(x, &cur, &pattern, &count, &type_none);
}

/*
 * SCAN cursor [MATCH pattern] [COUNT count] [TYPE type], one shard's part of it (the
 * command runs on every shard; cmd_scan_merge makes the reply). The cursor holds the
 * index of a partition in the map (top 16 bits) and the table position within it
 * divided by 2^16 (positions are multiples of a segment's span, at least 2^38): the
 * scan visits the partitions in map order. This shard scans its own partitions from
 * the cursor on, in that order, until it has COUNT keys or has visited COUNT segments
 * (an empty partition counts as one), as Redis's SCAN stops at COUNT keys or 10 x COUNT
 * buckets. Its reply, for the merge:
 *
 *   [resume partition, resume position >> 16, then per partition visited:
 *    partition, end position >> 16 (0: done with it), [keys...]]
 *
 * where "resume" is where this shard would go on: the partition it stopped inside, the
 * next partition of its own it did not visit, or the map's end.
 */
struct scan_chunk { /* the keys one partition gave (cmd_scan) */
    uint32_t idx;
    uint64_t end;
    size_t first, n;
};

void cmd_scan(struct cmd_ctx *x)
{
    const struct route_table *rt = x->sh->srv->route;
    uint64_t cur;
    const struct resp_arg *pattern;
    int64_t count;
    bool type_none;
    if (!scan_args(x, &cur, &pattern, &count, &type_none)) {
        return;
    }
    uint64_t idx = cur >> 48;
    uint64_t pos = cur << 16;
    if (idx >= rt->count) {
        idx = 0; /* a cursor never issued: start over, as Redis tolerates */
        pos = 0;
    }
    struct key_list l = {.sh = x->sh, .pattern = pattern, .now_ms = x->now_ms};
    struct scan_chunk *chunk = mi_heap_malloc(x->sh->heap, x->sh->table_count * sizeof *chunk);
    KV_ASSERT(chunk != NULL);
    size_t nchunks = 0;
    int64_t visited = 0;
    uint64_t resume_idx = rt->count, resume_pos = 0;
    for (uint64_t p = idx; p < rt->count; p++) {
        const struct route_part *part = &rt->parts[p];
        if (part->thread != x->sh->id) {
            continue;
        }
        if (visited >= count || (int64_t)l.n >= count) {
            resume_idx = p; /* not visited */
            break;
        }
        KV_ASSERT(nchunks < x->sh->table_count);
        struct tbl *t = shard_part_peek(x->sh, part->slot, x->db);
        uint64_t at = p == idx ? pos : 0;
        size_t before = l.n;
        if (t == NULL) {
            at = 0; /* nothing of this database in the partition */
            visited++;
        }
        while (t != NULL) {
            at = tbl_scan(t, at, x->now_ms, collect, &l);
            visited++;
            if (at == 0 || (int64_t)l.n >= count || visited >= count) {
                break;
            }
        }
        KV_ASSERT((at & 0xffff) == 0);
        chunk[nchunks++] =
            (struct scan_chunk){.idx = (uint32_t)p, .end = at, .first = before, .n = l.n - before};
        if (at != 0) {
            resume_idx = p; /* stopped inside it */
            resume_pos = at;
            break;
        }
    }
    if (x->sh->srv->nthreads == 1) { /* the only part: the reply itself */
        uint64_t next = resume_idx == rt->count ? 0 : (resume_idx << 48) | (resume_pos >> 16);
        char cbuf[24];
        int n = snprintf(cbuf, sizeof cbuf, "%llu", (unsigned long long)next);
        reply_array(x->out, 2);
        reply_bulk(x->out, cbuf, (size_t)n);
        if (type_none) {
            l.n = 0;
        }
        mi_free(chunk);
        reply_keys(x, &l);
        return;
    }
    reply_array(x->out, 2 + 3 * nchunks);
    reply_int(x->out, resume_idx == rt->count ? -1 : (int64_t)resume_idx); /* -1: done */
    reply_int(x->out, (int64_t)(resume_pos >> 16));
    for (size_t c = 0; c < nchunks; c++) {
        reply_int(x->out, chunk[c].idx);
        reply_int(x->out, (int64_t)(chunk[c].end >> 16));
        size_t n = type_none ? 0 : chunk[c].n;
        reply_array(x->out, n);
        for (size_t i = 0; i < n; i++) {
            size_t klen;
            const char *k = tbl_entry_key(l.v[chunk[c].first + i], &klen);
            reply_bulk(x->out, k, klen);
        }
    }
    mi_free(chunk);
    mi_free(l.v);
}
