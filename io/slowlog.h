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

#include <stddef.h>
#include <stdint.h>

struct resp_arg;
struct resp_out;

/* Records one command if `duration_us` reaches the threshold. Any thread. */
void slowlog_maybe_add(size_t argc, const struct resp_arg *argv, uint64_t duration_us,
                       int64_t now_ms, const char *addr, const char *name);

/* SLOWLOG GET [count] (count < 0: all), LEN, RESET. Any thread. */
void slowlog_reply_get(struct resp_out *o, int64_t count);
size_t slowlog_len(void);
void slowlog_reset(void);

#endif
