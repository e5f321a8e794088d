/*
 * hll: HyperLogLog values in Redis's format (hll.h has the layout).
 *
 * The sparse list is changed in place as Redis changes it (the same opcodes split the
 * same way, then up to five opcodes from the one before the change are merged where two
 * VALs of one value fit one), so that kvd and Redis hold the same bytes after the same
 * commands. Dense registers: register i is the 6 bits starting at bit 6i, counted from
 * the least significant bit of byte 0:
 *
 *   byte   0        1        2
 *       |11000000|22221111|33333322| ...   (digit: the register a bit belongs to)
 */
#include "hll.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kv_assert.h"

#define HLL_P      14
#define HLL_Q      (64 - HLL_P) /* hash bits above the index: runs of up to Q + 1 */
#define HLL_BITS   6
#define HLL_RMAX   63
#define HLL_DENSE  0
#define HLL_SPARSE 1
#define ALPHA_INF  0.721347520444481703680 /* 1 / (2 ln 2) */

#define XZERO_BIT  0x40
#define VAL_BIT    0x80
#define ZERO_MAX   64
#define XZERO_MAX  16384
#define VAL_LENMAX 4

static inline bool op_zero(const uint8_t *p)
{
    return (*p & 0xc0) == 0;
}

static inline bool op_xzero(const uint8_t *p)
{
    return (*p & 0xc0) == XZERO_BIT;
}

static inline bool op_val(const uint8_t *p)
{
    return (*p & VAL_BIT) != 0;
}

static inline unsigned zero_len(const uint8_t *p)
{
    return (*p & 0x3fu) + 1;
}

static inline unsigned xzero_len(const uint8_t *p)
{
    return ((unsigned)(p[0] & 0x3fu) << 8 | p[1]) + 1;
}

static inline unsigned val_value(const uint8_t *p)
{
    return ((*p >> 2) & 0x1fu) + 1;
}

static inline unsigned val_len(const uint8_t *p)
{
    return (*p & 0x3u) + 1;
}

static inline void set_val(uint8_t *p, unsigned value, unsigned len)
{
    *p = (uint8_t)(((value - 1) << 2 | (len - 1)) | VAL_BIT);
}

static inline void set_zero(uint8_t *p, unsigned len)
{
    *p = (uint8_t)(len - 1);
}

static inline void set_xzero(uint8_t *p, unsigned len)
{
    unsigned l = len - 1;
    p[0] = (uint8_t)((l >> 8) | XZERO_BIT);
    p[1] = (uint8_t)(l & 0xff);
}

/* A zero run of len registers (1..16384) at p: ZERO up to 64, else XZERO; its bytes. */
static size_t put_zeros(uint8_t *p, unsigned len)
{
    if (len > ZERO_MAX) {
        set_xzero(p, len);
        return 2;
    }
    set_zero(p, len);
    return 1;
}

static inline unsigned dense_get(const uint8_t *r, uint32_t i)
{
    uint32_t byte = i * HLL_BITS / 8, fb = i * HLL_BITS & 7;
    unsigned v = r[byte] >> fb;
    if (fb > 8 - HLL_BITS) { /* (the last register never reaches into a next byte) */
        v |= (unsigned)r[byte + 1] << (8 - fb);
    }
    return v & HLL_RMAX;
}

static inline void dense_set(uint8_t *r, uint32_t i, unsigned v)
{
    uint32_t byte = i * HLL_BITS / 8, fb = i * HLL_BITS & 7;
    r[byte] = (uint8_t)((r[byte] & ~(HLL_RMAX << fb)) | (v << fb));
    if (fb > 8 - HLL_BITS) {
        unsigned fb8 = 8 - fb;
        r[byte + 1] = (uint8_t)((r[byte + 1] & ~(HLL_RMAX >> fb8)) | (v >> fb8));
    }
}

