/*
 * walfmt: record and batch encoding round trips, and the checks recovery relies on:
 * a zero block ends the log, any flipped bit in a batch makes it bad, a cut batch is
 * bad, and headers of segments, snapshots and chunks verify.
 */
#include "walfmt.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define BUF (64 * 1024)

static char *buf;

static void setup(void)
{
    buf = aligned_alloc(WALFMT_BLOCK, BUF);
    cr_assert(buf != NULL);
    memset(buf, 0, BUF);
}

static void teardown(void)
{
    free(buf);
}

TestSuite(walfmt, .init = setup, .fini = teardown);

/* Builds a batch of `n` PUT records at buf; returns its length (header + records). */
static uint64_t make_batch(uint32_t n, uint64_t seq)
{
    uint64_t off = sizeof(struct walfmt_batch);
    for (uint32_t i = 0; i < n; i++) {
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "key:%u", i);
        int vl = snprintf(val, sizeof val, "value-%u-%u", i, i * 7);
        struct walfmt_view v = {.type = WALFMT_PUT,
                                .part = i % 8,
                                .db = i % 3 == 0 ? 0 : i * 131 % 65536,
                                .lsn = 100 + i,
                                .expire_ms = i % 2 ? 1234567 : 0,
                                .key = key,
                                .klen = (size_t)kl,
                                .val = val,
                                .vlen = (size_t)vl};
        walfmt_rec_encode(buf + off, &v);
        off += walfmt_rec_size(&v);
    }
    struct walfmt_batch h;
    walfmt_batch_seal(&h, n, off - sizeof h, seq, seq - 1);
    memcpy(buf, &h, sizeof h);
    return off;
}

/* Encodes the n records of `in` as one batch at buf; returns its length. */
static uint64_t encode_batch(const struct walfmt_view *in, uint32_t n, uint64_t seq)
{
    uint64_t off = sizeof(struct walfmt_batch);
    for (uint32_t i = 0; i < n; i++) {
        walfmt_rec_encode(buf + off, &in[i]);
        off += walfmt_rec_size(&in[i]);
    }
    struct walfmt_batch h;
    walfmt_batch_seal(&h, n, off - sizeof h, seq, seq - 1);
    memcpy(buf, &h, sizeof h);
    return off;
}

Test(walfmt, struct_sizes_are_fixed)
{
    cr_assert_eq(sizeof(struct walfmt_seg), 48);
    cr_assert_eq(sizeof(struct walfmt_batch), 48);
    cr_assert_eq(sizeof(struct walfmt_rec), 64);
    cr_assert_eq(sizeof(struct walfmt_snap), 56);
    cr_assert_eq(sizeof(struct walfmt_chunk), 40);
    cr_assert_eq(sizeof(struct walfmt_entry), 24);
}

Test(walfmt, batch_round_trip)
{
    uint64_t len = make_batch(50, 7);
    struct walfmt_batch_info bi;
    const char *why = NULL;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BATCH);
    cr_assert_eq(bi.span, walfmt_round_up(len));
    cr_assert_eq(bi.span % WALFMT_BLOCK, 0);
    cr_assert_eq(bi.count, 50);
    cr_assert_eq(bi.seq, 7);
    cr_assert_eq(bi.acked, 6);
    uint32_t count = bi.count;
    uint64_t off = sizeof(struct walfmt_batch);
    for (uint32_t i = 0; i < count; i++) {
        struct walfmt_view v;
        walfmt_rec_decode(buf, &off, &v);
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "key:%u", i);
        int vl = snprintf(val, sizeof val, "value-%u-%u", i, i * 7);
        cr_assert_eq(v.type, WALFMT_PUT);
        cr_assert_eq(v.part, i % 8);
        cr_assert_eq(v.db, i % 3 == 0 ? 0 : i * 131 % 65536);
        cr_assert_eq(v.db2, 0);
        cr_assert_eq(v.lsn, 100 + i);
        cr_assert_eq(v.expire_ms, i % 2 ? 1234567 : 0);
        cr_assert_eq(v.klen, (size_t)kl);
        cr_assert_eq(v.vlen, (size_t)vl);
        cr_assert(memcmp(v.key, key, v.klen) == 0);
        cr_assert(memcmp(v.val, val, v.vlen) == 0);
    }
    cr_assert_eq(off, len);
}

