/*
 * snap: the shard's snapshot writer (see snap.h).
 */
#include "snap.h"

#include "kv_assert.h"
#include "kv_failpoint.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "route.h"
#include "server.h"
#include "shard.h"
#include "tbl.h"
#include "wal.h"
#include "walfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <mimalloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t */
#include <xxhash.h>

#define SNAP_CHUNK    (256u * 1024) /* bytes of entries per chunk, about */
#define SNAP_RETRY_MS 5000          /* automatic rounds after a failed one */

enum snap_phase {
    PH_STREAM = 0, /* chunks of the table */
    PH_TRAILER,    /* the trailer is being written */
    PH_FSYNC,      /* the file is being synced */
    PH_DIRSYNC,    /* renamed; the directory is being synced */
};

struct chunk_buf {
    char *p;
    size_t cap;
    size_t len; /* header + entries */
    uint64_t count;
};

struct snap {
    struct shard *sh;
    struct mi_heap_s *heap;
    char dir[KVD_DIR_MAX];
    int dirfd;

    bool running;
    uint64_t target;
    uint64_t wal_seq;
    int64_t started_ms;
    int64_t retry_after_ms;
    uint64_t keys, bytes;
    uint64_t part_keys; /* entries in the partition being written */

    uint32_t slot;        /* partition being written (index among the shard's) */
    uint32_t db;          /* its database being streamed */
    uint64_t gen;         /* the partition's part_swaps when it began */
    uint64_t part_bytes0; /* s->bytes when the partition began */
    int fd;
    uint64_t lsn;
    uint64_t cursor;
    bool scan_done;
    uint64_t file_off;
    enum snap_phase phase;
    bool inflight;
    bool first_write_done;
    XXH3_state_t sums;

    struct chunk_buf bufs[2];
    struct chunk_buf *fill; /* being filled */
    char trailer[sizeof(struct walfmt_chunk)];
    const char *wptr;
    size_t wlen, wdone;

    struct snap_stats stats;
};

size_t snap_entry_size(const struct tbl_entry *e)
{
    size_t klen, vlen;
    tbl_entry_key(e, &klen);
    tbl_entry_val(e, &vlen);
    return sizeof(struct walfmt_entry) + klen + vlen;
}

void snap_entry_put(char *dst, const struct tbl_entry *e, uint32_t db)
{
    size_t klen, vlen;
    const void *k = tbl_entry_key(e, &klen);
    const void *v = tbl_entry_val(e, &vlen);
    struct walfmt_entry en = {
        .klen = (uint32_t)klen, .db = db, .vlen = vlen, .expire_ms = tbl_entry_expire_ms(e)};
    memcpy(dst, &en, sizeof en);
    memcpy(dst + sizeof en, k, klen);
    memcpy(dst + sizeof en + klen, v, vlen);
}

void snap_file_name(char *buf, size_t cap, uint32_t part, uint64_t lsn, bool tmp)
{
    snprintf(buf, cap, "snap-%05u-%016llx.kvs%s", part, (unsigned long long)lsn, tmp ? ".tmp" : "");
}

void snap_dump_file_name(char *buf, size_t cap, uint32_t part, uint64_t lsn, bool tmp)
{
    snprintf(buf, cap, "dump-%05u-%016llx.kvs%s", part, (unsigned long long)lsn, tmp ? ".tmp" : "");
}

int snap_name_parse(const char *name, unsigned *part, unsigned long long *lsn, char *tail,
                    bool *dump)
{
    *dump = strncmp(name, "dump-", 5) == 0;
    if (!*dump && strncmp(name, "snap-", 5) != 0) {
        return 0;
    }
    tail[0] = '\0';
    int end = -1; /* the whole name must match: a "dump-...-copy.kvs" is none of ours */
    if (sscanf(name + 5, "%5u-%16llx.kvs%n", part, lsn, &end) != 2 || end != 5 + 1 + 16 + 4) {
        return 0;
    }
    const char *rest = name + 5 + end;
    if (*rest == '\0') {
        return 2;
    }
    if (strcmp(rest, ".tmp") == 0 || strncmp(rest, ".corrupt", 8) == 0) {
        snprintf(tail, 16, "%s", rest);
        return 3;
    }
    return 0;
}

