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
#define REPLY_ERR_CODES 14
extern const char *const reply_err_codes[REPLY_ERR_CODES];

struct reply_errstats {
    _Atomic uint64_t total;
    _Atomic uint64_t by_code[REPLY_ERR_CODES];
};

void reply_errstats_bind(struct reply_errstats *s);
/* Counts an error reply written some other way (raw bytes); `text` without the '-'. */
void reply_count_error(const char *text, size_t n);
/* The calling thread's error replies so far (0 if none bound): a command failed if
 * this moved while it ran. */
uint64_t reply_errors(void);

/* Common errors, Redis's texts. */
void reply_err_syntax(struct resp_out *r);

/* An error whose text (without '-' and CRLF) was chosen by a script: any code, counted
 * by code in errorstats only when it is one of reply_err_codes. */
void reply_error_text(struct resp_out *r, const char *text, size_t n);
void reply_err_not_int(struct resp_out *r);
void reply_err_arity(struct resp_out *r, const char *cmd);

#endif
