/*
 * kv_glob: Redis-style glob matching, as used by KEYS, SCAN MATCH and CONFIG GET.
 *
 * Pattern syntax (Redis's stringmatchlen): `*` any run, `?` one byte, `[abc]` a set,
 * `[^abc]` a negated set, `[a-z]` a range, `\x` the byte x literally. Binary safe.
 * Runs in O(len(pattern) * len(string)) time (backtracking only to the last `*`), so
 * a hostile pattern cannot blow up; allocates nothing.
 */
#ifndef KV_GLOB_H
#define KV_GLOB_H

#include <stdbool.h>
#include <stddef.h>

bool kv_glob_match(const char *pat, size_t plen, const char *str, size_t slen, bool nocase);

#endif
