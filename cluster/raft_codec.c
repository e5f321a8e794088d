/*
 * raft_codec: encoding and strict decoding of Raft messages and log-entry records.
 *
 * Why explicit byte offsets rather than memcpy of structs: the layout is a contract
 * between nodes (and with the log on disk) that must not depend on the compiler's
 * padding or the host's byte order. The C structs below exist only so that
 * _Static_assert pins each header's size and every field's offset.
 *
 * Message header (88 bytes):
 *   0 magic "KVRM" u32 | 4 version u8 | 5 type u8 | 6 flags u8 | 7 reject u8
 *   8 checksum u64 (XXH3-64 of bytes 0..8 and 16..end) | 16 total_len u32 | 20 n_entries u32
 *   24 from | 32 to | 40 term | 48 log_term | 56 index | 64 commit | 72 reject_hint
 *   80 context (all u64)
 * Snapshot section (136 bytes, SNAPSHOT only): index u64 | term u64 | n_voters u32 |
 *   n_learners u32 | voters[5] u64 | learners[8] u64 | data_len u32 | reserved u32; data.
 * Entry record (40 bytes + data): magic "KVRE" u32 | version u8 | type u8 | reserved u16 |
 *   len u32 | reserved u32 | term u64 | index u64 | checksum u64 (XXH3-64 of bytes 0..32
 *   and the data).
 *
 * Pure functions; any thread.
 */
#include "raft_codec.h"

#include <stddef.h>
#include <string.h>
#include <xxhash.h>

#include "kv_assert.h"
#include "kv_error.h"

#define MSG_MAGIC   0x4d52564bu /* "KVRM" */
#define ENTRY_MAGIC 0x4552564bu /* "KVRE" */

struct raft_wire_msg_hdr {
    uint32_t magic;
    uint8_t version;
    uint8_t type;
    uint8_t flags;
    uint8_t reject;
    uint64_t checksum;
    uint32_t total_len;
    uint32_t n_entries;
    uint64_t from, to, term, log_term, index, commit, reject_hint, context;
};
_Static_assert(sizeof(struct raft_wire_msg_hdr) == RAFT_WIRE_MSG_HDR_BYTES, "msg header");
_Static_assert(offsetof(struct raft_wire_msg_hdr, context) == 80, "msg header layout");

struct raft_wire_snap_hdr {
    uint64_t index, term;
    uint32_t n_voters, n_learners;
    uint64_t voters[KV_RAFT_VOTERS_MAX];
    uint64_t learners[KV_RAFT_LEARNERS_MAX];
    uint32_t data_len, reserved;
};
_Static_assert(sizeof(struct raft_wire_snap_hdr) == RAFT_WIRE_SNAP_HDR_BYTES, "snap header");
_Static_assert(offsetof(struct raft_wire_snap_hdr, data_len) == 128, "snap header layout");

struct raft_wire_entry_hdr {
    uint32_t magic;
    uint8_t version;
    uint8_t type;
    uint16_t reserved;
    uint32_t len;
    uint32_t reserved2;
    uint64_t term, index, checksum;
};
_Static_assert(sizeof(struct raft_wire_entry_hdr) == RAFT_WIRE_ENTRY_HDR_BYTES, "entry hdr");
_Static_assert(offsetof(struct raft_wire_entry_hdr, checksum) == 32, "entry header layout");

#define OFF(s, f) offsetof(struct s, f)

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- entries ----------------------------------------------------------------------- */

size_t raft_entry_encoded_size(const struct raft_entry *e)
{
    return RAFT_WIRE_ENTRY_HDR_BYTES + e->len;
}

static uint64_t entry_checksum(const uint8_t *hdr, const uint8_t *data, uint32_t len)
{
    /* The header's hash seeds the data's: one 64-bit sum over both, no streaming state. */
    uint64_t h = XXH3_64bits(hdr, OFF(raft_wire_entry_hdr, checksum));
    return XXH3_64bits_withSeed(len > 0 ? data : hdr, len, h);
}

