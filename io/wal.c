/*
 * wal: the shard's write-ahead log writer (see wal.h).
 *
 * State. Batch buffers: `open` fills, up to `depth` others are being written (the
 * `writes` ring, in sequence order), the rest are free. A segment is
 * `cur` (being written) or the `spare` (being zero-filled, or ready). Segments that
 * hold batches are remembered in `segs` with their last batch's sequence number, so
 * that wal_trim can delete those a snapshot round has passed.
 */
#include "wal.h"

#include "devcache.h"
#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_failpoint.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "recover.h"
#include "server.h"
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAL_BUF_INITIAL (1u << 20) /* bytes of each batch buffer at start */
#define WAL_ZERO_CHUNK  (1u << 20) /* bytes of one zero-filling write */
#define WAL_SEGS_MAX    4096       /* segments alive at most (a snapshot trims them) */
#define WAL_RETRY_MS    1000       /* retry of a spare that could not be prepared */
/* Without `always`, batches are written once this big or this old: each write costs a
 * device submission, and nothing waits for it. */
#define WAL_LAZY_BYTES (64u * 1024)
#define WAL_LAZY_MS    2

struct wal_buf {
    char *p;
    uint64_t cap;
    uint64_t len; /* header + records */
    uint32_t count;
    uint64_t token; /* wal_appended() after its last record */
    uint64_t seq;
    int64_t first_ms; /* when its first record was appended */
};

enum spare_state {
    SPARE_NONE = 0,
    SPARE_FILLING,
    SPARE_SYNCING,
    SPARE_READY,
    SPARE_FAILED,
};

/* One batch being written. */
struct wal_write {
    struct wal_buf *buf;
    uint64_t off;   /* in the current segment */
    uint64_t span;  /* bytes on disk */
    uint64_t done;  /* bytes written so far */
    uint64_t t0;    /* submitted at (monotonic ns) */
    uint32_t syncs; /* linked fdatasyncs submitted and not completed */
    bool complete;
};

struct wal_seg {
    uint64_t segno;
    uint64_t last_seq; /* 0 while it holds no batch */
    bool has_batches;
};

struct wal {
    struct shard *sh;
    struct mi_heap_s *heap;
    char dir[KVD_DIR_MAX];
    int dirfd;
    uint32_t shard_id, threads, partitions;
    uint64_t seg_bytes;

    struct wal_buf bufs[WAL_DEPTH_MAX + 1];
    struct wal_buf *open;
    struct wal_buf *free_bufs[WAL_DEPTH_MAX + 1];
    uint32_t nfree;
    struct wal_write writes[WAL_DEPTH_MAX]; /* a ring: oldest at w_head */
    uint32_t w_head, w_count, depth;
    uint64_t acked_seq; /* every batch up to this one is written (and synced, always) */
    uint64_t appended, durable;
    uint64_t next_seq;

    int cur_fd;
    uint64_t cur_segno;
    uint64_t cur_off; /* where the next batch goes */
    int spare_fd;
    uint64_t spare_segno;
    enum spare_state spare;
    uint64_t spare_off; /* zero-filled so far */
    bool spare_inflight;
    int spare_err;
    int64_t spare_retry_ms;

    bool sync_inflight;
    bool written_since_sync;
    int64_t last_sync_ms;
    bool failed;  /* a write or sync failed (modes other than always) */
    bool closing; /* shutting down: write whatever is open at once */
    int fail_err;

    char *zeros;
    char *hdr_blk;
    struct wal_seg segs[WAL_SEGS_MAX];
    uint32_t nsegs;
    struct wal_stats *stats; /* the shard's (it outlives this WAL: INFO reads it) */
    uint64_t base_lsn;       /* written into every segment header (walfmt.h) */
    bool linked;             /* wal-sync-method fdatasync */
};

static int fsync_mode(void)
{
    return (int)KV_CONF_GET(kvd_settings.appendfsync);
}

