/*
 * pubsub: Redis's publish/subscribe (SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
 * PUBLISH, PUBSUB CHANNELS / NUMSUB / NUMPAT / HELP).
 *
 * A connection's subscriptions are kept by its own shard (struct pubsub_local: channel ->
 * its subscribed connections there, and the patterns with their connection), which is
 * where messages are written into connections. A server-wide registry (a mutex) counts
 * the subscriptions of every channel and pattern per shard: PUBLISH reads it once to
 * know how many receive the message and which shards have any, delivers to its own
 * shard's subscribers at once and sends the message (XM_PUBLISH) to the others, through
 * the publishing connection's queues so that one publisher's messages arrive in order.
 * PUBSUB reads the registry alone. Pub/sub is not the key-value path: the mutex is taken
 * by these commands only.
 *
 * Limits: none beyond memory, as in Redis; a subscriber that does not read is closed at
 * the output limit like any client.
 */
#ifndef KVD_PUBSUB_H
#define KVD_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct shard;
struct xmsg;

/* A connection's subscriptions (conn.c keeps the pointer; NULL when it has none). */
struct pubsub_conn;

/* Channels and patterns a connection is subscribed to. */
size_t pubsub_channels(const struct pubsub_conn *p);
size_t pubsub_patterns(const struct pubsub_conn *p);

/* Drops every subscription of connection c (closing, RESET): no replies. */
void pubsub_drop(struct shard *sh, struct conn *c);

/* XM_PUBLISH: delivers the message to this shard's subscribers; frees its payload. */
void pubsub_on_message(struct shard *sh, const struct xmsg *m);

/* Frees a shard's subscription maps (teardown; no connection is left). */
void pubsub_local_free(struct shard *sh);

#endif
