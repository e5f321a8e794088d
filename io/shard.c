/*
 * shard: one shard thread's io_uring loop.
 *
 * Each turn of the loop:
 *   1. drain the completion queue: accepts, receives (parsed and executed at once by
 *      conn.c), send completions, wake-ups;
 *   2. drain the queues from the other shards (requests to execute here, replies to
 *      requests this shard forwarded);
 *   3. retry connections blocked on a full queue, run the timers when due (active
 *      expiry, idle timeouts);
 *   4. queue one send per connection with output (conn_flush), ask for the wake-ups
 *      this turn's messages need, and make exactly one io_uring_submit_and_wait call,
 *      which both submits everything and sleeps until the next completion or timer.
 *
 * Sleeping: a sender pushes, bumps the receiver's `mail_seq`, then reads its
 * `sleeping` flag; the receiver notes `mail_seq` before draining, and before blocking
 * sets `sleeping` and reads `mail_seq` again (all four sequentially consistent). So
 * either the receiver sees the bump and does not block, or the sender sees the flag and
 * wakes it with an IORING_OP_MSG_RING. When the receiver is busy no wake-up is sent.
 *
 * Thread: every function here runs on its shard's thread, except shard_start/join.
 */
#include "shard.h"

#include "aof.h"
#include "cmd.h"
#include "conn.h"
#include "dump.h"
#include "evict.h"
#include "notify.h"
#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_failpoint.h"
#include "watch.h"
#include "kv_log.h"
#include "monitor.h"
#include "kv_splitargs.h"
#include "kvd_settings.h"
#include "pubsub.h"
#include "func.h"
#include "script.h"
#include "recover.h"
#include "resp_out.h"
#include "route.h"
#include "server.h"
#include "slowlog.h"
#include "snap.h"
#include "spsc.h"
#include "tbl.h"
#include "track.h"
#include "wal.h"

#include <errno.h>
#include <mimalloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* SQ entries: a small SQ stays in cache (each SQE is a cache line, used in turn: with
 * 4096 of them, 256 KiB, every send's SQE was a cache miss); a turn with more to submit
 * submits as the SQ fills (shard_sqe). The CQ is larger: completions of every
 * connection's multishot receive may come in one turn. */
#define SHARD_RING_ENTRIES 256
#define SHARD_CQ_ENTRIES   8192
#define SHARD_BGID         1    /* our provided-buffer group id */
#define SHARD_EXPIRE_SLOTS 4096 /* hash-table slots visited per table per expiry cycle */
/* Segments (each up to 1023 entries, ~16 ns apiece to free) that the lazy free of
 * FLUSHALL ASYNC frees per loop turn: ~0.25 ms at most. */
#define SHARD_DROP_SEGS 16
#define SHARD_BUSY_CQES 4096 /* completions one busy turn handles at most */
/* Client sockets registered with the ring (a sparse fixed-file table): a receive or send
 * on a registered socket skips the file lookup and its reference count (fget/fput, ~1%
 * of a P1 request's CPU). A shard with more clients than this (or than the open-files
 * limit at start) serves the rest by their plain fds. 8 bytes of kernel memory each. */
#define SHARD_FILES 16384

struct spsc *server_queue(struct server *srv, uint32_t from, uint32_t to)
{
    KV_ASSERT(from < srv->nthreads && to < srv->nthreads && from != to);
    return srv->shards[to].in[from];
}

/* Database `db` gained (+1) or lost (-1) a table here: keeps the list of used ones. A
 * database that lost its last table publishes zero counts once and leaves the list. */
static void db_count(struct shard *sh, uint32_t db, int delta)
{
    if (delta > 0 && sh->db_ntables[db]++ == 0) {
        sh->db_pos[db] = sh->ndb_used;
        sh->db_used[sh->ndb_used++] = db;
    } else if (delta < 0) {
        KV_ASSERT(sh->db_ntables[db] > 0);
        if (--sh->db_ntables[db] == 0) {
            uint32_t last = sh->db_used[--sh->ndb_used];
            sh->db_used[sh->db_pos[db]] = last;
            sh->db_pos[last] = sh->db_pos[db];
            struct shard_db_stats *ds = &sh->db_stats[db];
            STAT_SET(ds->keys, 0);
            STAT_SET(ds->expires, 0);
            STAT_SET(ds->expire_avg_ms, 0);
        }
    }
}

/* A table's expired key, however it was found (a lookup, the active cycle, eviction):
 * INFO expired_keys, the "expired" keyspace notification (notify.h), and the
 * invalidation of the clients tracking it (track.h). */
static void on_expired(void *ctx, uint32_t db, const struct tbl_entry *e)
{
    struct shard *sh = ctx;
    STAT_ADD(sh->stats.expired_keys, 1);
    size_t klen;
    const char *k = tbl_entry_key(e, &klen);
    if (notify_wants(NOTIFY_EXPIRED)) {
        notify_key(sh, NOTIFY_EXPIRED, "expired", db, k, klen);
    }
    track_changed(sh, k, klen, 0);
}

struct tbl *shard_part_table(struct shard *sh, uint32_t slot, uint32_t db)
{
    KV_ASSERT(slot < sh->table_count && db < sh->ndb);
    struct tbl **t = &sh->tables[(size_t)slot * sh->ndb + db];
    if (KV_UNLIKELY(*t == NULL)) {
        *t = tbl_create(sh->heap);
        KV_ASSERT(*t != NULL); /* out of memory, as any allocation of a request */
        tbl_on_expired(*t, on_expired, sh, db);
        db_count(sh, db, 1);
    }
    return *t;
}

struct tbl *shard_part_swap(struct shard *sh, uint32_t slot, uint32_t db, struct tbl *t)
{
    KV_ASSERT(slot < sh->table_count && db < sh->ndb);
    size_t i = (size_t)slot * sh->ndb + db;
    struct tbl *old = sh->tables[i];
    sh->tables[i] = t;
    sh->expire_cursor[i] = 0;
    if (t != NULL) {
        tbl_on_expired(t, on_expired, sh, db); /* SWAPDB: the table's database changed */
        db_count(sh, db, 1);
    }
    if (old != NULL) {
        db_count(sh, db, -1);
    }
    return old;
}

struct tbl *shard_table_peek(struct shard *sh, uint32_t db, uint64_t h)
{
    const struct route_part *p = route_lookup(sh->srv->route, h);
    KV_ASSERT(p->thread == sh->id);
    return shard_part_peek(sh, p->slot, db);
}

struct tbl *shard_table(struct shard *sh, uint32_t db, uint64_t h)
{
    const struct route_part *p = route_lookup(sh->srv->route, h);
    KV_ASSERT(p->thread == sh->id);
    return shard_part_table(sh, p->slot, db);
}

bool shard_send(struct shard *sh, uint32_t to, const struct xmsg *msg)
{
    struct spsc *q = server_queue(sh->srv, sh->id, to);
    if (!spsc_push(q, msg)) {
        return false;
    }
    sh->wake[to] = true;
    return true;
}

struct io_uring_sqe *shard_sqe(struct shard *sh)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
    if (sqe == NULL) {
        /* The SQ is full: submit what is queued (no wait) and take a fresh entry. */
        io_uring_submit(&sh->ring);
        sqe = io_uring_get_sqe(&sh->ring);
    }
    KV_ASSERT(sqe != NULL);
    return sqe;
}

void shard_sqe_room(struct shard *sh, unsigned n)
{
    KV_ASSERT(n <= sh->ring.sq.ring_entries);
    if (io_uring_sq_space_left(&sh->ring) < n) {
        io_uring_submit(&sh->ring);
    }
}

