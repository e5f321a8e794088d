/*
 * conn: client connections of a shard: receive, parse, dispatch (locally or to the
 * owning shard), order the replies, send. See conn.c for the design.
 *
 * Thread: every function runs on the shard thread that owns the connection (or, for
 * conn_exec_remote, on the shard executing a forwarded request).
 */
#ifndef KVD_CONN_H
#define KVD_CONN_H

#include "users.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_uring_cqe;
struct shard;
struct xmsg;
struct conn;

/* Takes a freshly accepted socket (closes it if the server is full). */
void conn_accept(struct shard *sh, int fd);

/* A completion whose user_data belongs to a connection. */
void conn_on_cqe(struct shard *sh, struct io_uring_cqe *cqe, uint64_t ud);

/* Executes a request forwarded by another shard and sends the reply back. */
void conn_exec_remote(struct shard *sh, const struct xmsg *m);

/* A reply to a request this shard forwarded. */
void conn_on_reply(struct shard *sh, const struct xmsg *m);

/* XM_PARK: serves shard m->src's cross-shard transaction (runs the operations it posts
 * to sh->txn) until it releases this shard; nothing else runs here meanwhile. */
void conn_txn_serve(struct shard *sh, const struct xmsg *m);

/*
 * redis.call from a script running on this shard (x: the EVAL's context; *db the
 * script's database, which SELECT inside it changes): runs the command where its keys
 * are and returns its reply bytes in RESP `proto` (2, or 3 after redis.setresp(3);
 * conn_blob_free them), or NULL with *err set to
 * the error text, code included, when it may not run from here (a key on another shard
 * in a script run on its keys' shard, keys of RENAME & co in two partitions).
 */
struct cmd_desc;
struct cmd_ctx;
struct resp_arg;
char *conn_script_call(struct cmd_ctx *x, uint32_t *db, int proto, const struct cmd_desc *d,
                       size_t argc, const struct resp_arg *argv, size_t *len, const char **err);
void conn_blob_free(void *p);

/* Counts command d refused inside a script (over maxmemory, a write in a read-only
 * script) as a rejected call of d, as Redis does. */
void conn_script_rejected(struct cmd_ctx *x, const struct cmd_desc *d, size_t argc,
                          const struct resp_arg *argv);
void *conn_blob_alloc(struct shard *sh, size_t n);

/* Pub/sub (pubsub.c): the connection's subscriptions, a message pushed into its output
 * after the replies it waits for, and a message to shard `to` that follows the
 * connection's earlier messages there (c may be NULL: a script or a transaction run on
 * another shard). */
struct pubsub_conn;
struct xmsg;
struct pubsub_conn **conn_pubsub(struct conn *c);
void conn_push(struct conn *c, const void *p, size_t n);
void conn_send_xmsg(struct shard *sh, struct conn *c, uint32_t to, struct xmsg *m);

/* Retries connections waiting for queue space, and replies waiting for it. */
void conn_retry_blocked(struct shard *sh);

/* CLIENT PAUSE / UNPAUSE (the handlers), and the paused connections of this shard: run
 * the commands whose pause is over (each loop turn while some wait); how long until the
 * pause ends (ns, for the loop's sleep), or -1 when none waits. */
void conn_pause(struct shard *sh, int64_t end_ms, int type); /* enum server_pause */
void conn_unpause(struct shard *sh);
void conn_retry_paused(struct shard *sh);
int64_t conn_paused_wait_ns(struct shard *sh);

/* True while replies wait in the overflow lists for space in a queue. */
bool conn_overflow_pending(const struct shard *sh);

/* Start of a loop turn, before its commands: takes up what a CONFIG SET on any thread
 * changed since (the output limit of replies built for other shards' clients). */
void conn_turn_begin(struct shard *sh);

/* Queues one send per connection with output. Once per loop turn. */
void conn_flush(struct shard *sh);

/* Releases replies held for the WAL. Once per loop turn when the WAL is on. */
void conn_durability_turn(struct shard *sh);

