/*
 * raft: the consensus state machine (see raft.h for the contract).
 *
 * Shape. One struct per node holding the persistent state (term, vote, log), the
 * volatile state (role, commit, leader progress per peer) and the output buffers of the
 * next ready. The log lives in a ring of KV_RAFT_LOG_MAX slots: index i sits in slot
 * i % KV_RAFT_LOG_MAX with its payload copied into that slot's fixed data area, and every
 * index in (snap.index, last] is present. Everything at or below snap.index is only in
 * the snapshot.
 *
 *   snap.index  applied <= commit <= last      stable: last index persisted
 *   ----------|----------------------------|
 *   snapshot  |  ring: snap.index+1 .. last
 *
 * Invariants (asserted): snap.index <= applied <= commit <= last; last - snap.index <=
 * KV_RAFT_LOG_MAX; at most one vote per term; a leader never truncates its log; commit
 * only moves forward and only to an index whose entry has the current term.
 *
 * Log space. A follower stops accepting entries one slot short of a full ring, and a
 * leader stops accepting proposals KV_RAFT_LOG_RESERVE slots short, so that any node
 * elected can always append its term's first entry (which is what lets it commit the
 * entries of earlier terms). The caller frees space by compacting (raft_compact).
 *
 * Outgoing messages point into the ring and the snapshot buffer; whenever those may be
 * overwritten (log truncation, snapshot install, compaction) queued messages that carry
 * entries or a snapshot are dropped: losing a message is always safe in Raft.
 *
 * Thread: a node belongs to one thread (the cluster control thread, or a simulator).
 */
#include "raft.h"

#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"

_Static_assert((KV_RAFT_LOG_MAX & (KV_RAFT_LOG_MAX - 1)) == 0, "log ring is a power of two");
_Static_assert(KV_RAFT_LOG_RESERVE >= 2 && KV_RAFT_LOG_RESERVE < KV_RAFT_LOG_MAX / 4,
               "reserve fits the ring");

#define RAFT_PEERS_MAX       (KV_RAFT_VOTERS_MAX + KV_RAFT_LEARNERS_MAX)
#define RAFT_CONF_CHANGE_LEN 12 /* u32 op + u64 node, little-endian */

enum raft_pr_state {
    PR_PROBE = 0,     /* one append per heartbeat until the follower's match is known */
    PR_REPLICATE = 1, /* streaming: next advanced optimistically */
    PR_SNAPSHOT = 2,  /* an InstallSnapshot is in flight */
};

struct raft_progress {
    uint64_t id;
    uint64_t match;
    uint64_t next;
    uint64_t pending_snapshot;
    uint64_t read_acked; /* highest ReadIndex sequence the peer echoed this term */
    uint64_t hb_match;   /* match at the previous heartbeat response */
    uint32_t hb_stalls;  /* heartbeat responses in a row without progress */
    uint32_t state;
    bool paused;
    bool recent_active;
};

struct raft_vote_rec {
    uint64_t id;
    bool granted;
};

struct raft_pending_read {
    uint64_t context;
    uint64_t index;
    uint64_t seq;
};

struct raft {
    struct raft_config cfg;
    enum raft_role role;
    uint64_t term;
    uint64_t vote;
    uint64_t lead;
    uint64_t commit;
    uint64_t applied;
    uint64_t stable;
    uint64_t last;
    struct raft_hard_state prev_hs;

    struct raft_snapshot_meta snap;
    uint8_t *snap_data;
    uint32_t snap_len;
    bool snap_pending; /* installed or bootstrapped, not yet handed to the caller */

    struct raft_entry *ents;
    uint8_t *ent_data;

    struct raft_conf conf;
    uint64_t pending_conf_index;
    uint64_t term_start_index;

    struct raft_progress prs[RAFT_PEERS_MAX];
    uint32_t n_prs;
    struct raft_vote_rec votes[KV_RAFT_VOTERS_MAX];
    uint32_t n_votes;

    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    uint64_t rng;
    uint64_t transferee;

    struct raft_pending_read reads[KV_RAFT_READS_MAX];
    uint32_t n_reads;
    uint64_t read_seq;
    struct raft_read_state ready_reads[KV_RAFT_READS_MAX];
    uint32_t n_ready_reads;

    struct raft_msg msgs[KV_RAFT_READY_MSGS_MAX];
    uint32_t n_msgs;
    uint64_t msgs_dropped;
    bool initialized;
};

/* ---- small helpers -------------------------------------------------------------- */

static uint64_t raft__rand(struct raft *r)
{
    /* splitmix64: tiny, seedable, and good enough to spread election timeouts. */
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void raft__reset_timeout(struct raft *r)
{
    r->randomized_timeout =
        r->cfg.election_ticks + (uint32_t)(raft__rand(r) % r->cfg.election_ticks);
}

static struct raft_entry *raft__slot(const struct raft *r, uint64_t index)
{
    return &r->ents[index & (KV_RAFT_LOG_MAX - 1)];
}

static bool raft__term_at(const struct raft *r, uint64_t index, uint64_t *term)
{
    if (index == r->snap.index) {
        *term = r->snap.term;
        return true;
    }
    if (index < r->snap.index || index > r->last) {
        return false;
    }
    *term = raft__slot(r, index)->term;
    return true;
}

static uint64_t raft__last_term(const struct raft *r)
{
    uint64_t t = 0;
    bool ok = raft__term_at(r, r->last, &t);
    KV_ASSERT(ok);
    return t;
}

static bool raft__match_term(const struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t t;
    return raft__term_at(r, index, &t) && t == term;
}

static uint32_t raft__quorum(const struct raft *r)
{
    return r->conf.n_voters / 2 + 1;
}

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_voters; i++) {
        if (c->voters[i] == id) {
            return true;
        }
    }
    return false;
}

bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->n_learners; i++) {
        if (c->learners[i] == id) {
            return true;
        }
    }
    return false;
}

/* A node may campaign if it is a voter and has a free log slot for its term's first
 * entry (only a leader that used its last slot and then restarted lacks one; followers
 * always keep a slot free, so some other voter can lead). */
static bool raft__promotable(const struct raft *r)
{
    return raft_conf_is_voter(&r->conf, r->cfg.id) && r->last - r->snap.index < KV_RAFT_LOG_MAX;
}

