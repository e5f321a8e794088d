/*
 * walfmt: the on-disk formats of the write-ahead log and of snapshots, and pure
 * functions to encode and check them. No I/O here (wal.c writes, recover.c reads).
 *
 * WAL segment file "wal-SSS-NNNNNNNNNNNNNNNN.log" (S: shard, N: segment number, hex):
 *
 *   block 0     struct walfmt_seg (the rest of the block is zero)
 *   block 1...  batches, each starting on a 4 KiB block boundary:
 *                 struct walfmt_batch, then `count` records, then zero padding to the
 *                 next block boundary
 *   the rest    zero (segments are zero-filled before use)
 *
 * A batch is what one group commit writes. It never shares a block with another
 * batch, so writing a batch never rewrites a block that holds acknowledged records.
 * A record is struct walfmt_rec, the key, then the value. Every header and every
 * record carries its own checksum (XXH3-64); a header's checksum covers the header
 * with the checksum field zero, a record's covers header (field zero), key and value.
 *
 * Records are physical: PUT carries the whole resulting value and absolute expiry;
 * RANGE (APPEND, SETRANGE on a value much longer than what they write) carries the bytes
 * written, where they go, the value's resulting length and its expiry: both set
 * absolute state, so replaying a record twice, or over a snapshot that already holds
 * its effect or later ones, gives the same state once the later records are replayed
 * after it (replay is in LSN order).
 *
 * Version 2 added RANGE; version 3 the database of records and snapshot entries (zero,
 * i.e. database 0, in older files) and SWAPDB; version 4 the segment header's base_lsn
 * (older segment headers are 40 bytes: read as base_lsn 0). Readers accept versions 1 to
 * 4.
 *
 * Snapshot file "snap-PPPPP-LLLLLLLLLLLLLLLL.kvs" (P: partition, L: LSN, hex):
 *   struct walfmt_snap, then chunks (struct walfmt_chunk + entries, each entry being a
 *   struct walfmt_entry, key, value), then a chunk with count 0 and the final flag
 *   whose `sum` is the XXH3 of every earlier chunk's checksum.
 */
#ifndef WALFMT_H
#define WALFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WALFMT_VERSION 4
/* Batches and snapshots are written as version 3 (unchanged since: readers of version 3
 * read them); segment headers as version 4. */
#define WALFMT_VERSION_3 3
/* Version 4 segments: when a write is issued while others are in flight, it ends at most
 * this far past the start of the oldest of them (and no write spans two segments). So
 * where the chain of valid batches from block 1 ends in a zero block at E (a crash with
 * writes in flight), every byte written after E lies below E + WALFMT_INFLIGHT_MAX:
 * recovery reads no further (not the whole preallocated segment). */
#define WALFMT_INFLIGHT_MAX (8u << 20)
#define WALFMT_VERSION_MIN  1 /* the oldest version readers accept */
#define WALFMT_BLOCK        4096u
#define WALFMT_SEG_MAGIC    0x5357564bu /* "KVWS" */
#define WALFMT_BATCH_MAGIC  0x4257564bu /* "KVWB" */
#define WALFMT_SNAP_MAGIC   0x5053564bu /* "KVSP" */
#define WALFMT_CHUNK_MAGIC  0x4353564bu /* "KVSC" */

enum walfmt_type {
    WALFMT_PUT = 1,    /* key = value, expire_ms (0: none) */
    WALFMT_DEL = 2,    /* key removed */
    WALFMT_EXPIRE = 3, /* key's expiry set to expire_ms (0: persist) */
    WALFMT_FLUSH = 4,  /* every key of the partition's database `db` removed */
    WALFMT_RANGE = 5,  /* the value's bytes [off, off + n) written, its length set to len,
                        * expire_ms set; the record's value: u64 off, u64 len, the bytes */
    WALFMT_SWAPDB = 6, /* the partition's databases `db` and `db2` swapped (no key) */
};

#define WALFMT_RANGE_PREFIX 16 /* RANGE: off and len before the bytes */

struct walfmt_seg {
    uint32_t magic;
    uint16_t version;
    uint16_t size; /* sizeof(struct walfmt_seg); WALFMT_SEG_SIZE_V3 before version 4 */
    uint32_t shard;
    uint32_t threads;    /* layout the segment was written under */
    uint32_t partitions; /* partitions in the node */
    uint32_t reserved;
    uint64_t segno;
    /* Version 4. Not 0: the WAL this segment belongs to was switched on at run time
     * (CONFIG SET appendonly yes) when every partition's LSN was set to base_lsn, and a
     * dump at that LSN is its base: its records replay only over snapshots at or past
     * base_lsn (recover.h). 0: a WAL opened at start, over what recovery loaded. */
    uint64_t base_lsn;
    uint64_t crc;
};
_Static_assert(sizeof(struct walfmt_seg) == 48, "walfmt_seg layout");
#define WALFMT_SEG_SIZE_V3 40 /* the header of versions 1 to 3: no base_lsn */

struct walfmt_batch {
    uint32_t magic;
    uint16_t version;
    uint16_t size;  /* sizeof(struct walfmt_batch) */
    uint32_t count; /* records */
    uint32_t reserved;
    uint64_t len;   /* bytes of records after this header (no padding) */
    uint64_t seq;   /* batch sequence number, +1 per batch across the shard's segments */
    uint64_t acked; /* when sealed, every batch up to this one was written and synced */
    uint64_t crc;
};
_Static_assert(sizeof(struct walfmt_batch) == 48, "walfmt_batch layout");

/* What walfmt_scan_batch learnt of a valid batch. */
struct walfmt_batch_info {
    uint64_t span; /* bytes it occupies: a whole number of blocks */
    uint64_t seq;
    uint64_t acked;
    uint32_t count; /* records */
};