Test(walfmt, swapdb_record_round_trip)
{
    struct walfmt_view in[2] = {
        {.type = WALFMT_SWAPDB, .part = 3, .db = 9, .db2 = 4095, .lsn = 77, .key = ""},
        {.type = WALFMT_FLUSH, .part = 3, .db = 12, .lsn = 78, .key = ""},
    };
    uint64_t len = encode_batch(in, 2, 5);
    struct walfmt_batch_info bi;
    const char *why = NULL;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BATCH, "%s", why);
    uint64_t off = sizeof(struct walfmt_batch);
    struct walfmt_view v;
    walfmt_rec_decode(buf, &off, &v);
    cr_assert(v.type == WALFMT_SWAPDB && v.part == 3 && v.db == 9 && v.db2 == 4095 && v.lsn == 77);
    cr_assert_eq(v.klen, 0);
    walfmt_rec_decode(buf, &off, &v);
    cr_assert(v.type == WALFMT_FLUSH && v.db == 12 && v.db2 == 0 && v.lsn == 78);
    cr_assert_eq(off, len);
}

Test(walfmt, zero_block_is_the_end)
{
    struct walfmt_batch_info bi;
    const char *why;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_END);
    cr_assert_eq(walfmt_scan_batch(buf, 0, &bi, &why), WALFMT_SCAN_END);
}

Test(walfmt, every_flipped_bit_is_detected)
{
    uint64_t len = make_batch(5, 1);
    char *orig = malloc(len);
    memcpy(orig, buf, len);
    for (uint64_t bit = 0; bit < len * 8; bit++) {
        memcpy(buf, orig, len);
        buf[bit / 8] ^= (char)(1u << (bit % 8));
        struct walfmt_batch_info bi;
        const char *why = NULL;
        enum walfmt_scan s = walfmt_scan_batch(buf, BUF, &bi, &why);
        cr_assert_eq(s, WALFMT_SCAN_BAD, "flipped bit %llu was not detected",
                     (unsigned long long)bit);
        cr_assert(why != NULL);
    }
    free(orig);
}

Test(walfmt, cut_batch_is_bad)
{
    uint64_t len = make_batch(120, 3);
    cr_assert_gt(len, WALFMT_BLOCK); /* spans blocks */
    /* the second block never reached the disk */
    memset(buf + WALFMT_BLOCK, 0, BUF - WALFMT_BLOCK);
    struct walfmt_batch_info bi;
    const char *why = NULL;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BAD);
    /* the header alone still verifies: a torn batch is told from a missing one */
    cr_assert(walfmt_batch_header_ok(buf, BUF));
    /* and a batch whose declared length runs past what was read is bad too */
    cr_assert_eq(walfmt_scan_batch(buf, WALFMT_BLOCK, &bi, &why), WALFMT_SCAN_BAD);
}

Test(walfmt, delete_expire_flush_records)
{
    struct walfmt_view in[3] = {
        {.type = WALFMT_DEL, .part = 1, .lsn = 9, .key = "k", .klen = 1},
        {.type = WALFMT_EXPIRE, .part = 2, .lsn = 10, .key = "kk", .klen = 2, .expire_ms = 99},
        {.type = WALFMT_FLUSH, .part = 3, .lsn = 11, .key = "", .klen = 0},
    };
    encode_batch(in, 3, 2);
    struct walfmt_batch_info bi;
    const char *why;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BATCH);
    uint64_t p = sizeof(struct walfmt_batch);
    for (int i = 0; i < 3; i++) {
        struct walfmt_view v;
        walfmt_rec_decode(buf, &p, &v);
        cr_assert_eq(v.type, in[i].type);
        cr_assert_eq(v.part, in[i].part);
        cr_assert_eq(v.lsn, in[i].lsn);
        cr_assert_eq(v.expire_ms, in[i].expire_ms);
        cr_assert_eq(v.klen, in[i].klen);
        cr_assert_eq(v.vlen, 0);
    }
}

