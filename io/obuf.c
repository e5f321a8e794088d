/*
 * obuf: see obuf.h. The nine numbers are atomics, set together by one CONFIG SET (a
 * reader may see one class half changed for an instant: harmless, each number is valid).
 */
#include "obuf.h"

#include "kv_assert.h"
#include "kv_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OBUF_TOKEN_MAX  64 /* longest class name or number */
#define OBUF_GROUPS_MAX 16 /* groups in one text (later ones of a class win) */

static const char *const class_names[OBUF_CLASSES] = {"normal", "slave", "pubsub"};

_Atomic uint64_t obuf_gen;

static struct {
    _Atomic uint64_t hard, soft;
    _Atomic int64_t soft_s;
} limits[OBUF_CLASSES] = {
    {256u << 20, 0, 0},
    {256u << 20, 64u << 20, 60},
    {32u << 20, 8u << 20, 60},
};

/* The next token of text at *pos into tok (cut at OBUF_TOKEN_MAX - 1: such a token is
 * no valid one anyway); false at the end (*pos is SIZE_MAX once it is passed). Strict:
 * tokens are separated by single spaces, so that two spaces make an empty one (Redis's
 * CONFIG SET splits the value so; "" has none); else any run of white space separates
 * them (a config file's line or a flag). */
static bool next_token(const char *text, size_t *pos, char *tok, bool strict)
{
    size_t i = *pos;
    if (i == SIZE_MAX) {
        return false;
    }
    if (!strict) {
        while (text[i] != '\0' && isspace((unsigned char)text[i])) {
            i++;
        }
        if (text[i] == '\0') {
            *pos = SIZE_MAX;
            return false;
        }
    } else if (text[0] == '\0') {
        *pos = SIZE_MAX;
        return false;
    }
    size_t n = 0;
    while (text[i] != '\0' && (strict ? text[i] != ' ' : !isspace((unsigned char)text[i]))) {
        if (n + 1 < OBUF_TOKEN_MAX) {
            tok[n++] = text[i];
        }
        i++;
    }
    tok[n] = '\0';
    if (text[i] == '\0') {
        *pos = SIZE_MAX; /* that was the last one */
    } else {
        *pos = i + (strict ? 1 : 0); /* (strict: past its one separating space) */
    }
    return true;
}

static int class_of(const char *name)
{
    if (strcasecmp(name, "normal") == 0) {
        return OBUF_NORMAL;
    }
    if (strcasecmp(name, "slave") == 0 || strcasecmp(name, "replica") == 0) {
        return OBUF_REPLICA;
    }
    if (strcasecmp(name, "pubsub") == 0) {
        return OBUF_PUBSUB;
    }
    return -1; /* (also "master", as Redis refuses it) */
}

/* Parses text into groups: their count, or -1 with Redis's reason. */
static int parse(const char *text, bool strict, int *cls, struct obuf_limit *v, char *why,
                 size_t why_len)
{
    char tok[OBUF_TOKEN_MAX];
    size_t ntok = 0;
    for (size_t pos = 0; next_token(text, &pos, tok, strict);) {
        ntok++;
    }
    if (ntok % 4 != 0) {
        snprintf(why, why_len, "Wrong number of arguments in buffer limit configuration.");
        return -1;
    }
    if (ntok / 4 > OBUF_GROUPS_MAX) {
        snprintf(why, why_len, "too many classes in buffer limit configuration (at most %d)",
                 OBUF_GROUPS_MAX);
        return -1;
    }
    size_t pos = 0;
    int n = 0;
    for (size_t g = 0; g < ntok / 4; g++, n++) {
        char arg[4][OBUF_TOKEN_MAX];
        for (int k = 0; k < 4; k++) {
            bool more = next_token(text, &pos, arg[k], strict);
            KV_ASSERT(more);
        }
        cls[n] = class_of(arg[0]);
        if (cls[n] < 0) {
            snprintf(why, why_len, "Invalid client class specified in buffer limit configuration.");
            return -1;
        }
        int64_t hard, soft;
        char *end;
        errno = 0;
        long long secs = strtoll(arg[3], &end, 10);
        if (kv_conf_parse_bytes(arg[1], &hard) != 0 || kv_conf_parse_bytes(arg[2], &soft) != 0 ||
            hard < 0 || soft < 0 || *end != '\0' || errno != 0 || secs < 0 || secs > INT32_MAX) {
            snprintf(why, why_len,
                     "Error in hard, soft or soft_seconds setting in buffer limit configuration.");
            return -1;
        }
        v[n] = (struct obuf_limit){
            .hard_bytes = (uint64_t)hard, .soft_bytes = (uint64_t)soft, .soft_s = secs};
    }
    return n;
}

int obuf_check(const char *text, char *why, size_t why_len)
{
    int cls[OBUF_GROUPS_MAX];
    struct obuf_limit v[OBUF_GROUPS_MAX];
    return parse(text, true, cls, v, why, why_len) < 0 ? -1 : 0;
}

int obuf_set(const char *text, char *why, size_t why_len)
{
    int cls[OBUF_GROUPS_MAX];
    struct obuf_limit v[OBUF_GROUPS_MAX];
    int n = parse(text, false, cls, v, why, why_len);
    if (n < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        KV_ASSERT(cls[i] >= 0 && cls[i] < OBUF_CLASSES);
        atomic_store_explicit(&limits[cls[i]].hard, v[i].hard_bytes, memory_order_relaxed);
        atomic_store_explicit(&limits[cls[i]].soft, v[i].soft_bytes, memory_order_relaxed);
        atomic_store_explicit(&limits[cls[i]].soft_s, v[i].soft_s, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&obuf_gen, 1, memory_order_release);
    return 0;
}

size_t obuf_text(char *buf, size_t cap)
{
    KV_ASSERT(cap > 0);
    size_t len = 0;
    for (int c = 0; c < OBUF_CLASSES; c++) {
        struct obuf_limit l = obuf_get((enum obuf_class)c);
        int n = snprintf(buf + len, cap - len, "%s%s %llu %llu %lld", c > 0 ? " " : "",
                         class_names[c], (unsigned long long)l.hard_bytes,
                         (unsigned long long)l.soft_bytes, (long long)l.soft_s);
        if (n < 0 || (size_t)n >= cap - len) {
            return cap - 1; /* cut (snprintf wrote the NUL) */
        }
        len += (size_t)n;
    }
    return len;
}

struct obuf_limit obuf_get(enum obuf_class cls)
{
    KV_ASSERT(cls < OBUF_CLASSES);
    return (struct obuf_limit){
        .hard_bytes = atomic_load_explicit(&limits[cls].hard, memory_order_relaxed),
        .soft_bytes = atomic_load_explicit(&limits[cls].soft, memory_order_relaxed),
        .soft_s = atomic_load_explicit(&limits[cls].soft_s, memory_order_relaxed),
    };
}
