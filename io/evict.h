/*
 * evict: the maxmemory limit and its eviction policies, as Redis has them.
 *
 * The memory measured is INFO's used_memory: the tables of every shard (entries, slot
 * arrays, directories) and the arrays that hold them. Each shard publishes its own once
 * per loop turn that ran commands (and at its timer); the shard deciding takes its own
 * last figure less what it evicted since, plus the others' published figures: no table
 * is walked per command. Connection buffers, Lua and the WAL's buffers are not counted
 * (they are bounded by their own settings).
 *
 * When that sum exceeds `maxmemory`, each shard evicts keys of its own tables, in
 * proportion to its share of the memory, so that the shards together shed the excess
 * once: before each command on the client's shard (evict_gate), at the end of each loop
 * turn that ran commands (where forwarded writes grew a table) and at the shard's timer
 * (a shard that gets no command still sheds its share). Each call evicts at most
 * EVICT_KEYS_PER_CALL keys, so that no request waits for more than ~1 ms of eviction.
 *
 * Policies (maxmemory-policy): noeviction refuses commands that may add memory (Redis's
 * denyoom ones) with -OOM; allkeys-* and volatile-* choose among all keys, or among keys
 * with an expiry time: -random picks one key at random, -ttl the one of maxmemory-samples
 * random keys that expires first, -lfu the one of maxmemory-samples random keys with the
 * lowest access counter (Redis's logarithmic counter with decay, kept in the entry's
 * access bits under an LFU policy: tbl_access_config, evict_access_apply), -lru the next
 * key the clock hand of a table meets that was not used since the hand last passed it
 * (one referenced bit per key: CLOCK's approximation of LRU; see tbl_sample; the samples
 * setting does not apply). A command that may add memory is refused with -OOM
 * while the memory stays over the limit and no shard holds a key the policy may evict.
 *
 * An evicted key is deleted as DEL deletes it: WAL record (it stays evicted after a
 * restart), WATCH invalidated, INFO evicted_keys counted.
 *
 * Thread: everything runs on the shard thread given, over its own tables.
 */
#ifndef KV_EVICT_H
#define KV_EVICT_H

#include <stdbool.h>
#include <stdint.h>

struct shard;

#define EVICT_KEYS_PER_CALL 256 /* keys one evict_gate / evict_step call evicts at most */
/* lru: keys the clock hand passes at most to find one unreferenced (it clears the
 * bits it passes, so it finds one within a round of the table; past this many, the first
 * key it passed goes) */
#define EVICT_HAND_STEPS 1024

/* Applies maxmemory-policy, lfu-log-factor and lfu-decay-time to the tables' access bits
 * (LRU or LFU form). At start and after CONFIG SET; any thread. */
void evict_access_apply(void);
/* random and ttl: looks that may find nothing (keys with an expiry time are sparse)
 * before a choice gives up for this call */
#define EVICT_SAMPLE_MISSES 32
/* time the timer's evict_step may spend shedding (a shard without commands) */
#define EVICT_TIMER_BUDGET_NS 2000000

/* The order of the maxmemory-policy choices (kvd_settings.c). */
enum evict_policy { /* Redis's order (its CONFIG SET error lists them so) */
                    EVICT_VOLATILE_LRU = 0,
                    EVICT_VOLATILE_LFU,
                    EVICT_VOLATILE_RANDOM,
                    EVICT_VOLATILE_TTL,
                    EVICT_ALLKEYS_LRU,
                    EVICT_ALLKEYS_LFU,
                    EVICT_ALLKEYS_RANDOM,
                    EVICT_NOEVICTION,
};
extern const char *const evict_policy_names[]; /* NULL-terminated, in enum order */

/*
 * Before a command on the client's shard, when maxmemory is set: evicts this shard's
 * share of any excess, then says whether the command may run. `denyoom`: the command may
 * add memory (it is refused while over the limit with nothing left to evict, or always
 * under noeviction). True: run it; false: reply -OOM.
 */
bool evict_gate(struct shard *sh, bool denyoom);

/* At the end of a loop turn that ran commands (budget 0: one call's keys) and at the
 * shard's timer (EVICT_TIMER_BUDGET_NS): evicts this shard's share of any excess. True if
 * it evicted something (the caller publishes its memory again); then the time it took is
 * a LATENCY "eviction-cycle" sample. */
bool evict_step(struct shard *sh, uint64_t budget_ns);

/* True if a command that may add memory would be refused now, without evicting: over
 * the limit under noeviction, or with nothing any shard may evict. What a script's first
 * write command checks, as Redis checks its state before the script. */
bool evict_refuses(struct shard *sh);

#endif
