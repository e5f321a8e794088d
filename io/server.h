/*
 * server: the kvd process as a whole: its shard threads, the partition map, and the
 * messages shard threads exchange. Internal to io/ (kvd's modules include it; nothing
 * below io/ does).
 *
 * Threads. N shard threads, each pinned to a core, each owning: one io_uring ring, a
 * listening socket on the shared port (SO_REUSEPORT), a provided-buffer ring for
 * receives, its connections, its partitions' hash tables and a mimalloc heap. Shards
 * share nothing mutable except the SPSC queues between each ordered pair of them and
 * a few relaxed atomic counters (clients connected, the stop flag).
 *
 * Cross-shard requests. A command whose key belongs to another shard's partition is
 * copied into a message (struct xmsg) and pushed on the queue to the owner; the owner
 * executes it and pushes the encoded reply back. A shard that may be asleep in
 * io_uring_submit_and_wait is woken with IORING_OP_MSG_RING, once per loop turn at
 * most (see shard_wake).
 */
#ifndef KVD_SERVER_H
#define KVD_SERVER_H

#include "dump.h"
#include "idmap.h"
#include "kv_clock.h"
#include "kv_tsc.h"
#include "latency.h"
#include "reply.h"
#include "users.h"
#include "wal.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmd_desc;
struct conn;
struct resp_arg;
struct mi_heap_s;
struct resp_pool;
struct route_table;
struct pubsub_local;
struct script_vm;
struct func_set;
struct snap;
struct track_shard;
struct spsc;
struct tbl;
struct wal;
struct held_reply;
struct save_waiter;
struct watch_reg;

#define KVD_THREADS_MAX 256
#define KVD_LISTEN_MAX  16 /* addresses of `bind` */

/* The Redis version kvd answers as (HELLO, INFO, Lua's redis.REDIS_VERSION). */
#define KVD_REDIS_VERSION     "7.0.0"
#define KVD_REDIS_VERSION_NUM 0x070000

/* Kinds of cross-shard messages. */
enum xmsg_kind {
    XM_REQ = 1,        /* execute payload (a serialized command) and reply */
    XM_REPLY = 2,      /* the reply bytes of an XM_REQ */
    XM_UNWATCH = 3,    /* drop the watches of caller_id (no reply) */
    XM_PARK = 4,       /* serve shard `src`'s cross-shard transaction until it releases */
    XM_PUBLISH = 5,    /* deliver payload (u32 channel length, channel, message) to subscribers */
    XM_INVALIDATE = 6, /* CLIENT TRACKING records for this shard's clients (track.c) */
    XM_MONITOR = 7,    /* a MONITOR line for a monitor of this shard (monitor.c) */
    XM_WAKE = 8,       /* nothing: a loop turn (a dump ended: its SAVE clients, dump.c) */
};

/* A set of shards (cross-shard transactions, WATCH). */
struct shardset {
    uint64_t w[KVD_THREADS_MAX / 64];
};

static inline void shardset_add(struct shardset *s, uint32_t i)
{
    s->w[i / 64] |= UINT64_C(1) << (i % 64);
}

static inline bool shardset_has(const struct shardset *s, uint32_t i)
{
    return (s->w[i / 64] >> (i % 64)) & 1u;
}

static inline uint32_t shardset_count(const struct shardset *s)
{
    uint32_t n = 0;
    for (size_t k = 0; k < KVD_THREADS_MAX / 64; k++) {
        n += (uint32_t)__builtin_popcountll(s->w[k]);
    }
    return n;
}

/* The lowest member, or KVD_THREADS_MAX for an empty set. */
static inline uint32_t shardset_first(const struct shardset *s)
{
    for (size_t k = 0; k < KVD_THREADS_MAX / 64; k++) {
        if (s->w[k] != 0) {
            return (uint32_t)(k * 64 + (size_t)__builtin_ctzll(s->w[k]));
        }
    }
    return KVD_THREADS_MAX;
}

/*
 * The hand-off between a cross-shard transaction's coordinator and a shard it parked
 * (conn.c, "cross-shard transactions"). Only the coordinator holding srv->txn_lock
 * posts operations; the parked shard runs each on its own thread and posts the result.
 * state: TXS_IDLE -> (XM_PARK) TXS_PARKED -> TXS_REQ (coordinator) -> TXS_DONE (parked
 * shard) -> TXS_PARKED (coordinator, result read) ... -> TXS_RELEASE -> TXS_IDLE.
 */
