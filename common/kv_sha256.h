/*
 * kv_sha256: SHA-256 (FIPS 180-4) of a byte string, as hex: how ACL LIST / GETUSER show
 * the default user's password (requirepass), as Redis does.
 */
#ifndef KV_SHA256_H
#define KV_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define KV_SHA256_HEX 65 /* 64 lower-case hex digits and a NUL */

/* The 32-byte digest of p[0..n). */
void kv_sha256(const void *p, size_t n, uint8_t out[32]);

/* The digest as 64 lower-case hex digits, NUL-terminated. */
void kv_sha256_hex(const void *p, size_t n, char out[KV_SHA256_HEX]);

#endif
