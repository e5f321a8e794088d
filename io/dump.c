/*
 * dump: point-in-time snapshots with appendonly no (see dump.h).
 *
 * Parent side: a request takes the next generation and marks its shard (dump_want);
 * that shard's loop turn starts the dump when it can (no child running, the transaction
 * lock free, nothing of its clients waiting for queue space), so that everything its
 * clients sent to other shards before is in the queues ahead of the park. The child is
 * watched through a pidfd polled on the forking shard's ring.
 *
 * Child side: one thread, a frozen copy of every shard. It takes each table over
 * (tbl_owner_adopt: the threads that owned them do not exist in the child), writes with
 * plain blocking calls (the rings belong to the parent), allocates only with mmap (a
 * mimalloc heap belongs to a thread of the parent) and leaves with _exit.
 */
#include "dump.h"
#include "conn.h"
#include "func.h"
#include "kv_assert.h"
#include "kv_failpoint.h"
#include "kv_clock.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "route.h"
#include "server.h"
#include "shard.h"
#include "snap.h"
#include "tbl.h"
#include "wal.h"
#include "walfmt.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t */
#include <xxhash.h>

#define DUMP_CHUNK (256u * 1024) /* bytes of entries per chunk, about (as snap.c) */

/* ---- the save points ------------------------------------------------------------- */

struct save_point {
    int64_t secs;
    int64_t changes;
};

static pthread_mutex_t points_mu = PTHREAD_MUTEX_INITIALIZER;
static struct save_point points[DUMP_POINTS_MAX];
static size_t npoints;

/* Parses "<seconds> <changes> ..." into out (NULL: check only); the count, or -1. */
static int points_parse(const char *text, struct save_point *out, char *err, size_t errlen)
{
    int64_t v[2 * DUMP_POINTS_MAX];
    size_t n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || (*end != '\0' && *end != ' ' && *end != '\t') || errno != 0 || x < 0) {
            snprintf(err, errlen, "Invalid save parameters");
            return -1;
        }
        if (n == KV_ARRAY_LEN(v)) {
            snprintf(err, errlen, "Too many save parameters (at most %d pairs)", DUMP_POINTS_MAX);
            return -1;
        }
        v[n++] = x;
        p = end;
    }
    if (n % 2 != 0) {
        snprintf(err, errlen, "Invalid save parameters");
        return -1;
    }
    for (size_t i = 0; out != NULL && i < n / 2; i++) {
        out[i] = (struct save_point){.secs = v[2 * i], .changes = v[2 * i + 1]};
    }
    return (int)(n / 2);
}

int dump_points_check(const char *text, char *err, size_t errlen)
{
    return points_parse(text, NULL, err, errlen) < 0 ? -1 : 0;
}

int dump_points_set(const char *text, char *err, size_t errlen)
{
    struct save_point tmp[DUMP_POINTS_MAX];
    int n = points_parse(text, tmp, err, errlen);
    if (n < 0) {
        return -1;
    }
    pthread_mutex_lock(&points_mu);
    memcpy(points, tmp, (size_t)n * sizeof tmp[0]);
    npoints = (size_t)n;
    pthread_mutex_unlock(&points_mu);
    return 0;
}

size_t dump_points_text(char *buf, size_t cap)
{
    KV_ASSERT(cap > 0);
    size_t len = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&points_mu);
    for (size_t i = 0; i < npoints && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%lld %lld", i ? " " : "",
                         (long long)points[i].secs, (long long)points[i].changes);
        len += w > 0 ? (size_t)w : 0;
    }
    pthread_mutex_unlock(&points_mu);
    return len < cap ? len : cap - 1;
}

bool dump_points_any(void)
{
    pthread_mutex_lock(&points_mu);
    bool any = npoints > 0;
    pthread_mutex_unlock(&points_mu);
    return any;
}

bool dump_refuses_writes(const struct server *srv)
{
    if (KV_LIKELY(atomic_load_explicit(&srv->dump.last_ok, memory_order_relaxed) != 0)) {
        return false;
    }
    return !atomic_load_explicit(&srv->persist, memory_order_relaxed) &&
           KV_CONF_GET(kvd_settings.stop_writes_on_bgsave_error) != 0 && dump_points_any();
}