enum txn_state { TXS_IDLE = 0, TXS_PARKED, TXS_REQ, TXS_DONE, TXS_RELEASE };
enum txn_op { TXO_RUN = 1, TXO_WATCH, TXO_AOF }; /* TXO_AOF: aof_switch_parked (aof.h) */

struct txn_slot {
    _Alignas(64) _Atomic uint32_t state;
    /* the operation, written by the coordinator before TXS_REQ */
    uint8_t op;
    uint8_t proto;
    uint32_t db;
    const struct cmd_desc *desc;
    size_t argc;
    const struct resp_arg *argv;
    uint64_t caller_id;
    uint32_t user;           /* the client's ACL user (users.h handle) */
    int32_t track;           /* the client's shard when it tracks its reads, else -1 */
    const char *addr, *name; /* the client's, for the statistics and the slowlog */
    /* the result, written by the parked shard before TXS_DONE */
    char *blob; /* reply bytes (the receiver frees them) */
    size_t len;
    int64_t sum;
    uint64_t lsn; /* TXO_AOF: the base LSN (0: switch the WAL off) */
    bool clean;   /* TXO_WATCH: no watched key changed */
    bool wrote;   /* its WAL grew: the reply waits for it */
    bool over;    /* the reply passed client-output-buffer-limit (blob: an error instead) */
};

/*
 * One cross-shard message, copied into and out of an SPSC queue (64 bytes).
 * `payload` is allocated from the sender's heap; the receiver frees it with mi_free
 * (mimalloc frees across threads without locks).
 */
struct xmsg {
    uint8_t kind;
    uint8_t proto; /* XM_REQ: the client's protocol version, for encoding the reply */
    uint16_t src;  /* sending shard */
    uint32_t seq;  /* the requesting connection's pending-reply sequence number */
    struct conn *conn;
    union {
        const struct cmd_desc *desc; /* XM_REQ: the command (the table is static) */
        void *slow_argv; /* XM_REPLY: the request's argv, handed back when the command was
                          * slow enough for the slowlog (the receiver frees it) */
    };
    void *payload; /* XM_REQ: serialized argv; XM_REPLY: reply bytes */
    uint64_t payload_len;
    union {
        int64_t value; /* XM_REPLY: the part's integer result (CMD_MERGE_SUM) */
        uint32_t db;   /* XM_REQ: the client's selected database */
    };
    uint32_t part;  /* fan-out: which part of the request (the owner shard) */
    uint32_t flags; /* XM_REPLY: XR_*; XM_PUBLISH: 1 for a shard channel (SPUBLISH); XM_REQ:
                     * the client's ACL user (users.h handle) */
    union {
        uint64_t caller_id; /* XM_REQ, XM_UNWATCH: the id of the client that sent it */
        uint64_t exec_us;   /* XM_REPLY: how long the execution took */
    };
};
_Static_assert(sizeof(struct xmsg) == 64, "xmsg is one cache line");

/* XM_REPLY flags */
#define XR_FAILED   1u /* the execution replied an error */
#define XR_REJECTED 2u /* refused before execution */
#define XR_OVER     4u /* the reply passed the output limit: the client is closed */

/* XM_REQ: high bit of `part`: the client tracks the keys this command reads (CLIENT
 * TRACKING; the client's shard is `src`) */
#define XQ_PART_TRACK (1u << 31)

/*
 * Counters of one shard. Only the shard writes them (STAT_ADD: a relaxed load and
 * store, no lock prefix); INFO on any shard reads them with relaxed loads.
 */
#define STAT_ADD(var, n)                                                                           \
    atomic_store_explicit(&(var), atomic_load_explicit(&(var), memory_order_relaxed) + (n),        \
                          memory_order_relaxed)
#define STAT_SUB(var, n) STAT_ADD(var, -(uint64_t)(n))
#define STAT_SET(var, v) atomic_store_explicit(&(var), (v), memory_order_relaxed)
#define STAT_GET(var)    atomic_load_explicit(&(var), memory_order_relaxed)

#define SHARD_DEFER_MAX 4   /* a busy client's completions kept aside: one send, one receive */
#define KVD_CMDS_MAX    128 /* rows of the command table */
#define KVD_STAT_ROWS   264 /* per-command statistics rows: commands and subcommands */

/* One database's keys on one shard, published by the shard's timer for INFO keyspace and
 * SCAN on other shards (the tables are the shard's alone). */
struct shard_db_stats {
    _Atomic uint64_t keys;
    _Atomic uint64_t expires;
    _Atomic uint64_t expire_avg_ms; /* mean expiry time of those (absolute, ms) */
};

