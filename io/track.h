/*
 * track: CLIENT TRACKING, Redis's server-assisted client-side caching.
 *
 * Default mode. A read-only command of a tracking client remembers its keys in the
 * tracking table of the shard owning them (trktab.h: key -> readers, each reader the
 * client's id and shard). A change of a tracked key (any cmd_log_* call, an expiry, an
 * eviction) takes the key's readers out and makes one invalidation record per reader.
 * BCAST mode. The prefixes of every BCAST client are in one server-wide registry (a
 * mutex, taken when a client changes its prefixes); each shard keeps a copy, renewed
 * when the registry's generation moves, and matches the keys changed during a loop turn
 * against it at the turn's end: one record per prefix and client, as Redis sends one
 * message per prefix per event loop.
 *
 * Records travel to the client's shard (XM_INVALIDATE, batched per loop turn; records for
 * this shard's own clients wait in the same kind of buffer) which writes the push:
 * RESP3 ">2 invalidate [keys]", or to the REDIRECT client (on any shard) as a push or,
 * for a RESP2 client in pub/sub mode, a message of channel __redis__:invalidate. A
 * client with REDIRECT has a route in a server-wide registry: the key's shard sends its
 * records straight to the REDIRECT client's shard, so that invalidations for one
 * connection keep the order of the changes whichever clients they are for. A
 * FLUSHALL / FLUSHDB sends a null invalidation to every tracking client. Records for
 * this shard's clients are delivered after the command that made them has replied
 * (never inside a reply), and a push follows the replies its client already waits for.
 *
 * Cost when nobody tracks: one load per change (table empty, no BCAST registration) and
 * one pointer test per command of the client.
 *
 * Limit: tracking-table-max-keys on the node's total (Redis: one table): each shard keeps
 * its fair part and more while the others leave room; over it, keys are taken out (their
 * readers invalidated) when one is added, once per loop turn, and before a CONFIG SET of
 * the limit replies (track_limit_changed).
 *
 * Thread: the shard thread that owns the state named (connection, table), except the
 * registry functions, which lock.
 */
#ifndef KVD_TRACK_H
#define KVD_TRACK_H

#include "server.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmd_ctx;
struct cmd_desc;
struct conn;
struct resp_arg;
struct track_conn;

/* BCAST registrations over all clients (for the per-change test). */
extern _Atomic uint32_t track_bcast_regs;

/* Per-shard state: made at setup, freed at teardown (no client left). */
int track_shard_setup(struct shard *sh);
void track_shard_teardown(struct shard *sh);

/* The shard id to remember this command's reads for (the client's own shard), or -1:
 * tracking off, BCAST mode, or OPTIN/OPTOUT says not this command. */
int32_t track_reads(const struct track_conn *t, uint32_t shard);

/* After a command of a tracking client: CLIENT CACHING applies to the next command (or
 * transaction) only. `client_cmd`: it was a CLIENT command (which keeps it). */
void track_command_done(struct track_conn *t, bool client_cmd, bool in_multi);

/* A read-only command ran here for client (id, client_shard): remembers its keys. */
void track_remember(struct shard *sh, uint32_t client_shard, uint64_t id, const struct cmd_desc *d,
                    size_t argc, const struct resp_arg *argv);

/* A script's declared keys (argv[0..n)): those this shard owns are remembered. */
void track_remember_local(struct shard *sh, uint32_t client_shard, uint64_t id,
                          const struct resp_arg *keys, size_t n);

/* Key changed on this shard (by client `modifier`, 0 for none: expiry, eviction). */
void track__changed(struct shard *sh, const char *key, size_t klen, uint64_t modifier);
static inline void track_changed(struct shard *sh, const char *key, size_t klen, uint64_t modifier)
{
    if (sh->track_keys > 0 || atomic_load_explicit(&track_bcast_regs, memory_order_relaxed) > 0) {
        track__changed(sh, key, klen, modifier);
    }
}

/* FLUSHALL / FLUSHDB ran on this shard: forgets its table and tells its own tracking
 * clients (every shard runs it, so every client hears once). */
void track_flushed(struct shard *sh);

/* Delivers the records waiting for this shard's own clients: call where no reply is
 * being written (after a command, before the next). Not inside a busy turn (the command
 * it interrupts may be writing one): the loop's track_turn delivers them after. */
void track__deliver(struct shard *sh);
static inline void track_deliver(struct shard *sh)
{
    if (sh->track_local > 0 && !sh->in_busy_turn) {
        track__deliver(sh);
    }
}

/* End of a loop turn: BCAST matching, then local delivery and the other shards'
 * batches; a test of three plain fields and one load when nobody tracks here. */
extern _Atomic uint64_t track_limit_gen;
void track__turn(struct shard *sh);
static inline void track_turn(struct shard *sh)
{
    if (sh->track_pending || sh->track_keys > 0 ||
        atomic_load_explicit(&track_limit_gen, memory_order_acquire) != sh->track_limit_seen) {
        track__turn(sh);
    }
}

/* XM_INVALIDATE from another shard: delivers its records (frees the payload). */
void track_on_message(struct shard *sh, const struct xmsg *m);

/* CONFIG SET tracking-table-max-keys: returns the generation every shard's track_turn
 * applies next (it takes out the keys over the limit and sends their invalidations
 * before it counts as applied); wake the shards. Any thread. */
uint64_t track_limit_changed(void);

/* Whether every shard has applied the limit of generation gen (and queued the records
 * it made): a CONFIG SET's reply waits for it, so that a client's next command runs
 * after the invalidations, as in Redis, where the limit applies before it. */
bool track_limit_applied(const struct server *srv, uint64_t gen);

/* Timer: applies tracking-table-max-keys (after CONFIG SET lowered it). */
void track_cron(struct shard *sh);

/* The connection leaves tracking (closing, RESET, CLIENT TRACKING OFF). */
void track_conn_drop(struct shard *sh, struct conn *c);

/* CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO (x->conn's state). */
void track_cmd_tracking(struct cmd_ctx *x);
void track_cmd_caching(struct cmd_ctx *x);
void track_cmd_getredir(struct cmd_ctx *x);
void track_cmd_trackinginfo(struct cmd_ctx *x);

/* CLIENT LIST / INFO: flags letters (t, R, B appended to buf) and redir= (-1: off). */
size_t track_client_flags(const struct track_conn *t, char *buf);
int64_t track_client_redir(const struct track_conn *t);

/* INFO tracking_total_prefixes: distinct BCAST prefixes (locks the registry). */
uint64_t track_prefixes(void);

#endif