void shard_buf_return(struct shard *sh, uint16_t bid)
{
    KV_ASSERT(bid < sh->buf_count);
    io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)bid * sh->buf_size, sh->buf_size, bid,
                          io_uring_buf_ring_mask(sh->buf_count), 0);
    io_uring_buf_ring_advance(sh->br, 1);
}

/* Whether the running kernel frees a socket removed from the file table while other
 * requests are in flight: from 6.13 each entry holds its own reference. Before, a
 * removed entry was released only once every request issued before the removal had
 * ended, and a client's multishot receive lasts as long as the client: one idle client
 * would keep every socket closed after it allocated. */
static bool files_release_promptly(void)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2) {
        return false;
    }
    return major > 6 || (major == 6 && minor >= 13);
}

/* The ring's sparse table of registered sockets (SHARD_FILES entries, or the open-files
 * limit if lower), all free; none on an older kernel or one without sparse tables: then
 * every client is served by its plain fd. */
static int files_setup(struct shard *sh)
{
    if (!files_release_promptly()) {
        if (sh->id == 0) { /* (verbose: nothing to act on) */
            kv_log_verbose("io_uring file tables not used before Linux 6.13 (a removed entry "
                           "waits for older requests): clients served by plain fds");
        }
        return 0;
    }
    /* (the kernel refuses a table larger than the open-files limit, which kvd raised for
     * maxclients at start) */
    struct rlimit l;
    uint32_t n = SHARD_FILES;
    if (getrlimit(RLIMIT_NOFILE, &l) == 0 && l.rlim_cur < n) {
        n = (uint32_t)l.rlim_cur;
    }
    int rc = KV_FAILPOINT_ERROR("no-fixed-files") ? -EINVAL
                                                  : io_uring_register_files_sparse(&sh->ring, n);
    if (rc != 0) {
        if (sh->id == 0) {
            kv_log_notice("io_uring sparse file tables unavailable (%s): clients served "
                          "by plain fds",
                          strerror(-rc));
        }
        return 0;
    }
    sh->file_free = mi_heap_malloc(sh->heap, n * sizeof sh->file_free[0]);
    if (sh->file_free == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        sh->file_free[i] = n - 1 - i; /* (slot 0 taken first) */
    }
    sh->file_nfree = n;
    sh->file_count = n;
    return 0;
}

int shard_file_register(struct shard *sh, int fd)
{
    KV_ASSERT(fd >= 0);
    if (sh->file_nfree == 0) {
        return -1;
    }
    uint32_t slot = sh->file_free[--sh->file_nfree];
    if (io_uring_register_files_update(&sh->ring, slot, &fd, 1) != 1) {
        sh->file_nfree++;
        return -1;
    }
    return (int)slot;
}

void shard_file_unregister(struct shard *sh, int slot)
{
    KV_ASSERT(slot >= 0 && (uint32_t)slot < sh->file_count && sh->file_nfree < sh->file_count);
    int none = -1;
    /* Fails only on an invalid slot (asserted) or out of memory for the kernel's
     * bookkeeping; a slot that cannot be cleared is not reused, and its socket stays
     * open in the table (said in the log) until kvd exits. */
    int rc = io_uring_register_files_update(&sh->ring, (unsigned)slot, &none, 1);
    if (rc == 1) {
        sh->file_free[sh->file_nfree++] = (uint32_t)slot;
    } else {
        kv_log_warning("io_uring file table: cannot clear entry %d (its socket stays open): %s",
                       slot, strerror(rc < 0 ? -rc : EIO));
    }
}

const char *shard_buf(struct shard *sh, uint16_t bid)
{
    KV_ASSERT(bid < sh->buf_count);
    return sh->bufs + (size_t)bid * sh->buf_size;
}

/* A listening socket on one address of `bind` (IPv4 or IPv6; "*" is every IPv4
 * address, "::*" every IPv6 one, as Redis's): its fd, or -errno. IPv6 sockets are
 * IPv6-only, so that "0.0.0.0 ::" binds both. */
static int listen_socket(const char *addr, int port, int backlog)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (strcmp(addr, "*") == 0 || inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET; /* ("*": INADDR_ANY, all zero) */
        v4->sin_port = htons((uint16_t)port);
        len = sizeof *v4;
    } else if (strcmp(addr, "::*") == 0 || inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof *v6;
    } else {
        kv_log_warning("bad bind address addr=%s (an IPv4 or IPv6 address is expected)", addr);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int shard_listen_unix(struct shard *sh, const char *path, int perm, int backlog)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path || sh->nlisten == KVD_LISTEN_MAX) {
        return -EINVAL;
    }
    memcpy(sa.sun_path, path, n);
    unlink(path); /* (a socket left by an earlier run, as Redis does) */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        (perm != 0 && chmod(path, (mode_t)perm) != 0) || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    sh->listen_fds[sh->nlisten++] = fd;
    return 0;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return -errno;
    }
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Sets up the ring with the best flags this kernel has. */
static int ring_setup(struct shard *sh)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < KV_ARRAY_LEN(tries); i++) {
        struct io_uring_params p = {.flags = tries[i] | IORING_SETUP_CQSIZE,
                                    .cq_entries = SHARD_CQ_ENTRIES};
        rc = io_uring_queue_init_params(SHARD_RING_ENTRIES, &sh->ring, &p);
        if (rc == 0) {
            if (i > 0 && sh->id == 0) {
                kv_log_notice("io_uring setup flags unavailable, falling back flags=0x%x",
                              tries[i]);
            }
            break;
        }
        if (rc != -EINVAL) {
            return rc;
        }
    }
    if (rc != 0) {
        return rc;
    }
    sh->ring_fd = sh->ring.ring_fd;
    io_uring_register_ring_fd(&sh->ring); /* optional: saves an fd lookup per enter */
    /* Work the kernel cannot do inline (a synced WAL write, an fsync) runs in io-wq
     * worker threads, which inherit this thread's pinning: let them run on any core
     * rather than queue behind the shard on its own. */
    cpu_set_t all;
    CPU_ZERO(&all);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < ncpu && c < CPU_SETSIZE; c++) {
        CPU_SET((int)c, &all);
    }
    io_uring_register_iowq_aff(&sh->ring, sizeof all, &all);
    return 0;
}

static int bufs_setup(struct shard *sh)
{
    sh->buf_size = (uint32_t)KV_CONF_GET(kvd_settings.recv_buffer_size);
    sh->buf_count = (uint32_t)KV_CONF_GET(kvd_settings.recv_buffers);
    size_t ring_bytes = sh->buf_count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        return -errno;
    }
    sh->br = mem;
    io_uring_buf_ring_init(sh->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = sh->buf_count, .bgid = SHARD_BGID};
    int rc = io_uring_register_buf_ring(&sh->ring, &reg, 0);
    if (rc != 0) {
        return rc;
    }
    sh->bufs = mi_heap_malloc_aligned(sh->heap, (size_t)sh->buf_count * sh->buf_size, 4096);
    if (sh->bufs == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < sh->buf_count; i++) {
        io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)i * sh->buf_size, sh->buf_size,
                              (uint16_t)i, io_uring_buf_ring_mask(sh->buf_count), (int)i);
    }
    io_uring_buf_ring_advance(sh->br, (int)sh->buf_count);
    return 0;
}

uint16_t shard_bgid(void)
{
    return SHARD_BGID;
}