struct shard_stats {
    _Atomic uint64_t commands;
    _Atomic uint64_t forwarded;       /* requests sent to other shards */
    _Atomic uint64_t executed_remote; /* requests executed for other shards */
    _Atomic uint64_t connections;     /* accepted, total */
    _Atomic uint64_t rejected;        /* refused at maxclients */
    _Atomic uint64_t obuf_closed;     /* clients closed past client-output-buffer-limit */
    _Atomic uint64_t net_in_bytes;
    _Atomic uint64_t net_out_bytes;
    _Atomic uint64_t keyspace_hits;
    _Atomic uint64_t keyspace_misses;
    _Atomic uint64_t expired_keys;
    _Atomic uint64_t evicted_keys; /* deleted for maxmemory (evict.c) */
    _Atomic uint64_t wakeups_sent;
    _Atomic uint64_t queue_full_pauses; /* a client paused because a queue was full */
    _Atomic uint64_t recv_nobufs;       /* a receive found the buffer ring empty */
    _Atomic uint64_t changes;           /* data changes (cmd_log_*), as Redis's dirty */
    _Atomic uint64_t txn_cross;         /* EXECs run across shards (coordinated here) */
    /* published by the shard's timer for INFO (the tables are the shard's alone) */
    _Atomic uint64_t keys;
    _Atomic uint64_t keys_with_expiry;
    _Atomic uint64_t expire_avg_ms; /* mean expiry time of those (absolute, ms) */
    _Atomic uint64_t mem_bytes;
    _Atomic uint64_t data_bytes; /* the keys' and values' own bytes */
    _Atomic uint64_t clients;
    _Atomic uint64_t watching_clients; /* this shard's clients that watch keys (anywhere) */
    _Atomic uint64_t watched_keys;     /* distinct keys watched here */
    _Atomic uint64_t lazyfree_pending; /* entries of dropped tables not yet freed */
    _Atomic uint64_t lua_eval_bytes;   /* memory of the EVAL interpreter (after each script) */
    _Atomic uint64_t lua_fn_bytes;     /* and of the functions interpreter */
    _Atomic uint64_t blocked_clients;  /* this shard's clients held by CLIENT PAUSE */
    _Atomic uint64_t tracking_clients; /* this shard's clients with CLIENT TRACKING on */
    _Atomic uint64_t tracking_keys;    /* keys in this shard's tracking table */
    _Atomic uint64_t tracking_items;   /* (key, client) pairs in it */
    /* per command (row: cmd_stat_row), counted on the client's shard */
    _Atomic uint64_t cmd_calls[KVD_STAT_ROWS];
    _Atomic uint64_t cmd_usec[KVD_STAT_ROWS];
    _Atomic uint64_t cmd_failed[KVD_STAT_ROWS];                /* executed, replied an error */
    _Atomic uint64_t cmd_rejected[KVD_STAT_ROWS];              /* refused before execution */
    _Atomic uint64_t cmd_hist[KVD_STAT_ROWS][LATENCY_BUCKETS]; /* durations (latency.h) */
    struct reply_errstats errs; /* error replies made on this shard, by code */
};

struct shard {
    uint32_t id;
    struct server *srv;
    struct io_uring ring;
    int ring_fd;                    /* the ring's real fd, target of other shards' MSG_RING */
    int listen_fds[KVD_LISTEN_MAX]; /* one per bind address, -1 when closed */
    uint32_t nlisten;
    uint32_t ntcp;          /* listen_fds[0, ntcp) are TCP (bind), the rest Unix sockets */
    uint32_t accept_parity; /* 0/1, in the accepts' user data: flips when they are swapped */
    uint64_t listen_gen;    /* the srv->listen_gen this shard's listeners belong to */
    struct mi_heap_s *heap;
    struct users_view users; /* the ACL users as this shard last read them */
    uint64_t users_swept;    /* the users generation its clients were last checked at */

    /* provided receive buffers */
    struct io_uring_buf_ring *br;
    char *bufs;
    uint32_t buf_size;
    uint32_t buf_count;
    /* the free entries of the ring's registered-socket table (shard_file_register) */
    uint32_t *file_free;
    uint32_t file_nfree;
    uint32_t file_count; /* the table's entries (0: no table) */