int raft_entry_encode(const struct raft_entry *e, uint8_t *buf, size_t cap, size_t *len_out)
{
    if (e->len > KV_RAFT_ENTRY_DATA_MAX || cap < raft_entry_encoded_size(e) || e->type > 255) {
        return KV_ELIMIT;
    }
    memset(buf, 0, RAFT_WIRE_ENTRY_HDR_BYTES);
    put32(buf + OFF(raft_wire_entry_hdr, magic), ENTRY_MAGIC);
    buf[OFF(raft_wire_entry_hdr, version)] = RAFT_CODEC_VERSION;
    buf[OFF(raft_wire_entry_hdr, type)] = (uint8_t)e->type;
    put32(buf + OFF(raft_wire_entry_hdr, len), e->len);
    put64(buf + OFF(raft_wire_entry_hdr, term), e->term);
    put64(buf + OFF(raft_wire_entry_hdr, index), e->index);
    if (e->len > 0) {
        memcpy(buf + RAFT_WIRE_ENTRY_HDR_BYTES, e->data, e->len);
    }
    put64(buf + OFF(raft_wire_entry_hdr, checksum),
          entry_checksum(buf, buf + RAFT_WIRE_ENTRY_HDR_BYTES, e->len));
    *len_out = raft_entry_encoded_size(e);
    return 0;
}

int raft_entry_decode(const uint8_t *buf, size_t len, struct raft_entry *e, size_t *used)
{
    if (len < RAFT_WIRE_ENTRY_HDR_BYTES) {
        return KV_EPROTO;
    }
    if (get32(buf + OFF(raft_wire_entry_hdr, magic)) != ENTRY_MAGIC) {
        return KV_EPROTO;
    }
    if (buf[OFF(raft_wire_entry_hdr, version)] != RAFT_CODEC_VERSION) {
        return KV_EVERSION;
    }
    uint32_t dlen = get32(buf + OFF(raft_wire_entry_hdr, len));
    uint8_t type = buf[OFF(raft_wire_entry_hdr, type)];
    if (dlen > KV_RAFT_ENTRY_DATA_MAX) {
        return KV_ELIMIT;
    }
    if (dlen > len - RAFT_WIRE_ENTRY_HDR_BYTES) {
        return KV_EPROTO;
    }
    if ((type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_CONF) ||
        buf[OFF(raft_wire_entry_hdr, reserved)] != 0 ||
        buf[OFF(raft_wire_entry_hdr, reserved) + 1] != 0 ||
        get32(buf + OFF(raft_wire_entry_hdr, reserved2)) != 0) {
        return KV_EPROTO;
    }
    const uint8_t *data = buf + RAFT_WIRE_ENTRY_HDR_BYTES;
    if (get64(buf + OFF(raft_wire_entry_hdr, checksum)) != entry_checksum(buf, data, dlen)) {
        return KV_ECORRUPT;
    }
    e->term = get64(buf + OFF(raft_wire_entry_hdr, term));
    e->index = get64(buf + OFF(raft_wire_entry_hdr, index));
    e->type = type;
    e->len = dlen;
    e->data = dlen > 0 ? data : NULL;
    if (e->term == 0 || e->index == 0) {
        return KV_EPROTO;
    }
    *used = RAFT_WIRE_ENTRY_HDR_BYTES + dlen;
    return 0;
}

/* ---- messages ---------------------------------------------------------------------- */

/* Everything but the checksum field: bytes 0..8 seed the hash of bytes 16..end. */
static uint64_t msg_checksum(const uint8_t *buf, size_t len)
{
    uint64_t seed = XXH3_64bits(buf, OFF(raft_wire_msg_hdr, checksum));
    return XXH3_64bits_withSeed(buf + OFF(raft_wire_msg_hdr, total_len),
                                len - OFF(raft_wire_msg_hdr, total_len), seed);
}

size_t raft_msg_encoded_size(const struct raft_msg *m)
{
    size_t n = RAFT_WIRE_MSG_HDR_BYTES;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        n += RAFT_WIRE_SNAP_HDR_BYTES + m->snap_len;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        n += raft_entry_encoded_size(&m->entries[i]);
    }
    return n;
}

