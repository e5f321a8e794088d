/*
 * sim: the deterministic cluster simulator (see sim.h).
 *
 * Time. Virtual time runs in units; a Raft tick is SIM_TICK_UNITS units. A message is
 * delivered 1..delay_max units after it is sent (so messages reorder), in send order
 * among those due at the same unit. Each unit: deliver what is due; on tick boundaries,
 * tick every live node and let the fault injector and the client act.
 *
 * Persistence. After every input a node's ready is processed at once: persist (the
 * simulated disk: hard state, snapshot, entries), restore the snapshot if any, send,
 * apply, advance. A crash may be armed to strike in the middle of the next ready: before
 * anything is persisted (the whole ready is lost) or after persisting but before sending.
 * A restarted node rebuilds raft and meta from its disk only.
 *
 * Checks after every step (sim__fail records the first violation):
 *   - at most one leader per term;
 *   - log matching: two live logs that agree on (index, term) agree on every entry up
 *     to it;
 *   - leader completeness: a new leader holds every entry applied anywhere;
 *   - state machine safety: every node applies the same entry at each index;
 *   - metadata equality: the metadata digest after applying index i (or installing a
 *     snapshot at i) is the same on every node;
 *   - ReadIndex: the index returned is >= every index committed before the request.
 * Liveness: once the fault phase ends (network healed, every node up, no more
 * membership changes), a proposal must commit within SIM_LIVENESS_TICKS.
 */
#include "sim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "meta.h"
#include "raft.h"
#include "raft_codec.h"

#define SIM_NODES_MAX      7
#define SIM_SPARES         2 /* nodes that start outside the configuration */
#define SIM_TICK_UNITS     10
#define SIM_FAULT_TICKS    300
#define SIM_LIVENESS_TICKS 300
#define SIM_READS_MAX      64

enum sim_crash_mode {
    CRASH_NONE = 0,
    CRASH_BEFORE_PERSIST = 1,
    CRASH_BEFORE_SEND = 2,
};

struct sim_disk {
    struct raft_hard_state hs;
    struct raft_snapshot_meta snap;
    uint8_t *snap_data;
    uint32_t snap_len;
    uint64_t last;
    struct raft_entry ents[KV_RAFT_LOG_MAX];
    uint8_t *data; /* KV_RAFT_LOG_MAX slots of KV_RAFT_ENTRY_DATA_MAX */
};

struct sim_node {
    uint64_t id;
    struct raft *r; /* NULL while crashed */
    struct sim_disk disk;
    struct meta_state *meta;
    uint64_t applied;
    uint32_t compact_every;
    enum sim_crash_mode crash;
    enum raft_role role;
    uint64_t term;
    bool log_dirty;
};

struct sim_msg {
    uint64_t at;
    uint64_t from;
    uint64_t to;
    uint32_t len;
    uint8_t *buf;
};

struct sim_rec {
    uint64_t term;
    uint64_t hash;
    bool set;
};

struct sim_read {
    uint64_t node;
    uint64_t context;
    uint64_t min_index;
};

struct sim {
    const struct sim_options *o;
    struct sim_result *res;
    uint64_t rng;
    uint64_t now;
    uint32_t n_nodes;
    struct sim_node nodes[SIM_NODES_MAX];
    struct sim_msg *msgs;
    size_t n_msgs, cap_msgs;
    bool blocked[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1];
    uint32_t drop_pct, dup_pct, corrupt_pct, delay_max; /* per mille, units */
    uint32_t crash_pm, partition_pm, transfer_pm;       /* per tick, per mille */
    uint32_t msg_entries_max; /* small batches make followers ack old-term prefixes */
    uint32_t inflight_max;
    bool faults;
    uint64_t *term_leader;
    size_t cap_terms;
    struct sim_rec *committed;
    uint64_t *digests;
    size_t cap_index;
    uint64_t max_applied;
    struct sim_read reads[SIM_READS_MAX];
    uint32_t n_reads;
    uint64_t read_ctx;
    bool bench;       /* sim_bench: no pairwise log checks */
    uint64_t bytes;   /* encoded bytes delivered */
    uint8_t *scratch; /* META_SNAPSHOT_MAX */
    uint8_t *wire;    /* RAFT_WIRE_MSG_MAX */
};

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t sim__rand(struct sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t sim__below(struct sim *s, uint32_t n)
{
    KV_ASSERT(n > 0);
    return (uint32_t)(sim__rand(s) % n);
}

static bool sim__chance(struct sim *s, uint32_t pct)
{
    return sim__below(s, 1000) < pct;
}

static void sim__trace(struct sim *s, const char *fmt, ...)
{
    if (s->o->trace == NULL) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(s->o->trace, "t=%llu.%llu ", (unsigned long long)(s->now / SIM_TICK_UNITS),
            (unsigned long long)(s->now % SIM_TICK_UNITS));
    vfprintf(s->o->trace, fmt, ap);
    fputc('\n', s->o->trace);
    va_end(ap);
}

static void sim__fail(struct sim *s, const char *fmt, ...)
{
    if (!s->res->ok) {
        return; /* keep the first violation */
    }
    s->res->ok = false;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->res->why, sizeof(s->res->why),
                     "t=%llu: ", (unsigned long long)(s->now / SIM_TICK_UNITS));
    vsnprintf(s->res->why + n, sizeof(s->res->why) - (size_t)n, fmt, ap);
    va_end(ap);
    sim__trace(s, "INVARIANT VIOLATED: %s", s->res->why);
}