/* Arms a multishot accept on every listener that has none (at start, and from the timer
 * after one ended: an error such as EMFILE ends it). */
static void arm_accepts(struct shard *sh)
{
    for (uint32_t i = 0; i < sh->nlisten; i++) {
        if (sh->listen_fds[i] >= 0 && !(sh->accepting & (1u << i))) {
            struct io_uring_sqe *sqe = shard_sqe(sh);
            io_uring_prep_multishot_accept(sqe, sh->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
            io_uring_sqe_set_data64(sqe, SHARD_UD_ACCEPT + sh->accept_parity * KVD_LISTEN_MAX + i);
            sh->accepting |= 1u << i;
        }
    }
}

static void on_accept(struct shard *sh, struct io_uring_cqe *cqe, uint32_t i, uint32_t parity)
{
    if (parity != sh->accept_parity) { /* a listener closed by CONFIG SET port / bind */
        if (cqe->res >= 0) {           /* accepted before it closed: served, unless kvd stops */
            if (atomic_load_explicit(&sh->srv->stopping, memory_order_relaxed)) {
                close(cqe->res);
            } else {
                conn_accept(sh, cqe->res);
            }
        }
        return;
    }
    KV_ASSERT(i < sh->nlisten);
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        sh->accepting &= ~(1u << i); /* (armed again by the timer) */
    }
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED &&
            !atomic_load_explicit(&sh->srv->stopping, memory_order_relaxed)) {
            /* at most one line a second while it lasts (the timer re-arms the accept at
             * every tick, and EMFILE lasts as long as the descriptors stay used up) */
            int64_t now = kv_clock_real_ms();
            sh->accept_failures++;
            if (now - sh->accept_warned_ms >= 1000) {
                kv_log_warning("accept failed err=%s failures=%llu", strerror(-cqe->res),
                               (unsigned long long)sh->accept_failures);
                sh->accept_warned_ms = now;
                sh->accept_failures = 0;
            }
        }
        return;
    }
    int fd = cqe->res;
    if (atomic_load_explicit(&sh->srv->stopping, memory_order_relaxed)) {
        close(fd);
        return;
    }
    conn_accept(sh, fd);
}

static void dispatch(struct shard *sh, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud >= SHARD_UD_ACCEPT && ud < SHARD_UD_MAX) {
        on_accept(sh, cqe, (uint32_t)(ud - SHARD_UD_ACCEPT) % KVD_LISTEN_MAX,
                  (uint32_t)(ud - SHARD_UD_ACCEPT) / KVD_LISTEN_MAX);
    } else if (ud == SHARD_UD_WAL_FILL || ud == SHARD_UD_WAL_SYNC ||
               (ud >= SHARD_UD_WAL_WRITE && ud <= SHARD_UD_WAL_LAST)) {
        wal_on_cqe(aof_durable_wal(sh), cqe, ud); /* (the logging WAL or one written out) */
    } else if (ud == SHARD_UD_SNAP) {
        snap_on_cqe(sh->snap, cqe);
    } else if (ud == SHARD_UD_DUMP) {
        dump_on_cqe(sh, cqe);
    } else if (ud == SHARD_UD_WAKE || ud == SHARD_UD_WAKE_SENT || ud == SHARD_UD_IGNORE) {
        /* a wake-up (or the completion of one we sent): the queues are drained below */
    } else {
        conn_on_cqe(sh, cqe, ud);
    }
}

static void send_wakes(struct shard *sh);

/* Handles one message from another shard's queue. */
static void on_message(struct shard *sh, const struct xmsg *m)
{
    if (m->kind == XM_REQ) {
        conn_exec_remote(sh, m);
    } else if (m->kind == XM_UNWATCH) {
        watch_drop(sh->watch, m->caller_id);
    } else if (m->kind == XM_PARK) {
        conn_txn_serve(sh, m);
    } else if (m->kind == XM_PUBLISH) {
        pubsub_on_message(sh, m);
    } else if (m->kind == XM_INVALIDATE) {
        track_on_message(sh, m);
    } else if (m->kind == XM_MONITOR) {
        monitor_on_message(sh, m);
    } else if (m->kind == XM_WAKE) {
        /* the loop turn it causes is the point */
    } else {
        KV_ASSERT(m->kind == XM_REPLY);
        conn_on_reply(sh, m);
    }
}

/* Takes the next completion off the ring, as a copy: a handler that runs a script past
 * busy-reply-threshold reaps the completions after it itself (shard_busy_turn). */
static bool next_cqe(struct shard *sh, struct io_uring_cqe *out)
{
    struct io_uring_cqe *cqe;
    unsigned head;
    io_uring_for_each_cqe(&sh->ring, head, cqe)
    {
        *out = *cqe;
        io_uring_cq_advance(&sh->ring, 1);
        return true;
    }
    return false;
}

/* The completions busy turns kept aside for scripts' own clients, but those of `keep`
 * (whose script still runs; NULL: none). Returns how many ran. */
static unsigned replay_deferred(struct shard *sh, const struct conn *keep)
{
    struct shard_deferred d[SHARD_DEFER_MAX];
    uint32_t n = 0, kept = 0;
    for (uint32_t i = 0; i < sh->ndeferred; i++) {
        if (sh->deferred[i].c == keep) {
            sh->deferred[kept++] = sh->deferred[i];
        } else {
            d[n++] = sh->deferred[i];
        }
    }
    sh->ndeferred = kept;
    for (uint32_t i = 0; i < n; i++) {
        struct io_uring_cqe cqe = {
            .user_data = d[i].user_data, .res = d[i].res, .flags = d[i].flags};
        shard_clock_stale(sh);
        dispatch(sh, &cqe);
    }
    return n;
}

void shard_defer_cqe(struct shard *sh, const struct io_uring_cqe *cqe, struct conn *c)
{
    /* one send and one ending receive per client, of one busy client (those of clients
     * whose script is over run at the start of the next busy turn) */
    KV_ASSERT(sh->in_busy_turn && sh->ndeferred < SHARD_DEFER_MAX);
    sh->deferred[sh->ndeferred++] = (struct shard_deferred){
        .user_data = cqe->user_data, .res = cqe->res, .flags = cqe->flags, .c = c};
}

/* What a busy turn takes from the other shards' queues: the parts of commands Redis
 * allows while busy (WATCH's) and UNWATCH notes, while they lead their queue; whatever
 * came before them (requests sent before the script turned busy, replies, messages)
 * waits for the script's end, and so does all that is behind it. */
static void busy_drain(struct shard *sh)
{
    struct xmsg m;
    for (uint32_t s = 0; s < sh->srv->nthreads; s++) {
        if (s == sh->id) {
            continue;
        }
        struct spsc *q = sh->in[s];
        for (int n = 0;
             n < 1024 && spsc_peek(q, &m) &&
             ((m.kind == XM_REQ && (m.desc->flags & CMD_ALLOW_BUSY)) || m.kind == XM_UNWATCH);
             n++) {
            spsc_pop(q, &m);
            on_message(sh, &m);
        }
    }
}

