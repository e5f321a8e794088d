/*
 * aof: switching appendonly at run time (see aof.h).
 */
#include "aof.h"

#include "conn.h"
#include "dump.h"
#include "kv_assert.h"
#include "kv_log.h"
#include "kvd_settings.h"
#include "route.h"
#include "server.h"
#include "snap.h"
#include "wal.h"

#include <stdatomic.h>
#include <string.h>

#define AOF_UNDO UINT64_MAX /* aof_switch_parked: back to standby (nothing was logged) */

static bool wanted(void)
{
    return KV_CONF_GET(kvd_settings.appendonly) != 0;
}

/* Makes the standby WAL (and the snapshot writer, once). */
static void prepare(struct shard *sh)
{
    if (sh->now_ms < sh->aof_retry_ms) {
        return;
    }
    int rc = 0;
    if (sh->snap == NULL) {
        rc = snap_init(&sh->snap, sh, kvd_settings.dir);
    }
    struct wal_open_args a = {
        .dir = kvd_settings.dir,
        .shard = sh->id,
        .threads = sh->srv->nthreads,
        .partitions = sh->srv->route->count,
        .segno = sh->wal_segno,
        .next_seq = sh->dump_wal_seq,
        .segment_bytes = (uint64_t)KV_CONF_GET(kvd_settings.wal_segment_size),
        .depth = (uint32_t)KV_CONF_GET(kvd_settings.wal_writes_in_flight),
        .token = sh->wal_token,
        .stats = &sh->wal_stats,
    };
    if (rc == 0) {
        rc = wal_open(&sh->wal_standby, sh, &a);
    }
    if (rc != 0) {
        sh->wal_standby = NULL;
        sh->aof_retry_ms = sh->now_ms + AOF_RETRY_MS;
        kv_log_warning("appendonly yes: shard %u cannot create its WAL in dir=%s err=%s "
                       "(tried again in %d ms)",
                       sh->id, kvd_settings.dir, strerror(-rc), AOF_RETRY_MS);
        return;
    }
    atomic_store_explicit(&sh->aof_ready, 1, memory_order_release);
}

/* Closes a WAL that was never logged to (appendonly no again before the switch). */
static void drop_standby(struct shard *sh)
{
    atomic_store_explicit(&sh->aof_ready, 0, memory_order_relaxed);
    sh->wal_segno = wal_next_segno(sh->wal_standby);
    wal_close(sh->wal_standby); /* (its empty segment goes at the next start or dump) */
    sh->wal_standby = NULL;
}

/* A WAL switched off: written out over the loop's turns, then closed. Only once all it
 * holds is written (a WAL refusing for want of space keeps trying, as it does logging:
 * the replies waiting for it are released only when it is durable). */
static void drain_step(struct shard *sh)
{
    struct wal *w = sh->wal_drain;
    wal_turn(w, sh->now_ms);
    conn_durability_turn(sh);
    if (snap_busy(sh->snap) || wal_busy(w)) {
        return; /* (the cancelled round's completion comes first too) */
    }
    sh->wal_token = wal_appended(w);
    sh->wal_segno = wal_next_segno(w);
    sh->dump_wal_seq = wal_open_seq(w); /* (nothing open: the next batch number) */
    wal_close(w);
    sh->wal_drain = NULL;
    if (sh->refusing) {
        sh->refusing = 0;
        atomic_fetch_sub(&sh->srv->wal_refusing, 1);
    }
    conn_durability_turn(sh); /* (nothing waits any more) */
    kv_log_verbose("appendonly no: shard %u closed its WAL", sh->id);
}

void aof_switch_parked(struct shard *sh, uint64_t lsn)
{
    if (lsn == AOF_UNDO) {
        KV_ASSERT(sh->wal != NULL && sh->wal_standby == NULL);
        sh->wal_standby = sh->wal;
        sh->wal = NULL;
        atomic_store_explicit(&sh->aof_ready, 1, memory_order_release);
        return;
    }
    if (lsn != 0) {
        KV_ASSERT(sh->wal == NULL && sh->wal_drain == NULL);
        if (sh->wal_standby == NULL) {
            return; /* (dropped meanwhile: the switch is undone) */
        }
        if (wal_set_base(sh->wal_standby, lsn) != 0) {
            kv_log_warning("appendonly yes: shard %u cannot write its WAL's header", sh->id);
            return;
        }
        sh->wal = sh->wal_standby;
        sh->wal_standby = NULL;
        atomic_store_explicit(&sh->aof_ready, 0, memory_order_relaxed);
        return;
    }
    KV_ASSERT(sh->wal != NULL && sh->wal_drain == NULL);
    snap_cancel(sh->snap); /* no rename, deletion or trim after the switch */
    sh->wal_drain = sh->wal;
    sh->wal = NULL;
    wal_closing(sh->wal_drain);
}

/* Runs aof_switch_parked on shard o: here, or posted to it (parked). */
static void switch_on(struct shard *sh, uint32_t o, uint64_t lsn)
{
    if (o == sh->id) {
        aof_switch_parked(sh, lsn);
    } else {
        conn_post_aof(sh, o, lsn);
    }
}

