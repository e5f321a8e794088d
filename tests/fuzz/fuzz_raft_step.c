/*
 * fuzz_raft_step: a Raft node under arbitrary peer behaviour.
 *
 * The input is read as a program: each byte picks an operation (tick, propose, membership
 * change, ReadIndex, transfer, compaction, or a message from a peer whose every field
 * comes from the following bytes). Messages are built as structs, bypassing the codec's
 * checksums, so that raft_step() itself meets hostile terms, indexes, entries and
 * snapshots. The node's own invariant checks (KV_ASSERT after every input) must hold and
 * nothing may read out of bounds, whatever the peers claim.
 */
#include <stdint.h>
#include <string.h>

#include "kv_assert.h"
#include "raft.h"

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t next(struct input *in)
{
    if (in->n == 0) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

static void drain(struct raft *r)
{
    for (int guard = 0; guard < 8 && raft_has_ready(r); guard++) {
        struct raft_ready rd;
        raft_ready(r, &rd);
        for (uint64_t i = rd.apply_lo; i <= rd.apply_hi; i++) {
            KV_ASSERT(raft_log_entry(r, i) != NULL);
        }
        raft_advance(r, &rd);
    }
}

static void peer_message(struct raft *r, struct input *in)
{
    static const uint8_t data[8] = "payload";
    struct raft_status st;
    raft_status(r, &st);
    struct raft_entry ents[4];
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = 1 + next(in) % (RAFT_MSG_TYPE_END - 1);
    m.from = 2 + next(in) % 4;
    m.to = 1;
    m.term = st.term + (uint64_t)(next(in) % 5) - 2 + (st.term < 2 ? 2 : 0);
    m.log_term = next(in) % 8;
    m.index = st.commit + next(in) % 24 - (st.commit > 8 ? 8 : st.commit);
    m.commit = next(in) % 64;
    m.reject = next(in) & 1;
    m.reject_hint = next(in) % 64;
    m.context = next(in) % 4;
    m.flags = next(in) & RAFT_MSG_FLAG_TRANSFER;
    if (m.type == RAFT_MSG_APPEND) {
        m.n_entries = next(in) % 5;
        uint64_t t = m.log_term;
        for (uint32_t i = 0; i < m.n_entries; i++) {
            t += next(in) % 2;
            t = t == 0 ? 1 : t;
            ents[i] = (struct raft_entry){.term = t > m.term ? m.term : t,
                                          .index = m.index + 1 + i,
                                          .type = 1 + next(in) % 2,
                                          .len = next(in) % 9,
                                          .data = data};
            if (ents[i].type == RAFT_ENTRY_CONF) {
                ents[i].len = 12; /* may or may not decode as a change */
                static const uint8_t cc[12] = {1, 0, 0, 0, 4};
                ents[i].data = cc;
            }
        }
        m.entries = m.n_entries > 0 ? ents : NULL;
    }
    if (m.type == RAFT_MSG_SNAPSHOT) {
        m.snap.index = st.commit + next(in) % 40;
        m.snap.term = 1 + next(in) % (m.term > 0 ? m.term : 1);
        m.snap.conf.n_voters = 1 + next(in) % 3;
        for (uint32_t i = 0; i < m.snap.conf.n_voters; i++) {
            m.snap.conf.voters[i] = i + 1;
        }
        m.snap_len = next(in) % 8;
        m.snap_data = data;
    }
    (void)raft_step(r, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    struct input in = {bytes, size};
    struct raft_config cfg = {.id = 1,
                              .election_ticks = 4,
                              .heartbeat_ticks = 1,
                              .seed = 7,
                              .pre_vote = next(&in) & 1,
                              .check_quorum = next(&in) & 1,
                              .msg_entries_max = 1 + next(&in) % 4};
    struct raft *r = raft_create(&cfg);
    KV_ASSERT(r != NULL);
    struct raft_conf conf = {.n_voters = 3, .voters = {1, 2, 3}, .n_learners = 1, .learners = {4}};
    KV_ASSERT(raft_bootstrap(r, &conf) == 0);
    drain(r);
    for (int ops = 0; in.n > 0 && ops < 512; ops++) {
        uint8_t op = next(&in) % 10;
        uint8_t arg = next(&in);
        switch (op) {
        case 0:
            raft_tick(r);
            break;
        case 1:
            (void)raft_propose(r, (const uint8_t *)"x", arg % 2, NULL);
            break;
        case 2:
            (void)raft_propose_conf(r, 1 + arg % 3, 1 + (arg >> 2) % 6, NULL);
            break;
        case 3:
            (void)raft_read_index(r, arg);
            break;
        case 4:
            (void)raft_transfer_leadership(r, 1 + arg % 5);
            break;
        case 5: {
            struct raft_status st;
            raft_status(r, &st);
            (void)raft_compact(r, st.applied, (const uint8_t *)"snap", arg % 5);
            break;
        }
        case 6:
            (void)raft_campaign(r);
            break;
        default:
            peer_message(r, &in);
            break;
        }
        drain(r);
    }
    raft_destroy(r);
    return 0;
}