    /* partitions this shard owns, indexed by route_part.slot (table_count of them), each
     * with one table per database: tables[slot * ndb + db], NULL until that database is
     * first used in that partition (see shard_part_table) */
    struct tbl **tables;
    uint64_t *expire_cursor; /* per table: where the active expiry cycle goes on */
    uint32_t *part_id;       /* the partition's id (its index in the route table) */
    uint64_t *part_lsn;      /* the partition's last LSN written to the WAL */
    uint32_t table_count;    /* partitions */
    uint32_t ndb;            /* databases (the `databases` setting at start) */
    /* the databases with a table in some partition here, in no order (walks over the
     * databases visit these only), each one's table count and place in the list */
    uint32_t *db_used;
    uint32_t ndb_used;
    uint32_t *db_ntables;
    uint32_t *db_pos;
    struct shard_db_stats *db_stats; /* per database, published by the timer */
    uint64_t *part_swaps; /* per partition: SWAPDBs that changed it (a snapshot of it restarts) */
    struct txn_slot txn;  /* when parked by a cross-shard transaction */
    struct script_vm *script;    /* Lua interpreter (script.c), NULL until a script */
    struct script_vm *fvm;       /* functions interpreter (func.c), NULL until an FCALL */
    struct func_set *fset;       /* the set of libraries fvm holds (a reference) */
    struct pubsub_local *pubsub; /* subscriptions of this shard's clients (pubsub.c) */
    void *script_tx;             /* the cross-shard transaction a script running here coordinates
                                  * (conn.c), NULL when it runs on the shard owning its keys */

    /* durability: wal is NULL when appendonly is off; snap, once made, lives as long as
     * the shard (INFO reads its statistics from any thread) */
    struct wal *wal;
    struct snap *snap;
    struct wal_stats wal_stats; /* published by whichever WAL the shard has */
    /* switching appendonly at run time (aof.h): a WAL made ready to be switched on, a
     * WAL switched off whose last batches are still being written, the first segment
     * number of the shard's open WAL (logging, standby or being written out), else of
     * the next one: every segment below it belongs to a closed WAL, which a dump covers
     * (and removes), none from it on does; the next WAL's first reply token (the last
     * one's end), and whether wal_standby is ready (read by the shard that switches) */
    struct wal *wal_standby;
    struct wal *wal_drain;
    uint64_t wal_segno;
    uint64_t wal_token;
    _Atomic int aof_ready;
    int64_t aof_retry_ms;    /* a failed preparation is tried again from then on */
    struct held_reply *held; /* replies to other shards waiting for the WAL (a ring) */
    uint32_t held_cap, held_head, held_tail;
    struct save_waiter *save_waiters; /* SAVE clients waiting for every shard's round */
    uint64_t save_seen;               /* srv->save_req when this shard last started a round */
    uint64_t recovered_keys;
    int64_t recovered_ms;
    /* appendonly no (dump.h): the newest dump this shard's clients asked for, the pidfd
     * of the child it forked (-1: none), the WAL batch number the dumps record */
    uint64_t dump_want;
    int dump_pidfd;
    int64_t dump_pid; /* that child */
    uint64_t dump_wal_seq;
    bool in_exec;            /* running a transaction's (or a cross-shard script's) commands */
    int refusing;            /* this shard's WAL refuses writes (counted in srv->wal_refusing) */
    struct watch_reg *watch; /* keys WATCHed in this shard's partitions (NULL until one) */
    /* tables emptied by FLUSHALL ASYNC, freed a few segments per loop turn */
    struct tbl **dropping;
    uint32_t ndropping, dropping_cap;
    uint64_t lazyfree_entries; /* entries in them not yet freed */
    uint64_t mem_own;          /* used memory at its last publish_stats (evict.c) */
    uint64_t mem_freed;        /* bytes evict.c freed here since then */

    /* CLIENT TRACKING (track.c): its state, the keys in its table and the records waiting
     * for this shard's own clients (both tested per change / command) */
    struct track_shard *track;
    size_t track_keys;
    uint32_t track_local;
    bool track_pending;        /* a tracking record waits to be sent or delivered (track.c) */
    uint64_t track_limit_seen; /* the track_limit_gen its track_turn applied */

