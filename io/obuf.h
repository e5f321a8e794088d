/*
 * obuf: client-output-buffer-limit, as Redis's. Each client class (normal, replica,
 * pubsub) has a hard limit (bytes of replies queued for the client: at it, the client is
 * closed), a soft limit and a time (over the soft limit for longer than that many
 * seconds: closed); 0 turns a limit off. The setting's text is Redis's: groups of
 * "<class> <hard> <soft> <seconds>" (sizes with k/kb/m/mb/g/gb), each changing only the
 * class it names ("slave" and "replica" are one class; "master" is refused), and CONFIG
 * GET shows all three classes with plain byte counts.
 *
 * kvd's default differs from Redis's in one place: normal clients have a hard limit of
 * 256 MB (Redis: none), so that a client that never reads cannot take the server's
 * memory; "normal 0 0 0" gives Redis's behaviour.
 *
 * Thread: any. The values are atomics: CONFIG SET (obuf_set) stores them while the shard
 * threads read them (a reader sees the old or the new value of each).
 */
#ifndef KVD_OBUF_H
#define KVD_OBUF_H

#include <stddef.h>
#include <stdint.h>

enum obuf_class { OBUF_NORMAL, OBUF_REPLICA, OBUF_PUBSUB, OBUF_CLASSES };

struct obuf_limit {
    uint64_t hard_bytes; /* 0: none */
    uint64_t soft_bytes; /* 0: none */
    int64_t soft_s;      /* seconds over soft_bytes before the client is closed */
};

/* The default text (what --help prints). */
#define OBUF_DEFAULT "normal 256mb 0 0 replica 256mb 64mb 60 pubsub 32mb 8mb 60"

/* Longest text obuf_text writes (three classes of three 20-digit numbers). */
#define OBUF_TEXT_MAX 256

/* Checks a CONFIG SET value without applying it, by Redis's rules for it (arguments
 * separated by single spaces: "normal  0 0 0" is refused, as Redis does): 0, or -1 with
 * Redis's reason in why. */
int obuf_check(const char *text, char *why, size_t why_len);

/* Applies a text (a config file's lines, a flag, or a CONFIG SET value obuf_check
 * passed; any white space separates arguments): the classes it names change, all or
 * none. 0, or -1 with the reason. */
int obuf_set(const char *text, char *why, size_t why_len);

/* The three classes' limits as CONFIG GET shows them ("normal H S T slave H S T pubsub H
 * S T"); returns the length. */
size_t obuf_text(char *buf, size_t cap);

/* A class's limits now. */
struct obuf_limit obuf_get(enum obuf_class cls);

/* Moves at each obuf_set: a reader keeps what it derived from obuf_get while this has
 * not moved (one relaxed load on its hot path). */
extern _Atomic uint64_t obuf_gen;

#endif
