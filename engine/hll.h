/*
 * hll: HyperLogLog cardinality estimates in Redis's string format, byte for byte, so
 * that PFADD, PFCOUNT and PFMERGE give Redis's replies and a value moves between kvd
 * and Redis (GET, SET, DUMP/RESTORE) unchanged.
 *
 * A value is a 16-byte header ("HYLL", the encoding, three zero bytes, the cached
 * cardinality: 8 bytes little endian, its top bit set when stale) and then either
 * 16384 registers of 6 bits (dense: 12,304 bytes in all) or a run-length list of them
 * (sparse: ZERO 00xxxxxx, 1-64 zero registers; XZERO 01xxxxxx yyyyyyyy, 1-16384; VAL
 * 1vvvvvxx, 1-4 registers of value 1-32). A register holds the longest run of zero
 * bits (plus one) seen above the 14 index bits of an element's 64-bit MurmurHash2.
 * The estimate is Ertl's improved estimator over the registers' histogram, as Redis 5
 * and later compute it.
 *
 * Pure functions on caller-owned buffers: no allocation, no thread state. Functions that
 * change a value take its buffer, its length (updated) and its capacity, which must be
 * at least hll_cap(len): a sparse value grows by up to 3 bytes per change and may turn
 * dense.
 */
#ifndef HLL_H
#define HLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HLL_REGISTERS      16384
#define HLL_HDR_BYTES      16
#define HLL_DENSE_BYTES    (HLL_HDR_BYTES + HLL_REGISTERS * 6 / 8)
#define HLL_EMPTY_BYTES    (HLL_HDR_BYTES + 2) /* a new value: sparse, one XZERO */
#define HLL_SPARSE_VAL_MAX 32                  /* the largest register a sparse value holds */
/* The longest a sparse value covering every register once can be (an opcode of at most
 * 2 bytes per register): what a value grows to at most, whatever hll-sparse-max-bytes. */
#define HLL_SPARSE_BYTES_MAX (HLL_HDR_BYTES + 2 * HLL_REGISTERS)

/* Whether v is a HyperLogLog as Redis accepts one: at least a header, "HYLL", a known
 * encoding, and a dense one exactly HLL_DENSE_BYTES long. */
bool hll_valid(const uint8_t *v, size_t len);

/* Whether the valid value v is dense. */
bool hll_is_dense(const uint8_t *v);

/* The capacity a value of len bytes needs for hll_add, hll_set and hll_to_dense, for
 * any number of calls (a valid value never outgrows it; a sparse one longer than any
 * valid list is refused as corrupt before it could). */
size_t hll_cap(size_t len);

/* Writes an empty HyperLogLog (sparse) at out (HLL_EMPTY_BYTES); returns its length. */
size_t hll_init(uint8_t *out);

/* Adds element ele (n bytes) to the valid value at buf: 1 if a register changed (the
 * cached cardinality is then marked stale), 0 if not, -1 if the value is corrupt (a
 * sparse list that does not cover the registers exactly). A sparse value turns dense
 * when a register needs more than 32 or when it would grow past sparse_max bytes. */
int hll_add(uint8_t *buf, size_t *len, size_t cap, const void *ele, size_t n, size_t sparse_max);

/* Raises register index to count (1..63) if it is lower: as hll_add. */
int hll_set(uint8_t *buf, size_t *len, size_t cap, uint32_t index, uint8_t count,
            size_t sparse_max);

/* Makes the valid value dense (its cached cardinality kept); 0, or -1 if corrupt. */
int hll_to_dense(uint8_t *buf, size_t *len, size_t cap);

/* max[i] = MAX(max[i], register i of the valid value v); 0, or -1 if corrupt. */
int hll_merge(uint8_t max[HLL_REGISTERS], const uint8_t *v, size_t len);

/* The estimate of the valid value v (its cache not consulted); *invalid set to true if
 * a sparse value is corrupt. */
uint64_t hll_count(const uint8_t *v, size_t len, bool *invalid);

/* The estimate of registers given one per byte (PFCOUNT of several keys). */
uint64_t hll_count_regs(const uint8_t regs[HLL_REGISTERS]);

/* The cached cardinality of v in *card, if it is not stale. */
bool hll_cached(const uint8_t *v, uint64_t *card);

/* Stores card as v's cached cardinality (valid). */
void hll_cache_set(uint8_t *v, uint64_t card);

/* Marks v's cached cardinality stale. */
void hll_cache_invalidate(uint8_t *v);

/* Register i of the valid value v (0 for a corrupt sparse one past its end). */
uint8_t hll_register(const uint8_t *v, size_t len, uint32_t i);

/* PFDEBUG DECODE's text of a valid sparse value ("z:N" ZERO, "Z:N" XZERO, "v:V,N" VAL,
 * separated by spaces) into text (cap >= 8 x the list's bytes + 1); its length. */
size_t hll_decode(const uint8_t *v, size_t len, char *text, size_t cap);

/* PFSELFTEST: dense registers against a plain array, then random elements added to a
 * sparse and a dense value alike, compared register by register and by estimate. NULL,
 * or what failed. scratch: HLL_SELFTEST_SCRATCH bytes. */
#define HLL_SELFTEST_SCRATCH (2 * (HLL_SPARSE_BYTES_MAX + 3) + 2 * HLL_REGISTERS)
const char *hll_selftest(uint8_t *scratch, uint64_t seed);

#endif