void shard_busy_turn(struct shard *sh, struct conn *self)
{
    KV_ASSERT(!sh->in_busy_turn);
    sh->in_busy_turn = true;
    int64_t now_ms = sh->now_ms; /* the script's clock, given back after */
    uint64_t clock_ns = sh->clock_ns;
    sh->now_ms = kv_clock_real_ms();
    if (sh->ndeferred > 0) {
        replay_deferred(sh, self); /* of an earlier script's client, idle now */
    }
    sh->busy_conn = self;
    /* the interrupted command may be building a reply in the scratch output */
    struct resp_out *scratch = sh->scratch;
    sh->scratch = sh->busy_scratch;
    struct io_uring_cqe cqe;
    for (unsigned n = 0; n < SHARD_BUSY_CQES && next_cqe(sh, &cqe); n++) {
        shard_clock_stale(sh);
        dispatch(sh, &cqe);
    }
    busy_drain(sh);
    conn_flush(sh);
    send_wakes(sh);
    /* with DEFER_TASKRUN, completions reach the ring only when asked for */
    io_uring_submit_and_get_events(&sh->ring);
    KV_ASSERT(resp_out_queued_bytes(sh->scratch) == 0); /* each use takes what it wrote */
    sh->scratch = scratch;
    sh->busy_conn = NULL;
    sh->now_ms = now_ms;
    sh->clock_ns = clock_ns;
    sh->in_busy_turn = false;
}

static void drain_queues(struct shard *sh)
{
    struct server *srv = sh->srv;
    /* Read before draining: a bump after this is seen by the sleep check. */
    sh->mail_seen = atomic_load_explicit(&sh->mail_seq, memory_order_seq_cst);
    struct xmsg m;
    for (uint32_t s = 0; s < srv->nthreads; s++) {
        if (s == sh->id) {
            continue;
        }
        struct spsc *q = sh->in[s];
        /* Bounded per turn so that one busy peer cannot starve the network. */
        for (int n = 0; n < 1024 && spsc_pop(q, &m); n++) {
            on_message(sh, &m);
        }
    }
}

static bool queues_empty(struct shard *sh)
{
    for (uint32_t s = 0; s < sh->srv->nthreads; s++) {
        if (s != sh->id && !spsc_empty(sh->in[s])) {
            return false;
        }
    }
    return true;
}

/* Sends MSG_RING to every shard this turn pushed to that may be asleep. */
static void send_wakes(struct shard *sh)
{
    struct server *srv = sh->srv;
    for (uint32_t t = 0; t < srv->nthreads; t++) {
        if (!sh->wake[t]) {
            continue;
        }
        sh->wake[t] = false;
        struct shard *peer = &srv->shards[t];
        /* Dekker with the peer's sleep check: our bump and its `sleeping` store are in
         * one total order (seq_cst), so one of us sees the other. */
        atomic_fetch_add_explicit(&peer->mail_seq, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&peer->sleeping, memory_order_seq_cst) &&
            atomic_exchange_explicit(&peer->sleeping, 0, memory_order_seq_cst)) {
            struct io_uring_sqe *sqe = shard_sqe(sh);
            io_uring_prep_msg_ring(sqe, peer->ring_fd, 0, SHARD_UD_WAKE, 0);
            io_uring_sqe_set_data64(sqe, SHARD_UD_WAKE_SENT);
            STAT_ADD(sh->stats.wakeups_sent, 1);
        }
    }
}

void shard_wake_now(struct shard *sh)
{
    send_wakes(sh);
    io_uring_submit(&sh->ring);
}

void shard_wake_all(struct shard *sh)
{
    struct xmsg m = {.kind = XM_WAKE, .src = (uint16_t)sh->id};
    for (uint32_t o = 0; o < sh->srv->nthreads; o++) {
        if (o != sh->id) {
            shard_send(sh, o, &m); /* (a full queue: that shard turns anyway) */
        }
    }
    shard_wake_now(sh);
}

/* Publishes what INFO on another shard may not read from the tables directly. The
 * memory (INFO used_memory) is the tables' and the arrays that hold them (so that it is
 * never 0, as Redis's never is, even when FLUSHALL left no table). */
static void publish_stats(struct shard *sh)
{
    size_t ntables = (size_t)sh->table_count * sh->ndb;
    uint64_t keys = 0, expiring = 0, data = 0;
    uint64_t mem = ntables * (sizeof sh->tables[0] + sizeof sh->expire_cursor[0]);
    unsigned __int128 expire_sum = 0;
    for (uint32_t u = 0; u < sh->ndb_used; u++) {
        uint32_t db = sh->db_used[u];
        uint64_t db_keys = 0, db_expiring = 0;
        unsigned __int128 db_sum = 0;
        for (uint32_t slot = 0; slot < sh->table_count; slot++) {
            const struct tbl *t = shard_part_peek(sh, slot, db);
            if (t == NULL) {
                continue;
            }
            struct tbl_stats st;
            tbl_stats(t, &st);
            db_keys += st.entries;
            mem += st.mem_bytes;
            data += st.key_bytes + st.val_bytes;
            db_expiring += st.expiring;
            db_sum += (unsigned __int128)st.expire_avg_ms * st.expiring;
        }
        struct shard_db_stats *ds = &sh->db_stats[db];
        STAT_SET(ds->keys, db_keys);
        STAT_SET(ds->expires, db_expiring);
        STAT_SET(ds->expire_avg_ms, db_expiring ? (uint64_t)(db_sum / db_expiring) : 0);
        keys += db_keys;
        expiring += db_expiring;
        expire_sum += db_sum;
    }
    STAT_SET(sh->stats.keys, keys);
    STAT_SET(sh->stats.keys_with_expiry, expiring);
    STAT_SET(sh->stats.expire_avg_ms, expiring ? (uint64_t)(expire_sum / expiring) : 0);
    STAT_SET(sh->stats.mem_bytes, mem);
    sh->mem_own = mem;
    sh->mem_freed = 0;
    STAT_SET(sh->stats.data_bytes, data);
    STAT_SET(sh->stats.clients, sh->conn_count);
}

void shard_drop_table(struct shard *sh, struct tbl *t)
{
    struct tbl_stats st;
    tbl_stats(t, &st);
    if (st.segments <= SHARD_DROP_SEGS) {
        tbl_destroy(t); /* no more than one turn's share: at once (an empty table too) */
        return;
    }
    sh->lazyfree_entries += st.entries;
    if (sh->ndropping == sh->dropping_cap) {
        uint32_t cap = sh->dropping_cap ? sh->dropping_cap * 2 : 8;
        struct tbl **v = mi_heap_realloc(sh->heap, sh->dropping, cap * sizeof *v);
        KV_ASSERT(v != NULL);
        sh->dropping = v;
        sh->dropping_cap = cap;
    }
    sh->dropping[sh->ndropping++] = t;
}

/* One turn's share of the lazy free: SHARD_DROP_SEGS segments, over as many tables as
 * it takes; publishes the entries left. */
static void drop_step(struct shard *sh)
{
    size_t budget = SHARD_DROP_SEGS;
    while (sh->ndropping > 0 && budget > 0) {
        struct tbl *t = sh->dropping[sh->ndropping - 1];
        struct tbl_stats before, after;
        tbl_stats(t, &before);
        if (tbl_destroy_step(t, budget)) {
            sh->ndropping--;
            sh->lazyfree_entries -= before.entries;
            budget -= before.segments < budget ? before.segments : budget;
        } else {
            tbl_stats(t, &after);
            sh->lazyfree_entries -= before.entries - after.entries;
            budget = 0;
        }
    }
    STAT_SET(sh->stats.lazyfree_pending, sh->lazyfree_entries);
}