static void raft__conf_del(uint64_t *ids, uint32_t *n, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[*n - 1];
            (*n)--;
            return;
        }
    }
}

/* Applies one change to a configuration. Changes that do not fit are no-ops, so that
 * every node computes the same configuration from the same log. */
static void raft__conf_apply(struct raft_conf *c, enum raft_conf_op op, uint64_t id)
{
    if (id == 0) {
        return;
    }
    switch (op) {
    case RAFT_CONF_ADD_VOTER:
        if (!raft_conf_is_voter(c, id) && c->n_voters < KV_RAFT_VOTERS_MAX) {
            raft__conf_del(c->learners, &c->n_learners, id);
            c->voters[c->n_voters++] = id;
        }
        break;
    case RAFT_CONF_ADD_LEARNER:
        if (!raft_conf_is_learner(c, id) && c->n_learners < KV_RAFT_LEARNERS_MAX &&
            !(raft_conf_is_voter(c, id) && c->n_voters == 1)) {
            raft__conf_del(c->voters, &c->n_voters, id);
            c->learners[c->n_learners++] = id;
        }
        break;
    case RAFT_CONF_REMOVE:
        if (!(raft_conf_is_voter(c, id) && c->n_voters == 1)) {
            raft__conf_del(c->voters, &c->n_voters, id);
            raft__conf_del(c->learners, &c->n_learners, id);
        }
        break;
    }
}

static void raft__put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void raft__put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t raft__get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

int raft_conf_change_decode(const uint8_t *data, uint32_t len, enum raft_conf_op *op,
                            uint64_t *node)
{
    if (data == NULL || len != RAFT_CONF_CHANGE_LEN) {
        return KV_EPROTO;
    }
    uint32_t o = (uint32_t)(raft__get_u64(data) & 0xffffffffu);
    uint64_t id = raft__get_u64(data + 4);
    if (o < RAFT_CONF_ADD_VOTER || o > RAFT_CONF_REMOVE || id == 0) {
        return KV_EPROTO;
    }
    *op = (enum raft_conf_op)o;
    *node = id;
    return 0;
}

static void raft__conf_apply_entry(struct raft_conf *c, const struct raft_entry *e)
{
    enum raft_conf_op op;
    uint64_t id;
    if (e->type == RAFT_ENTRY_CONF && raft_conf_change_decode(e->data, e->len, &op, &id) == 0) {
        raft__conf_apply(c, op, id);
    }
}

/* The configuration as of `upto`: the snapshot's, then every conf entry up to it. */
static void raft__conf_at(const struct raft *r, uint64_t upto, struct raft_conf *c,
                          uint64_t *last_conf_index)
{
    *c = r->snap.conf;
    *last_conf_index = 0;
    for (uint64_t i = r->snap.index + 1; i <= upto && i <= r->last; i++) {
        const struct raft_entry *e = raft__slot(r, i);
        if (e->type == RAFT_ENTRY_CONF) {
            raft__conf_apply_entry(c, e);
            *last_conf_index = i;
        }
    }
}

/* ---- messages -------------------------------------------------------------------- */

static struct raft_msg *raft__msg(struct raft *r, uint32_t type, uint64_t to)
{
    KV_ASSERT(to != 0 && to != r->cfg.id);
    if (r->n_msgs == KV_RAFT_READY_MSGS_MAX) {
        r->msgs_dropped++;
        return NULL;
    }
    struct raft_msg *m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = r->cfg.id;
    m->to = to;
    m->term = r->term;
    return m;
}

/* Drops queued messages that borrow log entries or the snapshot buffer. */
static void raft__drop_borrowing_msgs(struct raft *r)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < r->n_msgs; i++) {
        const struct raft_msg *m = &r->msgs[i];
        if (m->n_entries > 0 || m->type == RAFT_MSG_SNAPSHOT) {
            r->msgs_dropped++;
            continue;
        }
        r->msgs[w++] = *m;
    }
    r->n_msgs = w;
}

/* ---- log ------------------------------------------------------------------------- */

static void raft__log_put(struct raft *r, uint64_t term, uint64_t index, uint32_t type,
                          const uint8_t *data, uint32_t len)
{
    KV_ASSERT(index == r->last + 1);
    KV_ASSERT(index - r->snap.index <= KV_RAFT_LOG_MAX);
    KV_ASSERT(len <= KV_RAFT_ENTRY_DATA_MAX);
    size_t slot = index & (KV_RAFT_LOG_MAX - 1);
    struct raft_entry *e = &r->ents[slot];
    uint8_t *dst = r->ent_data + slot * KV_RAFT_ENTRY_DATA_MAX;
    if (len > 0) {
        memcpy(dst, data, len);
    }
    e->term = term;
    e->index = index;
    e->type = type;
    e->len = len;
    e->data = dst;
    r->last = index;
    if (type == RAFT_ENTRY_CONF) {
        raft__conf_apply_entry(&r->conf, e);
        r->pending_conf_index = index;
    }
}

static void raft__log_truncate(struct raft *r, uint64_t from)
{
    KV_ASSERT(from > r->commit && from > r->snap.index && from <= r->last + 1);
    KV_ASSERT(r->role != RAFT_LEADER);
    r->last = from - 1;
    if (r->stable > r->last) {
        r->stable = r->last;
    }
    raft__drop_borrowing_msgs(r);
    raft__conf_at(r, r->last, &r->conf, &r->pending_conf_index);
}

static uint64_t raft__log_room(const struct raft *r)
{
    return KV_RAFT_LOG_MAX - (r->last - r->snap.index);
}

/* Largest index <= index whose term is <= term (fast backtracking; etcd's
 * findConflictByTerm). Never below the snapshot. */
static uint64_t raft__find_conflict_by_term(const struct raft *r, uint64_t index, uint64_t term)
{
    if (index > r->last) {
        index = r->last;
    }
    for (uint64_t i = index; i > r->snap.index; i--) {
        if (raft__slot(r, i)->term <= term) {
            return i;
        }
    }
    return r->snap.index;
}

/* ---- progress -------------------------------------------------------------------- */

