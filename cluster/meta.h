/*
 * meta: the cluster metadata state machine replicated by Raft.
 *
 * State: the members (id, up/down), the ring (partitions sorted by range, each a
 * half-open range [lo, hi) of the 64-bit hash space, hi == 0 standing for 2^64, never
 * overlapping), each partition's epoch, replica set and leader, and a map version bumped
 * by every accepted command.
 *
 * Commands are typed, fixed-layout records (meta_cmd_encode) carried as Raft entry data.
 * meta_apply() validates a command against the current state and either applies all of
 * it or nothing: a rejected command leaves the state untouched and yields a reason. The
 * outcome depends only on the state and the bytes, so every node agrees on it.
 *
 * The caller owns struct meta_state (about 50 KiB; no allocation inside). Pure code:
 * any single thread at a time.
 */
#ifndef KV_META_H
#define KV_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_limits.h"

enum meta_cmd_type {
    META_ADD_NODE = 1,         /* node */
    META_REMOVE_NODE = 2,      /* node: must hold no replica */
    META_NODE_DOWN = 3,        /* node */
    META_NODE_UP = 4,          /* node */
    META_CREATE_PARTITION = 5, /* partition, lo, hi, replicas, leader */
    META_SPLIT_PARTITION = 6,  /* partition, at, new_partition: [lo,at) keeps the id */
    META_MOVE_PARTITION = 7,   /* partition, node (from, not the leader), to_node */
    META_SET_REPLICAS = 8,     /* partition, replicas, leader */
    META_PROMOTE = 9,          /* partition, epoch (expected), leader (new) */
    META_CMD_END,
};

/* Why a command was rejected (META_OK: applied). */
enum meta_result {
    META_OK = 0,
    META_EMALFORMED,    /* does not decode */
    META_ENODE_EXISTS,  /* node already a member */
    META_ENODE_UNKNOWN, /* node is not a member */
    META_ENODES_FULL,   /* KV_META_NODES_MAX members */
    META_ENODE_IN_USE,  /* node still holds replicas */
    META_ENODE_STATE,   /* node already down (or up) */
    META_EPART_EXISTS,  /* partition id already used */
    META_EPART_UNKNOWN, /* no such partition */
    META_EPARTS_FULL,   /* KV_META_PARTITIONS_MAX partitions */
    META_ERANGE,        /* empty range, or it overlaps another partition */
    META_ESPLIT_POINT,  /* split point not strictly inside the range */
    META_EREPLICAS,     /* replica set empty, too big, repeated or not members */
    META_ELEADER,       /* leader not a replica (or down, for a promotion) */
    META_EEPOCH,        /* promotion based on a stale epoch */
    META_RESULT_END,
};

#define META_NODE_UP_STATE   1
#define META_NODE_DOWN_STATE 2

struct meta_cmd {
    uint32_t type; /* enum meta_cmd_type */
    uint32_t n_replicas;
    uint64_t node;
    uint64_t to_node;
    uint64_t partition;
    uint64_t new_partition;
    uint64_t lo;
    uint64_t hi;
    uint64_t at;
    uint64_t epoch;
    uint64_t leader;
    uint64_t replicas[KV_META_REPLICAS_MAX];
};

#define META_CMD_BYTES 128

struct meta_node {
    uint64_t id;
    uint32_t state; /* META_NODE_UP_STATE / META_NODE_DOWN_STATE */
};

struct meta_partition {
    uint64_t id;
    uint64_t lo;
    uint64_t hi; /* exclusive; 0 means the end of the hash space (2^64) */
    uint64_t epoch;
    uint64_t leader;
    uint32_t n_replicas;
    uint64_t replicas[KV_META_REPLICAS_MAX];
};

struct meta_state {
    uint64_t version;
    uint32_t n_nodes;
    uint32_t n_parts;
    struct meta_node nodes[KV_META_NODES_MAX];           /* sorted by id */
    struct meta_partition parts[KV_META_PARTITIONS_MAX]; /* sorted by lo */
};

/* Serialized snapshot header and record sizes, and the largest snapshot. */
#define META_SNAP_HDR_BYTES  32
#define META_SNAP_NODE_BYTES 16
#define META_SNAP_PART_BYTES 88
#define META_SNAPSHOT_MAX                                                                          \
    (META_SNAP_HDR_BYTES + KV_META_NODES_MAX * META_SNAP_NODE_BYTES +                              \
     KV_META_PARTITIONS_MAX * META_SNAP_PART_BYTES)

void meta_init(struct meta_state *s);

/* Encodes a command into exactly META_CMD_BYTES bytes of buf. */
void meta_cmd_encode(const struct meta_cmd *c, uint8_t buf[META_CMD_BYTES]);
/* KV_EPROTO / KV_EVERSION on malformed bytes. */
int meta_cmd_decode(const uint8_t *buf, size_t len, struct meta_cmd *c);

/* Validates and applies one encoded command; all or nothing. */
enum meta_result meta_apply(struct meta_state *s, const uint8_t *data, size_t len);
enum meta_result meta_apply_cmd(struct meta_state *s, const struct meta_cmd *c);
const char *meta_result_str(enum meta_result r);

/* The partition holding hash h, or NULL if no partition covers it. O(log P). */
const struct meta_partition *meta_lookup(const struct meta_state *s, uint64_t h);
const struct meta_partition *meta_partition_find(const struct meta_state *s, uint64_t id);
const struct meta_node *meta_node_find(const struct meta_state *s, uint64_t id);

/* Serializes the whole state (<= META_SNAPSHOT_MAX bytes). Returns the length. */
size_t meta_snapshot(const struct meta_state *s, uint8_t *buf, size_t cap);
/* Restores from a snapshot (len 0: the empty initial state). KV_ECORRUPT, KV_EPROTO,
 * KV_EVERSION or KV_ELIMIT on bad input, in which case s is unchanged. */
int meta_restore(struct meta_state *s, const uint8_t *buf, size_t len);
/* A 64-bit digest of the whole state, for comparing replicas. */
uint64_t meta_digest(const struct meta_state *s);

#endif