/* Whether a save point is due (Redis's serverCron rule): enough changes and seconds
 * since the last successful dump, and, after a failed one, DUMP_RETRY_MS since it. */
static bool points_due(const struct server *srv, int64_t now_ms)
{
    const struct dump_state *d = &srv->dump;
    uint64_t changes = dump_changes_since(srv);
    int64_t since_ms = now_ms - atomic_load(&d->last_ok_ms);
    bool may = atomic_load(&d->last_ok) || now_ms - atomic_load(&d->started_ms) > DUMP_RETRY_MS;
    bool due = false;
    pthread_mutex_lock(&points_mu);
    for (size_t i = 0; i < npoints && may && !due; i++) {
        due = changes >= (uint64_t)points[i].changes && since_ms > points[i].secs * 1000;
    }
    pthread_mutex_unlock(&points_mu);
    return due;
}

/* ---- state -------------------------------------------------------------------------- */

void dump_init(struct server *srv)
{
    struct dump_state *d = &srv->dump;
    atomic_store(&d->last_ok_ms, srv->start_ms);
    atomic_store(&d->last_secs, -1);
    atomic_store(&d->last_ok, 1);
}

static uint64_t changes_total(const struct server *srv)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        n += STAT_GET(srv->shards[i].stats.changes);
    }
    return n;
}

uint64_t dump_changes_since(const struct server *srv)
{
    uint64_t base = atomic_load(&srv->dump.changes_base), now = changes_total(srv);
    return now > base ? now - base : 0;
}

bool dump_in_progress(const struct server *srv)
{
    const struct dump_state *d = &srv->dump;
    return atomic_load(&d->pid) != 0 || atomic_load(&d->req) > atomic_load(&d->covered);
}

static bool start(struct shard *sh);

uint64_t dump_request(struct shard *sh, bool now)
{
    uint64_t gen = atomic_fetch_add(&sh->srv->dump.req, 1) + 1;
    sh->dump_want = gen;
    if (now && !sh->in_exec) { /* (in EXEC: after it, as Redis schedules it then) */
        dump_turn(sh);
    }
    return gen;
}

uint64_t dump_request_bg(struct shard *sh)
{
    uint64_t gen = dump_request(sh, true);
    uint64_t bg = atomic_load(&sh->srv->dump.bg);
    while (bg < gen && !atomic_compare_exchange_weak(&sh->srv->dump.bg, &bg, gen)) {
    }
    return gen;
}

bool dump_bg_in_progress(const struct server *srv)
{
    const struct dump_state *d = &srv->dump;
    uint64_t bg = atomic_load(&d->bg);
    return bg > atomic_load(&d->done) && bg > atomic_load(&d->failed);
}

/* A dump ended (the child's status, or the fork's failure). */
static void finished(struct shard *sh, bool ok, int64_t now_ms)
{
    struct dump_state *d = &sh->srv->dump;
    uint64_t gen = atomic_load(&d->covered);
    int64_t secs = (now_ms - atomic_load(&d->started_ms)) / 1000;
    atomic_store(&d->last_secs, secs);
    atomic_store(&d->last_ok, ok ? 1 : 0);
    if (ok) {
        atomic_store(&d->changes_base, atomic_load(&d->changes_fork));
        atomic_store(&d->last_ok_ms, now_ms);
        atomic_fetch_add(&d->saves, 1);
        atomic_store(&d->done, gen);
        kv_log_notice("background save done secs=%lld", (long long)secs);
    } else {
        atomic_store(&d->failed, gen);
        kv_log_warning("background save failed (the previous snapshot stays; see above)");
    }
    atomic_store(&d->pid, 0);
    /* the other shards' SAVE clients (and dumps asked for meanwhile) need a loop turn;
     * not once stopping: nobody may read the queues then */
    if (atomic_load(&sh->srv->stopping) == 0) {
        shard_wake_all(sh);
    } else {
        shard_wake_now(sh);
    }
}

static int child_main(struct server *srv, uint64_t lsn, int64_t now_ms, const uint8_t *fn,
                      size_t fn_len, bool write_fn);

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

