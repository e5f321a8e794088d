/*
 * slowlog: the SLOWLOG of the whole server: commands that took longer than
 * slowlog-log-slower-than microseconds, newest first, at most slowlog-max-len.
 *
 * One log for all shards behind a mutex: only slow commands reach it, so the lock is
 * never on the path of a normal request. Arguments are kept as Redis keeps them: at
 * most 32 (the last one says how many more), each cut at 128 bytes with a note.
 */
#ifndef KVD_SLOWLOG_H
#define KVD_SLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct resp_arg;
struct resp_out;

struct slowlog_entry;

/* True if a command of this duration goes into the log (threshold and length now). */
bool slowlog_wants(uint64_t duration_us);

/*
 * For a command whose duration is known only after its parts ran elsewhere: a copy of
 * it as the log keeps it, with the client's address and name as they are now (NULL
 * when the log is off). slowlog_commit() records it if `duration_us` reaches the
 * threshold and frees it otherwise; slowlog_drop() frees it. Any thread.
 */
struct slowlog_entry *slowlog_prepare(size_t argc, const struct resp_arg *argv, const char *addr,
                                      const char *name);
void slowlog_commit(struct slowlog_entry *e, uint64_t duration_us, int64_t now_ms);
void slowlog_drop(struct slowlog_entry *e);

/* Records one command if `duration_us` reaches the threshold. Any thread. */
void slowlog_maybe_add(size_t argc, const struct resp_arg *argv, uint64_t duration_us,
                       int64_t now_ms, const char *addr, const char *name);

/* Frees the calling thread's kept entry (a thread that used slowlog_prepare, at exit). */
void slowlog_thread_exit(void);

/* SLOWLOG GET [count] (count < 0: all), LEN, RESET. Any thread. */
void slowlog_reply_get(struct resp_out *o, int64_t count);
size_t slowlog_len(void);
void slowlog_reset(void);

#endif
