/*
 * resp_parse: the server's incremental RESP request parser.
 *
 * It accepts exactly what Redis 7 accepts: RESP2 multibulk requests ("*N\r\n$L\r\n...")
 * and inline commands (a line split with Redis's sdssplitargs quoting rules), with
 * Redis's limits and its exact protocol error texts. The result does not depend on how
 * the input is cut into buffers.
 *
 * Usage, on the connection's thread:
 *
 *     resp_parser_feed(p, buf, n);             // one receive buffer
 *     while ((rc = resp_parser_next(p, &cmd)) == 0) {
 *         execute(cmd.argc, cmd.argv);          // may call resp_parser_set_auth_required
 *     }
 *     // rc == KV_EAGAIN: buf is fully consumed; it may be recycled once the commands
 *     //                  taken from it are done with.
 *     // rc == KV_EPROTO: reply "-" resp_parser_error_text(p) "\r\n" (if not empty) and
 *     //                  close the connection.
 *     // rc == KV_ENOMEM: the allocator failed; close the connection.
 *
 * Ownership and lifetimes:
 * - The fed buffer stays the caller's. The parser reads it during resp_parser_next()
 *   only; once next() has returned KV_EAGAIN the parser never touches it again (any
 *   part of an unfinished request has been copied out).
 * - A command's argument views (cmd.argv[i].ptr) point into the fed buffer when the
 *   argument lies contiguous in it, or into the parser's arena when the request
 *   straddles buffers (only the bytes that arrived in earlier buffers are copied) or
 *   the argument was decoded from a quoted inline token. Views into the buffer are
 *   valid while the caller keeps the buffer; views into the arena are valid until the
 *   next resp_parser_feed() or resp_parser_destroy().
 * - The argv array itself (cmd.argv) is the parser's and is reused: it is valid until
 *   the next resp_parser_next() call. Copy it if a command outlives that.
 * - Memory (parser, argv array, arena) comes from the resp_alloc given at creation. The
 *   arena holds only bytes that have arrived: a declared bulk length is never used to
 *   size an allocation; the chunk assembling a bulk holds at most 1.5 x the bytes
 *   received plus 4 KiB, and no more than the declared length once that exceeds 4 KiB.
 *   See docs/ARCHITECTURE.md.
 *
 * Thread: a parser belongs to one connection and is used by that connection's thread.
 */
#ifndef RESP_PARSE_H
#define RESP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct resp_alloc;
struct resp_parser;

/* One argument: `len` bytes at `ptr` (not NUL-terminated; may contain any byte). */
struct resp_arg {
    const char *ptr;
    size_t len;
};

/* A complete command: argc >= 1 arguments, argv[0] is the command name. */
struct resp_cmd {
    size_t argc;
    const struct resp_arg *argv;
};

/* Limits (settings) of one parser. Start from resp_parse_limits_default(). */
struct resp_parse_limits {
    int64_t bulk_bytes_max;         /* proto-max-bulk-len (512 MiB) */
    int64_t mbulk_count_max;        /* arguments of one multibulk request (INT_MAX) */
    int64_t inline_bytes_max;       /* inline line and "*N"/"$N" line length (64 KiB) */
    int64_t unauth_mbulk_count_max; /* before AUTH (10) */
    int64_t unauth_bulk_bytes_max;  /* before AUTH (16384) */
    int64_t query_bytes_max;        /* client-query-buffer-limit: arena bytes of one request */
};

/* Why a request was refused. The reply text of each is resp_parser_error_text(). */
enum resp_perr {
    RESP_PERR_NONE = 0,
    RESP_PERR_TOO_BIG_INLINE,      /* ERR Protocol error: too big inline request */
    RESP_PERR_UNBALANCED_QUOTES,   /* ERR Protocol error: unbalanced quotes in request */
    RESP_PERR_TOO_BIG_MBULK_COUNT, /* ERR Protocol error: too big mbulk count string */
    RESP_PERR_INVALID_MBULK_LEN,   /* ERR Protocol error: invalid multibulk length */
    RESP_PERR_UNAUTH_MBULK_LEN,    /* ERR Protocol error: unauthenticated multibulk length */
    RESP_PERR_TOO_BIG_BULK_COUNT,  /* ERR Protocol error: too big bulk count string */
    RESP_PERR_EXPECTED_DOLLAR,     /* ERR Protocol error: expected '$', got 'X' */
    RESP_PERR_INVALID_BULK_LEN,    /* ERR Protocol error: invalid bulk length */
    RESP_PERR_UNAUTH_BULK_LEN,     /* ERR Protocol error: unauthenticated bulk length */
    RESP_PERR_QUERY_LIMIT,         /* (no reply) client-query-buffer-limit reached */
};