uint64_t dump_bump_lsns(struct server *srv)
{
    /* One LSN for every partition, past any file's: the new dump's names differ from the
     * previous one's, which stays until the new one is whole (recover.c). The shards
     * are parked: nothing else moves the LSNs meanwhile. */
    uint64_t lsn = srv->dump.lsn_floor; /* (files on disk above memory's: none reused) */
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        for (uint32_t slot = 0; slot < srv->shards[i].table_count; slot++) {
            uint64_t l = srv->shards[i].part_lsn[slot];
            lsn = l > lsn ? l : lsn;
        }
    }
    lsn++;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        for (uint32_t slot = 0; slot < srv->shards[i].table_count; slot++) {
            srv->shards[i].part_lsn[slot] = lsn;
        }
    }
    return lsn;
}

static void fork_parked(struct shard *sh, uint64_t lsn, uint64_t gen);

/* Parks every shard, forks, releases them. False if it must be tried again later. */
static bool start(struct shard *sh)
{
    struct server *srv = sh->srv;
    struct dump_state *d = &srv->dump;
    if (!conn_park_all(sh)) {
        return false;
    }
    /* Checked again under the lock: another shard may have forked one since this shard
     * looked (the lock's release and acquisition order its stores before ours). */
    if (atomic_load(&d->pid) != 0 || sh->dump_want <= atomic_load(&d->covered)) {
        conn_release_all(sh);
        return atomic_load(&d->pid) == 0;
    }
    fork_parked(sh, dump_bump_lsns(srv), atomic_load(&d->req));
    conn_release_all(sh);
    return true;
}

void dump_base_parked(struct shard *sh, uint64_t lsn)
{
    struct server *srv = sh->srv;
    KV_ASSERT(atomic_load(&srv->dump.pid) == 0);
    uint64_t gen = atomic_fetch_add(&srv->dump.req, 1) + 1;
    sh->dump_want = gen;
    atomic_store(&srv->aof_base_gen, gen);
    fork_parked(sh, lsn, gen);
}

/* Forks the child writing the dump at `lsn` (every partition's LSN), covering the
 * requests up to `gen`. Every shard parked. */
static void fork_parked(struct shard *sh, uint64_t lsn, uint64_t gen)
{
    struct server *srv = sh->srv;
    struct dump_state *d = &srv->dump;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        struct shard *o = &srv->shards[i];
        struct wal *w = o->wal != NULL ? o->wal : o->wal_drain; /* (logging or written out) */
        if (w != NULL) { /* its records from the open batch on are past the dump */
            o->dump_wal_seq = wal_open_seq(w);
        }
    }
    int64_t now_ms = kv_clock_real_ms();
    /* the state of the dump, before the release: a shard that takes the lock next sees it */
    atomic_store(&d->covered, gen);
    atomic_store(&d->started_ms, now_ms);
    atomic_store(&d->changes_fork, changes_total(srv));
    size_t fn_len;
    uint8_t *fn = func_dump_current(&fn_len); /* no change runs while every shard waits */
    /* With persistence on, every FUNCTION change writes the file at once (func.c): a
     * child writing this copy later could put an older set over a newer one. So the
     * file is written here, while nothing can change it, and the child leaves it. */
    bool child_fn = !atomic_load(&srv->persist);
    int fe = child_fn ? 0 : func_file_write(kvd_settings.dir, fn, fn_len);
    if (fe != 0) {
        kv_log_warning("background save: cannot write the functions err=%s", strerror(fe));
        free(fn);
        finished(sh, false, now_ms);
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive kvd: a restart would race it */
        if (getppid() != parent) {
            _exit(1);
        }
        /* Only stderr is needed (the rest is opened by name): a client socket kept open
         * here would not close for its peer, when kvd closes it, until the child ends. */
        int lock = srv->lock_fd; /* kept: no kvd may take the directory while we write */
        if (lock > 3) {
            close_range(3, (unsigned)lock - 1, 0);
        }
        close_range((unsigned)(lock >= 3 ? lock + 1 : 3), ~0u, 0);
        _exit(child_main(srv, lsn, now_ms, fn, fn_len, child_fn) == 0 ? 0 : 1);
    }
    int fork_errno = errno;
    free(fn);
    if (pid < 0) {
        kv_log_warning("background save: fork failed err=%s", strerror(fork_errno));
        finished(sh, false, now_ms);
        return;
    }
    int fd = pidfd_open_(pid); /* (Linux >= 5.3, as io_uring's features need anyway) */
    if (fd < 0) {              /* no fd left (EMFILE): no way to watch it, so no dump */
        kv_log_warning("background save: cannot watch the child err=%s", strerror(errno));
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        finished(sh, false, now_ms);
        return;
    }
    sh->dump_pidfd = fd;
    sh->dump_pid = pid;
    atomic_store(&d->pid, pid);
    kv_log_notice("background save started by pid %d", (int)pid);
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, SHARD_UD_DUMP);
}

