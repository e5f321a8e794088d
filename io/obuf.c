/*
 * obuf: see obuf.h. The nine numbers are atomics, set together by one CONFIG SET (a
 * reader may see one class half changed for an instant: harmless, each number is valid).
 */
#include "obuf.h"

#include "kv_assert.h"
#include "kv_config.h"
#include "kv_splitargs.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OBUF_TOKEN_MAX   64 /* longest class name or number */
#define OBUF_GROUPS_MAX  16 /* groups in one text (later ones of a class win) */
#define OBUF_ARGS_MAX    (4 * OBUF_GROUPS_MAX)
#define OBUF_TEXT_IN_MAX 1024 /* longest text parsed (CONFIG SET's value: 512) */

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

/* Splits text into at most OBUF_ARGS_MAX arguments (each cut to OBUF_TOKEN_MAX - 1
 * bytes: such a one is no valid value anyway): their count, OBUF_ARGS_MAX + 1 when there
 * are more, -1 for an unbalanced quote. Strict: separated by single spaces, so that two
 * spaces make an empty argument ("" has none), as Redis splits a CONFIG SET value; else
 * as Redis splits a config file's line (kv_splitargs). */
static int split(const char *text, bool strict, char args[][OBUF_TOKEN_MAX])
{
    size_t len = strlen(text), i = 0;
    int n = 0;
    char buf[OBUF_TEXT_IN_MAX];
    KV_ASSERT(len < sizeof buf); /* (parse checks it) */
    while (len > 0 && n <= OBUF_ARGS_MAX) {
        size_t olen;
        if (strict) {
            const char *sp = memchr(text + i, ' ', len - i);
            olen = (sp != NULL ? (size_t)(sp - text) : len) - i;
            memcpy(buf, text + i, olen);
            i += olen + 1;
        } else {
            int r = kv_splitargs_next(text, len, &i, buf, &olen);
            if (r <= 0) {
                return r < 0 ? -1 : n;
            }
        }
        if (n < OBUF_ARGS_MAX) {
            size_t k = olen < OBUF_TOKEN_MAX - 1 ? olen : OBUF_TOKEN_MAX - 1;
            memcpy(args[n], buf, k);
            args[n][k] = '\0';
        }
        n++;
        if (strict && i > len) {
            break; /* (the last one: no space after it) */
        }
    }
    return n;
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
    if (strlen(text) >= OBUF_TEXT_IN_MAX) {
        snprintf(why, why_len, "buffer limit configuration longer than %d bytes",
                 OBUF_TEXT_IN_MAX - 1);
        return -1;
    }
    char arg[OBUF_ARGS_MAX][OBUF_TOKEN_MAX];
    int nargs = split(text, strict, arg);
    if (nargs < 0 || nargs % 4 != 0) {
        snprintf(why, why_len, "Wrong number of arguments in buffer limit configuration.");
        return -1;
    }
    if (nargs > OBUF_ARGS_MAX) {
        snprintf(why, why_len, "too many classes in buffer limit configuration (at most %d)",
                 OBUF_GROUPS_MAX);
        return -1;
    }
    for (int g = 0; g < nargs / 4; g++) {
        const char(*a)[OBUF_TOKEN_MAX] = &arg[4 * g];
        cls[g] = class_of(a[0]);
        if (cls[g] < 0) {
            snprintf(why, why_len, "Invalid client class specified in buffer limit configuration.");
            return -1;
        }
        int64_t hard, soft;
        char *end;
        errno = 0;
        long long secs = strtoll(a[3], &end, 10);
        if (kv_conf_parse_bytes(a[1], &hard) != 0 || kv_conf_parse_bytes(a[2], &soft) != 0 ||
            hard < 0 || soft < 0 || *end != '\0' || errno != 0 || secs < 0 || secs > INT32_MAX) {
            snprintf(why, why_len,
                     "Error in hard, soft or soft_seconds setting in buffer limit configuration.");
            return -1;
        }
        v[g] = (struct obuf_limit){
            .hard_bytes = (uint64_t)hard, .soft_bytes = (uint64_t)soft, .soft_s = secs};
    }
    return nargs / 4;
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
