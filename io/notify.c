/*
 * notify.c: keyspace notifications (see notify.h).
 */
#include "notify.h"

#include "conn.h"
#include "kv_assert.h"
#include "pubsub.h"
#include "server.h"

#include <mimalloc.h>
#include <stdio.h>
#include <string.h>

int64_t notify_parse(const char *s, char *err, size_t errlen)
{
    int64_t flags = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        switch (s[i]) {
        case 'A':
            flags |= NOTIFY_ALL;
            break;
        case 'g':
            flags |= NOTIFY_GENERIC;
            break;
        case '$':
            flags |= NOTIFY_STRING;
            break;
        case 'l':
            flags |= NOTIFY_LIST;
            break;
        case 's':
            flags |= NOTIFY_SET;
            break;
        case 'h':
            flags |= NOTIFY_HASH;
            break;
        case 'z':
            flags |= NOTIFY_ZSET;
            break;
        case 'x':
            flags |= NOTIFY_EXPIRED;
            break;
        case 'e':
            flags |= NOTIFY_EVICTED;
            break;
        case 'K':
            flags |= NOTIFY_KEYSPACE;
            break;
        case 'E':
            flags |= NOTIFY_KEYEVENT;
            break;
        case 't':
            flags |= NOTIFY_STREAM;
            break;
        case 'm':
            flags |= NOTIFY_KEY_MISS;
            break;
        case 'd':
            flags |= NOTIFY_MODULE;
            break;
        case 'n':
            flags |= NOTIFY_NEW;
            break;
        default:
            snprintf(err, errlen, "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.");
            return -1;
        }
    }
    return flags;
}

size_t notify_format(int64_t flags, char *buf, size_t cap)
{
    char out[32];
    static const struct {
        int bit;
        char c;
    } order[] = {
        {NOTIFY_GENERIC, 'g'}, {NOTIFY_STRING, '$'}, {NOTIFY_LIST, 'l'},    {NOTIFY_SET, 's'},
        {NOTIFY_HASH, 'h'},    {NOTIFY_ZSET, 'z'},   {NOTIFY_EXPIRED, 'x'}, {NOTIFY_EVICTED, 'e'},
        {NOTIFY_STREAM, 't'},  {NOTIFY_MODULE, 'd'}, {NOTIFY_NEW, 'n'},
    };
    size_t n = 0;
    if ((flags & NOTIFY_ALL) == NOTIFY_ALL) {
        out[n++] = 'A'; /* and no 'n' even when it is on, as Redis 7.0 prints it */
    } else {
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            if (flags & order[i].bit) {
                out[n++] = order[i].c;
            }
        }
    }
    if (flags & NOTIFY_KEYSPACE) {
        out[n++] = 'K';
    }
    if (flags & NOTIFY_KEYEVENT) {
        out[n++] = 'E';
    }
    if (flags & NOTIFY_KEY_MISS) {
        out[n++] = 'm';
    }
    KV_ASSERT(n < sizeof out);
    out[n] = '\0';
    KV_ASSERT(cap > 0);
    snprintf(buf, cap, "%s", out);
    return n < cap ? n : cap - 1;
}

void notify_publish(struct shard *sh, int cls, const char *event, uint32_t db, const char *key,
                    size_t klen)
{
    (void)cls;
    if (!pubsub_notify_listened()) {
        return;
    }
    int64_t f = KV_CONF_GET(kvd_settings.notify_keyspace_events);
    size_t evlen = strlen(event);
    /* "__keyevent@" db "__:" + the longer of the key and the event */
    size_t cap = 32 + (klen > evlen ? klen : evlen);
    char stackbuf[256];
    char *ch = cap <= sizeof stackbuf ? stackbuf : mi_heap_malloc(sh->heap, cap);
    KV_ASSERT(ch != NULL);
    if (f & NOTIFY_KEYSPACE) {
        int n = snprintf(ch, cap, "__keyspace@%u__:", db);
        memcpy(ch + n, key, klen);
        pubsub_publish_async(sh, false, ch, (size_t)n + klen, event, evlen);
    }
    if (f & NOTIFY_KEYEVENT) {
        int n = snprintf(ch, cap, "__keyevent@%u__:", db);
        memcpy(ch + n, event, evlen);
        pubsub_publish_async(sh, false, ch, (size_t)n + evlen, key, klen);
    }
    if (ch != stackbuf) {
        mi_free(ch);
    }
}
