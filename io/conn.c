/*
 * conn: client connections of one shard thread.
 *
 * Input. One multishot receive per connection fills buffers from the shard's
 * provided-buffer ring. Each buffer is fed to the connection's RESP parser and every
 * complete command is dispatched at once; the buffer then goes straight back to the
 * ring. If dispatching must pause (a queue to another shard is full, or too many
 * replies are outstanding), the connection keeps the buffer it was parsing ("held")
 * and copies whatever arrives meanwhile into its "stash"; both are bounded by
 * client-query-buffer-limit.
 *
 * Dispatch. A command runs on the shard that owns its key's partition (cmd.h). Local
 * commands run at once. Remote ones are serialized into a message for the owner,
 * which runs them and sends the encoded reply back.
 *
 * Reply order. Replies must leave in request order. While no reply is outstanding, a
 * local command writes straight into the connection's output chain: the fast path,
 * no copy. Once one is outstanding, every later reply takes a slot in the connection's
 * pending ring (struct pend), in request order: local ones are encoded into the
 * shard's scratch output and kept as bytes; remote ones wait for their messages. The
 * ready prefix of the ring moves to the output chain after every event.
 *
 * Lifetime. A connection is freed only when no completion (receive, send) and no
 * reply from another shard can still refer to it: closing shuts the socket down,
 * which ends the outstanding operations, and the free happens on the last one.
 *
 * Thread: the owning shard's thread only, except conn_exec_remote which runs on the
 * executing shard and touches nothing of the connection but its address.
 */
#include "func.h"
#include "conn.h"

#include "aof.h"
#include "cmd.h"
#include "evict.h"
#include "hll.h"
#include "kv_bytes.h"
#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_num.h"
#include "kv_error.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "monitor.h"
#include "obuf.h"
#include "resp_alloc.h"
#include "resp_out.h"
#include "resp_parse.h"
#include "pubsub.h"
#include "route.h"
#include "script.h"
#include "server.h"
#include "shard.h"
#include "slowlog.h"
#include "spsc.h"
#include "snap.h"
#include "tbl.h"
#include "track.h"
#include "users.h"
#include "wal.h"
#include "watch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <mimalloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_UD_RECV     1u
#define CONN_UD_SEND     2u
#define CONN_UD_MASK     63u
#define CONN_PENDING_MAX 256u /* replies outstanding per connection before input pauses */
#define CONN_BATCH_MAX   16   /* commands parsed ahead of execution (prefetching) */
/* Requests of one connection running on other shards at once, at most (input pauses
 * meanwhile): their replies, not yet arrived, do not count against the output limit
 * yet, so this bounds what a client that never reads can make other shards build. */
#define CONN_REMOTE_MAX   32
#define CONN_BATCH_ARGS   4  /* commands with more arguments run unbatched */
#define CONN_IOV_MAX      32 /* iovecs per sendmsg */
#define OUT_BLOCK_BYTES   (16u * 1024)
#define OUT_POOL_PREALLOC (1u << 20)
/* Redis counts against client-output-buffer-limit only what is past a client's 16 KiB
 * reply buffer (CLIENT LIST's omem): so does kvd, so that a tiny limit still lets small
 * replies through, as there. */
#define OBUF_FREE_BYTES   16384
#define ARGV_STACK        64   /* arguments decoded on the stack for remote requests */
#define CONN_TRIM_IDLE_MS 1000 /* idle time after which a client's parser gives back memory */

/* One reply slot, in request order. */
struct pend {
    uint32_t parts_left; /* messages still expected; 0 = ready */
    bool silent;         /* CLIENT REPLY OFF / SKIP: the reply is dropped, not sent */
    bool script;         /* a script run on another shard (its client is not refused -BUSY) */
    uint8_t merge;       /* enum cmd_merge, or CMD_MERGE_NONE for one blob */
    uint8_t proto;
    /* statistics of a command run elsewhere, counted here when it is complete */
    uint16_t row;               /* cmd_stat_row, CMD_ROW_NONE: counted already (or never) */
    bool failed;                /* some part replied an error */
    uint64_t us;                /* the parts' execution time */
    struct slowlog_entry *slow; /* fan-out: the command as the slowlog would keep it */
    int64_t sum;
    char *blob; /* CMD_MERGE_NONE: the reply bytes (mi heap of whichever shard) */
    size_t len;
    struct gather *g; /* fan-out with per-part bytes */
    /* messages pushed while this was the last reply awaited (pub/sub, invalidations):
     * sent right after it, whatever CLIENT REPLY says (this shard's heap) */
    char *after;
    size_t after_len;
};

/* Fan-out state: each part's reply bytes, and for MGET which part holds each key. */
struct gather {
    uint32_t nkeys;
    uint32_t nparts;
    char *part_blob[KVD_THREADS_MAX];
    size_t part_len[KVD_THREADS_MAX];
    uint16_t owner[]; /* MGET: key i (0-based) lives on part owner[i] */
};

/* A message waiting for room in the queue to shard `to` (the message's own fields all
 * have meanings: the destination is kept beside it). */
struct outmsg {
    struct xmsg m;
    uint32_t to;
};

#define PF_KEY_MAX  32   /* the longest key conn_prefetch_turn hands its hashes on for */
#define PF_KEY_NONE 0xff /* (no key: pf_len is never that long) */
_Static_assert(PF_KEY_MAX < PF_KEY_NONE, "pf_len");

struct conn {
    struct shard *sh;
    struct conn *prev, *next;
    struct conn *dirty_next;
    struct conn *blocked_next;
    int fd;
    int file_slot; /* its entry in the ring's file table, -1 if none (see use_file) */
    uint32_t flags;
    int inflight; /* completions still expected */
    uint64_t id;
    struct resp_parser *parser;
    struct resp_out out;
    int resp;

    /* input held while paused */
    int held_bid;    /* provided buffer being parsed, -1 if none */
    char *held_heap; /* or a heap buffer (former stash) being parsed */

    /* the hashes of the key conn_prefetch_turn last peeked at (a cache: valid for
     * these key bytes whatever buffer they come from; pf_len PF_KEY_NONE: none) */
    uint8_t pf_len;
    char pf_key[PF_KEY_MAX];
    uint64_t pf_h, pf_ph;
    char *stash;
    size_t stash_len, stash_cap;

    /* replies outstanding, a ring indexed by sequence number */
    struct pend *pend;
    uint32_t pend_head, pend_tail;
    uint32_t remote_waiting; /* messages sent and not yet answered */
    size_t pend_bytes;       /* reply bytes held in pending slots */

    /* messages that found their queue full */
    struct outmsg outbox[4];
    uint32_t outbox_len;
    struct outmsg *outbox_more; /* heap spill for fan-outs wider than outbox */
    uint32_t outbox_more_len;

    /* sending */
    struct iovec iov[CONN_IOV_MAX];
    struct msghdr msg;

    uint64_t wal_wait; /* output leaves once the shard's WAL is durable up to this */
    char *name;        /* CLIENT SETNAME, on the shard's heap; NULL if none */
    char addr[64];
    char laddr[64];
    int64_t created_ms;
    int64_t last_ms;
    int64_t soft_since_ms; /* over its class's soft output limit since (0: not over) */
    /* its class's output limits (limits_refresh), in queued bytes: */
    uint64_t limits_key; /* obuf_gen * 2 + pubsub class, when they were derived */
    size_t hard_bytes;   /* closed at this many (no limit: SIZE_MAX / 2) */
    size_t soft_bytes;   /* ... over this many for longer than soft_ms (none: SIZE_MAX) */
    int64_t soft_ms;
    /* the last command's name for CLIENT LIST (NULL: none yet, or an unknown subcommand):
     * the table's name, or a container's "name|sub" built in last_cmd */
    const char *last_name;
    char last_cmd[40];
    uint32_t db;            /* SELECTed database */
    uint32_t user;          /* its ACL user's handle (users.h) */
    bool acl_free;          /* that user may run everything: no ACL check */
    uint64_t user_gen;      /* the users generation user/acl_free were read at */
    struct pubsub_conn *ps; /* SUBSCRIBE / PSUBSCRIBE (pubsub.c), NULL without any */
    struct txn *txn;        /* MULTI: the queued commands; NULL outside a transaction */
    struct track_conn *trk; /* CLIENT TRACKING (track.c), NULL when it never tracked */
    /* CLIENT PAUSE: the commands held (CONN_PAUSED), oldest first: the one that met the
     * pause and those parsed ahead with it; each one block, argv then bytes */
    struct held_cmd *held;
    uint32_t nheld, cap_held;
    struct conn *paused_next;
    bool releasing;     /* running a held command: no second look at the pause */
    uint8_t reply_mode; /* enum conn_reply_mode */
    /* WATCH: the shards keeping this client's watches (each those of its own keys) */
    struct shardset watch_shards;
};

struct xmsg_list {
    struct xmsg m;
    struct xmsg_list *next;
};

/* A command held by CLIENT PAUSE. */
struct held_cmd {
    struct resp_arg *argv; /* then the bytes, one block on the shard's heap */
    size_t argc;
};

/* A reply to another shard held until this shard's WAL is durable up to `token`. */
struct held_reply {
    struct xmsg m;
    uint64_t token;
    uint32_t to;
};

/* What a waiting reply waits for. */
enum wait_kind {
    WAIT_ROUND, /* SAVE: every shard's snapshot round `target` */
    WAIT_DUMP,  /* SAVE with appendonly off: the dump of generation `target` */
    WAIT_TRACK, /* CONFIG SET tracking-table-max-keys: every shard applied limit `target` */
};

/* A SAVE waiting for every shard's snapshot round `target` (appendonly no: for the dump
 * of generation `target`); a SHUTDOWN's stops the server when it is done. Also a CONFIG
 * SET's +OK (WAIT_TRACK), which never fails. */
struct save_waiter {
    struct conn *c;
    uint32_t seq; /* its pending-reply slot */
    bool shutdown;
    enum wait_kind kind;
    uint64_t target;
    struct save_waiter *next;
};

/*
 * Blobs cross threads: a request's arguments are allocated by the sending shard and
 * freed by the executing one, a reply's bytes the other way round. mimalloc frees
 * across threads without locks. Under ThreadSanitizer the C library's allocator is
 * used instead, because Debian's mimalloc is not instrumented and TSan would take
 * its internal hand-over for a race; the queues themselves stay checked.
 */
static void *blob_alloc(struct shard *sh, size_t n)
{
#ifdef KV_SANITIZE_THREAD
    (void)sh;
    void *p = malloc(n ? n : 1);
#else
    void *p = mi_heap_malloc(sh->heap, n ? n : 1);
#endif
    KV_ASSERT(p != NULL);
    return p;
}

static void blob_free(void *p)
{
#ifdef KV_SANITIZE_THREAD
    free(p);
#else
    mi_free(p);
#endif
}

static void conn_process(struct conn *c);
static void mark_dirty(struct conn *c);
static struct resp_out *early_out(struct conn *c);
static void conn_maybe_free(struct conn *c);
static void close_conn(struct conn *c);
static void unwatch(struct conn *c);
static void txn_free(struct conn *c);
static int txn_queued(const struct conn *c);

/* ---- small accessors ----------------------------------------------------------- */

struct track_conn **conn_track(struct conn *c)
{
    return &c->trk;
}

bool conn_closing(const struct conn *c)
{
    return (c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER)) != 0;
}

bool conn_monitor(const struct conn *c)
{
    return (c->flags & CONN_MONITOR) != 0;
}

void conn_set_monitor(struct conn *c, bool on)
{
    c->flags = on ? c->flags | CONN_MONITOR : c->flags & ~CONN_MONITOR;
}

/* The shard id to remember this connection's reads for now, or -1 (track.h). */
static inline int32_t reads_tracked(const struct conn *c)
{
    return KV_UNLIKELY(c->trk != NULL) ? track_reads(c->trk, c->sh->id) : -1;
}

struct conn *conn_by_id(struct shard *sh, uint64_t id)
{
    return idmap_get(&sh->conn_ids, id);
}

bool conn_id_shard(struct shard *sh, uint64_t id, uint32_t *shard)
{
    struct server *srv = sh->srv;
    for (uint32_t s = 0; s < srv->nthreads; s++) {
        struct shard *o = &srv->shards[s];
        bool found;
        if (o == sh) {
            found = idmap_get(&o->conn_ids, id) != NULL;
        } else {
            pthread_mutex_lock(&o->conn_ids_mu);
            found = idmap_get(&o->conn_ids, id) != NULL;
            pthread_mutex_unlock(&o->conn_ids_mu);
        }
        if (found) {
            *shard = s;
            return true;
        }
    }
    return false;
}

uint64_t conn_id(const struct conn *c)
{
    return c->id;
}

void conn_set_reply_mode(struct conn *c, enum conn_reply_mode m)
{
    c->reply_mode = (uint8_t)m;
}

enum conn_reply_mode conn_reply_mode(const struct conn *c)
{
    return (enum conn_reply_mode)c->reply_mode;
}

int conn_resp(const struct conn *c)
{
    return c->resp;
}

uint32_t conn_db(const struct conn *c)
{
    return c->db;
}

void conn_select(struct conn *c, uint32_t db)
{
    KV_ASSERT(db < c->sh->ndb);
    c->db = db;
}

void conn_set_resp(struct conn *c, int proto)
{
    KV_ASSERT(proto == 2 || proto == 3);
    c->resp = proto;
    resp_out_set_proto(&c->out, proto);
}

static bool may_hear(void *arg, const char *ch, size_t n, bool pattern)
{
    return user_may_hear(arg, ch, n, pattern);
}

/* Whether every subscription of the connection is still allowed to its user. */
static bool hears_only_allowed(const struct conn *c, const struct user *u)
{
    return c->ps == NULL || user_unrestricted(u) ||
           pubsub_all(c->ps, may_hear, (void *)(uintptr_t)u);
}

/* Reads the connection's user again after a change of any user: false (and the
 * connection closed, as Redis kills the clients of a deleted user) if it is gone. */
static bool user_refresh(struct conn *c)
{
    struct shard *sh = c->sh;
    users_view_refresh(&sh->users);
    const struct user *u = users_view_get(&sh->users, c->user);
    if (u == NULL) {
        close_conn(c);
        return false;
    }
    if (!hears_only_allowed(c, u)) {
        close_conn(c); /* as Redis kills subscribers whose channels a change revoked */
        return false;
    }
    c->acl_free = user_unrestricted(u);
    c->user_gen = sh->users.gen;
    if (!(c->flags & CONN_AUTHED) && c->user == USERS_DEFAULT && user_open(u)) {
        conn_set_authed(c, true); /* as Redis's authRequired: nopass needs no AUTH */
    }
    return true;
}

void conn_set_user(struct conn *c, uint32_t handle)
{
    c->user = handle;
    c->user_gen = 0; /* read at the next command */
}

uint32_t conn_user(const struct conn *c)
{
    return c->user;
}

void conn_users_sweep(struct shard *sh)
{
    if (sh->users_swept == users_generation()) {
        return; /* (the view's own generation may be newer than the last sweep) */
    }
    users_view_refresh(&sh->users);
    sh->users_swept = sh->users.gen;
    for (struct conn *c = sh->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (conn_closing(c)) {
            continue;
        }
        const struct user *u = users_view_get(&sh->users, c->user);
        if (u == NULL || !hears_only_allowed(c, u)) {
            /* after what is queued: a client that deleted its own user in this same
             * turn gets that reply first, as in Redis (closed at this turn's flush) */
            conn_close_after_reply(c);
        }
    }
}

bool conn_authed(const struct conn *c)
{
    return c->flags & CONN_AUTHED;
}

void conn_set_authed(struct conn *c, bool authed)
{
    if (authed) {
        c->flags |= CONN_AUTHED;
    } else {
        c->flags &= ~CONN_AUTHED;
    }
    resp_parser_set_auth_required(c->parser, !authed);
}

void conn_set_name(struct conn *c, const char *name, size_t len)
{
    mi_free(c->name);
    c->name = NULL;
    if (len > 0) {
        c->name = mi_heap_malloc(c->sh->heap, len + 1);
        KV_ASSERT(c->name != NULL);
        memcpy(c->name, name, len);
        c->name[len] = '\0';
    }
}

const char *conn_name(const struct conn *c)
{
    return c->name ? c->name : "";
}

void conn_close_after_reply(struct conn *c)
{
    c->flags |= CONN_CLOSE_AFTER;
    /* The flush closes it once the queued replies are out; with nothing queued (a
     * protocol error without a reply, such as the query buffer limit) it closes at once. */
    mark_dirty(c);
}

static size_t digits(size_t n)
{
    char buf[24];
    return kv_fmt_u64(buf, n);
}

void conn_info_running(struct conn_info *ci, size_t argc, const struct resp_arg *argv)
{
    size_t wire = 1 + digits(argc) + 2, mem = 0; /* "*<argc>\r\n", then "$<len>\r\n<arg>\r\n" */
    for (size_t i = 0; i < argc; i++) {
        wire += 1 + digits(argv[i].len) + 2 + argv[i].len + 2;
        mem += argv[i].len;
    }
    ci->qbuf += wire;
    ci->argv_mem = mem;
    ci->tot_mem += wire + mem;
}

struct conn *conn_first(struct shard *sh)
{
    return sh->conns;
}

struct conn *conn_next(struct conn *c)
{
    return c->next;
}

void conn_kill(struct conn *c)
{
    c->flags |= CONN_KILLED;
    close_conn(c);
}

void conn_info(const struct conn *c, int64_t now_ms, struct conn_info *out)
{
    out->id = c->id;
    snprintf(out->addr, sizeof out->addr, "%s", c->addr);
    snprintf(out->laddr, sizeof out->laddr, "%s", c->laddr);
    out->fd = c->fd;
    out->name = conn_name(c);
    out->age_s = (now_ms - c->created_ms) / 1000;
    out->idle_s = (now_ms - c->last_ms) / 1000;
    out->resp = c->resp;
    out->db = c->db;
    out->sub = pubsub_channels(c->ps);
    out->psub = pubsub_patterns(c->ps);
    out->ssub = pubsub_shard_channels(c->ps);
    out->qbuf = c->stash_len;
    out->argv_mem = 0;
    out->rbs = (size_t)KV_CONF_GET(kvd_settings.recv_buffer_size);
    size_t queued = c->pend_bytes + resp_out_queued_bytes(&c->out);
    out->omem = queued > OBUF_FREE_BYTES ? queued - OBUF_FREE_BYTES : 0; /* (as Redis's) */
    out->tot_mem = sizeof *c + c->stash_len + queued +
                   (c->parser != NULL ? resp_parser_memory_bytes(c->parser) : 0);
    out->last_cmd = c->last_name != NULL ? c->last_name : "NULL";
    out->multi = txn_queued(c);
    size_t n = 0; /* Redis's order: O P x b t R B, N for none */
    if (c->flags & CONN_MONITOR) {
        out->flags[n++] = 'O';
    }
    if (out->sub + out->psub + out->ssub > 0) {
        out->flags[n++] = 'P';
    }
    if (out->multi >= 0) {
        out->flags[n++] = 'x';
    }
    if (c->flags & CONN_PAUSED) {
        out->flags[n++] = 'b';
    }
    n += track_client_flags(c->trk, out->flags + n);
    if (c->flags & CONN_UNIX) {
        out->flags[n++] = 'U';
    }
    if (n == 0) {
        out->flags[n++] = 'N';
    }
    out->flags[n] = '\0';
    out->redir = track_client_redir(c->trk);
    const struct user *u = users_view_get(&c->sh->users, c->user);
    out->user = u != NULL ? user_name(u) : "";
}

/* ---- output limits (client-output-buffer-limit, obuf.h) ------------------------ */

static size_t hard_bytes(uint64_t hard)
{
    return hard == 0 || hard > SIZE_MAX / 4 ? SIZE_MAX / 2 : (size_t)hard + OBUF_FREE_BYTES;
}

/* Redis's client classes: a client subscribed to anything is "pubsub". */
static enum obuf_class conn_class(const struct conn *c)
{
    return c->ps != NULL && pubsub_subscribed(c->ps) ? OBUF_PUBSUB : OBUF_NORMAL;
}

/* The hard limit of what is built for a client on another shard than its own (whose
 * class that shard does not know): a normal client's, as only those run commands there. */
static size_t normal_limit(void)
{
    return hard_bytes(obuf_get(OBUF_NORMAL).hard_bytes);
}

/* Derives c's limits (and its output's) again if CONFIG SET or its class changed them:
 * one load and a compare otherwise. */
static void limits_refresh(struct conn *c)
{
    enum obuf_class cls = conn_class(c);
    uint64_t key = atomic_load_explicit(&obuf_gen, memory_order_relaxed) * 2 + (cls != 0);
    if (KV_LIKELY(key == c->limits_key)) {
        return;
    }
    struct obuf_limit l = obuf_get(cls);
    c->limits_key = key;
    c->hard_bytes = hard_bytes(l.hard_bytes);
    c->soft_bytes = l.soft_bytes != 0 && l.soft_bytes < SIZE_MAX / 4
                        ? (size_t)l.soft_bytes + OBUF_FREE_BYTES
                        : SIZE_MAX;
    c->soft_ms = l.soft_s * 1000;
    resp_out_set_limit(&c->out, c->hard_bytes);
}

/* Whether `queued` bytes for c pass its class's limits: the hard one, or the soft one
 * for longer than its seconds (Redis's checkClientOutputBufferLimits; the soft clock
 * starts the first time it is seen over, and stops when seen under). */
static bool over_limits(struct conn *c, size_t queued)
{
    limits_refresh(c);
    if (queued >= c->hard_bytes) {
        return true;
    }
    if (KV_LIKELY(queued < c->soft_bytes)) {
        c->soft_since_ms = 0;
        return false;
    }
    int64_t now = c->sh->now_ms;
    if (c->soft_since_ms == 0) {
        c->soft_since_ms = now > 0 ? now : 1;
        return false;
    }
    return now - c->soft_since_ms > c->soft_ms;
}

static size_t queued_bytes(const struct conn *c)
{
    return c->pend_bytes + resp_out_queued_bytes(&c->out);
}

/* Closes a client past its output limits, as Redis: nothing more is sent to it. */
static void close_over(struct conn *c)
{
    if (!(c->flags & CONN_CLOSING)) {
        kv_log_notice("closing client over its output limit id=%llu addr=%s",
                      (unsigned long long)c->id, c->addr);
        STAT_ADD(c->sh->stats.obuf_closed, 1);
        close_conn(c);
    }
}

/* ---- shard setup ------------------------------------------------------------- */

int conn_shard_setup(struct shard *sh)
{
    struct resp_alloc a;
    resp_alloc_mi_heap(&a, sh->heap);
    /* The pool is bounded per client by client-output-buffer-limit, not globally. */
    int rc = resp_pool_create(&sh->pool, &a, OUT_BLOCK_BYTES, SIZE_MAX / 2, OUT_POOL_PREALLOC);
    if (rc != 0) {
        return rc;
    }
    sh->scratch = mi_heap_malloc(sh->heap, sizeof *sh->scratch);
    if (sh->scratch == NULL) {
        return -ENOMEM;
    }
    resp_out_init(sh->scratch, sh->pool, normal_limit());
    sh->busy_scratch = mi_heap_malloc(sh->heap, sizeof *sh->busy_scratch);
    if (sh->busy_scratch == NULL) {
        return -ENOMEM;
    }
    resp_out_init(sh->busy_scratch, sh->pool, normal_limit());
    return 0;
}

void conn_shard_teardown(struct shard *sh)
{
    for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
        while (sh->overflow[t] != NULL) {
            struct xmsg_list *l = sh->overflow[t];
            sh->overflow[t] = l->next;
            blob_free(l->m.payload);
            mi_free(l);
        }
    }
    resp_out_deinit(sh->scratch);
    mi_free(sh->scratch);
    resp_out_deinit(sh->busy_scratch);
    mi_free(sh->busy_scratch);
    resp_pool_destroy(sh->pool);
}

/* Moves everything queued in output o into one heap blob. Returns NULL (and a zero
 * length) when nothing is queued. */
static char *out_take(struct shard *sh, struct resp_out *o, size_t *len)
{
    size_t n = resp_out_queued_bytes(o);
    *len = n;
    if (n == 0) {
        return NULL;
    }
    char *blob = blob_alloc(sh, n);
    KV_ASSERT(blob != NULL);
    size_t off = 0;
    while (off < n) {
        struct iovec iov[16];
        int cnt = resp_out_iov(o, iov, 16);
        KV_ASSERT(cnt > 0);
        size_t got = 0;
        for (int i = 0; i < cnt; i++) {
            memcpy(blob + off + got, iov[i].iov_base, iov[i].iov_len);
            got += iov[i].iov_len;
        }
        resp_out_consume(o, got);
        off += got;
    }
    KV_ASSERT(resp_out_queued_bytes(o) == 0);
    return blob;
}