/* Shard 0, every shard ready: the switch (see aof.h). */
static void switch_on_all(struct shard *sh)
{
    struct server *srv = sh->srv;
    if (dump_in_progress(srv) || !conn_park_all(sh)) {
        return; /* a dump first (it must not bump LSNs meanwhile), or another's lock */
    }
    bool ready = atomic_load(&srv->dump.pid) == 0 && wanted(); /* (since we looked) */
    for (uint32_t o = 0; o < srv->nthreads && ready; o++) {
        ready = srv->shards[o].wal_standby != NULL; /* (a CONFIG SET no dropped one) */
    }
    if (!ready) {
        conn_release_all(sh);
        return;
    }
    uint64_t lsn = dump_bump_lsns(srv);
    uint32_t done = 0;
    for (; done < srv->nthreads; done++) {
        switch_on(sh, done, lsn);
        if (srv->shards[done].wal == NULL) {
            break; /* its header could not be written (logged) */
        }
    }
    if (done < srv->nthreads) {
        for (uint32_t o = 0; o < done; o++) {
            switch_on(sh, o, AOF_UNDO);
        }
        sh->aof_retry_ms = sh->now_ms + AOF_RETRY_MS;
        conn_release_all(sh);
        return;
    }
    atomic_store(&srv->aof_base_pending, true);
    atomic_store(&srv->persist, true);
    dump_base_parked(sh, lsn);
    conn_release_all(sh);
    kv_log_notice("appendonly yes: every write is logged from LSN %llu on; the base dump "
                  "follows",
                  (unsigned long long)lsn);
}

static void switch_off_all(struct shard *sh)
{
    struct server *srv = sh->srv;
    if (!conn_park_all(sh)) {
        return;
    }
    if (wanted()) { /* (yes again since we looked) */
        conn_release_all(sh);
        return;
    }
    for (uint32_t o = 0; o < srv->nthreads; o++) {
        switch_on(sh, o, 0);
    }
    atomic_store(&srv->persist, false);
    atomic_store(&srv->aof_base_pending, false);
    conn_release_all(sh);
    kv_log_notice("appendonly no: the WAL is switched off (what it holds stays until the "
                  "next dump)");
}

/* Shard 0: switches when every shard is ready; makes the base again after a failure. */
static void coordinate(struct shard *sh, bool want, bool on)
{
    struct server *srv = sh->srv;
    if (want && !on) {
        if (sh->now_ms < sh->aof_retry_ms) {
            return;
        }
        for (uint32_t o = 0; o < srv->nthreads; o++) {
            if (!atomic_load_explicit(&srv->shards[o].aof_ready, memory_order_acquire)) {
                return;
            }
        }
        switch_on_all(sh);
    } else if (!want && on) {
        switch_off_all(sh);
    } else if (on && atomic_load(&srv->aof_base_pending) && !dump_in_progress(srv)) {
        struct dump_state *d = &srv->dump;
        uint64_t gen = atomic_load(&srv->aof_base_gen);
        if (atomic_load(&d->done) >= gen) {
            atomic_store(&srv->aof_base_pending, false);
            kv_log_notice("appendonly yes: the base dump is written; the WAL is whole");
        } else if (atomic_load(&d->failed) >= gen &&
                   sh->now_ms - atomic_load(&d->started_ms) >= DUMP_RETRY_MS) {
            atomic_store(&srv->aof_base_gen, dump_request(sh, true));
        }
    }
}

void aof_turn(struct shard *sh)
{
    struct server *srv = sh->srv;
    bool want = wanted();
    bool on = atomic_load_explicit(&srv->persist, memory_order_relaxed);
    if (KV_LIKELY(
            want == on && sh->wal_drain == NULL && sh->wal_standby == NULL &&
            (sh->id != 0 || !atomic_load_explicit(&srv->aof_base_pending, memory_order_relaxed)))) {
        return;
    }
    if (sh->wal_drain != NULL) {
        drain_step(sh);
    }
    if (atomic_load_explicit(&srv->stopping, memory_order_relaxed)) {
        return; /* no switch once stopping: the shards leave their loops (none may park) */
    }
    if (want && !on && sh->wal_standby == NULL && sh->wal_drain == NULL) {
        prepare(sh);
    } else if (!want && sh->wal_standby != NULL) {
        drop_standby(sh);
    }
    if (sh->id == 0) {
        coordinate(sh, want, on);
    }
}

bool aof_base_pending(struct server *srv)
{
    return atomic_load(&srv->aof_base_pending);
}

bool aof_rewrite_in_progress(struct server *srv)
{
    return aof_base_pending(srv) && atomic_load(&srv->dump.pid) != 0;
}

bool aof_rewrite_scheduled(struct server *srv)
{
    bool on = atomic_load(&srv->persist);
    if (wanted() != on) { /* (the switch, either way, waits for shard 0) */
        return true;
    }
    return aof_base_pending(srv) && atomic_load(&srv->dump.pid) == 0;
}

struct wal *aof_durable_wal(struct shard *sh)
{
    return sh->wal != NULL ? sh->wal : sh->wal_drain;
}
