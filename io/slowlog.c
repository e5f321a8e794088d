/*
 * slowlog: a bounded list kept newest first; entries and their argument copies are
 * allocated from the C heap under the mutex (slow commands only).
 */
#include "slowlog.h"

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

struct slow_entry {
    struct slow_entry *next;
    uint64_t id;
    int64_t time_s;
    uint64_t duration_us;
    size_t argc;
    char *argv[SLOWLOG_ARGS_MAX];
    size_t argl[SLOWLOG_ARGS_MAX];
    char addr[48];
    char name[64];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slow_entry *head;
static size_t len;
static uint64_t next_id;

static void entry_free(struct slow_entry *e)
{
    for (size_t i = 0; i < e->argc; i++) {
        free(e->argv[i]);
    }
    free(e);
}

static char *copy_arg(const char *p, size_t n, size_t *out_len)
{
    char buf[SLOWLOG_ARG_BYTES_MAX + 64];
    if (n > SLOWLOG_ARG_BYTES_MAX) {
        int k = snprintf(buf, sizeof buf, "%.*s... (%zu more bytes)", SLOWLOG_ARG_BYTES_MAX, p,
                         n - SLOWLOG_ARG_BYTES_MAX);
        p = buf;
        n = (size_t)k;
    }
    char *c = malloc(n ? n : 1);
    if (c != NULL) {
        memcpy(c, p, n);
    }
    *out_len = c ? n : 0;
    return c;
}

void slowlog_maybe_add(size_t argc, const struct resp_arg *argv, uint64_t duration_us,
                       int64_t now_ms, const char *addr, const char *name)
{
    int64_t threshold = KV_CONF_GET(kvd_settings.slowlog_slower_than_us);
    int64_t max = KV_CONF_GET(kvd_settings.slowlog_max_len);
    if (threshold < 0 || duration_us < (uint64_t)threshold || max == 0) {
        return;
    }
    struct slow_entry *e = calloc(1, sizeof *e);
    if (e == NULL) {
        return;
    }
    e->time_s = now_ms / 1000;
    e->duration_us = duration_us;
    size_t n = argc > SLOWLOG_ARGS_MAX ? SLOWLOG_ARGS_MAX : argc;
    for (size_t i = 0; i < n; i++) {
        if (i == SLOWLOG_ARGS_MAX - 1 && argc > SLOWLOG_ARGS_MAX) {
            char more[64];
            int k = snprintf(more, sizeof more, "... (%zu more arguments)", argc - n + 1);
            e->argv[i] = copy_arg(more, (size_t)k, &e->argl[i]);
        } else {
            e->argv[i] = copy_arg(argv[i].ptr, argv[i].len, &e->argl[i]);
        }
    }
    e->argc = n;
    snprintf(e->addr, sizeof e->addr, "%s", addr ? addr : "");
    snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    pthread_mutex_lock(&mu);
    e->id = next_id++;
    e->next = head;
    head = e;
    len++;
    /* Trim to the current maximum. */
    struct slow_entry **pp = &head;
    for (int64_t i = 0; *pp != NULL && i < max; i++) {
        pp = &(*pp)->next;
    }
    while (*pp != NULL) {
        struct slow_entry *dead = *pp;
        *pp = dead->next;
        entry_free(dead);
        len--;
    }
    pthread_mutex_unlock(&mu);
}

void slowlog_reply_get(struct resp_out *o, int64_t count)
{
    pthread_mutex_lock(&mu);
    size_t n = count < 0 || (size_t)count > len ? len : (size_t)count;
    reply_array(o, n);
    struct slow_entry *e = head;
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
        struct slow_entry *e = head;
        head = e->next;
        entry_free(e);
    }
    len = 0;
    pthread_mutex_unlock(&mu);
}