/* SAVE: the connection's next reply waits until every shard has finished a snapshot
 * round covering request `target` (appendonly no: until the dump of generation `target`
 * is done, dump.h): +OK, or an error if one failed. With `shutdown` (SHUTDOWN's save),
 * success stops the server and closes the connection without a reply. False if out of
 * memory. */
bool conn_save_wait(struct conn *c, uint64_t target, bool shutdown);

/* CONFIG SET tracking-table-max-keys: the connection's next reply, +OK, waits until
 * every shard applied limit generation `gen` (track_limit_applied). False if out of
 * memory. */
bool conn_track_limit_wait(struct conn *c, uint64_t gen);

/* Completes the SAVEs (and CONFIG SETs) whose waits are over. Once per loop turn. */
void conn_save_turn(struct shard *sh);

/* Parks every other shard for this one, as a cross-shard transaction does (the
 * transaction lock, XM_PARK through the queues, a wait until each serves): nothing runs
 * anywhere else until conn_release_all. False, with nothing done, if the lock is taken
 * or a reply of this shard waits for queue space (try again at a later turn). */
bool conn_park_all(struct shard *sh);
void conn_release_all(struct shard *sh);

/* Parked shard `o` runs aof_switch_parked(lsn) (aof.h); returns once it has. */
void conn_post_aof(struct shard *sh, uint32_t o, uint64_t lsn);

/* Timers: idle timeouts. */
void conn_cron(struct shard *sh, int64_t now_ms);

/* Graceful stop: close connections with nothing in flight; true when none has any. */
void conn_close_idle(struct shard *sh);
bool conn_all_quiet(struct shard *sh);
void conn_close_all(struct shard *sh);

/* Setup and teardown of the shard's reply pool and scratch output. */
int conn_shard_setup(struct shard *sh);
void conn_shard_teardown(struct shard *sh);

/* ---- for the connection commands (cmd_server.c) ------------------------------------ */

enum conn_flag {
    CONN_CLOSING = 1u << 0,     /* being closed: no more input or output */
    CONN_CLOSE_AFTER = 1u << 1, /* close once the queued replies are sent (QUIT) */
    CONN_AUTHED = 1u << 2,      /* passed AUTH (or no password is set) */
    CONN_RECV_ARMED = 1u << 3,  /* a multishot receive is outstanding */
    CONN_SEND_INFLIGHT = 1u << 4,
    CONN_DIRTY = 1u << 5,   /* on the shard's dirty list */
    CONN_BLOCKED = 1u << 6, /* on the shard's blocked list */
    CONN_NOBUFS = 1u << 7,  /* receive ran out of buffers: re-arm at the next flush */
    CONN_KILLED = 1u << 8,
    CONN_TXN_WAIT = 1u << 9,   /* a cross-shard EXEC waits for the transaction lock */
    CONN_PUSH_OVER = 1u << 10, /* a pub/sub message passed its output limit: closed at
                                * the next flush (not while messages are delivered) */
    CONN_PAUSED = 1u << 11,    /* its next command (kept aside) waits out CLIENT PAUSE */
    CONN_MONITOR = 1u << 12,   /* MONITOR: gets every command's line (monitor.c) */
    CONN_LOCAL = 1u << 13,     /* its peer is on the loopback interface (or a Unix socket) */
    CONN_UNIX = 1u << 14,      /* it came through the Unix socket (unixsocket) */
};

struct conn_info {
    uint64_t id;
    char addr[64];
    char laddr[64];
    int fd;
    const char *name;
    int64_t age_s;
    int64_t idle_s;
    int resp;
    size_t qbuf;     /* bytes received, not parsed yet (and the running command's) */
    size_t argv_mem; /* bytes of the running command's arguments (the caller's) */
    size_t rbs;      /* its receive buffer: recv-buffer-size */
    size_t omem;
    size_t tot_mem; /* its state, parser, queued input and output */
    const char *last_cmd;
    int multi; /* commands queued in MULTI, -1 outside a transaction */
    uint32_t db;
    size_t sub, psub, ssub; /* channels, patterns and shard channels subscribed */
    char flags[16];         /* CLIENT LIST flags= ("N" when none) */
    int64_t redir;          /* CLIENT TRACKING's redirect (-1: not tracking) */
    const char *user;       /* its ACL user's name */
};

