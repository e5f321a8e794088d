/*
 * snap: one shard's snapshot writer, driven from the shard's loop.
 *
 * A round snapshots every partition of the shard, one after the other. For each: note
 * the partition's LSN S, stream its tables (one per database in use, each entry tagged
 * with its database) into "snap-P-S.kvs.tmp" in chunks of about
 * 256 KiB (one chunk filled per loop turn while the previous one is written through
 * the ring, so that no request waits on it for long), write the trailer, fdatasync,
 * rename to "snap-P-S.kvs", fsync the directory, and delete the partition's older
 * snapshots. The snapshot is fuzzy: writes go on meanwhile, and recovery replays the
 * WAL from S + 1 over it (records are physical, so replaying what the snapshot already
 * holds is harmless). A SWAPDB on the shard while a partition is being streamed starts
 * that partition over (its record is not idempotent over entries written before it).
 *
 * When every partition is done, the WAL segments whose batches all came before the
 * round began are deleted (wal_trim): each of their records is at or below its
 * partition's new S. The snapshot header keeps that batch sequence number too, so that
 * recovery skips segments a crash left behind before they were deleted.
 *
 * A failed round (a write error, no space) is logged and abandoned; its temporary file
 * is removed and the previous snapshots stay. A round is started again by the next
 * trigger, at the earliest SNAP_RETRY_MS later.
 *
 * Thread: the owning shard's only; the stats are read by INFO from any thread.
 */
#ifndef SNAP_H
#define SNAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_uring_cqe;
struct shard;
struct snap;

struct snap_stats {
    _Atomic int running;
    _Atomic uint64_t rounds_ok;
    _Atomic uint64_t rounds_failed;
    _Atomic int last_ok;            /* 1 if the last round succeeded */
    _Atomic int64_t last_ok_ms;     /* end of the last successful round (wall clock) */
    _Atomic int64_t last_round_ms;  /* duration of the last round */
    _Atomic int64_t started_ms;     /* start of the running round */
    _Atomic uint64_t done_target;   /* SAVE generation the last successful round covered */
    _Atomic uint64_t failed_target; /* SAVE generation the last failed round covered */
    _Atomic uint64_t keys;          /* entries written by the last round */
    _Atomic uint64_t bytes;         /* bytes written by the last round */
};

int snap_init(struct snap **out, struct shard *sh, const char *dir);
void snap_free(struct snap *s);

/* Starts a round covering SAVE requests up to `target`. False if one is running, or
 * (unless `now`) if the last round failed less than SNAP_RETRY_MS ago. */
bool snap_start(struct snap *s, uint64_t target, bool now);

/* True while a round is running. */
bool snap_running(const struct snap *s);

/* One bounded step of the running round (from the shard loop, once per turn). */
void snap_turn(struct snap *s);

/* True while the running round has a write or sync in flight. */
bool snap_busy(const struct snap *s);

/* Gives up the running round (shutdown); only when !snap_busy. */
void snap_abort(struct snap *s);

/* Gives up the running round now, also with a write or sync in flight: its completion
 * only clears snap_busy (no rename, no deletion, no WAL trim). No round may start until
 * !snap_busy. (The WAL switched off at run time, aof.h.) */
void snap_cancel(struct snap *s);

/* A completion whose user_data is SHARD_UD_SNAP. */
void snap_on_cqe(struct snap *s, struct io_uring_cqe *cqe);

struct snap_stats *snap_stats(struct snap *s);

/* A snapshot file's entry for table entry e of database db (struct walfmt_entry, key,
 * value): its size, and its bytes written at dst (that many). Any thread. */
struct tbl_entry;
size_t snap_entry_size(const struct tbl_entry *e);
void snap_entry_put(char *dst, const struct tbl_entry *e, uint32_t db);

/* File name of a snapshot (no directory): "snap-P-L.kvs" of a round, or with `dump`
 * "dump-P-L.kvs" of a dump (dump.h: every partition at one LSN, which recovery uses
 * only if the dump is whole); ".tmp" while being written. */
void snap_file_name(char *buf, size_t cap, uint32_t part, uint64_t lsn, bool tmp);
void snap_dump_file_name(char *buf, size_t cap, uint32_t part, uint64_t lsn, bool tmp);

/* Parses a snapshot file name of either kind, exactly: 2 for a finished file, 3 for one
 * with ".tmp" or ".corrupt..." after it (in tail[16]), 0 for any other name; *dump for
 * "dump-". */
int snap_name_parse(const char *name, unsigned *part, unsigned long long *lsn, char *tail,
                    bool *dump);

#endif