struct walfmt_rec {
    uint64_t len; /* header + key + value */
    uint64_t crc;
    uint64_t lsn;   /* the partition's sequence number */
    uint64_t epoch; /* the partition's epoch (0 until the cluster assigns one) */
    int64_t expire_ms;
    uint32_t part; /* partition id */
    uint32_t klen;
    uint64_t vlen;
    uint8_t type; /* enum walfmt_type */
    uint8_t reserved;
    uint16_t db;  /* the key's database (version 3; zero before) */
    uint16_t db2; /* SWAPDB: the other database */
    uint8_t reserved2[2];
};
_Static_assert(sizeof(struct walfmt_rec) == 64, "walfmt_rec layout");

struct walfmt_snap {
    uint32_t magic;
    uint16_t version;
    uint16_t size;
    uint32_t part;
    uint32_t partitions;
    uint32_t threads; /* layout the snapshot was written under */
    uint32_t reserved;
    uint64_t lsn;     /* every record of the partition up to this LSN is reflected */
    uint64_t wal_seq; /* the shard's open WAL batch when the round began */
    int64_t created_ms;
    uint64_t crc;
};
_Static_assert(sizeof(struct walfmt_snap) == 56, "walfmt_snap layout");

struct walfmt_chunk {
    uint32_t magic;
    uint32_t flags; /* WALFMT_CHUNK_LAST on the trailer */
    uint64_t count; /* entries */
    uint64_t len;   /* bytes of entries after this header */
    uint64_t sum;   /* XXH3 of the entries; on the trailer, of every chunk's crc */
    uint64_t crc;   /* of this header */
};
_Static_assert(sizeof(struct walfmt_chunk) == 40, "walfmt_chunk layout");
#define WALFMT_CHUNK_LAST 1u

struct walfmt_entry {
    uint32_t klen;
    uint32_t db; /* the key's database (version 3; zero before) */
    uint64_t vlen;
    int64_t expire_ms;
};
_Static_assert(sizeof(struct walfmt_entry) == 24, "walfmt_entry layout");

/* One decoded record (views into the buffer it was read from). */
struct walfmt_view {
    uint8_t type;
    uint32_t part;
    uint32_t db;
    uint32_t db2; /* SWAPDB */
    uint64_t lsn;
    uint64_t epoch;
    int64_t expire_ms;
    const char *key;
    size_t klen;
    const char *val; /* RANGE: the bytes written */
    size_t vlen;
    uint64_t range_off; /* RANGE only */
    uint64_t range_len;
};

/* Rounds n up to a whole number of blocks. */
static inline uint64_t walfmt_round_up(uint64_t n)
{
    return (n + WALFMT_BLOCK - 1) & ~(uint64_t)(WALFMT_BLOCK - 1);
}

/* Bytes a record takes in a batch. */
size_t walfmt_rec_size(const struct walfmt_view *r);

/* Writes one record at dst (walfmt_rec_size bytes). */
void walfmt_rec_encode(char *dst, const struct walfmt_view *r);

/* Fills and checksums a batch header / segment header / snapshot headers in place. */
void walfmt_batch_seal(struct walfmt_batch *b, uint32_t count, uint64_t len, uint64_t seq,
                       uint64_t acked);
void walfmt_seg_init(struct walfmt_seg *s, uint32_t shard, uint32_t threads, uint32_t partitions,
                     uint64_t segno, uint64_t base_lsn);
void walfmt_snap_init(struct walfmt_snap *s, uint32_t part, uint32_t threads, uint32_t partitions,
                      uint64_t lsn, uint64_t wal_seq, int64_t created_ms);
void walfmt_chunk_seal(struct walfmt_chunk *c, uint32_t flags, uint64_t count, const void *entries,
                       uint64_t len, uint64_t sum_override);

/* Checks (magic, version, checksum) of headers read from disk. */
/* Reads a segment header from the start of block 0 (at least sizeof(struct walfmt_seg)
 * bytes): true if it is valid, of this version or an older one (base_lsn 0). */
bool walfmt_seg_read(const void *blk, struct walfmt_seg *out);
bool walfmt_snap_ok(const struct walfmt_snap *s);
bool walfmt_chunk_ok(const struct walfmt_chunk *c);

/* Result of checking the bytes at a block boundary. */
enum walfmt_scan {
    WALFMT_SCAN_BATCH = 0, /* a whole, valid batch */
    WALFMT_SCAN_END,       /* a zero block: nothing more was written */
    WALFMT_SCAN_BAD,       /* neither: torn or corrupt (see reason) */
};

/*
 * Checks the batch at buf[0..avail): header, then every record. On BATCH, *info says
 * what it is; on BAD, *reason says what failed (a static string).
 */
enum walfmt_scan walfmt_scan_batch(const char *buf, uint64_t avail, struct walfmt_batch_info *info,
                                   const char **reason);

/* True if buf[0..avail) starts with a batch header whose own checksum holds (used to
 * tell a torn tail from corruption: a valid header after a bad batch). */
bool walfmt_batch_header_ok(const char *buf, uint64_t avail);

/* True if the WALFMT_BLOCK bytes at p are all zero (never written, or preallocated). */
bool walfmt_zero_block(const char *p);

/* The bytes a batch whose header is valid (walfmt_batch_header_ok) occupies. */
uint64_t walfmt_batch_span(const char *buf);

/* Decodes the record at buf[*off] of a batch already checked; advances *off. */
void walfmt_rec_decode(const char *buf, uint64_t *off, struct walfmt_view *out);

#endif