void dump_turn(struct shard *sh)
{
    struct dump_state *d = &sh->srv->dump;
    if (KV_LIKELY(sh->dump_want <= atomic_load_explicit(&d->covered, memory_order_relaxed))) {
        return;
    }
    if (atomic_load_explicit(&sh->srv->stopping, memory_order_relaxed)) {
        return; /* shards leave their loops: none may be parked any more */
    }
    if (atomic_load_explicit(&d->pid, memory_order_relaxed) == 0) {
        start(sh);
    }
}

/* Reaps the child once its pidfd is readable. */
static void reap(struct shard *sh)
{
    int status = 0;
    pid_t pid = (pid_t)sh->dump_pid;
    KV_ASSERT(pid > 0 && pid == (pid_t)atomic_load(&sh->srv->dump.pid));
    pid_t r;
    do {
        r = waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    close(sh->dump_pidfd);
    sh->dump_pidfd = -1;
    sh->dump_pid = 0;
    bool ok = r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (r == pid && WIFSIGNALED(status)) {
        kv_log_warning("background save: the child was killed by signal %d", WTERMSIG(status));
    }
    finished(sh, ok, kv_clock_real_ms());
}

void dump_on_cqe(struct shard *sh, struct io_uring_cqe *cqe)
{
    if (sh->dump_pidfd < 0) {
        return; /* reaped at shutdown */
    }
    if (cqe->res < 0 && cqe->res != -ECANCELED) {
        KV_ASSERT(cqe->res == -EINTR || cqe->res == -EAGAIN);
        struct io_uring_sqe *sqe = shard_sqe(sh);
        io_uring_prep_poll_add(sqe, sh->dump_pidfd, POLLIN);
        io_uring_sqe_set_data64(sqe, SHARD_UD_DUMP);
        return;
    }
    reap(sh);
}

void dump_stop(struct shard *sh)
{
    if (sh->dump_pidfd < 0) {
        return;
    }
    KV_ASSERT(sh->dump_pid > 0);
    kill((pid_t)sh->dump_pid, SIGKILL);
    reap(sh);
}

void dump_cron(struct shard *sh, int64_t now_ms)
{
    struct server *srv = sh->srv;
    struct dump_state *d = &srv->dump;
    KV_ASSERT(sh->id == 0);
    int shut = atomic_load(&d->shutdown);
    if (shut == 1) {
        atomic_store(&d->shutdown_gen, dump_request(sh, true));
        atomic_store(&d->shutdown, 2);
        return;
    }
    if (shut == 2) {
        uint64_t gen = atomic_load(&d->shutdown_gen);
        if (atomic_load(&d->done) >= gen) {
            kv_log_notice("DB saved on disk");
            atomic_store(&srv->stopping, 1);
        } else if (atomic_load(&d->failed) >= gen && atomic_load(&d->shutdown_force)) {
            kv_log_warning("Error trying to save the DB. Exit anyway.");
            atomic_store(&srv->stopping, 1);
        } else if (atomic_load(&d->failed) >= gen) {
            kv_log_warning("Error trying to save the DB, can't exit.");
            atomic_store(&d->shutdown, 0);
        }
        return;
    }
    if (!dump_in_progress(srv) && points_due(srv, now_ms)) {
        kv_log_notice("save point reached: %llu changes, background saving",
                      (unsigned long long)dump_changes_since(srv));
        dump_request_bg(sh);
    }
}

/* ---- start-up ------------------------------------------------------------------------ */

static void marker_name(char *buf, size_t cap, uint64_t lsn)
{
    snprintf(buf, cap, "dump-%016llx.done", (unsigned long long)lsn);
}

/* The LSN of a marker's name, or false if the name is none. */
static bool marker_parse(const char *name, uint64_t *lsn)
{
    unsigned long long v;
    int end = -1;
    if (sscanf(name, "dump-%16llx.done%n", &v, &end) != 1 || end != 5 + 16 + 5 ||
        name[end] != '\0') {
        return false;
    }
    *lsn = v;
    return true;
}

int dump_prepare_dir(struct server *srv, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "kvd: cannot read %s: %s\n", dir, strerror(errno));
        return -1;
    }
    uint64_t done = 0, floor = 0, lsn;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (marker_parse(de->d_name, &lsn) && lsn > done) {
            done = lsn;
        }
    }
    rewinddir(d);
    int removed = 0;
    while ((de = readdir(d)) != NULL) {
        unsigned part;
        unsigned long long l;
        char tail[16];
        bool dump;
        int n = snap_name_parse(de->d_name, &part, &l, tail, &dump);
        if ((n == 2 || (n == 3 && strcmp(tail, ".tmp") == 0)) && dump && l > done) {
            /* of a dump cut short */
            removed += unlinkat(dirfd(d), de->d_name, 0) == 0;
        } else if (marker_parse(de->d_name, &lsn) && lsn < done) {
            removed += unlinkat(dirfd(d), de->d_name, 0) == 0;
        } else if (n >= 2 && l > floor) {
            floor = l;
        }
    }
    if (removed > 0) {
        fsync(dirfd(d));
        kv_log_warning("removed %d files of a dump that was not finished (the one before it, "
                       "lsn %llu, stays)",
                       removed, (unsigned long long)done);
    }
    closedir(d);
    srv->dump.lsn_floor = floor > done ? floor : done;
    return 0;
}

