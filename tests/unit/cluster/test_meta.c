/*
 * Unit tests of cluster/meta: every command's validation, the ring lookup, snapshot and
 * restore, and determinism over random command streams (seed from META_SEED).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_error.h"
#include "meta.h"

static struct meta_state *S;

static void setup(void)
{
    S = malloc(sizeof(*S));
    cr_assert(S != NULL);
    meta_init(S);
}

static void teardown(void)
{
    free(S);
}

static enum meta_result run(struct meta_cmd c)
{
    /* Through the encoded form, as Raft carries it. */
    uint8_t buf[META_CMD_BYTES];
    meta_cmd_encode(&c, buf);
    return meta_apply(S, buf, sizeof(buf));
}

static enum meta_result add_node(uint64_t id)
{
    return run((struct meta_cmd){.type = META_ADD_NODE, .node = id});
}

static enum meta_result create(uint64_t id, uint64_t lo, uint64_t hi, uint64_t leader)
{
    return run((struct meta_cmd){.type = META_CREATE_PARTITION,
                                 .partition = id,
                                 .lo = lo,
                                 .hi = hi,
                                 .n_replicas = 3,
                                 .replicas = {1, 2, 3},
                                 .leader = leader});
}

/* A rejected command must leave the state exactly as it was. */
static void expect_reject(struct meta_cmd c, enum meta_result want)
{
    uint64_t before = meta_digest(S), version = S->version;
    enum meta_result got = run(c);
    cr_assert_eq(got, want, "got %s, want %s", meta_result_str(got), meta_result_str(want));
    cr_assert_eq(meta_digest(S), before);
    cr_assert_eq(S->version, version);
}

static void three_nodes_one_ring(void)
{
    for (uint64_t i = 1; i <= 3; i++) {
        cr_assert_eq(add_node(i), META_OK);
    }
    cr_assert_eq(create(10, 0, 0, 1), META_OK); /* the whole hash space */
}

TestSuite(meta, .init = setup, .fini = teardown);

Test(meta, nodes)
{
    cr_assert_eq(add_node(5), META_OK);
    cr_assert_eq(add_node(2), META_OK);
    cr_assert_eq(S->nodes[0].id, 2); /* sorted */
    expect_reject((struct meta_cmd){.type = META_ADD_NODE, .node = 5}, META_ENODE_EXISTS);
    expect_reject((struct meta_cmd){.type = META_ADD_NODE, .node = 0}, META_EMALFORMED);
    expect_reject((struct meta_cmd){.type = META_REMOVE_NODE, .node = 9}, META_ENODE_UNKNOWN);
    expect_reject((struct meta_cmd){.type = META_NODE_UP, .node = 5}, META_ENODE_STATE);
    cr_assert_eq(run((struct meta_cmd){.type = META_NODE_DOWN, .node = 5}), META_OK);
    cr_assert_eq(meta_node_find(S, 5)->state, META_NODE_DOWN_STATE);
    expect_reject((struct meta_cmd){.type = META_NODE_DOWN, .node = 5}, META_ENODE_STATE);
    cr_assert_eq(run((struct meta_cmd){.type = META_NODE_UP, .node = 5}), META_OK);
    cr_assert_eq(run((struct meta_cmd){.type = META_REMOVE_NODE, .node = 5}), META_OK);
    cr_assert_null(meta_node_find(S, 5));
    cr_assert_eq(S->version, 5);
}

Test(meta, node_limit)
{
    for (uint64_t i = 1; i <= KV_META_NODES_MAX; i++) {
        cr_assert_eq(add_node(i), META_OK);
    }
    expect_reject((struct meta_cmd){.type = META_ADD_NODE, .node = 1000}, META_ENODES_FULL);
}

Test(meta, create_and_lookup)
{
    for (uint64_t i = 1; i <= 3; i++) {
        add_node(i);
    }
    cr_assert_eq(create(1, 100, 200, 1), META_OK);
    cr_assert_eq(create(2, 300, 0, 2), META_OK); /* to the end of the space */
    cr_assert_eq(create(3, 0, 100, 3), META_OK);
    cr_assert_eq(S->parts[0].id, 3);
    cr_assert_eq(meta_lookup(S, 0)->id, 3);
    cr_assert_eq(meta_lookup(S, 99)->id, 3);
    cr_assert_eq(meta_lookup(S, 100)->id, 1);
    cr_assert_eq(meta_lookup(S, 199)->id, 1);
    cr_assert_null(meta_lookup(S, 200)); /* a gap */
    cr_assert_null(meta_lookup(S, 299));
    cr_assert_eq(meta_lookup(S, 300)->id, 2);
    cr_assert_eq(meta_lookup(S, UINT64_MAX)->id, 2);
    cr_assert_eq(meta_partition_find(S, 1)->epoch, 1);
    struct meta_cmd c = {.type = META_CREATE_PARTITION,
                         .partition = 4,
                         .lo = 150,
                         .hi = 250,
                         .n_replicas = 1,
                         .replicas = {1},
                         .leader = 1};
    expect_reject(c, META_ERANGE); /* overlaps [100,200) */
    c.lo = 250;
    c.hi = 350;
    expect_reject(c, META_ERANGE); /* overlaps [300, end) */
    c.lo = 250;
    c.hi = 250;
    expect_reject(c, META_ERANGE); /* empty */
    c.lo = 200;
    c.hi = 300;
    c.partition = 1;
    expect_reject(c, META_EPART_EXISTS);
    c.partition = 4;
    c.replicas[0] = 9;
    c.leader = 9;
    expect_reject(c, META_EREPLICAS); /* not a member */
    c.n_replicas = 2;
    c.replicas[0] = 1;
    c.replicas[1] = 1;
    c.leader = 1;
    expect_reject(c, META_EREPLICAS); /* repeated */
    c.replicas[1] = 2;
    c.leader = 3;
    expect_reject(c, META_ELEADER);
    c.leader = 2;
    cr_assert_eq(run(c), META_OK); /* fills the gap exactly */
    cr_assert_eq(meta_lookup(S, 250)->id, 4);
}