static struct sim_node *sim__node(struct sim *s, uint64_t id)
{
    KV_ASSERT(id >= 1 && id <= s->n_nodes);
    return &s->nodes[id - 1];
}

static void sim__grow_index(struct sim *s, uint64_t index)
{
    if (index < s->cap_index) {
        return;
    }
    size_t cap = s->cap_index * 2;
    while (cap <= index) {
        cap *= 2;
    }
    s->committed = realloc(s->committed, cap * sizeof(*s->committed));
    s->digests = realloc(s->digests, cap * sizeof(*s->digests));
    KV_ASSERT(s->committed != NULL && s->digests != NULL);
    memset(s->committed + s->cap_index, 0, (cap - s->cap_index) * sizeof(*s->committed));
    memset(s->digests + s->cap_index, 0, (cap - s->cap_index) * sizeof(*s->digests));
    s->cap_index = cap;
}

static uint64_t sim__entry_hash(const struct raft_entry *e)
{
    return XXH3_64bits_withSeed(e->len > 0 ? e->data : (const void *)"", e->len, e->type);
}

/* ---- invariants -------------------------------------------------------------------- */

static void sim__check_leader(struct sim *s, struct sim_node *n)
{
    struct raft_status st;
    raft_status(n->r, &st);
    if (st.role == RAFT_LEADER) {
        if (st.term >= s->cap_terms) {
            size_t cap = s->cap_terms * 2;
            while (cap <= st.term) {
                cap *= 2;
            }
            s->term_leader = realloc(s->term_leader, cap * sizeof(*s->term_leader));
            KV_ASSERT(s->term_leader != NULL);
            memset(s->term_leader + s->cap_terms, 0,
                   (cap - s->cap_terms) * sizeof(*s->term_leader));
            s->cap_terms = cap;
        }
        uint64_t *l = &s->term_leader[st.term];
        if (*l != 0 && *l != n->id) {
            sim__fail(s, "two leaders in term %llu: n%llu and n%llu", (unsigned long long)st.term,
                      (unsigned long long)*l, (unsigned long long)n->id);
        }
        if (*l == 0) {
            *l = n->id;
        }
    }
    if (st.role != n->role || st.term != n->term) {
        if (st.role == RAFT_LEADER) {
            s->res->elections++;
            char vs[64] = "";
            for (uint32_t k = 0; k < st.conf.n_voters; k++) {
                size_t l = strlen(vs);
                snprintf(vs + l, sizeof(vs) - l, " n%llu", (unsigned long long)st.conf.voters[k]);
            }
            sim__trace(s, "n%llu becomes leader of term %llu (last %llu, commit %llu, voters%s)",
                       (unsigned long long)n->id, (unsigned long long)st.term,
                       (unsigned long long)st.last_index, (unsigned long long)st.commit, vs);
            /* Leader completeness: every entry applied anywhere is in the new log. */
            for (uint64_t i = st.snap_index + 1; i <= s->max_applied; i++) {
                const struct raft_entry *e = raft_log_entry(n->r, i);
                if (e == NULL || e->term != s->committed[i].term ||
                    sim__entry_hash(e) != s->committed[i].hash) {
                    sim__fail(s, "leader n%llu of term %llu lacks committed entry %llu",
                              (unsigned long long)n->id, (unsigned long long)st.term,
                              (unsigned long long)i);
                    break;
                }
            }
        } else if (s->o->trace != NULL && st.role != n->role) {
            static const char *const roles[] = {"follower", "precandidate", "candidate", "leader"};
            sim__trace(s, "n%llu is %s in term %llu", (unsigned long long)n->id, roles[st.role],
                       (unsigned long long)st.term);
        }
        n->role = st.role;
        n->term = st.term;
    }
}

static void sim__check_log_pair(struct sim *s, struct sim_node *a, struct sim_node *b)
{
    struct raft_status sa, sb;
    raft_status(a->r, &sa);
    raft_status(b->r, &sb);
    uint64_t lo = (sa.snap_index > sb.snap_index ? sa.snap_index : sb.snap_index) + 1;
    uint64_t hi = sa.last_index < sb.last_index ? sa.last_index : sb.last_index;
    uint64_t agree = 0;
    for (uint64_t i = hi; i >= lo && i > 0; i--) {
        if (raft_log_entry(a->r, i)->term == raft_log_entry(b->r, i)->term) {
            agree = i;
            break;
        }
    }
    for (uint64_t i = lo; i <= agree; i++) {
        const struct raft_entry *x = raft_log_entry(a->r, i), *y = raft_log_entry(b->r, i);
        if (x->term != y->term || sim__entry_hash(x) != sim__entry_hash(y)) {
            sim__fail(s, "log matching: n%llu and n%llu agree at %llu but differ at %llu",
                      (unsigned long long)a->id, (unsigned long long)b->id,
                      (unsigned long long)agree, (unsigned long long)i);
            return;
        }
    }
}