const char *wal_fsync_name(int mode)
{
    static const char *const names[] = {"always", "everysec", "no"};
    return mode >= 0 && mode <= 2 ? names[mode] : "?";
}

void wal_segment_name(char *buf, size_t cap, uint32_t shard, uint64_t segno)
{
    snprintf(buf, cap, "wal-%03u-%016llx.log", shard, (unsigned long long)segno);
}

static int buf_init(struct wal *w, struct wal_buf *b)
{
    b->p = mi_heap_malloc_aligned(w->heap, WAL_BUF_INITIAL, WALFMT_BLOCK);
    if (b->p == NULL) {
        return -ENOMEM;
    }
    b->cap = WAL_BUF_INITIAL;
    b->len = sizeof(struct walfmt_batch);
    b->count = 0;
    return 0;
}

/* Makes room for `more` bytes plus the padding of the last block. */
static void buf_reserve(struct wal *w, struct wal_buf *b, uint64_t more)
{
    uint64_t need = walfmt_round_up(b->len + more);
    if (need <= b->cap) {
        return;
    }
    uint64_t cap = b->cap;
    while (cap < need) {
        cap *= 2;
    }
    char *p = mi_heap_malloc_aligned(w->heap, cap, WALFMT_BLOCK);
    KV_ASSERT(p != NULL);
    memcpy(p, b->p, b->len);
    mi_free(b->p);
    b->p = p;
    b->cap = cap;
}