Test(meta, split)
{
    three_nodes_one_ring();
    struct meta_cmd c = {
        .type = META_SPLIT_PARTITION, .partition = 10, .at = 0, .new_partition = 11};
    expect_reject(c, META_ESPLIT_POINT); /* at lo: not strictly inside */
    c.partition = 99;
    c.at = 5;
    expect_reject(c, META_EPART_UNKNOWN);
    c.partition = 10;
    c.at = 1ull << 63;
    cr_assert_eq(run(c), META_OK);
    const struct meta_partition *lo = meta_partition_find(S, 10), *hi = meta_partition_find(S, 11);
    cr_assert_eq(lo->hi, 1ull << 63);
    cr_assert_eq(hi->lo, 1ull << 63);
    cr_assert_eq(hi->hi, 0);
    cr_assert_eq(lo->epoch, 2);
    cr_assert_eq(hi->epoch, 2);
    cr_assert_eq(hi->leader, 1);
    cr_assert_eq(meta_lookup(S, (1ull << 63) - 1)->id, 10);
    cr_assert_eq(meta_lookup(S, 1ull << 63)->id, 11);
    c.partition = 10;
    c.at = 1ull << 63; /* at hi */
    c.new_partition = 12;
    expect_reject(c, META_ESPLIT_POINT);
    c.new_partition = 11;
    c.at = 7;
    expect_reject(c, META_EPART_EXISTS);
}

Test(meta, promote_epoch_fencing)
{
    three_nodes_one_ring();
    struct meta_cmd c = {.type = META_PROMOTE, .partition = 10, .epoch = 1, .leader = 2};
    cr_assert_eq(run(c), META_OK);
    cr_assert_eq(meta_partition_find(S, 10)->leader, 2);
    cr_assert_eq(meta_partition_find(S, 10)->epoch, 2);
    c.leader = 3; /* same expected epoch: now stale */
    expect_reject(c, META_EEPOCH);
    c.epoch = 2;
    c.leader = 7;
    expect_reject(c, META_ELEADER); /* not a replica */
    cr_assert_eq(run((struct meta_cmd){.type = META_NODE_DOWN, .node = 3}), META_OK);
    c.leader = 3;
    expect_reject(c, META_ELEADER); /* down */
}

Test(meta, move_and_set_replicas)
{
    three_nodes_one_ring();
    add_node(4);
    struct meta_cmd m = {.type = META_MOVE_PARTITION, .partition = 10, .node = 1, .to_node = 4};
    expect_reject(m, META_EREPLICAS); /* the leader cannot be moved away */
    m.node = 2;
    m.to_node = 3;
    expect_reject(m, META_EREPLICAS); /* already a replica */
    m.to_node = 8;
    expect_reject(m, META_EREPLICAS); /* not a member */
    m.to_node = 4;
    cr_assert_eq(run(m), META_OK);
    const struct meta_partition *p = meta_partition_find(S, 10);
    cr_assert_eq(p->replicas[1], 4);
    cr_assert_eq(p->epoch, 2);
    expect_reject((struct meta_cmd){.type = META_REMOVE_NODE, .node = 4}, META_ENODE_IN_USE);
    cr_assert_eq(run((struct meta_cmd){.type = META_REMOVE_NODE, .node = 2}), META_OK);
    struct meta_cmd s = {.type = META_SET_REPLICAS,
                         .partition = 10,
                         .n_replicas = 2,
                         .replicas = {3, 4},
                         .leader = 1};
    expect_reject(s, META_ELEADER);
    s.leader = 4;
    cr_assert_eq(run(s), META_OK);
    cr_assert_eq(p->n_replicas, 2);
    cr_assert_eq(p->leader, 4);
    s.n_replicas = 0;
    expect_reject(s, META_EREPLICAS);
}

