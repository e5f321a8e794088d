/*
 * walfmt: encoding and checking of WAL and snapshot structures (see walfmt.h).
 */
#include "walfmt.h"

#include "kv_assert.h"
#include "kv_limits.h"

#include <string.h>
#include <xxhash.h>

size_t walfmt_rec_size(const struct walfmt_view *r)
{
    return sizeof(struct walfmt_rec) + r->klen + r->vlen +
           (r->type == WALFMT_RANGE ? WALFMT_RANGE_PREFIX : 0);
}

/* A record's checksum: its header (crc field zero) hashed, then key and value hashed
 * with that as the seed (two one-shot hashes: no streaming state to set up). */
static uint64_t rec_crc(const struct walfmt_rec *h, const char *payload, size_t len)
{
    return XXH3_64bits_withSeed(payload, len, XXH3_64bits(h, sizeof *h));
}

void walfmt_rec_encode(char *dst, const struct walfmt_view *r)
{
    size_t prefix = r->type == WALFMT_RANGE ? WALFMT_RANGE_PREFIX : 0;
    KV_ASSERT(r->type != WALFMT_RANGE || r->range_off + r->vlen <= r->range_len);
    KV_ASSERT(r->db <= UINT16_MAX && r->db2 <= UINT16_MAX);
    struct walfmt_rec h = {
        .len = walfmt_rec_size(r),
        .lsn = r->lsn,
        .epoch = r->epoch,
        .expire_ms = r->expire_ms,
        .part = r->part,
        .klen = (uint32_t)r->klen,
        .vlen = prefix + r->vlen,
        .type = r->type,
        .db = (uint16_t)r->db,
        .db2 = (uint16_t)r->db2,
    };
    char *p = dst + sizeof h;
    memcpy(p, r->key, r->klen);
    p += r->klen;
    if (prefix) {
        memcpy(p, &r->range_off, 8);
        memcpy(p + 8, &r->range_len, 8);
        p += prefix;
    }
    if (r->vlen > 0) {
        memcpy(p, r->val, r->vlen);
    }
    h.crc = rec_crc(&h, dst + sizeof h, r->klen + h.vlen);
    memcpy(dst, &h, sizeof h);
}

/*
 * The versioned headers (segment, batch, snapshot) start with magic, version and size,
 * and end with a checksum of everything before it: one stamp, one seal, one check.
 */
struct hdr_prefix {
    uint32_t magic;
    uint16_t version;
    uint16_t size;
};

static void hdr_start(void *h, size_t size, uint32_t magic)
{
    memset(h, 0, size);
    uint16_t version = magic == WALFMT_SEG_MAGIC ? WALFMT_VERSION : WALFMT_VERSION_3;
    struct hdr_prefix p = {.magic = magic, .version = version, .size = (uint16_t)size};
    memcpy(h, &p, sizeof p);
}

/* Checksum of a header struct whose crc field is the last 8 bytes. */
static uint64_t header_crc(const void *p, size_t size)
{
    return XXH3_64bits(p, size - 8);
}

static void hdr_seal(void *h, size_t size)
{
    uint64_t crc = header_crc(h, size);
    memcpy((char *)h + size - 8, &crc, 8);
}

static bool hdr_ok(const void *h, size_t size, uint32_t magic)
{
    struct hdr_prefix p;
    uint64_t crc;
    memcpy(&p, h, sizeof p);
    memcpy(&crc, (const char *)h + size - 8, 8);
    return p.magic == magic && p.version >= WALFMT_VERSION_MIN && p.version <= WALFMT_VERSION &&
           p.size == size && crc == header_crc(h, size);
}

void walfmt_batch_seal(struct walfmt_batch *b, uint32_t count, uint64_t len, uint64_t seq,
                       uint64_t acked)
{
    hdr_start(b, sizeof *b, WALFMT_BATCH_MAGIC);
    b->count = count;
    b->len = len;
    b->seq = seq;
    b->acked = acked;
    hdr_seal(b, sizeof *b);
}

void walfmt_seg_init(struct walfmt_seg *s, uint32_t shard, uint32_t threads, uint32_t partitions,
                     uint64_t segno, uint64_t base_lsn)
{
    hdr_start(s, sizeof *s, WALFMT_SEG_MAGIC);
    s->shard = shard;
    s->threads = threads;
    s->partitions = partitions;
    s->segno = segno;
    s->base_lsn = base_lsn;
    hdr_seal(s, sizeof *s);
}

void walfmt_snap_init(struct walfmt_snap *s, uint32_t part, uint32_t threads, uint32_t partitions,
                      uint64_t lsn, uint64_t wal_seq, int64_t created_ms)
{
    hdr_start(s, sizeof *s, WALFMT_SNAP_MAGIC);
    s->part = part;
    s->partitions = partitions;
    s->threads = threads;
    s->lsn = lsn;
    s->wal_seq = wal_seq;
    s->created_ms = created_ms;
    hdr_seal(s, sizeof *s);
}

void walfmt_chunk_seal(struct walfmt_chunk *c, uint32_t flags, uint64_t count, const void *entries,
                       uint64_t len, uint64_t sum_override)
{
    memset(c, 0, sizeof *c);
    c->magic = WALFMT_CHUNK_MAGIC;
    c->flags = flags;
    c->count = count;
    c->len = len;
    c->sum = (flags & WALFMT_CHUNK_LAST) ? sum_override : XXH3_64bits(entries, len);
    hdr_seal(c, sizeof *c);
}