Test(walfmt, range_records)
{
    struct walfmt_view in[3] = {
        {.type = WALFMT_RANGE,
         .lsn = 1,
         .key = "log",
         .klen = 3,
         .val = "tail",
         .vlen = 4,
         .range_off = 1000,
         .range_len = 1004,
         .expire_ms = 77},
        {.type = WALFMT_RANGE,
         .lsn = 2,
         .key = "z",
         .klen = 1,
         .val = "x",
         .vlen = 1,
         .range_off = 5000,
         .range_len = 9000},
        {.type = WALFMT_RANGE,
         .lsn = 3,
         .key = "e",
         .klen = 1,
         .val = "",
         .vlen = 0,
         .range_off = 0,
         .range_len = 0},
    };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(walfmt_rec_size(&in[i]),
                     sizeof(struct walfmt_rec) + in[i].klen + in[i].vlen + WALFMT_RANGE_PREFIX);
    }
    uint64_t off = encode_batch(in, 3, 2);
    struct walfmt_batch h;
    struct walfmt_batch_info bi;
    const char *why = NULL;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BATCH, "%s", why);
    uint64_t p = sizeof h;
    for (int i = 0; i < 3; i++) {
        struct walfmt_view v;
        walfmt_rec_decode(buf, &p, &v);
        cr_assert_eq(v.type, WALFMT_RANGE);
        cr_assert_eq(v.range_off, in[i].range_off);
        cr_assert_eq(v.range_len, in[i].range_len);
        cr_assert_eq(v.expire_ms, in[i].expire_ms);
        cr_assert_eq(v.vlen, in[i].vlen);
        cr_assert(memcmp(v.val, in[i].val, v.vlen) == 0);
        cr_assert(memcmp(v.key, in[i].key, v.klen) == 0);
    }
    cr_assert_eq(p, off);

    /* A checksummed record whose bytes do not fit the length it sets is still bad:
     * walfmt_rec_encode asserts the range fits, so encode a good one (4 bytes at 10,
     * length 14), then set its length to 12 and checksum it again, as a buggy writer
     * would. */
    struct walfmt_view good = {.type = WALFMT_RANGE,
                               .key = "k",
                               .klen = 1,
                               .val = "abcd",
                               .vlen = 4,
                               .range_off = 10,
                               .range_len = 14};
    off = sizeof h;
    walfmt_rec_encode(buf + off, &good);
    struct walfmt_rec r;
    memcpy(&r, buf + off, sizeof r);
    uint64_t len12 = 12;
    memcpy(buf + off + sizeof r + 1 + 8, &len12, 8);
    r.crc = 0;
    r.crc = XXH3_64bits_withSeed(buf + off + sizeof r, r.len - sizeof r, XXH3_64bits(&r, sizeof r));
    memcpy(buf + off, &r, sizeof r);
    walfmt_batch_seal(&h, 1, r.len, 2, 1);
    memcpy(buf, &h, sizeof h);
    why = NULL;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BAD);
    cr_assert_str_eq(why, "bad range record");
}

Test(walfmt, version_1_files_still_read)
{
    make_batch(3, 5);
    struct walfmt_batch h;
    memcpy(&h, buf, sizeof h);
    cr_assert_eq(h.version, WALFMT_VERSION_3); /* (a batch is written as version 3) */
    h.version = 1;
    h.crc = XXH3_64bits(&h, sizeof h - 8); /* a header's checksum: all but itself */
    memcpy(buf, &h, sizeof h);
    struct walfmt_batch_info bi;
    const char *why = NULL;
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BATCH, "%s", why);
    h.version = WALFMT_VERSION + 1;        /* a newer writer: refused */
    h.crc = XXH3_64bits(&h, sizeof h - 8); /* a header's checksum: all but itself */
    memcpy(buf, &h, sizeof h);
    cr_assert_eq(walfmt_scan_batch(buf, BUF, &bi, &why), WALFMT_SCAN_BAD);
}