static void encode_snap(const struct raft_msg *m, uint8_t *p)
{
    memset(p, 0, RAFT_WIRE_SNAP_HDR_BYTES);
    const struct raft_snapshot_meta *s = &m->snap;
    put64(p + OFF(raft_wire_snap_hdr, index), s->index);
    put64(p + OFF(raft_wire_snap_hdr, term), s->term);
    put32(p + OFF(raft_wire_snap_hdr, n_voters), s->conf.n_voters);
    put32(p + OFF(raft_wire_snap_hdr, n_learners), s->conf.n_learners);
    for (uint32_t i = 0; i < s->conf.n_voters; i++) {
        put64(p + OFF(raft_wire_snap_hdr, voters) + 8 * i, s->conf.voters[i]);
    }
    for (uint32_t i = 0; i < s->conf.n_learners; i++) {
        put64(p + OFF(raft_wire_snap_hdr, learners) + 8 * i, s->conf.learners[i]);
    }
    put32(p + OFF(raft_wire_snap_hdr, data_len), m->snap_len);
    if (m->snap_len > 0) {
        memcpy(p + RAFT_WIRE_SNAP_HDR_BYTES, m->snap_data, m->snap_len);
    }
}

int raft_msg_encode(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *len_out)
{
    if (m->n_entries > KV_RAFT_MSG_ENTRIES_MAX || m->snap_len > KV_RAFT_SNAPSHOT_MAX ||
        m->snap.conf.n_voters > KV_RAFT_VOTERS_MAX ||
        m->snap.conf.n_learners > KV_RAFT_LEARNERS_MAX || m->type > 255 || m->flags > 255) {
        return KV_ELIMIT;
    }
    size_t total = raft_msg_encoded_size(m);
    if (total > cap || total > UINT32_MAX) {
        return KV_ELIMIT;
    }
    memset(buf, 0, RAFT_WIRE_MSG_HDR_BYTES);
    put32(buf + OFF(raft_wire_msg_hdr, magic), MSG_MAGIC);
    buf[OFF(raft_wire_msg_hdr, version)] = RAFT_CODEC_VERSION;
    buf[OFF(raft_wire_msg_hdr, type)] = (uint8_t)m->type;
    buf[OFF(raft_wire_msg_hdr, flags)] = (uint8_t)m->flags;
    buf[OFF(raft_wire_msg_hdr, reject)] = m->reject ? 1 : 0;
    put32(buf + OFF(raft_wire_msg_hdr, total_len), (uint32_t)total);
    put32(buf + OFF(raft_wire_msg_hdr, n_entries), m->n_entries);
    put64(buf + OFF(raft_wire_msg_hdr, from), m->from);
    put64(buf + OFF(raft_wire_msg_hdr, to), m->to);
    put64(buf + OFF(raft_wire_msg_hdr, term), m->term);
    put64(buf + OFF(raft_wire_msg_hdr, log_term), m->log_term);
    put64(buf + OFF(raft_wire_msg_hdr, index), m->index);
    put64(buf + OFF(raft_wire_msg_hdr, commit), m->commit);
    put64(buf + OFF(raft_wire_msg_hdr, reject_hint), m->reject_hint);
    put64(buf + OFF(raft_wire_msg_hdr, context), m->context);
    size_t off = RAFT_WIRE_MSG_HDR_BYTES;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        encode_snap(m, buf + off);
        off += RAFT_WIRE_SNAP_HDR_BYTES + m->snap_len;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        size_t used;
        int rc = raft_entry_encode(&m->entries[i], buf + off, total - off, &used);
        if (rc != 0) {
            return rc;
        }
        off += used;
    }
    KV_ASSERT(off == total);
    put64(buf + OFF(raft_wire_msg_hdr, checksum), msg_checksum(buf, total));
    *len_out = total;
    return 0;
}

static int decode_snap(const uint8_t *p, size_t avail, struct raft_msg *m)
{
    if (avail < RAFT_WIRE_SNAP_HDR_BYTES) {
        return KV_EPROTO;
    }
    struct raft_snapshot_meta *s = &m->snap;
    s->index = get64(p + OFF(raft_wire_snap_hdr, index));
    s->term = get64(p + OFF(raft_wire_snap_hdr, term));
    s->conf.n_voters = get32(p + OFF(raft_wire_snap_hdr, n_voters));
    s->conf.n_learners = get32(p + OFF(raft_wire_snap_hdr, n_learners));
    if (s->conf.n_voters > KV_RAFT_VOTERS_MAX || s->conf.n_learners > KV_RAFT_LEARNERS_MAX) {
        return KV_ELIMIT;
    }
    for (uint32_t i = 0; i < KV_RAFT_VOTERS_MAX; i++) {
        uint64_t id = get64(p + OFF(raft_wire_snap_hdr, voters) + 8 * i);
        if ((i < s->conf.n_voters) != (id != 0)) {
            return KV_EPROTO; /* listed ids are non-zero, unused slots zero */
        }
        s->conf.voters[i] = id;
    }
    for (uint32_t i = 0; i < KV_RAFT_LEARNERS_MAX; i++) {
        uint64_t id = get64(p + OFF(raft_wire_snap_hdr, learners) + 8 * i);
        if ((i < s->conf.n_learners) != (id != 0)) {
            return KV_EPROTO;
        }
        s->conf.learners[i] = id;
    }
    uint32_t dlen = get32(p + OFF(raft_wire_snap_hdr, data_len));
    if (get32(p + OFF(raft_wire_snap_hdr, reserved)) != 0) {
        return KV_EPROTO;
    }
    if (dlen > KV_RAFT_SNAPSHOT_MAX) {
        return KV_ELIMIT;
    }
    if (dlen > avail - RAFT_WIRE_SNAP_HDR_BYTES) {
        return KV_EPROTO;
    }
    m->snap_len = dlen;
    m->snap_data = dlen > 0 ? p + RAFT_WIRE_SNAP_HDR_BYTES : NULL;
    return 0;
}