static int open_segment_file(struct wal *w, uint64_t segno, int *fd_out)
{
    char name[64];
    wal_segment_name(name, sizeof name, w->shard_id, segno);
    int fd = openat(w->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
    if (fd < 0 && errno == EINVAL) {
        static _Atomic int warned;
        if (!atomic_exchange(&warned, 1)) {
            kv_log_warning("O_DIRECT is not supported in dir=%s: the WAL uses buffered writes "
                           "with the same syncs",
                           w->dir);
        }
        fd = openat(w->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        return -errno;
    }
    *fd_out = fd;
    return 0;
}

static void unlink_segment(struct wal *w, uint64_t segno)
{
    char name[64];
    wal_segment_name(name, sizeof name, w->shard_id, segno);
    unlinkat(w->dirfd, name, 0);
}

/* Block 0 of segment `segno`: its header, then zeros. */
static const char *header_block(struct wal *w, uint64_t segno)
{
    memset(w->hdr_blk, 0, WALFMT_BLOCK);
    struct walfmt_seg s;
    walfmt_seg_init(&s, w->shard_id, w->threads, w->partitions, segno, w->base_lsn);
    memcpy(w->hdr_blk, &s, sizeof s);
    return w->hdr_blk;
}

/* The next piece of a segment's preparation: block 0, then zeros in 1 MiB writes. */
static uint64_t fill_piece(struct wal *w, uint64_t off, uint64_t segno, const char **src)
{
    if (off == 0) {
        *src = header_block(w, segno);
        return WALFMT_BLOCK;
    }
    *src = w->zeros;
    uint64_t left = w->seg_bytes - off;
    return left < WAL_ZERO_CHUNK ? left : WAL_ZERO_CHUNK;
}

/* Synchronous preparation of a segment (start-up only). */
static int prepare_sync(struct wal *w, uint64_t segno, int *fd_out)
{
    int fd;
    int rc = open_segment_file(w, segno, &fd);
    if (rc != 0) {
        return rc;
    }
    for (uint64_t off = 0; off < w->seg_bytes && rc == 0;) {
        const char *src;
        uint64_t n = fill_piece(w, off, segno, &src);
        ssize_t done = pwrite(fd, src, n, (off_t)off);
        if (done != (ssize_t)n) {
            rc = done < 0 ? -errno : -ENOSPC;
        }
        off += n;
    }
    if (rc == 0 && (fdatasync(fd) != 0 || fsync(w->dirfd) != 0)) {
        rc = -errno;
    }
    if (rc != 0) {
        close(fd);
        unlink_segment(w, segno);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* What wal_open made before it failed (mi_free of NULL is nothing). */
static int open_failed(struct wal *w, int rc)
{
    for (uint32_t i = 0; i <= WAL_DEPTH_MAX; i++) {
        mi_free(w->bufs[i].p);
    }
    mi_free(w->zeros);
    mi_free(w->hdr_blk);
    if (w->dirfd >= 0) {
        close(w->dirfd);
    }
    mi_free(w);
    return rc;
}

int wal_open(struct wal **out, struct shard *sh, const struct wal_open_args *a)
{
    KV_ASSERT(a->segment_bytes % WALFMT_BLOCK == 0 && a->segment_bytes >= 2 * WALFMT_BLOCK);
    struct wal *w = mi_heap_zalloc(sh->heap, sizeof *w);
    if (w == NULL) {
        return -ENOMEM;
    }
    w->sh = sh;
    w->heap = sh->heap;
    snprintf(w->dir, sizeof w->dir, "%s", a->dir);
    w->shard_id = a->shard;
    w->threads = a->threads;
    w->partitions = a->partitions;
    w->seg_bytes = a->segment_bytes;
    w->next_seq = a->next_seq;
    w->stats = a->stats;
    w->appended = w->durable = a->token;
    w->cur_fd = w->spare_fd = -1;
    w->dirfd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        return open_failed(w, -errno);
    }
    w->zeros = mi_heap_zalloc_aligned(w->heap, WAL_ZERO_CHUNK, WALFMT_BLOCK);
    w->hdr_blk = mi_heap_zalloc_aligned(w->heap, WALFMT_BLOCK, WALFMT_BLOCK);
    w->depth = a->depth;
    KV_ASSERT(w->depth >= 1 && w->depth <= WAL_DEPTH_MAX);
    w->linked = KV_CONF_GET(kvd_settings.wal_sync_method) == WAL_SYNC_FDATASYNC;
    STAT_SET(w->stats->device_cache, (int)devcache_of_dir(a->dir));
    if (w->zeros == NULL || w->hdr_blk == NULL) {
        return open_failed(w, -ENOMEM);
    }
    for (uint32_t i = 0; i <= w->depth; i++) {
        if (buf_init(w, &w->bufs[i]) != 0) {
            return open_failed(w, -ENOMEM);
        }
        if (i > 0) {
            w->free_bufs[w->nfree++] = &w->bufs[i];
        }
    }
    w->open = &w->bufs[0];
    w->acked_seq = a->next_seq - 1;
    w->open->seq = w->next_seq++;
    int rc = prepare_sync(w, a->segno, &w->cur_fd);
    if (rc != 0) {
        return open_failed(w, rc);
    }
    w->cur_segno = a->segno;
    w->cur_off = WALFMT_BLOCK;
    for (uint32_t i = 0; i < a->nold && w->nsegs < WAL_SEGS_MAX - 1; i++) {
        w->segs[w->nsegs++] = (struct wal_seg){
            .segno = a->old[i].segno, .last_seq = a->old[i].last_seq, .has_batches = true};
    }
    w->segs[w->nsegs++] = (struct wal_seg){.segno = a->segno};
    w->spare_segno = a->segno + 1;
    w->spare = SPARE_NONE;
    STAT_SET(w->stats->segments, w->nsegs);
    STAT_SET(w->stats->last_write_ok, 1);
    STAT_SET(w->stats->refusing, 0);
    STAT_SET(w->stats->batch_seq, w->open->seq);
    STAT_SET(w->stats->appended, w->appended);
    STAT_SET(w->stats->durable, w->durable);
    *out = w;
    return 0;
}

void wal_append(struct wal *w, const struct walfmt_view *r)
{
    struct wal_buf *b = w->open;
    size_t n = walfmt_rec_size(r);
    buf_reserve(w, b, n);
    if (b->count == 0) {
        b->first_ms = w->sh->now_ms;
    }
    walfmt_rec_encode(b->p + b->len, r);
    b->len += n;
    b->count++;
    w->appended++;
    b->token = w->appended;
    if (fsync_mode() != WAL_FSYNC_ALWAYS) {
        w->durable = w->appended;
        STAT_SET(w->stats->durable, w->durable);
    }
    STAT_SET(w->stats->appended, w->appended);
}

uint64_t wal_appended(const struct wal *w)
{
    return w->appended;
}

uint64_t wal_durable(const struct wal *w)
{
    return w->durable;
}

uint64_t wal_open_seq(const struct wal *w)
{
    return w->open->seq;
}

int wal_set_base(struct wal *w, uint64_t base_lsn)
{
    KV_ASSERT(w->appended == w->durable && w->open->count == 0 && w->w_count == 0 &&
              w->spare == SPARE_NONE && !w->spare_inflight);
    w->base_lsn = base_lsn;
    const char *blk = header_block(w, w->cur_segno);
    if (pwrite(w->cur_fd, blk, WALFMT_BLOCK, 0) != (ssize_t)WALFMT_BLOCK) {
        return errno ? -errno : -EIO;
    }
    return fdatasync(w->cur_fd) == 0 ? 0 : -errno;
}

uint64_t wal_next_segno(const struct wal *w)
{
    uint64_t last = w->spare_segno > w->cur_segno ? w->spare_segno : w->cur_segno;
    return last + 1;
}

void wal_snapshot_started(struct wal *w)
{
    STAT_SET(w->stats->bytes_since, 0);
    STAT_SET(w->stats->appended_at_snap, w->appended);
}

int wal_refusing(const struct wal *w)
{
    if (w->failed) {
        return w->fail_err;
    }
    /* spare_err stays set through the retries until a spare is ready again */
    if (w->spare_err != 0 && w->spare != SPARE_READY && w->open->count > 0 &&
        w->cur_off + walfmt_round_up(w->open->len) > w->seg_bytes) {
        return w->spare_err;
    }
    return 0;
}

int64_t wal_timer_ns(const struct wal *w, int64_t now_ms)
{
    if (w->open->count == 0 || w->w_count == w->depth || fsync_mode() == WAL_FSYNC_ALWAYS) {
        return -1; /* the next record, or a completion, brings the next turn */
    }
    int64_t due = w->open->first_ms + WAL_LAZY_MS - now_ms;
    return due > 0 ? due * 1000000 : 0;
}

void wal_closing(struct wal *w)
{
    w->closing = true;
}

bool wal_inflight(const struct wal *w)
{
    return w->w_count > 0 || w->sync_inflight || w->spare_inflight;
}

bool wal_busy(const struct wal *w)
{
    return wal_inflight(w) || w->open->count > 0;
}

static void fatal(struct wal *w, const char *what, int err)
{
    STAT_SET(w->stats->last_write_ok, 0);
    if (fsync_mode() == WAL_FSYNC_ALWAYS) {
        kv_log_warning("WAL %s failed shard=%u segment=%llu err=%s: exiting, nothing it covered "
                       "was acknowledged",
                       what, w->shard_id, (unsigned long long)w->cur_segno, strerror(err));
        _exit(1);
    }
    kv_log_warning("WAL %s failed shard=%u err=%s: write commands are refused from now on", what,
                   w->shard_id, strerror(err));
    w->failed = true;
    w->fail_err = err;
    STAT_SET(w->stats->refusing, 1);
}

/* ---- spare segment preparation ------------------------------------------------------ */

static void spare_fail(struct wal *w, int err, int64_t now_ms)
{
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        w->spare_fd = -1;
    }
    unlink_segment(w, w->spare_segno);
    if (w->spare_err != err) { /* once per cause, not at every retry */
        kv_log_warning("cannot prepare WAL segment shard=%u segment=%llu err=%s (retrying every "
                       "second)",
                       w->shard_id, (unsigned long long)w->spare_segno, strerror(err));
    }
    w->spare = SPARE_FAILED;
    w->spare_err = err;
    w->spare_retry_ms = now_ms + WAL_RETRY_MS;
}

static void spare_submit(struct wal *w)
{
    struct io_uring_sqe *sqe = shard_sqe(w->sh);
    if (w->spare == SPARE_FILLING) {
        const char *src;
        uint64_t n = fill_piece(w, w->spare_off, w->spare_segno, &src);
        io_uring_prep_write(sqe, w->spare_fd, src, (unsigned)n, w->spare_off);
    } else if (w->spare == SPARE_SYNCING) {
        io_uring_prep_fsync(sqe, w->spare_fd, IORING_FSYNC_DATASYNC);
    } else {
        KV_ASSERT(0);
    }
    io_uring_sqe_set_data64(sqe, SHARD_UD_WAL_FILL);
    w->spare_inflight = true;
}

static void spare_start(struct wal *w, int64_t now_ms)
{
    int rc = open_segment_file(w, w->spare_segno, &w->spare_fd);
    if (rc != 0) {
        spare_fail(w, -rc, now_ms);
        return;
    }
    w->spare = SPARE_FILLING;
    w->spare_off = 0;
    spare_submit(w);
}

static void on_fill(struct wal *w, int res)
{
    w->spare_inflight = false;
    int64_t now_ms = w->sh->now_ms;
    if (res < 0) {
        spare_fail(w, -res, now_ms);
        return;
    }
    if (w->spare == SPARE_FILLING) {
        if (res == 0) {
            spare_fail(w, ENOSPC, now_ms);
            return;
        }
        w->spare_off += (uint64_t)res;
        if (w->spare_off >= w->seg_bytes) {
            w->spare = SPARE_SYNCING;
        }
        spare_submit(w);
        return;
    }
    /* synced: the new file's directory entry must be durable before the segment is used
     * (once per segment, so a plain fsync of the directory here is fine) */
    if (fsync(w->dirfd) != 0) {
        spare_fail(w, errno, now_ms);
        return;
    }
    if (w->spare_err != 0) {
        kv_log_notice("WAL segment prepared again shard=%u segment=%llu: writes go on", w->shard_id,
                      (unsigned long long)w->spare_segno);
        w->spare_err = 0;
    }
    w->spare = SPARE_READY;
}

/* ---- batches -------------------------------------------------------------------------- */

static bool switch_segment(struct wal *w)
{
    if (w->spare != SPARE_READY || w->sync_inflight || w->w_count > 0) {
        return false; /* the old segment's writes complete first */
    }
    if (w->nsegs == WAL_SEGS_MAX) {
        return false; /* trimming is overdue; the batch waits */
    }
    if (fsync_mode() == WAL_FSYNC_EVERYSEC && w->written_since_sync) {
        fdatasync(w->cur_fd); /* once per segment: what it holds stays within the second */
        w->written_since_sync = false;
    }
    close(w->cur_fd);
    w->cur_fd = w->spare_fd;
    w->cur_segno = w->spare_segno;
    w->cur_off = WALFMT_BLOCK;
    w->segs[w->nsegs++] = (struct wal_seg){.segno = w->cur_segno};
    w->spare_fd = -1;
    w->spare_segno++;
    w->spare = SPARE_NONE;
    STAT_SET(w->stats->segments, w->nsegs);
    return true;
}

/* Submits the rest of the slot's batch. In `always` mode it is made durable by the
 * write itself (RWF_DSYNC) or, with wal-sync-method fdatasync, by an fdatasync linked
 * after it (IOSQE_IO_LINK: it starts once the write completed in full; a short write
 * cancels it, and the rest goes out with a new one). The two entries of a link go in
 * one submission: a link is cut where a submission ends. */
static void submit_write(struct wal *w, uint32_t slot)
{
    struct wal_write *wr = &w->writes[slot];
    bool linked = w->linked && fsync_mode() == WAL_FSYNC_ALWAYS;
    if (linked) {
        shard_sqe_room(w->sh, 2);
    }
    struct io_uring_sqe *sqe = shard_sqe(w->sh);
    unsigned len = (unsigned)(wr->span - wr->done);
    if (KV_FAILPOINT_ERROR("wal-short-write") && len > WALFMT_BLOCK) {
        len = WALFMT_BLOCK; /* tests: the device took one block of the batch */
    }
    io_uring_prep_write(sqe, w->cur_fd, wr->buf->p + wr->done, len, wr->off + wr->done);
    io_uring_sqe_set_data64(sqe, SHARD_UD_WAL_WRITE + slot);
    if (linked) {
        sqe->flags |= IOSQE_IO_LINK;
        struct io_uring_sqe *sync = shard_sqe(w->sh);
        io_uring_prep_fsync(sync, w->cur_fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sync, SHARD_UD_WAL_WRITE + WAL_DEPTH_MAX + slot);
        wr->syncs++;
    } else if (fsync_mode() == WAL_FSYNC_ALWAYS) {
        sqe->rw_flags = RWF_DSYNC;
    }
}

static void start_write(struct wal *w)
{
    struct wal_buf *b = w->open;
    KV_ASSERT(w->w_count < w->depth && b->count > 0 && w->nfree > 0);
    uint64_t span = walfmt_round_up(b->len);
    if (w->cur_off + span > w->seg_bytes && w->cur_off > WALFMT_BLOCK && !switch_segment(w)) {
        return; /* waits for the spare, or for the writes into the old segment */
    }
    if (w->w_count > 0 && w->cur_off + span - w->writes[w->w_head].off > WALFMT_INFLIGHT_MAX) {
        return; /* waits for the writes ahead: recovery reads only this far past a gap */
    }
    KV_FAILPOINT("wal-before-write");
    struct walfmt_batch h;
    walfmt_batch_seal(&h, b->count, b->len - sizeof h, b->seq, w->acked_seq);
    memcpy(b->p, &h, sizeof h);
    memset(b->p + b->len, 0, span - b->len);
    uint32_t slot = (w->w_head + w->w_count) % w->depth;
    w->writes[slot] =
        (struct wal_write){.buf = b, .off = w->cur_off, .span = span, .t0 = kv_clock_mono_ns()};
    w->w_count++;
    w->cur_off += span;
    w->segs[w->nsegs - 1].last_seq = b->seq;
    w->segs[w->nsegs - 1].has_batches = true;
    struct wal_buf *o = w->free_bufs[--w->nfree];
    o->len = sizeof(struct walfmt_batch);
    o->count = 0;
    o->seq = w->next_seq++;
    w->open = o;
    STAT_SET(w->stats->batch_seq, o->seq);
    submit_write(w, slot);
}

static void write_done(struct wal *w, uint32_t slot);

static void on_write(struct wal *w, uint32_t slot, int res)
{
    KV_ASSERT(slot < w->depth && w->w_count > 0);
    struct wal_write *wr = &w->writes[slot];
    KV_ASSERT(wr->buf != NULL && !wr->complete);
    if (KV_FAILPOINT_ERROR("wal-write-eio")) {
        res = -EIO; /* tests: the device failed this write */
    }
    if (res <= 0) {
        /* always: exits. Otherwise writes are refused from now on, and this batch is
         * given up (nothing waited for it) so that the ring drains. */
        fatal(w, "write", res == 0 ? ENOSPC : -res);
        res = (int)(wr->span - wr->done);
    }
    wr->done += (uint64_t)res;
    if (wr->done < wr->span) {
        submit_write(w, slot); /* a short write: the rest */
        return;
    }
    if (wr->syncs > 0) {
        return; /* its linked fdatasyncs complete it */
    }
    write_done(w, slot);
}

/* A linked fdatasync of the slot's batch completed (res: its result). The batch is
 * durable once its last piece is written and every sync submitted for it is done: the
 * last piece's sync started after that piece was written, and the slot is reused only
 * then, so a late sync of an earlier piece never counts for another batch. */
static void on_write_sync(struct wal *w, uint32_t slot, int res)
{
    KV_ASSERT(slot < w->depth && w->w_count > 0);
    struct wal_write *wr = &w->writes[slot];
    KV_ASSERT(wr->buf != NULL && !wr->complete && wr->syncs > 0);
    wr->syncs--;
    if (res < 0 && res != -ECANCELED) { /* (cancelled: its write failed or was short) */
        fatal(w, "fdatasync", -res);    /* (returns only when no longer in `always` mode:
                                         * the batch is given up, as a failed write's) */
    }
    if (wr->syncs == 0 && wr->done == wr->span) {
        write_done(w, slot);
    }
}

/* The slot's batch is on stable storage (appendfsync always) or written. */
static void write_done(struct wal *w, uint32_t slot)
{
    struct wal_write *wr = &w->writes[slot];
    /* After the write and its sync (RWF_DSYNC, or the linked fdatasync), before any
     * reply. */
    KV_FAILPOINT("wal-after-write");
    wr->complete = true;
    uint64_t us = (kv_clock_mono_ns() - wr->t0) / 1000;
    STAT_ADD(w->stats->write_us, us);
    if (us > STAT_GET(w->stats->write_us_max)) {
        STAT_SET(w->stats->write_us_max, us);
    }
    STAT_ADD(w->stats->batches, 1);
    STAT_ADD(w->stats->bytes, wr->span);
    STAT_ADD(w->stats->bytes_since, wr->span);
    w->written_since_sync = true;
    /* What is durable is the prefix of completed writes: a later batch may complete
     * first, and its replies wait for the earlier ones. */
    while (w->w_count > 0 && w->writes[w->w_head].complete) {
        struct wal_write *h = &w->writes[w->w_head];
        if (fsync_mode() == WAL_FSYNC_ALWAYS && h->buf->token > w->durable) {
            w->durable = h->buf->token;
        }
        w->acked_seq = h->buf->seq;
        w->free_bufs[w->nfree++] = h->buf;
        *h = (struct wal_write){0};
        w->w_head = (w->w_head + 1) % w->depth;
        w->w_count--;
    }
    STAT_SET(w->stats->durable, w->durable);
}

static void on_sync(struct wal *w, int res)
{
    w->sync_inflight = false;
    if (res < 0) {
        fatal(w, "fdatasync", -res);
        return;
    }
    STAT_ADD(w->stats->syncs, 1);
}

void wal_on_cqe(struct wal *w, struct io_uring_cqe *cqe, uint64_t ud)
{
    if (ud >= SHARD_UD_WAL_WRITE && ud < SHARD_UD_WAL_WRITE + WAL_DEPTH_MAX) {
        on_write(w, (uint32_t)(ud - SHARD_UD_WAL_WRITE), cqe->res);
        return;
    }
    if (ud >= SHARD_UD_WAL_WRITE + WAL_DEPTH_MAX && ud < SHARD_UD_WAL_WRITE + 2 * WAL_DEPTH_MAX) {
        on_write_sync(w, (uint32_t)(ud - SHARD_UD_WAL_WRITE - WAL_DEPTH_MAX), cqe->res);
        return;
    }
    switch (ud) {
    case SHARD_UD_WAL_FILL:
        on_fill(w, cqe->res);
        break;
    case SHARD_UD_WAL_SYNC:
        on_sync(w, cqe->res);
        break;
    default:
        KV_ASSERT(0);
    }
}

_Static_assert(SHARD_UD_WAL_WRITE + 2 * WAL_DEPTH_MAX - 1 <= SHARD_UD_WAL_LAST,
               "the user_data of a batch write and of its linked sync fit the WAL's range");

/* Records in the batches being written (and not yet retired). */
static uint64_t inflight_records(const struct wal *w)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < w->w_count; i++) {
        n += w->writes[(w->w_head + i) % w->depth].buf->count;
    }
    return n;
}