/* The same for the shard's scratch output. */
static char *scratch_take(struct shard *sh, size_t *len)
{
    return out_take(sh, sh->scratch, len);
}

/* Resets the scratch output after a failed encode (limit): drops what it holds. */
static void scratch_reset(struct shard *sh)
{
    resp_out_deinit(sh->scratch);
    resp_out_init(sh->scratch, sh->pool, normal_limit());
}

/* What a command run into the scratch output replied, as a blob: its reply, or, if the
 * reply exceeded client-output-buffer-limit (the scratch's error is sticky: reset), that
 * error. With `over` (not NULL) the caller is told which and closes the client (as
 * Redis: no reply, not an error reply); without, the error is the reply (a part of a
 * transaction's or script's), counted as one. */
static char *scratch_result(struct shard *sh, size_t *len, bool *over)
{
    bool failed = resp_out_error(sh->scratch) != 0;
    if (over != NULL) {
        *over = failed;
    }
    if (!failed) {
        return scratch_take(sh, len);
    }
    scratch_reset(sh);
    static const char text[] = "-ERR reply exceeds client-output-buffer-limit\r\n";
    char *blob = blob_alloc(sh, sizeof text - 1);
    KV_ASSERT(blob != NULL);
    memcpy(blob, text, sizeof text - 1);
    *len = sizeof text - 1;
    if (over == NULL) {
        reply_count_error(text + 1, sizeof text - 4); /* without '-' and CRLF */
    }
    return blob;
}

/* ---- lists ------------------------------------------------------------------- */

static void mark_dirty(struct conn *c)
{
    if (!(c->flags & CONN_DIRTY)) {
        c->flags |= CONN_DIRTY;
        c->dirty_next = c->sh->dirty;
        c->sh->dirty = c;
    }
}

static void mark_blocked(struct conn *c)
{
    if (!(c->flags & CONN_BLOCKED)) {
        c->flags |= CONN_BLOCKED;
        c->blocked_next = c->sh->blocked;
        c->sh->blocked = c;
    }
}

/* ---- accept and close --------------------------------------------------------- */

/* One end of a new connection: its address (family AF_UNSPEC if it cannot be read). */
static struct sockaddr_storage sock_end(int fd, bool peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (rc != 0) {
        ss.ss_family = AF_UNSPEC;
    }
    return ss;
}

/* "ip:port" as Redis writes an address (IPv6 too, unbracketed; "/unixsocket:0"). */
static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    } else if (ss->ss_family == AF_UNIX) {
        snprintf(ip, sizeof ip, "/unixsocket"); /* (Redis's text) */
    }
    snprintf(buf, cap, "%s:%u", ip, port);
}

/* Names the connection's socket in sqe (prepared with c->fd) by its entry in the ring's
 * file table when it has one: the kernel then skips the fd lookup. */
static inline void use_file(struct io_uring_sqe *sqe, const struct conn *c)
{
    if (c->file_slot >= 0) {
        sqe->fd = c->file_slot;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

static void arm_recv(struct conn *c)
{
    KV_ASSERT(!(c->flags & CONN_RECV_ARMED));
    struct io_uring_sqe *sqe = shard_sqe(c->sh);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    use_file(sqe, c);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = shard_bgid();
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | CONN_UD_RECV);
    c->flags |= CONN_RECV_ARMED;
    c->inflight++;
}

/* Whether a peer is on the loopback interface (127.0.0.0/8, ::1, an IPv4-mapped 127.x)
 * or a Unix socket. */
static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return ss->ss_family == AF_UNIX;
}

/* enable-debug-command: yes, or local for a client on loopback (Redis's rule). */
static bool debug_allowed(const struct conn *c)
{
    int64_t v = KV_CONF_GET(kvd_settings.enable_debug_command);
    return v == 1 || (v == 2 && (c->flags & CONN_LOCAL));
}

/* Refuses a new connection with a one-line error (nothing read from it). */
static void refuse(struct shard *sh, int fd, const char *msg)
{
    ssize_t w = write(fd, msg, strlen(msg));
    (void)w;
    close(fd);
    STAT_ADD(sh->stats.rejected, 1);
}

/* tcp-keepalive: probes after `idle_s` of silence, then every third of it, 3 times (as
 * Redis's anetKeepAlive). */
static void keepalive(int fd, int idle_s)
{
    int one = 1, intvl = idle_s / 3 > 0 ? idle_s / 3 : 1, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

void conn_accept(struct shard *sh, int fd)
{
    struct server *srv = sh->srv;
    int64_t max = KV_CONF_GET(kvd_settings.maxclients);
    if (atomic_fetch_add_explicit(&srv->clients, 1, memory_order_relaxed) >= max) {
        atomic_fetch_sub_explicit(&srv->clients, 1, memory_order_relaxed);
        refuse(sh, fd, "-ERR max number of clients reached\r\n");
        return;
    }
    struct sockaddr_storage peer = sock_end(fd, true);
    bool local = is_loopback(&peer);
    if (KV_CONF_GET(kvd_settings.protected_mode) && !local && users_default_nopass()) {
        atomic_fetch_sub_explicit(&srv->clients, 1, memory_order_relaxed);
        refuse(sh, fd,
               "-DENIED Redis is running in protected mode because protected mode is enabled "
               "and no password is set for the default user. In this mode connections are "
               "only accepted from the loopback interface. If you want to connect from "
               "external computers to Redis you may adopt one of the following solutions: 1) "
               "Just disable protected mode sending the command 'CONFIG SET protected-mode no' "
               "from the loopback interface by connecting to Redis from the same host the "
               "server is running, however MAKE SURE Redis is not publicly accessible from "
               "internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) "
               "Alternatively you can just disable the protected mode by editing the Redis "
               "configuration file, and setting the protected mode option to 'no', and then "
               "restarting the server. 3) If you started the server manually just for "
               "testing, restart it with the '--protected-mode no' option. 4) Setup a an "
               "authentication password for the default user. NOTE: You only need to do one "
               "of the above things in order for the server to start accepting connections "
               "from the outside.\r\n");
        return;
    }
    int64_t idle_s = KV_CONF_GET(kvd_settings.tcp_keepalive_s);
    if (idle_s > 0) {
        keepalive(fd, (int)idle_s);
    }
    struct conn *c = mi_heap_zalloc_aligned(sh->heap, sizeof *c, 64);
    struct resp_alloc a;
    resp_alloc_mi_heap(&a, sh->heap);
    struct resp_parse_limits lim = resp_parse_limits_default();
    lim.bulk_bytes_max = KV_CONF_GET(kvd_settings.proto_max_bulk_len);
    lim.query_bytes_max = KV_CONF_GET(kvd_settings.query_buffer_limit);
    if (c == NULL || resp_parser_create(&c->parser, &a, &lim) != 0) {
        mi_free(c);
        close(fd);
        atomic_fetch_sub_explicit(&srv->clients, 1, memory_order_relaxed);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->sh = sh;
    c->fd = fd;
    c->file_slot = shard_file_register(sh, fd);
    c->id = atomic_fetch_add_explicit(&srv->next_conn_id, 1, memory_order_relaxed) + 1;
    c->held_bid = -1;
    c->pf_len = PF_KEY_NONE;
    struct sockaddr_storage own = sock_end(fd, false);
    c->flags = (local ? CONN_LOCAL : 0) | (own.ss_family == AF_UNIX ? CONN_UNIX : 0);
    c->resp = 2;
    c->created_ms = c->last_ms = kv_clock_real_ms();
    resp_out_init(&c->out, sh->pool, normal_limit());
    c->limits_key = UINT64_MAX; /* (derived at its first command) */
    format_addr(&peer, c->addr, sizeof c->addr);
    format_addr(&own, c->laddr, sizeof c->laddr);
    users_view_refresh(&sh->users);
    c->user = USERS_DEFAULT;
    conn_set_authed(c, user_open(users_view_get(&sh->users, USERS_DEFAULT)));
    pthread_mutex_lock(&sh->conn_ids_mu);
    bool put = idmap_put(&sh->conn_ids, c->id, c);
    pthread_mutex_unlock(&sh->conn_ids_mu);
    KV_ASSERT(put); /* out of memory, as any allocation of a request */
    c->next = sh->conns;
    if (sh->conns != NULL) {
        sh->conns->prev = c;
    }
    sh->conns = c;
    sh->conn_count++;
    STAT_ADD(sh->stats.connections, 1);
    arm_recv(c);
}

static void close_conn(struct conn *c)
{
    if (c->flags & CONN_CLOSING) {
        return;
    }
    c->flags |= CONN_CLOSING;
    unwatch(c);
    pubsub_drop(c->sh, c);
    track_conn_drop(c->sh, c);
    monitor_drop(c->sh, c);
    pthread_mutex_lock(&c->sh->conn_ids_mu);
    idmap_del(&c->sh->conn_ids, c->id);
    pthread_mutex_unlock(&c->sh->conn_ids_mu);
    /* Ends the multishot receive and any send in flight; their completions free us. */
    shutdown(c->fd, SHUT_RDWR);
    conn_maybe_free(c);
}

/* Reply bytes a pending slot holds (they count against the output limit). */
static size_t slot_bytes(const struct pend *p)
{
    size_t n = (p->blob != NULL ? p->len : 0) + p->after_len;
    if (p->g != NULL) {
        for (uint32_t i = 0; i < KVD_THREADS_MAX; i++) {
            n += p->g->part_blob[i] != NULL ? p->g->part_len[i] : 0;
        }
    }
    return n;
}

/* Replies kept aside in pending slots count against client-output-buffer-limit like the
 * output chain itself: a client that does not read cannot grow them without bound. */
static bool pend_over_limit(struct conn *c)
{
    if (!(c->flags & CONN_CLOSING) && over_limits(c, queued_bytes(c))) {
        close_over(c);
        return true;
    }
    return false;
}

static void free_pend(struct conn *c, struct pend *p)
{
    size_t held = slot_bytes(p);
    KV_ASSERT(c->pend_bytes >= held);
    c->pend_bytes -= held;
    blob_free(p->blob);
    mi_free(p->after);
    slowlog_drop(p->slow);
    if (p->g != NULL) {
        for (uint32_t i = 0; i < KVD_THREADS_MAX; i++) {
            blob_free(p->g->part_blob[i]);
        }
        mi_free(p->g);
    }
    memset(p, 0, sizeof *p);
}

static void conn_maybe_free(struct conn *c)
{
    if (!(c->flags & CONN_CLOSING) || c->inflight > 0 || c->remote_waiting > 0 ||
        c->outbox_len > 0 || (c->flags & (CONN_DIRTY | CONN_BLOCKED | CONN_PAUSED))) {
        return;
    }
    struct shard *sh = c->sh;
    if (c->held_bid >= 0) {
        shard_buf_return(sh, (uint16_t)c->held_bid);
    }
    mi_free(c->held_heap);
    mi_free(c->stash);
    mi_free(c->outbox_more);
    KV_ASSERT(c->nheld == 0); /* released (or dropped) before CONN_PAUSED went */
    mi_free(c->held);
    if (c->pend != NULL) {
        for (uint32_t s = c->pend_head; s != c->pend_tail; s++) {
            free_pend(c, &c->pend[s % CONN_PENDING_MAX]);
        }
        mi_free(c->pend);
    }
    mi_free(c->name);
    txn_free(c);
    resp_parser_destroy(c->parser);
    resp_out_deinit(&c->out);
    if (c->file_slot >= 0) {
        shard_file_unregister(sh, c->file_slot); /* (nothing in flight: inflight is 0) */
    }
    close(c->fd);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        sh->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    sh->conn_count--;
    atomic_fetch_sub_explicit(&sh->srv->clients, 1, memory_order_relaxed);
    mi_free(c);
}

/* ---- MULTI / EXEC ------------------------------------------------------------------ */

/*
 * A transaction: between MULTI and EXEC the commands are checked and queued, not run.
 * Their arguments are copied into one buffer, each command preceded by its argument
 * count as a decimal argument, so that at EXEC the whole transaction is one argument
 * list for the hidden command "exec|run" (conn_txn_run), which runs the commands one
 * after another on one shard: atomic, as no other command runs there in between, when
 * all its keys and the client's watched keys are on that shard; otherwise EXEC runs as
 * a cross-shard transaction (see "cross-shard transactions" below). A SAME command's
 * keys must share a shard (-CROSSSLOT otherwise); commands that need the client's
 * connection are refused inside MULTI. An error while queueing (unknown
 * command, arity, CROSSSLOT, refusal) makes EXEC reply -EXECABORT. The queue counts against
 * client-query-buffer-limit.
 */
struct txn_arg {
    uint32_t off, len;
};

struct txn {
    char *buf; /* argument bytes */
    size_t len, cap;
    struct txn_arg *args;
    uint32_t nargs, args_cap;
    uint32_t ncmds;
    bool aborted;
    bool writes;     /* some queued command writes (refused at EXEC while the WAL refuses) */
    bool replicates; /* some queued command writes or publishes (CLIENT PAUSE WRITE holds it) */
    bool denyoom;    /* some queued command may add memory (refused at EXEC over maxmemory) */
    bool scripts;    /* a script or function is queued (its client waits in busy mode) */
    bool selects;    /* a SELECT, or a command needing the connection (CLIENT, HELLO, INFO
                      * ...), is queued: EXEC runs on this shard (see txn_control) */
    bool silent;     /* its reply is dropped (CLIENT REPLY), as when EXEC came */
    bool bare;       /* one command outside MULTI run as a transaction (SWAPDB): its own reply,
                      * no array, the client's watches untouched */
    struct shardset shards; /* the shards owning its keys */
};

static int txn_queued(const struct conn *c)
{
    return c->txn != NULL ? (int)c->txn->ncmds : -1;
}

static void txn_free(struct conn *c)
{
    if (c->txn != NULL) {
        mi_free(c->txn->buf);
        mi_free(c->txn->args);
        mi_free(c->txn);
        c->txn = NULL;
    }
}

/* Appends one argument to the queue; false when the queue would pass its limit. */
static bool txn_push(struct conn *c, const char *p, size_t n)
{
    struct txn *t = c->txn;
    uint64_t limit = (uint64_t)KV_CONF_GET(kvd_settings.query_buffer_limit);
    if ((!t->bare && (uint64_t)t->len + n + 16 * ((uint64_t)t->nargs + 1) > limit) ||
        (uint64_t)t->len + n > UINT32_MAX) {
        return false;
    }
    if (t->len + n > t->cap) {
        size_t cap = t->cap * 2 > t->len + n ? t->cap * 2 : t->len + n + 256;
        char *b = mi_heap_realloc(c->sh->heap, t->buf, cap);
        KV_ASSERT(b != NULL);
        t->buf = b;
        t->cap = cap;
    }
    if (t->nargs == t->args_cap) {
        uint32_t cap = t->args_cap ? t->args_cap * 2 : 16;
        struct txn_arg *a = mi_heap_realloc(c->sh->heap, t->args, cap * sizeof *a);
        KV_ASSERT(a != NULL);
        t->args = a;
        t->args_cap = cap;
    }
    memcpy(t->buf + t->len, p, n);
    t->args[t->nargs++] = (struct txn_arg){(uint32_t)t->len, (uint32_t)n};
    t->len += n;
    return true;
}

/* ---- pending replies ----------------------------------------------------------- */

static uint32_t pend_count(const struct conn *c)
{
    return c->pend_tail - c->pend_head;
}

/* A reply may go straight to the output: nothing is waiting before it, and it is not
 * to be dropped (CLIENT REPLY OFF / SKIP replies go through a pending slot). */
static inline bool reply_direct(const struct conn *c)
{
    return pend_count(c) == 0 && c->reply_mode == CONN_REPLY_ON;
}

static struct pend *pend_push(struct conn *c)
{
    if (c->pend == NULL) {
        c->pend = mi_heap_zalloc(c->sh->heap, CONN_PENDING_MAX * sizeof c->pend[0]);
        KV_ASSERT(c->pend != NULL);
    }
    KV_ASSERT(pend_count(c) < CONN_PENDING_MAX);
    struct pend *p = &c->pend[c->pend_tail % CONN_PENDING_MAX];
    memset(p, 0, sizeof *p);
    p->silent = c->reply_mode == CONN_REPLY_OFF || c->reply_mode == CONN_REPLY_SKIP;
    p->proto = (uint8_t)c->resp;
    p->row = CMD_ROW_NONE;
    c->pend_tail++;
    return p;
}

/* Skips one RESP element in buf[*off..len): bulk, null or simple (MGET/KEYS parts). */
static void skip_elem(const char *buf, size_t len, size_t *off)
{
    size_t i = *off;
    KV_ASSERT(i < len);
    const char *nl = memchr(buf + i, '\n', len - i);
    KV_ASSERT(nl != NULL);
    size_t line_end = (size_t)(nl - buf) + 1;
    if (buf[i] == '$') {
        long long n = strtoll(buf + i + 1, NULL, 10);
        *off = n < 0 ? line_end : line_end + (size_t)n + 2;
    } else {
        *off = line_end;
    }
    KV_ASSERT(*off <= len);
}

/* Offset of the first element after an aggregate header "*N\r\n" (or "~N"). */
static size_t after_header(const char *buf, size_t len, long long *count)
{
    KV_ASSERT(len >= 4 && (buf[0] == '*' || buf[0] == '~'));
    *count = strtoll(buf + 1, NULL, 10);
    const char *nl = memchr(buf, '\n', len);
    KV_ASSERT(nl != NULL);
    return (size_t)(nl - buf) + 1;
}

/* ":<n>\r\n" at *off: n, and *off past it. */
static long long take_int(const char *buf, size_t len, size_t *off)
{
    KV_ASSERT(*off < len && buf[*off] == ':');
    long long n = strtoll(buf + *off + 1, NULL, 10);
    skip_elem(buf, len, off);
    return n;
}

/*
 * SCAN's reply from every shard's part (cmd_scan): the cursor is the earliest place
 * where a shard stopped (what lies beyond it is not covered by every shard); the keys
 * are those of the partitions before it, and of the partition it stopped inside up to
 * where it stopped, in map order. A shard stops after at least one segment, so the
 * cursor always moves on.
 */
struct scan_pick { /* one partition's keys in a shard's SCAN part */
    uint64_t idx;
    uint32_t t;
    size_t at; /* offset of its first key in the part */
    long long n;
};

static void merge_scan(struct resp_out *o, mi_heap_t *heap, const struct gather *g)
{
    uint64_t stop_idx = UINT64_MAX, stop_pos = 0; /* UINT64_MAX: every shard is done */
    size_t chunks = 0;
    for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
        const char *b = g->part_blob[t];
        if (b == NULL) {
            continue;
        }
        long long n; /* (an error part was replied by merge_parts) */
        size_t off = after_header(b, g->part_len[t], &n);
        long long idx = take_int(b, g->part_len[t], &off);
        uint64_t pos = (uint64_t)take_int(b, g->part_len[t], &off);
        uint64_t i = idx < 0 ? UINT64_MAX : (uint64_t)idx;
        if (i < stop_idx || (i == stop_idx && pos < stop_pos)) {
            stop_idx = i;
            stop_pos = pos;
        }
        chunks += (size_t)(n - 2) / 3;
    }
    struct scan_pick *pick = mi_heap_malloc(heap, (chunks + 1) * sizeof *pick);
    KV_ASSERT(pick != NULL);
    size_t npick = 0;
    long long total = 0;
    for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
        const char *b = g->part_blob[t];
        if (b == NULL) {
            continue;
        }
        long long n;
        size_t len = g->part_len[t], off = after_header(b, len, &n);
        take_int(b, len, &off);
        take_int(b, len, &off);
        for (long long c = 0; c < (n - 2) / 3; c++) {
            uint64_t idx = (uint64_t)take_int(b, len, &off);
            uint64_t end = (uint64_t)take_int(b, len, &off);
            long long k;
            off += after_header(b + off, len - off, &k);
            /* before the stop, or the partition a shard stopped inside, up to there */
            if ((idx < stop_idx || (idx == stop_idx && end == stop_pos && end != 0)) && k > 0) {
                pick[npick++] = (struct scan_pick){.idx = idx, .t = t, .at = off, .n = k};
                total += k;
            }
            for (long long i = 0; i < k; i++) {
                skip_elem(b, len, &off);
            }
        }
    }
    for (size_t i = 1; i < npick; i++) { /* in map order (a handful: insertion sort) */
        for (size_t j = i; j > 0 && pick[j].idx < pick[j - 1].idx; j--) {
            struct scan_pick tmp = pick[j];
            pick[j] = pick[j - 1];
            pick[j - 1] = tmp;
        }
    }
    char cbuf[24];
    uint64_t next = stop_idx == UINT64_MAX ? 0 : (stop_idx << 48) | stop_pos;
    int cn = snprintf(cbuf, sizeof cbuf, "%llu", (unsigned long long)next);
    reply_array(o, 2);
    reply_bulk(o, cbuf, (size_t)cn);
    reply_array(o, (size_t)total);
    for (size_t i = 0; i < npick; i++) {
        const char *b = g->part_blob[pick[i].t];
        size_t off = pick[i].at, start = off;
        for (long long k = 0; k < pick[i].n; k++) {
            skip_elem(b, g->part_len[pick[i].t], &off);
        }
        reply_raw(o, b + start, off - start);
    }
    mi_free(pick);
}

/* Whether a fan-out's merge reads its parts' bytes (the others use their sums). */
static bool merge_keeps_parts(uint8_t merge)
{
    return merge != CMD_MERGE_NONE && merge != CMD_MERGE_SUM && merge != CMD_MERGE_OK &&
           merge != CMD_MERGE_KILL;
}

/* Writes the merge of a fan-out's parts (g, and their integer results' sum) into o. */
static void merge_parts(struct resp_out *o, int resp, mi_heap_t *heap, uint8_t merge,
                        const struct gather *g, int64_t sum)
{
    if (merge_keeps_parts(merge) && merge != CMD_MERGE_RAW) {
        /* a part that is an error (one that exceeded client-output-buffer-limit): the
         * reply (the merges below read well-formed parts) */
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            if (g->part_blob[t] != NULL && g->part_blob[t][0] == '-') {
                reply_raw(o, g->part_blob[t], g->part_len[t]);
                return;
            }
        }
    }
    switch (merge) {
    case CMD_MERGE_SUM:
        reply_int(o, sum);
        break;
    case CMD_MERGE_OK:
        reply_ok(o);
        break;
    case CMD_MERGE_ARRAY: {
        size_t off[KVD_THREADS_MAX];
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            long long n = 0;
            off[t] = g->part_blob[t] ? after_header(g->part_blob[t], g->part_len[t], &n) : 0;
        }
        reply_array(o, g->nkeys);
        for (uint32_t i = 0; i < g->nkeys; i++) {
            uint16_t t = g->owner[i];
            size_t start = off[t];
            skip_elem(g->part_blob[t], g->part_len[t], &off[t]);
            reply_raw(o, g->part_blob[t] + start, off[t] - start);
        }
        break;
    }
    case CMD_MERGE_CONCAT: {
        long long total = 0;
        size_t start[KVD_THREADS_MAX] = {0};
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            long long n = 0;
            if (g->part_blob[t] != NULL) {
                start[t] = after_header(g->part_blob[t], g->part_len[t], &n);
                total += n;
            }
        }
        reply_array(o, (size_t)total);
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            if (g->part_blob[t] != NULL) {
                reply_raw(o, g->part_blob[t] + start[t], g->part_len[t] - start[t]);
            }
        }
        break;
    }
    case CMD_MERGE_SCAN:
        merge_scan(o, heap, g);
        break;
    case CMD_MERGE_DIGEST:
    case CMD_MERGE_XOR:
        cmd_merge_digest(o, merge == CMD_MERGE_DIGEST, (const char *const *)g->part_blob,
                         g->part_len, KVD_THREADS_MAX);
        break;
    case CMD_MERGE_KILL:
        if (sum > 0) {
            reply_ok(o);
        } else {
            reply_error(o, "ERR No such client");
        }
        break;
    case CMD_MERGE_BULKCAT: {
        size_t total = 0;
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            if (g->part_blob[t] != NULL) {
                long long n = strtoll(g->part_blob[t] + 1, NULL, 10);
                total += n > 0 ? (size_t)n : 0;
            }
        }
        char *cat = mi_heap_malloc(heap, total + 1);
        KV_ASSERT(cat != NULL);
        size_t off = 0;
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            if (g->part_blob[t] != NULL) {
                long long n = strtoll(g->part_blob[t] + 1, NULL, 10);
                const char *body = memchr(g->part_blob[t], '\n', g->part_len[t]);
                if (n > 0 && body != NULL) {
                    memcpy(cat + off, body + 1, (size_t)n);
                    off += (size_t)n;
                }
            }
        }
        if (resp == 3) {
            reply_verbatim(o, cat, off);
        } else {
            reply_bulk(o, cat, off);
        }
        mi_free(cat);
        break;
    }
    case CMD_MERGE_RANDOM: { /* [key count, key or null] per shard */
        static _Thread_local uint64_t seed;
        if (seed == 0) {
            seed = kv_clock_mono_ns() | 1;
        }
        long long total = 0, count[KVD_THREADS_MAX] = {0};
        size_t at[KVD_THREADS_MAX] = {0};
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            const char *b = g->part_blob[t];
            if (b == NULL) {
                continue;
            }
            long long n;
            size_t off = after_header(b, g->part_len[t], &n);
            count[t] = take_int(b, g->part_len[t], &off);
            at[t] = off;
            bool has = b[off] == '$' && b[off + 1] != '-';
            count[t] = has ? count[t] : 0;
            total += count[t];
        }
        if (total <= 0) {
            reply_null(o);
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        long long r = (long long)(seed % (uint64_t)total);
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            if (r < count[t]) {
                reply_raw(o, g->part_blob[t] + at[t], g->part_len[t] - at[t]);
                break;
            }
            r -= count[t];
        }
        break;
    }
    case CMD_MERGE_RAW:
        for (uint32_t t = 0; t < KVD_THREADS_MAX; t++) {
            if (g->part_blob[t] != NULL) {
                reply_raw(o, g->part_blob[t], g->part_len[t]);
            }
        }
        break;
    default:
        KV_ASSERT(0);
    }
}