    /* connections */
    struct conn *conns; /* all open connections (doubly linked) */
    /* client id -> open connection: written by this shard under conn_ids_mu, read by it
     * without and by other shards under it (CLIENT TRACKING REDIRECT) */
    struct idmap conn_ids;
    pthread_mutex_t conn_ids_mu;
    struct conn *dirty;   /* connections with output to send (singly linked) */
    struct conn *blocked; /* connections waiting for queue space (singly linked) */
    struct conn *paused;  /* connections whose next command waits out CLIENT PAUSE */
    uint32_t conn_count;
    /* A script past busy-reply-threshold serves this shard's clients from its hook
     * (shard_busy_turn): busy_conn is its own client here (NULL if it has none here),
     * whose completions that cannot wait in its state wait in deferred[] until the loop
     * is back at its top. */
    bool in_busy_turn;
    struct conn *busy_conn;
    struct shard_deferred { /* a completion's fields (io_uring_cqe ends in a flexible array) */
        uint64_t user_data;
        int32_t res;
        uint32_t flags;
        struct conn *c;
    } deferred[SHARD_DEFER_MAX];
    uint32_t ndeferred;

    /* reply encoding: the block pool every connection's output borrows from, and a
     * scratch output for replies that must be kept aside (see conn.c) */
    struct resp_pool *pool;
    struct resp_out *scratch;
    struct resp_out *busy_scratch; /* the scratch a busy turn uses (shard_busy_turn) */
    /* messages waiting for queue space, oldest first (replies, and script PUBLISHes,
     * whose order matters) */
    struct xmsg_list *overflow[KVD_THREADS_MAX];
    struct xmsg_list *overflow_tail[KVD_THREADS_MAX];

    /* cross-shard queues: in[s] carries messages from shard s to this one */
    struct spsc **in;
    _Atomic int sleeping;       /* set while this shard may block in the kernel */
    _Atomic uint64_t mail_seq;  /* bumped by senders after pushing to this shard */
    uint64_t mail_seen;         /* mail_seq when this shard last drained its queues */
    bool wake[KVD_THREADS_MAX]; /* shards to wake at the end of this loop turn */
    uint32_t accepting;         /* bit i: listen_fds[i] has its multishot accept armed */
    int64_t accept_warned_ms;   /* when a failed accept was last logged (one per second) */
    uint64_t accept_failures;   /* failed accepts not logged since */
    uint64_t obuf_gen;          /* the obuf_gen its scratch outputs' limit was taken at */
    uint64_t ran_not_readonly;  /* commands run here that may change data (not read-only) */

    struct shard_stats stats;
    uint64_t loop_turns;
    int64_t now_ms; /* wall clock, read once per loop turn */
    /* Monotonic ns: the start of the next command. Read when a command ends, so that
     * the next one of a pipelined batch costs one clock read, not two (its time then
     * includes its parsing); 0 (shard_clock_stale) after anything that is not a
     * command's own work (a completion, a stage of the loop turn), and then read by
     * the command's start (shard_cmd_clock): no clock read for completions that run no
     * command, such as sends. */
    uint64_t clock_ns;
    struct kv_tsc tsc; /* the clock of clock_ns and of the loop's timer (shard_clock_now) */
};

struct server {
    uint32_t nthreads;
    struct shard *shards;
    struct route_table *route;
    _Atomic int64_t clients; /* connected, over all shards */
    _Atomic uint64_t next_conn_id;
    _Atomic int stopping;            /* set by SIGTERM/SIGINT/SHUTDOWN */
    _Atomic int active_expire_off;   /* DEBUG SET-ACTIVE-EXPIRE 0: lazy expiry only */
    _Atomic int cron_paused;         /* DEBUG PAUSE-CRON 1: no shard runs its cron */
    _Atomic uint32_t shards_drained; /* shards whose clients are all gone */
    int64_t start_ms;
    _Atomic int port; /* the bound port */
    /* CONFIG SET port / bind: listen_new[i * KVD_LISTEN_MAX ...] are shard i's new TCP
     * listeners (listen_new_n[i] of them; taken: set to 0), under listen_mu */
    pthread_mutex_t listen_mu;
    _Atomic uint64_t listen_gen;
    int *listen_new;
    uint32_t *listen_new_n;
    _Atomic bool persist;          /* the WAL and snapshots are on (aof.h switches it) */
    _Atomic bool aof_base_pending; /* switched on at run time; its base dump not yet made */
    _Atomic uint64_t aof_base_gen; /* the dump request that is to be the base */
    _Atomic uint64_t save_req;     /* SAVE/BGSAVE requests so far */
    struct dump_state dump;        /* appendonly no: SAVE, BGSAVE, save points (dump.h) */
    int lock_fd;                   /* the data directory's lock (kvd.lock), held to exit */
    _Atomic uint32_t shards_ready; /* shards done with recovery */
    _Atomic int start_failed;      /* a shard could not recover: kvd exits */
    _Atomic uint32_t wal_refusing; /* shards whose WAL refuses writes */
    _Atomic int wal_errno;         /* why, for -MISCONF */
    _Atomic int32_t txn_lock;      /* shard coordinating a cross-shard transaction, or -1 */
    _Atomic uint64_t pause;        /* CLIENT PAUSE: end_ms << 2 | enum server_pause, 0: none */
    /* scripts running past busy-reply-threshold: EVAL's in the low 16 bits, functions'
     * above (SERVER_BUSY_FN each); while not 0, commands get -BUSY (see conn.c) */
    _Atomic uint32_t busy;
};
#define SERVER_BUSY_EVAL 1u
#define SERVER_BUSY_FN   (1u << 16)

