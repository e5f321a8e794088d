/*
 * recover: a shard's start-up recovery, on the shard's own thread (all shards in
 * parallel), before it serves anyone.
 *
 *   1. For each of its partitions, load the newest snapshot (every chunk and the whole
 *      file checksummed); leftover "*.tmp" files of an interrupted round are deleted.
 *   2. Replay the shard's WAL segments in order, skipping each record at or below its
 *      partition's snapshot LSN, and segments a snapshot round had already passed.
 *      A segment of a WAL switched on at run time (its header's base_lsn, aof.h) whose
 *      base dump was never finished (some partition's snapshot is older than the base)
 *      is set aside with every later one ("<segment>.unbased"): the start is then the
 *      last finished dump, not a mix.
 *   3. A batch that fails its checks with nothing valid after it is a torn tail: the
 *      file is cut there and the cut bytes kept aside as "<segment>.torn-<offset>".
 *      A bad batch followed by a valid one is corruption: recovery refuses (kvd exits
 *      with a message naming file and offset) unless repair is set; then the log is cut
 *      there, the rest kept aside ("<segment>.corrupt-<offset>", later segments renamed
 *      "<segment>.corrupt") and the number of records dropped is logged.
 *
 * The data directory's layout (threads and partitions) is recorded in every segment and
 * snapshot; a start with another layout is refused with a message saying which.
 */
#ifndef RECOVER_H
#define RECOVER_H

#include <stdbool.h>
#include <stdint.h>

struct shard;

/* A segment recovery kept: the WAL deletes it once a snapshot round passes it. */
struct recover_seg {
    uint64_t segno;
    uint64_t last_seq;
};

struct recover_result {
    struct recover_seg *segs; /* malloc'ed; free() it */
    uint32_t nsegs;
    uint64_t next_segno; /* first free segment number */
    uint64_t next_seq;   /* next batch sequence number */
    uint64_t snap_keys;  /* entries loaded from snapshots */
    uint64_t snapshots;  /* snapshot files loaded */
    uint64_t records;    /* WAL records replayed (applied) */
    uint64_t segments;   /* WAL segments read */
    uint64_t wal_bytes;  /* bytes of WAL read */
    uint64_t torn_bytes; /* bytes cut from a torn tail */
    uint64_t dropped;    /* records dropped by --repair */
    int64_t ms;          /* time taken */
    bool need_snapshot;  /* --repair dropped what only a fresh snapshot can make whole */
};

/* Recovers shard `sh`'s tables from sh->srv's data directory. 0, or -1 after logging
 * why kvd must not start. */
int recover_shard(struct shard *sh, const char *dir, bool repair, struct recover_result *out);

#endif