/* Writes a finished fan-out reply into the connection's output. */
static void emit_merged(struct conn *c, struct pend *p)
{
    merge_parts(&c->out, c->resp, c->sh->heap, p->merge, p->g, p->sum);
}

/* Moves the ready prefix of the pending ring into the output chain. */
static void pend_drain(struct conn *c)
{
    while (pend_count(c) > 0) {
        struct pend *p = &c->pend[c->pend_head % CONN_PENDING_MAX];
        if (p->parts_left > 0) {
            break;
        }
        if (!(c->flags & CONN_CLOSING) && !p->silent) {
            if (p->merge == CMD_MERGE_NONE) {
                if (p->len > 0) {
                    reply_raw(&c->out, p->blob, p->len);
                }
            } else {
                emit_merged(c, p);
            }
        }
        if (!(c->flags & CONN_CLOSING) && p->after_len > 0) {
            reply_raw(&c->out, p->after, p->after_len);
        }
        free_pend(c, p);
        c->pend_head++;
    }
    if (resp_out_error(&c->out) != 0 && !(c->flags & CONN_CLOSING)) {
        close_over(c);
        return;
    }
    if (resp_out_queued_bytes(&c->out) > 0) {
        mark_dirty(c);
    }
}

/* ---- argv serialization for forwarded requests ----------------------------------- */

/* Layout: u32 argc, then per argument u32 length and the bytes. */
static void *argv_pack(struct shard *sh, size_t argc, const struct resp_arg *const *args,
                       size_t *len_out)
{
    size_t len = 4;
    for (size_t i = 0; i < argc; i++) {
        len += 4 + args[i]->len;
    }
    char *blob = blob_alloc(sh, len);
    KV_ASSERT(blob != NULL);
    uint32_t n32 = (uint32_t)argc;
    memcpy(blob, &n32, 4);
    size_t off = 4;
    for (size_t i = 0; i < argc; i++) {
        uint32_t l = (uint32_t)args[i]->len;
        memcpy(blob + off, &l, 4);
        memcpy(blob + off + 4, args[i]->ptr, l);
        off += 4 + l;
    }
    KV_ASSERT(off == len);
    *len_out = len;
    return blob;
}

static size_t argv_unpack(const char *blob, size_t len, struct resp_arg *argv, size_t max)
{
    uint32_t argc;
    KV_ASSERT(len >= 4);
    memcpy(&argc, blob, 4);
    KV_ASSERT(argc <= max);
    size_t off = 4;
    for (uint32_t i = 0; i < argc; i++) {
        uint32_t l;
        memcpy(&l, blob + off, 4);
        argv[i].ptr = blob + off + 4;
        argv[i].len = l;
        off += 4 + l;
    }
    KV_ASSERT(off == len);
    return argc;
}

/* ---- execution ------------------------------------------------------------------ */

/* What one execution (a whole command or a fan-out part) did, for the statistics. */
struct run_res {
    uint64_t us;
    bool failed;   /* replied an error */
    bool rejected; /* refused before doing anything (a subcommand's arity) */
    uint32_t db;   /* the database after it (SELECT inside a transaction changes it) */
};

/*
 * Counts one command in the client shard's statistics (INFO commandstats, the slowlog),
 * once, however many shards ran parts of it: executed calls with their time and
 * failures, or a rejection. `slow` is the prepared slowlog copy of a fan-out (else
 * argv is logged when the command was slow).
 */
static void account_who(struct shard *sh, const char *addr, const char *name, uint16_t row,
                        struct run_res r, size_t argc, const struct resp_arg *argv,
                        struct slowlog_entry *slow)
{
    if (row == CMD_ROW_NONE) {
        slowlog_drop(slow);
        return;
    }
    if (r.rejected) {
        STAT_ADD(sh->stats.cmd_rejected[row], 1);
        slowlog_drop(slow);
        return;
    }
    STAT_ADD(sh->stats.commands, 1);
    STAT_ADD(sh->stats.cmd_calls[row], 1);
    STAT_ADD(sh->stats.cmd_usec[row], r.us);
    if (KV_LIKELY(KV_CONF_GET(kvd_settings.latency_tracking))) {
        STAT_ADD(sh->stats.cmd_hist[row][latency_bucket(r.us)], 1);
    }
    if (KV_UNLIKELY(r.us >= 1000)) { /* the latency monitor counts whole milliseconds */
        latency_add(cmd_stat_row_fast(row) ? "fast-command" : "command", r.us / 1000);
    }
    if (r.failed) {
        STAT_ADD(sh->stats.cmd_failed[row], 1);
    }
    if (slow != NULL) {
        slowlog_commit(slow, r.us, sh->now_ms);
    } else if (KV_UNLIKELY(argv != NULL && slowlog_wants(r.us))) {
        slowlog_maybe_add(argc, argv, r.us, sh->now_ms, addr, name);
    }
}

static void account(struct shard *sh, struct conn *c, uint16_t row, struct run_res r, size_t argc,
                    const struct resp_arg *argv, struct slowlog_entry *slow)
{
    account_who(sh, c ? c->addr : "", c ? conn_name(c) : "", row, r, argc, argv, slow);
}

/* `trk`: the client's shard when it tracks the keys it reads (CLIENT TRACKING), else -1. */
static struct run_res run(struct shard *sh, struct conn *c, const struct cmd_desc *d, size_t argc,
                          const struct resp_arg *argv, struct resp_out *out, int64_t *sum,
                          uint64_t caller_id, uint32_t user, uint32_t db, int32_t trk)
{
    struct cmd_ctx x = {
        .argc = argc,
        .argv = argv,
        .desc = d,
        .sh = sh,
        .conn = c,
        .out = out,
        .now_ms = sh->now_ms,
        .caller_id = caller_id,
        .user = user,
        .db = db,
        .track = (uint32_t)(trk + 1),
    };
    uint64_t errors = reply_errors();
    uint64_t t0 = shard_cmd_clock(sh);
    d->fn(&x);
    sh->ran_not_readonly += !(d->flags & CMD_READONLY); /* (publish_stats: shard.c) */
    if (KV_UNLIKELY(trk >= 0) && (d->flags & CMD_READONLY)) {
        track_remember(sh, (uint32_t)trk, caller_id, d, argc, argv);
    }
    uint64_t us = shard_cmd_end_us(sh, t0);
    if (sum != NULL) {
        *sum = x.sum;
    }
    /* errors replied by the commands a transaction ran are theirs, not EXEC's */
    bool failed = reply_errors() - errors > x.inner_errors;
    return (struct run_res){.us = us, .failed = failed, .rejected = x.rejected, .db = x.db};
}

/*
 * With appendfsync always, a reply waits for this shard's WAL to make durable what the
 * command wrote, or what it may have read. Commands that touch no data (PING, INFO,
 * ...) never wait; reads do not wait while the WAL cannot be written at all (disk
 * full): they go on, as the -MISCONF text promises.
 */
static bool wal_holds(struct wal *w, const struct cmd_desc *d)
{
    if (wal_appended(w) == wal_durable(w) || d->exec == CMD_EXEC_CONN || d->fn == cmd_watch) {
        return false; /* (WATCH reads nothing: its +OK depends on nothing unwritten) */
    }
    return (d->flags & CMD_WRITE) || wal_refusing(w) == 0;
}

static void wal_gate(struct conn *c, const struct cmd_desc *d)
{
    struct wal *w = c->sh->wal;
    if (w != NULL && wal_holds(w, d)) {
        c->wal_wait = wal_appended(w);
    }
}

/* Runs a command here and queues its reply in order. */
static void exec_local(struct conn *c, const struct cmd_desc *d, size_t argc,
                       const struct resp_arg *argv)
{
    struct shard *sh = c->sh;
    uint16_t row = cmd_stat_row(d, argc, argv);
    size_t logged = (d->flags & CMD_NOSLOWLOG) ? 0 : argc;
    if (reply_direct(c)) {
        struct run_res r =
            run(sh, c, d, argc, argv, &c->out, NULL, c->id, c->user, c->db, reads_tracked(c));
        account(sh, c, row, r, logged, logged ? argv : NULL, NULL);
        wal_gate(c, d);
        mark_dirty(c);
        return;
    }
    resp_out_set_proto(sh->scratch, c->resp);
    struct run_res r =
        run(sh, c, d, argc, argv, sh->scratch, NULL, c->id, c->user, c->db, reads_tracked(c));
    account(sh, c, row, r, logged, logged ? argv : NULL, NULL);
    wal_gate(c, d);
    struct pend *p = pend_push(c);
    if (d->fn == cmd_subscribe || d->fn == cmd_psubscribe || d->fn == cmd_ssubscribe ||
        d->fn == cmd_unsubscribe || d->fn == cmd_punsubscribe || d->fn == cmd_sunsubscribe) {
        p->silent = false; /* confirmations are pushes, sent under CLIENT REPLY OFF too */
    }
    if (resp_out_error(sh->scratch) != 0) {
        scratch_reset(sh);
        close_over(c);
        return;
    }
    p->blob = scratch_take(sh, &p->len);
    c->pend_bytes += p->len;
    if (pend_over_limit(c)) {
        return;
    }
    pend_drain(c);
}

static void outbox_add(struct conn *c, uint32_t to, const struct xmsg *m)
{
    struct outmsg o = {.m = *m, .to = to};
    if (c->outbox_len < KV_ARRAY_LEN(c->outbox)) {
        c->outbox[c->outbox_len++] = o;
    } else {
        c->outbox_more =
            mi_heap_realloc(c->sh->heap, c->outbox_more, (c->outbox_more_len + 1) * sizeof o);
        KV_ASSERT(c->outbox_more != NULL);
        c->outbox_more[c->outbox_more_len++] = o;
    }
    mark_blocked(c);
}

/* Sends a message of the connection to shard `to` in the connection's order: behind
 * what waits in its outbox, or into the outbox when the queue is full. */
static void conn_send(struct conn *c, uint32_t to, struct xmsg *m)
{
    if (c->outbox_len > 0 || !shard_send(c->sh, to, m)) {
        if (c->outbox_len == 0) {
            STAT_ADD(c->sh->stats.queue_full_pauses, 1);
        }
        outbox_add(c, to, m);
    }
}

static void send_req(struct conn *c, uint32_t to, const struct cmd_desc *d, uint32_t seq,
                     uint32_t part, size_t argc, const struct resp_arg *const *args)
{
    struct xmsg m = {
        .kind = XM_REQ,
        .proto = (uint8_t)c->resp,
        .src = (uint16_t)c->sh->id,
        .seq = seq,
        .conn = c,
        .desc = d,
        .part = part | (reads_tracked(c) >= 0 ? XQ_PART_TRACK : 0),
        .caller_id = c->id,
        .db = c->db,
        .flags = c->user, /* (XM_REQ: the client's ACL user, for scripts' checks) */
    };
    size_t len;
    m.payload = argv_pack(c->sh, argc, args, &len);
    m.payload_len = len;
    c->remote_waiting++;
    STAT_ADD(c->sh->stats.forwarded, 1);
    conn_send(c, to, &m);
}

/* The connection no longer watches anything (INFO watching_clients counts connections
 * with watches, on their own shard). */
static void watch_forget(struct conn *c)
{
    if (shardset_count(&c->watch_shards) > 0) {
        STAT_SUB(c->sh->stats.watching_clients, 1);
        memset(&c->watch_shards, 0, sizeof c->watch_shards);
    }
}

/*
 * Drops the connection's watches where they are kept: at once when that is this shard,
 * else with a message that needs no reply. The message takes the connection's path to
 * that shard (its outbox when the queue is full), so it arrives after the requests the
 * connection sent there before and ahead of those it sends later.
 */
static void unwatch(struct conn *c)
{
    struct shardset s = c->watch_shards;
    watch_forget(c);
    for (uint32_t to = 0; to < c->sh->srv->nthreads; to++) {
        if (!shardset_has(&s, to)) {
            continue;
        }
        if (to == c->sh->id) {
            watch_drop(c->sh->watch, c->id);
            continue;
        }
        struct xmsg m = {.kind = XM_UNWATCH, .src = (uint16_t)c->sh->id, .caller_id = c->id};
        conn_send(c, to, &m);
    }
}

static void forward_one(struct conn *c, uint32_t to, const struct cmd_desc *d, size_t argc,
                        const struct resp_arg *argv)
{
    const struct resp_arg *args[ARGV_STACK];
    const struct resp_arg **ap = args;
    if (argc > ARGV_STACK) {
        ap = mi_heap_malloc(c->sh->heap, argc * sizeof *ap);
        KV_ASSERT(ap != NULL);
    }
    for (size_t i = 0; i < argc; i++) {
        ap[i] = &argv[i];
    }
    struct pend *p = pend_push(c);
    p->parts_left = 1;
    p->row = cmd_stat_row(d, argc, argv);
    p->script = d->exec == CMD_EXEC_SCRIPT;
    send_req(c, to, d, c->pend_tail - 1, 0, argc, ap);
    if (ap != args) {
        mi_free(ap);
    }
}

/* Stores one part's result in a pending slot; true if the slot became ready. */
static bool part_done(struct pend *p, uint32_t part, char *blob, size_t len, int64_t value,
                      struct run_res r)
{
    KV_ASSERT(p->parts_left > 0);
    p->sum += value;
    p->us += r.us;
    p->failed |= r.failed;
    if (p->g != NULL && merge_keeps_parts(p->merge)) {
        KV_ASSERT(part < KVD_THREADS_MAX && p->g->part_blob[part] == NULL);
        p->g->part_blob[part] = blob;
        p->g->part_len[part] = len;
    } else {
        blob_free(blob);
    }
    return --p->parts_left == 0;
}

/* A forwarded command's reply came back: count it here, on the client's shard. */
static void account_forwarded(struct conn *c, struct pend *p, struct run_res r, void *slow_argv)
{
    if (slow_argv == NULL) {
        account(c->sh, c, p->row, r, 0, NULL, NULL);
        return;
    }
    struct resp_arg stack_argv[ARGV_STACK];
    uint32_t argc;
    memcpy(&argc, slow_argv, 4);
    struct resp_arg *argv =
        argc <= ARGV_STACK ? stack_argv : mi_heap_malloc(c->sh->heap, argc * sizeof *argv);
    KV_ASSERT(argv != NULL);
    size_t len = 4;
    for (uint32_t i = 0, l; i < argc; i++) {
        memcpy(&l, (char *)slow_argv + len, 4);
        len += 4 + l;
    }
    argv_unpack(slow_argv, len, argv, argc);
    account(c->sh, c, p->row, r, argc, argv, NULL);
    if (argv != stack_argv) {
        mi_free(argv);
    }
    blob_free(slow_argv);
}

/* Every part of a fan-out is done: count the command once, with the parts' total time. */
static void account_fan_out(struct conn *c, struct pend *p)
{
    struct run_res r = {.us = p->us, .failed = p->failed};
    account(c->sh, c, p->row, r, 0, NULL, p->slow);
    p->slow = NULL;
    p->row = CMD_ROW_NONE;
}

/*
 * Fan-out: runs `d` on every shard that owns some of its keys (or, for CMD_EXEC_ALL,
 * on every shard), each with its own subset of the arguments, and merges the results.
 */
/* The arguments of shard t's part of a fan-out: the name, then every argument (ALL) or
 * its keys (with their values, for MSET). Returns their count. */
static size_t part_args(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv,
                        const uint16_t *owner_of_key, size_t nkeys, int step, uint32_t t,
                        const struct resp_arg **args)
{
    size_t n = 0;
    args[n++] = &argv[0];
    if (d->exec == CMD_EXEC_ALL) {
        for (size_t i = 1; i < argc; i++) {
            args[n++] = &argv[i];
        }
        return n;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (owner_of_key[i] == t) {
            for (int s = 0; s < step; s++) {
                args[n++] = &argv[1 + i * (size_t)step + (size_t)s];
            }
        }
    }
    return n;
}

static void fan_out(struct conn *c, const struct cmd_desc *d, size_t argc,
                    const struct resp_arg *argv, const uint16_t *owner_of_key)
{
    struct shard *sh = c->sh;
    uint32_t nthreads = sh->srv->nthreads;
    size_t nkeys = 0;
    int step = d->key_step > 0 ? d->key_step : 1;
    if (d->exec == CMD_EXEC_MULTI) {
        nkeys = (argc - 1) / (size_t)step;
    }
    const struct resp_arg **args = mi_heap_malloc(sh->heap, argc * sizeof *args);
    KV_ASSERT(args != NULL);
    /* Count the parts first so that a local part finishing early cannot complete it. */
    bool used[KVD_THREADS_MAX] = {false};
    uint32_t parts = 0;
    for (uint32_t t = 0; t < nthreads; t++) {
        bool any = d->exec == CMD_EXEC_ALL;
        for (size_t i = 0; i < nkeys && !any; i++) {
            any = owner_of_key[i] == t;
        }
        used[t] = any;
        parts += any;
    }
    /* This shard's part runs before the command's pending slot is made, so that what it
     * pushes to this very connection (PUBLISH to a channel it subscribes to) comes before
     * the command's reply, as in Redis. */
    char *local_blob = NULL;
    size_t local_len = 0;
    bool local_over = false; /* its reply passed the output limit: the client is closed */
    int64_t local_sum = 0;
    struct run_res local_r = {0};
    if (used[sh->id]) {
        size_t n = part_args(d, argc, argv, owner_of_key, nkeys, step, sh->id, args);
        struct resp_arg local[ARGV_STACK];
        struct resp_arg *lv = n <= ARGV_STACK ? local : mi_heap_malloc(sh->heap, n * sizeof *lv);
        KV_ASSERT(lv != NULL);
        for (size_t i = 0; i < n; i++) {
            lv[i] = *args[i];
        }
        resp_out_set_proto(sh->scratch, c->resp);
        local_r = run(sh, NULL, d, n, lv, sh->scratch, &local_sum, c->id, c->user, c->db,
                      reads_tracked(c));
        wal_gate(c, d);
        local_blob = scratch_result(sh, &local_len, &local_over);
        if (lv != local) {
            mi_free(lv);
        }
    }
    struct pend *p = pend_push(c);
    uint32_t seq = c->pend_tail - 1;
    p->merge = (uint8_t)d->merge;
    p->row = cmd_stat_row(d, argc, argv);
    if (p->row != CMD_ROW_NONE) {
        p->slow = slowlog_prepare(argc, argv, c->addr, conn_name(c));
    }
    p->g = mi_heap_zalloc(sh->heap, sizeof *p->g + nkeys * sizeof p->g->owner[0]);
    KV_ASSERT(p->g != NULL);
    p->g->nkeys = (uint32_t)nkeys;
    for (size_t i = 0; i < nkeys; i++) {
        p->g->owner[i] = owner_of_key[i];
    }
    p->parts_left = parts + 1; /* +1 held until every part is sent */
    for (uint32_t t = 0; t < nthreads; t++) {
        if (!used[t]) {
            continue;
        }
        if (t == sh->id) {
            size_t before = slot_bytes(p);
            part_done(p, t, local_blob, local_len, local_sum, local_r);
            c->pend_bytes += slot_bytes(p) - before;
        } else {
            size_t n = part_args(d, argc, argv, owner_of_key, nkeys, step, t, args);
            send_req(c, t, d, seq, t, n, args);
        }
    }
    mi_free(args);
    if (local_over) {
        close_over(c);
    }
    if (pend_over_limit(c) || (c->flags & CONN_CLOSING)) {
        return; /* closing: the slot is freed with the connection */
    }
    if (--p->parts_left == 0) { /* the hold taken above */
        account_fan_out(c, p);
        pend_drain(c);
    }
}

/* The shard owning a key hash. */
static uint32_t owner(struct shard *sh, uint64_t h)
{
    return route_lookup(sh->srv->route, h)->thread;
}

static uint64_t arg_hash(const struct resp_arg *a)
{
    return tbl_hash(a->ptr, a->len);
}

/* Whether SAME command d runs with its keys on several shards (else -CROSSSLOT):
 * all of them but the internal ones. */
static bool same_crosses(const struct cmd_desc *d)
{
    return !(d->flags & CMD_HIDDEN);
}

/* The shard owning all of a SAME command's keys (RENAME, MSETNX, ...: its handler works
 * on the tables of any partitions of its shard), or KVD_THREADS_MAX when they are on
 * more than one (-CROSSSLOT). */
static uint32_t same_shard(struct shard *sh, const struct cmd_desc *d, size_t argc,
                           const struct resp_arg *argv)
{
    const struct route_table *rt = sh->srv->route;
    uint32_t first = route_lookup(rt, arg_hash(&argv[d->first_key]))->thread;
    size_t last = d->last_key < 0 ? argc - 1 : (size_t)d->last_key;
    for (size_t i = (size_t)d->first_key; i <= last && i < argc; i += (size_t)d->key_step) {
        if (route_lookup(rt, arg_hash(&argv[i]))->thread != first) {
            return KVD_THREADS_MAX;
        }
    }
    return first;
}

/* Runs an ALL command's argument check on this shard; false after replying an error. */
static bool precheck(struct conn *c, const struct cmd_desc *d, size_t argc,
                     const struct resp_arg *argv)
{
    if (d->check == NULL) {
        return true;
    }
    struct resp_out *o = early_out(c);
    struct cmd_ctx x = {.argc = argc,
                        .argv = argv,
                        .desc = d,
                        .sh = c->sh,
                        .conn = c,
                        .out = o,
                        .now_ms = c->sh->now_ms,
                        .caller_id = c->id};
    return d->check(&x);
}

/* Where a reply made before execution goes: straight to the output while nothing is
 * pending, else to the scratch output (then kept in order by finish_early). */
static struct resp_out *early_out(struct conn *c)
{
    struct resp_out *o = reply_direct(c) ? &c->out : c->sh->scratch;
    resp_out_set_proto(o, c->resp);
    return o;
}

static void unknown_command(struct conn *c, const struct resp_cmd *cmd)
{
    char args[256];
    size_t off = 0;
    for (size_t i = 1; i < cmd->argc && off < 128; i++) {
        int n = snprintf(args + off, sizeof args - off, "'%.*s' ",
                         (int)(cmd->argv[i].len > 128 - off ? 128 - off : cmd->argv[i].len),
                         cmd->argv[i].ptr);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
        if (off >= sizeof args) {
            off = sizeof args - 1;
        }
    }
    args[off] = '\0';
    const struct resp_arg *name = &cmd->argv[0];
    struct resp_out *o = early_out(c);
    reply_error(o, "ERR unknown command '%.*s', with args beginning with: %s",
                (int)(name->len > 128 ? 128 : name->len), name->ptr, args);
}

/* Replies an error generated before execution, in order. */
static void early_error(struct conn *c, const char *fmt, const char *arg)
{
    struct resp_out *o = early_out(c);
    reply_error(o, fmt, arg);
}

/* Counts a known command refused before execution: rejected (arity, NOAUTH, MISCONF,
 * CROSSSLOT, as Redis rejects them) or failed (errors Redis finds while executing:
 * SCAN's cursor, MSET's pairs, the whole-keyspace commands' arguments). */
static void early_count(struct conn *c, const struct cmd_desc *d, bool rejected, size_t argc,
                        const struct resp_arg *argv)
{
    struct run_res r = {.failed = !rejected, .rejected = rejected};
    account(c->sh, c, cmd_stat_row(d, argc, argv), r, argc, argv, NULL);
}

static void finish_early(struct conn *c)
{
    if (reply_direct(c)) {
        mark_dirty(c);
        return;
    }
    struct pend *p = pend_push(c);
    p->blob = scratch_take(c->sh, &p->len);
    c->pend_bytes += p->len;
    pend_drain(c);
}

