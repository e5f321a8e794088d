/*
 * Unit tests of cluster/raft and cluster/raft_codec: one test per Raft rule, driven
 * through a tiny in-test network (messages go through the wire codec) or by stepping
 * hand-made messages into a node.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kv_error.h"
#include "raft.h"
#include "raft_codec.h"

#define NET_MAX   6
#define QUEUE_MAX 4096

struct tnode {
    struct raft *r;
    uint64_t applied;
    uint32_t n_applied_data;
    char last_data[64];
    uint32_t snapshots;
    char snap_data[64];
    uint64_t read_ctx, read_index;
    uint32_t n_reads;
};

struct tmsg {
    uint64_t to;
    size_t len;
    uint8_t *buf;
};

struct net {
    uint32_t n;
    struct tnode nodes[NET_MAX + 1]; /* 1-based */
    bool cut[NET_MAX + 1][NET_MAX + 1];
    struct tmsg q[QUEUE_MAX];
    size_t head, tail;
    uint32_t rejects_seen; /* APPEND_RESP rejections delivered */
};

static struct net *N;

static struct raft_config cfg_for(uint64_t id, bool pre_vote, bool check_quorum)
{
    struct raft_config c = {.id = id,
                            .election_ticks = 10,
                            .heartbeat_ticks = 1,
                            .seed = 42,
                            .pre_vote = pre_vote,
                            .check_quorum = check_quorum};
    return c;
}

/* n nodes; the first `voters` found the cluster, the others join later. */
static void net_setup(uint32_t n, uint32_t voters, bool pre_vote, bool check_quorum)
{
    N = calloc(1, sizeof(*N));
    cr_assert(N != NULL);
    N->n = n;
    struct raft_conf conf, empty;
    memset(&conf, 0, sizeof(conf));
    memset(&empty, 0, sizeof(empty));
    for (uint32_t i = 1; i <= voters; i++) {
        conf.voters[conf.n_voters++] = i;
    }
    for (uint32_t i = 1; i <= n; i++) {
        struct raft_config c = cfg_for(i, pre_vote, check_quorum);
        N->nodes[i].r = raft_create(&c);
        cr_assert(N->nodes[i].r != NULL);
        cr_assert_eq(raft_bootstrap(N->nodes[i].r, i <= voters ? &conf : &empty), 0);
    }
}

static void net_teardown(void)
{
    for (uint32_t i = 1; i <= N->n; i++) {
        raft_destroy(N->nodes[i].r);
    }
    for (size_t i = N->head; i < N->tail; i++) {
        free(N->q[i % QUEUE_MAX].buf);
    }
    free(N);
}

static void net_send(const struct raft_msg *m)
{
    if (N->cut[m->from][m->to]) {
        return;
    }
    cr_assert(N->tail - N->head < QUEUE_MAX, "test queue overflow");
    struct tmsg *t = &N->q[N->tail++ % QUEUE_MAX];
    t->to = m->to;
    t->len = raft_msg_encoded_size(m);
    t->buf = malloc(t->len);
    size_t len;
    cr_assert_eq(raft_msg_encode(m, t->buf, t->len, &len), 0);
    cr_assert_eq(len, t->len);
}

/* Processes a node's ready until it has none: queue messages, record applies. */
static void drain(uint64_t id)
{
    struct tnode *t = &N->nodes[id];
    while (raft_has_ready(t->r)) {
        struct raft_ready rd;
        raft_ready(t->r, &rd);
        if (rd.snap != NULL) {
            t->snapshots++;
            memset(t->snap_data, 0, sizeof(t->snap_data));
            memcpy(t->snap_data, rd.snap_data, rd.snap_len < 63 ? rd.snap_len : 63);
            t->applied = rd.snap->index;
        }
        for (uint32_t i = 0; i < rd.n_msgs; i++) {
            net_send(&rd.msgs[i]);
        }
        for (uint64_t i = rd.apply_lo; i <= rd.apply_hi; i++) {
            const struct raft_entry *e = raft_log_entry(t->r, i);
            cr_assert(e != NULL);
            cr_assert_eq(i, t->applied + 1, "n%llu applies %llu after %llu", (unsigned long long)id,
                         (unsigned long long)i, (unsigned long long)t->applied);
            t->applied = i;
            if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
                t->n_applied_data++;
                memset(t->last_data, 0, sizeof(t->last_data));
                memcpy(t->last_data, e->data, e->len < 63 ? e->len : 63);
            }
        }
        for (uint32_t i = 0; i < rd.n_reads; i++) {
            t->n_reads++;
            t->read_ctx = rd.reads[i].context;
            t->read_index = rd.reads[i].index;
        }
        raft_advance(t->r, &rd);
    }
}