void wal_turn(struct wal *w, int64_t now_ms)
{
    if (w->failed) {
        return;
    }
    /* The spare is prepared once the current segment is half full, or at once when the
     * open batch does not fit in what is left. */
    bool half =
        w->cur_off > w->seg_bytes / 2 || w->cur_off + walfmt_round_up(w->open->len) > w->seg_bytes;
    if (!w->spare_inflight && ((w->spare == SPARE_NONE && half) ||
                               (w->spare == SPARE_FAILED && now_ms >= w->spare_retry_ms))) {
        spare_start(w, now_ms);
    }
    if (w->w_count < w->depth && w->open->count > 0) {
        bool go = true;
        if (fsync_mode() == WAL_FSYNC_ALWAYS && w->w_count > 0) {
            /* Another write joins those in flight only once the open batch holds as
             * many records as they do together: where synced writes overlap on the
             * device it starts at once, and where they queue (a virtual disk) the
             * batches stay as large as with one write at a time instead of being cut
             * small (docs/ARCHITECTURE.md, group commit). */
            go = w->open->count >= inflight_records(w);
        }
        if (fsync_mode() != WAL_FSYNC_ALWAYS) {
            go = w->open->len >= WAL_LAZY_BYTES || now_ms - w->open->first_ms >= WAL_LAZY_MS ||
                 w->closing;
        }
        if (go) {
            start_write(w);
        }
    }
    if (fsync_mode() == WAL_FSYNC_EVERYSEC && !w->sync_inflight && w->written_since_sync &&
        now_ms - w->last_sync_ms >= 1000) {
        struct io_uring_sqe *sqe = shard_sqe(w->sh);
        io_uring_prep_fsync(sqe, w->cur_fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, SHARD_UD_WAL_SYNC);
        w->sync_inflight = true;
        w->written_since_sync = false;
        w->last_sync_ms = now_ms;
    }
    STAT_SET(w->stats->refusing, wal_refusing(w) != 0);
}