static int decode_header(const uint8_t *buf, size_t len, struct raft_msg *m)
{
    if (len < RAFT_WIRE_MSG_HDR_BYTES) {
        return KV_EPROTO;
    }
    if (get32(buf + OFF(raft_wire_msg_hdr, magic)) != MSG_MAGIC) {
        return KV_EPROTO;
    }
    if (buf[OFF(raft_wire_msg_hdr, version)] != RAFT_CODEC_VERSION) {
        return KV_EVERSION;
    }
    if (get32(buf + OFF(raft_wire_msg_hdr, total_len)) != len) {
        return KV_EPROTO;
    }
    if (get64(buf + OFF(raft_wire_msg_hdr, checksum)) != msg_checksum(buf, len)) {
        return KV_ECORRUPT;
    }
    memset(m, 0, sizeof(*m));
    m->type = buf[OFF(raft_wire_msg_hdr, type)];
    m->flags = buf[OFF(raft_wire_msg_hdr, flags)];
    uint8_t reject = buf[OFF(raft_wire_msg_hdr, reject)];
    if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_END ||
        (m->flags & ~RAFT_MSG_FLAG_TRANSFER) != 0 || reject > 1) {
        return KV_EPROTO;
    }
    m->reject = reject == 1;
    m->n_entries = get32(buf + OFF(raft_wire_msg_hdr, n_entries));
    m->from = get64(buf + OFF(raft_wire_msg_hdr, from));
    m->to = get64(buf + OFF(raft_wire_msg_hdr, to));
    m->term = get64(buf + OFF(raft_wire_msg_hdr, term));
    m->log_term = get64(buf + OFF(raft_wire_msg_hdr, log_term));
    m->index = get64(buf + OFF(raft_wire_msg_hdr, index));
    m->commit = get64(buf + OFF(raft_wire_msg_hdr, commit));
    m->reject_hint = get64(buf + OFF(raft_wire_msg_hdr, reject_hint));
    m->context = get64(buf + OFF(raft_wire_msg_hdr, context));
    if (m->from == 0 || m->to == 0) {
        return KV_EPROTO;
    }
    if (m->n_entries > KV_RAFT_MSG_ENTRIES_MAX) {
        return KV_ELIMIT;
    }
    if (m->n_entries > 0 && m->type != RAFT_MSG_APPEND) {
        return KV_EPROTO;
    }
    return 0;
}

int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m, struct raft_entry *ents,
                    uint32_t cap)
{
    int rc = decode_header(buf, len, m);
    if (rc != 0) {
        return rc;
    }
    size_t off = RAFT_WIRE_MSG_HDR_BYTES;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        rc = decode_snap(buf + off, len - off, m);
        if (rc != 0) {
            return rc;
        }
        off += RAFT_WIRE_SNAP_HDR_BYTES + m->snap_len;
    }
    if (m->n_entries > cap) {
        return KV_ELIMIT;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        size_t used;
        rc = raft_entry_decode(buf + off, len - off, &ents[i], &used);
        if (rc != 0) {
            return rc;
        }
        if (ents[i].index != m->index + 1 + i) {
            return KV_EPROTO;
        }
        off += used;
    }
    if (off != len) {
        return KV_EPROTO; /* trailing bytes */
    }
    m->entries = m->n_entries > 0 ? ents : NULL;
    return 0;
}