static void sim__check_logs(struct sim *s)
{
    if (s->bench) {
        return;
    }
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        struct sim_node *a = &s->nodes[i];
        if (a->r == NULL || !a->log_dirty) {
            continue;
        }
        a->log_dirty = false;
        for (uint32_t j = 0; j < s->n_nodes; j++) {
            if (j != i && s->nodes[j].r != NULL) {
                sim__check_log_pair(s, a, &s->nodes[j]);
            }
        }
    }
}

static void sim__check_applied(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
    sim__grow_index(s, e->index);
    struct sim_rec *rec = &s->committed[e->index];
    uint64_t h = sim__entry_hash(e);
    if (!rec->set) {
        rec->set = true;
        rec->term = e->term;
        rec->hash = h;
    } else if (rec->term != e->term || rec->hash != h) {
        sim__fail(s, "state machine safety: n%llu applied term %llu at %llu, others term %llu",
                  (unsigned long long)n->id, (unsigned long long)e->term,
                  (unsigned long long)e->index, (unsigned long long)rec->term);
    }
    if (e->index > s->max_applied) {
        s->max_applied = e->index;
    }
}

static void sim__check_digest(struct sim *s, struct sim_node *n, uint64_t index)
{
    sim__grow_index(s, index);
    uint64_t d = meta_digest(n->meta);
    if (s->digests[index] == 0) {
        s->digests[index] = d;
    } else if (s->digests[index] != d) {
        sim__fail(s, "metadata of n%llu differs from other nodes at applied index %llu",
                  (unsigned long long)n->id, (unsigned long long)index);
    }
}

static uint64_t sim__max_commit(const struct sim *s)
{
    uint64_t c = 0;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        if (s->nodes[i].r != NULL) {
            struct raft_status st;
            raft_status(s->nodes[i].r, &st);
            c = st.commit > c ? st.commit : c;
        }
    }
    return c;
}

static void sim__check_read(struct sim *s, struct sim_node *n, const struct raft_read_state *rs)
{
    for (uint32_t i = 0; i < s->n_reads; i++) {
        struct sim_read *rd = &s->reads[i];
        if (rd->node == n->id && rd->context == rs->context) {
            if (rs->index < rd->min_index) {
                sim__fail(s, "ReadIndex on n%llu returned %llu < committed %llu",
                          (unsigned long long)n->id, (unsigned long long)rs->index,
                          (unsigned long long)rd->min_index);
            }
            s->res->reads++;
            s->reads[i] = s->reads[--s->n_reads];
            return;
        }
    }
    sim__fail(s, "ReadIndex result for unknown context %llu", (unsigned long long)rs->context);
}

/* ---- network ----------------------------------------------------------------------- */

static void sim__enqueue(struct sim *s, uint64_t from, uint64_t to, const uint8_t *buf, size_t len)
{
    if (s->n_msgs == s->cap_msgs) {
        s->cap_msgs = s->cap_msgs ? s->cap_msgs * 2 : 256;
        s->msgs = realloc(s->msgs, s->cap_msgs * sizeof(*s->msgs));
        KV_ASSERT(s->msgs != NULL);
    }
    struct sim_msg *m = &s->msgs[s->n_msgs++];
    m->at = s->now + 1 + sim__below(s, s->delay_max);
    m->from = from;
    m->to = to;
    m->len = (uint32_t)len;
    m->buf = malloc(len);
    KV_ASSERT(m->buf != NULL);
    memcpy(m->buf, buf, len);
    if (s->faults && sim__chance(s, s->corrupt_pct)) {
        m->buf[sim__below(s, (uint32_t)len)] ^= (uint8_t)(1u << sim__below(s, 8));
    }
}

static void sim__send(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    size_t len;
    int rc = raft_msg_encode(m, s->wire, RAFT_WIRE_MSG_MAX, &len);
    KV_ASSERT(rc == 0);
    if (m->to < 1 || m->to > s->n_nodes) {
        return;
    }
    if (s->blocked[m->from][m->to] || (s->faults && sim__chance(s, s->drop_pct))) {
        return;
    }
    sim__enqueue(s, n->id, m->to, s->wire, len);
    if (s->faults && sim__chance(s, s->dup_pct)) {
        sim__enqueue(s, n->id, m->to, s->wire, len);
    }
}

/* ---- disk and lifecycle ------------------------------------------------------------ */

static void sim__persist(struct sim_node *n, const struct raft_ready *rd)
{
    struct sim_disk *d = &n->disk;
    if (rd->snap != NULL) {
        d->snap = *rd->snap;
        memcpy(d->snap_data, rd->snap_data, rd->snap_len);
        d->snap_len = rd->snap_len;
        d->last = rd->snap->index;
    }
    for (uint64_t i = rd->persist_lo; i <= rd->persist_hi; i++) {
        const struct raft_entry *e = raft_log_entry(n->r, i);
        KV_ASSERT(e != NULL && i <= d->last + 1 && i > d->snap.index);
        size_t slot = i & (KV_RAFT_LOG_MAX - 1);
        uint8_t *dst = d->data + slot * KV_RAFT_ENTRY_DATA_MAX;
        memcpy(dst, e->data, e->len);
        d->ents[slot] = *e;
        d->ents[slot].data = dst;
        d->last = i;
    }
    if (rd->hard_state_changed) {
        d->hs = rd->hs;
    }
}

