/*
 * sim: a deterministic simulator of a Raft metadata cluster in one process.
 *
 * Every node is a raft + meta pair with a simulated disk; the network is a queue of
 * encoded messages with virtual delivery times. One seeded generator drives everything
 * (timeouts, faults, client actions), so a seed replays exactly. Faults: message drop,
 * duplication, corruption, reordering and delay; symmetric and one-way partitions;
 * crashes (losing whatever the node had not persisted) and restarts; membership
 * changes, leadership transfers, ReadIndex reads and log compaction during the faults.
 * After every step the Raft safety invariants are checked; after the fault phase the
 * network heals and a proposal must commit within a bounded virtual time.
 *
 * Single-threaded; allocates with malloc (the simulator is a test tool).
 */
#ifndef KV_SIM_H
#define KV_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sim_options {
    uint64_t seed;
    uint32_t voters;      /* initial voters: 3 or 5; 0: chosen by the seed */
    uint32_t fault_ticks; /* length of the fault phase; 0: default */
    FILE *trace;          /* readable event trace, or NULL */
};

struct sim_result {
    bool ok;
    char why[512];         /* the invariant that failed, with details */
    uint64_t ticks;        /* virtual ticks run */
    uint64_t delivered;    /* messages delivered */
    uint64_t committed;    /* highest committed index */
    uint64_t elections;    /* leaders elected */
    uint64_t meta_applied; /* metadata commands accepted */
    uint64_t meta_rejected;
    uint64_t snapshots; /* snapshots installed from a leader */
    uint64_t reads;     /* ReadIndex results checked */
};

/* Runs one seed; fills res. Returns 0 if every invariant held, -1 otherwise. */
int sim_run(const struct sim_options *o, struct sim_result *res);

struct sim_bench_result {
    uint64_t committed; /* entries committed and applied on the leader */
    uint64_t delivered; /* messages delivered */
    uint64_t bytes;     /* encoded bytes delivered */
    uint64_t ticks;     /* virtual ticks */
};

/* A fault-free cluster of `voters` committing `entries` metadata commands as fast as the
 * pipeline allows (every message through the codec, every node applying, compaction on;
 * state-machine and metadata checks on, pairwise log checks off). For kvsim --bench. */
int sim_bench(uint32_t voters, uint64_t entries, struct sim_bench_result *out);

#endif