/* A version 3 segment header (40 bytes, no base_lsn) as older kvd wrote it. */
Test(walfmt, old_segment_header_reads_as_base_zero)
{
    unsigned char blk[64] = {0};
    uint32_t magic = WALFMT_SEG_MAGIC, shard = 2, threads = 4, parts = 16;
    uint16_t version = 3, size = WALFMT_SEG_SIZE_V3;
    uint64_t segno = 9;
    memcpy(blk, &magic, 4);
    memcpy(blk + 4, &version, 2);
    memcpy(blk + 6, &size, 2);
    memcpy(blk + 8, &shard, 4);
    memcpy(blk + 12, &threads, 4);
    memcpy(blk + 16, &parts, 4);
    memcpy(blk + 24, &segno, 8);
    uint64_t crc = XXH3_64bits(blk, WALFMT_SEG_SIZE_V3 - 8);
    memcpy(blk + 32, &crc, 8);
    struct walfmt_seg got;
    cr_assert(walfmt_seg_read(blk, &got));
    cr_assert_eq(got.shard, 2);
    cr_assert_eq(got.threads, 4);
    cr_assert_eq(got.partitions, 16);
    cr_assert_eq(got.segno, 9);
    cr_assert_eq(got.base_lsn, 0);
    blk[24] ^= 1; /* damaged */
    cr_assert_not(walfmt_seg_read(blk, &got));
    blk[24] ^= 1;
    version = 4; /* a version 4 header must be the long one */
    memcpy(blk + 4, &version, 2);
    crc = XXH3_64bits(blk, WALFMT_SEG_SIZE_V3 - 8);
    memcpy(blk + 32, &crc, 8);
    cr_assert_not(walfmt_seg_read(blk, &got));
}

Test(walfmt, headers_verify_and_reject_damage)
{
    struct walfmt_seg s, got;
    walfmt_seg_init(&s, 3, 4, 16, 42, 0x1234);
    cr_assert_eq(s.version, WALFMT_VERSION); /* (version 4: the header with base_lsn) */
    cr_assert(walfmt_seg_read(&s, &got));
    cr_assert_eq(got.segno, 42);
    cr_assert_eq(got.base_lsn, 0x1234);
    s.segno++;
    cr_assert_not(walfmt_seg_read(&s, &got));
    s.segno--;
    s.base_lsn++;
    cr_assert_not(walfmt_seg_read(&s, &got));

    struct walfmt_snap sn;
    walfmt_snap_init(&sn, 5, 4, 16, 1000, 77, 123456);
    cr_assert(walfmt_snap_ok(&sn));
    cr_assert_eq(sn.wal_seq, 77);
    cr_assert_eq(sn.threads, 4);
    sn.lsn ^= 1;
    cr_assert_not(walfmt_snap_ok(&sn));

    const char entries[] = "some entry bytes";
    struct walfmt_chunk c;
    walfmt_chunk_seal(&c, 0, 1, entries, sizeof entries, 0);
    cr_assert(walfmt_chunk_ok(&c));
    struct walfmt_chunk last;
    walfmt_chunk_seal(&last, WALFMT_CHUNK_LAST, 9, NULL, 0, 0xabcdef);
    cr_assert(walfmt_chunk_ok(&last));
    cr_assert_eq(last.sum, 0xabcdef);
    c.count++;
    cr_assert_not(walfmt_chunk_ok(&c));
}

Test(walfmt, round_up)
{
    cr_assert_eq(walfmt_round_up(0), 0);
    cr_assert_eq(walfmt_round_up(1), WALFMT_BLOCK);
    cr_assert_eq(walfmt_round_up(WALFMT_BLOCK), WALFMT_BLOCK);
    cr_assert_eq(walfmt_round_up(WALFMT_BLOCK + 1), 2 * WALFMT_BLOCK);
}
