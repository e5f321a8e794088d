/*
 * kv_splitargs: one argument at a time of a line split by Redis's sdssplitargs rules
 * (the metadata lines of scripts and function libraries): arguments are separated by
 * whitespace; "double quotes" take the escapes \n \r \t \b \a \xHH and \<any> for that
 * character; 'single quotes' take only \' ; quotes may open mid-argument, but a closing
 * quote must be followed by whitespace or the end. Pure: no allocation.
 */
#ifndef KV_SPLITARGS_H
#define KV_SPLITARGS_H

#include <stddef.h>

/*
 * Reads the argument of s[*i..n) that starts at or after *i into out (room for n - *i
 * bytes is always enough), sets *olen and advances *i past it. Returns 1, 0 when no
 * argument is left, or -1 for an unbalanced quote or a closing quote followed by
 * something else than whitespace (sdssplitargs returns NULL for the whole line then).
 */
int kv_splitargs_next(const char *s, size_t n, size_t *i, char *out, size_t *olen);

#endif