/* Redis's hash of an element: MurmurHash64A (endian-neutral) with its seed. */
static uint64_t hll_hash(const uint8_t *data, size_t len)
{
    const uint64_t m = 0xc6a4a7935bd1e995ull;
    const int r = 47;
    uint64_t h = 0xadc83b19ull ^ ((uint64_t)(int)len * m);
    const uint8_t *end = data + (len - (len & 7));
    for (; data != end; data += 8) {
        uint64_t k = 0;
        for (int i = 7; i >= 0; i--) {
            k = k << 8 | data[i];
        }
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    size_t rest = len & 7;
    if (rest > 0) {
        for (size_t i = rest; i-- > 0;) {
            h ^= (uint64_t)data[i] << (8 * i);
        }
        h *= m;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}

/* The register an element goes to (*index) and its run: the zero bits above the index
 * bits until the first one, plus one (1..Q+1). */
static uint8_t pattern(const void *ele, size_t n, uint32_t *index)
{
    uint64_t h = hll_hash(ele, n);
    *index = (uint32_t)(h & (HLL_REGISTERS - 1));
    h >>= HLL_P;
    h |= 1ull << HLL_Q; /* the run ends there at the latest */
    return (uint8_t)(__builtin_ctzll(h) + 1);
}

bool hll_valid(const uint8_t *v, size_t len)
{
    if (len < HLL_HDR_BYTES || memcmp(v, "HYLL", 4) != 0 || v[4] > HLL_SPARSE) {
        return false;
    }
    return v[4] != HLL_DENSE || len == HLL_DENSE_BYTES;
}

bool hll_is_dense(const uint8_t *v)
{
    return v[4] == HLL_DENSE;
}

size_t hll_cap(size_t len)
{
    return (len > HLL_SPARSE_BYTES_MAX ? len : HLL_SPARSE_BYTES_MAX) + 3;
}

size_t hll_init(uint8_t *out)
{
    memset(out, 0, HLL_EMPTY_BYTES);
    memcpy(out, "HYLL", 4);
    out[4] = HLL_SPARSE;
    set_xzero(out + HLL_HDR_BYTES, HLL_REGISTERS);
    return HLL_EMPTY_BYTES;
}

void hll_cache_invalidate(uint8_t *v)
{
    v[15] |= 0x80;
}

bool hll_cached(const uint8_t *v, uint64_t *card)
{
    if (v[15] & 0x80) {
        return false;
    }
    uint64_t c = 0;
    for (int i = 7; i >= 0; i--) {
        c = c << 8 | v[8 + i];
    }
    *card = c;
    return true;
}

void hll_cache_set(uint8_t *v, uint64_t card)
{
    for (int i = 0; i < 8; i++) {
        v[8 + i] = (uint8_t)(card >> (8 * i));
    }
}

/* Decodes the sparse list [p, end) into one byte per register; false if it does not
 * cover the registers exactly. */
static bool sparse_regs(const uint8_t *p, const uint8_t *end, uint8_t regs[HLL_REGISTERS])
{
    uint32_t i = 0;
    while (p < end) {
        if (op_zero(p)) {
            i += zero_len(p);
            p++;
        } else if (op_xzero(p)) {
            i += p + 1 < end ? xzero_len(p) : HLL_REGISTERS + 1;
            p += 2;
        } else {
            unsigned n = val_len(p), v = val_value(p);
            if (i + n > HLL_REGISTERS) {
                return false;
            }
            memset(regs + i, (int)v, n);
            i += n;
            p++;
        }
        if (i > HLL_REGISTERS) {
            return false;
        }
    }
    return i == HLL_REGISTERS;
}

int hll_to_dense(uint8_t *buf, size_t *len, size_t cap)
{
    KV_ASSERT(hll_valid(buf, *len) && cap >= HLL_DENSE_BYTES);
    if (buf[4] == HLL_DENSE) {
        return 0;
    }
    uint8_t regs[HLL_REGISTERS] = {0};
    if (!sparse_regs(buf + HLL_HDR_BYTES, buf + *len, regs)) {
        return -1;
    }
    buf[4] = HLL_DENSE;
    uint8_t *r = buf + HLL_HDR_BYTES;
    memset(r, 0, HLL_DENSE_BYTES - HLL_HDR_BYTES);
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        if (regs[i] != 0) {
            dense_set(r, i, regs[i]);
        }
    }
    *len = HLL_DENSE_BYTES;
    return 0;
}

/* Merges adjacent VAL opcodes of one value whose runs fit one opcode, over up to five
 * opcodes from p (Redis's step after a sparse change). */
static void sparse_merge_vals(uint8_t *p, uint8_t **endp, size_t *len)
{
    uint8_t *end = *endp;
    int scan = 5;
    while (p < end && scan--) {
        if (op_xzero(p)) {
            p += 2;
            continue;
        }
        if (op_zero(p)) {
            p++;
            continue;
        }
        if (p + 1 < end && op_val(p + 1) && val_value(p) == val_value(p + 1)) {
            unsigned n = val_len(p) + val_len(p + 1);
            if (n <= VAL_LENMAX) {
                set_val(p + 1, val_value(p), n);
                memmove(p, p + 1, (size_t)(end - p - 1));
                end--;
                (*len)--;
                continue; /* the merged one may merge with the next */
            }
        }
        p++;
    }
    *endp = end;
}

/* hll_set on a sparse value: 1, 0, -1, or 2 when it must turn dense first. */
static int sparse_set(uint8_t *buf, size_t *len, uint32_t index, uint8_t count, size_t sparse_max)
{
    if (count > HLL_SPARSE_VAL_MAX) {
        return 2;
    }
    uint8_t *sparse = buf + HLL_HDR_BYTES, *p = sparse, *end = buf + *len;
    uint8_t *prev = NULL;
    uint32_t first = 0, span = 0;
    while (p < end) {
        size_t oplen = 1;
        if (op_zero(p)) {
            span = zero_len(p);
        } else if (op_val(p)) {
            span = val_len(p);
        } else {
            if (p + 1 >= end) {
                return -1;
            }
            span = xzero_len(p);
            oplen = 2;
        }
        if (index <= first + span - 1) {
            break;
        }
        prev = p;
        p += oplen;
        first += span;
    }
    if (span == 0 || p >= end) {
        return -1;
    }
    bool is_zero = op_zero(p), is_xzero = op_xzero(p);
    unsigned runlen = is_zero ? zero_len(p) : is_xzero ? xzero_len(p) : val_len(p);
    uint8_t *next = p + (is_xzero ? 2 : 1);
    if (!is_zero && !is_xzero) {
        if (val_value(p) >= count) {
            return 0;
        }
        if (runlen == 1) {
            set_val(p, count, 1);
            goto updated;
        }
    }
    if (is_zero && runlen == 1) {
        set_val(p, count, 1);
        goto updated;
    }
    /* Split the opcode: [before][VAL count,1][after], at most 5 bytes. */
    uint8_t seq[5], *n = seq;
    uint32_t last = first + span - 1;
    if (is_zero || is_xzero) {
        if (index != first) {
            n += put_zeros(n, index - first);
        }
        set_val(n++, count, 1);
        if (index != last) {
            n += put_zeros(n, last - index);
        }
    } else {
        unsigned cur = val_value(p);
        if (index != first) {
            set_val(n++, cur, index - first);
        }
        set_val(n++, count, 1);
        if (index != last) {
            set_val(n++, cur, last - index);
        }
    }
    size_t seqlen = (size_t)(n - seq), oldlen = is_xzero ? 2 : 1;
    if (seqlen > oldlen && *len + (seqlen - oldlen) > sparse_max) {
        return 2;
    }
    if (seqlen != oldlen && next < end) {
        memmove(p + seqlen, next, (size_t)(end - next));
    }
    *len = *len + seqlen - oldlen;
    end = buf + *len;
    memcpy(p, seq, seqlen);
updated:
    sparse_merge_vals(prev != NULL ? prev : sparse, &end, len);
    hll_cache_invalidate(buf);
    return 1;
}

int hll_set(uint8_t *buf, size_t *len, size_t cap, uint32_t index, uint8_t count, size_t sparse_max)
{
    KV_ASSERT(index < HLL_REGISTERS && count >= 1 && count <= HLL_RMAX);
    /* (a dense value never grows: its own length will do) */
    KV_ASSERT(hll_valid(buf, *len) && cap >= *len &&
              (buf[4] == HLL_DENSE || cap >= HLL_SPARSE_BYTES_MAX + 3));
    if (buf[4] == HLL_SPARSE) {
        if (*len > HLL_SPARSE_BYTES_MAX) {
            return -1; /* longer than any list covering the registers once: corrupt */
        }
        int rc = sparse_set(buf, len, index, count, sparse_max);
        if (rc != 2) {
            return rc;
        }
        if (hll_to_dense(buf, len, cap) != 0) {
            return -1;
        }
    }
    uint8_t *r = buf + HLL_HDR_BYTES;
    if (dense_get(r, index) >= count) {
        return 0;
    }
    dense_set(r, index, count);
    hll_cache_invalidate(buf);
    return 1;
}

int hll_add(uint8_t *buf, size_t *len, size_t cap, const void *ele, size_t n, size_t sparse_max)
{
    uint32_t index;
    uint8_t count = pattern(ele, n, &index);
    return hll_set(buf, len, cap, index, count, sparse_max);
}

/* One byte per register of the valid value v; false if it is a corrupt sparse one. */
static bool regs_of(const uint8_t *v, size_t len, uint8_t regs[HLL_REGISTERS])
{
    if (v[4] == HLL_DENSE) {
        for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
            regs[i] = (uint8_t)dense_get(v + HLL_HDR_BYTES, i);
        }
        return true;
    }
    memset(regs, 0, HLL_REGISTERS);
    return sparse_regs(v + HLL_HDR_BYTES, v + len, regs);
}