/*
 * maxmemory (evict.c): evicts this shard's share of any excess before the command, as
 * Redis does before every command, then says whether it may run. Refused over the limit
 * with nothing to evict: commands that may add memory; inside MULTI every command but
 * EXEC, DISCARD, QUIT and RESET (queuing takes memory too); EXEC if it queued one.
 */
static bool oom_gate(struct conn *c, const struct cmd_desc *d)
{
    bool deny = (d->flags & CMD_DENYOOM) != 0;
    if (c->txn != NULL) {
        deny = d->fn == cmd_exec ? c->txn->denyoom
                                 : d->fn != cmd_discard && d->fn != cmd_quit && d->fn != cmd_reset;
    }
    bool ok = evict_gate(c->sh, deny);
    track_deliver(c->sh); /* what eviction invalidated goes before this command's reply, as
                           * Redis */
    return ok;
}

/* An early error inside MULTI: the transaction will not run (EXEC replies -EXECABORT). */
static void txn_flag(struct conn *c)
{
    if (c->txn != NULL) {
        c->txn->aborted = true;
    }
}

static void early_simple(struct conn *c, const char *s)
{
    reply_simple(early_out(c), s);
    finish_early(c);
}

/* Connection commands that need no connection state: they may run where the
 * transaction's partition is. */
static bool txn_conn_ok(const struct cmd_desc *d)
{
    return d->fn == cmd_ping || d->fn == cmd_echo || d->fn == cmd_time || d->fn == cmd_lastsave ||
           d->fn == cmd_unwatch || d->fn == cmd_select || d->fn == cmd_object ||
           d->fn == cmd_role || d->fn == cmd_publish || d->fn == cmd_spublish ||
           d->fn == cmd_script;
}

/*
 * Connection and server commands a transaction may hold: all but SAVE and SHUTDOWN
 * (Redis's no-multi ones) and the keyed forms MEMORY USAGE and DEBUG OBJECT (they run
 * where their key is, which a transaction does not route). The subscriptions are set up
 * by EXEC, as in Redis; MONITOR is queued and refused by EXEC, as in Redis. Those that
 * need the connection make EXEC run on its shard (txn.here).
 */
static bool txn_conn_allowed(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (d->fn == cmd_save || d->fn == cmd_shutdown) {
        return false;
    }
    if ((d->fn == cmd_memory && argc >= 2 && cmd_arg_is(&argv[1], "usage")) ||
        (d->fn == cmd_debug && argc >= 2 && cmd_arg_is(&argv[1], "object"))) {
        return false;
    }
    return true;
}

/* MULTI, EXEC and DISCARD act on the connection's queue: txn_control runs them. */
void cmd_multi(struct cmd_ctx *x)
{
    (void)x;
    KV_ASSERT(!"MULTI is dispatched by the connection");
}

void cmd_exec(struct cmd_ctx *x)
{
    (void)x;
    KV_ASSERT(!"EXEC is dispatched by the connection");
}

void cmd_discard(struct cmd_ctx *x)
{
    (void)x;
    KV_ASSERT(!"DISCARD is dispatched by the connection");
}

void conn_txn_discard(struct conn *c)
{
    txn_free(c);
    unwatch(c);
}

bool conn_in_multi(const struct conn *c)
{
    return c->txn != NULL;
}

/* A command CLIENT PAUSE WRITE holds, as Redis's write and may-replicate ones: writes,
 * PUBLISH, FUNCTION LOAD / DELETE / FLUSH / RESTORE, and scripts and functions as Redis
 * flags them: by their flags when they have some (held unless no-writes, _RO forms
 * included), else EVAL, EVALSHA and FCALL but not their _RO forms. Only evaluated while
 * a pause is in force or a command is queued in MULTI. */
static bool replicates(const struct cmd_desc *d, size_t argc, const struct resp_arg *argv)
{
    if (d->exec == CMD_EXEC_SCRIPT && argc >= 2) {
        int64_t flags =
            d->fn == cmd_fcall ? func_flags(argv[1].ptr, argv[1].len) : script_flags(argc, argv);
        return flags >= 0 ? !(flags & SCRIPT_FN_NO_WRITES) : !(d->flags & CMD_READONLY);
    }
    if (d->fn == cmd_function && argc >= 2) {
        return cmd_arg_is(&argv[1], "load") || cmd_arg_is(&argv[1], "delete") ||
               cmd_arg_is(&argv[1], "flush") || cmd_arg_is(&argv[1], "restore");
    }
    return (d->flags & CMD_WRITE) || cmd_may_replicate(d);
}

/* Checks and queues one command inside MULTI; replies +QUEUED or the error. */
static void txn_queue(struct conn *c, const struct cmd_desc *d, size_t argc,
                      const struct resp_arg *argv)
{
    struct txn *t = c->txn;
    const struct route_table *rt = c->sh->srv->route;
    bool allowed = d->exec == CMD_EXEC_KEY || d->exec == CMD_EXEC_SAME ||
                   d->exec == CMD_EXEC_MULTI || d->exec == CMD_EXEC_ALL ||
                   d->exec == CMD_EXEC_SCRIPT ||
                   (d->exec == CMD_EXEC_CONN && txn_conn_allowed(d, argc, argv));
    if (!allowed || (d->flags & CMD_HIDDEN)) {
        early_error(c, "ERR Command not allowed inside a transaction%s", "");
        early_count(c, d, true, argc, argv);
        txn_flag(c);
        finish_early(c);
        return;
    }
    if (d->fn == cmd_object) { /* its subcommands are checked now, as Redis's are */
        bool keyed = cmd_object_keyed(&argv[1]), help = cmd_arg_is(&argv[1], "help");
        char msg[256];
        if (!keyed && !help) {
            snprintf(msg, sizeof msg, "ERR unknown subcommand '%.*s'. Try OBJECT HELP.",
                     (int)(argv[1].len > 128 ? 128 : argv[1].len), argv[1].ptr);
        } else if (argc != (keyed ? 3u : 2u)) {
            char full[64];
            cmd_full_name(d, argc, argv, full, sizeof full);
            snprintf(msg, sizeof msg, "ERR wrong number of arguments for '%s' command", full);
        } else {
            msg[0] = '\0';
        }
        if (msg[0] != '\0') {
            early_error(c, "%s", msg);
            early_count(c, d, true, argc, argv);
            txn_flag(c);
            finish_early(c);
            return;
        }
    }
    size_t first = (size_t)d->first_key, last = d->last_key < 0 ? argc - 1 : (size_t)d->last_key;
    if (d->fn == cmd_object && argc == 3 && cmd_object_keyed(&argv[1])) {
        first = last = 2; /* OBJECT ENCODING key, ...: its key */
    }
    if (d->exec == CMD_EXEC_MULTI && d->key_step == 2 && (argc - 1) % 2 != 0) {
        first = 0; /* MSET's missing value: an arity error when it runs, as in Redis */
    }
    /* The shards of its keys join the transaction's; a command that needs its keys in
     * one shard (RENAME, ...) is refused otherwise, as outside a transaction. */
    struct shardset owners = {{0}};
    uint32_t first_shard = KVD_THREADS_MAX;
    bool same = true;
    if (first > 0) {
        size_t step = d->key_step > 0 ? (size_t)d->key_step : 1;
        for (size_t i = first; i <= last && i < argc; i += step) {
            const struct route_part *p = route_lookup(rt, arg_hash(&argv[i]));
            first_shard = first_shard != KVD_THREADS_MAX ? first_shard : p->thread;
            same &= p->thread == first_shard;
            shardset_add(&owners, p->thread);
        }
    }
    size_t numkeys = 0;
    if (d->exec == CMD_EXEC_SCRIPT && script_numkeys(argc, argv, &numkeys) == NULL) {
        for (size_t i = 0; i < numkeys; i++) { /* a script: its declared keys */
            shardset_add(&owners, owner(c->sh, arg_hash(&argv[3 + i])));
        }
    }
    bool every = (d->fn == cmd_client &&
                  (cmd_arg_is(&argv[1], "list") || (cmd_arg_is(&argv[1], "kill") && argc >= 3))) ||
                 (d->fn == cmd_debug &&
                  (cmd_arg_is(&argv[1], "digest") || cmd_arg_is(&argv[1], "digest-value")));
    if (d->exec == CMD_EXEC_ALL || (d->exec == CMD_EXEC_SCRIPT && numkeys == 0) || every) {
        for (uint32_t s = 0; s < c->sh->srv->nthreads; s++) { /* may touch any shard */
            shardset_add(&owners, s);
        }
    }
    if (!same && d->exec == CMD_EXEC_SAME && !same_crosses(d)) {
        early_error(c, "CROSSSLOT Keys in request don't hash to the same slot%s", "");
        early_count(c, d, true, argc, argv);
        txn_flag(c);
        finish_early(c);
        return;
    }
    char count[24];
    int k = snprintf(count, sizeof count, "%zu", argc);
    bool ok = txn_push(c, count, (size_t)k);
    for (size_t i = 0; ok && i < argc; i++) {
        ok = txn_push(c, argv[i].ptr, argv[i].len);
    }
    if (!ok) {
        early_error(c, "ERR transaction exceeds client-query-buffer-limit%s", "");
        txn_flag(c);
        finish_early(c);
        return;
    }
    t->ncmds++;
    t->writes |= (d->flags & CMD_WRITE) != 0;
    t->replicates |= replicates(d, argc, argv);
    t->denyoom |= (d->flags & CMD_DENYOOM) != 0;
    t->scripts |= d->exec == CMD_EXEC_SCRIPT;
    for (size_t w = 0; w < KV_ARRAY_LEN(owners.w); w++) {
        t->shards.w[w] |= owners.w[w];
    }
    /* EXEC runs those here (see txn_control) */
    t->selects |= d->fn == cmd_select || (d->exec == CMD_EXEC_CONN && !txn_conn_ok(d));
    early_simple(c, "QUEUED");
}

static bool txn_exec_cross(struct conn *c);

/* Runs one command outside MULTI as a cross-shard transaction of its own (SWAPDB,
 * FLUSHALL, FLUSHDB: no client sees the databases half swapped or half emptied; a script
 * whose keys are not on one shard). */
static void txn_bare(struct conn *c, const struct cmd_desc *d, size_t argc,
                     const struct resp_arg *argv)
{
    KV_ASSERT(c->txn == NULL &&
              (d->exec == CMD_EXEC_ALL || d->exec == CMD_EXEC_SCRIPT || d->exec == CMD_EXEC_SAME));
    c->txn = mi_heap_zalloc(c->sh->heap, sizeof *c->txn);
    KV_ASSERT(c->txn != NULL);
    struct txn *t = c->txn;
    t->bare = true;
    t->silent = c->reply_mode == CONN_REPLY_OFF || c->reply_mode == CONN_REPLY_SKIP;
    char count[24];
    int k = snprintf(count, sizeof count, "%zu", argc);
    bool ok = txn_push(c, count, (size_t)k);
    for (size_t i = 0; ok && i < argc; i++) {
        ok = txn_push(c, argv[i].ptr, argv[i].len);
    }
    if (!ok) { /* more than 4 GiB of arguments */
        txn_free(c);
        early_error(c, "ERR %s", "the command's arguments exceed 4 GiB");
        early_count(c, d, true, argc, argv);
        finish_early(c);
        return;
    }
    t->ncmds = 1;
    t->writes = (d->flags & CMD_WRITE) != 0;
    if (!txn_exec_cross(c)) {
        c->flags |= CONN_TXN_WAIT;
        mark_blocked(c);
    }
}

/* MULTI, EXEC, DISCARD (WATCH inside MULTI is refused before). */
static void txn_control(struct conn *c, const struct cmd_desc *d, size_t argc,
                        const struct resp_arg *argv)
{
    struct shard *sh = c->sh;
    struct run_res ok = {0}, failed = {.failed = true};
    uint16_t row = cmd_stat_row(d, argc, argv);
    if (d->fn == cmd_multi) {
        if (c->txn != NULL) {
            early_error(c, "ERR MULTI calls can not be nested%s", "");
            account(sh, c, row, failed, argc, argv, NULL);
            finish_early(c);
            return;
        }
        c->txn = mi_heap_zalloc(sh->heap, sizeof *c->txn);
        KV_ASSERT(c->txn != NULL);
        account(sh, c, row, ok, argc, argv, NULL);
        early_simple(c, "OK");
        return;
    }
    if (d->fn == cmd_discard) {
        if (c->txn == NULL) {
            early_error(c, "ERR DISCARD without MULTI%s", "");
            account(sh, c, row, failed, argc, argv, NULL);
            finish_early(c);
            return;
        }
        txn_free(c);
        unwatch(c);
        account(sh, c, row, ok, argc, argv, NULL);
        early_simple(c, "OK");
        return;
    }
    KV_ASSERT(d->fn == cmd_exec);
    if (c->txn == NULL || c->txn->aborted) {
        early_error(c,
                    c->txn == NULL
                        ? "ERR EXEC without MULTI%s"
                        : "EXECABORT Transaction discarded because of previous errors.%s",
                    "");
        account(sh, c, row, failed, argc, argv, NULL);
        if (c->txn != NULL) { /* as in Redis, EXEC without MULTI keeps the watches */
            txn_free(c);
            unwatch(c);
        }
        finish_early(c);
        return;
    }
    struct txn *t = c->txn;
    if (t->writes && atomic_load_explicit(&sh->srv->wal_refusing, memory_order_relaxed) != 0) {
        int err = atomic_load_explicit(&sh->srv->wal_errno, memory_order_relaxed);
        early_error(c,
                    "EXECABORT Transaction discarded because of: MISCONF Errors writing to the "
                    "WAL: %s. Write commands are refused until it can be written again; reads "
                    "go on.",
                    strerror(err));
        account(sh, c, row, (struct run_res){.rejected = true}, argc, argv, NULL);
        txn_free(c);
        unwatch(c);
        finish_early(c);
        return;
    }
    struct shardset where = t->shards;
    for (size_t k = 0; k < KV_ARRAY_LEN(where.w); k++) {
        where.w[k] |= c->watch_shards.w[k];
    }
    uint32_t one = shardset_count(&where) == 1 ? shardset_first(&where) : sh->id;
    if (shardset_count(&where) > 1 || (t->selects && one != sh->id)) {
        /* keys (or watched keys) on several shards: run here, the others parked; also a
         * transaction with SELECT whose shard is another: run here, the connection
         * knows its database once the transaction has run (a WATCH may stop it) before
         * it takes its next command */
        t->silent = c->reply_mode == CONN_REPLY_OFF || c->reply_mode == CONN_REPLY_SKIP;
        if (!txn_exec_cross(c)) {
            c->flags |= CONN_TXN_WAIT; /* another shard's transaction runs: next turn */
            mark_blocked(c);
        }
        return;
    }
    /* argv of exec|run: "EXEC", the command count, the client's address and name (for
     * the slowlog of the shard that runs it), then each command's count and args */
    size_t n = (size_t)t->nargs + 4;
    struct resp_arg *av = mi_heap_malloc(sh->heap, n * sizeof *av);
    KV_ASSERT(av != NULL);
    char count[24];
    av[0] = (struct resp_arg){.ptr = "EXEC", .len = 4};
    av[1] = (struct resp_arg){.ptr = count,
                              .len = (size_t)snprintf(count, sizeof count, "%u", t->ncmds)};
    av[2] = (struct resp_arg){.ptr = c->addr, .len = strlen(c->addr)};
    av[3] = (struct resp_arg){.ptr = conn_name(c), .len = strlen(conn_name(c))};
    for (uint32_t i = 0; i < t->nargs; i++) {
        av[i + 4] = (struct resp_arg){.ptr = t->buf + t->args[i].off, .len = t->args[i].len};
    }
    const struct cmd_desc *run_d = cmd_lookup_hidden("exec|run");
    uint32_t to = shardset_count(&where) == 0 ? sh->id : shardset_first(&where);
    watch_forget(c); /* exec|run drops the watches there */
    if (to == sh->id) {
        exec_local(c, run_d, n, av); /* a SELECT it runs sets c->db */
    } else {
        KV_ASSERT(!t->selects); /* those run here (above) */
        forward_one(c, to, run_d, n, av);
        c->pend[(c->pend_tail - 1) % CONN_PENDING_MAX].script = t->scripts;
    }
    mi_free(av);
    txn_free(c);
}

void conn_client_info(struct shard *sh, uint64_t id, const char *cmd, const char *user, char *buf,
                      size_t cap)
{
    struct conn *c = conn_by_id(sh, id);
    if (c == NULL) { /* a client of another shard: what this one knows of it */
        snprintf(buf, cap, "id=%llu cmd=%s user=%s", (unsigned long long)id, cmd, user);
        return;
    }
    struct conn_info ci;
    conn_info(c, sh->now_ms, &ci);
    int n = cmd_client_line(&ci, buf, cap);
    if (n > 0 && (size_t)n <= cap && buf[n - 1] == '\n') {
        buf[n - 1] = '\0';
    }
}

void conn_acl_log(struct shard *sh, uint64_t id, const char *cmd, const struct user *u,
                  enum users_denied why, enum users_ctx ctx, const struct cmd_desc *d, size_t argc,
                  const struct resp_arg *argv, size_t pos)
{
    char info[1024], name[64];
    const char *un = user_name(u);
    conn_client_info(sh, id, cmd, un, info, sizeof info);
    if (why == USERS_DENIED_CMD) {
        cmd_full_name(d, argc, argv, name, sizeof name);
        users_log(why, ctx, name, strlen(name), un, strlen(un), info);
    } else {
        users_log(why, ctx, argv[pos].ptr, argv[pos].len, un, strlen(un), info);
    }
}

/* EXEC: whether a queued command's user may still run it (Redis checks again, as the
 * rules may have changed since it was queued); false after the error reply. */
static bool exec_acl_ok(struct shard *sh, uint64_t id, uint32_t user, const struct cmd_desc *d,
                        size_t argc, const struct resp_arg *argv, struct resp_out *out)
{
    users_view_refresh(&sh->users);
    const struct user *u = users_view_get(&sh->users, user);
    size_t pos = 0;
    enum users_denied why = u == NULL ? USERS_DENIED_CMD : user_check(u, d, argc, argv, &pos);
    if (KV_LIKELY(why == USERS_OK)) {
        return true;
    }
    if (u != NULL) {
        conn_acl_log(sh, id, "exec", u, why, USERS_CTX_MULTI, d, argc, argv, pos);
    }
    reply_error(out,
                "NOPERM ACLs rules changed between the moment the transaction was accumulated "
                "and the EXEC call. This command is no longer allowed for the following reason: "
                "%s",
                why == USERS_DENIED_KEY ? "no permission to touch the specified keys"
                : why == USERS_DENIED_CHANNEL
                    ? "no permission to access one of the channels used as arguments"
                    : "no permission to execute the command or subcommand");
    return false;
}

/*
 * exec|run: a transaction's commands, one after another on this shard (the one owning
 * all its keys and watched keys, or the client's if it has none), their replies as one
 * array. Each is counted in the statistics of the shard that runs it.
 */
void conn_txn_run(struct cmd_ctx *x)
{
    int64_t ncmds = 0;
    bool ok = cmd_parse_i64(&x->argv[1], &ncmds);
    KV_ASSERT(ok && ncmds >= 0);
    KV_ASSERT(x->argc >= 4);
    /* WATCH: a watched key changed (or expired) since: nothing runs, a null reply */
    bool clean = watch_clean(x->sh->watch, x->caller_id, x->now_ms);
    watch_drop(x->sh->watch, x->caller_id);
    if (!clean) {
        reply_null_array(x->out);
        return;
    }
    reply_array(x->out, (size_t)ncmds);
    char addr[64], name[256];
    snprintf(addr, sizeof addr, "%.*s", (int)x->argv[2].len, x->argv[2].ptr);
    snprintf(name, sizeof name, "%.*s", (int)x->argv[3].len, x->argv[3].ptr);
    size_t i = 4;
    uint32_t db = x->db; /* a SELECT inside changes it for the commands after it */
    for (int64_t k = 0; k < ncmds; k++) {
        int64_t cnt = 0;
        ok = cmd_parse_i64(&x->argv[i], &cnt);
        KV_ASSERT(ok && cnt >= 1 && i + 1 + (size_t)cnt <= x->argc);
        const struct resp_arg *argv = &x->argv[i + 1];
        size_t argc = (size_t)cnt;
        i += 1 + argc;
        const struct cmd_desc *d = cmd_lookup(argv[0].ptr, argv[0].len);
        KV_ASSERT(d != NULL && cmd_arity_ok(d, argc)); /* checked when queued */
        if (d->fn == cmd_object && argc == 3 && cmd_object_keyed(&argv[1])) {
            d = cmd_lookup_hidden("object|key"); /* its key is in this partition */
        }
        uint16_t row = cmd_stat_row(d, argc, argv);
        /* (the connection's user now: an AUTH inside the transaction changes it) */
        uint32_t user = x->conn != NULL ? x->conn->user : x->user;
        if (!exec_acl_ok(x->sh, x->caller_id, user, d, argc, argv, x->out)) {
            x->inner_errors++;
            account_who(x->sh, addr, name, row, (struct run_res){.failed = true}, argc, argv, NULL);
            continue;
        }
        if (d->exec == CMD_EXEC_MULTI && d->key_step == 2 && (argc - 1) % 2 != 0) {
            reply_err_arity(x->out, d->name); /* MSET's pairs: found when it runs */
            x->inner_errors++;
            account_who(x->sh, addr, name, row, (struct run_res){.failed = true}, argc, argv, NULL);
            continue;
        }
        uint64_t errors = reply_errors();
        x->sh->in_exec = true; /* (a BGSAVE in it forks after it: dump.h) */
        struct run_res r = run(x->sh, x->conn, d, argc, argv, x->out, NULL, x->caller_id, x->user,
                               db, (int32_t)x->track - 1);
        x->sh->in_exec = false;
        db = r.db;
        account_who(x->sh, addr, name, row, r, argc, argv, NULL);
        x->inner_errors += reply_errors() - errors;
    }
    KV_ASSERT(i == x->argc);
}

/*
 * exec|sync: sent by a cross-shard EXEC to each parked shard its transaction wrote on,
 * once released; its (empty) reply is held there until the WAL has made those writes
 * durable, like any write's reply, so the EXEC's reply waits for every shard's WAL.
 */
void conn_txn_sync(struct cmd_ctx *x)
{
    (void)x;
}

/* ---- cross-shard transactions -------------------------------------------------- */