static void cron(struct shard *sh, int64_t now_ms)
{
    /* no active expiry under CLIENT PAUSE: the data stays as it is, as in Redis; a pause
     * whose time is over is cleared (the per-command test is then one load of 0 again) */
    uint64_t pause = atomic_load_explicit(&sh->srv->pause, memory_order_relaxed);
    if (pause != 0 && (int64_t)(pause >> 2) <= now_ms) { /* unless a new one came meanwhile */
        atomic_compare_exchange_strong_explicit(&sh->srv->pause, &pause, 0, memory_order_relaxed,
                                                memory_order_relaxed);
    }
    enum server_pause paused = server_paused(sh->srv, now_ms);
    bool active = !atomic_load_explicit(&sh->srv->active_expire_off, memory_order_relaxed) &&
                  paused == SERVER_PAUSE_NONE;
    uint64_t t0 = kv_clock_mono_ns();
    for (uint32_t u = 0; active && u < sh->ndb_used; u++) {
        for (uint32_t slot = 0; slot < sh->table_count; slot++) {
            size_t i = (size_t)slot * sh->ndb + sh->db_used[u];
            if (sh->tables[i] != NULL) {
                tbl_expire_step(sh->tables[i], now_ms, &sh->expire_cursor[i],
                                SHARD_EXPIRE_SLOTS); /* counted by on_expired */
            }
        }
    }
    uint64_t t1 = kv_clock_mono_ns();
    latency_add("expire-cycle", (t1 - t0) / 1000000); /* LATENCY, as Redis's event */
    publish_stats(sh);
    if (evict_step(sh, EVICT_TIMER_BUDGET_NS)) { /* a shard without commands sheds here */
        publish_stats(sh);
    }
    conn_cron(sh, now_ms);
    track_cron(sh);
    if (sh->id == 0) {
        cmd_info_sample(sh->srv, now_ms);
        if (!sh->srv->persist) {
            dump_cron(sh, now_ms);
        }
    }
}

/* Snapshot triggers and steps, the WAL's group commit, and the replies and SAVE
 * clients that were waiting for them. Once per loop turn, before the flush. */
static void durability_turn(struct shard *sh)
{
    struct server *srv = sh->srv;
    uint64_t req = atomic_load_explicit(&srv->save_req, memory_order_relaxed);
    uint64_t threshold = (uint64_t)KV_CONF_GET(kvd_settings.snapshot_wal_size);
    /* (no round before the base of a WAL switched on at run time: aof.h) */
    if (!snap_running(sh->snap) &&
        !atomic_load_explicit(&srv->aof_base_pending, memory_order_relaxed)) {
        if (req > sh->save_seen) {
            if (snap_start(sh->snap, req, true)) {
                sh->save_seen = req;
            }
        } else if (threshold > 0 && STAT_GET(sh->wal_stats.bytes_since) >= threshold) {
            snap_start(sh->snap, sh->save_seen, false);
        }
    }
    snap_turn(sh->snap);
    wal_turn(sh->wal, sh->now_ms);
    int err = wal_refusing(sh->wal);
    int refusing = err != 0;
    if (refusing != sh->refusing) {
        sh->refusing = refusing;
        if (refusing) {
            atomic_store_explicit(&srv->wal_errno, err, memory_order_relaxed);
            atomic_fetch_add(&srv->wal_refusing, 1);
        } else {
            atomic_fetch_sub(&srv->wal_refusing, 1);
        }
    }
    conn_durability_turn(sh);
}

static void stop_listening(struct shard *sh)
{
    for (uint32_t i = 0; i < sh->nlisten; i++) {
        if (sh->listen_fds[i] >= 0) {
            shutdown(sh->listen_fds[i], SHUT_RDWR);
            close(sh->listen_fds[i]);
            sh->listen_fds[i] = -1;
        }
    }
}

static void relisten_take(struct shard *sh);

static void loop(struct shard *sh)
{
    uint64_t cron_period_ns = 1000000000ull / (uint64_t)KV_CONF_GET(kvd_settings.hz);
    uint64_t next_cron_ns = shard_clock_now(sh) + cron_period_ns;
    bool draining = false;
    bool drained = false;
    uint64_t published_at = UINT64_MAX; /* (the recovered tables: at the first turn) */
    uint64_t drain_deadline_ns = 0;
    for (;;) {
        struct io_uring_cqe cqe;
        /* The clock for expiry, read once per turn, after any sleep and before the
         * turn's commands run: a stale clock would keep expired keys alive. */
        sh->now_ms = kv_clock_real_ms();
        conn_turn_begin(sh);
        if (KV_UNLIKELY(sh->ndeferred > 0)) {
            replay_deferred(sh, NULL);
        }
        conn_prefetch_turn(sh);
        while (next_cqe(sh, &cqe)) {
            /* a command's time starts after this at the latest (see clock_ns): what
             * the completions before it cost (accepts, WAL writes, ...) is not its own */
            shard_clock_stale(sh);
            dispatch(sh, &cqe);
        }
        shard_clock_stale(sh);
        drain_queues(sh);
        /* INFO on any shard sees this turn's writes (a few tbl_stats per turn), and over
         * maxmemory this shard sheds its share of what they added. Without maxmemory only
         * what may change the tables moves it (commands that are not read-only, expiries,
         * evictions: a turn of reads costs no tbl_stats), the clients count, and the
         * timer (anything else, e.g. a FLUSHALL ASYNC's background freeing, shows within
         * 1/hz s). */
        uint64_t ran = KV_CONF_GET(kvd_settings.maxmemory) != 0
                           ? STAT_GET(sh->stats.commands) + STAT_GET(sh->stats.executed_remote)
                           : sh->ran_not_readonly + STAT_GET(sh->stats.expired_keys) +
                                 STAT_GET(sh->stats.evicted_keys) +
                                 ((uint64_t)sh->conn_count << 40);
        if (ran != published_at) {
            published_at = ran;
            publish_stats(sh);
            if (evict_step(sh, 0)) {
                publish_stats(sh);
            }
        }
        shard_clock_stale(sh);
        conn_retry_blocked(sh);
        if (sh->paused != NULL) {
            conn_retry_paused(sh);
        }
        if (sh->ndropping > 0) {
            drop_step(sh);
        }
        STAT_SET(sh->stats.watched_keys, watch_key_count(sh->watch));
        if (KV_UNLIKELY(atomic_load_explicit(&sh->srv->listen_gen, memory_order_relaxed) !=
                        sh->listen_gen) &&
            !draining) {
            relisten_take(sh); /* CONFIG SET port / bind */
        }

        uint64_t now_ns = shard_clock_now(sh);
        if (now_ns >= next_cron_ns) {
            kv_tsc_calibrate(&sh->tsc); /* (the clock read next is the recalibrated one) */
            if (KV_UNLIKELY(sh->accepting != (1u << sh->nlisten) - 1) && !draining) {
                arm_accepts(sh); /* a listener's multishot accept ended (EMFILE, ...) */
            }
            if (!atomic_load_explicit(&sh->srv->cron_paused, memory_order_relaxed)) {
                cron(sh, kv_clock_real_ms()); /* (not under DEBUG PAUSE-CRON 1) */
                conn_users_sweep(sh);
            }
            cron_period_ns = 1000000000ull / (uint64_t)KV_CONF_GET(kvd_settings.hz);
            next_cron_ns = now_ns + cron_period_ns;
        }
        if (!draining && atomic_load_explicit(&sh->srv->stopping, memory_order_relaxed)) {
            /* Graceful stop: no new clients; finish what is in flight, then close. */
            draining = true;
            drain_deadline_ns = now_ns + 5000000000ull;
            stop_listening(sh);
            conn_close_idle(sh);
        }
        if (draining && sh->conn_count > 0 && (conn_all_quiet(sh) || now_ns > drain_deadline_ns)) {
            conn_close_all(sh);
        }
        if (draining && sh->conn_count == 0 && !drained) {
            /* This shard has no clients left; it keeps serving the other shards'
             * requests until every shard is in the same state, so that no message
             * is ever left without a reader. */
            drained = true;
            atomic_fetch_add(&sh->srv->shards_drained, 1);
        }
        if (drained && atomic_load(&sh->srv->shards_drained) == sh->srv->nthreads &&
            queues_empty(sh)) {
            break;
        }
        aof_turn(sh);  /* CONFIG SET appendonly: the switch, in steps */
        dump_turn(sh); /* (with the WAL on: the base of one switched on at run time) */
        if (sh->wal != NULL) {
            shard_clock_stale(sh);
            durability_turn(sh);
        }
        track_turn(sh);
        if (KV_UNLIKELY(sh->save_waiters != NULL)) {
            /* SAVEs, and CONFIG SETs waiting for every shard's track_turn (this one's
             * too); the commands their ends resume need a fresh clock */
            shard_clock_stale(sh);
            conn_save_turn(sh);
        }
        conn_flush(sh);
        send_wakes(sh);

        /* Never sleep while something waits for queue space: nobody would wake us
         * when the peer drains its queue. A turn that handled completions may wait
         * too: the kernel returns at once if completions are there (this turn's
         * sends usually complete inline), so a busy shard makes one io_uring_enter
         * per turn instead of a submit and then a separate wait (a P1 GET at 50
         * clients: 0.65 calls per request instead of 1.16, server CPU -6%,
         * docs/PERFORMANCE.md). */
        bool may_sleep = sh->blocked == NULL && !conn_overflow_pending(sh) && sh->ndropping == 0 &&
                         sh->ndeferred == 0;
        struct __kernel_timespec ts = {0, 0};
        unsigned wait_nr = 0;
        if (may_sleep) {
            uint64_t wait_ns = next_cron_ns > now_ns ? next_cron_ns - now_ns : 0;
            if (draining && wait_ns > 10000000) {
                wait_ns = 10000000;
            }
            struct wal *w = aof_durable_wal(sh);
            int64_t wal_ns = w != NULL ? wal_timer_ns(w, sh->now_ms) : -1;
            if (wal_ns >= 0 && wait_ns > (uint64_t)wal_ns) {
                wait_ns = (uint64_t)wal_ns;
            }
            int64_t pause_ns = conn_paused_wait_ns(sh); /* CLIENT PAUSE ends: resume */
            if (pause_ns >= 0 && wait_ns > (uint64_t)pause_ns) {
                wait_ns = (uint64_t)pause_ns;
            }
            ts.tv_sec = (long long)(wait_ns / 1000000000ull);
            ts.tv_nsec = (long long)(wait_ns % 1000000000ull);
            atomic_store_explicit(&sh->sleeping, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&sh->mail_seq, memory_order_seq_cst) == sh->mail_seen &&
                queues_empty(sh)) {
                wait_nr = 1;
            }
        }
        struct io_uring_cqe *unused;
        int rc = io_uring_submit_and_wait_timeout(&sh->ring, &unused, wait_nr, wait_nr ? &ts : NULL,
                                                  NULL);
        atomic_store_explicit(&sh->sleeping, 0, memory_order_relaxed);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            kv_log_warning("io_uring_submit_and_wait failed err=%s", strerror(-rc));
        }
        sh->loop_turns++;
    }
}

