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

#endif