static void sim__crash(struct sim *s, struct sim_node *n, const char *how)
{
    sim__trace(s, "n%llu crashes (%s)", (unsigned long long)n->id, how);
    raft_destroy(n->r);
    n->r = NULL;
    n->crash = CRASH_NONE;
    n->role = RAFT_FOLLOWER;
    /* Outstanding reads of this node can never complete. */
    for (uint32_t i = 0; i < s->n_reads;) {
        if (s->reads[i].node == n->id) {
            s->reads[i] = s->reads[--s->n_reads];
        } else {
            i++;
        }
    }
}

static void sim__maybe_compact(struct sim *s, struct sim_node *n)
{
    struct raft_status st;
    raft_status(n->r, &st);
    if (st.applied - st.snap_index < n->compact_every) {
        return;
    }
    size_t len = meta_snapshot(n->meta, s->scratch, META_SNAPSHOT_MAX);
    int rc = raft_compact(n->r, st.applied, s->scratch, (uint32_t)len);
    KV_ASSERT(rc == 0);
    const uint8_t *data;
    uint32_t dlen;
    const struct raft_snapshot_meta *sm = raft_snapshot(n->r, &data, &dlen);
    n->disk.snap = *sm;
    memcpy(n->disk.snap_data, data, dlen);
    n->disk.snap_len = dlen;
    KV_ASSERT(n->disk.last >= sm->index);
    sim__trace(s, "n%llu compacts its log up to %llu", (unsigned long long)n->id,
               (unsigned long long)sm->index);
}

static void sim__apply(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
    if (rd->snap != NULL) {
        int rc = meta_restore(n->meta, rd->snap_data, rd->snap_len);
        if (rc != 0) {
            sim__fail(s, "n%llu cannot restore snapshot: %s", (unsigned long long)n->id,
                      kv_strerror(rc));
            return;
        }
        s->res->snapshots++;
        n->applied = rd->snap->index;
        sim__trace(s, "n%llu installs snapshot at %llu", (unsigned long long)n->id,
                   (unsigned long long)n->applied);
        if (n->applied > 0) {
            sim__check_digest(s, n, n->applied);
        }
    }
    for (uint64_t i = rd->apply_lo; i <= rd->apply_hi; i++) {
        const struct raft_entry *e = raft_log_entry(n->r, i);
        if (e == NULL || i != n->applied + 1) {
            sim__fail(s, "n%llu: committed entry %llu not applicable (applied %llu)",
                      (unsigned long long)n->id, (unsigned long long)i,
                      (unsigned long long)n->applied);
            return;
        }
        sim__check_applied(s, n, e);
        if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
            enum meta_result mr = meta_apply(n->meta, e->data, e->len);
            if (mr == META_OK) {
                s->res->meta_applied++;
            } else {
                s->res->meta_rejected++;
            }
            if (s->o->trace != NULL && n->id == 1) {
                sim__trace(s, "n1 applies %llu: %s", (unsigned long long)i, meta_result_str(mr));
            }
        }
        n->applied = i;
        sim__check_digest(s, n, i);
    }
    if (rd->apply_hi > s->res->committed) {
        s->res->committed = rd->apply_hi;
    }
}

/* Drains a node's ready: persist, install, send, apply, advance (or crash midway). */
static void sim__process(struct sim *s, struct sim_node *n)
{
    while (n->r != NULL && raft_has_ready(n->r) && s->res->ok) {
        struct raft_ready rd;
        raft_ready(n->r, &rd);
        if (n->crash == CRASH_BEFORE_PERSIST) {
            sim__crash(s, n, "before persisting its ready");
            return;
        }
        sim__persist(n, &rd);
        if (rd.persist_hi >= rd.persist_lo || rd.snap != NULL) {
            n->log_dirty = true;
        }
        if (n->crash == CRASH_BEFORE_SEND) {
            sim__crash(s, n, "after persisting, before sending");
            return;
        }
        for (uint32_t i = 0; i < rd.n_msgs; i++) {
            sim__send(s, n, &rd.msgs[i]);
        }
        sim__apply(s, n, &rd);
        for (uint32_t i = 0; i < rd.n_reads; i++) {
            sim__check_read(s, n, &rd.reads[i]);
        }
        raft_advance(n->r, &rd);
        sim__check_leader(s, n);
        sim__maybe_compact(s, n);
    }
    if (n->r != NULL) {
        sim__check_leader(s, n);
    }
    sim__check_logs(s);
}

static struct raft_config sim__config(struct sim *s, uint64_t id)
{
    struct raft_config c = {
        .id = id,
        .election_ticks = KV_DEFAULT_RAFT_ELECTION_TICKS,
        .heartbeat_ticks = KV_DEFAULT_RAFT_HEARTBEAT_TICKS,
        .seed = sim__rand(s),
        .pre_vote = true,
        .check_quorum = true,
        .msg_entries_max = s->msg_entries_max,
        .inflight_max = s->inflight_max,
    };
    return c;
}