/*
 * A transaction whose keys or watched keys live on more than one shard runs on the
 * client's shard, the coordinator, while every other shard involved is parked:
 *
 *   1. The coordinator takes the server's transaction lock (one cross-shard transaction
 *      at a time, so two can never wait for each other); if another shard holds it, the
 *      connection stops taking commands and tries again next loop turn (CONN_TXN_WAIT).
 *   2. It sends XM_PARK to each other shard through the connection's queue to it, so
 *      that the requests the client sent there before arrive first, and wakes them.
 *      A shard that reads XM_PARK stops where it is (between two messages, its state
 *      consistent) and serves the coordinator's operations (conn_txn_serve) on its own
 *      thread: nothing else runs there until it is released.
 *   3. The coordinator checks and drops the client's watches on each shard, then runs
 *      the commands in order: each on the shard owning its keys (a parked shard runs it
 *      on request and hands back the reply bytes), multi-key commands split by owner and
 *      merged as a fan-out is, connection commands (SELECT, PING) here.
 *   4. It releases the parked shards and the lock. The reply waits, as a fan-out's
 *      does, for an exec|sync from each parked shard the transaction wrote on: those
 *      come back once that shard's WAL holds the writes.
 *
 * Every command runs on its owner's thread, with that shard's tables, heap and WAL, and
 * no other command runs on any of the shards involved in between: the transaction is
 * isolated as a single-shard one is. After a crash, its records are in each shard's
 * WAL, written by each separately: one shard's part may be there without another's if
 * kvd dies before the reply (never after it, with appendfsync always).
 */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Spins until the slot's state is `until` (until_not: is not `from`), yielding the core
 * after a while. While a script runs past busy-reply-threshold the waiting shard serves
 * its own clients about every millisecond (they get -BUSY, SCRIPT KILL runs), as the
 * script's own shard does from its hook: a shard parked by that script, or a coordinator
 * waiting for a shard busy with one (`self`: the coordinator's client, left as it is). */
static uint32_t txn_spin(struct shard *sh, struct conn *self, struct txn_slot *ts, uint32_t v,
                         bool until_not)
{
    uint64_t next_ns = 0;
    for (uint32_t i = 0;; i++) {
        uint32_t s = atomic_load_explicit(&ts->state, memory_order_acquire);
        if (until_not ? s != v : s == v) {
            return s;
        }
        if (i < 512) {
            cpu_relax();
            continue;
        }
        sched_yield();
        if (KV_UNLIKELY(atomic_load_explicit(&sh->srv->busy, memory_order_relaxed) != 0) &&
            !sh->in_busy_turn) {
            uint64_t now = kv_clock_mono_ns();
            if (now >= next_ns) {
                shard_busy_turn(sh, self);
                next_ns = now + 1000000;
            }
        }
    }
}

/* Runs the operation the coordinator posted in sh->txn (TXS_REQ). */
static void txn_serve_one(struct shard *sh, struct txn_slot *ts)
{
    if (ts->op == TXO_WATCH) {
        ts->clean = watch_clean(sh->watch, ts->caller_id, sh->now_ms);
        watch_drop(sh->watch, ts->caller_id);
        return;
    }
    if (ts->op == TXO_AOF) {
        aof_switch_parked(sh, ts->lsn);
        return;
    }
    KV_ASSERT(ts->op == TXO_RUN);
    uint64_t before = sh->wal != NULL ? wal_appended(sh->wal) : 0;
    resp_out_set_proto(sh->scratch, ts->proto);
    shard_clock_stale(sh);
    int64_t sum = 0;
    struct run_res r = run(sh, NULL, ts->desc, ts->argc, ts->argv, sh->scratch, &sum, ts->caller_id,
                           ts->user, ts->db, ts->track);
    STAT_ADD(sh->stats.executed_remote, 1);
    if (ts->addr != NULL) { /* NULL: a part of a split command, counted by the coordinator */
        account_who(sh, ts->addr, ts->name, cmd_stat_row(ts->desc, ts->argc, ts->argv), r, ts->argc,
                    ts->argv, NULL);
    }
    ts->over = resp_out_error(sh->scratch) != 0;
    ts->blob = scratch_result(sh, &ts->len, NULL);
    ts->sum = sum;
    ts->wrote = sh->wal != NULL && wal_appended(sh->wal) != before;
}

void conn_txn_serve(struct shard *sh, const struct xmsg *m)
{
    struct txn_slot *ts = &sh->txn;
    KV_ASSERT(m->src != sh->id &&
              atomic_load_explicit(&sh->srv->txn_lock, memory_order_relaxed) == (int32_t)m->src);
    KV_ASSERT(atomic_load_explicit(&ts->state, memory_order_relaxed) == TXS_IDLE);
    sh->now_ms = kv_clock_real_ms(); /* the expiry clock of the commands run here */
    uint32_t cur = TXS_PARKED;
    atomic_store_explicit(&ts->state, cur, memory_order_release);
    for (;;) {
        uint32_t st = txn_spin(sh, NULL, ts, cur, true);
        if (st == TXS_RELEASE) {
            break;
        }
        KV_ASSERT(st == TXS_REQ);
        txn_serve_one(sh, ts);
        cur = TXS_DONE;
        atomic_store_explicit(&ts->state, cur, memory_order_release);
    }
    atomic_store_explicit(&ts->state, TXS_IDLE, memory_order_release);
    shard_clock_stale(sh); /* the time parked is not the next command's */
}

/* The coordinator's state while it runs a cross-shard transaction. */
struct txn_x {
    struct conn *c;
    struct shardset parked; /* the shards parked so far (at their first use) */
    struct shardset wrote;  /* parked shards whose WAL the transaction wrote to */
    uint32_t db;            /* SELECT inside the transaction changes it */
    uint8_t script;         /* a script's redis.call: its protocol (2 or 3), else 0; SELECT
                             * does not reach the client */
    bool over;              /* a command's reply passed client-output-buffer-limit: after
                             * EXEC the client is closed, as Redis closes it (a script's
                             * calls have no limit of the client's) */
};

/* The protocol the transaction's replies are encoded in: a script's (RESP2, or 3 after
 * redis.setresp(3)), else the client's. */
static int tx_proto(const struct txn_x *tx)
{
    return tx->script ? tx->script : tx->c->resp;
}

/* Parks shard `o` for the transaction, if it is not parked yet: XM_PARK through the
 * connection's queue to it (behind what the connection sent there before), a wake-up
 * now, and a wait until it serves. The lock makes this safe: no other coordinator
 * exists, and a shard never waits for us, so it reads its queue soon. */
static void txn_park(struct txn_x *tx, uint32_t o)
{
    struct shard *sh = tx->c->sh;
    if (o == sh->id || shardset_has(&tx->parked, o)) {
        return;
    }
    struct xmsg m = {.kind = XM_PARK, .src = (uint16_t)sh->id, .caller_id = tx->c->id};
    while (!shard_send(sh, o, &m)) {
        shard_wake_now(sh); /* a full queue: it drains it, it never waits for us */
        sched_yield();
    }
    shard_wake_now(sh);
    txn_spin(sh, tx->c, &sh->srv->shards[o].txn, TXS_PARKED, false);
    shardset_add(&tx->parked, o);
}

bool conn_park_all(struct shard *sh)
{
    struct server *srv = sh->srv;
    int32_t none = -1;
    if (conn_overflow_pending(sh) ||
        !atomic_compare_exchange_strong_explicit(&srv->txn_lock, &none, (int32_t)sh->id,
                                                 memory_order_acquire, memory_order_relaxed)) {
        return false;
    }
    struct xmsg m = {.kind = XM_PARK, .src = (uint16_t)sh->id};
    for (uint32_t o = 0; o < srv->nthreads; o++) {
        while (o != sh->id && !shard_send(sh, o, &m)) {
            shard_wake_now(sh); /* a full queue: it drains it, it never waits for us */
            sched_yield();
        }
    }
    shard_wake_now(sh);
    for (uint32_t o = 0; o < srv->nthreads; o++) {
        if (o != sh->id) {
            txn_spin(sh, NULL, &srv->shards[o].txn, TXS_PARKED, false);
        }
    }
    return true;
}

void conn_release_all(struct shard *sh)
{
    struct server *srv = sh->srv;
    KV_ASSERT(atomic_load_explicit(&srv->txn_lock, memory_order_relaxed) == (int32_t)sh->id);
    for (uint32_t o = 0; o < srv->nthreads; o++) {
        if (o != sh->id) {
            atomic_store_explicit(&srv->shards[o].txn.state, TXS_RELEASE, memory_order_release);
        }
    }
    atomic_store_explicit(&srv->txn_lock, -1, memory_order_release);
    shard_clock_stale(sh);
}

/* Posts one operation to a parked shard (its slot ts) and waits for its result; c is
 * the coordinating client, if any (txn_spin). */
static void post(struct shard *sh, struct conn *c, struct txn_slot *ts)
{
    atomic_store_explicit(&ts->state, TXS_REQ, memory_order_release);
    uint32_t st = txn_spin(sh, c, ts, TXS_REQ, true);
    KV_ASSERT(st == TXS_DONE); /* (the next request or the release follows) */
}

void conn_post_aof(struct shard *sh, uint32_t o, uint64_t lsn)
{
    KV_ASSERT(atomic_load_explicit(&sh->srv->txn_lock, memory_order_relaxed) == (int32_t)sh->id);
    struct txn_slot *ts = &sh->srv->shards[o].txn;
    ts->op = TXO_AOF;
    ts->lsn = lsn;
    post(sh, NULL, ts);
}

/* Runs one command (or one owner's part of a split one: counted = false) on shard `o`,
 * here or parked, appending its reply to `out`; returns its CMD_MERGE_SUM result. */
static int64_t txn_run_on(struct txn_x *tx, uint32_t o, const struct cmd_desc *d, size_t argc,
                          const struct resp_arg *argv, struct resp_out *out, bool counted)
{
    struct conn *c = tx->c;
    struct shard *sh = c->sh;
    if (o == sh->id) {
        int64_t sum = 0;
        struct conn *rc = d->exec == CMD_EXEC_CONN && !tx->script ? c : NULL;
        bool outer = sh->in_exec;
        sh->in_exec = true;
        struct run_res r =
            run(sh, rc, d, argc, argv, out, &sum, c->id, c->user, tx->db, reads_tracked(c));
        sh->in_exec = outer;
        tx->db = r.db;
        if (counted) {
            account(sh, c, cmd_stat_row(d, argc, argv), r, argc, argv, NULL);
        }
        return sum;
    }
    txn_park(tx, o);
    struct shard *peer = &sh->srv->shards[o];
    struct txn_slot *ts = &peer->txn;
    ts->op = TXO_RUN;
    ts->proto = (uint8_t)tx_proto(tx);
    ts->db = tx->db;
    ts->desc = d;
    ts->argc = argc;
    ts->argv = argv;
    ts->caller_id = c->id;
    ts->user = c->user;
    ts->track = reads_tracked(c);
    ts->addr = counted ? c->addr : NULL;
    ts->name = conn_name(c);
    post(tx->c->sh, tx->c, ts);
    tx->over |= ts->over && !tx->script;
    reply_raw(out, ts->blob, ts->len);
    blob_free(ts->blob);
    ts->blob = NULL;
    if (ts->wrote) {
        shardset_add(&tx->wrote, o);
    }
    return ts->sum;
}

/* A multi-key command (MGET, MSET, DEL, ...) whose keys are on several shards: each
 * owner runs its keys, and the parts merge into one reply as a fan-out's do. With no
 * owners (a whole-keyspace command: FLUSHALL, SWAPDB, KEYS, ...), every shard runs it. */
static void txn_run_split(struct txn_x *tx, const struct cmd_desc *d, size_t argc,
                          const struct resp_arg *argv, const uint16_t *owners, size_t nkeys,
                          struct resp_out *out)
{
    struct shard *sh = tx->c->sh;
    size_t step = (size_t)d->key_step;
    struct gather *g = mi_heap_zalloc(sh->heap, sizeof *g + nkeys * sizeof g->owner[0]);
    struct resp_arg *part = mi_heap_malloc(sh->heap, argc * sizeof *part);
    KV_ASSERT(g != NULL && part != NULL);
    g->nkeys = (uint32_t)nkeys;
    int64_t sum = 0;
    uint64_t t0 = shard_cmd_clock(sh);
    for (uint32_t o = 0; o < sh->srv->nthreads; o++) {
        size_t n = 0;
        part[n++] = argv[0];
        for (size_t i = 1; owners == NULL && i < argc; i++) {
            part[n++] = argv[i];
        }
        for (size_t i = 0; owners != NULL && i < nkeys; i++) {
            if (owners[i] == o) {
                g->owner[i] = (uint16_t)o;
                for (size_t s = 0; s < step; s++) {
                    part[n++] = argv[1 + i * step + s];
                }
            }
        }
        if (owners != NULL && n == 1) {
            continue;
        }
        struct resp_out tmp;
        resp_out_init(&tmp, sh->pool, SIZE_MAX / 2);
        resp_out_set_proto(&tmp, tx_proto(tx));
        sum += txn_run_on(tx, o, d, n, part, &tmp, false);
        g->part_blob[o] = out_take(sh, &tmp, &g->part_len[o]);
        resp_out_deinit(&tmp);
    }
    merge_parts(out, tx_proto(tx), sh->heap, (uint8_t)d->merge, g, sum);
    struct run_res r = {.us = shard_cmd_end_us(sh, t0)};
    account(sh, tx->c, cmd_stat_row(d, argc, argv), r, argc, argv, NULL);
    for (uint32_t o = 0; o < KVD_THREADS_MAX; o++) {
        blob_free(g->part_blob[o]);
    }
    mi_free(g);
    mi_free(part);
}

/*
 * SAME commands across shards. RENAME, RENAMENX, COPY and MSETNX need their keys on one
 * shard to run as one handler; when they are on several, the command runs as a
 * cross-shard transaction (alone: txn_bare; or inside EXEC, or a keyless script) and
 * this shard moves the data with hidden rows run on the keys' shards (cmd_keys.c:
 * rename|get, rename|put, rename|del), the others parked meanwhile: no client sees a
 * half-done command. The destination is written before the source is deleted, so a
 * refused write (OOM) loses nothing. The events are the single-shard command's; only
 * their order across shards differs (RENAME's rename_to before its rename_from).
 */

/* A key's entry, fetched from its shard (rename|get). */
struct same_entry {
    char *blob; /* the reply it is in (free with blob_free) */
    const char *val;
    size_t vlen;
    long long expire, raw, type;
};

/* Runs hidden row `name` with args on key args[1]'s shard; its reply as a blob. */
static char *same_part(struct txn_x *tx, const char *name, size_t argc, const struct resp_arg *args,
                       size_t *len)
{
    struct shard *sh = tx->c->sh;
    struct resp_out tmp;
    resp_out_init(&tmp, sh->pool, SIZE_MAX / 2);
    resp_out_set_proto(&tmp, tx_proto(tx));
    txn_run_on(tx, owner(sh, arg_hash(&args[1])), cmd_lookup_hidden(name), argc, args, &tmp, false);
    char *blob = out_take(sh, &tmp, len);
    resp_out_deinit(&tmp);
    KV_ASSERT(blob != NULL);
    return blob;
}

/* The entry of `key` (looked up as a read if `read`), or false if there is none. */
static bool same_get(struct txn_x *tx, const struct resp_arg *key, bool read, struct same_entry *e)
{
    struct resp_arg a[3] = {{"rename|get", 10}, *key, {read ? "r" : "w", 1}};
    size_t len;
    e->blob = same_part(tx, "rename|get", 3, a, &len);
    if (e->blob[0] != '*') { /* null ($-1 or _) */
        blob_free(e->blob);
        e->blob = NULL;
        return false;
    }
    long long n;
    size_t off = after_header(e->blob, len, &n);
    KV_ASSERT(n == 4 && e->blob[off] == '$');
    size_t start = off;
    skip_elem(e->blob, len, &off);
    e->vlen = (size_t)strtoll(e->blob + start + 1, NULL, 10);
    e->val = off - e->vlen - 2 + e->blob;
    e->expire = take_int(e->blob, len, &off);
    e->raw = take_int(e->blob, len, &off);
    e->type = take_int(e->blob, len, &off);
    return true;
}

/* Writes `e` as `key` (event 0: rename_to, 1: copy_to) in database db; false after
 * replying the error (OOM) into out. */
static bool same_put(struct txn_x *tx, const struct resp_arg *key, const struct same_entry *e,
                     int event, uint32_t db, struct resp_out *out)
{
    char nums[4][24];
    struct resp_arg a[7] = {{"rename|put", 10}, *key, {e->val, e->vlen}};
    long long v[4] = {e->expire, e->raw, e->type, event};
    for (int i = 0; i < 4; i++) {
        a[3 + i].ptr = nums[i];
        a[3 + i].len = (size_t)snprintf(nums[i], sizeof nums[i], "%lld", v[i]);
    }
    uint32_t back = tx->db;
    tx->db = db;
    size_t len;
    char *blob = same_part(tx, "rename|put", 7, a, &len);
    tx->db = back;
    bool ok = blob[0] == '+';
    if (!ok) {
        reply_raw(out, blob, len);
    }
    blob_free(blob);
    return ok;
}

/* COPY's options, checked as cmd_copy checks them: false if any is not plain (the
 * handler then replies its error). */
static bool copy_opts(struct shard *sh, size_t argc, const struct resp_arg *argv, bool *replace,
                      uint32_t *db)
{
    for (size_t i = 3; i < argc; i++) {
        int64_t v;
        if (cmd_arg_is(&argv[i], "replace")) {
            *replace = true;
        } else if (cmd_arg_is(&argv[i], "db") && i + 1 < argc && cmd_parse_i64(&argv[i + 1], &v) &&
                   v >= 0 && v < (int64_t)sh->ndb) {
            *db = (uint32_t)v;
            i++;
        } else {
            return false;
        }
    }
    return true;
}

/* LCS and BITOP across shards: their options checked by the handler's own code here,
 * the values read from the keys' shards, the result computed here (BITOP's written to
 * its destination's shard). False if it replied an error. */
/* The values of argv[first..last] read from their shards (read: as reads, counted), as
 * sources (p NULL: no key); *ep holds the replies they point into (same_values_free). */
static struct cmd_bitop_src *same_values(struct txn_x *tx, const struct resp_arg *argv,
                                         size_t first, size_t last, struct same_entry **ep)
{
    struct shard *sh = tx->c->sh;
    size_t n = last - first + 1;
    struct same_entry *e = mi_heap_zalloc(sh->heap, n * sizeof *e);
    struct cmd_bitop_src *src = mi_heap_zalloc(sh->heap, n * sizeof *src);
    KV_ASSERT(e != NULL && src != NULL);
    for (size_t i = 0; i < n; i++) {
        if (same_get(tx, &argv[first + i], true, &e[i])) {
            src[i] = (struct cmd_bitop_src){(const unsigned char *)e[i].val, e[i].vlen};
        }
    }
    *ep = e;
    return src;
}

static void same_values_free(struct cmd_bitop_src *src, struct same_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].blob != NULL) {
            blob_free(e[i].blob);
        }
    }
    mi_free(e);
    mi_free(src);
}

static bool same_compute(struct txn_x *tx, const struct cmd_desc *d, size_t argc,
                         const struct resp_arg *argv, struct resp_out *out)
{
    struct shard *sh = tx->c->sh;
    uint64_t errors = reply_errors();
    struct cmd_ctx x = {.argc = argc,
                        .argv = argv,
                        .desc = d,
                        .sh = sh,
                        .out = out,
                        .now_ms = sh->now_ms,
                        .caller_id = tx->c->id,
                        .user = tx->c->user,
                        .db = tx->db};
    size_t first = d->fn == cmd_lcs ? 1 : 3, last = d->fn == cmd_lcs ? 2 : argc - 1;
    int kind = d->fn == cmd_lcs ? (cmd_lcs_check(&x) ? 0 : -1) : cmd_bitop_kind(&x);
    if (kind < 0) {
        return false;
    }
    struct same_entry *e;
    struct cmd_bitop_src *src = same_values(tx, argv, first, last, &e);
    bool ok = true;
    if (d->fn == cmd_lcs) {
        cmd_lcs_values(&x, src[0].p != NULL ? (const char *)src[0].p : "", src[0].len,
                       src[1].p != NULL ? (const char *)src[1].p : "", src[1].len);
        ok = reply_errors() == errors;
    } else {
        size_t len;
        unsigned char *res = cmd_bitop_apply(sh->heap, kind, src, last - first + 1, &len);
        if (len > 0 && res == NULL) {
            reply_error(out, "OOM command not allowed when used memory > 'maxmemory'.");
            ok = false;
        } else if (len == 0) {
            struct resp_arg a[3] = {{"rename|del", 10}, argv[2], {"1", 1}};
            size_t n;
            blob_free(same_part(tx, "rename|del", 3, a, &n));
            reply_int(out, 0);
        } else {
            struct same_entry r = {.val = (const char *)res, .vlen = len, .raw = 1};
            if ((ok = same_put(tx, &argv[2], &r, 2, tx->db, out))) {
                reply_int(out, (int64_t)len);
            }
        }
        mi_free(res);
    }
    same_values_free(src, e, last - first + 1);
    return ok;
}

/* PFCOUNT of several keys and PFMERGE across shards: the values read from the keys'
 * shards, merged here (PFMERGE's result written to its destination's shard, its expiry
 * kept). False if it replied an error. */
static bool same_hll(struct txn_x *tx, const struct cmd_desc *d, size_t argc,
                     const struct resp_arg *argv, struct resp_out *out)
{
    struct shard *sh = tx->c->sh;
    struct same_entry *e;
    struct cmd_bitop_src *src = same_values(tx, argv, 1, argc - 1, &e);
    uint8_t *regs = mi_heap_malloc(sh->heap, HLL_REGISTERS);
    KV_ASSERT(regs != NULL);
    bool dense, ok = cmd_pf_gather(out, src, argc - 1, regs, &dense);
    if (ok && d->fn == cmd_pfcount) {
        reply_int(out, (int64_t)hll_count_regs(regs));
    } else if (ok) {
        size_t len;
        uint8_t *res = cmd_pfmerge_result(sh->heap, out, src[0].p, src[0].len, regs, dense, &len);
        if ((ok = res != NULL)) {
            struct same_entry r = {.val = (const char *)res,
                                   .vlen = len,
                                   .expire = src[0].p != NULL ? e[0].expire : 0,
                                   .raw = 1};
            if ((ok = same_put(tx, &argv[1], &r, 3, tx->db, out))) {
                reply_ok(out);
            }
            mi_free(res);
        }
    }
    same_values_free(src, e, argc - 1);
    mi_free(regs);
    return ok;
}

/* Runs SAME command d whose keys are on several shards; false if it replied an error. */
static bool same_cross(struct txn_x *tx, const struct cmd_desc *d, size_t argc,
                       const struct resp_arg *argv, struct resp_out *out)
{
    struct shard *sh = tx->c->sh;
    if (d->fn == cmd_rename || d->fn == cmd_renamenx) {
        bool nx = d->fn == cmd_renamenx;
        struct same_entry src, dst;
        if (!same_get(tx, &argv[1], false, &src)) {
            reply_error(out, "ERR no such key");
            return false;
        }
        bool taken = nx && same_get(tx, &argv[2], false, &dst);
        if (taken) {
            blob_free(dst.blob);
            reply_int(out, 0);
        } else if (same_put(tx, &argv[2], &src, 0, tx->db, out)) {
            struct resp_arg a[3] = {{"rename|del", 10}, argv[1], {"0", 1}};
            size_t len;
            blob_free(same_part(tx, "rename|del", 3, a, &len));
            if (nx) {
                reply_int(out, 1);
            } else {
                reply_ok(out);
            }
        } else {
            blob_free(src.blob);
            return false;
        }
        blob_free(src.blob);
        return true;
    }
    if (d->fn == cmd_copy) {
        bool replace = false;
        uint32_t db = tx->db;
        if (!copy_opts(sh, argc, argv, &replace, &db)) { /* its error, from the handler */
            txn_run_on(tx, owner(sh, arg_hash(&argv[1])), d, argc, argv, out, false);
            return false;
        }
        struct same_entry src, dst;
        if (!same_get(tx, &argv[1], true, &src)) {
            reply_int(out, 0);
            return true;
        }
        uint32_t back = tx->db;
        tx->db = db;
        bool taken = same_get(tx, &argv[2], false, &dst);
        tx->db = back;
        if (taken) {
            blob_free(dst.blob);
        }
        bool ok = true;
        if (taken && !replace) {
            reply_int(out, 0);
        } else if ((ok = same_put(tx, &argv[2], &src, 1, db, out))) {
            reply_int(out, 1);
        }
        blob_free(src.blob);
        return ok;
    }
    if (d->fn == cmd_lcs || d->fn == cmd_bitop) {
        return same_compute(tx, d, argc, argv, out);
    }
    if (d->fn == cmd_pfcount || d->fn == cmd_pfmerge) {
        return same_hll(tx, d, argc, argv, out);
    }
    KV_ASSERT(d->fn == cmd_msetnx);
    if ((argc - 1) % 2 != 0) { /* its arity error, from the handler */
        txn_run_on(tx, owner(sh, arg_hash(&argv[1])), d, argc, argv, out, false);
        return false;
    }
    for (size_t i = 1; i < argc; i += 2) {
        struct same_entry e;
        if (same_get(tx, &argv[i], false, &e)) {
            blob_free(e.blob);
            reply_int(out, 0);
            return true;
        }
    }
    /* every key absent: each shard sets its own, as MSET's parts */
    const struct cmd_desc *mset = cmd_find("mset", 4);
    struct resp_arg *part = mi_heap_malloc(sh->heap, argc * sizeof *part);
    KV_ASSERT(part != NULL);
    for (uint32_t o = 0; o < sh->srv->nthreads; o++) {
        size_t n = 0;
        part[n++] = argv[0];
        for (size_t i = 1; i < argc; i += 2) {
            if (owner(sh, arg_hash(&argv[i])) == o) {
                part[n++] = argv[i];
                part[n++] = argv[i + 1];
            }
        }
        if (n > 1) {
            struct resp_out tmp;
            resp_out_init(&tmp, sh->pool, SIZE_MAX / 2);
            txn_run_on(tx, o, mset, n, part, &tmp, false);
            resp_out_deinit(&tmp);
        }
    }
    mi_free(part);
    reply_int(out, 1);
    return true;
}