static void drain_all(void)
{
    for (uint32_t i = 1; i <= N->n; i++) {
        drain(i);
    }
}

/* Delivers queued messages (and those they cause) until the network is quiet. */
static void deliver(void)
{
    drain_all();
    struct raft_entry ents[KV_RAFT_MSG_ENTRIES_MAX];
    while (N->head < N->tail) {
        struct tmsg t = N->q[N->head++ % QUEUE_MAX];
        struct raft_msg m;
        cr_assert_eq(raft_msg_decode(t.buf, t.len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0);
        if (!N->cut[m.from][m.to]) {
            if (m.type == RAFT_MSG_APPEND_RESP && m.reject) {
                N->rejects_seen++;
            }
            cr_assert_eq(raft_step(N->nodes[t.to].r, &m), 0);
            drain(t.to);
        }
        free(t.buf);
    }
}

static void tick(uint64_t id, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        raft_tick(N->nodes[id].r);
        drain(id);
    }
}

/* Ticks every node once and delivers, n times. */
static void tick_all(uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        for (uint32_t i = 1; i <= N->n; i++) {
            raft_tick(N->nodes[i].r);
        }
        deliver();
    }
}

static void isolate(uint64_t id, bool on)
{
    for (uint32_t i = 1; i <= N->n; i++) {
        if (i != id) {
            N->cut[id][i] = on;
            N->cut[i][id] = on;
        }
    }
}

static struct raft_status status(uint64_t id)
{
    struct raft_status st;
    raft_status(N->nodes[id].r, &st);
    return st;
}

static bool conf_has(uint64_t node, uint64_t id, bool voter)
{
    struct raft_status st = status(node);
    return voter ? raft_conf_is_voter(&st.conf, id) : raft_conf_is_learner(&st.conf, id);
}

static void elect(uint64_t id)
{
    cr_assert_eq(raft_campaign(N->nodes[id].r), 0);
    deliver();
    cr_assert_eq(status(id).role, RAFT_LEADER, "n%llu did not win", (unsigned long long)id);
}

static uint64_t propose(uint64_t id, const char *s)
{
    uint64_t index = 0;
    cr_assert_eq(raft_propose(N->nodes[id].r, (const uint8_t *)s, (uint32_t)strlen(s), &index), 0);
    drain(id);
    return index;
}