int hll_merge(uint8_t max[HLL_REGISTERS], const uint8_t *v, size_t len)
{
    KV_ASSERT(hll_valid(v, len));
    uint8_t regs[HLL_REGISTERS];
    if (!regs_of(v, len, regs)) {
        return -1;
    }
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        if (regs[i] > max[i]) {
            max[i] = regs[i];
        }
    }
    return 0;
}

/* Ertl's sigma and tau ("New cardinality estimation algorithms for HyperLogLog
 * sketches", 2017), iterated to a fixed point as Redis does. */
static double hll_sigma(double x)
{
    if (x == 1.0) {
        return INFINITY;
    }
    double z_prev, y = 1, z = x;
    do {
        x *= x;
        z_prev = z;
        z += x * y;
        y += y;
    } while (z_prev != z);
    return z;
}

static double hll_tau(double x)
{
    if (x == 0.0 || x == 1.0) {
        return 0.0;
    }
    double z_prev, y = 1.0, z = 1 - x;
    do {
        x = sqrt(x);
        z_prev = z;
        y *= 0.5;
        z -= pow(1 - x, 2) * y;
    } while (z_prev != z);
    return z / 3;
}

uint64_t hll_count(const uint8_t *v, size_t len, bool *invalid)
{
    KV_ASSERT(hll_valid(v, len));
    uint8_t regs[HLL_REGISTERS];
    if (!regs_of(v, len, regs)) {
        *invalid = true; /* (what was decoded is counted, as Redis counts it) */
    }
    return hll_count_regs(regs);
}