/* One queued command of a cross-shard transaction, on the shard(s) owning its keys. */
static void txn_run_cmd(struct txn_x *tx, size_t argc, const struct resp_arg *argv,
                        struct resp_out *out)
{
    struct shard *sh = tx->c->sh;
    const struct cmd_desc *d = cmd_lookup(argv[0].ptr, argv[0].len);
    KV_ASSERT(d != NULL && cmd_arity_ok(d, argc)); /* checked when queued */
    if (!exec_acl_ok(sh, tx->c->id, tx->c->user, d, argc, argv, out)) {
        account(sh, tx->c, cmd_stat_row(d, argc, argv), (struct run_res){.failed = true}, argc,
                argv, NULL);
        return;
    }
    if (d->fn == cmd_object && argc == 3 && cmd_object_keyed(&argv[1])) {
        d = cmd_lookup_hidden("object|key");
    }
    if (d->fn == cmd_client && cmd_arg_is(&argv[1], "list")) { /* every shard's clients */
        d = cmd_lookup_hidden("client|list");
    } else if (d->fn == cmd_client && cmd_arg_is(&argv[1], "kill") && argc >= 3) {
        d = cmd_lookup_hidden(argc == 3 ? "client|kill-old" : "client|kill");
    } else if (d->fn == cmd_debug && argc == 2 && cmd_arg_is(&argv[1], "digest")) {
        d = cmd_lookup_hidden("debug|digest");
    } else if (d->fn == cmd_debug && argc >= 2 && cmd_arg_is(&argv[1], "digest-value")) {
        d = cmd_lookup_hidden("debug|digest-value");
    }
    switch (d->exec) {
    case CMD_EXEC_KEY:
        txn_run_on(tx, owner(sh, arg_hash(&argv[d->first_key])), d, argc, argv, out, true);
        return;
    case CMD_EXEC_SAME: {
        uint32_t o = same_shard(sh, d, argc, argv);
        if (o != KVD_THREADS_MAX) {
            txn_run_on(tx, o, d, argc, argv, out, true);
            return;
        }
        KV_ASSERT(same_crosses(d)); /* (LCS and BITOP: refused when queued or called) */
        uint64_t t0 = shard_cmd_clock(sh);
        struct run_res r = {.failed = !same_cross(tx, d, argc, argv, out), .db = tx->db};
        r.us = shard_cmd_end_us(sh, t0);
        account(sh, tx->c, cmd_stat_row(d, argc, argv), r, argc, argv, NULL);
        return;
    }
    case CMD_EXEC_MULTI: {
        if (d->key_step == 2 && (argc - 1) % 2 != 0) {
            reply_err_arity(out, d->name); /* MSET's pairs: found when it runs */
            account(sh, tx->c, cmd_stat_row(d, argc, argv), (struct run_res){.failed = true}, argc,
                    argv, NULL);
            return;
        }
        size_t nkeys = (argc - 1) / (size_t)d->key_step;
        uint16_t *owners = mi_heap_malloc(sh->heap, nkeys * sizeof *owners);
        KV_ASSERT(owners != NULL);
        bool one = true;
        for (size_t i = 0; i < nkeys; i++) {
            owners[i] = (uint16_t)owner(sh, arg_hash(&argv[1 + i * (size_t)d->key_step]));
            one &= owners[i] == owners[0];
        }
        if (one) {
            txn_run_on(tx, owners[0], d, argc, argv, out, true);
        } else {
            txn_run_split(tx, d, argc, argv, owners, nkeys, out);
        }
        mi_free(owners);
        return;
    }
    case CMD_EXEC_ALL: {
        struct cmd_ctx cx = {.argc = argc,
                             .argv = argv,
                             .desc = d,
                             .sh = sh,
                             .conn = tx->c,
                             .out = out,
                             .now_ms = sh->now_ms,
                             .caller_id = tx->c->id,
                             .db = tx->db};
        if (d->check != NULL && !d->check(&cx)) { /* bad arguments: the error, once */
            account(sh, tx->c, cmd_stat_row(d, argc, argv), (struct run_res){.failed = true}, argc,
                    argv, NULL);
            return;
        }
        txn_run_split(tx, d, argc, argv, NULL, 0, out);
        return;
    }
    case CMD_EXEC_SCRIPT: { /* here, its redis.call reaching each key's shard */
        void *outer = sh->script_tx;
        sh->script_tx = tx;
        txn_run_on(tx, sh->id, d, argc, argv, out, true);
        sh->script_tx = outer;
        return;
    }
    default: /* PING, ECHO, SELECT, TIME, INFO, CLIENT ...: the connection's own shard */
        KV_ASSERT(d->exec == CMD_EXEC_CONN);
        txn_run_on(tx, sh->id, d, argc, argv, out, true);
        return;
    }
}

/* Checks and drops the client's watches on every shard keeping some; true if none of
 * its watched keys changed. */
static bool txn_watch_clean(struct txn_x *tx)
{
    struct conn *c = tx->c;
    struct shard *sh = c->sh;
    bool clean = true;
    for (uint32_t o = 0; o < sh->srv->nthreads; o++) {
        if (!shardset_has(&c->watch_shards, o)) {
            continue;
        }
        if (o == sh->id) {
            clean &= watch_clean(sh->watch, c->id, sh->now_ms);
            watch_drop(sh->watch, c->id);
            continue;
        }
        txn_park(tx, o);
        struct txn_slot *ts = &sh->srv->shards[o].txn;
        ts->op = TXO_WATCH;
        ts->caller_id = c->id;
        post(tx->c->sh, tx->c, ts);
        clean &= ts->clean;
    }
    watch_forget(c);
    return clean;
}

static bool output_over_limit(struct conn *c);
static void send_reply(struct shard *sh, uint32_t to, const struct xmsg *m);

void conn_blob_free(void *p)
{
    blob_free(p);
}

void *conn_blob_alloc(struct shard *sh, size_t n)
{
    return blob_alloc(sh, n);
}

struct pubsub_conn **conn_pubsub(struct conn *c)
{
    return &c->ps;
}

/* A pub/sub message, while the shard walks its subscribers: the connection is never
 * closed here (that would change the lists being walked); one over its output limit is
 * marked and closed by the next conn_flush, and gets no more messages. */
void conn_push(struct conn *c, const void *p, size_t n)
{
    if (c->flags & (CONN_CLOSING | CONN_PUSH_OVER)) {
        return;
    }
    if (over_limits(c, queued_bytes(c) + n)) { /* (its output's limit refreshed too) */
        c->flags |= CONN_PUSH_OVER;
        mark_dirty(c);
        return;
    }
    if (pend_count(c) == 0) { /* messages are sent whatever CLIENT REPLY says, as Redis's */
        reply_raw(&c->out, p, n);
        if (resp_out_error(&c->out) != 0) {
            c->flags |= CONN_PUSH_OVER; /* the output's own limit (set when it was made) */
        }
        mark_dirty(c);
        return;
    }
    /* Behind the replies still awaited (the ring's head is never ready here): after the
     * last of them, so that no message takes a slot (a client with a deep pipeline is
     * not closed for a full ring by messages). */
    struct pend *tail = &c->pend[(c->pend_tail - 1) % CONN_PENDING_MAX];
    tail->after = mi_heap_realloc(c->sh->heap, tail->after, tail->after_len + n);
    KV_ASSERT(tail->after != NULL);
    memcpy(tail->after + tail->after_len, p, n);
    tail->after_len += n;
    c->pend_bytes += n;
}

void conn_send_xmsg(struct shard *sh, struct conn *c, uint32_t to, struct xmsg *m)
{
    if (c != NULL && c->sh == sh) {
        conn_send(c, to, m);
    } else {
        send_reply(sh, to, m);
    }
}

/* The shard owning each key a command names (its key arguments as the table says,
 * OBJECT's key for object|key): false if one is not `sh`. */
static bool keys_local(struct shard *sh, const struct cmd_desc *d, size_t argc,
                       const struct resp_arg *argv)
{
    if (d->exec == CMD_EXEC_ALL) {
        return sh->srv->nthreads == 1;
    }
    if (d->first_key <= 0) {
        return true;
    }
    size_t last = d->last_key < 0 ? argc - 1 : (size_t)d->last_key;
    size_t step = d->key_step > 0 ? (size_t)d->key_step : 1;
    for (size_t i = (size_t)d->first_key; i <= last && i < argc; i += step) {
        if (owner(sh, arg_hash(&argv[i])) != sh->id) {
            return false;
        }
    }
    return true;
}

static char *script_call_run(struct cmd_ctx *x, uint32_t *db, int proto, const struct cmd_desc *d,
                             size_t argc, const struct resp_arg *argv, size_t *len,
                             const char **err);

char *conn_script_call(struct cmd_ctx *x, uint32_t *db, int proto, const struct cmd_desc *d,
                       size_t argc, const struct resp_arg *argv, size_t *len, const char **err)
{
    struct shard *sh = x->sh;
    if (KV_UNLIKELY(monitor_on())) {
        monitor_feed(sh, NULL, *db, "lua", d, argc, argv);
    }
    /* the errors the command replies are its own, not the script's: a script failed only
     * if its reply is an error (as Redis's per-call error count) */
    uint64_t before = reply_errors();
    char *blob = script_call_run(x, db, proto, d, argc, argv, len, err);
    x->inner_errors += reply_errors() - before;
    return blob;
}

void conn_script_rejected(struct cmd_ctx *x, const struct cmd_desc *d, size_t argc,
                          const struct resp_arg *argv)
{
    account_who(x->sh, "", "", cmd_stat_row(d, argc, argv), (struct run_res){.rejected = true},
                argc, argv, NULL);
}

static char *script_call_run(struct cmd_ctx *x, uint32_t *db, int proto, const struct cmd_desc *d,
                             size_t argc, const struct resp_arg *argv, size_t *len,
                             const char **err)
{
    struct shard *sh = x->sh;
    struct resp_out tmp;
    resp_out_init(&tmp, sh->pool, normal_limit());
    resp_out_set_proto(&tmp, proto); /* RESP2, or 3 after redis.setresp(3) */
    struct txn_x *tx = sh->script_tx;
    if (d->exec == CMD_EXEC_SAME && d->first_key > 0 && (tx == NULL || !same_crosses(d)) &&
        same_shard(sh, d, argc, argv) == KVD_THREADS_MAX) { /* LCS, BITOP: one shard */
        resp_out_deinit(&tmp);
        *err = "CROSSSLOT Keys in request don't hash to the same slot";
        return NULL;
    }
    if (tx != NULL) {
        /* a cross-shard script: each key's shard parked as it is first touched */
        uint32_t outer_db = tx->db;
        uint8_t outer_script = tx->script;
        tx->db = *db;
        tx->script = (uint8_t)proto;
        txn_run_cmd(tx, argc, argv, &tmp);
        *db = tx->db;
        tx->db = outer_db;
        tx->script = outer_script;
    } else {
        if (d->fn == cmd_object && argc == 3 && cmd_object_keyed(&argv[1])) {
            d = cmd_lookup_hidden("object|key");
        }
        if ((d->fn == cmd_publish || d->fn == cmd_spublish) &&
            sh->srv->nthreads > 1) { /* no fan-out from here */
            int64_t n = pubsub_publish_async(sh, d->fn == cmd_spublish, argv[1].ptr, argv[1].len,
                                             argv[2].ptr, argv[2].len);
            reply_int(&tmp, n);
            char *blob = out_take(sh, &tmp, len);
            resp_out_deinit(&tmp);
            return blob;
        }
        if (!keys_local(sh, d, argc, argv)) {
            resp_out_deinit(&tmp);
            *err = "ERR Script attempted to access a non local key in a cluster node";
            return NULL;
        }
        uint16_t row = cmd_stat_row(d, argc, argv);
        if (d->exec == CMD_EXEC_MULTI && d->key_step == 2 && (argc - 1) % 2 != 0) {
            reply_err_arity(&tmp, d->name); /* MSET's pairs */
            account_who(sh, "", "", row, (struct run_res){.failed = true}, argc, argv, NULL);
        } else {
            int64_t sum = 0;
            struct run_res r = run(sh, NULL, d, argc, argv, &tmp, &sum, x->caller_id, x->user, *db,
                                   (int32_t)x->track - 1);
            *db = r.db;
            account_who(sh, "", "", row, r, argc, argv, NULL);
        }
    }
    if (resp_out_error(&tmp) != 0) {
        resp_out_deinit(&tmp);
        *err = "ERR reply exceeds client-output-buffer-limit";
        return NULL;
    }
    char *blob = out_take(sh, &tmp, len);
    resp_out_deinit(&tmp);
    KV_ASSERT(blob != NULL); /* every command replies */
    return blob;
}

/* Runs the connection's transaction across shards (see above). False, with nothing
 * done, if it must wait: another shard's transaction runs, or the connection's earlier
 * messages still wait for queue space. */
static bool txn_exec_cross(struct conn *c)
{
    struct shard *sh = c->sh;
    struct server *srv = sh->srv;
    struct txn *t = c->txn;
    KV_ASSERT(t != NULL);
    int32_t none = -1;
    if (c->outbox_len > 0 ||
        !atomic_compare_exchange_strong_explicit(&srv->txn_lock, &none, (int32_t)sh->id,
                                                 memory_order_acquire, memory_order_relaxed)) {
        return false;
    }
    STAT_ADD(sh->stats.txn_cross, 1);
    /* run */
    struct txn_x tx = {.c = c, .db = c->db};
    uint64_t t0 = shard_cmd_clock(sh);
    uint64_t wal_before = sh->wal != NULL ? wal_appended(sh->wal) : 0;
    resp_out_set_proto(sh->scratch, c->resp);
    if (!t->bare && !txn_watch_clean(&tx)) {
        reply_null_array(sh->scratch);
    } else {
        if (!t->bare) {
            reply_array(sh->scratch, t->ncmds);
        }
        uint32_t a = 0;
        for (uint32_t k = 0; k < t->ncmds; k++) {
            int64_t cnt = 0;
            const struct resp_arg cnt_arg = {.ptr = t->buf + t->args[a].off, .len = t->args[a].len};
            bool ok = cmd_parse_i64(&cnt_arg, &cnt);
            KV_ASSERT(ok && cnt >= 1 && a + 1 + (uint32_t)cnt <= t->nargs);
            struct resp_arg stack[ARGV_STACK];
            struct resp_arg *argv =
                cnt <= ARGV_STACK ? stack : mi_heap_malloc(sh->heap, (size_t)cnt * sizeof *argv);
            KV_ASSERT(argv != NULL);
            for (int64_t i = 0; i < cnt; i++) {
                const struct txn_arg *ta = &t->args[a + 1 + (uint32_t)i];
                argv[i] = (struct resp_arg){.ptr = t->buf + ta->off, .len = ta->len};
            }
            a += 1 + (uint32_t)cnt;
            txn_run_cmd(&tx, (size_t)cnt, argv, sh->scratch);
            if (argv != stack) {
                mi_free(argv);
            }
        }
        KV_ASSERT(a == t->nargs);
    }
    /* release */
    for (uint32_t o = 0; o < srv->nthreads; o++) {
        if (shardset_has(&tx.parked, o)) {
            atomic_store_explicit(&srv->shards[o].txn.state, TXS_RELEASE, memory_order_release);
        }
    }
    atomic_store_explicit(&srv->txn_lock, -1, memory_order_release);
    if (!t->bare && tx.db != c->db) {
        conn_select(c, tx.db); /* a SELECT it ran (when it ran here, it did so already) */
    }
    /* the reply: this shard's part (the array) and an exec|sync from each parked shard
     * the transaction wrote on, which comes back once that shard's WAL holds it */
    uint64_t us = shard_cmd_end_us(sh, t0);
    const struct cmd_desc *exec_d = cmd_find("exec", 4);
    const struct resp_arg exec_arg = {.ptr = "EXEC", .len = 4};
    const struct resp_arg *sync_args[1] = {&exec_arg};
    struct pend *p = pend_push(c);
    uint32_t seq = c->pend_tail - 1;
    p->silent = t->silent;
    p->merge = CMD_MERGE_RAW;
    p->row = t->bare ? CMD_ROW_NONE : cmd_stat_row(exec_d, 1, &exec_arg); /* bare: counted */
    p->g = mi_heap_zalloc(sh->heap, sizeof *p->g);
    KV_ASSERT(p->g != NULL);
    p->parts_left = 1 + shardset_count(&tx.wrote);
    size_t len;
    bool over;
    char *blob = scratch_result(sh, &len, &over);
    size_t before = slot_bytes(p);
    bool ready = part_done(p, sh->id, blob, len, 0, (struct run_res){.us = us});
    c->pend_bytes += slot_bytes(p) - before;
    const struct cmd_desc *sync_d = cmd_lookup_hidden("exec|sync");
    for (uint32_t o = 0; o < srv->nthreads; o++) {
        if (shardset_has(&tx.wrote, o)) {
            send_req(c, o, sync_d, seq, o, 1, sync_args);
        }
    }
    if (sh->wal != NULL && wal_appended(sh->wal) != wal_before) {
        wal_gate(c, cmd_lookup_hidden("exec|run")); /* what it wrote here */
    }
    txn_free(c);
    if (over || tx.over) {
        close_over(c); /* the transaction ran whole; its reply would pass the limit */
    }
    if (pend_over_limit(c) || (c->flags & CONN_CLOSING)) {
        return true; /* closing */
    }
    if (ready) {
        account_fan_out(c, p);
        pend_drain(c);
    }
    return true;
}

/* ---- CLIENT PAUSE ------------------------------------------------------------------ */

/* What run_batch found out about a command before dispatching it. */
struct precomp {
    const struct cmd_desc *d; /* its row, NULL if unknown */
    bool have_h;              /* a KEY command with its arity: */
    uint64_t h;               /* its key's hash */
    uint32_t owner;           /* and the shard owning that key */
};

static void dispatch_pre(struct conn *c, const struct resp_cmd *cmd, const struct precomp *pre);
static void dispatch(struct conn *c, const struct resp_cmd *cmd);
static void reply_mode_step(struct conn *c);

/* Whether the pause in force holds command d of c: ALL holds every command, WRITE those
 * that write or may replicate, and EXEC of a transaction holding one. */
static bool pause_holds(const struct conn *c, const struct cmd_desc *d, size_t argc,
                        const struct resp_arg *argv)
{
    enum server_pause p = server_paused(c->sh->srv, c->sh->now_ms);
    if (p == SERVER_PAUSE_ALL) {
        return true;
    }
    return p == SERVER_PAUSE_WRITE && (replicates(d, argc, argv) ||
                                       (d->fn == cmd_exec && c->txn != NULL && c->txn->replicates));
}

/* Keeps the command aside (one block: the argv array, then the bytes) and stops taking
 * commands from the connection until the pause is over. */
static void pause_keep(struct conn *c, const struct resp_cmd *cmd)
{
    size_t bytes = cmd->argc * sizeof(struct resp_arg);
    for (size_t i = 0; i < cmd->argc; i++) {
        bytes += cmd->argv[i].len;
    }
    struct resp_arg *v = mi_heap_malloc(c->sh->heap, bytes ? bytes : 1);
    KV_ASSERT(v != NULL);
    char *p = (char *)(v + cmd->argc);
    for (size_t i = 0; i < cmd->argc; i++) {
        memcpy(p, cmd->argv[i].ptr, cmd->argv[i].len);
        v[i] = (struct resp_arg){.ptr = p, .len = cmd->argv[i].len};
        p += cmd->argv[i].len;
    }
    if (c->nheld == c->cap_held) {
        c->cap_held = c->cap_held ? c->cap_held * 2 : 4;
        c->held = mi_heap_realloc(c->sh->heap, c->held, c->cap_held * sizeof *c->held);
        KV_ASSERT(c->held != NULL);
    }
    c->held[c->nheld++] = (struct held_cmd){.argv = v, .argc = cmd->argc};
    if (c->flags & CONN_PAUSED) {
        return; /* one parsed ahead with the first: it follows it */
    }
    c->flags |= CONN_PAUSED;
    struct conn **pp = &c->sh->paused; /* released in the order they came (a short list) */
    while (*pp != NULL) {
        pp = &(*pp)->paused_next;
    }
    c->paused_next = NULL;
    *pp = c;
    STAT_ADD(c->sh->stats.blocked_clients, 1);
}

/* A held connection gives its receive buffer back to the ring: what it has not parsed
 * moves to the heap (a pause may last long; the ring is shared by the shard's clients). */
static void pause_detach_input(struct conn *c)
{
    if (c->held_bid < 0) {
        return;
    }
    size_t len;
    const void *rest = resp_parser_unread(c->parser, &len);
    KV_ASSERT(c->held_heap == NULL);
    if (len > 0) {
        c->held_heap = mi_heap_malloc(c->sh->heap, len);
        KV_ASSERT(c->held_heap != NULL);
        memcpy(c->held_heap, rest, len);
    }
    resp_parser_move(c->parser, c->held_heap);
    shard_buf_return(c->sh, (uint16_t)c->held_bid);
    c->held_bid = -1;
}