/* Recovers the shard's partitions from its data directory (snapshots and WAL, in both
 * modes) and logs what it loaded. The next WAL, now or switched on later, starts past
 * what is on disk: its first segment number and batch number (which the dumps record
 * meanwhile). 0, or -1 after logging why kvd must not start; r->segs is the caller's to
 * free either way. */
static int recover(struct shard *sh, struct recover_result *r)
{
    bool repair = KV_CONF_GET(kvd_settings.repair) != 0;
    if (recover_shard(sh, kvd_settings.dir, repair, r) != 0) {
        return -1;
    }
    sh->wal_segno = r->next_segno;
    sh->dump_wal_seq = r->next_seq;
    uint64_t keys = 0;
    for (size_t i = 0; i < (size_t)sh->table_count * sh->ndb; i++) {
        if (sh->tables[i] != NULL) {
            struct tbl_stats st;
            tbl_stats(sh->tables[i], &st);
            keys += st.entries;
        }
    }
    sh->recovered_keys = keys;
    sh->recovered_ms = r->ms;
    if (r->snapshots > 0 || r->segments > 0) {
        double secs = r->ms > 0 ? (double)r->ms / 1000.0 : 0.001;
        kv_log_notice("recovered shard=%u keys=%llu snapshots=%llu snapshot_keys=%llu "
                      "wal_segments=%llu wal_records=%llu wal_mb=%.1f ms=%lld rate=%.0f keys/s",
                      sh->id, (unsigned long long)keys, (unsigned long long)r->snapshots,
                      (unsigned long long)r->snap_keys, (unsigned long long)r->segments,
                      (unsigned long long)r->records, (double)r->wal_bytes / 1048576.0,
                      (long long)r->ms, (double)(r->snap_keys + r->records) / secs);
    }
    return 0;
}

/* appendonly no: recovery only. */
static int dump_start(struct shard *sh)
{
    struct recover_result r;
    int rc = recover(sh, &r);
    free(r.segs); /* no WAL to hand them to: the next dump removes them */
    return rc;
}

/* Recovers the shard's partitions, then opens its WAL and snapshot writer. */
static int durability_start(struct shard *sh)
{
    struct recover_result r;
    if (recover(sh, &r) != 0) {
        free(r.segs);
        return -1;
    }
    struct wal_open_args a = {
        .dir = kvd_settings.dir,
        .shard = sh->id,
        .threads = sh->srv->nthreads,
        .partitions = sh->srv->route->count,
        .segno = r.next_segno,
        .next_seq = r.next_seq,
        .segment_bytes = (uint64_t)KV_CONF_GET(kvd_settings.wal_segment_size),
        .depth = (uint32_t)KV_CONF_GET(kvd_settings.wal_writes_in_flight),
        .old = r.segs,
        .nold = r.nsegs,
        .stats = &sh->wal_stats,
    };
    int rc = wal_open(&sh->wal, sh, &a);
    free(r.segs);
    if (rc != 0) {
        kv_log_warning("cannot create the WAL in dir=%s err=%s", kvd_settings.dir, strerror(-rc));
        return -1;
    }
    /* what was replayed counts towards the next snapshot, so that restarts stay short */
    STAT_SET(sh->wal_stats.bytes_since, r.wal_bytes);
    if (r.need_snapshot) {
        /* after a repair: the next start must not need what was dropped */
        atomic_fetch_add(&sh->srv->save_req, 1);
    }
    rc = snap_init(&sh->snap, sh, kvd_settings.dir);
    if (rc != 0) {
        kv_log_warning("cannot start the snapshot writer err=%s", strerror(-rc));
        return -1;
    }
    return 0;
}

/* Waits for the durability completions in flight (shutdown): dispatches those, drops
 * any other. */
static void wait_durability_cqes(struct shard *sh)
{
    io_uring_submit_and_wait(&sh->ring, 1);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&sh->ring, head, cqe)
    {
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        if ((ud == SHARD_UD_WAL_FILL || ud == SHARD_UD_WAL_SYNC ||
             (ud >= SHARD_UD_WAL_WRITE && ud <= SHARD_UD_WAL_LAST)) ||
            ud == SHARD_UD_SNAP) {
            dispatch(sh, cqe);
        }
        seen++;
    }
    io_uring_cq_advance(&sh->ring, seen);
}