int snap_init(struct snap **out, struct shard *sh, const char *dir)
{
    struct snap *s = mi_heap_zalloc(sh->heap, sizeof *s);
    if (s == NULL) {
        return -ENOMEM;
    }
    s->sh = sh;
    s->heap = sh->heap;
    s->fd = -1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        int e = errno;
        mi_free(s);
        return -e;
    }
    for (int i = 0; i < 2; i++) {
        s->bufs[i].cap = SNAP_CHUNK + 4096;
        s->bufs[i].p = mi_heap_malloc(s->heap, s->bufs[i].cap);
        if (s->bufs[i].p == NULL) {
            return -ENOMEM;
        }
    }
    STAT_SET(s->stats.last_ok, 1);
    *out = s;
    return 0;
}

void snap_free(struct snap *s)
{
    if (s == NULL) {
        return;
    }
    snap_abort(s);
    close(s->dirfd);
    mi_free(s->bufs[0].p);
    mi_free(s->bufs[1].p);
    mi_free(s);
}

struct snap_stats *snap_stats(struct snap *s)
{
    return &s->stats;
}

bool snap_running(const struct snap *s)
{
    return s->running;
}

bool snap_busy(const struct snap *s)
{
    return s->inflight;
}

static void buf_reset(struct chunk_buf *b)
{
    b->len = sizeof(struct walfmt_chunk);
    b->count = 0;
}

static void tmp_name(struct snap *s, char *buf, size_t cap)
{
    snap_file_name(buf, cap, s->sh->part_id[s->slot], s->lsn, true);
}

/* Closes and removes the partition's temporary file, if one is open. */
static void drop_tmp(struct snap *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
        char name[64];
        tmp_name(s, name, sizeof name);
        unlinkat(s->dirfd, name, 0);
    }
}

static void fail(struct snap *s, const char *what, int err)
{
    kv_log_warning("snapshot failed shard=%u partition=%u step=%s err=%s (the previous snapshot "
                   "stays)",
                   s->sh->id, s->sh->part_id[s->slot], what, strerror(err));
    drop_tmp(s);
    s->running = false;
    s->retry_after_ms = s->sh->now_ms + SNAP_RETRY_MS;
    STAT_SET(s->stats.running, 0);
    STAT_SET(s->stats.last_ok, 0);
    STAT_ADD(s->stats.rounds_failed, 1);
    STAT_SET(s->stats.failed_target, s->target);
}

/* Opens partition `slot`'s temporary file and writes its header. */
static bool start_part(struct snap *s)
{
    struct shard *sh = s->sh;
    s->lsn = sh->part_lsn[s->slot];
    s->db = 0;
    s->gen = sh->part_swaps[s->slot];
    s->part_bytes0 = s->bytes;
    s->cursor = 0;
    s->scan_done = false;
    s->phase = PH_STREAM;
    s->first_write_done = false;
    s->part_keys = 0;
    XXH3_64bits_reset(&s->sums);
    buf_reset(&s->bufs[0]);
    buf_reset(&s->bufs[1]);
    s->fill = &s->bufs[0];
    char name[64];
    tmp_name(s, name, sizeof name);
    s->fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        fail(s, "open", errno);
        return false;
    }
    struct walfmt_snap h;
    walfmt_snap_init(&h, sh->part_id[s->slot], sh->srv->nthreads, sh->srv->route->count, s->lsn,
                     s->wal_seq, sh->now_ms);
    if (pwrite(s->fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        fail(s, "write", errno ? errno : ENOSPC);
        return false;
    }
    s->file_off = sizeof h;
    return true;
}