/* ---- the child ------------------------------------------------------------------------ */

/* The child's output buffer (mmap'ed: no heap of the parent's threads is used). */
struct wbuf {
    char *p;
    size_t cap, len;
    uint64_t count; /* entries in the chunk being filled */
    int fd;
    uint64_t off; /* file offset of p[0] */
    uint32_t db;
    bool failed;
    int err;
    XXH3_state_t sums;
    uint64_t part_keys;
};

static bool wbuf_reserve(struct wbuf *w, size_t need)
{
    if (w->len + need <= w->cap) {
        return true;
    }
    size_t cap = w->cap;
    while (w->len + need > cap) {
        cap *= 2;
    }
    void *p = mremap(w->p, w->cap, cap, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
        w->failed = true;
        w->err = errno;
        return false;
    }
    w->p = p;
    w->cap = cap;
    return true;
}

static bool write_all(struct wbuf *w, const char *p, size_t len)
{
    while (len > 0 && !w->failed) {
        ssize_t n = pwrite(w->fd, p, len, (off_t)w->off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            w->failed = true;
            w->err = n < 0 ? errno : ENOSPC;
            return false;
        }
        p += n;
        len -= (size_t)n;
        w->off += (uint64_t)n;
    }
    return !w->failed;
}

/* Seals the chunk being filled and writes it. */
static void flush_chunk(struct wbuf *w)
{
    if (w->count == 0 || w->failed) {
        return;
    }
    struct walfmt_chunk h;
    walfmt_chunk_seal(&h, 0, w->count, w->p + sizeof h, w->len - sizeof h, 0);
    memcpy(w->p, &h, sizeof h);
    XXH3_64bits_update(&w->sums, &h.crc, sizeof h.crc);
    w->part_keys += w->count;
    write_all(w, w->p, w->len);
    w->len = sizeof h;
    w->count = 0;
}

static void emit(void *ctx, const struct tbl_entry *e)
{
    struct wbuf *w = ctx;
    size_t need = snap_entry_size(e);
    if (w->failed || !wbuf_reserve(w, need)) {
        return;
    }
    snap_entry_put(w->p + w->len, e, w->db);
    w->len += need;
    w->count++;
}

/* Writes partition `slot` of shard `sh` into its temporary snapshot file, synced (the
 * renames come once every partition is written). 0 or -errno (logged, the file removed). */
