/*
 * pubsub: Redis's publish/subscribe (SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
 * PUBLISH, PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB / HELP) and
 * Redis 7's shard channels (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH: a namespace of their
 * own, without patterns; on a single node they behave as channels, as in Redis).
 *
 * A connection's subscriptions are kept by its own shard (struct pubsub_local: channel ->
 * its subscribed connections there, and the patterns with their connection), which is
 * where messages are written into connections. PUBLISH is a fan-out to every shard:
 * each delivers to its subscribers and counts them, and the reply (the sum) leaves once
 * all have. A server-wide registry (a mutex) counts the subscriptions of every channel
 * and pattern per shard for PUBSUB (and for PUBLISH from a script, which cannot fan
 * out). Pub/sub is not the key-value path: the mutex is taken by these commands only.
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

/* Channels, patterns and shard channels a connection is subscribed to; whether it is
 * subscribed to anything (RESP2's subscribed context). */
size_t pubsub_channels(const struct pubsub_conn *p);
size_t pubsub_patterns(const struct pubsub_conn *p);
size_t pubsub_shard_channels(const struct pubsub_conn *p);
bool pubsub_subscribed(const struct pubsub_conn *p);

/* Whether fn holds for every subscription (the channel or pattern, and which). */
bool pubsub_all(const struct pubsub_conn *p,
                bool (*fn)(void *arg, const char *ch, size_t n, bool pattern), void *arg);

/* Drops every subscription of connection c (closing, RESET): no replies. */
void pubsub_drop(struct shard *sh, struct conn *c);

/* XM_PUBLISH: delivers the message to this shard's subscribers; frees its payload. */
void pubsub_on_message(struct shard *sh, const struct xmsg *m);

/* PUBLISH (SPUBLISH: shard_chan) from a script run on one shard (no fan-out there):
 * counts the receivers from the registry, delivers here at once and sends XM_PUBLISH to
 * the other shards with subscribers. Their subscribers may then see their next replies
 * before the message. */
int64_t pubsub_publish_async(struct shard *sh, bool shard_chan, const char *ch, size_t chn,
                             const char *msg, size_t mn);

/* True if some subscription may receive a keyspace notification (a channel starting
 * with "__key", or any pattern): a relaxed load, for notify.c to skip the work. */
bool pubsub_notify_listened(void);

/* Channels with a subscriber, pattern subscriptions and shard channels with a
 * subscriber, server-wide (INFO stats's pubsub_channels / pubsub_patterns /
 * pubsubshard_channels; locks the registry). */
void pubsub_counts(size_t *channels, size_t *patterns, size_t *shard_channels);

/* Frees a shard's subscription maps (teardown; no connection is left). */
void pubsub_local_free(struct shard *sh);

#endif
