/*
 * notify: Redis's keyspace notifications (notify-keyspace-events).
 *
 * A change of a key publishes, when its class is enabled, the event name on
 * "__keyspace@<db>__:<key>" (K) and the key on "__keyevent@<db>__:<event>" (E), through
 * pub/sub (pubsub_publish_async): subscribers of the executing thread get the message at
 * once, those of other threads through their queue (they may see their own next reply
 * first; Redis delivers before the command's reply). Events and their classes are
 * Redis 7.0's for the string and generic commands kvd has: set, setrange, incrby,
 * incrbyfloat, append, setbit ($); del, expire, persist, rename_from, rename_to,
 * move_from, move_to, copy_to, restore (g); expired (x); evicted (e); new (n); keymiss (m).
 *
 * Cost: one relaxed load per change while no class is enabled (the default); when some
 * are, nothing more unless a subscription could receive the message (a channel starting
 * with "__key", or any pattern: pubsub_notify_listened).
 */
#ifndef KVD_NOTIFY_H
#define KVD_NOTIFY_H

#include "kv_config.h"
#include "kvd_settings.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shard;

/* Classes: Redis's NOTIFY_* bits. */
enum notify_class {
    NOTIFY_KEYSPACE = 1 << 0,  /* K */
    NOTIFY_KEYEVENT = 1 << 1,  /* E */
    NOTIFY_GENERIC = 1 << 2,   /* g */
    NOTIFY_STRING = 1 << 3,    /* $ */
    NOTIFY_LIST = 1 << 4,      /* l */
    NOTIFY_SET = 1 << 5,       /* s */
    NOTIFY_HASH = 1 << 6,      /* h */
    NOTIFY_ZSET = 1 << 7,      /* z */
    NOTIFY_EXPIRED = 1 << 8,   /* x */
    NOTIFY_EVICTED = 1 << 9,   /* e */
    NOTIFY_STREAM = 1 << 10,   /* t */
    NOTIFY_KEY_MISS = 1 << 11, /* m */
    NOTIFY_MODULE = 1 << 13,   /* d */
    NOTIFY_NEW = 1 << 14,      /* n */
};
#define NOTIFY_ALL                                                                                 \
    (NOTIFY_GENERIC | NOTIFY_STRING | NOTIFY_LIST | NOTIFY_SET | NOTIFY_HASH | NOTIFY_ZSET |       \
     NOTIFY_EXPIRED | NOTIFY_EVICTED | NOTIFY_STREAM | NOTIFY_MODULE) /* A */

/* The setting notify-keyspace-events (kvd_settings.notify_keyspace_events holds the
 * classes): Redis's parsing ("KEA", "Ex", ...; < 0 with Redis's reason for a character
 * that names no class) and Redis's text of it ("AKE", "g$xnE", ""). */
int64_t notify_parse(const char *value, char *err, size_t errlen);
size_t notify_format(int64_t flags, char *buf, size_t cap);

void notify_publish(struct shard *sh, int cls, const char *event, uint32_t db, const char *key,
                    size_t klen);

/* Publishes event `event` of class `cls` for key (db, key) if that class is enabled. */
static inline void notify_key(struct shard *sh, int cls, const char *event, uint32_t db,
                              const char *key, size_t klen)
{
    int64_t f = KV_CONF_GET(kvd_settings.notify_keyspace_events);
    if (__builtin_expect((f & cls) != 0 && (f & (NOTIFY_KEYSPACE | NOTIFY_KEYEVENT)) != 0, 0)) {
        notify_publish(sh, cls, event, db, key, klen);
    }
}

/* Whether class `cls` is enabled (to skip work done only for a notification). */
static inline bool notify_wants(int cls)
{
    int64_t f = KV_CONF_GET(kvd_settings.notify_keyspace_events);
    return (f & cls) != 0 && (f & (NOTIFY_KEYSPACE | NOTIFY_KEYEVENT)) != 0;
}

#endif
