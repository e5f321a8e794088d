/*
 * kv_splitargs: see kv_splitargs.h.
 */
#include "kv_splitargs.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int kv_splitargs_next(const char *s, size_t n, size_t *i, char *out, size_t *olen)
{
    size_t p = *i, o = 0;
    while (p < n && isspace((unsigned char)s[p])) {
        p++;
    }
    if (p >= n) {
        *i = p;
        return 0;
    }
    char q = 0; /* the open quote: '"' or '\'', or none */
    for (;;) {
        if (q == 0) {
            if (p >= n || s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t') {
                break;
            }
            if (s[p] == '"' || s[p] == '\'') {
                q = s[p++];
            } else {
                out[o++] = s[p++];
            }
            continue;
        }
        if (p >= n) {
            return -1; /* unbalanced */
        }
        if (s[p] == q) { /* closing: whitespace or the end must follow */
            if (p + 1 < n && !isspace((unsigned char)s[p + 1])) {
                return -1;
            }
            p++;
            break;
        }
        if (q == '"' && s[p] == '\\' && p + 3 < n && s[p + 1] == 'x' &&
            isxdigit((unsigned char)s[p + 2]) && isxdigit((unsigned char)s[p + 3])) {
            char hex[3] = {s[p + 2], s[p + 3], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            p += 4;
        } else if (q == '"' && s[p] == '\\' && p + 1 < n) {
            static const char from[] = "nrtba", to[] = "\n\r\t\b\a";
            const char *e = strchr(from, s[p + 1]);
            out[o++] = e != NULL && s[p + 1] != '\0' ? to[e - from] : s[p + 1];
            p += 2;
        } else if (q == '\'' && s[p] == '\\' && p + 1 < n && s[p + 1] == '\'') {
            out[o++] = '\'';
            p += 2;
        } else {
            out[o++] = s[p++];
        }
    }
    *i = p;
    *olen = o;
    return 1;
}