/* CLIENT PAUSE's kinds, the more restrictive the higher. */
enum server_pause { SERVER_PAUSE_NONE = 0, SERVER_PAUSE_WRITE = 1, SERVER_PAUSE_ALL = 2 };

/* The pause in force at now_ms (one relaxed load while there is none). */
static inline enum server_pause server_paused(struct server *srv, int64_t now_ms)
{
    uint64_t p = atomic_load_explicit(&srv->pause, memory_order_relaxed);
    if (__builtin_expect(p == 0, 1) || (int64_t)(p >> 2) <= now_ms) {
        return SERVER_PAUSE_NONE;
    }
    return (enum server_pause)(p & 3u);
}

/* The queue from shard `from` to shard `to`. */
struct spsc *server_queue(struct server *srv, uint32_t from, uint32_t to);

/* Pushes msg to shard `to`, marking it for a wake-up. False if the queue is full. */
bool shard_send(struct shard *sh, uint32_t to, const struct xmsg *msg);

/* Sends the wake-ups shard_send marked, now rather than at the end of the loop turn. */
void shard_wake_now(struct shard *sh);

/* A loop turn of every other shard, soon (XM_WAKE): a setting they act on changed. */
void shard_wake_all(struct shard *sh);

/* The hash table of database `db` owning key hash `h`, which must be this shard's;
 * made at its first use. */
struct tbl *shard_table(struct shard *sh, uint32_t db, uint64_t h);

/* The table of database `db` in this shard's partition `slot`: shard_part_table makes it
 * at its first use (an empty table is one segment, 8 KiB), shard_part_peek returns NULL
 * until then (walks over every table skip those). Shard thread only. */
struct tbl *shard_part_table(struct shard *sh, uint32_t slot, uint32_t db);
/* The time spent since now is not the next command's: its start reads the clock. */
static inline void shard_clock_stale(struct shard *sh)
{
    sh->clock_ns = 0;
}

/* Monotonic ns on this shard's clock (kv_tsc: a TSC read where the kernel's clock runs
 * on it), for durations and the loop's timer; not comparable with other threads'. */
static inline uint64_t shard_clock_now(struct shard *sh)
{
    return kv_tsc_ns(&sh->tsc);
}

/* A command starts: its start time (a clock read if the last one is stale). */
static inline uint64_t shard_cmd_clock(struct shard *sh)
{
    if (sh->clock_ns == 0) {
        sh->clock_ns = shard_clock_now(sh);
    }
    return sh->clock_ns;
}

/* A command ends: its duration in us since t0 (shard_cmd_clock), the end being the next
 * command's start. */
static inline uint64_t shard_cmd_end_us(struct shard *sh, uint64_t t0)
{
    sh->clock_ns = shard_clock_now(sh);
    return sh->clock_ns > t0 ? (sh->clock_ns - t0) / 1000 : 0;
}

static inline struct tbl *shard_part_peek(const struct shard *sh, uint32_t slot, uint32_t db)
{
    return sh->tables[(size_t)slot * sh->ndb + db];
}

/* The table of database `db` owning key hash `h`, or NULL if it has none yet (reads:
 * a missing table holds no key, and a read makes none). */
struct tbl *shard_table_peek(struct shard *sh, uint32_t db, uint64_t h);

/* Replaces the table of (slot, db) by `t` (NULL: none yet) and returns the old one. */
struct tbl *shard_part_swap(struct shard *sh, uint32_t slot, uint32_t db, struct tbl *t);

/* Hands a table to the shard's lazy free: freed SHARD_DROP_SEGS segments per loop turn
 * (FLUSHALL ASYNC). Shard thread only. */
void shard_drop_table(struct shard *sh, struct tbl *t);

#endif