/* The estimate from the registers' histogram (reghisto[v]: registers of value v). */
uint64_t hll_count_regs(const uint8_t regs[HLL_REGISTERS])
{
    int reghisto[64] = {0};
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        reghisto[regs[i] & HLL_RMAX]++;
    }
    double m = HLL_REGISTERS;
    double z = m * hll_tau((m - reghisto[HLL_Q + 1]) / m);
    for (int j = HLL_Q; j >= 1; --j) {
        z += reghisto[j];
        z *= 0.5;
    }
    z += m * hll_sigma(reghisto[0] / m);
    return (uint64_t)llroundl(ALPHA_INF * m * m / z);
}

uint8_t hll_register(const uint8_t *v, size_t len, uint32_t i)
{
    KV_ASSERT(hll_valid(v, len) && i < HLL_REGISTERS);
    if (v[4] == HLL_DENSE) {
        return (uint8_t)dense_get(v + HLL_HDR_BYTES, i);
    }
    const uint8_t *p = v + HLL_HDR_BYTES, *end = v + len;
    uint32_t first = 0;
    while (p < end && !(op_xzero(p) && p + 1 >= end)) {
        unsigned n = op_zero(p) ? zero_len(p) : op_xzero(p) ? xzero_len(p) : val_len(p);
        if (i < first + n) {
            return op_val(p) ? (uint8_t)val_value(p) : 0;
        }
        first += n;
        p += op_xzero(p) ? 2 : 1;
    }
    return 0;
}

