/*
 * aof: switching appendonly (the WAL and its snapshot rounds) on and off at run time,
 * as Redis's CONFIG SET appendonly yes|no.
 *
 * CONFIG SET changes the setting and wakes every shard; the switch itself happens in
 * the shards' loops, and the reply does not wait for it (as Redis's, whose AOF is
 * written in the background).
 *
 * On. Each shard first makes a standby WAL on its own thread (its first segment
 * created and zero-filled, nothing logged to it yet). Once every shard has one and no
 * dump is running, shard 0 parks every shard (conn_park_all), sets every partition's
 * LSN to one new value G past all (dump_bump_lsns), has each shard write G into its
 * standby's segment header as the WAL's base and start logging to it (a TXO_AOF
 * operation, run by the parked shard itself), marks persistence on, forks a dump at G
 * (the base: the data of that instant) and releases them. From then on every write
 * is in a WAL. Until the base is finished (its marker written, dump.h) the new WAL
 * has nothing to stand on: a crash then restarts from the previous dump, and recovery
 * sets the new WAL's segments aside (a segment whose base LSN is above a partition's
 * loaded snapshot: recover.h). So the switch is atomic on disk too: all of the new
 * WAL or none of it. Snapshot rounds wait for the base; a failed base dump is tried
 * again every DUMP_RETRY_MS; SHUTDOWN is refused meanwhile ("Writing initial AOF,
 * can't exit.", as Redis).
 *
 * Off. Shard 0 parks every shard and has each stop logging: its WAL writes out what it
 * holds (replies waiting for it are released once it is durable, as before) over the
 * next loop turns and is closed; a running snapshot round is given up. The files stay
 * until the next dump, which covers them (every dump is at an LSN past all).
 *
 * Thread: aof_turn on each shard's loop; aof_switch_parked on a parked shard (or the
 * switching shard itself); the queries from any thread.
 */
#ifndef AOF_H
#define AOF_H

#include <stdbool.h>
#include <stdint.h>

struct server;
struct shard;

#define AOF_RETRY_MS 1000 /* a standby WAL that could not be made is tried again after */

/* Once per loop turn: prepares or drops the standby WAL, writes out a WAL switched off,
 * and (shard 0) switches when every shard is ready. Cheap while nothing is to do. */
void aof_turn(struct shard *sh);

/* On the parked shard (TXO_AOF) or the switching one: lsn != 0 starts logging to the
 * standby WAL with base lsn; 0 stops logging (the WAL is written out by aof_turn). */
void aof_switch_parked(struct shard *sh, uint64_t lsn);

/* INFO: appendonly's switch or base dump waits to start / its base dump runs. */
bool aof_rewrite_scheduled(struct server *srv);
bool aof_rewrite_in_progress(struct server *srv);

/* The base of a WAL switched on is being made: the server must not stop (SHUTDOWN). */
bool aof_base_pending(struct server *srv);

/* The WAL a reply's token is compared with: the logging one, else one being written
 * out, else NULL (nothing to wait for). */
struct wal *aof_durable_wal(struct shard *sh);

#endif