static struct raft_progress *raft__pr(struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

/* Rebuilds the progress table from the configuration, keeping known peers' state. */
static void raft__prs_sync(struct raft *r)
{
    struct raft_progress old[RAFT_PEERS_MAX];
    uint32_t n_old = r->n_prs;
    memcpy(old, r->prs, sizeof(old));
    uint64_t ids[RAFT_PEERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        ids[n++] = r->conf.voters[i];
    }
    for (uint32_t i = 0; i < r->conf.n_learners; i++) {
        ids[n++] = r->conf.learners[i];
    }
    r->n_prs = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct raft_progress *p = &r->prs[r->n_prs++];
        memset(p, 0, sizeof(*p));
        p->id = ids[i];
        p->next = r->last + 1;
        p->recent_active = true;
        for (uint32_t j = 0; j < n_old; j++) {
            if (old[j].id == ids[i]) {
                *p = old[j];
            }
        }
    }
}

static uint64_t raft__self_match(const struct raft *r)
{
    return r->stable < r->last ? r->stable : r->last;
}

static int raft__cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : (x > y ? -1 : 0);
}

/* Leader: commit the highest index a quorum of voters holds, if its term is ours. */
static bool raft__maybe_commit(struct raft *r)
{
    KV_ASSERT(r->role == RAFT_LEADER);
    uint64_t m[KV_RAFT_VOTERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t id = r->conf.voters[i];
        if (id == r->cfg.id) {
            m[n++] = raft__self_match(r);
        } else {
            struct raft_progress *p = raft__pr(r, id);
            m[n++] = p != NULL ? p->match : 0;
        }
    }
    if (n == 0) {
        return false;
    }
    qsort(m, n, sizeof(m[0]), raft__cmp_desc);
    uint64_t q = m[raft__quorum(r) - 1];
    uint64_t t = 0;
    if (q > r->commit && raft__term_at(r, q, &t) && t == r->term) {
        r->commit = q;
        return true;
    }
    return false;
}

/* ---- sending --------------------------------------------------------------------- */

static void raft__send_snapshot(struct raft *r, struct raft_progress *p)
{
    struct raft_msg *m = raft__msg(r, RAFT_MSG_SNAPSHOT, p->id);
    if (m == NULL) {
        return;
    }
    m->snap = r->snap;
    m->snap_data = r->snap_data;
    m->snap_len = r->snap_len;
    p->state = PR_SNAPSHOT;
    p->pending_snapshot = r->snap.index;
    p->paused = true;
}

static void raft__send_append(struct raft *r, struct raft_progress *p, bool allow_empty)
{
    if (p->state == PR_SNAPSHOT || (p->state == PR_PROBE && p->paused)) {
        return;
    }
    uint64_t prev = p->next - 1;
    uint64_t prev_term;
    if (!raft__term_at(r, prev, &prev_term)) {
        raft__send_snapshot(r, p);
        return;
    }
    uint64_t n = r->last - prev;
    if (n == 0 && !allow_empty) {
        return;
    }
    if (n > r->cfg.msg_entries_max) {
        n = r->cfg.msg_entries_max;
    }
    uint64_t slot = (prev + 1) & (KV_RAFT_LOG_MAX - 1);
    if (n > KV_RAFT_LOG_MAX - slot) {
        n = KV_RAFT_LOG_MAX - slot; /* a message borrows one contiguous run of slots */
    }
    struct raft_msg *m = raft__msg(r, RAFT_MSG_APPEND, p->id);
    if (m == NULL) {
        return;
    }
    m->index = prev;
    m->log_term = prev_term;
    m->commit = r->commit;
    m->n_entries = (uint32_t)n;
    m->entries = n > 0 ? raft__slot(r, prev + 1) : NULL;
    if (p->state == PR_REPLICATE) {
        p->next = prev + n + 1;
    } else {
        p->paused = true;
    }
}

/* Replicate state: keep up to cfg.inflight_max batches in flight. */
static void raft__send_pipeline(struct raft *r, struct raft_progress *p, bool allow_empty)
{
    raft__send_append(r, p, allow_empty);
    uint64_t window = (uint64_t)r->cfg.inflight_max * r->cfg.msg_entries_max;
    while (p->state == PR_REPLICATE && p->next <= r->last && p->next - 1 - p->match < window &&
           r->n_msgs < KV_RAFT_READY_MSGS_MAX) {
        raft__send_append(r, p, false);
    }
}

static void raft__bcast_append(struct raft *r, bool allow_empty)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id != r->cfg.id) {
            raft__send_pipeline(r, &r->prs[i], allow_empty);
        }
    }
}

static void raft__bcast_heartbeat(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct raft_progress *p = &r->prs[i];
        if (p->id == r->cfg.id) {
            continue;
        }
        struct raft_msg *m = raft__msg(r, RAFT_MSG_HEARTBEAT, p->id);
        if (m != NULL) {
            m->commit = p->match < r->commit ? p->match : r->commit;
            m->context = r->read_seq;
        }
    }
}

/* ---- role changes ---------------------------------------------------------------- */

static void raft__reset(struct raft *r, uint64_t term)
{
    if (term != r->term) {
        KV_ASSERT(term > r->term);
        r->term = term;
        r->vote = 0;
    }
    r->lead = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->transferee = 0;
    r->n_votes = 0;
    r->n_reads = 0;
    raft__reset_timeout(r);
}

static void raft__become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    raft__reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
}

static void raft__become_leader(struct raft *r)
{
    KV_ASSERT(r->role == RAFT_CANDIDATE);
    raft__reset(r, r->term);
    r->role = RAFT_LEADER;
    r->lead = r->cfg.id;
    r->n_prs = 0;
    raft__prs_sync(r);
    for (uint32_t i = 0; i < r->n_prs; i++) {
        r->prs[i].match = 0;
        r->prs[i].next = r->last + 1;
        r->prs[i].state = PR_PROBE;
        r->prs[i].paused = false;
        r->prs[i].read_acked = 0;
    }
    /* No membership change until everything already in the log has committed. */
    r->pending_conf_index = r->last;
    KV_ASSERT(raft__log_room(r) >= 1);
    raft__log_put(r, r->term, r->last + 1, RAFT_ENTRY_NORMAL, NULL, 0);
    r->term_start_index = r->last;
    raft__maybe_commit(r);
    raft__bcast_append(r, true);
}