/* At shutdown: gives up a running snapshot round, and writes and syncs everything the
 * WAL holds. */
static void durability_stop(struct shard *sh)
{
    if (sh->wal_standby != NULL) { /* (never logged to) */
        wal_close(sh->wal_standby);
        sh->wal_standby = NULL;
    }
    struct wal *w = aof_durable_wal(sh); /* the logging WAL, or one switched off */
    if (w != NULL) {
        while (snap_busy(sh->snap)) {
            wait_durability_cqes(sh);
        }
        wal_closing(w);
        for (;;) {
            sh->now_ms = kv_clock_real_ms();
            wal_turn(w, sh->now_ms);
            if (!wal_busy(w) || (wal_refusing(w) != 0 && !wal_inflight(w))) {
                break;
            }
            wait_durability_cqes(sh);
        }
        wal_close(w);
        sh->wal = sh->wal_drain = NULL;
    }
    snap_free(sh->snap); /* (gives up a round not finished) */
    sh->snap = NULL;
}

/* Releases what the shard set up on its thread, once its loop has ended. */
static void teardown(struct shard *sh)
{
    KV_ASSERT(sh->conn_count == 0);
    durability_stop(sh);
    dump_stop(sh);
    for (size_t i = 0; i < (size_t)sh->table_count * sh->ndb; i++) {
        tbl_destroy(sh->tables[i]);
    }
    while (sh->ndropping > 0) {
        tbl_destroy(sh->dropping[--sh->ndropping]);
    }
    conn_shard_teardown(sh);
    track_shard_teardown(sh);
    pthread_mutex_lock(&sh->conn_ids_mu);
    idmap_deinit(&sh->conn_ids);
    pthread_mutex_unlock(&sh->conn_ids_mu);
    script_vm_free(sh->script);
    sh->script = NULL;
    func_shard_free(sh);
    pubsub_local_free(sh);
    watch_destroy(sh->watch);
    sh->watch = NULL;
    users_view_free(&sh->users);
    io_uring_queue_exit(&sh->ring);
    munmap(sh->br, sh->buf_count * sizeof(struct io_uring_buf));
    mi_heap_destroy(sh->heap); /* frees the tables array, buffers and anything left */
    sh->heap = NULL;
}

static void pin(uint32_t core)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu <= 0) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core % (uint32_t)ncpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *shard_main(void *arg)
{
    struct shard *sh = arg;
    char name[16];
    snprintf(name, sizeof name, "shard-%u", sh->id);
    kv_log_thread_name(name);
    pthread_setname_np(pthread_self(), name);
    pin(sh->id);
    kv_tsc_init(&sh->tsc, true); /* (CLOCK_MONOTONIC until the loop's first calibration) */
    reply_errstats_bind(&sh->stats.errs);
    bool ok = (sh->srv->persist ? durability_start(sh) : dump_start(sh)) == 0;
    if (!ok) {
        atomic_store(&sh->srv->start_failed, 1);
    }
    /* Nobody is served before every shard has recovered. */
    atomic_fetch_add(&sh->srv->shards_ready, 1);
    while (atomic_load(&sh->srv->shards_ready) < sh->srv->nthreads &&
           !atomic_load(&sh->srv->start_failed)) {
        usleep(1000);
    }
    if (atomic_load(&sh->srv->start_failed)) {
        return NULL; /* the main thread exits the process */
    }
    arm_accepts(sh);
    loop(sh);
    teardown(sh);
    slowlog_thread_exit();
    return NULL;
}

int shard_init(struct shard *sh, struct server *srv, uint32_t id)
{
    memset(sh, 0, sizeof *sh);
    sh->id = id;
    sh->srv = srv;
    for (uint32_t i = 0; i < KVD_LISTEN_MAX; i++) {
        sh->listen_fds[i] = -1;
    }
    sh->ring_fd = -1;
    sh->dump_pidfd = -1;
    idmap_init(&sh->conn_ids);
    return pthread_mutex_init(&sh->conn_ids_mu, NULL) == 0 ? 0 : -1;
}

/* Runs on the shard's own thread before the loop: the heap must be created by the
 * thread that uses it. */
static int shard_setup_on_thread(struct shard *sh)
{
    /* With IORING_SETUP_SINGLE_ISSUER the creating thread is the only one that may
     * submit, so the ring is made here, on the shard's own thread. */
    int rc = ring_setup(sh);
    if (rc != 0) {
        return rc;
    }
    sh->heap = mi_heap_new();
    if (sh->heap == NULL) {
        return -ENOMEM;
    }
    rc = bufs_setup(sh);
    if (rc != 0) {
        return rc;
    }
    rc = files_setup(sh);
    if (rc != 0) {
        return rc;
    }
    rc = conn_shard_setup(sh);
    if (rc != 0) {
        return rc;
    }
    if (track_shard_setup(sh) != 0) {
        return -ENOMEM;
    }
    struct route_table *rt = sh->srv->route;
    for (uint32_t i = 0; i < rt->count; i++) {
        if (rt->parts[i].thread == sh->id && rt->parts[i].slot + 1u > sh->table_count) {
            sh->table_count = rt->parts[i].slot + 1u;
        }
    }
    sh->ndb = (uint32_t)KV_CONF_GET(kvd_settings.databases);
    KV_ASSERT(sh->ndb >= 1 && sh->ndb <= KVD_DB_MAX);
    size_t ntables = (size_t)sh->table_count * sh->ndb;
    sh->tables = mi_heap_calloc(sh->heap, ntables, sizeof sh->tables[0]);
    sh->expire_cursor = mi_heap_calloc(sh->heap, ntables, sizeof sh->expire_cursor[0]);
    sh->db_stats = mi_heap_calloc(sh->heap, sh->ndb, sizeof sh->db_stats[0]);
    sh->db_used = mi_heap_calloc(sh->heap, sh->ndb, sizeof sh->db_used[0]);
    sh->db_ntables = mi_heap_calloc(sh->heap, sh->ndb, sizeof sh->db_ntables[0]);
    sh->db_pos = mi_heap_calloc(sh->heap, sh->ndb, sizeof sh->db_pos[0]);
    sh->part_id = mi_heap_calloc(sh->heap, sh->table_count, sizeof sh->part_id[0]);
    sh->part_lsn = mi_heap_calloc(sh->heap, sh->table_count, sizeof sh->part_lsn[0]);
    sh->part_swaps = mi_heap_calloc(sh->heap, sh->table_count, sizeof sh->part_swaps[0]);
    if (sh->tables == NULL || sh->expire_cursor == NULL || sh->db_stats == NULL ||
        sh->db_used == NULL || sh->db_ntables == NULL || sh->db_pos == NULL ||
        sh->part_id == NULL || sh->part_lsn == NULL || sh->part_swaps == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < rt->count; i++) {
        if (rt->parts[i].thread == sh->id) {
            sh->part_id[rt->parts[i].slot] = i;
        }
    }
    for (uint32_t slot = 0; slot < sh->table_count; slot++) {
        sh->tables[(size_t)slot * sh->ndb] = tbl_create(sh->heap); /* database 0 */
        if (sh->tables[(size_t)slot * sh->ndb] == NULL) {
            return -ENOMEM;
        }
        tbl_on_expired(sh->tables[(size_t)slot * sh->ndb], on_expired, sh, 0);
        db_count(sh, 0, 1);
    }
    return 0;
}

