/*
 * meta: the metadata state machine (see meta.h for the contract).
 *
 * Why arrays: members and partitions are few (KV_META_*_MAX) and read far more often
 * than written, so they are kept sorted in fixed arrays: lookups are binary searches
 * with no allocation, and a change is a memmove of at most a few tens of KiB, done on
 * the control thread only.
 *
 * Invariants (checked by meta_restore, kept by meta_apply): node ids non-zero, unique
 * and sorted; partitions sorted by lo, non-empty, non-overlapping, ids non-zero and
 * unique; every replica is a member, replicas of one partition are distinct, the leader
 * is one of them; epochs >= 1.
 *
 * Command record (META_CMD_BYTES = 128, little-endian):
 *   0 version u8 | 1 type u8 | 2 n_replicas u8 | 3 reserved u8 | 4 reserved u32
 *   8 node | 16 to_node | 24 partition | 32 new_partition | 40 lo | 48 hi | 56 at
 *   64 epoch | 72 leader | 80 replicas[5] | 120 reserved u64        (all u64)
 * Snapshot: header (32: magic "KVMS" u32, version u8, 3 reserved, n_nodes u32,
 *   n_parts u32, version u64, checksum u64 = XXH3-64 of header bytes 0..24 and the records), then
 * nodes (16: id u64, state u32, reserved u32), then partitions (88: id, lo, hi, epoch, leader u64,
 * n_replicas u32, reserved u32, replicas[5] u64).
 */
#include "meta.h"

#include <string.h>
#include <xxhash.h>

#include "kv_assert.h"
#include "kv_error.h"
#include "raft.h"

#define META_VERSION    1
#define META_SNAP_MAGIC 0x534d564bu /* "KVMS" */

_Static_assert(META_CMD_BYTES == 8 + 9 * 8 + KV_META_REPLICAS_MAX * 8 + 8, "command layout");
_Static_assert(META_SNAP_PART_BYTES == 5 * 8 + 8 + KV_META_REPLICAS_MAX * 8, "partition rec");
_Static_assert(META_SNAPSHOT_MAX <= KV_RAFT_SNAPSHOT_MAX, "a metadata snapshot fits Raft's");
_Static_assert(META_CMD_BYTES <= KV_RAFT_ENTRY_DATA_MAX, "a command fits a Raft entry");

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

void meta_init(struct meta_state *s)
{
    s->version = 0;
    s->n_nodes = 0;
    s->n_parts = 0;
}

/* ---- commands --------------------------------------------------------------------- */

void meta_cmd_encode(const struct meta_cmd *c, uint8_t buf[META_CMD_BYTES])
{
    KV_ASSERT(c->n_replicas <= KV_META_REPLICAS_MAX && c->type < 256);
    memset(buf, 0, META_CMD_BYTES);
    buf[0] = META_VERSION;
    buf[1] = (uint8_t)c->type;
    buf[2] = (uint8_t)c->n_replicas;
    const uint64_t f[9] = {c->node, c->to_node, c->partition, c->new_partition, c->lo,
                           c->hi,   c->at,      c->epoch,     c->leader};
    for (int i = 0; i < 9; i++) {
        put64(buf + 8 + 8 * i, f[i]);
    }
    for (uint32_t i = 0; i < c->n_replicas; i++) {
        put64(buf + 80 + 8 * i, c->replicas[i]);
    }
}

int meta_cmd_decode(const uint8_t *buf, size_t len, struct meta_cmd *c)
{
    if (buf == NULL || len != META_CMD_BYTES) {
        return KV_EPROTO;
    }
    if (buf[0] != META_VERSION) {
        return KV_EVERSION;
    }
    memset(c, 0, sizeof(*c));
    c->type = buf[1];
    c->n_replicas = buf[2];
    if (c->type < META_ADD_NODE || c->type >= META_CMD_END ||
        c->n_replicas > KV_META_REPLICAS_MAX || buf[3] != 0 || get32(buf + 4) != 0 ||
        get64(buf + 120) != 0) {
        return KV_EPROTO;
    }
    uint64_t *f[9] = {&c->node, &c->to_node, &c->partition, &c->new_partition, &c->lo,
                      &c->hi,   &c->at,      &c->epoch,     &c->leader};
    for (int i = 0; i < 9; i++) {
        *f[i] = get64(buf + 8 + 8 * i);
    }
    for (uint32_t i = 0; i < KV_META_REPLICAS_MAX; i++) {
        uint64_t id = get64(buf + 80 + 8 * i);
        if (i >= c->n_replicas && id != 0) {
            return KV_EPROTO;
        }
        c->replicas[i] = id;
    }
    return 0;
}