bool walfmt_seg_read(const void *blk, struct walfmt_seg *out)
{
    struct hdr_prefix p;
    memcpy(&p, blk, sizeof p);
    memset(out, 0, sizeof *out);
    if (p.version < 4 && p.size == WALFMT_SEG_SIZE_V3) { /* crc where base_lsn is now */
        if (!hdr_ok(blk, WALFMT_SEG_SIZE_V3, WALFMT_SEG_MAGIC)) {
            return false;
        }
        memcpy(out, blk, WALFMT_SEG_SIZE_V3 - 8);
        memcpy(&out->crc, (const char *)blk + WALFMT_SEG_SIZE_V3 - 8, 8);
        return true;
    }
    if (p.version < 4 || !hdr_ok(blk, sizeof *out, WALFMT_SEG_MAGIC)) {
        return false;
    }
    memcpy(out, blk, sizeof *out);
    return true;
}

bool walfmt_snap_ok(const struct walfmt_snap *s)
{
    return hdr_ok(s, sizeof *s, WALFMT_SNAP_MAGIC);
}

bool walfmt_chunk_ok(const struct walfmt_chunk *c)
{
    return c->magic == WALFMT_CHUNK_MAGIC && c->crc == header_crc(c, sizeof *c);
}

bool walfmt_batch_header_ok(const char *buf, uint64_t avail)
{
    return avail >= sizeof(struct walfmt_batch) &&
           hdr_ok(buf, sizeof(struct walfmt_batch), WALFMT_BATCH_MAGIC);
}

uint64_t walfmt_batch_span(const char *buf)
{
    struct walfmt_batch b;
    memcpy(&b, buf, sizeof b);
    return walfmt_round_up(sizeof b + b.len);
}

/* A RANGE record's bytes fit the length it sets, and that length is a value's. */
static bool range_ok(const struct walfmt_rec *r, const char *val)
{
    if (r->vlen < WALFMT_RANGE_PREFIX) {
        return false;
    }
    uint64_t off, len, n = r->vlen - WALFMT_RANGE_PREFIX;
    memcpy(&off, val, 8);
    memcpy(&len, val + 8, 8);
    return len <= KV_VALUE_BYTES_MAX && off <= len && n <= len - off;
}

bool walfmt_zero_block(const char *p)
{
    for (size_t i = 0; i < WALFMT_BLOCK; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

enum walfmt_scan walfmt_scan_batch(const char *buf, uint64_t avail, struct walfmt_batch_info *info,
                                   const char **reason)
{
    KV_ASSERT(avail % WALFMT_BLOCK == 0);
    if (avail == 0 || walfmt_zero_block(buf)) {
        return WALFMT_SCAN_END;
    }
    if (!walfmt_batch_header_ok(buf, avail)) {
        *reason = "bad batch header";
        return WALFMT_SCAN_BAD;
    }
    struct walfmt_batch b;
    memcpy(&b, buf, sizeof b);
    if (b.len > avail - sizeof b) {
        *reason = "batch runs past the end of the file";
        return WALFMT_SCAN_BAD;
    }
    uint64_t off = sizeof b;
    uint64_t end = sizeof b + b.len;
    for (uint32_t i = 0; i < b.count; i++) {
        struct walfmt_rec r;
        if (end - off < sizeof r) {
            *reason = "record header cut short";
            return WALFMT_SCAN_BAD;
        }
        memcpy(&r, buf + off, sizeof r);
        if (r.len < sizeof r || r.len > end - off || r.klen > r.len - sizeof r ||
            r.vlen != r.len - sizeof r - r.klen || r.klen > KV_KEY_BYTES_MAX ||
            r.vlen > KV_VALUE_BYTES_MAX + WALFMT_RANGE_PREFIX || r.type < WALFMT_PUT ||
            r.type > WALFMT_SWAPDB) {
            *reason = "bad record length or type";
            return WALFMT_SCAN_BAD;
        }
        uint64_t want = r.crc;
        r.crc = 0;
        if (rec_crc(&r, buf + off + sizeof r, r.len - sizeof r) != want) {
            *reason = "record checksum mismatch";
            return WALFMT_SCAN_BAD;
        }
        if (r.type == WALFMT_RANGE && !range_ok(&r, buf + off + sizeof r + r.klen)) {
            *reason = "bad range record";
            return WALFMT_SCAN_BAD;
        }
        off += r.len;
    }
    if (off != end) {
        *reason = "batch length does not match its records";
        return WALFMT_SCAN_BAD;
    }
    info->span = walfmt_round_up(end);
    info->count = b.count;
    info->seq = b.seq;
    info->acked = b.acked;
    return WALFMT_SCAN_BATCH;
}

void walfmt_rec_decode(const char *buf, uint64_t *off, struct walfmt_view *out)
{
    struct walfmt_rec r;
    memcpy(&r, buf + *off, sizeof r);
    out->type = r.type;
    out->part = r.part;
    out->db = r.db;
    out->db2 = r.db2;
    out->lsn = r.lsn;
    out->epoch = r.epoch;
    out->expire_ms = r.expire_ms;
    out->key = buf + *off + sizeof r;
    out->klen = r.klen;
    out->val = out->key + r.klen;
    out->vlen = r.vlen;
    out->range_off = 0;
    out->range_len = 0;
    if (r.type == WALFMT_RANGE) {
        KV_ASSERT(r.vlen >= WALFMT_RANGE_PREFIX);
        memcpy(&out->range_off, out->val, 8);
        memcpy(&out->range_len, out->val + 8, 8);
        out->val += WALFMT_RANGE_PREFIX;
        out->vlen -= WALFMT_RANGE_PREFIX;
    }
    *off += r.len;
}
