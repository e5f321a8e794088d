/*
 * monitor: MONITOR, every command the server runs streamed to the clients that asked,
 * as Redis 7.0 formats it:
 *
 *   +1700000000.123456 [0 127.0.0.1:50000] "SET" "k" "v\n"
 *
 * (the time, the client's database and address, "lua" for a script's commands; each
 * argument quoted with C escapes; AUTH's and HELLO ... AUTH's credentials "(redacted)").
 * Admin commands (CONFIG, DEBUG, CLIENT KILL, ...) are not shown, as in Redis.
 *
 * The monitors are in one server-wide registry (a mutex): a shard formats each command
 * its clients run (only while some monitor exists: one relaxed load per command
 * otherwise) and writes it to the monitors of its own clients, or sends it to their
 * shard (XM_MONITOR), so a monitor sees each thread's commands in the order they ran
 * there. Commands are shown when they are dispatched (after the checks that refuse
 * them), a transaction's when they are queued, a script's as it calls them.
 *
 * Thread: any shard thread; the registry locks.
 */
#ifndef KVD_MONITOR_H
#define KVD_MONITOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cmd_ctx;
struct cmd_desc;
struct conn;
struct resp_arg;
struct shard;
struct xmsg;

extern _Atomic uint32_t monitor_count;

static inline bool monitor_on(void)
{
    return atomic_load_explicit(&monitor_count, memory_order_relaxed) > 0;
}

/* MONITOR (x->conn becomes a monitor). */
void cmd_monitor_conn(struct cmd_ctx *x);

/* The connection stops monitoring (closing, RESET): no-op if it does not. */
void monitor_drop(struct shard *sh, struct conn *c);

/* Shows a command to every monitor (call only while monitor_on()): `addr` is the
 * client's address, or "lua". If `self` (the client running it, or NULL) is a monitor,
 * its own line waits for monitor_flush_self, after the command's reply (Redis shows a
 * command once it has run). */
void monitor_feed(struct shard *sh, struct conn *self, uint32_t db, const char *addr,
                  const struct cmd_desc *d, size_t argc, const struct resp_arg *argv);
void monitor_flush_self(void);

/* After every command (the line waits for its reply; a connection that stopped being a
 * monitor meanwhile, or was closed, gets none). */
extern _Thread_local struct conn *monitor_self;
static inline void monitor_after_command(void)
{
    if (__builtin_expect(monitor_self != NULL, 0)) {
        monitor_flush_self();
    }
}

/* XM_MONITOR: a line for a monitor of this shard (frees the payload). */
void monitor_on_message(struct shard *sh, const struct xmsg *m);

#endif
