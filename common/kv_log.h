/*
 * kv_log: leveled, structured log lines on stderr.
 *
 * One line per event: `<iso time> <level> <thread> msg key=value ...` (and, when
 * asked, the same without the time to syslog), on stderr or in a log file. The format
 * string carries the key=value pairs. Logging is for events, never for requests: no
 * call sits on a per-request path, so a write(2) per line is acceptable. The level is a
 * process-wide setting (`loglevel`), read with relaxed atomics so any thread may log.
 */
#ifndef KV_LOG_H
#define KV_LOG_H

enum kv_log_level {
    KV_LOG_DEBUG = 0,
    KV_LOG_VERBOSE = 1,
    KV_LOG_NOTICE = 2,
    KV_LOG_WARNING = 3,
};

/* Sets the minimum level written; lines below it are dropped cheaply. */
void kv_log_level_set(enum kv_log_level level);
enum kv_log_level kv_log_level_get(void);

/* Names the calling thread in its log lines (copied; at most 15 bytes kept). */
void kv_log_thread_name(const char *name);

/* From now on also sends every line written to syslog(3) as `ident` with `facility`
 * (LOG_USER, LOG_LOCAL0, ...): the message without the time stamp, at the matching
 * priority (debug, info, notice, warning), as Redis's syslog-enabled. Call once, before
 * other threads log. */
void kv_log_syslog(const char *ident, int facility);

/* From now on writes every line to the file at `path` instead of stderr, opening it for
 * each line (O_APPEND; created if missing), as Redis does: a log file that logrotate
 * moves away is made anew by the next line. A relative path is taken from the current
 * directory now (a line whose file cannot be opened goes to stderr). Returns 0, or
 * -errno if the path cannot be made absolute (nothing changes then). Call once, before
 * other threads log. */
int kv_log_file(const char *path);

/* Writes one line if `level` is enabled. printf-style. */
void kv_log(enum kv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kv_log_debug(...)   kv_log(KV_LOG_DEBUG, __VA_ARGS__)
#define kv_log_verbose(...) kv_log(KV_LOG_VERBOSE, __VA_ARGS__)
#define kv_log_notice(...)  kv_log(KV_LOG_NOTICE, __VA_ARGS__)
#define kv_log_warning(...) kv_log(KV_LOG_WARNING, __VA_ARGS__)

#endif
