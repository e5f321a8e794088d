/*
 * fuzz_raft: the cluster decoders against arbitrary bytes.
 *
 * One input is tried as: a Raft message (decoded; if accepted it must re-encode to the
 * same bytes and a bootstrapped node must digest it without breaking an assertion), a
 * run of log-entry records, a metadata snapshot (if accepted, re-serializing it gives
 * the same bytes), and a sequence of metadata commands applied to a small state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_assert.h"
#include "meta.h"
#include "raft.h"
#include "raft_codec.h"

static void fuzz_message(const uint8_t *data, size_t size)
{
    struct raft_msg m;
    struct raft_entry ents[KV_RAFT_MSG_ENTRIES_MAX];
    if (raft_msg_decode(data, size, &m, ents, KV_RAFT_MSG_ENTRIES_MAX) != 0) {
        return;
    }
    uint8_t *again = malloc(size);
    KV_ASSERT(again != NULL);
    size_t len = 0;
    KV_ASSERT(raft_msg_encode(&m, again, size, &len) == 0);
    KV_ASSERT(len == size && memcmp(again, data, size) == 0);
    free(again);
    if (m.to == m.from) {
        return;
    }
    struct raft_config cfg = {.id = m.to,
                              .election_ticks = 10,
                              .heartbeat_ticks = 1,
                              .seed = 1,
                              .pre_vote = true,
                              .check_quorum = true};
    struct raft *r = raft_create(&cfg);
    KV_ASSERT(r != NULL);
    struct raft_conf conf = {.n_voters = 2, .voters = {m.to, m.from}};
    KV_ASSERT(raft_bootstrap(r, &conf) == 0);
    for (int i = 0; i < 2; i++) {
        (void)raft_step(r, &m);
        raft_tick(r);
        struct raft_ready rd;
        raft_ready(r, &rd);
        raft_advance(r, &rd);
    }
    raft_destroy(r);
}

static void fuzz_entries(const uint8_t *data, size_t size)
{
    size_t off = 0, used = 0;
    struct raft_entry e;
    while (off < size && raft_entry_decode(data + off, size - off, &e, &used) == 0) {
        KV_ASSERT(used >= RAFT_WIRE_ENTRY_HDR_BYTES && used <= size - off);
        off += used;
    }
}

static void fuzz_meta(const uint8_t *data, size_t size)
{
    static struct meta_state s;
    static uint8_t buf[META_SNAPSHOT_MAX];
    if (meta_restore(&s, data, size) == 0 && size > 0) {
        size_t len = meta_snapshot(&s, buf, sizeof(buf));
        KV_ASSERT(len == size && memcmp(buf, data, size) == 0);
    }
    meta_init(&s);
    for (size_t off = 0; off + META_CMD_BYTES <= size; off += META_CMD_BYTES) {
        uint64_t before = meta_digest(&s);
        if (meta_apply(&s, data + off, META_CMD_BYTES) != META_OK) {
            KV_ASSERT(meta_digest(&s) == before); /* a rejected command changes nothing */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_message(data, size);
    fuzz_entries(data, size);
    fuzz_meta(data, size);
    return 0;
}