static void raft__record_vote(struct raft *r, uint64_t id, bool granted)
{
    if (!raft_conf_is_voter(&r->conf, id)) {
        return;
    }
    for (uint32_t i = 0; i < r->n_votes; i++) {
        if (r->votes[i].id == id) {
            return;
        }
    }
    KV_ASSERT(r->n_votes < KV_RAFT_VOTERS_MAX);
    r->votes[r->n_votes].id = id;
    r->votes[r->n_votes].granted = granted;
    r->n_votes++;
}

/* 1: won, -1: lost, 0: pending. */
static int raft__poll(const struct raft *r)
{
    uint32_t yes = 0, no = 0;
    for (uint32_t i = 0; i < r->n_votes; i++) {
        if (r->votes[i].granted) {
            yes++;
        } else {
            no++;
        }
    }
    if (yes >= raft__quorum(r)) {
        return 1;
    }
    if (no >= raft__quorum(r)) {
        return -1;
    }
    return 0;
}

static void raft__campaign(struct raft *r, bool pre, bool transfer)
{
    KV_ASSERT(raft__promotable(r));
    uint64_t vote_term;
    uint32_t type;
    if (pre) {
        raft__reset(r, r->term);
        r->role = RAFT_PRECANDIDATE;
        vote_term = r->term + 1;
        type = RAFT_MSG_PREVOTE;
    } else {
        raft__reset(r, r->term + 1);
        r->role = RAFT_CANDIDATE;
        r->vote = r->cfg.id;
        vote_term = r->term;
        type = RAFT_MSG_VOTE;
    }
    raft__record_vote(r, r->cfg.id, true);
    if (raft__poll(r) == 1) {
        if (pre) {
            raft__campaign(r, false, false);
        } else {
            raft__become_leader(r);
        }
        return;
    }
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t id = r->conf.voters[i];
        if (id == r->cfg.id) {
            continue;
        }
        struct raft_msg *m = raft__msg(r, type, id);
        if (m != NULL) {
            m->term = vote_term;
            m->index = r->last;
            m->log_term = raft__last_term(r);
            m->flags = transfer ? RAFT_MSG_FLAG_TRANSFER : 0;
        }
    }
}

/* ---- handlers -------------------------------------------------------------------- */

static void raft__reply_append(struct raft *r, uint64_t to, uint64_t index, bool reject,
                               uint64_t hint, uint64_t hint_term)
{
    struct raft_msg *m = raft__msg(r, RAFT_MSG_APPEND_RESP, to);
    if (m != NULL) {
        m->index = index;
        m->reject = reject;
        m->reject_hint = hint;
        m->log_term = hint_term;
    }
}

static void raft__commit_to(struct raft *r, uint64_t index)
{
    if (index > r->last) {
        index = r->last;
    }
    if (index > r->commit) {
        r->commit = index;
    }
}

static int raft__handle_append(struct raft *r, const struct raft_msg *m)
{
    if (m->index < r->commit) {
        raft__reply_append(r, m->from, r->commit, false, 0, 0);
        return 0;
    }
    if (!raft__match_term(r, m->index, m->log_term)) {
        uint64_t hint = raft__find_conflict_by_term(r, m->index, m->log_term);
        uint64_t hint_term = 0;
        raft__term_at(r, hint, &hint_term);
        raft__reply_append(r, m->from, m->index, true, hint, hint_term);
        return 0;
    }
    uint64_t last_new = m->index;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (raft__match_term(r, e->index, e->term)) {
            last_new = e->index;
            continue;
        }
        if (e->index <= r->last) {
            if (e->index <= r->commit) {
                return KV_EPROTO; /* would rewrite a committed entry */
            }
            raft__log_truncate(r, e->index);
        }
        if (raft__log_room(r) <= 1) {
            break; /* keep one slot for a term-start entry; the leader will resend */
        }
        raft__log_put(r, e->term, e->index, e->type, e->data, e->len);
        last_new = e->index;
    }
    uint64_t c = m->commit < last_new ? m->commit : last_new;
    raft__commit_to(r, c);
    raft__reply_append(r, m->from, last_new, false, 0, 0);
    return 0;
}

static void raft__handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    raft__commit_to(r, m->commit);
    struct raft_msg *resp = raft__msg(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
    if (resp != NULL) {
        resp->context = m->context;
    }
}

static bool raft__conf_valid(const struct raft_conf *c)
{
    if (c->n_voters > KV_RAFT_VOTERS_MAX || c->n_learners > KV_RAFT_LEARNERS_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        uint64_t a = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        if (a == 0) {
            return false;
        }
        for (uint32_t j = i + 1; j < c->n_voters + c->n_learners; j++) {
            uint64_t b = j < c->n_voters ? c->voters[j] : c->learners[j - c->n_voters];
            if (a == b) {
                return false;
            }
        }
    }
    return true;
}

static void raft__install_snapshot(struct raft *r, const struct raft_msg *m)
{
    if (m->snap_len > 0) {
        memcpy(r->snap_data, m->snap_data, m->snap_len);
    }
    r->snap_len = m->snap_len;
    r->snap = m->snap;
    r->last = m->snap.index;
    r->stable = m->snap.index;
    r->commit = m->snap.index;
    r->conf = m->snap.conf;
    r->pending_conf_index = 0;
    r->snap_pending = true;
    raft__drop_borrowing_msgs(r);
}

static int raft__handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    if (m->snap_len > KV_RAFT_SNAPSHOT_MAX || !raft__conf_valid(&m->snap.conf) ||
        m->snap.term > m->term || m->snap.term == 0 || (m->snap_len > 0 && m->snap_data == NULL)) {
        return KV_EPROTO;
    }
    if (m->snap.index <= r->commit) {
        raft__reply_append(r, m->from, r->commit, false, 0, 0);
        return 0;
    }
    if (raft__match_term(r, m->snap.index, m->snap.term)) {
        /* Our log already has it: just learn that it is committed. */
        raft__commit_to(r, m->snap.index);
    } else {
        raft__install_snapshot(r, m);
    }
    raft__reply_append(r, m->from, r->last < m->snap.index ? r->last : m->snap.index, false, 0, 0);
    return 0;
}

