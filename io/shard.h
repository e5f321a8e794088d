/*
 * shard: a shard thread and its io_uring loop (see shard.c for the loop's shape and
 * server.h for what a shard owns).
 */
#ifndef KVD_SHARD_H
#define KVD_SHARD_H

#include <pthread.h>
#include <stdint.h>

struct io_uring_sqe;
struct server;
struct shard;

/* user_data values of completions that do not belong to a connection (connection
 * completions carry the connection's address, which is 64-byte aligned and > 4096). */
#define SHARD_UD_ACCEPT    32u /* + KVD_LISTEN_MAX x the listeners' parity + the index */
#define SHARD_UD_WAKE      2u  /* a MSG_RING from another shard */
#define SHARD_UD_WAKE_SENT 3u  /* completion of a MSG_RING this shard sent */
#define SHARD_UD_IGNORE    4u
#define SHARD_UD_WAL_FILL  6u /* zero-filling or syncing the spare WAL segment */
#define SHARD_UD_WAL_SYNC  7u /* the everysec fdatasync */
#define SHARD_UD_SNAP      8u /* a snapshot write or sync */
#define SHARD_UD_DUMP      9u /* the pidfd of a dump's child is readable (it exited) */
/* A WAL batch write: 16 + its slot (< 16 + WAL_DEPTH_MAX); its linked fdatasync (with
 * wal-sync-method fdatasync): 16 + WAL_DEPTH_MAX + the slot. */
#define SHARD_UD_WAL_WRITE 16u
#define SHARD_UD_WAL_LAST  31u
/* User data below this are the shard's own (above: a connection's address and tag). */
#define SHARD_UD_MAX (SHARD_UD_ACCEPT + 2 * KVD_LISTEN_MAX)

/* Zeroes `sh` as shard `id` of `srv`. Main thread, before shard_start. */
int shard_init(struct shard *sh, struct server *srv, uint32_t id);

/* Opens this shard's SO_REUSEPORT listeners, one per address of `bind_list` (Redis's
 * bind: space-separated IPv4/IPv6 addresses, "*" and "::*" for all, a "-" before one
 * that may be missing on this host). Returns the bound port or -errno. Main thread. */
int shard_listen(struct shard *sh, const char *bind_list, int port, int backlog);

/* unixsocket: adds a listener on the Unix socket `path` (an old file there is removed
 * first), mode `perm` unless 0. 0 or -errno. Main thread, on one shard. */
int shard_listen_unix(struct shard *sh, const char *path, int perm, int backlog);

/*
 * CONFIG SET port / bind: opens the listeners of every shard on the new addresses and
 * port (bound and listening when it returns), hands them to the shards (each swaps its
 * TCP listeners for them at its next turn; the Unix socket stays) and sets srv->port.
 * Returns the bound port, or -errno with nothing changed (port 0: a free one).
 */
int shard_relisten(struct shard *sh, const char *bind_list, int port, int backlog);

/* Starts the shard's thread and waits until its ring, buffers and tables are set up.
 * Returns 0, or -errno from the setup (the thread has then exited). */
int shard_start(struct shard *sh, pthread_t *tid);

/* Shard thread only, from a script's hook past busy-reply-threshold (script.c) or from a
 * shard parked by such a script (conn.c): one bounded turn of serving this shard's
 * clients, whose commands get -BUSY but those Redis allows then (SCRIPT KILL, ...).
 * `self` is the script's own client when it is on this shard, else NULL: its input waits
 * in its state and its completions that cannot (a send's, a closed receive's) in the
 * shard's deferred list, handled when the loop is back at its top. */
struct conn;
struct io_uring_cqe;
void shard_busy_turn(struct shard *sh, struct conn *self);
void shard_defer_cqe(struct shard *sh, const struct io_uring_cqe *cqe, struct conn *c);

/* Shard thread only: a submission entry (submits early if the queue is full). */
struct io_uring_sqe *shard_sqe(struct shard *sh);

/* Shard thread only: submits early unless n entries are free, so that the next n
 * shard_sqe calls go into one submission (a link chain ends where a submission does). */
void shard_sqe_room(struct shard *sh, unsigned n);

/* Shard thread only: the provided receive buffer `bid`, and its return to the ring. */
const char *shard_buf(struct shard *sh, uint16_t bid);
void shard_buf_return(struct shard *sh, uint16_t bid);

/* The provided-buffer group id used for receives. */
uint16_t shard_bgid(void);

/* Registers a client socket with the shard's ring (IOSQE_FIXED_FILE): its entry in the
 * ring's file table, or -1 when none is free (or the kernel has no such table): the
 * socket is then used by its fd. The fd stays the caller's, open; the caller hands the
 * entry back with shard_file_unregister once no request on it is in flight, before it
 * closes the fd. Shard thread only. */
int shard_file_register(struct shard *sh, int fd);
void shard_file_unregister(struct shard *sh, int slot);

#endif