/* One listener per address of `bind_list` into fds (at most KVD_LISTEN_MAX; *n set):
 * the bound port (port 0: the first one picks, the others join it), or -errno with
 * none left open. Optional ("-") addresses missing here are skipped (logged if `log`). */
static int listen_list(const char *bind_list, int port, int backlog, bool log, int *fds,
                       uint32_t *n)
{
    char addr[KVD_BIND_MAX];
    size_t len = strlen(bind_list), i = 0, alen;
    KV_ASSERT(len < sizeof addr); /* (the setting is shorter) */
    int r;
    *n = 0;
    while ((r = kv_splitargs_next(bind_list, len, &i, addr, &alen)) == 1) {
        addr[alen] = '\0';              /* (room: alen < len) */
        bool optional = addr[0] == '-'; /* Redis's "-addr": skipped where it does not exist */
        if (*n == KVD_LISTEN_MAX) {
            kv_log_warning("bind: at most %d addresses", KVD_LISTEN_MAX);
            port = -EINVAL;
            break;
        }
        int fd = listen_socket(addr + optional, port, backlog);
        if (fd < 0 && optional &&
            (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT || fd == -EPROTONOSUPPORT)) {
            if (log) {
                kv_log_notice("bind: skipping optional address addr=%s err=%s", addr + 1,
                              strerror(-fd));
            }
            continue;
        }
        if (fd < 0) {
            port = fd;
            break;
        }
        fds[(*n)++] = fd;
        port = bound_port(fd);
        if (port < 0) {
            break;
        }
    }
    if (port >= 0 && (r < 0 || *n == 0)) {
        kv_log_warning("bind: no address to listen on (bind=%s)", bind_list);
        port = -EADDRNOTAVAIL;
    }
    if (port < 0) {
        while (*n > 0) {
            close(fds[--*n]);
        }
    }
    return port;
}

int shard_listen(struct shard *sh, const char *bind_list, int port, int backlog)
{
    KV_ASSERT(sh->nlisten == 0);
    port = listen_list(bind_list, port, backlog, sh->id == 0, sh->listen_fds, &sh->nlisten);
    sh->ntcp = sh->nlisten;
    return port;
}

/* Closes the listeners of the first `nsets` of per-shard sets (KVD_LISTEN_MAX apart). */
static void close_sets(const int *fds, const uint32_t *ns, uint32_t nsets)
{
    for (uint32_t u = 0; u < nsets; u++) {
        for (uint32_t k = 0; k < ns[u]; k++) {
            close(fds[(size_t)u * KVD_LISTEN_MAX + k]);
        }
    }
}

int shard_relisten(struct shard *sh, const char *bind_list, int port, int backlog)
{
    struct server *srv = sh->srv;
    uint32_t nt = srv->nthreads;
    int *fds = malloc((size_t)nt * KVD_LISTEN_MAX * sizeof *fds);
    uint32_t *ns = calloc(nt, sizeof *ns);
    if (fds == NULL || ns == NULL) {
        free(fds);
        free(ns);
        return -ENOMEM;
    }
    uint32_t t = 0;
    for (; t < nt && port >= 0; t++) {
        port =
            listen_list(bind_list, port, backlog, t == 0, fds + (size_t)t * KVD_LISTEN_MAX, &ns[t]);
    }
    if (port < 0) { /* the sets before the one that failed (it closed its own) */
        close_sets(fds, ns, t - 1);
        free(fds);
        free(ns);
        return port;
    }
    pthread_mutex_lock(&srv->listen_mu);
    if (srv->listen_new != NULL) { /* an earlier change some shard has not taken yet */
        close_sets(srv->listen_new, srv->listen_new_n, nt);
        free(srv->listen_new);
        free(srv->listen_new_n);
    }
    srv->listen_new = fds;
    srv->listen_new_n = ns;
    atomic_store(&srv->port, port);
    atomic_fetch_add(&srv->listen_gen, 1);
    pthread_mutex_unlock(&srv->listen_mu);
    kv_log_notice("listening anew addr=%s port=%d", bind_list, port);
    shard_wake_all(sh);
    return port;
}

/* This shard's part of a CONFIG SET port / bind: its TCP listeners closed (their
 * accepts end; a connection accepted before that is still served), the new ones armed
 * under the other parity; the Unix socket listeners follow them. */
static void relisten_take(struct shard *sh)
{
    struct server *srv = sh->srv;
    int fresh[KVD_LISTEN_MAX];
    uint32_t nfresh;
    pthread_mutex_lock(&srv->listen_mu);
    sh->listen_gen = atomic_load(&srv->listen_gen);
    nfresh = srv->listen_new_n[sh->id];
    memcpy(fresh, srv->listen_new + (size_t)sh->id * KVD_LISTEN_MAX, nfresh * sizeof fresh[0]);
    srv->listen_new_n[sh->id] = 0;
    pthread_mutex_unlock(&srv->listen_mu);
    int keep[KVD_LISTEN_MAX];
    uint32_t nkeep = 0;
    for (uint32_t i = 0; i < sh->nlisten; i++) {
        if (sh->listen_fds[i] < 0) {
            continue;
        }
        if (i < sh->ntcp) {
            shutdown(sh->listen_fds[i], SHUT_RDWR); /* (its multishot accept ends) */
            close(sh->listen_fds[i]);
        } else {
            keep[nkeep++] = sh->listen_fds[i];
            if (sh->accepting & (1u << i)) { /* re-armed below under its new index */
                struct io_uring_sqe *sqe = shard_sqe(sh);
                io_uring_prep_cancel64(sqe,
                                       SHARD_UD_ACCEPT + sh->accept_parity * KVD_LISTEN_MAX + i, 0);
                io_uring_sqe_set_data64(sqe, SHARD_UD_IGNORE);
            }
        }
    }
    while (nfresh + nkeep > KVD_LISTEN_MAX) { /* (the Unix socket keeps its place) */
        close(fresh[--nfresh]);
    }
    memcpy(sh->listen_fds, fresh, nfresh * sizeof fresh[0]);
    memcpy(sh->listen_fds + nfresh, keep, nkeep * sizeof keep[0]);
    sh->ntcp = nfresh;
    sh->nlisten = nfresh + nkeep;
    sh->accept_parity ^= 1; /* completions of the old accepts are told apart */
    sh->accepting = 0;
    arm_accepts(sh);
}

struct start_arg {
    struct shard *sh;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int rc;
};

static void *shard_thread(void *p)
{
    struct start_arg *a = p;
    struct shard *sh = a->sh;
    /* The ring is SINGLE_ISSUER: hand it to this thread before its first submit. */
    int rc = shard_setup_on_thread(sh);
    pthread_mutex_lock(&a->mu);
    a->rc = rc;
    a->done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (rc != 0) {
        return NULL;
    }
    return shard_main(sh);
}

int shard_start(struct shard *sh, pthread_t *tid)
{
    struct start_arg a = {.sh = sh, .done = 0, .rc = 0};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    int rc = pthread_create(tid, NULL, shard_thread, &a);
    if (rc != 0) {
        return -rc;
    }
    pthread_mutex_lock(&a.mu);
    while (!a.done) {
        pthread_cond_wait(&a.cv, &a.mu);
    }
    pthread_mutex_unlock(&a.mu);
    pthread_mutex_destroy(&a.mu);
    pthread_cond_destroy(&a.cv);
    if (a.rc != 0) {
        pthread_join(*tid, NULL);
    }
    return a.rc;
}