static void logs_equal(uint64_t a, uint64_t b)
{
    struct raft_status sa = status(a), sb = status(b);
    cr_assert_eq(sa.last_index, sb.last_index);
    uint64_t lo = (sa.snap_index > sb.snap_index ? sa.snap_index : sb.snap_index) + 1;
    for (uint64_t i = lo; i <= sa.last_index; i++) {
        const struct raft_entry *x = raft_log_entry(N->nodes[a].r, i);
        const struct raft_entry *y = raft_log_entry(N->nodes[b].r, i);
        cr_assert(x != NULL && y != NULL);
        cr_assert_eq(x->term, y->term, "index %llu", (unsigned long long)i);
        cr_assert_eq(x->len, y->len);
        cr_assert(x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
    }
}

/* ---- elections ------------------------------------------------------------------- */

Test(raft, election_and_replication)
{
    net_setup(3, 3, true, true);
    elect(1);
    cr_assert_eq(status(1).term, 2); /* founders start at term 1 */
    cr_assert_eq(status(2).lead, 1);
    cr_assert_eq(status(3).lead, 1);
    uint64_t idx = propose(1, "hello");
    deliver();
    tick_all(1);
    for (uint64_t i = 1; i <= 3; i++) {
        cr_assert_geq(status(i).commit, idx);
        cr_assert_str_eq(N->nodes[i].last_data, "hello");
    }
    cr_assert_eq(raft_propose(N->nodes[2].r, (const uint8_t *)"x", 1, NULL), KV_ENOTLEADER);
    net_teardown();
}

Test(raft, election_by_timeout)
{
    net_setup(5, 5, true, true);
    tick_all(40);
    uint32_t leaders = 0;
    for (uint64_t i = 1; i <= 5; i++) {
        leaders += status(i).role == RAFT_LEADER;
    }
    cr_assert_eq(leaders, 1);
    net_teardown();
}

Test(raft, election_restriction)
{
    /* n1 replicates an entry to n2 only; n3, whose log is behind, cannot win, n2 can. */
    net_setup(3, 3, false, false);
    elect(1);
    N->cut[1][3] = true;
    propose(1, "only-n1-n2");
    deliver();
    isolate(1, true);
    cr_assert_eq(raft_campaign(N->nodes[3].r), 0);
    deliver();
    cr_assert_neq(status(3).role, RAFT_LEADER);
    cr_assert_eq(status(2).vote, 0); /* n2 refused its vote in the new term */
    cr_assert_eq(raft_campaign(N->nodes[2].r), 0);
    deliver();
    cr_assert_eq(status(2).role, RAFT_LEADER);
    net_teardown();
}

Test(raft, one_vote_per_term)
{
    net_setup(3, 3, false, false);
    struct raft *r = N->nodes[1].r;
    struct raft_msg v = {
        .type = RAFT_MSG_VOTE, .from = 2, .to = 1, .term = 5, .index = 1, .log_term = 1};
    cr_assert_eq(raft_step(r, &v), 0);
    cr_assert_eq(status(1).vote, 2);
    v.from = 3;
    cr_assert_eq(raft_step(r, &v), 0);
    cr_assert_eq(status(1).vote, 2);
    struct raft_ready rd;
    raft_ready(r, &rd);
    cr_assert_eq(rd.n_msgs, 2);
    cr_assert(!rd.msgs[0].reject);
    cr_assert(rd.msgs[1].reject);
    cr_assert(rd.hard_state_changed);
    cr_assert_eq(rd.hs.vote, 2);
    cr_assert_eq(rd.hs.term, 5);
    raft_advance(r, &rd);
    net_teardown();
}

Test(raft, prevote_does_not_disrupt_stable_leader)
{
    net_setup(3, 3, true, true);
    elect(1);
    uint64_t term = status(1).term;
    isolate(3, true);
    tick(3, 100); /* many election timeouts: pre-votes go nowhere */
    cr_assert_eq(status(3).term, term, "pre-vote must not bump the term");
    isolate(3, false);
    tick_all(30);
    cr_assert_eq(status(1).role, RAFT_LEADER);
    cr_assert_eq(status(1).term, term);
    cr_assert_eq(status(3).lead, 1);
    net_teardown();
}

Test(raft, leader_lease_ignores_vote_requests)
{
    net_setup(3, 3, true, true);
    elect(1);
    uint64_t term = status(2).term;
    struct raft_msg v = {.type = RAFT_MSG_VOTE,
                         .from = 3,
                         .to = 2,
                         .term = term + 5,
                         .index = 100,
                         .log_term = term};
    cr_assert_eq(raft_step(N->nodes[2].r, &v), 0);
    cr_assert_eq(status(2).term, term, "a follower in lease ignores a higher-term vote");
    cr_assert_eq(status(2).lead, 1);
    net_teardown();
}

Test(raft, check_quorum_steps_down)
{
    net_setup(3, 3, true, true);
    elect(1);
    isolate(1, true);
    tick(1, 25);
    cr_assert_eq(status(1).role, RAFT_FOLLOWER);
    net_teardown();
}

/* ---- replication ----------------------------------------------------------------- */

Test(raft, conflict_backtracking_is_fast)
{
    net_setup(3, 3, false, false);
    elect(1);
    propose(1, "base");
    deliver();
    /* n1 keeps 30 entries that nobody else has. */
    isolate(1, true);
    for (int i = 0; i < 30; i++) {
        propose(1, "stale");
    }
    cr_assert_eq(raft_campaign(N->nodes[2].r), 0);
    deliver();
    cr_assert_eq(status(2).role, RAFT_LEADER);
    for (int i = 0; i < 5; i++) {
        propose(2, "new");
    }
    deliver();
    isolate(1, false);
    N->rejects_seen = 0;
    tick_all(3);
    cr_assert_eq(status(1).role, RAFT_FOLLOWER);
    logs_equal(1, 2);
    cr_assert_str_eq(N->nodes[1].last_data, "new");
    cr_assert_leq(N->rejects_seen, 2, "one rejection per conflicting term, got %u",
                  N->rejects_seen);
    net_teardown();
}

static struct raft *follower_of_three(uint64_t id)
{
    struct raft_config c = cfg_for(id, false, false);
    struct raft *r = raft_create(&c);
    struct raft_conf conf = {.n_voters = 3, .voters = {1, 2, 3}};
    cr_assert_eq(raft_bootstrap(r, &conf), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    raft_advance(r, &rd);
    return r;
}

static const struct raft_msg *only_msg(struct raft *r)
{
    static struct raft_msg copy;
    struct raft_ready rd;
    raft_ready(r, &rd);
    cr_assert_eq(rd.n_msgs, 1);
    copy = rd.msgs[0];
    raft_advance(r, &rd);
    return &copy;
}

Test(raft, log_matching_consistency_check)
{
    struct raft *r = follower_of_three(2);
    struct raft_entry e[3] = {
        {.term = 2, .index = 2, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = (const uint8_t *)"a"},
        {.term = 2, .index = 3, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = (const uint8_t *)"b"},
        {.term = 2, .index = 4, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = (const uint8_t *)"c"},
    };
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 2,
                         .term = 2,
                         .index = 1,
                         .log_term = 1,
                         .n_entries = 3,
                         .entries = e};
    cr_assert_eq(raft_step(r, &m), 0);
    const struct raft_msg *resp = only_msg(r);
    cr_assert(!resp->reject);
    cr_assert_eq(resp->index, 4);
    /* A previous entry that does not match is refused, with a hint below it. */
    struct raft_msg bad = {
        .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 4, .log_term = 1};
    cr_assert_eq(raft_step(r, &bad), 0);
    resp = only_msg(r);
    cr_assert(resp->reject);
    cr_assert_eq(resp->index, 4);
    cr_assert_eq(resp->reject_hint, 1); /* the last index whose term is <= 1 */
    bad.index = 9;
    bad.log_term = 2;
    cr_assert_eq(raft_step(r, &bad), 0);
    resp = only_msg(r);
    cr_assert(resp->reject); /* beyond our log */
    cr_assert_eq(resp->reject_hint, 4);
    /* A matching previous entry and a conflicting suffix: the suffix is replaced. */
    struct raft_entry n[1] = {
        {.term = 3, .index = 3, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = (const uint8_t *)"X"}};
    struct raft_msg fix = {.type = RAFT_MSG_APPEND,
                           .from = 3,
                           .to = 2,
                           .term = 3,
                           .index = 2,
                           .log_term = 2,
                           .n_entries = 1,
                           .entries = n};
    cr_assert_eq(raft_step(r, &fix), 0);
    resp = only_msg(r);
    cr_assert_eq(resp->index, 3);
    struct raft_status st;
    raft_status(r, &st);
    cr_assert_eq(st.last_index, 3);
    cr_assert_eq(raft_log_entry(r, 3)->term, 3);
    cr_assert_eq(raft_log_entry(r, 3)->data[0], 'X');
    cr_assert_eq(raft_log_entry(r, 2)->data[0], 'a');
    raft_destroy(r);
}

Test(raft, truncation_reverts_uncommitted_configuration)
{
    struct raft *r = follower_of_three(2);
    static const uint8_t add_learner_4[12] = {2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0};
    struct raft_entry c = {
        .term = 2, .index = 2, .type = RAFT_ENTRY_CONF, .len = 12, .data = add_learner_4};
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 2,
                         .term = 2,
                         .index = 1,
                         .log_term = 1,
                         .n_entries = 1,
                         .entries = &c};
    cr_assert_eq(raft_step(r, &m), 0);
    only_msg(r);
    struct raft_status st;
    raft_status(r, &st);
    cr_assert(raft_conf_is_learner(&st.conf, 4), "in force once appended");
    struct raft_entry n = {.term = 3, .index = 2, .type = RAFT_ENTRY_NORMAL};
    struct raft_msg m2 = {.type = RAFT_MSG_APPEND,
                          .from = 3,
                          .to = 2,
                          .term = 3,
                          .index = 1,
                          .log_term = 1,
                          .n_entries = 1,
                          .entries = &n};
    cr_assert_eq(raft_step(r, &m2), 0);
    only_msg(r);
    raft_status(r, &st);
    cr_assert(!raft_conf_is_learner(&st.conf, 4), "reverted with the truncated entry");
    cr_assert_eq(st.conf.n_voters, 3);
    raft_destroy(r);
}