static int write_part(struct shard *sh, uint32_t slot, int dirfd, struct wbuf *w, int64_t now_ms)
{
    uint32_t part = sh->part_id[slot];
    uint64_t lsn = sh->part_lsn[slot];
    char tmp[64];
    snap_dump_file_name(tmp, sizeof tmp, part, lsn, true);
    w->fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        kv_log_warning("background save: partition %u: cannot create %s err=%s", part, tmp,
                       strerror(e));
        return -e;
    }
    w->off = 0;
    w->failed = false;
    w->part_keys = 0;
    w->count = 0;
    w->len = sizeof(struct walfmt_chunk);
    XXH3_64bits_reset(&w->sums);
    struct walfmt_snap h;
    walfmt_snap_init(&h, part, sh->srv->nthreads, sh->srv->route->count, lsn, sh->dump_wal_seq,
                     now_ms);
    write_all(w, (const char *)&h, sizeof h);
    for (uint32_t db = 0; db < sh->ndb && !w->failed; db++) {
        struct tbl *t = shard_part_peek(sh, slot, db);
        w->db = db;
        for (uint64_t cursor = 0; t != NULL && !w->failed;) {
            cursor = tbl_scan(t, cursor, now_ms, emit, w);
            if (w->len >= DUMP_CHUNK) {
                flush_chunk(w);
            }
            if (cursor == 0) {
                break;
            }
        }
    }
    flush_chunk(w);
    struct walfmt_chunk tr;
    walfmt_chunk_seal(&tr, WALFMT_CHUNK_LAST, w->part_keys, NULL, 0, XXH3_64bits_digest(&w->sums));
    write_all(w, (const char *)&tr, sizeof tr);
    int rc = w->failed ? -w->err : 0;
    if (rc == 0 && fdatasync(w->fd) != 0) {
        rc = -errno;
    }
    close(w->fd);
    if (rc != 0) {
        unlinkat(dirfd, tmp, 0);
        kv_log_warning("background save: partition %u failed err=%s", part, strerror(-rc));
    }
    return rc;
}

/* Each name in directory dirfd passed to fn, read with getdents64 into a stack buffer
 * (readdir would allocate). */
static void each_name(int dirfd, void (*fn)(int dirfd, const char *name, void *ctx), void *ctx)
{
    char buf[8192] __attribute__((aligned(8)));
    lseek(dirfd, 0, SEEK_SET);
    for (;;) {
        long n = syscall(SYS_getdents64, dirfd, buf, sizeof buf);
        if (n <= 0) {
            return;
        }
        for (long off = 0; off < n;) {
            const struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *de = (const void *)(buf + off);
            fn(dirfd, de->name, ctx);
            off += de->reclen;
        }
    }
}

struct wal_range {
    uint64_t lo, hi; /* segment numbers seen */
    bool any;
};

struct covered {
    const struct server *srv;
    uint64_t lsn;          /* the new dump's */
    struct wal_range *wal; /* per shard (mmap'ed) */
};

/* Removes a snapshot the new ones replace, or a WAL segment (the new files cover all
 * its records: their LSNs and batch numbers are past them). */
static void remove_if_covered(int dirfd, const char *name, void *ctx)
{
    const struct covered *c = ctx;
    unsigned a;
    unsigned long long b;
    char tail[16] = "";
    bool dump;
    uint64_t m;
    if (snap_name_parse(name, &a, &b, tail, &dump) == 2 && b < c->lsn) {
        unlinkat(dirfd, name, 0);
    } else if (marker_parse(name, &m) && m < c->lsn) {
        unlinkat(dirfd, name, 0);
    } else if (sscanf(name, "wal-%3u-%16llx.log%15s", &a, &b, tail) == 2 && a < c->srv->nthreads &&
               tail[0] == '\0' && b < c->srv->shards[a].wal_segno) {
        /* a closed WAL's segment (those of a WAL open at the fork, logging, prepared or
         * being written out, are kept: wal_segno): the numbers seen are removed afterwards
         * from the oldest on, so that a crash meanwhile leaves a contiguous log */
        struct wal_range *r = &c->wal[a];
        r->lo = r->any && r->lo < b ? r->lo : b;
        r->hi = r->any && r->hi > b ? r->hi : b;
        r->any = true;
    }
}

/* Removes each shard's WAL segments seen, oldest first. */
static void remove_wal(const struct covered *c, int dirfd)
{
    for (uint32_t i = 0; i < c->srv->nthreads; i++) {
        const struct wal_range *r = &c->wal[i];
        for (uint64_t segno = r->lo; r->any && segno <= r->hi; segno++) {
            char name[64];
            wal_segment_name(name, sizeof name, i, segno);
            unlinkat(dirfd, name, 0); /* (ENOENT: a gap in the numbers) */
        }
    }
}

