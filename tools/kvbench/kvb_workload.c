/*
 * kvb_workload: what kvbench asks for: keys, values and the RESP requests that carry
 * them.
 *
 * Keys are "key:" and 12 zero-padded digits, redis-benchmark's form, so every key has
 * the same length and a request is a template with the digits written in. The zipfian
 * generator is the one of Gray et al. ("Quickly generating billion-record synthetic
 * databases", 1994) as YCSB uses it: zeta(n, theta) is summed once at start-up, then
 * each draw costs one pow(). Rank 0 is the hottest key. A key's value is a function of
 * the key (its length and its bytes), so concurrent SETs of one key all write the same
 * value and --verify can check any GET against it.
 *
 * Worker threads call everything here with their own rng; the config is read-only.
 */
#include "kvb.h"

#include <math.h>
#include <string.h>

#include "kv_assert.h"

#define KVB_KEY_PREFIX     "key:"
#define KVB_KEY_PREFIX_LEN 4
#define KVB_KEY_LEN        (KVB_KEY_PREFIX_LEN + KVB_KEY_DIGITS)

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void kvb_rng_seed(struct kvb_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&seed);
    }
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
uint64_t kvb_rng_next(struct kvb_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double kvb_rng_unit(struct kvb_rng *r)
{
    return (double)(kvb_rng_next(r) >> 11) * 0x1.0p-53;
}

void kvb_zipf_setup(struct kvb_config *cfg)
{
    KV_ASSERT(cfg->keyspace > 0);
    KV_ASSERT(cfg->theta > 0.0 && cfg->theta < 1.0);
    double theta = cfg->theta;
    double zetan = 0.0;
    for (uint64_t i = 1; i <= cfg->keyspace; i++) {
        zetan += 1.0 / pow((double)i, theta);
    }
    double zeta2 = 1.0 + 1.0 / pow(2.0, theta);
    cfg->zipf_zetan = zetan;
    cfg->zipf_alpha = 1.0 / (1.0 - theta);
    cfg->zipf_eta = (1.0 - pow(2.0 / (double)cfg->keyspace, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    cfg->zipf_half_pow_theta = 1.0 + pow(0.5, theta);
}

static uint64_t zipf_next(const struct kvb_config *cfg, struct kvb_rng *r)
{
    double u = kvb_rng_unit(r);
    double uz = u * cfg->zipf_zetan;
    if (uz < 1.0) {
        return 0;
    }
    if (uz < cfg->zipf_half_pow_theta) {
        return cfg->keyspace > 1 ? 1 : 0;
    }
    double k =
        (double)cfg->keyspace * pow(cfg->zipf_eta * u - cfg->zipf_eta + 1.0, cfg->zipf_alpha);
    uint64_t key = (uint64_t)k;
    return key < cfg->keyspace ? key : cfg->keyspace - 1;
}

uint64_t kvb_key_next(const struct kvb_config *cfg, struct kvb_rng *r, uint64_t *seq)
{
    switch (cfg->dist) {
    case KVB_DIST_ZIPF:
        return zipf_next(cfg, r);
    case KVB_DIST_SEQ: {
        uint64_t k = *seq;
        *seq = k + 1 == cfg->keyspace ? 0 : k + 1;
        return k;
    }
    case KVB_DIST_UNIFORM:
    default:
        /* multiply-shift: uniform enough for benchmarking, no division */
        return (uint64_t)(((unsigned __int128)kvb_rng_next(r) * cfg->keyspace) >> 64);
    }
}

uint32_t kvb_value_len(const struct kvb_config *cfg, uint64_t key)
{
    if (cfg->value_min == cfg->value_max) {
        return cfg->value_min;
    }
    uint64_t x = key;
    uint64_t span = (uint64_t)cfg->value_max - cfg->value_min + 1;
    return cfg->value_min + (uint32_t)(splitmix64(&x) % span);
}

void kvb_value_fill(char *v, uint32_t len, uint64_t key)
{
    /* 8 printable bytes derived from the key, repeated: cheap, and differs per key */
    uint64_t x = key;
    uint64_t h = splitmix64(&x);
    char pat[8];
    for (int i = 0; i < 8; i++) {
        pat[i] = (char)('a' + ((h >> (i * 8)) & 0xff) % 26);
    }
    for (uint32_t i = 0; i < len; i++) {
        v[i] = pat[i & 7];
    }
}

size_t kvb_request_size_max(const struct kvb_config *cfg)
{
    /* *3 $3 SET $16 key $N value, with CRLFs and a 7-digit length */
    return 4 + 9 + 5 + KVB_KEY_LEN + 2 + 10 + cfg->value_max + 2;
}

static void put_key(char *out, uint64_t key)
{
    KV_DASSERT(key < KVB_KEYSPACE_MAX);
    memcpy(out, KVB_KEY_PREFIX, KVB_KEY_PREFIX_LEN);
    char *d = out + KVB_KEY_LEN;
    for (int i = 0; i < KVB_KEY_DIGITS; i++) {
        *--d = (char)('0' + key % 10);
        key /= 10;
    }
}

static size_t put_u32(char *out, uint32_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

size_t kvb_encode_get(char *out, uint64_t key)
{
    static const char head[] = "*2\r\n$3\r\nGET\r\n$16\r\n";
    _Static_assert(KVB_KEY_LEN == 16, "the templates say $16");
    memcpy(out, head, sizeof(head) - 1);
    size_t n = sizeof(head) - 1;
    put_key(out + n, key);
    n += KVB_KEY_LEN;
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

size_t kvb_encode_set(char *out, const struct kvb_config *cfg, uint64_t key, const char *filler)
{
    static const char head[] = "*3\r\n$3\r\nSET\r\n$16\r\n";
    memcpy(out, head, sizeof(head) - 1);
    size_t n = sizeof(head) - 1;
    put_key(out + n, key);
    n += KVB_KEY_LEN;
    uint32_t vlen = kvb_value_len(cfg, key);
    memcpy(out + n, "\r\n$", 3);
    n += 3;
    n += put_u32(out + n, vlen);
    memcpy(out + n, "\r\n", 2);
    n += 2;
    if (cfg->verify) {
        kvb_value_fill(out + n, vlen, key);
    } else {
        memcpy(out + n, filler, vlen);
    }
    n += vlen;
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}