Test(raft, figure8_commit_only_current_term)
{
    /* A leader of term 4 whose log holds an entry of term 2 that a quorum stores must
     * not count it committed until an entry of term 4 is stored by a quorum. */
    struct raft_config c = cfg_for(1, false, false);
    struct raft *r = raft_create(&c);
    struct raft_conf conf = {.n_voters = 5, .voters = {1, 2, 3, 4, 5}};
    struct raft_snapshot_meta snap = {.index = 1, .term = 1, .conf = conf};
    struct raft_entry e = {
        .term = 2, .index = 2, .type = RAFT_ENTRY_NORMAL, .len = 1, .data = (const uint8_t *)"A"};
    struct raft_hard_state hs = {.term = 3, .vote = 0, .commit = 1};
    cr_assert_eq(raft_restore(r, &hs, &snap, NULL, 0, &e, 1), 0);
    cr_assert_eq(raft_campaign(r), 0);
    struct raft_ready rd;
    raft_ready(r, &rd);
    raft_advance(r, &rd);
    for (uint64_t from = 2; from <= 3; from++) {
        struct raft_msg v = {.type = RAFT_MSG_VOTE_RESP, .from = from, .to = 1, .term = 4};
        cr_assert_eq(raft_step(r, &v), 0);
    }
    struct raft_status st;
    raft_status(r, &st);
    cr_assert_eq(st.role, RAFT_LEADER);
    cr_assert_eq(st.last_index, 3); /* its no-op of term 4 */
    raft_ready(r, &rd);
    raft_advance(r, &rd);
    for (uint64_t from = 2; from <= 3; from++) {
        struct raft_msg a = {
            .type = RAFT_MSG_APPEND_RESP, .from = from, .to = 1, .term = 4, .index = 2};
        cr_assert_eq(raft_step(r, &a), 0);
    }
    raft_ready(r, &rd);
    raft_advance(r, &rd);
    raft_status(r, &st);
    cr_assert_eq(st.commit, 1, "term-2 entry stored by a quorum must not commit by count");
    struct raft_msg a = {.type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 4, .index = 3};
    cr_assert_eq(raft_step(r, &a), 0);
    raft_status(r, &st);
    cr_assert_eq(st.commit, 1); /* n1 and n2 hold index 3: not a quorum of five */
    a.from = 3;
    cr_assert_eq(raft_step(r, &a), 0);
    raft_status(r, &st);
    cr_assert_eq(st.commit, 3, "the term-4 entry commits, and the term-2 one with it");
    raft_destroy(r);
}