static void raft__release_reads(struct raft *r)
{
    while (r->n_reads > 0 && r->n_ready_reads < KV_RAFT_READS_MAX) {
        const struct raft_pending_read *rd = &r->reads[0];
        uint32_t acks = 0;
        for (uint32_t i = 0; i < r->conf.n_voters; i++) {
            uint64_t id = r->conf.voters[i];
            struct raft_progress *p = raft__pr(r, id);
            if (id == r->cfg.id || (p != NULL && p->read_acked >= rd->seq)) {
                acks++;
            }
        }
        if (acks < raft__quorum(r)) {
            return;
        }
        r->ready_reads[r->n_ready_reads].context = rd->context;
        r->ready_reads[r->n_ready_reads].index = rd->index;
        r->n_ready_reads++;
        memmove(&r->reads[0], &r->reads[1], (r->n_reads - 1) * sizeof(r->reads[0]));
        r->n_reads--;
    }
}

static void raft__send_timeout_now(struct raft *r, uint64_t to)
{
    raft__msg(r, RAFT_MSG_TIMEOUT_NOW, to);
}

static void raft__leader_append_resp(struct raft *r, struct raft_progress *p,
                                     const struct raft_msg *m)
{
    if (m->index > r->last) {
        return; /* claims entries we never sent */
    }
    if (m->reject) {
        /* Stale rejections (for a probe we no longer wait on) are ignored. */
        if ((p->state == PR_REPLICATE && m->index <= p->match) ||
            (p->state != PR_REPLICATE && p->next - 1 != m->index)) {
            return;
        }
        uint64_t probe = m->reject_hint;
        if (m->log_term > 0) {
            probe = raft__find_conflict_by_term(r, m->reject_hint, m->log_term);
        }
        uint64_t next = (m->index < probe + 1 ? m->index : probe + 1);
        p->next = next > p->match + 1 ? next : p->match + 1;
        p->state = PR_PROBE;
        p->paused = false;
        raft__send_append(r, p, true);
        return;
    }
    bool progressed = false;
    if (m->index > p->match) {
        p->match = m->index;
        progressed = true;
    }
    if (p->next < p->match + 1) {
        p->next = p->match + 1;
    }
    if (p->state == PR_SNAPSHOT && p->match >= p->pending_snapshot) {
        p->state = PR_PROBE;
    }
    if (p->state == PR_PROBE && progressed) {
        p->state = PR_REPLICATE;
        p->next = p->match + 1;
    }
    p->paused = false;
    if (progressed && raft__maybe_commit(r)) {
        raft__bcast_append(r, true);
    } else {
        raft__send_pipeline(r, p, false);
    }
    if (m->from == r->transferee && p->match == r->last) {
        raft__send_timeout_now(r, m->from);
    }
}

static int raft__step_leader(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *p = raft__pr(r, m->from);
    if (p == NULL) {
        return 0;
    }
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        p->recent_active = true;
        raft__leader_append_resp(r, p, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        p->recent_active = true;
        p->paused = false;
        p->hb_stalls = p->match == p->hb_match && p->match < r->last ? p->hb_stalls + 1 : 0;
        p->hb_match = p->match;
        if ((p->state == PR_SNAPSHOT && p->hb_stalls >= r->cfg.election_ticks) ||
            (p->state == PR_REPLICATE && p->hb_stalls >= 3)) {
            /* No progress: the snapshot or the appends in flight were lost. Probe again
             * from what the follower is known to hold (resends a snapshot if needed). */
            p->state = PR_PROBE;
            p->next = p->match + 1;
            p->hb_stalls = 0;
        }
        if (p->match < r->last) {
            raft__send_pipeline(r, p, p->state == PR_PROBE);
        }
        if (m->context > p->read_acked && m->context <= r->read_seq) {
            p->read_acked = m->context;
            raft__release_reads(r);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int raft__step_candidate(struct raft *r, const struct raft_msg *m)
{
    uint32_t want = r->role == RAFT_PRECANDIDATE ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        raft__become_follower(r, m->term, m->from);
        return -1; /* handled as a follower */
    default:
        break;
    }
    if (m->type != want) {
        return 0;
    }
    raft__record_vote(r, m->from, !m->reject);
    int res = raft__poll(r);
    if (res == 1) {
        if (r->role == RAFT_PRECANDIDATE) {
            raft__campaign(r, false, false);
        } else {
            raft__become_leader(r);
        }
    } else if (res == -1) {
        raft__become_follower(r, r->term, 0);
    }
    return 0;
}

static int raft__step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
        r->election_elapsed = 0;
        r->lead = m->from;
        return raft__handle_append(r, m);
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->lead = m->from;
        raft__handle_heartbeat(r, m);
        return 0;
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->lead = m->from;
        return raft__handle_snapshot(r, m);
    case RAFT_MSG_TIMEOUT_NOW:
        if (raft__promotable(r)) {
            raft__campaign(r, false, true);
        }
        return 0;
    default:
        return 0;
    }
}

static bool raft__log_up_to_date(const struct raft *r, uint64_t last_term, uint64_t last_index)
{
    uint64_t my_term = raft__last_term(r);
    return last_term > my_term || (last_term == my_term && last_index >= r->last);
}

static void raft__handle_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->lead == 0) || (pre && m->term > r->term);
    bool grant = can_vote && raft__log_up_to_date(r, m->log_term, m->index);
    struct raft_msg *resp = raft__msg(r, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    if (resp != NULL) {
        resp->reject = !grant;
        /* A granted pre-vote answers in the proposed term so the candidate counts it. */
        resp->term = (grant && pre) ? m->term : r->term;
    }
    if (grant && !pre) {
        r->election_elapsed = 0;
        r->vote = m->from;
    }
}