static void sim__restart(struct sim *s, struct sim_node *n)
{
    KV_ASSERT(n->r == NULL);
    struct raft_config cfg = sim__config(s, n->id);
    n->r = raft_create(&cfg);
    KV_ASSERT(n->r != NULL);
    struct sim_disk *d = &n->disk;
    static struct raft_entry ents[KV_RAFT_LOG_MAX];
    uint32_t k = 0;
    for (uint64_t i = d->snap.index + 1; i <= d->last; i++) {
        ents[k++] = d->ents[i & (KV_RAFT_LOG_MAX - 1)];
    }
    int rc = raft_restore(n->r, &d->hs, &d->snap, d->snap_data, d->snap_len, ents, k);
    if (rc != 0) {
        sim__fail(s, "n%llu cannot restore from its disk: %s", (unsigned long long)n->id,
                  kv_strerror(rc));
        return;
    }
    rc = meta_restore(n->meta, d->snap_data, d->snap_len);
    KV_ASSERT(rc == 0);
    n->applied = d->snap.index;
    n->role = RAFT_FOLLOWER;
    n->term = d->hs.term;
    n->log_dirty = true;
    sim__trace(s, "n%llu restarts: term %llu, snapshot %llu, log to %llu, commit %llu",
               (unsigned long long)n->id, (unsigned long long)d->hs.term,
               (unsigned long long)d->snap.index, (unsigned long long)d->last,
               (unsigned long long)d->hs.commit);
}

/* ---- client: proposals, membership, transfers, reads --------------------------------- */

static struct sim_node *sim__leader(struct sim *s)
{
    struct sim_node *best = NULL;
    uint64_t best_term = 0;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        if (n->r != NULL && n->role == RAFT_LEADER && n->term >= best_term) {
            best = n;
            best_term = n->term;
        }
    }
    return best;
}

static void sim__random_replicas(struct sim *s, const struct meta_state *m, struct meta_cmd *c)
{
    c->n_replicas = 1 + sim__below(s, 3);
    for (uint32_t i = 0; i < c->n_replicas; i++) {
        c->replicas[i] =
            m->n_nodes > 0 && !sim__chance(s, 30) ? m->nodes[sim__below(s, m->n_nodes)].id : 99;
    }
    c->leader = c->replicas[sim__below(s, c->n_replicas)];
}

/* A metadata command made from the proposer's view: mostly valid, sometimes not. */
static void sim__random_cmd(struct sim *s, const struct meta_state *m, struct meta_cmd *c)
{
    memset(c, 0, sizeof(*c));
    c->type = 1 + sim__below(s, META_CMD_END - 1);
    const struct meta_partition *p = m->n_parts > 0 ? &m->parts[sim__below(s, m->n_parts)] : NULL;
    c->node = 1 + sim__below(s, 12);
    c->to_node = 1 + sim__below(s, 12);
    c->partition = p != NULL && !sim__chance(s, 100) ? p->id : 1 + sim__below(s, 400);
    c->new_partition = 1 + sim__below(s, 400);
    switch (c->type) {
    case META_CREATE_PARTITION:
        if (m->n_parts == 0 && !sim__chance(s, 100)) {
            c->lo = 0;
            c->hi = 0;
        } else {
            c->lo = sim__rand(s);
            c->hi = c->lo + (sim__rand(s) >> sim__below(s, 64));
        }
        sim__random_replicas(s, m, c);
        break;
    case META_SPLIT_PARTITION:
        if (p != NULL) {
            uint64_t width = p->hi - p->lo; /* wraps to the right width when hi == 0 */
            c->at = p->lo + (width > 1 ? sim__rand(s) % width : 0);
        }
        break;
    case META_MOVE_PARTITION:
        if (p != NULL) {
            c->node = p->replicas[sim__below(s, p->n_replicas)];
        }
        break;
    case META_SET_REPLICAS:
        sim__random_replicas(s, m, c);
        break;
    case META_PROMOTE:
        if (p != NULL) {
            c->epoch = sim__chance(s, 200) ? p->epoch - 1 : p->epoch;
            c->leader = p->replicas[sim__below(s, p->n_replicas)];
        }
        break;
    default:
        break;
    }
}

static void sim__propose(struct sim *s, struct sim_node *l)
{
    struct meta_cmd c;
    sim__random_cmd(s, l->meta, &c);
    uint8_t buf[META_CMD_BYTES];
    meta_cmd_encode(&c, buf);
    uint64_t index = 0;
    int rc = raft_propose(l->r, buf, sizeof(buf), &index);
    sim__trace(s, "propose meta cmd type %u on n%llu: %s (index %llu)", c.type,
               (unsigned long long)l->id, kv_strerror(rc), (unsigned long long)index);
}

