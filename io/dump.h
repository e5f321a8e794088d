/*
 * dump: point-in-time snapshots with appendonly no (SAVE, BGSAVE, the `save` points,
 * DEBUG RELOAD, FLUSHALL and the save at shutdown), as Redis's RDB.
 *
 * With the WAL on, snapshot rounds are fuzzy and the WAL makes them whole (snap.h).
 * Without it a snapshot must be one instant of the whole node, so it is taken as Redis's
 * BGSAVE takes it: the shard a request came from takes the cross-shard transaction lock,
 * parks every other shard through its queue (behind whatever its clients sent there
 * before, so a client's earlier writes are in), forks, and releases them. The child,
 * the only thread of a copy-on-write image of the process at that instant, writes each
 * partition's snapshot file in the format recovery reads (walfmt.h: header, checksummed
 * chunks, trailer), syncs it, renames it over the previous one, syncs the directory,
 * removes the older snapshots and WAL segments that file covers, and exits 0 (1 on any
 * failure: the previous files stay, the temporary ones are removed at the next start).
 * The shard that forked it watches a pidfd through its ring and reaps it. A WAL that
 * logs while the dump is written (switched on at run time: the dump is its base, aof.h)
 * keeps its segments (those from shard->wal_segno on).
 *
 * At start, with appendonly no, recovery (recover.h, from shard.c) loads those files (and
 * replays any WAL a run with appendonly yes left, so switching modes loses nothing); the
 * files keep each partition's LSN, so a later run with the WAL on replays only what is
 * newer.
 *
 * Thread: dump_request/dump_turn/dump_on_cqe on a shard thread; the stats from any.
 */
#ifndef DUMP_H
#define DUMP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_uring_cqe;
struct server;
struct shard;

#define DUMP_POINTS_MAX      16   /* `save` pairs (seconds, changes) */
#define DUMP_POINTS_TEXT_MAX 512  /* their text form */
#define DUMP_RETRY_MS        5000 /* save points after a failed dump: Redis's retry delay */

/* Server-wide state of the dumps (in struct server). Generations: every request (SAVE,
 * BGSAVE, a save point, ...) takes the next number; a dump covers every request made
 * before it forked. */
struct dump_state {
    _Atomic uint64_t req;          /* requests so far */
    _Atomic uint64_t covered;      /* the newest request a started dump covers */
    _Atomic uint64_t done;         /* ... that a successful dump covered */
    _Atomic uint64_t failed;       /* ... that a failed dump covered */
    _Atomic uint64_t bg;           /* the newest BGSAVE or save point request */
    _Atomic int64_t pid;           /* the child writing, 0 if none */
    _Atomic int64_t started_ms;    /* when the running (or last) one forked */
    _Atomic int64_t last_ok_ms;    /* end of the last successful dump (start-up before one) */
    _Atomic int64_t last_secs;     /* duration of the last dump, -1 before any */
    _Atomic int last_ok;           /* whether the last dump succeeded */
    _Atomic uint64_t saves;        /* successful dumps */
    _Atomic uint64_t changes_fork; /* data changes counted when the running dump forked */
    _Atomic uint64_t changes_base; /* ... when the last successful one forked */
    _Atomic int shutdown;          /* a signal asked to save, then stop: 1 asked, 2 saving */
    _Atomic uint64_t shutdown_gen; /* the request that save is */
    _Atomic int shutdown_force;    /* shutdown-on-sig* force: stop even if that save fails */
    uint64_t lsn_floor;            /* the highest LSN of the files at start: dumps go past it */
};

/*
 * At start, on the main thread before the shards recover (both modes): a dump is finished
 * once its marker "dump-G.done" is written (after all its files are renamed and the
 * directory synced), so dump files of a G above the newest marker are of a dump cut
 * short: removed here, once, before any shard looks; so are older markers. Records the
 * highest LSN of the files left in srv->dump.lsn_floor. 0, or -1 after printing why.
 */
int dump_prepare_dir(struct server *srv, const char *dir);

/* Sets up srv->dump at start (the last save time is the start). */
void dump_init(struct server *srv);

/*
 * The `save` setting: pairs "<seconds> <changes>" separated by spaces, "" for none (as
 * Redis's). dump_points_set validates and applies (0, or -1 with the reason in err),
 * dump_points_check only validates;
 * dump_points_text writes the current value; dump_points_any says whether there is one.
 * Any thread.
 */
int dump_points_set(const char *text, char *err, size_t errlen);
int dump_points_check(const char *text, char *err, size_t errlen);
size_t dump_points_text(char *buf, size_t cap);
bool dump_points_any(void);

/* stop-writes-on-bgsave-error: whether writes (and PING) are refused now, as Redis's:
 * appendonly off, the setting on, save points set, and the last dump failed. One relaxed
 * load when the last dump went well. Any thread. */
bool dump_refuses_writes(const struct server *srv);

/* Asks for a dump covering everything this shard's clients did so far; returns the
 * request's generation (a SAVE waits for dump_state.done to reach it). With `now`, the
 * dump forks at once when it can (a SAVE or BGSAVE: the commands after it in a pipeline
 * are not in it, as with Redis); else, and when it cannot, at the end of the loop turn
 * (FLUSHALL: its parts on other shards must be in their queues before the park).
 * Shard thread. */
uint64_t dump_request(struct shard *sh, bool now);

/* The same for BGSAVE and the save points: what Redis does in a child (while one runs,
 * another BGSAVE is refused; SAVE, FLUSHALL, DEBUG RELOAD and SHUTDOWN save in the
 * foreground there, so here they queue behind a running dump instead). */
uint64_t dump_request_bg(struct shard *sh);

/* Whether a BGSAVE or save point dump is asked for or running. */
bool dump_bg_in_progress(const struct server *srv);

/* Whether a dump is running or asked for (rdb_bgsave_in_progress). */
bool dump_in_progress(const struct server *srv);

/* The data changes since the last successful dump (rdb_changes_since_last_save). */
uint64_t dump_changes_since(const struct server *srv);

/* Once per loop turn of a shard without the WAL: starts the dump its clients asked for
 * when no other runs and the transaction lock is free. Shard thread. */
void dump_turn(struct shard *sh);

/* Every shard parked: sets every partition's LSN to one value past all (any file's
 * too) and returns it. */
uint64_t dump_bump_lsns(struct server *srv);

/* Every shard parked, no dump running: forks a dump at `lsn` (dump_bump_lsns's) as the
 * base of a WAL switched on at run time (aof.h); srv->aof_base_gen is its request. */
void dump_base_parked(struct shard *sh, uint64_t lsn);

/* The shard's timer (shard 0): the save points and a signal's save before stopping. */
void dump_cron(struct shard *sh, int64_t now_ms);

/* The completion of the pidfd poll of the shard's child (SHARD_UD_DUMP). */
void dump_on_cqe(struct shard *sh, struct io_uring_cqe *cqe);

/* At shutdown: kills and reaps a child this shard forked. Shard thread. */
void dump_stop(struct shard *sh);

#endif