size_t hll_decode(const uint8_t *v, size_t len, char *text, size_t cap)
{
    KV_ASSERT(hll_valid(v, len) && v[4] == HLL_SPARSE && cap >= (len - HLL_HDR_BYTES) * 8 + 1);
    const uint8_t *p = v + HLL_HDR_BYTES, *end = v + len;
    size_t n = 0;
    while (p < end) {
        int w;
        if (op_zero(p)) {
            w = snprintf(text + n, cap - n, "z:%u ", zero_len(p));
            p++;
        } else if (op_xzero(p)) {
            w = snprintf(text + n, cap - n, "Z:%u ", p + 1 < end ? xzero_len(p) : 0);
            p += 2;
        } else {
            w = snprintf(text + n, cap - n, "v:%u,%u ", val_value(p), val_len(p));
            p++;
        }
        KV_ASSERT(w > 0 && (size_t)w < cap - n);
        n += (size_t)w;
    }
    while (n > 0 && text[n - 1] == ' ') {
        n--;
    }
    text[n] = '\0';
    return n;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

const char *hll_selftest(uint8_t *scratch, uint64_t seed)
{
    uint64_t rs = seed | 1;
    size_t cap = HLL_SPARSE_BYTES_MAX + 3;
    uint8_t *a = scratch, *b = scratch + cap, *regs = scratch + 2 * cap,
            *want = regs + HLL_REGISTERS;
    /* 1. dense registers: every value at every position, neighbours untouched */
    for (int round = 0; round < 50; round++) {
        for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
            regs[i] = (uint8_t)(next_rand(&rs) & HLL_RMAX);
            dense_set(a, i, regs[i]);
        }
        for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
            if (dense_get(a, i) != regs[i]) {
                return "a dense register does not hold the value set";
            }
        }
    }
    /* 2. sparse and dense fed alike */
    size_t alen = hll_init(a), blen = hll_init(b);
    if (hll_to_dense(b, &blen, cap) != 0) {
        return "an empty value does not turn dense";
    }
    memset(want, 0, HLL_REGISTERS);
    for (int i = 0; i < 5000; i++) {
        char ele[24];
        int n = snprintf(ele, sizeof ele, "%llu", (unsigned long long)next_rand(&rs));
        uint32_t index;
        uint8_t count = pattern(ele, (size_t)n, &index);
        if (count > want[index]) {
            want[index] = count;
        }
        if (hll_add(a, &alen, cap, ele, (size_t)n, HLL_SPARSE_BYTES_MAX) < 0 ||
            hll_add(b, &blen, cap, ele, (size_t)n, HLL_SPARSE_BYTES_MAX) < 0) {
            return "an add found a corrupt value";
        }
        if (i % 1000 != 999 && i > 10) {
            continue;
        }
        for (uint32_t r = 0; r < HLL_REGISTERS; r++) {
            if (hll_register(a, alen, r) != want[r] || hll_register(b, blen, r) != want[r]) {
                return "sparse and dense values disagree on a register";
            }
        }
        bool bad = false;
        if (hll_count(a, alen, &bad) != hll_count(b, blen, &bad) || bad ||
            hll_count(b, blen, &bad) != hll_count_regs(want)) {
            return "sparse and dense values disagree on the estimate";
        }
    }
    return NULL;
}