void conn_pause(struct shard *sh, int64_t end_ms, int type)
{
    KV_ASSERT(type == SERVER_PAUSE_WRITE || type == SERVER_PAUSE_ALL);
    KV_ASSERT(end_ms >= 0 && end_ms < (INT64_C(1) << 61));
    struct server *srv = sh->srv;
    uint64_t old = atomic_load_explicit(&srv->pause, memory_order_relaxed);
    for (;;) {
        /* the more restrictive kind and the later end win, as Redis's (one lapsed counts
         * as none) */
        bool live = old != 0 && (int64_t)(old >> 2) > sh->now_ms;
        uint64_t t = live && (old & 3u) > (uint64_t)type ? (old & 3u) : (uint64_t)type;
        uint64_t e = live && (int64_t)(old >> 2) > end_ms ? old >> 2 : (uint64_t)end_ms;
        if (atomic_compare_exchange_weak_explicit(&srv->pause, &old, e << 2 | t,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            return;
        }
    }
}

void conn_unpause(struct shard *sh)
{
    atomic_store_explicit(&sh->srv->pause, 0, memory_order_relaxed);
    for (uint32_t t = 0; t < sh->srv->nthreads; t++) {
        sh->wake[t] = t != sh->id; /* shards asleep with paused clients look again */
    }
}

/* Runs the connection's held commands whose pause is over, in order; true if one is
 * still held (it and those after it stay). */
static bool release_held(struct conn *c)
{
    uint32_t done = 0;
    bool held = false;
    while (done < c->nheld && !(c->flags & CONN_CLOSING)) {
        struct held_cmd h = c->held[done];
        struct resp_cmd cmd = {.argc = h.argc, .argv = h.argv};
        const struct cmd_desc *d = cmd_lookup(cmd.argv[0].ptr, cmd.argv[0].len);
        if (d != NULL &&
            pause_holds(c, d, cmd.argc, cmd.argv)) { /* (an unknown one, parsed ahead: its error) */
            held = true;
            break;
        }
        shard_clock_stale(c->sh);
        c->releasing = true;
        dispatch(c, &cmd);
        c->releasing = false;
        mi_free(h.argv);
        done++;
        if (output_over_limit(c)) {
            break;
        }
    }
    if (c->flags & CONN_CLOSING) { /* what is left never runs */
        while (done < c->nheld) {
            mi_free(c->held[done++].argv);
        }
        held = false;
    }
    memmove(c->held, c->held + done, (c->nheld - done) * sizeof *c->held);
    c->nheld -= done;
    return held;
}

void conn_retry_paused(struct shard *sh)
{
    struct conn *list = sh->paused;
    sh->paused = NULL;
    struct conn *kept = NULL, **kept_tail = &kept;
    while (list != NULL) {
        struct conn *c = list;
        list = c->paused_next;
        c->paused_next = NULL;
        if (release_held(c)) {
            *kept_tail = c; /* still held, in its place */
            kept_tail = &c->paused_next;
            continue;
        }
        KV_ASSERT(c->nheld == 0);
        c->flags &= ~CONN_PAUSED;
        STAT_SUB(sh->stats.blocked_clients, 1);
        if (!(c->flags & CONN_CLOSING)) {
            conn_process(c); /* the input that waited behind them */
        }
        conn_maybe_free(c);
    }
    *kept_tail = sh->paused;
    sh->paused = kept;
}

int64_t conn_paused_wait_ns(struct shard *sh)
{
    if (sh->paused == NULL) {
        return -1;
    }
    uint64_t p = atomic_load_explicit(&sh->srv->pause, memory_order_relaxed);
    int64_t left_ms = p == 0 ? 0 : (int64_t)(p >> 2) - kv_clock_real_ms();
    return left_ms <= 0 ? 0 : (left_ms > 3600000 ? 3600000 : left_ms) * 1000000;
}

/* The end of a command refused before it ran, its error replied: counted as rejected; a
 * refused EXEC ends the transaction, another command flags it (EXEC aborts), as in
 * Redis's rejectCommand. */
static void refused(struct conn *c, const struct cmd_desc *d, size_t argc,
                    const struct resp_arg *argv)
{
    early_count(c, d, true, argc, argv);
    if (d->fn == cmd_exec) {
        txn_free(c);
        unwatch(c);
    } else {
        txn_flag(c);
    }
    finish_early(c);
}

/* refused() with an error of fixed text (never a transaction's EXEC: no EXECABORT form). */
static void refused_with(struct conn *c, const struct cmd_desc *d, const struct resp_cmd *cmd,
                         const char *text)
{
    KV_DASSERT(d->fn != cmd_exec);
    early_error(c, "%s", text);
    refused(c, d, cmd->argc, cmd->argv);
}

/* The ACL check of a command (the connection's user is not unrestricted): -NOPERM and an
 * ACL LOG entry if it is refused, as Redis's processCommand. */
static bool acl_gate(struct conn *c, const struct cmd_desc *d, size_t argc,
                     const struct resp_arg *argv)
{
    const struct user *u = users_view_get(&c->sh->users, c->user);
    KV_ASSERT(u != NULL); /* (user_refresh closed the connection otherwise) */
    size_t pos;
    enum users_denied why = user_check(u, d, argc, argv, &pos);
    if (KV_LIKELY(why == USERS_OK)) {
        return true;
    }
    char text[256];
    users_denied_text(why, d, argc, argv, pos, false, text, sizeof text);
    conn_acl_log(c->sh, c->id, d->name, u, why,
                 c->txn != NULL ? USERS_CTX_MULTI : USERS_CTX_TOPLEVEL, d, argc, argv, pos);
    early_error(c,
                d->fn == cmd_exec ? "EXECABORT Transaction discarded because of: NOPERM %s"
                                  : "NOPERM %s",
                text);
    refused(c, d, argc, argv);
    return false;
}

/* Whether a script of this client runs on another shard (its later commands are not
 * refused -BUSY: Redis keeps a busy script's client waiting, not refused). */
static bool script_pending(const struct conn *c)
{
    for (uint32_t s = c->pend_head; s != c->pend_tail; s++) {
        const struct pend *p = &c->pend[s % CONN_PENDING_MAX];
        if (p->script && p->parts_left > 0) {
            return true;
        }
    }
    return false;
}

/* Dispatches one command; `pre` is what the caller found out about it already (or
 * NULL). */
static void dispatch_cmd(struct conn *c, const struct resp_cmd *cmd, const struct precomp *pre)
{
    struct shard *sh = c->sh;
    const struct cmd_desc *d =
        pre != NULL && pre->d != NULL ? pre->d : cmd_lookup(cmd->argv[0].ptr, cmd->argv[0].len);
    c->last_ms = sh->now_ms;
    if (d == NULL && (cmd_arg_is(&cmd->argv[0], "post") || cmd_arg_is(&cmd->argv[0], "host:"))) {
        /* Redis's cross-protocol scripting defence: an HTTP request is not a client. */
        kv_log_warning("possible security attack detected: POST or Host: command from %s, "
                       "connection closed",
                       c->addr);
        close_conn(c);
        return;
    }
    if (d == NULL) {
        unknown_command(c, cmd);
        txn_flag(c);
        finish_early(c);
        return;
    }
    if (KV_LIKELY(!(d->flags & CMD_SUBCMDS) || cmd->argc < 2)) {
        c->last_name = d->name; /* (no copy per command) */
    } else if (cmd_full_name(d, cmd->argc, cmd->argv, c->last_cmd, sizeof c->last_cmd)) {
        c->last_name = c->last_cmd;
    } else {
        c->last_name = NULL; /* an unknown subcommand: CLIENT LIST says cmd=NULL, as Redis */
    }
    if (KV_UNLIKELY(d->flags & CMD_SUBCMDS) && !cmd_sub_known(d, cmd->argc, cmd->argv)) {
        /* Redis's lookup finds no command: not counted as one, before anything else */
        char upper[32];
        size_t n = 0;
        for (; d->name[n] != '\0' && n + 1 < sizeof upper; n++) {
            upper[n] = (char)toupper((unsigned char)d->name[n]);
        }
        upper[n] = '\0';
        const struct resp_arg *sub = &cmd->argv[1];
        reply_error(early_out(c), "ERR unknown subcommand '%.*s'. Try %s HELP.",
                    (int)(sub->len > 128 ? 128 : sub->len), sub->ptr, upper);
        txn_flag(c);
        finish_early(c);
        return;
    }
    if (!cmd_arity_ok(d, cmd->argc)) { /* Redis checks the arity before the password */
        if (d->fn == cmd_exec) {       /* a refused EXEC ends any transaction (Redis: even none) */
            early_error(c,
                        "EXECABORT Transaction discarded because of: wrong number of arguments "
                        "for '%s' command",
                        d->name);
            early_count(c, d, true, cmd->argc, cmd->argv);
            txn_free(c);
            unwatch(c);
            finish_early(c);
            return;
        }
        early_error(c, "ERR wrong number of arguments for '%s' command", d->name);
        early_count(c, d, true, cmd->argc, cmd->argv);
        txn_flag(c);
        finish_early(c);
        return;
    }
    if (KV_UNLIKELY(d->flags & CMD_SUBCMDS) && !cmd_sub_arity_ok(d, cmd->argc, cmd->argv)) {
        /* a subcommand's arity, also before the password and the ACL, as Redis checks the
         * arity of the (sub)command it looked up */
        char name[64];
        cmd_full_name(d, cmd->argc, cmd->argv, name, sizeof name);
        early_error(c, "ERR wrong number of arguments for '%s' command", name);
        early_count(c, d, true, cmd->argc, cmd->argv);
        txn_flag(c);
        finish_early(c);
        return;
    }
    if (KV_UNLIKELY(c->user_gen != atomic_load_explicit(&users_gen, memory_order_relaxed)) &&
        !user_refresh(c)) {
        return; /* its user was deleted */
    }
    if (!(c->flags & CONN_AUTHED) && !(d->flags & CMD_NOAUTH)) {
        early_error(c,
                    d->fn == cmd_exec
                        ? "EXECABORT Transaction discarded because of: NOAUTH Authentication "
                          "required.%s"
                        : "NOAUTH Authentication required.%s",
                    "");
        early_count(c, d, true, cmd->argc, cmd->argv);
        finish_early(c);
        return;
    }
    if (KV_UNLIKELY(!c->acl_free) && !acl_gate(c, d, cmd->argc, cmd->argv)) {
        return;
    }
    if (KV_UNLIKELY(d->fn == cmd_debug) && !debug_allowed(c)) {
        refused_with(c, d, cmd,
                     "ERR DEBUG command not allowed. If the enable-debug-command option is set "
                     "to \"local\", you can run it from a local connection, otherwise you need "
                     "to set this option in the configuration file, and then restart the "
                     "server.");
        return;
    }
    if (((d->flags & CMD_WRITE) || d->fn == cmd_ping) && dump_refuses_writes(sh->srv)) {
        refused_with(c, d, cmd,
                     "MISCONF Redis is configured to save RDB snapshots, but it's currently "
                     "unable to persist to disk. Commands that may modify the data set are "
                     "disabled, because this instance is configured to report errors during "
                     "writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). "
                     "Please check the Redis logs for details about the RDB error.");
        return;
    }
    if ((d->flags & CMD_WRITE) &&
        atomic_load_explicit(&sh->srv->wal_refusing, memory_order_relaxed) != 0) {
        int err = atomic_load_explicit(&sh->srv->wal_errno, memory_order_relaxed);
        early_error(c,
                    "MISCONF Errors writing to the WAL: %s. Write commands are refused until it "
                    "can be written again; reads go on.",
                    strerror(err));
        refused(c, d, cmd->argc, cmd->argv);
        return;
    }
    /* (no eviction while a script is busy, as Redis: its denyoom commands get -BUSY) */
    if (KV_UNLIKELY(KV_CONF_GET(kvd_settings.maxmemory) != 0) &&
        atomic_load_explicit(&sh->srv->busy, memory_order_relaxed) == 0 && !oom_gate(c, d)) {
        early_error(c,
                    d->fn == cmd_exec ? "EXECABORT Transaction discarded because of: OOM command "
                                        "not allowed when used memory > 'maxmemory'.%s"
                                      : "OOM command not allowed when used memory > 'maxmemory'.%s",
                    "");
        refused(c, d, cmd->argc, cmd->argv);
        return;
    }
    size_t argc = cmd->argc;
    const struct resp_arg *argv = cmd->argv;
    if (KV_UNLIKELY(c->ps != NULL) && c->resp == 2 && c->last_name != NULL &&
        pubsub_subscribed(c->ps) && d->fn != cmd_subscribe && d->fn != cmd_unsubscribe &&
        d->fn != cmd_psubscribe && d->fn != cmd_punsubscribe && d->fn != cmd_ssubscribe &&
        d->fn != cmd_sunsubscribe && d->fn != cmd_ping && d->fn != cmd_quit && d->fn != cmd_reset) {
        char name[64];
        cmd_full_name(d, argc, argv, name, sizeof name);
        early_error(c,
                    d->fn == cmd_exec
                        ? "EXECABORT Transaction discarded because of: Can't execute '%s': only "
                          "(P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in "
                          "this context"
                        : "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
                          "QUIT / RESET are allowed in this context",
                    name);
        refused(c, d, argc, argv);
        return;
    }
    if (KV_UNLIKELY(atomic_load_explicit(&sh->srv->busy, memory_order_relaxed) != 0) &&
        !cmd_allows_busy(d, argc, argv)) {
        if (script_pending(c)) {
            /* it waits behind its script; never inside this thread's busy turn (another
             * script's, or a parked wait): held until the loop runs again */
            if (sh->in_busy_turn) {
                pause_keep(c, cmd);
                return;
            }
        } else {
            const char *busy = script_busy_text(sh->srv); /* (NULL: it just ended) */
            if (busy != NULL) {
                early_error(
                    c, d->fn == cmd_exec ? "EXECABORT Transaction discarded because of: %s" : "%s",
                    busy);
                refused(c, d, argc, argv);
                return;
            }
        }
    }
    if (KV_UNLIKELY(atomic_load_explicit(&sh->srv->pause, memory_order_relaxed) != 0) &&
        !c->releasing && pause_holds(c, d, cmd->argc, cmd->argv)) {
        pause_keep(c, cmd); /* run by conn_retry_paused once the pause is over */
        return;
    }
    if (KV_UNLIKELY(monitor_on())) { /* the database it runs in: SELECT's new one */
        uint32_t db = c->db;
        if (d->fn == cmd_select && cmd->argc == 2) {
            int64_t v;
            if (cmd_parse_i64(&cmd->argv[1], &v) && v >= 0 && v < (int64_t)sh->ndb) {
                db = (uint32_t)v;
            }
        }
        monitor_feed(sh, c, db, c->addr, d, cmd->argc, cmd->argv);
    }
    /* (one test for the commands dispatch treats apart, and for a transaction's) */
    if (KV_UNLIKELY((d->flags & CMD_SPECIAL) || c->txn != NULL)) {
        if (d->fn == cmd_multi || d->fn == cmd_exec || d->fn == cmd_discard) {
            txn_control(c, d, argc, argv);
            return;
        }
        if (d->fn == cmd_watch && c->txn != NULL) { /* not queued, not an abort: Redis's rule */
            early_error(c, "ERR WATCH inside MULTI is not allowed%s", "");
            early_count(c, d, false, argc, argv);
            finish_early(c);
            return;
        }
        if (c->txn != NULL && d->fn != cmd_quit && d->fn != cmd_reset) {
            txn_queue(c, d, argc, argv);
            return;
        }
        if (d->fn == cmd_unwatch) {
            unwatch(c); /* then +OK from here: later requests to that shard follow the drop */
        }
        if (d->fn == cmd_client) {
            /* CLIENT LIST and KILL look at the clients of every shard. */
            if (cmd_arg_is(&argv[1], "list")) {
                d = cmd_lookup_hidden("client|list");
            } else if (cmd_arg_is(&argv[1], "kill") && argc >= 3) {
                d = cmd_lookup_hidden(argc == 3 ? "client|kill-old" : "client|kill");
            }
        } else if (d->fn == cmd_object && argc == 3 && cmd_object_keyed(&argv[1])) {
            d = cmd_lookup_hidden("object|key"); /* OBJECT ENCODING key, ...: the key's shard */
        } else if (d->fn == cmd_memory && argc >= 3 && cmd_arg_is(&argv[1], "usage")) {
            d = cmd_lookup_hidden("memory|usage"); /* MEMORY USAGE key: the key's shard */
        } else if (d->fn == cmd_debug && argc == 3 && cmd_arg_is(&argv[1], "object")) {
            d = cmd_lookup_hidden("debug|object"); /* DEBUG OBJECT key: the key's shard */
        } else if (d->fn == cmd_debug && argc == 2 && cmd_arg_is(&argv[1], "digest")) {
            d = cmd_lookup_hidden("debug|digest"); /* every shard's keys */
        } else if (d->fn == cmd_debug && cmd_arg_is(&argv[1], "digest-value")) {
            d = cmd_lookup_hidden("debug|digest-value");
        }
    }
    switch (d->exec) {
    case CMD_EXEC_CONN:
        exec_local(c, d, argc, argv);
        return;
    case CMD_EXEC_KEY: {
        bool known = pre != NULL && pre->have_h && pre->d == d; /* (not a changed row) */
        uint64_t h = known ? pre->h : arg_hash(&argv[d->first_key]);
        uint32_t t = known ? pre->owner : owner(sh, h);
        if (t == sh->id) {
            cmd_key_hash_memo(&argv[d->first_key], h); /* (the handler's hash of it) */
            exec_local(c, d, argc, argv);
            cmd_key_hash_memo(NULL, 0);
        } else {
            forward_one(c, t, d, argc, argv);
        }
        return;
    }
    case CMD_EXEC_SAME: {
        uint32_t to = same_shard(sh, d, argc, argv);
        if (to == KVD_THREADS_MAX && same_crosses(d)) {
            txn_bare(c, d, argc, argv); /* on the keys' shards at one instant */
            return;
        }
        if (to == KVD_THREADS_MAX) {
            early_error(c, "CROSSSLOT Keys in request don't hash to the same slot%s", "");
            early_count(c, d, true, argc, argv);
            finish_early(c);
            return;
        }
        if (to == sh->id) {
            exec_local(c, d, argc, argv);
        } else {
            forward_one(c, to, d, argc, argv);
        }
        return;
    }
    case CMD_EXEC_SCRIPT: {
        size_t numkeys;
        const char *err = script_numkeys(argc, argv, &numkeys);
        if (argv[1].len != 40 && strncmp(d->name, "evalsha", 7) == 0) { /* Redis's first check */
            err = "NOSCRIPT No matching script. Please use EVAL.";
        }
        if (err != NULL && d->fn == cmd_fcall) { /* "Function not found" comes first */
            exec_local(c, d, argc, argv);
            return;
        }
        if (err != NULL) { /* Redis's EVAL replies these when it runs: a failed call */
            early_error(c, "%s", err);
            early_count(c, d, false, argc, argv);
            finish_early(c);
            return;
        }
        /* on the shard of its declared keys when they share one, else here with the
         * others parked as it touches them */
        uint32_t to = numkeys > 0 ? owner(sh, arg_hash(&argv[3])) : KVD_THREADS_MAX;
        for (size_t i = 1; i < numkeys && to != KVD_THREADS_MAX; i++) {
            if (owner(sh, arg_hash(&argv[3 + i])) != to) {
                to = KVD_THREADS_MAX;
            }
        }
        if (sh->srv->nthreads == 1 || to == sh->id) {
            exec_local(c, d, argc, argv);
        } else if (to != KVD_THREADS_MAX) {
            forward_one(c, to, d, argc, argv);
        } else {
            txn_bare(c, d, argc, argv);
        }
        return;
    }
    case CMD_EXEC_MULTI: {
        if (d->key_step == 2 && (argc - 1) % 2 != 0) {
            early_error(c, "ERR wrong number of arguments for '%s' command", d->name);
            early_count(c, d, false, argc, argv);
            finish_early(c);
            return;
        }
        size_t nkeys = (argc - 1) / (size_t)d->key_step;
        uint16_t stack_owners[ARGV_STACK];
        uint16_t *owners =
            nkeys <= ARGV_STACK ? stack_owners : mi_heap_malloc(sh->heap, nkeys * sizeof *owners);
        KV_ASSERT(owners != NULL);
        bool all_local = true;
        for (size_t i = 0; i < nkeys; i++) {
            owners[i] = (uint16_t)owner(sh, arg_hash(&argv[1 + i * (size_t)d->key_step]));
            all_local &= owners[i] == sh->id;
            if (d->fn == cmd_watch) { /* each shard keeps the watches of its keys */
                if (shardset_count(&c->watch_shards) == 0) {
                    STAT_ADD(sh->stats.watching_clients, 1);
                }
                shardset_add(&c->watch_shards, owners[i]);
            }
        }
        if (all_local) {
            exec_local(c, d, argc, argv);
        } else {
            fan_out(c, d, argc, argv, owners);
        }
        if (owners != stack_owners) {
            mi_free(owners);
        }
        return;
    }
    case CMD_EXEC_ALL:
        if (!precheck(c, d, argc, argv)) {
            early_count(c, d, false, argc, argv);
            finish_early(c);
        } else if (sh->srv->nthreads == 1) {
            exec_local(c, d, argc, argv);
        } else if (d->fn == cmd_swapdb || d->fn == cmd_flushall || d->fn == cmd_flushdb) {
            txn_bare(c, d, argc, argv); /* on every shard at one instant, as in Redis */
        } else {
            fan_out(c, d, argc, argv, NULL);
        }
        return;
    }
    KV_ASSERT(0);
}

/* ---- input -------------------------------------------------------------------- */

/* After each command, as Redis's resetClient: CLIENT REPLY SKIP (which set SKIP_NEXT)
 * drops the reply of the one command after it, whatever that is. */
static inline void reply_mode_step(struct conn *c)
{
    if (KV_UNLIKELY(c->reply_mode >= CONN_REPLY_SKIP_NEXT)) {
        c->reply_mode = c->reply_mode == CONN_REPLY_SKIP_NEXT ? CONN_REPLY_SKIP : CONN_REPLY_ON;
    }
}

/* dispatch_cmd, then what CLIENT TRACKING does between commands: CLIENT CACHING lasts
 * one command (or transaction), and invalidations this shard made for its own clients
 * go out now, after the command's reply (never inside one). */
static void dispatch_pre(struct conn *c, const struct resp_cmd *cmd, const struct precomp *pre)
{
    dispatch_cmd(c, cmd, pre);
    monitor_after_command(); /* a monitor's own command's line, after the reply */
    bool held = (c->flags & CONN_PAUSED) && !c->releasing; /* it has not run: CLIENT
                                                            * CACHING stays for it */
    if (KV_UNLIKELY(c->trk != NULL) && !held) {
        track_command_done(c->trk, cmd_arg_is(&cmd->argv[0], "client"), c->txn != NULL);
    }
    track_deliver(c->sh);
}
static void dispatch(struct conn *c, const struct resp_cmd *cmd)
{
    dispatch_pre(c, cmd, NULL);
    if (!(c->flags & CONN_PAUSED) || c->releasing) { /* a held command's REPLY SKIP waits */
        reply_mode_step(c);
    }
}

/* Leaves room in the pending ring for one batch of commands parsed ahead (run_batch). */
static bool must_pause(const struct conn *c)
{
    return (c->flags &
            (CONN_CLOSING | CONN_CLOSE_AFTER | CONN_TXN_WAIT | CONN_PUSH_OVER | CONN_PAUSED)) ||
           c->outbox_len > 0 || pend_count(c) >= CONN_PENDING_MAX - CONN_BATCH_MAX - 1 ||
           c->remote_waiting >= CONN_REMOTE_MAX;
}

/* Commands parsed ahead of execution, so that their table slots and entries can be
 * prefetched together: a lookup is two dependent cache misses, and a pipelined batch
 * overlaps them instead of paying them one after the other. */
struct batch_cmd {
    size_t argc;
    struct resp_arg argv[CONN_BATCH_ARGS];
};

static bool output_over_limit(struct conn *c)
{
    if (resp_out_error(&c->out) != 0) {
        close_over(c);
        return true;
    }
    return false;
}

/* tbl_hash_place of key k, or the hashes conn_prefetch_turn left for its bytes. */
static uint64_t key_hashes(const struct conn *c, const struct resp_arg *k, uint64_t *ph)
{
    if (k->len == c->pf_len && kv_bytes_eq(k->ptr, c->pf_key, k->len)) {
        *ph = c->pf_ph;
        return c->pf_h;
    }
    return tbl_hash_place(k->ptr, k->len, ph);
}

/* Prefetches, then runs, the batch. False if the connection must stop taking commands
 * (closing, QUIT, or over its output limit): the rest of the batch is dropped, as Redis
 * drops what follows QUIT. */
static bool run_batch(struct conn *c, struct batch_cmd *b, size_t n)
{
    struct shard *sh = c->sh;
    struct precomp pre[CONN_BATCH_MAX];
    struct tbl *t[CONN_BATCH_MAX];
    uint64_t ph[CONN_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        const struct cmd_desc *d = cmd_lookup(b[i].argv[0].ptr, b[i].argv[0].len);
        pre[i] = (struct precomp){.d = d};
        t[i] = NULL;
        if (d != NULL && d->exec == CMD_EXEC_KEY && cmd_arity_ok(d, b[i].argc)) {
            const struct resp_arg *k = &b[i].argv[d->first_key];
            pre[i].have_h = true;
            pre[i].h = key_hashes(c, k, &ph[i]);
            const struct route_part *p = route_lookup(sh->srv->route, pre[i].h);
            pre[i].owner = p->thread;
            if (p->thread == sh->id && n > 1) { /* NULL: nothing of that database yet */
                t[i] = shard_part_peek(sh, p->slot, c->db);
                if (t[i] != NULL) {
                    tbl_prefetch_at(t[i], ph[i], false);
                }
            }
        }
    }
    /* (a lone command has nothing to overlap its misses with: its lookup follows at
     * once, and a prefetch would only walk its slots twice) */
    for (size_t i = 0; i < n; i++) {
        if (t[i] != NULL) {
            tbl_prefetch_at(t[i], ph[i], true);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER)) {
            return false;
        }
        struct resp_cmd cmd = {.argc = b[i].argc, .argv = b[i].argv};
        if (c->flags & CONN_PAUSED) { /* behind a held one: held too, in order */
            pause_keep(c, &cmd);
            continue;
        }
        dispatch_pre(c, &cmd, &pre[i]);
        KV_ASSERT(!(c->flags & CONN_TXN_WAIT)); /* such commands are never batched */
        if (c->flags & CONN_PAUSED) {
            continue; /* held (CLIENT REPLY SKIP waits for it) */
        }
        reply_mode_step(c);
        if (output_over_limit(c)) {
            return false;
        }
    }
    return !(c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER));
}

/* EXEC, EVAL & co, FCALL & co, SWAPDB, FLUSHALL, FLUSHDB and the SAME commands (RENAME,
 * RENAMENX, COPY, MSETNX, LCS, BITOP, PFCOUNT, PFMERGE) are dispatched on their own, never in a
 * batch parsed ahead: each may run as a cross-shard transaction that has to wait for another
 * shard's, and what follows it must wait too (only the unbatched path stops at
 * CONN_TXN_WAIT). The first byte and the length keep GET, SET, ... to two tests. */
static inline bool is_exec(const struct resp_arg *a)
{
    if (a->len < 3 || a->len > 10) {
        return false;
    }
    switch (a->ptr[0] | 0x20) {
    case 'e':
        return cmd_arg_is(a, "exec") || cmd_arg_is(a, "eval") || cmd_arg_is(a, "evalsha") ||
               cmd_arg_is(a, "eval_ro") || cmd_arg_is(a, "evalsha_ro");
    case 'f':
        return cmd_arg_is(a, "fcall") || cmd_arg_is(a, "fcall_ro") || cmd_arg_is(a, "flushall") ||
               cmd_arg_is(a, "flushdb");
    case 's':
        return a->len == 6 && cmd_arg_is(a, "swapdb");
    case 'r':
        return (a->len == 6 && cmd_arg_is(a, "rename")) ||
               (a->len == 8 && cmd_arg_is(a, "renamenx"));
    case 'c':
        return a->len == 4 && cmd_arg_is(a, "copy");
    case 'm':
        return a->len == 6 && cmd_arg_is(a, "msetnx");
    case 'l':
        return a->len == 3 && cmd_arg_is(a, "lcs");
    case 'b':
        return a->len == 5 && cmd_arg_is(a, "bitop");
    case 'p':
        return a->len == 7 && (cmd_arg_is(a, "pfcount") || cmd_arg_is(a, "pfmerge"));
    default:
        return false;
    }
}

/* Parses and dispatches what the parser holds until it needs more input (true) or
 * must pause (false). */
static bool parse_some(struct conn *c)
{
    limits_refresh(c); /* (CONFIG SET and SUBSCRIBE change them) */
    struct resp_cmd cmd;
    struct batch_cmd batch[CONN_BATCH_MAX];
    size_t n = 0;
    /* While CLIENT PAUSE is on nothing is parsed ahead: a command that waits keeps the
     * ones after it in the input. */
    bool ahead = server_paused(c->sh->srv, c->sh->now_ms) == SERVER_PAUSE_NONE;
    while (!must_pause(c)) {
        int rc = resp_parser_next(c->parser, &cmd);
        /* Before AUTH nothing is parsed ahead: AUTH lifts the codec's pre-AUTH limits
         * for the commands after it, as in Redis. */
        if (rc == 0 && ahead && cmd.argc <= CONN_BATCH_ARGS && (c->flags & CONN_AUTHED) &&
            !is_exec(&cmd.argv[0])) {
            /* The argument views stay valid until the next feed; only the argv array is
             * reused by the parser, so it is copied. */
            batch[n].argc = cmd.argc;
            for (size_t a = 0; a < cmd.argc; a++) { /* (at most CONN_BATCH_ARGS: inline) */
                batch[n].argv[a] = cmd.argv[a];
            }
            if (++n == CONN_BATCH_MAX) {
                if (!run_batch(c, batch, n)) {
                    return false;
                }
                n = 0;
            }
            continue;
        }
        if (!run_batch(c, batch, n)) {
            return false;
        }
        n = 0;
        if (rc == KV_EAGAIN) {
            return true;
        }
        if (rc != 0) {
            const char *text = resp_parser_error_text(c->parser);
            if (text[0] != '\0') {
                early_error(c, "%s", text);
                finish_early(c);
            }
            conn_close_after_reply(c);
            return false;
        }
        dispatch(c, &cmd);
        if (output_over_limit(c)) {
            return false;
        }
    }
    run_batch(c, batch, n);
    return false;
}

