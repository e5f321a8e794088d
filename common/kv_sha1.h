/*
 * kv_sha1: SHA-1 (FIPS 180-4) of a byte string, as hex (script names for EVALSHA and
 * redis.sha1hex, as Redis names them). Not for security.
 */
#ifndef KV_SHA1_H
#define KV_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define KV_SHA1_HEX 41 /* 40 lower-case hex digits and a NUL */

/* The 20-byte digest of p[0..n). */
void kv_sha1(const void *p, size_t n, uint8_t out[20]);

/* The digest as 40 lower-case hex digits, NUL-terminated. */
void kv_sha1_hex(const void *p, size_t n, char out[KV_SHA1_HEX]);

#endif