static bool raft__msg_valid(const struct raft *r, const struct raft_msg *m)
{
    if (m->to != r->cfg.id || m->from == 0 || m->from == r->cfg.id) {
        return false;
    }
    if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_END) {
        return false;
    }
    if (m->n_entries > KV_RAFT_MSG_ENTRIES_MAX || (m->n_entries > 0 && m->entries == NULL) ||
        (m->n_entries > 0 && m->type != RAFT_MSG_APPEND)) {
        return false;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term == 0 || e->term > m->term ||
            e->len > KV_RAFT_ENTRY_DATA_MAX || (e->len > 0 && e->data == NULL) ||
            (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF) ||
            (i == 0 ? e->term < m->log_term : e->term < m->entries[i - 1].term)) {
            return false;
        }
    }
    return true;
}

static int raft__step(struct raft *r, const struct raft_msg *m)
{
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    if (m->term > r->term) {
        bool force = (m->flags & RAFT_MSG_FLAG_TRANSFER) != 0;
        bool in_lease =
            r->cfg.check_quorum && r->lead != 0 && r->election_elapsed < r->cfg.election_ticks;
        if (vote_req && !force && in_lease) {
            return 0; /* a leader is alive: do not let a partitioned node disrupt it */
        }
        if (m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)) {
            /* pre-vote traffic never changes our term */
        } else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAPSHOT) {
            raft__become_follower(r, m->term, m->from);
        } else {
            raft__become_follower(r, m->term, 0);
        }
    } else if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* Tell a stale leader about the newer term so that it steps down. */
            raft__msg(r, RAFT_MSG_APPEND_RESP, m->from);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            struct raft_msg *resp = raft__msg(r, RAFT_MSG_PREVOTE_RESP, m->from);
            if (resp != NULL) {
                resp->reject = true;
            }
        }
        return 0;
    }
    if (vote_req) {
        raft__handle_vote(r, m);
        return 0;
    }
    if (r->role == RAFT_LEADER) {
        return raft__step_leader(r, m);
    }
    if (r->role == RAFT_CANDIDATE || r->role == RAFT_PRECANDIDATE) {
        if (raft__step_candidate(r, m) == 0) {
            return 0;
        }
    }
    return raft__step_follower(r, m);
}

/* The node's structural invariants, checked after every input (cheap, always on). */
static void raft__check(const struct raft *r)
{
    KV_ASSERT(r->commit <= r->last);
    KV_ASSERT(r->snap.index <= r->commit);
    KV_ASSERT(r->applied <= r->commit);
    KV_ASSERT(r->applied >= r->snap.index || r->snap_pending);
    KV_ASSERT(r->stable <= r->last && r->stable >= r->snap.index);
    KV_ASSERT(r->last - r->snap.index <= KV_RAFT_LOG_MAX);
    KV_ASSERT(r->role != RAFT_LEADER || (r->lead == r->cfg.id && r->vote == r->cfg.id));
    KV_ASSERT(r->role != RAFT_LEADER || raft_conf_is_voter(&r->conf, r->cfg.id));
    KV_ASSERT(r->n_msgs <= KV_RAFT_READY_MSGS_MAX && r->n_reads <= KV_RAFT_READS_MAX);
    KV_DASSERT(r->last == r->snap.index || raft__slot(r, r->last)->index == r->last);
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    KV_ASSERT(r->initialized);
    if (!raft__msg_valid(r, m)) {
        return KV_EPROTO;
    }
    int rc = raft__step(r, m);
    raft__check(r);
    return rc;
}

/* ---- ticks ----------------------------------------------------------------------- */

static bool raft__quorum_active(struct raft *r)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t id = r->conf.voters[i];
        struct raft_progress *p = raft__pr(r, id);
        if (id == r->cfg.id || (p != NULL && p->recent_active)) {
            active++;
        }
    }
    for (uint32_t i = 0; i < r->n_prs; i++) {
        r->prs[i].recent_active = false;
    }
    return active >= raft__quorum(r);
}

static void raft__tick_leader(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum && !raft__quorum_active(r)) {
            raft__become_follower(r, r->term, 0);
            return;
        }
        r->transferee = 0; /* a transfer that did not finish in time is abandoned */
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        raft__bcast_heartbeat(r);
    }
}

void raft_tick(struct raft *r)
{
    KV_ASSERT(r->initialized);
    if (r->role == RAFT_LEADER) {
        raft__tick_leader(r);
        raft__check(r);
        return;
    }
    r->election_elapsed++;
    if (raft__promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        r->election_elapsed = 0;
        raft__campaign(r, r->cfg.pre_vote, false);
    }
    raft__check(r);
}

int raft_campaign(struct raft *r)
{
    KV_ASSERT(r->initialized);
    if (!raft__promotable(r)) {
        return KV_EINVAL;
    }
    if (r->role == RAFT_LEADER) {
        return 0;
    }
    raft__campaign(r, r->cfg.pre_vote, false);
    return 0;
}

/* ---- proposals ------------------------------------------------------------------- */

static int raft__append_local(struct raft *r, uint32_t type, const uint8_t *data, uint32_t len,
                              uint64_t *index_out)
{
    if (r->role != RAFT_LEADER) {
        return KV_ENOTLEADER;
    }
    if (r->transferee != 0) {
        return KV_EAGAIN;
    }
    if (len > KV_RAFT_ENTRY_DATA_MAX || raft__log_room(r) <= KV_RAFT_LOG_RESERVE) {
        return KV_ELIMIT;
    }
    raft__log_put(r, r->term, r->last + 1, type, data, len);
    if (type == RAFT_ENTRY_CONF) {
        raft__prs_sync(r);
    }
    if (index_out != NULL) {
        *index_out = r->last;
    }
    raft__maybe_commit(r);
    raft__bcast_append(r, false);
    raft__check(r);
    return 0;
}

int raft_propose(struct raft *r, const uint8_t *data, uint32_t len, uint64_t *index_out)
{
    KV_ASSERT(r->initialized);
    KV_ASSERT(len == 0 || data != NULL);
    return raft__append_local(r, RAFT_ENTRY_NORMAL, data, len, index_out);
}