static void sim__conf_change(struct sim *s, struct sim_node *l)
{
    struct raft_status st;
    raft_status(l->r, &st);
    uint64_t target = 1 + sim__below(s, s->n_nodes);
    enum raft_conf_op op;
    if (raft_conf_is_voter(&st.conf, target)) {
        op = sim__chance(s, 500) ? RAFT_CONF_REMOVE : RAFT_CONF_ADD_LEARNER;
    } else if (raft_conf_is_learner(&st.conf, target)) {
        op = sim__chance(s, 700) ? RAFT_CONF_ADD_VOTER : RAFT_CONF_REMOVE;
    } else {
        op = RAFT_CONF_ADD_LEARNER;
    }
    int rc = raft_propose_conf(l->r, op, target, NULL);
    static const char *const ops[] = {"?", "add voter", "add learner", "remove"};
    sim__trace(s, "conf change on n%llu: %s n%llu: %s", (unsigned long long)l->id, ops[op],
               (unsigned long long)target, kv_strerror(rc));
}

static void sim__client(struct sim *s)
{
    struct sim_node *l = sim__leader(s);
    if (l == NULL) {
        return;
    }
    if (sim__chance(s, 300)) {
        sim__propose(s, l);
    }
    if (sim__chance(s, 40)) {
        /* A burst: long uncommitted tails are what old-term commit bugs need. */
        for (uint32_t i = sim__below(s, 3 * KV_RAFT_MSG_ENTRIES_MAX); i > 0; i--) {
            sim__propose(s, l);
        }
    }
    if (s->faults && sim__chance(s, 25)) {
        sim__conf_change(s, l);
    }
    if (s->faults && sim__chance(s, s->transfer_pm)) {
        uint64_t target = 1 + sim__below(s, s->n_nodes);
        int rc = raft_transfer_leadership(l->r, target);
        sim__trace(s, "transfer leadership n%llu -> n%llu: %s", (unsigned long long)l->id,
                   (unsigned long long)target, kv_strerror(rc));
    }
    if (sim__chance(s, 80) && s->n_reads < SIM_READS_MAX) {
        uint64_t ctx = ++s->read_ctx;
        uint64_t min_index = sim__max_commit(s);
        if (raft_read_index(l->r, ctx) == 0) {
            s->reads[s->n_reads].node = l->id;
            s->reads[s->n_reads].context = ctx;
            s->reads[s->n_reads].min_index = min_index;
            s->n_reads++;
        }
    }
    sim__process(s, l);
}

/* ---- faults ------------------------------------------------------------------------ */

static void sim__heal(struct sim *s)
{
    memset(s->blocked, 0, sizeof(s->blocked));
}

static void sim__partition(struct sim *s)
{
    uint32_t kind = sim__below(s, 4);
    sim__heal(s);
    if (kind == 0) {
        sim__trace(s, "network heals");
        return;
    }
    if (kind == 1) {
        uint64_t a = 1 + sim__below(s, s->n_nodes), b = 1 + sim__below(s, s->n_nodes);
        s->blocked[a][b] = true;
        sim__trace(s, "one-way partition: n%llu -/-> n%llu", (unsigned long long)a,
                   (unsigned long long)b);
        return;
    }
    /* Symmetric: a random side A against the rest; often the leader and at most one
     * follower, so that a deposed leader keeps a long tail nobody else has. */
    bool side[SIM_NODES_MAX + 1] = {false};
    char desc[64] = "";
    struct sim_node *l = sim__leader(s);
    bool isolate_leader = l != NULL && kind == 3;
    for (uint64_t i = 1; i <= s->n_nodes; i++) {
        side[i] = isolate_leader ? false : sim__chance(s, 400);
    }
    if (isolate_leader) {
        side[l->id] = true;
        side[1 + sim__below(s, s->n_nodes)] = true;
    }
    for (uint64_t i = 1; i <= s->n_nodes; i++) {
        if (side[i]) {
            size_t len = strlen(desc);
            snprintf(desc + len, sizeof(desc) - len, "n%llu ", (unsigned long long)i);
        }
    }
    for (uint64_t i = 1; i <= s->n_nodes; i++) {
        for (uint64_t j = 1; j <= s->n_nodes; j++) {
            s->blocked[i][j] = side[i] != side[j];
        }
    }
    sim__trace(s, "partition: {%s} against the rest", desc);
}

static void sim__faults(struct sim *s)
{
    if (sim__chance(s, s->partition_pm)) {
        sim__partition(s);
    }
    if (sim__chance(s, 20)) {
        s->delay_max = 1 + sim__below(s, 6 * SIM_TICK_UNITS);
        s->drop_pct = sim__below(s, 150);
        s->dup_pct = sim__below(s, 60);
        s->corrupt_pct = sim__below(s, 10);
        sim__trace(s, "network: delay <= %u units, drop %u/1000, dup %u/1000", s->delay_max,
                   s->drop_pct, s->dup_pct);
    }
    struct sim_node *n = &s->nodes[sim__below(s, s->n_nodes)];
    struct sim_node *l = sim__leader(s);
    if (l != NULL && sim__chance(s, 300)) {
        n = l; /* leaders crash more often: that is where the interesting states are */
    }
    if (n->r != NULL && n->crash == CRASH_NONE && sim__chance(s, s->crash_pm)) {
        uint32_t how = sim__below(s, 3);
        if (how == 0) {
            sim__crash(s, n, "between steps");
        } else {
            n->crash = how == 1 ? CRASH_BEFORE_PERSIST : CRASH_BEFORE_SEND;
        }
    } else if (n->r == NULL && sim__chance(s, 3 * s->crash_pm)) {
        sim__restart(s, n);
        sim__process(s, n);
    }
}

