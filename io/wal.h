/*
 * wal: one shard's write-ahead log writer, on the shard's own io_uring ring.
 *
 * Group commit. Records appended during a loop turn go into the open batch. At the
 * end of the turn (wal_turn) the open batch is sealed and written, unless `depth`
 * batches are already being written: then it keeps filling, and is written as soon as
 * one completes. Writes in flight complete in any order (a synced write's latency is
 * the device's, and several overlap: measured 2x the rate at 2 in flight, 4x at 4);
 * what is durable is the prefix of completed batches, and each batch header records
 * the last batch of that prefix when it was sealed (`acked`), so that recovery can
 * tell an interrupted write (later batches never acknowledged) from corruption.
 *
 * Durability. With appendfsync always each batch is one O_DIRECT write with RWF_DSYNC
 * (the data and whatever metadata reading it needs are on stable storage when it
 * completes), or, with wal-sync-method fdatasync, a plain O_DIRECT write with an
 * fdatasync linked after it (IOSQE_IO_LINK: it starts once the write is complete);
 * `wal_durable()` then moves to the batch's last record. The caller holds
 * the reply of a command until wal_durable() reaches the value wal_appended() had
 * when the command ran. With `everysec` an fdatasync is issued once a second, with
 * `no` never; in both, wal_durable() equals wal_appended() at once (replies are not
 * held, and the last second, or what the device caches, may be lost).
 *
 * Segments are preallocated and zero-filled before they are used (a spare is
 * prepared in the background while the current one fills), so that a write in
 * `always` mode needs no metadata update. A batch larger than a whole segment still
 * goes into one segment, which then grows.
 *
 * Errors. A failed write or sync in `always` mode is fatal: it is logged and the
 * process exits with status 1 (what it covered was never acknowledged). In the other
 * modes writes are refused from then on (wal_refusing). When the next segment cannot
 * be prepared for lack of space, write commands are refused (-MISCONF) until a retry,
 * once a second, succeeds; reads go on.
 *
 * Without `always`, nothing waits for a batch, so batches are written lazily: once
 * 64 KiB or 2 ms old (each write costs a device submission, which on a virtual disk
 * is a VM exit). A crash of the process can then lose the last 2 ms of writes, a
 * power loss the last second (everysec) or whatever the device cached (no).
 *
 * Thread: the owning shard's thread only; the stats are read by INFO from any thread.
 */
#ifndef WAL_H
#define WAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "walfmt.h"

struct io_uring_cqe;
struct recover_seg;
struct shard;
struct wal;

#define WAL_DEPTH_MAX 8 /* batch writes in flight at most (wal-writes-in-flight) */

enum wal_fsync {
    WAL_FSYNC_ALWAYS = 0,
    WAL_FSYNC_EVERYSEC = 1,
    WAL_FSYNC_NO = 2,
};

/* wal-sync-method (kvd_settings.c) */
enum wal_sync {
    WAL_SYNC_DSYNC = 0,
    WAL_SYNC_FDATASYNC = 1,
};

struct wal_open_args {
    const char *dir;
    uint32_t shard;
    uint32_t threads;
    uint32_t partitions;
    uint64_t segno;                /* number of the first segment to create */
    uint64_t next_seq;             /* sequence number of the first batch */
    uint64_t segment_bytes;        /* size of a segment (a multiple of 4 KiB) */
    uint32_t depth;                /* batches written at once, 1..WAL_DEPTH_MAX */
    const struct recover_seg *old; /* segments kept from before the start, in order */
    uint32_t nold;
    uint64_t token;          /* where wal_appended() and wal_durable() start (the last
                              * WAL's end: replies compare tokens across WALs) */
    struct wal_stats *stats; /* where the WAL publishes (the shard's: outlives it) */
};

/* Published for INFO (relaxed atomics, written by the shard only). */
struct wal_stats {
    _Atomic uint64_t appended;         /* records appended */
    _Atomic uint64_t durable;          /* records known durable */
    _Atomic uint64_t batches;          /* batches written */
    _Atomic uint64_t bytes;            /* bytes written, padding included */
    _Atomic uint64_t syncs;            /* fdatasync calls (everysec) */
    _Atomic uint64_t segments;         /* segment files alive */
    _Atomic uint64_t bytes_since;      /* bytes written since the last snapshot round began */
    _Atomic int refusing;              /* write commands refused (disk full or failed) */
    _Atomic int last_write_ok;         /* 0 after a failed write */
    _Atomic uint64_t batch_seq;        /* sequence number of the open batch */
    _Atomic uint64_t appended_at_snap; /* `appended` when the last snapshot round began */
    _Atomic uint64_t write_us;         /* time batches spent being written, in total */
    _Atomic uint64_t write_us_max;     /* the longest batch write */
    _Atomic int device_cache;          /* enum devcache_kind of the WAL's directory */
};

/* Creates the WAL and its first segment (synchronously: at start-up, or on the shard's
 * thread when appendonly is switched on). 0 or -errno. */
int wal_open(struct wal **out, struct shard *sh, const struct wal_open_args *a);

/* Writes what is still open, waits for it and syncs, then frees everything. */
void wal_close(struct wal *w);

/* Appends a record to the open batch (never fails: the batch grows). */
void wal_append(struct wal *w, const struct walfmt_view *r);

/* Records appended, and records durable (see the header comment). */
uint64_t wal_appended(const struct wal *w);
uint64_t wal_durable(const struct wal *w);

/* 0, or the errno why write commands must be refused now (-MISCONF). */
int wal_refusing(const struct wal *w);

/* End of a loop turn: starts the next write, the everysec sync, segment preparation. */
void wal_turn(struct wal *w, int64_t now_ms);

/* True while the WAL has submitted work or records not yet written. */
bool wal_busy(const struct wal *w);

/* Nanoseconds until the WAL wants a loop turn to write a batch it is holding back
 * (gathering in `always`, lazy in the other modes), or -1 if it needs none. */
int64_t wal_timer_ns(const struct wal *w, int64_t now_ms);

/* Shutdown: from now on every turn writes what is open. */
void wal_closing(struct wal *w);

/* True while the WAL has submitted work (a write, a sync, a segment being prepared). */
bool wal_inflight(const struct wal *w);

/* A completion whose user_data is one of the SHARD_UD_WAL_* values. */
void wal_on_cqe(struct wal *w, struct io_uring_cqe *cqe, uint64_t ud);

/* The sequence number of the open batch: every record appended from now on is in a
 * batch with this number or a later one. */
uint64_t wal_open_seq(const struct wal *w);

/* Writes base_lsn into the header of the WAL's first segment, synchronously (a WAL
 * opened at run time, before anything is appended to it). 0 or -errno. */
int wal_set_base(struct wal *w, uint64_t base_lsn);

/* A segment number past every one this WAL made (for the next WAL of the shard). */
uint64_t wal_next_segno(const struct wal *w);

/* Deletes every segment all of whose batches have a sequence number below `seq`. */
void wal_trim(struct wal *w, uint64_t seq);

/* Marks the start of a snapshot round (resets stats.bytes_since). */
void wal_snapshot_started(struct wal *w);

/* The WAL's fsync mode name for INFO. */
const char *wal_fsync_name(int mode);

/* File name of segment `segno` of `shard` (no directory). */
void wal_segment_name(char *buf, size_t cap, uint32_t shard, uint64_t segno);

#endif