/* For the client running the command (CLIENT LIST / INFO about itself): its query
 * buffer holds that command (as RESP: Redis's qbuf=26 for CLIENT LIST) and its
 * arguments' bytes (argv-mem), as in Redis while a command runs. */
void conn_info_running(struct conn_info *ci, size_t argc, const struct resp_arg *argv);

uint64_t conn_id(const struct conn *c);

/* This shard's open connection with that id, or NULL (closing ones are gone). */
struct conn *conn_by_id(struct shard *sh, uint64_t id);
/* Whether client id is connected to some shard (locks the others' maps), and which. */
bool conn_id_shard(struct shard *sh, uint64_t id, uint32_t *shard);
/* The connection's CLIENT TRACKING state (track.c; NULL when it never tracked). */
struct track_conn;
struct track_conn **conn_track(struct conn *c);
/* Whether the client is being closed (QUIT answered, an error, a kill): nothing more
 * reaches it. */
bool conn_closing(const struct conn *c);
/* MONITOR mode (monitor.c keeps the registry). */
bool conn_monitor(const struct conn *c);
void conn_set_monitor(struct conn *c, bool on);
int conn_resp(const struct conn *c);
void conn_set_resp(struct conn *c, int proto);
/* The SELECTed database, and SELECT (db below the shard's ndb). */
uint32_t conn_db(const struct conn *c);
void conn_select(struct conn *c, uint32_t db);
bool conn_authed(const struct conn *c);
/* The connection's ACL user (a users.h handle); AUTH and RESET set it. */
void conn_set_user(struct conn *c, uint32_t handle);
uint32_t conn_user(const struct conn *c);
/* Closes the clients whose user was deleted, when any user changed (the shard's
 * timer calls it; a client that sends a command finds out before it runs). */
void conn_users_sweep(struct shard *sh);
/* The CLIENT LIST line (no newline) of client id when it is this shard's, else "id=..
 * cmd=<cmd> user=..": for ACL LOG. */
void conn_client_info(struct shard *sh, uint64_t id, const char *cmd, const char *user, char *buf,
                      size_t cap);
/* Logs a refusal of command d for user u of client id in ACL LOG (users_log). */
void conn_acl_log(struct shard *sh, uint64_t id, const char *cmd, const struct user *u,
                  enum users_denied why, enum users_ctx ctx, const struct cmd_desc *d, size_t argc,
                  const struct resp_arg *argv, size_t pos);
void conn_set_authed(struct conn *c, bool authed);
void conn_set_name(struct conn *c, const char *name, size_t len);
const char *conn_name(const struct conn *c);
void conn_close_after_reply(struct conn *c);
/* MULTI state: whether a transaction is open; drop it (RESET). */
bool conn_in_multi(const struct conn *c);

/* CLIENT REPLY: ON (replies sent), OFF (none from now on), SKIP (none for the next
 * command). The command that sets OFF or SKIP gets no reply either. */
enum conn_reply_mode { CONN_REPLY_ON, CONN_REPLY_OFF, CONN_REPLY_SKIP_NEXT, CONN_REPLY_SKIP };
void conn_set_reply_mode(struct conn *c, enum conn_reply_mode m);
enum conn_reply_mode conn_reply_mode(const struct conn *c);
void conn_txn_discard(struct conn *c);
void conn_info(const struct conn *c, int64_t now_ms, struct conn_info *out);

/* Iterates the shard's connections (for CLIENT LIST / KILL). */
struct conn *conn_first(struct shard *sh);
struct conn *conn_next(struct conn *c);
void conn_kill(struct conn *c);

/* Before a turn's completions run: prefetches the table slots, then entries, of the keys
 * of the requests its receives hold (hints only; see conn.c). Shard thread. */
void conn_prefetch_turn(struct shard *sh);

#endif
