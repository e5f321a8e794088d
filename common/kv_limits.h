/*
 * kv_limits: every compile-time limit of the project, with the reason for each
 * (after SQLite's sqliteLimit.h). Limits that an operator may change at run time
 * are settings; their defaults live here as KV_DEFAULT_* and the setting's name is
 * given beside it. A limit is named KV_<WHAT>_MAX; units come last.
 */
#ifndef KV_LIMITS_H
#define KV_LIMITS_H

/* ---- engine/ ----------------------------------------------------------------- */

/* Longest key, in bytes: Redis's limit (512 MiB); entry headers store it in 4 bytes. */
#define KV_KEY_BYTES_MAX (512u * 1024 * 1024)
/* Longest value, in bytes: Redis's proto-max-bulk-len default (512 MiB). */
#define KV_VALUE_BYTES_MAX (512u * 1024 * 1024)
/* Slots per hash-table segment (a power of two, at most 2^10: the slot tag stores the
 * home slot). It is the unit of incremental work: one segment split moves at most this
 * many entries (~100 us), so no request stalls behind a table's growth. */
#define KV_TBL_SEG_SLOTS 1024u
/* Directory depth of one table (2^depth segment pointers): 2^22 segments hold ~2.5G
 * keys, far beyond one partition. Keys crafted to share hash prefixes can force the
 * directory deeper than the key count needs; the bound caps it at 32 MiB (the last
 * doubling copies 16 MiB), after which inserts into the full segment get KV_ELIMIT. */
#define KV_TBL_DIR_DEPTH_MAX 22u

/* ---- proto/ ------------------------------------------------------------------ */

/* Client-side reply parser (resp_reply). Nesting depth of aggregates: RESP3 replies
 * from real servers nest a few levels; the bound sizes the parser's fixed stack. */
#define KV_RESP_REPLY_DEPTH_MAX 32
/* Longest +simple/-error/:integer/,double/(bignum line: a line is buffered until its
 * CRLF arrives, so this bounds what a broken server can make a client hold (Redis
 * bounds its own inline lines at 64 KiB the same way). */
#define KV_RESP_REPLY_LINE_MAX (64 * 1024)
/* Largest bulk/verbatim/blob-error payload: Redis's proto-max-bulk-len default. */
#define KV_RESP_REPLY_BULK_MAX (512LL * 1024 * 1024)
/* Largest aggregate count: Redis collections hold at most 2^32 - 1 elements. */
#define KV_RESP_REPLY_COUNT_MAX 4294967295LL

/* Request parser (resp_parse) and reply encoder (resp_out). */
/* proto-max-bulk-len: Redis's default; a longer bulk is "invalid bulk length". */
#define KV_DEFAULT_RESP_BULK_BYTES_MAX (512LL * 1024 * 1024)
/* Multibulk count: Redis 7 accepts up to INT_MAX ("invalid multibulk length" beyond);
 * argv grows only with the arguments that actually arrive, never with the count. */
#define KV_RESP_MBULK_COUNT_MAX 2147483647LL
/* PROTO_INLINE_MAX_SIZE: the longest inline request, and the longest "*N" / "$N" line
 * without its '\r' ("too big inline request", "too big mbulk/bulk count string"). */
#define KV_RESP_INLINE_BYTES_MAX (64 * 1024)
/* Before AUTH (when a password is set) Redis 7 refuses more than 10 arguments and bulks
 * over 16384 bytes, so an unauthenticated client cannot make the server hold much. */
#define KV_RESP_UNAUTH_MBULK_COUNT_MAX 10
#define KV_RESP_UNAUTH_BULK_BYTES_MAX  16384
/* client-query-buffer-limit: bytes one unfinished request may hold in the parser's arena
 * (Redis's default, 1 GiB); beyond it the connection is closed without a reply. */
#define KV_DEFAULT_RESP_QUERY_BYTES_MAX (1024LL * 1024 * 1024)
/* Smallest arena chunk: a request straddling two 16 KiB receive buffers usually needs
 * less; larger pieces get a chunk of their own size. */
#define KV_RESP_ARENA_CHUNK_BYTES 4096
/* Free standard chunks a parser keeps: a boundary needs one for spilled arguments and one
 * for a cut bulk while the previous boundary's may still be held; with three spares a
 * steady pipeline allocates nothing per buffer (resp_parser_trim() frees them). */
#define KV_RESP_ARENA_SPARE_CHUNKS 3
/* Output blocks: one block per send is the common case; big bulks span several. */
#define KV_DEFAULT_RESP_OUT_BLOCK_BYTES (16 * 1024)
/* Output memory of one shard thread's block pool, taken from its allocator on demand. */
#define KV_DEFAULT_RESP_OUT_POOL_BYTES (1024LL * 1024 * 1024)
/* client-output-buffer-limit for one client: room for one proto-max-bulk-len reply. */
#define KV_DEFAULT_RESP_CLIENT_OUT_BYTES_MAX (576LL * 1024 * 1024)

/* ---- cluster/ ---------------------------------------------------------------- */

/* Raft voters: five tolerate two failures; more only slow every commit down. */
#define KV_RAFT_VOTERS_MAX 5
/* Raft learners (non-voting replicas of the metadata): one per data node is plenty. */
#define KV_RAFT_LEARNERS_MAX 8
/* In-memory Raft log between two snapshots, in entries (a power of two: ring slots). */
#define KV_RAFT_LOG_MAX 512
/* Free log slots a leader keeps for its term's first entry: proposals stop short of it. */
#define KV_RAFT_LOG_RESERVE 8
/* Payload of one Raft entry: metadata commands are small fixed records. */
#define KV_RAFT_ENTRY_DATA_MAX 256
/* Entries in one AppendEntries message: bounds a message to ~10 KiB. */
#define KV_RAFT_MSG_ENTRIES_MAX 32
/* A serialized metadata snapshot (members + ring); InstallSnapshot sends it whole. */
#define KV_RAFT_SNAPSHOT_MAX (64 * 1024)
/* Outgoing messages buffered between two raft_ready() calls; beyond, they are dropped
 * (Raft tolerates loss) and counted. */
#define KV_RAFT_READY_MSGS_MAX 64
/* Append batches a leader keeps in flight to one follower (pipelining). */
#define KV_RAFT_INFLIGHT_MAX 8
/* ReadIndex requests waiting for a quorum's heartbeat acknowledgement. */
#define KV_RAFT_READS_MAX 16
/* Election timeout in ticks (randomized in [t, 2t)); heartbeat interval in ticks. */
#define KV_DEFAULT_RAFT_ELECTION_TICKS  10
#define KV_DEFAULT_RAFT_HEARTBEAT_TICKS 1
/* Cluster members known to the metadata state machine. */
#define KV_META_NODES_MAX 64
/* Partitions on the ring: 512 keeps the serialized map far below KV_RAFT_SNAPSHOT_MAX. */
#define KV_META_PARTITIONS_MAX 512
/* Replicas of one partition (leader included). */
#define KV_META_REPLICAS_MAX 5

#endif