static void stash_append(struct conn *c, const char *data, size_t len)
{
    if (c->stash_len + len > c->stash_cap) {
        size_t cap = c->stash_cap ? c->stash_cap * 2 : 16384;
        while (cap < c->stash_len + len) {
            cap *= 2;
        }
        char *p = mi_heap_realloc(c->sh->heap, c->stash, cap);
        KV_ASSERT(p != NULL);
        c->stash = p;
        c->stash_cap = cap;
    }
    memcpy(c->stash + c->stash_len, data, len);
    c->stash_len += len;
}

/* Resumes parsing held input and then the stash, as far as it goes. */
static void conn_process(struct conn *c)
{
    for (;;) {
        if (c->held_bid < 0 && c->held_heap == NULL) {
            if (c->stash_len == 0 || must_pause(c)) {
                return;
            }
            /* The stash becomes the buffer being parsed. */
            c->held_heap = c->stash;
            size_t len = c->stash_len;
            c->stash = NULL;
            c->stash_len = c->stash_cap = 0;
            resp_parser_feed(c->parser, c->held_heap, len);
        }
        if (!parse_some(c)) {
            if (c->flags & CONN_PAUSED) {
                pause_detach_input(c);
            }
            return;
        }
        if (c->held_bid >= 0) {
            shard_buf_return(c->sh, (uint16_t)c->held_bid);
            c->held_bid = -1;
        }
        mi_free(c->held_heap);
        c->held_heap = NULL;
    }
}

#define PREFETCH_TURN_MAX 32 /* requests whose keys a turn prefetches, at most */

void conn_prefetch_turn(struct shard *sh)
{
    /* A turn at P1 holds a receive of many connections, each with one request; their
     * lookups' cache misses (the slot, then the entry) would come one after another.
     * So before any runs, each receive's first request "*N $len name $len key" (the
     * common one-key form; any other is skipped) has its key's slot prefetched, then,
     * once those are on their way, its entry. Hints only: no table is changed, no
     * connection is read (database 0 is assumed; a wrong guess costs a prefetch). The
     * key's hashes are left with its connection (pf_key), for run_batch. */
    struct tbl *t[PREFETCH_TURN_MAX];
    uint64_t ph[PREFETCH_TURN_MAX];
    unsigned n = 0;
    struct io_uring_cqe *cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&sh->ring, head, cqe)
    {
        uint64_t ud = cqe->user_data;
        if (n == PREFETCH_TURN_MAX || ++seen > 2 * PREFETCH_TURN_MAX) {
            break;
        }
        if (ud < SHARD_UD_MAX) {
            continue;
        }
        struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)CONN_UD_MASK);
        __builtin_prefetch(c); /* its head, which conn_on_cqe reads first */
        __builtin_prefetch((const char *)c + 64);
        struct resp_arg key;
        if ((ud & CONN_UD_MASK) != CONN_UD_RECV || cqe->res <= 0 ||
            !(cqe->flags & IORING_CQE_F_BUFFER) ||
            !resp_peek_second_arg(shard_buf(sh, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT)),
                                  (size_t)cqe->res, &key)) {
            continue;
        }
        uint64_t h = tbl_hash_place(key.ptr, key.len, &ph[n]);
        if (key.len <= PF_KEY_MAX) { /* handed on to run_batch: not hashed twice */
            c->pf_len = (uint8_t)key.len;
            memcpy(c->pf_key, key.ptr, key.len);
            c->pf_h = h;
            c->pf_ph = ph[n];
        }
        const struct route_part *p = route_lookup(sh->srv->route, h);
        if (p->thread == sh->id && (t[n] = shard_part_peek(sh, p->slot, 0)) != NULL) {
            tbl_prefetch_at(t[n], ph[n], false);
            n++;
        }
    }
    for (unsigned i = 0; n > 1 && i < n; i++) {
        tbl_prefetch_at(t[i], ph[i], true);
    }
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    struct shard *sh = c->sh;
    if (KV_UNLIKELY(c == sh->busy_conn) && cqe->res <= 0 && cqe->res != -ENOBUFS) {
        shard_defer_cqe(sh, cqe, c); /* its script runs: closed once it is over */
        return;
    }
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->res > 0) {
        KV_ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        const char *data = shard_buf(sh, bid);
        size_t len = (size_t)cqe->res;
        STAT_ADD(sh->stats.net_in_bytes, len);
        if (c->flags & CONN_CLOSING) {
            shard_buf_return(sh, bid);
        } else if (c->held_bid >= 0 || c->held_heap != NULL || c->stash_len > 0 ||
                   (c->flags & CONN_CLOSE_AFTER) || c == sh->busy_conn) {
            /* (the busy client: its script's arguments point into what it is parsing) */
            if (!(c->flags & CONN_CLOSE_AFTER)) {
                stash_append(c, data, len);
            }
            shard_buf_return(sh, bid);
            if ((int64_t)c->stash_len > KV_CONF_GET(kvd_settings.query_buffer_limit) &&
                !(c->flags & CONN_CLOSE_AFTER)) {
                kv_log_notice("closing client over its query buffer limit id=%llu",
                              (unsigned long long)c->id);
                if (c == sh->busy_conn) {
                    conn_close_after_reply(c); /* its script's reply first */
                } else {
                    close_conn(c);
                }
            }
        } else {
            resp_parser_feed(c->parser, data, len);
            if (parse_some(c)) {
                shard_buf_return(sh, bid);
                if (c->stash_len > 0) { /* what came while a script of it was busy */
                    conn_process(c);
                }
            } else if (!(c->flags & CONN_CLOSING)) {
                c->held_bid = bid;
                if (c->flags & CONN_PAUSED) {
                    pause_detach_input(c);
                }
            } else {
                shard_buf_return(sh, bid);
            }
        }
    } else if (cqe->res == -ENOBUFS) {
        c->flags |= CONN_NOBUFS;
        STAT_ADD(sh->stats.recv_nobufs, 1);
    } else {
        /* 0: the peer closed; < 0: an error. Either way the connection is done. */
        close_conn(c);
    }
    if (!more) {
        c->flags &= ~CONN_RECV_ARMED;
        c->inflight--;
        if (!(c->flags & CONN_CLOSING) && cqe->res > 0) {
            arm_recv(c);
        } else if (!(c->flags & CONN_CLOSING) && cqe->res == -ENOBUFS) {
            mark_dirty(c); /* re-armed by conn_flush, once buffers are back */
        }
    }
    conn_maybe_free(c);
}

/* ---- output -------------------------------------------------------------------- */

static void on_send(struct conn *c, struct io_uring_cqe *cqe)
{
    if (KV_UNLIKELY(c == c->sh->busy_conn)) {
        shard_defer_cqe(c->sh, cqe, c); /* its output stays as its script left it */
        return;
    }
    c->flags &= ~CONN_SEND_INFLIGHT;
    c->inflight--;
    if (cqe->res < 0) {
        close_conn(c);
    } else {
        resp_out_consume(&c->out, (size_t)cqe->res);
        STAT_ADD(c->sh->stats.net_out_bytes, (uint64_t)cqe->res);
        if (resp_out_queued_bytes(&c->out) > 0 || (c->flags & CONN_CLOSE_AFTER)) {
            mark_dirty(c);
        }
    }
    conn_maybe_free(c);
}

void conn_on_cqe(struct shard *sh, struct io_uring_cqe *cqe, uint64_t ud)
{
    struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)CONN_UD_MASK);
    KV_ASSERT(c->sh == sh);
    switch (ud & CONN_UD_MASK) {
    case CONN_UD_RECV:
        on_recv(c, cqe);
        break;
    case CONN_UD_SEND:
        on_send(c, cqe);
        break;
    default:
        KV_ASSERT(0);
    }
}

static void flush_one(struct conn *c)
{
    c->flags &= ~CONN_DIRTY;
    if (c->flags & CONN_PUSH_OVER) {
        close_over(c);
    }
    if (c->flags & CONN_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    if ((c->flags & CONN_NOBUFS) && !(c->flags & CONN_RECV_ARMED)) {
        c->flags &= ~CONN_NOBUFS;
        arm_recv(c);
    }
    if (c->flags & CONN_SEND_INFLIGHT) {
        return; /* its completion marks the connection dirty again if needed */
    }
    if (resp_out_queued_bytes(&c->out) == 0) {
        if ((c->flags & CONN_CLOSE_AFTER) && pend_count(c) == 0) {
            close_conn(c);
        }
        return;
    }
    int n = resp_out_iov(&c->out, c->iov, CONN_IOV_MAX);
    KV_ASSERT(n > 0);
    struct io_uring_sqe *sqe = shard_sqe(c->sh);
    if (n == 1) { /* the common case: a send, no msghdr for the kernel to copy and check */
        io_uring_prep_send(sqe, c->fd, c->iov[0].iov_base, c->iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        memset(&c->msg, 0, sizeof c->msg);
        c->msg.msg_iov = c->iov;
        c->msg.msg_iovlen = (size_t)n;
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    }
    use_file(sqe, c);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | CONN_UD_SEND);
    c->flags |= CONN_SEND_INFLIGHT;
    c->inflight++;
}

void conn_turn_begin(struct shard *sh)
{
    uint64_t gen = atomic_load_explicit(&obuf_gen, memory_order_relaxed);
    if (KV_UNLIKELY(gen != sh->obuf_gen)) { /* (after a CONFIG SET) */
        sh->obuf_gen = gen;
        resp_out_set_limit(sh->scratch, normal_limit());
        resp_out_set_limit(sh->busy_scratch, normal_limit());
    }
}

void conn_flush(struct shard *sh)
{
    struct wal *w = aof_durable_wal(sh); /* (also one being written out: aof.h) */
    uint64_t durable = w != NULL ? wal_durable(w) : UINT64_MAX;
    struct conn *waiting = NULL;
    while (sh->dirty != NULL) {
        struct conn *c = sh->dirty;
        sh->dirty = c->dirty_next;
        c->dirty_next = NULL;
        if ((c->wal_wait > durable && !(c->flags & CONN_CLOSING)) || c == sh->busy_conn) {
            /* stays dirty: flushed once the WAL catches up (or its script is over) */
            c->dirty_next = waiting;
            waiting = c;
            continue;
        }
        flush_one(c);
    }
    sh->dirty = waiting;
}

/* ---- cross-shard messages --------------------------------------------------------- */

static void send_reply(struct shard *sh, uint32_t to, const struct xmsg *m)
{
    if (sh->overflow[to] == NULL && shard_send(sh, to, m)) {
        return;
    }
    struct xmsg_list *l = mi_heap_malloc(sh->heap, sizeof *l);
    KV_ASSERT(l != NULL);
    l->m = *m;
    l->next = NULL; /* at the tail: they leave in the order they came */
    if (sh->overflow[to] == NULL) {
        sh->overflow[to] = l;
    } else {
        sh->overflow_tail[to]->next = l;
    }
    sh->overflow_tail[to] = l;
}

/* Keeps a reply to another shard until the WAL is durable up to `token` (a ring, in
 * order: tokens never decrease). */
static void held_push(struct shard *sh, const struct xmsg *r, uint32_t to, uint64_t token)
{
    if (sh->held_tail - sh->held_head == sh->held_cap) {
        uint32_t cap = sh->held_cap ? sh->held_cap * 2 : 256;
        struct held_reply *v = mi_heap_malloc(sh->heap, cap * sizeof *v);
        KV_ASSERT(v != NULL);
        for (uint32_t i = sh->held_head; i != sh->held_tail; i++) {
            v[i - sh->held_head] = sh->held[i % sh->held_cap];
        }
        mi_free(sh->held);
        sh->held = v;
        sh->held_tail -= sh->held_head;
        sh->held_head = 0;
        sh->held_cap = cap;
    }
    struct held_reply *h = &sh->held[sh->held_tail++ % sh->held_cap];
    h->m = *r;
    h->to = to;
    h->token = token;
}

void conn_exec_remote(struct shard *sh, const struct xmsg *m)
{
    struct resp_arg stack_argv[ARGV_STACK];
    struct resp_arg *argv = stack_argv;
    uint32_t argc;
    memcpy(&argc, m->payload, 4);
    if (argc > ARGV_STACK) {
        argv = mi_heap_malloc(sh->heap, argc * sizeof *argv);
        KV_ASSERT(argv != NULL);
    }
    argv_unpack(m->payload, m->payload_len, argv, argc);
    int64_t sum = 0;
    resp_out_set_proto(sh->scratch, m->proto);
    int32_t trk = (m->part & XQ_PART_TRACK) ? (int32_t)m->src : -1;
    struct run_res res =
        run(sh, NULL, m->desc, argc, argv, sh->scratch, &sum, m->caller_id, m->flags, m->db, trk);
    STAT_ADD(sh->stats.executed_remote, 1);
    struct xmsg r = {
        .kind = XM_REPLY,
        .src = (uint16_t)sh->id,
        .seq = m->seq,
        .conn = m->conn,
        .value = sum,
        .part = m->part & ~XQ_PART_TRACK,
        .flags = (res.failed ? XR_FAILED : 0) | (res.rejected ? XR_REJECTED : 0),
        .exec_us = res.us,
    };
    size_t len;
    bool over;
    r.payload = scratch_result(sh, &len, &over);
    r.payload_len = len;
    if (over) {
        r.flags |= XR_OVER; /* the client's shard closes it */
    }
    if (argv != stack_argv) {
        mi_free(argv);
    }
    if (KV_UNLIKELY(slowlog_wants(res.us)) && !(m->desc->flags & CMD_NOSLOWLOG)) {
        r.slow_argv = m->payload; /* the client's shard logs it, with the client's name */
    } else {
        blob_free(m->payload);
    }
    struct wal *w = sh->wal;
    if (w != NULL && wal_holds(w, m->desc)) {
        held_push(sh, &r, m->src, wal_appended(w));
        return;
    }
    send_reply(sh, m->src, &r);
}

void conn_on_reply(struct shard *sh, const struct xmsg *m)
{
    struct conn *c = m->conn;
    KV_ASSERT(c->sh == sh && c->remote_waiting > 0);
    c->remote_waiting--;
    KV_ASSERT(m->seq - c->pend_head < pend_count(c));
    struct pend *p = &c->pend[m->seq % CONN_PENDING_MAX];
    bool ready;
    size_t before = slot_bytes(p);
    struct run_res r = {.us = m->exec_us,
                        .failed = (m->flags & XR_FAILED) != 0,
                        .rejected = (m->flags & XR_REJECTED) != 0};
    if (p->g == NULL) {
        KV_ASSERT(p->parts_left == 1 && p->blob == NULL);
        p->blob = m->payload;
        p->len = m->payload_len;
        p->parts_left = 0;
        ready = true;
        account_forwarded(c, p, r, m->slow_argv);
    } else {
        ready = part_done(p, m->part, m->payload, m->payload_len, m->value, r);
        blob_free(m->slow_argv); /* a fan-out is logged whole, from p->slow */
        if (ready) {
            account_fan_out(c, p);
        }
    }
    c->pend_bytes += slot_bytes(p) - before;
    if (m->flags & XR_OVER) {
        close_over(c); /* as Redis, whose reply would have passed the client's limit */
    }
    if (pend_over_limit(c) || (c->flags & CONN_CLOSING)) {
        ready = false; /* closing: the slots are freed with the connection */
    }
    if (ready) {
        pend_drain(c);
        if (!must_pause(c) && (c->held_bid >= 0 || c->held_heap != NULL || c->stash_len > 0)) {
            conn_process(c);
        }
    }
    conn_maybe_free(c);
}

static bool outbox_flush(struct conn *c)
{
    struct shard *sh = c->sh;
    uint32_t i = 0;
    while (i < c->outbox_len) {
        if (!shard_send(sh, c->outbox[i].to, &c->outbox[i].m)) {
            break;
        }
        i++;
    }
    memmove(c->outbox, c->outbox + i, (c->outbox_len - i) * sizeof c->outbox[0]);
    c->outbox_len -= i;
    while (c->outbox_len < KV_ARRAY_LEN(c->outbox) && c->outbox_more_len > 0) {
        c->outbox[c->outbox_len++] = c->outbox_more[0];
        memmove(c->outbox_more, c->outbox_more + 1,
                (--c->outbox_more_len) * sizeof c->outbox_more[0]);
    }
    return c->outbox_len == 0;
}

bool conn_overflow_pending(const struct shard *sh)
{
    for (uint32_t t = 0; t < sh->srv->nthreads; t++) {
        if (sh->overflow[t] != NULL) {
            return true;
        }
    }
    return false;
}

void conn_retry_blocked(struct shard *sh)
{
    for (uint32_t t = 0; t < sh->srv->nthreads; t++) {
        while (sh->overflow[t] != NULL) {
            struct xmsg_list *l = sh->overflow[t];
            if (!shard_send(sh, t, &l->m)) {
                break;
            }
            sh->overflow[t] = l->next;
            if (l->next == NULL) {
                sh->overflow_tail[t] = NULL;
            }
            mi_free(l);
        }
    }
    struct conn *list = sh->blocked;
    sh->blocked = NULL;
    while (list != NULL) {
        struct conn *c = list;
        list = c->blocked_next;
        c->blocked_next = NULL;
        c->flags &= ~CONN_BLOCKED;
        if (!outbox_flush(c)) {
            mark_blocked(c);
            continue;
        }
        if ((c->flags & CONN_TXN_WAIT) && !(c->flags & CONN_CLOSING)) {
            if (!txn_exec_cross(c)) {
                mark_blocked(c);
                continue;
            }
            c->flags &= ~CONN_TXN_WAIT;
        }
        if (!(c->flags & CONN_CLOSING)) {
            conn_process(c);
        }
        conn_maybe_free(c);
    }
}

/* ---- timers and shutdown ----------------------------------------------------------- */

void conn_cron(struct shard *sh, int64_t now_ms)
{
    int64_t timeout_s = KV_CONF_GET(kvd_settings.timeout_s);
    for (struct conn *c = sh->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->soft_since_ms != 0 && !(c->flags & CONN_CLOSING) &&
            over_limits(c, queued_bytes(c))) {
            close_over(c); /* over its soft limit for its seconds, with no traffic since */
            continue;
        }
        if ((c->flags & (CONN_CLOSING | CONN_PAUSED)) || pend_count(c) > 0) {
            continue; /* a client held by CLIENT PAUSE is not idle (Redis's rule) */
        }
        int64_t idle_ms = now_ms - c->last_ms;
        if (timeout_s > 0 && idle_ms > timeout_s * 1000) {
            close_conn(c);
        } else if (idle_ms >= CONN_TRIM_IDLE_MS) {
            resp_parser_trim(c->parser); /* an idle client keeps no spare parse memory */
        }
    }
}

static bool quiet(const struct conn *c)
{
    return pend_count(c) == 0 && c->outbox_len == 0 && resp_out_queued_bytes(&c->out) == 0 &&
           c->held_bid < 0 && c->held_heap == NULL && c->stash_len == 0;
}

void conn_close_idle(struct shard *sh)
{
    for (struct conn *c = sh->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (quiet(c)) {
            close_conn(c);
        }
    }
}

bool conn_all_quiet(struct shard *sh)
{
    for (struct conn *c = sh->conns; c != NULL; c = c->next) {
        if (!(c->flags & CONN_CLOSING) && !quiet(c)) {
            return false;
        }
    }
    return true;
}

void conn_close_all(struct shard *sh)
{
    for (struct conn *c = sh->conns, *next; c != NULL; c = next) {
        next = c->next;
        close_conn(c);
    }
}

/* ---- durability: held replies and SAVE ---------------------------------------------- */

/* Completes a deferred reply slot with `text` (a whole RESP reply). */
static void defer_complete(struct conn *c, uint32_t seq, const char *text)
{
    KV_ASSERT(c->remote_waiting > 0);
    c->remote_waiting--;
    struct pend *p = &c->pend[seq % CONN_PENDING_MAX];
    KV_ASSERT(p->parts_left == 1 && p->blob == NULL);
    size_t len = strlen(text);
    p->blob = blob_alloc(c->sh, len);
    KV_ASSERT(p->blob != NULL);
    memcpy(p->blob, text, len);
    p->len = len;
    p->parts_left = 0;
    c->pend_bytes += len;
    pend_drain(c);
    if (!must_pause(c) && (c->held_bid >= 0 || c->held_heap != NULL || c->stash_len > 0)) {
        conn_process(c);
    }
    conn_maybe_free(c);
}

static bool wait_add(struct conn *c, enum wait_kind kind, uint64_t target, bool shutdown)
{
    struct shard *sh = c->sh;
    struct save_waiter *w = mi_heap_malloc(sh->heap, sizeof *w);
    if (w == NULL) {
        return false;
    }
    struct pend *p = pend_push(c);
    p->parts_left = 1;
    c->remote_waiting++; /* keeps the connection until the reply is in */
    w->c = c;
    w->seq = c->pend_tail - 1;
    w->shutdown = shutdown;
    w->kind = kind;
    w->target = target;
    w->next = sh->save_waiters;
    sh->save_waiters = w;
    return true;
}

bool conn_save_wait(struct conn *c, uint64_t target, bool shutdown)
{
    bool dump = !atomic_load(&c->sh->srv->persist);
    return wait_add(c, dump ? WAIT_DUMP : WAIT_ROUND, target, shutdown);
}

bool conn_track_limit_wait(struct conn *c, uint64_t gen)
{
    return wait_add(c, WAIT_TRACK, gen, false);
}

/* 1 if every shard's snapshot round (appendonly no: the dump) covered `target`, -1 if
 * one failed it, else 0; WAIT_TRACK: 1 once every shard applied the limit. */
static int save_state(struct server *srv, const struct save_waiter *w)
{
    uint64_t target = w->target;
    if (w->kind == WAIT_TRACK) {
        return track_limit_applied(srv, target) ? 1 : 0;
    }
    if (w->kind == WAIT_DUMP) {
        if (atomic_load(&srv->dump.done) >= target) {
            return 1;
        }
        return atomic_load(&srv->dump.failed) >= target ? -1 : 0;
    }
    if (!atomic_load(&srv->persist)) {
        return -1; /* appendonly was switched off: no round will cover it */
    }
    int state = 1;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        struct snap_stats *st = snap_stats(srv->shards[i].snap);
        if (STAT_GET(st->done_target) >= target) {
            continue;
        }
        if (STAT_GET(st->failed_target) >= target) {
            return -1;
        }
        state = 0;
    }
    return state;
}

void conn_save_turn(struct shard *sh)
{
    for (struct save_waiter **pp = &sh->save_waiters; *pp != NULL;) {
        struct save_waiter *w = *pp;
        int state = save_state(sh->srv, w);
        if (state == 0) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        static const char failed[] = "-ERR snapshot failed: see the server log\r\n";
        static const char shut_failed[] = "-ERR Errors trying to SHUTDOWN. Check logs.\r\n";
        const char *err = w->shutdown ? shut_failed : failed;
        size_t err_len = w->shutdown ? sizeof shut_failed : sizeof failed;
        const char *cmd = w->shutdown ? "shutdown" : "save";
        if (state < 0) { /* SAVE was counted as a call when it started: now it failed */
            reply_count_error(err + 1, err_len - 4);
            STAT_ADD(sh->stats.cmd_failed[cmd_index(cmd_find(cmd, strlen(cmd)))], 1);
        } else if (w->shutdown) { /* saved: stop, without a reply (as Redis) */
            kv_log_notice("DB saved on disk; SHUTDOWN");
            atomic_store(&sh->srv->stopping, 1);
            conn_close_after_reply(w->c);
        }
        defer_complete(w->c, w->seq, state > 0 ? (w->shutdown ? "" : "+OK\r\n") : err);
        mi_free(w);
    }
}

void conn_durability_turn(struct shard *sh)
{
    struct wal *w = aof_durable_wal(sh);
    uint64_t durable = w != NULL ? wal_durable(w) : UINT64_MAX;
    while (sh->held_head != sh->held_tail) {
        struct held_reply *h = &sh->held[sh->held_head % sh->held_cap];
        if (h->token > durable) {
            break;
        }
        send_reply(sh, h->to, &h->m);
        sh->held_head++;
    }
}