/* ---- main loop --------------------------------------------------------------------- */

static void sim__deliver_due(struct sim *s)
{
    size_t n = s->n_msgs;
    struct raft_entry ents[KV_RAFT_MSG_ENTRIES_MAX];
    for (size_t i = 0; i < n && s->res->ok; i++) {
        struct sim_msg *m = &s->msgs[i];
        if (m->at != s->now || m->buf == NULL) {
            continue;
        }
        uint8_t *buf = m->buf;
        uint32_t len = m->len;
        uint64_t to = m->to;
        m->buf = NULL; /* delivered; removed below */
        struct sim_node *dst = sim__node(s, to);
        struct raft_msg msg;
        int rc = raft_msg_decode(buf, len, &msg, ents, KV_RAFT_MSG_ENTRIES_MAX);
        if (rc == 0 && dst->r != NULL) {
            s->res->delivered++;
            s->bytes += len;
            if (s->o->trace != NULL) {
                sim__trace(s, "n%llu -> n%llu %s term=%llu idx=%llu lterm=%llu n=%u commit=%llu%s",
                           (unsigned long long)msg.from, (unsigned long long)msg.to,
                           raft_msg_type_name(msg.type), (unsigned long long)msg.term,
                           (unsigned long long)msg.index, (unsigned long long)msg.log_term,
                           msg.n_entries, (unsigned long long)msg.commit,
                           msg.reject ? " reject" : "");
            }
            rc = raft_step(dst->r, &msg);
            if (rc != 0) {
                sim__fail(s, "n%llu rejected a well-formed message: %s", (unsigned long long)to,
                          kv_strerror(rc));
            }
            sim__process(s, dst);
        } else if (rc != 0) {
            sim__trace(s, "message to n%llu dropped by the decoder: %s", (unsigned long long)to,
                       kv_strerror(rc));
        }
        free(buf);
    }
    size_t w = 0;
    for (size_t i = 0; i < s->n_msgs; i++) {
        if (s->msgs[i].buf != NULL) {
            s->msgs[w++] = s->msgs[i];
        }
    }
    s->n_msgs = w;
}

static void sim__tick_all(struct sim *s)
{
    for (uint32_t i = 0; i < s->n_nodes && s->res->ok; i++) {
        struct sim_node *n = &s->nodes[i];
        if (n->r != NULL) {
            raft_tick(n->r);
            sim__process(s, n);
        }
    }
}

static void sim__setup(struct sim *s)
{
    uint32_t voters = s->o->voters != 0 ? s->o->voters : (s->o->seed % 2 ? 3 : 5);
    KV_ASSERT(voters + SIM_SPARES <= SIM_NODES_MAX);
    s->msg_entries_max = 1 + sim__below(s, KV_RAFT_MSG_ENTRIES_MAX);
    s->inflight_max = 1 + sim__below(s, KV_RAFT_INFLIGHT_MAX);
    s->n_nodes = voters + SIM_SPARES;
    s->cap_terms = 64;
    s->term_leader = calloc(s->cap_terms, sizeof(*s->term_leader));
    s->cap_index = 1024;
    s->committed = calloc(s->cap_index, sizeof(*s->committed));
    s->digests = calloc(s->cap_index, sizeof(*s->digests));
    s->scratch = malloc(META_SNAPSHOT_MAX);
    s->wire = malloc(RAFT_WIRE_MSG_MAX);
    KV_ASSERT(s->term_leader && s->committed && s->digests && s->scratch && s->wire);
    struct raft_conf conf;
    memset(&conf, 0, sizeof(conf));
    for (uint32_t i = 0; i < voters; i++) {
        conf.voters[conf.n_voters++] = i + 1;
    }
    struct raft_conf empty;
    memset(&empty, 0, sizeof(empty));
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        n->id = i + 1;
        n->meta = malloc(sizeof(*n->meta));
        n->disk.snap_data = malloc(KV_RAFT_SNAPSHOT_MAX);
        n->disk.data = malloc((size_t)KV_RAFT_LOG_MAX * KV_RAFT_ENTRY_DATA_MAX);
        KV_ASSERT(n->meta && n->disk.snap_data && n->disk.data);
        meta_init(n->meta);
        n->compact_every = 4 + sim__below(s, 120);
        struct raft_config cfg = sim__config(s, n->id);
        n->r = raft_create(&cfg);
        KV_ASSERT(n->r != NULL);
        int rc = raft_bootstrap(n->r, i < voters ? &conf : &empty);
        KV_ASSERT(rc == 0);
        sim__process(s, n);
    }
    s->delay_max = SIM_TICK_UNITS;
    /* Each seed draws its own fault intensity, from a quiet network to a storm. */
    s->crash_pm = 10 + sim__below(s, 90);
    s->partition_pm = 10 + sim__below(s, 150);
    s->transfer_pm = sim__below(s, 40);
}

static void sim__teardown(struct sim *s)
{
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        struct sim_node *n = &s->nodes[i];
        raft_destroy(n->r);
        free(n->meta);
        free(n->disk.snap_data);
        free(n->disk.data);
    }
    for (size_t i = 0; i < s->n_msgs; i++) {
        free(s->msgs[i].buf);
    }
    free(s->msgs);
    free(s->term_leader);
    free(s->committed);
    free(s->digests);
    free(s->scratch);
    free(s->wire);
}