Test(raft, follower_rejects_rewrite_and_stale_leader_steps_down)
{
    net_setup(3, 3, true, true);
    elect(1);
    uint64_t t1 = status(1).term;
    isolate(1, true);
    tick_all(25);                               /* n2 or n3 takes over */
    cr_assert_neq(status(1).role, RAFT_LEADER); /* check-quorum */
    isolate(1, false);
    tick_all(5);
    cr_assert_gt(status(1).term, t1);
    net_teardown();
}

/* ---- snapshots ------------------------------------------------------------------- */

Test(raft, snapshot_install_after_compaction)
{
    net_setup(3, 3, true, true);
    elect(1);
    isolate(3, true);
    for (int i = 0; i < 20; i++) {
        propose(1, "v");
    }
    deliver();
    tick_all(1);
    struct raft_status st = status(1);
    cr_assert_eq(st.applied, st.last_index);
    cr_assert_eq(raft_compact(N->nodes[1].r, st.applied, (const uint8_t *)"state@x", 7), 0);
    cr_assert_eq(raft_compact(N->nodes[1].r, st.applied, (const uint8_t *)"x", 1), KV_EINVAL);
    cr_assert_null(raft_log_entry(N->nodes[1].r, st.applied));
    isolate(3, false);
    tick_all(6); /* the leader notices the lost appends after 3 idle heartbeats */
    cr_assert_eq(N->nodes[3].snapshots, 2); /* bootstrap + installed */
    cr_assert_str_eq(N->nodes[3].snap_data, "state@x");
    cr_assert_eq(status(3).snap_index, st.applied);
    propose(1, "after");
    deliver();
    tick_all(1);
    cr_assert_str_eq(N->nodes[3].last_data, "after");
    logs_equal(1, 3);
    net_teardown();
}