/* The documented defaults (kv_limits.h). */
struct resp_parse_limits resp_parse_limits_default(void);

/* Creates a parser drawing memory from `a` (copied; its ctx must outlive the parser).
 * `lim` may be NULL for the defaults. Returns 0 or KV_ENOMEM; *out is set on success. */
int resp_parser_create(struct resp_parser **out, const struct resp_alloc *a,
                       const struct resp_parse_limits *lim);

/* Frees the parser, its arena and argv array. NULL is accepted. */
void resp_parser_destroy(struct resp_parser *p);

/* Whether the pre-AUTH limits apply (Redis's authRequired(c): a password is set and the
 * client has not authenticated). Takes effect for the next request header parsed, so
 * call it before the next resp_parser_next() after AUTH succeeds. Default false. */
void resp_parser_set_auth_required(struct resp_parser *p, bool required);

/* Hands the parser the next `len` bytes of the stream (len may be 0). The previous
 * buffer must have been consumed (next() returned KV_EAGAIN) or the parser must have
 * failed. Views into the arena from before this call become invalid. */
void resp_parser_feed(struct resp_parser *p, const void *buf, size_t len);

/* The unread bytes of the fed buffer (*len of them; NULL when none). Only between
 * requests (after next() returned a command) or before anything of the buffer was read
 * (no view points into it yet): with resp_parser_move, a caller that must keep its input
 * for long copies them and gives the buffer back. */
const void *resp_parser_unread(const struct resp_parser *p, size_t *len);

/* The unread bytes now live at buf (a copy of what resp_parser_unread gave): parsing
 * goes on there. The views of the last command stay where they were. */
void resp_parser_move(struct resp_parser *p, const void *buf);

/* The second argument (a command's first key, usually) of a multibulk request of at
 * least two arguments that starts buf and lies whole in it as far as that argument, with
 * plain numbers: true and *key pointing into buf, else false. A peek for prefetching
 * (nothing is validated beyond that framing). */
bool resp_peek_second_arg(const void *buf, size_t len, struct resp_arg *key);

/* Takes the next complete command from the fed bytes.
 * Returns 0 and fills *cmd; KV_EAGAIN when the buffer is consumed (feed the next one);
 * KV_EPROTO on a protocol error (sticky: every later call returns it again);
 * KV_ENOMEM when the allocator failed (sticky). */
int resp_parser_next(struct resp_parser *p, struct resp_cmd *cmd);

/* The error of a failed parser (RESP_PERR_NONE while it has not failed). */
enum resp_perr resp_parser_error(const struct resp_parser *p);

/* The exact text Redis replies for the error, without the leading '-' and the CRLF,
 * e.g. "ERR Protocol error: invalid bulk length"; "" when Redis closes the connection
 * without a reply (RESP_PERR_QUERY_LIMIT) and when the parser has not failed. The
 * string is the parser's, valid until it is destroyed. */
const char *resp_parser_error_text(const struct resp_parser *p);

/* Frees the parser's spare arena chunks (up to KV_RESP_ARENA_SPARE_CHUNKS x 4 KiB), for
 * a connection going idle; they are taken again when needed. Views into the arena stay
 * valid. */
void resp_parser_trim(struct resp_parser *p);

/* Whether [ptr, ptr+len) lies inside one of the parser's arena chunks (for tests and
 * assertions: a view is either there or in the fed buffer). */
bool resp_parser_arena_contains(const struct resp_parser *p, const void *ptr, size_t len);

/* Bytes the parser holds now: arena chunks, argv array, the piece being assembled. */
size_t resp_parser_memory_bytes(const struct resp_parser *p);

#endif