int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint64_t node, uint64_t *index_out)
{
    KV_ASSERT(r->initialized);
    if (r->role != RAFT_LEADER) {
        return KV_ENOTLEADER;
    }
    if (r->pending_conf_index > r->commit || r->commit < r->term_start_index) {
        return KV_EAGAIN;
    }
    const struct raft_conf *c = &r->conf;
    bool voter = raft_conf_is_voter(c, node), learner = raft_conf_is_learner(c, node);
    switch (op) {
    case RAFT_CONF_ADD_VOTER:
        if (node == 0 || voter) {
            return KV_EINVAL;
        }
        if (c->n_voters == KV_RAFT_VOTERS_MAX) {
            return KV_ELIMIT;
        }
        break;
    case RAFT_CONF_ADD_LEARNER:
        if (node == 0 || learner || node == r->cfg.id) {
            return KV_EINVAL;
        }
        if (c->n_learners == KV_RAFT_LEARNERS_MAX) {
            return KV_ELIMIT;
        }
        break;
    case RAFT_CONF_REMOVE:
        if ((!voter && !learner) || node == r->cfg.id) {
            return KV_EINVAL;
        }
        break;
    default:
        return KV_EINVAL;
    }
    uint8_t buf[RAFT_CONF_CHANGE_LEN];
    raft__put_u32(buf, (uint32_t)op);
    raft__put_u64(buf + 4, node);
    return raft__append_local(r, RAFT_ENTRY_CONF, buf, sizeof(buf), index_out);
}

int raft_transfer_leadership(struct raft *r, uint64_t target)
{
    KV_ASSERT(r->initialized);
    if (r->role != RAFT_LEADER) {
        return KV_ENOTLEADER;
    }
    if (target == r->cfg.id || !raft_conf_is_voter(&r->conf, target)) {
        return KV_EINVAL;
    }
    struct raft_progress *p = raft__pr(r, target);
    KV_ASSERT(p != NULL);
    r->transferee = target;
    r->election_elapsed = 0;
    if (p->match == r->last) {
        raft__send_timeout_now(r, target);
    } else {
        raft__send_append(r, p, false);
    }
    return 0;
}

int raft_read_index(struct raft *r, uint64_t context)
{
    KV_ASSERT(r->initialized);
    if (r->role != RAFT_LEADER) {
        return KV_ENOTLEADER;
    }
    if (r->commit < r->term_start_index) {
        return KV_EAGAIN; /* our commit index may lag the previous leader's */
    }
    if (r->n_reads == KV_RAFT_READS_MAX) {
        return KV_ELIMIT;
    }
    r->read_seq++;
    struct raft_pending_read *rd = &r->reads[r->n_reads++];
    rd->context = context;
    rd->index = r->commit;
    rd->seq = r->read_seq;
    raft__release_reads(r);
    if (r->n_reads > 0) {
        raft__bcast_heartbeat(r);
    }
    return 0;
}

/* ---- ready ----------------------------------------------------------------------- */

static struct raft_hard_state raft__hs(const struct raft *r)
{
    struct raft_hard_state hs = {.term = r->term, .vote = r->vote, .commit = r->commit};
    return hs;
}

static uint64_t raft__apply_hi(const struct raft *r)
{
    return r->commit;
}

bool raft_has_ready(const struct raft *r)
{
    struct raft_hard_state hs = raft__hs(r);
    return r->snap_pending || r->n_msgs > 0 || r->n_ready_reads > 0 || r->stable < r->last ||
           r->applied < raft__apply_hi(r) || hs.term != r->prev_hs.term ||
           hs.vote != r->prev_hs.vote || hs.commit != r->prev_hs.commit;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    KV_ASSERT(r->initialized);
    memset(rd, 0, sizeof(*rd));
    rd->hs = raft__hs(r);
    rd->hard_state_changed = rd->hs.term != r->prev_hs.term || rd->hs.vote != r->prev_hs.vote ||
                             rd->hs.commit != r->prev_hs.commit;
    if (r->snap_pending) {
        rd->snap = &r->snap;
        rd->snap_data = r->snap_data;
        rd->snap_len = r->snap_len;
    }
    rd->persist_lo = r->stable + 1;
    rd->persist_hi = r->last;
    uint64_t base = r->snap_pending ? r->snap.index : r->applied;
    rd->apply_lo = base + 1;
    rd->apply_hi = raft__apply_hi(r);
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    rd->reads = r->ready_reads;
    rd->n_reads = r->n_ready_reads;
    KV_ASSERT(r->snap.index <= r->applied || r->snap_pending);
    KV_ASSERT(r->commit <= r->last);
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    KV_ASSERT(r->initialized);
    KV_ASSERT(rd->n_msgs == r->n_msgs && rd->n_reads == r->n_ready_reads);
    r->prev_hs = rd->hs;
    if (rd->snap != NULL) {
        r->snap_pending = false;
        r->applied = r->snap.index;
    }
    if (rd->persist_hi >= rd->persist_lo && rd->persist_hi <= r->last) {
        r->stable = rd->persist_hi;
    }
    if (rd->apply_hi >= rd->apply_lo) {
        KV_ASSERT(rd->apply_hi <= r->commit);
        r->applied = rd->apply_hi;
    }
    r->n_msgs = 0;
    r->n_ready_reads = 0;
    if (r->role == RAFT_LEADER && raft__maybe_commit(r)) {
        raft__bcast_append(r, true);
    }
    raft__release_reads(r);
    raft__check(r);
}