Test(raft, restore_from_persisted_state)
{
    net_setup(3, 3, true, true);
    elect(1);
    propose(1, "a");
    propose(1, "b");
    deliver();
    tick_all(1);
    /* Rebuild n2 from its own log as if it had restarted. */
    struct raft_status st = status(2);
    struct raft_entry ents[16];
    uint32_t n = 0;
    for (uint64_t i = st.snap_index + 1; i <= st.last_index; i++) {
        ents[n++] = *raft_log_entry(N->nodes[2].r, i);
    }
    const uint8_t *sd;
    uint32_t sl;
    struct raft_snapshot_meta sm = *raft_snapshot(N->nodes[2].r, &sd, &sl);
    struct raft_hard_state hs = {.term = st.term, .vote = st.vote, .commit = st.commit};
    struct raft_config c = cfg_for(2, true, true);
    struct raft *r = raft_create(&c);
    cr_assert_eq(raft_restore(r, &hs, &sm, sd, sl, ents, n), 0);
    struct raft_status st2;
    raft_status(r, &st2);
    cr_assert_eq(st2.last_index, st.last_index);
    cr_assert_eq(st2.term, st.term);
    cr_assert_eq(st2.applied, sm.index); /* committed entries are re-applied */
    struct raft_ready rd;
    raft_ready(r, &rd);
    cr_assert_eq(rd.apply_lo, sm.index + 1);
    cr_assert_eq(rd.apply_hi, st.commit);
    raft_advance(r, &rd);
    /* A gap in the entries is corruption. */
    struct raft *bad = raft_create(&c);
    ents[1] = ents[2];
    cr_assert_eq(raft_restore(bad, &hs, &sm, sd, sl, ents, n), KV_ECORRUPT);
    raft_destroy(bad);
    raft_destroy(r);
    net_teardown();
}

/* ---- membership -------------------------------------------------------------------- */

Test(raft, membership_single_server_changes)
{
    net_setup(5, 3, true, true);
    elect(1);
    struct raft *l = N->nodes[1].r;
    uint64_t idx;
    cr_assert_eq(raft_propose_conf(l, RAFT_CONF_ADD_LEARNER, 4, &idx), 0);
    /* It takes effect when appended, and only one change may be in flight. */
    cr_assert(conf_has(1, 4, false));
    cr_assert_eq(raft_propose_conf(l, RAFT_CONF_ADD_LEARNER, 5, NULL), KV_EAGAIN);
    deliver();
    tick_all(3);
    cr_assert(conf_has(4, 4, false));
    cr_assert_eq(status(4).lead, 1);
    cr_assert_eq(status(4).commit, status(1).commit);
    tick(4, 100); /* a learner never campaigns */
    cr_assert_eq(status(4).role, RAFT_FOLLOWER);
    cr_assert_eq(raft_propose_conf(l, RAFT_CONF_ADD_VOTER, 4, NULL), 0);
    deliver();
    tick_all(2);
    cr_assert(conf_has(2, 4, true));
    cr_assert_eq(status(1).conf.n_voters, 4);
    cr_assert_eq(raft_propose_conf(l, RAFT_CONF_REMOVE, 1, NULL), KV_EINVAL);
    cr_assert_eq(raft_propose_conf(l, RAFT_CONF_ADD_VOTER, 4, NULL), KV_EINVAL);
    cr_assert_eq(raft_propose_conf(l, RAFT_CONF_REMOVE, 2, NULL), 0);
    deliver();
    tick_all(2);
    cr_assert(!conf_has(1, 2, true));
    /* With voters {1,3,4}, n1 and n4 alone commit. */
    isolate(3, true);
    uint64_t i2 = propose(1, "quorum-1-4");
    deliver();
    tick_all(1);
    cr_assert_geq(status(1).commit, i2);
    net_teardown();
}

