/*
 * raft: a pure Raft consensus state machine for the cluster metadata (etcd-io/raft style).
 *
 * No I/O, no clock, no threads. The caller feeds it messages (raft_step), time
 * (raft_tick) and proposals (raft_propose, raft_propose_conf), then drains the work it
 * produced with raft_ready(): the hard state and log entries to persist, a snapshot to
 * persist and install, messages to send AFTER persisting, committed entries to apply and
 * ReadIndex results. raft_advance() acknowledges a ready once it is done. Between
 * raft_ready() and raft_advance() the caller must not call anything but raft_log_entry()
 * and the read-only getters.
 *
 * Features: randomized election timeouts from a seeded generator, pre-vote,
 * check-quorum, log replication with fast conflict backtracking, the current-term commit
 * rule, snapshots and InstallSnapshot, single-server membership changes (voters and
 * learners; the configuration in effect is the last one in the log, committed or not),
 * leadership transfer (TimeoutNow) and ReadIndex.
 *
 * Memory: raft_create() makes the node's only allocation (the struct, the log ring of
 * KV_RAFT_LOG_MAX entries with KV_RAFT_ENTRY_DATA_MAX bytes each, and a snapshot buffer
 * of KV_RAFT_SNAPSHOT_MAX bytes). Pointers returned by the node (entries, messages,
 * snapshot data) stay valid until the next call that may change the node.
 */
#ifndef KV_RAFT_H
#define KV_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_limits.h"

struct raft;

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRECANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

/* A normal entry carries caller data (an empty one is a leader's no-op); a conf entry
 * carries one membership change encoded by the node itself (raft_conf_change_decode). */
enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 1,
    RAFT_ENTRY_CONF = 2,
};

enum raft_conf_op {
    RAFT_CONF_ADD_VOTER = 1,   /* add a voter, or promote a learner */
    RAFT_CONF_ADD_LEARNER = 2, /* add a learner, or demote a voter */
    RAFT_CONF_REMOVE = 3,      /* remove a voter or a learner */
};

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,     /* index/log_term: previous entry; entries; commit */
    RAFT_MSG_APPEND_RESP,    /* index: last matching index, or the rejected index */
    RAFT_MSG_VOTE,           /* index/log_term: candidate's last entry */
    RAFT_MSG_VOTE_RESP,      /* reject: vote denied */
    RAFT_MSG_PREVOTE,        /* term: the term the candidate would campaign in */
    RAFT_MSG_PREVOTE_RESP,   /* reject: pre-vote denied */
    RAFT_MSG_HEARTBEAT,      /* commit; context: the leader's ReadIndex sequence */
    RAFT_MSG_HEARTBEAT_RESP, /* context: echoed */
    RAFT_MSG_SNAPSHOT,       /* snap + snap_data: InstallSnapshot */
    RAFT_MSG_TIMEOUT_NOW,    /* leadership transfer: campaign now, skipping pre-vote */
    RAFT_MSG_TYPE_END,
};

/* Message flag: a vote request made on a leadership transfer ignores leader leases. */
#define RAFT_MSG_FLAG_TRANSFER 0x01u

/* One log entry. `data` is borrowed: from the node's log ring, or from a decoded buffer. */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint32_t type; /* enum raft_entry_type */
    uint32_t len;  /* <= KV_RAFT_ENTRY_DATA_MAX */
    const uint8_t *data;
};

/* A membership configuration. Ids are non-zero and distinct across both lists. */
struct raft_conf {
    uint32_t n_voters;
    uint32_t n_learners;
    uint64_t voters[KV_RAFT_VOTERS_MAX];
    uint64_t learners[KV_RAFT_LEARNERS_MAX];
};

struct raft_snapshot_meta {
    uint64_t index;        /* last entry the snapshot covers */
    uint64_t term;         /* its term */
    struct raft_conf conf; /* configuration as of `index` */
};

/* What must be on stable storage before messages of the same ready are sent. */
struct raft_hard_state {
    uint64_t term;
    uint64_t vote; /* 0: none */
    uint64_t commit;
};

struct raft_msg {
    uint32_t type; /* enum raft_msg_type */
    uint32_t flags;
    bool reject;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    uint64_t reject_hint; /* APPEND_RESP reject: follower's hint index (log_term: its term) */
    uint64_t context;     /* HEARTBEAT(_RESP): ReadIndex sequence */
    uint32_t n_entries;   /* <= KV_RAFT_MSG_ENTRIES_MAX */
    const struct raft_entry *entries; /* borrowed */
    struct raft_snapshot_meta snap;   /* SNAPSHOT only */
    uint32_t snap_len;
    const uint8_t *snap_data; /* borrowed */
};

/* A ReadIndex result: reads with this context are linearizable once applied >= index. */
struct raft_read_state {
    uint64_t context;
    uint64_t index;
};

struct raft_ready {
    bool hard_state_changed;
    struct raft_hard_state hs;
    /* Snapshot to persist (replacing the whole persisted log) and to restore the state
     * machine from; NULL if none. Its data is borrowed from the node. */
    const struct raft_snapshot_meta *snap;
    const uint8_t *snap_data;
    uint32_t snap_len;
    /* Entries [persist_lo, persist_hi] to persist, read with raft_log_entry(); an entry at
     * index i replaces every persisted entry >= i. Empty when lo > hi. */
    uint64_t persist_lo;
    uint64_t persist_hi;
    /* Committed entries [apply_lo, apply_hi] to apply, in order. Empty when lo > hi. */
    uint64_t apply_lo;
    uint64_t apply_hi;
    const struct raft_msg *msgs; /* send after persisting; borrowed */
    uint32_t n_msgs;
    const struct raft_read_state *reads;
    uint32_t n_reads;
};

