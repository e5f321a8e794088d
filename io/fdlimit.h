/*
 * fdlimit: the open-files limit (RLIMIT_NOFILE) that `maxclients` needs, as Redis's
 * adjustOpenFilesLimit: kvd raises the soft limit (and the hard one where it may) to
 * maxclients plus the fds it keeps for itself; where the system does not allow that,
 * the caller lowers maxclients to what the limit reached allows.
 *
 * Called by the main thread at start and by CONFIG SET maxclients (any shard thread):
 * the limit is the process's, read and raised under one lock, so that of two raises at
 * once the smaller never undoes the larger.
 */
#ifndef KVD_FDLIMIT_H
#define KVD_FDLIMIT_H

#include <stdint.h>

/* The fds kvd keeps besides its clients: Redis's 32, plus per thread its ring, its
 * listeners, its WAL segments and directory, a snapshot's file (8). */
#define FDLIMIT_RESERVED_BASE       32
#define FDLIMIT_RESERVED_PER_THREAD 8

struct fdlimit_result {
    uint64_t old_limit; /* the soft limit before */
    uint64_t limit;     /* the soft limit now */
    uint64_t needed;    /* maxclients + the reserved fds */
    int64_t clients;    /* the clients the limit allows: maxclients when raised enough,
                         * fewer otherwise, <= 0 when not even the reserved fds fit */
    int err;            /* the errno of the raise that failed (0: none failed) */
};

/* The fds kvd keeps besides its clients with `threads` shard threads. */
uint64_t fdlimit_reserved(uint32_t threads);

/* Raises RLIMIT_NOFILE towards maxclients + fdlimit_reserved(threads) (never lowers
 * it) and says what it reached. */
struct fdlimit_result fdlimit_raise(int64_t maxclients, uint32_t threads);

#endif