Test(raft, membership_voter_limit)
{
    net_setup(6, 5, true, true);
    elect(1);
    cr_assert_eq(raft_propose_conf(N->nodes[1].r, RAFT_CONF_ADD_VOTER, 6, NULL), KV_ELIMIT);
    net_teardown();
}

/* ---- leadership transfer ------------------------------------------------------------ */

Test(raft, leadership_transfer)
{
    net_setup(3, 3, true, true);
    elect(1);
    uint64_t term = status(1).term;
    cr_assert_eq(raft_transfer_leadership(N->nodes[1].r, 1), KV_EINVAL);
    cr_assert_eq(raft_transfer_leadership(N->nodes[1].r, 3), 0);
    cr_assert_eq(raft_propose(N->nodes[1].r, (const uint8_t *)"x", 1, NULL), KV_EAGAIN);
    deliver();
    cr_assert_eq(status(3).role, RAFT_LEADER);
    cr_assert_eq(status(3).term, term + 1);
    cr_assert_eq(status(1).lead, 3);
    net_teardown();
}

Test(raft, leadership_transfer_to_lagging_follower)
{
    net_setup(3, 3, true, true);
    elect(1);
    isolate(3, true);
    for (int i = 0; i < 10; i++) {
        propose(1, "lag");
    }
    deliver();
    isolate(3, false);
    cr_assert_eq(raft_transfer_leadership(N->nodes[1].r, 3), 0);
    deliver();
    tick_all(6);
    cr_assert_eq(status(3).role, RAFT_LEADER);
    logs_equal(1, 3);
    net_teardown();
}

/* ---- ReadIndex ------------------------------------------------------------------------ */

Test(raft, read_index)
{
    net_setup(3, 3, true, true);
    cr_assert_eq(raft_campaign(N->nodes[1].r), 0);
    drain_all();
    /* Deliver only the pre-vote/vote round: the leader's no-op is not committed yet. */
    for (int k = 0; k < 4 && status(1).role != RAFT_LEADER; k++) {
        struct raft_entry ents[KV_RAFT_MSG_ENTRIES_MAX];
        size_t end = N->tail;
        while (N->head < end) {
            struct tmsg t = N->q[N->head++ % QUEUE_MAX];
            struct raft_msg m;
            cr_assert_eq(raft_msg_decode(t.buf, t.len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0);
            raft_step(N->nodes[t.to].r, &m);
            drain(t.to);
            free(t.buf);
        }
    }
    cr_assert_eq(status(1).role, RAFT_LEADER);
    cr_assert_eq(raft_read_index(N->nodes[1].r, 7), KV_EAGAIN);
    cr_assert_eq(raft_read_index(N->nodes[2].r, 7), KV_ENOTLEADER);
    deliver();
    tick_all(1);
    uint64_t c = status(1).commit;
    cr_assert_eq(raft_read_index(N->nodes[1].r, 7), 0);
    drain(1);
    cr_assert_eq(N->nodes[1].n_reads, 0, "no read before a quorum confirms leadership");
    deliver();
    cr_assert_eq(N->nodes[1].n_reads, 1);
    cr_assert_eq(N->nodes[1].read_ctx, 7);
    cr_assert_eq(N->nodes[1].read_index, c);
    net_teardown();
}

Test(raft, read_index_on_deposed_leader_never_completes)
{
    net_setup(3, 3, true, true);
    elect(1);
    tick_all(1);
    isolate(1, true);
    cr_assert_eq(raft_read_index(N->nodes[1].r, 9), 0);
    tick(1, 5);
    deliver();
    cr_assert_eq(N->nodes[1].n_reads, 0);
    tick(1, 20);
    cr_assert_eq(status(1).role, RAFT_FOLLOWER);
    isolate(1, false);
    tick_all(5);
    cr_assert_eq(N->nodes[1].n_reads, 0, "a read pending at step-down is dropped");
    net_teardown();
}

/* ---- codec ------------------------------------------------------------------------- */

static size_t sample_append(uint8_t *buf, size_t cap)
{
    struct raft_entry ents[3] = {
        {.term = 3,
         .index = 11,
         .type = RAFT_ENTRY_NORMAL,
         .len = 3,
         .data = (const uint8_t *)"abc"},
        {.term = 3, .index = 12, .type = RAFT_ENTRY_NORMAL, .len = 0, .data = NULL},
        {.term = 4, .index = 13, .type = RAFT_ENTRY_CONF, .len = 2, .data = (const uint8_t *)"xy"},
    };
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 2,
                         .term = 4,
                         .log_term = 3,
                         .index = 10,
                         .commit = 9,
                         .n_entries = 3,
                         .entries = ents};
    size_t len;
    cr_assert_eq(raft_msg_encode(&m, buf, cap, &len), 0);
    return len;
}

