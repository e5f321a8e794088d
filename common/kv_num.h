/*
 * kv_num: strict decimal parsing, Redis's string2ll rules, shared by the settings and
 * the command handlers. Binary safe (length-delimited), allocates nothing.
 */
#ifndef KV_NUM_H
#define KV_NUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Digits only (no sign), at most 20, within uint64; "" is false. */
bool kv_parse_u64(const char *p, size_t n, uint64_t *out);

/* An optional '-', then digits without leading zeros ("0" alone is fine): no '+', no
 * spaces, no "-0", within int64 (Redis's string2ll). */
bool kv_parse_i64(const char *p, size_t n, int64_t *out);

/* Writes v in decimal (no NUL) into dst, which has room for 20 (u64) or 21 (i64)
 * bytes; returns the length. Two digits per division, no locale, no printf. */
#define KV_I64_CHARS_MAX 21
size_t kv_fmt_u64(char *dst, uint64_t v);
size_t kv_fmt_i64(char *dst, int64_t v);

#endif