void wal_trim(struct wal *w, uint64_t seq)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < w->nsegs; i++) {
        struct wal_seg *s = &w->segs[i];
        bool current = i == w->nsegs - 1;
        if (!current && s->has_batches && s->last_seq < seq) {
            unlink_segment(w, s->segno);
            kv_log_verbose("WAL segment deleted shard=%u segment=%llu", w->shard_id,
                           (unsigned long long)s->segno);
            continue;
        }
        w->segs[keep++] = *s;
    }
    w->nsegs = keep;
    STAT_SET(w->stats->segments, w->nsegs);
}

void wal_close(struct wal *w)
{
    KV_ASSERT(w->w_count == 0 && !w->sync_inflight && !w->spare_inflight);
    if (w->open->count > 0 && !w->failed) {
        /* left over when the spare could not be prepared: written in place, the segment
         * grows (shutdown only; nothing in it was acknowledged in `always` mode) */
        struct wal_buf *b = w->open;
        uint64_t span = walfmt_round_up(b->len);
        struct walfmt_batch h;
        walfmt_batch_seal(&h, b->count, b->len - sizeof h, b->seq, w->acked_seq);
        memcpy(b->p, &h, sizeof h);
        memset(b->p + b->len, 0, span - b->len);
        if (pwrite(w->cur_fd, b->p, span, (off_t)w->cur_off) != (ssize_t)span) {
            kv_log_warning("WAL write at shutdown failed shard=%u err=%s", w->shard_id,
                           strerror(errno));
        }
    }
    if (w->cur_fd >= 0) {
        fdatasync(w->cur_fd);
        close(w->cur_fd);
    }
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        unlink_segment(w, w->spare_segno);
    }
    close(w->dirfd);
    for (uint32_t i = 0; i <= w->depth; i++) {
        mi_free(w->bufs[i].p);
    }
    mi_free(w->zeros);
    mi_free(w->hdr_blk);
    mi_free(w);
}