int raft_compact(struct raft *r, uint64_t index, const uint8_t *data, uint32_t len)
{
    KV_ASSERT(r->initialized);
    if (r->snap_pending || index <= r->snap.index || index > r->applied) {
        return KV_EINVAL;
    }
    if (len > KV_RAFT_SNAPSHOT_MAX) {
        return KV_ELIMIT;
    }
    struct raft_conf c;
    uint64_t unused;
    raft__conf_at(r, index, &c, &unused);
    uint64_t term = 0;
    bool ok = raft__term_at(r, index, &term);
    KV_ASSERT(ok);
    raft__drop_borrowing_msgs(r);
    if (len > 0) {
        memcpy(r->snap_data, data, len);
    }
    r->snap_len = len;
    r->snap.index = index;
    r->snap.term = term;
    r->snap.conf = c;
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------- */

struct raft *raft_create(const struct raft_config *cfg)
{
    if (cfg == NULL || cfg->id == 0 || cfg->election_ticks < 2 || cfg->heartbeat_ticks == 0 ||
        cfg->heartbeat_ticks >= cfg->election_ticks) {
        return NULL;
    }
    size_t ents_bytes = sizeof(struct raft_entry) * KV_RAFT_LOG_MAX;
    size_t data_bytes = (size_t)KV_RAFT_ENTRY_DATA_MAX * KV_RAFT_LOG_MAX;
    size_t total = sizeof(struct raft) + ents_bytes + data_bytes + KV_RAFT_SNAPSHOT_MAX;
    /* The node's one allocation: calloc so that untouched pages stay unmapped. */
    uint8_t *mem = calloc(1, total);
    if (mem == NULL) {
        return NULL;
    }
    struct raft *r = (struct raft *)mem;
    r->ents = (struct raft_entry *)(mem + sizeof(struct raft));
    r->ent_data = mem + sizeof(struct raft) + ents_bytes;
    r->snap_data = r->ent_data + data_bytes;
    r->cfg = *cfg;
    if (r->cfg.msg_entries_max == 0 || r->cfg.msg_entries_max > KV_RAFT_MSG_ENTRIES_MAX) {
        r->cfg.msg_entries_max = KV_RAFT_MSG_ENTRIES_MAX;
    }
    if (r->cfg.inflight_max == 0 || r->cfg.inflight_max > KV_RAFT_INFLIGHT_MAX) {
        r->cfg.inflight_max = KV_RAFT_INFLIGHT_MAX;
    }
    r->rng = cfg->seed ^ (cfg->id * 0x9e3779b97f4a7c15ull);
    r->role = RAFT_FOLLOWER;
    raft__reset_timeout(r);
    return r;
}

void raft_destroy(struct raft *r)
{
    free(r);
}

int raft_restore(struct raft *r, const struct raft_hard_state *hs,
                 const struct raft_snapshot_meta *snap, const uint8_t *snap_data, uint32_t snap_len,
                 const struct raft_entry *ents, uint32_t n)
{
    KV_ASSERT(!r->initialized);
    if (snap_len > KV_RAFT_SNAPSHOT_MAX || !raft__conf_valid(&snap->conf) || n > KV_RAFT_LOG_MAX ||
        (hs->vote != 0 && hs->term == 0)) {
        return KV_ECORRUPT;
    }
    r->snap = *snap;
    if (snap_len > 0) {
        memcpy(r->snap_data, snap_data, snap_len);
    }
    r->snap_len = snap_len;
    r->last = snap->index;
    r->conf = snap->conf;
    uint64_t prev_term = snap->term;
    for (uint32_t i = 0; i < n; i++) {
        const struct raft_entry *e = &ents[i];
        if (e->index != r->last + 1 || e->term < prev_term || e->term > hs->term ||
            e->len > KV_RAFT_ENTRY_DATA_MAX ||
            (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF)) {
            return KV_ECORRUPT;
        }
        raft__log_put(r, e->term, e->index, e->type, e->data, e->len);
        prev_term = e->term;
    }
    uint64_t commit = hs->commit < snap->index ? snap->index : hs->commit;
    if (commit > r->last || hs->term < snap->term) {
        return KV_ECORRUPT;
    }
    r->term = hs->term;
    r->vote = hs->vote;
    r->commit = commit;
    r->applied = snap->index;
    r->stable = r->last;
    r->prev_hs = *hs;
    r->prev_hs.commit = commit;
    r->role = RAFT_FOLLOWER;
    r->initialized = true;
    return 0;
}

int raft_bootstrap(struct raft *r, const struct raft_conf *conf)
{
    /* The founding members start from a snapshot at (index 1, term 1) that holds the
     * initial configuration; a node that will join later starts from (0, 0) with an
     * empty one. A joiner therefore never matches a founder's log at index 0 and gets
     * that configuration through InstallSnapshot rather than an empty history. */
    struct raft_hard_state hs = {0, 0, 0};
    struct raft_snapshot_meta snap;
    memset(&snap, 0, sizeof(snap));
    snap.conf = *conf;
    if (conf->n_voters > 0) {
        snap.index = 1;
        snap.term = 1;
        hs.term = 1;
        hs.commit = 1;
    }
    int rc = raft_restore(r, &hs, &snap, NULL, 0, NULL, 0);
    if (rc == 0) {
        r->snap_pending = true;
        r->applied = 0;
        memset(&r->prev_hs, 0, sizeof(r->prev_hs)); /* so the first ready persists hs */
    }
    return rc;
}

/* ---- getters --------------------------------------------------------------------- */

const struct raft_entry *raft_log_entry(const struct raft *r, uint64_t index)
{
    if (index <= r->snap.index || index > r->last) {
        return NULL;
    }
    return raft__slot(r, index);
}

const struct raft_snapshot_meta *raft_snapshot(const struct raft *r, const uint8_t **data,
                                               uint32_t *len)
{
    *data = r->snap_data;
    *len = r->snap_len;
    return &r->snap;
}

void raft_status(const struct raft *r, struct raft_status *st)
{
    memset(st, 0, sizeof(*st));
    st->id = r->cfg.id;
    st->role = r->role;
    st->term = r->term;
    st->vote = r->vote;
    st->lead = r->lead;
    st->commit = r->commit;
    st->applied = r->applied;
    st->snap_index = r->snap.index;
    st->snap_term = r->snap.term;
    st->last_index = r->last;
    st->last_term = r->initialized ? raft__last_term(r) : 0;
    st->transferee = r->transferee;
    st->msgs_dropped = r->msgs_dropped;
    st->conf = r->conf;
}

const char *raft_msg_type_name(uint32_t type)
{
    static const char *const names[] = {
        [RAFT_MSG_APPEND] = "append",       [RAFT_MSG_APPEND_RESP] = "append_resp",
        [RAFT_MSG_VOTE] = "vote",           [RAFT_MSG_VOTE_RESP] = "vote_resp",
        [RAFT_MSG_PREVOTE] = "prevote",     [RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
        [RAFT_MSG_HEARTBEAT] = "heartbeat", [RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
        [RAFT_MSG_SNAPSHOT] = "snapshot",   [RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
    };
    if (type >= RAFT_MSG_APPEND && type < RAFT_MSG_TYPE_END) {
        return names[type];
    }
    return "?";
}
