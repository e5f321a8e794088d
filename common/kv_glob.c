/*
 * kv_glob: the matcher. It walks pattern and string together; on a mismatch after a
 * `*` it resumes just after that star with the string advanced by one (the classic
 * last-star backtrack), which is enough because a later star subsumes earlier ones.
 */
#include "kv_glob.h"

#include "kv_assert.h"

#include <ctype.h>

static int fold(int c, bool nocase)
{
    return nocase ? tolower(c) : c;
}

/* Matches one byte `c` against the class at pat[*pi] (just after '['); advances *pi
 * past the closing ']' (or to the end of an unterminated class, as Redis does). */
static bool match_class(const char *pat, size_t plen, size_t *pi, int c, bool nocase)
{
    size_t i = *pi;
    bool negate = false;
    bool hit = false;
    if (i < plen && pat[i] == '^') {
        negate = true;
        i++;
    }
    while (i < plen && pat[i] != ']') {
        if (pat[i] == '\\' && i + 1 < plen) {
            i++;
            hit |= fold((unsigned char)pat[i], nocase) == c;
            i++;
        } else if (i + 2 < plen && pat[i + 1] == '-') {
            int lo = fold((unsigned char)pat[i], nocase);
            int hi = fold((unsigned char)pat[i + 2], nocase);
            if (lo > hi) {
                int t = lo;
                lo = hi;
                hi = t;
            }
            hit |= c >= lo && c <= hi;
            i += 3;
        } else {
            hit |= fold((unsigned char)pat[i], nocase) == c;
            i++;
        }
    }
    if (i < plen) {
        i++; /* the closing ']' */
    }
    *pi = i;
    return negate ? !hit : hit;
}

/* Redis's matcher recurses at every '*' that more pattern follows and gives up (no match)
 * past 1000 levels: a pattern with more such stars never matches there, so not here
 * either (KEYS, SCAN MATCH, PSUBSCRIBE answer as Redis's). Stars in a class or escaped
 * are literal; a run of stars is one. */
#define GLOB_NESTING_MAX 1000

static bool too_nested(const char *pat, size_t plen)
{
    size_t stars = 0;
    for (size_t i = 0; i < plen; i++) {
        if (pat[i] == '\\') {
            i++;
        } else if (pat[i] == '[') {
            while (i + 1 < plen && pat[i + 1] != ']') {
                i += pat[i + 1] == '\\' ? 2 : 1;
            }
            i++;
        } else if (pat[i] == '*') {
            while (i + 1 < plen && pat[i + 1] == '*') {
                i++;
            }
            stars += i + 1 < plen; /* (a trailing one ends the match at once) */
        }
    }
    return stars > GLOB_NESTING_MAX;
}

bool kv_glob_match(const char *pat, size_t plen, const char *str, size_t slen, bool nocase)
{
    if (KV_UNLIKELY(plen > 2 * GLOB_NESTING_MAX) && too_nested(pat, plen)) {
        return false;
    }
    size_t p = 0;
    size_t s = 0;
    size_t star_p = (size_t)-1; /* pattern index just after the last '*' */
    size_t star_s = 0;          /* string index that star is currently absorbing up to */
    while (s < slen) {
        if (p < plen && pat[p] == '*') {
            while (p < plen && pat[p] == '*') {
                p++;
            }
            if (p == plen) {
                return true;
            }
            star_p = p;
            star_s = s;
            continue;
        }
        int c = fold((unsigned char)str[s], nocase);
        bool ok = false;
        size_t next = p;
        if (p < plen) {
            if (pat[p] == '?') {
                ok = true;
                next = p + 1;
            } else if (pat[p] == '[') {
                next = p + 1;
                ok = match_class(pat, plen, &next, c, nocase);
            } else if (pat[p] == '\\' && p + 1 < plen) {
                ok = fold((unsigned char)pat[p + 1], nocase) == c;
                next = p + 2;
            } else {
                ok = fold((unsigned char)pat[p], nocase) == c;
                next = p + 1;
            }
        }
        if (ok) {
            p = next;
            s++;
        } else if (star_p != (size_t)-1) {
            p = star_p;
            s = ++star_s;
        } else {
            return false;
        }
    }
    while (p < plen && pat[p] == '*') {
        p++;
    }
    return p == plen;
}
