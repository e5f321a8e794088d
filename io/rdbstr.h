/*
 * rdbstr: the DUMP / RESTORE payload of a string value, as Redis 7.0 writes and reads it:
 *
 *   [type 0][the string in RDB encoding][RDB version: u16 LE][CRC-64 (Jones): u64 LE]
 *
 * The string is a length (6, 14, 32 or 64 bits) and the bytes, an integer of 8, 16 or
 * 32 bits (what Redis writes for short canonical integers), or LZF-compressed (what
 * Redis writes for compressible strings over 20 bytes; read here, never written).
 * Payloads of RDB version up to RDBSTR_VERSION (Redis 7.0's) are accepted. Pure: no
 * allocation but the decompression buffer the caller hands in.
 */
#ifndef KVD_RDBSTR_H
#define KVD_RDBSTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RDBSTR_VERSION     10 /* Redis 7.0's RDB version */
#define RDBSTR_TYPE_STR    0
#define RDBSTR_HEAD_MAX    (1 + 9) /* type, then length or integer */
#define RDBSTR_TAIL        (2 + 8) /* version, checksum */
#define RDBSTR_DUMP_MAX(n) ((n) + RDBSTR_HEAD_MAX + RDBSTR_TAIL)
/* LZF expands at most 264 bytes out of 3 in: a compressed string claiming more than this
 * many times its compressed length is damaged (and allocates nothing) */
#define RDBSTR_LZF_RATIO_MAX 88

/* CRC-64 (Jones polynomial, reflected, as Redis's crc64) of p[0..n), continuing crc. */
uint64_t rdbstr_crc64(uint64_t crc, const void *p, size_t n);

/* Writes the payload of value v[0..n) into out (at least RDBSTR_DUMP_MAX(n) bytes);
 * returns its length. */
size_t rdbstr_dump(const void *v, size_t n, uint8_t *out);

/*
 * The same in three pieces, for writing it out without a copy of the value: the head
 * (its length returned; *body says whether the value's bytes follow it, or an integer
 * encoding in the head stands for them), the value when *body, then the tail, whose
 * checksum continues `crc`, the CRC-64 of head and body.
 */
size_t rdbstr_dump_head(const void *v, size_t n, uint8_t head[RDBSTR_HEAD_MAX], bool *body);
void rdbstr_dump_tail(uint64_t crc, uint8_t tail[RDBSTR_TAIL]);

enum rdbstr_result {
    RDBSTR_OK = 0,
    RDBSTR_BAD_FOOTER, /* version newer than ours, or the checksum differs */
    RDBSTR_NOT_STRING, /* a valid payload of another type (a list, a hash, ...) */
    RDBSTR_BAD_DATA,   /* the string's encoding is damaged or too long */
};

/*
 * Reads a payload. On RDBSTR_OK the value is either a view into the payload
 * (*val points into p) or, when it was compressed or an integer, written into
 * buf[0..cap) (cap must be at least *need, see below). Call it first with buf NULL:
 * it then sets *need to the bytes such a value needs (0 for a view) and returns
 * RDBSTR_OK without decoding into a buffer; call again with a buffer of *need bytes.
 * Values over max_len bytes are RDBSTR_BAD_DATA.
 */
enum rdbstr_result rdbstr_restore(const uint8_t *p, size_t n, size_t max_len, uint8_t *buf,
                                  size_t cap, const uint8_t **val, size_t *len, size_t *need);

/* True if payload p[0..n) ends with a version up to ours and its checksum. */
bool rdbstr_footer_ok(const uint8_t *p, size_t n);

/* Writes an RDB length (for payloads of other types); returns its size. */
size_t rdbstr_put_len(uint8_t out[RDBSTR_HEAD_MAX], uint64_t len);

/* Reads one RDB string at p[at..end) as rdbstr_restore reads the value (same buf / need
 * protocol); on RDBSTR_OK *next is the offset after it. */
enum rdbstr_result rdbstr_read_string(const uint8_t *p, size_t end, size_t at, size_t max_len,
                                      uint8_t *buf, size_t cap, const uint8_t **val, size_t *len,
                                      size_t *need, size_t *next);

#endif