/* ---- lookups ---------------------------------------------------------------------- */

static uint32_t node_pos(const struct meta_state *s, uint64_t id)
{
    uint32_t lo = 0, hi = s->n_nodes;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->nodes[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

const struct meta_node *meta_node_find(const struct meta_state *s, uint64_t id)
{
    uint32_t i = node_pos(s, id);
    return (i < s->n_nodes && s->nodes[i].id == id) ? &s->nodes[i] : NULL;
}

/* Number of partitions with lo <= h. */
static uint32_t part_upper(const struct meta_state *s, uint64_t h)
{
    uint32_t lo = 0, hi = s->n_parts;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->parts[mid].lo <= h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static bool part_contains(const struct meta_partition *p, uint64_t h)
{
    return h >= p->lo && (p->hi == 0 || h < p->hi);
}

const struct meta_partition *meta_lookup(const struct meta_state *s, uint64_t h)
{
    uint32_t n = part_upper(s, h);
    if (n == 0) {
        return NULL;
    }
    const struct meta_partition *p = &s->parts[n - 1];
    return part_contains(p, h) ? p : NULL;
}

static int32_t part_index(const struct meta_state *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->n_parts; i++) {
        if (s->parts[i].id == id) {
            return (int32_t)i;
        }
    }
    return -1;
}

const struct meta_partition *meta_partition_find(const struct meta_state *s, uint64_t id)
{
    int32_t i = part_index(s, id);
    return i < 0 ? NULL : &s->parts[i];
}

static bool holds_replica(const struct meta_partition *p, uint64_t node)
{
    for (uint32_t i = 0; i < p->n_replicas; i++) {
        if (p->replicas[i] == node) {
            return true;
        }
    }
    return false;
}

/* ---- validation ------------------------------------------------------------------- */

static enum meta_result check_replicas(const struct meta_state *s, const uint64_t *r, uint32_t n,
                                       uint64_t leader)
{
    if (n == 0 || n > KV_META_REPLICAS_MAX) {
        return META_EREPLICAS;
    }
    bool leader_in = false;
    for (uint32_t i = 0; i < n; i++) {
        if (meta_node_find(s, r[i]) == NULL) {
            return META_EREPLICAS;
        }
        for (uint32_t j = i + 1; j < n; j++) {
            if (r[i] == r[j]) {
                return META_EREPLICAS;
            }
        }
        leader_in |= r[i] == leader;
    }
    return leader_in ? META_OK : META_ELEADER;
}

/* Whether [lo, hi) can be inserted at position `pos` (partitions [0,pos) have lo' < lo). */
static bool range_fits(const struct meta_state *s, uint32_t pos, uint64_t lo, uint64_t hi)
{
    if (hi != 0 && hi <= lo) {
        return false;
    }
    if (pos > 0) {
        const struct meta_partition *prev = &s->parts[pos - 1];
        if (prev->hi == 0 || prev->hi > lo || prev->lo == lo) {
            return false;
        }
    }
    if (pos < s->n_parts) {
        const struct meta_partition *next = &s->parts[pos];
        if (hi == 0 || next->lo < hi || next->lo == lo) {
            return false;
        }
    }
    return true;
}

/* ---- apply ------------------------------------------------------------------------ */

static enum meta_result apply_node(struct meta_state *s, const struct meta_cmd *c)
{
    uint32_t i = node_pos(s, c->node);
    bool found = i < s->n_nodes && s->nodes[i].id == c->node;
    switch (c->type) {
    case META_ADD_NODE:
        if (c->node == 0) {
            return META_EMALFORMED;
        }
        if (found) {
            return META_ENODE_EXISTS;
        }
        if (s->n_nodes == KV_META_NODES_MAX) {
            return META_ENODES_FULL;
        }
        memmove(&s->nodes[i + 1], &s->nodes[i], (s->n_nodes - i) * sizeof(s->nodes[0]));
        s->nodes[i].id = c->node;
        s->nodes[i].state = META_NODE_UP_STATE;
        s->n_nodes++;
        return META_OK;
    case META_REMOVE_NODE:
        if (!found) {
            return META_ENODE_UNKNOWN;
        }
        for (uint32_t p = 0; p < s->n_parts; p++) {
            if (holds_replica(&s->parts[p], c->node)) {
                return META_ENODE_IN_USE;
            }
        }
        memmove(&s->nodes[i], &s->nodes[i + 1], (s->n_nodes - i - 1) * sizeof(s->nodes[0]));
        s->n_nodes--;
        return META_OK;
    default: {
        if (!found) {
            return META_ENODE_UNKNOWN;
        }
        uint32_t want = c->type == META_NODE_DOWN ? META_NODE_DOWN_STATE : META_NODE_UP_STATE;
        if (s->nodes[i].state == want) {
            return META_ENODE_STATE;
        }
        s->nodes[i].state = want;
        return META_OK;
    }
    }
}

static enum meta_result apply_create(struct meta_state *s, const struct meta_cmd *c)
{
    if (c->partition == 0) {
        return META_EMALFORMED;
    }
    if (part_index(s, c->partition) >= 0) {
        return META_EPART_EXISTS;
    }
    if (s->n_parts == KV_META_PARTITIONS_MAX) {
        return META_EPARTS_FULL;
    }
    uint32_t pos = part_upper(s, c->lo);
    if (pos > 0 && s->parts[pos - 1].lo == c->lo) {
        return META_ERANGE;
    }
    if (!range_fits(s, pos, c->lo, c->hi)) {
        return META_ERANGE;
    }
    enum meta_result r = check_replicas(s, c->replicas, c->n_replicas, c->leader);
    if (r != META_OK) {
        return r;
    }
    memmove(&s->parts[pos + 1], &s->parts[pos], (s->n_parts - pos) * sizeof(s->parts[0]));
    struct meta_partition *p = &s->parts[pos];
    memset(p, 0, sizeof(*p));
    p->id = c->partition;
    p->lo = c->lo;
    p->hi = c->hi;
    p->epoch = 1;
    p->leader = c->leader;
    p->n_replicas = c->n_replicas;
    memcpy(p->replicas, c->replicas, sizeof(p->replicas));
    s->n_parts++;
    return META_OK;
}

static enum meta_result apply_split(struct meta_state *s, const struct meta_cmd *c)
{
    int32_t i = part_index(s, c->partition);
    if (i < 0) {
        return META_EPART_UNKNOWN;
    }
    if (c->new_partition == 0) {
        return META_EMALFORMED;
    }
    if (part_index(s, c->new_partition) >= 0) {
        return META_EPART_EXISTS;
    }
    if (s->n_parts == KV_META_PARTITIONS_MAX) {
        return META_EPARTS_FULL;
    }
    struct meta_partition *p = &s->parts[i];
    if (!(c->at > p->lo && (p->hi == 0 || c->at < p->hi))) {
        return META_ESPLIT_POINT;
    }
    uint32_t pos = (uint32_t)i + 1;
    memmove(&s->parts[pos + 1], &s->parts[pos], (s->n_parts - pos) * sizeof(s->parts[0]));
    struct meta_partition *upper = &s->parts[pos];
    *upper = *p;
    upper->id = c->new_partition;
    upper->lo = c->at;
    p->hi = c->at;
    p->epoch++;
    upper->epoch = p->epoch;
    s->n_parts++;
    return META_OK;
}

static enum meta_result apply_partition(struct meta_state *s, const struct meta_cmd *c)
{
    int32_t i = part_index(s, c->partition);
    if (i < 0) {
        return META_EPART_UNKNOWN;
    }
    struct meta_partition *p = &s->parts[i];
    if (c->type == META_MOVE_PARTITION) {
        if (!holds_replica(p, c->node) || c->node == p->leader) {
            return META_EREPLICAS;
        }
        if (meta_node_find(s, c->to_node) == NULL || holds_replica(p, c->to_node)) {
            return META_EREPLICAS;
        }
        for (uint32_t k = 0; k < p->n_replicas; k++) {
            if (p->replicas[k] == c->node) {
                p->replicas[k] = c->to_node;
            }
        }
    } else if (c->type == META_SET_REPLICAS) {
        enum meta_result r = check_replicas(s, c->replicas, c->n_replicas, c->leader);
        if (r != META_OK) {
            return r;
        }
        p->n_replicas = c->n_replicas;
        memcpy(p->replicas, c->replicas, sizeof(p->replicas));
        p->leader = c->leader;
    } else {
        KV_ASSERT(c->type == META_PROMOTE);
        if (c->epoch != p->epoch) {
            return META_EEPOCH;
        }
        const struct meta_node *n = meta_node_find(s, c->leader);
        if (!holds_replica(p, c->leader) || n == NULL || n->state != META_NODE_UP_STATE) {
            return META_ELEADER;
        }
        p->leader = c->leader;
    }
    p->epoch++;
    return META_OK;
}

enum meta_result meta_apply_cmd(struct meta_state *s, const struct meta_cmd *c)
{
    enum meta_result r;
    switch (c->type) {
    case META_ADD_NODE:
    case META_REMOVE_NODE:
    case META_NODE_DOWN:
    case META_NODE_UP:
        r = apply_node(s, c);
        break;
    case META_CREATE_PARTITION:
        r = apply_create(s, c);
        break;
    case META_SPLIT_PARTITION:
        r = apply_split(s, c);
        break;
    case META_MOVE_PARTITION:
    case META_SET_REPLICAS:
    case META_PROMOTE:
        r = apply_partition(s, c);
        break;
    default:
        r = META_EMALFORMED;
        break;
    }
    if (r == META_OK) {
        s->version++;
    }
    return r;
}

enum meta_result meta_apply(struct meta_state *s, const uint8_t *data, size_t len)
{
    struct meta_cmd c;
    if (meta_cmd_decode(data, len, &c) != 0) {
        return META_EMALFORMED;
    }
    return meta_apply_cmd(s, &c);
}

const char *meta_result_str(enum meta_result r)
{
    static const char *const s[] = {
        [META_OK] = "ok",
        [META_EMALFORMED] = "malformed command",
        [META_ENODE_EXISTS] = "node already a member",
        [META_ENODE_UNKNOWN] = "unknown node",
        [META_ENODES_FULL] = "too many nodes",
        [META_ENODE_IN_USE] = "node still holds replicas",
        [META_ENODE_STATE] = "node already in that state",
        [META_EPART_EXISTS] = "partition id already used",
        [META_EPART_UNKNOWN] = "unknown partition",
        [META_EPARTS_FULL] = "too many partitions",
        [META_ERANGE] = "empty or overlapping range",
        [META_ESPLIT_POINT] = "split point not inside the range",
        [META_EREPLICAS] = "invalid replica set",
        [META_ELEADER] = "leader not an up replica",
        [META_EEPOCH] = "stale epoch",
    };
    return (unsigned)r < META_RESULT_END ? s[r] : "?";
}

/* ---- snapshot --------------------------------------------------------------------- */

static void enc_node(const struct meta_node *n, uint8_t *p)
{
    memset(p, 0, META_SNAP_NODE_BYTES);
    put64(p, n->id);
    put32(p + 8, n->state);
}

static void enc_part(const struct meta_partition *q, uint8_t *p)
{
    memset(p, 0, META_SNAP_PART_BYTES);
    put64(p, q->id);
    put64(p + 8, q->lo);
    put64(p + 16, q->hi);
    put64(p + 24, q->epoch);
    put64(p + 32, q->leader);
    put32(p + 40, q->n_replicas);
    for (uint32_t i = 0; i < q->n_replicas; i++) {
        put64(p + 48 + 8 * i, q->replicas[i]);
    }
}

/* The header's first 24 bytes seed the hash of the records. */
static uint64_t snap_checksum(const uint8_t *buf, size_t len)
{
    uint64_t seed = XXH3_64bits(buf, 24);
    return XXH3_64bits_withSeed(buf + META_SNAP_HDR_BYTES, len - META_SNAP_HDR_BYTES, seed);
}

size_t meta_snapshot(const struct meta_state *s, uint8_t *buf, size_t cap)
{
    size_t need = META_SNAP_HDR_BYTES + (size_t)s->n_nodes * META_SNAP_NODE_BYTES +
                  (size_t)s->n_parts * META_SNAP_PART_BYTES;
    KV_ASSERT(cap >= need);
    memset(buf, 0, META_SNAP_HDR_BYTES);
    put32(buf, META_SNAP_MAGIC);
    buf[4] = META_VERSION;
    put32(buf + 8, s->n_nodes);
    put32(buf + 12, s->n_parts);
    put64(buf + 16, s->version);
    uint8_t *p = buf + META_SNAP_HDR_BYTES;
    for (uint32_t i = 0; i < s->n_nodes; i++, p += META_SNAP_NODE_BYTES) {
        enc_node(&s->nodes[i], p);
    }
    for (uint32_t i = 0; i < s->n_parts; i++, p += META_SNAP_PART_BYTES) {
        enc_part(&s->parts[i], p);
    }
    put64(buf + 24, snap_checksum(buf, need));
    return need;
}

static bool dec_node(const uint8_t *p, struct meta_node *n)
{
    n->id = get64(p);
    n->state = get32(p + 8);
    return n->id != 0 && get32(p + 12) == 0 &&
           (n->state == META_NODE_UP_STATE || n->state == META_NODE_DOWN_STATE);
}

static bool dec_part(const uint8_t *p, struct meta_partition *q)
{
    memset(q, 0, sizeof(*q));
    q->id = get64(p);
    q->lo = get64(p + 8);
    q->hi = get64(p + 16);
    q->epoch = get64(p + 24);
    q->leader = get64(p + 32);
    q->n_replicas = get32(p + 40);
    if (q->id == 0 || q->epoch == 0 || get32(p + 44) != 0 || q->n_replicas > KV_META_REPLICAS_MAX ||
        (q->hi != 0 && q->hi <= q->lo)) {
        return false;
    }
    for (uint32_t i = 0; i < KV_META_REPLICAS_MAX; i++) {
        uint64_t id = get64(p + 48 + 8 * i);
        if (i >= q->n_replicas && id != 0) {
            return false;
        }
        q->replicas[i] = id;
    }
    return true;
}

/* Validates the records in buf against every invariant; fills s only if out is true. */
static int restore_pass(struct meta_state *s, const uint8_t *buf, uint32_t nn, uint32_t np,
                        bool out)
{
    const uint8_t *p = buf + META_SNAP_HDR_BYTES;
    const uint8_t *nodes = p;
    uint64_t prev_id = 0;
    for (uint32_t i = 0; i < nn; i++, p += META_SNAP_NODE_BYTES) {
        struct meta_node n;
        if (!dec_node(p, &n) || n.id <= prev_id) {
            return KV_EPROTO;
        }
        prev_id = n.id;
        if (out) {
            s->nodes[i] = n;
        }
    }
    struct meta_partition prev;
    for (uint32_t i = 0; i < np; i++, p += META_SNAP_PART_BYTES) {
        struct meta_partition q;
        if (!dec_part(p, &q)) {
            return KV_EPROTO;
        }
        if (i > 0 && (prev.hi == 0 || prev.hi > q.lo)) {
            return KV_EPROTO; /* unsorted or overlapping */
        }
        bool leader_in = false;
        for (uint32_t k = 0; k < q.n_replicas; k++) {
            bool member = false;
            for (uint32_t j = 0; j < nn && !member; j++) {
                member = get64(nodes + (size_t)j * META_SNAP_NODE_BYTES) == q.replicas[k];
            }
            for (uint32_t j = k + 1; j < q.n_replicas; j++) {
                member &= q.replicas[j] != q.replicas[k];
            }
            if (!member) {
                return KV_EPROTO;
            }
            leader_in |= q.replicas[k] == q.leader;
        }
        if (!leader_in) {
            return KV_EPROTO;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (get64(buf + META_SNAP_HDR_BYTES + (size_t)nn * META_SNAP_NODE_BYTES +
                      (size_t)j * META_SNAP_PART_BYTES) == q.id) {
                return KV_EPROTO; /* duplicate partition id */
            }
        }
        prev = q;
        if (out) {
            s->parts[i] = q;
        }
    }
    return 0;
}

int meta_restore(struct meta_state *s, const uint8_t *buf, size_t len)
{
    if (len == 0) {
        meta_init(s);
        return 0;
    }
    if (buf == NULL || len < META_SNAP_HDR_BYTES || get32(buf) != META_SNAP_MAGIC) {
        return KV_EPROTO;
    }
    if (buf[4] != META_VERSION) {
        return KV_EVERSION;
    }
    uint32_t nn = get32(buf + 8), np = get32(buf + 12);
    if (buf[5] != 0 || buf[6] != 0 || buf[7] != 0) {
        return KV_EPROTO;
    }
    if (nn > KV_META_NODES_MAX || np > KV_META_PARTITIONS_MAX) {
        return KV_ELIMIT;
    }
    size_t need =
        META_SNAP_HDR_BYTES + (size_t)nn * META_SNAP_NODE_BYTES + (size_t)np * META_SNAP_PART_BYTES;
    if (len != need) {
        return KV_EPROTO;
    }
    if (get64(buf + 24) != snap_checksum(buf, need)) {
        return KV_ECORRUPT;
    }
    int rc = restore_pass(s, buf, nn, np, false);
    if (rc != 0) {
        return rc;
    }
    restore_pass(s, buf, nn, np, true);
    s->n_nodes = nn;
    s->n_parts = np;
    s->version = get64(buf + 16);
    return 0;
}

uint64_t meta_digest(const struct meta_state *s)
{
    uint8_t rec[META_SNAP_PART_BYTES];
    uint64_t h = XXH3_64bits_withSeed(&s->version, sizeof(s->version), s->n_nodes);
    h ^= (uint64_t)s->n_parts << 32;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        enc_node(&s->nodes[i], rec);
        h = XXH3_64bits_withSeed(rec, META_SNAP_NODE_BYTES, h);
    }
    for (uint32_t i = 0; i < s->n_parts; i++) {
        enc_part(&s->parts[i], rec);
        h = XXH3_64bits_withSeed(rec, META_SNAP_PART_BYTES, h);
    }
    return h;
}