bool snap_start(struct snap *s, uint64_t target, bool now)
{
    if (s->running || (!now && s->sh->now_ms < s->retry_after_ms)) {
        return false;
    }
    s->running = true;
    s->target = target;
    s->wal_seq = wal_open_seq(s->sh->wal);
    wal_snapshot_started(s->sh->wal);
    s->started_ms = s->sh->now_ms;
    s->keys = s->bytes = 0;
    s->slot = 0;
    STAT_SET(s->stats.running, 1);
    STAT_SET(s->stats.started_ms, s->started_ms);
    kv_log_verbose("snapshot round started shard=%u target=%llu", s->sh->id,
                   (unsigned long long)target);
    start_part(s);
    return true;
}

static void emit(void *ctx, const struct tbl_entry *e)
{
    struct snap *s = ctx;
    struct chunk_buf *b = s->fill;
    size_t need = snap_entry_size(e);
    if (b->len + need > b->cap) {
        size_t cap = b->cap;
        while (b->len + need > cap) {
            cap *= 2;
        }
        char *p = mi_heap_realloc(s->heap, b->p, cap);
        KV_ASSERT(p != NULL);
        b->p = p;
        b->cap = cap;
    }
    snap_entry_put(b->p + b->len, e, s->db);
    b->len += need;
    b->count++;
}

static void submit_write(struct snap *s)
{
    struct io_uring_sqe *sqe = shard_sqe(s->sh);
    io_uring_prep_write(sqe, s->fd, s->wptr + s->wdone, (unsigned)(s->wlen - s->wdone),
                        s->file_off + s->wdone);
    io_uring_sqe_set_data64(sqe, SHARD_UD_SNAP);
    s->inflight = true;
}

static void write_buf(struct snap *s, const char *p, size_t len)
{
    s->wptr = p;
    s->wlen = len;
    s->wdone = 0;
    submit_write(s);
}

static void submit_fsync(struct snap *s, int fd, unsigned flags)
{
    struct io_uring_sqe *sqe = shard_sqe(s->sh);
    io_uring_prep_fsync(sqe, fd, flags);
    io_uring_sqe_set_data64(sqe, SHARD_UD_SNAP);
    s->inflight = true;
}

void snap_turn(struct snap *s)
{
    if (!s->running || s->inflight || s->phase != PH_STREAM) {
        return;
    }
    if (s->gen != s->sh->part_swaps[s->slot]) {
        /* SWAPDB while the partition was streamed: entries already written carry the
         * databases as they were before it, so replaying its record over them would
         * misplace them. The partition starts over, after the swap. */
        s->keys -= s->part_keys;
        s->bytes = s->part_bytes0;
        drop_tmp(s);
        if (!start_part(s)) {
            return;
        }
    }
    struct chunk_buf *b = s->fill;
    while (!s->scan_done && b->len < SNAP_CHUNK) {
        struct tbl *t = shard_part_peek(s->sh, s->slot, s->db);
        if (t != NULL) {
            s->cursor = tbl_scan(t, s->cursor, s->sh->now_ms, emit, s);
        }
        if (t == NULL || s->cursor == 0) { /* this database is done: the next one */
            s->cursor = 0;
            s->scan_done = ++s->db == s->sh->ndb;
        }
        b = s->fill; /* emit may have grown it */
    }
    if (b->count > 0) {
        struct walfmt_chunk h;
        walfmt_chunk_seal(&h, 0, b->count, b->p + sizeof h, b->len - sizeof h, 0);
        memcpy(b->p, &h, sizeof h);
        XXH3_64bits_update(&s->sums, &h.crc, sizeof h.crc);
        s->keys += b->count;
        s->part_keys += b->count;
        s->fill = b == &s->bufs[0] ? &s->bufs[1] : &s->bufs[0];
        buf_reset(s->fill);
        write_buf(s, b->p, b->len);
        return;
    }
    /* the table is done: the trailer */
    struct walfmt_chunk h;
    walfmt_chunk_seal(&h, WALFMT_CHUNK_LAST, s->part_keys, NULL, 0, XXH3_64bits_digest(&s->sums));
    memcpy(s->trailer, &h, sizeof h);
    s->phase = PH_TRAILER;
    write_buf(s, s->trailer, sizeof h);
}

