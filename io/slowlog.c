/*
 * slowlog: a bounded list kept newest first; an entry and its argument copies are one
 * allocation from the C heap, made outside the mutex (each thread reuses its last
 * dropped entry); the mutex is taken only to link an entry in (slow commands only) and
 * to read or reset the list.
 */
#include "slowlog.h"
#include "cmd.h"

#include "kv_assert.h"
#include "kv_config.h"
#include "kvd_settings.h"
#include "reply.h"
#include "resp_parse.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOWLOG_ARGS_MAX      32
#define SLOWLOG_ARG_BYTES_MAX 128
#define SLOWLOG_NOTE_MAX      40 /* "... (N more bytes)" / "... (N more arguments)" */

/* One allocation: the header, then the argument bytes argv[] points into. */
struct slowlog_entry {
    struct slowlog_entry *next;
    uint64_t id;
    int64_t time_s;
    uint64_t duration_us;
    size_t argc;
    const char *argv[SLOWLOG_ARGS_MAX];
    uint32_t argl[SLOWLOG_ARGS_MAX];
    char addr[64];
    char name[64];
    char bytes[];
};

/* Every entry is allocated at the largest size an entry can need, so that each thread
 * keeps its last dropped one for the next prepare: a fan-out that is not slow (nearly
 * all) costs a copy of its arguments, not an allocation. */
#define SLOWLOG_ENTRY_BYTES                                                                        \
    (sizeof(struct slowlog_entry) + SLOWLOG_ARGS_MAX * (SLOWLOG_ARG_BYTES_MAX + SLOWLOG_NOTE_MAX))

static _Thread_local struct slowlog_entry *spare;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slowlog_entry *head;
static size_t len;
static uint64_t next_id;

struct slowlog_entry *slowlog_prepare(size_t argc, const struct resp_arg *argv, const char *addr,
                                      const char *name)
{
    if (KV_CONF_GET(kvd_settings.slowlog_slower_than_us) < 0 ||
        KV_CONF_GET(kvd_settings.slowlog_max_len) == 0) {
        return NULL;
    }
    size_t n = argc > SLOWLOG_ARGS_MAX ? SLOWLOG_ARGS_MAX : argc;
    struct slowlog_entry *e = spare != NULL ? spare : malloc(SLOWLOG_ENTRY_BYTES);
    spare = NULL;
    if (e == NULL) {
        return NULL;
    }
    char *w = e->bytes;
    /* credentials are not kept (only commands that may carry them are looked up; any,
     * when rename-command gave one a name of its own) */
    const struct cmd_desc *d = NULL;
    if (argc >= 2 &&
        (cmd_renamed() || (argv[0].len >= 3 && strchr("aAhHcC", argv[0].ptr[0]) != NULL))) {
        d = cmd_lookup(argv[0].ptr, argv[0].len);
    }
    for (size_t i = 0; i < n; i++) {
        int k;
        if (i == SLOWLOG_ARGS_MAX - 1 && argc > SLOWLOG_ARGS_MAX) {
            k = snprintf(w, SLOWLOG_NOTE_MAX, "... (%zu more arguments)", argc - n + 1);
        } else if (d != NULL && cmd_arg_secret(d, argc, argv, i)) {
            memcpy(w, "(redacted)", 10);
            k = 10;
        } else if (argv[i].len > SLOWLOG_ARG_BYTES_MAX) {
            memcpy(w, argv[i].ptr, SLOWLOG_ARG_BYTES_MAX);
            k = SLOWLOG_ARG_BYTES_MAX + snprintf(w + SLOWLOG_ARG_BYTES_MAX, SLOWLOG_NOTE_MAX,
                                                 "... (%zu more bytes)",
                                                 argv[i].len - SLOWLOG_ARG_BYTES_MAX);
        } else {
            memcpy(w, argv[i].ptr, argv[i].len);
            k = (int)argv[i].len;
        }
        KV_ASSERT(k >= 0 && (size_t)k < SLOWLOG_ARG_BYTES_MAX + SLOWLOG_NOTE_MAX);
        e->argv[i] = w;
        e->argl[i] = (uint32_t)k;
        w += k;
    }
    KV_ASSERT((size_t)(w - (char *)e) <= SLOWLOG_ENTRY_BYTES);
    e->argc = n;
    snprintf(e->addr, sizeof e->addr, "%s", addr ? addr : "");
    snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    return e;
}

void slowlog_drop(struct slowlog_entry *e)
{
    if (spare == NULL) {
        spare = e; /* kept for this thread's next prepare */
    } else {
        free(e);
    }
}

void slowlog_thread_exit(void)
{
    free(spare);
    spare = NULL;
}

void slowlog_commit(struct slowlog_entry *e, uint64_t duration_us, int64_t now_ms)
{
    int64_t threshold = KV_CONF_GET(kvd_settings.slowlog_slower_than_us);
    int64_t max = KV_CONF_GET(kvd_settings.slowlog_max_len);
    if (e == NULL) {
        return;
    }
    if (threshold < 0 || duration_us < (uint64_t)threshold || max == 0) {
        slowlog_drop(e);
        return;
    }
    e->time_s = now_ms / 1000;
    e->duration_us = duration_us;
    pthread_mutex_lock(&mu);
    e->id = next_id++;
    e->next = head;
    head = e;
    len++;
    /* Trim to the current maximum. */
    struct slowlog_entry **pp = &head;
    for (int64_t i = 0; *pp != NULL && i < max; i++) {
        pp = &(*pp)->next;
    }
    while (*pp != NULL) {
        struct slowlog_entry *dead = *pp;
        *pp = dead->next;
        free(dead);
        len--;
    }
    pthread_mutex_unlock(&mu);
}

bool slowlog_wants(uint64_t duration_us)
{
    int64_t threshold = KV_CONF_GET(kvd_settings.slowlog_slower_than_us);
    return threshold >= 0 && duration_us >= (uint64_t)threshold &&
           KV_CONF_GET(kvd_settings.slowlog_max_len) != 0;
}

void slowlog_maybe_add(size_t argc, const struct resp_arg *argv, uint64_t duration_us,
                       int64_t now_ms, const char *addr, const char *name)
{
    if (slowlog_wants(duration_us)) {
        slowlog_commit(slowlog_prepare(argc, argv, addr, name), duration_us, now_ms);
    }
}

void slowlog_reply_get(struct resp_out *o, int64_t count)
{
    pthread_mutex_lock(&mu);
    size_t n = count < 0 || (size_t)count > len ? len : (size_t)count;
    reply_array(o, n);
    struct slowlog_entry *e = head;
    for (size_t i = 0; i < n; i++, e = e->next) {
        reply_array(o, 6);
        reply_int(o, (int64_t)e->id);
        reply_int(o, e->time_s);
        reply_int(o, (int64_t)e->duration_us);
        reply_array(o, e->argc);
        for (size_t a = 0; a < e->argc; a++) {
            reply_bulk(o, e->argv[a], e->argl[a]);
        }
        reply_bulk_str(o, e->addr);
        reply_bulk_str(o, e->name);
    }
    pthread_mutex_unlock(&mu);
}

size_t slowlog_len(void)
{
    pthread_mutex_lock(&mu);
    size_t n = len;
    pthread_mutex_unlock(&mu);
    return n;
}

void slowlog_reset(void)
{
    pthread_mutex_lock(&mu);
    while (head != NULL) {
        struct slowlog_entry *e = head;
        head = e->next;
        free(e);
    }
    len = 0;
    pthread_mutex_unlock(&mu);
}
