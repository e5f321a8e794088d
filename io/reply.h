/*
 * reply: what command handlers write their reply with.
 *
 * A thin layer over the RESP encoder (proto/resp_out, which knows the connection's
 * protocol version) that adds printf-style errors and Redis's common error texts, and
 * hides the encoder's result: a failed append (output limit or pool exhausted) is
 * sticky in the resp_out and the connection is closed after the command, so handlers
 * need not check each call. Errors take Redis's full text without the leading '-',
 * e.g. "ERR syntax error".
 *
 * Shard thread only: a reply writes into the executing shard's memory.
 */
#ifndef KVD_REPLY_H
#define KVD_REPLY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct resp_out;

void reply_simple(struct resp_out *r, const char *s);
void reply_ok(struct resp_out *r);
void reply_error(struct resp_out *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_int(struct resp_out *r, int64_t v);
void reply_bulk(struct resp_out *r, const void *p, size_t n);
void reply_bulk_str(struct resp_out *r, const char *s);
void reply_bulk_i64(struct resp_out *r, int64_t v);
void reply_null(struct resp_out *r);       /* a missing value: $-1 or _ */
void reply_null_array(struct resp_out *r); /* *-1 or _ */
void reply_array(struct resp_out *r, size_t n);
void reply_map(struct resp_out *r, size_t n); /* n key-value pairs */
void reply_set(struct resp_out *r, size_t n);
void reply_double(struct resp_out *r, double d);
void reply_lines(struct resp_out *r, const char *const *lines, size_t n); /* HELP texts */
void reply_verbatim(struct resp_out *r, const char *p, size_t n);         /* "txt" */
void reply_raw(struct resp_out *r, const void *p, size_t n); /* bytes already in RESP */

/*
 * Error replies are counted per thread, by code (the first word of the text, as Redis's
 * errorstats: "ERR" when there is no space in the first 32 bytes), into the counters
 * the thread bound with reply_errstats_bind (none bound: not counted). The codes kvd
 * replies are listed in reply_err_codes, sorted (INFO errorstats prints them in order).
 * The counters are written by their thread only and read by any (relaxed atomics).
 */
#define REPLY_ERR_CODES 17
extern const char *const reply_err_codes[REPLY_ERR_CODES];

/* Other codes (those a script's error reply chose), per thread: a slot's name is written
 * once, before `others` counts it (release), and never changes. */
#define REPLY_OTHER_CODES    32 /* per thread; more distinct codes count in total only */
#define REPLY_OTHER_CODE_MAX 32 /* bytes of such a code (Redis reads at most 32) */
struct reply_other_code {
    char name[REPLY_OTHER_CODE_MAX + 1];
    _Atomic uint64_t count;
    _Atomic uint64_t base; /* CONFIG RESETSTAT's mark (written by any thread) */
};

struct reply_errstats {
    _Atomic uint64_t total;
    _Atomic uint64_t uncounted; /* error replies not counted above (reply_error_seen) */
    _Atomic uint64_t by_code[REPLY_ERR_CODES];
    _Atomic uint32_t others;
    struct reply_other_code other[REPLY_OTHER_CODES];
};

void reply_errstats_bind(struct reply_errstats *s);
/* Counts an error reply written some other way (raw bytes); `text` without the '-'. */
void reply_count_error(const char *text, size_t n);
/* The calling thread's error replies so far, counted or not (0 if none bound): a
 * command failed if this moved while it ran. */
uint64_t reply_errors(void);

/* Common errors, Redis's texts. */
void reply_err_syntax(struct resp_out *r);

/* An error whose text (without '-' and CRLF) was chosen by a script: any code, counted
 * by code in errorstats (codes kvd never replies in the thread's `other` slots). */
void reply_error_text(struct resp_out *r, const char *text, size_t n);
/* The same for an error already counted where it was made (a script's command's error
 * that the script replies, as Redis's ignore_error_stats_update): the command that
 * replies it still fails. */
void reply_error_seen(struct resp_out *r, const char *text, size_t n);
void reply_err_not_int(struct resp_out *r);
void reply_err_arity(struct resp_out *r, const char *cmd);

#endif