/* Deletes the partition's snapshots other than the one just written. */
static void delete_older(struct snap *s, uint32_t part)
{
    DIR *d = opendir(s->dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned p;
        unsigned long long lsn;
        char tail[16];
        bool dump;
        if (snap_name_parse(de->d_name, &p, &lsn, tail, &dump) == 2 && p == part &&
            (lsn != s->lsn || dump)) {
            unlinkat(s->dirfd, de->d_name, 0);
        }
    }
    closedir(d);
}

static void finish_round(struct snap *s)
{
    struct shard *sh = s->sh;
    KV_FAILPOINT("snapshot-before-trim");
    KV_ASSERT(sh->wal != NULL); /* (a round ends with the WAL on: snap_cancel) */
    wal_trim(sh->wal, s->wal_seq);
    s->running = false;
    int64_t took = sh->now_ms - s->started_ms;
    STAT_SET(s->stats.running, 0);
    STAT_SET(s->stats.last_ok, 1);
    STAT_SET(s->stats.last_ok_ms, sh->now_ms);
    STAT_SET(s->stats.last_round_ms, took);
    STAT_SET(s->stats.keys, s->keys);
    STAT_SET(s->stats.bytes, s->bytes);
    STAT_ADD(s->stats.rounds_ok, 1);
    STAT_SET(s->stats.done_target, s->target);
    kv_log_verbose("snapshot round done shard=%u keys=%llu bytes=%llu ms=%lld", sh->id,
                   (unsigned long long)s->keys, (unsigned long long)s->bytes, (long long)took);
}

void snap_on_cqe(struct snap *s, struct io_uring_cqe *cqe)
{
    KV_ASSERT(s->inflight);
    s->inflight = false;
    if (!s->running) {
        return; /* aborted */
    }
    int res = cqe->res;
    switch (s->phase) {
    case PH_STREAM:
    case PH_TRAILER:
        if (res <= 0) {
            fail(s, "write", res == 0 ? ENOSPC : -res);
            return;
        }
        s->wdone += (size_t)res;
        if (s->wdone < s->wlen) {
            submit_write(s);
            return;
        }
        s->file_off += s->wlen;
        s->bytes += s->wlen;
        if (!s->first_write_done) {
            s->first_write_done = true;
            KV_FAILPOINT("snapshot-mid");
        }
        if (s->phase == PH_TRAILER) {
            s->phase = PH_FSYNC;
            submit_fsync(s, s->fd, IORING_FSYNC_DATASYNC);
        }
        return;
    case PH_FSYNC: {
        if (res < 0) {
            fail(s, "fdatasync", -res);
            return;
        }
        char from[64], to[64];
        tmp_name(s, from, sizeof from);
        snap_file_name(to, sizeof to, s->sh->part_id[s->slot], s->lsn, false);
        close(s->fd);
        s->fd = -1;
        if (renameat(s->dirfd, from, s->dirfd, to) != 0) {
            int e = errno;
            unlinkat(s->dirfd, from, 0);
            fail(s, "rename", e);
            return;
        }
        s->phase = PH_DIRSYNC;
        submit_fsync(s, s->dirfd, 0);
        return;
    }
    case PH_DIRSYNC:
        if (res < 0) {
            fail(s, "fsync dir", -res);
            return;
        }
        delete_older(s, s->sh->part_id[s->slot]);
        if (++s->slot < s->sh->table_count) {
            start_part(s);
        } else {
            finish_round(s);
        }
        return;
    }
}

void snap_cancel(struct snap *s)
{
    if (s->running) {
        drop_tmp(s); /* (an operation in flight holds its own reference to the file) */
        s->running = false;
        STAT_SET(s->stats.running, 0);
    }
}

void snap_abort(struct snap *s)
{
    KV_ASSERT(!s->inflight);
    if (s->running) {
        drop_tmp(s);
        s->running = false;
        STAT_SET(s->stats.running, 0);
    }
}