struct raft_config {
    uint64_t id;              /* non-zero */
    uint32_t election_ticks;  /* KV_DEFAULT_RAFT_ELECTION_TICKS */
    uint32_t heartbeat_ticks; /* KV_DEFAULT_RAFT_HEARTBEAT_TICKS, < election_ticks */
    uint64_t seed;            /* randomized election timeouts */
    bool pre_vote;
    bool check_quorum;
    uint32_t msg_entries_max; /* entries per append, <= KV_RAFT_MSG_ENTRIES_MAX; 0: that */
    uint32_t inflight_max;    /* append batches in flight, <= KV_RAFT_INFLIGHT_MAX; 0: that */
};

struct raft_status {
    uint64_t id;
    enum raft_role role;
    uint64_t term;
    uint64_t vote;
    uint64_t lead;
    uint64_t commit;
    uint64_t applied;
    uint64_t snap_index;
    uint64_t snap_term;
    uint64_t last_index;
    uint64_t last_term;
    uint64_t transferee;
    uint64_t msgs_dropped;
    struct raft_conf conf;
};

/* Allocates a node (one allocation, see above). Returns NULL if cfg is invalid or memory
 * is short. The node is empty: call raft_bootstrap() or raft_restore() next. */
struct raft *raft_create(const struct raft_config *cfg);
void raft_destroy(struct raft *r);

/* A brand-new node. A founding member (conf has voters; every founder passes the same
 * conf) starts from an empty snapshot at index 1, term 1 holding `conf`; a node that
 * will join later (empty conf) from an empty snapshot at index 0. The snapshot appears
 * in the next ready so that it gets persisted. */
int raft_bootstrap(struct raft *r, const struct raft_conf *conf);

/* A restarted node, from what it persisted. `ents` (n of them, borrowed for the call)
 * must follow snap->index contiguously. KV_ECORRUPT if the pieces do not fit together. */
int raft_restore(struct raft *r, const struct raft_hard_state *hs,
                 const struct raft_snapshot_meta *snap, const uint8_t *snap_data, uint32_t snap_len,
                 const struct raft_entry *ents, uint32_t n);

/* Feeds one received message. KV_EPROTO if it is not addressed to this node or breaks
 * a structural rule (the message is then ignored); stale messages are ignored and 0. */
int raft_step(struct raft *r, const struct raft_msg *m);

/* Advances logical time by one tick. */
void raft_tick(struct raft *r);

/* Starts an election now (with pre-vote if configured). KV_EINVAL if not a voter, or if
 * its log has no free slot for a new term's first entry (another voter will lead). */
int raft_campaign(struct raft *r);

/* Appends `data` as a normal entry. KV_ENOTLEADER, KV_EAGAIN (a transfer is under way),
 * KV_ELIMIT (data too long or log full: compact). *index_out gets the entry's index. */
int raft_propose(struct raft *r, const uint8_t *data, uint32_t len, uint64_t *index_out);

/* Appends one membership change. It takes effect as soon as it is appended. KV_EAGAIN
 * while an earlier change or the leader's first entry of its term is uncommitted;
 * KV_EINVAL for a change that is a no-op or would remove or demote the leader itself;
 * KV_ELIMIT beyond KV_RAFT_VOTERS_MAX / KV_RAFT_LEARNERS_MAX. */
int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint64_t node, uint64_t *index_out);

/* Leader only: hands leadership to voter `target` (TimeoutNow once it is caught up).
 * Aborted after an election timeout. */
int raft_transfer_leadership(struct raft *r, uint64_t target);

/* Leader only: asks for a linearizable read point; a raft_read_state with `context`
 * shows up in a later ready. KV_EAGAIN until the leader has committed an entry of its
 * term; KV_ELIMIT when KV_RAFT_READS_MAX are pending. Pending reads are dropped if the
 * node loses leadership: the caller retries after a timeout. */
int raft_read_index(struct raft *r, uint64_t context);

bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* Compacts the log up to `index` (<= applied) with the state machine's serialized state
 * at that index (copied). The caller persists the same snapshot. */
int raft_compact(struct raft *r, uint64_t index, const uint8_t *data, uint32_t len);

/* The entry at `index` if it is in the in-memory log, else NULL. Borrowed. */
const struct raft_entry *raft_log_entry(const struct raft *r, uint64_t index);

/* The node's latest snapshot (meta and data, borrowed). */
const struct raft_snapshot_meta *raft_snapshot(const struct raft *r, const uint8_t **data,
                                               uint32_t *len);

void raft_status(const struct raft *r, struct raft_status *st);

/* Decodes the payload of a RAFT_ENTRY_CONF entry. KV_EPROTO if malformed. */
int raft_conf_change_decode(const uint8_t *data, uint32_t len, enum raft_conf_op *op,
                            uint64_t *node);

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id);
bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id);

const char *raft_msg_type_name(uint32_t type);

#endif