Test(meta, malformed_commands)
{
    uint8_t buf[META_CMD_BYTES];
    meta_cmd_encode(&(struct meta_cmd){.type = META_ADD_NODE, .node = 1}, buf);
    cr_assert_eq(meta_apply(S, buf, sizeof(buf) - 1), META_EMALFORMED);
    buf[0] = 9;
    cr_assert_eq(meta_apply(S, buf, sizeof(buf)), META_EMALFORMED);
    buf[0] = 1;
    buf[1] = 0;
    cr_assert_eq(meta_apply(S, buf, sizeof(buf)), META_EMALFORMED);
    buf[1] = META_ADD_NODE;
    buf[100] = 1; /* a replica slot beyond n_replicas */
    cr_assert_eq(meta_apply(S, buf, sizeof(buf)), META_EMALFORMED);
    cr_assert_eq(S->version, 0);
    cr_assert_eq(S->n_nodes, 0);
}

Test(meta, snapshot_round_trip_and_corruption)
{
    three_nodes_one_ring();
    run((struct meta_cmd){
        .type = META_SPLIT_PARTITION, .partition = 10, .at = 12345, .new_partition = 20});
    static uint8_t buf[META_SNAPSHOT_MAX];
    size_t len = meta_snapshot(S, buf, sizeof(buf));
    struct meta_state *r = malloc(sizeof(*r));
    meta_init(r);
    cr_assert_eq(meta_restore(r, buf, len), 0);
    cr_assert_eq(meta_digest(r), meta_digest(S));
    cr_assert_eq(r->version, S->version);
    cr_assert_eq(meta_lookup(r, 12345)->id, 20);
    uint64_t d = meta_digest(r);
    for (size_t n = 1; n < len; n++) {
        cr_assert_neq(meta_restore(r, buf, n), 0);
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x10;
        cr_assert_neq(meta_restore(r, buf, len), 0, "flip in byte %zu accepted", i);
        buf[i] ^= 0x10;
    }
    cr_assert_eq(meta_digest(r), d, "a failed restore changes nothing");
    cr_assert_eq(meta_restore(r, NULL, 0), 0);
    cr_assert_eq(r->n_parts, 0);
    free(r);
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

Test(meta, random_streams_are_deterministic_and_keep_invariants)
{
    const char *env = getenv("META_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 10) : 20261125;
    uint64_t st = seed;
    struct meta_state *b = malloc(sizeof(*b));
    meta_init(b);
    static uint8_t snap[META_SNAPSHOT_MAX];
    for (int i = 0; i < 20000; i++) {
        struct meta_cmd c;
        memset(&c, 0, sizeof(c));
        c.type = 1 + rnd(&st) % (META_CMD_END - 1);
        c.node = 1 + rnd(&st) % 10;
        c.to_node = 1 + rnd(&st) % 10;
        c.partition =
            S->n_parts > 0 && rnd(&st) % 4 ? S->parts[rnd(&st) % S->n_parts].id : 1 + rnd(&st) % 64;
        c.new_partition = 1 + rnd(&st) % 600;
        c.lo = rnd(&st);
        c.hi = rnd(&st) % 3 ? c.lo + (rnd(&st) >> (rnd(&st) % 64)) : 0;
        c.at = rnd(&st);
        const struct meta_partition *p = meta_partition_find(S, c.partition);
        if (p != NULL && c.type == META_SPLIT_PARTITION && p->hi != 0 && p->hi - p->lo > 1) {
            c.at = p->lo + 1 + rnd(&st) % (p->hi - p->lo - 1);
        }
        c.epoch = p != NULL ? p->epoch - rnd(&st) % 2 : 1;
        c.n_replicas = 1 + rnd(&st) % KV_META_REPLICAS_MAX;
        for (uint32_t k = 0; k < c.n_replicas; k++) {
            c.replicas[k] = 1 + rnd(&st) % 10;
        }
        c.leader = c.replicas[rnd(&st) % c.n_replicas];
        uint8_t buf[META_CMD_BYTES];
        meta_cmd_encode(&c, buf);
        enum meta_result ra = meta_apply(S, buf, sizeof(buf));
        enum meta_result rb = meta_apply(b, buf, sizeof(buf));
        cr_assert_eq(ra, rb, "seed %llu step %d", (unsigned long long)seed, i);
        if (i % 500 == 0) {
            /* Snapshot/restore is the identity, and the restore validates invariants. */
            size_t len = meta_snapshot(S, snap, sizeof(snap));
            cr_assert_eq(meta_restore(b, snap, len), 0, "seed %llu step %d",
                         (unsigned long long)seed, i);
        }
        cr_assert_eq(meta_digest(S), meta_digest(b), "seed %llu step %d (replay: META_SEED=%llu)",
                     (unsigned long long)seed, i, (unsigned long long)seed);
    }
    cr_assert_gt(S->n_parts, 1, "seed %llu: the stream should have built a ring",
                 (unsigned long long)seed);
    free(b);
}