/* Renames every partition's temporary file to its final name (or, !keep, removes them).
 * 0 or the first rename's -errno (logged). */
static int finish_parts(struct server *srv, int dirfd, bool keep)
{
    int rc = 0;
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        struct shard *sh = &srv->shards[i];
        for (uint32_t slot = 0; slot < sh->table_count; slot++) {
            char tmp[64], name[64];
            snap_dump_file_name(tmp, sizeof tmp, sh->part_id[slot], sh->part_lsn[slot], true);
            snap_dump_file_name(name, sizeof name, sh->part_id[slot], sh->part_lsn[slot], false);
            if (!keep) {
                unlinkat(dirfd, tmp, 0);
            } else if (renameat(dirfd, tmp, dirfd, name) != 0 && rc == 0) {
                rc = -errno;
                kv_log_warning("background save: rename %s err=%s", tmp, strerror(-rc));
            }
        }
    }
    return rc;
}

/* The child: writes every partition's file at LSN `lsn`, the functions (write_fn: else the parent
 * wrote them) and the marker, then removes what they cover. 0 or -1 / -errno (logged). */
static int child_main(struct server *srv, uint64_t lsn, int64_t now_ms, const uint8_t *fn,
                      size_t fn_len, bool write_fn)
{
    int dirfd = open(kvd_settings.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        kv_log_warning("background save: cannot open dir=%s err=%s", kvd_settings.dir,
                       strerror(errno));
        return -1;
    }
    struct wbuf w = {.cap = 2 * DUMP_CHUNK};
    w.p = mmap(NULL, w.cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w.p == MAP_FAILED) {
        return -1;
    }
    for (uint32_t i = 0; i < srv->nthreads; i++) {
        struct shard *sh = &srv->shards[i];
        for (size_t k = 0; k < (size_t)sh->table_count * sh->ndb; k++) {
            if (sh->tables[k] != NULL) {
                tbl_owner_adopt(sh->tables[k]);
            }
        }
    }
    /* Every partition written and synced first, then all renamed: a failure leaves the
     * previous dump whole rather than some partitions of each (a crash during the
     * renames: the marker, written last, is missing, dump_prepare_dir). */
    int rc = 0;
    uint64_t keys = 0;
    for (uint32_t i = 0; i < srv->nthreads && rc == 0; i++) {
        struct shard *sh = &srv->shards[i];
        for (uint32_t slot = 0; slot < sh->table_count && rc == 0; slot++) {
            KV_ASSERT(sh->part_lsn[slot] == lsn); /* (set while every shard was parked) */
            rc = write_part(sh, slot, dirfd, &w, now_ms);
            if (KV_FAILPOINT_ERROR("dump-child-slow")) {
                usleep(100000); /* (test builds: a child that takes its time) */
            }
            keys += w.part_keys;
        }
    }
    if (rc == 0) {
        rc = finish_parts(srv, dirfd, true);
    } else {
        finish_parts(srv, dirfd, false);
    }
    if (rc == 0 && fsync(dirfd) != 0) {
        rc = -errno;
        kv_log_warning("background save: fsync dir=%s err=%s", kvd_settings.dir, strerror(-rc));
    }
    int e = rc == 0 && write_fn ? func_file_write(kvd_settings.dir, fn, fn_len) : 0;
    if (e != 0) {
        kv_log_warning("background save: cannot write the functions err=%s", strerror(e));
        rc = -e;
    }
    KV_FAILPOINT("dump-before-marker"); /* (kills the child: the dump fails) */
    if (rc == 0) { /* the dump is finished once its marker is there (dump_prepare_dir) */
        char name[64];
        marker_name(name, sizeof name, lsn);
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || fsync(fd) != 0 || fsync(dirfd) != 0) {
            rc = -errno;
            kv_log_warning("background save: cannot write %s err=%s", name, strerror(-rc));
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    if (rc == 0) {
        struct wal_range *wal = mmap(NULL, srv->nthreads * sizeof *wal, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* (zeroed) */
        if (wal != MAP_FAILED) {
            struct covered c = {.srv = srv, .lsn = lsn, .wal = wal};
            each_name(dirfd, remove_if_covered, &c);
            remove_wal(&c, dirfd);
        }
        kv_log_notice("dump written keys=%llu", (unsigned long long)keys);
    }
    close(dirfd);
    return rc;
}