/* After the faults: everything up and connected; a proposal must commit in time. */
static void sim__liveness(struct sim *s, uint64_t heal_tick)
{
    uint64_t probe_index = 0, probe_term = 0;
    uint64_t deadline = (heal_tick + SIM_LIVENESS_TICKS) * SIM_TICK_UNITS;
    for (; s->now < deadline && s->res->ok; s->now++) {
        if (s->now % SIM_TICK_UNITS == 0) {
            sim__tick_all(s);
            struct sim_node *l = sim__leader(s);
            bool lost = probe_index != 0 && probe_index <= s->max_applied &&
                        s->committed[probe_index].term != probe_term;
            if (l != NULL && (probe_index == 0 || lost ||
                              (l->term != probe_term && probe_index > s->max_applied))) {
                uint8_t buf[META_CMD_BYTES];
                struct meta_cmd c = {.type = META_NODE_UP, .node = 0xdead};
                meta_cmd_encode(&c, buf);
                if (raft_propose(l->r, buf, sizeof(buf), &probe_index) == 0) {
                    probe_term = l->term;
                    sim__trace(s, "liveness probe proposed on n%llu at %llu",
                               (unsigned long long)l->id, (unsigned long long)probe_index);
                    sim__process(s, l);
                } else {
                    probe_index = 0;
                }
            }
        }
        sim__deliver_due(s);
        if (probe_index != 0 && probe_index <= s->max_applied &&
            s->committed[probe_index].term == probe_term) {
            sim__trace(s, "liveness probe committed at %llu", (unsigned long long)probe_index);
            return;
        }
    }
    sim__fail(s, "liveness: no proposal committed within %u ticks of healing the network",
              SIM_LIVENESS_TICKS);
}

int sim_run(const struct sim_options *o, struct sim_result *res)
{
    struct sim *s = calloc(1, sizeof(*s));
    KV_ASSERT(s != NULL);
    memset(res, 0, sizeof(*res));
    res->ok = true;
    s->o = o;
    s->res = res;
    s->rng = o->seed * 0x2545f4914f6cdd1dull + 1;
    sim__setup(s);
    uint64_t fault_ticks = o->fault_ticks != 0 ? o->fault_ticks : SIM_FAULT_TICKS;
    s->faults = true;
    for (s->now = 0; s->now < fault_ticks * SIM_TICK_UNITS && res->ok; s->now++) {
        if (s->now % SIM_TICK_UNITS == 0) {
            sim__tick_all(s);
            sim__faults(s);
            sim__client(s);
        }
        sim__deliver_due(s);
    }
    if (res->ok) {
        s->faults = false;
        sim__heal(s);
        s->delay_max = 3; /* a healed network: fast, little reordering */
        for (uint32_t i = 0; i < s->n_nodes; i++) {
            struct sim_node *n = &s->nodes[i];
            n->crash = CRASH_NONE;
            if (n->r == NULL) {
                sim__restart(s, n);
                sim__process(s, n);
            }
        }
        sim__trace(s, "faults end: network healed, every node up");
        sim__liveness(s, s->now / SIM_TICK_UNITS);
    }
    res->ticks = s->now / SIM_TICK_UNITS;
    sim__teardown(s);
    free(s);
    return res->ok ? 0 : -1;
}

int sim_bench(uint32_t voters, uint64_t entries, struct sim_bench_result *out)
{
    struct sim_options o = {.seed = 1, .voters = voters};
    struct sim_result res;
    struct sim *s = calloc(1, sizeof(*s));
    KV_ASSERT(s != NULL && entries > 0);
    memset(&res, 0, sizeof(res));
    res.ok = true;
    s->o = &o;
    s->res = &res;
    s->rng = 1;
    s->bench = true;
    sim__setup(s);
    s->delay_max = 1;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        s->nodes[i].compact_every = 64;
    }
    uint8_t buf[META_CMD_BYTES];
    struct meta_cmd c = {.type = META_NODE_UP, .node = 1};
    meta_cmd_encode(&c, buf);
    uint64_t proposed = 0;
    for (s->now = 0; s->max_applied < entries + 1 && res.ok; s->now++) {
        if (s->now % SIM_TICK_UNITS == 0) {
            sim__tick_all(s);
        }
        struct sim_node *l = sim__leader(s);
        if (l != NULL) {
            /* Keep about one pipeline's worth of proposals outstanding. */
            while (proposed < entries && proposed < s->max_applied + 4 * KV_RAFT_MSG_ENTRIES_MAX &&
                   raft_propose(l->r, buf, sizeof(buf), NULL) == 0) {
                proposed++;
            }
            sim__process(s, l);
        }
        sim__deliver_due(s);
    }
    out->committed = s->max_applied;
    out->delivered = res.delivered;
    out->bytes = s->bytes;
    out->ticks = s->now / SIM_TICK_UNITS;
    int rc = res.ok ? 0 : -1;
    sim__teardown(s);
    free(s);
    return rc;
}
