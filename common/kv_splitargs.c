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
    bool dq = false, sq = false;
    for (;;) {
        if (dq) {
            if (p >= n) {
                return -1;
            }
            if (s[p] == '\\' && p + 3 < n && s[p + 1] == 'x' && isxdigit((unsigned char)s[p + 2]) &&
                isxdigit((unsigned char)s[p + 3])) {
                char hex[3] = {s[p + 2], s[p + 3], 0};
                out[o++] = (char)strtol(hex, NULL, 16);
                p += 4;
            } else if (s[p] == '\\' && p + 1 < n) {
                static const char from[] = "nrtba", to[] = "\n\r\t\b\a";
                const char *e = strchr(from, s[p + 1]);
                out[o++] = e != NULL && s[p + 1] != '\0' ? to[e - from] : s[p + 1];
                p += 2;
            } else if (s[p] == '"') {
                if (p + 1 < n && !isspace((unsigned char)s[p + 1])) {
                    return -1;
                }
                p++;
                break;
            } else {
                out[o++] = s[p++];
            }
        } else if (sq) {
            if (p >= n) {
                return -1;
            }
            if (s[p] == '\\' && p + 1 < n && s[p + 1] == '\'') {
                out[o++] = '\'';
                p += 2;
            } else if (s[p] == '\'') {
                if (p + 1 < n && !isspace((unsigned char)s[p + 1])) {
                    return -1;
                }
                p++;
                break;
            } else {
                out[o++] = s[p++];
            }
        } else if (p >= n || s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t') {
            break;
        } else if (s[p] == '"') {
            dq = true;
            p++;
        } else if (s[p] == '\'') {
            sq = true;
            p++;
        } else {
            out[o++] = s[p++];
        }
    }
    *i = p;
    *olen = o;
    return 1;
}