Test(raft_codec, round_trip)
{
    uint8_t buf[1024];
    size_t len = sample_append(buf, sizeof(buf));
    struct raft_msg m;
    struct raft_entry ents[KV_RAFT_MSG_ENTRIES_MAX];
    cr_assert_eq(raft_msg_decode(buf, len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0);
    cr_assert_eq(m.type, RAFT_MSG_APPEND);
    cr_assert_eq(m.n_entries, 3);
    cr_assert_eq(m.entries[2].term, 4);
    cr_assert_eq(m.entries[2].type, RAFT_ENTRY_CONF);
    cr_assert(memcmp(m.entries[0].data, "abc", 3) == 0);
    cr_assert_eq(m.commit, 9);
    uint8_t again[1024];
    size_t len2;
    cr_assert_eq(raft_msg_encode(&m, again, sizeof(again), &len2), 0);
    cr_assert_eq(len2, len);
    cr_assert(memcmp(buf, again, len) == 0);

    struct raft_msg s = {
        .type = RAFT_MSG_SNAPSHOT,
        .from = 1,
        .to = 3,
        .term = 4,
        .snap = {.index = 50,
                 .term = 3,
                 .conf = {.n_voters = 2, .voters = {1, 3}, .n_learners = 1, .learners = {7}}},
        .snap_len = 5,
        .snap_data = (const uint8_t *)"state"};
    cr_assert_eq(raft_msg_encode(&s, buf, sizeof(buf), &len), 0);
    cr_assert_eq(raft_msg_decode(buf, len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0);
    cr_assert_eq(m.snap.index, 50);
    cr_assert_eq(m.snap.conf.learners[0], 7);
    cr_assert_eq(m.snap_len, 5);
    cr_assert(memcmp(m.snap_data, "state", 5) == 0);
}

Test(raft_codec, rejects_every_truncation_and_bit_flip)
{
    uint8_t buf[1024];
    size_t len = sample_append(buf, sizeof(buf));
    struct raft_msg m;
    struct raft_entry ents[KV_RAFT_MSG_ENTRIES_MAX];
    for (size_t n = 0; n < len; n++) {
        cr_assert_neq(raft_msg_decode(buf, n, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0);
    }
    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (uint8_t)(1u << b);
            cr_assert_neq(raft_msg_decode(buf, len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0,
                          "flip of bit %d in byte %zu accepted", b, i);
            buf[i] ^= (uint8_t)(1u << b);
        }
    }
    cr_assert_eq(raft_msg_decode(buf, len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), 0);
    cr_assert_eq(raft_msg_decode(buf, len, &m, ents, 2), KV_ELIMIT); /* caller's capacity */
    buf[4] = 2;                                                      /* unknown version */
    cr_assert_eq(raft_msg_decode(buf, len, &m, ents, KV_RAFT_MSG_ENTRIES_MAX), KV_EVERSION);
}

Test(raft_codec, entry_record)
{
    struct raft_entry e = {.term = 9,
                           .index = 77,
                           .type = RAFT_ENTRY_NORMAL,
                           .len = 4,
                           .data = (const uint8_t *)"meta"};
    uint8_t buf[128];
    size_t len, used;
    cr_assert_eq(raft_entry_encode(&e, buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, RAFT_WIRE_ENTRY_HDR_BYTES + 4);
    struct raft_entry d;
    cr_assert_eq(raft_entry_decode(buf, len, &d, &used), 0);
    cr_assert_eq(used, len);
    cr_assert_eq(d.index, 77);
    cr_assert(memcmp(d.data, "meta", 4) == 0);
    cr_assert_neq(raft_entry_decode(buf, len - 1, &d, &used), 0);
    buf[len - 1] ^= 1;
    cr_assert_eq(raft_entry_decode(buf, len, &d, &used), KV_ECORRUPT);
    cr_assert_eq(raft_entry_encode(&e, buf, 10, &len), KV_ELIMIT);
}
