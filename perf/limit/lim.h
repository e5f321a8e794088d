/*
 * lim: the physical-limit reference server (perf/limit).
 *
 * It has kvd's network path and nothing else: one pinned thread per --threads, each
 * with its own SO_REUSEPORT listener and io_uring ring, multishot accept, multishot
 * recv into a ring of provided buffers, replies batched per connection and sent once
 * per loop turn, one io_uring_submit_and_wait per turn. It answers every command with
 * a fixed reply (+OK, or $-1 for GET) and stores nothing. What a client measures
 * against it is the ceiling that kvd's own work (parsing, tables, WAL) comes off.
 *
 * lim_main.c: options, threads, signals. lim_loop.c: a thread's ring loop.
 * lim_cmd.c: counting complete RESP commands in a byte stream split anywhere.
 */
#ifndef LIM_H
#define LIM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Threads (one ring each). */
#define LIM_THREADS_MAX 64
/* Connections per thread: the connection table is sized from it at start-up. */
#define LIM_CONNS_MAX 4096
/* Provided receive buffers per thread, and the size of each. */
#define LIM_RECV_BUFS      512
#define LIM_RECV_BUF_BYTES (16 * 1024)
/* Output buffer of a connection; a client that lets more replies pile up than this
 * (it sends without reading) is disconnected, as Redis's output-buffer limit does. */
#define LIM_OUT_BYTES (256 * 1024)
/* Longest multibulk count, bulk length and inline line accepted: Redis's defaults. */
#define LIM_ARGS_MAX   (1024 * 1024)
#define LIM_BULK_MAX   (512LL * 1024 * 1024)
#define LIM_INLINE_MAX (64 * 1024)

/* ---- command counting (lim_cmd.c) ---------------------------------------------------- */

/* Where the counter is inside the current command; carried across reads. */
struct lim_cmd {
    uint8_t state;
    uint8_t is_get;    /* the command's name so far matches GET */
    uint32_t name_len; /* bytes of the name seen */
    int64_t num;       /* number being read (count or bulk length) */
    uint8_t num_digits;
    uint8_t num_neg;
    int64_t args_left; /* multibulk: arguments still to come */
    int64_t bulk_left; /* bytes of the current bulk still to come (then CRLF) */
    uint32_t arg;      /* index of the current argument */
    uint32_t inline_len;
};

/* Called once per complete command, in order; is_get tells the reply to send. */
typedef int (*lim_cmd_fn)(void *ctx, int is_get);

void lim_cmd_init(struct lim_cmd *c);
/*
 * Consume buf[0..len), calling `fn` for each command completed in it. Returns 0, or
 * -1 on a protocol error (the connection should be closed), or the first non-zero
 * value `fn` returned (consumption stops there).
 */
int lim_cmd_feed(struct lim_cmd *c, const char *buf, size_t len, lim_cmd_fn fn, void *ctx);

/* ---- a server thread (lim_loop.c) --------------------------------------------------- */

struct lim_thread {
    int id;
    int port;
    int cpu; /* pinned to this CPU, or -1 */
    volatile sig_atomic_t *stop;
    uint64_t commands; /* served, reported at exit */
    uint64_t conns_accepted;
    uint64_t turns; /* loop turns */
    int rc;         /* 0, or why the thread could not run */
};

void *lim_thread_run(void *arg);

#endif
